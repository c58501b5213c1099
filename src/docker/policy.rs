//! The policy of every Docker call dockfix makes, in one table: whether it
//! is retried, which answers count as success, how it is bounded, and why.
//!
//! README's table of calls is rendered from [`ALL`]; a unit test fails when
//! the two differ.

use crate::error::Result;

/// What a call may do, written once per Docker operation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    /// The operation's name in errors and in the README's table.
    pub(crate) op: &'static str,
    /// Whether a transient failure is tried again.
    pub(crate) retried: bool,
    /// Answers that count as success: already started, already gone.
    pub(crate) success: &'static [u16],
    /// How the call is bounded in time.
    pub(crate) bound: Bound,
    /// Why retrying it (or not) is right; for the README.
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "read where README's table is rendered, in a test")
    )]
    pub(crate) why: &'static str,
}

/// How a call is bounded in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bound {
    /// One request, answered within the per-call timeout.
    Request,
    /// A stream: its first frame within the per-call timeout, and, with
    /// `idle`, every later one too.
    Stream {
        /// Whether the time between two frames is bounded as well.
        idle: bool,
    },
    /// A stream that may be silent for as long as its source is (a
    /// followed log, an exec's output): gated by the breaker, unbounded.
    Open,
}

impl Policy {
    /// Whether `result` counts as success under this policy.
    pub(crate) fn settle(&self, result: Result<()>) -> Result<()> {
        match result {
            Err(e) if e.status().is_some_and(|s| self.success.contains(&s)) => Ok(()),
            other => other,
        }
    }
}

const fn request(
    op: &'static str,
    retried: bool,
    success: &'static [u16],
    why: &'static str,
) -> Policy {
    Policy {
        op,
        retried,
        success,
        bound: Bound::Request,
        why,
    }
}

const fn stream(op: &'static str, bound: Bound, why: &'static str) -> Policy {
    Policy {
        op,
        retried: false,
        success: &[],
        bound,
        why,
    }
}

/// Asking the daemon its API version, on connecting.
pub(crate) const VERSION: Policy = request("version", true, &[], "read-only");

pub(crate) const INFO: Policy = request("info", true, &[], "read-only");
/// Inspecting a container.
pub(crate) const INSPECT_CONTAINER: Policy = request("inspect", true, &[], "read-only");
/// Listing labelled containers, networks, volumes or images.
pub(crate) const LIST: Policy = request("list", true, &[], "read-only");
/// Creating a container.
pub(crate) const CREATE_CONTAINER: Policy = request(
    "create",
    true,
    &[],
    "the same name on every attempt; a 409 \"name in use\" after a lost answer is resolved by looking the container up and checking a label only this create wrote, so the result is still exactly one container",
);
/// Starting a container.
pub(crate) const START_CONTAINER: Policy = request(
    "start",
    true,
    &[304],
    "304 (already started) counts as success",
);
/// Stopping a container.
pub(crate) const STOP_CONTAINER: Policy = request(
    "stop",
    true,
    &[304],
    "304 (already stopped) counts as success; bounded by the grace period plus the per-call timeout",
);
/// Force-removing a container with its anonymous volumes.
pub(crate) const REMOVE_CONTAINER: Policy = request(
    "remove",
    true,
    &[404, 409],
    "404 (already gone) and 409 (removal in progress) count as success",
);
/// Attaching to the `remove_on_kill` anchor's stdin.
pub(crate) const ATTACH: Policy = request(
    "attach",
    false,
    &[],
    "the attached stream is the point; a second attach would not replace a lost one",
);
/// Putting a tar archive into a container.
pub(crate) const UPLOAD: Policy = request(
    "copy in",
    true,
    &[],
    "unpacking the same archive twice leaves the same files",
);
/// Creating an exec instance.
pub(crate) const EXEC_CREATE: Policy = request(
    "exec",
    true,
    &[],
    "a duplicate exec instance that is never started does nothing",
);
/// Starting an exec instance.
pub(crate) const EXEC_START: Policy = request(
    "exec start",
    false,
    &[],
    "a second start would run the command twice; its output is bounded by the exec's own timeout",
);
/// Inspecting an exec instance.
pub(crate) const EXEC_INSPECT: Policy = request("exec inspect", true, &[], "read-only");
/// Inspecting an image.
pub(crate) const INSPECT_IMAGE: Policy = request("inspect image", true, &[], "read-only");
/// Removing an image.
pub(crate) const REMOVE_IMAGE: Policy = request(
    "remove image",
    true,
    &[404],
    "404 (already gone) counts as success",
);
/// Creating a network.
pub(crate) const CREATE_NETWORK: Policy = request(
    "create network",
    false,
    &[],
    "Docker allows two networks of one name, so a retry after a lost answer could make a second",
);
/// Connecting a container to a network.
pub(crate) const CONNECT_NETWORK: Policy = request(
    "connect network",
    false,
    &[],
    "a second connect after a lost answer is refused as already connected, which would hide that the first one worked",
);
/// Removing a network.
pub(crate) const INSPECT_NETWORK: Policy = request("inspect network", true, &[], "read-only");

