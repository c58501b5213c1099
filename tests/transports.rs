//! Where the daemon is found, and how it is reached: Docker contexts made
//! by the Docker CLI itself, the well-known sockets, and TLS as GitLab's
//! `docker:dind` offers it (in front of the local socket, on loopback).
//! Each case runs in a child process: the daemon is chosen once per
//! process.

mod support;

use std::process::Command;
use std::time::Instant;

use dockfix::{ContainerSpec, Error};
use support::fault_proxy::FaultProxy;
use support::tls::{Certs, Forward};
use support::{IMAGE, TempDir};

/// Clears the places a child could otherwise find the daemon by.
const NOTHING_NAMED: [(&str, &str); 4] = [
    ("DOCKER_HOST", ""),
    ("DOCKER_CONTEXT", ""),
    ("DOCKER_TLS_VERIFY", ""),
    ("DOCKER_CERT_PATH", ""),
];

fn env_with<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    NOTHING_NAMED
        .iter()
        .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
        .chain(extra)
        .copied()
        .collect()
}

/// Runs the Docker CLI with `DOCKER_CONFIG=config`.
fn docker_cli(config: &str, args: &[&str]) {
    let out = Command::new("docker")
        .args(args)
        .env("DOCKER_CONFIG", config)
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKER_CONTEXT")
        .output()
        .expect("cannot run the docker CLI");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts a container, runs a command in it, removes it; prints where the
/// daemon was found.
#[test]
#[ignore = "run by its parent test in a child process"]
fn use_the_daemon_child() {
    if !support::is_child() {
        return;
    }
    support::block_on(async {
        let started = Instant::now();
        let result = async {
            let c = ContainerSpec::new(IMAGE)
                .network_mode("none")
                .cmd(["sleep", "30"])
                .start()
                .await?;
            let out = c.exec_ok(["echo", "reached"]).await?;
            c.remove().await?;
            let d = dockfix::daemon().await?;
            Ok::<_, Error>((out.stdout, d))
        }
        .await;
        println!("TOOK_MS={}", started.elapsed().as_millis());
        match result {
            Ok((stdout, d)) => {
                println!("OUTCOME=ok {}", stdout.trim());
                println!("ENDPOINT={}", d.endpoint);
                println!("WHY={}", d.chosen_because);
                println!("TLS={}", d.tls);
                println!("ENGINE={} {} api {}", d.engine, d.version, d.api_version);
                if std::env::var_os("EVERY_FEATURE").is_some() {
                    for (feature, result) in every_feature().await {
                        let shown =
                            result.map_or_else(|e| e.replace('\n', " | "), |()| "ok".to_owned());
                        println!("FEATURE {feature}={shown}");
                    }
                }
            }
            Err(e) => {
                let kind = match &e {
                    Error::DockerUnavailable { .. } => "unavailable",
                    Error::CircuitOpen { .. } => "circuit-open",
                    Error::Docker { .. } => "docker",
                    _ => "other",
                };
                println!("OUTCOME={kind}");
                println!("ERROR={}", format!("{e:?}").replace('\n', " | "));
            }
        }
    });
}

/// The features of the compatibility table in README, each tried once
/// through whatever transport the process found.
async fn every_feature() -> Vec<(&'static str, Result<(), String>)> {
    let text = |e: Error| format!("{e:?}");
    let sleeper = || ContainerSpec::new(IMAGE).cmd(["sleep", "60"]);
    let mut results = Vec::new();

    let kill = async {
        let c = sleeper().network_mode("none").start().await.map_err(text)?;
        let err = c
            .exec(["sleep", "41"])
            .timeout(std::time::Duration::from_secs(1))
            .await
            .expect_err("sleep 41 cannot finish in 1 s");
        let ps = c.exec_ok(["ps", "-o", "args"]).await.map_err(text)?.stdout;
        c.remove().await.map_err(text)?;
        match err {
            Error::ExecTimedOut { killed: true, .. } if !ps.contains("sleep 41") => Ok(()),
            other => Err(format!("{other}; ps: {ps}")),
        }
    };
    results.push(("exec kill", kill.await));

    let gateway = async {
        let listener = std::net::TcpListener::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let server = std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                use std::io::Write;
                let _ = s.write_all(b"hello from the host\n");
            }
        });
        let c = sleeper().start().await.map_err(text)?;
        let got = c
            .exec([
                "sh",
                "-c",
                &format!("nc host.docker.internal {port} </dev/null"),
            ])
            .timeout(std::time::Duration::from_secs(10))
            .await;
        let _ = std::net::TcpStream::connect(("127.0.0.1", port));
        let _ = server.join();
        c.remove().await.map_err(text)?;
        match got {
            Ok(out) if out.stdout.contains("hello from the host") => Ok(()),
            Ok(out) => Err(format!("exit {}: {}", out.exit_code, out.stderr)),
            Err(e) => Err(text(e)),
        }
    };
    results.push(("host gateway", gateway.await));

    let copy = async {
        let c = sleeper().network_mode("none").start().await.map_err(text)?;
        c.copy_in("tests/fixtures/a.txt", "/tmp")
            .await
            .map_err(text)?;
        let dir = TempDir::new("copy-out");
        c.copy_out("/tmp/a.txt", dir.path()).await.map_err(text)?;
        let back = std::fs::read(dir.path().join("a.txt")).map_err(|e| e.to_string())?;
        let sent = std::fs::read("tests/fixtures/a.txt").map_err(|e| e.to_string())?;
        c.remove().await.map_err(text)?;
        if back == sent {
            Ok(())
        } else {
            Err("the copy came back different".to_owned())
        }
    };
    results.push(("copy", copy.await));

    let networks = async {
        // TCP, not ping: Podman grants no NET_RAW by default.
        let net = dockfix::Network::new().await.map_err(text)?;
        let server = ContainerSpec::new(IMAGE)
            .cmd([
                "sh",
                "-c",
                "mkdir -p /tmp/w && echo db-here > /tmp/w/index.html && exec httpd -f -p 7000 -h /tmp/w",
            ])
            .network(&net, ["db"])
            .start()
            .await
            .map_err(text)?;
        let client = sleeper()
            .network(&net, ["app"])
            .start()
            .await
            .map_err(text)?;
        let seen = client
            .exec([
                "sh",
                "-c",
                "for i in 1 2 3 4 5 6 7 8 9 10; do printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc db 7000 && exit 0; sleep 0.2; done; exit 1",
            ])
            .await
            .map_err(text)?;
        drop((server, client));
        net.remove().await.map_err(text)?;
        if seen.stdout.contains("db-here") {
            Ok(())
        } else {
            Err(format!(
                "db:7000 from app: exit {} {}",
                seen.exit_code, seen.stderr
            ))
        }
    };
    results.push(("networks", networks.await));

    let pool = async {
        let pool = dockfix::ContainerPool::builder(
            support::unique("transport"),
            sleeper().network_mode("none"),
        )
        .max_size(1)
        .build();
        for _ in 0..2 {
            let member = pool.acquire().await.map_err(text)?;
            member.exec_ok(["true"]).await.map_err(text)?;
        }
        pool.close().await.map_err(text)
    };
    results.push(("pool", pool.await));

    let tied = async {
        let c = sleeper()
            .network_mode("none")
            .remove_on_kill(true)
            .start()
            .await
            .map_err(text)?;
        c.exec_ok(["true"]).await.map_err(text)?;
        c.remove().await.map_err(text)
    };
    results.push(("remove_on_kill", tied.await));

    let sweep = async {
        let c = sleeper().network_mode("none").start().await.map_err(text)?;
        let report = dockfix::Sweep::new()
            .session(dockfix::session_id())
            .dry_run(true)
            .run()
            .await
            .map_err(text)?;
        let listed = report.removed.iter().any(|r| r.resource.id == c.id());
        c.remove().await.map_err(text)?;
        if listed {
            Ok(())
        } else {
            Err(format!(
                "the sweep did not select the container: {report:?}"
            ))
        }
    };
    results.push(("sweep", sweep.await));
    results
}

