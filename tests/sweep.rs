//! `dockfix sweep` and start-up reaping, against the real daemon.
//!
//! Every test here runs serially: a sweep removes any orphan on the
//! daemon, so two at once would see each other's containers. This process
//! never starts a container through dockfix (that would run start-up
//! reaping here, racing the sweeps); it makes containers with the labels
//! it needs through raw bollard, or in child processes.
#![cfg(feature = "cli")]

mod support;

use std::collections::{BTreeSet, HashMap};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::CreateContainerOptionsBuilder;
use serde_json::Value;
use serial_test::file_serial;
use support::{
    CASE_LABEL, IMAGE, force_remove, is_child, list_by_label, raw_docker, unique, wait_gone,
};

const CLI: &str = env!("CARGO_BIN_EXE_dockfix");

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned()
}

/// A pid that belonged to a process that has exited.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// Owner labels as dockfix writes them, for containers made here by hand.
struct Owner<'a> {
    session: &'a str,
    pid: u32,
    host: &'a str,
    created: u64,
    ttl: Option<u64>,
}

/// Creates and starts a container with `owner`'s labels (or none when
/// `owner` is `None`) and the test's case label, with no network.
async fn fake(case: &str, owner: Option<Owner<'_>>) -> String {
    let no_network = HostConfig {
        network_mode: Some("none".into()),
        ..Default::default()
    };
    fake_with(case, owner, no_network).await
}

/// [`fake`] with the given host config.
async fn fake_with(case: &str, owner: Option<Owner<'_>>, host_config: HostConfig) -> String {
    let name = unique("sweep-fake");
    let mut labels = HashMap::from([(CASE_LABEL.to_owned(), case.to_owned())]);
    if let Some(o) = owner {
        labels.extend([
            ("dockfix.managed".to_owned(), "true".to_owned()),
            ("dockfix.name".to_owned(), name.clone()),
            ("dockfix.session".to_owned(), o.session.to_owned()),
            ("dockfix.pid".to_owned(), o.pid.to_string()),
            ("dockfix.host".to_owned(), o.host.to_owned()),
            ("dockfix.created".to_owned(), o.created.to_string()),
            ("dockfix.version".to_owned(), "0.1.0".to_owned()),
        ]);
        if let Some(ttl) = o.ttl {
            labels.insert("dockfix.ttl".to_owned(), ttl.to_string());
        }
    }
    let docker = raw_docker().await;
    let body = ContainerCreateBody {
        image: Some(IMAGE.to_owned()),
        cmd: Some(vec!["sleep".into(), "300".into()]),
        labels: Some(labels),
        host_config: Some(host_config),
        ..Default::default()
    };
    let opts = CreateContainerOptionsBuilder::new().name(&name).build();
    let id = docker.create_container(Some(opts), body).await.unwrap().id;
    docker.start_container(&id, None).await.unwrap();
    id
}

/// Runs the CLI with `args` (and `env`), returning (exit code, stdout).
async fn cli(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = tokio::process::Command::new(CLI)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{stdout}{}",
            if stderr.is_empty() {
                String::new()
            } else {
                format!("\n[stderr]\n{stderr}")
            }
        ),
    )
}

