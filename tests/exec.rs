//! Exec: exit codes, split streams, stdin, options, timeouts, checking.

mod support;

use std::time::{Duration, Instant};

use dockfix::{Error, Result, TestContainer};

async fn sleeper() -> Result<TestContainer> {
    support::sleeper().start().await
}

#[tokio::test]
async fn exit_code_and_streams_are_kept_apart() -> Result<()> {
    let c = sleeper().await?;
    let out = c
        .exec(["sh", "-c", "echo out; echo err >&2; echo more; exit 3"])
        .await?;
    assert_eq!(out.exit_code, 3);
    assert_eq!(out.stdout, "out\nmore\n");
    assert_eq!(out.stderr, "err\n");
    assert!(!out.success());
    Ok(())
}

#[tokio::test]
async fn stdin_is_written_and_closed() -> Result<()> {
    let c = sleeper().await?;
    assert_eq!(
        c.exec(["cat"]).stdin("hello\nworld").await?.stdout,
        "hello\nworld"
    );
    // Large input and output at once must not deadlock.
    let big: Vec<u8> = (0..1 << 20).map(|i| b'a' + (i % 26) as u8).collect();
    let out = c
        .exec(["cat"])
        .stdin(big.clone())
        .timeout(Duration::from_secs(30))
        .await?;
    assert_eq!(out.stdout.len(), big.len());
    assert_eq!(out.stdout.as_bytes(), &big[..]);
    Ok(())
}

#[tokio::test]
async fn env_working_dir_and_user_apply_to_the_command() -> Result<()> {
    let c = sleeper().await?;
    let out = c
        .exec_ok(["sh", "-c", "echo $GREETING; pwd; id -u"])
        .env("GREETING", "hi there")
        .working_dir("/tmp")
        .user("nobody")
        .await?;
    assert_eq!(out.stdout, "hi there\n/tmp\n65534\n");
    Ok(())
}

#[tokio::test]
async fn timeout_returns_quickly_and_kills_the_process() -> Result<()> {
    let c = sleeper().await?;
    let started = Instant::now();
    let err = c
        .exec(["sleep", "29"])
        .timeout(Duration::from_secs(1))
        .await
        .unwrap_err();
    let took = started.elapsed();
    // The limit, plus at most about 1.5 s to kill: from the host as root,
    // from inside the container as a user who may not signal its pids.
    println!("timed out and killed in {took:?}");
    assert!(took < Duration::from_millis(2600), "took {took:?}");
    match &err {
        Error::ExecTimedOut {
            command,
            timeout,
            killed,
            ..
        } => {
            assert_eq!(command, "sleep 29");
            assert_eq!(*timeout, Duration::from_secs(1));
            assert!(killed, "{err}");
        }
        other => panic!("unexpected {other}"),
    }
    assert!(
        err.to_string().contains("`sleep 29`") && err.to_string().contains("1s"),
        "{err}"
    );
    let ps = c.exec_ok(["ps", "-o", "args"]).await?.stdout;
    assert!(
        !ps.lines().any(|l| l.trim() == "sleep 29"),
        "still running:\n{ps}"
    );
    Ok(())
}

#[tokio::test]
async fn timeout_kills_the_children_of_the_command_too() -> Result<()> {
    let c = sleeper().await?;
    let err = c
        .exec(["sh", "-c", "sleep 28; echo never"])
        .timeout(Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::ExecTimedOut { killed: true, .. }),
        "{err}"
    );
    let ps = c.exec_ok(["ps", "-o", "args"]).await?.stdout;
    assert!(!ps.contains("sleep 28"), "still running:\n{ps}");
    Ok(())
}

