//! Finding and removing the containers (and labelled networks and volumes)
//! that a killed run left behind.
//!
//! Drop and the exit hook cannot run when a test process is SIGKILLed, a CI
//! job is cancelled, or the process aborts. Its containers stay, labelled.
//! A [`Sweep`] finds them again by label, decides from the owner labels
//! whether their owner is provably gone, and removes them, gathering every
//! failure instead of stopping at the first.
//!
//! The selection rules are documented on [`Sweep`].

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::models::ContainerSummary;
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
    RemoveVolumeOptions,
};
use futures::StreamExt;

use crate::engine;
use crate::error::{Error, Result};
use crate::labels::{
    LABEL_CREATED, LABEL_HOST, LABEL_MANAGED, LABEL_PID, LABEL_POOL, LABEL_SESSION, LABEL_TTL,
    LABEL_VERSION, hostname,
};
use crate::retry::{self, Retry};

/// How many removals a sweep runs at once.
const CONCURRENT_REMOVALS: usize = 8;

/// What kind of Docker object a [`ManagedResource`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ResourceKind {
    /// A container.
    Container,
    /// A network.
    Network,
    /// A volume.
    Volume,
    /// An image built or imported by dockfix (swept only when asked for).
    Image,
}

impl std::fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ResourceKind::Container => "container",
            ResourceKind::Network => "network",
            ResourceKind::Volume => "volume",
            ResourceKind::Image => "image",
        })
    }
}

/// A container, network or volume labelled `dockfix.managed=true`, with
/// its owner labels parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ManagedResource {
    /// Container, network or volume.
    pub kind: ResourceKind,
    /// The id (for a volume, its name).
    pub id: String,
    /// The name, without Docker's leading `/`.
    pub name: String,
    /// The image a container runs; empty for networks and volumes.
    pub image: String,
    /// A container's state word (`running`, `exited`, `created`, …);
    /// empty for networks and volumes.
    pub state: String,
    /// `dockfix.session`: the id of the process (session) that created it.
    pub session: String,
    /// `dockfix.pid`: the owner process id.
    pub pid: Option<u32>,
    /// `dockfix.host`: the owner's hostname.
    pub host: String,
    /// `dockfix.pidns`: the owner's PID namespace, where it was readable.
    pub pid_namespace: Option<String>,
    /// `dockfix.created`: creation time in Unix seconds.
    pub created: Option<u64>,
    /// `dockfix.version`: the dockfix version that created it.
    pub version: String,
    /// `dockfix.pool`: the pool it belongs to, for pool members.
    pub pool: Option<String>,
    /// `dockfix.ttl`: how long it may live.
    pub ttl: Option<Duration>,
}

impl ManagedResource {
    fn from_summary(s: ContainerSummary) -> Option<Self> {
        let name = s
            .names
            .and_then(|n| n.into_iter().next())
            .map(|n| n.trim_start_matches('/').to_owned())
            .unwrap_or_default();
        Self::from_labels(
            ResourceKind::Container,
            s.id?,
            name,
            s.image.unwrap_or_default(),
            s.state.map(|s| s.to_string()).unwrap_or_default(),
            s.labels.unwrap_or_default(),
        )
    }

    fn from_labels(
        kind: ResourceKind,
        id: String,
        name: String,
        image: String,
        state: String,
        labels: HashMap<String, String>,
    ) -> Option<Self> {
        if labels.get(LABEL_MANAGED).map(String::as_str) != Some("true") {
            return None;
        }
        let get = |k: &str| labels.get(k).cloned().unwrap_or_default();
        Some(ManagedResource {
            kind,
            id,
            name,
            image,
            state,
            session: get(LABEL_SESSION),
            pid: labels.get(LABEL_PID).and_then(|p| p.parse().ok()),
            host: get(LABEL_HOST),
            pid_namespace: labels.get(crate::labels::LABEL_PIDNS).cloned(),
            created: labels.get(LABEL_CREATED).and_then(|c| c.parse().ok()),
            version: get(LABEL_VERSION),
            pool: labels.get(LABEL_POOL).cloned(),
            ttl: labels
                .get(LABEL_TTL)
                .and_then(|t| t.parse::<u64>().ok())
                .map(Duration::from_secs),
        })
    }

