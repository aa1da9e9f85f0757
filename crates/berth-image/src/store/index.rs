//! Image names in the layout's `index.json`: tag, untag, resolve, list.
//!
//! Each named image is one entry of `index.json`'s `manifests`, annotated with
//! `org.opencontainers.image.ref.name` (what `skopeo inspect oci:DIR:NAME` matches) and
//! `io.berth.image.name`; both hold the normalised reference, e.g.
//! `docker.io/library/busybox:latest`, which is unique in the store and valid under the
//! OCI ref-name grammar. Entries written by other tools (a bare `latest`) are still listed.

use std::collections::HashMap;

use oci_spec::image::{Descriptor, ImageIndex, ImageIndexBuilder, MediaType};

use super::Store;
use crate::error::IoContext;
use crate::reference::Reference;
use crate::store::digest::Digest;
use crate::{Error, Result};

/// The OCI annotation naming an image in an image layout.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Berth's annotation holding the full normalised reference.
pub const ANNOTATION_BERTH_NAME: &str = "io.berth.image.name";

/// One entry of the store's index.
#[derive(Debug, Clone)]
pub struct ImageEntry {
    /// The image's name, when its annotations hold a parseable reference.
    pub reference: Option<Reference>,
    /// The manifest (or index) descriptor, with its annotations.
    pub descriptor: Descriptor,
}

pub(super) fn empty_index() -> Result<ImageIndex> {
    ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(Vec::<Descriptor>::new())
        .build()
        .map_err(|e| Error::Format { what: "index.json".into(), message: e.to_string() })
}

/// The name an index entry carries: berth's annotation first, then the OCI ref name.
fn entry_name(desc: &Descriptor) -> Option<&str> {
    let ann = desc.annotations().as_ref()?;
    ann.get(ANNOTATION_BERTH_NAME).or_else(|| ann.get(ANNOTATION_REF_NAME)).map(String::as_str)
}

fn entry_matches(desc: &Descriptor, name: &Reference) -> bool {
    let full = name.to_string();
    match entry_name(desc) {
        Some(n) if n == full => true,
        // A foreign ref name such as "busybox:1" still matches once normalised.
        Some(n) => Reference::parse(n).map(|r| r == *name).unwrap_or(false),
        None => false,
    }
}

