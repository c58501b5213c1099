//! The fault proxy of the test support: it forwards faithfully, and each
//! fault does what it says, against the real daemon.

mod support;

use std::collections::HashMap;
use std::io::ErrorKind;
use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use bollard::errors::Error;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, EventsOptionsBuilder, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder,
};
use bollard::{API_DEFAULT_VERSION, Docker};
use futures::{StreamExt, TryStreamExt};
use support::fault_proxy::FaultProxy;
use support::{CASE_LABEL, IMAGE, unique};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

type Result<T = (), E = Error> = std::result::Result<T, E>;

/// Longer than any answer of an idle daemon, shorter than a test's patience.
const HANG: Duration = Duration::from_millis(500);

/// A bollard client of the proxy, with the version negotiated (one
/// `GET /version` through the proxy).
async fn client(proxy: &FaultProxy) -> Docker {
    Docker::connect_with_unix(&proxy.docker_host(), 10, API_DEFAULT_VERSION)
        .expect("cannot make a client of the proxy")
        .negotiate_version()
        .await
        .expect("the daemon does not answer through the proxy")
}

/// Removes, through the real socket, every container labelled with its
/// case, even when the test panics.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let case = self.0.clone();
        // A thread of its own: the test's runtime may be the current one.
        let _ = std::thread::spawn(move || {
            support::block_on(async {
                for id in support::list_by_label(CASE_LABEL, &case).await {
                    support::force_remove(&id).await;
                }
            });
        })
        .join();
    }
}

