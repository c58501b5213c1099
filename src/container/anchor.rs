//! Tying containers to this process's life, so that they go even when the
//! process is SIGKILLed and nothing of ours runs any more.
//!
//! Opt-in ([`ContainerSpec::remove_on_kill`](crate::ContainerSpec::remove_on_kill),
//! `DOCKFIX_REMOVE_ON_KILL=1`). Once per process an *anchor* container runs
//! `cat` with its stdin attached to this process over the Docker socket
//! (`StdinOnce`). Tied containers join the anchor's PID namespace and are
//! created with `AutoRemove`. When this process dies, however it dies, the
//! kernel closes its socket, Docker closes the anchor's stdin, `cat` exits,
//! and with the namespace's first process gone the kernel kills every
//! process in it: the tied containers stop, and the daemon removes them.
//! It is all done by the kernel and the daemon, within about a second, with
//! no watchdog process and no privileges.
//!
//! The costs: the anchor's start, once per process; the anchor image needs
//! a `cat` (the container's own image, or `DOCKFIX_ANCHOR_IMAGE`); a tied
//! container's main process is not PID 1 of its namespace (it shares it
//! with the anchor and the other tied containers, which `ps` shows); and
//! since the daemon removes a tied container as soon as it stops, its logs
//! and state are gone with it (after `stop()`, or in a readiness error).

use std::sync::Mutex;

use futures::StreamExt;

use super::create;
use crate::cleanup;
use crate::config;
use crate::docker::{self, ContainerCreateBody, HostConfig, containers};
use crate::error::Result;
use crate::labels;

/// The anchor's id, once started; replaced when it is found gone.
static ANCHOR: tokio::sync::Mutex<Option<String>> = tokio::sync::Mutex::const_new(None);

/// The attached stdin of the anchor: held, never written, until the
/// process ends and the kernel closes it.
static STDIN: Mutex<Option<std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>>> =
    Mutex::new(None);

/// The anchor's id, starting it on first use, and again if it is no
/// longer running (a daemon restart, a sweep by session). Runs on the
/// engine.
pub(crate) async fn anchor(image: &str) -> Result<String> {
    let mut anchor = ANCHOR.lock().await;
    if let Some(id) = anchor.as_ref() {
        let running = containers::inspect_container(id, id)
            .await
            .is_ok_and(|info| info.state.and_then(|s| s.running) == Some(true));
        if running {
            return Ok(id.clone());
        }
        cleanup::remove_in_background(id.clone(), id.clone(), false);
    }
    let id = start(image).await?;
    *anchor = Some(id.clone());
    Ok(id)
}

async fn start(image: &str) -> Result<String> {
    let image = config::env()
        .anchor_image
        .clone()
        .unwrap_or_else(|| image.to_owned());
    use rand::Rng;
    let name = format!(
        "dockfix-anchor-{}-{:04x}",
        labels::session_id(),
        rand::rng().random::<u16>()
    );
    let body = ContainerCreateBody {
        image: Some(image.clone()),
        entrypoint: Some(vec!["cat".to_owned()]),
        open_stdin: Some(true),
        stdin_once: Some(true),
        attach_stdin: Some(true),
        labels: Some(labels::owner_labels(&Default::default(), None, None)),
        host_config: Some(HostConfig {
            // Podman refuses to remove a container whose PID namespace
            // others still share, and its auto-removal then leaves the
            // anchor in a `stopped` state for good: there, the anchor is
            // removed by the exit hook, or by the next start-up sweep.
            auto_remove: Some(!docker::is_podman().await),
            network_mode: Some("none".to_owned()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let id = create::create(&name, &image, &body, Default::default(), None).await?;
    // The exit hook removes the anchor (and so every tied container)
    // explicitly; the kernel path is for when no hook runs.
    cleanup::register_live(&id, &name);
    let attached = match containers::attach(&id, &name).await {
        Ok(a) => a,
        Err(e) => {
            cleanup::remove_in_background(id, name.clone(), false);
            return Err(e);
        }
    };
    *STDIN.lock().unwrap_or_else(|p| p.into_inner()) = Some(attached.input);
    let mut output = attached.output;
    docker::spawn(async move { while output.next().await.is_some() {} })?;
    let target = format!("{name} (image {image}, which needs `cat`)");
    if let Err(e) = containers::start_container(&id, &target).await {
        cleanup::remove_in_background(id, name.clone(), false);
        return Err(e);
    }
    Ok(id)
}

/// Joins `body` to the anchor: its PID namespace, and removal by the
/// daemon when it stops.
pub(crate) fn tie(body: &mut ContainerCreateBody, anchor: &str) {
    let host = body.host_config.get_or_insert_with(Default::default);
    host.pid_mode = Some(format!("container:{anchor}"));
    host.auto_remove = Some(true);
}
