//! OCI image layouts (`oci-layout`, `index.json`, `blobs/sha256/<hex>`): images copied out of
//! and into the store, whether the layout is a directory (`oci:`) or a tar (`oci-archive:`).
//!
//! Loading keeps the manifest's exact bytes, so the digest in the store is the digest in the
//! layout; an index entry is narrowed to the host platform's manifest. Saving writes OCI
//! media types: a Docker schema2 manifest is rewritten as an OCI manifest (same config and
//! layer blobs, new manifest digest), which is what skopeo and podman do for OCI targets.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{json, Value};

use super::convert;
use super::image::{name_from_ref_name, BlobRef, ImageParts, LoadedImage, Staging, StoredImage, VerifyingReader};
use crate::error::IoContext;
use crate::reference::Reference;
use crate::registry::{select_manifest, Platform};
use crate::store::digest::{sha256_bytes, sha256_hex, Digest};
use crate::store::{write_atomic, Store, ANNOTATION_BERTH_NAME, ANNOTATION_REF_NAME, MAX_JSON_SIZE};
use crate::{Error, Result};

/// Content of a layout's `oci-layout` file.
pub const OCI_LAYOUT_FILE: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;

/// Read access to a layout's files, by layout-relative name.
pub trait LayoutSource {
    /// The layout's location, for messages and fallback names.
    fn origin(&self) -> &Path;
    /// Stream a file of the layout; returns the reader and the file's size.
    fn open(&self, name: &str) -> Result<(Box<dyn Read + '_>, u64)>;
    /// Whether the layout has this file.
    fn has(&self, name: &str) -> bool;
}

/// A layout directory (`oci:DIR`).
pub struct DirSource {
    root: PathBuf,
}

impl DirSource {
    /// Read the layout at `root`.
    pub fn new(root: &Path) -> Self {
        Self { root: root.to_path_buf() }
    }
}

impl LayoutSource for DirSource {
    fn origin(&self) -> &Path {
        &self.root
    }

    fn open(&self, name: &str) -> Result<(Box<dyn Read + '_>, u64)> {
        let path = self.root.join(name);
        let file =
            OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(&path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::NotFound(format!("{} in layout {}", name, self.root.display())),
                _ => Error::Io { context: format!("open {}", path.display()), source: e },
            })?;
        let size = file.metadata().io_context(|| format!("stat {}", path.display()))?.len();
        Ok((Box::new(file), size))
    }

    fn has(&self, name: &str) -> bool {
        self.root.join(name).is_file()
    }
}

impl LayoutSource for super::tar_index::TarIndex {
    fn origin(&self) -> &Path {
        self.path()
    }

    fn open(&self, name: &str) -> Result<(Box<dyn Read + '_>, u64)> {
        let (r, size) = self.open_member(name)?;
        Ok((Box::new(r), size))
    }

    fn has(&self, name: &str) -> bool {
        self.contains(name)
    }
}

/// `blobs/sha256/<hex>` for a digest.
pub fn blob_name(digest: &Digest) -> Result<String> {
    Ok(format!("blobs/sha256/{}", sha256_hex(digest)?))
}

#[derive(Debug, Deserialize)]
struct IndexEntry {
    #[serde(flatten)]
    blob: BlobRef,
    #[serde(default)]
    annotations: Option<HashMap<String, String>>,
}

#[derive(Debug, Deserialize)]
struct IndexDoc {
    #[serde(default)]
    manifests: Vec<IndexEntry>,
}

impl IndexEntry {
    fn ref_name(&self) -> Option<&str> {
        let ann = self.annotations.as_ref()?;
        ann.get(ANNOTATION_BERTH_NAME).or_else(|| ann.get(ANNOTATION_REF_NAME)).map(String::as_str)
    }

    fn matches(&self, tag: &str) -> bool {
        let Some(ann) = self.annotations.as_ref() else { return false };
        let normalised = Reference::parse(tag).ok();
        [ANNOTATION_REF_NAME, ANNOTATION_BERTH_NAME]
            .iter()
            .filter_map(|k| ann.get(*k))
            .any(|n| n == tag || (n.contains(['/', ':']) && normalised.is_some() && Reference::parse(n).ok() == normalised))
    }
}

fn read_doc(src: &dyn LayoutSource, name: &str) -> Result<Vec<u8>> {
    let (reader, size) = src.open(name)?;
    let what = || format!("{name} in {}", src.origin().display());
    if size > MAX_JSON_SIZE {
        return Err(Error::Format { what: what(), message: "larger than 16 MiB".into() });
    }
    let mut buf = Vec::new();
    reader.take(size).read_to_end(&mut buf).io_context(what)?;
    Ok(buf)
}

