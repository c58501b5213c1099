//! Where the daemon is, found in the Docker CLI's order without connecting:
//! [`Config::docker_host`](crate::Config::docker_host), `DOCKER_HOST`,
//! `DOCKER_CONTEXT`, the `currentContext` of the CLI's `config.json`, and
//! then the sockets Docker, Docker Desktop, Colima, OrbStack and Podman
//! are known to use. The Docker layer connects to what this finds.

use std::path::{Path, PathBuf};

/// The TLS material of a daemon: its CA, and the client's certificate and
/// key. The daemon is always verified against the CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tls {
    pub(crate) ca: PathBuf,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

impl Tls {
    /// `ca.pem`, `cert.pem` and `key.pem` in `dir`; an error names the
    /// first that is missing.
    fn in_dir(dir: &Path) -> Result<Tls, String> {
        let tls = Tls {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        for file in [&tls.ca, &tls.cert, &tls.key] {
            if !file.is_file() {
                return Err(format!("{} does not exist", file.display()));
            }
        }
        Ok(tls)
    }
}

/// A daemon to connect to, and why it was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// `unix:///path`, `tcp://host:port` or `ssh://user@host`.
    pub(crate) host: String,
    /// Set for a `tcp://` daemon reached over TLS.
    pub(crate) tls: Option<Tls>,
    /// Where it came from, for messages and `dockfix doctor`.
    pub(crate) why: String,
}

/// What discovery found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    /// A daemon the user named: connect there, or fail; never elsewhere.
    Named(Endpoint),
    /// Nothing was named: the well-known sockets, to try in order.
    WellKnown(Vec<Endpoint>),
    /// A daemon was named in a way that cannot work (a context that does
    /// not exist, TLS material that is missing): `what` was named, and
    /// `reason` says what is wrong.
    Broken { what: String, reason: String },
}

impl Found {
    /// The endpoint to show before connecting: the named one, or the
    /// first well-known socket.
    pub(crate) fn shown(&self) -> String {
        match self {
            Found::Named(e) => e.host.clone(),
            Found::WellKnown(list) => list
                .first()
                .map_or_else(|| DEFAULT_SOCKET.to_owned(), |e| e.host.clone()),
            Found::Broken { what, .. } => what.clone(),
        }
    }
}

/// The rootful Docker socket, the first of the well-known places.
pub(crate) const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";

/// Finds the daemon. `config_host` is what `Config::docker_host`
/// installed; `var` reads the environment (a variable that is set and not
/// empty).
pub(crate) fn find(config_host: Option<&str>, var: &dyn Fn(&str) -> Option<String>) -> Found {
    if let Some(host) = config_host {
        return named(host, "Config::docker_host", var);
    }
    if let Some(host) = var("DOCKER_HOST") {
        return named(&host, "DOCKER_HOST", var);
    }
    let config_dir = config_dir(var);
    if let Some(name) = var("DOCKER_CONTEXT").filter(|n| n != "default") {
        return context(&name, "DOCKER_CONTEXT", config_dir.as_deref());
    }
    if let Some(dir) = &config_dir {
        match current_context(dir) {
            Ok(Some(name)) => {
                let why = format!("currentContext of {}", dir.join("config.json").display());
                return context(&name, &why, Some(dir));
            }
            Ok(None) => {}
            Err(reason) => {
                return Found::Broken {
                    what: dir.join("config.json").display().to_string(),
                    reason,
                };
            }
        }
    }
    Found::WellKnown(well_known(var))
}

/// A host the user named, with the environment's TLS settings for a
/// `tcp://` host.
fn named(host: &str, why: &str, var: &dyn Fn(&str) -> Option<String>) -> Found {
    let is_tcp = host.starts_with("tcp://") || host.starts_with("https://");
    let tls = if is_tcp { env_tls(var) } else { Ok(None) };
    match tls {
        Ok(tls) => Found::Named(Endpoint {
            host: host.to_owned(),
            tls,
            why: why.to_owned(),
        }),
        Err(reason) => Found::Broken {
            what: format!("{host} ({why})"),
            reason,
        },
    }
}

