//! A tree as a tar stream, walked by file descriptors only: every child is opened relative to
//! its parent's fd with `O_PATH|O_NOFOLLOW` (openat2 `RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS`), its
//! type taken from that fd, and a regular file's content read by reopening that same inode
//! through `/proc/self/fd` — never by a path the container could swap for a symlink, a fifo or
//! a device node between the check and the open.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use berth_runtime::rootfs::safe_path;

/// Filesystems whose content is the kernel's, not the container's: `cp` does not descend
/// into them (a running container's `/proc`, `/sys`, cgroups), as docker's view has none.
const PSEUDO_FS: &[i64] = &[
    0x9fa0,      // proc
    0x6265_6572, // sysfs
    0x0027_e0eb, // cgroup
    0x6367_7270, // cgroup2
    0x1cd1,      // devpts
    0x7363_6673, // securityfs
    0x6462_6720, // debugfs
    0x7472_6163, // tracefs
    0xcafe_4a11, // bpf
    0x1980_0202, // mqueue
];

/// Whether `fd` lies on a kernel pseudo filesystem (see [`PSEUDO_FS`]).
#[allow(clippy::unnecessary_cast)] // the f_type width differs between architectures
pub(crate) fn on_pseudo_fs(fd: BorrowedFd) -> bool {
    nix::sys::statfs::fstatfs(fd).is_ok_and(|s| PSEUDO_FS.contains(&(s.filesystem_type().0 as i64)))
}

/// `fstat` of an fd (`O_PATH` fds included).
pub(crate) fn fstat(fd: BorrowedFd) -> std::io::Result<libc::stat> {
    nix::sys::stat::fstat(fd).map_err(std::io::Error::from)
}

/// The target of a symlink opened `O_PATH|O_NOFOLLOW`.
fn read_link(fd: BorrowedFd) -> std::io::Result<OsString> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: the empty path is a valid C string; `buf` is writable for its length.
    let n = unsafe { libc::readlinkat(fd.as_raw_fd(), c"".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(OsStr::from_bytes(&buf).to_os_string())
}

/// Open the inode behind an `O_PATH` fd again, for reading: through the fd's magic link, which
/// names that inode and nothing a path lookup could redirect.
fn reopen(fd: BorrowedFd, flags: i32) -> std::io::Result<OwnedFd> {
    let p = std::ffi::CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(std::io::Error::other)?;
    // SAFETY: a valid C string; the new fd is owned below.
    let r = unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC | libc::O_NOCTTY) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: open returned a new fd nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// A directory's entry names (without `.` and `..`), sorted.
fn list_dir(dir: BorrowedFd) -> std::io::Result<Vec<OsString>> {
    // "." relative to an O_PATH directory fd opens that very directory for reading.
    // SAFETY: a valid C string relative to a directory fd; the new fd is owned below.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), c".".as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: openat returned a new fd nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut d = nix::dir::Dir::from_fd(fd)?;
    let mut names: Vec<OsString> = d
        .iter()
        .filter_map(|e| e.ok())
        .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_os_string())
        .filter(|n| n != "." && n != "..")
        .collect();
    names.sort();
    Ok(names)
}

/// Reads exactly `left` bytes: a file that shrank while being read is padded with zeros, one
/// that grew is cut, so the archive stays well-formed.
struct Exact<R> {
    inner: R,
    left: u64,
    eof: bool,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = if self.eof { 0 } else { self.inner.read(&mut buf[..want])? };
        let n = if n == 0 {
            self.eof = true;
            buf[..want].fill(0);
            want
        } else {
            n
        };
        self.left -= n as u64;
        Ok(n)
    }
}

/// Writes trees into a tar stream (GNU format: long names, devices).
pub(crate) struct TreeWriter<W: Write> {
    b: tar::Builder<W>,
    /// (dev, ino) of files with several links → the name they were first written under.
    links: HashMap<(u64, u64), PathBuf>,
}

impl<W: Write> TreeWriter<W> {
    /// A writer on `w`.
    pub(crate) fn new(w: W) -> Self {
        let mut b = tar::Builder::new(w);
        b.follow_symlinks(false);
        TreeWriter { b, links: HashMap::new() }
    }

    /// Append the object open as `fd` (`O_PATH`, not followed) under `name` and, for a
    /// directory, everything below it. An empty `name` appends only a directory's children.
    pub(crate) fn append(&mut self, fd: BorrowedFd, name: &Path) -> std::io::Result<()> {
        let st = fstat(fd)?;
        let typ = st.st_mode & libc::S_IFMT;
        if name.as_os_str().is_empty() {
            if typ != libc::S_IFDIR {
                return Err(std::io::Error::other("not a directory"));
            }
            return self.children(fd, name);
        }
        let mut h = tar::Header::new_gnu();
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(st.st_uid as u64);
        h.set_gid(st.st_gid as u64);
        h.set_mtime(st.st_mtime.max(0) as u64);
        h.set_size(0);
        match typ {
            libc::S_IFREG => {
                if st.st_nlink > 1 {
                    let key = (st.st_dev, st.st_ino);
                    if let Some(first) = self.links.get(&key) {
                        h.set_entry_type(tar::EntryType::Link);
                        let first = first.clone();
                        return self.b.append_link(&mut h, name, first);
                    }
                    self.links.insert(key, name.to_path_buf());
                }
                let file = std::fs::File::from(reopen(fd, libc::O_RDONLY)?);
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(st.st_size as u64);
                self.b.append_data(&mut h, name, Exact { inner: file, left: st.st_size as u64, eof: false })
            }
            libc::S_IFDIR => {
                h.set_entry_type(tar::EntryType::Directory);
                self.b.append_data(&mut h, name, std::io::empty())?;
                if on_pseudo_fs(fd) {
                    return Ok(());
                }
                self.children(fd, name)
            }
            libc::S_IFLNK => {
                h.set_entry_type(tar::EntryType::Symlink);
                let target = read_link(fd)?;
                self.b.append_link(&mut h, name, Path::new(&target))
            }
            libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO => {
                h.set_entry_type(match typ {
                    libc::S_IFCHR => tar::EntryType::Char,
                    libc::S_IFBLK => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                });
                if typ != libc::S_IFIFO {
                    h.set_device_major(libc::major(st.st_rdev))?;
                    h.set_device_minor(libc::minor(st.st_rdev))?;
                }
                self.b.append_data(&mut h, name, std::io::empty())
            }
            // Sockets have no tar form (docker skips them too).
            _ => Ok(()),
        }
    }

    fn children(&mut self, dir: BorrowedFd, name: &Path) -> std::io::Result<()> {
        for child in list_dir(dir)? {
            match safe_path::open_step(dir, &child) {
                Ok(fd) => self.append(fd.as_fd(), &name.join(&child))?,
                // Removed while we walked: not an error, as with tar.
                Err(nix::Error::ENOENT) => {}
                Err(e) => return Err(std::io::Error::other(format!("{}: {e}", name.join(&child).display()))),
            }
        }
        Ok(())
    }

    /// Write the end of the archive; the underlying writer.
    pub(crate) fn finish(self) -> std::io::Result<W> {
        self.b.into_inner()
    }
}
