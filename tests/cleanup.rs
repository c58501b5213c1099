//! Cleanup: however a guard goes away its container is removed, and the
//! exit hook finishes removals and removes never-dropped guards' containers
//! before the process is gone.
//!
//! The exit-hook tests run this binary again as a child process, because
//! only a process that ends can prove what happens at exit.

mod support;

use std::panic::AssertUnwindSafe;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use dockfix::{ContainerSpec, LABEL_SESSION, Result, TestContainer};
use futures::FutureExt;
use futures::future::try_join_all;
use support::{
    CASE_LABEL, block_on, container_exists, force_remove, is_child, is_running, list_by_label,
    run_child, unique, wait_gone,
};

/// How long a dropped guard's removal may take before a test calls the
/// container leaked.
const GONE: Duration = Duration::from_secs(10);

/// Bound on `wait_for_removals` after dropping many guards at once.
const DRAIN: Duration = Duration::from_secs(60);

/// The spec every test here starts; the `cleanup-` name prefix tells a
/// leak from this file apart from other tests' containers.
fn sleeper() -> ContainerSpec {
    support::sleeper().name_prefix("cleanup")
}

async fn assert_gone_soon(id: &str) {
    assert!(
        wait_gone(id, GONE).await,
        "container {id} still exists {GONE:?} after its guard was dropped"
    );
}

/// Starts `n` containers at once, all labelled `CASE_LABEL=case`.
async fn start_many(n: usize, case: &str) -> Result<Vec<TestContainer>> {
    try_join_all((0..n).map(|_| sleeper().label(CASE_LABEL, case).start())).await
}

fn sorted_ids(guards: &[TestContainer]) -> Vec<String> {
    let mut ids: Vec<String> = guards.iter().map(|c| c.id().to_owned()).collect();
    ids.sort_unstable();
    ids
}

