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
//! # Architecture
//!
//! The crate is built in layers, and every import points down:
//!
//! | layer | modules | what it holds |
//! | --- | --- | --- |
//! | front | `blocking`, `pool` (`local`, `shared`), `daemon` | the blocking guards; pools over a front and two backends; what the daemon is and why it was chosen |
//! | fixtures | `network`, `container` | the guard and what a test does with it: start, readiness, exec, logs, files, stats |
//! | services | `sweep` (`owner`, `select`, `remove`), `image`, `cleanup` | finding what killed runs left; pulling and making images; removals in flight and the exit hook |
//! | spec | `spec` | pure: the builder, bind mounts, units, image references, readiness conditions, rendering to a create request |
//! | docker | `docker` | the only road to the daemon: one typed function per Docker call, each with its retry policy, time bound and breaker gate; the engine runtime and the client |
//! | ground | `config`, `discover`, `error`, `labels`, `sys`, `archive` | settings and every `DOCKFIX_*` variable; where the daemon is (read from the environment and the Docker CLI's files, without connecting); the error type; the label scheme; the operating system |
//!
//! A new Docker call goes in `docker` (its policy row in
//! `docker/policy.rs`, from which README's table of calls is rendered); a
//! new setting goes in `config` when it comes from the environment, or in
//! `spec` (a field, a setter, a line of rendering) when a test sets it.
//! Nothing above `docker` calls the Docker client.
//!
//! # Environment
//!
//! | variable | effect |
//! | --- | --- |
//! | `DOCKER_HOST` | the daemon: `unix:///path`, `tcp://host:port` or `ssh://user@host`; else `DOCKER_CONTEXT`, the CLI's current context, then the well-known sockets (README: "Which daemon, and how it is reached") |
//! | `DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH` | TLS to a `tcp://` daemon, always verified |
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

mod archive;
pub mod blocking;
mod cleanup;
mod config;
mod container;
mod daemon;
mod discover;
mod docker;
mod error;
mod image;
mod labels;
mod network;
mod pool;
mod spec;
mod sweep;
mod sys;

pub use config::Config;
pub use container::{
    ContainerState, ContainerStats, Exec, ExecOutput, LogLine, LogSource, LogStream, Logs,
    TestContainer,
};
pub use daemon::{DaemonInfo, Engine, daemon};
pub use docker::{BreakerState, CallStats, call_stats};
pub use error::{BoxError, Error, Result};
pub use image::LocalImage;
pub use labels::{
    IMAGE_PREFIX, LABEL_BOOT, LABEL_CREATED, LABEL_HOST, LABEL_MACHINE, LABEL_MANAGED, LABEL_NAME,
    LABEL_PID, LABEL_PIDNS, LABEL_POOL, LABEL_SESSION, LABEL_START, LABEL_TTL, LABEL_VERSION,
    ResourceKind, session_id,
};
pub use network::Network;
pub use pool::{ContainerPool, PoolBuilder, PoolStats, PooledContainer, Reset, ResetFuture};
pub use spec::{
    BindMount, ContainerSpec, DEFAULT_STARTUP_TIMEOUT, PullPolicy, PullProgress, WaitFor,
};
pub use sweep::{
    ManagedResource, Owner, Sweep, SweepCandidate, SweepReason, SweepReport, list_managed,
};

/// Waits until every removal that dropped guards handed to the engine has
/// finished, or `timeout` passes; returns how many are still outstanding.
///
/// Drop returns before the container is gone; call this when a test must
/// see the daemon without them (the exit hook does the same at exit).
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> dockfix::Result<()> {
/// use std::time::Duration;
///
/// let c = dockfix::ContainerSpec::new("dockfix-test/busybox:latest")
///     .cmd(["sleep", "300"])
///     .start()
///     .await?;
/// drop(c); // the removal runs in the background
/// assert_eq!(dockfix::wait_for_removals(Duration::from_secs(30)).await, 0);
/// # Ok(()) }
/// ```
pub async fn wait_for_removals(timeout: std::time::Duration) -> usize {
    let waiting = docker::run(async move {
        tokio::task::spawn_blocking(move || cleanup::wait_for_removals_blocking(timeout))
            .await
            .map_err(|_| {
                Error::docker(
                    "wait for removals",
                    "dockfix engine",
                    "the waiting task failed",
                )
            })
    })
    .await;
    match waiting {
        Ok(left) => left,
        Err(_) => cleanup::wait_for_removals_blocking(timeout),
    }
}

/// What the benchmark measures of the crate's insides; not part of the
/// API, and only there with the `bench-internals` feature.
#[cfg(feature = "bench-internals")]
#[doc(hidden)]
pub mod bench {
    pub use crate::docker::layer_cost;
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
        send_sync::<crate::ContainerPool>();
        send_sync::<crate::PooledContainer>();
        send_sync::<crate::blocking::TestContainer>();
        fn send<T: Send>() {}
        send::<crate::Exec<'static>>();
        send::<crate::LogStream>();
    }
}
