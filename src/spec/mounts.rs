//! What a container sees of the host's files: bind mounts, tmpfs mounts,
//! and files copied in before start.

use std::path::{Path, PathBuf};

use super::ContainerSpec;
use super::checks::{
    DOCKER_FILES, container_path, hands_over_the_host, mount_point, no_nul, tmpfs_options,
    warn_once,
};
use crate::error::{Error, Result};

/// A validated bind mount: a host path mounted at a container path.
///
/// Parse one from Docker's `host:container[:options]` form with
/// [`BindMount::parse`], or build one with [`ContainerSpec::bind`] and
/// [`ContainerSpec::bind_ro`].
///
/// # Examples
///
/// ```
/// let m = dockfix::BindMount::parse("/tmp:/data:ro,Z")?;
/// assert_eq!(m.container_path(), "/data");
/// assert!(m.is_read_only());
/// # Ok::<(), dockfix::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    host: PathBuf,
    container: String,
    options: Vec<String>,
}

const PROPAGATION: [&str; 6] = [
    "private", "rprivate", "shared", "rshared", "slave", "rslave",
];

impl BindMount {
    /// Parses `host:container[:options]`, where options is a comma-separated
    /// list from `ro`, `rw`, `z`, `Z` and one propagation mode (`private`,
    /// `rprivate`, `shared`, `rshared`, `slave`, `rslave`).
    ///
    /// The host path is checked (it must exist) when the container starts,
    /// unless [`ContainerSpec::check_host_paths`] turned that off.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSpec`] naming the value when the form, the container
    /// path or an option is wrong.
    pub fn parse(spec: &str) -> Result<Self> {
        let parts: Vec<&str> = spec.split(':').collect();
        let (host, container, options) = match parts.as_slice() {
            [h, c] => (*h, *c, ""),
            [h, c, o] => (*h, *c, *o),
            _ => {
                return Err(Error::invalid(
                    "bind",
                    spec,
                    "expected `host:container[:options]` (a host path with `:` cannot be bind-mounted)",
                ));
            }
        };
        let options = if options.is_empty() {
            Vec::new()
        } else {
            options.split(',').map(str::to_owned).collect()
        };
        Self::new(host, container, options).map_err(|reason| Error::invalid("bind", spec, reason))
    }

    fn new(host: &str, container: &str, options: Vec<String>) -> std::result::Result<Self, String> {
        if host.is_empty() {
            return Err("the host path is empty".into());
        }
        no_nul(host).map_err(|reason| format!("host path {reason}"))?;
        if host.contains(':') {
            return Err(format!(
                "host path `{host}` contains `:`, which Docker's bind syntax cannot carry"
            ));
        }
        if container.contains(':') {
            return Err(format!("container path `{container}` contains `:`"));
        }
        let container = mount_point(container)?;
        let mut mode = None;
        let mut label = None;
        let mut propagation = None;
        for opt in &options {
            let slot = match opt.as_str() {
                "ro" | "rw" => &mut mode,
                "z" | "Z" => &mut label,
                p if PROPAGATION.contains(&p) => &mut propagation,
                other => {
                    return Err(format!(
                        "unknown option `{other}` (known: ro, rw, z, Z, {})",
                        PROPAGATION.join(", ")
                    ));
                }
            };
            if let Some(prev) = slot.replace(opt.as_str()) {
                return Err(format!("options `{prev}` and `{opt}` conflict"));
            }
        }
        Ok(BindMount {
            host: PathBuf::from(host),
            container,
            options,
        })
    }

    /// The host path as given (resolved to an absolute canonical path when
    /// the container starts).
    pub fn host_path(&self) -> &Path {
        &self.host
    }

    /// The absolute path inside the container.
    pub fn container_path(&self) -> &str {
        &self.container
    }

    /// True when mounted read-only.
    pub fn is_read_only(&self) -> bool {
        self.options.iter().any(|o| o == "ro")
    }

    /// Resolves the host path and renders Docker's bind string.
    pub(crate) fn to_bind(&self, check_host: bool) -> Result<String> {
        let shown = self.host.display().to_string();
        let host = if check_host {
            self.host.canonicalize().map_err(|e| {
                let cwd = std::env::current_dir()
                    .map(|d| d.display().to_string())
                    .unwrap_or_default();
                Error::invalid(
                    "bind",
                    &shown,
                    format!("host path cannot be resolved from {cwd}: {e}"),
                )
            })?
        } else if self.host.is_absolute() {
            self.host.clone()
        } else {
            return Err(Error::invalid(
                "bind",
                &shown,
                "with host path checks off the host path must be absolute (a relative one would name a Docker volume)",
            ));
        };
        let host = host
            .to_str()
            .ok_or_else(|| Error::invalid("bind", &shown, "host path is not UTF-8"))?;
        if host.contains(':') {
            return Err(Error::invalid(
                "bind",
                host,
                "resolved host path contains `:`",
            ));
        }
        if let Some(danger) = hands_over_the_host(host, self.is_read_only()) {
            warn_once(host, danger);
        }
        let mut s = format!("{host}:{}", self.container);
        if !self.options.is_empty() {
            s.push(':');
            s.push_str(&self.options.join(","));
        }
        Ok(s)
    }
}

