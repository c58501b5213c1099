//! Removing what a sweep selected: containers first, then the networks,
//! volumes and images they held; every failure gathered, none fatal.

use futures::StreamExt;

use super::{ManagedResource, Progress, Sweep, SweepCandidate, SweepReport};
use crate::cleanup::remove_now;
use crate::config;
use crate::docker::{self, images, networks};
use crate::error::{Error, Result, warn};
use crate::labels::ResourceKind;

/// How many removals a sweep runs at once.
const CONCURRENT_REMOVALS: usize = 8;

impl Sweep {
    pub(crate) async fn run_on_engine(&self) -> Result<SweepReport> {
        let selected = self.plan_on_engine().await?;
        let mut report = SweepReport {
            dry_run: self.dry_run,
            ..Default::default()
        };
        if self.dry_run {
            report.removed = selected;
            return Ok(report);
        }
        let total = selected.len();
        let done = std::sync::atomic::AtomicUsize::new(0);
        // Containers first: a network or volume in use cannot be removed.
        let (containers, others): (Vec<_>, Vec<_>) = selected
            .into_iter()
            .partition(|s| s.resource.kind == ResourceKind::Container);
        for batch in [containers, others] {
            let outcomes: Vec<(SweepCandidate, std::result::Result<(), String>)> =
                futures::stream::iter(batch)
                    .map(|s| {
                        let done = &done;
                        async move {
                            let r = remove_resource(&s.resource).await;
                            if let Some(Progress(report)) = &self.progress {
                                let finished =
                                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                report(finished + 1, total);
                            }
                            (s, r)
                        }
                    })
                    .buffer_unordered(CONCURRENT_REMOVALS)
                    .collect()
                    .await;
            for (s, r) in outcomes {
                match r {
                    Ok(()) => report.removed.push(s),
                    Err(message) => report.failed.push((s, message)),
                }
            }
        }
        let by_name =
            |a: &SweepCandidate, b: &SweepCandidate| a.resource.name.cmp(&b.resource.name);
        report.removed.sort_by(by_name);
        report.failed.sort_by(|a, b| by_name(&a.0, &b.0));
        Ok(report)
    }
}

/// Removes one resource; already gone counts as success. Containers are
/// force-removed with their anonymous volumes.
async fn remove_resource(r: &ManagedResource) -> std::result::Result<(), String> {
    let result = match r.kind {
        ResourceKind::Container => remove_now(&r.id).await,
        ResourceKind::Network => networks::remove_network(&r.id, &r.name).await,
        ResourceKind::Image => images::remove_image(&r.id).await,
        ResourceKind::Volume => networks::remove_volume(&r.id).await,
    };
    result.map_err(|e| match e {
        Error::CleanupFailed { message, .. } => message,
        other => other.to_string(),
    })
}

/// Removes, in the background, the orphaned containers of this host that
/// killed runs left behind; once per process, when it makes its first
/// container. `DOCKFIX_SWEEP_ON_START=0` turns it off.
pub(crate) fn reap_on_first_start() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if !config::env().sweep_on_start {
            return;
        }
        let spawned = docker::spawn(async {
            match Sweep::new().orphans_only().run_on_engine().await {
                Ok(report) => {
                    for (s, message) in &report.failed {
                        warn(format_args!(
                            "could not remove orphaned {} {} ({}): {message}",
                            s.resource.kind, s.resource.name, s.reason
                        ));
                    }
                }
                Err(e) => warn(format_args!("start-up sweep failed: {e}")),
            }
        });
        if let Err(e) = spawned {
            warn(format_args!("start-up sweep failed: {e}"));
        }
    });
}
