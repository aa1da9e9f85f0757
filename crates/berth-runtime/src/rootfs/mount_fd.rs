//! Mount system calls that act on fds instead of paths: mount(2) through `/proc/self/fd/N`,
//! and the new mount API (open_tree, move_mount, mount_setattr, fsopen/fsmount).

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::safe_path::proc_fd_path;

fn cstr(s: &[u8]) -> nix::Result<CString> {
    CString::new(s).map_err(|_| nix::Error::EINVAL)
}

fn check(r: libc::c_long) -> nix::Result<libc::c_long> {
    if r < 0 {
        Err(nix::Error::last())
    } else {
        Ok(r)
    }
}

/// mount(2) with a raw `path` target.
pub fn mount_path(source: Option<&Path>, target: &Path, fstype: Option<&str>, flags: u64, data: Option<&str>) -> nix::Result<()> {
    let src = source.map(|s| cstr(s.as_os_str().as_bytes())).transpose()?;
    let tgt = cstr(target.as_os_str().as_bytes())?;
    let typ = fstype.map(|s| cstr(s.as_bytes())).transpose()?;
    let dat = data.filter(|d| !d.is_empty()).map(|s| cstr(s.as_bytes())).transpose()?;
    let ptr = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: every pointer is either null or a NUL-terminated string alive for the call.
    let r = unsafe { libc::mount(ptr(&src), tgt.as_ptr(), ptr(&typ), flags as libc::c_ulong, ptr(&dat).cast()) };
    check(r as libc::c_long).map(drop)
}

/// mount(2) onto the object `target` refers to, through `/proc/self/fd/N`.
pub fn mount_onto(source: Option<&Path>, target: BorrowedFd, fstype: Option<&str>, flags: u64, data: Option<&str>) -> nix::Result<()> {
    mount_path(source, &proc_fd_path(target), fstype, flags, data)
}

/// open_tree(2) with `OPEN_TREE_CLONE` of what `fd` refers to: a detached bind mount.
pub fn clone_tree(fd: BorrowedFd, recursive: bool) -> nix::Result<OwnedFd> {
    let mut flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC | libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: the empty path is a valid C string; open_tree returns a new fd or -1.
    let r = check(unsafe { libc::syscall(libc::SYS_open_tree, fd.as_raw_fd(), c"".as_ptr(), flags) })?;
    // SAFETY: a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
}

/// move_mount(2) the detached or attached mount `from` onto the object `to` refers to.
pub fn move_mount_onto(from: BorrowedFd, to: BorrowedFd) -> nix::Result<()> {
    let flags = libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH;
    // SAFETY: both paths are valid empty C strings; the fds are open.
    check(unsafe { libc::syscall(libc::SYS_move_mount, from.as_raw_fd(), c"".as_ptr(), to.as_raw_fd(), c"".as_ptr(), flags) }).map(drop)
}

/// mount_setattr(2) on the mount `fd` is the root of (and its submounts if `recursive`).
/// `propagation` is 0 or one of `MS_SHARED|MS_SLAVE|MS_PRIVATE|MS_UNBINDABLE`.
pub fn set_attr(fd: BorrowedFd, recursive: bool, set: u64, clr: u64, propagation: u64) -> nix::Result<()> {
    let attr = libc::mount_attr { attr_set: set, attr_clr: clr, propagation, userns_fd: 0 };
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: `attr` is a valid mount_attr of the size passed; the path is an empty C string.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    })
    .map(drop)
}

/// Apply one propagation flag as parsed from the options (`MS_REC` selects recursion).
pub fn set_propagation(fd: BorrowedFd, flag: u64) -> nix::Result<()> {
    set_attr(fd, flag & libc::MS_REC != 0, 0, 0, flag & !libc::MS_REC)
}

/// A new detached tmpfs (fsopen/fsconfig/fsmount) with the given string options and
/// `MOUNT_ATTR_*` attributes, ready to be moved onto a target.
pub fn new_tmpfs(options: &[(&str, &str)], attrs: u64) -> nix::Result<OwnedFd> {
    // SAFETY: a valid C string; fsopen returns a new fd or -1.
    let fs = check(unsafe { libc::syscall(libc::SYS_fsopen, c"tmpfs".as_ptr(), libc::FSOPEN_CLOEXEC) })?;
    // SAFETY: a new fd that nothing else owns.
    let fs = unsafe { OwnedFd::from_raw_fd(fs as i32) };
    for (k, v) in options {
        let (k, v) = (cstr(k.as_bytes())?, cstr(v.as_bytes())?);
        // SAFETY: valid C strings alive for the call, on the fs context fd we own.
        check(unsafe { libc::syscall(libc::SYS_fsconfig, fs.as_raw_fd(), libc::FSCONFIG_SET_STRING, k.as_ptr(), v.as_ptr(), 0) })?;
    }
    // SAFETY: FSCONFIG_CMD_CREATE takes no key or value.
    check(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            libc::FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    })?;
    // SAFETY: fsmount on the created context returns a new mount fd or -1.
    let m = check(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), libc::FSMOUNT_CLOEXEC, attrs) })?;
    // SAFETY: a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(m as i32) })
}
