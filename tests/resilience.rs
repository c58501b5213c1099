//! Retries and the circuit breaker, with faults injected for real: a proxy
//! in front of the Docker socket refuses, fails, delays, swallows and
//! black-holes requests.
//!
//! dockfix's engine, settings and breaker are per process, so every
//! scenario runs in a child process of this test binary that owns its own
//! proxy and points dockfix at it with `Config::docker_host`.

mod support;

use std::time::{Duration, Instant};

use dockfix::{BreakerState, Config, ContainerSpec, Error, Result};
use support::fault_proxy::FaultProxy;
use support::{CASE_LABEL, is_child, list_by_label, run_child, unique};

/// Runs scenario `$child` in a child process and fails if it failed.
macro_rules! scenario {
    ($child:ident) => {
        run_child!($child, &[("DOCKFIX_SWEEP_ON_START", "0")]).assert_success()
    };
}

/// In a child: a proxy, dockfix pointed at it with `config`, and one call
/// made so the connection is up before faults are injected.
async fn through_proxy(config: Config) -> FaultProxy {
    let proxy = FaultProxy::start();
    config
        .docker_host(proxy.docker_host())
        .install()
        .expect("install config");
    dockfix::list_managed()
        .await
        .expect("the first call through the proxy");
    proxy
}

fn spec(case: &str) -> ContainerSpec {
    support::sleeper().label(CASE_LABEL, case)
}

#[test]
fn three_503s_on_create_still_start_exactly_one_container() {
    scenario!(child_503s_on_create);
}

#[tokio::test]
#[ignore = "run as a child process by three_503s_on_create_still_start_exactly_one_container"]
async fn child_503s_on_create() -> Result<()> {
    if !is_child() {
        return Ok(());
    }
    let proxy = through_proxy(Config::from_env()).await;
    let case = unique("503");
    let before = dockfix::call_stats();
    proxy.fail_next(3, 503);
    let c = spec(&case).start().await?;
    assert_eq!(
        list_by_label(CASE_LABEL, &case).await,
        vec![c.id().to_owned()]
    );
    assert_eq!(
        proxy.count("POST", "/containers/create"),
        4,
        "3 refused and 1 forwarded"
    );
    assert_eq!(dockfix::call_stats().retries - before.retries, 3);
    assert_eq!(dockfix::call_stats().breaker, BreakerState::Closed);
    c.remove().await
}

#[test]
fn a_500_is_retried_as_its_message_says() {
    scenario!(child_500s_by_message);
}

#[tokio::test]
#[ignore = "run as a child process by a_500_is_retried_as_its_message_says"]
async fn child_500s_by_message() -> Result<()> {
    if !is_child() {
        return Ok(());
    }
    let proxy = through_proxy(Config::from_env()).await;
    let creates = || proxy.count("POST", "/containers/create");

    // Docker's words for a mistake: one attempt, and the daemon's words.
    let started = Instant::now();
    proxy.fail_next_saying(
        5,
        500,
        "unable to find user nosuchuser: no matching entries in passwd file",
    );
    let err = spec(&unique("never")).start().await.unwrap_err();
    assert_eq!(creates(), 1, "{err}");
    assert_eq!(err.status(), Some(500));
    assert!(
        err.to_string().contains("unable to find user nosuchuser"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_millis(500));
    proxy.clear_faults();

    // A 500 nobody knows: retried twice, quickly, then its words. (The
    // name of a failed create is removed in the background: let that
    // pass first, so the faults meet creates only.)
    dockfix::wait_for_removals(Duration::from_secs(10)).await;
    proxy.reset_log();
    let started = Instant::now();
    proxy.fail_next(5, 500);
    let err = spec(&unique("unknown")).start().await.unwrap_err();
    assert_eq!(creates(), 3, "{err}");
    assert!(
        err.to_string().contains("injected 500")
            && err.to_string().contains("gave up after 3 attempts"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    proxy.clear_faults();

    // The daemon is busy: retried as a 503 is, until it works.
    dockfix::wait_for_removals(Duration::from_secs(10)).await;
    proxy.reset_log();
    let case = unique("busy");
    proxy.fail_next_saying(4, 500, "error mounting: device or resource busy");
    let c = spec(&case).start().await?;
    assert_eq!(creates(), 5, "4 refused and 1 forwarded");
    assert_eq!(
        list_by_label(CASE_LABEL, &case).await,
        vec![c.id().to_owned()]
    );
    c.remove().await
}

#[test]
fn an_exec_timeout_bounds_the_whole_exec_even_a_slow_daemon() {
    scenario!(child_exec_timeout_on_a_slow_daemon);
}

#[tokio::test]
#[ignore = "run as a child process by an_exec_timeout_bounds_the_whole_exec_even_a_slow_daemon"]
async fn child_exec_timeout_on_a_slow_daemon() -> Result<()> {
    if !is_child() {
        return Ok(());
    }
    let proxy = through_proxy(Config::from_env()).await;
    let c = spec(&unique("slowexec")).start().await?;
    // Every answer comes 2 s late: creating the exec alone outlasts the
    // 1 s the test allows the whole command.
    proxy.delay(Duration::from_secs(2));
    let started = Instant::now();
    let err = c
        .exec(["true"])
        .timeout(Duration::from_secs(1))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_millis(1800),
        "took {took:?}"
    );
    match err {
        // Cut off before it was started: nothing of it runs.
        Error::ExecTimedOut { killed, .. } => assert!(killed),
        other => panic!("expected ExecTimedOut, got {other}"),
    }
    proxy.delay(Duration::ZERO);
    c.remove().await
}

#[test]
fn a_lost_create_response_still_yields_exactly_one_container() {
    scenario!(child_lost_create_response);
}

#[tokio::test]
#[ignore = "run as a child process by a_lost_create_response_still_yields_exactly_one_container"]
async fn child_lost_create_response() -> Result<()> {
    if !is_child() {
        return Ok(());
    }
    let proxy = through_proxy(Config::from_env()).await;
    let case = unique("lost");
    proxy.swallow_next_create();
    let c = spec(&case).start().await?;
    // The daemon made the container on the first attempt; the retry found
    // it by name and label instead of making a second one.
    assert_eq!(proxy.count("POST", "/containers/create"), 2);
    assert_eq!(
        list_by_label(CASE_LABEL, &case).await,
        vec![c.id().to_owned()]
    );
    c.exec_ok(["true"]).await?;
    c.remove().await
}

#[test]
fn a_missing_image_is_not_retried() {
    scenario!(child_missing_image);
}

#[tokio::test]
#[ignore = "run as a child process by a_missing_image_is_not_retried"]
async fn child_missing_image() -> Result<()> {
    if !is_child() {
        return Ok(());
    }
    let proxy = through_proxy(Config::from_env()).await;
    proxy.reset_log();
    let err = ContainerSpec::new("dockfix-test/not-here:1")
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RegistryUnavailable { .. }), "{err}");
    // One create (404), one pull attempt (which fails at the registry),
    // and nothing again.
    assert_eq!(proxy.count("POST", "/containers/create"), 1);
    assert_eq!(proxy.count("POST", "/images/create"), 1);
    assert_eq!(dockfix::call_stats().retries, 0);
    Ok(())
}

