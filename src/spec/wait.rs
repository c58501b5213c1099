//! Readiness conditions: what `start()` waits for once the container
//! runs. The waiting itself is the container's.

use super::ContainerSpec;
use crate::error::{Error, Result, command_line};

/// A readiness condition for [`ContainerSpec::wait_for`].
///
/// Every start waits until the container is running; these add to that.
/// Each is bounded by [`ContainerSpec::startup_timeout`]. When the
/// container exits or the timeout passes first, `start()` removes the
/// container and returns [`Error::NotReady`] with the condition, the reason
/// and the last 20 lines of the container log.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> dockfix::Result<()> {
/// use dockfix::{ContainerSpec, WaitFor};
///
/// let db = ContainerSpec::new("postgres:16")
///     .env("POSTGRES_PASSWORD", "test")
///     .expose(5432)
///     // postgres logs this twice: once for the init server, once for the real one
///     .wait_for(WaitFor::log_line_times("database system is ready to accept connections", 2))
///     .wait_for(WaitFor::port(5432))
///     .start()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WaitFor {
    /// A line of stdout or stderr containing `text`, `times` times.
    LogLine {
        /// The text a line must contain.
        text: String,
        /// How many such lines to wait for.
        times: usize,
    },
    /// The exposed TCP port accepts connections through its host mapping.
    Port(u16),
    /// Docker reports the container's health as `healthy`.
    Healthy,
    /// A command run in the container exits 0.
    Exec(Vec<String>),
}

impl WaitFor {
    /// A log line (stdout or stderr) containing `text`.
    pub fn log_line(text: impl Into<String>) -> Self {
        Self::log_line_times(text, 1)
    }

    /// The `times`-th log line containing `text`.
    pub fn log_line_times(text: impl Into<String>, times: usize) -> Self {
        WaitFor::LogLine {
            text: text.into(),
            times,
        }
    }

    /// The exposed TCP `port` accepts a connection from the host, and the
    /// connection is not closed at once (a closed one means Docker's proxy
    /// answered but nothing in the container listens yet).
    pub fn port(port: u16) -> Self {
        WaitFor::Port(port)
    }

    /// Docker's health status is `healthy`; needs a healthcheck in the image
    /// or from [`ContainerSpec::healthcheck`].
    pub fn healthy() -> Self {
        WaitFor::Healthy
    }

    /// `cmd`, run in the container, exits 0.
    pub fn exec<I, S>(cmd: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        WaitFor::Exec(cmd.into_iter().map(Into::into).collect())
    }

    /// Refuses a condition that can never hold for this spec.
    pub(crate) fn check(&self, spec: &ContainerSpec) -> Result<()> {
        match self {
            WaitFor::LogLine { text, times } if text.is_empty() || *times == 0 => {
                Err(Error::invalid(
                    "wait_for",
                    self.to_string(),
                    "the text must be non-empty and times at least 1",
                ))
            }
            WaitFor::Port(p) if !spec.exposed.contains(p) => Err(Error::invalid(
                "wait_for",
                self.to_string(),
                format!("port {p} is not exposed; add `.expose({p})`"),
            )),
            WaitFor::Exec(cmd) if cmd.is_empty() => {
                Err(Error::invalid("wait_for", "exec", "the command is empty"))
            }
            _ => Ok(()),
        }
    }
}

impl std::fmt::Display for WaitFor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WaitFor::LogLine { text, times: 1 } => write!(f, "log line containing {text:?}"),
            WaitFor::LogLine { text, times } => write!(f, "{times} log lines containing {text:?}"),
            WaitFor::Port(p) => write!(f, "port {p}/tcp accepting connections"),
            WaitFor::Healthy => write!(f, "health status healthy"),
            WaitFor::Exec(cmd) => write!(f, "`{}` exiting 0", command_line(cmd)),
        }
    }
}