/// Asserts that `child` (run with `EVERY_FEATURE`) found every feature
/// working, and prints the row of the compatibility table it makes.
fn assert_every_feature(transport: &str, child: &support::ChildRun) {
    let features: Vec<(&str, &str)> = child
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("FEATURE ")?.split_once('='))
        .collect();
    assert_eq!(features.len(), 7, "{child}");
    println!("{transport}: {features:?}");
    for (feature, result) in features {
        assert_eq!(result, "ok", "{transport}: {feature}\n{child}");
    }
}

/// A context made and selected with `docker context create` / `use`, with
/// `DOCKER_HOST` unset: dockfix follows it, through a proxy that counts
/// what passes, and says why it chose it.
#[test]
fn the_current_context_of_the_docker_cli_is_followed() {
    let proxy = FaultProxy::start();
    let config = TempDir::new("docker-config");
    let config_dir = config.path().to_str().unwrap();
    let host = format!("host={}", proxy.docker_host());
    docker_cli(
        config_dir,
        &["context", "create", "forwarded", "--docker", &host],
    );
    docker_cli(config_dir, &["context", "use", "forwarded"]);
    let child = support::run_child!(
        use_the_daemon_child,
        &env_with(&[("DOCKER_CONFIG", config_dir), ("EVERY_FEATURE", "1")])
    );
    child.assert_success();
    assert_eq!(child.value("OUTCOME"), "ok reached", "{child}");
    assert_every_feature("context", &child);
    assert_eq!(child.value("ENDPOINT"), proxy.docker_host());
    assert!(
        child
            .value("WHY")
            .starts_with("context `forwarded` (currentContext of"),
        "{child}"
    );
    assert!(
        proxy.count("POST", "/exec") > 0,
        "nothing went through the context's socket"
    );
}