impl ContainerSpec {
    /// Bind-mounts `host` (absolute, or relative to the current directory;
    /// it must exist) read-write at the absolute `container` path.
    pub fn bind(self, host: impl AsRef<Path>, container: impl Into<String>) -> Self {
        self.bind_with(host.as_ref(), container.into(), "rw")
    }

    /// Bind-mounts `host` read-only at `container`.
    pub fn bind_ro(self, host: impl AsRef<Path>, container: impl Into<String>) -> Self {
        self.bind_with(host.as_ref(), container.into(), "ro")
    }

    fn bind_with(self, host: &Path, container: String, mode: &str) -> Self {
        let shown = format!("{}:{container}", host.display());
        let Some(host) = host.to_str() else {
            return self.refuse("bind", shown, "host path is not UTF-8");
        };
        match BindMount::new(host, &container, vec![mode.to_owned()]) {
            Ok(m) => self.mount(m),
            Err(reason) => self.refuse("bind", shown, reason),
        }
    }

    /// Adds a bind mount written in Docker's `host:container[:options]` form.
    pub fn bind_str(self, spec: &str) -> Self {
        match BindMount::parse(spec) {
            Ok(m) => self.mount(m),
            Err(Error::InvalidSpec {
                field,
                value,
                reason,
            }) => self.refuse(field, value, reason),
            Err(other) => self.refuse("bind", spec, other.to_string()),
        }
    }

    /// Adds a parsed bind mount.
    pub fn mount(mut self, mount: BindMount) -> Self {
        self.binds.push(mount);
        self
    }

    /// Whether host paths of bind mounts are checked and resolved on this
    /// machine (default true). Turn it off for a remote daemon whose
    /// filesystem is not ours; host paths must then be absolute.
    pub fn check_host_paths(mut self, check: bool) -> Self {
        self.check_host_paths = check;
        self
    }

    /// Mounts a tmpfs at the absolute `path` (not `/`) with Docker's tmpfs
    /// `options`: mount flags such as `noexec`, and the settings `size`
    /// (`64m`, `50%`), `mode` (octal), `uid`, `gid`, `nr_inodes`,
    /// `nr_blocks` and `mpol`; e.g. `"size=64m,mode=1777"`, or `""`.
    pub fn tmpfs(mut self, path: impl Into<String>, options: impl Into<String>) -> Self {
        let (path, options) = (path.into(), options.into());
        let clean = match mount_point(&path) {
            Ok(clean) if clean.contains(':') => {
                return self.refuse("tmpfs", path, "the container path contains `:`");
            }
            Ok(clean) if DOCKER_FILES.contains(&clean.as_str()) => {
                return self.refuse(
                    "tmpfs",
                    path,
                    "Docker mounts a file of its own there, and a tmpfs cannot cover a file",
                );
            }
            Ok(clean) => clean,
            Err(reason) => return self.refuse("tmpfs", path, reason),
        };
        if let Err(reason) = tmpfs_options(&options) {
            return self.refuse("tmpfs", format!("{path} {options}"), reason);
        }
        self.tmpfs.insert(clean, options);
        self
    }

    /// Copies `host` (a file, or a directory and everything in it) into the
    /// directory `container_dir` of the image, under its own name, after the
    /// container is created and before it starts: for fixture files a
    /// process needs from its first moment. `host` must exist; the
    /// directory must exist in the image.
    pub fn copy_in(mut self, host: impl AsRef<Path>, container_dir: impl Into<String>) -> Self {
        let (host, dir) = (host.as_ref().to_owned(), container_dir.into());
        if !host.exists() {
            return self.refuse(
                "copy_in",
                host.display().to_string(),
                "the host path does not exist",
            );
        }
        let dir = match container_path(&dir) {
            Ok(clean) => clean,
            Err(reason) => return self.refuse("copy_in", dir, reason),
        };
        self.copies.push((host, dir));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_strings() {
        let m = BindMount::parse("/tmp:/x:ro,z,rshared").unwrap();
        assert!(m.is_read_only());
        assert_eq!(m.to_bind(true).unwrap(), "/tmp:/x:ro,z,rshared");
        assert!(BindMount::parse("/tmp:x").is_err());
        assert!(BindMount::parse("/tmp:/x:ro,rw").is_err());
        assert!(BindMount::parse("/tmp:/x:z,Z").is_err());
        assert!(BindMount::parse("/tmp:/x:shared,slave").is_err());
        assert!(BindMount::parse("/tmp:/x:nocopy").is_err());
        assert!(BindMount::parse("/tmp").is_err());
        assert!(BindMount::parse("/a:/b:ro:extra").is_err());
    }

    #[test]
    fn relative_host_path_resolves_or_is_refused() {
        let m = BindMount::parse("./src:/src").unwrap();
        let bind = m.to_bind(true).unwrap();
        assert!(
            bind.starts_with('/') && bind.ends_with("/src:/src"),
            "{bind}"
        );
        assert!(m.to_bind(false).is_err());
        assert!(
            BindMount::parse("./no-such-dir:/x")
                .unwrap()
                .to_bind(true)
                .is_err()
        );
    }
}
