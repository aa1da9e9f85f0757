//! A tar stream unpacked under a directory of a root, by file descriptors only.
//!
//! Each entry's parent directory is resolved (or created) inside the root with openat2
//! `RESOLVE_IN_ROOT` (`safe_path::mkdir_all_in_root`), so a symlink in the container — `/etc ->
//! /`, `x -> ../../../../host` — or one made by an earlier entry leads somewhere inside the root,
//! never out of it. The entry itself is made with `*at` calls relative to that parent fd, never
//! following its last component: what was there before (a symlink, a device node the container
//! made) is unlinked and the new file created `O_CREAT|O_EXCL|O_NOFOLLOW`, and its owner, mode
//! and times are set on the new fd.

use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use berth_runtime::rootfs::safe_path;
use nix::sys::stat::Mode;

/// Whose files the unpacked ones are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owners {
    /// The uid/gid recorded in the archive (`cp -a`).
    Keep,
    /// These ids (docker's copy into a container: its root user).
    Fixed(u32, u32),
    /// Whoever unpacks (docker's copy out to the host).
    Caller,
}

fn err(path: &Path, what: &str, e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("{}: {what}: {e}", path.display()))
}

fn cstr(name: &OsStr) -> std::io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| std::io::Error::other("a name contains a NUL byte"))
}

fn check(rc: i32) -> std::io::Result<()> {
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The components of an archive entry's name; `..` refused, `/` and `.` dropped.
fn entry_components(path: &Path) -> std::io::Result<Vec<OsString>> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::ParentDir => return Err(err(path, "archive entry", "contains `..`")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok(out)
}

/// Remove what is at `name` in `dir` unless it is a directory (never followed). A directory
/// there is `EISDIR`.
fn remove_non_dir(dir: BorrowedFd, name: &CString) -> std::io::Result<()> {
    // SAFETY: a valid C string relative to a directory fd; unlinkat does not follow it.
    match check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) }) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => Err(std::io::Error::from_raw_os_error(libc::EISDIR)),
        r => r,
    }
}

/// Unpacks entries under `base` inside `root`.
pub(crate) struct Extractor<'a> {
    root: BorrowedFd<'a>,
    base: PathBuf,
    owners: Owners,
    /// Directories resolved so far, by their path relative to `base`.
    dirs: HashMap<PathBuf, OwnedFd>,
}

impl<'a> Extractor<'a> {
    /// Unpack under `base` (a path inside `root`, which must be a directory).
    pub(crate) fn new(root: BorrowedFd<'a>, base: PathBuf, owners: Owners) -> Self {
        Extractor { root, base, owners, dirs: HashMap::new() }
    }

