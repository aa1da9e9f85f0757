//! `push`: send a stored image (layers and config, then the manifest; for an index, every
//! child manifest present in the store, then the index) to a registry. Blobs the registry has
//! are skipped (HEAD); when the image came from another repository of the same registry,
//! blobs are mounted from there instead of uploaded.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use oci_spec::image::Descriptor;

use crate::images::{is_index_media_type, resolve_name};
use crate::pull::ANNOTATION_SOURCE;
use crate::reference::Reference;
use crate::registry::{
    load_credentials, BlobPushOutcome, Credentials, PushOptions as BlobOptions, RegistryClient, RegistryConfig, UploadMethod,
};
use crate::store::digest::Digest;
use crate::store::Store;
use crate::{Error, Result};

/// How to push.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Insecure registries and CA files.
    pub registries: RegistryConfig,
    /// Credentials; `None` reads the auth files.
    pub credentials: Option<Credentials>,
    /// Blobs uploaded at once.
    pub workers: usize,
    /// Monolithic or chunked uploads.
    pub method: UploadMethod,
    /// A repository of the destination registry known to hold the blobs (for cross-repo mounts);
    /// by default the source name's repository when it is on the same registry.
    pub mount_from: Option<String>,
}

impl Default for PushOptions {
    fn default() -> Self {
        Self { registries: RegistryConfig::default(), credentials: None, workers: 4, method: UploadMethod::Monolithic, mount_from: None }
    }
}

/// Callbacks that follow a push; no-op defaults.
pub trait PushProgress: Sync {
    /// A blob was handled.
    fn blob(&self, _digest: &Digest, _outcome: BlobPushOutcome) {}
    /// A manifest was written under `reference`.
    fn manifest(&self, _digest: &Digest, _reference: &str) {}
}

/// Push progress that goes nowhere.
pub struct NoPushProgress;

impl PushProgress for NoPushProgress {}

/// What a push did.
#[derive(Debug, Clone, Default)]
pub struct PushReport {
    /// The digest of the top manifest (or index) as pushed.
    pub digest: Option<Digest>,
    /// Blobs uploaded.
    pub uploaded: usize,
    /// Blobs mounted from another repository.
    pub mounted: usize,
    /// Blobs the registry had.
    pub existed: usize,
}

/// Push the stored image `source` to `dest` (its registry, repository and tag or digest).
pub fn push(store: &Store, source: &Reference, dest: &Reference, opts: &PushOptions, progress: &dyn PushProgress) -> Result<PushReport> {
    let top = resolve_name(store, source)?;
    let credentials = match &opts.credentials {
        Some(c) => Some(c.clone()),
        None => load_credentials(dest.domain())?,
    };
    let client = RegistryClient::new(dest.domain(), &opts.registries, credentials)?;
    // The repository the blobs were pulled from, else the source name's: mountable when on
    // the destination's registry.
    let origin = top
        .annotations()
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_SOURCE))
        .and_then(|s| Reference::parse(s).ok())
        .unwrap_or_else(|| source.clone());
    let mount_from = opts
        .mount_from
        .clone()
        .or_else(|| (origin.domain() == dest.domain() && origin.path() != dest.path()).then(|| origin.path().to_string()));
    let blob_options = BlobOptions { method: opts.method, mount_from };
    let repository = dest.path();
    let mut report = PushReport::default();
    let is_index = is_index_media_type(top.media_type().as_ref());
    let manifests: Vec<Descriptor> = if is_index {
        let index: serde_json::Value = read_json(store, top.digest())?;
        children(&index, "manifests").into_iter().filter(|d| store.has_blob(d.digest())).collect()
    } else {
        vec![top.clone()]
    };
    if manifests.is_empty() {
        return Err(Error::NotFound(format!("image {source}: no manifest of the index is in the store")));
    }
    for manifest in &manifests {
        let doc: serde_json::Value = read_json(store, manifest.digest())?;
        let mut blobs = children(&doc, "layers");
        blobs.extend(doc.get("config").and_then(|c| serde_json::from_value::<Descriptor>(c.clone()).ok()));
        push_blobs(&client, repository, store, &blobs, &blob_options, opts.workers, &mut report, progress)?;
        if is_index {
            put(&client, repository, store, manifest, manifest.digest().as_ref(), progress)?;
        }
    }
    let reference = match (dest.tag(), dest.digest()) {
        (Some(tag), _) => tag.to_string(),
        (None, Some(d)) => d.to_string(),
        (None, None) => "latest".to_string(),
    };
    put(&client, repository, store, &top, &reference, progress)?;
    report.digest = Some(top.digest().clone());
    Ok(report)
}

fn put(
    client: &RegistryClient,
    repository: &str,
    store: &Store,
    manifest: &Descriptor,
    reference: &str,
    progress: &dyn PushProgress,
) -> Result<()> {
    let bytes = store.read_blob(manifest.digest())?;
    let media_type =
        match serde_json::from_slice::<serde_json::Value>(&bytes).ok().and_then(|v| v.get("mediaType")?.as_str().map(String::from)) {
            Some(t) => t,
            None => manifest.media_type().to_string(),
        };
    client.put_manifest(repository, reference, &media_type, &bytes)?;
    progress.manifest(manifest.digest(), reference);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn push_blobs(
    client: &RegistryClient,
    repository: &str,
    store: &Store,
    blobs: &[Descriptor],
    options: &BlobOptions,
    workers: usize,
    report: &mut PushReport,
    progress: &dyn PushProgress,
) -> Result<()> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let outcomes: Mutex<Vec<BlobPushOutcome>> = Mutex::new(Vec::new());
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..workers.clamp(1, blobs.len().max(1)) {
            scope.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let Some(blob) = blobs.get(next.fetch_add(1, Ordering::Relaxed)) else { break };
                    let result = store.open_blob(blob.digest()).and_then(|file| {
                        let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
                        client.push_blob(repository, blob.digest().as_ref(), blob.size(), &mut reader, options)
                    });
                    match result {
                        Ok(outcome) => {
                            progress.blob(blob.digest(), outcome);
                            outcomes.lock().unwrap_or_else(|p| p.into_inner()).push(outcome);
                        }
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            first_error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    for outcome in outcomes.into_inner().unwrap_or_else(|p| p.into_inner()) {
        match outcome {
            BlobPushOutcome::Existed => report.existed += 1,
            BlobPushOutcome::Mounted => report.mounted += 1,
            BlobPushOutcome::Uploaded => report.uploaded += 1,
        }
    }
    Ok(())
}

fn read_json(store: &Store, digest: &Digest) -> Result<serde_json::Value> {
    let bytes = store.read_blob(digest)?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Format { what: format!("manifest {digest}"), message: e.to_string() })
}

/// The descriptors in the array `key` of a manifest or index document.
fn children(doc: &serde_json::Value, key: &str) -> Vec<Descriptor> {
    doc.get(key)
        .and_then(|v| v.as_array())
        .map(|list| list.iter().filter_map(|d| serde_json::from_value(d.clone()).ok()).collect())
        .unwrap_or_default()
}
