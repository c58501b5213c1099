//! A pool shared by every process on one host, kept on the daemon itself.
//!
//! `cargo nextest` runs each test in a process of its own, so a pool in
//! one process's memory is empty for every test. A shared pool keeps its
//! state on the daemon instead:
//!
//! - slot `n` of pool `p` is a container named `dfpool-p-n`;
//! - whoever holds it owns a *lease*: a container that is created and never
//!   started, named `dfpool-p-n-lease`, labelled with the holder's owner
//!   labels (`dockfix.pid`, `dockfix.host`, `dockfix.created`, …).
//!
//! Container names are unique on a daemon and reserved atomically when a
//! container is created, so of several processes creating the same lease
//! exactly one succeeds (the others get 409). (Renaming is not a safe
//! claim: two concurrent renames of one container to different names both
//! succeed on Docker 20.10.) A slot is created the same way, under its
//! name, by whoever finds it missing. Releasing removes the lease. A lease
//! whose holder is gone (the sweep's orphan rule: dead pid, or a pid that
//! now belongs to a younger process) is removed by the next process that
//! wants the slot, and is an orphan for `dockfix sweep` and start-up
//! reaping too. Because a holder may have died mid-use, the reset runs
//! when a member is acquired, not when it is released: every holder gets a
//! member reset since its last use, recovered or not.
//!
//! Members outlive the processes that use them, on purpose. They carry no
//! `dockfix.pid` label (no process owns them, so no sweep takes them for
//! orphans) and a `dockfix.ttl` (30 minutes unless the spec sets one), after
//! which `dockfix sweep` removes them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::CreateContainerOptionsBuilder;

use crate::container::TestContainer;
use crate::error::Result;
use crate::retry::{self, Retry};
use crate::sweep::ManagedResource;

const PREFIX: &str = "dfpool";

/// The label that tells a claim's lease from another's after a lost
/// create response.
const LEASE_LABEL: &str = "dockfix.lease";

/// The TTL of shared members whose spec sets none.
pub(crate) const DEFAULT_TTL: Duration = Duration::from_secs(30 * 60);

/// What a container of the pool is, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Member,
    Lease,
}

pub(crate) fn member_name(pool: &str, slot: usize) -> String {
    format!("{PREFIX}-{pool}-{slot}")
}

fn lease_name(pool: &str, slot: usize) -> String {
    format!("{PREFIX}-{pool}-{slot}-lease")
}

/// The slot and kind a name stands for; `None` for other names.
pub(crate) fn parse(pool: &str, name: &str) -> Option<(usize, Kind)> {
    let rest = name
        .trim_start_matches('/')
        .strip_prefix(&format!("{PREFIX}-{pool}-"))?;
    match rest.strip_suffix("-lease") {
        Some(slot) => Some((slot.parse().ok()?, Kind::Lease)),
        None => Some((rest.parse().ok()?, Kind::Member)),
    }
}

/// The pool's containers on the daemon.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    /// slot → member id.
    pub(crate) members: HashMap<usize, String>,
    /// slot → the lease, with its owner labels.
    pub(crate) leases: HashMap<usize, ManagedResource>,
}

pub(crate) async fn slots(docker: &Docker, pool: &str) -> Result<Slots> {
    let list =
        crate::sweep::containers_labelled(docker, format!("{}={pool}", crate::LABEL_POOL)).await?;
    let mut slots = Slots::default();
    for summary in list {
        let Some(name) = summary.names.as_ref().and_then(|n| n.first()).cloned() else {
            continue;
        };
        match parse(pool, &name) {
            Some((slot, Kind::Member)) => {
                if let Some(id) = summary.id {
                    slots.members.insert(slot, id);
                }
            }
            Some((slot, Kind::Lease)) => {
                if let Some(lease) = ManagedResource::from_summary_pub(summary) {
                    slots.leases.insert(slot, lease);
                }
            }
            None => {}
        }
    }
    Ok(slots)
}

/// Tries to take slot `slot`: creates its lease. `Ok(Some(id))` if this
/// claim got it, `Ok(None)` if another holds it.
pub(crate) async fn lease(
    docker: &Docker,
    pool: &str,
    slot: usize,
    image: &str,
) -> Result<Option<String>> {
    use rand::Rng;
    let nonce = format!("{:016x}", rand::rng().random::<u64>());
    let name = lease_name(pool, slot);
    let mut labels = crate::labels::owner_labels(&HashMap::new(), None, Some(pool));
    labels.insert(LEASE_LABEL.to_owned(), nonce.clone());
    let body = ContainerCreateBody {
        image: Some(image.to_owned()),
        cmd: Some(vec!["true".to_owned()]),
        labels: Some(labels),
        host_config: Some(HostConfig {
            network_mode: Some("none".to_owned()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let opts = CreateContainerOptionsBuilder::new().name(&name).build();
    let created = retry::call("lease", &name, Retry::Yes, None, || {
        docker.create_container(Some(opts.clone()), body.clone())
    })
    .await;
    match created {
        Ok(created) => Ok(Some(created.id)),
        // Taken, unless it is our own create whose answer was lost.
        Err(e) if e.status() == Some(409) => {
            match crate::container::inspect(docker, &name, &name).await {
                Ok(info) => {
                    let ours = info
                        .config
                        .and_then(|c| c.labels)
                        .and_then(|l| l.get(LEASE_LABEL).cloned())
                        .is_some_and(|n| n == nonce);
                    Ok(ours.then(|| info.id.unwrap_or_default()))
                }
                Err(_) => Ok(None),
            }
        }
        Err(e) => Err(e),
    }
}

/// A handle on member `id`, if it runs; Drop leaves it alone.
pub(crate) async fn handle(
    docker: &Docker,
    id: &str,
    name: &str,
    image: &str,
) -> Result<Option<TestContainer>> {
    let info = crate::container::inspect(docker, id, name).await?;
    if info.state.as_ref().and_then(|s| s.running) != Some(true) {
        return Ok(None);
    }
    let ports = crate::container::published_ports(&info);
    Ok(Some(TestContainer::unowned(
        id.to_owned(),
        name.to_owned(),
        image.to_owned(),
        ports,
    )))
}

/// Backoff between two looks at a pool that had nothing free.
pub(crate) fn poll_delay(attempt: u32) -> Duration {
    Duration::from_millis((10u64 << attempt.min(4)).min(160))
}

/// Whether `deadline` has passed.
pub(crate) fn expired(deadline: Instant) -> bool {
    Instant::now() >= deadline
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(
            parse("pg", &format!("/{}", member_name("pg", 3))),
            Some((3, Kind::Member))
        );
        assert_eq!(parse("pg", &lease_name("pg", 1)), Some((1, Kind::Lease)));
        assert_eq!(parse("pg", "dfpool-pgx-1"), None);
        assert_eq!(parse("pg", "dfpool-pg-x"), None);
        assert_eq!(parse("pg", "other"), None);
    }
}
