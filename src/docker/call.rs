//! How one Docker call is made: behind the breaker, bounded in time, and
//! retried while its failure can heal and its [`Policy`] allows.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};

use super::breaker::{BREAKER, STATS};
use super::classify::{self, Heals, UNKNOWN_RETRIES};
use super::policy::Policy;
use crate::config::{self, Config};
use crate::error::{Error, Result};

/// Whether a failure can heal: connection trouble can; an answer by its
/// status and, for a 500, its message ([`classify`]).
pub(crate) fn heals(err: &bollard::errors::Error) -> Heals {
    use bollard::errors::Error as B;
    // A socket this user may not open, and TLS that fails, stay so.
    if tls_failure(err).is_some() || io_kind(err) == Some(std::io::ErrorKind::PermissionDenied) {
        return Heals::Never;
    }
    match err {
        B::DockerResponseServerError {
            status_code,
            message,
        } => classify::answer(*status_code, message),
        B::HyperResponseError { .. }
        | B::HyperLegacyError { .. }
        | B::HttpClientError { .. }
        | B::IOError { .. }
        | B::RequestTimeoutError => Heals::Yes,
        // Podman 4 reports a container that has just exited as `stopped`
        // for about 100 ms before `exited`; bollard's state enum has no
        // such value. It passes.
        B::JsonDataError { .. } | B::JsonSerdeError { .. }
            if err.to_string().contains("`stopped`") =>
        {
            Heals::Yes
        }
        _ => Heals::Never,
    }
}

/// Whether a failure may heal at all.
pub(crate) fn is_transient(err: &bollard::errors::Error) -> bool {
    heals(err) != Heals::Never
}

/// Whether a failure says the daemon itself is in trouble, which is what
/// the breaker counts. A plain 500 can heal, but Docker uses it for trouble
/// with one object (a filesystem that will not go away), which says
/// nothing about every other call.
pub(crate) fn daemon_in_trouble(err: &bollard::errors::Error) -> bool {
    match err {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => {
            matches!(status_code, 502..=504)
        }
        other => is_transient(other),
    }
}

/// Turns the client's error into ours: the daemon's status and words, or
/// what happened to the request, with the client's error as `source()`.
pub(crate) fn from_client(op: &'static str, target: &str, err: bollard::errors::Error) -> Error {
    use bollard::errors::Error as B;
    let tls = tls_failure(&err);
    let (status, message) = match &err {
        B::DockerResponseServerError {
            status_code,
            message,
        } => (
            Some(classify::as_docker_status(*status_code, message)),
            message.clone(),
        ),
        _ if tls.is_some() => (None, format!("TLS failed: {}", tls.unwrap_or_default())),
        B::IOError { .. }
        | B::HyperResponseError { .. }
        | B::HyperLegacyError { .. }
        | B::HttpClientError { .. } => match io_kind(&err) {
            Some(kind) => (None, format!("the connection failed ({kind})")),
            None => (None, "the HTTP exchange with the daemon failed".to_owned()),
        },
        B::RequestTimeoutError => (None, "the request timed out".to_owned()),
        // An error inside a stream the daemon answered 200 to (Podman's
        // failed pull): its own words.
        B::DockerStreamError { error } => (None, error.clone()),
        B::JsonDataError { .. } | B::JsonSerdeError { .. } => {
            (None, "the daemon's answer could not be read".to_owned())
        }
        _ => (None, "the Docker client refused the request".to_owned()),
    };
    Error::Docker {
        operation: op,
        target: target.to_owned(),
        status,
        message,
        source: Some(Box::new(err)),
    }
}

/// What rustls said, when `err` is a TLS failure: a certificate the CA
/// did not sign or that expired, an alert from the daemon, a daemon that
/// does not speak TLS. None of them heals by trying again. rustls's errors
/// reach us wrapped in I/O and hyper errors, so they are recognised by
/// the words rustls uses.
fn tls_failure(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    const RUSTLS: [&str; 6] = [
        "invalid peer certificate",
        "received fatal alert",
        "received corrupt message",
        "peer is incompatible",
        "peer misbehaved",
        "peer sent no certificates",
    ];
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if RUSTLS.iter().any(|w| text.contains(w)) {
            return Some(text);
        }
        next = e.source();
    }
    None
}

/// The kind of the I/O error at the root of `err`, if one is there.
fn io_kind(err: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        next = e.source();
    }
    None
}

/// The backoff schedule of `cfg`: the delay before each retry, in order.
pub(crate) fn schedule(cfg: &Config) -> impl Iterator<Item = Duration> + use<> {
    let cap = cfg.max_delay;
    ExponentialBuilder::default()
        .with_min_delay(cfg.initial_delay)
        .with_factor(cfg.factor)
        .with_max_delay(cap)
        .with_max_times(cfg.max_attempts.saturating_sub(1))
        .with_jitter()
        .build()
        .map(move |d| d.min(cap))
}

