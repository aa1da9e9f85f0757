//! Content digests: the sha256 hashing used by the store, the unpacker and the importer.

use std::io::{self, Read, Write};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use crate::{Error, Result};

pub use oci_spec::image::{Digest, DigestAlgorithm};

/// Parse a digest string (`algorithm:hex`), validating the hex length of known algorithms.
pub fn parse_digest(s: &str) -> Result<Digest> {
    Digest::from_str(s).map_err(|e| Error::Format { what: format!("digest {s:?}"), message: e.to_string() })
}

/// The `sha256:<hex>` digest of a finished hasher.
pub fn sha256_of(hasher: Sha256) -> Digest {
    let hex = hex::encode(hasher.finalize());
    // A sha256 hex string of 64 lowercase characters is always a valid digest.
    Digest::from(oci_spec::image::Sha256Digest::from_str(&hex).unwrap_or_else(|_| unreachable!()))
}

/// The `sha256:<hex>` digest of a byte slice.
pub fn sha256_bytes(bytes: &[u8]) -> Digest {
    let mut h = Sha256::new();
    h.update(bytes);
    sha256_of(h)
}

/// The hex part of a sha256 digest, or an error for other algorithms (the only ones the store keeps).
pub fn sha256_hex(digest: &Digest) -> Result<&str> {
    match digest.algorithm() {
        // oci-spec guarantees 64 lowercase hex characters for sha256: safe as a file name.
        DigestAlgorithm::Sha256 => Ok(digest.digest()),
        other => Err(Error::Format {
            what: format!("digest {digest}"),
            message: format!("unsupported digest algorithm {other} (only sha256 is stored)"),
        }),
    }
}

/// A reader that hashes and counts what passes through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wrap `inner`.
    pub fn new(inner: R) -> Self {
        Self { inner, hasher: Sha256::new(), count: 0 }
    }

    /// Bytes read so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Read `inner` to its end (so the digest covers everything), then return digest and size.
    pub fn finish(mut self) -> io::Result<(Digest, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((sha256_of(self.hasher), self.count))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// A writer that hashes and counts what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wrap `inner`.
    pub fn new(inner: W) -> Self {
        Self { inner, hasher: Sha256::new(), count: 0 }
    }

    /// The digest and size of what was written, and the inner writer.
    pub fn finish(self) -> (Digest, u64, W) {
        (sha256_of(self.hasher), self.count, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_empty_input_is_the_well_known_value() {
        assert_eq!(sha256_bytes(b"").to_string(), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn hashing_reader_finish_covers_unread_tail() {
        let mut r = HashingReader::new(&b"hello world"[..]);
        let mut buf = [0u8; 5];
        r.read_exact(&mut buf).unwrap();
        let (d, n) = r.finish().unwrap();
        assert_eq!(n, 11);
        assert_eq!(d, sha256_bytes(b"hello world"));
    }

    #[test]
    fn non_sha256_digests_are_refused_as_file_names() {
        let d = parse_digest(&format!("sha512:{}", "a".repeat(128))).unwrap();
        assert!(sha256_hex(&d).is_err());
        assert!(parse_digest("sha256:../../etc").is_err());
        assert!(parse_digest(&format!("sha256:{}", "A".repeat(64))).is_err());
    }
}
