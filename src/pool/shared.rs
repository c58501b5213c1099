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
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rand::Rng;

use super::{Common, Home, PoolStats, PooledContainer, Reset};
use crate::cleanup;
use crate::container::TestContainer;
use crate::docker::{self, ContainerCreateBody, HostConfig, containers};
use crate::error::{Error, Result};
use crate::labels::{self, LABEL_LEASE, LABEL_POOL};
use crate::sweep::{ManagedResource, Owner};

const PREFIX: &str = "dfpool";

/// The TTL of shared members whose spec sets none.
const DEFAULT_TTL: Duration = Duration::from_secs(30 * 60);

/// A pool whose members live on the daemon, for every process of the host.
pub(crate) struct Shared {
    pub(crate) common: Common,
    /// Members this process holds.
    in_use: AtomicUsize,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.common.fmt(f)
    }
}

/// What a container of the pool is, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Member,
    Lease,
}

fn member_name(pool: &str, slot: usize) -> String {
    format!("{PREFIX}-{pool}-{slot}")
}

fn lease_name(pool: &str, slot: usize) -> String {
    format!("{PREFIX}-{pool}-{slot}-lease")
}

/// The slot and kind a name stands for; `None` for other names.
fn parse(pool: &str, name: &str) -> Option<(usize, Kind)> {
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
struct Slots {
    /// slot → member id.
    members: HashMap<usize, String>,
    /// slot → the lease, with its owner labels.
    leases: HashMap<usize, ManagedResource>,
}

async fn slots(pool: &str) -> Result<Slots> {
    let list = containers::list_containers(&format!("{LABEL_POOL}={pool}")).await?;
    let mut slots = Slots::default();
    for summary in list {
        let Some(name) = summary.names.as_ref().and_then(|n| n.first()).cloned() else {
            continue;
        };
        match parse(pool, &name) {
            Some((slot, Kind::Member)) => {
                let proven = summary
                    .labels
                    .as_ref()
                    .is_some_and(|l| labels::proves(l, name.trim_start_matches('/')));
                if let (true, Some(id)) = (proven, summary.id) {
                    slots.members.insert(slot, id);
                }
            }
            Some((slot, Kind::Lease)) => {
                if let Some(lease) = ManagedResource::from_summary(summary) {
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
async fn lease(pool: &str, slot: usize, image: &str) -> Result<Option<String>> {
    let nonce = format!("{:016x}", rand::rng().random::<u64>());
    let name = lease_name(pool, slot);
    let mut labels = labels::owner_labels(&HashMap::new(), None, Some(pool));
    labels.insert(LABEL_LEASE.to_owned(), nonce.clone());
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
    match containers::create_container(&name, &body, (LABEL_LEASE, &nonce)).await {
        Ok(id) => {
            cleanup::register_live(&id, &name);
            Ok(Some(id))
        }
        // Taken by another claimant.
        Err(e) if e.status() == Some(409) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Frees a lease: the slot can be claimed again.
async fn unlease(lease: &str) {
    cleanup::unregister_live(lease);
    let _ = cleanup::remove_now(lease).await;
}

/// A handle on member `id`, if it runs; Drop leaves it alone.
async fn handle(id: &str, name: &str, image: &str) -> Result<Option<TestContainer>> {
    let info = containers::inspect_container(id, name).await?;
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
fn poll_delay(attempt: u32) -> Duration {
    Duration::from_millis((10u64 << attempt.min(4)).min(160))
}

impl Shared {
    pub(crate) fn new(common: Common) -> Self {
        Shared {
            common,
            in_use: AtomicUsize::new(0),
        }
    }

    /// For a shared pool the members live on the daemon: `size` and `idle`
    /// are not tracked (0), `in_use` counts this process's holders.
    pub(crate) fn stats(&self) -> PoolStats {
        let in_use = self.in_use.load(Ordering::Relaxed);
        self.common.counters.stats(0, 0, in_use)
    }

    /// Claims a member: a slot whose lease this process creates (after
    /// removing the lease of a holder that is gone), reset and checked
    /// before it is handed out; else a new member in a free slot;
    /// otherwise it looks again, until the acquire timeout.
    pub(crate) async fn acquire(this: Arc<Shared>) -> Result<PooledContainer> {
        let pool = &this.common;
        let valid = !pool.name.is_empty()
            && pool
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !valid {
            return Err(Error::invalid(
                "pool",
                pool.name.clone(),
                "a shared pool's name must contain only letters, digits, `_`, `.` and `-`",
            ));
        }
        let deadline = docker::deadline_in(pool.acquire_timeout);
        let mut waited = false;
        for attempt in 0.. {
            let slots = slots(&pool.name).await?;
            let mut members: Vec<(&usize, &String)> = slots.members.iter().collect();
            members.sort();
            for (&slot, member_id) in members {
                let mut recovered = false;
                if let Some(lease) = slots.leases.get(&slot) {
                    if !matches!(lease.owner(), Owner::Gone | Owner::PidReused) {
                        continue;
                    }
                    tracing::debug!(pool = %pool.name, slot, "dockfix: removing the lease of a holder that is gone");
                    let _ = cleanup::remove_now(&lease.id).await;
                    recovered = true;
                }
                let Some(lease) = lease(&pool.name, slot, &pool.spec.image).await? else {
                    continue;
                };
                match this.ready_member(member_id, slot, recovered).await {
                    Some(c) => {
                        this.in_use.fetch_add(1, Ordering::Relaxed);
                        let home = Home::Shared {
                            pool: Arc::downgrade(&this),
                            lease,
                        };
                        return Ok(pool.hand_out(c, home, waited));
                    }
                    None => {
                        // Unfit: the member goes, then its lease frees the slot.
                        let _ = cleanup::remove_now(member_id).await;
                        pool.counters.destroyed.fetch_add(1, Ordering::Relaxed);
                        unlease(&lease).await;
                    }
                }
            }
            if let Some(slot) = (0..pool.max_size).find(|s| !slots.members.contains_key(s)) {
                let mut spec = pool.spec.clone();
                spec.shared_name = Some(member_name(&pool.name, slot));
                // A shared member outlives its creator: never tied to it.
                spec.remove_on_kill = false;
                if spec.ttl.is_none() {
                    spec = spec.ttl(DEFAULT_TTL);
                }
                match spec.start().await {
                    // Made under its slot's name: leased like any other on
                    // the next look, by whoever is first.
                    Ok(c) => {
                        pool.counters.created.fetch_add(1, Ordering::Relaxed);
                        drop(c.keep());
                        continue;
                    }
                    Err(e) if e.status() == Some(409) => continue,
                    Err(e) => return Err(e),
                }
            }
            if std::time::Instant::now() >= deadline {
                return Err(pool.timed_out(slots.leases.len()));
            }
            waited = true;
            tokio::time::sleep(poll_delay(attempt)).await;
        }
        unreachable!("the loop above only ends by returning")
    }

    /// A leased member made fit for its new holder: running, and reset
    /// (a holder may have died mid-use, so the reset runs here); `None`
    /// when it is not fit.
    async fn ready_member(&self, id: &str, slot: usize, recovered: bool) -> Option<TestContainer> {
        let pool = &self.common;
        // Taken over from a holder that died mid-use: with `Recreate`, a
        // fresh container takes its place.
        if recovered && matches!(pool.reset, Reset::Recreate) {
            return None;
        }
        let name = member_name(&pool.name, slot);
        let c = handle(id, &name, &pool.spec.image).await.ok()??;
        if pool.resets() {
            pool.counters.resets.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = pool.run_reset(&c).await {
                tracing::debug!(pool = %pool.name, member = %name, error = %e, "dockfix: reset failed; replacing the member");
                return None;
            }
        }
        Some(c)
    }

    /// A holder gave a member back: its lease goes, in the background; a
    /// tainted member (or any, with `Recreate`) goes first.
    pub(crate) fn release(
        this: Arc<Shared>,
        container: TestContainer,
        lease: String,
        tainted: bool,
    ) {
        this.in_use.fetch_sub(1, Ordering::Relaxed);
        // The exit hook waits for this, so a slot is not left leased.
        let in_flight = cleanup::track_start();
        let spawned = docker::spawn(async move {
            let _in_flight = in_flight;
            if tainted || matches!(this.common.reset, Reset::Recreate) {
                let _ = cleanup::remove_now(container.id()).await;
                this.common
                    .counters
                    .destroyed
                    .fetch_add(1, Ordering::Relaxed);
            }
            unlease(&lease).await;
        });
        if let Err(e) = spawned {
            crate::error::warn(format_args!("cannot give a shared pool member back: {e}"));
        }
    }

    /// Removes the members no process holds.
    pub(crate) async fn close(this: Arc<Shared>) -> Result<()> {
        let pool = &this.common;
        let mut first_error = None;
        for (slot, member) in &slots(&pool.name).await?.members {
            // Lease it first, so no other process is handed a member
            // being removed.
            let Some(lease) = lease(&pool.name, *slot, &pool.spec.image).await? else {
                continue;
            };
            if let Err(e) = cleanup::remove_now(member).await {
                first_error.get_or_insert(e);
            }
            pool.counters.destroyed.fetch_add(1, Ordering::Relaxed);
            unlease(&lease).await;
        }
        first_error.map_or(Ok(()), Err)
    }
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
