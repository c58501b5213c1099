//! Pulling, for real, from a local registry started by `ci/registry`
//! (127.0.0.1:5000, holding 127.0.0.1:5000/dockfix-test/pullme:latest).

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use dockfix::{ContainerSpec, Error, PullPolicy, PullProgress, Result};
use serial_test::file_serial;

const PULLED: &str = "127.0.0.1:5000/dockfix-test/pullme:latest";

/// Removes the pulled image locally, so that the next start pulls it.
async fn forget_image() {
    // Containers of earlier tests still using it go first.
    dockfix::wait_for_removals(std::time::Duration::from_secs(30)).await;
    let docker = support::raw_docker().await;
    let force = bollard::query_parameters::RemoveImageOptionsBuilder::new()
        .force(true)
        .build();
    let _ = docker.remove_image(PULLED, Some(force), None).await;
    assert!(
        docker.inspect_image(PULLED).await.is_err(),
        "the image is still there"
    );
}

fn spec() -> ContainerSpec {
    ContainerSpec::new(PULLED).network_mode("none")
}

#[tokio::test(flavor = "multi_thread")]
#[file_serial(images)]
async fn a_missing_image_is_pulled_with_progress_events() -> Result<()> {
    forget_image().await;
    let events: Arc<Mutex<Vec<PullProgress>>> = Arc::default();
    let seen = events.clone();
    let c = spec()
        .on_pull_progress(move |e| seen.lock().unwrap().push(e.clone()))
        .start()
        .await?;
    assert_eq!(
        c.exec_ok(["cat", "/marker"]).await?.stdout,
        "pulled from the local registry\n"
    );
    let events = events.lock().unwrap().clone();
    assert!(!events.is_empty(), "no progress events");
    // Podman reports the layers of a small image without byte counts.
    if !support::skip_on_podman("no byte progress for the small layers of this image").await {
        assert!(
            events
                .iter()
                .any(|e| e.status == "Downloading" && e.current.is_some() && e.total.is_some()),
            "no byte progress among {events:?}"
        );
    }
    assert!(events.iter().all(|e| e.image == PULLED));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
#[file_serial(images)]
async fn never_refuses_a_missing_image_and_says_why() {
    forget_image().await;
    let err = spec()
        .pull_policy(PullPolicy::Never)
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ImageNotFound { .. }), "{err}");
    assert!(err.to_string().contains("pull policy is Never"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
#[file_serial(images)]
async fn eight_concurrent_starts_pull_once() -> Result<()> {
    forget_image().await;
    // How many of the starts saw a pull of their own: the one that pulled
    // gets its events, the others find the image there.
    let pulls = Arc::new(AtomicUsize::new(0));
    let starts = (0..8).map(|_| {
        let pulls = pulls.clone();
        let pulled = std::sync::atomic::AtomicBool::new(false);
        spec()
            .on_pull_progress(move |_| {
                if !pulled.swap(true, Ordering::SeqCst) {
                    pulls.fetch_add(1, Ordering::SeqCst);
                }
            })
            .start()
    });
    let started = futures::future::try_join_all(starts).await?;
    assert_eq!(started.len(), 8);
    assert_eq!(pulls.load(Ordering::SeqCst), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
#[file_serial(images)]
async fn always_pulls_even_when_the_image_is_there() -> Result<()> {
    let first = spec().start().await?; // present from here on
    drop(first);
    let events = Arc::new(AtomicUsize::new(0));
    let seen = events.clone();
    let _c = spec()
        .pull_policy(PullPolicy::Always)
        .on_pull_progress(move |_| {
            seen.fetch_add(1, Ordering::SeqCst);
        })
        .start()
        .await?;
    assert!(events.load(Ordering::SeqCst) > 0, "Always did not pull");
    Ok(())
}

#[tokio::test]
#[file_serial(images)]
async fn not_found_and_unreachable_registries_are_told_apart() {
    let err = ContainerSpec::new("127.0.0.1:5000/dockfix-test/nope:1")
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ImageNotFound { .. }), "{err}");
    assert!(err.to_string().contains("pull policy IfMissing"), "{err}");
    let err = ContainerSpec::new("127.0.0.1:5999/dockfix-test/nope:1")
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RegistryUnavailable { .. }), "{err}");
}

