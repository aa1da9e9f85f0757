//! The pieces every format shares: an image of the store resolved to one manifest, blob
//! writes that roll back when a load fails, and readers that verify what they stream.

use std::io::{self, Read};
use std::os::fd::AsRawFd;

use serde::Deserialize;

use super::convert;
use crate::reference::Reference;
use crate::registry::{select_manifest, Platform};
use crate::store::digest::{sha256_bytes, Digest, HashingReader};
use crate::store::{BlobInfo, Descriptor, Lease, MediaType, Store};
use crate::{Error, Result};

/// A descriptor as it appears in a manifest (OCI or Docker spelling).
#[derive(Debug, Clone, Deserialize)]
pub struct BlobRef {
    /// The media type.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// The content digest.
    pub digest: Digest,
    /// The content size.
    pub size: u64,
    /// Where a foreign layer can be fetched (never followed by berth).
    #[serde(default)]
    pub urls: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct ManifestDoc {
    config: BlobRef,
    #[serde(default)]
    layers: Vec<BlobRef>,
}

/// One image manifest with its config and layers, parsed from its exact bytes.
#[derive(Debug, Clone)]
pub struct ImageParts {
    /// The manifest's media type.
    pub media_type: String,
    /// The manifest's exact bytes.
    pub bytes: Vec<u8>,
    /// The digest of `bytes`.
    pub digest: Digest,
    /// The manifest as JSON.
    pub doc: serde_json::Value,
    /// The config descriptor.
    pub config: BlobRef,
    /// The layer descriptors, bottom first.
    pub layers: Vec<BlobRef>,
}

impl ImageParts {
    /// Parse a manifest whose bytes were already verified against `digest`.
    pub fn parse(bytes: Vec<u8>, digest: Digest, what: &str) -> Result<Self> {
        let bad = |e: serde_json::Error| Error::Format { what: format!("manifest {digest} of {what}"), message: e.to_string() };
        let doc: serde_json::Value = serde_json::from_slice(&bytes).map_err(bad)?;
        let media_type = convert::document_media_type(&doc);
        if !convert::is_manifest(&media_type) {
            return Err(Error::Format {
                what: format!("manifest {digest} of {what}"),
                message: format!("unsupported media type {media_type:?}"),
            });
        }
        let parsed: ManifestDoc = serde_json::from_value(doc.clone()).map_err(bad)?;
        for layer in &parsed.layers {
            convert::layer_compression(&layer.media_type)?;
        }
        Ok(Self { media_type, bytes, digest, doc, config: parsed.config, layers: parsed.layers })
    }

    /// The manifest's descriptor.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(MediaType::from(self.media_type.as_str()), self.bytes.len() as u64, self.digest.clone())
    }
}

/// An image of the store, resolved to the manifest for this host.
#[derive(Debug, Clone)]
pub struct StoredImage {
    /// The name it was asked for by.
    pub name: Reference,
    /// Its manifest, config and layers.
    pub parts: ImageParts,
}

impl StoredImage {
    /// Resolve `name` in the store; an index is narrowed to the host platform's manifest.
    pub fn resolve(store: &Store, name: &Reference) -> Result<Self> {
        let desc = store.resolve(name)?;
        let mut digest = desc.digest().clone();
        let mut bytes = store.read_blob(&digest)?;
        let doc: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Format { what: format!("image {name}: manifest {digest}"), message: e.to_string() })?;
        if convert::is_index(&convert::document_media_type(&doc)) {
            let index = serde_json::from_slice(&bytes)
                .map_err(|e| Error::Format { what: format!("image {name}: index {digest}"), message: e.to_string() })?;
            digest = select_manifest(&index, &Platform::host(), &name.to_string())?.digest().clone();
            bytes = store.read_blob(&digest)?;
        }
        let parts = ImageParts::parse(bytes, digest, &format!("image {name}"))?;
        Ok(Self { name: name.clone(), parts })
    }
}

/// An image written into the store by a load.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    /// The names it was tagged with.
    pub names: Vec<Reference>,
    /// The manifest descriptor the names point to.
    pub manifest: Descriptor,
    /// The image id: the config digest.
    pub config: Digest,
    /// The layer descriptors as stored.
    pub layers: Vec<Descriptor>,
}

/// Blob writes of one load: verified one by one, tagged together at the end, and removed
/// again (when nothing else took them meanwhile) if the load fails before tagging.
pub struct Staging<'s> {
    store: &'s Store,
    lease: Option<Lease>,
    created: Vec<Digest>,
    committed: bool,
}

impl<'s> Staging<'s> {
    /// Start a load: holds a gc lease until committed or dropped.
    pub fn new(store: &'s Store) -> Result<Self> {
        Ok(Self { store, lease: Some(store.lease()?), created: Vec::new(), committed: false })
    }

    /// Stream a blob into the store, verified against `digest` and `size`.
    pub fn put<R: Read>(&mut self, reader: R, digest: &Digest, size: u64) -> Result<BlobInfo> {
        let existed = self.store.has_blob(digest);
        let info = self.store.put_blob(reader, Some(digest), Some(size))?;
        if !existed && !self.created.contains(digest) {
            self.created.push(digest.clone());
        }
        Ok(info)
    }

