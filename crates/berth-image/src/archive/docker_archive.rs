//! `docker-archive:` — what `docker save` writes and `docker load` reads.
//!
//! `manifest.json` lists images as `{Config, RepoTags, Layers}`; layers are uncompressed tars,
//! at `<id>/layer.tar` (docker before 25, often symlinked when repeated) or at
//! `blobs/sha256/<hex>` (docker 25+, whose archive is also an OCI layout). Loading accepts
//! both; saving writes the current layout, including `index.json` and `oci-layout`.
//!
//! A loaded layer is verified against the config's `rootfs.diff_ids` while it streams into
//! the store, and is stored as is: an uncompressed tar with media type
//! `application/vnd.oci.image.layer.v1.tar`, whose blob digest is its diff_id (no CPU spent
//! on recompression; a later push may compress). A compressed member (some tools write gzip)
//! is kept compressed: one pass verifies its diff_id, a second streams it into the store.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::Deserialize;
use serde_json::{json, Value};

use super::convert::{self, OCI_CONFIG, OCI_LAYER_TAR, OCI_MANIFEST};
use super::image::{fallback_name, LoadedImage, Staging, StoredImage, VerifyingReader};
use super::oci_archive::TarOut;
use super::oci_layout::{blob_name, OCI_LAYOUT_FILE};
use super::tar_index::TarIndex;
use crate::error::IoContext;
use crate::reference::Reference;
use crate::store::digest::{parse_digest, sha256_bytes, Digest, HashingReader};
use crate::store::{Descriptor, MediaType, Store, ANNOTATION_REF_NAME};
use crate::transport::ArchiveSelector;
use crate::unpack::Compression;
use crate::{Error, Result};

#[derive(Debug, Deserialize)]
struct ArchiveEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// The digest a member's name encodes (`blobs/sha256/<hex>`, `<hex>.json`), if any.
fn name_digest(name: &str) -> Option<Digest> {
    let hex = match name.strip_prefix("blobs/sha256/") {
        Some(hex) => hex,
        None => name.strip_suffix(".json")?,
    };
    parse_digest(&format!("sha256:{hex}")).ok()
}

/// A decoder of the uncompressed content of `raw`.
fn decoder<'a, R: Read + 'a>(compression: Compression, raw: R) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match compression {
        Compression::None => Box::new(raw),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(raw)?),
    })
}

/// The diff_ids of a config document.
fn diff_ids(config: &[u8], what: &str) -> Result<Vec<Digest>> {
    let doc: Value = serde_json::from_slice(config).map_err(|e| Error::Format { what: what.to_string(), message: e.to_string() })?;
    let ids = doc["rootfs"]["diff_ids"]
        .as_array()
        .ok_or_else(|| Error::Format { what: what.to_string(), message: "no rootfs.diff_ids".into() })?;
    ids.iter()
        .map(|v| parse_digest(v.as_str().unwrap_or_default()))
        .collect::<Result<Vec<_>>>()
        .map_err(|e| Error::Format { what: what.to_string(), message: format!("rootfs.diff_ids: {e}") })
}

