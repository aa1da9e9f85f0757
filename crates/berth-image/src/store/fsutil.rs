//! Small file-system helpers: random names, atomic writes, directory fsync, flock, and owned
//! temp entries (a temp file or directory flock'ed by its writer for as long as it lives, so a
//! temp entry whose lock is free belongs to a dead writer and can be removed at once).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::IoContext;
use crate::Result;

/// A random hex suffix for temporary names (from getrandom; falls back to time and pid).
pub fn random_suffix() -> String {
    let mut buf = [0u8; 8];
    // SAFETY: buf is a valid writable buffer of buf.len() bytes.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n != buf.len() as isize {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let mixed = (t as u64) ^ ((std::process::id() as u64) << 32);
        buf = mixed.to_le_bytes();
    }
    hex::encode(buf)
}

/// fsync a directory so that a rename inside it is durable.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    let f = File::open(dir).io_context(|| format!("open {} for fsync", dir.display()))?;
    f.sync_all().io_context(|| format!("fsync {}", dir.display()))
}

/// Write `bytes` to `dir/name` atomically: a temp file in `dir`, fsync, rename, fsync `dir`.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!(".{name}.tmp-{}", random_suffix()));
    let res = (|| {
        let mut f =
            OpenOptions::new().write(true).create_new(true).mode(0o644).open(&tmp).io_context(|| format!("create {}", tmp.display()))?;
        f.write_all(bytes).io_context(|| format!("write {}", tmp.display()))?;
        f.sync_all().io_context(|| format!("fsync {}", tmp.display()))?;
        let dest = dir.join(name);
        std::fs::rename(&tmp, &dest).io_context(|| format!("rename {} to {}", tmp.display(), dest.display()))?;
        fsync_dir(dir)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Create a temp entry with `create` (at a fresh `dir/<prefix><random>`) and flock it; retried
/// with a new name when a cleaner removed it between creation and locking. The returned file
/// (the entry itself, or the directory opened read-only) holds the lock until dropped.
pub fn create_owned<T>(dir: &Path, prefix: &str, mut create: impl FnMut(&Path) -> io::Result<(T, File)>) -> io::Result<(PathBuf, T, File)> {
    use std::os::unix::fs::MetadataExt;
    loop {
        let path = dir.join(format!("{prefix}{}", random_suffix()));
        let (value, file) = create(&path)?;
        flock_retrying(&file, libc::LOCK_EX)?;
        // A cleaner that saw the entry before our lock removed it while holding the lock.
        let ours = file.metadata()?;
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.ino() == ours.ino() && m.dev() == ours.dev() => return Ok((path, value, file)),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
}

/// Remove the temp entries `dir/<prefix>*` whose writer is gone (their flock is free), while
/// holding that lock; returns how many were removed. Entries of live writers are left alone.
pub fn remove_abandoned(dir: &Path, prefix: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(prefix) {
            continue;
        }
        let path = entry.path();
        let Ok(file) = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK).open(&path) else {
            continue;
        };
        // SAFETY: flock on an fd we own; no memory is passed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            continue;
        }
        let is_dir = file.metadata().map(|m| m.is_dir()).unwrap_or(false);
        let result = if is_dir { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        match result {
            Ok(()) => removed += 1,
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "could not remove an abandoned temp entry"),
        }
        drop(file);
    }
    if removed > 0 {
        tracing::debug!(dir = %dir.display(), removed, "removed temp entries of dead writers");
    }
    removed
}

fn flock_retrying(file: &File, op: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: flock on an fd we own; no memory is passed.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// A held `flock` on a lock file; released when dropped (the fd closes).
pub struct FileLock {
    _file: File,
    path: PathBuf,
}

impl FileLock {
    /// Block until an exclusive lock on `path` is held (the file is created if missing).
    pub fn exclusive(path: &Path) -> Result<Self> {
        Self::acquire(path, libc::LOCK_EX)
    }

    /// Block until a shared lock on `path` is held (the file is created if missing).
    pub fn shared(path: &Path) -> Result<Self> {
        Self::acquire(path, libc::LOCK_SH)
    }

    /// An exclusive lock on `path` if nobody holds it now, without waiting.
    pub fn try_exclusive(path: &Path) -> Result<Option<Self>> {
        match Self::acquire(path, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(lock) => Ok(Some(lock)),
            Err(crate::Error::Io { source, .. }) if source.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn acquire(path: &Path, op: libc::c_int) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .io_context(|| format!("open lock file {}", path.display()))?;
        loop {
            // SAFETY: flock on an fd we own; no memory is passed.
            let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
            if rc == 0 {
                break;
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err).io_context(|| format!("flock {}", path.display()));
            }
        }
        Ok(Self { _file: file, path: path.to_path_buf() })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
