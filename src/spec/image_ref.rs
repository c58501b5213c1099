//! Image references: what the spec accepts, and how a reference splits
//! into repository, tag and registry.

use crate::error::{Error, Result};

/// Refuses references Docker would refuse.
pub(crate) fn check_image(image: &str) -> Result<()> {
    if image.is_empty() {
        return Err(Error::invalid(
            "image",
            image,
            "the image reference is empty",
        ));
    }
    if image
        .chars()
        .any(|c| c.is_whitespace() || c.is_ascii_uppercase() && !image.contains('@'))
    {
        let repo = image.split([':', '@']).next().unwrap_or(image);
        if repo
            .chars()
            .any(|c| c.is_whitespace() || c.is_ascii_uppercase())
        {
            return Err(Error::invalid(
                "image",
                image,
                "image references are lowercase and contain no whitespace",
            ));
        }
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