/// Copy the images of a docker-archive into the store (all, or the one `selector` picks);
/// every layer is verified against its diff_id, and nothing is tagged unless all are.
pub fn load(store: &Store, archive: &TarIndex, selector: Option<&ArchiveSelector>, name: Option<&Reference>) -> Result<Vec<LoadedImage>> {
    let origin = archive.path().display().to_string();
    let entries: Vec<ArchiveEntry> = serde_json::from_slice(&archive.read_small("manifest.json")?)
        .map_err(|e| Error::Format { what: format!("manifest.json in {origin}"), message: e.to_string() })?;
    let tags_of = |e: &ArchiveEntry| -> Vec<Reference> { e.repo_tags.iter().flatten().filter_map(|t| Reference::parse(t).ok()).collect() };
    let chosen: Vec<(usize, &ArchiveEntry)> = match selector {
        None => entries.iter().enumerate().collect(),
        Some(ArchiveSelector::Index(n)) => entries.get(*n).map(|e| vec![(*n, e)]).unwrap_or_default(),
        Some(ArchiveSelector::Reference(r)) => entries.iter().enumerate().filter(|(_, e)| tags_of(e).contains(r)).collect(),
    };
    if chosen.is_empty() {
        return Err(Error::NotFound(format!(
            "no image {} in archive {origin}",
            selector.map_or("at all".to_string(), |s| format!("{s:?}"))
        )));
    }
    let mut staging = Staging::new(store)?;
    let mut loaded = Vec::new();
    for (i, entry) in &chosen {
        let mut image = load_entry(&mut staging, archive, entry)?;
        image.names = match (name, selector) {
            (Some(n), _) => vec![n.clone()],
            (None, Some(ArchiveSelector::Reference(r))) => vec![r.clone()],
            _ => tags_of(entry),
        };
        if image.names.is_empty() {
            let tag = if chosen.len() == 1 { "latest".to_string() } else { i.to_string() };
            image.names.push(fallback_name(archive.path(), &tag)?);
        }
        loaded.push(image);
    }
    staging.commit(&loaded)?;
    Ok(loaded)
}

fn load_entry(staging: &mut Staging<'_>, archive: &TarIndex, entry: &ArchiveEntry) -> Result<LoadedImage> {
    let origin = archive.path().display().to_string();
    let config = archive.read_small(&entry.config)?;
    let config_digest = sha256_bytes(&config);
    let what = format!("config {} in {origin}", entry.config);
    if let Some(named) = name_digest(&entry.config) {
        if named != config_digest {
            return Err(Error::DigestMismatch { what, expected: named.to_string(), actual: config_digest.to_string() });
        }
    }
    let ids = diff_ids(&config, &what)?;
    if ids.len() != entry.layers.len() {
        return Err(Error::Format {
            what: format!("image {} in {origin}", entry.config),
            message: format!("{} layers but the config lists {} diff_ids", entry.layers.len(), ids.len()),
        });
    }
    let mut layers = Vec::new();
    for (member, diff_id) in entry.layers.iter().zip(&ids) {
        layers.push(load_layer(staging, archive, member, diff_id)?);
    }
    staging.put_bytes(&config)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len() },
        "layers": layers.iter().map(|l: &Descriptor| json!({
            "mediaType": l.media_type().to_string(), "digest": l.digest().to_string(), "size": l.size(),
        })).collect::<Vec<_>>(),
    });
    let bytes = serde_json::to_vec(&manifest).map_err(|e| Error::Format { what: "manifest".into(), message: e.to_string() })?;
    let info = staging.put_bytes(&bytes)?;
    Ok(LoadedImage { names: Vec::new(), manifest: info.descriptor(MediaType::ImageManifest), config: config_digest, layers })
}

fn load_layer(staging: &mut Staging<'_>, archive: &TarIndex, member: &str, diff_id: &Digest) -> Result<Descriptor> {
    let origin = archive.path().display().to_string();
    let what = format!("layer {member} in {origin}");
    let mut prefix = [0u8; 4];
    let (mut head, size) = archive.open_member(member)?;
    let got = head.read(&mut prefix).io_context(|| format!("read {what}"))?;
    let compression = Compression::detect(&prefix[..got]);
    let named = name_digest(member);
    if compression == Compression::None {
        if let Some(named) = named.filter(|n| n != diff_id) {
            return Err(Error::DigestMismatch {
                what: format!("diff_id of {what}"),
                expected: diff_id.to_string(),
                actual: named.to_string(),
            });
        }
        let (reader, _) = archive.open_member(member)?;
        staging.put(reader, diff_id, size).map_err(|e| rename(e, &what))?;
        return Ok(Descriptor::new(MediaType::ImageLayer, size, diff_id.clone()));
    }
    // Verify the uncompressed content first, so nothing unverified becomes a blob.
    let (reader, _) = archive.open_member(member)?;
    let mut raw = HashingReader::new(reader);
    let mut plain = HashingReader::new(decoder(compression, &mut raw).io_context(|| format!("decompress {what}"))?);
    io::copy(&mut plain, &mut io::sink()).io_context(|| format!("decompress {what}"))?;
    let (actual_diff, _) = plain.finish().io_context(|| format!("decompress {what}"))?;
    let (blob_digest, _) = raw.finish().io_context(|| format!("read {what}"))?;
    if actual_diff != *diff_id {
        return Err(Error::DigestMismatch {
            what: format!("diff_id of {what}"),
            expected: diff_id.to_string(),
            actual: actual_diff.to_string(),
        });
    }
    if let Some(named) = named.filter(|n| *n != blob_digest) {
        return Err(Error::DigestMismatch { what, expected: named.to_string(), actual: blob_digest.to_string() });
    }
    let (reader, _) = archive.open_member(member)?;
    staging.put(reader, &blob_digest, size).map_err(|e| rename(e, &what))?;
    Ok(Descriptor::new(compression.media_type(), size, blob_digest))
}

