//! Images: the pull policy, pull progress, one pull per reference at a
//! time, and registry credentials from the Docker CLI's config.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, LazyLock, Mutex};

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures::StreamExt;

use crate::error::{Error, Result};
use crate::retry::{self, Retry};

/// When `start()` pulls the image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PullPolicy {
    /// Pull only when the daemon does not have the image (the default).
    #[default]
    IfMissing,
    /// Pull before every start, so a moving tag is always current.
    Always,
    /// Never pull: a missing image is an error.
    Never,
}

impl std::fmt::Display for PullPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PullPolicy::IfMissing => "IfMissing",
            PullPolicy::Always => "Always",
            PullPolicy::Never => "Never",
        })
    }
}

/// One progress event of a pull.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PullProgress {
    /// The image being pulled.
    pub image: String,
    /// The layer the event is about, if any.
    pub layer: Option<String>,
    /// Docker's status text (`Downloading`, `Pull complete`, …).
    pub status: String,
    /// Bytes done for this layer, while downloading or extracting.
    pub current: Option<u64>,
    /// The layer's size in bytes, when known.
    pub total: Option<u64>,
}

/// A callback for pull progress.
#[derive(Clone)]
pub(crate) struct ProgressFn(pub(crate) Arc<dyn Fn(&PullProgress) + Send + Sync>);

