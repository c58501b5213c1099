//! The label scheme: every container dockfix creates says who owns it.
//!
//! The sweep finds leaked containers by these exact keys, so they are
//! defined here once and nowhere else.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// Every dockfix container carries `dockfix.managed=true`. Nothing without
/// it is ever touched.
pub const LABEL_MANAGED: &str = "dockfix.managed";
/// The random id of the process (session) that created the container.
pub const LABEL_SESSION: &str = "dockfix.session";
/// The pid of the owner process.
pub const LABEL_PID: &str = "dockfix.pid";
/// The hostname of the machine the owner process runs on.
pub const LABEL_HOST: &str = "dockfix.host";
/// Creation time, in seconds since the Unix epoch.
pub const LABEL_CREATED: &str = "dockfix.created";
/// The dockfix version that created the container.
pub const LABEL_VERSION: &str = "dockfix.version";
/// The PID namespace of the owner process (`pid:[4026531836]`), so that
/// a process in another namespace with the same hostname (a container, a
/// pod sharing the node's hostname) is never taken for dead.
pub const LABEL_PIDNS: &str = "dockfix.pidns";
/// The owner machine's id (`/etc/machine-id`; the hostname where there is
/// none): two machines of one hostname are still told apart.
pub const LABEL_MACHINE: &str = "dockfix.machine";
/// The boot the owner process ran in (`/proc/sys/kernel/random/boot_id`).
pub const LABEL_BOOT: &str = "dockfix.boot";
/// The owner process's start, in clock ticks since boot: with the boot id
/// and the pid, it names the process without reading the wall clock.
pub const LABEL_START: &str = "dockfix.start";
/// The pool a container belongs to, for pool members.
pub const LABEL_POOL: &str = "dockfix.pool";
/// A time to live in seconds, after which the sweep may remove the container.
pub const LABEL_TTL: &str = "dockfix.ttl";

/// The proof that dockfix made the object: its own name, written when it
/// is created. Docker copies an image's labels into every container made
/// from it, but a copied `dockfix.name` names another object, so a
/// container anyone makes from an image that carries dockfix's labels is
/// never taken for dockfix's.
pub const LABEL_NAME: &str = "dockfix.name";

/// Images carry the owner labels under this prefix instead of `dockfix.`
/// (`dockfix.image.managed`, `dockfix.image.session`, …), so that the
/// containers made from them inherit nothing that reads as dockfix's.
pub const IMAGE_PREFIX: &str = "dockfix.image.";

/// Adds the proof of ownership, `dockfix.name=<name>`, to labels that
/// carry dockfix's owner labels; the Docker layer calls this as it creates
/// a container or a network.
pub(crate) fn add_proof(labels: &mut HashMap<String, String>, name: &str) {
    if labels.contains_key(LABEL_MANAGED) {
        labels.insert(LABEL_NAME.to_owned(), name.to_owned());
    }
}

/// Whether `labels` prove that dockfix made the object named `name`: it
/// carries `dockfix.managed=true` and `dockfix.name=<name>`.
pub(crate) fn proves(labels: &HashMap<String, String>, name: &str) -> bool {
    labels.get(LABEL_MANAGED).map(String::as_str) == Some("true")
        && labels.get(LABEL_NAME).map(String::as_str) == Some(name)
}

/// The owner labels for an image: the `dockfix.` keys moved under
/// [`IMAGE_PREFIX`].
pub(crate) fn image_labels() -> HashMap<String, String> {
    owner_labels(&HashMap::new(), None, None)
        .into_iter()
        .map(|(k, v)| match k.strip_prefix(NAMESPACE) {
            Some(rest) => (format!("{IMAGE_PREFIX}{rest}"), v),
            None => (k, v),
        })
        .collect()
}

/// An image's labels read as a container's: the [`IMAGE_PREFIX`] keys
/// moved back to `dockfix.`; an image of an earlier version, labelled
/// `dockfix.` itself, reads as it is.
pub(crate) fn from_image_labels(labels: HashMap<String, String>) -> HashMap<String, String> {
    if !labels.keys().any(|k| k.starts_with(IMAGE_PREFIX)) {
        return labels;
    }
    labels
        .into_iter()
        .filter_map(|(k, v)| {
            let rest = k.strip_prefix(IMAGE_PREFIX)?;
            Some((format!("{NAMESPACE}{rest}"), v))
        })
        .collect()
}

/// On a shared pool's lease: a value only the create that made it wrote,
/// which tells a claim's own lease from another's after a lost answer.
pub(crate) const LABEL_LEASE: &str = "dockfix.lease";

