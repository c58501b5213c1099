//! The one shared Docker client, connected on first use to the daemon
//! that [`discover`](crate::discover) found: the one the user named, or
//! the first well-known socket that answers.

use bollard::{API_DEFAULT_VERSION, ClientVersion, Docker};

use super::call::request;
use super::policy;
use crate::config;
use crate::discover::{Endpoint, Found};
use crate::error::{Error, Result};

static CLIENT: tokio::sync::OnceCell<Docker> = tokio::sync::OnceCell::const_new();

/// The shared client. Must be awaited on the engine runtime, because the
/// client's connection tasks are spawned on the runtime that first uses it.
pub(crate) async fn client() -> Result<Docker> {
    CLIENT.get_or_try_init(connect_found).await.cloned()
}

const HINT: &str = "start the Docker daemon, or point DOCKER_HOST at it (unix:///path/to/docker.sock, tcp://host:port, ssh://user@host), or select a context with DOCKER_CONTEXT";

const TLS_HINT: &str = "check that the CA in DOCKER_CERT_PATH (or the context) signed the daemon's certificate, that the certificate is current, and that the daemon speaks TLS on this port; dockfix never falls back to plain text";

const PERMISSION_HINT: &str = "this user may not open the socket: add it to the socket's group (usually `docker`) and log in again, or use rootless Docker or Podman";

/// bollard's own read timeout, in seconds; every call is bounded sooner
/// by the Docker layer's per-call timeout.
const TRANSPORT_TIMEOUT: u64 = 120;

fn unavailable(endpoint: &str, reason: String, hint: &str) -> Error {
    Error::DockerUnavailable {
        endpoint: endpoint.to_owned(),
        reason,
        hint: hint.to_owned(),
    }
}

async fn connect_found() -> Result<Docker> {
    match config::found() {
        Found::Named(endpoint) => {
            let docker = connect(&endpoint).await?;
            config::connected(&endpoint);
            Ok(docker)
        }
        Found::Broken { what, reason } => Err(unavailable(
            &what,
            reason,
            "fix the setting named, or unset it to use the default socket",
        )),
        Found::WellKnown(places) => {
            let mut tried = Vec::new();
            for endpoint in &places {
                match connect(endpoint).await {
                    Ok(docker) => {
                        config::connected(endpoint);
                        return Ok(docker);
                    }
                    Err(e) => tried.push(format!(
                        "{} ({}): {}",
                        endpoint.host,
                        endpoint.why,
                        reason_of(&e)
                    )),
                }
            }
            let hint = if tried.iter().any(|t| t.contains("permission denied")) {
                PERMISSION_HINT
            } else {
                HINT
            };
            Err(unavailable(
                "any well-known socket",
                format!(
                    "no DOCKER_HOST, DOCKER_CONTEXT or current context is set, and none of the well-known sockets answered:\n  {}",
                    tried.join("\n  ")
                ),
                hint,
            ))
        }
    }
}

