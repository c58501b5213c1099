//! Retry of transient Docker failures behind a circuit breaker, and the
//! settings for both.
//!
//! Every Docker call goes through [`call`]: a per-call timeout, then
//! jittered exponential backoff while the failure can heal, all behind one
//! circuit breaker per process (the process talks to one daemon).
//!
//! # What is retried, and why
//!
//! Transient failures are retried: the connection was refused, reset or
//! closed, the call got no answer within the per-call timeout, or the
//! daemon answered 5xx. A 4xx answer (400 bad spec, 404 no such image or
//! container, 409 conflict) is returned at once: asking again cannot
//! change it. A socket path that does not exist when the engine first
//! connects is a configuration error and is not retried either.
//!
//! Calls are retried only where doing them twice is harmless:
//!
//! | call | retried | why it is safe |
//! | --- | --- | --- |
//! | version (connect), inspect, list, logs tail | yes | read-only |
//! | create container | yes | same name on every attempt; a 409 "name in use" on a retry is resolved by looking the container up by name and session label, so a lost response still yields exactly one container |
//! | start, stop | yes | 304 (already started / stopped) counts as success |
//! | remove container, network, volume | yes | 404 (already gone) and 409 (removal in progress) count as success |
//! | create exec | yes | a duplicate exec instance that is never started does nothing |
//! | start exec | no | it would run the command twice |
//! | streams: follow logs, attach, pull | no | a stream cannot be replayed; pulling is the registry's failure, not the daemon's |

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::error::{Error, Result};

/// Process-wide settings for retries, the per-call timeout, the circuit
/// breaker and the daemon endpoint.
///
/// # Defaults
///
/// | setting | default | environment |
/// | --- | --- | --- |
/// | first retry delay | 50 ms | `DOCKFIX_RETRY_INITIAL_MS` |
/// | factor | 2 | `DOCKFIX_RETRY_FACTOR` |
/// | longest delay | 2 s | `DOCKFIX_RETRY_MAX_DELAY_MS` |
/// | attempts | 10 | `DOCKFIX_RETRY_MAX_ATTEMPTS` (1 turns retries off) |
/// | give up after | 30 s | `DOCKFIX_RETRY_GIVE_UP_MS` |
/// | per-call timeout | 30 s | `DOCKFIX_CALL_TIMEOUT_MS` |
/// | breaker opens after | 5 consecutive transient failures | `DOCKFIX_BREAKER_THRESHOLD` |
/// | breaker cool-down | 5 s | `DOCKFIX_BREAKER_COOLDOWN_MS` |
/// | daemon | `unix:///var/run/docker.sock` | `DOCKER_HOST` |
///
/// Each retry waits the current delay plus a random jitter of up to the
/// same again, capped at the longest delay; the delay then grows by the
/// factor. Exec and readiness keep their own, user-given deadlines; the
/// per-call timeout bounds each request to the daemon.
///
/// # Classifiers
///
/// Transient, retried: connection refused, reset or closed; no answer
/// within the per-call timeout; a 5xx answer. Everything else, 4xx answers
/// above all, is returned at once.
///
/// The breaker counts the transient failures that say the daemon itself is
/// in trouble: connection failures, timeouts, 502, 503 and 504. A plain
/// 500 is retried but not counted: Docker answers 500 for trouble with one
/// object (a filesystem that will not go away), which says nothing about
/// every other call.
///
/// # Examples
///
/// ```no_run
/// # fn demo() -> dockfix::Result<()> {
/// use std::time::Duration;
///
/// dockfix::Config::from_env()
///     .retry_give_up_after(Duration::from_secs(10))
///     .breaker_cooldown(Duration::from_secs(2))
///     .install()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use = "a config does nothing until `install()` is called"]
pub struct Config {
    pub(crate) initial_delay: Duration,
    pub(crate) factor: f32,
    pub(crate) max_delay: Duration,
    pub(crate) max_attempts: usize,
    pub(crate) give_up_after: Duration,
    pub(crate) call_timeout: Duration,
    pub(crate) breaker_threshold: u32,
    pub(crate) breaker_cooldown: Duration,
    pub(crate) docker_host: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            initial_delay: Duration::from_millis(50),
            factor: 2.0,
            max_delay: Duration::from_secs(2),
            max_attempts: 10,
            give_up_after: Duration::from_secs(30),
            call_timeout: Duration::from_secs(30),
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(5),
            docker_host: None,
        }
    }
}

fn env_ms(key: &str) -> Option<Duration> {
    std::env::var(key)
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_millis)
}

