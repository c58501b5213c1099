//! Image references: what the spec accepts, and how a reference splits
//! into repository, tag and registry.

use crate::error::{Error, Result};

/// Refuses references Docker would refuse: the distribution reference
/// grammar, as Docker applies it (an image id, `[sha256:]<64 hex>`, is
/// taken as it is).
pub(crate) fn check_image(image: &str) -> Result<()> {
    parse(image).map_err(|reason| Error::invalid("image", image, reason))
}

/// Checks `reference` against the grammar:
///
/// ```text
/// reference  := name [ ":" tag ] [ "@" digest ]
/// name       := [ domain "/" ] path
/// domain     := host [ ":" port ]          host: dns labels, or [ipv6]
/// path       := component ( "/" component )*
/// component  := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
/// tag        := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
/// digest     := sha256:<64 hex> | sha384:<96 hex> | sha512:<128 hex>
/// ```
///
/// The first part of a name is a domain when it holds a `.` or a `:`, is
/// `localhost`, or has a capital letter, as Docker decides it; the path is
/// lowercase; a name is at most 255 characters.
fn parse(reference: &str) -> std::result::Result<(), &'static str> {
    if reference.is_empty() {
        return Err("the image reference is empty");
    }
    let id = reference.strip_prefix("sha256:").unwrap_or(reference);
    if id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Ok(());
    }
    let (rest, digest) = match reference.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (reference, None),
    };
    if let Some(digest) = digest {
        check_digest(digest)?;
    }
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        check_tag(tag)?;
    }
    if name.len() > 255 {
        return Err("the repository name is longer than 255 characters");
    }
    let path = match name.split_once('/') {
        Some((first, path)) if is_domain(first) => {
            check_domain(first)?;
            path
        }
        _ => name,
    };
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("the repository name must be lowercase");
    }
    path.split('/').try_for_each(check_component)
}

/// Whether Docker takes `first`, the part of a name before its first `/`,
/// for a registry.
fn is_domain(first: &str) -> bool {
    first.contains(['.', ':'])
        || first == "localhost"
        || first.bytes().any(|b| b.is_ascii_uppercase())
}

fn check_domain(domain: &str) -> std::result::Result<(), &'static str> {
    const BAD: &str =
        "the registry must be a host name or an [IPv6] address, with an optional :port";
    let (host, port) = if let Some(v6) = domain.strip_prefix('[') {
        let (address, after) = v6.split_once(']').ok_or(BAD)?;
        if address.is_empty() || !address.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err(BAD);
        }
        match after {
            "" => ("", None),
            _ => ("", Some(after.strip_prefix(':').ok_or(BAD)?)),
        }
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (domain, None),
        }
    };
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BAD);
        }
    }
    if !domain.starts_with('[') {
        let label_ok = |label: &str| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        };
        if !host.split('.').all(label_ok) {
            return Err(BAD);
        }
    }
    Ok(())
}

/// One path component: lowercase letters and digits, joined by `.`, `_`,
/// `__` or dashes.
fn check_component(component: &str) -> std::result::Result<(), &'static str> {
    const BAD: &str = "each part of the repository path is lowercase letters and digits, joined by `.`, `_`, `__` or `-`";
    let b = component.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() || !alnum(&b[0]) || !alnum(&b[b.len() - 1]) {
        return Err(BAD);
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(&b[i]) {
            i += 1;
            continue;
        }
        let run = b[i..].iter().take_while(|c| !alnum(c)).count();
        let separator = &component[i..i + run];
        let ok = matches!(separator, "." | "_" | "__") || separator.bytes().all(|c| c == b'-');
        if !ok {
            return Err(BAD);
        }
        i += run;
    }
    Ok(())
}

fn check_tag(tag: &str) -> std::result::Result<(), &'static str> {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let b = tag.as_bytes();
    if b.is_empty()
        || b.len() > 128
        || !word(b[0])
        || !b.iter().all(|&c| word(c) || c == b'.' || c == b'-')
    {
        return Err(
            "a tag is up to 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`",
        );
    }
    Ok(())
}

fn check_digest(digest: &str) -> std::result::Result<(), &'static str> {
    const BAD: &str = "a digest is sha256:<64 hex digits> (or sha384, sha512)";
    let (algorithm, hex) = digest.split_once(':').ok_or(BAD)?;
    let len = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(BAD),
    };
    if hex.len() != len
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(BAD);
    }
    Ok(())
}