    /// For the shared pool's leases.
    pub(crate) fn from_summary_pub(s: ContainerSummary) -> Option<Self> {
        Self::from_summary(s)
    }

    /// Its age from `dockfix.created`, if that label is readable.
    pub fn age(&self) -> Option<Duration> {
        self.created
            .map(|c| Duration::from_secs(now_secs().saturating_sub(c)))
    }

    /// What can be told about its owner process from this machine.
    pub fn owner(&self) -> Owner {
        owner_of(self, hostname(), &probe_process)
    }
}

/// What a container's owner process is, seen from this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Owner {
    /// Its owner runs on this host and is alive.
    Alive,
    /// Its owner ran on this host and is gone.
    Gone,
    /// Its pid is alive but belongs to a process started after the
    /// container was created: the owner is gone and the pid was reused.
    PidReused,
    /// Its owner runs (or ran) on another host, which cannot be checked.
    OtherHost,
    /// It has no readable pid label.
    Unknown,
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Owner::Alive => "alive",
            Owner::Gone => "gone",
            Owner::PidReused => "gone (pid reused)",
            Owner::OtherHost => "other host",
            Owner::Unknown => "unknown",
        })
    }
}

/// Why a sweep selected a container.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SweepReason {
    /// Its owner process on this host is gone.
    OwnerGone {
        /// The owner pid.
        pid: u32,
    },
    /// Its owner pid now belongs to a process started after the container.
    PidReused {
        /// The owner pid.
        pid: u32,
    },
    /// It is older than its `dockfix.ttl` label.
    TtlExpired {
        /// Its age.
        age: Duration,
        /// Its ttl.
        ttl: Duration,
    },
    /// It is older than [`Sweep::older_than`].
    OlderThan {
        /// Its age.
        age: Duration,
        /// The limit.
        limit: Duration,
    },
    /// Its session was asked for by id.
    Session,
    /// [`Sweep::all`] asked for containers whose owner cannot be checked.
    Unverifiable {
        /// What is known of the owner.
        owner: Owner,
    },
}

impl SweepReason {
    /// A short machine-readable name: `orphaned`, `pid-reused`,
    /// `ttl-expired`, `older-than`, `session` or `unverifiable`.
    pub fn code(&self) -> &'static str {
        match self {
            SweepReason::OwnerGone { .. } => "orphaned",
            SweepReason::PidReused { .. } => "pid-reused",
            SweepReason::TtlExpired { .. } => "ttl-expired",
            SweepReason::OlderThan { .. } => "older-than",
            SweepReason::Session => "session",
            SweepReason::Unverifiable { .. } => "unverifiable",
        }
    }
}

impl std::fmt::Display for SweepReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SweepReason::OwnerGone { pid } => write!(f, "owner process {pid} is gone"),
            SweepReason::PidReused { pid } => {
                write!(f, "owner pid {pid} now belongs to a newer process")
            }
            SweepReason::TtlExpired { age, ttl } => {
                write!(
                    f,
                    "age {} exceeds its ttl {}",
                    human_duration(*age),
                    human_duration(*ttl)
                )
            }
            SweepReason::OlderThan { age, limit } => write!(
                f,
                "age {} exceeds --older-than {}",
                human_duration(*age),
                human_duration(*limit)
            ),
            SweepReason::Session => write!(f, "its session was asked for"),
            SweepReason::Unverifiable { owner } => write!(f, "--all, owner {owner}"),
        }
    }
}

/// A duration as a person writes it: `45s`, `12m`, `3h`, `2d` (rounded
/// down), as `dockfix ls` shows ages.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// The state of a process, for deciding whether an owner is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Process {
    /// No such process (or a zombie).
    Dead,
    /// Running; its start time in Unix seconds when known.
    Alive { started: Option<u64> },
}

