//! Push: HEAD to skip blobs the registry has, cross-repository mount, monolithic
//! (POST then PUT `?digest=`) and chunked (PATCH with `Content-Range`, then PUT) uploads,
//! and manifest PUT.

use std::io::Read;

use url::Url;

use super::client::{Body, RegistryClient, Request};
use super::digest::{is_digest, sha256_digest, DigestVerifier};
use super::manifest::{pull_scope, push_scope};
use super::names::{check_reference, check_repository};
use crate::error::{IoContext, Result};

/// How blob bytes are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UploadMethod {
    /// One PUT carrying the whole blob.
    #[default]
    Monolithic,
    /// PATCH requests of at most `chunk_size` bytes, then an empty PUT.
    Chunked {
        /// Bytes per PATCH.
        chunk_size: usize,
    },
}

/// Options of one blob push.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// Monolithic or chunked.
    pub method: UploadMethod,
    /// A repository on the same registry that has the blob: mount it from there instead.
    pub mount_from: Option<String>,
}

/// What pushing a blob came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobPushOutcome {
    /// The repository had it already.
    Existed,
    /// Mounted from another repository of the registry.
    Mounted,
    /// Uploaded.
    Uploaded,
}

impl RegistryClient {
    /// HEAD blob `digest`: its size if `repository` has it, `None` if not.
    pub fn blob_exists(&self, repository: &str, digest: &str) -> Result<Option<u64>> {
        check_repository(repository)?;
        DigestVerifier::for_digest(digest)?;
        let request = Request {
            method: "HEAD",
            url: self.url(&format!("v2/{repository}/blobs/{digest}"))?,
            headers: Vec::new(),
            repository,
            scopes: vec![push_scope(repository)],
            what: format!("HEAD blob {digest}"),
        };
        let response = self.send_with_retry(&request)?;
        match response.status() {
            200 => Ok(Some(response.header("Content-Length").and_then(|l| l.trim().parse().ok()).unwrap_or(0))),
            404 => Ok(None),
            _ => Err(self.status_error(&request, response)),
        }
    }

    /// Push blob `digest` of `size` bytes read from `data`, unless the registry has it or can mount it.
    pub fn push_blob(
        &self,
        repository: &str,
        digest: &str,
        size: u64,
        data: &mut dyn Read,
        options: &PushOptions,
    ) -> Result<BlobPushOutcome> {
        if self.blob_exists(repository, digest)?.is_some() {
            return Ok(BlobPushOutcome::Existed);
        }
        let location = match options.mount_from.as_deref().filter(|from| *from != repository) {
            Some(from) => match self.start_upload(repository, Some((digest, from)))? {
                None => return Ok(BlobPushOutcome::Mounted),
                Some(location) => location,
            },
            None => self
                .start_upload(repository, None)?
                .ok_or_else(|| self.error(repository, format!("POST blob upload {digest}: registry answered 201 with no mount asked")))?,
        };
        match options.method {
            UploadMethod::Monolithic => self.upload_monolithic(repository, digest, size, data, location)?,
            UploadMethod::Chunked { chunk_size } => self.upload_chunked(repository, digest, size, data, location, chunk_size.max(1))?,
        }
        Ok(BlobPushOutcome::Uploaded)
    }

    /// POST an upload session (with `?mount=&from=` when asked): `None` if the mount succeeded.
    fn start_upload(&self, repository: &str, mount: Option<(&str, &str)>) -> Result<Option<Url>> {
        let mut url = self.url(&format!("v2/{repository}/blobs/uploads/"))?;
        let mut scopes = vec![push_scope(repository)];
        if let Some((digest, from)) = mount {
            check_repository(from)?;
            url.query_pairs_mut().append_pair("mount", digest).append_pair("from", from);
            scopes.push(pull_scope(from));
        }
        let request = Request {
            method: "POST",
            url,
            headers: vec![("Content-Length", "0".into())],
            repository,
            scopes,
            what: match mount {
                Some((digest, from)) => format!("mount blob {digest} from {from}"),
                None => "POST blob upload".into(),
            },
        };
        let response = self.retrying(&request, || self.send(&request, Body::Bytes(&[])))?;
        match response.status() {
            201 if mount.is_some() => Ok(None),
            202 => self.location(&request, &response).map(Some),
            _ => Err(self.status_error(&request, response)),
        }
    }