/// `DOCKER_CONTEXT` names a context over the current one.
#[test]
fn docker_context_beats_the_current_context() {
    let proxy = FaultProxy::start();
    let config = TempDir::new("docker-config");
    let config_dir = config.path().to_str().unwrap();
    let host = format!("host={}", proxy.docker_host());
    docker_cli(
        config_dir,
        &["context", "create", "chosen", "--docker", &host],
    );
    docker_cli(
        config_dir,
        &[
            "context",
            "create",
            "current",
            "--docker",
            "host=unix:///nonexistent.sock",
        ],
    );
    docker_cli(config_dir, &["context", "use", "current"]);
    let child = support::run_child!(
        use_the_daemon_child,
        &env_with(&[("DOCKER_CONFIG", config_dir), ("DOCKER_CONTEXT", "chosen")])
    );
    assert_eq!(child.value("OUTCOME"), "ok reached", "{child}");
    assert_eq!(child.value("WHY"), "context `chosen` (DOCKER_CONTEXT)");
}

/// A context that does not exist is an error that names it, at once; a
/// named daemon is never swapped for another.
#[test]
fn a_missing_context_is_named_in_the_error_at_once() {
    let config = TempDir::new("docker-config");
    let config_dir = config.path().to_str().unwrap();
    let child = support::run_child!(
        use_the_daemon_child,
        &env_with(&[("DOCKER_CONFIG", config_dir), ("DOCKER_CONTEXT", "gone")])
    );
    assert_eq!(child.value("OUTCOME"), "unavailable", "{child}");
    let error = child.value("ERROR");
    assert!(error.contains("context `gone` (DOCKER_CONTEXT)"), "{error}");
    assert!(error.contains("no context store"), "{error}");
    let took: u64 = child.value("TOOK_MS").parse().unwrap();
    assert!(took < 1000, "took {took} ms");
}

/// With nothing named, the well-known sockets are tried in order; here
/// the first, the rootful Docker socket, answers.
#[test]
fn with_nothing_named_the_well_known_sockets_are_tried() {
    let home = TempDir::new("home");
    let child = support::run_child!(
        use_the_daemon_child,
        &env_with(&[
            ("HOME", home.path().to_str().unwrap()),
            ("DOCKER_CONFIG", "")
        ])
    );
    assert_eq!(child.value("OUTCOME"), "ok reached", "{child}");
    assert_eq!(child.value("ENDPOINT"), "unix:///var/run/docker.sock");
    assert_eq!(child.value("WHY"), "the Docker socket, a well-known socket");
}

/// `tcp://` with `DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH`, as GitLab CI
/// sets them for `docker:dind`: the whole round trip over verified TLS.
#[test]
fn tls_with_docker_tls_verify_works_end_to_end() {
    let certs = Certs::new(2);
    let daemon = Forward::tls(&certs);
    let client = certs.client_dir("ca");
    let child = support::run_child!(
        use_the_daemon_child,
        &env_with(&[
            ("DOCKER_HOST", &daemon.docker_host()),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", &client),
            ("EVERY_FEATURE", "1"),
        ])
    );
    assert_eq!(child.value("OUTCOME"), "ok reached", "{child}");
    assert_eq!(child.value("TLS"), "true");
    assert_eq!(child.value("WHY"), "DOCKER_HOST");
    assert_every_feature("tcp with TLS", &child);
}