impl std::fmt::Debug for ProgressFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressFn(..)")
    }
}

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
    /// [`Error::Copy`] if the context cannot be read; [`Error::Docker`]
    /// with the builder's message if a step fails.
    pub async fn build(
        context: impl AsRef<std::path::Path>,
        tag: impl Into<String>,
    ) -> Result<LocalImage> {
        let (context, tag) = (context.as_ref().to_owned(), tag.into());
        let shown = context.display().to_string();
        let archive = std::fs::metadata(context.join("Dockerfile"))
            .and_then(|_| crate::files::pack_contents(&context))
            .map_err(|e| Error::Copy {
                container: "image build".to_owned(),
                path: shown,
                message: e.to_string(),
            })?;
        let reference = tag.clone();
        crate::engine::run(async move {
            let docker = crate::engine::docker().await?;
            retry::gate()?;
            let labels = crate::labels::owner_labels(&HashMap::new(), None, None);
            let opts = bollard::query_parameters::BuildImageOptionsBuilder::new()
                .t(&tag)
                .rm(true)
                .labels(&labels)
                .build();
            let mut steps =
                docker.build_image(opts, None, Some(bollard::body_full(archive.into())));
            let mut output = String::new();
            while let Some(step) = steps.next().await {
                let step = step.map_err(|e| Error::docker("build", &tag, e))?;
                if let Some(line) = step.stream {
                    output.push_str(&line);
                }
                if let Some(message) = step.error_detail.and_then(|d| d.message) {
                    return Err(Error::Docker {
                        operation: "build",
                        target: tag,
                        status: None,
                        message: format!(
                            "{message}\n--- build output ---\n{}",
                            crate::error::tail(&output, 20)
                        ),
                    });
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
        for (k, v) in crate::labels::owner_labels(&HashMap::new(), None, None) {
            changes.push(format!("LABEL {k}={v:?}"));
        }
        let reference = tag.clone();
        crate::engine::run(async move {
            let docker = crate::engine::docker().await?;
            retry::gate()?;
            let (repo, version) = split_reference(&tag);
            let opts = CreateImageOptionsBuilder::new()
                .from_src("-")
                .repo(repo)
                .tag(version.unwrap_or("latest"))
                .changes(changes)
                .build();
            let mut steps =
                docker.create_image(Some(opts), Some(bollard::body_full(rootfs.into())), None);
            while let Some(step) = steps.next().await {
                let step = step.map_err(|e| Error::docker("import", &tag, e))?;
                if let Some(message) = step.error_detail.and_then(|d| d.message) {
                    return Err(Error::Docker {
                        operation: "import",
                        target: tag,
                        status: None,
                        message,
                    });
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
        crate::engine::run(async move {
            let docker = crate::engine::docker().await?;
            retry::call("remove image", &reference, Retry::Yes, None, || {
                docker.remove_image(
                    &reference,
                    None::<bollard::query_parameters::RemoveImageOptions>,
                    None,
                )
            })
            .await
            .map(drop)
        })
        .await
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
    docker: &Docker,
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
    if policy == PullPolicy::IfMissing && present(docker, image).await {
        return Ok(());
    }
    let (repo, tag) = split_reference(image);
    let mut opts = CreateImageOptionsBuilder::new().from_image(repo);
    if let Some(tag) = tag {
        opts = opts.tag(tag);
    }
    retry::gate()?;
    let tty = std::io::stderr().is_terminal();
    let mut stream = docker.create_image(Some(opts.build()), None, credentials(image));
    while let Some(step) = stream.next().await {
        let info = match step {
            Ok(info) => info,
            // The daemon says 404 when the registry has no such image; any
            // other failure is the registry's (unreachable, refusing).
            Err(
                e @ bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                },
            ) => {
                return Err(Error::ImageNotFound {
                    image: image.to_owned(),
                    reason: format!("the registry has no such image (pull policy {policy}): {e}"),
                });
            }
            Err(e) => {
                return Err(Error::RegistryUnavailable {
                    image: image.to_owned(),
                    reason: format!("{e} (pull policy {policy})"),
                });
            }
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
            crate::engine::warn(format_args!(
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

async fn present(docker: &Docker, image: &str) -> bool {
    retry::call("inspect image", image, Retry::Yes, None, || {
        docker.inspect_image(image)
    })
    .await
    .is_ok()
}

/// Splits `repo[:tag]` (a digest stays in the repo part); an image without
/// tag or digest means `latest`, as the Docker CLI has it.
pub(crate) fn split_reference(image: &str) -> (&str, Option<&str>) {
    if image.contains('@') {
        return (image, None);
    }
    let last = image.rfind('/').map_or(0, |i| i + 1);
    match image[last..].rfind(':') {
        Some(i) => (&image[..last + i], Some(&image[last + i + 1..])),
        None => (image, Some("latest")),
    }
}

/// The registry an image reference names, as the Docker CLI's config keys
/// it: the first component when it looks like a host, else Docker Hub.
pub(crate) fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((host, _)) if host.contains('.') || host.contains(':') || host == "localhost" => {
            host.to_owned()
        }
        _ => "https://index.docker.io/v1/".to_owned(),
    }
}

/// Credentials for `image`'s registry from `$DOCKER_CONFIG/config.json`
/// (or `~/.docker/config.json`): its `auths` entry's base64 `auth`.
fn credentials(image: &str) -> Option<DockerCredentials> {
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".docker"))
        })?;
    let config = std::fs::read_to_string(dir.join("config.json")).ok()?;
    credentials_from(&config, &registry_of(image))
}

/// The credentials for `registry` in a Docker CLI config file's text.
pub(crate) fn credentials_from(config: &str, registry: &str) -> Option<DockerCredentials> {
    let config: serde_json::Value = serde_json::from_str(config).ok()?;
    let auths = config.get("auths")?;
    let entry = auths
        .get(registry)
        .or_else(|| auths.get(format!("https://{registry}")))
        .or_else(|| auths.get(format!("http://{registry}")))?;
    let decoded = decode_base64(entry.get("auth")?.as_str()?)?;
    let (user, password) = decoded.split_once(':')?;
    Some(DockerCredentials {
        username: Some(user.to_owned()),
        password: Some(password.to_owned()),
        serveraddress: Some(registry.to_owned()),
        ..Default::default()
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
            (c.username.as_deref(), c.password.as_deref()),
            (Some("alice"), Some("s3cret:with:colons"))
        );
        let hub = credentials_from(config, &registry_of("postgres:16")).unwrap();
        assert_eq!(hub.username.as_deref(), Some("bob"));
        assert!(credentials_from(config, "other.io").is_none());
        assert!(credentials_from("not json", "x").is_none());
    }

    #[test]
    fn the_registry_is_the_first_component_when_it_looks_like_a_host() {
        assert_eq!(registry_of("127.0.0.1:5000/a/b:1"), "127.0.0.1:5000");
        assert_eq!(registry_of("localhost/a"), "localhost");
        assert_eq!(registry_of("ghcr.io/o/r"), "ghcr.io");
        assert_eq!(
            registry_of("library/postgres"),
            "https://index.docker.io/v1/"
        );
        assert_eq!(registry_of("postgres"), "https://index.docker.io/v1/");
    }

    #[test]
    fn references_split_into_repo_and_tag() {
        assert_eq!(split_reference("busybox"), ("busybox", Some("latest")));
        assert_eq!(split_reference("postgres:16"), ("postgres", Some("16")));
        assert_eq!(
            split_reference("localhost:5000/x"),
            ("localhost:5000/x", Some("latest"))
        );
        assert_eq!(
            split_reference("localhost:5000/x:1"),
            ("localhost:5000/x", Some("1"))
        );
        assert_eq!(split_reference("x@sha256:ab"), ("x@sha256:ab", None));
    }
}
