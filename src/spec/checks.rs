//! Checks shared by every field that carries text to the daemon: NUL
//! bytes, container paths, tmpfs options, and the one-time warning for
//! mounts that hand the container the host.

use std::sync::atomic::{AtomicBool, Ordering};

/// Refuses a NUL byte: Docker passes strings to the kernel as C strings,
/// which end at the first NUL, so the daemon answers "invalid argument".
pub(crate) fn no_nul(value: &str) -> Result<(), &'static str> {
    if value.contains('\0') {
        return Err("contains a NUL byte, which the daemon cannot pass on");
    }
    Ok(())
}

/// Like [`no_nul`], for every word of a command.
pub(crate) fn no_nul_words(words: &[String]) -> Result<(), &'static str> {
    words.iter().try_for_each(|w| no_nul(w))
}

/// An absolute container path, cleaned lexically: repeated and trailing
/// `/` dropped, `.` dropped, `..` taken back (never above `/`).
pub(crate) fn container_path(path: &str) -> Result<String, String> {
    no_nul(path)?;
    if !path.starts_with('/') {
        return Err(format!("container path `{path}` must be absolute"));
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            _ => parts.push(part),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

/// A container path where something is mounted: absolute, cleaned, and
/// not where the runtime refuses a mount: `/` (the container's root),
/// `/proc` and below (the kernel's view of the container), or `/dev` (its
/// device tree, which must hold `/dev/null`).
pub(crate) fn mount_point(path: &str) -> Result<String, String> {
    let clean = container_path(path)?;
    let refused = if clean == "/" {
        Some("the container's root")
    } else if clean == "/proc" || clean.starts_with("/proc/") {
        Some("under /proc, which the runtime keeps for the kernel's view of the container")
    } else if clean == "/dev" {
        Some("the container's device tree")
    } else {
        None
    };
    match refused {
        Some(what) => Err(format!(
            "container path `{path}` is {what}: nothing can be mounted there"
        )),
        None => Ok(clean),
    }
}

/// Files Docker itself mounts into every container: a tmpfs, being a
/// directory, cannot go on top of them.
pub(crate) const DOCKER_FILES: [&str; 3] = ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"];

/// Mount flags a tmpfs takes. Docker also passes `remount`, `bind` and
/// `rbind` on, and the mount then fails at start: they are left out.
const TMPFS_FLAGS: [&str; 30] = [
    "defaults",
    "ro",
    "rw",
    "suid",
    "nosuid",
    "dev",
    "nodev",
    "exec",
    "noexec",
    "sync",
    "async",
    "dirsync",
    "mand",
    "nomand",
    "atime",
    "noatime",
    "diratime",
    "nodiratime",
    "unbindable",
    "runbindable",
    "private",
    "rprivate",
    "shared",
    "rshared",
    "slave",
    "rslave",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
];

/// Refuses tmpfs options that the daemon (an unknown key) or the kernel (a
/// value it cannot read) would refuse: comma-separated mount flags and
/// `key=value` settings of tmpfs.
pub(crate) fn tmpfs_options(options: &str) -> Result<(), String> {
    no_nul(options)?;
    if options.is_empty() {
        return Ok(());
    }
    let mut settings: Vec<&str> = Vec::new();
    for option in options.split(',') {
        let Some((key, value)) = option.split_once('=') else {
            if TMPFS_FLAGS.contains(&option) {
                continue;
            }
            return Err(format!(
                "unknown tmpfs option `{option}` (flags: {}; settings: size, mode, uid, gid, nr_inodes, nr_blocks, mpol)",
                TMPFS_FLAGS.join(", ")
            ));
        };
        if settings.contains(&key) {
            return Err(format!("tmpfs `{key}` is given twice"));
        }
        settings.push(key);
        let fits = match key {
            "size" => value
                .strip_suffix('%')
                .map_or_else(|| is_amount(value), is_digits),
            "nr_inodes" | "nr_blocks" => is_amount(value),
            "mode" => {
                !value.is_empty()
                    && value.len() <= 4
                    && value.bytes().all(|b| (b'0'..=b'7').contains(&b))
            }
            // -1 (4294967295) is no id: the kernel refuses it.
            "uid" | "gid" => {
                is_digits(value) && value.parse::<u32>().is_ok_and(|id| id != u32::MAX)
            }
            "mpol" => is_mempolicy(value),
            _ => {
                return Err(format!(
                    "unknown tmpfs setting `{key}` (known: size, mode, uid, gid, nr_inodes, nr_blocks, mpol)"
                ));
            }
        };
        if !fits {
            let wanted = match key {
                "size" => "bytes with an optional k, m or g, or a percentage of memory",
                "nr_inodes" | "nr_blocks" => "a count with an optional k, m or g",
                "mode" => "octal permissions such as 1777",
                "uid" | "gid" => "a numeric id",
                _ => "default, local, or prefer, bind or interleave with a node list",
            };
            return Err(format!("tmpfs `{option}`: {key} must be {wanted}"));
        }
    }
    Ok(())
}

fn is_digits(value: &str) -> bool {
    !value.is_empty() && value.len() <= 19 && value.bytes().all(|b| b.is_ascii_digit())
}

/// A number as the kernel's `memparse` reads it: digits and an optional
/// k, m, g, t, p or e (either case).
fn is_amount(value: &str) -> bool {
    let digits = value
        .strip_suffix(|c: char| "kKmMgGtTpPeE".contains(c))
        .unwrap_or(value);
    is_digits(digits)
}

/// A tmpfs memory policy: `default`, `local`, or `prefer`, `bind` or
/// `interleave` with a node list such as `0-3,5` (`:` joins them, and the
/// node list's own commas cannot be told from the option separator, so a
/// list here is ranges and single nodes joined by `-`).
fn is_mempolicy(value: &str) -> bool {
    match value.split_once(':') {
        None => matches!(value, "default" | "local" | "prefer"),
        Some((mode, nodes)) => {
            matches!(mode, "prefer" | "bind" | "interleave")
                && !nodes.is_empty()
                && nodes.split('-').all(is_digits)
        }
    }
}

/// Host paths that give a container the host itself: the Docker socket
/// (whoever holds it is root on the host), and `/` read-write. The number
/// tells the two apart, for [`warn_once`].
pub(crate) fn hands_over_the_host(host: &str, read_only: bool) -> Option<(usize, &'static str)> {
    let name = host.rsplit('/').next().unwrap_or(host);
    if name == "docker.sock" || name == "podman.sock" {
        return Some((
            0,
            "the container gets the Docker socket, and with it root on the host and every other job's containers",
        ));
    }
    if host == "/" && !read_only {
        return Some((1, "the container can write anywhere on the host"));
    }
    None
}

/// Says on stderr, once per process for each of the two kinds, that a
/// mount hands over the host.
pub(crate) fn warn_once(host: &str, (kind, why): (usize, &str)) {
    static WARNED: [AtomicBool; 2] = [AtomicBool::new(false), AtomicBool::new(false)];
    if !WARNED[kind].swap(true, Ordering::Relaxed) {
        crate::error::warn(format_args!(
            "bind mount of `{host}`: {why}. It is allowed; this is said once per process."
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_paths_are_cleaned_and_mount_points_are_not_the_root() {
        assert_eq!(container_path("/a//b/./c/").unwrap(), "/a/b/c");
        assert_eq!(container_path("/a/../../b").unwrap(), "/b");
        assert_eq!(container_path("/").unwrap(), "/");
        assert!(container_path("a/b").is_err());
        assert!(container_path("/a\0b").is_err());
        for refused in [
            "/",
            "//",
            "/.",
            "/a/..",
            "/../..",
            "/proc",
            "/proc/sys/",
            "/dev",
        ] {
            assert!(mount_point(refused).is_err(), "{refused}");
        }
        assert_eq!(mount_point("/dev/shm").unwrap(), "/dev/shm");
        assert_eq!(mount_point("/process").unwrap(), "/process");
        assert_eq!(mount_point("/data/").unwrap(), "/data");
    }

    #[test]
    fn tmpfs_options_docker_and_the_kernel_take() {
        for ok in [
            "",
            "size=64m",
            "size=65536k,mode=1777",
            "size=50%",
            "rw,noexec,nosuid,size=1g",
            "uid=1000,gid=1000,mode=700",
            "nr_inodes=10k,nr_blocks=100",
            "mpol=interleave:0-1",
            "mpol=local",
            "defaults,strictatime",
        ] {
            assert_eq!(tmpfs_options(ok), Ok(()), "{ok}");
        }
        for bad in [
            "bogus",
            "size=lots",
            "size=lots,bogus",
            "size=",
            "size=10x",
            "mode=rwx",
            "mode=888",
            "uid=root",
            "gid=-1",
            "colour=red",
            "mpol=sometimes",
            "remount",
            "rbind,size=1m",
            "uid=4294967295",
            "size=1m,",
            "size=1m\0",
            "size=1m,size=2m",
        ] {
            assert!(tmpfs_options(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn the_docker_socket_and_a_writable_root_hand_over_the_host() {
        assert!(hands_over_the_host("/var/run/docker.sock", true).is_some());
        assert!(hands_over_the_host("/run/user/1000/docker.sock", false).is_some());
        assert!(hands_over_the_host("/", false).is_some());
        assert!(hands_over_the_host("/", true).is_none());
        assert!(hands_over_the_host("/srv/data", false).is_none());
    }
}
