//! `ContainerSpec`: what to start, validated before Docker sees it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HealthConfig, HostConfig, PortBinding};

use crate::error::{Error, Result};
use crate::labels;
use crate::ready::WaitFor;

/// The default time `start()` waits for readiness.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A validated bind mount: a host path mounted at a container path.
///
/// Parse one from Docker's `host:container[:options]` form with
/// [`BindMount::parse`], or build one with [`ContainerSpec::bind`] and
/// [`ContainerSpec::bind_ro`].
///
/// # Examples
///
/// ```
/// let m = dockfix::BindMount::parse("/tmp:/data:ro,Z")?;
/// assert_eq!(m.container_path(), "/data");
/// assert!(m.is_read_only());
/// # Ok::<(), dockfix::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    host: PathBuf,
    container: String,
    options: Vec<String>,
}

const PROPAGATION: [&str; 6] = [
    "private", "rprivate", "shared", "rshared", "slave", "rslave",
];

impl BindMount {
    /// Parses `host:container[:options]`, where options is a comma-separated
    /// list from `ro`, `rw`, `z`, `Z` and one propagation mode (`private`,
    /// `rprivate`, `shared`, `rshared`, `slave`, `rslave`).
    ///
    /// The host path is checked (it must exist) when the container starts,
    /// unless [`ContainerSpec::check_host_paths`] turned that off.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSpec`] naming the value when the form, the container
    /// path or an option is wrong.
    pub fn parse(spec: &str) -> Result<Self> {
        let parts: Vec<&str> = spec.split(':').collect();
        let (host, container, options) = match parts.as_slice() {
            [h, c] => (*h, *c, ""),
            [h, c, o] => (*h, *c, *o),
            _ => {
                return Err(Error::invalid(
                    "bind",
                    spec,
                    "expected `host:container[:options]` (a host path with `:` cannot be bind-mounted)",
                ));
            }
        };
        let options = if options.is_empty() {
            Vec::new()
        } else {
            options.split(',').map(str::to_owned).collect()
        };
        Self::new(host, container, options).map_err(|reason| Error::invalid("bind", spec, reason))
    }

    fn new(host: &str, container: &str, options: Vec<String>) -> std::result::Result<Self, String> {
        if host.is_empty() {
            return Err("the host path is empty".into());
        }
        if host.contains(':') {
            return Err(format!(
                "host path `{host}` contains `:`, which Docker's bind syntax cannot carry"
            ));
        }
        if !container.starts_with('/') {
            return Err(format!("container path `{container}` must be absolute"));
        }
        if container.contains(':') {
            return Err(format!("container path `{container}` contains `:`"));
        }
        let mut mode = None;
        let mut label = None;
        let mut propagation = None;
        for opt in &options {
            let slot = match opt.as_str() {
                "ro" | "rw" => &mut mode,
                "z" | "Z" => &mut label,
                p if PROPAGATION.contains(&p) => &mut propagation,
                other => {
                    return Err(format!(
                        "unknown option `{other}` (known: ro, rw, z, Z, {})",
                        PROPAGATION.join(", ")
                    ));
                }
            };
            if let Some(prev) = slot.replace(opt.as_str()) {
                return Err(format!("options `{prev}` and `{opt}` conflict"));
            }
        }
        Ok(BindMount {
            host: PathBuf::from(host),
            container: container.to_owned(),
            options,
        })
    }

    /// The host path as given (resolved to an absolute canonical path when
    /// the container starts).
    pub fn host_path(&self) -> &Path {
        &self.host
    }

    /// The absolute path inside the container.
    pub fn container_path(&self) -> &str {
        &self.container
    }

    /// True when mounted read-only.
    pub fn is_read_only(&self) -> bool {
        self.options.iter().any(|o| o == "ro")
    }

