//! Readiness: what `start()` waits for after the container is running.

use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum, HealthStatusEnum};
use futures::StreamExt;
use tokio::io::AsyncReadExt;

use crate::error::{Error, Result, command_line};
use crate::exec::{self, ExecRequest};
use crate::logs::{self, LogSource};
use crate::spec::ContainerSpec;

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

/// Why a wait failed, before the log tail is attached.
pub(crate) struct Failure {
    pub(crate) condition: String,
    pub(crate) reason: String,
}

impl Failure {
    fn new(condition: impl std::fmt::Display, reason: impl Into<String>) -> Self {
        Failure {
            condition: condition.to_string(),
            reason: reason.into(),
        }
    }
}

/// The container as seen right after `start`: running, with its ports.
pub(crate) fn running_or_failure(
    info: &ContainerInspectResponse,
) -> std::result::Result<(), Failure> {
    let state = info.state.as_ref();
    if state.and_then(|s| s.running) == Some(true) {
        return Ok(());
    }
    Err(Failure::new("running", exited_reason(info)))
}

fn exited_reason(info: &ContainerInspectResponse) -> String {
    let state = info.state.as_ref();
    let status = state
        .and_then(|s| s.status)
        .map_or_else(|| "unknown".to_owned(), |s| s.to_string());
    let code = state.and_then(|s| s.exit_code).unwrap_or(-1);
    let oom = if state.and_then(|s| s.oom_killed) == Some(true) {
        " (killed: out of memory)"
    } else {
        ""
    };
    let err = state
        .and_then(|s| s.error.as_deref())
        .filter(|e| !e.is_empty())
        .map(|e| format!(": {e}"))
        .unwrap_or_default();
    format!("the container is {status} with exit code {code}{oom}{err}")
}

/// Waits for every condition in order, until `deadline`.
pub(crate) async fn wait_all(
    docker: &Docker,
    id: &str,
    name: &str,
    conditions: &[WaitFor],
    ports: &std::collections::HashMap<u16, u16>,
    deadline: Instant,
    timeout: Duration,
) -> std::result::Result<(), Failure> {
    for condition in conditions {
        // What the last poll saw, for the timeout message.
        let mut last = String::new();
        let wait = wait_one(docker, id, name, condition, ports, &mut last);
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, wait).await {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => return Err(Failure::new(condition, reason)),
            Err(_) => {
                let last = if last.is_empty() {
                    String::new()
                } else {
                    format!("; {last}")
                };
                return Err(Failure::new(
                    condition,
                    format!("the startup timeout of {timeout:?} passed{last}"),
                ));
            }
        }
    }
    Ok(())
}

/// Polling interval for conditions that are polled.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((20u64 << attempt.min(4)).min(250))
}

async fn wait_one(
    docker: &Docker,
    id: &str,
    name: &str,
    condition: &WaitFor,
    ports: &std::collections::HashMap<u16, u16>,
    last: &mut String,
) -> std::result::Result<(), String> {
    match condition {
        WaitFor::LogLine { text, times } => {
            crate::retry::gate().map_err(|e| e.to_string())?;
            let mut lines = logs::line_stream(docker.clone(), id.to_owned(), true, None);
            let mut seen = 0;
            while let Some(line) = lines.next().await {
                let line = line.map_err(|e| e.to_string())?;
                if line.source != LogSource::Stdin && line.text.contains(text.as_str()) {
                    seen += 1;
                    if seen >= *times {
                        return Ok(());
                    }
                }
            }
            let info = inspect(docker, id).await?;
            Err(format!(
                "the log ended after {seen} of {times} matching line(s); {}",
                exited_reason(&info)
            ))
        }
        WaitFor::Port(port) => {
            let host_port = *ports
                .get(port)
                .ok_or_else(|| format!("port {port} has no host mapping"))?;
            let host = crate::engine::daemon_host().unwrap_or_else(|| "127.0.0.1".to_owned());
            for attempt in 0.. {
                if port_answers(&host, host_port).await {
                    return Ok(());
                }
                *last = format!("{host}:{host_port} refused or closed the last connection");
                still_running(docker, id).await?;
                tokio::time::sleep(backoff(attempt)).await;
            }
            unreachable!("the loop above only ends by returning")
        }
        WaitFor::Healthy => {
            for attempt in 0.. {
                let info = inspect(docker, id).await?;
                if info.state.as_ref().and_then(|s| s.running) != Some(true) {
                    return Err(exited_reason(&info));
                }
                let health = info.state.as_ref().and_then(|s| s.health.as_ref());
                match health.and_then(|h| h.status) {
                    Some(HealthStatusEnum::HEALTHY) => return Ok(()),
                    // Unhealthy is not final: the next passing check makes the
                    // container healthy again, so keep waiting and report it.
                    Some(HealthStatusEnum::UNHEALTHY) => {
                        let output = health
                            .and_then(|h| h.log.as_ref())
                            .and_then(|l| l.last())
                            .and_then(|r| r.output.clone())
                            .unwrap_or_default();
                        *last = format!(
                            "the container is unhealthy; the last check said: {}",
                            output.trim()
                        );
                    }
                    None | Some(HealthStatusEnum::NONE | HealthStatusEnum::EMPTY) => {
                        return Err(
                            "the container has no healthcheck; add one with `.healthcheck(..)` or in the image".to_owned(),
                        );
                    }
                    Some(HealthStatusEnum::STARTING) => {}
                }
                tokio::time::sleep(backoff(attempt)).await;
            }
            unreachable!("the loop above only ends by returning")
        }
        WaitFor::Exec(cmd) => {
            for attempt in 0.. {
                match exec::run(docker, id, name, ExecRequest::new(cmd.clone(), false)).await {
                    Ok(out) if out.success() => return Ok(()),
                    Ok(out) => {
                        *last = format!("the last run exited {}", out.exit_code);
                        if !out.stderr.trim().is_empty() {
                            last.push_str(&format!(
                                ": {}",
                                crate::error::tail(out.stderr.trim(), 3)
                            ));
                        }
                    }
                    Err(e) => *last = format!("the last run failed: {e}"),
                }
                still_running(docker, id)
                    .await
                    .map_err(|e| format!("{e}; {last}"))?;
                tokio::time::sleep(backoff(attempt)).await;
            }
            unreachable!("the loop above only ends by returning")
        }
    }
}

async fn inspect(
    docker: &Docker,
    id: &str,
) -> std::result::Result<ContainerInspectResponse, String> {
    crate::container::inspect(docker, id, id)
        .await
        .map_err(|e| format!("inspect failed: {e}"))
}

async fn still_running(docker: &Docker, id: &str) -> std::result::Result<(), String> {
    let info = inspect(docker, id).await?;
    match info.state.as_ref().and_then(|s| s.status) {
        Some(ContainerStateStatusEnum::RUNNING) => Ok(()),
        _ => Err(exited_reason(&info)),
    }
}

/// True when a TCP connection to `host:port` is accepted and not closed
/// straight away. Docker's userland proxy accepts every connection and
/// closes it when nothing listens in the container, so an accepted
/// connection alone proves nothing.
async fn port_answers(host: &str, port: u16) -> bool {
    let connect = tokio::net::TcpStream::connect((host, port));
    let Ok(Ok(mut stream)) = tokio::time::timeout(Duration::from_secs(1), connect).await else {
        return false;
    };
    let mut buf = [0u8; 1];
    match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await {
        Err(_) => true,
        Ok(Ok(n)) => n > 0,
        Ok(Err(_)) => false,
    }
}
