//! The same guard for code without async: plain `#[test]`s, build
//! scripts, synchronous helpers.
//!
//! Every call blocks the calling thread while the work runs on dockfix's
//! engine runtime, so these are safe inside or outside a tokio runtime
//! (though inside one the async API is the better fit).
//!
//! # Examples
//!
//! ```no_run
//! # fn demo() -> dockfix::Result<()> {
//! use dockfix::ContainerSpec;
//!
//! let c = ContainerSpec::new("dockfix-test/busybox:latest")
//!     .cmd(["sleep", "300"])
//!     .start_blocking()?;
//! let out = c.exec(["echo", "hi"]).run()?;
//! assert_eq!(out.stdout, "hi\n");
//! # Ok(()) }
//! ```

use std::future::IntoFuture;
use std::time::Duration;

use crate::container::{self, ContainerState, ExecOutput, LogStream, Logs};
use crate::docker::block_on;
use crate::error::Result;
use crate::spec::ContainerSpec;

/// A blocking handle on a [`TestContainer`](container::TestContainer), with the
/// same cleanup: dropping it removes the container.
#[derive(Debug)]
#[must_use = "dropping the guard removes the container"]
pub struct TestContainer {
    inner: container::TestContainer,
}

impl ContainerSpec {
    /// [`start`](ContainerSpec::start), blocking the calling thread.
    ///
    /// # Errors
    ///
    /// As [`start`](ContainerSpec::start).
    pub fn start_blocking(self) -> Result<TestContainer> {
        block_on(self.start()).map(|inner| TestContainer { inner })
    }
}

impl TestContainer {
    /// The container id.
    pub fn id(&self) -> &str {
        self.inner.id()
    }

    /// The container name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// The address published ports are reached at.
    pub fn host(&self) -> String {
        self.inner.host()
    }

    /// The host port that container TCP `port` is published on.
    ///
    /// # Errors
    ///
    /// As [`container::TestContainer::host_port`].
    pub fn host_port(&self, port: u16) -> Result<u16> {
        self.inner.host_port(port)
    }

    /// A command to run; finish it with [`Exec::run`].
    pub fn exec<I, S>(&self, cmd: I) -> Exec<'_>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Exec(self.inner.exec(cmd))
    }

    /// A checked command: a non-zero exit is an error.
    pub fn exec_ok<I, S>(&self, cmd: I) -> Exec<'_>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Exec(self.inner.exec_ok(cmd))
    }

    /// Everything logged so far.
    ///
    /// # Errors
    ///
    /// As [`container::TestContainer::logs`].
    pub fn logs(&self) -> Result<Logs> {
        block_on(self.inner.logs())
    }

    /// Follows the log; iterate it with `futures::executor::block_on_stream`.
    pub fn follow_logs(&self) -> LogStream {
        self.inner.follow_logs()
    }

    /// Stops the main process with a grace period.
    ///
    /// # Errors
    ///
    /// As [`container::TestContainer::stop`].
    pub fn stop(&self, grace: Duration) -> Result<()> {
        block_on(self.inner.stop(grace))
    }

    /// The current state.
    ///
    /// # Errors
    ///
    /// As [`container::TestContainer::state`].
    pub fn state(&self) -> Result<ContainerState> {
        block_on(self.inner.state())
    }

    /// Removes the container now and reports the outcome.
    ///
    /// # Errors
    ///
    /// As [`container::TestContainer::remove`].
    pub fn remove(self) -> Result<()> {
        block_on(self.inner.remove())
    }

    /// Leaves the container running and returns its id.
    #[must_use = "the id is the only handle left on the kept container"]
    pub fn keep(self) -> String {
        self.inner.keep()
    }

    /// The async guard, for code that moves into a runtime.
    pub fn into_async(self) -> container::TestContainer {
        self.inner
    }
}

/// A command being configured; [`run`](Exec::run) blocks until it ends.
#[derive(Debug)]
#[must_use = "an exec does nothing until `run()` is called"]
pub struct Exec<'a>(container::Exec<'a>);

impl Exec<'_> {
    /// See [`container::Exec::timeout`].
    pub fn timeout(self, limit: Duration) -> Self {
        Exec(self.0.timeout(limit))
    }

    /// See [`container::Exec::env`].
    pub fn env(self, key: impl Into<String>, value: impl Into<String>) -> Self {
        Exec(self.0.env(key, value))
    }

    /// See [`container::Exec::working_dir`].
    pub fn working_dir(self, dir: impl Into<String>) -> Self {
        Exec(self.0.working_dir(dir))
    }

    /// See [`container::Exec::user`].
    pub fn user(self, user: impl Into<String>) -> Self {
        Exec(self.0.user(user))
    }

    /// See [`container::Exec::stdin`].
    pub fn stdin(self, bytes: impl Into<Vec<u8>>) -> Self {
        Exec(self.0.stdin(bytes))
    }

    /// See [`container::Exec::checked`].
    pub fn checked(self) -> Self {
        Exec(self.0.checked())
    }

    /// Runs the command and waits for its output.
    ///
    /// # Errors
    ///
    /// As awaiting a [`container::Exec`].
    pub fn run(self) -> Result<ExecOutput> {
        block_on(self.0.into_future())
    }
}

/// Blocks until every removal handed to the engine by Drop has finished,
/// or `timeout` passes; returns how many are still outstanding.
pub fn wait_for_removals(timeout: Duration) -> usize {
    crate::cleanup::wait_for_removals_blocking(timeout)
}
