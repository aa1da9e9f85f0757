//! After pivot: `readonlyPaths`, `maskedPaths` and the read-only root.
//!
//! Everything is mounted through fds with the new mount API, so nothing depends on the
//! container's /proc (which the container's own config controls).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::fcntl::OFlag;

use super::mount_fd::{clone_tree, move_mount_onto, new_tmpfs, set_attr};
use super::mounts::mount_err;
use super::safe_path::{open_in_root_raw, open_step};
use crate::error::Result;

/// Open a configured path in the root; `None` when it does not exist (skipped, as in runc).
fn open_existing(root: BorrowedFd, path: &Path) -> Result<Option<OwnedFd>> {
    match open_in_root_raw(root, path, OFlag::O_PATH) {
        Ok(fd) => Ok(Some(fd)),
        Err(nix::Error::ENOENT) | Err(nix::Error::ENOTDIR) => Ok(None),
        Err(e) => Err(mount_err(path, format!("open: {e}"))),
    }
}

/// Bind each path onto itself read-only, nosuid, nodev, noexec (recursively).
pub fn readonly_paths(root: BorrowedFd, paths: &[String]) -> Result<()> {
    for p in paths {
        let path = Path::new(p);
        let Some(target) = open_existing(root, path)? else { continue };
        let tree = clone_tree(target.as_fd(), true).map_err(|e| mount_err(path, format!("clone mount: {e}")))?;
        let attrs = libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV | libc::MOUNT_ATTR_NOEXEC;
        set_attr(tree.as_fd(), true, attrs, 0, 0).map_err(|e| mount_err(path, format!("make read-only: {e}")))?;
        move_mount_onto(tree.as_fd(), target.as_fd()).map_err(|e| mount_err(path, format!("bind read-only: {e}")))?;
    }
    Ok(())
}

/// The container's /dev/null, verified to be the null device (CVE-2025-31133): opened without
/// following a symlink, and a character device 1:3.
fn verified_dev_null(root: BorrowedFd) -> Result<OwnedFd> {
    let dest = Path::new("/dev/null");
    let dev = open_in_root_raw(root, Path::new("/dev"), OFlag::O_PATH | OFlag::O_DIRECTORY)
        .map_err(|e| mount_err(dest, format!("open /dev to mask paths: {e}")))?;
    let fd = open_step(dev.as_fd(), "null".as_ref()).map_err(|e| mount_err(dest, format!("open to mask paths: {e}")))?;
    let st = nix::sys::stat::fstat(&fd).map_err(|e| mount_err(dest, format!("stat: {e}")))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR || st.st_rdev != nix::sys::stat::makedev(1, 3) {
        return Err(mount_err(dest, "is not the null device (1:3): refusing to use it to mask paths"));
    }
    Ok(fd)
}

/// Hide each path: a directory under an empty read-only tmpfs, anything else under /dev/null.
pub fn masked_paths(root: BorrowedFd, paths: &[String]) -> Result<()> {
    let mut dev_null: Option<OwnedFd> = None;
    for p in paths {
        let path = Path::new(p);
        let Some(target) = open_existing(root, path)? else { continue };
        let is_dir = super::safe_path::file_type(target.as_fd()).map_err(|e| mount_err(path, format!("stat: {e}")))? == libc::S_IFDIR;
        let mnt = if is_dir {
            new_tmpfs(&[], libc::MOUNT_ATTR_RDONLY).map_err(|e| mount_err(path, format!("mask with a tmpfs: {e}")))?
        } else {
            if dev_null.is_none() {
                dev_null = Some(verified_dev_null(root)?);
            }
            let null = dev_null.as_ref().map(|f| f.as_fd()).ok_or_else(|| mount_err(path, "no /dev/null"))?;
            clone_tree(null, false).map_err(|e| mount_err(path, format!("clone /dev/null: {e}")))?
        };
        move_mount_onto(mnt.as_fd(), target.as_fd()).map_err(|e| mount_err(path, format!("mask: {e}")))?;
    }
    Ok(())
}

/// Make the mount at `path` (a mount root, e.g. `/` or `/dev`) read-only, keeping its other
/// flags (mount_setattr changes only the attribute asked for).
pub fn make_readonly(root: BorrowedFd, path: &Path) -> Result<()> {
    let fd = open_in_root_raw(root, path, OFlag::O_PATH | OFlag::O_DIRECTORY).map_err(|e| mount_err(path, format!("open: {e}")))?;
    set_attr(fd.as_fd(), false, libc::MOUNT_ATTR_RDONLY, 0, 0).map_err(|e| mount_err(path, format!("remount read-only: {e}")))
}
