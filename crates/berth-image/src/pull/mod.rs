//! `pull`: resolve a reference (mirrors first, then the registry), fetch the config and the
//! layers in parallel straight into the store, unpack each layer into its snapshot (keyed by
//! chain id) in the same streaming pass, then tag.
//!
//! Crash safety: blobs and snapshots become visible only complete and verified (temp + rename),
//! and the name is tagged last, so a SIGKILL leaves temp files only (`.tmp-*` blobs,
//! `.unpack-*` snapshots) that lookups ignore; their writers held flocks on them, so the next
//! pull or `prune` sees the locks free and removes them. A failed pull removes the blobs and
//! snapshots it added when no other pull is running. A [`Lease`](crate::store::Lease) holds
//! off garbage collection for the whole pull. Concurrency: see [`transfer`].

pub mod transfer;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use oci_spec::image::{Descriptor, MediaType};

use crate::reference::Reference;
use crate::registry::{load_credentials, Credentials, Platform, RegistryClient, RegistryConfig, ResolvedImage, RetryPolicy};
use crate::store::digest::{parse_digest, Digest};
use crate::store::Store;
use crate::unpack::{chain_id, PathPolicy, Snapshots, UnpackOptions};
use crate::{Error, Result};
use transfer::{ensure_blob, SnapshotTarget, Transfer};

/// The annotation holding the digest the registry resolved the name to (index or manifest).
pub const ANNOTATION_REPO_DIGEST: &str = "io.berth.image.repo-digest";
/// The annotation naming the repository (`registry/path`) the blobs were pulled from.
pub const ANNOTATION_SOURCE: &str = "io.berth.image.source";

/// Callbacks that follow a pull; every method has a no-op default.
pub trait PullProgress: Sync {
    /// The image was resolved to `manifest`, whose layers are `layers`.
    fn resolved(&self, _manifest: &Digest, _layers: &[Descriptor]) {}
    /// A layer download starts.
    fn layer_started(&self, _digest: &Digest, _size: u64) {}
    /// `bytes` more bytes of a layer arrived.
    fn layer_bytes(&self, _digest: &Digest, _bytes: u64) {}
    /// A layer is stored and unpacked.
    fn layer_done(&self, _digest: &Digest) {}
    /// A layer was already there: nothing was downloaded.
    fn layer_skipped(&self, _digest: &Digest) {}
}

/// Progress that goes nowhere.
pub struct NoProgress;

impl PullProgress for NoProgress {}

/// How to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Insecure registries, mirrors, CA files.
    pub registries: RegistryConfig,
    /// Layers downloaded at once.
    pub workers: usize,
    /// Credentials for every endpoint; `None` reads the auth files per endpoint.
    pub credentials: Option<Credentials>,
    /// Apply entry ownership when unpacking (needs CAP_CHOWN).
    pub same_owner: bool,
    /// How entry paths are confined in snapshots.
    pub path_policy: PathPolicy,
    /// Retries on 5xx answers and broken connections.
    pub retry: RetryPolicy,
}

impl Default for PullOptions {
    fn default() -> Self {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        Self {
            registries: RegistryConfig::default(),
            workers: 4,
            credentials: None,
            same_owner: root,
            path_policy: PathPolicy::Strict,
            retry: RetryPolicy::default(),
        }
    }
}

/// A pulled, tagged image.
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// The name it is stored under.
    pub name: Reference,
    /// The manifest descriptor the name points to.
    pub manifest: Descriptor,
    /// The digest the registry resolved the reference to (the index's when there was one).
    pub repo_digest: Digest,
    /// The config digest: the image id.
    pub config: Digest,
    /// The snapshot directories, bottom layer first.
    pub snapshots: Vec<PathBuf>,
    /// Blobs that were downloaded (the others were present).
    pub downloaded: Vec<Digest>,
    /// The endpoint the image came from (a mirror or the registry).
    pub endpoint: String,
}

/// Pull `reference` for `platform` into `store`, unpacking its layers under `snapshots_dir`.
pub fn pull(
    store: &Store,
    snapshots_dir: &std::path::Path,
    reference: &Reference,
    platform: &Platform,
    opts: &PullOptions,
    progress: &dyn PullProgress,
) -> Result<PulledImage> {
    let snapshots = Snapshots::open(snapshots_dir)?;
    let lease = store.lease()?;
    // Leftovers of killed pulls and unpacks: their owners' flocks are free.
    crate::store::remove_abandoned(&store.root().join("blobs").join("sha256"), crate::store::BLOB_TEMP_PREFIX);
    crate::store::remove_abandoned(snapshots_dir, crate::unpack::UNPACK_TEMP_PREFIX);
    let made = Mutex::new(Made::default());
    let result = pull_leased(store, &snapshots, reference, platform, opts, progress, &made);
    if result.is_err() {
        drop(lease);
        discard_unused(store, &snapshots, made.into_inner().unwrap_or_else(|p| p.into_inner()));
    }
    result
}

/// What a pull added to the store: blobs and snapshots that did not exist before it.
#[derive(Default)]
struct Made {
    blobs: Vec<Digest>,
    snapshots: Vec<Digest>,
}