    /// Resolves the host path and renders Docker's bind string.
    fn to_bind(&self, check_host: bool) -> Result<String> {
        let shown = self.host.display().to_string();
        let host = if check_host {
            self.host.canonicalize().map_err(|e| {
                let cwd = std::env::current_dir()
                    .map(|d| d.display().to_string())
                    .unwrap_or_default();
                Error::invalid(
                    "bind",
                    &shown,
                    format!("host path cannot be resolved from {cwd}: {e}"),
                )
            })?
        } else if self.host.is_absolute() {
            self.host.clone()
        } else {
            return Err(Error::invalid(
                "bind",
                &shown,
                "with host path checks off the host path must be absolute (a relative one would name a Docker volume)",
            ));
        };
        let host = host
            .to_str()
            .ok_or_else(|| Error::invalid("bind", &shown, "host path is not UTF-8"))?;
        if host.contains(':') {
            return Err(Error::invalid(
                "bind",
                host,
                "resolved host path contains `:`",
            ));
        }
        let mut s = format!("{host}:{}", self.container);
        if !self.options.is_empty() {
            s.push(':');
            s.push_str(&self.options.join(","));
        }
        Ok(s)
    }
}

/// A refusal recorded by a setter and reported by `start()`, so that the
/// builder chain stays infallible.
#[derive(Debug, Clone)]
struct Invalid {
    field: &'static str,
    value: String,
    reason: String,
}

/// What to start: image, command, environment, labels, mounts, ports,
/// limits and readiness.
///
/// Setters consume and return the spec; a refused value is remembered and
/// reported by [`start`](ContainerSpec::start) before any Docker call, as
/// [`Error::InvalidSpec`] naming the field and the value. A spec is `Clone`,
/// so one spec can start many containers.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> dockfix::Result<()> {
/// use std::time::Duration;
/// use dockfix::{ContainerSpec, WaitFor};
///
/// let web = ContainerSpec::new("dockfix-test/busybox:latest")
///     .name("web")
///     .cmd(["httpd", "-f", "-p", "8080"])
///     .env("MODE", "test")
///     .bind_ro("./tests/fixtures", "/www")
///     .expose(8080)
///     .memory("64m")
///     .cpus("500m")
///     .wait_for(WaitFor::port(8080))
///     .startup_timeout(Duration::from_secs(20))
///     .start()
///     .await?;
/// println!("listening on 127.0.0.1:{}", web.host_port(8080)?);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a spec does nothing until `start()` is awaited"]
pub struct ContainerSpec {
    pub(crate) image: String,
    name_prefix: String,
    cmd: Option<Vec<String>>,
    entrypoint: Option<Vec<String>>,
    env: Vec<String>,
    working_dir: Option<String>,
    user: Option<String>,
    labels: HashMap<String, String>,
    binds: Vec<BindMount>,
    check_host_paths: bool,
    tmpfs: HashMap<String, String>,
    pub(crate) exposed: Vec<u16>,
    host_gateway: bool,
    extra_hosts: Vec<String>,
    memory: Option<i64>,
    nano_cpus: Option<i64>,
    network_mode: Option<String>,
    healthcheck: Option<HealthConfig>,
    pub(crate) wait_for: Vec<WaitFor>,
    pub(crate) startup_timeout: Duration,
    pub(crate) wait_on_drop: bool,
    pub(crate) remove_on_kill: bool,
    pub(crate) ttl: Option<Duration>,
    /// When to pull the image.
    pub(crate) pull_policy: crate::image::PullPolicy,
    /// Called with each pull progress event.
    pub(crate) pull_progress: Option<crate::image::ProgressFn>,
    /// Files copied in after create, before start: (host path, container dir).
    pub(crate) copies: Vec<(PathBuf, String)>,
    /// A network to join at create, with its aliases.
    network: Option<(String, Vec<String>)>,
    /// The pool this spec's containers belong to, for `dockfix.pool`.
    pub(crate) pool: Option<String>,
    /// For members of a pool shared across processes: this exact name,
    /// and no `dockfix.pid` (the pool, not the process, owns them).
    pub(crate) shared_name: Option<String>,
    invalid: Option<Invalid>,
}