/// Read a blob of the layout into memory, verified against its descriptor.
fn read_verified(src: &dyn LayoutSource, blob: &BlobRef) -> Result<Vec<u8>> {
    let bytes = read_doc(src, &blob_name(&blob.digest)?)?;
    let actual = sha256_bytes(&bytes);
    if actual != blob.digest || bytes.len() as u64 != blob.size {
        return Err(Error::DigestMismatch {
            what: format!("blob {} in {}", blob.digest, src.origin().display()),
            expected: format!("{} ({} bytes)", blob.digest, blob.size),
            actual: format!("{actual} ({} bytes)", bytes.len()),
        });
    }
    Ok(bytes)
}

/// Copy the images of a layout into the store: the one whose ref name is `tag`, or all.
/// `name` overrides the names taken from the layout's annotations.
pub fn load(store: &Store, src: &dyn LayoutSource, tag: Option<&str>, name: Option<&Reference>) -> Result<Vec<LoadedImage>> {
    let origin = src.origin().display().to_string();
    let layout: Value = serde_json::from_slice(&read_doc(src, "oci-layout")?)
        .map_err(|e| Error::Format { what: format!("oci-layout in {origin}"), message: e.to_string() })?;
    if layout.get("imageLayoutVersion").and_then(Value::as_str).is_none() {
        return Err(Error::Format { what: format!("oci-layout in {origin}"), message: "no imageLayoutVersion".into() });
    }
    let index: IndexDoc = serde_json::from_slice(&read_doc(src, "index.json")?)
        .map_err(|e| Error::Format { what: format!("index.json in {origin}"), message: e.to_string() })?;
    let entries: Vec<&IndexEntry> = match tag {
        Some(t) => index.manifests.iter().filter(|e| e.matches(t)).collect(),
        None => index.manifests.iter().collect(),
    };
    if entries.is_empty() {
        let what = tag.map_or_else(|| "no image".to_string(), |t| format!("no image named {t:?}"));
        return Err(Error::NotFound(format!("{what} in layout {origin}")));
    }
    if name.is_some() && entries.len() > 1 {
        return Err(Error::Format { what: format!("layout {origin}"), message: "holds several images: name one with :TAG".into() });
    }
    let mut staging = Staging::new(store)?;
    let mut loaded = Vec::new();
    for entry in entries {
        let parts = copy_entry(&mut staging, src, &entry.blob)?;
        let image_name = match name {
            Some(n) => n.clone(),
            None => name_from_ref_name(entry.ref_name(), src.origin())?,
        };
        loaded.push(LoadedImage {
            names: vec![image_name],
            manifest: parts.descriptor(),
            config: parts.config.digest.clone(),
            layers: parts
                .layers
                .iter()
                .map(|l| oci_spec::image::Descriptor::new(l.media_type.as_str().into(), l.size, l.digest.clone()))
                .collect(),
        });
    }
    staging.commit(&loaded)?;
    Ok(loaded)
}

/// Copy one index entry (narrowed to this platform if it is an index) and its blobs.
fn copy_entry(staging: &mut Staging<'_>, src: &dyn LayoutSource, desc: &BlobRef) -> Result<ImageParts> {
    let origin = src.origin().display().to_string();
    let mut desc = desc.clone();
    let mut bytes = read_verified(src, &desc)?;
    if convert::is_index(&desc.media_type) {
        let index = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Format { what: format!("index {} in {origin}", desc.digest), message: e.to_string() })?;
        let chosen = select_manifest(&index, &Platform::host(), &origin)?;
        desc = BlobRef { media_type: chosen.media_type().to_string(), digest: chosen.digest().clone(), size: chosen.size(), urls: None };
        bytes = read_verified(src, &desc)?;
    }
    let parts = ImageParts::parse(bytes, desc.digest.clone(), &origin)?;
    for blob in std::iter::once(&parts.config).chain(&parts.layers) {
        let name = blob_name(&blob.digest)?;
        if !src.has(&name) && blob.urls.as_ref().is_some_and(|u| !u.is_empty()) {
            return Err(Error::Format {
                what: format!("layer {} in {origin}", blob.digest),
                message: "a foreign layer that is not in the layout (berth does not fetch its urls)".into(),
            });
        }
        let (reader, _) = src.open(&name)?;
        staging.put(reader, &blob.digest, blob.size)?;
    }
    staging.put_bytes(&parts.bytes)?;
    Ok(parts)
}

