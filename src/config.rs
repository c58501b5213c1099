//! Settings: [`Config`] (retries, timeouts, the breaker, the daemon) and
//! every `DOCKFIX_*` variable, each parsed once, by one set of parsers.
//!
//! A new setting goes here: a field of [`Config`] when a program may want
//! to set it, or of [`Env`] when only the environment sets it.

use std::sync::{Arc, LazyLock, Mutex, OnceLock, RwLock};
use std::time::Duration;

use crate::discover::{self, Found};
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
/// per-call timeout bounds each request to the daemon, and the wait for
/// the first frame of a stream.
///
/// # Classifiers
///
/// Transient, retried: connection refused, reset or closed; no answer
/// within the per-call timeout; a 5xx answer. Everything else, 4xx answers
/// above all, is returned at once. Which calls are retried at all is
/// decided per call: see the table in the crate's README.
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

impl Config {
    /// The defaults, overridden by the `DOCKFIX_RETRY_*`,
    /// `DOCKFIX_CALL_TIMEOUT_MS` and `DOCKFIX_BREAKER_*` variables that are
    /// set and parse.
    pub fn from_env() -> Self {
        let d = Config::default();
        Config {
            initial_delay: millis("DOCKFIX_RETRY_INITIAL_MS").unwrap_or(d.initial_delay),
            factor: number::<f32>("DOCKFIX_RETRY_FACTOR")
                .filter(|f| f.is_finite() && *f >= 1.0)
                .unwrap_or(d.factor),
            max_delay: millis("DOCKFIX_RETRY_MAX_DELAY_MS").unwrap_or(d.max_delay),
            max_attempts: number::<usize>("DOCKFIX_RETRY_MAX_ATTEMPTS")
                .filter(|n| *n >= 1)
                .unwrap_or(d.max_attempts),
            give_up_after: millis("DOCKFIX_RETRY_GIVE_UP_MS").unwrap_or(d.give_up_after),
            call_timeout: millis("DOCKFIX_CALL_TIMEOUT_MS")
                .filter(|t| !t.is_zero())
                .unwrap_or(d.call_timeout),
            breaker_threshold: number::<u32>("DOCKFIX_BREAKER_THRESHOLD")
                .filter(|n| *n >= 1)
                .unwrap_or(d.breaker_threshold),
            breaker_cooldown: millis("DOCKFIX_BREAKER_COOLDOWN_MS").unwrap_or(d.breaker_cooldown),
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
            let mut named = CONFIG_HOST.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(current) = CONNECTED.get().map(|c| &c.host).filter(|c| *c != host) {
                return Err(Error::invalid(
                    "docker_host",
                    host.as_str(),
                    format!(
                        "dockfix is already connected to {current}; set the daemon before the first Docker call"
                    ),
                ));
            }
            *named = Some(host.clone());
        }
        *CONFIG.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(self);
        Ok(())
    }
}

static CONFIG: LazyLock<RwLock<Arc<Config>>> =
    LazyLock::new(|| RwLock::new(Arc::new(Config::from_env())));