/// Plain `tcp://` (a daemon without TLS, as on a trusted network).
#[test]
fn plain_tcp_works_end_to_end() {
    let daemon = Forward::plain();
    let child = support::run_child!(
        use_the_daemon_child,
        &env_with(&[
            ("DOCKER_HOST", &daemon.docker_host()),
            ("EVERY_FEATURE", "1")
        ])
    );
    assert_eq!(child.value("OUTCOME"), "ok reached", "{child}");
    assert_eq!(child.value("TLS"), "false");
    assert_every_feature("tcp", &child);
}

/// A context made by the Docker CLI with TLS material: dockfix reads the
/// material from the context store.
#[test]
fn a_tls_context_made_by_the_docker_cli_works() {
    let certs = Certs::new(2);
    let daemon = Forward::tls(&certs);
    let client = certs.client_dir("ca");
    let config = TempDir::new("docker-config");
    let config_dir = config.path().to_str().unwrap();
    let endpoint = format!(
        "host={},ca={client}/ca.pem,cert={client}/cert.pem,key={client}/key.pem",
        daemon.docker_host()
    );
    docker_cli(
        config_dir,
        &["context", "create", "dind", "--docker", &endpoint],
    );
    let child = support::run_child!(
        use_the_daemon_child,
        &env_with(&[("DOCKER_CONFIG", config_dir), ("DOCKER_CONTEXT", "dind")])
    );
    assert_eq!(child.value("OUTCOME"), "ok reached", "{child}");
    assert_eq!(child.value("TLS"), "true");
}

/// What goes wrong with TLS fails fast, names the endpoint and the TLS
/// reason, and never falls back to plain text.
#[test]
fn tls_mistakes_fail_fast_with_the_tls_reason() {
    let certs = Certs::new(2);
    let expired = Certs::new(-1);
    let good = Forward::tls(&certs);
    let stale = Forward::tls(&expired);
    let plain = Forward::plain();
    let cases = [
        (
            "a CA that did not sign the daemon",
            &good,
            certs.client_dir("other-ca"),
            "UnknownIssuer",
        ),
        (
            "an expired daemon certificate",
            &stale,
            expired.client_dir("ca"),
            "Expired",
        ),
        (
            "a daemon that speaks plain text",
            &plain,
            certs.client_dir("ca"),
            "",
        ),
    ];
    for (what, daemon, client, reason) in cases {
        let host = daemon.docker_host();
        let child = support::run_child!(
            use_the_daemon_child,
            &env_with(&[
                ("DOCKER_HOST", &host),
                ("DOCKER_TLS_VERIFY", "1"),
                ("DOCKER_CERT_PATH", &client),
            ])
        );
        let error = child.value("ERROR");
        let took: u64 = child.value("TOOK_MS").parse().unwrap();
        println!("{what}: failed in {took} ms: {error}");
        assert_eq!(child.value("OUTCOME"), "unavailable", "{what}: {child}");
        assert!(error.contains(&host), "{what}: {error}");
        assert!(error.contains(reason), "{what}: {error}");
        assert!(took < 2000, "{what}: took {took} ms");
    }
    // The plain-text daemon was never spoken to in plain text: a request
    // would have reached the daemon and started a container.
}

/// `DOCKER_TLS` without `DOCKER_TLS_VERIFY` asks for TLS that does not
/// verify the daemon: refused, with the fix.
#[test]
fn unverified_tls_is_refused_with_the_fix() {
    let child = support::run_child!(
        use_the_daemon_child,
        &env_with(&[("DOCKER_HOST", "tcp://127.0.0.1:1"), ("DOCKER_TLS", "1")])
    );
    assert_eq!(child.value("OUTCOME"), "unavailable", "{child}");
    assert!(
        child.value("ERROR").contains("DOCKER_TLS_VERIFY=1"),
        "{child}"
    );
}