fn env_num<T: std::str::FromStr>(key: &str) -> Option<T> {
    std::env::var(key).ok()?.trim().parse().ok()
}

impl Config {
    /// The defaults, overridden by the `DOCKFIX_RETRY_*`,
    /// `DOCKFIX_CALL_TIMEOUT_MS` and `DOCKFIX_BREAKER_*` variables that are
    /// set and parse.
    pub fn from_env() -> Self {
        let d = Config::default();
        Config {
            initial_delay: env_ms("DOCKFIX_RETRY_INITIAL_MS").unwrap_or(d.initial_delay),
            factor: env_num::<f32>("DOCKFIX_RETRY_FACTOR")
                .filter(|f| f.is_finite() && *f >= 1.0)
                .unwrap_or(d.factor),
            max_delay: env_ms("DOCKFIX_RETRY_MAX_DELAY_MS").unwrap_or(d.max_delay),
            max_attempts: env_num::<usize>("DOCKFIX_RETRY_MAX_ATTEMPTS")
                .filter(|n| *n >= 1)
                .unwrap_or(d.max_attempts),
            give_up_after: env_ms("DOCKFIX_RETRY_GIVE_UP_MS").unwrap_or(d.give_up_after),
            call_timeout: env_ms("DOCKFIX_CALL_TIMEOUT_MS")
                .filter(|t| !t.is_zero())
                .unwrap_or(d.call_timeout),
            breaker_threshold: env_num::<u32>("DOCKFIX_BREAKER_THRESHOLD")
                .filter(|n| *n >= 1)
                .unwrap_or(d.breaker_threshold),
            breaker_cooldown: env_ms("DOCKFIX_BREAKER_COOLDOWN_MS").unwrap_or(d.breaker_cooldown),
            docker_host: None,
        }
    }

    /// The delay before the first retry.
    pub fn retry_initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// How much each delay grows (at least 1).
    pub fn retry_factor(mut self, factor: f32) -> Self {
        self.factor = if factor.is_finite() {
            factor.max(1.0)
        } else {
            2.0
        };
        self
    }

    /// The longest delay between two attempts, jitter included.
    pub fn retry_max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// How many attempts a call gets in all; 1 turns retries off.
    pub fn retry_max_attempts(mut self, attempts: usize) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// No retry starts once this much time has passed since the first
    /// attempt.
    pub fn retry_give_up_after(mut self, limit: Duration) -> Self {
        self.give_up_after = limit;
        self
    }

    /// How long one request may wait for the daemon's answer.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How many consecutive transient failures open the breaker.
    pub fn breaker_threshold(mut self, failures: u32) -> Self {
        self.breaker_threshold = failures.max(1);
        self
    }

    /// How long the breaker stays open before one probe call may go through.
    pub fn breaker_cooldown(mut self, cooldown: Duration) -> Self {
        self.breaker_cooldown = cooldown;
        self
    }

    /// The daemon to connect to (`unix:///path` or `tcp://host:port`),
    /// instead of `DOCKER_HOST`.
    pub fn docker_host(mut self, endpoint: impl Into<String>) -> Self {
        self.docker_host = Some(endpoint.into());
        self
    }

    /// Makes these the settings of this process. Retry, timeout and breaker
    /// settings apply from the next call on.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSpec`] if this config names a daemon and dockfix has
    /// already connected to another one.
    pub fn install(self) -> Result<()> {
        if let Some(host) = &self.docker_host {
            crate::engine::set_endpoint(host)?;
        }
        *CONFIG.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(self);
        Ok(())
    }

    /// The backoff schedule: the delay before each retry, in order.
    pub(crate) fn schedule(&self) -> impl Iterator<Item = Duration> + use<> {
        let cap = self.max_delay;
        ExponentialBuilder::default()
            .with_min_delay(self.initial_delay)
            .with_factor(self.factor)
            .with_max_delay(cap)
            .with_max_times(self.max_attempts.saturating_sub(1))
            .with_jitter()
            .build()
            .map(move |d| d.min(cap))
    }
}

static CONFIG: LazyLock<RwLock<Arc<Config>>> =
    LazyLock::new(|| RwLock::new(Arc::new(Config::from_env())));

pub(crate) fn config() -> Arc<Config> {
    CONFIG.read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Whether a call may be attempted again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Retried on transient failures.
    Yes,
    /// One attempt only (still behind the breaker and the timeout).
    No,
}

