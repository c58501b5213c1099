//! `Network`: a labelled user-defined network that containers join with
//! aliases, removed after its containers.

use std::time::Duration;

use bollard::models::NetworkCreateRequest;

use crate::engine;
use crate::error::{Error, Result};
use crate::retry::{self, Retry};

/// A user-defined bridge network for a test, removed when the guard goes.
///
/// Containers join it with [`ContainerSpec::network`](crate::ContainerSpec::network)
/// and reach each other by their aliases. It carries the owner labels, so
/// `dockfix sweep` finds it after a killed run.
///
/// Dropping the guard hands the removal to the engine: while containers
/// are still attached (a guard dropped before its containers), the removal
/// waits for them, up to `DOCKFIX_REMOVE_DEADLINE`, so the order in which
/// guards go does not matter.
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
    /// [`Error::DockerUnavailable`] or [`Error::Docker`] if the daemon
    /// cannot create it.
    pub async fn new() -> Result<Network> {
        use rand::Rng;
        let name = format!("dockfix-net-{:08x}", rand::rng().random::<u32>());
        let created_name = name.clone();
        let id = engine::run(async move {
            let docker = engine::docker().await?;
            let request = NetworkCreateRequest {
                name: created_name.clone(),
                driver: Some("bridge".to_owned()),
                labels: Some(crate::labels::owner_labels(&Default::default(), None, None)),
                ..Default::default()
            };
            retry::call("create network", &created_name, Retry::No, None, || {
                docker.create_network(request.clone())
            })
            .await
            .map(|r| r.id)
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

    /// Removes the network now, waiting (bounded) for attached containers
    /// to go first.
    ///
    /// # Errors
    ///
    /// [`Error::CleanupFailed`] if it could not be removed; it stays
    /// labelled for `dockfix sweep`.
    pub async fn remove(mut self) -> Result<()> {
        self.armed = false;
        let (id, name) = (self.id.clone(), self.name.clone());
        engine::run(async move { remove_when_free(&id, &name).await }).await
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        if !std::mem::take(&mut self.armed) {
            return;
        }
        let (id, name) = (self.id.clone(), self.name.clone());
        let Ok(engine) = engine::get() else {
            return;
        };
        let removal = engine::track_removal(&id, &name);
        engine.spawn(async move {
            let _removal = removal;
            if let Err(e) = remove_when_free(&id, &name).await {
                engine::warn(format_args!("{e}; it stays labelled for `dockfix sweep`"));
            }
        });
    }
}

/// Removes network `id`, retrying while containers are still attached
/// (403/409 "active endpoints") until the removal deadline.
pub(crate) async fn remove_when_free(id: &str, name: &str) -> Result<()> {
    let docker = engine::docker().await?;
    let deadline = engine::deadline_in(engine::remove_deadline());
    loop {
        let removed = retry::call("remove network", name, Retry::Yes, None, || {
            docker.remove_network(id)
        })
        .await;
        match removed {
            Ok(()) => return Ok(()),
            Err(e) if e.status() == Some(404) => return Ok(()),
            Err(e)
                if matches!(e.status(), Some(403 | 409))
                    && std::time::Instant::now() < deadline =>
            {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                return Err(Error::CleanupFailed {
                    container: format!("network {name}"),
                    message: e.to_string(),
                });
            }
        }
    }
}
