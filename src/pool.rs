//! `ContainerPool`: warm, reset, interchangeable containers, handed out
//! one holder at a time within a process.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use crate::container::{ContainerState, TestContainer};
use crate::engine;
use crate::error::{Error, Result};
use crate::exec::Exec;
use crate::logs::Logs;
use crate::shared;
use crate::spec::ContainerSpec;

/// The future a [`Reset::with`] closure returns.
pub type ResetFuture<'a> = Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;

type ResetFn = dyn for<'a> Fn(&'a TestContainer) -> ResetFuture<'a> + Send + Sync;

/// How a returned container is made fit for its next holder.
///
/// A reset that fails, or a container that is not running afterwards, is
/// destroyed and replaced, never handed out again.
#[derive(Clone)]
#[non_exhaustive]
pub enum Reset {
    /// Nothing: the next holder gets the container as it was left.
    None,
    /// Run this command; it must exit 0 (e.g. `sh -c 'rm -rf /data/*'`).
    Exec(Vec<String>),
    /// Destroy the container and start a fresh one.
    Recreate,
    /// Run this async closure on the container.
    With(Arc<ResetFn>),
}

impl Reset {
    /// A reset command.
    pub fn exec<I, S>(cmd: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Reset::Exec(cmd.into_iter().map(Into::into).collect())
    }

    /// A reset closure, e.g.
    /// `Reset::with(|c| Box::pin(async move { c.exec_ok(["psql", "-c", "truncate t"]).await.map(drop) }))`.
    pub fn with(
        f: impl for<'a> Fn(&'a TestContainer) -> ResetFuture<'a> + Send + Sync + 'static,
    ) -> Self {
        Reset::With(Arc::new(f))
    }
}

impl std::fmt::Debug for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reset::None => f.write_str("None"),
            Reset::Exec(cmd) => f.debug_tuple("Exec").field(cmd).finish(),
            Reset::Recreate => f.write_str("Recreate"),
            Reset::With(_) => f.write_str("With(..)"),
        }
    }
}

/// Builds a [`ContainerPool`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build()`"]
pub struct PoolBuilder {
    name: String,
    spec: ContainerSpec,
    min_idle: usize,
    max_size: usize,
    reset: Reset,
    acquire_timeout: Duration,
    shared: bool,
}

impl PoolBuilder {
    /// Shares the pool between every process on this host that builds a
    /// pool of the same name, through the daemon (default false: the pool
    /// lives in this process). For `cargo nextest`, which runs every test in
    /// a process of its own. A member is claimed by creating its lease
    /// container, which the daemon allows once per name, so two processes
    /// never hold one at once; a member held by a process that died is
    /// recovered (reset, then handed out) by the next one that needs it. The
    /// reset runs on acquire; `min_idle` and `prewarm` do not apply. They
    /// outlive the processes on purpose: they carry a `dockfix.ttl`
    /// (the spec's, or 30 minutes) after which `dockfix sweep` removes them,
    /// and `close()` removes the idle ones. The name must be a valid part
    /// of a container name (letters, digits, `_`, `.`, `-`).
    pub fn shared(mut self, shared: bool) -> Self {
        self.shared = shared;
        self
    }

    /// How many idle containers to keep warm (default 1). They are started
    /// in the background when the pool is first used.
    pub fn min_idle(mut self, n: usize) -> Self {
        self.min_idle = n;
        self
    }

    /// How many containers the pool holds at most, idle and in use
    /// (default 4, at least 1).
    pub fn max_size(mut self, n: usize) -> Self {
        self.max_size = n.max(1);
        self
    }

    /// How a returned container is reset (default [`Reset::None`]).
    pub fn reset(mut self, reset: Reset) -> Self {
        self.reset = reset;
        self
    }