/// Awaits `call` against a daemon that never answers, with a per-call
/// timeout of 1 s: it must fail after that second, saying so, and count
/// as this process's one timeout.
async fn assert_cut_off_after_one_second<T: std::fmt::Debug>(
    call: impl std::future::Future<Output = Result<T>>,
) {
    let started = Instant::now();
    let err = call.await.unwrap_err();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_secs(3),
        "took {took:?}"
    );
    assert!(
        err.to_string()
            .contains("no answer within the per-call timeout of 1s"),
        "{err}"
    );
    assert_eq!(dockfix::call_stats().timeouts, 1);
}

#[test]
fn a_black_holed_call_fails_after_the_per_call_timeout() {
    scenario!(child_black_hole);
}

#[tokio::test]
#[ignore = "run as a child process by a_black_holed_call_fails_after_the_per_call_timeout"]
async fn child_black_hole() -> Result<()> {
    if !is_child() {
        return Ok(());
    }
    let config = Config::from_env()
        .call_timeout(Duration::from_secs(1))
        .retry_max_attempts(1);
    let proxy = through_proxy(config).await;
    let c = spec(&unique("hole")).start().await?;
    proxy.black_hole(true);
    assert_cut_off_after_one_second(c.state()).await;
    proxy.black_hole(false);
    c.remove().await
}

#[test]
fn a_silent_stream_fails_at_the_per_call_timeout_and_streams_pass_the_breaker() {
    scenario!(child_silent_stream);
}