/// A sleeper labelled `dockfix.managed=true` and `CASE_LABEL=case`.
fn sleeper(case: &str) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(IMAGE.to_owned()),
        cmd: Some(vec!["sleep".to_owned(), "300".to_owned()]),
        labels: Some(HashMap::from([
            ("dockfix.managed".to_owned(), "true".to_owned()),
            (CASE_LABEL.to_owned(), case.to_owned()),
        ])),
        host_config: Some(HostConfig {
            network_mode: Some("none".to_owned()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn named(name: &str) -> Option<bollard::query_parameters::CreateContainerOptions> {
    Some(CreateContainerOptionsBuilder::new().name(name).build())
}

fn is_server_error(e: &Error, status: u16) -> bool {
    matches!(e, Error::DockerResponseServerError { status_code, .. } if *status_code == status)
}

/// An error of the connection rather than an answer of the daemon.
fn is_connection_error(e: &Error) -> bool {
    !matches!(e, Error::DockerResponseServerError { .. })
}

/// The path without its `/v1.xx` prefix.
fn unversioned(path: &str) -> &str {
    match path.strip_prefix("/v") {
        Some(rest) => rest.find('/').map_or(path, |i| &rest[i..]),
        None => path,
    }
}

/// Waits until the proxy has logged `n` requests `method path_contains`.
async fn wait_for_count(proxy: &FaultProxy, method: &str, path_contains: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.count(method, path_contains) < n {
        assert!(
            Instant::now() < deadline,
            "the proxy never saw {n} {method} {path_contains}: {:?}",
            proxy.requests()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs `cmd` through an attached exec, writing `stdin` if any, and returns
/// its stdout and stderr.
async fn exec(
    docker: &Docker,
    id: &str,
    cmd: &[&str],
    stdin: Option<&[u8]>,
) -> Result<(Vec<u8>, Vec<u8>)> {
    let exec = docker
        .create_exec(
            id,
            CreateExecOptions {
                cmd: Some(cmd.to_vec()),
                attach_stdin: Some(stdin.is_some()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await?
        .id;
    let StartExecResults::Attached {
        mut output,
        mut input,
    } = docker.start_exec(&exec, None).await?
    else {
        panic!("exec {cmd:?} started detached");
    };
    let write = async {
        if let Some(stdin) = stdin {
            input
                .write_all(stdin)
                .await
                .expect("cannot write the exec's stdin");
            // The half-close must reach the command as the end of its input.
            input
                .shutdown()
                .await
                .expect("cannot close the exec's stdin");
        }
    };
    let read = async {
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        while let Some(chunk) = output.next().await {
            match chunk? {
                LogOutput::StdOut { message } => stdout.extend_from_slice(&message),
                LogOutput::StdErr { message } => stderr.extend_from_slice(&message),
                _ => {}
            }
        }
        Ok::<_, Error>((stdout, stderr))
    };
    let ((), out) = tokio::join!(write, read);
    let out = out?;
    assert_eq!(
        docker.inspect_exec(&exec).await?.exit_code,
        Some(0),
        "exec {cmd:?}"
    );
    Ok(out)
}

#[tokio::test]
async fn forwards_every_request_of_a_kept_alive_client_bodies_streams_and_hijacks_included()
-> Result {
    if support::skip_on_podman(
        "its events stream reports other actions than Docker's create and start",
    )
    .await
    {
        return Ok(());
    }
    let proxy = FaultProxy::start();
    let case = unique("forward");
    let _cleanup = Cleanup(case.clone());
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is before 1970")
        .as_secs()
        .to_string();
    // One client, hence kept-alive connections, for every request below.
    let docker = client(&proxy).await;

    assert_eq!(docker.ping().await?, "OK");
    let all = ListContainersOptionsBuilder::new().all(true).build();
    docker.list_containers(Some(all)).await?;

    // A request body far bigger than any buffer of the proxy.
    let big = "x".repeat(200_000);
    let mut body = sleeper(&case);
    if let Some(labels) = body.labels.as_mut() {
        labels.insert("com.example.big".to_owned(), big.clone());
    }
    let id = docker.create_container(named(&case), body).await?.id;
    assert_eq!(
        support::labels_of(&id).await.get("com.example.big"),
        Some(&big),
        "the create body was mangled"
    );
    docker.start_container(&id, None).await?;

    let (stdout, stderr) = exec(
        &docker,
        &id,
        &[
            "sh",
            "-c",
            "echo out; echo err >&2; echo to-log > /proc/1/fd/1",
        ],
        None,
    )
    .await?;
    assert_eq!((&stdout[..], &stderr[..]), (&b"out\n"[..], &b"err\n"[..]));

    // Both directions of a hijacked stream, large, and its half-close.
    let data: Vec<u8> = (0..1 << 20).map(|i| b'a' + (i % 26) as u8).collect();
    let (echoed, _) = exec(&docker, &id, &["cat"], Some(&data)).await?;
    assert!(
        echoed == data,
        "cat echoed {} of {} bytes",
        echoed.len(),
        data.len()
    );

    // Chunked responses: a finished one and an endless one.
    let logs: Vec<LogOutput> = docker
        .logs(&id, Some(LogsOptionsBuilder::new().stdout(true).build()))
        .try_collect()
        .await?;
    let logs: Vec<u8> = logs.iter().flat_map(|l| l.as_ref().to_vec()).collect();
    assert_eq!(logs, b"to-log\n");
    let filters = HashMap::from([("label", vec![format!("{CASE_LABEL}={case}")])]);
    let events = docker.events(Some(
        EventsOptionsBuilder::new()
            .since(&started)
            .filters(&filters)
            .build(),
    ));
    let first: Vec<_> = timeout(
        Duration::from_secs(10),
        events.take(2).try_collect::<Vec<_>>(),
    )
    .await
    .expect("no events through the proxy")?;
    let actions: Vec<_> = first.iter().filter_map(|e| e.action.as_deref()).collect();
    assert_eq!(actions, ["create", "start"]);

    let force = RemoveContainerOptionsBuilder::new().force(true).build();
    docker.remove_container(&id, Some(force)).await?;
    assert!(support::list_by_label(CASE_LABEL, &case).await.is_empty());

    let seen: Vec<(String, String)> = proxy
        .requests()
        .into_iter()
        .map(|(m, p)| (m, unversioned(&p).to_owned()))
        .filter(|(_, p)| !p.starts_with("/exec/"))
        .collect();
    let expected = [
        ("GET", "/version".to_owned()),
        ("GET", "/_ping".to_owned()),
        ("GET", "/containers/json".to_owned()),
        ("POST", "/containers/create".to_owned()),
        ("POST", format!("/containers/{id}/start")),
        ("POST", format!("/containers/{id}/exec")),
        ("POST", format!("/containers/{id}/exec")),
        ("GET", format!("/containers/{id}/logs")),
        ("GET", "/events".to_owned()),
        ("DELETE", format!("/containers/{id}")),
    ]
    .map(|(m, p)| (m.to_owned(), p));
    assert_eq!(seen, expected);
    // Per exec: its start (the hijack) and the inspect after it.
    assert_eq!(proxy.count("POST", "/exec/"), 2);
    assert_eq!(proxy.count("GET", "/exec/"), 2);
    Ok(())
}

#[tokio::test]
async fn fail_next_answers_exactly_n_requests_itself_then_forwards() -> Result {
    let proxy = FaultProxy::start();
    let docker = client(&proxy).await;

    proxy.fail_next(3, 503);
    for i in 0..3 {
        match docker.ping().await {
            Err(Error::DockerResponseServerError {
                status_code: 503,
                message,
            }) => assert_eq!(message, "injected 503"),
            other => panic!("ping {i} under fail_next: {other:?}"),
        }
    }
    assert_eq!(docker.ping().await?, "OK");
    assert_eq!(proxy.count("GET", "/_ping"), 4);

    // An answered request never reaches the daemon.
    let case = unique("fail");
    let _cleanup = Cleanup(case.clone());
    proxy.fail_next(1, 500);
    let err = docker
        .create_container(named(&case), sleeper(&case))
        .await
        .expect_err("create under fail_next succeeded");
    assert!(is_server_error(&err, 500), "{err:?}");
    assert!(!support::container_exists(&case).await);
    Ok(())
}

#[tokio::test]
async fn refuse_next_closes_one_connection_unread() -> Result {
    let proxy = FaultProxy::start();
    let docker = client(&proxy).await;

    proxy.refuse_next(1);
    let err = docker
        .ping()
        .await
        .expect_err("ping on a refused connection");
    assert!(is_connection_error(&err), "{err:?}");
    assert_eq!(docker.ping().await?, "OK");
    // The refused connection carried no request the proxy read.
    assert_eq!(proxy.count("GET", "/_ping"), 1);
    Ok(())
}

#[tokio::test]
async fn swallowed_create_is_done_by_the_daemon_but_never_answered() -> Result {
    let proxy = FaultProxy::start();
    let docker = client(&proxy).await;
    let case = unique("swallow");
    let _cleanup = Cleanup(case.clone());

    proxy.swallow_next_create();
    // Requests other than a create pass.
    assert_eq!(docker.ping().await?, "OK");
    let err = docker
        .create_container(named(&case), sleeper(&case))
        .await
        .expect_err("a swallowed create was answered");
    assert!(is_connection_error(&err), "{err:?}");

    let info = support::raw_docker()
        .await
        .inspect_container(&case, None)
        .await?;
    let id = info.id.expect("inspect without an id");
    assert_eq!(
        support::labels_of(&id).await.get(CASE_LABEL),
        Some(&case),
        "the daemon holds someone else's container"
    );
    support::force_remove(&id).await;
    assert!(!support::container_exists(&id).await);

    // Armed once only.
    let second = format!("{case}-2");
    let id = docker
        .create_container(named(&second), sleeper(&case))
        .await?
        .id;
    support::force_remove(&id).await;
    assert_eq!(proxy.count("POST", "/containers/create"), 2);
    Ok(())
}

#[tokio::test]
async fn black_hole_holds_requests_unanswered_until_turned_off() -> Result {
    let proxy = FaultProxy::start();
    let docker = client(&proxy).await;

    proxy.black_hole(true);
    assert!(
        timeout(HANG, docker.ping()).await.is_err(),
        "a black-holed ping was answered"
    );
    // A held request is closed, unanswered, when the black hole goes.
    let held = tokio::spawn({
        let docker = docker.clone();
        async move { docker.ping().await }
    });
    wait_for_count(&proxy, "GET", "/_ping", 2).await;
    proxy.black_hole(false);
    let err = timeout(Duration::from_secs(5), held)
        .await
        .expect("turning the black hole off did not release a held request")
        .expect("the held ping panicked")
        .expect_err("a black-holed ping was answered");
    assert!(is_connection_error(&err), "{err:?}");

    assert_eq!(docker.ping().await?, "OK");
    assert_eq!(proxy.count("GET", "/_ping"), 3);
    Ok(())
}

#[tokio::test]
async fn kill_fails_requests_and_closes_connections_until_revive() -> Result {
    let proxy = FaultProxy::start();
    let docker = client(&proxy).await;

    // A request in flight when the proxy dies.
    proxy.black_hole(true);
    let held = tokio::spawn({
        let docker = docker.clone();
        async move { docker.ping().await }
    });
    wait_for_count(&proxy, "GET", "/_ping", 1).await;
    proxy.kill();
    let err = timeout(Duration::from_secs(5), held)
        .await
        .expect("kill left a request hanging")
        .expect("the held ping panicked")
        .expect_err("a ping held across kill was answered");
    assert!(is_connection_error(&err), "{err:?}");
    proxy.black_hole(false);

    assert!(!proxy.path().exists(), "kill left the socket file");
    let refused = std::os::unix::net::UnixStream::connect(proxy.path())
        .expect_err("connected to a killed proxy");
    assert_eq!(refused.kind(), ErrorKind::NotFound);
    let err = docker
        .ping()
        .await
        .expect_err("ping through a killed proxy");
    assert!(is_connection_error(&err), "{err:?}");
    proxy.kill();

    proxy.revive();
    assert_eq!(docker.ping().await?, "OK");
    proxy.revive();
    assert_eq!(docker.ping().await?, "OK");
    assert_eq!(proxy.count("GET", "/_ping"), 3);
    Ok(())
}

#[tokio::test]
async fn delay_holds_each_response_at_least_that_long() -> Result {
    let proxy = FaultProxy::start();
    let docker = client(&proxy).await;
    let delay = Duration::from_millis(600);

    proxy.delay(delay);
    let t = Instant::now();
    assert_eq!(docker.ping().await?, "OK");
    assert!(t.elapsed() >= delay, "forwarded after {:?}", t.elapsed());

    proxy.fail_next(1, 503);
    let t = Instant::now();
    let err = docker.ping().await.expect_err("ping under fail_next");
    assert!(is_server_error(&err, 503), "{err:?}");
    assert!(t.elapsed() >= delay, "injected after {:?}", t.elapsed());

    proxy.delay(Duration::ZERO);
    let t = Instant::now();
    assert_eq!(docker.ping().await?, "OK");
    assert!(t.elapsed() < delay, "undelayed ping took {:?}", t.elapsed());
    Ok(())
}

#[tokio::test]
async fn count_matches_method_and_path_and_reset_log_empties_it() -> Result {
    let proxy = FaultProxy::start();
    let docker = Docker::connect_with_host(&proxy.docker_host())?
        .negotiate_version()
        .await?;

    docker.ping().await?;
    docker.ping().await?;
    let all = ListContainersOptionsBuilder::new().all(true).build();
    docker.list_containers(Some(all)).await?;

    assert_eq!(proxy.count("GET", "/_ping"), 2);
    assert_eq!(proxy.count("get", "_ping"), 2);
    assert_eq!(proxy.count("POST", "/_ping"), 0);
    assert_eq!(proxy.count("GET", "/containers/json"), 1);
    assert_eq!(proxy.count("GET", ""), 4);
    let requests = proxy.requests();
    let (method, path) = requests.last().expect("an empty log");
    // The query is not logged.
    assert_eq!((&method[..], &path[..]), ("GET", "/containers/json"));

    proxy.reset_log();
    assert!(proxy.requests().is_empty());
    docker.ping().await?;
    assert_eq!(proxy.count("GET", "/_ping"), 1);
    Ok(())
}

#[tokio::test]
async fn raw_keep_alive_request_is_answered_once_and_closed_with_its_path_logged() {
    let proxy = FaultProxy::start();
    let mut conn = tokio::net::UnixStream::connect(proxy.path())
        .await
        .expect("cannot connect to the proxy");
    conn.write_all(
        b"GET /v1.41/_ping?probe=1 HTTP/1.1\r\nHost: docker\r\nConnection: keep-alive\r\n\r\n",
    )
    .await
    .expect("cannot send a request");
    let mut response = Vec::new();
    // The daemon was told `Connection: close`: it answers and closes.
    timeout(Duration::from_secs(5), conn.read_to_end(&mut response))
        .await
        .expect("the connection stayed open after the answer")
        .expect("cannot read the answer");
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.contains("Connection: close\r\n"), "{response}");
    assert!(response.ends_with("\r\n\r\nOK"), "{response}");
    // A version prefix is logged as sent.
    assert_eq!(
        proxy.requests(),
        [("GET".to_owned(), "/v1.41/_ping".to_owned())]
    );
}

#[test]
fn serves_plain_tests_and_outlives_the_runtimes_that_used_it() {
    let proxy = FaultProxy::start();
    for _ in 0..2 {
        // Each call builds a runtime and drops it.
        let pong = support::block_on(async { client(&proxy).await.ping().await });
        assert_eq!(pong.expect("ping through the proxy"), "OK");
    }

    let other = proxy.clone();
    let err = support::block_on(async {
        let docker = client(&proxy).await;
        std::thread::spawn(move || other.fail_next(1, 500))
            .join()
            .expect("fail_next panicked on another thread");
        docker.ping().await
    })
    .expect_err("fail_next from another thread was ignored");
    assert!(is_server_error(&err, 500), "{err:?}");
}

#[tokio::test]
async fn dropping_the_last_clone_stops_the_proxy_and_removes_its_socket() -> Result {
    let proxy = FaultProxy::start();
    let docker = client(&proxy).await;
    let path = proxy.path().to_owned();

    let clone = proxy.clone();
    drop(proxy);
    assert_eq!(docker.ping().await?, "OK");

    clone.black_hole(true);
    let held = tokio::spawn({
        let docker = docker.clone();
        async move { docker.ping().await }
    });
    wait_for_count(&clone, "GET", "/_ping", 2).await;
    drop(clone);

    assert!(!path.exists(), "drop left the socket file");
    let err = timeout(Duration::from_secs(5), held)
        .await
        .expect("drop left a request hanging")
        .expect("the held ping panicked")
        .expect_err("a ping held across drop was answered");
    assert!(is_connection_error(&err), "{err:?}");
    assert!(docker.ping().await.is_err(), "a dropped proxy answered");
    Ok(())
}

#[test]
fn drop_leaves_no_thread_socket_or_descriptor_behind() {
    let child = support::run_child!(child_uses_and_drops_proxies);
    child.assert_success();
    assert_eq!(
        child.value("THREADS"),
        "0",
        "proxy threads left running\n{child}"
    );
    assert_eq!(
        child.value("NEW_FDS"),
        "0",
        "descriptors left open\n{child}"
    );
    assert_eq!(
        child.value("SOCKETS"),
        "0",
        "socket files left behind\n{child}"
    );
}

#[test]
#[ignore = "run as a child process by drop_leaves_no_thread_socket_or_descriptor_behind"]
fn child_uses_and_drops_proxies() {
    if !support::is_child() {
        return;
    }
    let open_fds = || std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    let mut paths = Vec::new();
    let mut baseline = 0;
    // The first round warms up whatever the process opens once.
    for round in 0..4 {
        if round == 1 {
            baseline = open_fds();
        }
        let proxy = FaultProxy::start();
        paths.push(proxy.path().to_owned());
        support::block_on(async {
            let docker = client(&proxy).await;
            proxy.kill();
            proxy.revive();
            proxy.delay(Duration::from_millis(10));
            assert_eq!(docker.ping().await.expect("ping"), "OK");
            proxy.black_hole(true);
            let held = tokio::spawn({
                let docker = docker.clone();
                async move { docker.ping().await }
            });
            wait_for_count(&proxy, "GET", "/_ping", 2).await;
            drop(proxy);
            assert!(held.await.expect("the held ping panicked").is_err());
        });
    }
    let threads = std::fs::read_dir("/proc/self/task")
        .expect("cannot list this process's threads")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim() == "fault-proxy")
        .count();
    println!("THREADS={threads}");
    println!("NEW_FDS={}", open_fds() as i64 - baseline as i64);
    println!("SOCKETS={}", paths.iter().filter(|p| p.exists()).count());
}
