//! The content store: blobs under blobs/sha256 as an OCI image layout, verified before visible.
//!
//! The store directory is an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/<hex>`)
//! that skopeo and umoci read as `oci:DIR`. A blob is written to a temp file in its final
//! directory while being hashed, fsynced, verified against the expected digest and size, and only
//! then renamed into place: a blob that exists is complete and correct. `index.json` changes
//! under an flock and is replaced atomically.

pub mod digest;
mod fsutil;
mod gc;
mod index;

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::IoContext;
use crate::{Error, Result};
use digest::{sha256_hex, Digest, HashingWriter};

pub use fsutil::{create_owned, fsync_dir, random_suffix, remove_abandoned, write_atomic, FileLock};
pub use gc::{GcReport, Lease};
pub use index::{ImageEntry, ANNOTATION_BERTH_NAME, ANNOTATION_REF_NAME};
pub use oci_spec::image::{Descriptor, MediaType};

/// Content of the `oci-layout` file.
const OCI_LAYOUT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;
/// Largest JSON document (manifest, index, config) read into memory.
pub const MAX_JSON_SIZE: u64 = 16 << 20;

/// A blob that is in the store: its digest and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// The sha256 digest of the content.
    pub digest: Digest,
    /// The size in bytes.
    pub size: u64,
}

impl BlobInfo {
    /// A descriptor of this blob with the given media type.
    pub fn descriptor(&self, media_type: MediaType) -> Descriptor {
        Descriptor::new(media_type, self.size, self.digest.clone())
    }
}

/// A content-addressed blob store laid out as an OCI image layout.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Open the store at `root`, creating the layout (`oci-layout`, `index.json`, `blobs/sha256`) if missing.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let blobs = root.join("blobs").join("sha256");
        std::fs::create_dir_all(&blobs).io_context(|| format!("create {}", blobs.display()))?;
        let store = Self { root };
        if !store.root.join("oci-layout").exists() {
            fsutil::write_atomic(&store.root, "oci-layout", OCI_LAYOUT.as_bytes())?;
        }
        if !store.root.join("index.json").exists() {
            let _lock = store.index_lock()?;
            if !store.root.join("index.json").exists() {
                store.write_index(&index::empty_index()?)?;
            }
        }
        Ok(store)
    }

    /// The layout's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    /// The path of a blob (which may not exist); only sha256 digests are accepted.
    pub fn blob_path(&self, digest: &Digest) -> Result<PathBuf> {
        Ok(self.blob_dir().join(sha256_hex(digest)?))
    }

    /// Whether a verified blob with this digest is in the store.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).map(|p| p.is_file()).unwrap_or(false)
    }

    /// Open a blob for reading (never following a symlink planted in the blob directory).
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.blob_path(digest)?;
        match OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(&path) {
            Ok(f) => Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::NotFound(format!("blob {digest}"))),
            Err(e) => Err(e).io_context(|| format!("open blob {}", path.display())),
        }
    }

    /// The size of a stored blob.
    pub fn blob_size(&self, digest: &Digest) -> Result<u64> {
        let f = self.open_blob(digest)?;
        Ok(f.metadata().io_context(|| format!("stat blob {digest}"))?.len())
    }

    /// Read a small blob (a JSON document) into memory; refuses blobs over [`MAX_JSON_SIZE`].
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let f = self.open_blob(digest)?;
        let mut buf = Vec::new();
        f.take(MAX_JSON_SIZE + 1).read_to_end(&mut buf).io_context(|| format!("read blob {digest}"))?;
        if buf.len() as u64 > MAX_JSON_SIZE {
            return Err(Error::Format { what: format!("blob {digest}"), message: "larger than 16 MiB".into() });
        }
        Ok(buf)
    }

    /// Store an in-memory blob (a manifest, a config) and return its digest and size.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<BlobInfo> {
        self.put_blob(bytes, None, Some(bytes.len() as u64))
    }

    /// Stream `reader` into the store, hashing as it writes; the blob becomes visible only once
    /// its digest (and size, if given) match. A mismatch leaves nothing behind.
    pub fn put_blob<R: Read>(&self, reader: R, expected: Option<&Digest>, expected_size: Option<u64>) -> Result<BlobInfo> {
        if let Some(d) = expected {
            let path = self.blob_path(d)?;
            if let Ok(meta) = std::fs::symlink_metadata(&path) {
                if meta.is_file() && !matches!(expected_size, Some(s) if s != meta.len()) {
                    return Ok(BlobInfo { digest: d.clone(), size: meta.len() });
                }
            }
        }
        let dir = self.blob_dir();
        let tmp = TempFile::create(&dir)?;
        let what = || expected.map_or_else(|| "blob".to_string(), |d| format!("blob {d}"));
        let mut writer = HashingWriter::new(io::BufWriter::with_capacity(1 << 20, &tmp.file));
        // Never write more than one byte past the announced size: a lying source cannot fill the disk.
        let limit = expected_size.map_or(u64::MAX, |s| s.saturating_add(1));
        io::copy(&mut reader.take(limit), &mut writer).io_context(|| format!("write {}", what()))?;
        let (digest, size, mut buffered) = writer.finish();
        buffered.flush().io_context(|| format!("write {}", what()))?;
        drop(buffered);
        if let Some(want) = expected_size {
            if want != size {
                return Err(Error::SizeMismatch { what: what(), expected: want, actual: size });
            }
        }
        if let Some(want) = expected {
            if *want != digest {
                return Err(Error::DigestMismatch { what: what(), expected: want.to_string(), actual: digest.to_string() });
            }
        }
        tmp.file.sync_all().io_context(|| format!("fsync {}", what()))?;
        let dest = self.blob_path(&digest)?;
        tmp.persist(&dest)?;
        fsutil::fsync_dir(&dir)?;
        Ok(BlobInfo { digest, size })
    }

    fn index_lock(&self) -> Result<FileLock> {
        FileLock::exclusive(&self.root.join(".berth-index.lock"))
    }
}