#[tokio::test]
async fn drop_removes_container_in_current_thread_runtime() -> Result<()> {
    let c = sleeper().start().await?;
    let id = c.id().to_owned();
    assert!(container_exists(&id).await);
    drop(c);
    assert_gone_soon(&id).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn drop_removes_container_in_multi_thread_runtime() -> Result<()> {
    let c = sleeper().start().await?;
    let id = c.id().to_owned();
    assert!(container_exists(&id).await);
    drop(c);
    assert_gone_soon(&id).await;
    Ok(())
}

#[test]
fn drop_removes_container_without_a_runtime() -> Result<()> {
    let c = sleeper().start_blocking()?;
    let id = c.id().to_owned();
    assert!(block_on(container_exists(&id)));
    drop(c);
    block_on(assert_gone_soon(&id));
    Ok(())
}

#[test]
fn drop_removes_container_during_panic_unwinding() -> Result<()> {
    let c = sleeper().start_blocking()?;
    let id = c.id().to_owned();
    assert!(block_on(container_exists(&id)));
    let outcome = std::panic::catch_unwind(move || {
        let _c = c;
        panic!("deliberate panic: the guard is dropped while unwinding");
    });
    assert!(outcome.is_err());
    block_on(assert_gone_soon(&id));
    Ok(())
}

#[tokio::test]
async fn drop_removes_container_during_panic_unwinding_in_an_async_test() -> Result<()> {
    let c = sleeper().start().await?;
    let id = c.id().to_owned();
    assert!(container_exists(&id).await);
    // The guard lives in the future across an await, as in a failing test.
    let outcome = AssertUnwindSafe(async move {
        let _c = c;
        tokio::task::yield_now().await;
        panic!("deliberate panic: the guard is dropped while unwinding a future");
    })
    .catch_unwind()
    .await;
    assert!(outcome.is_err());
    assert_gone_soon(&id).await;
    Ok(())
}

#[tokio::test]
async fn drop_removes_container_inside_spawn_blocking() -> Result<()> {
    let c = sleeper().start().await?;
    let id = c.id().to_owned();
    assert!(container_exists(&id).await);
    tokio::task::spawn_blocking(move || drop(c))
        .await
        .expect("the blocking task panicked");
    assert_gone_soon(&id).await;
    Ok(())
}

#[tokio::test]
async fn drop_in_wait_mode_returns_after_the_container_is_gone() -> Result<()> {
    let c = sleeper().wait_on_drop(true).start().await?;
    let id = c.id().to_owned();
    assert!(container_exists(&id).await);
    drop(c);
    assert!(
        !container_exists(&id).await,
        "container {id} still exists after a waiting drop returned"
    );
    Ok(())
}

#[test]
fn drop_in_wait_mode_without_a_runtime_returns_after_the_container_is_gone() -> Result<()> {
    let c = sleeper().wait_on_drop(true).start_blocking()?;
    let id = c.id().to_owned();
    assert!(block_on(container_exists(&id)));
    drop(c);
    assert!(
        !block_on(container_exists(&id)),
        "container {id} still exists after a waiting drop returned"
    );
    Ok(())
}

#[tokio::test]
async fn remove_returns_ok_and_the_container_is_gone_at_once() -> Result<()> {
    let c = sleeper().start().await?;
    let id = c.id().to_owned();
    assert!(container_exists(&id).await);
    c.remove().await?;
    assert!(
        !container_exists(&id).await,
        "container {id} still exists after remove() returned"
    );
    Ok(())
}

#[tokio::test]
async fn remove_of_an_already_removed_container_is_ok() -> Result<()> {
    let c = sleeper().start().await?;
    force_remove(c.id()).await;
    assert!(!container_exists(c.id()).await);
    c.remove().await
}

#[tokio::test]
async fn keep_leaves_the_container_running() -> Result<()> {
    let c = sleeper().start().await?;
    let id = c.keep();
    // Any removal the guard had handed to the engine finishes within this.
    dockfix::wait_for_removals(GONE).await;
    let running = is_running(&id).await;
    force_remove(&id).await;
    assert!(running, "kept container {id} is not running");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
#[serial_test::file_serial(heavy)]
async fn thirty_two_concurrently_started_containers_are_all_removed_after_drop() -> Result<()> {
    let case = unique("drop-32");
    let guards = start_many(32, &case).await?;
    let ids = sorted_ids(&guards);
    let mut listed = list_by_label(CASE_LABEL, &case).await;
    listed.sort_unstable();
    assert_eq!(listed, ids);
    drop(guards);
    let outstanding = dockfix::wait_for_removals(DRAIN).await;
    let left = list_by_label(CASE_LABEL, &case).await;
    assert!(
        left.is_empty(),
        "{} of 32 containers remain after wait_for_removals ({outstanding} outstanding): {left:?}",
        left.len()
    );
    for id in &ids {
        assert!(!container_exists(id).await, "container {id} remains");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
#[serial_test::file_serial(heavy)]
async fn sixteen_guards_dropped_together_are_all_removed() -> Result<()> {
    let case = unique("drop-16");
    let guards = start_many(16, &case).await?;
    assert_eq!(list_by_label(CASE_LABEL, &case).await.len(), 16);
    let t0 = Instant::now();
    drop(guards);
    let dropped = t0.elapsed();
    let outstanding = dockfix::wait_for_removals(DRAIN).await;
    let drained = t0.elapsed();
    // Informational: concurrent removals finish in far less than 16 serial ones.
    println!("16 drops returned after {dropped:?}; all removals done after {drained:?}");
    let left = list_by_label(CASE_LABEL, &case).await;
    assert!(
        left.is_empty(),
        "{} of 16 containers remain after wait_for_removals ({outstanding} outstanding): {left:?}",
        left.len()
    );
    Ok(())
}

// --- The exit hook, proven by child processes ---

/// Asserts, right after the child exited, that no container of its session
/// remains; removes any that do, so a failure leaks nothing.
fn assert_child_left_nothing(child: &support::ChildRun) {
    let session = child.value("SESSION");
    let left = block_on(list_by_label(LABEL_SESSION, session));
    for id in &left {
        block_on(force_remove(id));
    }
    assert!(
        left.is_empty(),
        "{} container(s) of session {session} remained after the child exited: {left:?}\n{child}",
        left.len()
    );
}

/// Starts 8 containers, checks the daemon has them under this process's
/// session, and prints the session for the parent.
async fn start_eight_and_announce() -> Result<Vec<TestContainer>> {
    let guards = start_many(8, &unique("exit")).await?;
    let session = dockfix::session_id();
    assert_eq!(list_by_label(LABEL_SESSION, session).await.len(), 8);
    println!("SESSION={session}\nSTARTED={}", guards.len());
    Ok(guards)
}

#[test]
#[serial_test::file_serial(heavy)]
fn exit_hook_finishes_removals_of_guards_dropped_just_before_exit() {
    let child = run_child!(child_drops_eight_guards_then_returns);
    assert!(child.status.success(), "{child}");
    assert_child_left_nothing(&child);
    assert_eq!(child.value("STARTED"), "8", "{child}");
}

#[tokio::test]
#[ignore = "run as a child process by exit_hook_finishes_removals_of_guards_dropped_just_before_exit"]
async fn child_drops_eight_guards_then_returns() -> Result<()> {
    if !is_child() {
        return Ok(());
    }
    let guards = start_eight_and_announce().await?;
    drop(guards);
    Ok(())
}

#[test]
#[serial_test::file_serial(heavy)]
fn exit_hook_finishes_removals_of_guards_dropped_by_a_failing_test() {
    let child = run_child!(child_panics_holding_eight_guards);
    assert!(
        !child.status.success(),
        "the child test should have failed\n{child}"
    );
    assert!(child.stderr.contains("deliberate panic"), "{child}");
    assert_child_left_nothing(&child);
    assert_eq!(child.value("STARTED"), "8", "{child}");
}

#[tokio::test]
#[ignore = "run as a child process by exit_hook_finishes_removals_of_guards_dropped_by_a_failing_test"]
async fn child_panics_holding_eight_guards() {
    if !is_child() {
        return;
    }
    let _guards = start_eight_and_announce().await.expect("start");
    panic!("deliberate panic: the guards are dropped while unwinding");
}

#[test]
#[serial_test::file_serial(heavy)]
fn exit_hook_removes_containers_of_guards_never_dropped() {
    let child = run_child!(child_leaves_guards_in_a_static_and_forgotten);
    assert!(child.status.success(), "{child}");
    assert_child_left_nothing(&child);
    assert_eq!(child.value("STARTED"), "8", "{child}");
}

static HELD: OnceLock<TestContainer> = OnceLock::new();

#[tokio::test]
#[ignore = "run as a child process by exit_hook_removes_containers_of_guards_never_dropped"]
async fn child_leaves_guards_in_a_static_and_forgotten() -> Result<()> {
    if !is_child() {
        return Ok(());
    }
    let mut guards = start_eight_and_announce().await?;
    let held = guards.pop().expect("eight guards");
    HELD.set(held).expect("HELD is set only here");
    // Simulates guards leaked by user code: their Drop never runs.
    guards.into_iter().for_each(std::mem::forget);
    Ok(())
}

#[test]
fn exit_hook_leaves_kept_containers() {
    let child = run_child!(child_keeps_a_container_then_returns);
    let id = child.value("KEPT").to_owned();
    let running = block_on(is_running(&id));
    block_on(force_remove(&id));
    assert!(child.status.success(), "{child}");
    assert!(
        running,
        "the kept container {id} did not survive the child's exit\n{child}"
    );
}

#[tokio::test]
#[ignore = "run as a child process by exit_hook_leaves_kept_containers"]
async fn child_keeps_a_container_then_returns() -> Result<()> {
    if !is_child() {
        return Ok(());
    }
    let c = sleeper().start().await?;
    println!("KEPT={}", c.keep());
    Ok(())
}

// --- Work the caller gave up on just before exit: the exit hook must
// still finish it. ---

#[test]
#[serial_test::file_serial(heavy)]
fn exit_hook_removes_the_container_of_a_start_cancelled_just_before_exit() {
    for _ in 0..3 {
        let child = run_child!(child_cancels_a_start_then_returns);
        // The daemon finishes a create the child sent before it died, so
        // the leaked container shows up only after the child is gone.
        std::thread::sleep(Duration::from_secs(2));
        assert_child_left_nothing(&child);
        assert!(child.status.success(), "{child}");
    }
}

#[tokio::test]
#[ignore = "run as a child process by exit_hook_removes_the_container_of_a_start_cancelled_just_before_exit"]
async fn child_cancels_a_start_then_returns() {
    if !is_child() {
        return;
    }
    println!("SESSION={}", dockfix::session_id());
    // Long enough for the create request to leave, far too short for the
    // container to start: the start goes on, on the engine, after we return.
    let start = tokio::time::timeout(Duration::from_millis(20), sleeper().start()).await;
    assert!(start.is_err(), "the start finished within 20 ms");
}

#[test]
#[serial_test::file_serial(heavy)]
fn exit_hook_finishes_a_remove_cancelled_just_before_exit() {
    for _ in 0..3 {
        let child = run_child!(child_cancels_a_remove_then_returns);
        assert_child_left_nothing(&child);
        assert!(child.status.success(), "{child}");
    }
}

#[tokio::test]
#[ignore = "run as a child process by exit_hook_finishes_a_remove_cancelled_just_before_exit"]
async fn child_cancels_a_remove_then_returns() -> Result<()> {
    if !is_child() {
        return Ok(());
    }
    let c = sleeper().start().await?;
    println!("SESSION={}", dockfix::session_id());
    let removal = tokio::time::timeout(Duration::from_millis(1), c.remove()).await;
    assert!(removal.is_err(), "the removal finished within 1 ms");
    Ok(())
}
