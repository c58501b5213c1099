//! The in-process backend: members held in this process's memory, handed
//! to waiters first come first served.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{Common, Home, PoolStats, PooledContainer, Reset};
use crate::container::TestContainer;
use crate::docker;
use crate::error::{Error, Result};

/// A pool whose members this process holds.
pub(crate) struct Local {
    pub(crate) common: Common,
    min_idle: usize,
    state: Mutex<State>,
}

impl std::fmt::Debug for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.common.fmt(f)
    }
}

#[derive(Default)]
struct State {
    idle: VecDeque<TestContainer>,
    /// Every member: idle, in use, being started, being reset.
    total: usize,
    in_use: usize,
    waiters: VecDeque<tokio::sync::oneshot::Sender<Result<TestContainer>>>,
    prewarmed: bool,
    closed: bool,
}

enum Next {
    Take(TestContainer),
    Start,
    Wait(tokio::sync::oneshot::Receiver<Result<TestContainer>>),
}

impl Local {
    pub(crate) fn new(common: Common, min_idle: usize) -> Self {
        Local {
            min_idle: min_idle.min(common.max_size),
            common,
            state: Mutex::new(State::default()),
        }
    }

    pub(crate) fn stats(&self) -> PoolStats {
        let state = self.lock();
        self.common
            .counters
            .stats(state.total, state.idle.len(), state.in_use)
    }

    /// A holder gave `container` back: from this moment it is no longer
    /// held (so `close()` waits for it); it is reset in the background.
    pub(crate) fn release(this: Arc<Local>, container: TestContainer, tainted: bool) {
        {
            let mut state = this.lock();
            state.in_use = state.in_use.saturating_sub(1);
        }
        let pool = this.clone();
        if docker::spawn(Local::take_back(this, container, tainted)).is_err() {
            // No engine: the guard removes the container as it goes.
            pool.lock().total -= 1;
        }
    }

    /// Removes every idle member now, fails every waiter, and waits
    /// (bounded) for members being started or reset.
    pub(crate) async fn close(&self) -> Result<()> {
        let idle: Vec<TestContainer> = {
            let mut state = self.lock();
            state.closed = true;
            state.waiters.clear();
            let idle: Vec<_> = state.idle.drain(..).collect();
            state.total -= idle.len();
            idle
        };
        self.common
            .counters
            .destroyed
            .fetch_add(idle.len() as u64, Ordering::Relaxed);
        tracing::debug!(pool = %self.common.name, members = idle.len(), "dockfix: pool closed");
        let results = futures::future::join_all(idle.into_iter().map(TestContainer::remove)).await;
        // Members being started or reset right now are removed as they
        // finish; wait for them (bounded), not for the ones still held.
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let settled = {
                let state = self.lock();
                state.total == state.in_use
            };
            if settled {
                break;
            }
            docker::run(async {
                tokio::time::sleep(Duration::from_millis(10)).await;
                Ok(())
            })
            .await?;
        }
        results.into_iter().collect::<Result<Vec<()>>>().map(drop)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn prewarm(this: &Arc<Local>) {
        let missing = {
            let mut state = this.lock();
            if state.prewarmed || state.closed {
                return;
            }
            state.prewarmed = true;
            let missing = this
                .min_idle
                .saturating_sub(state.idle.len())
                .min(this.common.max_size - state.total);
            state.total += missing;
            missing
        };
        for _ in 0..missing {
            Local::start_member(this.clone());
        }
    }

    /// Starts a member in the background (its slot already counted) and
    /// hands it to a waiter or keeps it idle.
    fn start_member(this: Arc<Local>) {
        let pool = this.clone();
        let spawned = docker::spawn(async move {
            match this.common.spec.clone().start().await {
                Ok(c) => {
                    this.common.counters.created.fetch_add(1, Ordering::Relaxed);
                    if this.lock().closed {
                        return Local::retire(&this, c).await;
                    }
                    Local::put_back(&this, c);
                }
                Err(e) => {
                    tracing::debug!(pool = %this.common.name, error = %e, "dockfix: a pool member failed to start");
                    Local::start_failed(&this, e);
                }
            }
        });
        if spawned.is_err() {
            pool.lock().total -= 1;
        }
    }

    /// A member started for the pool failed: its slot is free again, and
    /// the first acquirer still waiting gets the error now, rather than
    /// waiting out its timeout for a member that will not come.
    fn start_failed(this: &Arc<Local>, error: Error) {
        let mut state = this.lock();
        state.total -= 1;
        let mut error = error;
        while let Some(waiter) = state.waiters.pop_front() {
            match waiter.send(Err(error)) {
                Ok(()) => return,
                // That one gave up meanwhile: the next.
                Err(back) => match back {
                    Err(back) => error = back,
                    Ok(_) => return,
                },
            }
        }
    }