/// Prefix of blob temp files (flock'ed by their writer: see [`fsutil::remove_abandoned`]).
pub const BLOB_TEMP_PREFIX: &str = ".tmp-";

/// A temp file next to its destination, flock'ed while written, removed on drop unless persisted.
struct TempFile {
    file: File,
    path: PathBuf,
    persisted: bool,
}

impl TempFile {
    fn create(dir: &Path) -> Result<Self> {
        let open = |path: &Path| {
            let file = OpenOptions::new().write(true).create_new(true).mode(0o644).custom_flags(libc::O_CLOEXEC).open(path)?;
            Ok(((), file))
        };
        let (path, (), file) =
            fsutil::create_owned(dir, BLOB_TEMP_PREFIX, open).io_context(|| format!("create a temp file in {}", dir.display()))?;
        Ok(Self { file, path, persisted: false })
    }

    fn persist(mut self, dest: &Path) -> Result<()> {
        std::fs::rename(&self.path, dest).io_context(|| format!("rename {} to {}", self.path.display(), dest.display()))?;
        self.persisted = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::digest::sha256_bytes;
    use super::*;

    fn visible_files(store: &Store) -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(store.blob_dir()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn open_creates_an_oci_layout() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let layout = std::fs::read_to_string(dir.path().join("oci-layout")).unwrap();
        assert_eq!(layout, OCI_LAYOUT);
        let index: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
        assert_eq!(index["schemaVersion"], 2);
        assert!(index["manifests"].as_array().unwrap().is_empty());
        assert!(store.list().unwrap().is_empty());
    }

    #[test]
    fn put_blob_verifies_and_stores() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = sha256_bytes(b"hello");
        let info = store.put_blob(&b"hello"[..], Some(&d), Some(5)).unwrap();
        assert_eq!(info, BlobInfo { digest: d.clone(), size: 5 });
        assert!(store.has_blob(&d));
        assert_eq!(store.read_blob(&d).unwrap(), b"hello");
        assert_eq!(visible_files(&store), vec![d.digest().to_string()]);
    }

    #[test]
    fn tampered_blob_is_rejected_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = sha256_bytes(b"hello");
        let err = store.put_blob(&b"hellp"[..], Some(&d), Some(5)).unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
        let err = store.put_blob(&b"hello!"[..], Some(&d), Some(5)).unwrap_err();
        assert!(matches!(err, Error::SizeMismatch { .. }), "{err}");
        let err = store.put_blob(&b"hell"[..], Some(&d), Some(5)).unwrap_err();
        assert!(matches!(err, Error::SizeMismatch { .. }), "{err}");
        assert!(!store.has_blob(&d));
        assert!(visible_files(&store).is_empty());
    }

    #[test]
    fn open_blob_refuses_other_algorithms() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = digest::parse_digest(&format!("sha512:{}", "0".repeat(128))).unwrap();
        assert!(store.open_blob(&d).is_err());
        let missing = sha256_bytes(b"nope");
        assert!(matches!(store.open_blob(&missing), Err(Error::NotFound(_))));
    }
}
