//! One blob's way from the registry into the store (and, for a layer, into its snapshot):
//! the download is streamed once, through a tee, to a store writer thread and an unpacker
//! thread, each of which verifies the digest on its own. A per-blob flock around "check, then
//! download" makes concurrent pulls (threads or processes) fetch a blob once.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use oci_spec::image::Descriptor;

use super::PullProgress;
use crate::registry::RegistryClient;
use crate::store::digest::{sha256_hex, Digest};
use crate::store::{FileLock, Store};
use crate::unpack::{Snapshots, UnpackOptions};
use crate::{Error, Result};

/// Chunks in flight per consumer (each at most the fetcher's 128 KiB buffer).
const CHANNEL_DEPTH: usize = 8;

/// The lock file serialising the fetch of one blob: `<store>/locks/<hex>.lock`.
pub fn blob_lock(store: &Store, digest: &Digest) -> Result<FileLock> {
    let dir = store.root().join("locks");
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io { context: format!("create {}", dir.display()), source })?;
    FileLock::exclusive(&dir.join(format!("{}.lock", sha256_hex(digest)?)))
}

/// Where a layer goes once downloaded: its snapshot, on top of `parent`.
pub(super) struct SnapshotTarget<'a> {
    /// The snapshot directory.
    pub snapshots: &'a Snapshots,
    /// The chain id of the layer below, if any.
    pub parent: Option<&'a Digest>,
    /// Digests to verify and extraction settings.
    pub options: UnpackOptions,
}

/// What happened to one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Transfer {
    /// Blob (and snapshot, if asked) were already there.
    Present,
    /// The blob was there; only the snapshot was made from it.
    UnpackedFromStore,
    /// The blob was downloaded (and unpacked when asked).
    Downloaded,
}

/// Make sure blob `descriptor` is in `store` and, with `target`, its snapshot exists.
pub(super) fn ensure_blob(
    client: &RegistryClient,
    repository: &str,
    store: &Store,
    descriptor: &Descriptor,
    target: Option<SnapshotTarget<'_>>,
    snapshot: Option<&Digest>,
    progress: &dyn PullProgress,
) -> Result<Transfer> {
    let digest = descriptor.digest();
    let _lock = blob_lock(store, digest)?;
    let need_blob = !store.has_blob(digest);
    let target = target.filter(|t| !snapshot.is_some_and(|chain| t.snapshots.exists(chain)));
    match (need_blob, target) {
        (false, None) => Ok(Transfer::Present),
        (false, Some(t)) => {
            let blob = store.open_blob(digest)?;
            t.snapshots.unpack(io::BufReader::with_capacity(1 << 20, blob), t.parent, &t.options)?;
            Ok(Transfer::UnpackedFromStore)
        }
        (true, target) => {
            download(client, repository, store, descriptor, target, progress)?;
            Ok(Transfer::Downloaded)
        }
    }
}

/// Download once, writing to the store and (when asked) unpacking in the same pass.
fn download(
    client: &RegistryClient,
    repository: &str,
    store: &Store,
    descriptor: &Descriptor,
    target: Option<SnapshotTarget<'_>>,
    progress: &dyn PullProgress,
) -> Result<()> {
    let digest = descriptor.digest();
    let size = descriptor.size();
    std::thread::scope(|scope| {
        let (store_tx, store_rx) = sync_channel(CHANNEL_DEPTH);
        let stored = scope.spawn(move || store.put_blob(ChunkReader::new(store_rx), Some(digest), Some(size)));
        let mut outputs = vec![ChunkWriter(store_tx)];
        let unpacked = target.map(|t| {
            let (tx, rx) = sync_channel(CHANNEL_DEPTH);
            outputs.push(ChunkWriter(tx));
            scope.spawn(move || {
                let reader = ChunkReader::new(rx);
                t.snapshots.unpack(reader, t.parent, &t.options).map(|layer| layer.path)
            })
        });
        let mut tee = Tee { outputs, digest, progress };
        let fetched = client.fetch_blob(repository, digest.as_ref(), Some(size), &mut tee);
        // Closing the channels is the end of stream for both consumers.
        drop(tee);
        let stored = join(stored, "store writer");
        let unpacked: Option<Result<PathBuf>> = unpacked.map(|h| join(h, "layer unpacker"));
        match fetched {
            // A consumer that failed closed its channel: its error is the real cause.
            Err(e) if is_broken_pipe(&e) => {
                stored?;
                unpacked.transpose()?;
                Err(e)
            }
            Err(e) => Err(e),
            Ok(_) => {
                stored?;
                unpacked.transpose()?;
                Ok(())
            }
        }
    })
}

fn join<T>(handle: std::thread::ScopedJoinHandle<'_, Result<T>>, what: &str) -> Result<T> {
    handle.join().unwrap_or_else(|_| Err(Error::Io { context: format!("{what} thread"), source: io::Error::other("panicked") }))
}

fn is_broken_pipe(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. } if source.kind() == io::ErrorKind::BrokenPipe)
}

/// Copies every write to each output and reports the bytes.
struct Tee<'a> {
    outputs: Vec<ChunkWriter>,
    digest: &'a Digest,
    progress: &'a dyn PullProgress,
}

impl Write for Tee<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for out in &mut self.outputs {
            out.write_all(buf)?;
        }
        self.progress.layer_bytes(self.digest, buf.len() as u64);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The sending end of an in-process byte pipe; a gone reader is a broken pipe.
struct ChunkWriter(SyncSender<Vec<u8>>);

impl Write for ChunkWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.0.send(buf.to_vec()).map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the consumer of the download stopped"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The receiving end: end of stream when every sender is gone.
struct ChunkReader {
    rx: Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl ChunkReader {
    fn new(rx: Receiver<Vec<u8>>) -> Self {
        Self { rx, chunk: Vec::new(), pos: 0 }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_pipe_carries_bytes_and_ends_when_the_writer_goes() {
        let (tx, rx) = sync_channel(2);
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            ChunkReader::new(rx).read_to_end(&mut out).unwrap();
            out
        });
        let mut w = ChunkWriter(tx);
        w.write_all(b"hello ").unwrap();
        w.write_all(b"world").unwrap();
        drop(w);
        assert_eq!(reader.join().unwrap(), b"hello world");
    }

    #[test]
    fn a_gone_reader_is_a_broken_pipe() {
        let (tx, rx) = sync_channel(1);
        drop(rx);
        let err = ChunkWriter(tx).write(b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}
