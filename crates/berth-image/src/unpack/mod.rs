//! Layer unpacking into snapshot directories (whiteouts to overlay form, no escapes).
//!
//! One streaming pass per layer: the raw bytes are hashed (the blob digest), decompressed
//! (gzip via zlib-ng, zstd, or none), hashed again (the diff_id) and extracted entry by entry
//! into `<snapshots>/.unpack-<random>`, which is renamed to `<snapshots>/<chain id hex>` only
//! once the layer is complete and every digest matched: a snapshot that exists is complete.
//!
//! Safety: entry names are cleaned lexically (`..` above the root is hostile), then every path
//! is resolved by the kernel with `openat2` from an fd of the snapshot root, and objects are
//! created with `*at` calls on single-component names (see `fsops`). Under the default
//! [`PathPolicy::Strict`], an absolute name, or a path or hardlink that resolves outside the
//! root through a symlink (`RESOLVE_BENEATH` fails with EXDEV), makes the layer hostile; under
//! [`PathPolicy::Docker`] the leading `/` is stripped and symlinks resolve as if the snapshot
//! were `/` (`RESOLVE_IN_ROOT`), so such writes land inside, as with docker's chrooted unpack.
//! Whiteouts become overlayfs whiteouts: `.wh.NAME` a 0/0 character device NAME,
//! `.wh..wh..opq` the xattr `trusted.overlay.opaque=y` on its directory.

mod compression;
mod extract;
mod fsops;
pub mod import;
mod path;
mod pipeline;

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::error::IoContext;
use crate::store::digest::{sha256_hex, sha256_of, Digest};
use crate::store::random_suffix;
use crate::{Error, Result};

pub use compression::Compression;
pub use extract::OPAQUE_XATTR;

/// Prefix of snapshots being unpacked (flock'ed by their unpacker: see [`crate::store::remove_abandoned`]).
pub const UNPACK_TEMP_PREFIX: &str = ".unpack-";

/// How strictly entry paths are confined to the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathPolicy {
    /// Absolute names and resolutions through symlinks that leave the root are hostile.
    #[default]
    Strict,
    /// Like docker: strip a leading `/`, resolve symlinks inside the root as if it were `/`.
    Docker,
}

/// What to check and how to extract.
#[derive(Debug, Clone)]
pub struct UnpackOptions {
    /// The blob digest the compressed input must have.
    pub expected_digest: Option<Digest>,
    /// The blob size the compressed input must have.
    pub expected_size: Option<u64>,
    /// The diff_id (digest of the uncompressed tar) the layer must have.
    pub expected_diff_id: Option<Digest>,
    /// Path confinement policy.
    pub policy: PathPolicy,
    /// Apply the uid/gid of entries (needs CAP_CHOWN); off for rootless unpacking.
    pub same_owner: bool,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        Self { expected_digest: None, expected_size: None, expected_diff_id: None, policy: PathPolicy::Strict, same_owner: true }
    }
}

/// A layer that has been unpacked into a complete snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackedLayer {
    /// Digest of the input bytes (the blob digest).
    pub digest: Digest,
    /// Size of the input bytes.
    pub size: u64,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    /// Chain id of this layer on top of its parent: the snapshot's key.
    pub chain_id: Digest,
    /// The compression that was detected.
    pub compression: Compression,
    /// The snapshot directory.
    pub path: PathBuf,
}

/// The OCI chain id of a stack of layers (bottom first); `None` for no layers.
pub fn chain_id(diff_ids: &[Digest]) -> Option<Digest> {
    let mut iter = diff_ids.iter();
    let mut chain = iter.next()?.clone();
    for diff_id in iter {
        chain = chain_step(&chain, diff_id);
    }
    Some(chain)
}

/// chainid(Ln) = sha256(chainid(Ln-1) + " " + diffid(Ln)).
fn chain_step(parent: &Digest, diff_id: &Digest) -> Digest {
    let mut h = Sha256::new();
    h.update(parent.as_ref().as_bytes());
    h.update(b" ");
    h.update(diff_id.as_ref().as_bytes());
    sha256_of(h)
}

/// A directory of snapshots, one complete directory per chain id (`<root>/<hex>`).
#[derive(Debug, Clone)]
pub struct Snapshots {
    root: PathBuf,
}

