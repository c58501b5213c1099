//! Docker test fixtures that never leak a container.
//!
//! A test asks for a container; dockfix starts it with labels that say who
//! owns it, validated bind mounts and `host.docker.internal` pointing at
//! the host; the test runs commands in it with a timeout and a checked exit
//! code; and however the test ends (success, assertion panic, timeout) the
//! container is removed.
//!
//! # Quick start
//!
//! ```no_run
//! use std::time::Duration;
//!
//! #[tokio::test]
//! async fn talks_to_the_container() -> dockfix::Result<()> {
//!     let c = dockfix::TestContainer::builder("dockfix-test/busybox:latest")
//!         .cmd(["sleep", "300"])
//!         .env("MODE", "test")
//!         .bind_ro("./tests/fixtures", "/fixtures") // validated before Docker sees it
//!         .expose(8080) // 127.0.0.1:<random>
//!         .memory("64m")
//!         .cpus("500m")
//!         .start()
//!         .await?; // created, started, ready
//!     let out = c
//!         .exec(["sh", "-c", "cat /fixtures/a.txt; echo oops >&2; exit 3"])
//!         .timeout(Duration::from_secs(5))
//!         .await?;
//!     assert_eq!(out.exit_code, 3);
//!     assert!(c.exec_ok(["false"]).await.is_err()); // non-zero exit is an error
//!     Ok(())
//! } // the container is force-removed here, whatever runtime the test used
//! # fn main() {}
//! ```
//!
//! # How it works
//!
//! All Docker I/O runs on dockfix's own background runtime, created once
//! per process, with one shared client. Public async functions hand work to
//! it and await the answer, so they work from any runtime (and
//! [`blocking`] works without one). Dropping a [`TestContainer`] hands a
//! force-remove to that runtime and returns at once; an exit hook waits for
//! outstanding removals when the process ends. See [`TestContainer`] for the
//! exact guarantees and their limits.
//!
//! Every container carries the labels [`LABEL_MANAGED`],
//! [`LABEL_SESSION`], [`LABEL_PID`], [`LABEL_HOST`], [`LABEL_CREATED`] and
//! [`LABEL_VERSION`] (and [`LABEL_PIDNS`] where the PID namespace is readable); nothing without `dockfix.managed=true` is touched.
//! A process killed by a signal cannot clean up after itself: [`Sweep`]
//! (and the `dockfix sweep` command behind the `cli` feature) finds its
//! containers again by these labels, and the first container a later
//! process starts on the same host removes them in the background.
//!
//! # Environment
//!
//! | variable | effect |
//! | --- | --- |
//! | `DOCKER_HOST` | the daemon: `unix:///path` or `tcp://host:port` (default `unix:///var/run/docker.sock`) |
//! | `DOCKFIX_KEEP=1` | dropped guards leave their containers running, for debugging |
//! | `DOCKFIX_DROP=wait` | Drop blocks until the container is removed |
//! | `DOCKFIX_REMOVE_DEADLINE` | seconds a Drop-time removal keeps trying while the daemon fails (default 60) |
//! | `DOCKFIX_RETRY_*`, `DOCKFIX_CALL_TIMEOUT_MS`, `DOCKFIX_BREAKER_*` | retry, timeout and circuit-breaker settings (see [`Config`]) |
//! | `DOCKFIX_REMOVE_ON_KILL=1` | every container is removed within about a second of the process dying, even by SIGKILL (see [`ContainerSpec::remove_on_kill`]) |
//! | `DOCKFIX_ANCHOR_IMAGE` | the image of the anchor container behind `remove_on_kill` (default: the container's own image; it needs `cat`) |
//! | `DOCKFIX_SWEEP_ON_START=0` | the first start of a process does not remove this host's orphaned containers |
//! | `DOCKFIX_EXIT_TIMEOUT` | seconds the exit hook waits for outstanding removals (default 30) |
#![deny(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations)]
#![warn(rust_2018_idioms, unreachable_pub)]

mod anchor;
pub mod blocking;
mod container;
mod engine;
mod error;
mod exec;
mod files;
mod image;
mod labels;
mod logs;
mod network;
mod pool;
mod ready;
mod retry;
mod shared;
mod spec;
mod sweep;
mod sys;

pub use container::{ContainerState, ContainerStats, TestContainer};
pub use error::{Error, Result};
pub use exec::{Exec, ExecOutput};
pub use image::{LocalImage, PullPolicy, PullProgress};
pub use labels::{
    LABEL_CREATED, LABEL_HOST, LABEL_MANAGED, LABEL_PID, LABEL_PIDNS, LABEL_POOL, LABEL_SESSION,
    LABEL_TTL, LABEL_VERSION, session_id,
};
pub use logs::{LogLine, LogSource, LogStream, Logs};
pub use network::Network;
pub use pool::{ContainerPool, PoolBuilder, PoolStats, PooledContainer, Reset, ResetFuture};
pub use ready::WaitFor;
pub use retry::{__layer_cost, BreakerState, Config, Stats, stats};
pub use spec::{BindMount, ContainerSpec, DEFAULT_STARTUP_TIMEOUT};
pub use sweep::{
    ManagedResource, Owner, ResourceKind, Sweep, SweepCandidate, SweepReason, SweepReport,
    human_duration, list_managed,
};

/// Waits until every removal that dropped guards handed to the engine has
/// finished, or `timeout` passes; returns how many are still outstanding.
///
/// Drop returns before the container is gone; call this when a test must
/// see the daemon without them (the exit hook does the same at exit).
pub async fn wait_for_removals(timeout: std::time::Duration) -> usize {
    match engine::run(async move {
        tokio::task::spawn_blocking(move || engine::wait_for_removals_blocking(timeout))
            .await
            .map_err(|_| Error::Docker {
                operation: "wait for removals",
                target: "dockfix engine".to_owned(),
                status: None,
                message: "the waiting task failed".to_owned(),
            })
    })
    .await
    {
        Ok(left) => left,
        Err(_) => engine::wait_for_removals_blocking(timeout),
    }
}

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(test)]
mod assert_traits {
    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn public_types_are_send_and_sync() {
        send_sync::<crate::TestContainer>();
        send_sync::<crate::ContainerSpec>();
        send_sync::<crate::Error>();
        send_sync::<crate::blocking::TestContainer>();
        fn send<T: Send>() {}
        send::<crate::Exec<'static>>();
        send::<crate::LogStream>();
    }
}