    pub(crate) async fn acquire(this: Arc<Local>) -> Result<PooledContainer> {
        Local::prewarm(&this);
        let deadline = docker::deadline_in(this.common.acquire_timeout);
        loop {
            let next = {
                let mut state = this.lock();
                if state.closed {
                    return Err(Error::PoolClosed {
                        pool: this.common.name.clone(),
                    });
                }
                if let Some(c) = state.idle.pop_front() {
                    Next::Take(c)
                } else if state.total < this.common.max_size {
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
                Next::Start => match this.common.spec.clone().start().await {
                    Ok(c) => {
                        this.common.counters.created.fetch_add(1, Ordering::Relaxed);
                        c
                    }
                    Err(e) => {
                        this.lock().total -= 1;
                        return Err(e);
                    }
                },
                Next::Wait(mut rx) => {
                    this.common.counters.waits.fetch_add(1, Ordering::Relaxed);
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    let handed = match tokio::time::timeout(remaining, &mut rx).await {
                        Ok(Ok(handed)) => handed,
                        Ok(Err(_)) => {
                            return Err(Error::PoolClosed {
                                pool: this.common.name.clone(),
                            });
                        }
                        Err(_) => {
                            // A container sent just as the time ran out is
                            // still taken, not lost.
                            rx.close();
                            match rx.try_recv() {
                                Ok(handed) => handed,
                                Err(_) => {
                                    let in_use = this.lock().in_use;
                                    return Err(this.common.timed_out(in_use));
                                }
                            }
                        }
                    };
                    // A member started for us failed: its error, at once.
                    handed?
                }
            };
            // A container that died while idle is never handed out.
            match container.state().await {
                Ok(s) if s.running => {
                    this.lock().in_use += 1;
                    let home = Home::Local(Arc::downgrade(&this));
                    return Ok(this.common.hand_out(container, home, false));
                }
                _ => {
                    tracing::debug!(pool = %this.common.name, container = container.name(), "dockfix: a pool member died while idle; replacing it");
                    Local::destroy(&this, container);
                }
            }
        }
    }

    /// Removes a member and frees its slot; a replacement is started if a
    /// waiter needs one or the pool is below `min_idle`.
    fn destroy(this: &Arc<Local>, container: TestContainer) {
        drop(container);
        this.common
            .counters
            .destroyed
            .fetch_add(1, Ordering::Relaxed);
        let replace = {
            let mut state = this.lock();
            state.total -= 1;
            let wanted = !state.closed
                && (!state.waiters.is_empty() || state.idle.len() < this.min_idle)
                && state.total < this.common.max_size;
            if wanted {
                state.total += 1;
            }
            wanted
        };
        if replace {
            Local::start_member(this.clone());
        }
    }

    /// Hands a ready member to the first waiter still waiting, or keeps it
    /// idle.
    fn put_back(this: &Arc<Local>, mut container: TestContainer) {
        let mut state = this.lock();
        if state.closed {
            // Closed since the caller looked: Drop removes it.
            state.total -= 1;
            drop(state);
            this.common
                .counters
                .destroyed
                .fetch_add(1, Ordering::Relaxed);
            drop(container);
            return;
        }
        while let Some(waiter) = state.waiters.pop_front() {
            match waiter.send(Ok(container)) {
                Ok(()) => return,
                Err(back) => match back {
                    Ok(back) => container = back,
                    Err(_) => return,
                },
            }
        }
        state.idle.push_back(container);
    }

    /// A holder gave the container back: reset it, then put it back, or
    /// destroy and replace it.
    async fn take_back(this: Arc<Local>, container: TestContainer, tainted: bool) {
        if tainted {
            tracing::debug!(pool = %this.common.name, container = container.name(), "dockfix: tainted pool member destroyed");
            return Local::destroy(&this, container);
        }
        if this.lock().closed {
            return Local::retire(&this, container).await;
        }
        let reset = match &this.common.reset {
            Reset::None | Reset::Exec(_) | Reset::With(_) => {
                this.common.run_reset(&container).await
            }
            Reset::Recreate => {
                this.common.counters.resets.fetch_add(1, Ordering::Relaxed);
                Local::destroy_for_recreate(&this, container);
                return;
            }
        };
        if this.common.resets() {
            this.common.counters.resets.fetch_add(1, Ordering::Relaxed);
        }
        let healthy = match reset {
            Ok(()) => matches!(container.state().await, Ok(s) if s.running),
            Err(e) => {
                tracing::debug!(pool = %this.common.name, container = container.name(), error = %e, "dockfix: reset failed; replacing the member");
                false
            }
        };
        if healthy && this.lock().closed {
            Local::retire(&this, container).await;
        } else if healthy {
            Local::put_back(&this, container);
        } else {
            Local::destroy(&this, container);
        }
    }

    /// Removes a member of a closed pool now, then frees its slot, so that
    /// `close()` can wait for it.
    async fn retire(this: &Arc<Local>, container: TestContainer) {
        if let Err(e) = container.remove().await {
            tracing::debug!(pool = %this.common.name, error = %e, "dockfix: removing a member of a closed pool failed");
        }
        this.common
            .counters
            .destroyed
            .fetch_add(1, Ordering::Relaxed);
        this.lock().total -= 1;
    }

    /// `Reset::Recreate`: the old container goes, a new one takes its slot.
    fn destroy_for_recreate(this: &Arc<Local>, container: TestContainer) {
        drop(container);
        this.common
            .counters
            .destroyed
            .fetch_add(1, Ordering::Relaxed);
        Local::start_member(this.clone());
    }
}
