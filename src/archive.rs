//! Tar archives of host files, as the Engine API takes and gives them:
//! pure I/O on this machine, no Docker call.

use std::path::Path;

/// A tar archive of `host` (a file, or a directory with everything in
/// it), under its own name, with modes kept.
pub(crate) fn pack(host: &Path) -> std::io::Result<Vec<u8>> {
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

/// Unpacks `archive` into the existing directory `dir`, keeping modes.
pub(crate) fn unpack(archive: &[u8], dir: &Path) -> std::io::Result<()> {
    let mut archive = tar::Archive::new(archive);
    archive.set_preserve_permissions(true);
    archive.unpack(dir)
}
