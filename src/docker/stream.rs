//! Docker streams (logs, stats, archives, pulls, builds, imports) behind
//! the breaker, bounded in time as their [`Policy`] says.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bollard::Docker;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};

use super::breaker::{BREAKER, Permit, STATS};
use super::call::{daemon_in_trouble, from_client};
use super::client::client;
use super::policy::{Bound, Policy};
use crate::config::{self, Config};
use crate::error::{Error, Result};

/// A Docker stream behind the breaker and bounded as `policy` says: it is
/// opened only while the breaker lets calls through, its first frame must
/// come within the per-call timeout, and with an idle bound every later
/// one too. Streams are never retried: a stream cannot be replayed.
///
/// The first frame (or a clean end) tells the breaker the daemon answered;
/// a transport failure or a silent daemon counts against it.
pub(crate) fn stream<T, S, F>(
    policy: &'static Policy,
    target: String,
    open: F,
) -> BoxStream<'static, Result<T>>
where
    T: Send + 'static,
    S: Stream<Item = std::result::Result<T, bollard::errors::Error>> + Send + 'static,
    F: FnOnce(&Docker) -> S + Send + 'static,
{
    let opening = async move {
        let docker = client().await?;
        let cfg = config::current();
        STATS.calls.fetch_add(1, Ordering::Relaxed);
        let permit = BREAKER
            .admit(Instant::now(), &cfg)
            .map_err(|open| open.into_error())?;
        let frames: Pin<Box<S>> = Box::pin(open(&docker));
        Ok(Open {
            frames,
            permit: Some(permit),
            cfg,
        })
    };
    let target: std::sync::Arc<str> = target.into();
    let state: Step<S> = Step::Opening(Box::pin(opening));
    futures::stream::unfold(state, move |state| {
        let target = target.clone();
        async move {
            let mut open = match state {
                Step::Done => return None,
                Step::Opening(opening) => match opening.await {
                    Ok(open) => open,
                    Err(e) => return Some((Err(e), Step::Done)),
                },
                Step::Open(open) => open,
            };
            let first = open.permit.is_some();
            let bound = match policy.bound {
                Bound::Stream { .. } if first => Some(open.cfg.call_timeout),
                Bound::Stream { idle: true } => Some(open.cfg.call_timeout),
                _ => None,
            };
            let next = match bound {
                Some(limit) => match tokio::time::timeout(limit, open.frames.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        if let Some(permit) = open.permit.take() {
                            STATS.timeouts.fetch_add(1, Ordering::Relaxed);
                            permit.record(false, &open.cfg);
                        }
                        let what = if first {
                            "no answer"
                        } else {
                            "the stream went silent"
                        };
                        let message = format!("{what} within the per-call timeout of {limit:?}");
                        return Some((
                            Err(Error::docker(policy.op, &*target, message)),
                            Step::Done,
                        ));
                    }
                },
                None => open.frames.next().await,
            };
            match next {
                Some(Ok(frame)) => {
                    if let Some(permit) = open.permit.take() {
                        permit.record(true, &open.cfg);
                    }
                    Some((Ok(frame), Step::Open(open)))
                }
                Some(Err(e)) => {
                    if let Some(permit) = open.permit.take() {
                        permit.record(!daemon_in_trouble(&e), &open.cfg);
                    }
                    Some((Err(from_client(policy.op, &target, e)), Step::Done))
                }
                None => {
                    if let Some(permit) = open.permit.take() {
                        permit.record(true, &open.cfg);
                    }
                    None
                }
            }
        }
    })
    .boxed()
}

type Opening<S> = Pin<Box<dyn Future<Output = Result<Open<S>>> + Send>>;

enum Step<S> {
    Opening(Opening<S>),
    Open(Open<S>),
    Done,
}

struct Open<S> {
    frames: Pin<Box<S>>,
    /// Held until the first frame says whether the daemon answered.
    permit: Option<Permit<'static>>,
    cfg: std::sync::Arc<Config>,
}