impl Store {
    /// Read `index.json` (consistent without a lock: it is only ever replaced by rename).
    pub fn read_index(&self) -> Result<ImageIndex> {
        let path = self.root.join("index.json");
        let bytes = std::fs::read(&path).io_context(|| format!("read {}", path.display()))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Format { what: path.display().to_string(), message: e.to_string() })
    }

    pub(super) fn write_index(&self, index: &ImageIndex) -> Result<()> {
        let bytes = serde_json::to_vec(index).map_err(|e| Error::Format { what: "index.json".into(), message: e.to_string() })?;
        super::fsutil::write_atomic(&self.root, "index.json", &bytes)
    }

    /// Apply `f` to the index under the index lock and write the result atomically.
    fn update_index<T>(&self, f: impl FnOnce(&mut Vec<Descriptor>) -> Result<T>) -> Result<T> {
        let _lock = self.index_lock()?;
        let mut index = self.read_index()?;
        let mut manifests = index.manifests().clone();
        let out = f(&mut manifests)?;
        index.set_manifests(manifests);
        self.write_index(&index)?;
        Ok(out)
    }

    /// Name the manifest (or index) `manifest` as `name`, replacing what that name pointed to.
    pub fn tag(&self, name: &Reference, manifest: &Descriptor) -> Result<()> {
        if !self.has_blob(manifest.digest()) {
            return Err(Error::NotFound(format!("manifest {}", manifest.digest())));
        }
        let full = name.to_string();
        let mut desc = manifest.clone();
        let mut ann: HashMap<String, String> = desc.annotations().clone().unwrap_or_default();
        ann.insert(ANNOTATION_REF_NAME.to_string(), full.clone());
        ann.insert(ANNOTATION_BERTH_NAME.to_string(), full);
        desc.set_annotations(Some(ann));
        self.update_index(|manifests| {
            manifests.retain(|d| !entry_matches(d, name));
            manifests.push(desc);
            Ok(())
        })
    }

    /// Remove the name `name` and return the descriptor it pointed to (the blobs stay until `gc`).
    pub fn untag(&self, name: &Reference) -> Result<Descriptor> {
        self.update_index(|manifests| {
            let pos = manifests.iter().position(|d| entry_matches(d, name)).ok_or_else(|| Error::NotFound(format!("image {name}")))?;
            Ok(manifests.remove(pos))
        })
    }

    /// The manifest descriptor that `name` points to; a digest-only reference resolves by digest.
    pub fn resolve(&self, name: &Reference) -> Result<Descriptor> {
        let index = self.read_index()?;
        if name.tag().is_some() {
            if let Some(d) = index.manifests().iter().find(|d| entry_matches(d, name)) {
                return Ok(d.clone());
            }
        }
        if let Some(digest) = name.digest() {
            return self.resolve_digest(&index, digest);
        }
        Err(Error::NotFound(format!("image {name}")))
    }

    fn resolve_digest(&self, index: &ImageIndex, digest: &Digest) -> Result<Descriptor> {
        if let Some(d) = index.manifests().iter().find(|d| d.digest() == digest) {
            return Ok(d.clone());
        }
        if !self.has_blob(digest) {
            return Err(Error::NotFound(format!("image {digest}")));
        }
        // An untagged manifest still in the store: describe it from its own mediaType.
        let bytes = self.read_blob(digest)?;
        let doc: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| Error::Format { what: format!("manifest {digest}"), message: e.to_string() })?;
        let media_type = doc
            .get("mediaType")
            .and_then(|v| v.as_str())
            .map_or_else(|| if doc.get("manifests").is_some() { MediaType::ImageIndex } else { MediaType::ImageManifest }, MediaType::from);
        Ok(Descriptor::new(media_type, bytes.len() as u64, digest.clone()))
    }

    /// Every entry of the index, in index order.
    pub fn list(&self) -> Result<Vec<ImageEntry>> {
        let index = self.read_index()?;
        Ok(index
            .manifests()
            .iter()
            .map(|d| ImageEntry { reference: entry_name(d).and_then(|n| Reference::parse(n).ok()), descriptor: d.clone() })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(store: &Store, body: &str) -> Descriptor {
        store.put_bytes(body.as_bytes()).unwrap().descriptor(MediaType::ImageManifest)
    }

    #[test]
    fn tag_resolve_untag_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let m1 = manifest(&store, r#"{"schemaVersion":2,"layers":[]}"#);
        let m2 = manifest(&store, r#"{"schemaVersion":2,"layers":[] }"#);
        let name = Reference::parse("busybox").unwrap();
        store.tag(&name, &m1).unwrap();
        assert_eq!(store.resolve(&name).unwrap().digest(), m1.digest());
        store.tag(&name, &m2).unwrap();
        assert_eq!(store.resolve(&name).unwrap().digest(), m2.digest());
        assert_eq!(store.list().unwrap().len(), 1);
        let other = Reference::parse("localhost:5000/app:v1").unwrap();
        store.tag(&other, &m1).unwrap();
        let names: Vec<String> = store.list().unwrap().iter().map(|e| e.reference.as_ref().unwrap().to_string()).collect();
        assert_eq!(names, vec!["docker.io/library/busybox:latest", "localhost:5000/app:v1"]);
        let by_digest = Reference::parse(&format!("busybox@{}", m1.digest())).unwrap();
        assert_eq!(store.resolve(&by_digest).unwrap().digest(), m1.digest());
        assert_eq!(store.untag(&name).unwrap().digest(), m2.digest());
        assert!(matches!(store.resolve(&name), Err(Error::NotFound(_))));
        assert!(matches!(store.untag(&name), Err(Error::NotFound(_))));
    }

    #[test]
    fn tag_refuses_a_missing_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = Descriptor::new(MediaType::ImageManifest, 2, crate::store::digest::sha256_bytes(b"{}"));
        assert!(store.tag(&Reference::parse("x").unwrap(), &d).is_err());
    }

    #[test]
    fn index_entries_carry_both_annotations() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let m = manifest(&store, r#"{"schemaVersion":2}"#);
        store.tag(&Reference::parse("user/app:1").unwrap(), &m).unwrap();
        let raw: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
        let ann = &raw["manifests"][0]["annotations"];
        assert_eq!(ann[ANNOTATION_REF_NAME], "docker.io/user/app:1");
        assert_eq!(ann[ANNOTATION_BERTH_NAME], "docker.io/user/app:1");
    }
}
