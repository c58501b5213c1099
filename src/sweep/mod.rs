//! Finding and removing the containers (and labelled networks, volumes
//! and images) that a killed run left behind.
//!
//! Drop and the exit hook cannot run when a test process is SIGKILLed, a CI
//! job is cancelled, or the process aborts. Its containers stay, labelled.
//! A [`Sweep`] finds them again by label ([`ManagedResource`]), decides
//! from the owner labels whether their owner is provably gone ([`owner`]),
//! selects ([`select`]) and removes them ([`remove`]), gathering every
//! failure instead of stopping at the first.

use std::collections::HashMap;
use std::time::Duration;

use crate::docker::{self, ContainerSummary, containers, images, networks};
use crate::error::{Error, Result};
use crate::labels::{
    self, LABEL_CREATED, LABEL_HOST, LABEL_MANAGED, LABEL_PID, LABEL_PIDNS, LABEL_POOL,
    LABEL_SESSION, LABEL_TTL, LABEL_VERSION, ResourceKind,
};

pub(crate) mod owner;
mod remove;
mod select;

pub use owner::Owner;
pub(crate) use remove::reap_on_first_start;
pub use select::SweepReason;

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
    /// `dockfix.machine`: the owner machine's id (absent on resources of
    /// earlier versions).
    pub machine: Option<String>,
    /// `dockfix.boot`: the boot the owner process ran in.
    pub boot: Option<String>,
    /// `dockfix.start`: the owner process's start, in clock ticks since
    /// boot.
    pub start_ticks: Option<u64>,
}

impl ManagedResource {
    /// A container's summary, if it carries `dockfix.managed=true`.
    pub(crate) fn from_summary(s: ContainerSummary) -> Option<Self> {
        let name = s
            .names
            .and_then(|n| n.into_iter().next())
            .map(|n| n.trim_start_matches('/').to_owned())
            .unwrap_or_default();
        Self::from_labels(
            ResourceKind::Container,
            s.id?,
            name,
            s.image.as_deref().unwrap_or_default(),
            &s.state.map(|s| s.to_string()).unwrap_or_default(),
            s.labels.unwrap_or_default(),
        )
    }

    fn from_labels(
        kind: ResourceKind,
        id: String,
        name: String,
        image: &str,
        state: &str,
        labels: HashMap<String, String>,
    ) -> Option<Self> {
        // Only what carries its own name as proof: labels an image passed
        // on to a container someone else made name another object.
        if !labels::proves(&labels, &name) {
            return None;
        }
        let get = |k: &str| labels.get(k).cloned().unwrap_or_default();
        Some(ManagedResource {
            kind,
            id,
            name,
            image: image.to_owned(),
            state: state.to_owned(),
            session: get(LABEL_SESSION),
            pid: labels.get(LABEL_PID).and_then(|p| p.parse().ok()),
            host: get(LABEL_HOST),
            pid_namespace: labels.get(LABEL_PIDNS).cloned(),
            created: labels.get(LABEL_CREATED).and_then(|c| c.parse().ok()),
            version: get(LABEL_VERSION),
            pool: labels.get(LABEL_POOL).cloned(),
            ttl: labels
                .get(LABEL_TTL)
                .and_then(|t| t.parse::<u64>().ok())
                .map(Duration::from_secs),
            machine: labels.get(labels::LABEL_MACHINE).cloned(),
            boot: labels.get(labels::LABEL_BOOT).cloned(),
            start_ticks: labels.get(labels::LABEL_START).and_then(|t| t.parse().ok()),
        })
    }

    /// Its age from `dockfix.created`, if that label is readable.
    pub fn age(&self) -> Option<Duration> {
        self.created
            .map(|c| Duration::from_secs(owner::now_secs().saturating_sub(c)))
    }

    /// What can be told about its owner process from this machine.
    pub fn owner(&self) -> Owner {
        owner::owner_of(self, owner::Here::get(), &owner::probe_process)
    }
}

/// Finds and removes leaked managed containers.
///
/// # Which containers it selects
///
/// Only containers, networks and volumes labelled `dockfix.managed=true`
/// and carrying their own name in `dockfix.name` (the proof that dockfix
/// made them, which an image cannot pass on)
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
///     println!("removed {} {} ({})", c.resource.kind, c.resource.name, c.reason);
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

/// A container, network, volume or image a sweep selected, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SweepCandidate {
    /// What was selected.
    pub resource: ManagedResource,
    /// Why it was selected.
    pub reason: SweepReason,
}

