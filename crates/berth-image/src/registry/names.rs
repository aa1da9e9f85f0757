//! Checks on repository names, tags and digests before they go into a URL path.

use super::digest::DigestVerifier;
use crate::error::{Error, Result};

/// A repository name per the distribution spec: lower-case path components joined by `/`.
pub(crate) fn check_repository(repository: &str) -> Result<()> {
    let valid_component = |c: &str| {
        !c.is_empty()
            && c.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
            && c.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && c.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
    };
    if repository.len() > 255 || !repository.split('/').all(valid_component) {
        return Err(Error::InvalidReference { reference: repository.to_string(), reason: "not a valid repository name".into() });
    }
    Ok(())
}

/// A tag (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`) or a digest.
pub(crate) fn check_reference(reference: &str) -> Result<()> {
    if reference.contains(':') {
        return DigestVerifier::for_digest(reference).map(|_| ());
    }
    let mut bytes = reference.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !first_ok || reference.len() > 128 || !bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) {
        return Err(Error::InvalidReference { reference: reference.to_string(), reason: "not a valid tag or digest".into() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_bend_a_url_are_refused() {
        assert!(check_repository("library/busybox").is_ok());
        assert!(check_repository("a/../b").is_err());
        assert!(check_repository("A").is_err());
        assert!(check_repository("a//b").is_err());
        assert!(check_repository("a?x=1").is_err());
        assert!(check_reference("latest").is_ok());
        assert!(check_reference("v1.2-rc_3").is_ok());
        assert!(check_reference(".hidden").is_err());
        assert!(check_reference("a/b").is_err());
        assert!(check_reference("sha256:zz").is_err());
    }
}
