//! Labels, bind mounts, tmpfs and spec validation against a real daemon.

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use dockfix::{ContainerSpec, Error, Result};
use support::{TempDir, labels_of, list_by_label, sleeper, unique};

#[tokio::test]
async fn containers_carry_every_owner_label_and_the_users_labels() -> Result<()> {
    let c = sleeper()
        .label("com.example.team", "storage")
        .start()
        .await?;
    let labels = labels_of(c.id()).await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(labels["dockfix.managed"], "true");
    assert_eq!(labels["dockfix.session"], dockfix::session_id());
    assert_eq!(labels["dockfix.pid"], std::process::id().to_string());
    assert!(!labels["dockfix.host"].is_empty());
    let created: u64 = labels["dockfix.created"].parse().unwrap();
    assert!(
        created <= now && now - created < 120,
        "created={created} now={now}"
    );
    assert_eq!(labels["dockfix.version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(labels["com.example.team"], "storage");
    let ns = std::fs::read_link("/proc/self/ns/pid").unwrap();
    assert_eq!(labels["dockfix.pidns"], ns.to_str().unwrap());
    // The proof of ownership: the container's own name.
    assert_eq!(labels["dockfix.name"], c.name());
    // The owner named without the wall clock: machine, boot, start ticks.
    assert!(!labels["dockfix.machine"].is_empty());
    assert_eq!(
        labels["dockfix.boot"],
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .unwrap()
            .trim()
    );
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    assert_eq!(
        labels["dockfix.start"], fields[19],
        "field 22 of /proc/self/stat"
    );
    // Nothing else of ours: the sweep relies on exactly these keys.
    let ours: Vec<&String> = labels
        .keys()
        .filter(|k| k.starts_with("dockfix."))
        .collect();
    assert_eq!(ours.len(), 11, "{ours:?}");
    Ok(())
}

#[tokio::test]
async fn a_user_label_in_the_dockfix_namespace_is_refused_before_docker() {
    let case = unique("reserved");
    let err = sleeper()
        .label("com.example.case", &case)
        .label("dockfix.session", "mine")
        .start()
        .await
        .unwrap_err();
    match err {
        Error::InvalidSpec { field, value, .. } => {
            assert_eq!((field, value.as_str()), ("label", "dockfix.session"))
        }
        other => panic!("unexpected {other}"),
    }
    assert!(list_by_label("com.example.case", &case).await.is_empty());
}

#[tokio::test]
async fn read_only_bind_refuses_writes() -> Result<()> {
    let dir = TempDir::new("ro");
    std::fs::write(dir.path().join("a.txt"), "from host").unwrap();
    let c = sleeper().bind_ro(dir.path(), "/m").start().await?;
    assert_eq!(c.exec_ok(["cat", "/m/a.txt"]).await?.stdout, "from host");
    let out = c.exec(["sh", "-c", "echo x > /m/b.txt"]).await?;
    assert_ne!(out.exit_code, 0);
    assert!(
        out.stderr.contains("Read-only file system"),
        "{}",
        out.stderr
    );
    assert!(!dir.path().join("b.txt").exists());
    Ok(())
}

#[tokio::test]
async fn read_write_bind_writes_are_visible_on_the_host() -> Result<()> {
    let dir = TempDir::new("rw");
    let c = sleeper().bind(dir.path(), "/m").start().await?;
    c.exec_ok(["sh", "-c", "echo written-inside > /m/out.txt"])
        .await?;
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.txt")).unwrap(),
        "written-inside\n"
    );
    Ok(())
}

#[tokio::test]
async fn relative_host_paths_resolve_against_the_current_directory() -> Result<()> {
    // cargo runs integration tests in the package root.
    let c = sleeper()
        .bind_str("./tests/fixtures:/fixtures:ro")
        .start()
        .await?;
    assert_eq!(
        c.exec_ok(["cat", "/fixtures/a.txt"]).await?.stdout,
        "hello from the host\n"
    );
    Ok(())
}

/// Starts `spec` labelled with a fresh case id and expects a refusal naming
/// `field`, with no container created.
async fn refused_without_a_container(spec: ContainerSpec, field: &str) -> String {
    let case = unique("refused");
    let before = list_by_label("com.example.case", &case).await.len();
    let err = spec
        .label("com.example.case", &case)
        .start()
        .await
        .unwrap_err();
    let Error::InvalidSpec { field: got, .. } = &err else {
        panic!("expected InvalidSpec, got {err}");
    };
    assert_eq!(*got, field, "{err}");
    assert_eq!(list_by_label("com.example.case", &case).await.len(), before);
    assert_eq!(before, 0);
    err.to_string()
}

#[tokio::test]
async fn bad_binds_are_refused_and_create_nothing() {
    let msg =
        refused_without_a_container(sleeper().bind("/no/such/dir/anywhere", "/m"), "bind").await;
    assert!(msg.contains("/no/such/dir/anywhere"), "{msg}");
    let msg =
        refused_without_a_container(sleeper().bind("./tests/fixtures", "relative/path"), "bind")
            .await;
    assert!(msg.contains("must be absolute"), "{msg}");
    let msg =
        refused_without_a_container(sleeper().bind_str("./tests/fixtures:/m:ro,bogus"), "bind")
            .await;
    assert!(msg.contains("unknown option `bogus`"), "{msg}");
    let msg =
        refused_without_a_container(sleeper().bind_str("./tests/fixtures:/m:ro,rw"), "bind").await;
    assert!(msg.contains("conflict"), "{msg}");
}

#[tokio::test]
async fn other_bad_values_are_refused_and_create_nothing() {
    refused_without_a_container(sleeper().memory("lots"), "memory").await;
    refused_without_a_container(sleeper().cpus("0"), "cpus").await;
    refused_without_a_container(sleeper().env("BAD=KEY", "v"), "env").await;
    refused_without_a_container(sleeper().extra_host("db", "999.1.1.1"), "extra_host").await;
    refused_without_a_container(sleeper().working_dir("tmp"), "working_dir").await;
    refused_without_a_container(sleeper().tmpfs("scratch", ""), "tmpfs").await;
    refused_without_a_container(sleeper().name_prefix("bad name"), "name_prefix").await;
    refused_without_a_container(sleeper().expose(80), "expose").await;
}

#[tokio::test]
async fn unchecked_host_paths_must_be_absolute_and_are_passed_through() -> Result<()> {
    refused_without_a_container(
        sleeper().check_host_paths(false).bind("./tests", "/t"),
        "bind",
    )
    .await;
    let dir = TempDir::new("unchecked");
    let c = sleeper()
        .check_host_paths(false)
        .bind_ro(dir.path(), "/m")
        .start()
        .await?;
    c.exec_ok(["test", "-d", "/m"]).await?;
    Ok(())
}

#[tokio::test]
async fn tmpfs_env_workdir_user_and_limits_are_applied() -> Result<()> {
    let c = sleeper()
        .tmpfs("/scratch", "size=8m")
        .env("MODE", "test")
        .working_dir("/tmp")
        .user("65534")
        .memory("64m")
        .cpus("500m")
        .start()
        .await?;
    let out = c
        .exec_ok([
            "sh",
            "-c",
            "grep ' /scratch ' /proc/mounts; echo $MODE; pwd; id -u",
        ])
        .await?;
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].starts_with("tmpfs /scratch tmpfs"),
        "{}",
        out.stdout
    );
    assert_eq!(&lines[1..], ["test", "/tmp", "65534"]);
    let (mem, cpu) = support::limits_of(c.id()).await;
    assert_eq!(mem, 64 << 20);
    assert_eq!(cpu, 500_000_000);
    Ok(())
}

