//! Helpers shared by the integration tests.
//!
//! They check the daemon through a raw bollard client of their own, so a
//! test sees what Docker really holds, independently of dockfix. The
//! helpers are async and need a tokio runtime: async tests await them, and
//! plain `#[test]`s drive them with [`block_on`]. A helper panics when the
//! daemon answers something unexpected, which fails the calling test.

// Each test file uses its own subset of these helpers.
#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};

/// The image every test starts: a static busybox built by `ci/setup`.
pub const IMAGE: &str = "dockfix-test/busybox:latest";

/// A label key tests put on their containers, with a [`unique`] value, to
/// find exactly their own with [`list_by_label`].
pub const CASE_LABEL: &str = "com.example.case";

/// How long polling helpers wait between two questions to the daemon.
const POLL: Duration = Duration::from_millis(50);

/// A raw bollard client with the API version negotiated.
///
/// It belongs to the runtime that awaited it; make a fresh one per check
/// rather than keeping one across tests, whose runtimes come and go.
pub async fn raw_docker() -> Docker {
    Docker::connect_with_defaults()
        .expect("DOCKER_HOST names no usable endpoint")
        .negotiate_version()
        .await
        .expect("the Docker daemon does not answer")
}

/// Runs `fut` on a small current-thread runtime of its own, for plain
/// `#[test]`s. Panics inside a tokio runtime: async tests await the
/// helpers directly.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("cannot build a tokio runtime")
        .block_on(fut)
}

/// A value no other test, run or process uses: `<name>-<session>-<n>`.
pub fn unique(name: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{name}-{}-{n}", dockfix::session_id())
}

/// True while the daemon knows container `id`, in any state (including
/// `removing`); false once inspect answers 404.
pub async fn container_exists(id: &str) -> bool {
    exists(&raw_docker().await, id).await
}

/// True if container `id` exists and its main process runs.
pub async fn is_running(id: &str) -> bool {
    match raw_docker().await.inspect_container(id, None).await {
        Ok(info) => info.state.and_then(|s| s.running) == Some(true),
        Err(e) if is_404(&e) => false,
        Err(e) => panic!("inspect {id}: {e}"),
    }
}

/// Polls until inspect answers 404 for `id`; false if the container still
/// exists after `timeout`.
pub async fn wait_gone(id: &str, timeout: Duration) -> bool {
    let docker = raw_docker().await;
    let deadline = Instant::now() + timeout;
    loop {
        if !exists(&docker, id).await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Ids of every container, running or not, labelled `key=value`.
pub async fn list_by_label(key: &str, value: &str) -> Vec<String> {
    let filters = HashMap::from([("label", vec![format!("{key}={value}")])]);
    let opts = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    raw_docker()
        .await
        .list_containers(Some(opts))
        .await
        .unwrap_or_else(|e| panic!("list containers labelled {key}={value}: {e}"))
        .into_iter()
        .filter_map(|c| c.id)
        .collect()
}

/// Force-removes container `id` and its anonymous volumes, bypassing
/// dockfix. Already gone is fine.
pub async fn force_remove(id: &str) {
    let opts = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    match raw_docker().await.remove_container(id, Some(opts)).await {
        Ok(()) => {}
        Err(e) if is_404(&e) => {}
        Err(e) => panic!("remove {id}: {e}"),
    }
}

/// Set in the environment of a process started by [`run_child`].
pub const CHILD_ENV: &str = "DOCKFIX_TEST_CHILD";

/// True in a process started by [`run_child`]. A child test is marked
/// `#[ignore]` and returns at once when this is false, so a run with
/// `--ignored` does nothing with it.
pub fn is_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

/// Runs the test `name` of the calling test binary alone in a child
/// process, with `env` added to its environment, and waits for it to exit.
/// For what only a process of its own can show: its exit, or settings the
/// engine reads once per process.
///
/// Each line the child prints starts a line of its stdout (`--quiet`
/// keeps libtest from writing `test <name> ... ` in front of the first),
/// so a child reports values as `KEY=value` lines.
pub fn run_child(name: &str, env: &[(&str, &str)]) -> Output {
    let exe = std::env::current_exe().expect("cannot find the test binary");
    Command::new(exe)
        .args([
            "--exact",
            name,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
            "--quiet",
        ])
        .env(CHILD_ENV, "1")
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("cannot run test {name} in a child process: {e}"))
}

/// Starts the test `name` of this binary in a child process, like
/// [`run_child`], without waiting for it; its stdout is piped. With
/// `DOCKFIX_SWEEP_ON_START=0`, so that its first start reaps nothing.
pub fn spawn_child(name: &str, env: &[(&str, &str)]) -> std::process::Child {
    let exe = std::env::current_exe().expect("cannot find the test binary");
    Command::new(exe)
        .args(["--exact", name, "--ignored", "--nocapture", "--quiet"])
        .env(CHILD_ENV, "1")
        .env("DOCKFIX_SWEEP_ON_START", "0")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run test {name} in a child process: {e}"))
}

/// Reads the `KEY=value` lines a child started by [`spawn_child`] prints,
/// until it prints `READY` (or ends).
pub fn wait_ready(child: &mut std::process::Child) -> HashMap<String, String> {
    use std::io::BufRead;
    let stdout = child
        .stdout
        .take()
        .expect("the child's stdout is not piped");
    let mut values = HashMap::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.expect("cannot read the child's stdout");
        if line == "READY" {
            break;
        }
        if let Some((k, v)) = line.split_once('=') {
            values.insert(k.to_owned(), v.to_owned());
        }
    }
    values
}

async fn exists(docker: &Docker, id: &str) -> bool {
    match docker.inspect_container(id, None).await {
        Ok(_) => true,
        Err(e) if is_404(&e) => false,
        Err(e) => panic!("inspect {id}: {e}"),
    }
}

fn is_404(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// The labels of container `id`.
pub async fn labels_of(id: &str) -> HashMap<String, String> {
    raw_docker()
        .await
        .inspect_container(id, None)
        .await
        .unwrap_or_else(|e| panic!("inspect {id}: {e}"))
        .config
        .and_then(|c| c.labels)
        .unwrap_or_default()
}

/// The memory limit (bytes) and CPU limit (NanoCpus) of container `id`.
pub async fn limits_of(id: &str) -> (i64, i64) {
    let host = raw_docker()
        .await
        .inspect_container(id, None)
        .await
        .unwrap_or_else(|e| panic!("inspect {id}: {e}"))
        .host_config
        .unwrap_or_default();
    (host.memory.unwrap_or(0), host.nano_cpus.unwrap_or(0))
}

/// A fresh directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    /// Creates `<tmp>/dockfix-<name>-<unique>`.
    pub fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("dockfix-{}", unique(name)));
        std::fs::create_dir_all(&path).expect("cannot create a temp dir");
        TempDir(path)
    }

    /// Its path.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub mod fault_proxy;
pub mod proxy;