/// Reads `/proc` for `pid`. Where `/proc` is missing (not Linux), every
/// pid counts as alive, so nothing is wrongly taken for orphaned.
pub(crate) fn probe_process(pid: u32) -> Process {
    if !std::path::Path::new("/proc/self").exists() {
        return Process::Alive { started: None };
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Process::Dead;
    };
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return Process::Alive { started: None };
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
        return Process::Dead;
    }
    // Field 22 of stat, start time in clock ticks since boot; /proc always
    // counts in USER_HZ, which is 100 on Linux.
    let started = fields
        .get(19)
        .and_then(|t| t.parse::<u64>().ok())
        .and_then(|ticks| {
            let btime = std::fs::read_to_string("/proc/stat").ok()?;
            let btime: u64 = btime
                .lines()
                .find_map(|l| l.strip_prefix("btime "))?
                .trim()
                .parse()
                .ok()?;
            Some(btime + ticks / 100)
        });
    Process::Alive { started }
}

fn owner_of(c: &ManagedResource, this_host: &str, probe: &dyn Fn(u32) -> Process) -> Owner {
    if c.host != this_host {
        return Owner::OtherHost;
    }
    // Same hostname, another PID namespace: its pids mean nothing here.
    let here = crate::labels::pid_namespace();
    if let (Some(theirs), Some(here)) = (c.pid_namespace.as_deref(), here) {
        if theirs != here {
            return Owner::OtherHost;
        }
    }
    let Some(pid) = c.pid else {
        return Owner::Unknown;
    };
    match probe(pid) {
        Process::Dead => Owner::Gone,
        // Whole seconds on both sides, and btime is rounded: allow 2 s.
        Process::Alive {
            started: Some(started),
        } if c.created.is_some_and(|created| started > created + 2) => Owner::PidReused,
        Process::Alive { .. } => Owner::Alive,
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Finds and removes leaked managed containers.
///
/// # Which containers it selects
///
/// Only containers, networks and volumes labelled `dockfix.managed=true`
/// are ever considered; networks and volumes follow the same rules as
/// containers, and are removed after the containers.
///
/// - **Orphaned** (selected by default): the container's `dockfix.host` is
///   this machine and its `dockfix.pid` is not alive, or is alive but
///   started after the container was created (the pid was reused).
/// - **Expired** (selected by default): older, counted from
///   `dockfix.created`, than its `dockfix.ttl` label or than
///   [`Sweep::older_than`].
/// - A container whose owner process is alive on this host is **never**
///   selected, expired or not, unless its session is asked for by id with
///   [`Sweep::session`], which selects exactly that session's containers.
/// - [`Sweep::all`] also selects containers whose owner cannot be checked
///   from here (another host, no pid label).
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> dockfix::Result<()> {
/// use std::time::Duration;
///
/// let report = dockfix::Sweep::new()
///     .older_than(Duration::from_secs(30 * 60))
///     .run()
///     .await?;
/// for c in &report.removed {
///     println!("removed {} ({})", c.container.name, c.reason);
/// }
/// assert!(report.failed.is_empty());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
#[must_use = "a sweep does nothing until `run()` or `plan()` is awaited"]
pub struct Sweep {
    older_than: Option<Duration>,
    session: Option<String>,
    all: bool,
    dry_run: bool,
    orphans_only: bool,
    images: bool,
    progress: Option<Progress>,
}

/// A progress callback: (removals finished, removals selected).
#[derive(Clone)]
struct Progress(std::sync::Arc<dyn Fn(usize, usize) + Send + Sync>);

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress(..)")
    }
}

/// A container a sweep selected, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepCandidate {
    /// The container.
    pub container: ManagedResource,
    /// Why it was selected.
    pub reason: SweepReason,
}

/// What a sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Removed (or, in a dry run, selected for removal).
    pub removed: Vec<SweepCandidate>,
    /// Selected, but the removal failed: each with the daemon's message.
    pub failed: Vec<(SweepCandidate, String)>,
    /// True if nothing was removed because this was a dry run.
    pub dry_run: bool,
}

impl Sweep {
    /// The default sweep: orphaned and expired containers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also selects containers older than `age` whose owner is not alive
    /// on this host.
    pub fn older_than(mut self, age: Duration) -> Self {
        self.older_than = Some(age);
        self
    }

    /// Selects exactly the containers of session `id`, live or not, and
    /// nothing else.
    pub fn session(mut self, id: impl Into<String>) -> Self {
        self.session = Some(id.into());
        self
    }