/// Name the archive member in a store error (the store only knows digests).
fn rename(e: Error, what: &str) -> Error {
    match e {
        Error::DigestMismatch { expected, actual, .. } => Error::DigestMismatch { what: what.to_string(), expected, actual },
        Error::SizeMismatch { expected, actual, .. } => Error::SizeMismatch { what: what.to_string(), expected, actual },
        other => other,
    }
}

/// An unnamed temporary file in `dir` (gone when closed).
pub(crate) fn temp_file(dir: &Path) -> Result<File> {
    let opened = std::fs::OpenOptions::new().read(true).write(true).mode(0o600).custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC).open(dir);
    match opened {
        Ok(f) => Ok(f),
        Err(_) => {
            let path = dir.join(format!(".berth-layer-{}", crate::store::random_suffix()));
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .io_context(|| format!("create {}", path.display()))?;
            let _ = std::fs::remove_file(&path);
            Ok(f)
        }
    }
}

/// Write store images as a docker-archive (docker 25's layout) to `out`. `tags[i]` are the
/// RepoTags of `images[i]`; compressed layers are decompressed through a temp file in `tmp_dir`.
pub fn save<W: Write>(store: &Store, images: &[StoredImage], tags: &[Vec<Reference>], out: W, what: String, tmp_dir: &Path) -> Result<W> {
    let mut tar = TarOut::new(out, what);
    let mut written: HashSet<Digest> = HashSet::new();
    let mut layer_sizes: HashMap<Digest, u64> = HashMap::new();
    let mut manifest_json = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut index_entries = Vec::new();
    for (image, tags) in images.iter().zip(tags) {
        let name = &image.name;
        let parts = &image.parts;
        let config = store.read_blob(&parts.config.digest)?;
        if sha256_bytes(&config) != parts.config.digest {
            return Err(Error::DigestMismatch {
                what: format!("config of image {name} in the store"),
                expected: parts.config.digest.to_string(),
                actual: sha256_bytes(&config).to_string(),
            });
        }
        let ids = diff_ids(&config, &format!("config of image {name}"))?;
        if ids.len() != parts.layers.len() {
            return Err(Error::Format { what: format!("image {name}"), message: "layer count differs from rootfs.diff_ids".into() });
        }
        let mut layer_names = Vec::new();
        let mut layer_descs = Vec::new();
        for (layer, diff_id) in parts.layers.iter().zip(&ids) {
            let size = match layer_sizes.get(diff_id) {
                Some(s) => *s,
                None => write_layer(store, &mut tar, layer, diff_id, name, tmp_dir)?,
            };
            layer_sizes.insert(diff_id.clone(), size);
            written.insert(diff_id.clone());
            layer_names.push(blob_name(diff_id)?);
            layer_descs.push(json!({ "mediaType": OCI_LAYER_TAR, "digest": diff_id.to_string(), "size": size }));
        }
        let config_name = blob_name(&parts.config.digest)?;
        if written.insert(parts.config.digest.clone()) {
            tar.bytes(&config_name, &config)?;
        }
        let manifest = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": { "mediaType": OCI_CONFIG, "digest": parts.config.digest.to_string(), "size": config.len() },
            "layers": layer_descs,
        });
        let manifest_bytes =
            serde_json::to_vec(&manifest).map_err(|e| Error::Format { what: format!("image {name}"), message: e.to_string() })?;
        let manifest_digest = sha256_bytes(&manifest_bytes);
        if written.insert(manifest_digest.clone()) {
            tar.bytes(&blob_name(&manifest_digest)?, &manifest_bytes)?;
        }
        let repo_tags: Vec<String> = tags.iter().map(Reference::familiar).collect();
        for t in tags {
            let familiar = t.familiar();
            let repo = familiar.rsplit_once(':').map_or(familiar.as_str(), |(r, _)| r).to_string();
            let top = ids.last().map(|d| d.digest().to_string()).unwrap_or_default();
            repositories.entry(repo).or_default().insert(t.tag().unwrap_or("latest").to_string(), top);
            index_entries.push(json!({
                "mediaType": OCI_MANIFEST, "digest": manifest_digest.to_string(), "size": manifest_bytes.len(),
                "annotations": { "io.containerd.image.name": t.to_string(), ANNOTATION_REF_NAME: t.tag().unwrap_or("latest") },
            }));
        }
        if tags.is_empty() {
            index_entries.push(json!({ "mediaType": OCI_MANIFEST, "digest": manifest_digest.to_string(), "size": manifest_bytes.len() }));
        }
        manifest_json.push(json!({ "Config": config_name, "RepoTags": repo_tags, "Layers": layer_names }));
    }
    let to_vec = |v: &Value| serde_json::to_vec(v).map_err(|e| Error::Format { what: "docker-archive".into(), message: e.to_string() });
    tar.bytes("index.json", &to_vec(&json!({ "schemaVersion": 2, "mediaType": convert::OCI_INDEX, "manifests": index_entries }))?)?;
    tar.bytes("manifest.json", &to_vec(&Value::from(manifest_json))?)?;
    tar.bytes("oci-layout", OCI_LAYOUT_FILE.as_bytes())?;
    tar.bytes("repositories", &to_vec(&json!(repositories))?)?;
    tar.finish()
}

