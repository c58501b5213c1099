//! Image calls: inspect, pull, build, import, remove, list.

use std::collections::HashMap;

use bollard::auth::DockerCredentials;
use bollard::models::{BuildInfo, CreateImageInfo, ImageInspect, ImageSummary};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateImageOptionsBuilder, ListImagesOptionsBuilder,
    RemoveImageOptions,
};
use futures::StreamExt;
use futures::stream::BoxStream;

use super::call::request;
use super::client::client;
use super::policy;
use super::stream::stream;
use crate::error::Result;

/// A registry login, as the Docker CLI's config holds it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct RegistryAuth {
    pub(crate) username: String,
    pub(crate) password: String,
    /// The registry, as the config keys it.
    pub(crate) server: String,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// Inspects an image.
pub(crate) async fn inspect_image(image: &str) -> Result<ImageInspect> {
    let d = client().await?;
    request(&policy::INSPECT_IMAGE, image, || d.inspect_image(image)).await
}

/// Pulls `repo` at `tag` (or the digest `repo` carries): its progress
/// events.
pub(crate) fn pull(
    image: &str,
    repo: &str,
    tag: Option<&str>,
    auth: Option<RegistryAuth>,
) -> BoxStream<'static, Result<CreateImageInfo>> {
    let mut opts = CreateImageOptionsBuilder::new().from_image(repo);
    if let Some(tag) = tag {
        opts = opts.tag(tag);
    }
    let opts = opts.build();
    let credentials = auth.map(|a| DockerCredentials {
        username: Some(a.username),
        password: Some(a.password),
        serveraddress: Some(a.server),
        ..Default::default()
    });
    stream(&policy::PULL, image.to_owned(), move |d| {
        d.create_image(Some(opts), None, credentials)
    })
}

/// Builds the tar'd `context` as `tag`, with `labels`: the builder's
/// steps.
pub(crate) fn build(
    tag: &str,
    labels: HashMap<String, String>,
    context: Vec<u8>,
) -> BoxStream<'static, Result<BuildInfo>> {
    let opts = BuildImageOptionsBuilder::new()
        .t(tag)
        .rm(true)
        .labels(&labels)
        .build();
    stream(&policy::BUILD, tag.to_owned(), move |d| {
        // The client's build stream borrows the client: a task of its own
        // holds both and hands the steps over.
        let docker = d.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let mut steps =
                docker.build_image(opts, None, Some(bollard::body_full(context.into())));
            while let Some(step) = steps.next().await {
                if tx.send(step).await.is_err() {
                    break;
                }
            }
        });
        futures::stream::unfold(rx, |mut rx| async move { Some((rx.recv().await?, rx)) })
    })
}

/// Imports the root filesystem tar `rootfs` as `repo:tag`, with Dockerfile
/// `changes` applied.
pub(crate) fn import(
    repo: &str,
    tag: &str,
    changes: Vec<String>,
    rootfs: Vec<u8>,
) -> BoxStream<'static, Result<CreateImageInfo>> {
    // The tag goes with the repository, as the Docker CLI sends it: Podman
    // ignores a separate `tag`.
    let reference = format!("{repo}:{tag}");
    let opts = CreateImageOptionsBuilder::new()
        .from_src("-")
        .repo(&reference)
        .changes(changes)
        .build();
    stream(&policy::IMPORT, format!("{repo}:{tag}"), move |d| {
        d.create_image(Some(opts), Some(bollard::body_full(rootfs.into())), None)
    })
}

/// Removes an image; already gone counts as success.
pub(crate) async fn remove_image(image: &str) -> Result<()> {
    let d = client().await?;
    let p = &policy::REMOVE_IMAGE;
    p.settle(
        request(p, image, || {
            d.remove_image(image, None::<RemoveImageOptions>, None)
        })
        .await
        .map(drop),
    )
}

/// Every image carrying `label`.
pub(crate) async fn list_images(label: &str) -> Result<Vec<ImageSummary>> {
    let filters = HashMap::from([("label", vec![label.to_owned()])]);
    let d = client().await?;
    request(&policy::LIST, &format!("images labelled {label}"), || {
        d.list_images(Some(
            ListImagesOptionsBuilder::new().filters(&filters).build(),
        ))
    })
    .await
}