/// What kind of Docker object carries dockfix's labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ResourceKind {
    /// A container.
    Container,
    /// A network.
    Network,
    /// A volume.
    Volume,
    /// An image built or imported by dockfix.
    Image,
}

impl std::fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ResourceKind::Container => "container",
            ResourceKind::Network => "network",
            ResourceKind::Volume => "volume",
            ResourceKind::Image => "image",
        })
    }
}

/// The namespace reserved for dockfix's own labels.
pub(crate) const NAMESPACE: &str = "dockfix.";

static SESSION: LazyLock<String> = LazyLock::new(|| {
    use rand::Rng;
    let n: u64 = rand::rng().random();
    format!("{n:016x}")
});

static PIDNS: LazyLock<Option<String>> = LazyLock::new(|| {
    std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .and_then(|p| p.to_str().map(str::to_owned))
});

/// This process's PID namespace, where it can be read.
pub(crate) fn pid_namespace() -> Option<&'static str> {
    PIDNS.as_deref()
}

static HOSTNAME: LazyLock<String> = LazyLock::new(|| {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_owned())
});

/// The session id of this process: one random id, the same for every
/// container it creates, written to the `dockfix.session` label.
///
/// `docker ps -a --filter label=dockfix.session=<id>` lists this process's
/// containers.
pub fn session_id() -> &'static str {
    &SESSION
}

/// This machine's id, or its hostname where it has none.
pub(crate) fn machine() -> &'static str {
    static MACHINE: LazyLock<String> =
        LazyLock::new(|| crate::sys::machine_id().unwrap_or_else(|| hostname().to_owned()));
    &MACHINE
}

/// The hostname written to `dockfix.host`.
pub(crate) fn hostname() -> &'static str {
    &HOSTNAME
}

/// The owner labels every container gets, merged over the user's labels.
pub(crate) fn owner_labels(
    user: &HashMap<String, String>,
    ttl: Option<std::time::Duration>,
    pool: Option<&str>,
) -> HashMap<String, String> {
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut labels = user.clone();
    for (k, v) in [
        (LABEL_MANAGED, "true".to_owned()),
        (LABEL_SESSION, session_id().to_owned()),
        (LABEL_PID, std::process::id().to_string()),
        (LABEL_HOST, hostname().to_owned()),
        (LABEL_CREATED, created.to_string()),
        (LABEL_VERSION, env!("CARGO_PKG_VERSION").to_owned()),
    ] {
        labels.insert(k.to_owned(), v);
    }
    if let Some(ns) = pid_namespace() {
        labels.insert(LABEL_PIDNS.to_owned(), ns.to_owned());
    }
    labels.insert(LABEL_MACHINE.to_owned(), machine().to_owned());
    if let Some(boot) = crate::sys::boot_id() {
        labels.insert(LABEL_BOOT.to_owned(), boot);
    }
    if let Some(stat) = crate::sys::proc_stat(i64::from(std::process::id())) {
        labels.insert(LABEL_START.to_owned(), stat.start_ticks.to_string());
    }
    if let Some(ttl) = ttl {
        labels.insert(LABEL_TTL.to_owned(), ttl.as_secs().to_string());
    }
    if let Some(pool) = pool {
        labels.insert(LABEL_POOL.to_owned(), pool.to_owned());
    }
    labels
}

/// Refuses a user label key that Docker would refuse or that lies in the
/// reserved namespace.
pub(crate) fn check_user_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty() {
        return Err("label keys must not be empty");
    }
    if key.starts_with(NAMESPACE) {
        return Err("the `dockfix.` label namespace is reserved for dockfix's own labels");
    }
    if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("label keys must not contain whitespace or control characters");
    }
    // `key=value` is how labels are written; Podman refuses such a key.
    if key.contains('=') {
        return Err("label keys must not contain `=`");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_labels_override_nothing_but_add_all_keys() {
        let mut user = HashMap::new();
        user.insert("team".to_owned(), "db".to_owned());
        let labels = owner_labels(&user, None, None);
        assert_eq!(labels["team"], "db");
        for k in [
            LABEL_MANAGED,
            LABEL_SESSION,
            LABEL_PID,
            LABEL_HOST,
            LABEL_CREATED,
            LABEL_VERSION,
        ] {
            assert!(labels.contains_key(k), "{k} missing");
        }
        assert_eq!(labels[LABEL_MANAGED], "true");
        assert_eq!(labels[LABEL_SESSION].len(), 16);
    }

    #[test]
    fn reserved_namespace_is_refused() {
        assert!(check_user_key("dockfix.session").is_err());
        assert!(check_user_key("").is_err());
        assert!(check_user_key("a b").is_err());
        assert!(check_user_key("a=b").is_err());
        assert!(check_user_key("com.example.team").is_ok());
    }
}
