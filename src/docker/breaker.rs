//! The circuit breaker shared by every call of the process, and the
//! counters behind [`call_stats`].
//!
//! A dead daemon would otherwise cost every test its whole retry budget:
//! after `breaker_threshold` consecutive failures that say the daemon is in
//! trouble, calls fail at once with [`Error::CircuitOpen`] until, after the
//! cool-down, one probe call goes through and succeeds.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::runtime::later;
use crate::config::{self, Config};
use crate::error::Error;

/// The breaker's state, as [`call_stats`](crate::call_stats) reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls fail at once with [`Error::CircuitOpen`].
    Open {
        /// How long it has been open.
        open_for: Duration,
        /// When the next probe may go through.
        next_probe_in: Duration,
    },
    /// One probe call is in flight; other calls fail at once.
    HalfOpen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Closed {
        failures: u32,
    },
    Open {
        since: Instant,
        until: Instant,
        failures: u32,
    },
    HalfOpen {
        since: Instant,
        failures: u32,
    },
}

/// The circuit breaker: a small state machine over `Instant`s, so that it
/// can be tested without a clock.
#[derive(Debug)]
pub(crate) struct Breaker {
    phase: Mutex<Phase>,
    opened: AtomicU64,
}

/// Why a call was refused by the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Open {
    since: Instant,
    until: Instant,
    now: Instant,
    failures: u32,
}

impl Open {
    pub(crate) fn into_error(self) -> Error {
        STATS.circuit_rejections.fetch_add(1, Ordering::Relaxed);
        Error::CircuitOpen {
            endpoint: config::endpoint(),
            failures: self.failures,
            open_for: self.now.saturating_duration_since(self.since),
            next_probe_in: self.until.saturating_duration_since(self.now),
        }
    }

    /// How long until a probe may go through.
    #[cfg(test)]
    fn next_probe_in(&self) -> Duration {
        self.until.saturating_duration_since(self.now)
    }
}

/// A call the breaker let through; its outcome must be recorded. Dropped
/// unrecorded (the call was cancelled), it counts as neither.
#[must_use]
pub(crate) struct Permit<'a> {
    breaker: &'a Breaker,
    /// True for the one call let through while the breaker is half-open.
    pub(crate) probe: bool,
    recorded: bool,
}

impl Breaker {
    pub(crate) const fn new() -> Self {
        Breaker {
            phase: Mutex::new(Phase::Closed { failures: 0 }),
            opened: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lets a call through, as a probe when the cool-down has passed, or
    /// refuses it.
    pub(crate) fn admit(
        &self,
        now: Instant,
        _cfg: &Config,
    ) -> std::result::Result<Permit<'_>, Open> {
        let mut phase = self.lock();
        let probe = match *phase {
            Phase::Closed { .. } => false,
            Phase::Open {
                since,
                until,
                failures,
            } if now >= until => {
                *phase = Phase::HalfOpen { since, failures };
                tracing::debug!("dockfix: circuit half-open, letting one probe through");
                true
            }
            Phase::Open {
                since,
                until,
                failures,
            } => {
                return Err(Open {
                    since,
                    until,
                    now,
                    failures,
                });
            }
            Phase::HalfOpen { since, failures } => {
                return Err(Open {
                    since,
                    until: now,
                    now,
                    failures,
                });
            }
        };
        Ok(Permit {
            breaker: self,
            probe,
            recorded: false,
        })
    }

    fn record(&self, probe: bool, success: bool, now: Instant, cfg: &Config) {
        let mut phase = self.lock();
        *phase = match (*phase, success) {
            (_, true) => {
                if !matches!(*phase, Phase::Closed { .. }) {
                    tracing::info!("dockfix: circuit closed, the daemon answers again");
                }
                Phase::Closed { failures: 0 }
            }
            (Phase::Closed { failures }, false) if failures + 1 >= cfg.breaker_threshold => {
                self.opened.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(failures = failures + 1, cooldown = ?cfg.breaker_cooldown, "dockfix: circuit open, Docker calls fail fast");
                Phase::Open {
                    since: now,
                    until: later(now, cfg.breaker_cooldown),
                    failures: failures + 1,
                }
            }
            (Phase::Closed { failures }, false) => Phase::Closed {
                failures: failures + 1,
            },
            (Phase::HalfOpen { since, failures }, false) if probe => {
                tracing::debug!("dockfix: probe failed, circuit open again");
                Phase::Open {
                    since,
                    until: later(now, cfg.breaker_cooldown),
                    failures: failures + 1,
                }
            }
            // A late failure of a call admitted before the breaker opened.
            (
                Phase::Open {
                    since,
                    until,
                    failures,
                },
                false,
            ) => Phase::Open {
                since,
                until,
                failures: failures + 1,
            },
            (other, false) => other,
        };
    }

    /// A cancelled probe: let the next caller probe at once.
    fn abandon(&self, now: Instant) {
        let mut phase = self.lock();
        if let Phase::HalfOpen { since, failures } = *phase {
            *phase = Phase::Open {
                since,
                until: now,
                failures,
            };
        }
    }

    pub(crate) fn state(&self, now: Instant) -> BreakerState {
        match *self.lock() {
            Phase::Closed { .. } => BreakerState::Closed,
            Phase::Open { since, until, .. } => BreakerState::Open {
                open_for: now.saturating_duration_since(since),
                next_probe_in: until.saturating_duration_since(now),
            },
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

impl Permit<'_> {
    /// Records the call's outcome: `success` when the daemon answered.
    pub(crate) fn record(mut self, success: bool, cfg: &Config) {
        self.recorded = true;
        self.breaker
            .record(self.probe, success, Instant::now(), cfg);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.recorded && self.probe {
            self.breaker.abandon(Instant::now());
        }
    }
}

pub(crate) static BREAKER: Breaker = Breaker::new();

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) calls: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) transient_failures: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) circuit_rejections: AtomicU64,
}

