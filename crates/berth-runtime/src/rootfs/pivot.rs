//! Making the rootfs the process's `/`: pivot_root(".", ".") like runc, or MS_MOVE + chroot.

use std::os::fd::OwnedFd;
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::mount_fd::mount_path;
use crate::error::{Context, Result};

fn open_dir(path: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(path, OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        .with_context(|| format!("open {}", path.display()))
}

/// pivot_root into `rootfs` stacking the old root on top of the new one, then detach it.
/// This needs no put_old directory in the container's root, which may be read-only.
pub fn pivot_root(rootfs: &Path) -> Result<()> {
    let old_root = open_dir(Path::new("/"))?;
    let new_root = open_dir(rootfs)?;
    nix::unistd::fchdir(&new_root).with_context(|| format!("chdir to {}", rootfs.display()))?;
    nix::unistd::pivot_root(".", ".").with_context(|| format!("pivot_root to {}", rootfs.display()))?;
    // The old root is now mounted on top of "." (the new root); our cwd is still the new root.
    nix::unistd::fchdir(&old_root).context("chdir to the old root")?;
    // Make the old root a slave before detaching it, so that the unmount cannot propagate
    // to the host's mounts.
    mount_path(None, Path::new("."), None, libc::MS_SLAVE | libc::MS_REC, None).context("make the old root rslave")?;
    nix::mount::umount2(".", nix::mount::MntFlags::MNT_DETACH).context("detach the old root")?;
    nix::unistd::chdir("/").context("chdir to the new root")?;
    Ok(())
}

/// `--no-pivot`: move the rootfs mount over `/` and chroot into it (the old root stays
/// reachable to a process that can escape the chroot: this is what --no-pivot means).
pub fn move_root(rootfs: &Path) -> Result<()> {
    nix::unistd::chdir(rootfs).with_context(|| format!("chdir to {}", rootfs.display()))?;
    mount_path(Some(rootfs), Path::new("/"), None, libc::MS_MOVE, None).with_context(|| format!("move {} to /", rootfs.display()))?;
    nix::unistd::chroot(".").context("chroot into the rootfs")?;
    nix::unistd::chdir("/").context("chdir to the new root")?;
    Ok(())
}
