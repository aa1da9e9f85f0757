//! Downloading several blobs (an image's layers) at once, on a fixed number of threads.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use oci_spec::image::Descriptor;

use super::blob::BlobInfo;
use super::client::RegistryClient;
use crate::error::{Error, Result};

/// Where parallel downloads go: a writer per blob, committed only once verified.
pub trait BlobSink: Sync {
    /// The writer one blob streams into.
    type Writer: Write;

    /// Open a writer for `descriptor`'s blob (a temp file, an unpacker, …).
    fn begin(&self, descriptor: &Descriptor) -> Result<Self::Writer>;

    /// The blob was written in full and verified: make it visible. A failed blob's writer
    /// is dropped without this call.
    fn commit(&self, descriptor: &Descriptor, writer: Self::Writer, info: &BlobInfo) -> Result<()>;
}

impl RegistryClient {
    /// Download `descriptors` from `repository` on `workers` threads into `sink`.
    ///
    /// Returns one [`BlobInfo`] per descriptor, in order; on the first error no new download
    /// starts and that error is returned once running ones end.
    pub fn pull_layers_parallel<S: BlobSink>(
        &self,
        repository: &str,
        descriptors: &[Descriptor],
        workers: usize,
        sink: &S,
    ) -> Result<Vec<BlobInfo>> {
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let first_error: Mutex<Option<Error>> = Mutex::new(None);
        let results: Mutex<Vec<Option<BlobInfo>>> = Mutex::new(vec![None; descriptors.len()]);
        let workers = workers.clamp(1, descriptors.len().max(1));
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    while !failed.load(Ordering::Relaxed) {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(descriptor) = descriptors.get(index) else { break };
                        match self.pull_one(repository, descriptor, sink) {
                            Ok(info) => results.lock().unwrap_or_else(|p| p.into_inner())[index] = Some(info),
                            Err(err) => {
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
        let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
        results
            .into_iter()
            .zip(descriptors)
            .map(|(info, d)| info.ok_or_else(|| self.error(repository, format!("blob {} was not downloaded", d.digest()))))
            .collect()
    }

    fn pull_one<S: BlobSink>(&self, repository: &str, descriptor: &Descriptor, sink: &S) -> Result<BlobInfo> {
        let digest = descriptor.digest().to_string();
        let mut writer = sink.begin(descriptor)?;
        let info = self.fetch_blob(repository, &digest, Some(descriptor.size()), &mut writer)?;
        sink.commit(descriptor, writer, &info)?;
        Ok(info)
    }
}
