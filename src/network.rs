//! `Network`: a labelled user-defined network that containers join with
//! aliases, removed after its containers.

use std::time::Duration;

use crate::cleanup;
use crate::config;
use crate::container::TestContainer;
use crate::docker::{self, networks};
use crate::error::Result;
use crate::labels::{self, ResourceKind};
use crate::spec::ContainerSpec;

/// A user-defined bridge network for a test, removed when the guard goes.
///
/// Containers join it with [`ContainerSpec::network`](crate::ContainerSpec::network)
/// and reach each other by their aliases. It carries the owner labels, so
/// `dockfix sweep` finds it after a killed run.
///
/// Dropping the guard hands the removal to the engine: while containers
/// are still attached (a guard dropped before its containers), the removal
/// waits for them, up to `DOCKFIX_REMOVE_DEADLINE`, so the order in which
/// guards go does not matter. [`keep`](Network::keep) and `DOCKFIX_KEEP=1`
/// leave it in place, with the containers kept on it.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> dockfix::Result<()> {
/// use dockfix::{ContainerSpec, Network};
///
/// let net = Network::new().await?;
/// let _db = ContainerSpec::new("dockfix-test/busybox:latest")
///     .cmd(["sleep", "300"])
///     .network(&net, ["db"])
///     .start()
///     .await?;
/// let app = ContainerSpec::new("dockfix-test/busybox:latest")
///     .cmd(["sleep", "300"])
///     .network(&net, ["app"])
///     .start()
///     .await?;
/// app.exec_ok(["ping", "-c", "1", "db"]).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "dropping the guard removes the network"]
pub struct Network {
    id: String,
    name: String,
    armed: bool,
}

impl Network {
    /// Creates a bridge network named `dockfix-net-<random>`.
    ///
    /// # Errors
    ///
    /// [`Error::DockerUnavailable`](crate::error::Error::DockerUnavailable) or [`Error::Docker`](crate::error::Error::Docker) if the daemon
    /// cannot create it.
    pub async fn new() -> Result<Network> {
        use rand::Rng;
        let name = format!("dockfix-net-{:08x}", rand::rng().random::<u32>());
        let created_name = name.clone();
        let id = docker::run(async move {
            let labels = labels::owner_labels(&Default::default(), None, None);
            networks::create_network(&created_name, labels).await
        })
        .await?;
        Ok(Network {
            id,
            name,
            armed: true,
        })
    }

    /// The network's name, which containers use to join it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The network's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Connects the running `container` to this network under `aliases`,
    /// by which the other containers on it reach it; it stays on the
    /// networks it had. For a container started before the network, or
    /// one that must sit on two networks.
    ///
    /// # Errors
    ///
    /// [`Error::Docker`](crate::error::Error::Docker) if the daemon refuses
    /// (403: already on this network, or its network mode allows no
    /// other network; 404: no such container).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> dockfix::Result<()> {
    /// use dockfix::{ContainerSpec, Network};
    ///
    /// let db = ContainerSpec::new("dockfix-test/busybox:latest")
    ///     .cmd(["sleep", "300"])
    ///     .start()
    ///     .await?;
    /// let net = Network::new().await?;
    /// net.connect(&db, ["db"]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect<I, S>(&self, container: &TestContainer, aliases: I) -> Result<()>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let aliases: Vec<String> = aliases.into_iter().map(Into::into).collect();
        if let Some(bad) = aliases.iter().find(|a| !crate::spec::is_alias(a)) {
            return Err(crate::error::Error::invalid(
                "network",
                bad.as_str(),
                "an alias is a hostname: letters, digits, `-`, `.`, `_`",
            ));
        }
        let (id, name, target) = (
            self.id.clone(),
            self.name.clone(),
            container.id().to_owned(),
        );
        docker::run(async move { networks::connect_network(&id, &name, &target, &aliases).await })
            .await
    }

    /// Leaves the network in place after the guard is gone, for debugging
    /// (as `DOCKFIX_KEEP=1` does for every guard), and returns its id. It
    /// keeps its labels, so `dockfix sweep` can remove it later.
    #[must_use = "the id is the only handle left on the kept network"]
    pub fn keep(mut self) -> String {
        self.armed = false;
        std::mem::take(&mut self.id)
    }

    /// Removes the network now, waiting (bounded) for attached containers
    /// to go first.
    ///
    /// # Errors
    ///
    /// [`Error::CleanupFailed`](crate::error::Error::CleanupFailed) if it could not be removed; it stays
    /// labelled for `dockfix sweep`.
    pub async fn remove(mut self) -> Result<()> {
        self.armed = false;
        let (id, name) = (self.id.clone(), self.name.clone());
        docker::run(async move { remove_when_free(&id, &name).await }).await
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        if !std::mem::take(&mut self.armed) {
            return;
        }
        if config::env().keep {
            crate::error::warn(format_args!(
                "keeping network {} ({}) because DOCKFIX_KEEP is set",
                self.name, self.id
            ));
            return;
        }
        let (id, name) = (self.id.clone(), self.name.clone());
        let removal = cleanup::track_removal(&id, &name);
        cleanup::finish_in_background(removal, async move { remove_when_free(&id, &name).await });
    }
}

/// Removes network `id`, retrying while containers are still attached
/// (403/409 "active endpoints") until the removal deadline.
async fn remove_when_free(id: &str, name: &str) -> Result<()> {
    let deadline = docker::deadline_in(config::env().remove_deadline);
    loop {
        match networks::remove_network(id, name).await {
            Ok(()) => return Ok(()),
            Err(e)
                if matches!(e.status(), Some(403 | 409))
                    && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(cleanup::cleanup_failed(ResourceKind::Network, name, e)),
        }
    }
}

impl ContainerSpec {
    /// Joins `network` (created with [`Network::new`]) under these
    /// aliases, by which other containers on it reach this one. Sets the
    /// network mode to the network.
    pub fn network<I, S>(self, network: &Network, aliases: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.network_named(network.name(), aliases)
    }
}
