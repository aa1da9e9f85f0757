//! Manifests: GET with the OCI and Docker media types, digest computation and verification,
//! and resolving a tag or digest through an index to the manifest for one platform.

use std::io::Read;

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

use super::client::{RegistryClient, Request};
use super::digest::{is_digest, sha256_digest, verify_bytes};
use super::names::{check_reference, check_repository};
use super::platform::{self, Platform};
use crate::error::{Error, Result};

/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker manifest list (schema 2).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest (schema 2).
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// The `Accept` header of a manifest GET: every index and manifest type berth understands.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// Manifests larger than this are refused (the distribution spec's recommended limit).
const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// Whether a manifest document lists other manifests or describes one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// An OCI index or Docker manifest list.
    Index,
    /// An OCI or Docker schema 2 image manifest.
    Manifest,
}

/// A manifest as the registry sent it, with its media type and digest.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// The media type (from `Content-Type`, else from the document).
    pub media_type: String,
    /// The digest of `bytes` (verified when the manifest was asked for by digest).
    pub digest: String,
    /// The exact bytes, which the digest covers.
    pub bytes: Vec<u8>,
}

impl FetchedManifest {
    /// Index or manifest, from the media type; an error for any other type.
    pub fn kind(&self) -> Result<ManifestKind> {
        match self.media_type.as_str() {
            OCI_INDEX | DOCKER_MANIFEST_LIST => Ok(ManifestKind::Index),
            OCI_MANIFEST | DOCKER_MANIFEST => Ok(ManifestKind::Manifest),
            other => Err(Error::Format { what: format!("manifest {}", self.digest), message: format!("unsupported media type {other:?}") }),
        }
    }

    /// Parse as an index.
    pub fn index(&self) -> Result<ImageIndex> {
        serde_json::from_slice(&self.bytes)
            .map_err(|e| Error::Format { what: format!("image index {}", self.digest), message: e.to_string() })
    }

    /// Parse as an image manifest.
    pub fn manifest(&self) -> Result<ImageManifest> {
        serde_json::from_slice(&self.bytes)
            .map_err(|e| Error::Format { what: format!("image manifest {}", self.digest), message: e.to_string() })
    }
}

/// An image resolved for one platform: the index it came through (if any) and its manifest.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The index the reference named, when it named one.
    pub index: Option<FetchedManifest>,
    /// The platform's manifest, verified.
    pub manifest: FetchedManifest,
    /// `manifest` parsed.
    pub image_manifest: ImageManifest,
}

impl RegistryClient {
    /// GET the manifest `reference` (tag or digest) of `repository`; verified if by digest.
    pub fn get_manifest(&self, repository: &str, reference: &str) -> Result<FetchedManifest> {
        check_repository(repository)?;
        check_reference(reference)?;
        let request = Request {
            method: "GET",
            url: self.url(&format!("v2/{repository}/manifests/{reference}"))?,
            headers: vec![("Accept", MANIFEST_ACCEPT.to_string())],
            repository,
            scopes: vec![pull_scope(repository)],
            what: format!("GET manifest {reference}"),
        };
        let response = self.send_with_retry(&request)?;
        if response.status() != 200 {
            return Err(self.status_error(&request, response));
        }
        let header_type = response.header("Content-Type").map(|t| t.split(';').next().unwrap_or(t).trim().to_string());
        let mut bytes = Vec::new();
        response
            .into_reader()
            .take(MAX_MANIFEST_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| self.error(repository, format!("{}: reading the body: {e}", request.what)))?;
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(self.error(repository, format!("{}: manifest larger than {MAX_MANIFEST_BYTES} bytes", request.what)));
        }
        let digest = if is_digest(reference) {
            verify_bytes(&bytes, reference, || format!("manifest {reference} from registry {}, repository {repository}", self.registry()))?;
            reference.to_string()
        } else {
            sha256_digest(&bytes)
        };
        let media_type = media_type_of(header_type.as_deref(), &bytes);
        let fetched = FetchedManifest { media_type, digest, bytes };
        fetched.kind().map_err(|e| self.error(repository, format!("{}: {e}", request.what)))?;
        Ok(fetched)
    }

    /// Resolve `reference` to the manifest for `platform`, going through an index if it is one.
    pub fn resolve_image(&self, repository: &str, reference: &str, platform: &Platform) -> Result<ResolvedImage> {
        let top = self.get_manifest(repository, reference)?;
        if top.kind()? == ManifestKind::Manifest {
            let image_manifest = top.manifest()?;
            return Ok(ResolvedImage { index: None, manifest: top, image_manifest });
        }
        let index = top.index()?;
        let name = format!("{}/{repository}:{reference}", self.registry());
        let descriptor = select_manifest(&index, platform, &name)?;
        let digest = descriptor.digest().to_string();
        let manifest = self.get_manifest(repository, &digest)?;
        if manifest.bytes.len() as u64 != descriptor.size() {
            return Err(Error::SizeMismatch {
                what: format!("manifest {digest} from registry {}, repository {repository}", self.registry()),
                expected: descriptor.size(),
                actual: manifest.bytes.len() as u64,
            });
        }
        if manifest.kind()? != ManifestKind::Manifest {
            return Err(
                self.error(repository, format!("index {} lists {digest} for {platform}, which is not an image manifest", top.digest))
            );
        }
        let image_manifest = manifest.manifest()?;
        Ok(ResolvedImage { index: Some(top), manifest, image_manifest })
    }
}