impl ContainerSpec {
    /// A spec for `image` (e.g. `"postgres:16"`). The image is used as it
    /// is on the daemon and pulled when missing.
    pub fn new(image: impl Into<String>) -> Self {
        ContainerSpec {
            image: image.into(),
            name_prefix: "dockfix".to_owned(),
            cmd: None,
            entrypoint: None,
            env: Vec::new(),
            working_dir: None,
            user: None,
            labels: HashMap::new(),
            binds: Vec::new(),
            check_host_paths: true,
            tmpfs: HashMap::new(),
            exposed: Vec::new(),
            host_gateway: cfg!(target_os = "linux"),
            extra_hosts: Vec::new(),
            memory: None,
            nano_cpus: None,
            network_mode: None,
            healthcheck: None,
            wait_for: Vec::new(),
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
            wait_on_drop: std::env::var("DOCKFIX_DROP").is_ok_and(|v| v == "wait"),
            remove_on_kill: std::env::var("DOCKFIX_REMOVE_ON_KILL")
                .is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false")),
            ttl: None,
            pull_policy: Default::default(),
            pull_progress: None,
            copies: Vec::new(),
            network: None,
            pool: None,
            shared_name: None,
            invalid: None,
        }
    }

    fn refuse(
        mut self,
        field: &'static str,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        if self.invalid.is_none() {
            self.invalid = Some(Invalid {
                field,
                value: value.into(),
                reason: reason.into(),
            });
        }
        self
    }

    /// A readable name prefix; the container is named `<prefix>-<random>`
    /// so that parallel tests never collide. Default `dockfix`.
    pub fn name(mut self, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        let valid = prefix.len() <= 64
            && prefix
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric())
            && prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !valid {
            return self.refuse(
                "name",
                prefix,
                "must start with a letter or digit and contain only letters, digits, `_`, `.` and `-` (at most 64)",
            );
        }
        self.name_prefix = prefix;
        self
    }

    /// The command (arguments to the entrypoint).
    pub fn cmd<I, S>(mut self, cmd: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.cmd = Some(cmd.into_iter().map(Into::into).collect());
        self
    }

    /// Overrides the image's entrypoint.
    pub fn entrypoint<I, S>(mut self, entrypoint: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.entrypoint = Some(entrypoint.into_iter().map(Into::into).collect());
        self
    }

    /// Sets an environment variable. The key must be non-empty and contain
    /// neither `=` nor NUL.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let (key, value) = (key.into(), value.into());
        match crate::exec::env_entry(&key, &value) {
            Ok(entry) => {
                self.env.retain(|e| !e.starts_with(&format!("{key}=")));
                self.env.push(entry);
                self
            }
            Err(reason) => self.refuse("env", format!("{key}={value}"), reason),
        }
    }

    /// Sets several environment variables.
    pub fn envs<I, K, V>(self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        vars.into_iter().fold(self, |s, (k, v)| s.env(k, v))
    }

    /// The working directory of the main process (absolute).
    pub fn working_dir(mut self, dir: impl Into<String>) -> Self {
        let dir = dir.into();
        if !dir.starts_with('/') {
            return self.refuse("working_dir", dir, "must be an absolute path");
        }
        self.working_dir = Some(dir);
        self
    }

    /// The user (`name`, `uid` or `uid:gid`) the main process runs as.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        let user = user.into();
        if user.is_empty() || user.chars().any(char::is_whitespace) {
            return self.refuse("user", user, "must be a non-empty name, uid or uid:gid");
        }
        self.user = Some(user);
        self
    }

    /// Adds a label. Keys in the `dockfix.` namespace are refused: those are
    /// dockfix's own owner labels.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let (key, value) = (key.into(), value.into());
        if let Err(reason) = labels::check_user_key(&key) {
            return self.refuse("label", key, reason);
        }
        self.labels.insert(key, value);
        self
    }

    /// Adds several labels.
    pub fn labels<I, K, V>(self, labels: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        labels.into_iter().fold(self, |s, (k, v)| s.label(k, v))
    }

    /// Bind-mounts `host` (absolute, or relative to the current directory;
    /// it must exist) read-write at the absolute `container` path.
    pub fn bind(self, host: impl AsRef<Path>, container: impl Into<String>) -> Self {
        self.bind_with(host.as_ref(), container.into(), "rw")
    }

    /// Bind-mounts `host` read-only at `container`.
    pub fn bind_ro(self, host: impl AsRef<Path>, container: impl Into<String>) -> Self {
        self.bind_with(host.as_ref(), container.into(), "ro")
    }

    fn bind_with(self, host: &Path, container: String, mode: &str) -> Self {
        let shown = format!("{}:{container}", host.display());
        let Some(host) = host.to_str() else {
            return self.refuse("bind", shown, "host path is not UTF-8");
        };
        match BindMount::new(host, &container, vec![mode.to_owned()]) {
            Ok(m) => self.mount(m),
            Err(reason) => self.refuse("bind", shown, reason),
        }
    }

    /// Adds a bind mount written in Docker's `host:container[:options]` form.
    pub fn bind_str(self, spec: &str) -> Self {
        match BindMount::parse(spec) {
            Ok(m) => self.mount(m),
            Err(Error::InvalidSpec {
                field,
                value,
                reason,
            }) => self.refuse(field, value, reason),
            Err(other) => self.refuse("bind", spec, other.to_string()),
        }
    }

    /// Adds a parsed bind mount.
    pub fn mount(mut self, mount: BindMount) -> Self {
        self.binds.push(mount);
        self
    }

    /// Whether host paths of bind mounts are checked and resolved on this
    /// machine (default true). Turn it off for a remote daemon whose
    /// filesystem is not ours; host paths must then be absolute.
    pub fn check_host_paths(mut self, check: bool) -> Self {
        self.check_host_paths = check;
        self
    }

    /// Mounts a tmpfs at the absolute `path` with Docker's tmpfs `options`
    /// (e.g. `"size=64m,mode=1777"`, or `""`).
    pub fn tmpfs(mut self, path: impl Into<String>, options: impl Into<String>) -> Self {
        let path = path.into();
        if !path.starts_with('/') || path.contains(':') {
            return self.refuse(
                "tmpfs",
                path,
                "must be an absolute container path without `:`",
            );
        }
        self.tmpfs.insert(path, options.into());
        self
    }

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

    /// Memory limit: bytes with an optional unit, `"512m"`, `"1g"`,
    /// `"65536k"`. At least 6 MiB, as Docker requires.
    pub fn memory(mut self, limit: &str) -> Self {
        match parse_memory(limit) {
            Ok(bytes) => {
                self.memory = Some(bytes);
                self
            }
            Err(reason) => self.refuse("memory", limit, reason),
        }
    }

    /// CPU limit: cores (`"0.5"`, `"2"`) or millicores (`"500m"`).
    pub fn cpus(mut self, limit: &str) -> Self {
        match parse_cpus(limit) {
            Ok(nanos) => {
                self.nano_cpus = Some(nanos);
                self
            }
            Err(reason) => self.refuse("cpus", limit, reason),
        }
    }

    /// The network mode: `bridge` (Docker's default), `none`, `host`, or a
    /// network name. `none` starts fastest for containers that need no
    /// network.
    pub fn network_mode(mut self, mode: impl Into<String>) -> Self {
        let mode = mode.into();
        if mode.is_empty() || mode.chars().any(char::is_whitespace) {
            return self.refuse(
                "network_mode",
                mode,
                "must be a non-empty network name or mode",
            );
        }
        self.network_mode = Some(mode);
        self
    }

    /// When the image is pulled (default [`PullPolicy::IfMissing`](crate::PullPolicy::IfMissing)).
    /// Concurrent starts that need the same missing image pull it once.
    /// Credentials come from the Docker CLI's config
    /// (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`, `auths`).
    pub fn pull_policy(mut self, policy: crate::image::PullPolicy) -> Self {
        self.pull_policy = policy;
        self
    }

    /// Calls `report` with each progress event of a pull (layer bytes done
    /// and total). On a terminal, progress also goes to stderr.
    pub fn on_pull_progress(
        mut self,
        report: impl Fn(&crate::image::PullProgress) + Send + Sync + 'static,
    ) -> Self {
        self.pull_progress = Some(crate::image::ProgressFn(std::sync::Arc::new(report)));
        self
    }

    /// Copies `host` (a file, or a directory and everything in it) into the
    /// directory `container_dir` of the image, under its own name, after the
    /// container is created and before it starts: for fixture files a
    /// process needs from its first moment. `host` must exist; the
    /// directory must exist in the image.
    pub fn copy_in(mut self, host: impl AsRef<Path>, container_dir: impl Into<String>) -> Self {
        let (host, dir) = (host.as_ref().to_owned(), container_dir.into());
        if !host.exists() {
            return self.refuse(
                "copy_in",
                host.display().to_string(),
                "the host path does not exist",
            );
        }
        if !dir.starts_with('/') {
            return self.refuse("copy_in", dir, "the container directory must be absolute");
        }
        self.copies.push((host, dir));
        self
    }

    /// Joins `network` (created with [`Network::new`](crate::Network::new))
    /// under these aliases, by which other containers on it reach this one.
    /// Sets the network mode to the network.
    pub fn network<I, S>(self, network: &crate::Network, aliases: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.network_named(network.name(), aliases)
    }

    /// Like [`network`](Self::network), for a network made elsewhere.
    pub fn network_named<I, S>(mut self, name: impl Into<String>, aliases: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let name = name.into();
        let aliases: Vec<String> = aliases.into_iter().map(Into::into).collect();
        if let Some(bad) = aliases.iter().find(|a| {
            a.is_empty()
                || !a
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
        }) {
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

    /// A Docker healthcheck: `cmd` run every `interval` in the container,
    /// exit 0 meaning healthy. Pair it with [`WaitFor::healthy`].
    pub fn healthcheck<I, S>(mut self, cmd: I, interval: Duration) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let cmd: Vec<String> = cmd.into_iter().map(Into::into).collect();
        if cmd.is_empty() {
            return self.refuse("healthcheck", "", "the command is empty");
        }
        if interval < Duration::from_millis(1) {
            return self.refuse(
                "healthcheck",
                format!("{interval:?}"),
                "the interval must be at least 1ms",
            );
        }
        let nanos = i64::try_from(interval.as_nanos()).unwrap_or(i64::MAX);
        self.healthcheck = Some(HealthConfig {
            test: Some(std::iter::once("CMD".to_owned()).chain(cmd).collect()),
            interval: Some(nanos),
            timeout: Some(nanos.max(1_000_000_000)),
            retries: Some(3),
            start_period: None,
            start_interval: None,
        });
        self
    }

    /// Adds a readiness condition awaited by `start()`, after the container
    /// is running. Several conditions are awaited in order.
    pub fn wait_for(mut self, condition: WaitFor) -> Self {
        self.wait_for.push(condition);
        self
    }

    /// How long `start()` waits for readiness (default 60 s).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Whether dropping the guard blocks until the container is removed
    /// (default false: Drop hands the removal to the engine and returns at
    /// once). `DOCKFIX_DROP=wait` sets it for every spec.
    pub fn wait_on_drop(mut self, wait: bool) -> Self {
        self.wait_on_drop = wait;
        self
    }

    /// Removes the container within about a second of this process dying,
    /// even by SIGKILL, when no Drop or exit hook can run (default false;
    /// `DOCKFIX_REMOVE_ON_KILL=1` sets it for every spec).
    ///
    /// The container joins the PID namespace of a per-process anchor
    /// container whose stdin is held by this process, and is created with
    /// Docker's auto-remove. The costs: one anchor start per process (its
    /// image needs `cat`: this spec's image, or `DOCKFIX_ANCHOR_IMAGE`); the
    /// container's main process is not PID 1 of its namespace; and the
    /// daemon removes the container as soon as it stops, so its logs and
    /// state go with it (after `stop()`, or when readiness fails).
    /// `DOCKFIX_KEEP` turns it off, and a container tied this way cannot be
    /// kept past the end of the process.
    pub fn remove_on_kill(mut self, enabled: bool) -> Self {
        self.remove_on_kill = enabled;
        self
    }

    /// How long the container may live: written to the `dockfix.ttl`
    /// label, after which `dockfix sweep` removes it even if its owner
    /// cannot be checked (a container of another host). Whole seconds, at
    /// least one.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        if ttl.as_secs() == 0 {
            return self.refuse("ttl", format!("{ttl:?}"), "must be at least 1s");
        }
        self.ttl = Some(ttl);
        self
    }

    /// The image this spec starts.
    pub fn image(&self) -> &str {
        &self.image
    }

    /// Checks every value and renders the create request, without calling
    /// Docker. `start()` calls it first.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSpec`] naming the first refused field and value.
    pub fn validate(&self) -> Result<()> {
        self.create_body().map(|_| ())
    }

    /// A fresh container name: the prefix and a random suffix.
    pub(crate) fn fresh_name(&self) -> String {
        if let Some(name) = &self.shared_name {
            return name.clone();
        }
        use rand::Rng;
        let suffix: u32 = rand::rng().random();
        format!("{}-{suffix:08x}", self.name_prefix)
    }

    /// Validates and renders the Docker create request.
    pub(crate) fn create_body(&self) -> Result<ContainerCreateBody> {
        if let Some(Invalid {
            field,
            value,
            reason,
        }) = &self.invalid
        {
            return Err(Error::invalid(field, value.clone(), reason.clone()));
        }
        check_image(&self.image)?;
        let binds = self
            .binds
            .iter()
            .map(|b| b.to_bind(self.check_host_paths))
            .collect::<Result<Vec<_>>>()?;
        let mode = self.network_mode.as_deref();
        if !self.exposed.is_empty() && matches!(mode, Some("none" | "host")) {
            return Err(Error::invalid(
                "expose",
                format!("{:?}", self.exposed),
                format!(
                    "ports cannot be published with network mode `{}`",
                    mode.unwrap_or_default()
                ),
            ));
        }
        if matches!(mode, Some(m) if m.starts_with("container:")) && !self.extra_hosts.is_empty() {
            return Err(Error::invalid(
                "extra_host",
                self.extra_hosts.join(","),
                "a container on another container's network shares its /etc/hosts; add the entry there",
            ));
        }
        for w in &self.wait_for {
            w.check(self)?;
        }
        let publish_ip = publish_ip();
        let port_bindings = self
            .exposed
            .iter()
            .map(|p| {
                (
                    format!("{p}/tcp"),
                    Some(vec![PortBinding {
                        host_ip: Some(publish_ip.clone()),
                        host_port: Some(String::new()),
                    }]),
                )
            })
            .collect::<HashMap<_, _>>();
        let mut extra_hosts = Vec::new();
        // With `host` or another container's network there is no
        // /etc/hosts of our own to add to (Docker refuses it).
        let own_network = !matches!(mode, Some(m) if m == "host" || m.starts_with("container:"));
        if self.host_gateway && own_network {
            extra_hosts.push("host.docker.internal:host-gateway".to_owned());
        }
        extra_hosts.extend(self.extra_hosts.iter().cloned());
        let host_config = HostConfig {
            binds: (!binds.is_empty()).then_some(binds),
            tmpfs: (!self.tmpfs.is_empty()).then(|| self.tmpfs.clone()),
            port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
            extra_hosts: (!extra_hosts.is_empty()).then_some(extra_hosts),
            memory: self.memory,
            nano_cpus: self.nano_cpus,
            network_mode: self.network_mode.clone(),
            ..Default::default()
        };
        Ok(ContainerCreateBody {
            image: Some(self.image.clone()),
            cmd: self.cmd.clone(),
            entrypoint: self.entrypoint.clone(),
            env: (!self.env.is_empty()).then(|| self.env.clone()),
            working_dir: self.working_dir.clone(),
            user: self.user.clone(),
            labels: Some({
                let mut labels = labels::owner_labels(&self.labels, self.ttl, self.pool.as_deref());
                if self.shared_name.is_some() {
                    labels.remove(crate::LABEL_PID);
                    labels.remove(crate::labels::LABEL_PIDNS);
                }
                labels
            }),
            exposed_ports: (!self.exposed.is_empty())
                .then(|| self.exposed.iter().map(|p| format!("{p}/tcp")).collect()),
            healthcheck: self.healthcheck.clone(),
            host_config: Some(host_config),
            networking_config: self.network.as_ref().map(|(name, aliases)| {
                bollard::models::NetworkingConfig {
                    endpoints_config: Some(HashMap::from([(
                        name.clone(),
                        bollard::models::EndpointSettings {
                            aliases: (!aliases.is_empty()).then(|| aliases.clone()),
                            ..Default::default()
                        },
                    )])),
                }
            }),
            ..Default::default()
        })
    }
}

