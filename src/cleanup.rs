//! Removals in flight, and the exit hook that finishes them.
//!
//! Drop cannot wait for the daemon, so it hands the removal to the engine
//! and records it here; so does every start (it may create a container no
//! guard owns yet) and every armed guard. When the process exits normally
//! the hook, registered with the first record, removes what armed guards
//! still own (guards in statics, forgotten guards) and waits, bounded by
//! `DOCKFIX_EXIT_TIMEOUT`, for every removal and start in flight.

use std::collections::HashMap;
use std::sync::{Condvar, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::config;
use crate::docker::{self, containers};
use crate::error::{Error, Result, warn};
use crate::labels::ResourceKind;

/// Bound on how long a Drop in wait mode blocks.
const DROP_WAIT: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Ledger {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    next_ticket: u64,
    /// Removals handed to the engine and not yet finished: ticket → name.
    pending: HashMap<u64, String>,
    /// Containers owned by an armed guard: id → name.
    live: HashMap<String, String>,
    /// Starts running on the engine: each may create a container that no
    /// guard owns yet.
    starting: usize,
}

static LEDGER: LazyLock<Ledger> = LazyLock::new(|| {
    if !crate::sys::at_exit(exit_hook) {
        warn(format_args!(
            "could not register the exit hook; containers still being removed at exit may be left for `dockfix sweep`"
        ));
    }
    Ledger::default()
});

impl Ledger {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the maps inconsistent
        // (every update is a single insert or remove), so poison is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until `done` holds or the deadline passes; true if it holds.
    fn wait_until(&self, deadline: Instant, done: impl Fn(&State) -> bool) -> bool {
        let mut state = self.lock();
        loop {
            if done(&state) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = match self.changed.wait_timeout(state, deadline - now) {
                Ok((s, _)) => s,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

/// A removal the exit hook and `wait_for_removals` wait for, until dropped.
#[derive(Debug)]
pub(crate) struct Removal {
    ticket: u64,
}

/// Records a removal of `id` (`name`) in flight. It stops being live in
/// the same step, so the exit hook never sees it as neither.
pub(crate) fn track_removal(id: &str, name: &str) -> Removal {
    let mut state = LEDGER.lock();
    state.live.remove(id);
    state.next_ticket += 1;
    let ticket = state.next_ticket;
    state.pending.insert(ticket, name.to_owned());
    Removal { ticket }
}

impl Drop for Removal {
    fn drop(&mut self) {
        LEDGER.lock().pending.remove(&self.ticket);
        LEDGER.changed.notify_all();
    }
}

/// A start (or a release) in flight, which the exit hook waits for, until
/// dropped.
#[derive(Debug)]
pub(crate) struct Starting(());

/// Records a start in flight.
pub(crate) fn track_start() -> Starting {
    LEDGER.lock().starting += 1;
    Starting(())
}

impl Drop for Starting {
    fn drop(&mut self) {
        let mut state = LEDGER.lock();
        state.starting = state.starting.saturating_sub(1);
        drop(state);
        LEDGER.changed.notify_all();
    }
}

/// Records that a guard owns `id`, so the exit hook removes it even if the
/// guard is never dropped (a `static`, a `mem::forget`).
pub(crate) fn register_live(id: &str, name: &str) {
    LEDGER.lock().live.insert(id.to_owned(), name.to_owned());
}

/// Forgets `id`: its guard removed it or keeps it on purpose.
pub(crate) fn unregister_live(id: &str) {
    LEDGER.lock().live.remove(id);
}

/// Force-removes container `id` now; a failure is
/// [`Error::CleanupFailed`].
pub(crate) async fn remove_now(id: &str) -> Result<()> {
    containers::remove_container(id)
        .await
        .map_err(|e| cleanup_failed(ResourceKind::Container, id, e))
}

/// `e` as the failure to remove `name`, keeping the daemon's words.
pub(crate) fn cleanup_failed(kind: ResourceKind, name: &str, e: Error) -> Error {
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
        kind,
        name: name.to_owned(),
        message,
    }
}

/// Hands the removal of container `id` to the engine and returns at once.
/// With `wait`, blocks until it is done (bounded), unless called on an
/// engine thread where waiting could starve the runtime. Never panics.
pub(crate) fn remove_in_background(id: String, name: String, wait: bool) {
    let removal = track_removal(&id, &name);
    let ticket = removal.ticket;
    let spawned = docker::spawn(async move {
        let _removal = removal;
        if let Err(e) = remove_patiently(&id).await {
            warn(format_args!(
                "could not remove container {name} ({id}): {e}; it stays labelled for `dockfix sweep`"
            ));
        }
    });
    if let Err(e) = spawned {
        warn(format_args!("cannot remove a container: {e}"));
        return;
    }
    if wait && !docker::on_engine_thread() {
        let deadline = Instant::now() + DROP_WAIT;
        LEDGER.wait_until(deadline, |s| !s.pending.contains_key(&ticket));
    }
}

/// Hands `removal` (already tracked) to the engine, and returns at once.
pub(crate) fn finish_in_background(
    removal: Removal,
    work: impl Future<Output = Result<()>> + Send + 'static,
) {
    let spawned = docker::spawn(async move {
        let _removal = removal;
        if let Err(e) = work.await {
            warn(format_args!("{e}; it stays labelled for `dockfix sweep`"));
        }
    });
    if let Err(e) = spawned {
        warn(format_args!("cannot remove: {e}"));
    }
}

/// A removal that outlasts a daemon that fails for a while: past the
/// Docker layer's own attempts it waits (for the breaker's next probe,
/// while that is open) and tries again, until `DOCKFIX_REMOVE_DEADLINE`
/// (60 s by default). Then it returns the error, and the container stays
/// labelled for the sweep. A refusal that cannot heal returns at once.
async fn remove_patiently(id: &str) -> Result<()> {
    let deadline = docker::deadline_in(config::env().remove_deadline);
    loop {
        let result = containers::remove_container(id).await;
        let wait = match &result {
            Ok(()) => return Ok(()),
            Err(Error::CircuitOpen { next_probe_in, .. }) => {
                (*next_probe_in).max(Duration::from_millis(50))
            }
            Err(Error::DockerUnavailable { .. }) => Duration::from_millis(500),
            Err(Error::Docker { status, .. }) if status.is_none_or(|s| s >= 500) => {
                Duration::from_millis(500)
            }
            Err(_) => {
                return result.map_err(|e| cleanup_failed(ResourceKind::Container, id, e));
            }
        };
        if deadline.saturating_duration_since(Instant::now()) < wait {
            return result.map_err(|e| cleanup_failed(ResourceKind::Container, id, e));
        }
        tokio::time::sleep(wait).await;
    }
}

/// Blocks until every removal handed to the engine so far has finished, or
/// `timeout` passes. Returns the number still outstanding.
pub(crate) fn wait_for_removals_blocking(timeout: Duration) -> usize {
    let deadline = docker::deadline_in(timeout);
    LEDGER.wait_until(deadline, |s| s.pending.is_empty());
    LEDGER.lock().pending.len()
}

/// Runs at process exit: removes what armed guards still own (guards in
/// statics, forgotten guards) and waits, bounded, for every removal in
/// flight.
fn exit_hook() {
    let exit_timeout = config::env().exit_timeout;
    let keep = config::env().keep;
    let deadline = docker::deadline_in(exit_timeout);
    // A start that finishes while we wait registers a guard nobody will
    // drop any more: go round again until nothing is live or in flight.
    let drained = loop {
        let live: Vec<(String, String)> = LEDGER.lock().live.drain().collect();
        if !keep {
            for (id, name) in live {
                remove_in_background(id, name, false);
            }
        }
        if !LEDGER.wait_until(deadline, |s| s.pending.is_empty() && s.starting == 0) {
            break false;
        }
        let state = LEDGER.lock();
        if state.pending.is_empty() && state.starting == 0 && (keep || state.live.is_empty()) {
            break true;
        }
    };
    if !drained {
        let state = LEDGER.lock();
        let mut names: Vec<&str> = state.pending.values().map(String::as_str).collect();
        names.sort_unstable();
        warn(format_args!(
            "{} container(s) were still being removed when the exit deadline ({exit_timeout:?}) passed: {}; `dockfix sweep` removes them",
            names.len(),
            names.join(", ")
        ));
    }
}