pub(crate) const REMOVE_NETWORK: Policy = request(
    "remove network",
    true,
    &[404],
    "404 (already gone) counts as success",
);
/// Removing a volume.
pub(crate) const REMOVE_VOLUME: Policy = request(
    "remove volume",
    true,
    &[404],
    "404 (already gone) counts as success",
);
/// Reading a container's log so far.
pub(crate) const LOGS: Policy = stream(
    "logs",
    Bound::Stream { idle: true },
    "a stream cannot be replayed; a caller asks again",
);
/// Following a container's log.
pub(crate) const FOLLOW_LOGS: Policy = stream(
    "follow logs",
    Bound::Open,
    "a quiet container sends nothing for as long as it is quiet, so only the breaker gates it",
);
/// One stats sample.
pub(crate) const STATS: Policy = stream(
    "stats",
    Bound::Stream { idle: true },
    "a sample takes the daemon about a second",
);
/// Reading a tar archive out of a container.
pub(crate) const DOWNLOAD: Policy = stream(
    "copy out",
    Bound::Stream { idle: true },
    "a stream cannot be replayed",
);
/// Pulling an image.
pub(crate) const PULL: Policy = stream(
    "pull",
    Bound::Stream { idle: true },
    "a failed pull is the registry's answer, which a retry rarely changes; progress arrives steadily",
);
/// Building an image.
pub(crate) const BUILD: Policy = stream(
    "build",
    Bound::Stream { idle: false },
    "a build step may be silent for long",
);
/// Importing a root filesystem as an image.
pub(crate) const IMPORT: Policy = stream(
    "import",
    Bound::Stream { idle: false },
    "the answer comes once the archive is unpacked",
);

/// Every policy, in the order README lists them.
#[cfg(test)]
const ALL: [&Policy; 27] = [
    &VERSION,
    &INFO,
    &INSPECT_CONTAINER,
    &LIST,
    &CREATE_CONTAINER,
    &START_CONTAINER,
    &STOP_CONTAINER,
    &REMOVE_CONTAINER,
    &ATTACH,
    &UPLOAD,
    &EXEC_CREATE,
    &EXEC_START,
    &EXEC_INSPECT,
    &INSPECT_IMAGE,
    &REMOVE_IMAGE,
    &CREATE_NETWORK,
    &CONNECT_NETWORK,
    &INSPECT_NETWORK,
    &REMOVE_NETWORK,
    &REMOVE_VOLUME,
    &LOGS,
    &FOLLOW_LOGS,
    &STATS,
    &DOWNLOAD,
    &PULL,
    &BUILD,
    &IMPORT,
];

/// README's table of calls, as Markdown.
#[cfg(test)]
fn table() -> String {
    let mut out = String::from(
        "| call | retried | also success | bounded by | why |\n| --- | --- | --- | --- | --- |\n",
    );
    for p in ALL {
        let success = if p.success.is_empty() {
            "-".to_owned()
        } else {
            p.success
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let bound = match p.bound {
            Bound::Request => "per-call timeout",
            Bound::Stream { idle: true } => "first frame and every gap, per-call timeout",
            Bound::Stream { idle: false } => "first frame, per-call timeout",
            Bound::Open => "breaker only",
        };
        let retried = if p.retried { "yes" } else { "no" };
        out.push_str(&format!(
            "| {} | {retried} | {success} | {bound} | {} |\n",
            p.op, p.why
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn readme_lists_every_call_as_the_policies_say() {
        let readme = include_str!("../../README.md");
        let table = super::table();
        assert!(
            readme.contains(&table),
            "README's table of calls differs from src/docker/policy.rs; paste this in:\n{table}"
        );
    }

    #[test]
    fn success_statuses_settle_a_call() {
        let policy = super::REMOVE_CONTAINER;
        let answered = |status| {
            Err(crate::error::Error::Docker {
                operation: "remove",
                target: "x".to_owned(),
                status: Some(status),
                message: String::new(),
                source: None,
            })
        };
        assert!(policy.settle(answered(404)).is_ok());
        assert!(policy.settle(answered(409)).is_ok());
        assert!(policy.settle(answered(500)).is_err());
    }

    #[test]
    fn every_operation_is_named_once() {
        let mut ops: Vec<&str> = super::ALL.iter().map(|p| p.op).collect();
        ops.sort_unstable();
        let before = ops.len();
        ops.dedup();
        assert_eq!(ops.len(), before);
    }
}
