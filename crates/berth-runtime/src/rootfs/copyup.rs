//! `tmpcopyup`: copy a directory's content into the tmpfs newly mounted over it, fd to fd,
//! never following a symlink of the (container-controlled) source.

use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::sys::stat::{fstat, FileStat};

type R<T> = std::result::Result<T, String>;

fn last_err(what: &str, name: &OsStr) -> String {
    format!("{what} {:?}: {}", name, std::io::Error::last_os_error())
}

fn open_at(dir: BorrowedFd, name: &CStr, flags: libc::c_int, mode: libc::mode_t) -> Option<OwnedFd> {
    // SAFETY: `name` is a valid C string; the result is a new fd or -1.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags | libc::O_CLOEXEC | libc::O_NOFOLLOW, mode as libc::c_uint) };
    // SAFETY: a new fd that nothing else owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

fn set_owner_mode(fd: BorrowedFd, st: &FileStat) {
    // Best effort, like cp -a run by root; in a user namespace some ids may be unmapped.
    // SAFETY: plain syscalls on an fd we hold.
    unsafe {
        libc::fchown(fd.as_raw_fd(), st.st_uid, st.st_gid);
        libc::fchmod(fd.as_raw_fd(), st.st_mode & 0o7777);
    }
}

/// Copy everything in `from` into `to` (both directories); with `root_mode`, also give `to`
/// the mode and owner of `from`.
pub fn copy_dir_contents(from: BorrowedFd, to: BorrowedFd, root_mode: bool) -> R<()> {
    let to_rd =
        super::safe_path::openat2(to, std::path::Path::new("."), nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY, 0, 0)
            .map_err(|e| format!("open the new tmpfs: {e}"))?;
    if root_mode {
        let st = fstat(from).map_err(|e| format!("stat the old directory: {e}"))?;
        set_owner_mode(to_rd.as_fd(), &st);
    }
    copy_dir(from, to_rd.as_fd(), 0)
}

fn copy_dir(from: BorrowedFd, to: BorrowedFd, depth: usize) -> R<()> {
    if depth > 256 {
        return Err("directory tree too deep".into());
    }
    let mut dir = nix::dir::Dir::openat(
        from,
        ".",
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("read directory: {e}"))?;
    let mut names: Vec<CString> = Vec::new();
    for entry in dir.iter() {
        let entry = entry.map_err(|e| format!("read directory: {e}"))?;
        let name = entry.file_name();
        if name.to_bytes() != b"." && name.to_bytes() != b".." {
            names.push(name.to_owned());
        }
    }
    for name in names {
        copy_entry(from, to, &name, depth)?;
    }
    Ok(())
}

fn copy_entry(from: BorrowedFd, to: BorrowedFd, name: &CStr, depth: usize) -> R<()> {
    let os = OsStr::from_bytes(name.to_bytes());
    let src = open_at(from, name, libc::O_PATH, 0).ok_or_else(|| last_err("open", os))?;
    let st = fstat(&src).map_err(|e| format!("stat {os:?}: {e}"))?;
    match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => {
            // SAFETY: valid C string, relative to a dir fd we hold.
            if unsafe { libc::mkdirat(to.as_raw_fd(), name.as_ptr(), 0o700) } != 0 {
                return Err(last_err("mkdir", os));
            }
            let src_dir = open_at(from, name, libc::O_RDONLY | libc::O_DIRECTORY, 0).ok_or_else(|| last_err("open", os))?;
            let dst_dir = open_at(to, name, libc::O_RDONLY | libc::O_DIRECTORY, 0).ok_or_else(|| last_err("open", os))?;
            copy_dir(src_dir.as_fd(), dst_dir.as_fd(), depth + 1)?;
            set_owner_mode(dst_dir.as_fd(), &st);
        }
        libc::S_IFREG => {
            let s = open_at(from, name, libc::O_RDONLY, 0).ok_or_else(|| last_err("open", os))?;
            let d = open_at(to, name, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o600).ok_or_else(|| last_err("create", os))?;
            let (mut s, mut d) = (File::from(s), File::from(d));
            std::io::copy(&mut s, &mut d).map_err(|e| format!("copy {os:?}: {e}"))?;
            set_owner_mode(d.as_fd(), &st);
        }
        libc::S_IFLNK => {
            let target = nix::fcntl::readlinkat(from, os).map_err(|e| format!("readlink {os:?}: {e}"))?;
            nix::unistd::symlinkat(target.as_os_str(), to, os).map_err(|e| format!("symlink {os:?}: {e}"))?;
            // SAFETY: valid C string, relative to a dir fd we hold; does not follow the link.
            unsafe { libc::fchownat(to.as_raw_fd(), name.as_ptr(), st.st_uid, st.st_gid, libc::AT_SYMLINK_NOFOLLOW) };
        }
        _ => {
            // Device nodes, fifos, sockets.
            // SAFETY: valid C string, relative to a dir fd we hold.
            if unsafe { libc::mknodat(to.as_raw_fd(), name.as_ptr(), st.st_mode, st.st_rdev) } != 0 {
                return Err(last_err("mknod", os));
            }
            // SAFETY: as above; does not follow symlinks.
            unsafe { libc::fchownat(to.as_raw_fd(), name.as_ptr(), st.st_uid, st.st_gid, libc::AT_SYMLINK_NOFOLLOW) };
        }
    }
    Ok(())
}
