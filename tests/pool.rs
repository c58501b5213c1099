//! ContainerPool: reuse, reset, exhaustion, replacement, statics, exit.

mod support;

use std::future::IntoFuture;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use dockfix::{ContainerPool, ContainerSpec, Error, Reset, Result};
use support::{container_exists, is_child, list_by_label, run_child, unique, wait_gone};

fn spec() -> ContainerSpec {
    support::sleeper().name_prefix("pool")
}

#[tokio::test]
async fn a_returned_container_is_reset_and_handed_to_the_next_holder() -> Result<()> {
    let pool = ContainerPool::builder(unique("reuse"), spec())
        .min_idle(0)
        .max_size(1)
        .reset(Reset::exec(["sh", "-c", "rm -rf /tmp/*"]))
        .build();
    let first = pool.acquire().await?;
    let id = first.id().to_owned();
    first.exec_ok(["touch", "/tmp/dirty"]).await?;
    drop(first);
    let second = pool.acquire().await?;
    assert_eq!(second.id(), id, "the same container comes back");
    assert_eq!(
        second.exec(["test", "-e", "/tmp/dirty"]).await?.exit_code,
        1,
        "reset did not run"
    );
    let labels = support::labels_of(&id).await;
    assert_eq!(labels["dockfix.pool"], pool.name());
    let stats = pool.stats();
    assert_eq!(
        (
            stats.size,
            stats.in_use,
            stats.created,
            stats.resets,
            stats.acquired
        ),
        (1, 1, 1, 1, 2)
    );
    drop(second);
    pool.close().await?;
    assert!(!container_exists(&id).await);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exhausted_pool_serves_the_waiter_first_and_times_out_with_a_clear_error() -> Result<()>
{
    let name = unique("full");
    let pool = ContainerPool::builder(&name, spec())
        .min_idle(0)
        .max_size(2)
        .acquire_timeout(Duration::from_secs(20))
        .build();
    let (a, b) = tokio::try_join!(pool.acquire(), pool.acquire())?;
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.acquire().await.map(|c| c.id().to_owned()) }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "the third holder should wait");
    let returned = a.id().to_owned();
    drop(a);
    assert_eq!(
        waiter.await.unwrap()?,
        returned,
        "the waiter gets the returned container"
    );
    assert_eq!(pool.stats().waits, 1);

    let short = ContainerPool::builder(&name, spec())
        .min_idle(0)
        .max_size(1)
        .acquire_timeout(Duration::from_millis(500))
        .build();
    let held = short.acquire().await?;
    let started = Instant::now();
    let err = short.acquire().await.unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(450));
    assert!(
        matches!(
            err,
            Error::PoolTimeout {
                max_size: 1,
                in_use: 1,
                ..
            }
        ),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&name) && msg.contains("1 of its 1 are in use;"),
        "{msg}"
    );
    drop((b, held));
    pool.close().await?;
    short.close().await
}

#[tokio::test]
async fn a_member_that_cannot_start_fails_acquire_at_once_with_its_own_error() -> Result<()> {
    // A service whose data directory is broken: it says why and exits,
    // until the host file it needs is there.
    let dir = support::TempDir::new("pool-broken");
    let broken = support::sleeper()
        .name_prefix("pool")
        .bind_ro(dir.path(), "/data")
        .cmd([
            "sh",
            "-c",
            "[ -f /data/ok ] || { echo 'FATAL: data directory /data is broken' >&2; exit 1; }; \
             echo ready; exec sleep 300",
        ])
        .wait_for(dockfix::WaitFor::log_line("ready"));
    let pool = ContainerPool::builder(unique("broken"), broken)
        .min_idle(2)
        .max_size(2)
        .build();
    for attempt in 0..3 {
        let started = Instant::now();
        let err = pool.acquire().await.unwrap_err();
        let took = started.elapsed();
        println!("attempt {attempt}: acquire failed in {took:?}");
        // Not the 60 s acquire timeout: the member's own failure, with the
        // container's words.
        assert!(
            took < Duration::from_secs(10),
            "attempt {attempt} took {took:?}"
        );
        match &err {
            Error::NotReady { logs, .. } => assert!(
                logs.contains("FATAL: data directory /data is broken"),
                "{err}"
            ),
            other => panic!("attempt {attempt}: expected NotReady, got {other}"),
        }
        // Wait for the prewarmed members' failures to settle, then look.
        let settle = Instant::now();
        while pool.stats().size > 0 && settle.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let stats = pool.stats();
        assert_eq!(
            (stats.size, stats.idle, stats.in_use),
            (0, 0, 0),
            "{stats:?}"
        );
    }
    // Fixed: the pool was not poisoned, the next acquire starts a member.
    std::fs::write(dir.path().join("ok"), "").unwrap();
    let c = pool.acquire().await?;
    assert_eq!(c.exec_ok(["cat", "/data/ok"]).await?.exit_code, 0);
    drop(c);
    pool.close().await
}

#[tokio::test]
async fn a_tainted_container_is_destroyed_and_replaced() -> Result<()> {
    let pool = ContainerPool::builder(unique("taint"), spec())
        .min_idle(0)
        .max_size(1)
        .build();
    let mut c = pool.acquire().await?;
    let old = c.id().to_owned();
    c.taint();
    drop(c);
    let next = pool.acquire().await?;
    assert_ne!(next.id(), old);
    assert!(wait_gone(&old, Duration::from_secs(10)).await);
    assert_eq!(pool.stats().destroyed, 1);
    drop(next);
    pool.close().await
}

