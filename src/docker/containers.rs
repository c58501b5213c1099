//! Container calls: create, start, stop, inspect, remove, list, logs,
//! stats, attach, and archives in and out.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, ContainerInspectResponse, ContainerSummary};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder,
    DownloadFromContainerOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, StatsOptionsBuilder, StopContainerOptionsBuilder,
    UploadToContainerOptionsBuilder,
};
use futures::StreamExt;
use futures::stream::BoxStream;

use super::call::{from_client, request, request_within};
use super::client::client;
use super::stream::stream;
use super::{Attached, Frame, policy};
use crate::error::{Error, Result};
use crate::labels;

/// Creates container `name`. Every attempt uses that name, so a retry
/// after a lost answer meets 409 "name in use": the container is then
/// ours if its label `claim.0` holds `claim.1`, a value only this create
/// wrote, and the result is still exactly one container. Returns its id.
pub(crate) async fn create_container(
    name: &str,
    body: &ContainerCreateBody,
    claim: (&str, &str),
) -> Result<String> {
    let docker = client().await?;
    let opts = CreateContainerOptionsBuilder::new().name(name).build();
    let body = &with_proof(body, name);
    let mut sent = 0u32;
    let created = request(&policy::CREATE_CONTAINER, name, || {
        sent += 1;
        docker.create_container(Some(opts.clone()), body.clone())
    })
    .await;
    match created {
        Ok(created) => Ok(created.id),
        // Only a retry can meet its own lost attempt.
        Err(e) if e.status() == Some(409) && sent > 1 => {
            let Ok(existing) = inspect_container(name, name).await else {
                return Err(e);
            };
            let labels = existing.config.as_ref().and_then(|c| c.labels.as_ref());
            match (labels.and_then(|l| l.get(claim.0)), existing.id) {
                (Some(value), Some(id)) if value == claim.1 => {
                    tracing::debug!(
                        name,
                        "dockfix: a retried create found the container its lost attempt made"
                    );
                    Ok(id)
                }
                _ => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Starts a container; already started counts as success.
pub(crate) async fn start_container(id: &str, name: &str) -> Result<()> {
    let d = client().await?;
    let p = &policy::START_CONTAINER;
    p.settle(request(p, name, || d.start_container(id, None)).await)
}

/// Stops a container: SIGTERM, then SIGKILL after `grace`. Already
/// stopped counts as success.
pub(crate) async fn stop_container(id: &str, name: &str, grace: Duration) -> Result<()> {
    let secs =
        i32::try_from(grace.as_secs() + u64::from(grace.subsec_nanos() > 0)).unwrap_or(i32::MAX);
    let opts = StopContainerOptionsBuilder::new().t(secs).build();
    let docker = client().await?;
    let p = &policy::STOP_CONTAINER;
    // The daemon answers once the container has stopped.
    p.settle(
        request_within(p, name, grace, || {
            docker.stop_container(id, Some(opts.clone()))
        })
        .await,
    )
}

/// Inspects a container, by id or name.
pub(crate) async fn inspect_container(id: &str, name: &str) -> Result<ContainerInspectResponse> {
    let d = client().await?;
    request(&policy::INSPECT_CONTAINER, name, || {
        d.inspect_container(id, None)
    })
    .await
}

/// Force-removes a container and its anonymous volumes. Already gone and
/// removal in progress count as success.
pub(crate) async fn remove_container(id: &str) -> Result<()> {
    let opts = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    let d = client().await?;
    let p = &policy::REMOVE_CONTAINER;
    p.settle(request(p, id, || d.remove_container(id, Some(opts.clone()))).await)
}

/// Every container, running or not, carrying `label` (`key` or
/// `key=value`).
pub(crate) async fn list_containers(label: &str) -> Result<Vec<ContainerSummary>> {
    let filters = HashMap::from([("label", vec![label.to_owned()])]);
    let d = client().await?;
    request(
        &policy::LIST,
        &format!("containers labelled {label}"),
        || {
            let opts = ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&filters)
                .build();
            d.list_containers(Some(opts))
        },
    )
    .await
}

/// A container's log frames: everything so far (the last `tail` lines),
/// or, with `follow`, everything until the container stops.
pub(crate) fn logs(
    id: String,
    name: String,
    follow: bool,
    tail: Option<usize>,
) -> BoxStream<'static, Result<Frame>> {
    let tail = tail.map_or_else(|| "all".to_owned(), |n| n.to_string());
    let opts = LogsOptionsBuilder::new()
        .follow(follow)
        .stdout(true)
        .stderr(true)
        .tail(&tail)
        .build();
    let p = if follow {
        &policy::FOLLOW_LOGS
    } else {
        &policy::LOGS
    };
    stream(p, name, move |d| {
        d.logs(&id, Some(opts)).map(|f| f.map(Frame::from))
    })
}

/// One stats sample of a running container.
pub(crate) async fn stats_once(
    id: &str,
    name: &str,
) -> Result<bollard::models::ContainerStatsResponse> {
    let id = id.to_owned();
    let opts = StatsOptionsBuilder::new().stream(false).build();
    let mut samples = stream(&policy::STATS, name.to_owned(), move |d| {
        d.stats(&id, Some(opts))
    });
    match samples.next().await {
        Some(sample) => sample,
        None => Err(Error::docker("stats", name, "the daemon sent no sample")),
    }
}

/// Attaches to a container's stdin (and output), before it starts.
pub(crate) async fn attach(id: &str, name: &str) -> Result<Attached> {
    let opts = AttachContainerOptionsBuilder::new()
        .stdin(true)
        .stream(true)
        .build();
    let d = client().await?;
    let attached = request(&policy::ATTACH, name, || {
        d.attach_container(id, Some(opts.clone()))
    })
    .await?;
    let name = name.to_owned();
    Ok(Attached {
        output: attached
            .output
            .map(move |f| {
                f.map(Frame::from)
                    .map_err(|e| from_client("attach", &name, e))
            })
            .boxed(),
        input: attached.input,
    })
}

/// Unpacks the tar `archive` into directory `dir` of a container
/// (running or only created).
pub(crate) async fn upload(id: &str, name: &str, dir: &str, archive: bytes::Bytes) -> Result<()> {
    let opts = UploadToContainerOptionsBuilder::new().path(dir).build();
    let d = client().await?;
    request(&policy::UPLOAD, name, || {
        d.upload_to_container(id, Some(opts.clone()), bollard::body_full(archive.clone()))
    })
    .await
}

/// A tar archive of `path` (a file or a directory) in a container.
pub(crate) async fn download(id: &str, name: &str, path: &str) -> Result<Vec<u8>> {
    let opts = DownloadFromContainerOptionsBuilder::new()
        .path(path)
        .build();
    let id = id.to_owned();
    let mut chunks = stream(&policy::DOWNLOAD, format!("{name}:{path}"), move |d| {
        d.download_from_container(&id, Some(opts))
    });
    let mut archive = Vec::new();
    while let Some(chunk) = chunks.next().await {
        archive.extend_from_slice(&chunk?);
    }
    Ok(archive)
}

/// `body` with the proof of ownership.
fn with_proof(body: &ContainerCreateBody, name: &str) -> ContainerCreateBody {
    let mut body = body.clone();
    if let Some(labels) = body.labels.as_mut() {
        labels::add_proof(labels, name);
    }
    body
}