/// Runs `dockfix sweep <args> --json` and returns (exit code, removed ids
/// with their reason, failed ids with their error).
async fn sweep_json(
    args: &[&str],
    env: &[(&str, &str)],
) -> (i32, HashMap<String, String>, HashMap<String, String>) {
    let mut all = vec!["sweep", "--json"];
    all.extend_from_slice(args);
    let (code, out) = cli(&all, env).await;
    let json_line = out.lines().next().unwrap_or_default();
    let v: Value =
        serde_json::from_str(json_line).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"));
    let entries = |key: &str, field: &str| -> HashMap<String, String> {
        v[key]
            .as_array()
            .unwrap_or_else(|| panic!("no {key} array:\n{out}"))
            .iter()
            .map(|e| {
                for f in ["kind", "id", "name", "session", "reason", "why", "state"] {
                    assert!(e[f].is_string(), "{f} missing in {e}");
                }
                (
                    e["id"].as_str().unwrap().to_owned(),
                    e[field].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    (
        code,
        entries("removed", "reason"),
        entries("failed", "error"),
    )
}

fn ids(map: &HashMap<String, String>) -> BTreeSet<String> {
    map.keys().cloned().collect()
}

#[tokio::test(flavor = "multi_thread")]
#[file_serial(sweep)]
async fn sweep_removes_exactly_the_containers_of_a_sigkilled_run() {
    // Leftovers of earlier runs would make "exactly" untrue.
    let (code, _, _) = sweep_json(&[], &[]).await;
    assert_eq!(code, 0);

    let case = unique("killed");
    let mut child = support::spawn_child!(child_holds_three_containers, &[("SWEEP_CASE", &case)]);
    let session = support::wait_ready(&mut child)
        .remove("SESSION")
        .expect("no SESSION line");
    child.kill().unwrap(); // SIGKILL: no Drop, no exit hook
    child.wait().unwrap();
    let held: BTreeSet<String> = list_by_label("dockfix.session", &session)
        .await
        .into_iter()
        .collect();
    assert_eq!(held.len(), 3, "the child should hold 3 containers");

    let unlabelled = fake(&case, None).await;
    let me = std::process::id();
    let live_session = unique("live");
    let host = this_host();
    let live = fake(
        &case,
        Some(Owner {
            session: &live_session,
            pid: me,
            host: &host,
            created: now(),
            ttl: None,
        }),
    )
    .await;

    let (code, would, _) = sweep_json(&["--dry-run"], &[]).await;
    assert_eq!(code, 0);
    assert_eq!(ids(&would), held, "dry run selection");
    assert!(would.values().all(|r| r == "orphaned"), "{would:?}");
    for id in &held {
        assert!(
            support::container_exists(id).await,
            "the dry run removed {id}"
        );
    }

    let (code, removed, failed) = sweep_json(&[], &[]).await;
    assert_eq!((code, failed.len()), (0, 0));
    assert_eq!(
        ids(&removed),
        held,
        "the sweep removes what the dry run listed"
    );
    for id in &held {
        assert!(
            !support::container_exists(id).await,
            "{id} survived the sweep"
        );
    }
    assert!(
        support::container_exists(&unlabelled).await,
        "an unlabelled container was touched"
    );
    assert!(
        support::container_exists(&live).await,
        "a live session's container was touched"
    );
    force_remove(&unlabelled).await;
    force_remove(&live).await;
}

#[test]
#[ignore = "run as a child process by sweep_removes_exactly_the_containers_of_a_sigkilled_run"]
fn child_holds_three_containers() -> dockfix::Result<()> {
    if !is_child() {
        return Ok(());
    }
    let case = std::env::var("SWEEP_CASE").unwrap();
    let spec = support::sleeper().label(CASE_LABEL, case);
    let held: Vec<_> = (0..3)
        .map(|_| spec.clone().start_blocking())
        .collect::<dockfix::Result<_>>()?;
    println!("SESSION={}", dockfix::session_id());
    println!("READY");
    std::thread::sleep(Duration::from_secs(300));
    drop(held);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
#[file_serial(sweep)]
async fn a_live_pid_that_started_after_the_container_counts_as_orphaned() {
    let case = unique("reuse");
    let session = unique("reuse-session");
    let host = this_host();
    // This process is alive, but started long after "created": its pid
    // was reused.
    let reused = fake(
        &case,
        Some(Owner {
            session: &session,
            pid: std::process::id(),
            host: &host,
            created: now() - 100_000,
            ttl: None,
        }),
    )
    .await;
    let (code, removed, _) = sweep_json(&["--dry-run"], &[]).await;
    assert_eq!(code, 0);
    assert_eq!(
        removed.get(&reused).map(String::as_str),
        Some("pid-reused"),
        "{removed:?}"
    );
    let (code, removed, _) = sweep_json(&["--session", &session], &[]).await;
    assert_eq!((code, ids(&removed)), (0, BTreeSet::from([reused])));
}

#[tokio::test(flavor = "multi_thread")]
#[file_serial(sweep)]
async fn ttl_and_older_than_expire_containers_whose_owner_cannot_be_checked() {
    let case = unique("expiry");
    let session = unique("expiry-session");
    let at = |created: u64, ttl: Option<u64>| Owner {
        session: &session,
        pid: 1,
        host: "another-host",
        created,
        ttl,
    };
    let old = fake(&case, Some(at(now() - 3600, None))).await;
    let ttl_passed = fake(&case, Some(at(now() - 120, Some(60)))).await;
    let young = fake(&case, Some(at(now() - 60, Some(600)))).await;
    let ours = |m: &HashMap<String, String>| -> BTreeSet<String> {
        ids(m)
            .into_iter()
            .filter(|id| [&old, &ttl_passed, &young].contains(&id))
            .collect()
    };

    let (_, removed, _) = sweep_json(&["--dry-run"], &[]).await;
    assert_eq!(ours(&removed), BTreeSet::from([ttl_passed.clone()]));
    assert_eq!(removed[&ttl_passed], "ttl-expired");
    let (_, removed, _) = sweep_json(&["--dry-run", "--older-than", "30m"], &[]).await;
    assert_eq!(
        ours(&removed),
        BTreeSet::from([old.clone(), ttl_passed.clone()])
    );
    assert_eq!(removed[&old], "older-than");
    let (_, removed, _) = sweep_json(&["--dry-run", "--older-than", "2h"], &[]).await;
    assert_eq!(ours(&removed), BTreeSet::from([ttl_passed.clone()]));
    let (_, removed, _) = sweep_json(&["--dry-run", "--all"], &[]).await;
    assert_eq!(
        ours(&removed),
        BTreeSet::from([old.clone(), ttl_passed.clone(), young.clone()])
    );
    assert_eq!(removed[&young], "unverifiable");

    // --session takes exactly that session, whatever else is expired.
    let (code, removed, _) = sweep_json(&["--session", &session], &[]).await;
    assert_eq!(code, 0);
    assert_eq!(
        ids(&removed),
        BTreeSet::from([old.clone(), ttl_passed.clone(), young.clone()])
    );
    assert!(removed.values().all(|r| r == "session"));
    for id in [&old, &ttl_passed, &young] {
        assert!(!support::container_exists(id).await);
    }
}

#[tokio::test(flavor = "multi_thread")]
#[file_serial(sweep)]
async fn a_failed_removal_is_reported_the_rest_removed_and_the_exit_code_is_1() {
    let case = unique("resist");
    let session = unique("resist-session");
    let host = this_host();
    let gone = dead_pid();
    let owner = || Owner {
        session: &session,
        pid: gone,
        host: &host,
        created: now(),
        ttl: None,
    };
    let resisting = fake(&case, Some(owner())).await;
    let others = [
        fake(&case, Some(owner())).await,
        fake(&case, Some(owner())).await,
    ];
    // The daemon itself answers 500 to the removal of one container. A
    // 500 is retried, so the sweep is given few attempts.
    let proxy = support::fault_proxy::FaultProxy::start();
    proxy.fail_matching("DELETE", &resisting, 500);
    let host_env = proxy.docker_host();
    let env = [
        ("DOCKER_HOST", host_env.as_str()),
        ("DOCKFIX_RETRY_MAX_ATTEMPTS", "3"),
    ];
    let (code, removed, failed) = sweep_json(&["--session", &session], &env).await;
    assert_eq!(code, 1);
    assert_eq!(
        ids(&removed),
        others.iter().cloned().collect::<BTreeSet<_>>()
    );
    assert_eq!(ids(&failed), BTreeSet::from([resisting.clone()]));
    assert!(
        failed[&resisting].contains("injected 500")
            && failed[&resisting].contains("gave up after 3 attempts"),
        "{failed:?}"
    );

    let (code, text) = cli(&["sweep", "--session", &session], &env).await;
    assert_eq!(code, 1);
    assert!(
        text.contains("FAILED to remove") && text.contains("injected 500"),
        "{text}"
    );
    assert!(text.contains("0 removed, 1 failed"), "{text}");
    drop(proxy);
    force_remove(&resisting).await;
}

/// Owner labels for the network or volume `name` made here by hand.
fn owner_labels(o: &Owner<'_>, name: &str) -> HashMap<String, String> {
    HashMap::from([
        ("dockfix.managed".to_owned(), "true".to_owned()),
        ("dockfix.name".to_owned(), name.to_owned()),
        ("dockfix.session".to_owned(), o.session.to_owned()),
        ("dockfix.pid".to_owned(), o.pid.to_string()),
        ("dockfix.host".to_owned(), o.host.to_owned()),
        ("dockfix.created".to_owned(), o.created.to_string()),
        ("dockfix.version".to_owned(), "0.1.0".to_owned()),
    ])
}

#[tokio::test(flavor = "multi_thread")]
#[file_serial(sweep)]
async fn orphaned_networks_and_volumes_are_swept_after_their_containers() {
    let case = unique("netvol");
    let session = unique("netvol-session");
    let host = this_host();
    let owner = Owner {
        session: &session,
        pid: dead_pid(),
        host: &host,
        created: now(),
        ttl: None,
    };
    let docker = raw_docker().await;
    let net_name = unique("sweep-net");
    let network = docker
        .create_network(bollard::models::NetworkCreateRequest {
            name: net_name.clone(),
            labels: Some(owner_labels(&owner, &net_name)),
            ..Default::default()
        })
        .await
        .unwrap()
        .id;
    let volume_name = unique("sweep-vol");
    let volume = docker
        .create_volume(bollard::models::VolumeCreateRequest {
            name: Some(volume_name.clone()),
            labels: Some(owner_labels(&owner, &volume_name)),
            ..Default::default()
        })
        .await
        .unwrap()
        .name;
    // A container of the same dead owner still uses both.
    let uses_both = HostConfig {
        network_mode: Some(net_name.clone()),
        binds: Some(vec![format!("{volume}:/data")]),
        ..Default::default()
    };
    let user = fake_with(&case, Some(Owner { ..owner }), uses_both).await;

    let (code, listed) = cli(&["ls", "--json"], &[]).await;
    assert_eq!(code, 0);
    let listed: Value = serde_json::from_str(listed.lines().next().unwrap()).unwrap();
    let kind_of = |id: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .map(|r| r["kind"].as_str().unwrap().to_owned())
    };
    assert_eq!(kind_of(&network).as_deref(), Some("network"));
    assert_eq!(kind_of(&volume).as_deref(), Some("volume"));

    let (code, removed, failed) = sweep_json(&["--session", &session], &[]).await;
    assert_eq!((code, failed.len()), (0, 0), "{failed:?}");
    assert_eq!(
        ids(&removed),
        BTreeSet::from([network.clone(), volume.clone(), user.clone()])
    );
    assert!(!support::container_exists(&user).await);
    assert!(
        docker
            .inspect_network(
                &network,
                None::<bollard::query_parameters::InspectNetworkOptions>
            )
            .await
            .is_err()
    );
    assert!(docker.inspect_volume(&volume).await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
#[file_serial(sweep)]
async fn an_unreachable_daemon_is_exit_code_2() {
    let (code, text) = cli(&["sweep"], &[("DOCKER_HOST", "unix:///nonexistent.sock")]).await;
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("unix:///nonexistent.sock"), "{text}");
    let (code, _) = cli(&["sweep", "--older-than", "soon"], &[]).await;
    assert_eq!(code, 2);
}

/// Mistakes on the command line exit 2 with a message, before anything is
/// listed or removed: an empty session id (which would name every
/// container without one), a malformed duration, conflicting flags.
#[tokio::test(flavor = "multi_thread")]
#[file_serial(sweep)]
async fn command_line_mistakes_exit_2_and_say_why() {
    for (args, says) in [
        (&["sweep", "--session", ""][..], "the session id is empty"),
        (&["sweep", "--session", " "][..], "the session id is empty"),
        (&["sweep", "--older-than", "soon"][..], "not a duration"),
        (&["sweep", "--older-than", "5w"][..], "unknown unit"),
        (
            &["sweep", "--session", "abc", "--all"][..],
            "cannot be used with",
        ),
        (
            &["sweep", "--session", "abc", "--older-than", "1h"][..],
            "cannot be used with",
        ),
    ] {
        let out = tokio::process::Command::new(CLI)
            .args(args)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    // The library refuses an empty session too.
    let err = dockfix::Sweep::new().session("").run().await.unwrap_err();
    assert!(
        matches!(
            err,
            dockfix::Error::InvalidSpec {
                field: "session",
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[file_serial(sweep)]
async fn ls_lists_managed_containers_as_json() {
    let case = unique("ls");
    let session = unique("ls-session");
    let host = this_host();
    let id = fake(
        &case,
        Some(Owner {
            session: &session,
            pid: std::process::id(),
            host: &host,
            created: now(),
            ttl: Some(600),
        }),
    )
    .await;
    let (code, out) = cli(&["ls", "--json"], &[]).await;
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let row = v
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.as_str())
        .expect("not listed");
    assert_eq!(row["session"], session.as_str());
    assert_eq!(row["owner"], "alive");
    assert_eq!(row["ttl_secs"], 600);
    assert_eq!(row["state"], "running");
    let (code, table) = cli(&["ls"], &[]).await;
    assert_eq!(code, 0);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("container") && l.contains(&id[..12]) && l.contains(&session)),
        "{table}"
    );
    force_remove(&id).await;
}

#[tokio::test(flavor = "multi_thread")]
#[file_serial(sweep)]
async fn the_first_start_of_a_process_reaps_orphans_of_this_host_unless_turned_off() {
    let case = unique("reap");
    let session = unique("reap-session");
    let host = this_host();
    let orphan = |pid| Owner {
        session: &session,
        pid,
        host: &host,
        created: now(),
        ttl: None,
    };
    let kept = fake(&case, Some(orphan(dead_pid()))).await;
    support::run_child!(
        child_starts_one_container,
        &[("DOCKFIX_SWEEP_ON_START", "0"), ("REAP_WATCH", &kept)]
    )
    .assert_success();
    assert!(
        support::container_exists(&kept).await,
        "reaped although turned off"
    );

    support::run_child!(child_starts_one_container, &[("REAP_WATCH", &kept)]).assert_success();
    assert!(
        wait_gone(&kept, Duration::from_secs(10)).await,
        "the orphan was not reaped"
    );
}

#[test]
#[ignore = "run as a child process by the_first_start_of_a_process_reaps_orphans_of_this_host_unless_turned_off"]
fn child_starts_one_container() -> dockfix::Result<()> {
    if !is_child() {
        return Ok(());
    }
    let _c = support::sleeper().start_blocking()?;
    // Reaping runs in the background: give it the time it needs here, so
    // the parent sees its result (or, when off, that nothing happened).
    let watched = std::env::var("REAP_WATCH").unwrap();
    let reaping = std::env::var("DOCKFIX_SWEEP_ON_START").as_deref() != Ok("0");
    let deadline = std::time::Instant::now() + Duration::from_secs(if reaping { 10 } else { 2 });
    while std::time::Instant::now() < deadline {
        if !support::block_on(support::container_exists(&watched)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Docker copies an image's labels into every container made from it. A
/// container someone else makes, with `docker run`, from an image dockfix
/// built, or from an image that carries owner labels of a dead process of
/// this host (as images of earlier versions did), is never selected: not
/// by the default sweep (which start-up reaping runs), not with `--all`,
/// not with `--older-than 0s`, and `ls` does not list it.
#[tokio::test(flavor = "multi_thread")]
#[file_serial(sweep)]
async fn containers_others_make_from_a_labelled_image_are_never_taken() {
    let case = unique("inherit");
    // An image dockfix built: its owner labels are under dockfix.image.
    let built_tag = format!("dockfix-test/inherited:{}", unique("t"));
    let context = support::TempDir::new("inherit-ctx");
    std::fs::write(
        context.path().join("Dockerfile"),
        format!("FROM {IMAGE}\nCMD [\"sleep\", \"300\"]\n"),
    )
    .unwrap();
    let built = dockfix::LocalImage::build(context.path(), &built_tag)
        .await
        .unwrap();
    // An image labelled as an earlier version labelled its images: the
    // owner labels of a process of this host that is gone.
    let old_tag = format!("dockfix-test/old-labels:{}", unique("t"));
    std::fs::write(
        context.path().join("Dockerfile"),
        format!(
            "FROM {IMAGE}\nLABEL dockfix.managed=true dockfix.session=old-builder dockfix.pid={} dockfix.host={} dockfix.created={}\nCMD [\"sleep\", \"300\"]\n",
            dead_pid(),
            this_host(),
            now() - 3600
        ),
    )
    .unwrap();
    let old = dockfix::LocalImage::build(context.path(), &old_tag)
        .await
        .unwrap();

    // Someone else runs both, without dockfix.
    let docker = raw_docker().await;
    let mut theirs = Vec::new();
    for tag in [&built_tag, &old_tag] {
        let body = ContainerCreateBody {
            image: Some(tag.clone()),
            labels: Some(HashMap::from([(CASE_LABEL.to_owned(), case.clone())])),
            host_config: Some(HostConfig {
                network_mode: Some("none".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let name = unique("someone-else");
        let opts = CreateContainerOptionsBuilder::new().name(&name).build();
        let id = docker.create_container(Some(opts), body).await.unwrap().id;
        docker.start_container(&id, None).await.unwrap();
        theirs.push(id);
    }
    // The old image's labels did reach its container: it reads as managed.
    let inherited = support::labels_of(&theirs[1]).await;
    assert_eq!(
        inherited.get("dockfix.managed").map(String::as_str),
        Some("true")
    );

    let listed = dockfix::list_managed().await.unwrap();
    assert!(
        !listed.iter().any(|m| theirs.contains(&m.id)),
        "ls lists a container dockfix did not make"
    );
    for sweep in [
        dockfix::Sweep::new(),
        dockfix::Sweep::new().all(true),
        dockfix::Sweep::new().all(true).older_than(Duration::ZERO),
    ] {
        let report = sweep.dry_run(true).run().await.unwrap();
        assert!(
            !report
                .removed
                .iter()
                .any(|c| theirs.contains(&c.resource.id)),
            "a sweep selects a container dockfix did not make: {report:?}"
        );
    }
    for id in &theirs {
        assert!(support::is_running(id).await);
        force_remove(id).await;
    }
    built.remove().await.unwrap();
    old.remove().await.unwrap();
}