/// The reason a connection failed, without the endpoint and hint that
/// the list of places tried already gives.
fn reason_of(e: &Error) -> String {
    match e {
        Error::DockerUnavailable { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

/// A client of `endpoint`, with the API version negotiated.
async fn connect(endpoint: &Endpoint) -> Result<Docker> {
    let host = endpoint.host.as_str();
    if let Some(path) = host.strip_prefix("unix://") {
        if !std::path::Path::new(path).exists() {
            return Err(unavailable(
                host,
                format!("socket {path} does not exist"),
                HINT,
            ));
        }
    }
    let made = |version: &ClientVersion| {
        transport(endpoint, version).map_err(|reason| unavailable(host, reason, HINT))
    };
    let docker = made(API_DEFAULT_VERSION)?;
    // One version call both negotiates the API version (the lower of the
    // daemon's and ours, as bollard's negotiate_version does) and tells
    // the engine, so that no later operation pays for either.
    let answered = request(&policy::VERSION, host, || docker.version()).await;
    let connected = answered.and_then(|version| {
        note_engine(&version);
        let theirs = version.api_version.as_deref().and_then(parse_api_version);
        match theirs {
            Some(theirs) if theirs < *API_DEFAULT_VERSION => made(&theirs),
            _ => Ok(docker),
        }
    });
    // Never connected yet: whatever failed, the daemon is unavailable.
    connected.map_err(|e| match e {
        Error::Docker { message, .. } if message.starts_with("TLS failed") => {
            unavailable(host, message, TLS_HINT)
        }
        Error::Docker { message, .. } if message.contains("permission denied") => {
            unavailable(host, message, PERMISSION_HINT)
        }
        Error::Docker { message, .. } => unavailable(host, message, HINT),
        Error::CircuitOpen {
            failures,
            next_probe_in,
            ..
        } => unavailable(
            host,
            format!("{failures} attempts in a row failed; the next try is in {next_probe_in:.1?}"),
            HINT,
        ),
        other => other,
    })
}

/// `1.41` as bollard's version type.
fn parse_api_version(text: &str) -> Option<ClientVersion> {
    let (major, minor) = text.split_once('.')?;
    Some(ClientVersion {
        major_version: major.parse().ok()?,
        minor_version: minor.parse().ok()?,
    })
}

/// The bollard transport for `endpoint` speaking API `version`: a unix
/// socket, plain HTTP, TLS (always verified against the CA; never plain
/// text instead), or SSH.
fn transport(endpoint: &Endpoint, version: &ClientVersion) -> std::result::Result<Docker, String> {
    let host = endpoint.host.as_str();
    let tcp =
        host.starts_with("tcp://") || host.starts_with("http://") || host.starts_with("https://");
    let made = match &endpoint.tls {
        Some(tls) if tcp => tls_transport(host, tls, version)?,
        Some(_) => return Err(format!("{host}: TLS applies to tcp:// daemons only")),
        None if host.starts_with("https://") => {
            return Err(
                "https:// needs TLS material: set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH"
                    .to_owned(),
            );
        }
        None if tcp => Docker::connect_with_http(host, TRANSPORT_TIMEOUT, version),
        None if host.starts_with("ssh://") => ssh_transport(host, version)?,
        None if host.starts_with("unix://") => {
            Docker::connect_with_unix(host, TRANSPORT_TIMEOUT, version)
        }
        None => Docker::connect_with_host(host),
    };
    made.map_err(|e| format!("{e} (dockfix speaks unix://, tcp:// with or without TLS, and ssh:// with its `ssh` feature)"))
}

#[cfg(feature = "tls")]
fn tls_transport(
    host: &str,
    tls: &crate::discover::Tls,
    version: &ClientVersion,
) -> std::result::Result<std::result::Result<Docker, bollard::errors::Error>, String> {
    let host = host.replacen("https://", "tcp://", 1);
    Ok(Docker::connect_with_ssl(
        &host,
        &tls.key,
        &tls.cert,
        &tls.ca,
        TRANSPORT_TIMEOUT,
        version,
    ))
}

#[cfg(not(feature = "tls"))]
fn tls_transport(
    host: &str,
    _tls: &crate::discover::Tls,
    _version: &ClientVersion,
) -> std::result::Result<std::result::Result<Docker, bollard::errors::Error>, String> {
    Err(format!(
        "{host} is to be reached over TLS, and dockfix was built without its `tls` feature"
    ))
}

#[cfg(feature = "ssh")]
fn ssh_transport(
    host: &str,
    version: &ClientVersion,
) -> std::result::Result<std::result::Result<Docker, bollard::errors::Error>, String> {
    Ok(Docker::connect_with_ssh(
        host,
        TRANSPORT_TIMEOUT,
        version,
        None,
    ))
}

#[cfg(not(feature = "ssh"))]
fn ssh_transport(
    host: &str,
    _version: &ClientVersion,
) -> std::result::Result<std::result::Result<Docker, bollard::errors::Error>, String> {
    Err(format!(
        "{host} needs dockfix's `ssh` feature, which this build does not have"
    ))
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
fn note_engine(version: &bollard::models::SystemVersion) {
    let podman = version
        .components
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .chain(version.platform.as_ref().map(|p| p.name.as_str()))
        .any(|n| n.contains("Podman"));
    let _ = PODMAN.set(podman);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_read_as_bollard_compares_them() {
        let v = parse_api_version("1.41").unwrap();
        assert_eq!((v.major_version, v.minor_version), (1, 41));
        assert!(v < *API_DEFAULT_VERSION);
        assert!(parse_api_version("4.3.1x").is_none());
        assert!(parse_api_version("").is_none());
    }
}
