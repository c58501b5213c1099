//! When a test panics, what its containers said is shown under the
//! failure, and, with `DOCKFIX_ARTIFACTS`, written down for CI. Each case
//! runs a child test process that panics on purpose.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use dockfix::{ContainerPool, WaitFor};
use support::{IMAGE, unique};

/// A container that logs seven lines (the last on stderr) and sleeps. Docker
/// copies the two streams to its log separately, so the pause keeps their
/// order in the log the order they were written in.
fn talker() -> dockfix::ContainerSpec {
    dockfix::ContainerSpec::new(IMAGE)
        .network_mode("none")
        .cmd([
            "sh",
            "-c",
            "for i in 1 2 3 4 5 6; do echo line-$i; done; sleep 0.3; echo oops >&2; sleep 300",
        ])
        .wait_for(WaitFor::log_line("oops"))
}

/// A fresh directory for a child's artifacts, removed on drop.
struct Artifacts(PathBuf);

impl Artifacts {
    fn new() -> Self {
        Artifacts(std::env::temp_dir().join(unique("dockfix-artifacts")))
    }

    fn arg(&self) -> String {
        self.0.display().to_string()
    }

    /// The directory written for container `name` of test `test`.
    fn of(&self, test: &str, name: &str) -> PathBuf {
        self.0.join(test).join(name)
    }

    fn read(&self, test: &str, name: &str, file: &str) -> String {
        let path = self.of(test, name).join(file);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
    }
}

impl Drop for Artifacts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn gone(id: &str) -> bool {
    support::block_on(support::wait_gone(id, Duration::from_secs(20)))
}

