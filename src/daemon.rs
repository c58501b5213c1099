//! What dockfix knows of the daemon it talks to: where it is and why that
//! one, and what it is (engine, version, rootless, cgroups).

use crate::config;
use crate::docker::{self, system};
use crate::error::Result;

/// The container engine behind the Docker API.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Engine {
    /// Docker Engine (Moby).
    Docker,
    /// Podman's Docker-compatible service.
    Podman,
    /// Something else that speaks the API, by the name it gives.
    Other(String),
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Engine::Docker => f.write_str("Docker"),
            Engine::Podman => f.write_str("Podman"),
            Engine::Other(name) => f.write_str(name),
        }
    }
}

/// The daemon dockfix is connected to, as [`daemon`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DaemonInfo {
    /// The endpoint: `unix:///var/run/docker.sock`, `tcp://host:2376`, ….
    pub endpoint: String,
    /// Why this endpoint: `DOCKER_HOST`, ``context `colima` (DOCKER_CONTEXT)``,
    /// `the Docker socket, a well-known socket`, ….
    pub chosen_because: String,
    /// Whether the connection is TLS (always verified).
    pub tls: bool,
    /// The engine.
    pub engine: Engine,
    /// The engine's version.
    pub version: String,
    /// The API version the daemon speaks, and dockfix with it.
    pub api_version: String,
    /// Whether the daemon runs rootless.
    pub rootless: bool,
    /// The cgroup version of the daemon's host (`1` or `2`), when it says.
    pub cgroup_version: Option<String>,
}

/// Connects (if dockfix has not yet) and reports which daemon it talks
/// to, why that one, and what it is.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> dockfix::Result<()> {
/// let d = dockfix::daemon().await?;
/// println!("{} {} at {} ({})", d.engine, d.version, d.endpoint, d.chosen_because);
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// [`Error::DockerUnavailable`](crate::Error::DockerUnavailable) naming
/// each place tried when no daemon answers.
pub async fn daemon() -> Result<DaemonInfo> {
    docker::run(async {
        let version = system::version().await?;
        let info = system::info().await?;
        let connection = config::connection();
        let names: Vec<String> = version
            .components
            .iter()
            .flatten()
            .map(|c| c.name.clone())
            .chain(version.platform.as_ref().map(|p| p.name.clone()))
            .collect();
        // Podman is told as the client connects; the layers above it ask
        // the same question.
        let engine = if docker::is_podman().await {
            Engine::Podman
        } else if names
            .iter()
            .any(|n| n.contains("Docker") || n.contains("Engine"))
        {
            Engine::Docker
        } else {
            Engine::Other(
                names
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "unknown".to_owned()),
            )
        };
        let rootless = info
            .security_options
            .iter()
            .flatten()
            .any(|o| o.contains("name=rootless"));
        Ok(DaemonInfo {
            endpoint: config::endpoint(),
            chosen_because: connection
                .as_ref()
                .map(|c| c.why.clone())
                .unwrap_or_default(),
            tls: connection.is_some_and(|c| c.tls.is_some()),
            engine,
            version: version.version.unwrap_or_default(),
            api_version: version.api_version.unwrap_or_default(),
            rootless,
            cgroup_version: info.cgroup_version.map(|v| v.to_string()),
        })
    })
    .await
}
