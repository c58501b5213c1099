//! Helpers shared by the integration tests.
//!
//! They check the daemon through a raw bollard client of their own, so a
//! test sees what Docker really holds, independently of dockfix. The
//! helpers are async and need a tokio runtime: async tests await them, and
//! plain `#[test]`s drive them with [`block_on`]. A helper panics when the
//! daemon answers something unexpected, which fails the calling test.

// Each test file uses its own subset of these helpers.
#![allow(dead_code, unused_macros, unused_imports)]

use std::collections::HashMap;
use std::future::Future;
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};

/// The image every test starts: a static busybox built by `ci/setup`.
pub const IMAGE: &str = "dockfix-test/busybox:latest";

/// The spec most tests start from: the test image sleeping, with no
/// network (the fastest start).
pub fn sleeper() -> dockfix::ContainerSpec {
    dockfix::ContainerSpec::new(IMAGE)
        .cmd(["sleep", "300"])
        .network_mode("none")
}

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

/// Set in the environment of a process started by [`run_child!`].
pub const CHILD_ENV: &str = "DOCKFIX_TEST_CHILD";

/// True in a process started by [`run_child!`] or [`spawn_child!`]. A
/// child test is marked `#[ignore]` and returns at once when this is
/// false, so a run with `--ignored` does nothing with it.
pub fn is_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

/// What a child test process did.
#[derive(Debug)]
pub struct ChildRun {
    /// How it exited.
    pub status: ExitStatus,
    /// Everything it printed on stdout (libtest's lines too).
    pub stdout: String,
    /// Everything it printed on stderr.
    pub stderr: String,
}

impl ChildRun {
    /// The value of the child's `KEY=value` line; panics when there is none.
    pub fn value(&self, key: &str) -> &str {
        let marker = format!("{key}=");
        match self.stdout.lines().find_map(|l| l.strip_prefix(&marker)) {
            Some(value) => value,
            None => panic!("the child printed no {marker} line\n{self}"),
        }
    }

    /// Panics, showing what the child printed, unless it succeeded.
    pub fn assert_success(&self) {
        assert!(self.status.success(), "the child test failed\n{self}");
    }
}

impl std::fmt::Display for ChildRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "child {}\n--- stdout\n{}--- stderr\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// The name libtest knows the test function `function` of module `module`
/// (as `module_path!()` gives it) by: the path without the crate's name.
pub fn test_name(module: &str, function: &str) -> String {
    match module.split_once("::") {
        Some((_, inner)) => format!("{inner}::{function}"),
        None => function.to_owned(),
    }
}