/// Under `cargo test`'s capture, the container's last lines and its execs
/// follow the failed test's own output; its whole log, inspect JSON and
/// execs are written to `DOCKFIX_ARTIFACTS`; and the container is removed.
#[test]
fn a_panicking_test_shows_the_log_tail_and_execs_and_leaves_artifacts() {
    let artifacts = Artifacts::new();
    let child = support::run_child_captured!(
        panicking_child,
        &[
            ("DOCKFIX_LOGS_ON_PANIC", "3"),
            ("DOCKFIX_ARTIFACTS", &artifacts.arg()),
        ]
    );
    assert!(!child.status.success(), "the child should fail\n{child}");
    let (id, name) = (child.value("ID"), child.value("NAME"));
    // libtest prints the captured output of a failed test after this line.
    let shown = child
        .stdout
        .split("---- panicking_child stdout ----")
        .nth(1)
        .unwrap_or_else(|| panic!("no captured output of the failed test\n{child}"));
    assert!(shown.contains("assertion failed on purpose"), "{child}");
    assert!(
        shown.contains(&format!(
            "dockfix: the test panicked holding container {name}"
        )),
        "{child}"
    );
    assert!(shown.contains("the last 3 lines of its log:"), "{child}");
    for line in ["    | line-5", "    | line-6", "    | oops"] {
        assert!(shown.contains(line), "{line} missing\n{child}");
    }
    assert!(!shown.contains("line-4"), "more than 3 lines\n{child}");
    assert!(
        shown.contains("$ sh -c 'echo bad >&2; exit 3'  -> exit 3 in "),
        "{child}"
    );
    assert!(shown.contains("stderr | bad"), "{child}");
    assert!(shown.contains("$ true  -> exit 0 in "), "{child}");

    let test = "panicking_child";
    let log = artifacts.read(test, name, "log.txt");
    assert!(
        log.starts_with("line-1\nline-2\n") && log.contains("stderr | oops"),
        "{log}"
    );
    let inspect: serde_json::Value =
        serde_json::from_str(&artifacts.read(test, name, "inspect.json")).unwrap();
    assert_eq!(inspect["Id"], id);
    let execs = artifacts.read(test, name, "execs.txt");
    assert!(
        execs.contains("exit 3") && execs.contains("$ true"),
        "{execs}"
    );
    assert!(
        shown.contains(&format!(
            "its log, inspect and execs are in {}",
            artifacts.of(test, name).display()
        )),
        "{child}"
    );
    assert!(
        gone(id),
        "the container of the panicked test is still there"
    );
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn panicking_child() {
    if !support::is_child() {
        return;
    }
    support::block_on(async {
        let c = talker().start().await.unwrap();
        println!("ID={}", c.id());
        println!("NAME={}", c.name());
        let failed = c.exec(["sh", "-c", "echo bad >&2; exit 3"]).await.unwrap();
        assert_eq!(failed.exit_code, 3);
        c.exec_ok(["true"]).await.unwrap();
        panic!("assertion failed on purpose");
    });
}

/// `DOCKFIX_LOGS_ON_PANIC=0` prints nothing, and without
/// `DOCKFIX_ARTIFACTS` nothing is written; the container is still removed.
#[test]
fn logs_on_panic_0_keeps_quiet() {
    let child = support::run_child!(quiet_panicking_child, &[("DOCKFIX_LOGS_ON_PANIC", "0")]);
    assert!(!child.status.success(), "{child}");
    assert!(
        !child.stderr.contains("dockfix: the test panicked"),
        "{child}"
    );
    assert!(
        !child.stdout.contains("dockfix: the test panicked"),
        "{child}"
    );
    assert!(gone(child.value("ID")));
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn quiet_panicking_child() {
    if !support::is_child() {
        return;
    }
    let c = support::sleeper().start_blocking().unwrap();
    println!("ID={}", c.id());
    panic!("assertion failed on purpose");
}

/// A pool member: the one its holder tainted has its artifacts written
/// (nothing printed: the test goes on); the one held when the test panics
/// has its log printed and written, and is replaced, not handed out again.
#[test]
fn pool_members_of_a_tainting_or_panicking_holder_are_reported() {
    let artifacts = Artifacts::new();
    let child = support::run_child!(pool_child, &[("DOCKFIX_ARTIFACTS", &artifacts.arg())]);
    assert!(!child.status.success(), "{child}");
    let (tainted, panicked) = (child.value("TAINTED"), child.value("PANICKED"));
    assert_ne!(tainted, panicked, "the tainted member was handed out again");
    let test = "pool_child";
    let tainted_execs = artifacts.read(test, tainted, "execs.txt");
    assert!(
        tainted_execs.contains("$ touch /tmp/dirty"),
        "{tainted_execs}"
    );
    assert!(
        !child.stderr.contains(&format!("container {tainted}")),
        "a taint is not a failure, and printed nothing\n{child}"
    );
    assert!(
        child.stderr.contains(&format!(
            "dockfix: the test panicked holding pool member container {panicked}"
        )),
        "{child}"
    );
    // Only this holder's execs: the pool's reset and health checks, and
    // earlier holders', are not in its transcript.
    let execs = artifacts.read(test, panicked, "execs.txt");
    assert_eq!(
        execs.lines().filter(|l| l.starts_with('$')).count(),
        1,
        "{execs}"
    );
    assert!(
        execs.contains("$ sh -c 'echo half-done >&2; exit 1'  -> exit 1"),
        "{execs}"
    );
    let log = artifacts.read(test, panicked, "log.txt");
    assert!(log.contains("stderr | oops"), "{log}");
    assert!(gone(child.value("PANICKED_ID")));
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn pool_child() {
    if !support::is_child() {
        return;
    }
    support::block_on(async {
        let pool = ContainerPool::builder(unique("forensics"), talker())
            .max_size(1)
            .build();
        let mut first = pool.acquire().await.unwrap();
        first.exec_ok(["touch", "/tmp/dirty"]).await.unwrap();
        println!("TAINTED={}", first.name());
        first.taint();
        drop(first);
        let second = pool.acquire().await.unwrap();
        println!("PANICKED={}", second.name());
        println!("PANICKED_ID={}", second.id());
        let _ = second
            .exec(["sh", "-c", "echo half-done >&2; exit 1"])
            .await;
        panic!("assertion failed on purpose");
    });
}