#[tokio::test]
async fn parallel_starts_get_distinct_readable_names() -> Result<()> {
    let (a, b) = tokio::try_join!(
        sleeper().name_prefix("twin").start(),
        sleeper().name_prefix("twin").start()
    )?;
    assert_ne!(a.name(), b.name());
    assert!(a.name().starts_with("twin-") && b.name().starts_with("twin-"));
    Ok(())
}

#[test]
fn validating_a_spec_starts_no_runtime_and_calls_no_daemon() {
    let child = support::run_child!(
        child_validates_specs,
        // Nothing answers here: a call to the daemon would fail.
        &[("DOCKER_HOST", "unix:///nonexistent.sock")]
    );
    child.assert_success();
    assert_eq!(child.value("ENGINE_THREADS"), "0", "{child}");
}

#[test]
#[ignore = "run as a child process by validating_a_spec_starts_no_runtime_and_calls_no_daemon"]
fn child_validates_specs() {
    if !support::is_child() {
        return;
    }
    dockfix::ContainerSpec::new(support::IMAGE)
        .cmd(["httpd", "-f", "-p", "8080"])
        .expose(8080)
        .bind_ro("./tests/fixtures", "/fixtures")
        .wait_for(dockfix::WaitFor::port(8080))
        .validate()
        .expect("a good spec validates");
    assert!(sleeper().memory("lots").validate().is_err());
    let engine_threads = std::fs::read_dir("/proc/self/task")
        .expect("this process's threads are listed in /proc")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim().starts_with("dockfix-engine"))
        .count();
    println!("ENGINE_THREADS={engine_threads}");
}
