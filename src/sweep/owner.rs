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
    /// Running: its start in clock ticks since boot, and in Unix seconds,
    /// when readable.
    Alive {
        start_ticks: Option<u64>,
        started: Option<u64>,
    },
}

/// Asks the kernel about `pid`: `kill(pid, 0)` says whether it exists
/// (`EPERM`, another user's process, counts as existing, so a `/proc`
/// mounted `hidepid` hides nothing that matters), and `/proc/<pid>/stat`
/// when it is readable says when it started. Where this cannot be told
/// (not Linux), every pid counts as alive: never remove on doubt.
pub(crate) fn probe_process(pid: u32) -> Process {
    const UNKNOWN: Process = Process::Alive {
        start_ticks: None,
        started: None,
    };
    let Ok(pid) = i32::try_from(pid) else {
        return UNKNOWN;
    };
    match crate::sys::pid_exists(pid) {
        Some(false) => return Process::Dead,
        None => return UNKNOWN,
        Some(true) => {}
    }
    let Some(stat) = crate::sys::proc_stat(i64::from(pid)) else {
        return UNKNOWN;
    };
    if matches!(stat.state, 'Z' | 'X') {
        return Process::Dead;
    }
    // /proc counts start times in USER_HZ, which is 100 on Linux.
    Process::Alive {
        start_ticks: Some(stat.start_ticks),
        started: crate::sys::boot_time().map(|btime| btime + stat.start_ticks / 100),
    }
}

/// This machine, as the owner labels describe theirs.
#[derive(Debug, Clone)]
pub(crate) struct Here {
    pub(crate) host: String,
    pub(crate) machine: String,
    pub(crate) boot: Option<String>,
}

impl Here {
    /// This machine, read once: none of it changes while a process runs.
    pub(crate) fn get() -> &'static Here {
        static HERE: std::sync::LazyLock<Here> = std::sync::LazyLock::new(|| Here {
            host: crate::labels::hostname().to_owned(),
            machine: crate::labels::machine().to_owned(),
            boot: crate::sys::boot_id(),
        });
        &HERE
    }
}

/// Whose `c` is, seen from `here`. Resources of this version name their
/// owner by machine id, boot id, pid and start ticks, which no clock step
/// can change; those of earlier versions by hostname, pid and wall-clock
/// times. What cannot be told counts as alive.
pub(crate) fn owner_of(c: &ManagedResource, here: &Here, probe: &dyn Fn(u32) -> Process) -> Owner {
    let same_machine = match &c.machine {
        Some(machine) => *machine == here.machine,
        None => c.host == here.host,
    };
    if !same_machine {
        return Owner::OtherHost;
    }
    // Same machine, another PID namespace: its pids mean nothing here.
    let ns = crate::labels::pid_namespace();
    if let (Some(theirs), Some(ns)) = (c.pid_namespace.as_deref(), ns) {
        if theirs != ns {
            return Owner::OtherHost;
        }
    }
    let Some(pid) = c.pid else {
        return Owner::Unknown;
    };
    if let (Some(boot), Some(start)) = (&c.boot, c.start_ticks) {
        return match &here.boot {
            // The machine rebooted since: its processes are gone.
            Some(now) if now != boot => Owner::Gone,
            Some(_) => match probe(pid) {
                Process::Dead => Owner::Gone,
                Process::Alive {
                    start_ticks: Some(ticks),
                    ..
                } if ticks != start => Owner::PidReused,
                Process::Alive { .. } => Owner::Alive,
            },
            None => Owner::Alive,
        };
    }
    match probe(pid) {
        Process::Dead => Owner::Gone,
        // Whole seconds on both sides, and btime is rounded: allow 2 s.
        Process::Alive {
            started: Some(started),
            ..
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
            Process::Alive {
                started: Some(t),
                start_ticks: Some(_),
            } => assert!(t <= now_secs() + 1),
            other => panic!("{other:?}"),
        }
        let mut exited = std::process::Command::new("true").spawn().unwrap();
        let pid = exited.id();
        exited.wait().unwrap();
        assert_eq!(probe_process(pid), Process::Dead);
        // Not a pid of this kernel: nothing can be told, so alive.
        assert!(matches!(probe_process(u32::MAX - 1), Process::Alive { .. }));
    }
}