    /// Also selects containers whose owner cannot be checked from here
    /// (another host, no pid). Live owners on this host are still spared.
    pub fn all(mut self, all: bool) -> Self {
        self.all = all;
        self
    }

    /// Also considers images that dockfix built or imported
    /// ([`LocalImage`](crate::LocalImage)), by the same rules (default
    /// false: images are shared, so their removal is opt-in).
    pub fn images(mut self, images: bool) -> Self {
        self.images = images;
        self
    }

    /// Selects and reports, but removes nothing.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Calls `report(done, total)` after each removal, for a progress line.
    pub fn on_progress(mut self, report: impl Fn(usize, usize) + Send + Sync + 'static) -> Self {
        self.progress = Some(Progress(std::sync::Arc::new(report)));
        self
    }

    /// Only orphaned containers of this host: what start-up reaping does.
    pub(crate) fn orphans_only(mut self) -> Self {
        self.orphans_only = true;
        self
    }

    /// Why `c` is selected, if it is.
    fn select(
        &self,
        c: &ManagedResource,
        this_host: &str,
        probe: &dyn Fn(u32) -> Process,
        now: u64,
    ) -> Option<SweepReason> {
        if let Some(session) = &self.session {
            return (c.session == *session).then_some(SweepReason::Session);
        }
        let owner = owner_of(c, this_host, probe);
        match (owner, c.pid) {
            (Owner::Alive, _) => return None,
            (Owner::Gone, Some(pid)) => return Some(SweepReason::OwnerGone { pid }),
            (Owner::PidReused, Some(pid)) => return Some(SweepReason::PidReused { pid }),
            _ if self.orphans_only => return None,
            _ => {}
        }
        let age = c
            .created
            .map(|created| Duration::from_secs(now.saturating_sub(created)));
        if let (Some(age), Some(ttl)) = (age, c.ttl) {
            if age > ttl {
                return Some(SweepReason::TtlExpired { age, ttl });
            }
        }
        if let (Some(age), Some(limit)) = (age, self.older_than) {
            if age > limit {
                return Some(SweepReason::OlderThan { age, limit });
            }
        }
        self.all.then_some(SweepReason::Unverifiable { owner })
    }

    /// The containers this sweep would remove, and why.
    ///
    /// # Errors
    ///
    /// [`Error::DockerUnavailable`] or [`Error::Docker`] if the containers
    /// cannot be listed.
    pub async fn plan(&self) -> Result<Vec<SweepCandidate>> {
        let sweep = self.clone();
        engine::run(async move { sweep.plan_on_engine(&engine::docker().await?).await }).await
    }

    async fn plan_on_engine(&self, docker: &Docker) -> Result<Vec<SweepCandidate>> {
        let now = now_secs();
        let all = list_on_engine(docker, self.images).await?;
        // A shared pool's member in use has a lease whose owner is alive:
        // its ttl must not take it from under its holder.
        let leased_by_the_living: std::collections::HashSet<String> = all
            .iter()
            .filter(|c| c.name.ends_with("-lease") && c.owner() == Owner::Alive)
            .map(|c| c.name.trim_end_matches("-lease").to_owned())
            .collect();
        Ok(all
            .into_iter()
            .filter(|c| self.session.is_some() || !leased_by_the_living.contains(&c.name))
            .filter_map(|c| {
                let reason = self.select(&c, hostname(), &probe_process, now)?;
                Some(SweepCandidate {
                    container: c,
                    reason,
                })
            })
            .collect())
    }

    /// Selects and removes (force, with anonymous volumes), continuing
    /// past failures; every failure is in the report.
    ///
    /// # Errors
    ///
    /// Only when the containers cannot be listed; a failed removal is in
    /// [`SweepReport::failed`].
    pub async fn run(self) -> Result<SweepReport> {
        engine::run(async move { self.run_on_engine(&engine::docker().await?).await }).await
    }

