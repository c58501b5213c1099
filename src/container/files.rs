//! Copying files and directories into and out of containers, as tar
//! archives through the Engine API.

use std::path::Path;

use super::TestContainer;
use crate::archive;
use crate::docker::{self, containers};
use crate::error::{Error, Result};
use crate::spec::container_path;

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

/// Puts `host` into the existing directory `container_dir` of container
/// `id` (running or only created), under its own name.
pub(crate) async fn upload(id: &str, name: &str, host: &Path, container_dir: &str) -> Result<()> {
    let shown = host.display().to_string();
    let host = host.to_owned();
    let archive = tokio::task::spawn_blocking(move || archive::pack(&host))
        .await
        .map_err(|e| copy_error(name, &shown, e))?
        .map_err(|e| copy_error(name, &shown, e))?;
    containers::upload(id, name, container_dir, bytes::Bytes::from(archive)).await
}

/// Fetches `container_path` (a file or a directory) from container `id`
/// into the existing directory `host_dir`, under its own name.
async fn download(id: &str, name: &str, container_path: &str, host_dir: &Path) -> Result<()> {
    let archive = containers::download(id, name, container_path).await?;
    let host_dir = host_dir.to_owned();
    let shown = host_dir.display().to_string();
    tokio::task::spawn_blocking(move || archive::unpack(&archive, &host_dir))
        .await
        .map_err(|e| copy_error(name, &shown, e))?
        .map_err(|e| copy_error(name, &shown, e))
}

impl TestContainer {
    /// Copies `host` (a file, or a directory and everything in it) into the
    /// existing directory `container_dir`, under its own name, keeping
    /// modes.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSpec`] if `container_dir` is not an absolute path;
    /// [`Error::Copy`] if `host` cannot be read; [`Error::Docker`] if the
    /// daemon refuses (404: `container_dir` does not exist).
    pub async fn copy_in(&self, host: impl AsRef<Path>, container_dir: &str) -> Result<()> {
        let (id, name) = (self.id().to_owned(), self.name().to_owned());
        let dir = container_path(container_dir)
            .map_err(|reason| Error::invalid("copy_in", container_dir, reason))?;
        let host = host.as_ref().to_owned();
        docker::run(async move { upload(&id, &name, &host, &dir).await }).await
    }

    /// Copies the absolute `path` (a file or a directory) into the existing
    /// host directory `host_dir`, under its own name, keeping modes.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSpec`] if `path` is not an absolute path;
    /// [`Error::Docker`] if the daemon refuses (404: no such path);
    /// [`Error::Copy`] if the files cannot be written.
    pub async fn copy_out(&self, path: &str, host_dir: impl AsRef<Path>) -> Result<()> {
        let (id, name) = (self.id().to_owned(), self.name().to_owned());
        let path =
            container_path(path).map_err(|reason| Error::invalid("copy_out", path, reason))?;
        let dir = host_dir.as_ref().to_owned();
        docker::run(async move { download(&id, &name, &path, &dir).await }).await
    }
}