/// Whether a failure can heal.
pub(crate) fn is_transient(err: &bollard::errors::Error) -> bool {
    use bollard::errors::Error as B;
    match err {
        B::DockerResponseServerError { status_code, .. } => *status_code >= 500,
        B::HyperResponseError { .. }
        | B::HyperLegacyError { .. }
        | B::HttpClientError { .. }
        | B::IOError { .. }
        | B::RequestTimeoutError => true,
        _ => false,
    }
}

/// Runs one Docker call: behind the breaker, bounded by the per-call
/// timeout (or `timeout`), retried while the failure is transient and the
/// policy allows. `op` and `target` name the call in errors.
pub(crate) async fn call<T, F, Fut>(
    op: &'static str,
    target: &str,
    retry: Retry,
    timeout: Option<Duration>,
    mut attempt: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, bollard::errors::Error>>,
{
    let cfg = config();
    let limit = timeout.unwrap_or(cfg.call_timeout);
    let started = Instant::now();
    let mut delays = cfg.schedule();
    let mut attempts = 0u32;
    let mut last: Option<Failure> = None;
    STATS.calls.fetch_add(1, Ordering::Relaxed);
    loop {
        attempts += 1;
        let permit = match BREAKER.admit(Instant::now(), &cfg) {
            Ok(permit) => permit,
            // This call's own failures opened the breaker: report them.
            Err(_) if last.is_some() => {
                let failure = last.take().expect("checked above");
                return Err(failure.into_error(op, target, attempts - 1, started.elapsed()));
            }
            Err(open) => {
                STATS.circuit_rejections.fetch_add(1, Ordering::Relaxed);
                return Err(open.into_error());
            }
        };
        // A probe is capped at the per-call timeout: while it runs every
        // other call is refused.
        let limit = if permit.probe {
            limit.min(cfg.call_timeout)
        } else {
            limit
        };
        let failure = match tokio::time::timeout(limit, attempt()).await {
            Ok(Ok(value)) => {
                permit.record(true, &cfg);
                return Ok(value);
            }
            Ok(Err(e)) if !is_transient(&e) => {
                // The daemon answered: it is alive, whatever it said.
                permit.record(true, &cfg);
                return Err(Error::docker(op, target, e));
            }
            Ok(Err(e)) => Failure::Docker(e),
            Err(_) => {
                STATS.timeouts.fetch_add(1, Ordering::Relaxed);
                Failure::TimedOut(limit)
            }
        };
        STATS.transient_failures.fetch_add(1, Ordering::Relaxed);
        permit.record(!failure.trips_breaker(), &cfg);
        let next = match retry {
            Retry::Yes => delays
                .next()
                .filter(|d| started.elapsed() + *d <= cfg.give_up_after),
            Retry::No => None,
        };
        let Some(delay) = next else {
            return Err(failure.into_error(op, target, attempts, started.elapsed()));
        };
        STATS.retries.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(op, target, attempt = attempts, ?delay, error = %failure, "dockfix: retrying a transient Docker failure");
        last = Some(failure);
        tokio::time::sleep(delay).await;
    }
}

enum Failure {
    Docker(bollard::errors::Error),
    TimedOut(Duration),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Docker(e) => e.fmt(f),
            Failure::TimedOut(limit) => write!(f, "no answer within {limit:?}"),
        }
    }
}

impl Failure {
    /// Whether this failure says the daemon itself is in trouble. A plain
    /// 500 is retried, but Docker uses it for trouble with one object (a
    /// filesystem that will not go away), so it does not open the breaker
    /// for every other call.
    fn trips_breaker(&self) -> bool {
        match self {
            Failure::TimedOut(_) => true,
            Failure::Docker(bollard::errors::Error::DockerResponseServerError {
                status_code,
                ..
            }) => {
                matches!(status_code, 502..=504)
            }
            Failure::Docker(_) => true,
        }
    }

    fn into_error(self, op: &'static str, target: &str, attempts: u32, elapsed: Duration) -> Error {
        let after = if attempts > 1 {
            format!(" (gave up after {attempts} attempts in {:.1?})", elapsed)
        } else {
            String::new()
        };
        match self {
            Failure::Docker(e) => match Error::docker(op, target, e) {
                Error::Docker {
                    operation,
                    target,
                    status,
                    message,
                } => Error::Docker {
                    operation,
                    target,
                    status,
                    message: format!("{message}{after}"),
                },
                other => other,
            },
            Failure::TimedOut(limit) => Error::Docker {
                operation: op,
                target: target.to_owned(),
                status: None,
                message: format!("no answer within the per-call timeout of {limit:?}{after}"),
            },
        }
    }
}

