//! How a container is reached and what it reaches: published ports, the
//! network it joins, and its `/etc/hosts` entries.

use std::net::IpAddr;

use super::ContainerSpec;

impl ContainerSpec {
    /// Publishes container TCP `port` on a random host port of the daemon's
    /// loopback address. Read it back with
    /// [`TestContainer::host_port`](crate::TestContainer::host_port).
    pub fn expose(mut self, port: u16) -> Self {
        if port == 0 {
            return self.refuse("expose", "0", "port must be 1-65535");
        }
        if !self.exposed.contains(&port) {
            self.exposed.push(port);
        }
        self
    }

    /// Whether `host.docker.internal` resolves to the host inside the
    /// container (default: on Linux, where Docker does not add it itself).
    pub fn host_gateway(mut self, enabled: bool) -> Self {
        self.host_gateway = enabled;
        self
    }

    /// Adds an `/etc/hosts` entry: `name` resolves to `ip` (an IP address,
    /// or `host-gateway` for the host).
    pub fn extra_host(mut self, name: impl Into<String>, ip: impl Into<String>) -> Self {
        let (name, ip) = (name.into(), ip.into());
        let shown = format!("{name}:{ip}");
        let name_ok = !name.is_empty()
            && name.len() <= 253
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
            && !name.starts_with(['-', '.']);
        if !name_ok {
            return self.refuse(
                "extra_host",
                shown,
                "the name must be a hostname (letters, digits, `.`, `-`)",
            );
        }
        if ip != "host-gateway" && ip.parse::<IpAddr>().is_err() {
            return self.refuse(
                "extra_host",
                shown,
                "the address must be an IP address or `host-gateway`",
            );
        }
        self.extra_hosts.push(shown);
        self
    }

    /// The network mode: `bridge` (Docker's default), `none`, `host`, or a
    /// network name. `none` starts fastest for containers that need no
    /// network.
    pub fn network_mode(mut self, mode: impl Into<String>) -> Self {
        let mode = mode.into();
        if mode.is_empty() || mode.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return self.refuse(
                "network_mode",
                mode,
                "must be a non-empty network name or mode",
            );
        }
        self.network_mode = Some(mode);
        self
    }

    /// Like [`network`](Self::network), for a network made elsewhere.
    pub fn network_named<I, S>(mut self, name: impl Into<String>, aliases: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let name = name.into();
        let aliases: Vec<String> = aliases.into_iter().map(Into::into).collect();
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return self.refuse("network", name, "must be a non-empty network name");
        }
        if let Some(bad) = aliases.iter().find(|a| !is_alias(a)) {
            let bad = bad.clone();
            return self.refuse(
                "network",
                bad,
                "an alias is a hostname: letters, digits, `-`, `.`, `_`",
            );
        }
        self.network_mode = Some(name.clone());
        self.network = Some((name, aliases));
        self
    }
}

/// Whether `alias` can name a container on a network: a hostname.
pub(crate) fn is_alias(alias: &str) -> bool {
    !alias.is_empty()
        && alias
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
}

/// Published ports bind to loopback when the daemon is local; a remote
/// daemon's loopback is out of our reach, so there they bind to all
/// interfaces.
pub(crate) fn publish_ip() -> &'static str {
    match crate::config::daemon_host() {
        Some(_) => "0.0.0.0",
        None => "127.0.0.1",
    }
}
