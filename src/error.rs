//! The one error type: every failure is a value a test author can act on,
//! and prints what went wrong with the context needed to fix it.

use std::time::Duration;

use crate::labels::ResourceKind;

/// The underlying error of a failed Docker call, as the client gave it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The result type of every fallible dockfix call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, with the context a test author needs to act.
///
/// Docker answers are matched on their HTTP status code first; only where
/// Docker gives one status to failures that heal and to failures that never
/// will does its message decide (see the crate's README).
///
/// `Display` prints the whole message, log tails on lines of their own; so
/// does `Debug`, which is what a test that returns `dockfix::Result<()>`
/// prints when it fails, followed by the chain of causes. The fields stay
/// reachable by matching.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A value given to a builder was refused before any Docker call.
    #[error("invalid {field} `{}`: {reason}", printable(.value))]
    InvalidSpec {
        /// The builder field, e.g. `bind`, `memory`, `env`.
        field: &'static str,
        /// The offending value, as given (its Display shows control
        /// characters such as NUL escaped, `\0`).
        value: String,
        /// Why it was refused.
        reason: String,
    },

    /// The image is not on the daemon and could not be pulled.
    #[error("image `{image}` is not on the daemon and could not be pulled: {reason}")]
    ImageNotFound {
        /// The image reference as given to the builder.
        image: String,
        /// What the pull attempt answered.
        reason: String,
    },

    /// The registry could not be reached, or refused the pull.
    #[error("image `{image}` could not be pulled: {reason}")]
    RegistryUnavailable {
        /// The image reference.
        image: String,
        /// What the daemon or the registry answered, and the pull policy.
        reason: String,
    },

    /// The Docker daemon could not be reached.
    #[error("docker daemon at {endpoint} is unavailable: {reason}; {hint}")]
    DockerUnavailable {
        /// The endpoint that was tried, e.g. `unix:///var/run/docker.sock`.
        endpoint: String,
        /// What failed.
        reason: String,
        /// What to do about it.
        hint: String,
    },

    /// A Docker call failed: the daemon answered with an error, or the
    /// request got no answer.
    #[error("docker {operation} on {target} failed{}: {message}", status.map(|s| format!(" with status {s}")).unwrap_or_default())]
    Docker {
        /// The call, e.g. `create`, `start`, `exec`.
        operation: &'static str,
        /// The container name or id, or the image, the call was about.
        target: String,
        /// The HTTP status code of the answer, when there was one.
        status: Option<u16>,
        /// The daemon's words, or what happened to the request.
        message: String,
        /// The client's error, when there was one (a `bollard::errors::Error`).
        #[source]
        source: Option<BoxError>,
    },

    /// The container did not become ready: it exited, or the startup
    /// timeout passed first. The container has been removed (or, if the
    /// daemon refused that, its removal is queued).
    #[error(
        "container {container} did not become ready ({condition}): {reason}{}",
        log_section(logs)
    )]
    NotReady {
        /// The container name.
        container: String,
        /// The readiness condition that was awaited.
        condition: String,
        /// Why it failed: the container exited, or the timeout passed.
        reason: String,
        /// The last 20 lines of the container log.
        logs: String,
    },

    /// An exec did not finish within its timeout, which bounds all of it:
    /// creating and starting the exec, its output, its exit code.
    #[error("exec `{command}` in {container} timed out after {timeout:?}{}", if *killed { "; nothing of it runs any more" } else { "; its process could not be killed and may still run" })]
    ExecTimedOut {
        /// The container name.
        container: String,
        /// The command line.
        command: String,
        /// The limit that passed.
        timeout: Duration,
        /// Whether nothing of the command runs any more: its process and
        /// children were killed, or it never started.
        killed: bool,
    },

    /// The circuit breaker is open: recent calls to the daemon failed, so
    /// this one was refused without trying. It is retried by nothing; the
    /// next call after the cool-down probes the daemon.
    #[error(
        "docker daemon at {endpoint} is failing: circuit open for {open_for:.1?} after {failures} consecutive failures; next probe in {next_probe_in:.1?}"
    )]
    CircuitOpen {
        /// The daemon endpoint.
        endpoint: String,
        /// Consecutive transient failures seen.
        failures: u32,
        /// How long the circuit has been open.
        open_for: Duration,
        /// When the next probe call may go through.
        next_probe_in: Duration,
    },

    /// Copying files into or out of a container failed.
    #[error("copying {path} for container {container} failed: {message}")]
    Copy {
        /// The container name.
        container: String,
        /// The host or container path being copied.
        path: String,
        /// What went wrong.
        message: String,
    },

    /// No pool member came back within the acquire timeout. A member that
    /// fails to start is not this: its error reaches the acquirer waiting
    /// for it at once.
    #[error(
        "pool {pool} had no free container within {waited:?}: {in_use} of its {max_size} are in use{}; raise max_size, return holders sooner, or raise acquire_timeout",
        if in_use < max_size { " and the others are being started or reset" } else { "" }
    )]
    PoolTimeout {
        /// The pool's name.
        pool: String,
        /// Its size limit.
        max_size: usize,
        /// How many members were held when the time ran out (for a shared
        /// pool, by every process of the host).
        in_use: usize,
        /// How long the caller waited.
        waited: Duration,
    },

    /// The pool was closed.
    #[error("pool {pool} is closed")]
    PoolClosed {
        /// The pool's name.
        pool: String,
    },

    /// A checked exec exited non-zero.
    #[error(
        "exec `{command}` in {container} exited with code {exit_code}{}",
        stderr_section(stderr)
    )]
    ExecFailed {
        /// The container name.
        container: String,
        /// The command line.
        command: String,
        /// The exit code.
        exit_code: i64,
        /// The tail of its standard error.
        stderr: String,
    },

    /// `host_port` was asked for a port that was not exposed.
    #[error(
        "port {port}/tcp of {container} is not published; call `expose({port})` on the builder"
    )]
    PortNotExposed {
        /// The container name.
        container: String,
        /// The container port asked for.
        port: u16,
    },

    /// Removing a container, network, volume or image failed. It keeps its
    /// labels, so `dockfix sweep` can remove it later.
    #[error("removing {kind} {name} failed: {message}")]
    CleanupFailed {
        /// What was being removed.
        kind: ResourceKind,
        /// Its name or id.
        name: String,
        /// What the daemon answered.
        message: String,
    },

    /// A file or directory on this machine could not be read or written
    /// (a build context, an archive).
    #[error("{action} {path} failed: {message}")]
    HostPath {
        /// What was being done, e.g. `reading the build context`.
        action: &'static str,
        /// The host path.
        path: String,
        /// What the operating system answered.
        message: String,
    },
}

