//! Creating a container, pulling its image once when the daemon lacks it.

use crate::docker::{ContainerCreateBody, containers, images};
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
