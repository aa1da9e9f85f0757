//! Digest strings (`sha256:<hex>`, `sha512:<hex>`): validation and streaming verification.

use sha2::{Digest as _, Sha256, Sha512};

use crate::error::{Error, Result};

/// The sha256 digest of `bytes` in `sha256:<hex>` form.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Whether `reference` is a digest (`algorithm:hex`) rather than a tag.
pub fn is_digest(reference: &str) -> bool {
    reference.contains(':')
}

/// A hasher for the algorithm a digest names, to check content against it.
pub(crate) enum DigestVerifier {
    /// sha256
    Sha256(Sha256),
    /// sha512
    Sha512(Sha512),
}

impl DigestVerifier {
    /// A verifier for `digest`; an error if the algorithm is unknown or the hex is malformed.
    pub(crate) fn for_digest(digest: &str) -> Result<Self> {
        let invalid = |why: &str| Error::Format { what: format!("digest {digest:?}"), message: why.to_string() };
        let (algorithm, hex) = digest.split_once(':').ok_or_else(|| invalid("missing algorithm"))?;
        let (verifier, len) = match algorithm {
            "sha256" => (DigestVerifier::Sha256(Sha256::new()), 64),
            "sha512" => (DigestVerifier::Sha512(Sha512::new()), 128),
            _ => return Err(invalid("unsupported algorithm")),
        };
        if hex.len() != len || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(invalid("malformed hex"));
        }
        Ok(verifier)
    }

    /// Feed content.
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        match self {
            DigestVerifier::Sha256(h) => h.update(bytes),
            DigestVerifier::Sha512(h) => h.update(bytes),
        }
    }

    /// The digest of everything fed, in `algorithm:hex` form.
    pub(crate) fn finish(self) -> String {
        match self {
            DigestVerifier::Sha256(h) => format!("sha256:{}", hex::encode(h.finalize())),
            DigestVerifier::Sha512(h) => format!("sha512:{}", hex::encode(h.finalize())),
        }
    }
}

/// Check `bytes` against `expected`; `what` names the content in the error.
pub(crate) fn verify_bytes(bytes: &[u8], expected: &str, what: impl FnOnce() -> String) -> Result<()> {
    let mut verifier = DigestVerifier::for_digest(expected)?;
    verifier.update(bytes);
    let actual = verifier.finish();
    if actual != expected {
        return Err(Error::DigestMismatch { what: what(), expected: expected.to_string(), actual });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_digests_are_rejected() {
        assert!(DigestVerifier::for_digest("sha256:abc").is_err());
        assert!(DigestVerifier::for_digest("md5:d41d8cd98f00b204e9800998ecf8427e").is_err());
        assert!(DigestVerifier::for_digest(&format!("sha256:{}", "A".repeat(64))).is_err());
        assert!(DigestVerifier::for_digest(&format!("sha256:../{}", "a".repeat(61))).is_err());
        assert!(DigestVerifier::for_digest(&sha256_digest(b"x")).is_ok());
    }

    #[test]
    fn verify_bytes_reports_both_digests() {
        let expected = sha256_digest(b"good");
        let err = verify_bytes(b"bad", &expected, || "blob".into()).unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    }
}
