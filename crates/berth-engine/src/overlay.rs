//! A container's root filesystem: an overlay of the image's snapshots with a writable upper.
//!
//! Mounted with the new mount API, one `lowerdir+` per layer, so an image with many layers
//! or long paths is not limited by mount(2)'s one-page option string.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap_or_default()
}

fn fd_result(rc: libc::c_long, what: &str) -> Result<OwnedFd> {
    if rc < 0 {
        return Err(std::io::Error::last_os_error()).io_context(|| what.to_string());
    }
    // SAFETY: the syscall returned a new fd nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as i32) })
}

fn set_string(fs: &OwnedFd, key: &str, value: &Path) -> Result<()> {
    let k = cstr(key);
    let v = CString::new(value.as_os_str().as_bytes()).unwrap_or_default();
    // SAFETY: fsconfig reads two NUL-terminated strings.
    let rc = unsafe {
        libc::syscall(libc::SYS_fsconfig, fs.as_raw_fd(), 1 /* SET_STRING */, k.as_ptr(), v.as_ptr(), 0)
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error()).io_context(|| format!("overlay {key}={}", value.display()));
    }
    Ok(())
}

/// Mount an overlay of `layers` (bottom first) with `upper`/`work` on `target`.
pub fn mount(layers: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> Result<()> {
    // SAFETY: fsopen takes a NUL-terminated name and flags.
    let fs = fd_result(unsafe { libc::syscall(libc::SYS_fsopen, cstr("overlay").as_ptr(), 1) }, "fsopen overlay")?;
    for layer in layers.iter().rev() {
        set_string(&fs, "lowerdir+", layer)?;
    }
    set_string(&fs, "upperdir", upper)?;
    set_string(&fs, "workdir", work)?;
    // SAFETY: fsconfig CMD_CREATE with no key/value.
    if unsafe { libc::syscall(libc::SYS_fsconfig, fs.as_raw_fd(), 6, 0usize, 0usize, 0) } < 0 {
        return Err(std::io::Error::last_os_error()).io_context(|| format!("create the overlay for {}", target.display()));
    }
    // SAFETY: fsmount of a configured context.
    let mnt = fd_result(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), 1, 0) }, "fsmount overlay")?;
    let t = CString::new(target.as_os_str().as_bytes()).unwrap_or_default();
    // SAFETY: move_mount of our detached mount onto a NUL-terminated path.
    let rc = unsafe {
        libc::syscall(libc::SYS_move_mount, mnt.as_raw_fd(), cstr("").as_ptr(), libc::AT_FDCWD, t.as_ptr(), 4 /* F_EMPTY_PATH */)
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error()).io_context(|| format!("mount the overlay on {}", target.display()));
    }
    Ok(())
}

/// Unmount the container's root filesystem (lazily: a process still inside does not block).
pub fn unmount(target: &Path) -> Result<()> {
    match nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => Ok(()),
        Err(e) => Err(std::io::Error::from(e)).io_context(|| format!("unmount {}", target.display())),
    }
}