/// Published ports bind to loopback when the daemon is local; a remote
/// daemon's loopback is out of our reach, so there they bind to all
/// interfaces.
fn publish_ip() -> String {
    match crate::engine::daemon_host() {
        Some(_) => "0.0.0.0".to_owned(),
        None => "127.0.0.1".to_owned(),
    }
}

fn check_image(image: &str) -> Result<()> {
    if image.is_empty() {
        return Err(Error::invalid(
            "image",
            image,
            "the image reference is empty",
        ));
    }
    if image
        .chars()
        .any(|c| c.is_whitespace() || c.is_ascii_uppercase() && !image.contains('@'))
    {
        let repo = image.split([':', '@']).next().unwrap_or(image);
        if repo
            .chars()
            .any(|c| c.is_whitespace() || c.is_ascii_uppercase())
        {
            return Err(Error::invalid(
                "image",
                image,
                "image references are lowercase and contain no whitespace",
            ));
        }
    }
    Ok(())
}

/// Parses a memory size with Docker's units into bytes.
pub(crate) fn parse_memory(s: &str) -> std::result::Result<i64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t
        .strip_suffix("ib")
        .or_else(|| t.strip_suffix('b'))
        .unwrap_or(&t);
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024.0_f64.powi(4),
        _ => {
            return Err(
                "expected a number with an optional unit b, k, m, g or t (e.g. 512m, 1g)".into(),
            );
        }
    };
    let n: f64 = num.parse().map_err(|_| {
        "expected a number with an optional unit b, k, m, g or t (e.g. 512m, 1g)".to_owned()
    })?;
    let bytes = n * mult;
    if !bytes.is_finite() || bytes > i64::MAX as f64 {
        return Err("too large".into());
    }
    if bytes < 6.0 * 1024.0 * 1024.0 {
        return Err("Docker requires at least 6m".into());
    }
    Ok(bytes as i64)
}

