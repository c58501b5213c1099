//! Readiness: log lines, ports, health, exec; and failures that carry the
//! log tail and leave no container behind.

mod support;

use std::time::{Duration, Instant};

use dockfix::{ContainerSpec, Error, Result, WaitFor};
use support::{IMAGE, list_by_label, unique};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn waits_for_the_nth_log_line_on_either_stream() -> Result<()> {
    let started = Instant::now();
    let c = ContainerSpec::new(IMAGE)
        .cmd([
            "sh",
            "-c",
            "sleep 1; echo ready >&2; echo not yet; echo ready; exec sleep 300",
        ])
        .network_mode("none")
        .wait_for(WaitFor::log_line_times("ready", 2))
        .start()
        .await?;
    assert!(started.elapsed() >= Duration::from_secs(1));
    let logs = c.logs().await?;
    assert_eq!(
        (logs.stdout.as_str(), logs.stderr.as_str()),
        ("not yet\nready\n", "ready\n")
    );
    Ok(())
}

#[tokio::test]
async fn waits_until_the_port_really_answers() -> Result<()> {
    // httpd comes up a second after the container: Docker's proxy accepts
    // connections before that, which must not count as ready.
    let c = ContainerSpec::new(IMAGE)
        .cmd(["sh", "-c", "sleep 1; exec httpd -f -p 8080 -h /tmp"])
        .expose(8080)
        .wait_for(WaitFor::port(8080))
        .start()
        .await?;
    let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", c.host_port(8080)?))
        .await
        .unwrap();
    sock.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut response = String::new();
    sock.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1."), "{response:?}");
    Ok(())
}

#[tokio::test]
async fn waits_for_docker_health_status_healthy() -> Result<()> {
    if support::skip_on_podman(
        "Podman 4.3 schedules healthchecks with systemd, which this machine lacks: they never run",
    )
    .await
    {
        return Ok(());
    }
    let c = ContainerSpec::new(IMAGE)
        .cmd(["sh", "-c", "sleep 1; touch /tmp/ok; exec sleep 300"])
        .network_mode("none")
        .healthcheck(["test", "-f", "/tmp/ok"], Duration::from_millis(200))
        .wait_for(WaitFor::healthy())
        .start()
        .await?;
    assert_eq!(c.state().await?.health.as_deref(), Some("healthy"));
    Ok(())
}

#[tokio::test]
async fn waits_for_a_command_to_exit_zero() -> Result<()> {
    let c = ContainerSpec::new(IMAGE)
        .cmd(["sh", "-c", "sleep 1; touch /tmp/ok; exec sleep 300"])
        .network_mode("none")
        .wait_for(WaitFor::exec(["test", "-f", "/tmp/ok"]))
        .start()
        .await?;
    c.exec_ok(["test", "-f", "/tmp/ok"]).await?;
    Ok(())
}

/// Starts `spec` under a fresh case label, expects `NotReady`, and checks
/// that no container of the case exists when the error arrives.
async fn not_ready(spec: ContainerSpec) -> (String, String, String) {
    let case = unique("notready");
    let err = spec
        .label("com.example.case", &case)
        .start()
        .await
        .unwrap_err();
    assert!(
        list_by_label("com.example.case", &case).await.is_empty(),
        "a container was left behind"
    );
    match err {
        Error::NotReady {
            condition,
            reason,
            logs,
            ..
        } => (condition, reason, logs),
        other => panic!("expected NotReady, got {other}"),
    }
}

#[tokio::test]
async fn a_container_that_exits_returns_the_last_20_log_lines_and_is_removed() {
    let (condition, reason, logs) = not_ready(
        ContainerSpec::new(IMAGE)
            .cmd([
                "sh",
                "-c",
                "sleep 0.5; for i in $(seq 1 30); do echo line$i; done; echo fatal; exit 7",
            ])
            .network_mode("none")
            .wait_for(WaitFor::log_line("never printed")),
    )
    .await;
    assert_eq!(condition, "log line containing \"never printed\"");
    assert!(reason.contains("exit code 7"), "{reason}");
    let lines: Vec<&str> = logs.lines().collect();
    assert_eq!(lines.len(), 20, "{logs}");
    assert_eq!(lines[0], "line12");
    assert_eq!(lines[19], "fatal");
}

#[tokio::test]
async fn a_readiness_timeout_names_the_condition_and_removes_the_container() {
    let started = Instant::now();
    let (condition, reason, logs) = not_ready(
        ContainerSpec::new(IMAGE)
            .cmd(["sh", "-c", "echo starting; exec sleep 300"])
            .network_mode("none")
            .wait_for(WaitFor::exec(["test", "-f", "/never"]))
            .startup_timeout(Duration::from_secs(1)),
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(condition, "`test -f /never` exiting 0");
    assert!(reason.contains("startup timeout of 1s"), "{reason}");
    assert!(reason.contains("the last run exited 1"), "{reason}");
    assert_eq!(logs, "starting");
}

#[tokio::test]
async fn healthy_without_a_healthcheck_fails_fast() {
    let started = Instant::now();
    let (_, reason, _) = not_ready(support::sleeper().wait_for(WaitFor::healthy())).await;
    assert!(reason.contains("no healthcheck"), "{reason}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn an_unhealthy_container_times_out_with_the_checks_output() {
    if support::skip_on_podman(
        "Podman 4.3 schedules healthchecks with systemd, which this machine lacks: they never run",
    )
    .await
    {
        return;
    }
    let (_, reason, _) = not_ready(
        support::sleeper()
            .healthcheck(
                ["sh", "-c", "echo db down; exit 1"],
                Duration::from_millis(100),
            )
            .wait_for(WaitFor::healthy())
            .startup_timeout(Duration::from_secs(2)),
    )
    .await;
    assert!(reason.contains("startup timeout of 2s"), "{reason}");
    assert!(
        reason.contains("unhealthy") && reason.contains("db down"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_container_that_cannot_start_is_removed_before_the_error() {
    let case = unique("nostart");
    let err = ContainerSpec::new(IMAGE)
        .cmd(["/no/such/binary"])
        .network_mode("none")
        .label("com.example.case", &case)
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Docker {
                operation: "start",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("/no/such/binary"), "{err}");
    assert!(list_by_label("com.example.case", &case).await.is_empty());
}

#[tokio::test]
async fn a_port_condition_for_an_unexposed_port_is_refused_up_front() {
    let err = ContainerSpec::new(IMAGE)
        .cmd(["sleep", "300"])
        .wait_for(WaitFor::port(8080))
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidSpec {
                field: "wait_for",
                ..
            }
        ),
        "{err}"
    );
}