    /// How long `acquire()` waits for a container when all are in use
    /// (default 60 s).
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// The pool. Nothing is started until it is first used.
    pub fn build(self) -> ContainerPool {
        let mut spec = self.spec;
        spec.pool = Some(self.name.clone());
        ContainerPool {
            inner: Arc::new(Inner {
                name: self.name,
                spec,
                min_idle: self.min_idle.min(self.max_size),
                max_size: self.max_size,
                reset: self.reset,
                acquire_timeout: self.acquire_timeout,
                shared: self.shared,
                state: Mutex::new(State::default()),
                counters: Counters::default(),
            }),
        }
    }
}

/// A pool of warm containers started from one spec, handed out to one
/// holder at a time and reset between holders.
///
/// `acquire()` returns a [`PooledContainer`] at once when one is idle;
/// otherwise it starts one (up to `max_size`) or waits, first come first
/// served, for one to come back. Dropping the `PooledContainer` returns the
/// container: it is reset in the background and handed to the next waiter
/// or kept idle. A failed reset, a container that stopped, or one its
/// holder [`taint`](PooledContainer::taint)ed is destroyed and replaced.
///
/// A pool is `Clone` (one pool, many handles) and works from a `static`,
/// which is how a suite shares it. Members are labelled
/// `dockfix.pool=<name>` with the usual owner labels.
///
/// # What is left behind, and what removes it
///
/// [`close()`](ContainerPool::close) removes every member. A pool in a
/// `static` is never dropped: when the process exits normally, the exit
/// hook removes its members with every other container of the process.
/// After a killed run, its members are orphans (their owner pid is gone)
/// and the next dockfix process on the host removes them at start-up, as
/// `dockfix sweep` does.
///
/// # Examples
///
/// ```no_run
/// use std::sync::LazyLock;
/// use dockfix::{ContainerPool, ContainerSpec, Reset};
///
/// static DATA: LazyLock<ContainerPool> = LazyLock::new(|| {
///     ContainerPool::builder(
///         "data",
///         ContainerSpec::new("dockfix-test/busybox:latest").cmd(["sleep", "infinity"]),
///     )
///     .min_idle(2)
///     .max_size(4)
///     .reset(Reset::exec(["sh", "-c", "rm -rf /tmp/*"]))
///     .build()
/// });
///
/// # async fn demo() -> dockfix::Result<()> {
/// let c = DATA.acquire().await?; // warm; reset since its last holder
/// c.exec_ok(["touch", "/tmp/mine"]).await?;
/// # Ok(()) }
/// // dropping `c` returns the container; it is reset in the background
/// ```
#[derive(Debug, Clone)]
pub struct ContainerPool {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    spec: ContainerSpec,
    min_idle: usize,
    max_size: usize,
    reset: Reset,
    acquire_timeout: Duration,
    shared: bool,
    state: Mutex<State>,
    counters: Counters,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.name)
            .field("max_size", &self.max_size)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    idle: VecDeque<TestContainer>,
    /// Every member: idle, in use, being started, being reset.
    total: usize,
    in_use: usize,
    waiters: VecDeque<tokio::sync::oneshot::Sender<TestContainer>>,
    prewarmed: bool,
    closed: bool,
}

#[derive(Default)]
struct Counters {
    created: AtomicU64,
    destroyed: AtomicU64,
    resets: AtomicU64,
    waits: AtomicU64,
    acquired: AtomicU64,
}

/// A pool's counters and its current occupancy.
///
/// For a shared pool the members live on the daemon: `size` and `idle` are
/// not tracked (0), `in_use` counts this process's holders, and the
/// counters count this process's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Members: idle, in use, starting or being reset.
    pub size: usize,
    /// Members waiting for a holder.
    pub idle: usize,
    /// Members held.
    pub in_use: usize,
    /// Containers started for the pool.
    pub created: u64,
    /// Containers destroyed (tainted, failed reset, died, recreated, closed).
    pub destroyed: u64,
    /// Resets run.
    pub resets: u64,
    /// Acquisitions that had to wait for a returned container.
    pub waits: u64,
    /// Acquisitions served.
    pub acquired: u64,
}

enum Next {
    Take(TestContainer),
    Start,
    Wait(tokio::sync::oneshot::Receiver<TestContainer>),
}

