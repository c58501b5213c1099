//! When and how an image is pulled: the policy and its progress events.

use std::sync::Arc;

/// When `start()` pulls the image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PullPolicy {
    /// Pull only when the daemon does not have the image (the default).
    #[default]
    IfMissing,
    /// Pull before every start, so a moving tag is always current.
    Always,
    /// Never pull: a missing image is an error.
    Never,
}

impl std::fmt::Display for PullPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PullPolicy::IfMissing => "IfMissing",
            PullPolicy::Always => "Always",
            PullPolicy::Never => "Never",
        })
    }
}

/// One progress event of a pull.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PullProgress {
    /// The image being pulled.
    pub image: String,
    /// The layer the event is about, if any.
    pub layer: Option<String>,
    /// Docker's status text (`Downloading`, `Pull complete`, …).
    pub status: String,
    /// Bytes done for this layer, while downloading or extracting.
    pub current: Option<u64>,
    /// The layer's size in bytes, when known.
    pub total: Option<u64>,
}

/// A callback for pull progress.
#[derive(Clone)]
pub(crate) struct ProgressFn(pub(crate) Arc<dyn Fn(&PullProgress) + Send + Sync>);

impl std::fmt::Debug for ProgressFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressFn(..)")
    }
}
