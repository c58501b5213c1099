//! Whose a container is: its owner process, identified by the labels and
//! checked against this machine's `/proc`. What cannot be known counts as
//! alive.

use std::time::{SystemTime, UNIX_EPOCH};

use super::ManagedResource;

/// What a container's owner process is, seen from this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Owner {
    /// Its owner runs on this host and is alive.
    Alive,
    /// Its owner ran on this host and is gone.
    Gone,
    /// Its pid is alive but belongs to a process started after the
    /// container was created: the owner is gone and the pid was reused.
    PidReused,
    /// Its owner runs (or ran) on another host, which cannot be checked.
    OtherHost,
    /// It has no readable pid label.
    Unknown,
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Owner::Alive => "alive",
            Owner::Gone => "gone",
            Owner::PidReused => "gone (pid reused)",
            Owner::OtherHost => "other host",
            Owner::Unknown => "unknown",
        })
    }
}

/// The state of a process, for deciding whether an owner is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Process {
    /// No such process (or a zombie).
    Dead,
    /// Running; its start time in Unix seconds when known.
    Alive { started: Option<u64> },
}

/// Reads `/proc` for `pid`. Where `/proc` is missing (not Linux), every
/// pid counts as alive, so nothing is wrongly taken for orphaned.
pub(crate) fn probe_process(pid: u32) -> Process {
    if !std::path::Path::new("/proc/self").exists() {
        return Process::Alive { started: None };
    }
    let path = format!("/proc/{pid}/stat");
    let Some(stat) = crate::sys::proc_stat(i64::from(pid)) else {
        // Gone, or there but unreadable: never remove on doubt.
        return if std::path::Path::new(&path).exists() {
            Process::Alive { started: None }
        } else {
            Process::Dead
        };
    };
    if matches!(stat.state, 'Z' | 'X') {
        return Process::Dead;
    }
    // /proc counts start times in USER_HZ, which is 100 on Linux.
    let started = crate::sys::boot_time().map(|btime| btime + stat.start_ticks / 100);
    Process::Alive { started }
}

pub(crate) fn owner_of(
    c: &ManagedResource,
    this_host: &str,
    probe: &dyn Fn(u32) -> Process,
) -> Owner {
    if c.host != this_host {
        return Owner::OtherHost;
    }
    // Same hostname, another PID namespace: its pids mean nothing here.
    let here = crate::labels::pid_namespace();
    if let (Some(theirs), Some(here)) = (c.pid_namespace.as_deref(), here) {
        if theirs != here {
            return Owner::OtherHost;
        }
    }
    let Some(pid) = c.pid else {
        return Owner::Unknown;
    };
    match probe(pid) {
        Process::Dead => Owner::Gone,
        // Whole seconds on both sides, and btime is rounded: allow 2 s.
        Process::Alive {
            started: Some(started),
        } if c.created.is_some_and(|created| started > created + 2) => Owner::PidReused,
        Process::Alive { .. } => Owner::Alive,
    }
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_started_in_the_past() {
        match probe_process(std::process::id()) {
            Process::Alive { started: Some(t) } => assert!(t <= now_secs() + 1),
            other => panic!("{other:?}"),
        }
        assert_eq!(probe_process(u32::MAX - 1), Process::Dead);
    }
}
