//! The only `unsafe` in the crate: registering a process-exit hook and
//! sending a signal. Both are single libc calls with no pointers passed.
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
