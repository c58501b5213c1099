//! The one shared Docker client, connected on first use to the endpoint
//! in [`config`](crate::config).

use bollard::Docker;

use super::call::request;
use super::policy;
use crate::config;
use crate::error::{Error, Result};

static CLIENT: tokio::sync::OnceCell<Docker> = tokio::sync::OnceCell::const_new();

/// The shared client. Must be awaited on the engine runtime, because the
/// client's connection tasks are spawned on the runtime that first uses it.
pub(crate) async fn client() -> Result<Docker> {
    CLIENT
        .get_or_try_init(|| connect(config::connect_to()))
        .await
        .cloned()
}

const HINT: &str = "start the Docker daemon, or point DOCKER_HOST at it (unix:///path/to/docker.sock or tcp://host:port)";

async fn connect(endpoint: String) -> Result<Docker> {
    let endpoint = endpoint.as_str();
    let unavailable = |reason: String, hint: &str| Error::DockerUnavailable {
        endpoint: endpoint.to_owned(),
        reason,
        hint: hint.to_owned(),
    };
    if let Some(path) = endpoint.strip_prefix("unix://") {
        if !std::path::Path::new(path).exists() {
            return Err(unavailable(format!("socket {path} does not exist"), HINT));
        }
    }
    let docker = Docker::connect_with_host(endpoint).map_err(|e| {
        unavailable(
            e.to_string(),
            "DOCKER_HOST must be unix://, tcp:// or http://",
        )
    })?;
    let negotiated = request(&policy::VERSION, endpoint, || {
        docker.clone().negotiate_version()
    })
    .await;
    // Never connected yet: whatever failed, the daemon is unavailable.
    negotiated.map_err(|e| match e {
        Error::Docker { message, .. } => unavailable(message, HINT),
        Error::CircuitOpen {
            failures,
            next_probe_in,
            ..
        } => unavailable(
            format!("{failures} attempts in a row failed; the next try is in {next_probe_in:.1?}"),
            HINT,
        ),
        other => other,
    })
}
