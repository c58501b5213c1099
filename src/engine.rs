//! The crate's own background runtime and the one shared Docker client.
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

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Condvar, LazyLock, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::RemoveContainerOptionsBuilder;

use crate::error::{Error, Result};
use crate::retry::{self, Retry};

/// Default bound on how long the exit hook waits for outstanding removals.
const DEFAULT_EXIT_WAIT: Duration = Duration::from_secs(30);
/// Bound on how long a Drop in wait mode blocks.
pub(crate) const DROP_WAIT: Duration = Duration::from_secs(60);

pub(crate) struct Engine {
    rt: tokio::runtime::Runtime,
    client: tokio::sync::OnceCell<Docker>,
    /// Where the client connects; settable until it has connected.
    endpoint: Mutex<String>,
    cleanup: Cleanup,
}

static ENGINE: OnceLock<std::result::Result<Engine, String>> = OnceLock::new();

thread_local! {
    static ON_ENGINE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The endpoint dockfix connects to: `DOCKER_HOST`, or the default socket.
pub(crate) fn endpoint_from_env() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned())
}

/// The process's engine, started on first use.
pub(crate) fn get() -> Result<&'static Engine> {
    let engine = ENGINE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("dockfix-engine")
            .on_thread_start(|| ON_ENGINE.with(|f| f.set(true)))
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the dockfix engine runtime: {e}"))?;
        if !crate::sys::at_exit(exit_hook) {
            warn(format_args!(
                "could not register the exit hook; containers still being removed at exit may be left for `dockfix sweep`"
            ));
        }
        Ok(Engine {
            rt,
            client: tokio::sync::OnceCell::new(),
            endpoint: Mutex::new(endpoint_from_env()),
            cleanup: Cleanup::default(),
        })
    });
    engine.as_ref().map_err(|e| Error::DockerUnavailable {
        endpoint: endpoint_from_env(),
        reason: e.clone(),
        hint: "the process could not start a thread".to_owned(),
    })
}

/// Prints a dockfix warning on stderr. Unlike `eprintln!` it cannot panic
/// (a closed pipe), so it is safe in Drop and in the exit hook.
pub(crate) fn warn(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "dockfix: {args}");
}

/// `Instant::now() + d`, or a far deadline when that overflows (a user
/// may ask for `Duration::MAX`).
pub(crate) fn deadline_in(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// True on the engine's own worker threads, where blocking would starve it.
pub(crate) fn on_engine_thread() -> bool {
    ON_ENGINE.with(|f| f.get())
}

/// Runs `fut` on the engine runtime and waits for its result from any
/// executor (or none).
pub(crate) async fn run<T, F>(fut: F) -> Result<T>
where
    F: Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let engine = get()?;
    match engine.rt.spawn(fut).await {
        Ok(result) => result,
        Err(e) => Err(Error::Docker {
            operation: "engine task",
            target: "dockfix engine".to_owned(),
            status: None,
            message: if e.is_panic() {
                "the engine task panicked".to_owned()
            } else {
                "the engine task was cancelled".to_owned()
            },
        }),
    }
}

impl Engine {
    /// Spawns a detached task on the engine runtime.
    pub(crate) fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        drop(self.rt.spawn(fut));
    }
}

/// Blocks the calling thread on `fut`. The work itself runs on the engine,
/// so this is safe inside or outside any runtime.
pub(crate) fn block_on<T>(fut: impl Future<Output = T>) -> T {
    futures::executor::block_on(fut)
}

/// The shared Docker client. Must be called on the engine runtime, because
/// the client's connection tasks are spawned on the runtime that first uses
/// it.
pub(crate) async fn docker() -> Result<Docker> {
    let engine = get()?;
    engine
        .client
        .get_or_try_init(|| connect(endpoint()))
        .await
        .cloned()
}

