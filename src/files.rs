//! Copying files and directories into and out of containers, as tar
//! archives through the Engine API.

use std::path::Path;

use bollard::Docker;
use bollard::query_parameters::{
    DownloadFromContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use futures::StreamExt;

use crate::error::{Error, Result};
use crate::retry::{self, Retry};

fn copy_error(
    container: &str,
    path: impl std::fmt::Display,
    message: impl std::fmt::Display,
) -> Error {
    Error::Copy {
        container: container.to_owned(),
        path: path.to_string(),
        message: message.to_string(),
    }
}

/// A tar archive of `host` (a file, or a directory with everything in
/// it), under its own name, with modes kept.
fn pack(host: &Path) -> std::io::Result<Vec<u8>> {
    let name = host.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path has no name")
    })?;
    let mut archive = tar::Builder::new(Vec::new());
    archive.follow_symlinks(false);
    if host.is_dir() {
        archive.append_dir_all(name, host)?;
    } else {
        archive.append_path_with_name(host, name)?;
    }
    archive.into_inner()
}

/// A tar archive of what is inside directory `dir` (not `dir` itself):
/// a build context.
pub(crate) fn pack_contents(dir: &Path) -> std::io::Result<Vec<u8>> {
    let mut archive = tar::Builder::new(Vec::new());
    archive.follow_symlinks(false);
    archive.append_dir_all(".", dir)?;
    archive.into_inner()
}

/// Puts `host` into the existing directory `container_dir` of container
/// `id` (running or only created), under its own name.
pub(crate) async fn upload(
    docker: &Docker,
    id: &str,
    name: &str,
    host: &Path,
    container_dir: &str,
) -> Result<()> {
    let shown = host.display().to_string();
    let host = host.to_owned();
    let archive = tokio::task::spawn_blocking(move || pack(&host))
        .await
        .map_err(|e| copy_error(name, &shown, e))?
        .map_err(|e| copy_error(name, &shown, e))?;
    let archive = bytes::Bytes::from(archive);
    let opts = UploadToContainerOptionsBuilder::new()
        .path(container_dir)
        .build();
    retry::call("copy in", name, Retry::Yes, None, || {
        docker.upload_to_container(id, Some(opts.clone()), bollard::body_full(archive.clone()))
    })
    .await
}

/// Fetches `container_path` (a file or a directory) from container `id`
/// into the existing directory `host_dir`, under its own name.
pub(crate) async fn download(
    docker: &Docker,
    id: &str,
    name: &str,
    container_path: &str,
    host_dir: &Path,
) -> Result<()> {
    retry::gate()?;
    let opts = DownloadFromContainerOptionsBuilder::new()
        .path(container_path)
        .build();
    let mut stream = docker.download_from_container(id, Some(opts));
    let mut archive = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| Error::docker("copy out", format!("{name}:{container_path}"), e))?;
        archive.extend_from_slice(&chunk);
    }
    let host_dir = host_dir.to_owned();
    let shown = host_dir.display().to_string();
    tokio::task::spawn_blocking(move || {
        let mut archive = tar::Archive::new(archive.as_slice());
        archive.set_preserve_permissions(true);
        archive.unpack(&host_dir)
    })
    .await
    .map_err(|e| copy_error(name, &shown, e))?
    .map_err(|e| copy_error(name, &shown, e))
}