#[tokio::test]
#[file_serial(images)]
async fn an_image_built_from_a_context_runs_and_carries_the_owner_labels() -> Result<()> {
    let context = support::TempDir::new("context");
    std::fs::write(
        context.path().join("Dockerfile"),
        "FROM dockfix-test/busybox:latest\nCOPY hello.txt /hello.txt\nCMD [\"sleep\", \"300\"]\n",
    )
    .unwrap();
    std::fs::write(context.path().join("hello.txt"), "built from a context\n").unwrap();
    let tag = format!("dockfix-test/built:{}", support::unique("t"));
    let image = dockfix::LocalImage::build(context.path(), &tag).await?;
    let labels = support::raw_docker()
        .await
        .inspect_image(image.reference())
        .await
        .unwrap()
        .config
        .and_then(|c| c.labels)
        .unwrap_or_default();
    // Under the image prefix, with the image's own tag as proof, so that
    // containers made from it inherit nothing that reads as dockfix's.
    assert_eq!(
        labels.get("dockfix.image.session").map(String::as_str),
        Some(dockfix::session_id())
    );
    assert_eq!(labels.get("dockfix.image.name"), Some(&tag));
    assert!(!labels.contains_key("dockfix.managed"), "{labels:?}");
    let c = ContainerSpec::new(image.reference())
        .network_mode("none")
        .start()
        .await?;
    assert_eq!(
        c.exec_ok(["cat", "/hello.txt"]).await?.stdout,
        "built from a context\n"
    );
    c.remove().await?;
    image.remove().await
}

#[tokio::test]
#[file_serial(images)]
async fn a_root_filesystem_tar_imports_as_a_runnable_image() -> Result<()> {
    if support::skip_on_podman("Podman 4.3 applies an import's changes as one instruction, and bollard sends them as one value: only the first takes").await {
        return Ok(());
    }
    let rootfs = busybox_rootfs(&["sh", "sleep", "cat"], &[("marker", b"imported\n")]);
    let tag = format!("dockfix-test/imported:{}", support::unique("t"));
    let image =
        dockfix::LocalImage::import(rootfs, &tag, ["CMD [\"sleep\", \"300\"]", "ENV PATH=/bin"])
            .await?;
    let c = ContainerSpec::new(image.reference())
        .network_mode("none")
        .start()
        .await?;
    assert_eq!(c.exec_ok(["cat", "/marker"]).await?.stdout, "imported\n");
    c.remove().await?;
    image.remove().await
}

/// A root filesystem tar: a static busybox, links to it for `applets`,
/// and `files` (path, contents).
fn busybox_rootfs(applets: &[&str], files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut rootfs = tar::Builder::new(Vec::new());
    let busybox = std::fs::read("/bin/busybox").unwrap();
    let mut add = |path: &str, data: &[u8], mode: u32| {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        rootfs.append_data(&mut header, path, data).unwrap();
    };
    add("bin/busybox", &busybox, 0o755);
    for (path, data) in files {
        add(path, data, 0o644);
    }
    for applet in applets {
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_size(0);
        rootfs
            .append_link(&mut link, format!("bin/{applet}"), "busybox")
            .unwrap();
    }
    rootfs.into_inner().unwrap()
}

/// Imports a tiny image tagged `tag`: a busybox with `sleep`.
async fn tiny_image(tag: &str) -> Result<dockfix::LocalImage> {
    dockfix::LocalImage::import(
        busybox_rootfs(&[], &[]),
        tag,
        ["CMD [\"/bin/busybox\", \"sleep\", \"300\"]"],
    )
    .await
}

#[tokio::test]
#[file_serial(images)]
async fn a_sweep_removes_test_images_only_when_asked() -> Result<()> {
    if support::skip_on_podman("Podman 4.3 applies an import's changes as one instruction, and bollard sends them as one value: only the first takes").await {
        return Ok(());
    }
    let tag = format!("dockfix-test/swept:{}", support::unique("t"));
    let image = tiny_image(&tag).await?;
    let docker = support::raw_docker().await;
    let by_session = || dockfix::Sweep::new().session(dockfix::session_id());
    let report = by_session().dry_run(true).run().await?;
    assert!(
        report
            .removed
            .iter()
            .all(|c| c.resource.kind != dockfix::ResourceKind::Image)
    );
    let report = by_session().images(true).run().await?;
    assert!(
        report
            .removed
            .iter()
            .any(|c| c.resource.kind == dockfix::ResourceKind::Image && c.resource.name == tag),
        "{report:?}"
    );
    assert!(
        docker.inspect_image(image.reference()).await.is_err(),
        "the image is still there"
    );
    Ok(())
}