#[tokio::test]
#[ignore = "run as a child process by a_silent_stream_fails_at_the_per_call_timeout_and_streams_pass_the_breaker"]
async fn child_silent_stream() -> Result<()> {
    if !is_child() {
        return Ok(());
    }
    use futures::StreamExt;
    let config = Config::from_env()
        .call_timeout(Duration::from_secs(1))
        .retry_max_attempts(1)
        .breaker_threshold(1)
        .breaker_cooldown(Duration::from_secs(1));
    let proxy = through_proxy(config).await;
    let c = spec(&unique("silent"))
        .cmd(["sh", "-c", "echo hello; exec sleep 300"])
        .start()
        .await?;
    // A log read whose first frame never comes is cut off at the per-call
    // timeout, and the silence counts against the breaker.
    proxy.black_hole(true);
    assert_cut_off_after_one_second(c.logs()).await;
    assert!(matches!(
        dockfix::call_stats().breaker,
        BreakerState::Open { .. }
    ));
    // While it is open, streams are refused at once too: a read of the
    // log, and a followed log, which has no time bound of its own.
    let started = Instant::now();
    assert!(matches!(c.logs().await, Err(Error::CircuitOpen { .. })));
    let first = c.follow_logs().next().await;
    assert!(
        matches!(first, Some(Err(Error::CircuitOpen { .. }))),
        "{first:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(100));
    // After the cool-down a stream is the probe, and it closes the breaker.
    proxy.black_hole(false);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(c.logs().await?.stdout, "hello\n");
    assert_eq!(dockfix::call_stats().breaker, BreakerState::Closed);
    c.remove().await
}

#[test]
fn a_dead_daemon_opens_the_breaker_and_a_probe_closes_it() {
    scenario!(child_dead_endpoint);
}

#[tokio::test]
#[ignore = "run as a child process by a_dead_daemon_opens_the_breaker_and_a_probe_closes_it"]
async fn child_dead_endpoint() -> Result<()> {
    if !is_child() {
        return Ok(());
    }
    let config = Config::from_env()
        .breaker_threshold(3)
        .breaker_cooldown(Duration::from_secs(1))
        .retry_max_attempts(2);
    let proxy = through_proxy(config).await;
    let c = spec(&unique("dead")).start().await?;
    proxy.kill();
    // Each failing call is two attempts: the second call opens the breaker.
    for _ in 0..2 {
        assert!(matches!(c.state().await, Err(Error::Docker { .. })));
    }
    assert!(matches!(
        dockfix::call_stats().breaker,
        BreakerState::Open { .. }
    ));
    let mut slowest = Duration::ZERO;
    for _ in 0..100 {
        let started = Instant::now();
        let err = c.state().await.unwrap_err();
        slowest = slowest.max(started.elapsed());
        assert!(matches!(err, Error::CircuitOpen { .. }), "{err}");
    }
    assert!(
        slowest < Duration::from_millis(10),
        "slowest refused call took {slowest:?}"
    );
    let msg = c.state().await.unwrap_err().to_string();
    assert!(
        msg.contains(&proxy.docker_host()) && msg.contains("next probe in"),
        "{msg}"
    );
    proxy.revive();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(
        c.state().await?.running,
        "the probe should go through and succeed"
    );
    assert_eq!(dockfix::call_stats().breaker, BreakerState::Closed);
    assert!(dockfix::call_stats().breaker_opened >= 1);
    c.remove().await
}

#[test]
fn a_drop_while_the_breaker_is_open_returns_at_once_and_removes_when_the_daemon_is_back() {
    scenario!(child_drop_while_open);
}

#[tokio::test]
#[ignore = "run as a child process by a_drop_while_the_breaker_is_open_returns_at_once_and_removes_when_the_daemon_is_back"]
async fn child_drop_while_open() -> Result<()> {
    if !is_child() {
        return Ok(());
    }
    let config = Config::from_env()
        .breaker_threshold(2)
        .breaker_cooldown(Duration::from_millis(500))
        .retry_max_attempts(1);
    let proxy = through_proxy(config).await;
    let case = unique("dropopen");
    let c = spec(&case).start().await?;
    proxy.kill();
    while !matches!(dockfix::call_stats().breaker, BreakerState::Open { .. }) {
        let _ = c.state().await;
    }
    let started = Instant::now();
    drop(c);
    assert!(
        started.elapsed() < Duration::from_millis(5),
        "Drop took {:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Still there: the daemon is unreachable, the removal waits.
    assert_eq!(list_by_label(CASE_LABEL, &case).await.len(), 1);
    proxy.revive();
    assert_eq!(dockfix::wait_for_removals(Duration::from_secs(20)).await, 0);
    assert!(list_by_label(CASE_LABEL, &case).await.is_empty());
    Ok(())
}

#[test]
fn a_waiting_drop_gives_up_at_its_deadline_and_leaves_the_container_labelled() {
    let child = run_child!(
        child_waiting_drop_gives_up,
        &[
            ("DOCKFIX_SWEEP_ON_START", "0"),
            ("DOCKFIX_REMOVE_DEADLINE", "2"),
            ("DOCKFIX_EXIT_TIMEOUT", "1"),
        ],
    );
    child.assert_success();
    let id = child.value("LEFT").to_owned();
    let labels = support::block_on(support::labels_of(&id));
    assert_eq!(
        labels["dockfix.managed"], "true",
        "left for the sweep, still labelled"
    );
    support::block_on(support::force_remove(&id));
}

#[tokio::test]
#[ignore = "run as a child process by a_waiting_drop_gives_up_at_its_deadline_and_leaves_the_container_labelled"]
async fn child_waiting_drop_gives_up() -> Result<()> {
    if !is_child() {
        return Ok(());
    }
    let config = Config::from_env()
        .breaker_threshold(2)
        .breaker_cooldown(Duration::from_millis(300))
        .retry_max_attempts(1);
    let proxy = through_proxy(config).await;
    let c = spec(&unique("giveup")).wait_on_drop(true).start().await?;
    let id = c.id().to_owned();
    proxy.kill();
    let started = Instant::now();
    drop(c);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(5),
        "Drop took {took:?}"
    );
    println!("LEFT={id}");
    Ok(())
}
