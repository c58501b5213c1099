//! `TestContainer`: the guard that owns one container from the moment it
//! is created until it is removed, and what a test does with it: start
//! and readiness, exec, logs, files and stats, each in a file of its own.

use std::collections::HashMap;
use std::time::Duration;

use crate::cleanup;
use crate::config;
use crate::docker::{self, containers};
use crate::error::{Error, Result, warn};
use crate::spec::ContainerSpec;

mod anchor;
mod create;
mod exec;
mod files;
mod forensics;
mod logs;
mod ready;
mod start;
mod stats;

pub use exec::{Exec, ExecOutput};
pub(crate) use forensics::Transcript;
pub use logs::{LogLine, LogSource, LogStream, Logs};
pub(crate) use start::published_ports;
pub use stats::ContainerStats;

/// A running container that is removed when the guard goes away.
///
/// Made by [`ContainerSpec::start`] (or [`TestContainer::builder`]). The
/// guard owns the container from the moment Docker creates it: if start or
/// readiness fails, the container is removed before the error is returned.
///
/// # Cleanup
///
/// - [`remove(self)`](TestContainer::remove) removes the container now and
///   returns the error if that fails: the deterministic, fallible path.
/// - Dropping the guard hands a force-remove (container and anonymous
///   volumes) to dockfix's engine runtime and returns at once, so the
///   daemon's removal overlaps the next test. It works in any context: a
///   current-thread or multi-thread tokio runtime, no runtime, a panicking
///   test, `spawn_blocking`. It never panics; a failure is printed on stderr.
///   With [`ContainerSpec::wait_on_drop`] or `DOCKFIX_DROP=wait`, Drop
///   blocks until the removal is done instead.
/// - When the process exits normally (including a test binary whose tests
///   failed), an exit hook waits for every removal still in flight and
///   removes the containers of guards that were never dropped (a guard in
///   a `static`), bounded by `DOCKFIX_EXIT_TIMEOUT` seconds (default 30).
/// - [`keep(self)`](TestContainer::keep) or `DOCKFIX_KEEP=1` leave the
///   container running for debugging.
///
/// # Resource leaking
///
/// Nothing runs when the process is killed by a signal (SIGKILL, a
/// cancelled CI job, SIGINT without a handler), or aborts. Its containers
/// stay, labelled `dockfix.managed=true` with this process's session, so
/// `dockfix sweep` (or `docker rm -f $(docker ps -aq --filter
/// label=dockfix.session=<id>)`) removes them later. Kept containers stay
/// labelled too.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> dockfix::Result<()> {
/// use std::time::Duration;
/// use dockfix::TestContainer;
///
/// let c = TestContainer::builder("dockfix-test/busybox:latest")
///     .cmd(["sleep", "300"])
///     .start()
///     .await?;
/// let out = c
///     .exec(["sh", "-c", "echo hi; exit 3"])
///     .timeout(Duration::from_secs(5))
///     .await?;
/// assert_eq!((out.exit_code, out.stdout.as_str()), (3, "hi\n"));
/// assert!(c.exec_ok(["false"]).await.is_err());
/// c.remove().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "dropping the guard removes the container"]
pub struct TestContainer {
    id: String,
    name: String,
    image: String,
    ports: HashMap<u16, u16>,
    /// `Some` while Drop should remove the container; the flag says whether
    /// Drop waits for it.
    removal: Option<DropMode>,
    /// The execs run in it, for the forensics of a failed test.
    transcript: Transcript,
}

#[derive(Debug, Clone, Copy)]
struct DropMode {
    wait: bool,
}

/// What a container is doing, from Docker's inspect.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ContainerState {
    /// Docker's status word: `created`, `running`, `paused`, `restarting`,
    /// `removing`, `exited` or `dead`.
    pub status: String,
    /// True while the main process runs.
    pub running: bool,
    /// The main process's exit code, once it has exited.
    pub exit_code: Option<i64>,
    /// True if the kernel killed it for exceeding its memory limit.
    pub oom_killed: bool,
    /// The health status (`starting`, `healthy`, `unhealthy`) when the
    /// container has a healthcheck.
    pub health: Option<String>,
}

impl TestContainer {
    /// A spec for `image`; finish it with [`ContainerSpec::start`].
    pub fn builder(image: impl Into<String>) -> ContainerSpec {
        ContainerSpec::new(image)
    }

    /// The container id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The container name: the spec's prefix and a random suffix.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The image it was started from.
    pub fn image(&self) -> &str {
        &self.image
    }

    /// The address published ports are reached at: `127.0.0.1`, or the
    /// daemon's host when `DOCKER_HOST` names a remote daemon.
    pub fn host(&self) -> String {
        config::daemon_host().unwrap_or_else(|| "127.0.0.1".to_owned())
    }

