//! The decoding half of an unpack on its own thread: read, hash, decompress, hash again.
//!
//! The extracting half (tar parsing and file creation, mostly syscalls) runs on the caller's
//! thread and reads the uncompressed stream from a bounded channel, so decompression and
//! hashing overlap with the writes: the layer is still read exactly once.

use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::{Scope, ScopedJoinHandle};

use super::compression::{self, Compression};
use crate::store::digest::{Digest, HashingReader};

/// Size of one chunk of uncompressed data handed to the extractor.
const CHUNK: usize = 1 << 20;
/// Chunks in flight between the threads (bounds memory to a few MiB).
const DEPTH: usize = 4;

/// What the decoding thread computed over the whole input.
#[derive(Debug)]
pub struct Decoded {
    /// The detected compression.
    pub compression: Compression,
    /// Digest of the input bytes.
    pub digest: Digest,
    /// Size of the input bytes.
    pub size: u64,
    /// Digest of the uncompressed stream.
    pub diff_id: Digest,
}

/// The uncompressed stream, as received from the decoding thread.
pub struct ChunkReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
    done: bool,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                // The sender is gone: the stream ended.
                Err(_) => self.done = true,
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Start decoding `reader` on a thread of `scope`; the handle yields the digests once the
/// whole input has been read (or the error that stopped it).
pub fn spawn<'scope, 'env, R: Read + Send + 'scope>(
    scope: &'scope Scope<'scope, 'env>,
    reader: R,
) -> (ChunkReader, ScopedJoinHandle<'scope, io::Result<Decoded>>) {
    let (tx, rx) = sync_channel(DEPTH);
    let handle = scope.spawn(move || decode(reader, &tx));
    (ChunkReader { rx, chunk: Vec::new(), pos: 0, done: false }, handle)
}

fn decode<R: Read>(reader: R, tx: &SyncSender<io::Result<Vec<u8>>>) -> io::Result<Decoded> {
    let fail = |e: io::Error| {
        // Hand the extractor a copy of the cause so it stops too; the original is returned.
        let _ = tx.send(Err(io::Error::new(e.kind(), e.to_string())));
        e
    };
    let mut raw = HashingReader::new(reader);
    let (compression, diff_id) = {
        let (compression, decoded) = compression::decoder(&mut raw).map_err(fail)?;
        let mut plain = HashingReader::new(decoded);
        loop {
            let mut chunk = vec![0u8; CHUNK];
            let mut filled = 0;
            while filled < CHUNK {
                match plain.read(&mut chunk[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(fail(e)),
                }
            }
            if filled == 0 {
                break;
            }
            chunk.truncate(filled);
            if tx.send(Ok(chunk)).is_err() {
                // The extractor gave up (its error is the one reported).
                return Err(io::Error::new(io::ErrorKind::BrokenPipe, "extraction stopped"));
            }
        }
        let (diff_id, _) = plain.finish().map_err(fail)?;
        (compression, diff_id)
    };
    // Bytes after the end of the compressed stream still belong to the blob's digest.
    let (digest, size) = raw.finish().map_err(fail)?;
    Ok(Decoded { compression, digest, size, diff_id })
}