    /// Store an in-memory document (a manifest, a config).
    pub fn put_bytes(&mut self, bytes: &[u8]) -> Result<BlobInfo> {
        let digest = sha256_bytes(bytes);
        self.put(bytes, &digest, bytes.len() as u64)
    }

    /// Tag every loaded image with its names; after this the blobs are the store's.
    pub fn commit(mut self, images: &[LoadedImage]) -> Result<()> {
        for image in images {
            for name in &image.names {
                self.store.tag(name, &image.manifest)?;
            }
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staging<'_> {
    fn drop(&mut self) {
        // Our shared lease must go first: flock locks of one process still conflict across fds.
        self.lease.take();
        if self.committed || self.created.is_empty() {
            return;
        }
        // Only under gc's exclusive lock is no other writer between its put and its tag; if
        // another writer holds a lease now, the blobs are left for the next gc.
        // A lease can also be held for a moment by a child forked elsewhere in this process
        // (until its exec closes the inherited fd): retry briefly before giving up.
        let gc_lock = self.store.root().join(".berth-gc.lock");
        let held = (0..20).find_map(|_| {
            try_exclusive(&gc_lock).or_else(|| {
                std::thread::sleep(std::time::Duration::from_millis(10));
                None
            })
        });
        let Some(_gc) = held else {
            tracing::debug!(blobs = self.created.len(), "failed load: store busy, blobs left for gc");
            return;
        };
        let Ok(reachable) = self.store.reachable() else { return };
        for digest in self.created.iter().filter(|d| !reachable.contains(*d)) {
            if let Ok(path) = self.store.blob_path(digest) {
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!(blob = %digest, error = %e, "could not remove a blob of a failed load");
                }
            }
        }
    }
}

/// A non-blocking exclusive flock on `path`, or `None` when someone holds it.
fn try_exclusive(path: &std::path::Path) -> Option<std::fs::File> {
    let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).ok()?;
    loop {
        // SAFETY: flock on an fd we own; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Some(file);
        }
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return None;
        }
    }
}

/// A reader that fails at its end unless the content had the expected digest and size.
pub struct VerifyingReader<R> {
    inner: Option<HashingReader<R>>,
    digest: Digest,
    size: u64,
    what: String,
}

impl<R: Read> VerifyingReader<R> {
    /// Verify `inner` against `digest` and `size`; `what` names the content in the error.
    pub fn new(inner: R, digest: &Digest, size: u64, what: String) -> Self {
        Self { inner: Some(HashingReader::new(inner)), digest: digest.clone(), size, what }
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(inner) = self.inner.as_mut() else { return Ok(0) };
        let n = inner.read(buf)?;
        if inner.count() > self.size {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{}: larger than {} bytes", self.what, self.size)));
        }
        if n == 0 && !buf.is_empty() {
            let Some(inner) = self.inner.take() else { return Ok(0) };
            let (digest, size) = inner.finish()?;
            if size != self.size || digest != self.digest {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: expected {} ({} bytes), got {digest} ({size} bytes)", self.what, self.digest, self.size),
                ));
            }
        }
        Ok(n)
    }
}

/// A name for an image that carries none usable: `localhost/<stem>:<tag>`.
pub fn fallback_name(source: &std::path::Path, tag: &str) -> Result<Reference> {
    let stem = source.file_stem().and_then(|s| s.to_str()).unwrap_or("image");
    let mut repo: String = stem
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '-' })
        .collect();
    repo = repo.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_string();
    if repo.is_empty() || repo.len() == 64 && repo.chars().all(|c| c.is_ascii_hexdigit()) {
        repo = "image".into();
    }
    Reference::parse(&format!("localhost/{repo}:{tag}"))
}

/// The image a layout's `org.opencontainers.image.ref.name` names: a full reference when it
/// looks like one, else a bare tag of the fallback name.
pub fn name_from_ref_name(ref_name: Option<&str>, source: &std::path::Path) -> Result<Reference> {
    match ref_name {
        Some(n) if n.contains('/') || n.contains(':') || n.contains('@') => match Reference::parse(n) {
            Ok(r) => Ok(r),
            Err(_) => fallback_name(source, "latest"),
        },
        Some(tag) => fallback_name(source, tag).or_else(|_| fallback_name(source, "latest")),
        None => fallback_name(source, "latest"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_names_come_from_the_file_stem() {
        let n = fallback_name(std::path::Path::new("/tmp/My Image.tar"), "latest").unwrap();
        assert_eq!(n.to_string(), "localhost/my-image:latest");
        let n = name_from_ref_name(Some("v1"), std::path::Path::new("app.tar")).unwrap();
        assert_eq!(n.to_string(), "localhost/app:v1");
        let n = name_from_ref_name(Some("busybox:1"), std::path::Path::new("app.tar")).unwrap();
        assert_eq!(n.to_string(), "docker.io/library/busybox:1");
    }

    #[test]
    fn verifying_reader_rejects_changed_content() {
        let d = sha256_bytes(b"hello");
        let mut ok = VerifyingReader::new(&b"hello"[..], &d, 5, "x".into());
        io::copy(&mut ok, &mut io::sink()).unwrap();
        let mut bad = VerifyingReader::new(&b"hellp"[..], &d, 5, "x".into());
        assert!(io::copy(&mut bad, &mut io::sink()).is_err());
    }
}