impl Snapshots {
    /// Open (creating) the snapshot directory `root`.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        std::fs::create_dir_all(&root).io_context(|| format!("create {}", root.display()))?;
        Ok(Self { root })
    }

    /// The snapshot directory of `chain_id` (which may not exist).
    pub fn path(&self, chain_id: &Digest) -> Result<PathBuf> {
        Ok(self.root.join(sha256_hex(chain_id)?))
    }

    /// Whether the snapshot of `chain_id` exists (and so is complete).
    pub fn exists(&self, chain_id: &Digest) -> bool {
        self.path(chain_id).map(|p| p.is_dir()).unwrap_or(false)
    }

    /// Remove the snapshot of `chain_id` (renamed away first, so it vanishes atomically).
    pub fn remove(&self, chain_id: &Digest) -> Result<()> {
        let path = self.path(chain_id)?;
        let doomed = self.root.join(format!(".remove-{}", random_suffix()));
        match std::fs::rename(&path, &doomed) {
            Ok(()) => std::fs::remove_dir_all(&doomed).io_context(|| format!("remove {}", doomed.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::NotFound(format!("snapshot {chain_id}"))),
            Err(e) => Err(e).io_context(|| format!("remove snapshot {}", path.display())),
        }
    }

    /// Unpack the layer read from `reader` on top of the snapshot `parent` (a chain id).
    /// When the snapshot already exists (another unpack won), that one is returned.
    pub fn unpack<R: Read + Send>(&self, reader: R, parent: Option<&Digest>, opts: &UnpackOptions) -> Result<UnpackedLayer> {
        // Locked while we live: a `.unpack-*` whose lock is free is a killed unpack's leftover.
        let mkdir = |path: &Path| {
            std::fs::create_dir(path)?;
            Ok(((), std::fs::File::open(path)?))
        };
        let (tmp, (), lock) = crate::store::create_owned(&self.root, UNPACK_TEMP_PREFIX, mkdir)
            .io_context(|| format!("create a temp snapshot in {}", self.root.display()))?;
        let guard = RemoveOnDrop { path: Some(tmp.clone()), _lock: lock };
        let label = opts.expected_digest.as_ref().map_or_else(|| "(stream)".to_string(), |d| d.to_string());
        let digests = unpack_into(reader, &tmp, opts, &label)?;
        let chain = match parent {
            Some(p) => chain_step(p, &digests.diff_id),
            None => digests.diff_id.clone(),
        };
        let dest = self.path(&chain)?;
        match rename_noreplace(&tmp, &dest) {
            Ok(()) => {
                guard.disarm();
                crate::store::fsync_dir(&self.root)?;
            }
            // Someone else completed the same snapshot first: ours is dropped (and removed).
            Err(e) if matches!(e.raw_os_error(), Some(libc::EEXIST) | Some(libc::ENOTEMPTY)) => drop(guard),
            Err(e) => return Err(e).io_context(|| format!("rename {} to {}", tmp.display(), dest.display())),
        }
        let LayerDigests { digest, size, diff_id, compression } = digests;
        Ok(UnpackedLayer { digest, size, diff_id, chain_id: chain, compression, path: dest })
    }
}

/// The digests one unpack pass computed.
#[derive(Debug, Clone)]
pub struct LayerDigests {
    /// Digest of the input bytes.
    pub digest: Digest,
    /// Size of the input bytes.
    pub size: u64,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    /// The detected compression.
    pub compression: Compression,
}

/// Extract a layer into the empty directory `dir` in one pass, verifying the expected digests.
/// On error `dir` is left partially filled: the caller removes it ([`Snapshots::unpack`] does).
pub fn unpack_into<R: Read + Send>(reader: R, dir: &Path, opts: &UnpackOptions, label: &str) -> Result<LayerDigests> {
    let (extracted, decoded) = std::thread::scope(|scope| {
        let (mut stream, decoder) = pipeline::spawn(scope, reader);
        let extracted = (|| {
            let mut archive = tar::Archive::new(&mut stream);
            extract::Extractor::new(dir, opts, label.to_string())?.run(&mut archive)?;
            // The diff_id covers the whole uncompressed stream, including the zero blocks after the end.
            std::io::copy(&mut stream, &mut std::io::sink()).io_context(|| format!("layer {label}: read to the end"))?;
            Ok::<(), Error>(())
        })();
        // Dropping the receiver stops the decoder if extraction failed early.
        drop(stream);
        let decoded = decoder.join().unwrap_or_else(|_| Err(std::io::Error::other("layer decoder thread panicked")));
        (extracted, decoded)
    });
    // The extractor's error comes first: it stopped the decoder (or carries the decoder's cause).
    extracted?;
    let pipeline::Decoded { compression, digest, size, diff_id } = decoded.io_context(|| format!("layer {label}: read and decompress"))?;
    if let Some(want) = opts.expected_size {
        if want != size {
            return Err(Error::SizeMismatch { what: format!("layer {label}"), expected: want, actual: size });
        }
    }
    if let Some(want) = &opts.expected_digest {
        if *want != digest {
            return Err(Error::DigestMismatch { what: format!("layer {label}"), expected: want.to_string(), actual: digest.to_string() });
        }
    }
    if let Some(want) = &opts.expected_diff_id {
        if *want != diff_id {
            return Err(Error::DigestMismatch {
                what: format!("diff_id of layer {label}"),
                expected: want.to_string(),
                actual: diff_id.to_string(),
            });
        }
    }
    Ok(LayerDigests { digest, size, diff_id, compression })
}

/// Removes a directory tree on drop (a failed or superseded unpack), then releases its lock.
struct RemoveOnDrop {
    path: Option<PathBuf>,
    _lock: std::fs::File,
}

impl RemoveOnDrop {
    /// Keep the tree (it was renamed into place); the lock is released.
    fn disarm(mut self) {
        self.path = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            // remove_dir_all never follows symlinks, so a hostile tree cannot redirect it.
            if let Err(e) = std::fs::remove_dir_all(&p) {
                tracing::warn!(path = %p.display(), error = %e, "could not remove partial snapshot");
            }
        }
    }
}

fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let cstr = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "path contains NUL"))
    };
    let (a, b) = (cstr(from)?, cstr(to)?);
    // SAFETY: both are NUL-terminated paths; renameat2 reads nothing else.
    let rc = unsafe { libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), libc::RENAME_NOREPLACE) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::digest::parse_digest;

    #[test]
    fn chain_id_follows_the_oci_definition() {
        let a = parse_digest(&format!("sha256:{}", "a".repeat(64))).unwrap();
        let b = parse_digest(&format!("sha256:{}", "b".repeat(64))).unwrap();
        assert_eq!(chain_id(&[]), None);
        assert_eq!(chain_id(std::slice::from_ref(&a)), Some(a.clone()));
        let want = crate::store::digest::sha256_bytes(format!("{a} {b}").as_bytes());
        assert_eq!(chain_id(&[a, b]), Some(want));
    }
}