/// The descriptor in `index` that best fits `platform`; `reference` names the image in errors.
pub fn select_manifest<'a>(index: &'a ImageIndex, platform: &Platform, reference: &str) -> Result<&'a Descriptor> {
    let manifests = index.manifests();
    let oss: Vec<Option<(String, String, Option<String>)>> = manifests
        .iter()
        .map(|d| d.platform().as_ref().map(|p| (p.os().to_string(), p.architecture().to_string(), p.variant().clone())))
        .collect();
    let entries = oss.iter().enumerate().map(|(i, p)| (i, p.as_ref().map(|(o, a, v)| (o.as_str(), a.as_str(), v.as_deref()))));
    let chosen = platform::select(platform, entries, reference)?;
    manifests.get(chosen).ok_or_else(|| Error::NotFound(format!("manifest {chosen} of {reference}")))
}

/// `repository:<name>:pull`
pub(crate) fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

/// `repository:<name>:pull,push`
pub(crate) fn push_scope(repository: &str) -> String {
    format!("repository:{repository}:pull,push")
}

/// The media type from `Content-Type`, or from the document when the header is generic.
fn media_type_of(header: Option<&str>, bytes: &[u8]) -> String {
    if let Some(header) = header.filter(|h| !matches!(*h, "" | "application/json" | "text/plain" | "application/octet-stream")) {
        return header.to_string();
    }
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType", default)]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
        #[serde(default)]
        layers: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Probe>(bytes) {
        Ok(Probe { media_type: Some(t), .. }) => t,
        Ok(Probe { manifests: Some(_), .. }) => OCI_INDEX.to_string(),
        Ok(Probe { layers: Some(_), .. }) => OCI_MANIFEST.to_string(),
        _ => header.unwrap_or("application/octet-stream").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_type_falls_back_to_the_document() {
        assert_eq!(media_type_of(Some(DOCKER_MANIFEST), b"{}"), DOCKER_MANIFEST);
        assert_eq!(media_type_of(Some("application/json"), br#"{"manifests":[]}"#), OCI_INDEX);
        assert_eq!(media_type_of(None, br#"{"mediaType":"x/y"}"#), "x/y");
        assert_eq!(media_type_of(None, b"not json"), "application/octet-stream");
    }

    #[test]
    fn index_selection_uses_descriptor_platforms() {
        let json = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
          {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,
           "digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111",
           "platform":{"os":"linux","architecture":"amd64"}},
          {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,
           "digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222",
           "platform":{"os":"linux","architecture":"arm64","variant":"v8"}}]}"#;
        let index: ImageIndex = serde_json::from_slice(json).unwrap();
        let chosen = select_manifest(&index, &Platform::new("linux", "arm64", None), "img").unwrap();
        assert!(chosen.digest().to_string().ends_with("2222"));
        let err = select_manifest(&index, &Platform::new("linux", "riscv64", None), "img").unwrap_err();
        assert!(err.to_string().contains("linux/amd64, linux/arm64/v8"), "{err}");
    }
}
