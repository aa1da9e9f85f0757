//! Garbage collection of blobs that no index entry references, and leases that hold it off.
//!
//! Reachability: every descriptor in `index.json`, then recursively the `manifests` of an
//! index (OCI index or Docker manifest list) and the `config`, `layers` and `subject` of a
//! manifest. Documents are read as plain JSON so Docker schema2 media types work the same.
//!
//! A blob written by a pull is unreferenced until the pull tags its manifest; the puller
//! holds a [`Lease`] (a shared flock) from the first blob to the tag, and `gc` takes the
//! exclusive side, so it never runs in that window.

use std::collections::HashSet;

use super::{FileLock, Store};
use crate::error::IoContext;
use crate::store::digest::{parse_digest, Digest};
use crate::Result;

/// Holds off garbage collection while alive (a shared lock; `gc` takes the exclusive one).
pub struct Lease {
    _lock: FileLock,
}

/// What a garbage collection removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    /// Digests of the removed blobs.
    pub removed: Vec<Digest>,
    /// Bytes freed.
    pub bytes: u64,
}

impl Store {
    /// Take a lease: blobs written while it is held survive a concurrent `gc` until it drops.
    pub fn lease(&self) -> Result<Lease> {
        Ok(Lease { _lock: FileLock::shared(&self.root.join(".berth-gc.lock"))? })
    }

    /// Every blob reachable from the index.
    pub fn reachable(&self) -> Result<HashSet<Digest>> {
        let index = self.read_index()?;
        let mut seen = HashSet::new();
        let mut todo: Vec<Digest> = index.manifests().iter().map(|d| d.digest().clone()).collect();
        while let Some(d) = todo.pop() {
            if !seen.insert(d.clone()) {
                continue;
            }
            // Only JSON documents have children; a missing or binary blob simply has none.
            let Ok(bytes) = self.read_blob(&d) else { continue };
            let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&bytes) else { continue };
            todo.extend(children(&doc));
        }
        Ok(seen)
    }

    /// Remove every blob the index does not reach, and stale temp files; waits for leases.
    pub fn gc(&self) -> Result<GcReport> {
        let _gc = FileLock::exclusive(&self.root.join(".berth-gc.lock"))?;
        let _index = self.index_lock()?;
        let keep = self.reachable()?;
        let dir = self.blob_dir();
        let mut report = GcReport::default();
        for entry in std::fs::read_dir(&dir).io_context(|| format!("read {}", dir.display()))? {
            let entry = entry.io_context(|| format!("read {}", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let meta = entry.metadata().io_context(|| format!("stat {}", entry.path().display()))?;
            if name.starts_with(super::BLOB_TEMP_PREFIX) {
                continue;
            }
            let Ok(digest) = parse_digest(&format!("sha256:{name}")) else { continue };
            if keep.contains(&digest) {
                continue;
            }
            std::fs::remove_file(entry.path()).io_context(|| format!("remove blob {digest}"))?;
            report.bytes += meta.len();
            report.removed.push(digest);
        }
        // Temp files of killed writers: their flock is free (a live writer holds it).
        super::fsutil::remove_abandoned(&dir, super::BLOB_TEMP_PREFIX);
        if !report.removed.is_empty() {
            super::fsutil::fsync_dir(&dir)?;
        }
        tracing::debug!(removed = report.removed.len(), bytes = report.bytes, "image store gc");
        Ok(report)
    }
}

/// The digests a manifest or index document refers to.
fn children(doc: &serde_json::Value) -> Vec<Digest> {
    let digest_of = |v: &serde_json::Value| v.get("digest").and_then(|d| d.as_str()).and_then(|s| parse_digest(s).ok());
    let mut out = Vec::new();
    for key in ["manifests", "layers", "blobs"] {
        if let Some(list) = doc.get(key).and_then(|v| v.as_array()) {
            out.extend(list.iter().filter_map(digest_of));
        }
    }
    for key in ["config", "subject"] {
        if let Some(d) = doc.get(key).and_then(digest_of) {
            out.push(d);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::Reference;
    use oci_spec::image::MediaType;

    #[test]
    fn gc_removes_only_unreferenced_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let layer = store.put_bytes(b"layer").unwrap();
        let config = store.put_bytes(b"{\"config\":{}}").unwrap();
        let orphan = store.put_bytes(b"orphan").unwrap();
        let manifest = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}]}}"#,
            config.digest, config.size, layer.digest, layer.size
        );
        let m = store.put_bytes(manifest.as_bytes()).unwrap();
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{}}}]}}"#,
            m.digest, m.size
        );
        let idx = store.put_bytes(index.as_bytes()).unwrap();
        store.tag(&Reference::parse("multi").unwrap(), &idx.descriptor(MediaType::ImageIndex)).unwrap();
        let report = store.gc().unwrap();
        assert_eq!(report.removed, vec![orphan.digest.clone()]);
        for kept in [&layer, &config, &m, &idx] {
            assert!(store.has_blob(&kept.digest));
        }
        store.untag(&Reference::parse("multi").unwrap()).unwrap();
        assert_eq!(store.gc().unwrap().removed.len(), 4);
        assert!(!store.has_blob(&layer.digest));
    }
}