impl ContainerPool {
    /// A builder for a pool called `name` (a label value, and the name
    /// errors use) of containers started from `spec`.
    pub fn builder(name: impl Into<String>, spec: ContainerSpec) -> PoolBuilder {
        PoolBuilder {
            name: name.into(),
            spec,
            min_idle: 1,
            max_size: 4,
            reset: Reset::None,
            acquire_timeout: Duration::from_secs(60),
            shared: false,
        }
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// A warm, running container, reset since its last holder.
    ///
    /// # Errors
    ///
    /// [`Error::PoolTimeout`] when none came back within the acquire
    /// timeout; [`Error::PoolClosed`] after `close()`; any error of
    /// [`ContainerSpec::start`] when a new member fails to start.
    pub async fn acquire(&self) -> Result<PooledContainer> {
        let inner = self.inner.clone();
        if inner.shared {
            return engine::run(async move { Inner::acquire_shared(inner).await }).await;
        }
        engine::run(async move { Inner::acquire(inner).await }).await
    }

    /// Starts `min_idle` members in the background, if the pool has not
    /// done so yet (the first `acquire()` does it too).
    pub fn prewarm(&self) {
        if self.inner.shared {
            return;
        }
        Inner::prewarm(&self.inner);
    }

    /// The pool's counters and occupancy.
    pub fn stats(&self) -> PoolStats {
        let state = self.inner.lock();
        let c = &self.inner.counters;
        PoolStats {
            size: state.total,
            idle: state.idle.len(),
            in_use: state.in_use,
            created: c.created.load(Ordering::Relaxed),
            destroyed: c.destroyed.load(Ordering::Relaxed),
            resets: c.resets.load(Ordering::Relaxed),
            waits: c.waits.load(Ordering::Relaxed),
            acquired: c.acquired.load(Ordering::Relaxed),
        }
    }

    /// Removes every idle member now, fails every waiter, and makes members
    /// in use go when they are returned. Later `acquire()`s fail.
    ///
    /// For a shared pool: removes the members no process holds (held ones
    /// stay with their holders); the pool stays usable, and a later
    /// `acquire()` starts members again.
    ///
    /// # Errors
    ///
    /// The first removal that failed (the others are still attempted).
    pub async fn close(&self) -> Result<()> {
        if self.inner.shared {
            return Inner::close_shared(self.inner.clone()).await;
        }
        let idle: Vec<TestContainer> = {
            let mut state = self.inner.lock();
            state.closed = true;
            state.waiters.clear();
            let idle: Vec<_> = state.idle.drain(..).collect();
            state.total -= idle.len();
            idle
        };
        self.inner
            .counters
            .destroyed
            .fetch_add(idle.len() as u64, Ordering::Relaxed);
        tracing::debug!(pool = %self.inner.name, members = idle.len(), "dockfix: pool closed");
        let results = futures::future::join_all(idle.into_iter().map(TestContainer::remove)).await;
        // Members being started or reset right now are removed as they
        // finish; wait for them (bounded), not for the ones still held.
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let settled = {
                let state = self.inner.lock();
                state.total == state.in_use
            };
            if settled {
                break;
            }
            engine::run(async {
                tokio::time::sleep(Duration::from_millis(10)).await;
                Ok(())
            })
            .await?;
        }
        results.into_iter().collect::<Result<Vec<()>>>().map(drop)
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn prewarm(this: &Arc<Inner>) {
        let missing = {
            let mut state = this.lock();
            if state.prewarmed || state.closed {
                return;
            }
            state.prewarmed = true;
            let missing = this
                .min_idle
                .saturating_sub(state.idle.len())
                .min(this.max_size - state.total);
            state.total += missing;
            missing
        };
        for _ in 0..missing {
            Inner::start_member(this.clone());
        }
    }

    /// Starts a member in the background (its slot already counted) and
    /// hands it to a waiter or keeps it idle.
    fn start_member(this: Arc<Inner>) {
        let Ok(engine) = engine::get() else {
            this.lock().total -= 1;
            return;
        };
        engine.spawn(async move {
            match this.spec.clone().start().await {
                Ok(c) => {
                    this.counters.created.fetch_add(1, Ordering::Relaxed);
                    if this.lock().closed {
                        return Inner::retire(&this, c).await;
                    }
                    Inner::put_back(&this, c);
                }
                Err(e) => {
                    tracing::debug!(pool = %this.name, error = %e, "dockfix: a pool member failed to start");
                    this.lock().total -= 1;
                }
            }
        });
    }

    async fn acquire(this: Arc<Inner>) -> Result<PooledContainer> {
        Inner::prewarm(&this);
        let deadline = engine::deadline_in(this.acquire_timeout);
        loop {
            let next = {
                let mut state = this.lock();
                if state.closed {
                    return Err(Error::PoolClosed {
                        pool: this.name.clone(),
                    });
                }
                if let Some(c) = state.idle.pop_front() {
                    Next::Take(c)
                } else if state.total < this.max_size {
                    state.total += 1;
                    Next::Start
                } else {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    state.waiters.push_back(tx);
                    Next::Wait(rx)
                }
            };
            let container = match next {
                Next::Take(c) => c,
                Next::Start => match this.spec.clone().start().await {
                    Ok(c) => {
                        this.counters.created.fetch_add(1, Ordering::Relaxed);
                        c
                    }
                    Err(e) => {
                        this.lock().total -= 1;
                        return Err(e);
                    }
                },
                Next::Wait(mut rx) => {
                    this.counters.waits.fetch_add(1, Ordering::Relaxed);
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    match tokio::time::timeout(remaining, &mut rx).await {
                        Ok(Ok(c)) => c,
                        Ok(Err(_)) => {
                            return Err(Error::PoolClosed {
                                pool: this.name.clone(),
                            });
                        }
                        Err(_) => {
                            // A container sent just as the time ran out is
                            // still taken, not lost.
                            rx.close();
                            match rx.try_recv() {
                                Ok(c) => c,
                                Err(_) => {
                                    return Err(Error::PoolTimeout {
                                        pool: this.name.clone(),
                                        max_size: this.max_size,
                                        waited: this.acquire_timeout,
                                    });
                                }
                            }
                        }
                    }
                }
            };
            // A container that died while idle is never handed out.
            match container.state().await {
                Ok(s) if s.running => {
                    this.lock().in_use += 1;
                    this.counters.acquired.fetch_add(1, Ordering::Relaxed);
                    return Ok(PooledContainer {
                        container: Some(container),
                        pool: Arc::downgrade(&this),
                        tainted: false,
                        lease: None,
                    });
                }
                _ => {
                    tracing::debug!(pool = %this.name, container = container.name(), "dockfix: a pool member died while idle; replacing it");
                    Inner::destroy(&this, container);
                }
            }
        }
    }

    /// Removes a member and frees its slot; a replacement is started if a
    /// waiter needs one or the pool is below `min_idle`.
    fn destroy(this: &Arc<Inner>, container: TestContainer) {
        drop(container);
        this.counters.destroyed.fetch_add(1, Ordering::Relaxed);
        let replace = {
            let mut state = this.lock();
            state.total -= 1;
            let wanted = !state.closed
                && (!state.waiters.is_empty() || state.idle.len() < this.min_idle)
                && state.total < this.max_size;
            if wanted {
                state.total += 1;
            }
            wanted
        };
        if replace {
            Inner::start_member(this.clone());
        }
    }

    /// Hands a ready member to the first waiter still waiting, or keeps it
    /// idle.
    fn put_back(this: &Arc<Inner>, mut container: TestContainer) {
        let mut state = this.lock();
        if state.closed {
            // Closed since the caller looked: Drop removes it.
            state.total -= 1;
            drop(state);
            this.counters.destroyed.fetch_add(1, Ordering::Relaxed);
            drop(container);
            return;
        }
        while let Some(waiter) = state.waiters.pop_front() {
            match waiter.send(container) {
                Ok(()) => return,
                Err(back) => container = back,
            }
        }
        state.idle.push_back(container);
    }

    /// A holder gave the container back: reset it, then put it back, or
    /// destroy and replace it.
    async fn release(this: Arc<Inner>, container: TestContainer, tainted: bool) {
        if tainted {
            tracing::debug!(pool = %this.name, container = container.name(), "dockfix: tainted pool member destroyed");
            return Inner::destroy(&this, container);
        }
        if this.lock().closed {
            return Inner::retire(&this, container).await;
        }
        let reset = match &this.reset {
            Reset::None | Reset::Exec(_) | Reset::With(_) => {
                Inner::run_reset(&this, &container).await
            }
            Reset::Recreate => {
                this.counters.resets.fetch_add(1, Ordering::Relaxed);
                Inner::destroy_for_recreate(&this, container);
                return;
            }
        };
        if !matches!(this.reset, Reset::None) {
            this.counters.resets.fetch_add(1, Ordering::Relaxed);
        }
        let healthy = match reset {
            Ok(()) => matches!(container.state().await, Ok(s) if s.running),
            Err(e) => {
                tracing::debug!(pool = %this.name, container = container.name(), error = %e, "dockfix: reset failed; replacing the member");
                false
            }
        };
        if healthy && this.lock().closed {
            Inner::retire(&this, container).await;
        } else if healthy {
            Inner::put_back(&this, container);
        } else {
            Inner::destroy(&this, container);
        }
    }

    /// Runs the reset command or closure (not `Recreate`) on a member.
    async fn run_reset(this: &Arc<Inner>, container: &TestContainer) -> Result<()> {
        match &this.reset {
            Reset::None | Reset::Recreate => Ok(()),
            Reset::Exec(cmd) => container.exec_ok(cmd.clone()).await.map(drop),
            Reset::With(f) => f(container).await,
        }
    }

    /// Claims a member of a shared pool: a slot whose lease this process
    /// creates (after removing the lease of a holder that is gone), reset
    /// and checked before it is handed out; else a new member in a free
    /// slot; otherwise it looks again, until the acquire timeout.
    async fn acquire_shared(this: Arc<Inner>) -> Result<PooledContainer> {
        let valid = !this.name.is_empty()
            && this
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !valid {
            return Err(Error::invalid(
                "pool",
                this.name.clone(),
                "a shared pool's name must contain only letters, digits, `_`, `.` and `-`",
            ));
        }
        let docker = engine::docker().await?;
        let deadline = engine::deadline_in(this.acquire_timeout);
        let mut waited = false;
        for attempt in 0.. {
            let slots = shared::slots(&docker, &this.name).await?;
            let mut members: Vec<(&usize, &String)> = slots.members.iter().collect();
            members.sort();
            for (&slot, member_id) in members {
                let mut recovered = false;
                if let Some(lease) = slots.leases.get(&slot) {
                    let gone = matches!(
                        lease.owner(),
                        crate::sweep::Owner::Gone | crate::sweep::Owner::PidReused
                    );
                    if !gone {
                        continue;
                    }
                    tracing::debug!(pool = %this.name, slot, "dockfix: removing the lease of a holder that is gone");
                    let _ = engine::force_remove(&docker, &lease.id).await;
                    recovered = true;
                }
                let Some(lease) =
                    shared::lease(&docker, &this.name, slot, &this.spec.image).await?
                else {
                    continue;
                };
                engine::register_live(&lease, &format!("{}-{slot}-lease", this.name));
                match Inner::ready_member(&this, &docker, member_id, slot, recovered).await {
                    Some(c) => {
                        if waited {
                            this.counters.waits.fetch_add(1, Ordering::Relaxed);
                        }
                        this.counters.acquired.fetch_add(1, Ordering::Relaxed);
                        this.lock().in_use += 1;
                        return Ok(PooledContainer {
                            container: Some(c),
                            pool: Arc::downgrade(&this),
                            tainted: false,
                            lease: Some(lease),
                        });
                    }
                    None => {
                        // Unfit: the member goes, then its lease frees the slot.
                        let _ = engine::force_remove(&docker, member_id).await;
                        this.counters.destroyed.fetch_add(1, Ordering::Relaxed);
                        engine::unregister_live(&lease);
                        let _ = engine::force_remove(&docker, &lease).await;
                    }
                }
            }
            if let Some(slot) = (0..this.max_size).find(|s| !slots.members.contains_key(s)) {
                let mut spec = this.spec.clone();
                spec.shared_name = Some(shared::member_name(&this.name, slot));
                // A shared member outlives its creator: never tied to it.
                spec.remove_on_kill = false;
                if spec.ttl.is_none() {
                    spec = spec.ttl(shared::DEFAULT_TTL);
                }
                match spec.start().await {
                    // Made under its slot's name: leased like any other on
                    // the next look, by whoever is first.
                    Ok(c) => {
                        this.counters.created.fetch_add(1, Ordering::Relaxed);
                        drop(c.keep());
                        continue;
                    }
                    Err(e) if e.status() == Some(409) => continue,
                    Err(e) => return Err(e),
                }
            }
            if shared::expired(deadline) {
                return Err(Error::PoolTimeout {
                    pool: this.name.clone(),
                    max_size: this.max_size,
                    waited: this.acquire_timeout,
                });
            }
            waited = true;
            tokio::time::sleep(shared::poll_delay(attempt)).await;
        }
        unreachable!("the loop above only ends by returning")
    }

    /// A leased member made fit for its new holder: running, and reset
    /// (a holder may have died mid-use, so the reset runs here); `None`
    /// when it is not fit.
    async fn ready_member(
        this: &Arc<Inner>,
        docker: &bollard::Docker,
        id: &str,
        slot: usize,
        recovered: bool,
    ) -> Option<TestContainer> {
        // Taken over from a holder that died mid-use: with `Recreate`, a
        // fresh container takes its place.
        if recovered && matches!(this.reset, Reset::Recreate) {
            return None;
        }
        let name = shared::member_name(&this.name, slot);
        let c = shared::handle(docker, id, &name, &this.spec.image)
            .await
            .ok()??;
        if !matches!(this.reset, Reset::None | Reset::Recreate) {
            this.counters.resets.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = Inner::run_reset(this, &c).await {
                tracing::debug!(pool = %this.name, member = %name, error = %e, "dockfix: reset failed; replacing the member");
                return None;
            }
        }
        Some(c)
    }

    /// Gives a shared member back by removing its lease; a tainted member
    /// (or any, with `Recreate`) is removed first.
    async fn release_shared(
        this: Arc<Inner>,
        container: TestContainer,
        lease: String,
        tainted: bool,
    ) {
        // The exit hook waits for this, so a slot is not left leased.
        let _in_flight = engine::track_start();
        let Ok(docker) = engine::docker().await else {
            return;
        };
        if tainted || matches!(this.reset, Reset::Recreate) {
            let _ = engine::force_remove(&docker, container.id()).await;
            this.counters.destroyed.fetch_add(1, Ordering::Relaxed);
        }
        engine::unregister_live(&lease);
        let _ = engine::force_remove(&docker, &lease).await;
    }

    /// Removes the members of a shared pool that no one holds.
    async fn close_shared(this: Arc<Inner>) -> Result<()> {
        engine::run(async move {
            let docker = engine::docker().await?;
            let mut first_error = None;
            let slots = shared::slots(&docker, &this.name).await?;
            for (slot, member) in &slots.members {
                // Lease it first, so no other process is handed a member
                // being removed.
                let Some(lease) =
                    shared::lease(&docker, &this.name, *slot, &this.spec.image).await?
                else {
                    continue;
                };
                if let Err(e) = engine::force_remove(&docker, member).await {
                    first_error.get_or_insert(e);
                }
                this.counters.destroyed.fetch_add(1, Ordering::Relaxed);
                let _ = engine::force_remove(&docker, &lease).await;
            }
            first_error.map_or(Ok(()), Err)
        })
        .await
    }

    /// Removes a member of a closed pool now, then frees its slot, so that
    /// `close()` can wait for it.
    async fn retire(this: &Arc<Inner>, container: TestContainer) {
        if let Err(e) = container.remove().await {
            tracing::debug!(pool = %this.name, error = %e, "dockfix: removing a member of a closed pool failed");
        }
        this.counters.destroyed.fetch_add(1, Ordering::Relaxed);
        this.lock().total -= 1;
    }

    /// `Reset::Recreate`: the old container goes, a new one takes its slot.
    fn destroy_for_recreate(this: &Arc<Inner>, container: TestContainer) {
        drop(container);
        this.counters.destroyed.fetch_add(1, Ordering::Relaxed);
        Inner::start_member(this.clone());
    }
}

/// A container held from a [`ContainerPool`]; dropping it gives it back.
///
/// It has the container's everyday methods; [`container`](Self::container)
/// gives the rest.
#[derive(Debug)]
#[must_use = "dropping the holder returns the container to the pool at once"]
pub struct PooledContainer {
    container: Option<TestContainer>,
    pool: Weak<Inner>,
    tainted: bool,
    /// The lease container of a shared pool's member.
    lease: Option<String>,
}

impl PooledContainer {
    fn get(&self) -> &TestContainer {
        self.container
            .as_ref()
            .expect("a PooledContainer holds its container until dropped")
    }

