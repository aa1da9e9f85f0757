//! Stored images as users see them: find by name or id, list with size and creation time,
//! inspect (config, rootfs, history as JSON), history, tag; removal and pruning in [`remove`].
//!
//! An image's id is its config digest (what docker and podman print); its size is what it
//! occupies in the store (compressed layers, config and manifest).

pub mod remove;

use oci_spec::image::Descriptor;
use serde_json::{json, Value};

use crate::pull::ANNOTATION_REPO_DIGEST;
use crate::reference::Reference;
use crate::registry::{select_manifest, Platform, DOCKER_MANIFEST_LIST, OCI_INDEX};
use crate::store::digest::{parse_digest, Digest};
use crate::store::{Store, ANNOTATION_REF_NAME};
use crate::unpack::chain_id;
use crate::{Error, Result};

pub use remove::{collect_garbage, prune, remove, GarbageReport, RemoveOutcome};

/// Whether a media type is an OCI index or a Docker manifest list.
pub fn is_index_media_type(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// One stored image, read from its manifest and config.
#[derive(Debug, Clone)]
pub struct Image {
    /// The descriptor the name points to (a manifest, or an index).
    pub descriptor: Descriptor,
    /// The image manifest's digest (the host's entry when the name points to an index).
    pub manifest: Digest,
    /// The manifest's layer descriptors, bottom first.
    pub layers: Vec<Descriptor>,
    /// The config digest: the image id.
    pub id: Digest,
    /// The config size.
    pub config_size: u64,
    /// The config document.
    pub config: Value,
    /// `rootfs.diff_ids`.
    pub diff_ids: Vec<Digest>,
    /// Chain ids (snapshot keys), bottom first.
    pub chain: Vec<Digest>,
}

impl Image {
    /// Read the image that `descriptor` points to.
    pub fn load(store: &Store, descriptor: &Descriptor) -> Result<Image> {
        let manifest_desc =
            if is_index_media_type(descriptor.media_type().as_ref()) { host_manifest(store, descriptor)? } else { descriptor.clone() };
        let manifest_digest = manifest_desc.digest().clone();
        let manifest = read_json(store, &manifest_digest, "image manifest")?;
        let config_desc: Descriptor = manifest
            .get("config")
            .and_then(|c| serde_json::from_value(c.clone()).ok())
            .ok_or_else(|| format_error(&manifest_digest, "image manifest", "no config descriptor"))?;
        let layers: Vec<Descriptor> = manifest
            .get("layers")
            .and_then(|l| serde_json::from_value(l.clone()).ok())
            .ok_or_else(|| format_error(&manifest_digest, "image manifest", "no layers"))?;
        let config = read_json(store, config_desc.digest(), "image config")?;
        let diff_ids = config
            .pointer("/rootfs/diff_ids")
            .and_then(|v| v.as_array())
            .map(|ids| ids.iter().filter_map(|d| d.as_str().and_then(|s| parse_digest(s).ok())).collect::<Vec<_>>())
            .unwrap_or_default();
        let chain = (1..=diff_ids.len()).filter_map(|n| chain_id(&diff_ids[..n])).collect();
        Ok(Image {
            descriptor: descriptor.clone(),
            manifest: manifest_digest,
            layers,
            id: config_desc.digest().clone(),
            config_size: config_desc.size(),
            config,
            diff_ids,
            chain,
        })
    }

    /// Bytes in the store: layers, config and manifest.
    pub fn size(&self) -> u64 {
        self.layers.iter().map(Descriptor::size).sum::<u64>() + self.config_size + self.descriptor.size()
    }

    /// The config's `created` time (RFC 3339), if any.
    pub fn created(&self) -> Option<&str> {
        self.config.get("created").and_then(|v| v.as_str())
    }

    /// The short id (12 hex characters) that listings print.
    pub fn short_id(&self) -> &str {
        let hex = self.id.digest();
        &hex[..hex.len().min(12)]
    }
}

/// The manifest of an index for the host platform, among those present in the store.
fn host_manifest(store: &Store, index_desc: &Descriptor) -> Result<Descriptor> {
    let bytes = store.read_blob(index_desc.digest())?;
    let mut index: oci_spec::image::ImageIndex =
        serde_json::from_slice(&bytes).map_err(|e| format_error(index_desc.digest(), "image index", &e.to_string()))?;
    let present: Vec<Descriptor> = index.manifests().iter().filter(|d| store.has_blob(d.digest())).cloned().collect();
    index.set_manifests(present);
    let name = format!("index {}", index_desc.digest());
    select_manifest(&index, &Platform::host(), &name).cloned()
}

fn read_json(store: &Store, digest: &Digest, what: &str) -> Result<Value> {
    let bytes = store.read_blob(digest)?;
    serde_json::from_slice(&bytes).map_err(|e| format_error(digest, what, &e.to_string()))
}

fn format_error(digest: &Digest, what: &str, message: &str) -> Error {
    Error::Format { what: format!("{what} {digest}"), message: message.to_string() }
}

/// The descriptor stored under `name`: an exact name first (digest references included), then
/// the store's resolution (a tag, or a manifest digest still in the store).
pub fn resolve_name(store: &Store, name: &Reference) -> Result<Descriptor> {
    if let Some(entry) = store.list()?.into_iter().find(|e| e.reference.as_ref() == Some(name)) {
        return Ok(entry.descriptor);
    }
    store.resolve(name)
}

/// A stored name and the image it points to.
#[derive(Debug, Clone)]
pub struct NamedImage {
    /// The name (`None` for an index entry without a usable name).
    pub name: Option<Reference>,
    /// The digest the registry resolved the name to, when it came from a pull.
    pub repo_digest: Option<Digest>,
    /// The image.
    pub image: Image,
}

/// Every named image in the store, in index order; entries that cannot be read are skipped
/// with a warning (a half-deleted foreign entry must not hide the others).
pub fn list(store: &Store) -> Result<Vec<NamedImage>> {
    let mut out = Vec::new();
    for entry in store.list()? {
        match Image::load(store, &entry.descriptor) {
            Ok(image) => out.push(NamedImage { repo_digest: repo_digest(&entry.descriptor), name: entry.reference, image }),
            Err(e) => tracing::warn!(digest = %entry.descriptor.digest(), error = %e, "skipping unreadable image"),
        }
    }
    Ok(out)
}

fn repo_digest(descriptor: &Descriptor) -> Option<Digest> {
    let ann = descriptor.annotations().as_ref()?;
    ann.get(ANNOTATION_REPO_DIGEST).and_then(|d| parse_digest(d).ok())
}

/// Find what a user typed: a name, a full `sha256:` id, or an id prefix of at least 3 hex digits.
/// Returns every stored name of that image (one entry with `name: None` for an unnamed one).
pub fn find(store: &Store, text: &str) -> Result<Vec<NamedImage>> {
    let all = list(store)?;
    let hex = text.strip_prefix("sha256:").unwrap_or(text);
    let looks_like_id = hex.len() >= 3 && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    if looks_like_id {
        let ids: std::collections::BTreeSet<&str> = all.iter().map(|n| n.image.id.digest()).filter(|id| id.starts_with(hex)).collect();
        match ids.len() {
            0 => {}
            1 => return Ok(all.iter().filter(|n| n.image.id.digest().starts_with(hex)).cloned().collect()),
            _ => return Err(Error::InvalidReference { reference: text.to_string(), reason: "image id prefix is ambiguous".into() }),
        }
    }
    let name = Reference::parse(text)?;
    if let Some(found) = all.iter().find(|n| n.name.as_ref() == Some(&name)) {
        return Ok(vec![found.clone()]);
    }
    let descriptor = store.resolve(&name).map_err(|_| Error::NotFound(format!("image {text:?}")))?;
    let image = Image::load(store, &descriptor)?;
    Ok(vec![NamedImage { name: Some(name), repo_digest: None, image }])
}

/// Point `dest` at the image stored as `source`.
pub fn tag(store: &Store, source: &str, dest: &Reference) -> Result<()> {
    let found = find(store, source)?;
    let first = found.first().ok_or_else(|| Error::NotFound(format!("image {source:?}")))?;
    let mut descriptor = first.image.descriptor.clone();
    // The new name inherits the repo digest only when it names the same repository.
    if let Some(mut ann) = descriptor.annotations().clone() {
        ann.remove(ANNOTATION_REF_NAME);
        if first.name.as_ref().map(Reference::name) != Some(dest.name()) {
            ann.remove(ANNOTATION_REPO_DIGEST);
        }
        descriptor.set_annotations(Some(ann));
    }
    store.tag(dest, &descriptor)
}

/// `image inspect`: podman-like JSON of one image.
pub fn inspect(store: &Store, text: &str) -> Result<Value> {
    let found = find(store, text)?;
    let first = found.first().ok_or_else(|| Error::NotFound(format!("image {text:?}")))?;
    let image = &first.image;
    let all = list(store)?;
    let same: Vec<&NamedImage> = all.iter().filter(|n| n.image.id == image.id).collect();
    let repo_tags: Vec<String> = same.iter().filter_map(|n| n.name.as_ref()).filter(|r| r.tag().is_some()).map(|r| r.to_string()).collect();
    let mut repo_digests: Vec<String> =
        same.iter().filter_map(|n| Some(format!("{}@{}", n.name.as_ref()?.name(), n.repo_digest.as_ref()?))).collect();
    repo_digests.sort();
    repo_digests.dedup();
    let cfg = &image.config;
    let layers: Vec<Value> = image
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            json!({
                "Digest": l.digest().to_string(), "Size": l.size(), "MediaType": l.media_type().to_string(),
                "DiffID": image.diff_ids.get(i).map(|d| d.to_string()),
                "ChainID": image.chain.get(i).map(|d| d.to_string()),
            })
        })
        .collect();
    Ok(json!({
        "Id": image.id.digest(),
        "Digest": image.manifest.to_string(),
        "RepoTags": repo_tags,
        "RepoDigests": repo_digests,
        "Created": image.created(),
        "Author": cfg.get("author"),
        "Architecture": cfg.get("architecture"),
        "Os": cfg.get("os"),
        "Variant": cfg.get("variant"),
        "Config": cfg.get("config").cloned().unwrap_or_else(|| json!({})),
        "RootFS": cfg.get("rootfs"),
        "History": cfg.get("history").cloned().unwrap_or_else(|| json!([])),
        "Size": image.size(),
        "ManifestMediaType": image.descriptor.media_type().to_string(),
        "Layers": layers,
    }))
}