/// Splits `repo[:tag]` (a digest stays in the repo part); an image without
/// tag or digest means `latest`, as the Docker CLI has it.
pub(crate) fn split_reference(image: &str) -> (&str, Option<&str>) {
    if image.contains('@') {
        return (image, None);
    }
    let last = image.rfind('/').map_or(0, |i| i + 1);
    match image[last..].rfind(':') {
        Some(i) => (&image[..last + i], Some(&image[last + i + 1..])),
        None => (image, Some("latest")),
    }
}

/// The registry an image reference names, as the Docker CLI's config keys
/// it: the first component when it looks like a host, else Docker Hub.
pub(crate) fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((host, _)) if host.contains('.') || host.contains(':') || host == "localhost" => {
            host.to_owned()
        }
        _ => "https://index.docker.io/v1/".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX64: &str = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";

    #[test]
    fn references_of_the_grammar_are_accepted() {
        let with_digest = format!("test:5000/repo@sha256:{HEX64}");
        let with_both = format!("test:5000/repo:tag@sha256:{HEX64}");
        let image_id = format!("sha256:{}", &HEX64.replace('f', "a"));
        for ok in [
            "test_com",
            "test.com:tag",
            "test.com:5000",
            "test.com/repo:tag",
            "test:5000/repo",
            "test:5000/repo:tag",
            with_digest.as_str(),
            with_both.as_str(),
            "lowercase:Uppercase",
            "sub-dom1.foo.com/bar/baz/quux",
            "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
            "b.gcr.io/test.example.com/my-app:test.example.com",
            "xn--n3h.com/myimage:xn--n3h.com",
            "foo_bar.com:8080",
            "foo/foo_bar.com:8080",
            "192.168.1.1",
            "192.168.1.1:tag",
            "192.168.1.1:5000",
            "192.168.1.1/repo",
            "192.168.1.1:5000/repo",
            "192.168.1.1:5000/repo:5050",
            "a/a/a/a/a",
            "a__b/c--d/e.f/g_h",
            "[2001:db8::1]/repo",
            "[2001:db8::1]:5000/repo:tag",
            "localhost:5000/app",
            "localhost/app",
            "Registry.Example.COM/app",
            "docker.io/library/busybox:1.36",
            "dockfix-test/busybox:latest",
            image_id.as_str(),
            HEX64,
        ] {
            assert_eq!(parse(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn references_outside_the_grammar_are_refused() {
        let long = "a/".repeat(128) + "a";
        let bad_digest = format!("repo@sha256:{}", &HEX64[..63]);
        let unknown_algorithm = format!("repo@md5:{HEX64}");
        for bad in [
            "",
            ":justtag",
            "@sha256:ffff",
            "Uppercase:tag",
            "localhost:5000/App",
            "test:5000/Uppercase/lowercase:tag",
            "aa/asdf$$^/aa",
            "-foo/bar",
            "foo_/bar",
            "foo/_bar",
            "foo/bar.",
            "foo/b...ar",
            "foo/b___ar",
            "repo:",
            "repo:-tag",
            "repo:.tag",
            "repo:has space",
            "has space/repo",
            "[fe80::1%eth0]:5000/repo",
            "[]/repo",
            "host:port/repo",
            "-host.com/repo",
            "ho_st.com/repo",
            long.as_str(),
            bad_digest.as_str(),
            unknown_algorithm.as_str(),
            "repo\0x",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse(&format!("repo:{}", "t".repeat(129))).is_err());
    }

    #[test]
    fn the_registry_is_the_first_component_when_it_looks_like_a_host() {
        assert_eq!(registry_of("127.0.0.1:5000/a/b:1"), "127.0.0.1:5000");
        assert_eq!(registry_of("localhost/a"), "localhost");
        assert_eq!(registry_of("ghcr.io/o/r"), "ghcr.io");
        assert_eq!(
            registry_of("library/postgres"),
            "https://index.docker.io/v1/"
        );
        assert_eq!(registry_of("postgres"), "https://index.docker.io/v1/");
    }

    #[test]
    fn references_split_into_repo_and_tag() {
        assert_eq!(split_reference("busybox"), ("busybox", Some("latest")));
        assert_eq!(split_reference("postgres:16"), ("postgres", Some("16")));
        assert_eq!(
            split_reference("localhost:5000/x"),
            ("localhost:5000/x", Some("latest"))
        );
        assert_eq!(
            split_reference("localhost:5000/x:1"),
            ("localhost:5000/x", Some("1"))
        );
        assert_eq!(split_reference("x@sha256:ab"), ("x@sha256:ab", None));
    }
}
