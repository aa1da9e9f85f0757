//! fd-relative file creation inside a snapshot root: every path is resolved by the kernel with
//! `openat2` from an fd of the root, and every object is created with an `*at` call on a parent
//! directory fd and a single-component name, so no string join can reach outside the root.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::PathPolicy;

/// Retry a libc call returning -1 on EINTR; map -1 to the OS error.
fn cvt<T: PartialEq + From<i8>>(mut f: impl FnMut() -> T) -> io::Result<T> {
    loop {
        let rc = f();
        if rc != T::from(-1) {
            return Ok(rc);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains NUL"))
}

/// Timestamps for `utimensat`: (seconds, nanoseconds).
pub type Time = (i64, i64);

fn timespecs(atime: Time, mtime: Time) -> [libc::timespec; 2] {
    [
        libc::timespec { tv_sec: atime.0 as libc::time_t, tv_nsec: atime.1 as libc::c_long },
        libc::timespec { tv_sec: mtime.0 as libc::time_t, tv_nsec: mtime.1 as libc::c_long },
    ]
}

/// A directory fd (the snapshot root, or a directory resolved inside it).
pub struct Dir {
    fd: OwnedFd,
}

impl AsRawFd for Dir {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Dir {
    /// Open a directory by host path (only for the snapshot root itself).
    pub fn open_root(path: &std::path::Path) -> io::Result<Self> {
        let c = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC | libc::O_NOFOLLOW;
        // SAFETY: c is a valid NUL-terminated string; open returns a new fd or -1.
        let fd = cvt(|| unsafe { libc::open(c.as_ptr(), flags) })?;
        // SAFETY: fd was just returned by open and is owned by nobody else.
        Ok(Self { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// Resolve `rel` (relative, cleaned) inside this root with openat2 and open it as a directory.
    /// Under [`PathPolicy::Strict`] a resolution that would leave the root fails with EXDEV;
    /// under [`PathPolicy::Docker`] symlinks are resolved as if this fd were `/`.
    pub fn open_dir_in(&self, rel: &str, policy: PathPolicy) -> io::Result<Dir> {
        let path = cstr(if rel.is_empty() { "." } else { rel })?;
        let resolve = match policy {
            PathPolicy::Strict => libc::RESOLVE_BENEATH,
            PathPolicy::Docker => libc::RESOLVE_IN_ROOT,
        } | libc::RESOLVE_NO_MAGICLINKS;
        // SAFETY: open_how is plain data; zeroed is a valid value that we then fill in.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = (libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64;
        how.resolve = resolve;
        let fd = cvt(|| {
            // SAFETY: path is NUL-terminated, how is a valid open_how of the size passed.
            unsafe {
                libc::syscall(
                    libc::SYS_openat2,
                    self.fd.as_raw_fd(),
                    path.as_ptr(),
                    &how as *const libc::open_how,
                    std::mem::size_of::<libc::open_how>(),
                )
            }
        })?;
        // SAFETY: openat2 returned a new fd that nobody else owns.
        Ok(Dir { fd: unsafe { OwnedFd::from_raw_fd(fd as RawFd) } })
    }

    /// `fstatat(name, AT_SYMLINK_NOFOLLOW)`; `None` when it does not exist.
    pub fn lstat(&self, name: &str) -> io::Result<Option<libc::stat>> {
        let c = cstr(name)?;
        // SAFETY: stat is plain data, filled in by the kernel.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: c is NUL-terminated, st is a valid out pointer.
        match cvt(|| unsafe { libc::fstatat(self.as_raw_fd(), c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) }) {
            Ok(_) => Ok(Some(st)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Remove `name` (a file, or an empty directory) if it exists.
    pub fn remove(&self, name: &str) -> io::Result<()> {
        let Some(st) = self.lstat(name)? else { return Ok(()) };
        let flags = if st.st_mode & libc::S_IFMT == libc::S_IFDIR { libc::AT_REMOVEDIR } else { 0 };
        let c = cstr(name)?;
        // SAFETY: c is NUL-terminated; unlinkat takes no other memory.
        cvt(|| unsafe { libc::unlinkat(self.as_raw_fd(), c.as_ptr(), flags) }).map(drop)
    }

    /// `mkdirat(name, mode)`; an existing directory is fine.
    pub fn mkdir(&self, name: &str, mode: u32) -> io::Result<()> {
        let c = cstr(name)?;
        // SAFETY: c is NUL-terminated.
        match cvt(|| unsafe { libc::mkdirat(self.as_raw_fd(), c.as_ptr(), mode as libc::mode_t) }) {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => match self.lstat(name)? {
                Some(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => Ok(()),
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Open the directory `name` directly below this one, never following a symlink.
    pub fn open_child_dir(&self, name: &str) -> io::Result<Dir> {
        let c = cstr(name)?;
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC | libc::O_NOFOLLOW;
        // SAFETY: c is NUL-terminated.
        let fd = cvt(|| unsafe { libc::openat(self.as_raw_fd(), c.as_ptr(), flags) })?;
        // SAFETY: openat returned a new fd that nobody else owns.
        Ok(Dir { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// Create a new regular file `name` (never through a symlink) open for writing.
    pub fn create_file(&self, name: &str) -> io::Result<File> {
        let c = cstr(name)?;
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: c is NUL-terminated; mode is passed as the variadic third argument.
        let fd = cvt(|| unsafe { libc::openat(self.as_raw_fd(), c.as_ptr(), flags, 0o600 as libc::c_uint) })?;
        // SAFETY: openat returned a new fd that nobody else owns.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// `symlinkat(target, self, name)`.
    pub fn symlink(&self, target: &CStr, name: &str) -> io::Result<()> {
        let c = cstr(name)?;
        // SAFETY: both strings are NUL-terminated.
        cvt(|| unsafe { libc::symlinkat(target.as_ptr(), self.as_raw_fd(), c.as_ptr()) }).map(drop)
    }

    /// `mknodat(name, mode, dev)` for devices, fifos and whiteouts.
    pub fn mknod(&self, name: &str, mode: u32, dev: libc::dev_t) -> io::Result<()> {
        let c = cstr(name)?;
        // SAFETY: c is NUL-terminated.
        cvt(|| unsafe { libc::mknodat(self.as_raw_fd(), c.as_ptr(), mode as libc::mode_t, dev) }).map(drop)
    }

    /// `linkat(from_dir, from_name, self, name, 0)`: hardlink without following a symlink.
    pub fn link_from(&self, from_dir: &Dir, from_name: &str, name: &str) -> io::Result<()> {
        let (a, b) = (cstr(from_name)?, cstr(name)?);
        // SAFETY: both strings are NUL-terminated; flags 0 never follows a symlink at from_name.
        cvt(|| unsafe { libc::linkat(from_dir.as_raw_fd(), a.as_ptr(), self.as_raw_fd(), b.as_ptr(), 0) }).map(drop)
    }

    /// `fchownat(name, uid, gid, AT_SYMLINK_NOFOLLOW)`; an empty name means this directory.
    pub fn chown(&self, name: &str, uid: u32, gid: u32) -> io::Result<()> {
        let (c, flags) = self.target(name)?;
        // SAFETY: c is NUL-terminated.
        cvt(|| unsafe { libc::fchownat(self.as_raw_fd(), c.as_ptr(), uid, gid, flags) }).map(drop)
    }

    /// `fchmodat(name, mode)` (never on a symlink); an empty name means this directory.
    pub fn chmod(&self, name: &str, mode: u32) -> io::Result<()> {
        if name.is_empty() {
            // SAFETY: fchmod on an fd we own.
            return cvt(|| unsafe { libc::fchmod(self.as_raw_fd(), mode as libc::mode_t) }).map(drop);
        }
        let c = cstr(name)?;
        // SAFETY: c is NUL-terminated; the caller never passes a symlink (fchmodat would follow it).
        cvt(|| unsafe { libc::fchmodat(self.as_raw_fd(), c.as_ptr(), mode as libc::mode_t, 0) }).map(drop)
    }

    /// `utimensat(name, times, AT_SYMLINK_NOFOLLOW)`; an empty name means this directory.
    pub fn set_times(&self, name: &str, atime: Time, mtime: Time) -> io::Result<()> {
        let (c, flags) = self.target(name)?;
        let ts = timespecs(atime, mtime);
        // SAFETY: c is NUL-terminated and ts points to two timespecs.
        cvt(|| unsafe { libc::utimensat(self.as_raw_fd(), c.as_ptr(), ts.as_ptr(), flags) }).map(drop)
    }

    /// `lsetxattr` on `name` (a symlink, device or fifo: objects we hold no fd for), reached
    /// through this directory's `/proc/self/fd` entry so the path stays fd-relative.
    pub fn lsetxattr(&self, name: &str, key: &str, value: &[u8]) -> io::Result<()> {
        let path = CString::new(format!("/proc/self/fd/{}/{}", self.as_raw_fd(), name))
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains NUL"))?;
        let k = cstr(key)?;
        // SAFETY: strings are NUL-terminated, value points to value.len() bytes.
        cvt(|| unsafe { libc::lsetxattr(path.as_ptr(), k.as_ptr(), value.as_ptr().cast(), value.len(), 0) }).map(drop)
    }

    /// `fsetxattr` on this directory.
    pub fn set_xattr(&self, key: &str, value: &[u8]) -> io::Result<()> {
        fsetxattr(self.as_raw_fd(), key, value)
    }

    fn target(&self, name: &str) -> io::Result<(CString, libc::c_int)> {
        if name.is_empty() {
            Ok((cstr("")?, libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW))
        } else {
            Ok((cstr(name)?, libc::AT_SYMLINK_NOFOLLOW))
        }
    }
}

/// `fsetxattr(fd, key, value)`.
pub fn fsetxattr(fd: RawFd, key: &str, value: &[u8]) -> io::Result<()> {
    let k = cstr(key)?;
    // SAFETY: k is NUL-terminated, value points to value.len() bytes, fd is open.
    cvt(|| unsafe { libc::fsetxattr(fd, k.as_ptr(), value.as_ptr().cast(), value.len(), 0) }).map(drop)
}

/// `fchown`, `fchmod` and `futimens` on an open file.
pub fn set_file_meta(f: &File, owner: Option<(u32, u32)>, mode: u32) -> io::Result<()> {
    let fd = f.as_raw_fd();
    if let Some((uid, gid)) = owner {
        // SAFETY: fchown on an fd we own.
        cvt(|| unsafe { libc::fchown(fd, uid, gid) })?;
    }
    // SAFETY: fchmod on an fd we own (after chown, which clears set-id bits).
    cvt(|| unsafe { libc::fchmod(fd, mode as libc::mode_t) }).map(drop)
}

/// `futimens` on an open file.
pub fn set_file_times(f: &File, atime: Time, mtime: Time) -> io::Result<()> {
    let ts = timespecs(atime, mtime);
    // SAFETY: ts points to two timespecs, fd is open.
    cvt(|| unsafe { libc::futimens(f.as_raw_fd(), ts.as_ptr()) }).map(drop)
}

/// `makedev(major, minor)`.
pub fn makedev(major: u32, minor: u32) -> libc::dev_t {
    libc::makedev(major, minor)
}
