//! The crate's own background runtime.
//!
//! Every `#[tokio::test]` builds and drops its own runtime, and plain
//! `#[test]`s have none. So that no connection task, timer or Drop-time
//! removal depends on a runtime that may already be gone, all Docker I/O
//! runs here: a multi-thread tokio runtime created lazily once per process
//! and never dropped. Public async functions spawn their work onto it and
//! await the `JoinHandle`, which works from any executor; the blocking API
//! waits on the same handles with a plain `block_on`.
//!
//! A task's output is dropped on the engine when nobody awaits it any more,
//! so a guard built inside an engine task is never lost: if the caller gave
//! up (a timeout, a cancelled test), dropping the guard removes the
//! container.

use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::config;
use crate::error::{Error, Result};

static RUNTIME: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> = OnceLock::new();

thread_local! {
    static ON_ENGINE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The engine runtime, started on first use.
fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    let rt = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("dockfix-engine")
            .on_thread_start(|| ON_ENGINE.with(|f| f.set(true)))
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the dockfix engine runtime: {e}"))
    });
    rt.as_ref().map_err(|e| Error::DockerUnavailable {
        endpoint: config::endpoint(),
        reason: e.clone(),
        hint: "the process could not start a thread".to_owned(),
    })
}

/// Runs `fut` on the engine runtime and waits for its result from any
/// executor (or none).
pub(crate) async fn run<T, F>(fut: F) -> Result<T>
where
    F: Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    match runtime()?.spawn(fut).await {
        Ok(result) => result,
        Err(e) => Err(Error::docker(
            "engine task",
            "dockfix engine",
            if e.is_panic() {
                "the engine task panicked"
            } else {
                "the engine task was cancelled"
            },
        )),
    }
}

/// Spawns a detached task on the engine runtime.
///
/// # Errors
///
/// When the runtime cannot be started; the task is then dropped.
pub(crate) fn spawn(fut: impl Future<Output = ()> + Send + 'static) -> Result<()> {
    drop(runtime()?.spawn(fut));
    Ok(())
}

/// Blocks the calling thread on `fut`. The work itself runs on the engine,
/// so this is safe inside or outside any runtime.
pub(crate) fn block_on<T>(fut: impl Future<Output = T>) -> T {
    futures::executor::block_on(fut)
}

/// True on the engine's own worker threads, where blocking would starve it.
pub(crate) fn on_engine_thread() -> bool {
    ON_ENGINE.with(|f| f.get())
}

/// `Instant::now() + d`, or a far deadline when that overflows (a user
/// may ask for `Duration::MAX`).
pub(crate) fn deadline_in(d: Duration) -> Instant {
    later(Instant::now(), d)
}

/// `now + d`, or a century later when that overflows.
pub(crate) fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(now)
}
