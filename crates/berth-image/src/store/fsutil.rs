//! Small file-system helpers: random names, atomic writes, directory fsync, flock.

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
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
            .io_context(|| format!("create {}", tmp.display()))?;
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
