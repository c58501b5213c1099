//! `ContainerSpec`: what to start, validated before Docker sees it.
//!
//! Pure: building, validating and rendering a spec call no daemon and
//! start no runtime. A new setting is a field and a setter here (or in the
//! file of its concept), and a line in [`render`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::config;
use crate::docker::HealthConfig;
use crate::error::Result;
use crate::labels;

mod checks;
mod image_ref;
mod mounts;
mod network;
mod pull;
mod render;
mod units;
mod wait;

pub(crate) use checks::{container_path, no_nul, no_nul_words};
pub(crate) use image_ref::{registry_of, split_reference};
pub use mounts::BindMount;
pub(crate) use network::is_alias;
pub(crate) use pull::ProgressFn;
pub use pull::{PullPolicy, PullProgress};
pub use wait::WaitFor;

use units::{parse_cpus, parse_memory};

/// The default time `start()` waits for readiness.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

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
/// [`Error::InvalidSpec`](crate::error::Error::InvalidSpec) naming the field and the value. A spec is `Clone`,
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
///     .name_prefix("web")
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
    pub(crate) name_prefix: String,
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
    pub(crate) pull_policy: PullPolicy,
    /// Called with each pull progress event.
    pub(crate) pull_progress: Option<ProgressFn>,
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
            wait_on_drop: config::env().drop_waits,
            remove_on_kill: config::env().remove_on_kill,
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

    /// A readable prefix for the container's name, which is
    /// `<prefix>-<random>` so that parallel tests never collide. Default
    /// `dockfix`.
    pub fn name_prefix(mut self, prefix: impl Into<String>) -> Self {
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
                "name_prefix",
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
        let cmd: Vec<String> = cmd.into_iter().map(Into::into).collect();
        if let Err(reason) = no_nul_words(&cmd) {
            return self.refuse("cmd", format!("{cmd:?}"), reason);
        }
        self.cmd = Some(cmd);
        self
    }

    /// Overrides the image's entrypoint.
    pub fn entrypoint<I, S>(mut self, entrypoint: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let entrypoint: Vec<String> = entrypoint.into_iter().map(Into::into).collect();
        if let Err(reason) = no_nul_words(&entrypoint) {
            return self.refuse("entrypoint", format!("{entrypoint:?}"), reason);
        }
        self.entrypoint = Some(entrypoint);
        self
    }

    /// Sets an environment variable. The key must be non-empty and contain
    /// neither `=` nor NUL.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let (key, value) = (key.into(), value.into());
        match env_entry(&key, &value) {
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

    /// The working directory of the main process: an absolute path,
    /// cleaned (`/a/./b/` is `/a/b`). Docker creates it when the image
    /// lacks it.
    pub fn working_dir(mut self, dir: impl Into<String>) -> Self {
        let dir = dir.into();
        match container_path(&dir) {
            Ok(clean) => {
                self.working_dir = Some(clean);
                self
            }
            Err(reason) => self.refuse("working_dir", dir, reason),
        }
    }

    /// The user (`name`, `uid` or `uid:gid`) the main process runs as.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        let user = user.into();
        match check_user(&user) {
            Ok(()) => {
                self.user = Some(user);
                self
            }
            Err(reason) => self.refuse("user", user, reason),
        }
    }

    /// Adds a label. Keys in the `dockfix.` namespace are refused: those are
    /// dockfix's own owner labels.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let (key, value) = (key.into(), value.into());
        if let Err(reason) = labels::check_user_key(&key) {
            return self.refuse("label", key, reason);
        }
        if let Err(reason) = no_nul(&value) {
            return self.refuse("label", format!("{key}={value}"), reason);
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

    /// When the image is pulled (default [`PullPolicy::IfMissing`](PullPolicy::IfMissing)).
    /// Concurrent starts that need the same missing image pull it once.
    /// Credentials come from the Docker CLI's config
    /// (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`, `auths`).
    pub fn pull_policy(mut self, policy: PullPolicy) -> Self {
        self.pull_policy = policy;
        self
    }

    /// Calls `report` with each progress event of a pull (layer bytes done
    /// and total). On a terminal, progress also goes to stderr.
    pub fn on_pull_progress(
        mut self,
        report: impl Fn(&PullProgress) + Send + Sync + 'static,
    ) -> Self {
        self.pull_progress = Some(ProgressFn(std::sync::Arc::new(report)));
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
        if let Err(reason) = no_nul_words(&cmd) {
            return self.refuse("healthcheck", format!("{cmd:?}"), reason);
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
    /// [`Error::InvalidSpec`](crate::error::Error::InvalidSpec) naming the first refused field and value.
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
}

/// A user as Docker reads it: `name`, `uid`, `name:group` or `uid:gid`,
/// one `:` at most, no whitespace or NUL.
pub(crate) fn check_user(user: &str) -> std::result::Result<(), &'static str> {
    const BAD: &str = "must be a name, uid, name:group or uid:gid, without whitespace";
    no_nul(user)?;
    let mut parts = user.split(':');
    let ok = parts.clone().count() <= 2
        && parts.all(|p| !p.is_empty() && !p.chars().any(|c| c.is_whitespace() || c.is_control()));
    ok.then_some(()).ok_or(BAD)
}

/// `KEY=value`, refusing keys Docker would mangle.
pub(crate) fn env_entry(key: &str, value: &str) -> std::result::Result<String, &'static str> {
    if key.is_empty() {
        return Err("the variable name is empty");
    }
    if key.contains('=') {
        return Err("the variable name contains `=`");
    }
    if key.contains('\0') || value.contains('\0') {
        return Err("NUL bytes cannot be passed in the environment");
    }
    Ok(format!("{key}={value}"))
}