/// TLS as the Docker CLI reads it from the environment: `DOCKER_TLS_VERIFY`
/// (any value) turns it on, with `ca.pem`, `cert.pem` and `key.pem` from
/// `DOCKER_CERT_PATH` (default: the CLI's config directory).
fn env_tls(var: &dyn Fn(&str) -> Option<String>) -> Result<Option<Tls>, String> {
    let verify = var("DOCKER_TLS_VERIFY").is_some();
    if !verify {
        if var("DOCKER_TLS").is_some() {
            return Err(
                "DOCKER_TLS asks for TLS without verifying the daemon, which dockfix does not do: set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH to the directory of ca.pem, cert.pem and key.pem".to_owned(),
            );
        }
        return Ok(None);
    }
    let dir = var("DOCKER_CERT_PATH")
        .map(PathBuf::from)
        .or_else(|| config_dir(var))
        .ok_or("DOCKER_TLS_VERIFY is set, but neither DOCKER_CERT_PATH nor HOME says where the certificates are")?;
    Tls::in_dir(&dir)
        .map(Some)
        .map_err(|e| format!("DOCKER_TLS_VERIFY is set, but {e} (DOCKER_CERT_PATH)"))
}

/// `$DOCKER_CONFIG`, or `~/.docker`.
fn config_dir(var: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    var("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|h| Path::new(&h).join(".docker")))
}

/// The `currentContext` of `config.json` in `dir`, unless it is absent or
/// `default`. A file that cannot be read is no context; one that is not
/// JSON is an error, as it is for the CLI.
fn current_context(dir: &Path) -> Result<Option<String>, String> {
    let path = dir.join("config.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
    Ok(json
        .get("currentContext")
        .and_then(|c| c.as_str())
        .filter(|c| !c.is_empty() && *c != "default")
        .map(str::to_owned))
}

/// The context `name` of the CLI's context store in `dir`: its
/// `contexts/meta/<id>/meta.json` names it, and `contexts/tls/<id>/docker/`
/// holds its TLS material, if any.
fn context(name: &str, why: &str, dir: Option<&Path>) -> Found {
    let what = format!("context `{name}` ({why})");
    let broken = |reason: String| Found::Broken {
        what: what.clone(),
        reason,
    };
    let Some(dir) = dir else {
        return broken("neither DOCKER_CONFIG nor HOME says where the context store is".into());
    };
    let meta_root = dir.join("contexts").join("meta");
    let Ok(entries) = std::fs::read_dir(&meta_root) else {
        return broken(format!(
            "there is no context store at {}",
            meta_root.display()
        ));
    };
    for entry in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path().join("meta.json")) else {
            continue;
        };
        let Ok(meta) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        if meta.get("Name").and_then(|n| n.as_str()) != Some(name) {
            continue;
        }
        let docker = &meta["Endpoints"]["docker"];
        let Some(host) = docker.get("Host").and_then(|h| h.as_str()) else {
            return broken("it has no Docker endpoint".into());
        };
        let tls_dir = dir
            .join("contexts")
            .join("tls")
            .join(entry.file_name())
            .join("docker");
        let tls = if tls_dir.is_dir() {
            match Tls::in_dir(&tls_dir) {
                Ok(tls) => Some(tls),
                Err(e) => return broken(format!("its TLS material is incomplete: {e}")),
            }
        } else {
            None
        };
        if docker.get("SkipTLSVerify").and_then(|s| s.as_bool()) == Some(true) {
            return broken(
                "it skips verifying the daemon's certificate, which dockfix does not do".into(),
            );
        }
        return Found::Named(Endpoint {
            host: host.to_owned(),
            tls,
            why: what,
        });
    }
    broken(format!(
        "no context of that name in {}",
        meta_root.display()
    ))
}