    /// Unpack every entry of the tar stream `r`; returns how many were written.
    pub(crate) fn unpack(&mut self, r: impl Read) -> std::io::Result<u64> {
        let mut archive = tar::Archive::new(r);
        let mut count = 0;
        for entry in archive.entries()? {
            let mut entry = entry?;
            let path = entry.path()?.into_owned();
            let comps = entry_components(&path)?;
            let Some((name, parent)) = comps.split_last() else {
                // The base directory itself ("./"): it exists; its attributes stay.
                continue;
            };
            let parent_rel: PathBuf = parent.iter().collect();
            let rel = parent_rel.join(name);
            let parent = self.dir(&parent_rel)?;
            let parent = parent.as_fd();
            let cname = cstr(name)?;
            let h = entry.header().clone();
            let mut mode = h.mode().unwrap_or(0o644) & 0o7777;
            if self.owners == Owners::Caller {
                // The owner changes: set-id bits would now grant the caller's ids (a container's
                // setuid-root shell copied out by root). cp(1) without -p drops them too.
                mode &= !(libc::S_ISUID | libc::S_ISGID);
            }
            let ids = match self.owners {
                Owners::Keep => Some((h.uid().unwrap_or(0) as u32, h.gid().unwrap_or(0) as u32)),
                Owners::Fixed(u, g) => Some((u, g)),
                Owners::Caller => None,
            };
            let mtime = h.mtime().unwrap_or(0) as i64;
            let kind = h.entry_type();
            match kind {
                tar::EntryType::Directory => {
                    if let Some(fd) = self.make_dir(parent, &cname, &rel, mode, ids, mtime)? {
                        self.dirs.insert(rel, fd);
                    }
                }
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let fd = create_excl(parent, &cname, &rel)?;
                    let mut f = std::fs::File::from(fd);
                    std::io::copy(&mut entry, &mut f).map_err(|e| err(&rel, "write", e))?;
                    set_attrs(f.as_fd(), ids, mode, mtime).map_err(|e| err(&rel, "set owner and mode", e))?;
                }
                tar::EntryType::Symlink => {
                    let target = entry.link_name()?.ok_or_else(|| err(&rel, "symlink", "no target"))?.into_owned();
                    remove_non_dir(parent, &cname).map_err(|e| err(&rel, "replace", e))?;
                    let t = cstr(target.as_os_str())?;
                    // SAFETY: valid C strings; symlinkat creates the link itself, following nothing.
                    check(unsafe { libc::symlinkat(t.as_ptr(), parent.as_raw_fd(), cname.as_ptr()) })
                        .map_err(|e| err(&rel, "symlink", e))?;
                    set_link_attrs(parent, &cname, ids, mtime).map_err(|e| err(&rel, "set the owner", e))?;
                }
                tar::EntryType::Link => {
                    let target = entry.link_name()?.ok_or_else(|| err(&rel, "hard link", "no target"))?.into_owned();
                    let tcomps = entry_components(&target)?;
                    let Some((tname, tparent)) = tcomps.split_last() else {
                        return Err(err(&rel, "hard link", "to the base directory"));
                    };
                    let tparent_rel: PathBuf = tparent.iter().collect();
                    let tdir = self.dir(&tparent_rel)?;
                    let tname = cstr(tname)?;
                    remove_non_dir(parent, &cname).map_err(|e| err(&rel, "replace", e))?;
                    // SAFETY: valid C strings relative to directory fds; flags 0: a symlink at
                    // the target is linked itself, not followed.
                    check(unsafe { libc::linkat(tdir.as_raw_fd(), tname.as_ptr(), parent.as_raw_fd(), cname.as_ptr(), 0) })
                        .map_err(|e| err(&rel, "hard link", e))?;
                }
                tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                    let typ = match kind {
                        tar::EntryType::Char => libc::S_IFCHR,
                        tar::EntryType::Block => libc::S_IFBLK,
                        _ => libc::S_IFIFO,
                    };
                    // Copied out without -a, a container's device node is the caller's only: a
                    // 0666 node of the host's disk must not open it to every host user.
                    let mode = if self.owners == Owners::Caller && typ != libc::S_IFIFO { mode & 0o600 } else { mode };
                    let dev = libc::makedev(h.device_major()?.unwrap_or(0), h.device_minor()?.unwrap_or(0));
                    remove_non_dir(parent, &cname).map_err(|e| err(&rel, "replace", e))?;
                    // SAFETY: a valid C string relative to a directory fd.
                    check(unsafe { libc::mknodat(parent.as_raw_fd(), cname.as_ptr(), typ | (mode & 0o777), dev) })
                        .map_err(|e| err(&rel, "mknod", e))?;
                    // The node is not opened (a device's open has effects); a node swapped for a
                    // symlink meanwhile is refused by O_NOFOLLOW here.
                    let fd = safe_path::open_step(parent, name).map_err(|e| err(&rel, "open", e))?;
                    if safe_path::file_type(fd.as_fd()) != Ok(typ) {
                        return Err(err(&rel, "mknod", "replaced while being made"));
                    }
                    set_link_attrs(parent, &cname, ids, mtime).map_err(|e| err(&rel, "set the owner", e))?;
                    chmod_path_fd(fd.as_fd(), mode).map_err(|e| err(&rel, "chmod", e))?;
                }
                other => {
                    tracing::warn!("cp: {}: entry type {other:?} skipped", rel.display());
                    continue;
                }
            }
            count += 1;
        }
        Ok(count)
    }

    /// The directory `rel` below the base, resolved (and created when missing) in the root.
    fn dir(&mut self, rel: &Path) -> std::io::Result<OwnedFd> {
        if let Some(fd) = self.dirs.get(rel) {
            return fd.try_clone();
        }
        let path = self.base.join(rel);
        let fd = safe_path::mkdir_all_in_root(self.root, &path, Mode::from_bits_truncate(0o755)).map_err(|e| err(&path, "directory", e))?;
        let copy = fd.try_clone()?;
        self.dirs.insert(rel.to_path_buf(), fd);
        Ok(copy)
    }

    /// Make directory `name` in `parent` (an existing one is kept; a symlink to a directory is
    /// followed inside the root). Returns its fd unless it is reached through a symlink.
    fn make_dir(
        &mut self,
        parent: BorrowedFd,
        name: &CString,
        rel: &Path,
        mode: u32,
        ids: Option<(u32, u32)>,
        mtime: i64,
    ) -> std::io::Result<Option<OwnedFd>> {
        // SAFETY: a valid C string relative to a directory fd.
        let made = unsafe { libc::mkdirat(parent.as_raw_fd(), name.as_ptr(), 0o700) } == 0;
        if !made && std::io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
            return Err(err(rel, "mkdir", std::io::Error::last_os_error()));
        }
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: a valid C string relative to a directory fd; the new fd is owned below.
        let fd = unsafe { libc::openat(parent.as_raw_fd(), name.as_ptr(), flags) };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            if !made && matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) {
                // A symlink (merged /usr's /lib -> usr/lib): its target inside the root if it is
                // a directory; a file there is docker's "cannot overwrite non-directory".
                let path = self.base.join(rel);
                return match safe_path::open_in_root_raw(self.root, &path, nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY) {
                    Ok(_) => Ok(None),
                    Err(_) => Err(err(rel, "directory", "cannot overwrite a non-directory with a directory")),
                };
            }
            return Err(err(rel, "open", e));
        }
        // SAFETY: openat returned a new fd nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        if made {
            set_attrs(fd.as_fd(), ids, mode, mtime).map_err(|e| err(rel, "set owner and mode", e))?;
        }
        Ok(Some(fd))
    }
}