/// Write access to a layout being produced.
pub trait LayoutSink {
    /// Whether the layout already has this blob (an existing directory being added to).
    fn has_blob(&self, digest: &Digest) -> bool;
    /// Add a blob, failing if the stream does not match `digest` and `size`.
    fn put_blob(&mut self, digest: &Digest, size: u64, reader: &mut dyn Read) -> Result<()>;
    /// Write `index.json` (merged with existing entries) and `oci-layout`.
    fn finish(&mut self, entries: Vec<Value>) -> Result<()>;
}

/// A layout directory being written (created, or added to like skopeo does).
pub struct DirSink {
    store: Store,
}

impl DirSink {
    /// Open or create the layout directory `root`.
    pub fn create(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root).io_context(|| format!("create layout {}", root.display()))?;
        if !root.join("oci-layout").exists() {
            write_atomic(root, "oci-layout", OCI_LAYOUT_FILE.as_bytes())?;
        }
        if !root.join("index.json").exists() {
            write_atomic(root, "index.json", br#"{"schemaVersion":2,"manifests":[]}"#)?;
        }
        Ok(Self { store: Store::open(root)? })
    }
}

impl LayoutSink for DirSink {
    fn has_blob(&self, digest: &Digest) -> bool {
        self.store.has_blob(digest)
    }

    fn put_blob(&mut self, digest: &Digest, size: u64, reader: &mut dyn Read) -> Result<()> {
        self.store.put_blob(reader, Some(digest), Some(size)).map(|_| ())
    }

    fn finish(&mut self, entries: Vec<Value>) -> Result<()> {
        let root = self.store.root().to_path_buf();
        let path = root.join("index.json");
        let bytes = std::fs::read(&path).io_context(|| format!("read {}", path.display()))?;
        let mut index: Value =
            serde_json::from_slice(&bytes).map_err(|e| Error::Format { what: path.display().to_string(), message: e.to_string() })?;
        let new_names: Vec<&Value> = entries.iter().map(|e| &e["annotations"][ANNOTATION_REF_NAME]).collect();
        let mut manifests: Vec<Value> = index.get("manifests").and_then(Value::as_array).cloned().unwrap_or_default();
        manifests.retain(|m| !new_names.contains(&&m["annotations"][ANNOTATION_REF_NAME]));
        manifests.extend(entries);
        index["schemaVersion"] = json!(2);
        index["manifests"] = Value::Array(manifests);
        let out = serde_json::to_vec(&index).map_err(|e| Error::Format { what: path.display().to_string(), message: e.to_string() })?;
        write_atomic(&root, "index.json", &out)
    }
}

/// Copy store images into a layout; `ref_names[i]` names `images[i]` in `index.json`.
pub fn save(store: &Store, images: &[StoredImage], ref_names: &[String], sink: &mut dyn LayoutSink) -> Result<()> {
    let mut entries = Vec::new();
    for (image, ref_name) in images.iter().zip(ref_names) {
        let parts = &image.parts;
        let (bytes, digest) = match convert::manifest_to_oci(&parts.doc)? {
            None => (parts.bytes.clone(), parts.digest.clone()),
            Some(doc) => {
                let bytes = serde_json::to_vec(&doc)
                    .map_err(|e| Error::Format { what: format!("image {}", image.name), message: e.to_string() })?;
                let digest = sha256_bytes(&bytes);
                (bytes, digest)
            }
        };
        for blob in std::iter::once(&parts.config).chain(&parts.layers) {
            copy_blob(store, sink, blob, &image.name)?;
        }
        if !sink.has_blob(&digest) {
            sink.put_blob(&digest, bytes.len() as u64, &mut &bytes[..])?;
        }
        entries.push(json!({
            "mediaType": convert::OCI_MANIFEST,
            "digest": digest.to_string(),
            "size": bytes.len(),
            "annotations": { ANNOTATION_REF_NAME: ref_name },
        }));
    }
    sink.finish(entries)
}

/// Stream one blob from the store into a sink, verified on the way.
pub fn copy_blob(store: &Store, sink: &mut dyn LayoutSink, blob: &BlobRef, image: &Reference) -> Result<()> {
    if sink.has_blob(&blob.digest) {
        return Ok(());
    }
    let file: File = store.open_blob(&blob.digest).map_err(|e| match e {
        Error::NotFound(_) => Error::NotFound(format!("blob {} of image {image} (the store is missing it)", blob.digest)),
        other => other,
    })?;
    let mut reader = VerifyingReader::new(file, &blob.digest, blob.size, format!("blob {} of image {image}", blob.digest));
    sink.put_blob(&blob.digest, blob.size, &mut reader)
}
