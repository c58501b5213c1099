//! The only road to Docker.
//!
//! Everything dockfix asks the daemon goes through a typed function of
//! this layer, one per Docker operation, and nothing above it calls the
//! client. Each function carries its operation's [`policy`]: whether a
//! failure that can heal is retried, which answers count as success, how
//! the call is bounded in time; and every call, streams included, passes
//! the process's circuit breaker. The functions must be awaited on the
//! engine runtime ([`run`]), which owns the one client.
//!
//! A new Docker call goes here: a policy row in [`policy`] (README's table
//! is rendered from it), and a function in the file of its resource.

mod breaker;
mod call;
mod classify;
mod client;
pub(crate) mod containers;
pub(crate) mod exec;
pub(crate) mod images;
pub(crate) mod networks;
pub(crate) mod policy;
mod runtime;
mod stream;
pub(crate) mod system;

use std::pin::Pin;

use bollard::container::LogOutput;
use bytes::Bytes;
use futures::stream::BoxStream;

pub use breaker::{BreakerState, CallStats, call_stats};
pub(crate) use client::is_podman;
pub(crate) use runtime::{block_on, deadline_in, on_engine_thread, run, spawn};

/// The daemon's answers that the layers above read.
pub(crate) use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum,
    ContainerStatsResponse, ContainerSummary, EndpointSettings, HealthConfig, HealthStatusEnum,
    HostConfig, NetworkingConfig, PortBinding,
};

/// One frame of a container's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    /// Standard output, or a TTY's combined output.
    Stdout(Bytes),
    /// Standard error.
    Stderr(Bytes),
    /// Standard input echoed back.
    Stdin(Bytes),
}

impl From<LogOutput> for Frame {
    fn from(frame: LogOutput) -> Self {
        match frame {
            LogOutput::StdOut { message } | LogOutput::Console { message } => {
                Frame::Stdout(message)
            }
            LogOutput::StdErr { message } => Frame::Stderr(message),
            LogOutput::StdIn { message } => Frame::Stdin(message),
        }
    }
}

/// An attached process: its output, and a writer to its stdin.
pub(crate) struct Attached {
    pub(crate) output: BoxStream<'static, crate::error::Result<Frame>>,
    pub(crate) input: Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
}

impl std::fmt::Debug for Attached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Attached(..)")
    }
}

/// The cost of the layer around a call that succeeds at once: `calls`
/// samples through the layer, and as many of the bare call, each timed on
/// the engine. For the benchmark only.
#[cfg(feature = "bench-internals")]
pub async fn layer_cost(
    calls: usize,
) -> crate::error::Result<(Vec<std::time::Duration>, Vec<std::time::Duration>)> {
    run(async move {
        let ready = || async { Ok::<(), bollard::errors::Error>(()) };
        let (mut layered, mut bare) = (Vec::with_capacity(calls), Vec::with_capacity(calls));
        for _ in 0..calls {
            let t = std::time::Instant::now();
            call::request(&policy::VERSION, "bench", ready).await?;
            layered.push(t.elapsed());
            let t = std::time::Instant::now();
            let _ = ready().await;
            bare.push(t.elapsed());
        }
        Ok((layered, bare))
    })
    .await
}
