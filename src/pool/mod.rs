//! `ContainerPool`: warm, reset, interchangeable containers, handed out
//! one holder at a time; its state in this process ([`local`]) or, for
//! `cargo nextest`, on the daemon for every process of the host
//! ([`shared`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::cleanup;
use crate::container::TestContainer;
use crate::docker;
use crate::error::{Error, Result};
use crate::spec::ContainerSpec;

mod local;
mod shared;

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
        let common = Common {
            name: self.name,
            spec,
            max_size: self.max_size,
            reset: self.reset,
            acquire_timeout: self.acquire_timeout,
            counters: Counters::default(),
        };
        let backend = if self.shared {
            Backend::Shared(Arc::new(shared::Shared::new(common)))
        } else {
            Backend::Local(Arc::new(local::Local::new(common, self.min_idle)))
        };
        ContainerPool { backend }
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
    backend: Backend,
}

/// Where the pool's state lives.
#[derive(Debug, Clone)]
enum Backend {
    /// In this process.
    Local(Arc<local::Local>),
    /// On the daemon, for every process of the host.
    Shared(Arc<shared::Shared>),
}

/// What both backends know of their pool.
pub(crate) struct Common {
    pub(crate) name: String,
    pub(crate) spec: ContainerSpec,
    pub(crate) max_size: usize,
    pub(crate) reset: Reset,
    pub(crate) acquire_timeout: Duration,
    pub(crate) counters: Counters,
}

impl std::fmt::Debug for Common {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.name)
            .field("max_size", &self.max_size)
            .finish_non_exhaustive()
    }
}

impl Common {
    /// Runs the reset command or closure (not `Recreate`) on a member.
    pub(crate) async fn run_reset(&self, container: &TestContainer) -> Result<()> {
        match &self.reset {
            Reset::None | Reset::Recreate => Ok(()),
            Reset::Exec(cmd) => container.exec_ok(cmd.clone()).await.map(drop),
            Reset::With(f) => f(container).await,
        }
    }

    /// Whether a returned member is reset (by command or closure).
    pub(crate) fn resets(&self) -> bool {
        matches!(self.reset, Reset::Exec(_) | Reset::With(_))
    }

    /// No member came within the acquire timeout, while `in_use` were
    /// held.
    pub(crate) fn timed_out(&self, in_use: usize) -> Error {
        Error::PoolTimeout {
            pool: self.name.clone(),
            max_size: self.max_size,
            in_use,
            waited: self.acquire_timeout,
        }
    }

    /// A member for `holder`, counted as acquired.
    pub(crate) fn hand_out(
        &self,
        container: TestContainer,
        home: Home,
        waited: bool,
    ) -> PooledContainer {
        if waited {
            self.counters.waits.fetch_add(1, Ordering::Relaxed);
        }
        self.counters.acquired.fetch_add(1, Ordering::Relaxed);
        container.transcript().clear();
        PooledContainer {
            container: Some(container),
            home,
            tainted: false,
            discarded: false,
        }
    }
}

/// What a pool has done, counted.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) created: AtomicU64,
    pub(crate) destroyed: AtomicU64,
    pub(crate) resets: AtomicU64,
    pub(crate) waits: AtomicU64,
    pub(crate) acquired: AtomicU64,
}

impl Counters {
    fn stats(&self, size: usize, idle: usize, in_use: usize) -> PoolStats {
        PoolStats {
            size,
            idle,
            in_use,
            created: self.created.load(Ordering::Relaxed),
            destroyed: self.destroyed.load(Ordering::Relaxed),
            resets: self.resets.load(Ordering::Relaxed),
            waits: self.waits.load(Ordering::Relaxed),
            acquired: self.acquired.load(Ordering::Relaxed),
        }
    }
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

    fn common(&self) -> &Common {
        match &self.backend {
            Backend::Local(pool) => &pool.common,
            Backend::Shared(pool) => &pool.common,
        }
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.common().name
    }

    /// A warm, running container, reset since its last holder.
    ///
    /// # Errors
    ///
    /// [`Error::PoolTimeout`] when none came back within the acquire
    /// timeout; [`Error::PoolClosed`] after `close()`; any error of
    /// [`ContainerSpec::start`] when a new member fails to start.
    pub async fn acquire(&self) -> Result<PooledContainer> {
        match &self.backend {
            Backend::Local(pool) => docker::run(local::Local::acquire(pool.clone())).await,
            Backend::Shared(pool) => docker::run(shared::Shared::acquire(pool.clone())).await,
        }
    }

    /// Starts `min_idle` members in the background, if the pool has not
    /// done so yet (the first `acquire()` does it too). A shared pool
    /// starts members only when they are acquired.
    pub fn prewarm(&self) {
        if let Backend::Local(pool) = &self.backend {
            local::Local::prewarm(pool);
        }
    }

    /// The pool's counters and occupancy.
    pub fn stats(&self) -> PoolStats {
        match &self.backend {
            Backend::Local(pool) => pool.stats(),
            Backend::Shared(pool) => pool.stats(),
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
        match &self.backend {
            Backend::Local(pool) => pool.close().await,
            Backend::Shared(pool) => docker::run(shared::Shared::close(pool.clone())).await,
        }
    }
}

/// A container held from a [`ContainerPool`]; dropping it gives it back.
///
/// It dereferences to the [`TestContainer`], as a smart pointer does, so
/// every method of the container is at hand.
#[derive(Debug)]
#[must_use = "dropping the holder returns the container to the pool at once"]
pub struct PooledContainer {
    container: Option<TestContainer>,
    home: Home,
    tainted: bool,
    /// Given up by [`discard`](PooledContainer::discard): replaced like a
    /// tainted member, without forensics.
    discarded: bool,
}

/// Where a held container goes back to.
#[derive(Debug)]
pub(crate) enum Home {
    Local(Weak<local::Local>),
    /// A shared pool's member, and the lease container that holds it.
    Shared {
        pool: Weak<shared::Shared>,
        lease: String,
    },
}

impl std::ops::Deref for PooledContainer {
    type Target = TestContainer;

    fn deref(&self) -> &TestContainer {
        self.container
            .as_ref()
            .expect("a PooledContainer holds its container until dropped")
    }
}

impl PooledContainer {
    /// Marks the container as unfit for another holder: it is destroyed
    /// and replaced when this holder drops it. With `DOCKFIX_ARTIFACTS`
    /// set, its log, inspect and execs are written there first.
    pub fn taint(&mut self) {
        self.tainted = true;
    }

    /// Gives the container up for good: destroyed and replaced now.
    pub fn discard(mut self) {
        self.tainted = true;
        self.discarded = true;
    }
}

impl Drop for PooledContainer {
    fn drop(&mut self) {
        let Some(container) = self.container.take() else {
            return;
        };
        // A holder that panicked may have left the member half-changed:
        // it is replaced, after its forensics are taken.
        if std::thread::panicking() {
            container.report("the test panicked holding pool member", true);
            self.tainted = true;
        } else if self.tainted && !self.discarded {
            container.report("the holder tainted pool member", false);
        }
        let tainted = self.tainted;
        match &self.home {
            Home::Local(pool) => match pool.upgrade() {
                Some(pool) => local::Local::release(pool, container, tainted),
                // No pool any more: the container goes with its guard.
                None => drop(container),
            },
            Home::Shared { pool, lease } => match pool.upgrade() {
                Some(pool) => shared::Shared::release(pool, container, lease.clone(), tainted),
                // The member outlives its holders; the lease frees it.
                None => {
                    cleanup::remove_in_background(lease.clone(), lease.clone(), false);
                }
            },
        }
    }
}