/// `ssh://user@host` (the `ssh` feature): bollard runs `ssh` and `docker
/// system dial-stdio` on the far end. The far end is a throwaway sshd on
/// 127.0.0.1:22 that `ci/setup` starts for the user `dockfix-ci`; the key
/// goes into an ssh-agent of the test's own.
#[cfg(feature = "ssh")]
#[test]
fn ssh_reaches_the_daemon_through_dial_stdio() {
    use std::os::unix::fs::PermissionsExt;

    let ssh_dir = std::path::Path::new("/var/tmp/dockfix-ssh");
    assert!(
        ssh_dir.join("sshd.pid").exists(),
        "no sshd for this test: run ci/setup as root (it starts one on 127.0.0.1:22)"
    );
    let dir = TempDir::new("ssh-agent");
    let key = dir.path().join("id_ed25519");
    std::fs::copy(ssh_dir.join("client_ed25519"), &key).expect("cannot read the client key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let sock = dir.path().join("agent.sock");
    let mut agent = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("cannot run ssh-agent");
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "ssh-agent made no socket");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let added = Command::new("ssh-add")
        .arg("-q")
        .arg(&key)
        .env("SSH_AUTH_SOCK", &sock)
        .status()
        .expect("cannot run ssh-add");
    assert!(added.success(), "ssh-add refused the key");
    let sock_str = sock.display().to_string();
    let child = support::run_child!(
        use_the_daemon_child,
        &env_with(&[
            ("DOCKER_HOST", "ssh://dockfix-ci@127.0.0.1"),
            ("SSH_AUTH_SOCK", &sock_str),
            ("EVERY_FEATURE", "1"),
        ])
    );
    let _ = agent.kill();
    let _ = agent.wait();
    println!("over ssh: {} ms", child.value("TOOK_MS"));
    assert_eq!(child.value("OUTCOME"), "ok reached", "{child}");
    assert_eq!(child.value("ENDPOINT"), "ssh://dockfix-ci@127.0.0.1");
    assert_eq!(child.value("WHY"), "DOCKER_HOST");
    assert_every_feature("ssh", &child);
}

/// With nothing named and no well-known socket answering, the error lists
/// every place tried and why each failed. Shown by a child run as
/// `nobody`, whom the rootful socket refuses (so this needs root to set
/// up; the non-root leg says so and returns).
#[test]
fn when_no_socket_answers_the_error_lists_each_place_tried() {
    // SAFETY: geteuid reads the process's effective uid, nothing else.
    if unsafe { libc::geteuid() } != 0 {
        println!("not run: only root can start a child as a user without Docker access");
        return;
    }
    let home = TempDir::new("nobody-home");
    let home_path = home.path().to_str().unwrap().to_owned();
    let runtime = format!("{home_path}/run");
    std::fs::create_dir_all(&runtime).unwrap();
    let exe = std::env::current_exe().unwrap();
    let name = support::test_name(module_path!(), "use_the_daemon_child");
    let out = Command::new("runuser")
        .args(["-u", "nobody", "--", "env", "-i"])
        .arg(format!("HOME={home_path}"))
        .arg(format!("XDG_RUNTIME_DIR={runtime}"))
        .arg("PATH=/usr/bin:/bin")
        .arg(format!("{}=1", support::CHILD_ENV))
        .arg(&exe)
        .args([
            "--exact",
            &name,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
            "--quiet",
        ])
        .output()
        .expect("cannot run runuser");
    let child = support::ChildRun {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_eq!(child.value("OUTCOME"), "unavailable", "{child}");
    let error = child.value("ERROR");
    for place in [
        "unix:///var/run/docker.sock (the Docker socket, a well-known socket)".to_owned(),
        format!("unix://{runtime}/docker.sock (rootless Docker, a well-known socket): socket"),
        format!("unix://{home_path}/.docker/run/docker.sock (Docker Desktop"),
        format!("unix://{home_path}/.colima/default/docker.sock (Colima"),
        format!("unix://{home_path}/.orbstack/run/docker.sock (OrbStack"),
        format!("unix://{runtime}/podman/podman.sock (rootless Podman"),
        "unix:///run/podman/podman.sock (Podman".to_owned(),
    ] {
        assert!(error.contains(&place), "{place} missing from: {error}");
    }
    assert!(
        error.contains("none of the well-known sockets answered"),
        "{error}"
    );
    assert!(
        error.contains("the connection failed (permission denied)")
            && error.contains("add it to the socket's group"),
        "{error}"
    );
    let took: u64 = child.value("TOOK_MS").parse().unwrap();
    println!("nothing answered: told in {took} ms: {error}");
    assert!(took < 2000, "took {took} ms");
}