/// Create a new regular file `name` in `dir`, replacing a non-directory there.
fn create_excl(dir: BorrowedFd, name: &CString, rel: &Path) -> std::io::Result<OwnedFd> {
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    for _ in 0..8 {
        remove_non_dir(dir, name).map_err(|e| err(rel, "replace", e))?;
        // SAFETY: a valid C string relative to a directory fd; the new fd is owned below.
        let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags, 0o600 as libc::c_uint) };
        if fd >= 0 {
            // SAFETY: openat returned a new fd nobody else owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let e = std::io::Error::last_os_error();
        // EEXIST: the container put something back meanwhile; remove it again.
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(err(rel, "create", e));
        }
    }
    Err(err(rel, "create", "something keeps being recreated there"))
}

fn timespecs(mtime: i64) -> [libc::timespec; 2] {
    [libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_OMIT }, libc::timespec { tv_sec: mtime as libc::time_t, tv_nsec: 0 }]
}

/// Owner (chown clears set-id bits, so first), mode and mtime of a file or directory we opened.
fn set_attrs(fd: BorrowedFd, ids: Option<(u32, u32)>, mode: u32, mtime: i64) -> std::io::Result<()> {
    if let Some((u, g)) = ids {
        // SAFETY: fchown on an fd we own.
        check(unsafe { libc::fchown(fd.as_raw_fd(), u, g) })?;
    }
    // SAFETY: fchmod on an fd we own.
    check(unsafe { libc::fchmod(fd.as_raw_fd(), mode) })?;
    let ts = timespecs(mtime);
    // SAFETY: two valid timespecs.
    check(unsafe { libc::futimens(fd.as_raw_fd(), ts.as_ptr()) })
}

/// Owner and mtime of `name` in `dir` itself (a symlink or node: never followed).
fn set_link_attrs(dir: BorrowedFd, name: &CString, ids: Option<(u32, u32)>, mtime: i64) -> std::io::Result<()> {
    if let Some((u, g)) = ids {
        // SAFETY: a valid C string; AT_SYMLINK_NOFOLLOW changes the entry itself.
        check(unsafe { libc::fchownat(dir.as_raw_fd(), name.as_ptr(), u, g, libc::AT_SYMLINK_NOFOLLOW) })?;
    }
    let ts = timespecs(mtime);
    // SAFETY: a valid C string and two valid timespecs; the entry itself is changed.
    check(unsafe { libc::utimensat(dir.as_raw_fd(), name.as_ptr(), ts.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) })
}

/// chmod of the inode behind an `O_PATH` fd (not a symlink: the caller checked its type),
/// through its magic link, which cannot be redirected.
fn chmod_path_fd(fd: BorrowedFd, mode: u32) -> std::io::Result<()> {
    let p = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(std::io::Error::other)?;
    // SAFETY: a valid C string.
    check(unsafe { libc::chmod(p.as_ptr(), mode) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o4755);
            h.set_size(0);
            if *kind == tar::EntryType::Symlink {
                b.append_link(&mut h, name, data).unwrap();
            } else {
                h.set_size(data.len() as u64);
                b.append_data(&mut h, name, data.as_bytes()).unwrap();
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn entries_below_a_symlink_the_archive_made_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let fd = safe_path::open_root(&root).unwrap();
        let data = tar_of(&[
            ("up", tar::EntryType::Symlink, "../outside"),
            ("abs", tar::EntryType::Symlink, outside.to_str().unwrap()),
            ("up/a", tar::EntryType::Regular, "x"),
            ("abs/b", tar::EntryType::Regular, "y"),
        ]);
        Extractor::new(fd.as_fd(), PathBuf::from("/"), Owners::Caller).unpack(&data[..]).unwrap();
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        assert_eq!(std::fs::read_to_string(root.join("outside/a")).unwrap(), "x");
        let inside = root.join(outside.strip_prefix("/").unwrap()).join("b");
        assert_eq!(std::fs::read_to_string(inside).unwrap(), "y");
    }

    #[test]
    fn dotdot_entries_are_refused_and_set_id_bits_dropped_for_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let fd = safe_path::open_root(dir.path()).unwrap();
        let data = tar_of(&[("suid", tar::EntryType::Regular, "#!")]);
        Extractor::new(fd.as_fd(), PathBuf::from("/"), Owners::Caller).unpack(&data[..]).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(dir.path().join("suid")).unwrap().permissions().mode() & 0o7777, 0o755);
        let mut raw = [0u8; 512];
        raw[..8].copy_from_slice(b"../evil\0");
        let mut h = tar::Header::from_byte_slice(&raw).clone();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(0);
        h.set_mode(0o644);
        h.set_cksum();
        let mut bad = h.as_bytes().to_vec();
        bad.extend([0u8; 1024]);
        assert!(Extractor::new(fd.as_fd(), PathBuf::from("/"), Owners::Caller).unpack(&bad[..]).is_err());
    }
}