/// What a sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
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
    /// nothing else. An empty id is refused when the sweep runs: it would
    /// name every container that has no session label.
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

    /// The containers this sweep would remove, and why.
    ///
    /// # Errors
    ///
    /// [`Error::DockerUnavailable`](crate::error::Error::DockerUnavailable) or
    /// [`Error::Docker`](crate::error::Error::Docker) if the containers
    /// cannot be listed.
    pub async fn plan(&self) -> Result<Vec<SweepCandidate>> {
        let sweep = self.clone();
        docker::run(async move { sweep.plan_on_engine().await }).await
    }

    async fn plan_on_engine(&self) -> Result<Vec<SweepCandidate>> {
        let now = owner::now_secs();
        let all = list_on_engine(self.images).await?;
        let here = owner::Here::get();
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
                let reason = self.select(&c, here, &owner::probe_process, now)?;
                Some(SweepCandidate {
                    resource: c,
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
    /// [`Error::InvalidSpec`](crate::Error::InvalidSpec) for an empty
    /// session id; otherwise only when the containers cannot be listed (a
    /// failed removal is in [`SweepReport::failed`]).
    pub async fn run(self) -> Result<SweepReport> {
        if let Some(session) = &self.session {
            if session.trim().is_empty() {
                return Err(Error::invalid(
                    "session",
                    session.as_str(),
                    "an empty session id would name every container without one; give the id `dockfix ls` shows",
                ));
            }
        }
        docker::run(async move { self.run_on_engine().await }).await
    }
}

/// Every container, network and volume labelled `dockfix.managed=true`,
/// with its owner labels: containers first, oldest first.
///
/// # Errors
///
/// [`Error::DockerUnavailable`](crate::Error::DockerUnavailable) or
/// [`Error::Docker`](crate::Error::Docker) if the daemon cannot list them.
pub async fn list_managed() -> Result<Vec<ManagedResource>> {
    docker::run(list_on_engine(false)).await
}

async fn list_on_engine(images: bool) -> Result<Vec<ManagedResource>> {
    let managed = format!("{LABEL_MANAGED}=true");
    let mut all: Vec<ManagedResource> = containers::list_containers(&managed)
        .await?
        .into_iter()
        .filter_map(ManagedResource::from_summary)
        .collect();
    all.extend(
        networks::list_networks(&managed)
            .await?
            .into_iter()
            .filter_map(|n| {
                let name = n.name.unwrap_or_default();
                let id = n.id.unwrap_or_else(|| name.clone());
                let labels = n.labels.unwrap_or_default();
                ManagedResource::from_labels(ResourceKind::Network, id, name, "", "", labels)
            }),
    );
    all.extend(
        networks::list_volumes(&managed)
            .await?
            .into_iter()
            .filter_map(|v| {
                let id = v.name.clone();
                ManagedResource::from_labels(ResourceKind::Volume, id, v.name, "", "", v.labels)
            }),
    );
    if images {
        // Images carry their labels under the image prefix (earlier
        // versions: `dockfix.` itself); the proof is the image's own tag.
        let mut found =
            images::list_images(&format!("{}managed=true", labels::IMAGE_PREFIX)).await?;
        found.extend(images::list_images(&managed).await?);
        found.sort_by(|a, b| a.id.cmp(&b.id));
        found.dedup_by(|a, b| a.id == b.id);
        all.extend(found.into_iter().filter_map(|i| {
            let labels = labels::from_image_labels(i.labels);
            let proof = labels.get(labels::LABEL_NAME).cloned().unwrap_or_default();
            let name = if i.repo_tags.contains(&proof) {
                proof
            } else {
                i.repo_tags.first().cloned().unwrap_or_else(|| i.id.clone())
            };
            ManagedResource::from_labels(ResourceKind::Image, i.id, name, "", "", labels)
        }));
    }
    all.sort_by(|a, b| (a.kind, a.created, &a.name).cmp(&(b.kind, b.created, &b.name)));
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            (labels::LABEL_NAME.to_owned(), "web-1".to_owned()),
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
        // Labels an image passed on name another container: not ours.
        labels.insert(labels::LABEL_NAME.to_owned(), "builder-7".to_owned());
        assert!(ManagedResource::from_summary(summary(&labels)).is_none());
        labels.insert(labels::LABEL_NAME.to_owned(), "web-1".to_owned());
        labels.insert(LABEL_MANAGED.to_owned(), "false".to_owned());
        assert!(ManagedResource::from_summary(summary(&labels)).is_none());
    }
}