/// How many tests libtest said it runs, from its `running N test(s)` line.
fn tests_run(line: &str) -> Option<usize> {
    line.strip_prefix("running ")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn child_command(name: &str, env: &[(&str, &str)]) -> Command {
    let mut command = captured_child_command(name, env);
    command.arg("--nocapture");
    command
}

/// Like [`child_command`], with libtest capturing the test's output, as
/// `cargo test` does: what a failed test printed then follows its
/// `---- <name> stdout ----` line.
fn captured_child_command(name: &str, env: &[(&str, &str)]) -> Command {
    let exe = std::env::current_exe().expect("cannot find the test binary");
    let mut command = Command::new(exe);
    command
        .args(["--exact", name, "--ignored", "--test-threads=1", "--quiet"])
        .env(CHILD_ENV, "1")
        .envs(env.iter().copied());
    command
}

/// Runs the test `name` of the calling test binary alone in a child
/// process, with `env` added to its environment, and waits for it to exit.
/// For what only a process of its own can show: its exit, or settings the
/// engine reads once per process.
///
/// Each line the child prints starts a line of its stdout (`--quiet`
/// keeps libtest from writing `test <name> ... ` in front of the first),
/// so a child reports values as `KEY=value` lines.
///
/// # Errors
///
/// When the child did not run exactly one test: a name that matches no
/// test runs none, and "0 passed" would pass. Prefer [`run_child!`],
/// which names the child by its function, so a misspelling does not
/// compile either.
pub fn try_run_child(name: &str, env: &[(&str, &str)]) -> Result<ChildRun, String> {
    run_command(child_command(name, env), name)
}

/// Runs child test `name` with its output captured by libtest, as under
/// `cargo test`; see [`run_child_captured!`].
pub fn run_child_captured_named(name: &str, env: &[(&str, &str)]) -> ChildRun {
    run_command(captured_child_command(name, env), name).unwrap_or_else(|e| panic!("{e}"))
}

fn run_command(mut command: Command, name: &str) -> Result<ChildRun, String> {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run test {name} in a child process: {e}"));
    let run = ChildRun {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    match run.stdout.lines().find_map(tests_run) {
        Some(1) => Ok(run),
        Some(n) => Err(format!(
            "the child process ran {n} tests, not the one test named {name}\n{run}"
        )),
        None => Err(format!(
            "the child process for {name} did not say how many tests it ran\n{run}"
        )),
    }
}

/// Runs child test `name` like [`try_run_child`], panicking unless it ran
/// exactly that one test.
pub fn run_child_named(name: &str, env: &[(&str, &str)]) -> ChildRun {
    try_run_child(name, env).unwrap_or_else(|e| panic!("{e}"))
}

/// `run_child!(child_fn, &[("KEY", "value")])` runs the `#[ignore]`d test
/// function `child_fn` of this binary alone in a child process and returns
/// its [`ChildRun`]. The function is named, not spelled in a string, so a
/// child that does not exist does not compile, and the child must report
/// running exactly one test.
macro_rules! run_child {
    ($child:ident) => {
        $crate::support::run_child!($child, &[])
    };
    ($child:ident, $env:expr $(,)?) => {{
        let _ = $child;
        $crate::support::run_child_named(
            &$crate::support::test_name(module_path!(), stringify!($child)),
            $env,
        )
    }};
}
pub(crate) use run_child;

/// `run_child_captured!(child_fn, &[..])`: like [`run_child!`], but libtest
/// captures the child test's output, as `cargo test` does by default.
macro_rules! run_child_captured {
    ($child:ident, $env:expr $(,)?) => {{
        let _ = $child;
        $crate::support::run_child_captured_named(
            &$crate::support::test_name(module_path!(), stringify!($child)),
            $env,
        )
    }};
}
pub(crate) use run_child_captured;

/// `spawn_child!(child_fn, &[..])` starts the test function `child_fn` in a
/// child process like [`run_child!`], without waiting; its stdout is piped
/// for [`wait_ready`]. With `DOCKFIX_SWEEP_ON_START=0`, so that its first
/// start reaps nothing.
macro_rules! spawn_child {
    ($child:ident, $env:expr $(,)?) => {{
        let _ = $child;
        $crate::support::spawn_child_named(
            &$crate::support::test_name(module_path!(), stringify!($child)),
            $env,
        )
    }};
}
pub(crate) use spawn_child;

/// Starts child test `name`; see [`spawn_child!`].
pub fn spawn_child_named(name: &str, env: &[(&str, &str)]) -> std::process::Child {
    child_command(name, env)
        .env("DOCKFIX_SWEEP_ON_START", "0")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run test {name} in a child process: {e}"))
}

/// Waits for a child started by [`spawn_child!`] to exit and returns what
/// it did; panics unless it ran exactly one test (when its stdout was not
/// read by [`wait_ready`], which checks that itself).
pub fn finish_child(child: std::process::Child) -> ChildRun {
    let out = child.wait_with_output().expect("cannot wait for the child");
    let run = ChildRun {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    if let Some(n) = run.stdout.lines().find_map(tests_run) {
        assert_eq!(n, 1, "the child process ran {n} tests, not one\n{run}");
    }
    run
}

/// Reads the `KEY=value` lines a child started by [`spawn_child!`] prints,
/// until it prints `READY`. Panics when it ends first, or when it does not
/// run exactly one test.
pub fn wait_ready(child: &mut std::process::Child) -> HashMap<String, String> {
    use std::io::BufRead;
    let stdout = child
        .stdout
        .take()
        .expect("the child's stdout is not piped");
    let mut values = HashMap::new();
    let mut counted = false;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.expect("cannot read the child's stdout");
        if let Some(n) = tests_run(&line) {
            assert_eq!(n, 1, "the child process runs {n} tests, not one");
            counted = true;
        }
        if line == "READY" {
            assert!(
                counted,
                "the child said READY before libtest said what it runs"
            );
            return values;
        }
        if let Some((k, v)) = line.split_once('=') {
            values.insert(k.to_owned(), v.to_owned());
        }
    }
    panic!("the child process ended without printing READY (it printed {values:?})");
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
pub mod tls;

/// Whether the daemon the tests talk to is Podman's Docker-compatible
/// service (its version answer names the engine).
pub async fn on_podman() -> bool {
    raw_docker().await.version().await.is_ok_and(|v| {
        v.components
            .iter()
            .flatten()
            .any(|c| c.name.contains("Podman"))
    })
}

/// True, after saying why, when the daemon is Podman and the calling test
/// checks something Podman does not do (`why`); the test then returns.
/// The compatibility table in README lists each of these.
pub async fn skip_on_podman(why: &str) -> bool {
    let podman = on_podman().await;
    if podman {
        println!("not run on Podman: {why}");
    }
    podman
}
