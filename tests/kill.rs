//! `remove_on_kill`: containers go within seconds of their process being
//! SIGKILLed, with nothing of ours left running.

mod support;

use std::time::{Duration, Instant};

use dockfix::{ContainerSpec, Result};
use serial_test::file_serial;
use support::{is_child, list_by_label, run_child};

fn tied() -> ContainerSpec {
    support::sleeper().name_prefix("kill").remove_on_kill(true)
}

#[tokio::test]
#[file_serial(heavy)]
async fn containers_of_a_sigkilled_process_are_gone_within_seconds() {
    let mut child = support::spawn_child!(child_holds_three_tied_containers, &[]);
    let session = support::wait_ready(&mut child)
        .remove("SESSION")
        .expect("no SESSION line");
    // Three tied containers and the anchor.
    assert_eq!(list_by_label("dockfix.session", &session).await.len(), 4);
    child.kill().unwrap(); // SIGKILL: no Drop, no exit hook
    child.wait().unwrap();
    let killed = Instant::now();
    // Podman keeps the anchor, exited, for the sweep: it cannot auto-remove
    // a container whose PID namespace others share. Its tied containers
    // go all the same.
    let podman = support::on_podman().await;
    let left_behind = usize::from(podman);
    while list_by_label("dockfix.session", &session).await.len() > left_behind {
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "containers left 10 s after SIGKILL"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("all gone {:?} after SIGKILL", killed.elapsed());
    if podman {
        let anchor = list_by_label("dockfix.session", &session).await;
        assert!(
            !support::is_running(&anchor[0]).await,
            "the anchor still runs"
        );
        support::force_remove(&anchor[0]).await;
    }
}

#[test]
#[ignore = "run as a child process by containers_of_a_sigkilled_process_are_gone_within_seconds"]
fn child_holds_three_tied_containers() -> Result<()> {
    if !is_child() {
        return Ok(());
    }
    let held: Vec<_> = (0..3)
        .map(|_| tied().start_blocking())
        .collect::<Result<_>>()?;
    println!("SESSION={}", dockfix::session_id());
    println!("READY");
    std::thread::sleep(Duration::from_secs(300));
    drop(held);
    Ok(())
}

#[tokio::test]
#[file_serial(heavy)]
async fn a_process_that_exits_normally_leaves_no_anchor_behind() {
    let child = run_child!(child_starts_tied_containers_and_returns);
    child.assert_success();
    let session = child.value("SESSION");
    assert_eq!(
        list_by_label("dockfix.session", session).await,
        Vec::<String>::new()
    );
}

#[tokio::test]
#[ignore = "run as a child process by a_process_that_exits_normally_leaves_no_anchor_behind"]
async fn child_starts_tied_containers_and_returns() -> Result<()> {
    if !is_child() {
        return Ok(());
    }
    let (_a, _b) = tokio::try_join!(tied().start(), tied().start())?;
    println!("SESSION={}", dockfix::session_id());
    Ok(())
}

#[tokio::test]
#[file_serial(heavy)]
async fn a_tied_container_works_and_shares_the_anchors_pid_namespace() -> Result<()> {
    let c = tied().start().await?;
    assert_eq!(c.exec_ok(["echo", "hi"]).await?.stdout, "hi\n");
    let ps = c.exec_ok(["ps", "-o", "pid,args"]).await?.stdout;
    assert!(
        ps.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["1", "cat"]),
        "{ps}"
    );
    Ok(())
}

#[tokio::test]
#[file_serial(heavy)]
async fn a_gone_anchor_is_replaced_by_the_next_tied_start() -> Result<()> {
    if support::skip_on_podman("it refuses to remove an anchor whose PID namespace tied containers share, so the anchor cannot go behind dockfix's back").await {
        return Ok(());
    }
    let first = tied().start().await?;
    let anchors = list_by_label("dockfix.session", dockfix::session_id()).await;
    // Remove this process's anchor behind dockfix's back: its tied
    // containers die with it.
    for id in anchors {
        let name = support::raw_docker()
            .await
            .inspect_container(&id, None)
            .await
            .ok()
            .and_then(|i| i.name)
            .unwrap_or_default();
        if name.starts_with("/dockfix-anchor-") {
            support::force_remove(&id).await;
        }
    }
    assert!(
        support::wait_gone(first.id(), Duration::from_secs(10)).await,
        "the tied container outlived its anchor"
    );
    let second = tied().start().await?;
    assert_eq!(second.exec_ok(["echo", "alive"]).await?.stdout, "alive\n");
    Ok(())
}