/// After a failed pull, remove what it added and no stored image needs — only when no other
/// pull, load or gc holds the store (the exclusive gc lock is free), since a concurrent pull
/// may already count on those blobs. Otherwise they wait for `image prune`.
fn discard_unused(store: &Store, snapshots: &Snapshots, made: Made) {
    if made.blobs.is_empty() && made.snapshots.is_empty() {
        return;
    }
    // Retried briefly: a lease may be held for a moment by a child forked elsewhere in this
    // process, until its exec closes the inherited fd.
    let gc_lock = store.root().join(".berth-gc.lock");
    let held = (0..20).find_map(|_| match crate::store::FileLock::try_exclusive(&gc_lock) {
        Ok(Some(lock)) => Some(lock),
        _ => {
            std::thread::sleep(std::time::Duration::from_millis(10));
            None
        }
    });
    let Some(_gc) = held else { return };
    let (Ok(reachable), Ok(needed)) = (store.reachable(), crate::images::remove::needed_chain_ids(store)) else { return };
    for blob in made.blobs.iter().filter(|d| !reachable.contains(*d)) {
        if let Ok(path) = store.blob_path(blob) {
            let _ = std::fs::remove_file(path);
        }
    }
    for chain in made.snapshots.iter().filter(|c| !needed.contains(*c)) {
        let _ = snapshots.remove(chain);
    }
    tracing::debug!(blobs = made.blobs.len(), snapshots = made.snapshots.len(), "failed pull: removed what it added");
}

#[allow(clippy::too_many_arguments)]
fn pull_leased(
    store: &Store,
    snapshots: &Snapshots,
    reference: &Reference,
    platform: &Platform,
    opts: &PullOptions,
    progress: &dyn PullProgress,
    made: &Mutex<Made>,
) -> Result<PulledImage> {
    let started = std::time::Instant::now();
    let (client, resolved) = resolve(reference, platform, opts)?;
    tracing::debug!(image = %reference, endpoint = client.registry(), elapsed = ?started.elapsed(), "resolved");
    let repository = reference.path();
    let manifest = &resolved.image_manifest;
    let manifest_digest = parse_digest(&resolved.manifest.digest)?;
    progress.resolved(&manifest_digest, manifest.layers());

    let config_desc = manifest.config();
    let mut downloaded = Vec::new();
    if ensure_blob(&client, repository, store, config_desc, None, None, progress)? == Transfer::Downloaded {
        downloaded.push(config_desc.digest().clone());
        made.lock().unwrap_or_else(|p| p.into_inner()).blobs.push(config_desc.digest().clone());
    }
    let diff_ids = config_diff_ids(store, config_desc.digest())?;
    let layers = manifest.layers();
    if diff_ids.len() != layers.len() {
        return Err(Error::Format {
            what: format!("image {reference}: config {}", config_desc.digest()),
            message: format!("{} diff_ids for {} layers", diff_ids.len(), layers.len()),
        });
    }
    for layer in layers {
        check_layer_media_type(reference, layer)?;
    }
    let chain: Vec<Digest> = (1..=diff_ids.len()).filter_map(|n| chain_id(&diff_ids[..n])).collect();
    downloaded.extend(fetch_layers(&client, repository, store, snapshots, layers, &diff_ids, &chain, opts, progress, made)?);
    tracing::debug!(image = %reference, elapsed = ?started.elapsed(), "layers stored and unpacked");

    let paths = chain.iter().map(|c| snapshots.path(c)).collect::<Result<Vec<_>>>()?;
    if let Some(missing) = chain.iter().find(|c| !snapshots.exists(c)) {
        return Err(Error::NotFound(format!("image {reference}: snapshot {missing} after unpacking")));
    }
    let stored = store.put_blob(resolved.manifest.bytes.as_slice(), Some(&manifest_digest), None)?;
    let repo_digest = match &resolved.index {
        Some(index) => parse_digest(&index.digest)?,
        None => manifest_digest.clone(),
    };
    let mut descriptor = stored.descriptor(MediaType::from(resolved.manifest.media_type.as_str()));
    descriptor.set_annotations(Some(
        [(ANNOTATION_REPO_DIGEST.to_string(), repo_digest.to_string()), (ANNOTATION_SOURCE.to_string(), reference.name())].into(),
    ));
    let name = match reference.tag() {
        Some(tag) => reference.with_tag(tag)?,
        None => reference.clone(),
    };
    store.tag(&name, &descriptor)?;
    tracing::debug!(image = %name, elapsed = ?started.elapsed(), downloaded = downloaded.len(), "pulled");
    Ok(PulledImage {
        name,
        manifest: descriptor,
        repo_digest,
        config: config_desc.digest().clone(),
        snapshots: paths,
        downloaded,
        endpoint: client.registry().to_string(),
    })
}

