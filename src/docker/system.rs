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

/// Whether the daemon is Podman's Docker-compatible service: decided once,
/// as the client connects, from its version answer. Where Podman differs,
/// the layers above ask this.
pub(crate) async fn is_podman() -> bool {
    // Connecting records the engine.
    let _ = client().await;
    PODMAN.get().copied().unwrap_or(false)
}

static PODMAN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// Records the engine from the daemon's version answer.
pub(crate) fn note_engine(version: &SystemVersion) {
    let podman = version
        .components
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .chain(version.platform.as_ref().map(|p| p.name.as_str()))
        .any(|n| n.contains("Podman"));
    let _ = PODMAN.set(podman);
}