    /// The container.
    pub fn container(&self) -> &TestContainer {
        self.get()
    }

    /// The container id.
    pub fn id(&self) -> &str {
        self.get().id()
    }

    /// The container name.
    pub fn name(&self) -> &str {
        self.get().name()
    }

    /// See [`TestContainer::host`].
    pub fn host(&self) -> String {
        self.get().host()
    }

    /// See [`TestContainer::host_port`].
    ///
    /// # Errors
    ///
    /// As [`TestContainer::host_port`].
    pub fn host_port(&self, port: u16) -> Result<u16> {
        self.get().host_port(port)
    }

    /// See [`TestContainer::exec`].
    pub fn exec<I, S>(&self, cmd: I) -> Exec<'_>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.get().exec(cmd)
    }

    /// See [`TestContainer::exec_ok`].
    pub fn exec_ok<I, S>(&self, cmd: I) -> Exec<'_>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.get().exec_ok(cmd)
    }

    /// See [`TestContainer::logs`].
    ///
    /// # Errors
    ///
    /// As [`TestContainer::logs`].
    pub async fn logs(&self) -> Result<Logs> {
        self.get().logs().await
    }

    /// See [`TestContainer::state`].
    ///
    /// # Errors
    ///
    /// As [`TestContainer::state`].
    pub async fn state(&self) -> Result<ContainerState> {
        self.get().state().await
    }

    /// Marks the container as unfit for another holder: it is destroyed
    /// and replaced when this holder drops it.
    pub fn taint(&mut self) {
        self.tainted = true;
    }

    /// Gives the container up for good: destroyed and replaced now.
    pub fn discard(mut self) {
        self.tainted = true;
    }
}

impl Drop for PooledContainer {
    fn drop(&mut self) {
        let Some(container) = self.container.take() else {
            return;
        };
        let (pool, engine) = match (self.pool.upgrade(), engine::get()) {
            (Some(pool), Ok(engine)) => (pool, engine),
            // No pool or no engine: the container goes with its guard (a
            // shared member's guard leaves it), and a lease is freed.
            (pool, _) => {
                if let Some(pool) = pool {
                    let mut state = pool.lock();
                    state.in_use = state.in_use.saturating_sub(1);
                }
                if let Some(lease) = self.lease.take() {
                    engine::remove_in_background(lease.clone(), lease, false);
                }
                return drop(container);
            }
        };
        // No longer held from this moment, so that `close()` waits for it.
        {
            let mut state = pool.lock();
            state.in_use = state.in_use.saturating_sub(1);
        }
        let tainted = self.tainted;
        match self.lease.take() {
            Some(lease) => engine.spawn(Inner::release_shared(pool, container, lease, tainted)),
            None => engine.spawn(Inner::release(pool, container, tainted)),
        }
    }
}
