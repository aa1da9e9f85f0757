//! Blob downloads: redirects followed by hand (no `Authorization` to another host), streaming
//! into the caller's writer while hashing, size and digest checks, and resumption with `Range`
//! when the connection drops.

use std::io::{Read, Write};

use url::Url;

use super::client::{Body, RegistryClient, Request};
use super::digest::DigestVerifier;
use super::manifest::pull_scope;
use super::names::check_repository;
use crate::error::{Error, IoContext, Result};

/// Redirect hops allowed for one blob request (registries redirect once, to storage).
const MAX_REDIRECTS: usize = 5;
/// Blobs read whole into memory (configs) are refused beyond this.
const MAX_IN_MEMORY_BLOB: u64 = 64 << 20;

/// What a finished, verified blob download was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// The blob's digest, verified.
    pub digest: String,
    /// Its size in bytes, verified against the descriptor when one was given.
    pub size: u64,
    /// How many times the download was resumed after an interruption.
    pub resumptions: u32,
}

impl RegistryClient {
    /// Stream blob `digest` of `repository` into `out`, verifying size (when given) and digest.
    ///
    /// On error `out` may hold partial or wrong bytes: the caller discards them.
    pub fn fetch_blob(&self, repository: &str, digest: &str, expected_size: Option<u64>, out: &mut dyn Write) -> Result<BlobInfo> {
        check_repository(repository)?;
        let mut verifier = DigestVerifier::for_digest(digest)?;
        let what = || format!("blob {digest} from registry {}, repository {repository}", self.registry());
        let url = self.url(&format!("v2/{repository}/blobs/{digest}"))?;
        let mut written: u64 = 0;
        let mut interruptions = 0u32;
        let mut buf = vec![0u8; 128 * 1024];
        loop {
            let request = Request {
                method: "GET",
                url: url.clone(),
                headers: if written > 0 { vec![("Range", format!("bytes={written}-"))] } else { Vec::new() },
                repository,
                scopes: vec![pull_scope(repository)],
                what: format!("GET blob {digest}"),
            };
            let response = self.retrying(&request, || self.open_following_redirects(&request))?;
            // A server that ignores Range sends the whole blob again: skip what we already have.
            let mut skip = match response.status() {
                200 => written,
                206 if range_start(response.header("Content-Range")) == Some(written) => 0,
                206 => {
                    let got = response.header("Content-Range").unwrap_or("").to_string();
                    return Err(self.error(repository, format!("{}: asked for bytes {written}-, got range {got:?}", request.what)));
                }
                _ => return Err(self.status_error(&request, response)),
            };
            let mut reader = response.into_reader();
            let cut = loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break None,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => break Some(e.to_string()),
                };
                let skipped = (skip.min(n as u64)) as usize;
                skip -= skipped as u64;
                let chunk = &buf[skipped..n];
                if chunk.is_empty() {
                    continue;
                }
                let total = written + chunk.len() as u64;
                if let Some(expected) = expected_size.filter(|e| total > *e) {
                    return Err(Error::SizeMismatch { what: what(), expected, actual: total });
                }
                verifier.update(chunk);
                out.write_all(chunk).io_context(|| format!("write {}", what()))?;
                written = total;
            };
            let short = skip > 0 || expected_size.is_some_and(|e| written < e);
            let cause = match cut {
                None if !short => break,
                None => "connection closed early".to_string(),
                Some(cause) => cause,
            };
            interruptions += 1;
            if interruptions >= self.retry_policy().attempts {
                return Err(self.error(
                    repository,
                    format!("GET blob {digest}: interrupted {interruptions} times, last after {written} bytes: {cause}"),
                ));
            }
            tracing::debug!(registry = %self.registry(), repository, digest, written, %cause, "resuming blob download");
            std::thread::sleep(self.retry_policy().backoff(interruptions - 1));
        }
        if let Some(expected) = expected_size.filter(|e| *e != written) {
            return Err(Error::SizeMismatch { what: what(), expected, actual: written });
        }
        let actual = verifier.finish();
        if actual != digest {
            return Err(Error::DigestMismatch { what: what(), expected: digest.to_string(), actual });
        }
        out.flush().io_context(|| format!("flush {}", what()))?;
        Ok(BlobInfo { digest: digest.to_string(), size: written, resumptions: interruptions })
    }

    /// Fetch a small blob (an image config) into memory, verified.
    pub fn get_blob(&self, repository: &str, digest: &str, size: u64) -> Result<Vec<u8>> {
        if size > MAX_IN_MEMORY_BLOB {
            return Err(self.error(repository, format!("blob {digest}: {size} bytes is too large to hold in memory")));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        self.fetch_blob(repository, digest, Some(size), &mut bytes)?;
        Ok(bytes)
    }

    /// Send `request`, following redirects; `Authorization` goes only to the registry's origin.
    fn open_following_redirects(&self, request: &Request<'_>) -> Result<ureq::Response> {
        let mut url = request.url.clone();
        for _ in 0..=MAX_REDIRECTS {
            let response = if url.origin() == self.base().origin() {
                self.send_to(request, &url, Body::Empty)?
            } else {
                self.send_raw(request, &url, None, Body::Empty).map_err(|t| self.transport_error(request, *t))?
            };
            if !matches!(response.status(), 301 | 302 | 303 | 307 | 308) {
                return Ok(response);
            }
            let location = response
                .header("Location")
                .ok_or_else(|| self.error(request.repository, format!("{}: redirect without Location", request.what)))?;
            url = self.redirect_target(request, &url, location)?;
            tracing::debug!(registry = %self.registry(), to = %url.host_str().unwrap_or(""), "blob redirect");
        }
        Err(self.error(request.repository, format!("{}: more than {MAX_REDIRECTS} redirects", request.what)))
    }

    fn redirect_target(&self, request: &Request<'_>, from: &Url, location: &str) -> Result<Url> {
        let bad = |why: String| self.error(request.repository, format!("{}: redirect to {location:?}: {why}", request.what));
        let next = from.join(location).map_err(|e| bad(e.to_string()))?;
        match (from.scheme(), next.scheme()) {
            ("https", "https") | ("http", "http") | ("http", "https") => Ok(next),
            ("https", "http") => Err(bad("refusing to downgrade to plain HTTP".into())),
            (_, other) => Err(bad(format!("unsupported scheme {other:?}"))),
        }
    }
}

/// The first byte of a `Content-Range: bytes <start>-<end>/<size>` header.
fn range_start(header: Option<&str>) -> Option<u64> {
    let spec = header?.trim().strip_prefix("bytes")?.trim_start();
    spec.split('-').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_start_is_parsed_strictly() {
        assert_eq!(range_start(Some("bytes 100-199/200")), Some(100));
        assert_eq!(range_start(Some("bytes */200")), None);
        assert_eq!(range_start(Some("items 1-2/3")), None);
        assert_eq!(range_start(None), None);
    }
}
