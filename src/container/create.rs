//! Creating a container, pulling its image once when the daemon lacks it.

use crate::docker::{self, ContainerCreateBody, containers, images, networks};
use crate::error::Result;
use crate::image;
use crate::labels::{LABEL_SESSION, session_id};
use crate::spec::{ProgressFn, PullPolicy};

/// Creates container `name` from `body`, pulling `image` as `policy`
/// says: before, with `Always`; when the create finds it missing, with
/// `IfMissing`. Returns the container's id.
pub(crate) async fn create(
    name: &str,
    image: &str,
    body: &ContainerCreateBody,
    policy: PullPolicy,
    progress: Option<&ProgressFn>,
) -> Result<String> {
    if policy == PullPolicy::Always {
        image::pull(image, policy, progress).await?;
    }
    let podman_body;
    let body = match for_podman(body).await? {
        Some(changed) => {
            podman_body = changed;
            &podman_body
        }
        None => body,
    };
    // The session label tells a retried create's own container from
    // another process's.
    let claim = (LABEL_SESSION, session_id());
    match containers::create_container(name, body, claim).await {
        // A 404 also means a missing network or volume: pull only when the
        // image is the thing missing.
        Err(e) if e.status() == Some(404) => {
            if images::inspect_image(image).await.is_ok() {
                return Err(e);
            }
        }
        other => return other,
    }
    image::pull(image, policy, progress).await?;
    containers::create_container(name, body, claim).await
}

/// Podman 4 writes Docker's `host-gateway` into `/etc/hosts` as it is,
/// a name no one resolves: there, an entry for it gets the gateway address
/// of the container's network, which is the host. `None`: nothing to do.
async fn for_podman(body: &ContainerCreateBody) -> Result<Option<ContainerCreateBody>> {
    let Some(host) = &body.host_config else {
        return Ok(None);
    };
    let asks = host
        .extra_hosts
        .iter()
        .flatten()
        .any(|h| h.ends_with(":host-gateway"));
    if !asks || !docker::is_podman().await {
        return Ok(None);
    }
    let network = match host.network_mode.as_deref() {
        None | Some("" | "default" | "bridge") => "bridge",
        Some(other) => other,
    };
    // Without a network there is no gateway to reach the host by. The
    // default bridge's is asked once per process: it does not change.
    static BRIDGE: tokio::sync::OnceCell<Option<String>> = tokio::sync::OnceCell::const_new();
    let gateway = match network {
        "none" => None,
        "bridge" => BRIDGE
            .get_or_try_init(|| networks::network_gateway("bridge"))
            .await?
            .clone(),
        _ => match networks::network_gateway(network).await {
            Ok(gateway) => gateway,
            // A missing network: the create says so.
            Err(e) if e.status() == Some(404) => return Ok(None),
            Err(e) => return Err(e),
        },
    };
    let mut body = body.clone();
    if let Some(hosts) = body
        .host_config
        .as_mut()
        .and_then(|h| h.extra_hosts.as_mut())
    {
        hosts.retain_mut(|h| match h.strip_suffix(":host-gateway") {
            Some(name) => match &gateway {
                Some(gateway) => {
                    *h = format!("{name}:{gateway}");
                    true
                }
                None => false,
            },
            None => true,
        });
    }
    Ok(Some(body))
}