pub(crate) static STATS: Counters = Counters {
    calls: AtomicU64::new(0),
    retries: AtomicU64::new(0),
    transient_failures: AtomicU64::new(0),
    timeouts: AtomicU64::new(0),
    circuit_rejections: AtomicU64::new(0),
};

/// Counters of this process's Docker calls, to see why a test was slow.
///
/// # Examples
///
/// ```
/// let before = dockfix::call_stats();
/// // ... the slow test ...
/// let after = dockfix::call_stats();
/// println!(
///     "{} Docker calls, {} retries, breaker {:?}",
///     after.calls - before.calls,
///     after.retries - before.retries,
///     after.breaker
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallStats {
    /// Calls made (each counted once, however many attempts it took).
    pub calls: u64,
    /// Retries: attempts after the first.
    pub retries: u64,
    /// Attempts that failed in a way that can heal.
    pub transient_failures: u64,
    /// Attempts cut off by the per-call timeout (also transient failures).
    pub timeouts: u64,
    /// Calls refused at once because the breaker was open.
    pub circuit_rejections: u64,
    /// How often the breaker has opened.
    pub breaker_opened: u64,
    /// The breaker now.
    pub breaker: BreakerState,
}

/// This process's Docker call counters, and the breaker's state.
pub fn call_stats() -> CallStats {
    CallStats {
        calls: STATS.calls.load(Ordering::Relaxed),
        retries: STATS.retries.load(Ordering::Relaxed),
        transient_failures: STATS.transient_failures.load(Ordering::Relaxed),
        timeouts: STATS.timeouts.load(Ordering::Relaxed),
        circuit_rejections: STATS.circuit_rejections.load(Ordering::Relaxed),
        breaker_opened: BREAKER.opened.load(Ordering::Relaxed),
        breaker: BREAKER.state(Instant::now()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    fn cfg() -> Config {
        Config::default()
            .breaker_threshold(3)
            .breaker_cooldown(Duration::from_secs(5))
    }

    #[test]
    fn breaker_opens_after_threshold_and_fails_fast() {
        let b = Breaker::new();
        let cfg = cfg();
        let t0 = Instant::now();
        for _ in 0..2 {
            b.admit(t0, &cfg).unwrap().record(false, &cfg);
            assert_eq!(b.state(t0), BreakerState::Closed);
        }
        // A success resets the count.
        b.admit(t0, &cfg).unwrap().record(true, &cfg);
        for _ in 0..3 {
            b.admit(t0, &cfg).unwrap().record(false, &cfg);
        }
        assert!(matches!(b.state(Instant::now()), BreakerState::Open { .. }));
        let refused = b
            .admit(Instant::now(), &cfg)
            .err()
            .expect("open breaker let a call through");
        assert!(refused.next_probe_in() > Duration::from_secs(4));
    }

    #[test]
    fn half_open_lets_exactly_one_probe_through() {
        let b = Breaker::new();
        let cfg = cfg().breaker_cooldown(Duration::ZERO);
        let t0 = Instant::now();
        for _ in 0..3 {
            b.admit(t0, &cfg).unwrap().record(false, &cfg);
        }
        let later = Instant::now() + Duration::from_millis(1);
        // Many callers at once: one probe, the rest refused.
        let results: Vec<_> = (0..8).map(|_| b.admit(later, &cfg)).collect();
        let probes: Vec<_> = results.into_iter().filter_map(|r| r.ok()).collect();
        assert_eq!(probes.len(), 1);
        assert_eq!(b.state(later), BreakerState::HalfOpen);
        // The probe fails: open again.
        probes.into_iter().next().unwrap().record(false, &cfg);
        assert!(matches!(b.state(later), BreakerState::Open { .. }));
        // The next probe succeeds: closed.
        let probe = b
            .admit(Instant::now() + Duration::from_millis(2), &cfg)
            .unwrap();
        probe.record(true, &cfg);
        assert_eq!(b.state(Instant::now()), BreakerState::Closed);
        assert!(b.admit(Instant::now(), &cfg).is_ok());
    }

    #[test]
    fn a_cancelled_probe_hands_the_probe_to_the_next_caller() {
        let b = Breaker::new();
        let cfg = cfg().breaker_cooldown(Duration::ZERO);
        let t0 = Instant::now();
        for _ in 0..3 {
            b.admit(t0, &cfg).unwrap().record(false, &cfg);
        }
        let probe = b.admit(Instant::now(), &cfg).unwrap();
        drop(probe);
        assert!(b.admit(Instant::now(), &cfg).is_ok());
    }

    #[test]
    fn half_open_concurrent_callers_from_threads_get_one_probe() {
        let b = std::sync::Arc::new(Breaker::new());
        let cfg = cfg().breaker_cooldown(Duration::ZERO);
        let t0 = Instant::now();
        for _ in 0..3 {
            b.admit(t0, &cfg).unwrap().record(false, &cfg);
        }
        let admitted = std::sync::Arc::new(AtomicU64::new(0));
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (b, admitted, barrier, cfg) =
                    (b.clone(), admitted.clone(), barrier.clone(), cfg.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    if let Ok(permit) = b.admit(Instant::now(), &cfg) {
                        admitted.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        permit.record(true, &cfg);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(admitted.load(Ordering::SeqCst), 1);
        assert_eq!(b.state(Instant::now()), BreakerState::Closed);
    }
}