/// Runs one request: behind the breaker, each attempt bounded by the
/// per-call timeout plus `extra` (a stop's grace period), retried while
/// the failure is transient and `policy` allows.
pub(crate) async fn request_within<T, F, Fut>(
    policy: &Policy,
    target: &str,
    extra: Duration,
    mut attempt: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, bollard::errors::Error>>,
{
    let cfg = config::current();
    let limit = cfg.call_timeout.saturating_add(extra);
    let started = Instant::now();
    let mut delays = schedule(&cfg);
    let mut tries = 0u32;
    let mut unknown = 0u32;
    let mut last: Option<Failure> = None;
    STATS.calls.fetch_add(1, Ordering::Relaxed);
    loop {
        tries += 1;
        let permit = match BREAKER.admit(Instant::now(), &cfg) {
            Ok(permit) => permit,
            // This call's own failures opened the breaker: report them.
            Err(_) if last.is_some() => {
                let failure = last.take().expect("checked above");
                return Err(failure.into_error(policy.op, target, tries - 1, started.elapsed()));
            }
            Err(open) => return Err(open.into_error()),
        };
        // A probe is capped at the per-call timeout: while it runs every
        // other call is refused.
        let limit = if permit.probe {
            limit.min(cfg.call_timeout)
        } else {
            limit
        };
        let (failure, may_retry) = match tokio::time::timeout(limit, attempt()).await {
            Ok(Ok(value)) => {
                permit.record(true, &cfg);
                return Ok(value);
            }
            Ok(Err(e)) => match heals(&e) {
                Heals::Never => {
                    // The daemon answered: it is alive, whatever it said.
                    permit.record(true, &cfg);
                    return Err(from_client(policy.op, target, e));
                }
                Heals::Unknown => {
                    unknown += 1;
                    (Failure::Client(e), unknown <= UNKNOWN_RETRIES)
                }
                Heals::Yes => (Failure::Client(e), true),
            },
            Err(_) => {
                STATS.timeouts.fetch_add(1, Ordering::Relaxed);
                (Failure::TimedOut(limit), true)
            }
        };
        STATS.transient_failures.fetch_add(1, Ordering::Relaxed);
        permit.record(!failure.trips_breaker(), &cfg);
        let next = if policy.retried && may_retry {
            delays
                .next()
                .filter(|d| started.elapsed() + *d <= cfg.give_up_after)
        } else {
            None
        };
        let Some(delay) = next else {
            return Err(failure.into_error(policy.op, target, tries, started.elapsed()));
        };
        STATS.retries.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(op = policy.op, target, attempt = tries, ?delay, error = %failure, "dockfix: retrying a transient Docker failure");
        last = Some(failure);
        tokio::time::sleep(delay).await;
    }
}

/// [`request_within`] the per-call timeout.
pub(crate) async fn request<T, F, Fut>(policy: &Policy, target: &str, attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, bollard::errors::Error>>,
{
    request_within(policy, target, Duration::ZERO, attempt).await
}

enum Failure {
    Client(bollard::errors::Error),
    TimedOut(Duration),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Client(e) => e.fmt(f),
            Failure::TimedOut(limit) => write!(f, "no answer within {limit:?}"),
        }
    }
}

impl Failure {
    /// Whether this failure counts against the breaker.
    fn trips_breaker(&self) -> bool {
        match self {
            Failure::TimedOut(_) => true,
            Failure::Client(e) => daemon_in_trouble(e),
        }
    }

    fn into_error(self, op: &'static str, target: &str, tries: u32, elapsed: Duration) -> Error {
        let error = match self {
            Failure::Client(e) => from_client(op, target, e),
            Failure::TimedOut(limit) => Error::docker(
                op,
                target,
                format!("no answer within the per-call timeout of {limit:?}"),
            ),
        };
        if tries > 1 {
            error.with_note(&format!(
                " (gave up after {tries} attempts in {elapsed:.1?})"
            ))
        } else {
            error
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_grows_with_jitter_inside_its_bounds() {
        let cfg = Config::default();
        for _ in 0..200 {
            let delays: Vec<Duration> = schedule(&cfg).collect();
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
            schedule(&Config::default().retry_max_attempts(1)).count(),
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
        assert_eq!(heals(&status(500)), Heals::Unknown);
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
    fn a_daemon_answer_keeps_its_status_words_and_source() {
        let err = from_client(
            "create",
            "x",
            bollard::errors::Error::DockerResponseServerError {
                status_code: 409,
                message: "conflict".into(),
            },
        );
        assert_eq!(err.status(), Some(409));
        assert_eq!(
            err.to_string(),
            "docker create on x failed with status 409: conflict"
        );
        let source = std::error::Error::source(&err).expect("the client's error is kept");
        assert!(source.is::<bollard::errors::Error>());
    }
}
