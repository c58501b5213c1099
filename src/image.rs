//! Images: pulling as the policy says (one pull per reference at a time,
//! with progress and the Docker CLI's credentials), and images made for
//! tests without a registry.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, LazyLock, Mutex};

use futures::StreamExt;

use crate::docker::{self, images};
use crate::error::{Error, Result, warn};
use crate::labels;
use crate::spec::{ProgressFn, PullPolicy, PullProgress, registry_of, split_reference};

/// An image made for tests without a registry: built from a Dockerfile
/// context, or imported from a root filesystem tar. It carries the owner
/// labels (`dockfix.managed`, the session, …). Images are shared by every
/// container started from them, so dropping the handle keeps the image;
/// [`remove`](LocalImage::remove) is the opt-in removal.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> dockfix::Result<()> {
/// let image = dockfix::LocalImage::build("./tests/image-context", "dockfix-test/app:dev").await?;
/// let c = dockfix::ContainerSpec::new(image.reference()).start().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalImage {
    reference: String,
}

impl LocalImage {
    /// Builds `context` (a directory holding a `Dockerfile`) with Docker's
    /// builder and tags the result `tag`.
    ///
    /// # Errors
    ///
    /// [`Error::HostPath`] if the context cannot be read; [`Error::Docker`]
    /// with the builder's message if a step fails.
    pub async fn build(
        context: impl AsRef<std::path::Path>,
        tag: impl Into<String>,
    ) -> Result<LocalImage> {
        let (context, tag) = (context.as_ref().to_owned(), tag.into());
        let archive = std::fs::metadata(context.join("Dockerfile"))
            .and_then(|_| crate::archive::pack_contents(&context))
            .map_err(|e| Error::HostPath {
                action: "reading the build context",
                path: context.display().to_string(),
                message: e.to_string(),
            })?;
        let reference = tag.clone();
        docker::run(async move {
            let labels = image_labels(&tag);
            let mut steps = images::build(&tag, labels, archive);
            let mut output = String::new();
            while let Some(step) = steps.next().await {
                let step = step?;
                if let Some(line) = step.stream {
                    output.push_str(&line);
                }
                if let Some(message) = step.error_detail.and_then(|d| d.message) {
                    return Err(Error::docker(
                        "build",
                        tag,
                        format!(
                            "{message}\n--- build output ---\n{}",
                            crate::error::tail(&output, 20)
                        ),
                    ));
                }
            }
            Ok(())
        })
        .await?;
        Ok(LocalImage { reference })
    }

    /// Imports `rootfs` (a tar of a root filesystem) as image `tag`, with
    /// Dockerfile instructions such as `CMD ["sh"]` or `ENV PATH=/bin`
    /// applied.
    ///
    /// # Errors
    ///
    /// [`Error::Docker`] if the daemon refuses the archive or an instruction.
    pub async fn import<I, S>(
        rootfs: impl Into<Vec<u8>>,
        tag: impl Into<String>,
        changes: I,
    ) -> Result<LocalImage>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let (rootfs, tag) = (rootfs.into(), tag.into());
        let mut changes: Vec<String> = changes.into_iter().map(Into::into).collect();
        for (k, v) in image_labels(&tag) {
            changes.push(format!("LABEL {k}={v:?}"));
        }
        let reference = tag.clone();
        docker::run(async move {
            let (repo, version) = split_reference(&tag);
            let mut steps = images::import(repo, version.unwrap_or("latest"), changes, rootfs);
            while let Some(step) = steps.next().await {
                if let Some(message) = step?.error_detail.and_then(|d| d.message) {
                    return Err(Error::docker("import", tag, message));
                }
            }
            Ok(())
        })
        .await?;
        Ok(LocalImage { reference })
    }

    /// The image reference (`repo:tag`) to start containers from.
    pub fn reference(&self) -> &str {
        &self.reference
    }

    /// Removes the image (the opt-in cleanup). Containers still using it
    /// make this fail.
    ///
    /// # Errors
    ///
    /// [`Error::Docker`] if the daemon refuses (409: in use).
    pub async fn remove(self) -> Result<()> {
        let reference = self.reference;
        docker::run(async move { images::remove_image(&reference).await }).await
    }
}

/// One lock per image reference: concurrent starts that need the same
/// missing image pull it once, the others wait and find it there.
static IN_FLIGHT: LazyLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> =
    LazyLock::new(Default::default);