/// Resolve on the mirrors in order, then on the registry; the registry's error wins.
fn resolve(reference: &Reference, platform: &Platform, opts: &PullOptions) -> Result<(RegistryClient, ResolvedImage)> {
    let wanted = match (reference.digest(), reference.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => return Err(Error::InvalidReference { reference: reference.to_string(), reason: "no tag or digest".into() }),
    };
    let endpoints = opts.registries.endpoints_for(reference.domain());
    let mut last = None;
    for endpoint in &endpoints {
        let attempt = (|| {
            let credentials = match &opts.credentials {
                Some(c) => Some(c.clone()),
                None => load_credentials(endpoint)?,
            };
            let client = RegistryClient::new(endpoint, &opts.registries, credentials)?.with_retry(opts.retry.clone());
            let resolved = client.resolve_image(reference.path(), &wanted, platform)?;
            Ok((client, resolved))
        })();
        match attempt {
            Ok(found) => return Ok(found),
            Err(e) => {
                if endpoint != reference.domain() {
                    tracing::info!(image = %reference, mirror = %endpoint, error = %e, "mirror failed, trying the next endpoint");
                }
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| Error::NotFound(format!("image {reference}: no endpoint to try"))))
}

/// The `rootfs.diff_ids` of a stored config.
fn config_diff_ids(store: &Store, config: &Digest) -> Result<Vec<Digest>> {
    let bytes = store.read_blob(config)?;
    let doc: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| Error::Format { what: format!("image config {config}"), message: e.to_string() })?;
    let ids = doc
        .pointer("/rootfs/diff_ids")
        .and_then(|v| v.as_array())
        .ok_or_else(|| Error::Format { what: format!("image config {config}"), message: "no rootfs.diff_ids".into() })?;
    ids.iter()
        .map(|v| {
            let s = v
                .as_str()
                .ok_or_else(|| Error::Format { what: format!("image config {config}"), message: "a diff_id is not a string".into() })?;
            parse_digest(s)
        })
        .collect()
}

/// Only tar layers (plain, gzip, zstd; OCI or Docker spelling) can be unpacked.
fn check_layer_media_type(reference: &Reference, layer: &Descriptor) -> Result<()> {
    let media_type = layer.media_type().to_string();
    let known = [
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.docker.image.rootfs.diff.tar",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    ];
    if known.contains(&media_type.as_str()) {
        Ok(())
    } else {
        Err(Error::Format {
            what: format!("image {reference}: layer {}", layer.digest()),
            message: format!("unsupported media type {media_type:?}"),
        })
    }
}

/// Fetch and unpack `layers` on `opts.workers` threads; the digests actually downloaded.
#[allow(clippy::too_many_arguments)]
fn fetch_layers(
    client: &RegistryClient,
    repository: &str,
    store: &Store,
    snapshots: &Snapshots,
    layers: &[Descriptor],
    diff_ids: &[Digest],
    chain: &[Digest],
    opts: &PullOptions,
    progress: &dyn PullProgress,
    made: &Mutex<Made>,
) -> Result<Vec<Digest>> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let downloaded: Mutex<Vec<Digest>> = Mutex::new(Vec::new());
    let workers = opts.workers.clamp(1, layers.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(layer) = layers.get(i) else { break };
                    // Each snapshot holds only its own layer; the parent is needed just for the key.
                    let target = SnapshotTarget {
                        snapshots,
                        parent: i.checked_sub(1).and_then(|p| chain.get(p)),
                        options: UnpackOptions {
                            expected_digest: Some(layer.digest().clone()),
                            expected_size: Some(layer.size()),
                            expected_diff_id: diff_ids.get(i).cloned(),
                            policy: opts.path_policy,
                            same_owner: opts.same_owner,
                        },
                    };
                    progress.layer_started(layer.digest(), layer.size());
                    let blob_existed = store.has_blob(layer.digest());
                    let snapshot_existed = chain.get(i).is_some_and(|c| snapshots.exists(c));
                    match ensure_blob(client, repository, store, layer, Some(target), chain.get(i), progress) {
                        Ok(Transfer::Present) => progress.layer_skipped(layer.digest()),
                        Ok(outcome) => {
                            let mut made = made.lock().unwrap_or_else(|p| p.into_inner());
                            made.snapshots.extend(chain.get(i).cloned());
                            if outcome == Transfer::Downloaded {
                                made.blobs.push(layer.digest().clone());
                                downloaded.lock().unwrap_or_else(|p| p.into_inner()).push(layer.digest().clone());
                            }
                            progress.layer_done(layer.digest());
                        }
                        Err(err) => {
                            // The blob and the snapshot are written side by side: one may be
                            // complete when the other failed. Whatever this pull created goes.
                            let mut made = made.lock().unwrap_or_else(|p| p.into_inner());
                            if !blob_existed && store.has_blob(layer.digest()) {
                                made.blobs.push(layer.digest().clone());
                            }
                            if !snapshot_existed {
                                made.snapshots.extend(chain.get(i).filter(|c| snapshots.exists(c)).cloned());
                            }
                            drop(made);
                            failed.store(true, Ordering::Relaxed);
                            first_error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(err);
                        }
                    }
                }
            });
        }
    });
    if let Some(err) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(err);
    }
    Ok(downloaded.into_inner().unwrap_or_else(|p| p.into_inner()))
}