#[tokio::test]
async fn a_container_that_died_is_never_handed_out() -> Result<()> {
    let pool = ContainerPool::builder(unique("dead"), spec())
        .min_idle(0)
        .max_size(1)
        .build();
    let c = pool.acquire().await?;
    let old = c.id().to_owned();
    drop(c);
    // Wait until it is idle again, then kill it behind the pool's back.
    let deadline = Instant::now() + Duration::from_secs(10);
    while pool.stats().idle == 0 {
        assert!(Instant::now() < deadline, "the container never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    support::raw_docker()
        .await
        .kill_container(
            &old,
            None::<bollard::query_parameters::KillContainerOptions>,
        )
        .await
        .unwrap();
    let next = pool.acquire().await?;
    assert_ne!(next.id(), old);
    assert!(next.state().await?.running);
    drop(next);
    pool.close().await
}

#[tokio::test]
async fn a_failed_reset_replaces_the_container() -> Result<()> {
    let pool = ContainerPool::builder(unique("badreset"), spec())
        .min_idle(0)
        .max_size(1)
        .reset(Reset::exec(["false"]))
        .build();
    let old = pool.acquire().await?.id().to_owned();
    let next = pool.acquire().await?;
    assert_ne!(next.id(), old);
    drop(next);
    pool.close().await
}

#[tokio::test]
async fn recreate_and_closure_resets_run() -> Result<()> {
    let pool = ContainerPool::builder(unique("recreate"), spec())
        .min_idle(0)
        .max_size(1)
        .reset(Reset::Recreate)
        .build();
    let old = pool.acquire().await?.id().to_owned();
    let next = pool.acquire().await?;
    assert_ne!(next.id(), old);
    drop(next);
    pool.close().await?;

    let pool = ContainerPool::builder(unique("closure"), spec())
        .min_idle(0)
        .max_size(1)
        .reset(Reset::with(|c| {
            Box::pin(async move {
                c.exec_ok(["sh", "-c", "echo reset >> /tmp/log"])
                    .await
                    .map(drop)
            })
        }))
        .build();
    drop(pool.acquire().await?);
    let c = pool.acquire().await?;
    assert_eq!(c.exec_ok(["cat", "/tmp/log"]).await?.stdout, "reset\n");
    drop(c);
    pool.close().await
}

#[tokio::test]
async fn min_idle_members_are_prewarmed() -> Result<()> {
    let pool = ContainerPool::builder(unique("warm"), spec())
        .min_idle(2)
        .max_size(3)
        .build();
    pool.prewarm();
    let deadline = Instant::now() + Duration::from_secs(20);
    while pool.stats().idle < 2 {
        assert!(
            Instant::now() < deadline,
            "prewarm did not finish: {:?}",
            pool.stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    let c = pool.acquire().await?;
    println!("warm acquire took {:?}", started.elapsed());
    assert_eq!(
        pool.stats().created,
        2,
        "a warm member was used, none started"
    );
    drop(c);
    pool.close().await
}

static SHARED: LazyLock<ContainerPool> = LazyLock::new(|| {
    ContainerPool::builder(unique("static"), spec())
        .min_idle(1)
        .max_size(2)
        .build()
});

/// Several `#[tokio::test]`s, each with its own runtime, share one static
/// pool.
async fn use_shared() -> Result<()> {
    let c = SHARED.acquire().await?;
    c.exec_ok(["true"]).await?;
    Ok(())
}

#[tokio::test]
async fn a_static_pool_serves_test_1() -> Result<()> {
    use_shared().await
}

#[tokio::test]
async fn a_static_pool_serves_test_2() -> Result<()> {
    use_shared().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_static_pool_serves_test_3() -> Result<()> {
    use_shared().await
}

#[test]
fn a_static_pool_serves_a_plain_test() -> Result<()> {
    let c = futures::executor::block_on(SHARED.acquire())?;
    futures::executor::block_on(c.exec_ok(["true"]).into_future())?;
    Ok(())
}

#[test]
fn a_test_binary_with_a_static_pool_leaves_nothing_when_it_exits() {
    let child = run_child!(child_uses_a_static_pool, &[("DOCKFIX_SWEEP_ON_START", "0")]);
    child.assert_success();
    let session = child.value("SESSION");
    assert_eq!(
        support::block_on(list_by_label("dockfix.session", session)),
        Vec::<String>::new()
    );
}

static CHILD_POOL: LazyLock<ContainerPool> = LazyLock::new(|| {
    ContainerPool::builder("child", spec())
        .min_idle(2)
        .max_size(3)
        .build()
});

#[tokio::test]
#[ignore = "run as a child process by a_test_binary_with_a_static_pool_leaves_nothing_when_it_exits"]
async fn child_uses_a_static_pool() -> Result<()> {
    if !is_child() {
        return Ok(());
    }
    let (a, b) = tokio::try_join!(CHILD_POOL.acquire(), CHILD_POOL.acquire())?;
    drop(a);
    let _still_held = b;
    println!("SESSION={}", dockfix::session_id());
    // The pool is never dropped: the exit hook must remove its members.
    Ok(())
}