impl std::fmt::Debug for Error {
    /// The same text as `Display`, then each underlying cause on a line of
    /// its own: `?` in a test prints this, and escaped `\n`s would make a
    /// log tail unreadable.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")?;
        let mut cause = std::error::Error::source(self);
        while let Some(e) = cause {
            write!(f, "\ncaused by: {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}

fn log_section(logs: &str) -> String {
    if logs.trim().is_empty() {
        "\n(the container log is empty)".to_owned()
    } else {
        format!(
            "\n--- last lines of the container log ---\n{}",
            logs.trim_end()
        )
    }
}

fn stderr_section(stderr: &str) -> String {
    if stderr.trim().is_empty() {
        String::new()
    } else {
        format!("\n--- stderr ---\n{}", stderr.trim_end())
    }
}

impl Error {
    /// The HTTP status code of a Docker error answer, if this is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Docker { status, .. } => *status,
            _ => None,
        }
    }

    pub(crate) fn invalid(
        field: &'static str,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::InvalidSpec {
            field,
            value: value.into(),
            reason: reason.into(),
        }
    }

    /// A Docker failure that no client error stands behind: an answer
    /// that came without one, or one that never came.
    pub(crate) fn docker(
        operation: &'static str,
        target: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::Docker {
            operation,
            target: target.into(),
            status: None,
            message: message.into(),
            source: None,
        }
    }

    /// The same error with `more` added to its message: how many attempts
    /// it took, what was tried before.
    pub(crate) fn with_note(mut self, more: &str) -> Self {
        if let Error::Docker { message, .. } = &mut self {
            message.push_str(more);
        }
        self
    }
}

/// Prints a dockfix warning on stderr. Unlike `eprintln!` it cannot panic
/// (a closed pipe), so it is safe in Drop and in the exit hook.
pub(crate) fn warn(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "dockfix: {args}");
}

/// `value` with control characters escaped (`\0`, `\n`), so that what was
/// refused can be read.
fn printable(value: &str) -> String {
    value
        .chars()
        .map(|c| match c {
            '\0' => "\\0".to_owned(),
            c if c.is_control() => c.escape_default().to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// The last `n` lines of `text`.
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].join("\n")
}

/// A command line as a user would type it, quoting words that need it.
pub(crate) fn command_line(cmd: &[String]) -> String {
    cmd.iter()
        .map(|w| {
            if !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
            {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_value_shows_its_control_characters_escaped() {
        let err = Error::invalid("cmd", "sleep\0 5\n", "no");
        assert_eq!(err.to_string(), "invalid cmd `sleep\\0 5\\n`: no");
    }

    #[test]
    fn debug_reads_like_display_with_its_causes() {
        let err = Error::NotReady {
            container: "db".into(),
            condition: "running".into(),
            reason: "the container is exited with exit code 1".into(),
            logs: "FATAL: data directory has wrong ownership\nHINT: chown it".into(),
        };
        let debug = format!("{err:?}");
        assert_eq!(debug, err.to_string());
        assert!(debug.contains("\nFATAL: data directory has wrong ownership\nHINT: chown it"));
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = Error::Docker {
            operation: "create",
            target: "x".into(),
            status: None,
            message: "the connection failed (connection refused)".into(),
            source: Some(Box::new(io)),
        };
        assert_eq!(
            format!("{err:?}"),
            "docker create on x failed: the connection failed (connection refused)\ncaused by: refused"
        );
    }

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 5), "");
    }

    #[test]
    fn command_line_quotes_what_needs_it() {
        let cmd = ["sh", "-c", "echo it's; exit 3"].map(String::from);
        assert_eq!(command_line(&cmd), r"sh -c 'echo it'\''s; exit 3'");
    }
}
