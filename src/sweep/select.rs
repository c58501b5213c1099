//! Which managed resources a sweep takes, and why.

use std::time::Duration;

use super::owner::{Here, Owner, Process, owner_of};
use super::{ManagedResource, Sweep};

/// Why a sweep selected a container.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SweepReason {
    /// Its owner process on this host is gone.
    OwnerGone {
        /// The owner pid.
        pid: u32,
    },
    /// Its owner pid now belongs to a process started after the container.
    PidReused {
        /// The owner pid.
        pid: u32,
    },
    /// It is older than its `dockfix.ttl` label.
    TtlExpired {
        /// Its age.
        age: Duration,
        /// Its ttl.
        ttl: Duration,
    },
    /// It is older than [`Sweep::older_than`].
    OlderThan {
        /// Its age.
        age: Duration,
        /// The limit.
        limit: Duration,
    },
    /// Its session was asked for by id.
    Session,
    /// [`Sweep::all`] asked for containers whose owner cannot be checked.
    Unverifiable {
        /// What is known of the owner.
        owner: Owner,
    },
}

impl SweepReason {
    /// A short machine-readable name: `orphaned`, `pid-reused`,
    /// `ttl-expired`, `older-than`, `session` or `unverifiable`.
    pub fn code(&self) -> &'static str {
        match self {
            SweepReason::OwnerGone { .. } => "orphaned",
            SweepReason::PidReused { .. } => "pid-reused",
            SweepReason::TtlExpired { .. } => "ttl-expired",
            SweepReason::OlderThan { .. } => "older-than",
            SweepReason::Session => "session",
            SweepReason::Unverifiable { .. } => "unverifiable",
        }
    }
}

impl std::fmt::Display for SweepReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SweepReason::OwnerGone { pid } => write!(f, "owner process {pid} is gone"),
            SweepReason::PidReused { pid } => {
                write!(f, "owner pid {pid} now belongs to a newer process")
            }
            SweepReason::TtlExpired { age, ttl } => {
                write!(
                    f,
                    "age {} exceeds its ttl {}",
                    human_duration(*age),
                    human_duration(*ttl)
                )
            }
            SweepReason::OlderThan { age, limit } => write!(
                f,
                "age {} exceeds the limit {}",
                human_duration(*age),
                human_duration(*limit)
            ),
            SweepReason::Session => write!(f, "its session was asked for"),
            SweepReason::Unverifiable { owner } => {
                write!(
                    f,
                    "its owner cannot be checked ({owner}) and all were asked for"
                )
            }
        }
    }
}

/// A duration as a person writes it: `45s`, `12m`, `3h`, `2d` (rounded
/// down).
fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

impl Sweep {
    /// Why `c` is selected, if it is.
    pub(super) fn select(
        &self,
        c: &ManagedResource,
        here: &Here,
        probe: &dyn Fn(u32) -> Process,
        now: u64,
    ) -> Option<SweepReason> {
        if let Some(session) = &self.session {
            return (c.session == *session).then_some(SweepReason::Session);
        }
        let owner = owner_of(c, here, probe);
        match (owner, c.pid) {
            (Owner::Alive, _) => return None,
            (Owner::Gone, Some(pid)) => return Some(SweepReason::OwnerGone { pid }),
            (Owner::PidReused, Some(pid)) => return Some(SweepReason::PidReused { pid }),
            _ if self.orphans_only => return None,
            _ => {}
        }
        let age = c
            .created
            .map(|created| Duration::from_secs(now.saturating_sub(created)));
        if let (Some(age), Some(ttl)) = (age, c.ttl) {
            if age > ttl {
                return Some(SweepReason::TtlExpired { age, ttl });
            }
        }
        if let (Some(age), Some(limit)) = (age, self.older_than) {
            if age > limit {
                return Some(SweepReason::OlderThan { age, limit });
            }
        }
        self.all.then_some(SweepReason::Unverifiable { owner })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::ResourceKind;

    const NOW: u64 = 1_000_000;

    fn container(host: &str, pid: Option<u32>, created: u64, ttl: Option<u64>) -> ManagedResource {
        ManagedResource {
            kind: ResourceKind::Container,
            id: "id".into(),
            name: "n".into(),
            image: "i".into(),
            state: "running".into(),
            session: "s1".into(),
            pid,
            host: host.into(),
            pid_namespace: None,
            created: Some(created),
            version: "0.1.0".into(),
            pool: None,
            ttl: ttl.map(Duration::from_secs),
            machine: None,
            boot: None,
            start_ticks: None,
        }
    }

    fn probe(pid: u32) -> Process {
        match pid {
            1 => Process::Alive {
                started: Some(NOW - 10_000),
                start_ticks: Some(1_000),
            },
            2 => Process::Alive {
                started: Some(NOW - 5),
                start_ticks: Some(2_000),
            },
            3 => Process::Alive {
                started: None,
                start_ticks: None,
            },
            _ => Process::Dead,
        }
    }

    fn here() -> Here {
        Here {
            host: "here".into(),
            machine: "machine-a".into(),
            boot: Some("boot-1".into()),
        }
    }

    fn reason(sweep: &Sweep, c: &ManagedResource) -> Option<&'static str> {
        sweep.select(c, &here(), &probe, NOW).map(|r| r.code())
    }