    /// The host port that container TCP `port` is published on.
    ///
    /// # Errors
    ///
    /// [`Error::PortNotExposed`] if the spec did not `expose(port)`.
    pub fn host_port(&self, port: u16) -> Result<u16> {
        self.ports
            .get(&port)
            .copied()
            .ok_or_else(|| Error::PortNotExposed {
                container: self.name.clone(),
                port,
            })
    }

    /// Stops the main process: SIGTERM, then SIGKILL after `grace`. The
    /// container stays until the guard removes it. Stopping a stopped
    /// container succeeds.
    ///
    /// # Errors
    ///
    /// [`Error::Docker`] if the daemon refuses.
    pub async fn stop(&self, grace: Duration) -> Result<()> {
        let (id, name) = (self.id.clone(), self.name.clone());
        docker::run(async move { containers::stop_container(&id, &name, grace).await }).await
    }

    /// The container's current state.
    ///
    /// # Errors
    ///
    /// [`Error::Docker`] if the daemon refuses (404 once it is gone).
    pub async fn state(&self) -> Result<ContainerState> {
        let (id, name) = (self.id.clone(), self.name.clone());
        docker::run(async move {
            let info = containers::inspect_container(&id, &name).await?;
            let s = info.state.unwrap_or_default();
            Ok(ContainerState {
                status: s.status.map(|s| s.to_string()).unwrap_or_default(),
                running: s.running == Some(true),
                exit_code: s.exit_code.filter(|_| s.running != Some(true)),
                oom_killed: s.oom_killed == Some(true),
                health: s
                    .health
                    .and_then(|h| h.status)
                    .map(|h| h.to_string())
                    .filter(|h| !h.is_empty() && h != "none"),
            })
        })
        .await
    }

    /// Removes the container now (force, with its anonymous volumes) and
    /// reports the outcome. Already gone counts as success.
    ///
    /// # Errors
    ///
    /// [`Error::CleanupFailed`] if the daemon could not remove it, or
    /// [`Error::DockerUnavailable`] if it could not be reached; the
    /// container stays labelled for `dockfix sweep`.
    pub async fn remove(mut self) -> Result<()> {
        self.removal = None;
        let id = self.id.clone();
        // Tracked, so the exit hook finishes it even if this future is
        // dropped before the daemon answers.
        let removal = cleanup::track_removal(&id, &self.name);
        docker::run(async move {
            let _removal = removal;
            cleanup::remove_now(&id).await
        })
        .await
    }

    /// Leaves the container running after the guard is gone, for
    /// debugging, and returns its id. It keeps its labels, so
    /// `dockfix sweep` can remove it later.
    #[must_use = "the id is the only handle left on the kept container"]
    pub fn keep(mut self) -> String {
        self.removal = None;
        cleanup::unregister_live(&self.id);
        std::mem::take(&mut self.id)
    }

    /// A guard on a container this process just created: Drop removes it.
    pub(crate) fn owned(id: String, name: String, image: String, wait_on_drop: bool) -> Self {
        cleanup::register_live(&id, &name);
        TestContainer {
            id,
            name,
            image,
            ports: HashMap::new(),
            removal: Some(DropMode { wait: wait_on_drop }),
            transcript: Transcript::default(),
        }
    }

    /// A handle on a container this process does not own: Drop leaves it
    /// alone (members of a shared pool outlive their holders).
    pub(crate) fn unowned(
        id: String,
        name: String,
        image: String,
        ports: HashMap<u16, u16>,
    ) -> Self {
        TestContainer {
            id,
            name,
            image,
            ports,
            removal: None,
            transcript: Transcript::default(),
        }
    }

    /// The execs run in it so far.
    pub(crate) fn transcript(&self) -> &Transcript {
        &self.transcript
    }

    /// Reports this container for a failed test: see [`forensics`].
    pub(crate) fn report(&self, why: &str, print: bool) {
        forensics::report(
            &forensics::Subject {
                id: &self.id,
                name: &self.name,
                image: &self.image,
                transcript: &self.transcript,
            },
            why,
            print,
        );
    }

    /// Removes a container whose start failed, now, before the error is
    /// returned; falls back to the background removal if that fails.
    async fn discard(mut self) {
        if self.removal.take().is_some() {
            cleanup::unregister_live(&self.id);
            if cleanup::remove_now(&self.id).await.is_err() {
                cleanup::remove_in_background(self.id.clone(), self.name.clone(), false);
            }
        }
    }
}

impl Drop for TestContainer {
    fn drop(&mut self) {
        let Some(mode) = self.removal.take() else {
            return;
        };
        if std::thread::panicking() {
            self.report("the test panicked holding", true);
        }
        if config::env().keep {
            cleanup::unregister_live(&self.id);
            warn(format_args!(
                "keeping container {} ({}) because DOCKFIX_KEEP is set",
                self.name, self.id
            ));
            return;
        }
        cleanup::remove_in_background(
            std::mem::take(&mut self.id),
            std::mem::take(&mut self.name),
            mode.wait,
        );
    }
}