/// Points the engine at `endpoint`, unless it has already connected to
/// another one.
pub(crate) fn set_endpoint(endpoint: &str) -> Result<()> {
    let engine = get()?;
    let mut current = engine.endpoint.lock().unwrap_or_else(|p| p.into_inner());
    if engine.client.initialized() && *current != endpoint {
        return Err(Error::invalid(
            "docker_host",
            endpoint,
            format!(
                "dockfix is already connected to {current}; set the daemon before the first Docker call"
            ),
        ));
    }
    *current = endpoint.to_owned();
    Ok(())
}

async fn connect(endpoint: String) -> Result<Docker> {
    let endpoint = endpoint.as_str();
    let unavailable = |reason: String, hint: &str| Error::DockerUnavailable {
        endpoint: endpoint.to_owned(),
        reason,
        hint: hint.to_owned(),
    };
    const HINT: &str = "start the Docker daemon, or point DOCKER_HOST at it (unix:///path/to/docker.sock or tcp://host:port)";
    if let Some(path) = endpoint.strip_prefix("unix://") {
        if !std::path::Path::new(path).exists() {
            return Err(unavailable(format!("socket {path} does not exist"), HINT));
        }
    }
    let docker = Docker::connect_with_host(endpoint).map_err(|e| {
        unavailable(
            e.to_string(),
            "DOCKER_HOST must be unix://, tcp:// or http://",
        )
    })?;
    let negotiated = retry::call("connect", endpoint, Retry::Yes, None, || {
        docker.clone().negotiate_version()
    })
    .await;
    // Never connected yet: whatever failed, the daemon is unavailable.
    negotiated.map_err(|e| match e {
        Error::Docker { message, .. } => unavailable(message, HINT),
        Error::CircuitOpen {
            failures,
            next_probe_in,
            ..
        } => unavailable(
            format!("{failures} attempts in a row failed; the next try is in {next_probe_in:.1?}"),
            HINT,
        ),
        other => other,
    })
}

/// The endpoint the engine connects to.
pub(crate) fn endpoint() -> String {
    get()
        .map(|e| e.endpoint.lock().unwrap_or_else(|p| p.into_inner()).clone())
        .unwrap_or_else(|_| endpoint_from_env())
}

/// Force-removes a container and its anonymous volumes. Already gone (404)
/// and removal already in progress (409) count as success.
pub(crate) async fn force_remove(docker: &Docker, id: &str) -> Result<()> {
    remove_once(docker, id)
        .await
        .map_err(|e| cleanup_failed(id, e))
}

/// One removal through the retry layer, with the layer's error as it is.
async fn remove_once(docker: &Docker, id: &str) -> Result<()> {
    let opts = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    let removed = retry::call("remove", id, Retry::Yes, None, || {
        docker.remove_container(id, Some(opts.clone()))
    })
    .await;
    match removed {
        Err(e) if matches!(e.status(), Some(404 | 409)) => Ok(()),
        other => other,
    }
}

fn cleanup_failed(id: &str, e: Error) -> Error {
    let message = match e {
        Error::Docker {
            status: Some(status),
            message,
            ..
        } => format!("status {status}: {message}"),
        Error::Docker { message, .. } => message,
        other => other.to_string(),
    };
    Error::CleanupFailed {
        container: id.to_owned(),
        message,
    }
}