/// Pulls `image` as `policy` says: once, however many callers ask at
/// once. With `IfMissing`, a caller that waited for another's pull finds
/// the image and pulls nothing.
pub(crate) async fn pull(
    image: &str,
    policy: PullPolicy,
    progress: Option<&ProgressFn>,
) -> Result<()> {
    if policy == PullPolicy::Never {
        return Err(Error::ImageNotFound {
            image: image.to_owned(),
            reason: "it is not on the daemon and the pull policy is Never".to_owned(),
        });
    }
    let lock = IN_FLIGHT
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(image.to_owned())
        .or_default()
        .clone();
    let _pulling = lock.lock().await;
    if policy == PullPolicy::IfMissing && images::inspect_image(image).await.is_ok() {
        return Ok(());
    }
    let (repo, tag) = split_reference(image);
    let tty = std::io::stderr().is_terminal();
    let mut stream = images::pull(image, repo, tag, credentials(image));
    while let Some(step) = stream.next().await {
        let info = match step {
            Ok(info) => info,
            // Refused before the pull began: the daemon's own trouble.
            Err(e @ (Error::CircuitOpen { .. } | Error::DockerUnavailable { .. })) => {
                return Err(e);
            }
            // The daemon says 404 when the registry has no such image
            // (Podman says so inside the stream: "manifest unknown"); any
            // other failure is the registry's (unreachable, refusing).
            Err(Error::Docker {
                status, message, ..
            }) if status == Some(404) || message.contains("manifest unknown") => {
                return Err(Error::ImageNotFound {
                    image: image.to_owned(),
                    reason: format!(
                        "the registry has no such image (pull policy {policy}): {message}"
                    ),
                });
            }
            Err(Error::Docker {
                status, message, ..
            }) => {
                let status = status.map(|s| format!("status {s}: ")).unwrap_or_default();
                return Err(Error::RegistryUnavailable {
                    image: image.to_owned(),
                    reason: format!("{status}{message} (pull policy {policy})"),
                });
            }
            Err(e) => return Err(e),
        };
        if let Some(message) = info.error_detail.and_then(|d| d.message) {
            return Err(Error::RegistryUnavailable {
                image: image.to_owned(),
                reason: format!("{message} (pull policy {policy})"),
            });
        }
        let event = PullProgress {
            image: image.to_owned(),
            layer: info.id,
            status: info.status.unwrap_or_default(),
            current: info
                .progress_detail
                .as_ref()
                .and_then(|p| p.current)
                .and_then(|c| u64::try_from(c).ok()),
            total: info
                .progress_detail
                .as_ref()
                .and_then(|p| p.total)
                .and_then(|t| u64::try_from(t).ok()),
        };
        if tty {
            warn(format_args!(
                "pulling {image}: {} {}",
                event.layer.as_deref().unwrap_or(""),
                event.status
            ));
        }
        if let Some(ProgressFn(report)) = progress {
            report(&event);
        }
    }
    Ok(())
}

/// Credentials for `image`'s registry from `$DOCKER_CONFIG/config.json`
/// (or `~/.docker/config.json`): its `auths` entry's base64 `auth`.
fn credentials(image: &str) -> Option<images::RegistryAuth> {
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".docker"))
        })?;
    let config = std::fs::read_to_string(dir.join("config.json")).ok()?;
    credentials_from(&config, &registry_of(image))
}

/// The credentials for `registry` in a Docker CLI config file's text.
pub(crate) fn credentials_from(config: &str, registry: &str) -> Option<images::RegistryAuth> {
    let config: serde_json::Value = serde_json::from_str(config).ok()?;
    let auths = config.get("auths")?;
    let entry = auths
        .get(registry)
        .or_else(|| auths.get(format!("https://{registry}")))
        .or_else(|| auths.get(format!("http://{registry}")))?;
    let decoded = decode_base64(entry.get("auth")?.as_str()?)?;
    let (user, password) = decoded.split_once(':')?;
    Some(images::RegistryAuth {
        username: user.to_owned(),
        password: password.to_owned(),
        server: registry.to_owned(),
    })
}

/// Standard base64, padding optional.
fn decode_base64(text: &str) -> Option<String> {
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in text.trim().bytes().filter(|c| *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(v);
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The owner labels of image `tag`, under the image prefix, with the
/// proof of ownership: the tag itself, as the daemon lists it.
fn image_labels(tag: &str) -> HashMap<String, String> {
    let (repo, version) = split_reference(tag);
    let mut labels = labels::image_labels();
    labels.insert(
        format!("{}name", labels::IMAGE_PREFIX),
        format!("{repo}:{}", version.unwrap_or("latest")),
    );
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_the_auths_entry_of_the_registry() {
        // "alice:s3cret:with:colons" in base64.
        let config = r#"{"auths": {"registry.example.com": {"auth": "YWxpY2U6czNjcmV0OndpdGg6Y29sb25z"},
                          "https://index.docker.io/v1/": {"auth": "Ym9iOmh1Yg=="}}}"#;
        let c = credentials_from(config, "registry.example.com").unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("alice", "s3cret:with:colons")
        );
        let hub = credentials_from(config, &registry_of("postgres:16")).unwrap();
        assert_eq!(hub.username, "bob");
        assert!(credentials_from(config, "other.io").is_none());
        assert!(credentials_from("not json", "x").is_none());
    }
}