    /// A container of this version: owner named by machine, boot, pid and
    /// start ticks.
    fn named(pid: u32, start: u64, created: u64) -> ManagedResource {
        let mut c = container("here", Some(pid), created, None);
        c.machine = Some("machine-a".into());
        c.boot = Some("boot-1".into());
        c.start_ticks = Some(start);
        c
    }

    #[test]
    fn owners_are_named_without_the_wall_clock() {
        // The same process, whatever the clock said when the labels were
        // written: a day ahead, or a day behind (a clock step on a fresh
        // VM).
        for created in [NOW + 86_400, NOW - 86_400] {
            assert_eq!(reason(&Sweep::new(), &named(1, 1_000, created)), None);
        }
        // The pid now names a process that started at another tick.
        assert_eq!(
            reason(&Sweep::new(), &named(1, 999, NOW)),
            Some("pid-reused")
        );
        assert_eq!(
            reason(&Sweep::new(), &named(99, 1_000, NOW)),
            Some("orphaned")
        );
        // Another boot of this machine: gone, even if the pid runs.
        let mut rebooted = named(1, 1_000, NOW);
        rebooted.boot = Some("boot-0".into());
        assert_eq!(reason(&Sweep::new(), &rebooted), Some("orphaned"));
        // What cannot be read counts as alive.
        assert_eq!(reason(&Sweep::new(), &named(3, 1_000, NOW)), None);
        let unknown_boot = Here {
            boot: None,
            ..here()
        };
        assert_eq!(
            Sweep::new().select(&named(99, 1_000, NOW), &unknown_boot, &probe, NOW),
            None
        );
    }

    #[test]
    fn two_machines_of_one_hostname_are_told_apart_by_machine_id() {
        let mut theirs = named(99, 1_000, NOW - 60);
        theirs.machine = Some("machine-b".into());
        assert_eq!(reason(&Sweep::new(), &theirs), None);
        assert_eq!(
            reason(&Sweep::new().all(true), &theirs),
            Some("unverifiable")
        );
    }

    #[test]
    fn dead_owner_on_this_host_is_orphaned() {
        assert_eq!(
            reason(&Sweep::new(), &container("here", Some(99), NOW - 60, None)),
            Some("orphaned")
        );
    }

    #[test]
    fn live_owner_is_spared_even_when_expired() {
        let c = container("here", Some(1), NOW - 3600, Some(60));
        assert_eq!(
            reason(
                &Sweep::new().older_than(Duration::from_secs(1)).all(true),
                &c
            ),
            None
        );
        assert_eq!(reason(&Sweep::new().session("s1"), &c), Some("session"));
        assert_eq!(reason(&Sweep::new().session("other"), &c), None);
    }

    #[test]
    fn a_pid_started_after_the_container_was_reused() {
        assert_eq!(
            reason(&Sweep::new(), &container("here", Some(2), NOW - 60, None)),
            Some("pid-reused")
        );
        // Started at about the same second: the same process.
        assert_eq!(
            reason(&Sweep::new(), &container("here", Some(2), NOW - 6, None)),
            None
        );
        // Start time unknown: alive.
        assert_eq!(
            reason(&Sweep::new(), &container("here", Some(3), NOW - 60, None)),
            None
        );
    }

    #[test]
    fn same_hostname_in_another_pid_namespace_is_never_orphaned() {
        let mut c = container("here", Some(99), NOW - 60, None);
        c.pid_namespace = Some("pid:[1]".into());
        let expected = if crate::labels::pid_namespace().is_some() {
            None
        } else {
            Some("orphaned")
        };
        assert_eq!(reason(&Sweep::new(), &c), expected);
    }

    #[test]
    fn other_hosts_are_removed_only_when_expired_or_with_all() {
        let c = container("elsewhere", Some(99), NOW - 600, Some(300));
        assert_eq!(reason(&Sweep::new(), &c), Some("ttl-expired"));
        let c = container("elsewhere", Some(99), NOW - 600, None);
        assert_eq!(reason(&Sweep::new(), &c), None);
        assert_eq!(
            reason(&Sweep::new().older_than(Duration::from_secs(300)), &c),
            Some("older-than")
        );
        assert_eq!(
            reason(&Sweep::new().older_than(Duration::from_secs(900)), &c),
            None
        );
        assert_eq!(reason(&Sweep::new().all(true), &c), Some("unverifiable"));
        assert_eq!(
            reason(
                &Sweep::new().orphans_only(),
                &container("elsewhere", Some(99), NOW - 600, Some(1))
            ),
            None
        );
    }

    #[test]
    fn durations_read_like_a_human_wrote_them() {
        assert_eq!(human_duration(Duration::from_secs(45)), "45s");
        assert_eq!(human_duration(Duration::from_secs(30 * 60)), "30m");
        assert_eq!(human_duration(Duration::from_secs(5 * 3600)), "5h");
        assert_eq!(human_duration(Duration::from_secs(3 * 86_400)), "3d");
    }
}
