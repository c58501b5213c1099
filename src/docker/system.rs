//! What the daemon says of itself.

use bollard::models::{SystemInfo, SystemVersion};

use super::call::request;
use super::client::client;
use super::policy;
use crate::error::Result;

/// The daemon's version answer: engine name, version, API version.
pub(crate) async fn version() -> Result<SystemVersion> {
    let d = client().await?;
    request(&policy::VERSION, "daemon", || d.version()).await
}

/// The daemon's info answer: cgroup version, security options (rootless).
pub(crate) async fn info() -> Result<SystemInfo> {
    let d = client().await?;
    request(&policy::INFO, "daemon", || d.info()).await
}
