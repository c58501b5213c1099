//! Readiness: waiting, after the container runs, for each condition of
//! its spec ([`WaitFor`]).

use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::io::AsyncReadExt;

use super::TestContainer;
use super::logs::{self, LogSource};
use crate::config;
use crate::docker::{
    ContainerInspectResponse, ContainerStateStatusEnum, HealthStatusEnum, containers,
};
use crate::spec::WaitFor;

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
    c: &TestContainer,
    conditions: &[WaitFor],
    deadline: Instant,
    timeout: Duration,
) -> std::result::Result<(), Failure> {
    for condition in conditions {
        // What the last poll saw, for the timeout message.
        let mut last = String::new();
        let wait = wait_one(c, condition, &mut last);
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
    c: &TestContainer,
    condition: &WaitFor,
    last: &mut String,
) -> std::result::Result<(), String> {
    let id = c.id();
    match condition {
        WaitFor::LogLine { text, times } => {
            let mut lines = logs::line_stream(id.to_owned(), c.name().to_owned(), true, None);
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
            let info = inspect(id).await?;
            Err(format!(
                "the log ended after {seen} of {times} matching line(s); {}",
                exited_reason(&info)
            ))
        }
        WaitFor::Port(port) => {
            let host_port = c.host_port(*port).map_err(|e| e.to_string())?;
            let host = config::daemon_host().unwrap_or_else(|| "127.0.0.1".to_owned());
            for attempt in 0.. {
                if port_answers(&host, host_port).await {
                    return Ok(());
                }
                *last = format!("{host}:{host_port} refused or closed the last connection");
                still_running(id).await?;
                tokio::time::sleep(backoff(attempt)).await;
            }
            unreachable!("the loop above only ends by returning")
        }
        WaitFor::Healthy => {
            for attempt in 0.. {
                let info = inspect(id).await?;
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
                match c.exec(cmd.iter().cloned()).run_on_engine().await {
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
                still_running(id)
                    .await
                    .map_err(|e| format!("{e}; {last}"))?;
                tokio::time::sleep(backoff(attempt)).await;
            }
            unreachable!("the loop above only ends by returning")
        }
    }
}

async fn inspect(id: &str) -> std::result::Result<ContainerInspectResponse, String> {
    containers::inspect_container(id, id)
        .await
        .map_err(|e| format!("inspect failed: {e}"))
}

async fn still_running(id: &str) -> std::result::Result<(), String> {
    let info = inspect(id).await?;
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