/// One line of `history`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HistoryEntry {
    /// The layer digest this step produced (none for an empty layer).
    pub layer: Option<String>,
    /// When the step ran (RFC 3339).
    pub created: Option<String>,
    /// The command.
    pub created_by: String,
    /// The layer's size in the store.
    pub size: u64,
    /// The comment.
    pub comment: String,
}

/// `history`: the config's history, newest first, with each non-empty step's layer size.
pub fn history(store: &Store, text: &str) -> Result<Vec<HistoryEntry>> {
    let found = find(store, text)?;
    let image = &found.first().ok_or_else(|| Error::NotFound(format!("image {text:?}")))?.image;
    let steps = image.config.get("history").and_then(|h| h.as_array()).cloned().unwrap_or_default();
    let mut layers = image.layers.iter();
    let mut out: Vec<HistoryEntry> = Vec::new();
    let text_of = |v: &Value, key: &str| v.get(key).and_then(|s| s.as_str()).unwrap_or_default().to_string();
    for step in &steps {
        let empty = step.get("empty_layer").and_then(|e| e.as_bool()).unwrap_or(false);
        let layer = if empty { None } else { layers.next() };
        out.push(HistoryEntry {
            layer: layer.map(|l| l.digest().to_string()),
            created: step.get("created").and_then(|c| c.as_str()).map(String::from),
            created_by: text_of(step, "created_by"),
            size: layer.map_or(0, Descriptor::size),
            comment: text_of(step, "comment"),
        });
    }
    // Layers the history does not mention (images built without history) still show.
    for layer in layers {
        out.push(HistoryEntry {
            layer: Some(layer.digest().to_string()),
            created: image.created().map(String::from),
            created_by: String::new(),
            size: layer.size(),
            comment: String::new(),
        });
    }
    out.reverse();
    Ok(out)
}