#[tokio::test]
async fn checked_exec_turns_a_non_zero_exit_into_an_error_with_context() -> Result<()> {
    let c = sleeper().await?;
    let err = c
        .exec_ok(["sh", "-c", "echo progress; echo 'disk on fire' >&2; exit 4"])
        .await
        .unwrap_err();
    match &err {
        Error::ExecFailed {
            container,
            command,
            exit_code,
            stderr,
        } => {
            assert_eq!(container, c.name());
            assert_eq!(
                command,
                "sh -c 'echo progress; echo '\\''disk on fire'\\'' >&2; exit 4'"
            );
            assert_eq!(*exit_code, 4);
            assert_eq!(stderr, "disk on fire");
        }
        other => panic!("unexpected {other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("exited with code 4") && msg.contains("disk on fire"),
        "{msg}"
    );
    assert!(c.exec_ok(["false"]).await.is_err());
    assert_eq!(c.exec_ok(["true"]).await?.exit_code, 0);
    Ok(())
}

#[tokio::test]
async fn a_missing_binary_is_a_non_zero_exit() -> Result<()> {
    let c = sleeper().await?;
    let out = c.exec(["/no/such/binary"]).await?;
    assert!(out.exit_code == 126 || out.exit_code == 127, "{out:?}");
    Ok(())
}

#[tokio::test]
async fn an_empty_command_is_refused() -> Result<()> {
    let c = sleeper().await?;
    let err = c.exec(Vec::<String>::new()).await.unwrap_err();
    assert!(
        matches!(err, Error::InvalidSpec { field: "exec", .. }),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn many_execs_run_concurrently_on_one_container() -> Result<()> {
    let c = sleeper().await?;
    let runs = (0..16).map(|i| c.exec_ok(["sh", "-c", &format!("echo {i}")]).into_future());
    let outs = futures::future::try_join_all(runs).await?;
    for (i, out) in outs.iter().enumerate() {
        assert_eq!(out.stdout, format!("{i}\n"));
    }
    Ok(())
}

use std::future::IntoFuture;

/// An image with nothing but a static busybox: no `sh`, so no kill from
/// inside the container. As root the host's kill still works; as a user
/// who may not signal the container's pids nothing can kill the command,
/// and the error says so at once rather than after a wait.
#[tokio::test]
async fn a_timed_out_exec_that_nothing_can_kill_says_so_at_once() -> Result<()> {
    if support::skip_on_podman(
        "Podman 4.3 runs an imported image's CMD through /bin/sh, which this image has not",
    )
    .await
    {
        return Ok(());
    }
    let mut rootfs = tar::Builder::new(Vec::new());
    let busybox = std::fs::read("/bin/busybox").expect("ci/setup installs busybox-static");
    let mut header = tar::Header::new_gnu();
    header.set_size(busybox.len() as u64);
    header.set_mode(0o755);
    rootfs
        .append_data(&mut header, "bin/busybox", busybox.as_slice())
        .unwrap();
    let tag = format!("dockfix-test/no-shell:{}", support::unique("t"));
    let image = dockfix::LocalImage::import(
        rootfs.into_inner().unwrap(),
        &tag,
        ["CMD [\"/bin/busybox\", \"sleep\", \"300\"]"],
    )
    .await?;
    let c = dockfix::ContainerSpec::new(image.reference())
        .network_mode("none")
        .start()
        .await?;
    let started = Instant::now();
    let err = c
        .exec(["/bin/busybox", "sleep", "27"])
        .timeout(Duration::from_secs(1))
        .await
        .unwrap_err();
    let took = started.elapsed();
    // SAFETY: geteuid reads the process's effective uid, nothing else.
    let root = unsafe { libc::geteuid() } == 0;
    println!("as root: {root}; gave up in {took:?}: {err}");
    match &err {
        Error::ExecTimedOut { killed, .. } => assert_eq!(*killed, root, "{err}"),
        other => panic!("unexpected {other}"),
    }
    if !root {
        assert!(
            err.to_string()
                .contains("could not be killed and may still run"),
            "{err}"
        );
        assert!(took < Duration::from_millis(1800), "took {took:?}");
    }
    c.remove().await?;
    image.remove().await
}
