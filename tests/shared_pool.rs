//! A pool shared by processes through the daemon: several test processes
//! hammer one pool, never hold a member at once, and recover the claim of
//! a process that was SIGKILLed.

mod support;

use std::time::Duration;

use dockfix::{ContainerPool, Reset, Result};
use serial_test::file_serial;
use support::{force_remove, is_child, list_by_label, unique};

fn pool(name: &str, max_size: usize) -> ContainerPool {
    ContainerPool::builder(name, support::sleeper())
        .shared(true)
        .max_size(max_size)
        .reset(Reset::exec(["rm", "-rf", "/tmp/held"]))
        .acquire_timeout(Duration::from_secs(60))
        .build()
}

/// Removes every member of `pool_name`: shared members outlive their
/// processes on purpose, so the test cleans up after itself.
async fn remove_pool(pool_name: &str) {
    for id in list_by_label("dockfix.pool", pool_name).await {
        force_remove(&id).await;
    }
}

/// Removes the pool's containers when the test ends, passed or failed.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let name = self.0.clone();
        // On a thread of its own: the test's runtime may be the caller.
        let _ = std::thread::spawn(move || support::block_on(remove_pool(&name))).join();
    }
}

#[tokio::test(flavor = "multi_thread")]
#[file_serial(heavy)]
async fn four_processes_never_hold_a_member_at_once() {
    let name = unique("shared").replace('-', "_");
    let _cleanup = Cleanup(name.clone());
    let children: Vec<_> = (0..4)
        .map(|_| support::spawn_child!(child_hammers_the_shared_pool, &[("SHARED_POOL", &name)]))
        .collect();
    let mut acquired = 0;
    for c in children {
        let child = support::finish_child(c);
        child.assert_success();
        acquired += child
            .value("ACQUIRED")
            .parse::<usize>()
            .expect("ACQUIRED is not a number");
    }
    assert_eq!(acquired, 200);
    // At most two members, and no lease left: every holder released.
    let members = list_by_label("dockfix.pool", &name).await;
    assert!(!members.is_empty() && members.len() <= 2, "{members:?}");
    remove_pool(&name).await;
}

#[tokio::test]
#[ignore = "run as a child process by four_processes_never_hold_a_member_at_once"]
async fn child_hammers_the_shared_pool() -> Result<()> {
    if !is_child() {
        return Ok(());
    }
    let pool = pool(&std::env::var("SHARED_POOL").unwrap(), 2);
    for i in 0..50 {
        let c = pool.acquire().await?;
        // mkdir fails if the directory exists: another holder would have
        // made it and not yet removed it.
        let claim = c.exec(["mkdir", "/tmp/held"]).await?;
        assert_eq!(
            claim.exit_code,
            0,
            "acquisition {i}: someone else holds {}: {}",
            c.name(),
            claim.stderr
        );
        c.exec_ok(["rmdir", "/tmp/held"]).await?;
    }
    println!("ACQUIRED=50");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
#[file_serial(heavy)]
async fn the_claim_of_a_sigkilled_process_is_recovered_and_reset() {
    let name = unique("recover").replace('-', "_");
    let _cleanup = Cleanup(name.clone());
    let pool_env = [
        ("SHARED_POOL", name.as_str()),
        ("DOCKFIX_SWEEP_ON_START", "0"),
    ];
    let mut holder = support::spawn_child!(child_holds_a_shared_member, &pool_env);
    let held = support::wait_ready(&mut holder)
        .remove("HELD")
        .expect("no HELD line");
    holder.kill().unwrap(); // SIGKILL: the lease stays behind
    holder.wait().unwrap();
    // The only member is claimed by a dead process: the next process must
    // recover it, reset (its marker gone), and hand it out.
    let child = support::run_child!(child_takes_the_only_member, &pool_env);
    child.assert_success();
    assert_eq!(child.value("GOT"), held);
    remove_pool(&name).await;
}

#[tokio::test]
#[ignore = "run as a child process by the_claim_of_a_sigkilled_process_is_recovered_and_reset"]
async fn child_holds_a_shared_member() -> Result<()> {
    if !is_child() {
        return Ok(());
    }
    let pool = pool(&std::env::var("SHARED_POOL").unwrap(), 1);
    let c = pool.acquire().await?;
    c.exec_ok(["mkdir", "/tmp/held"]).await?;
    println!("HELD={}", c.id());
    println!("READY");
    tokio::time::sleep(Duration::from_secs(300)).await;
    Ok(())
}

#[tokio::test]
#[ignore = "run as a child process by the_claim_of_a_sigkilled_process_is_recovered_and_reset"]
async fn child_takes_the_only_member() -> Result<()> {
    if !is_child() {
        return Ok(());
    }
    let pool = pool(&std::env::var("SHARED_POOL").unwrap(), 1);
    let c = pool.acquire().await?;
    c.exec_ok(["mkdir", "/tmp/held"]).await?;
    println!("GOT={}", c.id());
    Ok(())
}

#[tokio::test]
async fn close_removes_the_idle_members_of_a_shared_pool() -> Result<()> {
    let name = unique("close").replace('-', "_");
    let _cleanup = Cleanup(name.clone());
    let pool = pool(&name, 2);
    let (a, b) = tokio::try_join!(pool.acquire(), pool.acquire())?;
    drop((a, b));
    // Wait until both are idle again.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ok = support::raw_docker()
            .await
            .list_containers(Some(
                bollard::query_parameters::ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(&std::collections::HashMap::from([(
                        "label",
                        vec![format!("dockfix.pool={name}")],
                    )]))
                    .build(),
            ))
            .await
            .unwrap()
            .iter()
            .all(|c| c.names.iter().flatten().all(|n| !n.ends_with("-lease")));
        if ok {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "members were not released"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let labels = support::labels_of(&list_by_label("dockfix.pool", &name).await[0]).await;
    assert!(
        !labels.contains_key("dockfix.pid"),
        "no process owns a shared member"
    );
    assert_eq!(labels["dockfix.ttl"], "1800");
    pool.close().await?;
    assert!(list_by_label("dockfix.pool", &name).await.is_empty());
    Ok(())
}

/// A sweep takes an expired shared member only once no living process
/// holds its lease.
#[cfg(feature = "cli")]
#[tokio::test]
#[file_serial(heavy)]
async fn an_expired_shared_member_is_swept_only_when_no_one_holds_it() -> Result<()> {
    let name = unique("expire").replace('-', "_");
    let _cleanup = Cleanup(name.clone());
    let spec = support::sleeper().ttl(Duration::from_secs(1));
    let pool = ContainerPool::builder(&name, spec)
        .shared(true)
        .max_size(1)
        .build();
    let held = pool.acquire().await?;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let sweep = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_dockfix"))
            .args(["sweep"])
            .env("DOCKFIX_SWEEP_ON_START", "0")
            .output()
            .unwrap()
    };
    let out = sweep();
    assert!(out.status.success());
    assert!(
        support::container_exists(held.id()).await,
        "swept from under its holder"
    );
    let id = held.id().to_owned();
    drop(held);
    // Once the lease is gone the expired member goes with the next sweep.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while list_by_label("dockfix.pool", &name).await.len() > 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the lease was not released"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = sweep();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !support::container_exists(&id).await,
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    Ok(())
}