/// Write one layer uncompressed as `blobs/sha256/<diff_id hex>`, verified; returns its size.
fn write_layer<W: Write>(
    store: &Store,
    tar: &mut TarOut<W>,
    layer: &super::image::BlobRef,
    diff_id: &Digest,
    image: &Reference,
    tmp_dir: &Path,
) -> Result<u64> {
    let what = format!("layer {} of image {image}", layer.digest);
    let compression = convert::layer_compression(&layer.media_type)?;
    let blob = store.open_blob(&layer.digest)?;
    let name = blob_name(diff_id)?;
    if compression == Compression::None {
        if layer.digest != *diff_id {
            return Err(Error::DigestMismatch {
                what: format!("diff_id of {what}"),
                expected: diff_id.to_string(),
                actual: layer.digest.to_string(),
            });
        }
        let mut reader = VerifyingReader::new(blob, &layer.digest, layer.size, what);
        tar.file(&name, layer.size, &mut reader)?;
        return Ok(layer.size);
    }
    // A tar header needs the size first: decompress into an unnamed temp file, verifying both digests.
    let mut tmp = temp_file(tmp_dir)?;
    let mut raw = VerifyingReader::new(blob, &layer.digest, layer.size, what.clone());
    let mut plain = HashingReader::new(decoder(compression, &mut raw).io_context(|| format!("decompress {what}"))?);
    io::copy(&mut plain, &mut io::BufWriter::new(&mut tmp)).io_context(|| format!("decompress {what} into {}", tmp_dir.display()))?;
    let (actual, size) = plain.finish().io_context(|| format!("decompress {what}"))?;
    io::copy(&mut raw, &mut io::sink()).io_context(|| format!("read {what}"))?;
    if actual != *diff_id {
        return Err(Error::DigestMismatch {
            what: format!("diff_id of {what}"),
            expected: diff_id.to_string(),
            actual: actual.to_string(),
        });
    }
    tmp.rewind().io_context(|| format!("rewind the temp copy of {what}"))?;
    tar.file(&name, size, &mut tmp)?;
    Ok(size)
}
