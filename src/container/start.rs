//! Starting a container: create (pulling once if needed), copy files in,
//! start, and wait for readiness, with the guard owning the container
//! from the moment it exists.

use std::collections::HashMap;

use super::{TestContainer, anchor, create, files, logs, ready};
use crate::cleanup;
use crate::config;
use crate::docker::{self, ContainerCreateBody, ContainerInspectResponse, containers};
use crate::error::{Error, Result};
use crate::spec::ContainerSpec;

/// How many log lines an [`Error::NotReady`] carries.
const LOG_TAIL: usize = 20;

impl ContainerSpec {
    /// Creates the container, starts it, and waits until it is running and
    /// every [`wait_for`](ContainerSpec::wait_for) condition holds.
    ///
    /// Runs on dockfix's engine runtime, so it works from any async runtime.
    /// If the image is missing it is pulled once.
    ///
    /// # Errors
    ///
    /// - [`Error::InvalidSpec`] before any Docker call if a value was refused;
    /// - [`Error::ImageNotFound`] if the image is missing and cannot be pulled;
    /// - [`Error::DockerUnavailable`] if the daemon cannot be reached;
    /// - [`Error::NotReady`] with the log tail if the container exited or
    ///   readiness timed out (the container is removed first);
    /// - [`Error::Docker`] for any other refusal by the daemon.
    pub async fn start(self) -> Result<TestContainer> {
        let body = self.create_body()?;
        crate::sweep::reap_on_first_start();
        // Taken before the task is spawned, so the exit hook cannot miss a
        // start whose caller gave up just before the process exits.
        let starting = cleanup::track_start();
        docker::run(async move {
            let _starting = starting;
            start_on_engine(self, body).await
        })
        .await
    }
}

async fn start_on_engine(
    spec: ContainerSpec,
    mut body: ContainerCreateBody,
) -> Result<TestContainer> {
    if spec.remove_on_kill && !config::env().keep {
        let anchor = anchor::anchor(&spec.image).await?;
        anchor::tie(&mut body, &anchor);
    }
    let name = spec.fresh_name();
    let created = create::create(
        &name,
        &spec.image,
        &body,
        spec.pull_policy,
        spec.pull_progress.as_ref(),
    )
    .await;
    let id = match created {
        Ok(id) => id,
        Err(e) => {
            // A create that failed without a clear refusal (a timeout, a
            // lost answer) may still have happened on the daemon: remove
            // the name, which is this start's own (404 is fine).
            let unclear = matches!(&e, Error::Docker { status, .. } if status.is_none_or(|s| s >= 500))
                || matches!(e, Error::CircuitOpen { .. });
            if unclear && spec.shared_name.is_none() {
                cleanup::remove_in_background(name.clone(), name, false);
            }
            return Err(e);
        }
    };
    // From here on the guard owns the container: any early return, or the
    // caller giving up on this task, drops it and so removes the container.
    let mut guard = TestContainer::owned(id, name, spec.image.clone(), spec.wait_on_drop);
    for (host, dir) in &spec.copies {
        if let Err(e) = files::upload(&guard.id, &guard.name, host, dir).await {
            guard.discard().await;
            return Err(e);
        }
    }
    let deadline = docker::deadline_in(spec.startup_timeout);
    if let Err(e) = containers::start_container(&guard.id, &guard.name).await {
        guard.discard().await;
        return Err(e);
    }
    let info = match containers::inspect_container(&guard.id, &guard.name).await {
        Ok(info) => info,
        Err(e) => {
            guard.discard().await;
            return Err(e);
        }
    };
    guard.ports = published_ports(&info);
    let ready = match ready::running_or_failure(&info) {
        Ok(()) if spec.wait_for.is_empty() => Ok(()),
        Ok(()) => ready::wait_all(&guard, &spec.wait_for, deadline, spec.startup_timeout).await,
        Err(f) => Err(f),
    };
    if let Err(failure) = ready {
        let logs = logs::tail_text(&guard.id, &guard.name, LOG_TAIL).await;
        let err = Error::NotReady {
            container: guard.name.clone(),
            condition: failure.condition,
            reason: failure.reason,
            logs,
        };
        guard.discard().await;
        return Err(err);
    }
    Ok(guard)
}

/// Container TCP port → host port, from inspect.
pub(crate) fn published_ports(info: &ContainerInspectResponse) -> HashMap<u16, u16> {
    let mut ports = HashMap::new();
    let map = info
        .network_settings
        .as_ref()
        .and_then(|n| n.ports.as_ref());
    for (key, bindings) in map.into_iter().flatten() {
        let Some(port) = key.strip_suffix("/tcp").and_then(|p| p.parse::<u16>().ok()) else {
            continue;
        };
        let host = bindings
            .iter()
            .flatten()
            .filter_map(|b| b.host_port.as_deref()?.parse::<u16>().ok())
            .next();
        if let Some(host) = host {
            ports.insert(port, host);
        }
    }
    ports
}
