//! Whether a failed call can heal: by status first, and, for the 500 by
//! which Docker reports both trouble that passes and mistakes that never
//! will, by a small table of its messages.
//!
//! README's table of messages is rendered from [`PERMANENT`] and
//! [`TRANSIENT`]; a unit test fails when the two differ. Each row was seen
//! on Docker 20.10 (the daemon's words are in the tests below).

/// What retrying a failure can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Heals {
    /// It never heals: fail at once, with the daemon's words.
    Never,
    /// It can heal: retry with backoff, as the call's policy allows.
    Yes,
    /// A 500 none of the rows knows: retried at most [`UNKNOWN_RETRIES`]
    /// times, quickly.
    Unknown,
}

/// How often an unrecognised 500 is retried.
pub(crate) const UNKNOWN_RETRIES: u32 = 2;

/// 500 answers that never heal: (a fragment of Docker's message, what it
/// means).
pub(crate) const PERMANENT: [(&str, &str); 11] = [
    (
        "unable to find user",
        "the user does not exist in the image",
    ),
    (
        "unable to find group",
        "the group does not exist in the image",
    ),
    ("invalid tmpfs option", "Docker refuses a tmpfs option"),
    (
        "invalid mount config",
        "Docker refuses the mount (a destination of `/`, a missing source)",
    ),
    ("invalid volume specification", "Docker refuses the mount"),
    (
        "not a directory",
        "the working directory or a mount target is a file",
    ),
    (
        "executable file not found",
        "the command is not in the image",
    ),
    (
        "invalid argument",
        "the kernel refuses a value (a NUL byte in a path, a tmpfs size it cannot read)",
    ),
    (
        "invalid reference format",
        "the image reference is malformed",
    ),
    (
        "is already in use",
        "a name is taken (Podman's answer where Docker's is 409)",
    ),
    (
        "invalid mount option",
        "Podman refuses a mount option (a tmpfs `mpol`)",
    ),
];

/// 500 answers that heal: the daemon, or what it stands on, is busy or
/// restarting.
pub(crate) const TRANSIENT: [(&str, &str); 6] = [
    (
        "device or resource busy",
        "a mount or device is still in use",
    ),
    (
        "resource temporarily unavailable",
        "the kernel says try again",
    ),
    (
        "context deadline exceeded",
        "the daemon's own call timed out",
    ),
    ("i/o timeout", "a network call of the daemon timed out"),
    (
        "connection reset",
        "the daemon lost a connection (containerd)",
    ),
    (
        "connection refused",
        "the daemon cannot reach containerd (it is restarting)",
    ),
];

/// Whether an answer with `status` and `message` can heal.
pub(crate) fn answer(status: u16, message: &str) -> Heals {
    match status {
        500 => {
            let message = message.to_ascii_lowercase();
            let has = |rows: &[(&str, &str)]| rows.iter().any(|(m, _)| message.contains(m));
            if has(&TRANSIENT) {
                Heals::Yes
            } else if has(&PERMANENT) {
                Heals::Never
            } else {
                Heals::Unknown
            }
        }
        501.. => Heals::Yes,
        _ => Heals::Never,
    }
}

/// The status Docker would have answered: Podman answers a name that is
/// taken with 500 "… is already in use", where Docker answers 409, and the
/// layers above know conflicts by 409.
pub(crate) fn as_docker_status(status: u16, message: &str) -> u16 {
    if status == 500 && message.contains("is already in use") {
        409
    } else {
        status
    }
}

/// README's table of Docker's 500 messages, as Markdown.
#[cfg(test)]
fn table() -> String {
    let mut out = String::from("| Docker's 500 says | it means | so |\n| --- | --- | --- |\n");
    for (rows, so) in [
        (&PERMANENT[..], "fails at once"),
        (&TRANSIENT[..], "retried with backoff"),
    ] {
        for (message, meaning) in rows {
            out.push_str(&format!("| `{message}` | {meaning} | {so} |\n"));
        }
    }
    out.push_str(&format!(
        "| anything else | unknown | retried at most {UNKNOWN_RETRIES} times, quickly |\n"
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers Docker 20.10 gave here, with the status it gave them.
    const SEEN: [(u16, &str, Heals); 12] = [
        (
            500,
            "unable to find user nosuchuser: no matching entries in passwd file",
            Heals::Never,
        ),
        (
            500,
            "unable to find group nosuchgroup: no matching entries in group file",
            Heals::Never,
        ),
        (500, "invalid tmpfs option [\"bogus\"]", Heals::Never),
        (
            500,
            "invalid volume specification: '/tmp:/': invalid mount config for type \"bind\": invalid specification: destination can't be '/'",
            Heals::Never,
        ),
        (
            500,
            "lstat /var/lib/docker/fuse-overlayfs/9c50/merged/a\u{0}b: invalid argument",
            Heals::Never,
        ),
        (
            500,
            "Cannot mkdir: /bin/busybox is not a directory",
            Heals::Never,
        ),
        (
            500,
            "failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: error during container init: error mounting \"tmpfs\" to rootfs at \"/x\": mount tmpfs:/x (via /proc/self/fd/6), flags: 0xe, data: size=lots: invalid argument: unknown",
            Heals::Never,
        ),
        (
            400,
            "failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: \"nosuchcmd\": executable file not found in $PATH: unknown",
            Heals::Never,
        ),
        (
            400,
            "invalid reference format: repository name must be lowercase",
            Heals::Never,
        ),
        (404, "No such image: nosuch/image:1", Heals::Never),
        (503, "injected 503", Heals::Yes),
        (500, "injected 500", Heals::Unknown),
    ];

    #[test]
    fn docker_s_answers_are_classified_as_seen() {
        for (status, message, heals) in SEEN {
            assert_eq!(answer(status, message), heals, "{status} {message}");
        }
    }

    #[test]
    fn a_healing_word_wins_over_a_permanent_one() {
        assert_eq!(
            answer(
                500,
                "error mounting: device or resource busy: invalid argument"
            ),
            Heals::Yes
        );
    }

    #[test]
    fn readme_lists_the_messages_as_the_table_says() {
        let readme = include_str!("../../README.md");
        let table = table();
        assert!(
            readme.contains(&table),
            "README's table of Docker's messages differs from src/docker/classify.rs; paste this in:\n{table}"
        );
    }
}
