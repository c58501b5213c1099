//! Copying files and directories into and out of containers.

mod support;

use std::os::unix::fs::PermissionsExt;

use dockfix::{ContainerSpec, Error, Result, WaitFor};
use support::{IMAGE, TempDir};

use support::sleeper;

#[tokio::test]
async fn a_directory_tree_round_trips_with_its_modes() -> Result<()> {
    let src = TempDir::new("copy-src");
    let tree = src.path().join("tree");
    std::fs::create_dir_all(tree.join("bin")).unwrap();
    std::fs::create_dir_all(tree.join("data/deep")).unwrap();
    std::fs::write(tree.join("bin/run.sh"), "#!/bin/sh\necho ran\n").unwrap();
    std::fs::set_permissions(
        tree.join("bin/run.sh"),
        std::fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    std::fs::write(tree.join("data/deep/blob"), vec![7u8; 300_000]).unwrap();

    let c = sleeper().start().await?;
    c.copy_in(&tree, "/tmp").await?;
    assert_eq!(c.exec_ok(["/tmp/tree/bin/run.sh"]).await?.stdout, "ran\n");
    assert_eq!(
        c.exec_ok(["stat", "-c", "%a", "/tmp/tree/bin/run.sh"])
            .await?
            .stdout,
        "750\n"
    );
    c.exec_ok(["sh", "-c", "echo made inside > /tmp/tree/data/new.txt"])
        .await?;

    let dst = TempDir::new("copy-dst");
    c.copy_out("/tmp/tree", dst.path()).await?;
    let back = dst.path().join("tree");
    assert_eq!(
        std::fs::read(back.join("data/deep/blob")).unwrap(),
        vec![7u8; 300_000]
    );
    assert_eq!(
        std::fs::read_to_string(back.join("data/new.txt")).unwrap(),
        "made inside\n"
    );
    let mode = std::fs::metadata(back.join("bin/run.sh"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o750);
    Ok(())
}

#[tokio::test]
async fn a_file_copied_in_before_start_is_there_from_the_first_moment() -> Result<()> {
    let c = ContainerSpec::new(IMAGE)
        .cmd(["sh", "-c", "cat /etc/a.txt; exec sleep 300"])
        .network_mode("none")
        .copy_in("./tests/fixtures/a.txt", "/etc")
        .wait_for(WaitFor::log_line("hello from the host"))
        .start()
        .await?;
    assert_eq!(
        c.exec_ok(["cat", "/etc/a.txt"]).await?.stdout,
        "hello from the host\n"
    );
    Ok(())
}

#[tokio::test]
async fn copying_a_missing_path_says_so() -> Result<()> {
    let c = sleeper().start().await?;
    let dst = TempDir::new("copy-missing");
    let err = c.copy_out("/no/such/path", dst.path()).await.unwrap_err();
    assert_eq!(err.status(), Some(404), "{err}");
    let err = sleeper()
        .copy_in("/no/such/host/file", "/tmp")
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidSpec {
                field: "copy_in",
                ..
            }
        ),
        "{err}"
    );
    // Podman makes a missing directory instead of answering 404.
    if !support::skip_on_podman("copying into a missing directory makes it").await {
        let err = c
            .copy_in("./tests/fixtures/a.txt", "/no/such/dir")
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(404), "{err}");
    }
    Ok(())
}