    pub(crate) async fn run_on_engine(&self, docker: &Docker) -> Result<SweepReport> {
        let selected = self.plan_on_engine(docker).await?;
        let mut report = SweepReport {
            dry_run: self.dry_run,
            ..Default::default()
        };
        if self.dry_run {
            report.removed = selected;
            return Ok(report);
        }
        let total = selected.len();
        let done = std::sync::atomic::AtomicUsize::new(0);
        // Containers first: a network or volume in use cannot be removed.
        let (containers, others): (Vec<_>, Vec<_>) = selected
            .into_iter()
            .partition(|s| s.container.kind == ResourceKind::Container);
        for batch in [containers, others] {
            let outcomes: Vec<(SweepCandidate, std::result::Result<(), String>)> =
                futures::stream::iter(batch)
                    .map(|s| {
                        let done = &done;
                        async move {
                            let r = remove_resource(docker, &s.container).await;
                            if let Some(Progress(report)) = &self.progress {
                                let finished =
                                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                report(finished + 1, total);
                            }
                            (s, r)
                        }
                    })
                    .buffer_unordered(CONCURRENT_REMOVALS)
                    .collect()
                    .await;
            for (s, r) in outcomes {
                match r {
                    Ok(()) => report.removed.push(s),
                    Err(message) => report.failed.push((s, message)),
                }
            }
        }
        let by_name =
            |a: &SweepCandidate, b: &SweepCandidate| a.container.name.cmp(&b.container.name);
        report.removed.sort_by(by_name);
        report.failed.sort_by(|a, b| by_name(&a.0, &b.0));
        Ok(report)
    }
}

/// Every container, network and volume labelled `dockfix.managed=true`,
/// with its owner labels: containers first, oldest first.
///
/// # Errors
///
/// [`Error::DockerUnavailable`] or [`Error::Docker`] if the daemon cannot
/// list containers.
pub async fn list_managed() -> Result<Vec<ManagedResource>> {
    engine::run(async move { list_on_engine(&engine::docker().await?, false).await }).await
}

/// Every container, running or not, carrying `label` (`key=value`).
pub(crate) async fn containers_labelled(
    docker: &Docker,
    label: String,
) -> Result<Vec<ContainerSummary>> {
    let filters = HashMap::from([("label", vec![label.clone()])]);
    retry::call("list", &label, Retry::Yes, None, || {
        let opts = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        docker.list_containers(Some(opts))
    })
    .await
}

async fn list_on_engine(docker: &Docker, images: bool) -> Result<Vec<ManagedResource>> {
    let filters = HashMap::from([("label", vec![format!("{LABEL_MANAGED}=true")])]);
    let containers = containers_labelled(docker, format!("{LABEL_MANAGED}=true")).await?;
    let networks = retry::call("list", "managed networks", Retry::Yes, None, || {
        docker.list_networks(Some(
            ListNetworksOptionsBuilder::new().filters(&filters).build(),
        ))
    })
    .await?;
    let volumes = retry::call("list", "managed volumes", Retry::Yes, None, || {
        docker.list_volumes(Some(
            ListVolumesOptionsBuilder::new().filters(&filters).build(),
        ))
    })
    .await?;
    let mut managed: Vec<ManagedResource> = containers
        .into_iter()
        .filter_map(ManagedResource::from_summary)
        .collect();
    managed.extend(networks.into_iter().filter_map(|n| {
        let name = n.name.unwrap_or_default();
        let id = n.id.unwrap_or_else(|| name.clone());
        let labels = n.labels.unwrap_or_default();
        ManagedResource::from_labels(
            ResourceKind::Network,
            id,
            name,
            String::new(),
            String::new(),
            labels,
        )
    }));
    managed.extend(
        volumes
            .volumes
            .unwrap_or_default()
            .into_iter()
            .filter_map(|v| {
                let kind = ResourceKind::Volume;
                ManagedResource::from_labels(
                    kind,
                    v.name.clone(),
                    v.name,
                    String::new(),
                    String::new(),
                    v.labels,
                )
            }),
    );
    if images {
        let listed = retry::call("list", "managed images", Retry::Yes, None, || {
            docker.list_images(Some(
                bollard::query_parameters::ListImagesOptionsBuilder::new()
                    .filters(&filters)
                    .build(),
            ))
        })
        .await?;
        managed.extend(listed.into_iter().filter_map(|i| {
            let name = i.repo_tags.first().cloned().unwrap_or_else(|| i.id.clone());
            ManagedResource::from_labels(
                ResourceKind::Image,
                i.id,
                name,
                String::new(),
                String::new(),
                i.labels,
            )
        }));
    }
    managed.sort_by(|a, b| (a.kind, a.created, &a.name).cmp(&(b.kind, b.created, &b.name)));
    Ok(managed)
}