/// Parses cores (`0.5`) or millicores (`500m`) into Docker's NanoCpus.
pub(crate) fn parse_cpus(s: &str) -> std::result::Result<i64, String> {
    let t = s.trim();
    let cores = match t.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().map(|m| m / 1000.0),
        None => t.parse::<f64>(),
    }
    .map_err(|_| "expected cores (`0.5`, `2`) or millicores (`500m`)".to_owned())?;
    if !cores.is_finite() || cores < 0.01 {
        return Err("must be at least 0.01 cores (10m)".into());
    }
    if cores > 1024.0 {
        return Err("more than 1024 cores".into());
    }
    Ok((cores * 1e9).round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_units() {
        assert_eq!(parse_memory("512m"), Ok(512 << 20));
        assert_eq!(parse_memory("1g"), Ok(1 << 30));
        assert_eq!(parse_memory("1GB"), Ok(1 << 30));
        assert_eq!(parse_memory("64MiB"), Ok(64 << 20));
        assert_eq!(parse_memory("8388608"), Ok(8 << 20));
        assert!(parse_memory("1m").is_err());
        assert!(parse_memory("12x").is_err());
        assert!(parse_memory("").is_err());
    }

    #[test]
    fn cpu_units() {
        assert_eq!(parse_cpus("0.5"), Ok(500_000_000));
        assert_eq!(parse_cpus("500m"), Ok(500_000_000));
        assert_eq!(parse_cpus("2"), Ok(2_000_000_000));
        assert!(parse_cpus("0").is_err());
        assert!(parse_cpus("5m").is_err());
        assert!(parse_cpus("one").is_err());
    }

    #[test]
    fn bind_strings() {
        let m = BindMount::parse("/tmp:/x:ro,z,rshared").unwrap();
        assert!(m.is_read_only());
        assert_eq!(m.to_bind(true).unwrap(), "/tmp:/x:ro,z,rshared");
        assert!(BindMount::parse("/tmp:x").is_err());
        assert!(BindMount::parse("/tmp:/x:ro,rw").is_err());
        assert!(BindMount::parse("/tmp:/x:z,Z").is_err());
        assert!(BindMount::parse("/tmp:/x:shared,slave").is_err());
        assert!(BindMount::parse("/tmp:/x:nocopy").is_err());
        assert!(BindMount::parse("/tmp").is_err());
        assert!(BindMount::parse("/a:/b:ro:extra").is_err());
    }

    #[test]
    fn relative_host_path_resolves_or_is_refused() {
        let m = BindMount::parse("./src:/src").unwrap();
        let bind = m.to_bind(true).unwrap();
        assert!(
            bind.starts_with('/') && bind.ends_with("/src:/src"),
            "{bind}"
        );
        assert!(m.to_bind(false).is_err());
        assert!(
            BindMount::parse("./no-such-dir:/x")
                .unwrap()
                .to_bind(true)
                .is_err()
        );
    }

    #[test]
    fn first_refusal_is_reported_with_field_and_value() {
        let spec = ContainerSpec::new("img").memory("lots").cpus("x");
        match spec.validate() {
            Err(Error::InvalidSpec { field, value, .. }) => {
                assert_eq!((field, value.as_str()), ("memory", "lots"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            ContainerSpec::new("img")
                .env("A=B", "c")
                .validate()
                .is_err()
        );
        assert!(
            ContainerSpec::new("img")
                .label("dockfix.pool", "x")
                .validate()
                .is_err()
        );
        assert!(
            ContainerSpec::new("img")
                .extra_host("db", "not-ip")
                .validate()
                .is_err()
        );
        assert!(
            ContainerSpec::new("img")
                .extra_host("db", "10.0.0.1")
                .validate()
                .is_ok()
        );
        assert!(ContainerSpec::new("img").name("-x").validate().is_err());
        assert!(ContainerSpec::new("").validate().is_err());
        assert!(ContainerSpec::new("Busybox").validate().is_err());
        assert!(
            ContainerSpec::new("img")
                .network_mode("none")
                .expose(80)
                .validate()
                .is_err()
        );
        let joined = || ContainerSpec::new("img").network_mode("container:x");
        assert!(
            joined().validate().is_ok(),
            "no host-gateway entry is added there"
        );
        assert!(joined().extra_host("db", "10.0.0.1").validate().is_err());
    }

    #[test]
    fn ttl_is_written_to_its_label_in_whole_seconds() {
        let labels = |s: ContainerSpec| s.create_body().unwrap().labels.unwrap();
        assert_eq!(
            labels(ContainerSpec::new("img").ttl(Duration::from_secs(90)))["dockfix.ttl"],
            "90"
        );
        assert!(!labels(ContainerSpec::new("img")).contains_key("dockfix.ttl"));
        assert!(
            ContainerSpec::new("img")
                .ttl(Duration::from_millis(500))
                .validate()
                .is_err()
        );
    }

    #[test]
    fn host_gateway_is_added_by_default_and_can_be_turned_off() {
        let hosts = |s: ContainerSpec| s.create_body().unwrap().host_config.unwrap().extra_hosts;
        let on = hosts(ContainerSpec::new("img")).unwrap_or_default();
        assert_eq!(
            on.contains(&"host.docker.internal:host-gateway".to_owned()),
            cfg!(target_os = "linux")
        );
        assert_eq!(hosts(ContainerSpec::new("img").host_gateway(false)), None);
    }
}