/// The settings in force.
pub(crate) fn current() -> Arc<Config> {
    CONFIG.read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// The daemon [`Config::docker_host`] named, once installed.
static CONFIG_HOST: Mutex<Option<String>> = Mutex::new(None);

/// What discovery finds from the environment and the CLI's files, read
/// once per process.
static FOUND: LazyLock<Found> = LazyLock::new(|| discover::find(None, &var));

/// The endpoint the Docker layer connected to; from then on it is fixed.
static CONNECTED: OnceLock<discover::Endpoint> = OnceLock::new();

/// Where the daemon is: [`Config::docker_host`] once installed, else what
/// [`discover`] found. Reading it starts nothing.
pub(crate) fn found() -> Found {
    let named = CONFIG_HOST
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    match named {
        Some(host) => discover::find(Some(&host), &var),
        None => FOUND.clone(),
    }
}

/// The daemon endpoint in force: the one connected to, else the one that
/// will be tried first.
pub(crate) fn endpoint() -> String {
    match CONNECTED.get() {
        Some(endpoint) => endpoint.host.clone(),
        None => found().shown(),
    }
}

/// Records the endpoint the Docker layer connected to.
pub(crate) fn connected(endpoint: &discover::Endpoint) {
    let _ = CONNECTED.set(endpoint.clone());
}

/// The endpoint the Docker layer connected to, once it has.
pub(crate) fn connection() -> Option<discover::Endpoint> {
    CONNECTED.get().cloned()
}

/// The host of a remote daemon reached over TCP or SSH, or `None` when the
/// daemon is local (a unix socket, or a loopback address).
pub(crate) fn daemon_host() -> Option<String> {
    remote_host_of(&endpoint())
}

fn remote_host_of(endpoint: &str) -> Option<String> {
    let rest = ["tcp://", "http://", "https://", "ssh://"]
        .iter()
        .find_map(|p| endpoint.strip_prefix(p))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
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

/// The settings only the environment gives, read once per process.
#[derive(Debug, Clone)]
pub(crate) struct Env {
    /// `DOCKFIX_KEEP`: dropped guards leave their containers.
    pub(crate) keep: bool,
    /// `DOCKFIX_DROP=wait`: Drop blocks until the removal is done.
    pub(crate) drop_waits: bool,
    /// `DOCKFIX_REMOVE_ON_KILL`: every spec is tied to the process.
    pub(crate) remove_on_kill: bool,
    /// `DOCKFIX_ANCHOR_IMAGE`: the image of the `remove_on_kill` anchor.
    pub(crate) anchor_image: Option<String>,
    /// `DOCKFIX_SWEEP_ON_START`: the first start reaps this host's orphans.
    pub(crate) sweep_on_start: bool,
    /// `DOCKFIX_REMOVE_DEADLINE`: how long a Drop-time removal keeps trying.
    pub(crate) remove_deadline: Duration,
    /// `DOCKFIX_EXIT_TIMEOUT`: how long the exit hook waits for removals.
    pub(crate) exit_timeout: Duration,
    /// `DOCKFIX_LOGS_ON_PANIC`: how many log lines a guard dropped by a
    /// panicking test prints (0: none).
    pub(crate) logs_on_panic: usize,
    /// `DOCKFIX_ARTIFACTS`: where a failed test's containers are written.
    pub(crate) artifacts: Option<std::path::PathBuf>,
}

static ENV: LazyLock<Env> = LazyLock::new(|| Env {
    keep: flag("DOCKFIX_KEEP").unwrap_or(false),
    drop_waits: var("DOCKFIX_DROP").is_some_and(|v| v == "wait"),
    remove_on_kill: flag("DOCKFIX_REMOVE_ON_KILL").unwrap_or(false),
    anchor_image: var("DOCKFIX_ANCHOR_IMAGE"),
    sweep_on_start: flag("DOCKFIX_SWEEP_ON_START").unwrap_or(true),
    remove_deadline: seconds("DOCKFIX_REMOVE_DEADLINE").unwrap_or(Duration::from_secs(60)),
    exit_timeout: seconds("DOCKFIX_EXIT_TIMEOUT").unwrap_or(Duration::from_secs(30)),
    logs_on_panic: number("DOCKFIX_LOGS_ON_PANIC").unwrap_or(50),
    artifacts: var("DOCKFIX_ARTIFACTS").map(std::path::PathBuf::from),
});

/// The environment's settings.
pub(crate) fn env() -> &'static Env {
    &ENV
}

/// A variable that is set and not empty.
fn var(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.trim().is_empty())
}

/// A switch: `0`, `false`, `no` and `off` are off, anything else set is on.
fn flag(key: &str) -> Option<bool> {
    let v = var(key)?;
    Some(!matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "0" | "false" | "no" | "off"
    ))
}

fn number<T: std::str::FromStr>(key: &str) -> Option<T> {
    var(key)?.trim().parse().ok()
}

/// Whole milliseconds.
fn millis(key: &str) -> Option<Duration> {
    number::<u64>(key).map(Duration::from_millis)
}

/// Seconds, fractions allowed; a negative, infinite or huge value is
/// ignored.
fn seconds(key: &str) -> Option<Duration> {
    number::<f64>(key)
        .filter(|s| s.is_finite() && *s >= 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_tcp_daemon_has_a_host_and_a_local_one_none() {
        let host = remote_host_of;
        assert_eq!(host("tcp://10.1.2.3:2376"), Some("10.1.2.3".to_owned()));
        assert_eq!(host("tcp://[fe80::1]:2375"), Some("fe80::1".to_owned()));
        assert_eq!(
            host("ssh://ci@build.example:22"),
            Some("build.example".to_owned())
        );
        assert_eq!(host("ssh://ci@127.0.0.1"), None);
        assert_eq!(host("tcp://127.0.0.1:2375"), None);
        assert_eq!(host("tcp://localhost:2375"), None);
        assert_eq!(host("unix:///var/run/docker.sock"), None);
    }
}