/// Removes one resource; already gone counts as success. Containers are
/// force-removed with their anonymous volumes.
async fn remove_resource(docker: &Docker, r: &ManagedResource) -> std::result::Result<(), String> {
    let result = match r.kind {
        ResourceKind::Container => {
            return engine::force_remove(docker, &r.id)
                .await
                .map_err(|e| match e {
                    Error::CleanupFailed { message, .. } => message,
                    other => other.to_string(),
                });
        }
        ResourceKind::Network => {
            retry::call("remove network", &r.name, Retry::Yes, None, || {
                docker.remove_network(&r.id)
            })
            .await
        }
        ResourceKind::Image => retry::call("remove image", &r.name, Retry::Yes, None, || {
            docker.remove_image(
                &r.id,
                None::<bollard::query_parameters::RemoveImageOptions>,
                None,
            )
        })
        .await
        .map(drop),
        ResourceKind::Volume => {
            retry::call("remove volume", &r.name, Retry::Yes, None, || {
                docker.remove_volume(&r.id, None::<RemoveVolumeOptions>)
            })
            .await
        }
    };
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.status() == Some(404) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// Removes, in the background, the orphaned containers of this host that
/// killed runs left behind; once per process, when it makes its first
/// container. `DOCKFIX_SWEEP_ON_START=0` turns it off.
pub(crate) fn reap_on_first_start() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var("DOCKFIX_SWEEP_ON_START")
            .is_ok_and(|v| matches!(v.as_str(), "0" | "false" | "no"))
        {
            return;
        }
        let Ok(engine) = engine::get() else {
            return;
        };
        engine.spawn(async {
            let Ok(docker) = engine::docker().await else {
                return;
            };
            match Sweep::new().orphans_only().run_on_engine(&docker).await {
                Ok(report) => {
                    for (s, message) in &report.failed {
                        engine::warn(format_args!(
                            "could not remove orphaned container {} ({}): {message}",
                            s.container.name, s.reason
                        ));
                    }
                }
                Err(e) => engine::warn(format_args!("start-up sweep failed: {e}")),
            }
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_000_000;

    fn container(host: &str, pid: Option<u32>, created: u64, ttl: Option<u64>) -> ManagedResource {
        ManagedResource {
            kind: ResourceKind::Container,
            id: "id".into(),
            name: "n".into(),
            image: "i".into(),
            state: "running".into(),
            session: "s1".into(),
            pid,
            host: host.into(),
            pid_namespace: None,
            created: Some(created),
            version: "0.1.0".into(),
            pool: None,
            ttl: ttl.map(Duration::from_secs),
        }
    }

    fn probe(pid: u32) -> Process {
        match pid {
            1 => Process::Alive {
                started: Some(NOW - 10_000),
            },
            2 => Process::Alive {
                started: Some(NOW - 5),
            },
            3 => Process::Alive { started: None },
            _ => Process::Dead,
        }
    }

    fn reason(sweep: &Sweep, c: &ManagedResource) -> Option<&'static str> {
        sweep.select(c, "here", &probe, NOW).map(|r| r.code())
    }

    #[test]
    fn dead_owner_on_this_host_is_orphaned() {
        assert_eq!(
            reason(&Sweep::new(), &container("here", Some(99), NOW - 60, None)),
            Some("orphaned")
        );
    }

    #[test]
    fn live_owner_is_spared_even_when_expired() {
        let c = container("here", Some(1), NOW - 3600, Some(60));
        assert_eq!(
            reason(
                &Sweep::new().older_than(Duration::from_secs(1)).all(true),
                &c
            ),
            None
        );
        assert_eq!(reason(&Sweep::new().session("s1"), &c), Some("session"));
        assert_eq!(reason(&Sweep::new().session("other"), &c), None);
    }

    #[test]
    fn a_pid_started_after_the_container_was_reused() {
        assert_eq!(
            reason(&Sweep::new(), &container("here", Some(2), NOW - 60, None)),
            Some("pid-reused")
        );
        // Started at about the same second: the same process.
        assert_eq!(
            reason(&Sweep::new(), &container("here", Some(2), NOW - 6, None)),
            None
        );
        // Start time unknown: alive.
        assert_eq!(
            reason(&Sweep::new(), &container("here", Some(3), NOW - 60, None)),
            None
        );
    }

    #[test]
    fn same_hostname_in_another_pid_namespace_is_never_orphaned() {
        let mut c = container("here", Some(99), NOW - 60, None);
        c.pid_namespace = Some("pid:[1]".into());
        let expected = if crate::labels::pid_namespace().is_some() {
            None
        } else {
            Some("orphaned")
        };
        assert_eq!(reason(&Sweep::new(), &c), expected);
    }

    #[test]
    fn other_hosts_are_removed_only_when_expired_or_with_all() {
        let c = container("elsewhere", Some(99), NOW - 600, Some(300));
        assert_eq!(reason(&Sweep::new(), &c), Some("ttl-expired"));
        let c = container("elsewhere", Some(99), NOW - 600, None);
        assert_eq!(reason(&Sweep::new(), &c), None);
        assert_eq!(
            reason(&Sweep::new().older_than(Duration::from_secs(300)), &c),
            Some("older-than")
        );
        assert_eq!(
            reason(&Sweep::new().older_than(Duration::from_secs(900)), &c),
            None
        );
        assert_eq!(reason(&Sweep::new().all(true), &c), Some("unverifiable"));
        assert_eq!(
            reason(
                &Sweep::new().orphans_only(),
                &container("elsewhere", Some(99), NOW - 600, Some(1))
            ),
            None
        );
    }

    #[test]
    fn labels_are_parsed_and_unmanaged_containers_ignored() {
        let mut labels = HashMap::from([
            (LABEL_MANAGED.to_owned(), "true".to_owned()),
            (LABEL_SESSION.to_owned(), "abc".to_owned()),
            (LABEL_PID.to_owned(), "42".to_owned()),
            (LABEL_HOST.to_owned(), "box".to_owned()),
            (LABEL_CREATED.to_owned(), "1700000000".to_owned()),
            (LABEL_VERSION.to_owned(), "0.1.0".to_owned()),
            (LABEL_TTL.to_owned(), "600".to_owned()),
            (LABEL_POOL.to_owned(), "pg".to_owned()),
        ]);
        let summary = |labels: &HashMap<String, String>| ContainerSummary {
            id: Some("cid".into()),
            names: Some(vec!["/web-1".into()]),
            labels: Some(labels.clone()),
            ..Default::default()
        };
        let c = ManagedResource::from_summary(summary(&labels)).unwrap();
        assert_eq!(
            (c.name.as_str(), c.session.as_str(), c.pid, c.host.as_str()),
            ("web-1", "abc", Some(42), "box")
        );
        assert_eq!(
            (c.created, c.ttl, c.pool.as_deref()),
            (
                Some(1_700_000_000),
                Some(Duration::from_secs(600)),
                Some("pg")
            )
        );
        labels.insert(LABEL_MANAGED.to_owned(), "false".to_owned());
        assert!(ManagedResource::from_summary(summary(&labels)).is_none());
    }

    #[test]
    fn this_process_is_alive_and_started_in_the_past() {
        match probe_process(std::process::id()) {
            Process::Alive { started: Some(t) } => assert!(t <= now_secs() + 1),
            other => panic!("{other:?}"),
        }
        assert_eq!(probe_process(u32::MAX - 1), Process::Dead);
    }

    #[test]
    fn durations_read_like_a_human_wrote_them() {
        assert_eq!(human_duration(Duration::from_secs(45)), "45s");
        assert_eq!(human_duration(Duration::from_secs(30 * 60)), "30m");
        assert_eq!(human_duration(Duration::from_secs(5 * 3600)), "5h");
        assert_eq!(human_duration(Duration::from_secs(3 * 86_400)), "3d");
    }
}