/// The sockets engines are known to listen on, in the order they are
/// tried.
fn well_known(var: &dyn Fn(&str) -> Option<String>) -> Vec<Endpoint> {
    let runtime = var("XDG_RUNTIME_DIR");
    let home = var("HOME");
    let under = |base: &Option<String>, rest: &str| base.as_ref().map(|b| format!("{b}/{rest}"));
    let places = [
        (Some("/var/run/docker.sock".to_owned()), "the Docker socket"),
        (under(&runtime, "docker.sock"), "rootless Docker"),
        (under(&home, ".docker/run/docker.sock"), "Docker Desktop"),
        (under(&home, ".colima/default/docker.sock"), "Colima"),
        (under(&home, ".orbstack/run/docker.sock"), "OrbStack"),
        (under(&runtime, "podman/podman.sock"), "rootless Podman"),
        (Some("/run/podman/podman.sock".to_owned()), "Podman"),
    ];
    let mut found: Vec<Endpoint> = Vec::new();
    for (path, why) in places {
        let Some(path) = path else { continue };
        let host = format!("unix://{path}");
        if !found.iter().any(|e| e.host == host) {
            found.push(Endpoint {
                host,
                tls: None,
                why: format!("{why}, a well-known socket"),
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn find_with(vars: &[(&str, &str)]) -> Found {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        find(None, &|k| vars.get(k).cloned())
    }

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("dockfix-discover-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_config_beats_docker_host_which_beats_contexts() {
        let vars: HashMap<&str, &str> = HashMap::from([
            ("DOCKER_HOST", "unix:///from/env.sock"),
            ("DOCKER_CONTEXT", "nope"),
        ]);
        let var = |k: &str| vars.get(k).map(|v| (*v).to_owned());
        match find(Some("unix:///from/config.sock"), &var) {
            Found::Named(e) => assert_eq!(
                (e.host.as_str(), e.why.as_str()),
                ("unix:///from/config.sock", "Config::docker_host")
            ),
            other => panic!("{other:?}"),
        }
        match find(None, &var) {
            Found::Named(e) => assert_eq!(e.host, "unix:///from/env.sock"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn nothing_named_means_the_well_known_sockets_in_order() {
        let home = scratch("home");
        let home = home.to_str().unwrap();
        match find_with(&[("HOME", home), ("XDG_RUNTIME_DIR", "/run/user/1000")]) {
            Found::WellKnown(list) => {
                let hosts: Vec<&str> = list.iter().map(|e| e.host.as_str()).collect();
                assert_eq!(
                    hosts,
                    [
                        "unix:///var/run/docker.sock".to_owned(),
                        "unix:///run/user/1000/docker.sock".to_owned(),
                        format!("unix://{home}/.docker/run/docker.sock"),
                        format!("unix://{home}/.colima/default/docker.sock"),
                        format!("unix://{home}/.orbstack/run/docker.sock"),
                        "unix:///run/user/1000/podman/podman.sock".to_owned(),
                        "unix:///run/podman/podman.sock".to_owned(),
                    ]
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tls_comes_from_docker_cert_path_and_is_never_unverified() {
        let certs = scratch("certs");
        let dir = certs.to_str().unwrap();
        let host = ("DOCKER_HOST", "tcp://10.0.0.1:2376");
        match find_with(&[host, ("DOCKER_TLS_VERIFY", "1"), ("DOCKER_CERT_PATH", dir)]) {
            Found::Broken { reason, .. } => {
                assert!(reason.contains("ca.pem does not exist"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        for f in ["ca.pem", "cert.pem", "key.pem"] {
            std::fs::write(certs.join(f), "x").unwrap();
        }
        match find_with(&[host, ("DOCKER_TLS_VERIFY", "1"), ("DOCKER_CERT_PATH", dir)]) {
            Found::Named(e) => assert_eq!(e.tls.unwrap().ca, certs.join("ca.pem")),
            other => panic!("{other:?}"),
        }
        match find_with(&[host, ("DOCKER_TLS", "1")]) {
            Found::Broken { reason, .. } => {
                assert!(reason.contains("without verifying"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        // A unix socket ignores the TLS settings, as the CLI does.
        match find_with(&[
            ("DOCKER_HOST", "unix:///x.sock"),
            ("DOCKER_TLS_VERIFY", "1"),
        ]) {
            Found::Named(e) => assert!(e.tls.is_none()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_context_is_read_from_the_store_by_its_name() {
        let config = scratch("contexts");
        let meta = config.join("contexts/meta/0123abcd");
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::write(
            meta.join("meta.json"),
            r#"{"Name":"colima","Metadata":{},"Endpoints":{"docker":{"Host":"unix:///c.sock","SkipTLSVerify":false}}}"#,
        )
        .unwrap();
        let dir = config.to_str().unwrap();
        match find_with(&[("DOCKER_CONFIG", dir), ("DOCKER_CONTEXT", "colima")]) {
            Found::Named(e) => {
                assert_eq!(e.host, "unix:///c.sock");
                assert!(e.tls.is_none());
                assert_eq!(e.why, "context `colima` (DOCKER_CONTEXT)");
            }
            other => panic!("{other:?}"),
        }
        match find_with(&[("DOCKER_CONFIG", dir), ("DOCKER_CONTEXT", "missing")]) {
            Found::Broken { what, reason } => {
                assert_eq!(what, "context `missing` (DOCKER_CONTEXT)");
                assert!(reason.contains("no context of that name"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        std::fs::write(config.join("config.json"), r#"{"currentContext":"colima"}"#).unwrap();
        match find_with(&[("DOCKER_CONFIG", dir)]) {
            Found::Named(e) => assert!(
                e.why.starts_with("context `colima` (currentContext of"),
                "{}",
                e.why
            ),
            other => panic!("{other:?}"),
        }
        // DOCKER_CONTEXT=default is the default: the well-known sockets.
        std::fs::write(config.join("config.json"), "{}").unwrap();
        assert!(matches!(
            find_with(&[("DOCKER_CONFIG", dir), ("DOCKER_CONTEXT", "default")]),
            Found::WellKnown(_)
        ));
    }
}