    fn upload_monolithic(&self, repository: &str, digest: &str, size: u64, data: &mut dyn Read, mut url: Url) -> Result<()> {
        url.query_pairs_mut().append_pair("digest", digest);
        let request = Request {
            method: "PUT",
            url,
            headers: vec![("Content-Type", "application/octet-stream".into()), ("Content-Length", size.to_string())],
            repository,
            scopes: vec![push_scope(repository)],
            what: format!("PUT blob {digest}"),
        };
        let mut limited = data.take(size);
        let response = self.send(&request, Body::Reader(&mut limited))?;
        self.expect_created(&request, response, digest)
    }

    fn upload_chunked(
        &self,
        repository: &str,
        digest: &str,
        size: u64,
        data: &mut dyn Read,
        mut url: Url,
        chunk_size: usize,
    ) -> Result<()> {
        let mut chunk = vec![0u8; chunk_size];
        let mut offset: u64 = 0;
        while offset < size {
            let want = (size - offset).min(chunk_size as u64) as usize;
            data.read_exact(&mut chunk[..want])
                .io_context(|| format!("read blob {digest} for registry {}, repository {repository}", self.registry()))?;
            let end = offset + want as u64 - 1;
            let request = Request {
                method: "PATCH",
                url: url.clone(),
                headers: vec![
                    ("Content-Type", "application/octet-stream".into()),
                    ("Content-Range", format!("{offset}-{end}")),
                    ("Content-Length", want.to_string()),
                ],
                repository,
                scopes: vec![push_scope(repository)],
                what: format!("PATCH blob {digest} bytes {offset}-{end}"),
            };
            let response = self.send(&request, Body::Bytes(&chunk[..want]))?;
            if response.status() != 202 {
                return Err(self.status_error(&request, response));
            }
            url = self.location(&request, &response)?;
            offset += want as u64;
        }
        url.query_pairs_mut().append_pair("digest", digest);
        let request = Request {
            method: "PUT",
            url,
            headers: vec![("Content-Length", "0".into())],
            repository,
            scopes: vec![push_scope(repository)],
            what: format!("PUT blob {digest} (close chunked upload)"),
        };
        let response = self.send(&request, Body::Bytes(&[]))?;
        self.expect_created(&request, response, digest)
    }

    /// PUT a manifest under `reference` (tag or digest); returns its digest.
    pub fn put_manifest(&self, repository: &str, reference: &str, media_type: &str, bytes: &[u8]) -> Result<String> {
        check_repository(repository)?;
        check_reference(reference)?;
        let digest = if is_digest(reference) { reference.to_string() } else { sha256_digest(bytes) };
        let request = Request {
            method: "PUT",
            url: self.url(&format!("v2/{repository}/manifests/{reference}"))?,
            headers: vec![("Content-Type", media_type.to_string())],
            repository,
            scopes: vec![push_scope(repository)],
            what: format!("PUT manifest {reference}"),
        };
        let response = self.retrying(&request, || self.send(&request, Body::Bytes(bytes)))?;
        self.expect_created(&request, response, &digest)?;
        Ok(digest)
    }

    /// A 201 whose `Docker-Content-Digest`, when present, is `digest`.
    fn expect_created(&self, request: &Request<'_>, response: ureq::Response, digest: &str) -> Result<()> {
        if response.status() != 201 {
            return Err(self.status_error(request, response));
        }
        match response.header("Docker-Content-Digest") {
            Some(stored) if stored != digest => {
                Err(self.error(request.repository, format!("{}: registry stored it as {stored}", request.what)))
            }
            _ => Ok(()),
        }
    }

    /// The upload URL in `Location`, resolved against the request's URL and kept on this registry.
    fn location(&self, request: &Request<'_>, response: &ureq::Response) -> Result<Url> {
        let location = response
            .header("Location")
            .ok_or_else(|| self.error(request.repository, format!("{}: answer has no Location", request.what)))?;
        let url = request
            .url
            .join(location)
            .map_err(|e| self.error(request.repository, format!("{}: bad Location {location:?}: {e}", request.what)))?;
        if url.origin() != self.base().origin() {
            // Upload requests carry our token: never to another host.
            return Err(self.error(request.repository, format!("{}: upload Location {location:?} is on another host", request.what)));
        }
        Ok(url)
    }
}
