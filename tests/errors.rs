//! What a test author sees when the image or the daemon is missing.

mod support;

use dockfix::{ContainerSpec, Error};
use support::IMAGE;

#[tokio::test]
async fn a_missing_image_whose_registry_is_unreachable_says_so() {
    // No registry can be reached from here: Docker Hub's name does not
    // resolve.
    let err = ContainerSpec::new("dockfix-test/does-not-exist:nope")
        .cmd(["true"])
        .start()
        .await
        .unwrap_err();
    match &err {
        Error::RegistryUnavailable { image, reason } => {
            assert_eq!(image, "dockfix-test/does-not-exist:nope");
            assert!(reason.contains("pull policy IfMissing"), "{reason}");
        }
        other => panic!("expected RegistryUnavailable, got {other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.starts_with("image `dockfix-test/does-not-exist:nope` could not be pulled"),
        "{msg}"
    );
}

/// The error a child process of this test binary gets when it starts a
/// container with `DOCKER_HOST` set to `docker_host`. The engine reads
/// `DOCKER_HOST` once per process, hence the child.
fn error_with_docker_host(docker_host: &str) -> String {
    let child = support::run_child!(unreachable_daemon_child, &[("DOCKER_HOST", docker_host)]);
    child.assert_success();
    child.value("ERROR").to_owned()
}

#[test]
fn an_unreachable_daemon_names_the_endpoint_and_the_fix() {
    assert_eq!(
        error_with_docker_host("unix:///nonexistent.sock"),
        "docker daemon at unix:///nonexistent.sock is unavailable: socket /nonexistent.sock does not exist; \
         start the Docker daemon, or point DOCKER_HOST at it (unix:///path/to/docker.sock, tcp://host:port, \
         ssh://user@host), or select a context with DOCKER_CONTEXT"
    );
}

#[test]
#[ignore = "run as a child process by an_unreachable_daemon_names_the_endpoint_and_the_fix"]
fn unreachable_daemon_child() {
    if !support::is_child() {
        return;
    }
    let err = ContainerSpec::new(IMAGE)
        .cmd(["true"])
        .start_blocking()
        .unwrap_err();
    assert!(matches!(err, Error::DockerUnavailable { .. }), "{err}");
    println!("ERROR={err}");
}

#[test]
fn a_closed_tcp_endpoint_is_unavailable_too() {
    let msg = error_with_docker_host("tcp://127.0.0.1:1");
    assert!(
        msg.starts_with("docker daemon at tcp://127.0.0.1:1 is unavailable:"),
        "{msg}"
    );
}

/// Docker 20.10 answers each of these mistakes with a 500, the status it
/// also gives to trouble that passes. Each must fail on its first attempt,
/// with the daemon's words: ten retries took 11 s.
#[tokio::test]
async fn mistakes_docker_answers_with_500_fail_at_once_with_its_words() {
    let cases = [
        (
            "unknown user",
            support::sleeper().user("nosuchuser"),
            "unable to find user nosuchuser",
        ),
        (
            "unknown group",
            support::sleeper().user("0:nosuchgroup"),
            "unable to find group nosuchgroup",
        ),
        (
            "working directory is a file",
            support::sleeper().working_dir("/bin/busybox"),
            "is not a directory",
        ),
    ];
    for (what, spec, words) in cases {
        let started = std::time::Instant::now();
        let err = spec.start().await.unwrap_err();
        let took = started.elapsed();
        println!("{what}: failed in {took:?}");
        assert_eq!(err.status(), Some(500), "{what}: {err}");
        let msg = err.to_string();
        assert!(msg.contains(words), "{what}: {msg}");
        assert!(!msg.contains("gave up after"), "{what} was retried: {msg}");
        assert!(
            took < std::time::Duration::from_secs(2),
            "{what} took {took:?}"
        );
    }
}

/// A test that returns `dockfix::Result<()>` shows its error's `Debug`
/// form: it must read like `Display`, with the container's log lines on
/// lines of their own, not one line of escaped `\n`.
#[test]
fn a_test_returning_the_error_prints_it_readably() {
    let child = support::run_child!(returns_not_ready_child);
    assert!(!child.status.success(), "{child}");
    let printed = &child.stderr;
    assert!(printed.contains("Error: container"), "{child}");
    assert!(
        printed
            .lines()
            .any(|l| l.trim_end().ends_with("first words"))
            && printed
                .lines()
                .any(|l| l.trim_end().ends_with("last words")),
        "the log lines are not on lines of their own\n{child}"
    );
    assert!(!printed.contains("\\n"), "escaped newlines\n{child}");
    assert!(
        !printed.contains("NotReady {"),
        "the struct's Debug\n{child}"
    );
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn returns_not_ready_child() -> dockfix::Result<()> {
    if !support::is_child() {
        return Ok(());
    }
    support::block_on(async {
        ContainerSpec::new(IMAGE)
            .network_mode("none")
            .cmd(["sh", "-c", "echo first words; echo last words >&2; exit 1"])
            .wait_for(dockfix::WaitFor::log_line("never said"))
            .start()
            .await
            .map(drop)
    })
}