/// How long a Drop-time removal keeps trying while the daemon fails.
static REMOVE_DEADLINE: LazyLock<Duration> = LazyLock::new(|| {
    std::env::var("DOCKFIX_REMOVE_DEADLINE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .unwrap_or(Duration::from_secs(60))
});

/// How long a Drop-time removal keeps trying (`DOCKFIX_REMOVE_DEADLINE`).
pub(crate) fn remove_deadline() -> Duration {
    *REMOVE_DEADLINE
}

/// A removal that outlasts a daemon that fails for a while: past the retry
/// layer's own attempts it waits (for the breaker's next probe, while that
/// is open) and tries again, until `DOCKFIX_REMOVE_DEADLINE` (60 s by
/// default). Then it returns the error, and the container stays labelled
/// for the sweep. A refusal that cannot heal (a 4xx) returns at once.
async fn remove_patiently(id: &str) -> Result<()> {
    let deadline = deadline_in(*REMOVE_DEADLINE);
    loop {
        let result = match docker().await {
            Ok(docker) => remove_once(&docker, id).await,
            Err(e) => Err(e),
        };
        let wait = match &result {
            Ok(()) => return Ok(()),
            Err(Error::CircuitOpen { next_probe_in, .. }) => {
                (*next_probe_in).max(Duration::from_millis(50))
            }
            Err(Error::DockerUnavailable { .. }) => Duration::from_millis(500),
            Err(Error::Docker { status, .. }) if status.is_none_or(|s| s >= 500) => {
                Duration::from_millis(500)
            }
            Err(_) => return result.map_err(|e| cleanup_failed(id, e)),
        };
        if deadline.saturating_duration_since(Instant::now()) < wait {
            return result.map_err(|e| cleanup_failed(id, e));
        }
        tokio::time::sleep(wait).await;
    }
}

/// Book-keeping of containers this process owns and of removals in flight,
/// so that the exit hook can finish them.
#[derive(Default)]
struct Cleanup {
    state: Mutex<CleanupState>,
    changed: Condvar,
}

#[derive(Default)]
struct CleanupState {
    next_ticket: u64,
    /// Removals handed to the engine and not yet finished: ticket → name.
    pending: HashMap<u64, String>,
    /// Containers owned by an armed guard: id → name.
    live: HashMap<String, String>,
    /// Starts running on the engine: each may create a container that no
    /// guard owns yet.
    starting: usize,
}

/// A removal the exit hook and `wait_for_removals` wait for, until dropped.
pub(crate) struct Removal {
    engine: &'static Engine,
    ticket: u64,
}

/// Records a removal of container `id` (`name`) in flight. It stops being
/// live in the same step, so the exit hook never sees it as neither.
pub(crate) fn track_removal(id: &str, name: &str) -> Option<Removal> {
    let engine = get().ok()?;
    let mut state = engine.cleanup.lock();
    state.live.remove(id);
    state.next_ticket += 1;
    let ticket = state.next_ticket;
    state.pending.insert(ticket, name.to_owned());
    Some(Removal { engine, ticket })
}

impl Drop for Removal {
    fn drop(&mut self) {
        self.engine.cleanup.lock().pending.remove(&self.ticket);
        self.engine.cleanup.changed.notify_all();
    }
}

/// A start in flight, which the exit hook waits for, until dropped.
pub(crate) struct Starting(&'static Engine);

/// Records a start in flight.
pub(crate) fn track_start() -> Option<Starting> {
    let engine = get().ok()?;
    engine.cleanup.lock().starting += 1;
    Some(Starting(engine))
}

impl Drop for Starting {
    fn drop(&mut self) {
        let mut state = self.0.cleanup.lock();
        state.starting = state.starting.saturating_sub(1);
        drop(state);
        self.0.cleanup.changed.notify_all();
    }
}

impl Cleanup {
    fn lock(&self) -> MutexGuard<'_, CleanupState> {
        // A panic while holding this lock cannot leave the maps inconsistent
        // (every update is a single insert or remove), so poison is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Records that a guard owns `id`, so the exit hook removes it even if the
/// guard is never dropped (a `static`, a `mem::forget`).
pub(crate) fn register_live(id: &str, name: &str) {
    if let Ok(engine) = get() {
        engine
            .cleanup
            .lock()
            .live
            .insert(id.to_owned(), name.to_owned());
    }
}

/// Forgets `id`: its guard removed it or keeps it on purpose.
pub(crate) fn unregister_live(id: &str) {
    if let Ok(engine) = get() {
        engine.cleanup.lock().live.remove(id);
    }
}

/// Hands the removal of `id` to the engine and returns at once. With
/// `wait`, blocks until it is done (bounded), unless called on an engine
/// thread where waiting could starve the runtime. Never panics.
pub(crate) fn remove_in_background(id: String, name: String, wait: bool) {
    let engine = match get() {
        Ok(engine) => engine,
        Err(e) => {
            warn(format_args!("cannot remove container {name}: {e}"));
            return;
        }
    };
    let removal = track_removal(&id, &name);
    let ticket = removal.as_ref().map_or(0, |r| r.ticket);
    engine.rt.spawn(async move {
        let _removal = removal;
        let result = remove_patiently(&id).await;
        if let Err(e) = result {
            warn(format_args!(
                "could not remove container {name} ({id}): {e}; it stays labelled for `dockfix sweep`"
            ));
        }
    });
    if wait && !on_engine_thread() {
        let deadline = Instant::now() + DROP_WAIT;
        wait_until(engine, deadline, |s| !s.pending.contains_key(&ticket));
    }
}

/// Waits until `done` holds or the deadline passes; true if it holds.
fn wait_until(engine: &Engine, deadline: Instant, done: impl Fn(&CleanupState) -> bool) -> bool {
    let mut state = engine.cleanup.lock();
    loop {
        if done(&state) {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        state = match engine.cleanup.changed.wait_timeout(state, deadline - now) {
            Ok((s, _)) => s,
            Err(p) => p.into_inner().0,
        };
    }
}

/// Blocks until every removal handed to the engine so far has finished, or
/// `timeout` passes. Returns the number still outstanding.
pub(crate) fn wait_for_removals_blocking(timeout: Duration) -> usize {
    let Some(Ok(engine)) = ENGINE.get() else {
        return 0;
    };
    let deadline = deadline_in(timeout);
    wait_until(engine, deadline, |s| s.pending.is_empty());
    engine.cleanup.lock().pending.len()
}

static EXIT_WAIT: LazyLock<Duration> = LazyLock::new(|| {
    std::env::var("DOCKFIX_EXIT_TIMEOUT")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .unwrap_or(DEFAULT_EXIT_WAIT)
});

/// Runs at process exit: removes what armed guards still own (guards in
/// statics, forgotten guards) and waits, bounded, for every removal in
/// flight.
fn exit_hook() {
    let Some(Ok(engine)) = ENGINE.get() else {
        return;
    };
    let deadline = deadline_in(*EXIT_WAIT);
    // A start that finishes while we wait registers a guard nobody will
    // drop any more: go round again until nothing is live or in flight.
    let drained = loop {
        let live: Vec<(String, String)> = engine.cleanup.lock().live.drain().collect();
        if !keep_requested() {
            for (id, name) in live {
                remove_in_background(id, name, false);
            }
        }
        if !wait_until(engine, deadline, |s| {
            s.pending.is_empty() && s.starting == 0
        }) {
            break false;
        }
        let state = engine.cleanup.lock();
        if state.pending.is_empty()
            && state.starting == 0
            && (keep_requested() || state.live.is_empty())
        {
            break true;
        }
    };
    if !drained {
        let state = engine.cleanup.lock();
        let mut names: Vec<&str> = state.pending.values().map(String::as_str).collect();
        names.sort_unstable();
        warn(format_args!(
            "{} container(s) were still being removed when the exit deadline ({:?}) passed: {}; `dockfix sweep` removes them",
            names.len(),
            *EXIT_WAIT,
            names.join(", ")
        ));
    }
}

/// The host of a remote daemon reached over TCP, or `None` when the daemon
/// is local (a unix socket, or a loopback address).
pub(crate) fn daemon_host() -> Option<String> {
    let endpoint = endpoint();
    let rest = ["tcp://", "http://", "https://"]
        .iter()
        .find_map(|p| endpoint.strip_prefix(p))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or(v6)
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    (!loopback).then(|| host.to_owned())
}

/// True when `DOCKFIX_KEEP` asks to leave containers for debugging.
pub(crate) fn keep_requested() -> bool {
    std::env::var("DOCKFIX_KEEP").is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false"))
}