/// `now + d`, or far in the future when that overflows.
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .unwrap_or_else(|| crate::engine::deadline_in(d))
}

/// The breaker's state, as [`stats`](crate::stats) reports it.
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
    fn into_error(self) -> Error {
        Error::CircuitOpen {
            endpoint: crate::engine::endpoint(),
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
    probe: bool,
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
    fn record(mut self, success: bool, cfg: &Config) {
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

/// Refuses at once while the breaker is open: for streams, which are not
/// retried but should not hammer a dead daemon either.
pub(crate) fn gate() -> Result<()> {
    let cfg = config();
    match BREAKER.admit(Instant::now(), &cfg) {
        // A stream's outcome is not known here; a probe admitted for it
        // is handed back so a real call can probe.
        Ok(permit) => {
            drop(permit);
            Ok(())
        }
        Err(open) => {
            STATS.circuit_rejections.fetch_add(1, Ordering::Relaxed);
            Err(open.into_error())
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    calls: AtomicU64,
    retries: AtomicU64,
    transient_failures: AtomicU64,
    timeouts: AtomicU64,
    circuit_rejections: AtomicU64,
}

static STATS: Counters = Counters {
    calls: AtomicU64::new(0),
    retries: AtomicU64::new(0),
    transient_failures: AtomicU64::new(0),
    timeouts: AtomicU64::new(0),
    circuit_rejections: AtomicU64::new(0),
};

/// Counters of this process's Docker calls, to see why a test was slow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
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

/// This process's retry and breaker counters, and the breaker's state.
pub fn stats() -> Stats {
    Stats {
        calls: STATS.calls.load(Ordering::Relaxed),
        retries: STATS.retries.load(Ordering::Relaxed),
        transient_failures: STATS.transient_failures.load(Ordering::Relaxed),
        timeouts: STATS.timeouts.load(Ordering::Relaxed),
        circuit_rejections: STATS.circuit_rejections.load(Ordering::Relaxed),
        breaker_opened: BREAKER.opened.load(Ordering::Relaxed),
        breaker: BREAKER.state(Instant::now()),
    }
}

/// The cost of this layer around a call that succeeds at once: `calls`
/// samples of the layer, and as many of the bare call, each timed on the
/// engine. For the benchmark; not part of the API.
#[doc(hidden)]
pub async fn __layer_cost(calls: usize) -> Result<(Vec<Duration>, Vec<Duration>)> {
    crate::engine::run(async move {
        let ready = || async { Ok::<(), bollard::errors::Error>(()) };
        let (mut layered, mut bare) = (Vec::with_capacity(calls), Vec::with_capacity(calls));
        for _ in 0..calls {
            let t = Instant::now();
            call("bench", "bench", Retry::Yes, None, ready).await?;
            layered.push(t.elapsed());
            let t = Instant::now();
            let _ = ready().await;
            bare.push(t.elapsed());
        }
        Ok((layered, bare))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config::default()
            .breaker_threshold(3)
            .breaker_cooldown(Duration::from_secs(5))
    }

    #[test]
    fn schedule_grows_with_jitter_inside_its_bounds() {
        let cfg = Config::default();
        for _ in 0..200 {
            let delays: Vec<Duration> = cfg.schedule().collect();
            assert_eq!(delays.len(), cfg.max_attempts - 1);
            let mut base = cfg.initial_delay;
            for d in &delays {
                assert!(*d >= base.min(cfg.max_delay), "{d:?} below {base:?}");
                assert!(
                    *d <= (base * 2).min(cfg.max_delay),
                    "{d:?} above twice {base:?} or the cap"
                );
                base = base.mul_f32(cfg.factor).min(cfg.max_delay);
            }
        }
        assert_eq!(
            Config::default().retry_max_attempts(1).schedule().count(),
            0
        );
    }

    #[test]
    fn transient_means_connection_trouble_or_5xx() {
        use bollard::errors::Error as B;
        let status = |s| B::DockerResponseServerError {
            status_code: s,
            message: String::new(),
        };
        assert!(is_transient(&status(500)));
        assert!(is_transient(&status(503)));
        assert!(!is_transient(&status(404)));
        assert!(!is_transient(&status(409)));
        assert!(!is_transient(&status(400)));
        assert!(is_transient(&B::RequestTimeoutError));
        assert!(is_transient(&B::IOError {
            err: std::io::Error::from(std::io::ErrorKind::ConnectionRefused)
        }));
        assert!(!is_transient(&B::APIVersionParseError {}));
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
