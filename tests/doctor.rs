//! `dockfix doctor` against the real daemon, and with none.

#![cfg(feature = "cli")]

mod support;

use std::process::Command;

const CLI: &str = env!("CARGO_BIN_EXE_dockfix");

#[test]
fn doctor_says_which_daemon_and_every_check_passes_here() {
    let out = Command::new(CLI)
        .args(["doctor", "--image", support::IMAGE, "--json"])
        .output()
        .expect("cannot run dockfix");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&text).expect("doctor --json prints JSON");
    assert_eq!(report["usable"], true, "{report:#}");
    let engine = if support::block_on(support::on_podman()) {
        "Podman"
    } else {
        "Docker"
    };
    assert_eq!(report["daemon"]["engine"], engine, "{report:#}");
    assert!(
        report["daemon"]["api_version"]
            .as_str()
            .is_some_and(|v| !v.is_empty())
    );
    let checks = report["checks"].as_array().unwrap();
    let names: Vec<&str> = checks
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "start",
            "published port",
            "host gateway",
            "exec timeout",
            "labels"
        ]
    );
    for c in checks {
        assert_eq!(c["ok"], true, "{c:#}");
    }
}

#[test]
fn doctor_without_a_daemon_exits_1_and_says_where_it_looked() {
    let out = Command::new(CLI)
        .args(["doctor", "--image", support::IMAGE])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .expect("cannot run dockfix");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("daemon:    none usable"), "{text}");
    assert!(text.contains("/nonexistent/docker.sock"), "{text}");
}
