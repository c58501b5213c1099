//! Logs, following logs, stop and state.

mod support;

use std::time::Duration;

use dockfix::{ContainerSpec, LogSource, Result};
use futures::StreamExt;
use support::IMAGE;

#[tokio::test]
async fn logs_keep_stdout_and_stderr_apart() -> Result<()> {
    let c = ContainerSpec::new(IMAGE)
        .cmd([
            "sh",
            "-c",
            "echo to-out; echo to-err >&2; echo done; exec sleep 300",
        ])
        .network_mode("none")
        .wait_for(dockfix::WaitFor::log_line("done"))
        .start()
        .await?;
    let logs = c.logs().await?;
    assert_eq!(logs.stdout, "to-out\ndone\n");
    assert_eq!(logs.stderr, "to-err\n");
    Ok(())
}

#[tokio::test]
async fn follow_logs_yields_lines_as_they_are_written_and_ends_when_the_container_stops()
-> Result<()> {
    let c = ContainerSpec::new(IMAGE)
        .cmd([
            "sh",
            "-c",
            "i=0; while [ $i -lt 3 ]; do echo tick$i; echo tock$i >&2; i=$((i+1)); sleep 0.2; done",
        ])
        .network_mode("none")
        .start()
        .await?;
    let lines: Vec<_> =
        tokio::time::timeout(Duration::from_secs(10), c.follow_logs().collect::<Vec<_>>())
            .await
            .expect("the stream did not end when the container stopped");
    let lines: Vec<_> = lines.into_iter().collect::<Result<_>>()?;
    let out: Vec<&str> = lines
        .iter()
        .filter(|l| l.source == LogSource::Stdout)
        .map(|l| l.text.as_str())
        .collect();
    let err: Vec<&str> = lines
        .iter()
        .filter(|l| l.source == LogSource::Stderr)
        .map(|l| l.text.as_str())
        .collect();
    assert_eq!(out, ["tick0", "tick1", "tick2"]);
    assert_eq!(err, ["tock0", "tock1", "tock2"]);
    Ok(())
}

#[tokio::test]
async fn stop_with_a_grace_period_then_state_says_exited() -> Result<()> {
    // sh ignores SIGTERM as pid 1, so the grace period has to pass first.
    let c = ContainerSpec::new(IMAGE)
        .cmd(["sh", "-c", "sleep 300"])
        .network_mode("none")
        .start()
        .await?;
    let state = c.state().await?;
    assert!(state.running);
    assert_eq!(state.status, "running");
    assert_eq!(state.exit_code, None);
    let started = std::time::Instant::now();
    c.stop(Duration::from_secs(1)).await?;
    assert!(started.elapsed() >= Duration::from_millis(900));
    let state = c.state().await?;
    assert!(!state.running);
    assert_eq!(state.status, "exited");
    assert_eq!(state.exit_code, Some(137));
    // Stopping again is fine.
    c.stop(Duration::from_secs(1)).await?;
    Ok(())
}

#[test]
fn the_blocking_api_starts_execs_and_reads_logs_without_a_runtime() -> Result<()> {
    let c = ContainerSpec::new(IMAGE)
        .cmd(["sh", "-c", "echo hello; exec sleep 300"])
        .network_mode("none")
        .wait_for(dockfix::WaitFor::log_line("hello"))
        .start_blocking()?;
    let out = c
        .exec(["sh", "-c", "cat; exit 2"])
        .stdin("abc")
        .timeout(Duration::from_secs(5))
        .run()?;
    assert_eq!((out.exit_code, out.stdout.as_str()), (2, "abc"));
    assert!(c.exec_ok(["false"]).run().is_err());
    assert_eq!(c.logs()?.stdout, "hello\n");
    assert!(c.state()?.running);
    c.remove()
}

#[tokio::test]
async fn stats_of_a_busy_container_show_cpu_and_memory_within_its_limit() -> Result<()> {
    if support::skip_on_podman("a one-shot stats sample of Podman 4.3 has no previous CPU reading, so CPU % cannot be computed from it").await {
        return Ok(());
    }
    let c = ContainerSpec::new(IMAGE)
        .cmd(["sh", "-c", "while :; do :; done"])
        .network_mode("none")
        .memory("64m")
        .start()
        .await?;
    let stats = c.stats().await?;
    assert!(stats.cpu_percent > 10.0, "{stats:?}");
    assert_eq!(stats.memory_limit, 64 << 20, "{stats:?}");
    assert!(
        stats.memory_usage > 0 && stats.memory_usage <= stats.memory_limit,
        "{stats:?}"
    );
    assert!(
        stats.memory_percent > 0.0 && stats.memory_percent <= 100.0,
        "{stats:?}"
    );
    Ok(())
}
