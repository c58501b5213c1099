//! The operating system: the only `unsafe` in the crate (registering a
//! process-exit hook and sending a signal, both single libc calls with no
//! pointers passed), and reading processes from `/proc`.
//!
//! Rust runs no destructors for statics at exit, and the test harness ends
//! the process with `exit()` right after its last test, while Drop-time
//! removals may still be in flight on the engine runtime. A C `atexit`
//! handler is the one place that runs after the harness and before the
//! process is gone, with the engine threads still alive.
#![allow(unsafe_code)]

use std::sync::OnceLock;

static HOOK: OnceLock<fn()> = OnceLock::new();

extern "C" fn run_exit_hook() {
    if let Some(hook) = HOOK.get() {
        // Unwinding out of an `extern "C"` function aborts the process.
        let _ = std::panic::catch_unwind(hook);
    }
}

/// Registers `hook` to run when the process exits normally. Only the first
/// registration takes effect. Returns false if libc refused it.
pub(crate) fn at_exit(hook: fn()) -> bool {
    if HOOK.set(hook).is_err() {
        return true;
    }
    // SAFETY: `atexit` takes a plain function pointer. `run_exit_hook` takes
    // no arguments, cannot unwind (it catches panics), and reads only a
    // `'static` OnceLock, so it is sound to call at any point during exit.
    unsafe { libc::atexit(run_exit_hook) == 0 }
}

/// Sends SIGKILL to `pid`.
pub(crate) fn kill(pid: i32) -> std::io::Result<()> {
    if pid <= 0 {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    }
    // SAFETY: `kill` takes two integers and touches no memory of ours; a
    // positive pid addresses exactly one process.
    let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A handle on one process that a reused pid cannot redirect
/// (`pidfd_open`, Linux 5.3 and newer).
pub(crate) struct PidFd(std::os::fd::OwnedFd);

/// Opens a pidfd for `pid`. `ENOSYS` on kernels before 5.3.
pub(crate) fn pidfd_open(pid: i32) -> std::io::Result<PidFd> {
    use std::os::fd::FromRawFd;
    if pid <= 0 {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    }
    // SAFETY: pidfd_open takes a pid and flags and touches no memory of
    // ours; on success it returns a new file descriptor that nothing else
    // owns.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd =
        i32::try_from(fd).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
    // SAFETY: `fd` was just returned by the kernel and is owned by no one
    // else.
    Ok(PidFd(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }))
}

/// Sends SIGKILL to the process `fd` refers to, and to no other: if it
/// has exited, `ESRCH`, even when its pid was reused since.
pub(crate) fn pidfd_kill(fd: &PidFd) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: pidfd_send_signal takes a descriptor we own, a signal
    // number, a null siginfo and flags; it touches no memory of ours.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.0.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// What `/proc/<pid>/stat` says of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// The state letter: `R`, `S`, `Z` (zombie), `X` (dead), ….
    pub(crate) state: char,
    /// The parent pid.
    pub(crate) ppid: i32,
    /// When it started, in clock ticks since boot.
    pub(crate) start_ticks: u64,
}

/// Parses one `/proc/<pid>/stat` line. The command name may hold spaces
/// and parentheses, so fields are counted after the last `)`.
pub(crate) fn parse_stat(stat: &str) -> Option<ProcStat> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        // Field 22 of stat; the first after the name is field 3.
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

/// The stat of `pid`, or `None` when there is no such process (or it
/// cannot be read).
pub(crate) fn proc_stat(pid: i64) -> Option<ProcStat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`): a process of
/// another boot is gone, whatever the clock says.
pub(crate) fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(id.trim().to_owned()).filter(|i| !i.is_empty())
}

/// This machine's id (`/etc/machine-id`, or D-Bus's copy).
pub(crate) fn machine_id() -> Option<String> {
    ["/etc/machine-id", "/var/lib/dbus/machine-id"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|i| i.trim().to_owned())
        .filter(|i| !i.is_empty())
}

/// Whether `pid` exists, by `kill(pid, 0)`: `EPERM` (another user's
/// process) counts as existing; `None` when that cannot be told.
pub(crate) fn pid_exists(pid: i32) -> Option<bool> {
    if pid <= 0 {
        return None;
    }
    // SAFETY: signal 0 sends nothing; kill only checks that the process
    // exists and may be signalled. It touches no memory of ours.
    let rc = unsafe { libc::kill(pid, 0) };
    if rc == 0 {
        return Some(true);
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EPERM) => Some(true),
        Some(libc::ESRCH) => Some(false),
        _ => None,
    }
}

/// Boot time in Unix seconds, from `/proc/stat`.
pub(crate) fn boot_time() -> Option<u64> {
    std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// Every process of this machine's `/proc` with its parent.
pub(crate) fn processes() -> Vec<(i32, i32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            Some((pid, proc_stat(i64::from(pid))?.ppid))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_after_the_command_name() {
        let line = "42 (a) b) c) S 7 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 12345 0";
        let stat = parse_stat(line).unwrap();
        assert_eq!((stat.state, stat.ppid, stat.start_ticks), ('S', 7, 12345));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_is_found_with_its_parent() {
        let me = proc_stat(i64::from(std::process::id())).unwrap();
        assert!(!matches!(me.state, 'Z' | 'X'), "{me:?}");
        assert!(me.ppid > 0);
        assert!(proc_stat(i64::from(u32::MAX - 1)).is_none());
    }
}
