//! `rmi` and `image prune`: untag (refusing images in use unless forced), then collect what no
//! name reaches: blobs (the store's gc), snapshots whose chain id no image needs, and the
//! leftovers of killed pulls (`.unpack-*`, `.remove-*` directories, stale blob lock files).
//!
//! Snapshot collection runs under the store's exclusive gc lock, which every pull holds shared
//! for its whole length: a snapshot unpacked by a pull that has not tagged yet is never taken.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::{find, list, Image};
use crate::error::IoContext;
use crate::reference::Reference;
use crate::store::digest::{parse_digest, Digest};
use crate::store::{FileLock, GcReport, Store};
use crate::unpack::Snapshots;
use crate::{Error, Result};

/// Temp directories older than this belong to a killed unpack, not a running one.
const STALE_AGE: Duration = Duration::from_secs(3600);

/// What one `rmi` argument removed.
#[derive(Debug, Clone)]
pub struct RemoveOutcome {
    /// Names untagged.
    pub untagged: Vec<Reference>,
    /// The image id, when no name points to it any more.
    pub deleted: Option<Digest>,
}

/// Untag the image `text` names (a name or an id). An id with several names, or an image
/// `in_use` says a container uses, is refused unless `force`. Call [`collect_garbage`] after.
pub fn remove(store: &Store, text: &str, force: bool, in_use: &dyn Fn(&Digest) -> bool) -> Result<RemoveOutcome> {
    let found = find(store, text)?;
    let first = found.first().ok_or_else(|| Error::NotFound(format!("image {text:?}")))?;
    let id = first.image.id.clone();
    let by_name = Reference::parse(text).ok().filter(|r| found.len() == 1 && first.name.as_ref() == Some(r));
    let targets: Vec<Reference> = match by_name {
        Some(name) => vec![name],
        None => {
            let names: Vec<Reference> = found.iter().filter_map(|n| n.name.clone()).collect();
            if names.len() > 1 && !force {
                let list = names.iter().map(Reference::familiar).collect::<Vec<_>>().join(", ");
                return Err(Error::Format {
                    what: format!("image {}", &id.digest()[..12]),
                    message: format!("referenced by several names ({list}); remove them by name or use --force"),
                });
            }
            names
        }
    };
    let remaining = list(store)?.into_iter().filter(|n| n.image.id == id).count();
    let last = remaining <= targets.len();
    if last && in_use(&id) && !force {
        return Err(Error::Format {
            what: format!("image {text}"),
            message: format!("in use by a container (id {}); use --force", &id.digest()[..12]),
        });
    }
    let mut untagged = Vec::new();
    for name in targets {
        store.untag(&name)?;
        untagged.push(name);
    }
    Ok(RemoveOutcome { untagged, deleted: last.then_some(id) })
}

/// What a garbage collection removed.
#[derive(Debug, Clone, Default)]
pub struct GarbageReport {
    /// Blobs removed from the store.
    pub blobs: GcReport,
    /// Snapshots removed (chain ids).
    pub snapshots: Vec<Digest>,
    /// Leftover temp directories and lock files removed.
    pub leftovers: usize,
}

/// Remove blobs no name reaches, and snapshots no stored image needs unless `keep_snapshot`
/// (the engine's "a container's rootfs uses it") says otherwise.
pub fn collect_garbage(store: &Store, snapshots_dir: &Path, keep_snapshot: &dyn Fn(&Digest) -> bool) -> Result<GarbageReport> {
    let snapshots = Snapshots::open(snapshots_dir)?;
    let mut report = GarbageReport::default();
    {
        let _gc = FileLock::exclusive(&store.root().join(".berth-gc.lock"))?;
        let needed = needed_chain_ids(store)?;
        // Unpacks of killed processes (a live unpack holds its directory's flock).
        report.leftovers += crate::store::remove_abandoned(snapshots_dir, crate::unpack::UNPACK_TEMP_PREFIX);
        for entry in read_dir(snapshots_dir)? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(crate::unpack::UNPACK_TEMP_PREFIX) {
                continue;
            }
            if name.starts_with(".remove-") {
                if is_stale(&entry) {
                    std::fs::remove_dir_all(entry.path()).io_context(|| format!("remove {}", entry.path().display()))?;
                    report.leftovers += 1;
                }
                continue;
            }
            let Ok(chain) = parse_digest(&format!("sha256:{name}")) else { continue };
            if needed.contains(&chain) || keep_snapshot(&chain) {
                continue;
            }
            snapshots.remove(&chain)?;
            report.snapshots.push(chain);
        }
        report.leftovers += remove_stale_locks(store)?;
    }
    report.blobs = store.gc()?;
    Ok(report)
}

/// `image prune`: what is dangling (blobs and snapshots of images whose names were removed
/// or moved to a newer pull) and the leftovers of killed pulls.
pub fn prune(store: &Store, snapshots_dir: &Path, keep_snapshot: &dyn Fn(&Digest) -> bool) -> Result<GarbageReport> {
    collect_garbage(store, snapshots_dir, keep_snapshot)
}

/// Chain ids of every layer of every stored image (all present manifests of an index).
pub(crate) fn needed_chain_ids(store: &Store) -> Result<HashSet<Digest>> {
    let mut needed = HashSet::new();
    for entry in store.list()? {
        let mut descriptors = vec![entry.descriptor.clone()];
        if super::is_index_media_type(entry.descriptor.media_type().as_ref()) {
            let bytes = store.read_blob(entry.descriptor.digest())?;
            if let Ok(index) = serde_json::from_slice::<oci_spec::image::ImageIndex>(&bytes) {
                descriptors = index.manifests().iter().filter(|d| store.has_blob(d.digest())).cloned().collect();
            }
        }
        for descriptor in descriptors {
            match Image::load(store, &descriptor) {
                Ok(image) => needed.extend(image.chain),
                // An image we cannot read keeps nothing alive; say so rather than fail the gc.
                Err(e) => tracing::warn!(digest = %descriptor.digest(), error = %e, "unreadable image during gc"),
            }
        }
    }
    Ok(needed)
}

/// Lock files of blobs that are gone (only pulls use them, and they hold a lease: none runs now).
fn remove_stale_locks(store: &Store) -> Result<usize> {
    let dir = store.root().join("locks");
    if !dir.is_dir() {
        return Ok(0);
    }
    let mut removed = 0;
    for entry in read_dir(&dir)? {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(hex) = name.strip_suffix(".lock") else { continue };
        let Ok(digest) = parse_digest(&format!("sha256:{hex}")) else { continue };
        if !store.has_blob(&digest) {
            std::fs::remove_file(entry.path()).io_context(|| format!("remove {}", entry.path().display()))?;
            removed += 1;
        }
    }
    Ok(removed)
}

fn read_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>> {
    std::fs::read_dir(dir)
        .io_context(|| format!("read {}", dir.display()))?
        .map(|e| e.io_context(|| format!("read {}", dir.display())))
        .collect()
}

fn is_stale(entry: &std::fs::DirEntry) -> bool {
    let modified = entry.metadata().ok().and_then(|m| m.modified().ok());
    modified.and_then(|m| SystemTime::now().duration_since(m).ok()).is_some_and(|age| age > STALE_AGE)
}
