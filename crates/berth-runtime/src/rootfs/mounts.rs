//! The spec's `mounts`, mounted one by one inside the root before pivot.
//!
//! Targets are resolved in the root (safe_path) and mounted through their fd: bind mounts
//! with open_tree + mount_setattr + move_mount (so a read-only bind is never writable, even
//! for an instant), new filesystems with mount(2) on `/proc/self/fd/N` (the host's /proc,
//! which the container cannot touch yet), then re-opened to check that the mount landed.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use oci_spec::runtime::Mount;

use super::mount_fd::{clone_tree, mount_onto, move_mount_onto, set_attr, set_propagation};
use super::options::MountOptions;
use super::safe_path::{container_path_of, create_file_in_root, file_type, mkdir_all_in_root, mount_id, open_in_root, open_step};
use super::{cgroup_mount, copyup};
use crate::error::{Error, Result};

/// What mounting needs to know besides the mount itself.
pub struct MountEnv<'a> {
    /// O_PATH fd of the root (opened after the root was bound onto itself).
    pub root: BorrowedFd<'a>,
    /// The root's canonical host path.
    pub rootfs: &'a Path,
    /// The container has its own user namespace.
    pub in_user_ns: bool,
    /// The container gets a new network namespace.
    pub new_netns: bool,
    /// The container has a cgroup namespace.
    pub cgroupns: bool,
}

/// Build a mount error naming the destination.
pub fn mount_err(dest: &Path, message: impl Into<String>) -> Error {
    Error::Mount { destination: dest.display().to_string(), message: message.into() }
}

/// Files under /proc that runc allows to be mounted over (lxcfs and friends).
const PROC_ALLOWED: &[&str] = &[
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid",
    "/proc/sys/crypto/fips_enabled",
];

/// Mount one entry of the spec's `mounts`.
pub fn mount_entry(env: &MountEnv, m: &Mount) -> Result<()> {
    let dest = m.destination().as_path();
    if !dest.is_absolute() {
        return Err(mount_err(dest, "the destination must be an absolute path inside the container"));
    }
    if dest.components().any(|c| c == Component::ParentDir) {
        return Err(mount_err(dest, "the destination may not contain '..'"));
    }
    let opts = MountOptions::parse(m.options().as_deref().unwrap_or(&[])).map_err(|e| mount_err(dest, e.to_string()))?;
    if opts.idmap || m.uid_mappings().is_some() || m.gid_mappings().is_some() {
        return Err(Error::Unsupported(format!("mount {}: id-mapped mounts (idmap, ridmap)", dest.display())));
    }
    let typ = m.typ().as_deref().unwrap_or("");
    if opts.is_bind() || typ == "bind" {
        let source = m.source().as_deref().ok_or_else(|| mount_err(dest, "a bind mount needs a source"))?;
        return bind_mount(env, dest, source, &opts);
    }
    match typ {
        "sysfs" if env.in_user_ns && !env.new_netns => {
            // Without its own network namespace a user namespace may not mount sysfs: bind
            // the host's /sys recursively, as runc does.
            let mut o = opts.clone();
            o.flags |= libc::MS_BIND | libc::MS_REC;
            bind_mount(env, dest, Path::new("/sys"), &o)
        }
        "cgroup" | "cgroup2" => cgroup_mount::mount_cgroup(env, dest, typ, &opts),
        "" => Err(mount_err(dest, "the mount has no type and is not a bind mount")),
        _ => {
            let source = m.source().as_deref().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(typ));
            match new_fs_mount(env, dest, &source, typ, &opts) {
                Err(Error::Mount { message, .. }) if typ == "sysfs" && env.in_user_ns && message.contains("EPERM") => {
                    let mut o = opts.clone();
                    o.flags |= libc::MS_BIND | libc::MS_REC;
                    bind_mount(env, dest, Path::new("/sys"), &o)
                }
                r => r.map(drop),
            }
        }
    }
}

/// Open, creating it if needed, a directory that must not be a symlink (proc and sysfs
/// targets: CVE-2019-19921, CVE-2023-27561).
fn real_dir_target(env: &MountEnv, dest: &Path) -> Result<OwnedFd> {
    let (parent, name) = match (dest.parent(), dest.file_name()) {
        (Some(p), Some(n)) => (p, n),
        _ => return Err(mount_err(dest, "cannot mount proc or sysfs on the root itself")),
    };
    let parent = mkdir_all_in_root(env.root, parent, Mode::from_bits_truncate(0o755))?;
    let open = |parent: BorrowedFd, name: &OsStr| open_step(parent, name);
    let fd = match open(parent.as_fd(), name) {
        Ok(fd) => fd,
        Err(nix::Error::ENOENT) => {
            nix::sys::stat::mkdirat(&parent, name, Mode::from_bits_truncate(0o755))
                .or_else(|e| if e == nix::Error::EEXIST { Ok(()) } else { Err(e) })
                .map_err(|e| mount_err(dest, format!("create the mount point: {e}")))?;
            open(parent.as_fd(), name).map_err(|e| mount_err(dest, format!("open the mount point: {e}")))?
        }
        Err(e) => return Err(mount_err(dest, format!("open the mount point: {e}"))),
    };
    match file_type(fd.as_fd()) {
        Ok(libc::S_IFDIR) => Ok(fd),
        Ok(libc::S_IFLNK) => Err(mount_err(dest, format!("mount destination {} is a symlink", dest.display()))),
        Ok(_) => Err(mount_err(dest, format!("mount destination {} is not a directory", dest.display()))),
        Err(e) => Err(mount_err(dest, format!("stat the mount point: {e}"))),
    }
}

/// runc's checkProcMount on the resolved destination: nothing may be mounted on /proc but a
/// procfs, and under /proc only over a few files that lxcfs emulates.
fn check_proc_destination(resolved: &Path, dest: &Path, typ: &str, source_is_procfs: bool) -> Result<()> {
    let Ok(rest) = resolved.strip_prefix("/proc") else { return Ok(()) };
    if rest.as_os_str().is_empty() {
        if typ == "proc" || source_is_procfs {
            return Ok(());
        }
        return Err(mount_err(dest, format!("{} cannot be mounted because it is not of type proc", resolved.display())));
    }
    if PROC_ALLOWED.iter().any(|p| Path::new(p) == resolved) {
        return Ok(());
    }
    Err(mount_err(dest, format!("{} cannot be mounted because it is inside /proc", resolved.display())))
}

fn is_procfs(fd: BorrowedFd) -> bool {
    nix::sys::statfs::fstatfs(fd).map(|s| s.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC).unwrap_or(false)
}

/// Bind `source` (a host path) onto `dest` in the root, then apply flags and propagation.
pub fn bind_mount(env: &MountEnv, dest: &Path, source: &Path, opts: &MountOptions) -> Result<()> {
    let src = nix::fcntl::open(source, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| mount_err(dest, format!("open bind source {}: {e}", source.display())))?;
    let src_is_dir = file_type(src.as_fd()).map_err(|e| mount_err(dest, format!("stat {}: {e}", source.display())))? == libc::S_IFDIR;
    let target = if src_is_dir {
        mkdir_all_in_root(env.root, dest, Mode::from_bits_truncate(0o755))
    } else {
        create_file_in_root(env.root, dest, Mode::from_bits_truncate(0o644))
    }
    .map_err(|e| mount_err(dest, format!("create the mount point: {e}")))?;
    let target_is_dir = file_type(target.as_fd()).map_err(|e| mount_err(dest, format!("stat: {e}")))? == libc::S_IFDIR;
    if src_is_dir != target_is_dir {
        return Err(mount_err(dest, format!("cannot bind a {} onto a {}", kind(src_is_dir), kind(target_is_dir))));
    }
    let resolved = container_path_of(target.as_fd(), env.rootfs)?;
    check_proc_destination(&resolved, dest, "bind", is_procfs(src.as_fd()))?;
    let tree = clone_tree(src.as_fd(), opts.is_recursive_bind())
        .map_err(|e| mount_err(dest, format!("clone mount of {}: {e}", source.display())))?;
    apply_attrs(env, dest, tree.as_fd(), opts)?;
    move_mount_onto(tree.as_fd(), target.as_fd()).map_err(|e| mount_err(dest, format!("bind {}: {e}", source.display())))?;
    apply_propagation(dest, tree.as_fd(), opts)
}

fn kind(dir: bool) -> &'static str {
    if dir {
        "directory"
    } else {
        "non-directory"
    }
}

/// Per-mount attributes on the top mount, then the recursive `r*` attributes.
fn apply_attrs(env: &MountEnv, dest: &Path, mnt: BorrowedFd, opts: &MountOptions) -> Result<()> {
    let (set, clr) = opts.bind_attrs();
    if set | clr != 0 {
        let r = set_attr(mnt, false, set, clr, 0);
        // In a user namespace the flags of the source may be locked: keep them, as runc does.
        let r = match r {
            Err(nix::Error::EPERM) if env.in_user_ns && clr != 0 => set_attr(mnt, false, set, clr & libc::MOUNT_ATTR__ATIME, 0)
                .or_else(|_| set_attr(mnt, false, set & !libc::MOUNT_ATTR__ATIME, 0, 0)),
            r => r,
        };
        r.map_err(|e| mount_err(dest, format!("set mount flags: {e}")))?;
    }
    if opts.rec_attr_set | opts.rec_attr_clr != 0 {
        set_attr(mnt, true, opts.rec_attr_set, opts.rec_attr_clr, 0)
            .map_err(|e| mount_err(dest, format!("set recursive mount attributes: {e}")))?;
    }
    Ok(())
}

fn apply_propagation(dest: &Path, mnt: BorrowedFd, opts: &MountOptions) -> Result<()> {
    for p in &opts.propagation {
        set_propagation(mnt, *p).map_err(|e| mount_err(dest, format!("set propagation: {e}")))?;
    }
    Ok(())
}

/// Mount a new filesystem of type `typ` on `dest` and return an O_PATH fd on its root.
pub fn new_fs_mount(env: &MountEnv, dest: &Path, source: &Path, typ: &str, opts: &MountOptions) -> Result<OwnedFd> {
    let target = if typ == "proc" || typ == "sysfs" {
        real_dir_target(env, dest)?
    } else {
        mkdir_all_in_root(env.root, dest, Mode::from_bits_truncate(0o755))
            .map_err(|e| mount_err(dest, format!("create the mount point: {e}")))?
    };
    let resolved = container_path_of(target.as_fd(), env.rootfs)?;
    check_proc_destination(&resolved, dest, typ, false)?;
    let before = mount_id(target.as_fd()).map_err(|e| mount_err(dest, format!("statx: {e}")))?;
    // The old content, still reachable through this fd once the tmpfs covers it.
    let copy_from = if opts.tmpcopyup && typ == "tmpfs" {
        Some(
            super::safe_path::openat2(target.as_fd(), Path::new("."), OFlag::O_RDONLY | OFlag::O_DIRECTORY, 0, 0)
                .map_err(|e| mount_err(dest, format!("open for tmpcopyup: {e}")))?,
        )
    } else {
        None
    };
    let mut flags = opts.mount_flags();
    if copy_from.is_some() {
        flags &= !libc::MS_RDONLY;
    }
    let data = opts.data_string();
    mount_onto(Some(source), target.as_fd(), Some(typ), flags, Some(&data))
        .map_err(|e| mount_err(dest, format!("mount {typ} (source {}, data {data:?}): {}", source.display(), errno_name(e))))?;
    let mounted = open_in_root(env.root, &resolved, OFlag::O_PATH | OFlag::O_DIRECTORY)
        .map_err(|e| mount_err(dest, format!("re-open after mounting: {e}")))?;
    if flags & libc::MS_REMOUNT == 0 {
        let after = mount_id(mounted.as_fd()).map_err(|e| mount_err(dest, format!("statx: {e}")))?;
        if after == before {
            return Err(mount_err(dest, "the new mount is not at the destination (was it moved during the mount?)"));
        }
    }
    if let Some(old) = copy_from {
        copyup::copy_dir_contents(old.as_fd(), mounted.as_fd(), !data.contains("mode="))
            .map_err(|e| mount_err(dest, format!("tmpcopyup: {e}")))?;
        if opts.flags & libc::MS_RDONLY != 0 {
            set_attr(mounted.as_fd(), false, libc::MOUNT_ATTR_RDONLY, 0, 0)
                .map_err(|e| mount_err(dest, format!("make read-only after tmpcopyup: {e}")))?;
        }
    }
    if opts.rec_attr_set | opts.rec_attr_clr != 0 {
        set_attr(mounted.as_fd(), true, opts.rec_attr_set, opts.rec_attr_clr, 0)
            .map_err(|e| mount_err(dest, format!("set recursive mount attributes: {e}")))?;
    }
    apply_propagation(dest, mounted.as_fd(), opts)?;
    Ok(mounted)
}

/// `EPERM: Operation not permitted` style text, so callers can match on the name.
fn errno_name(e: nix::Error) -> String {
    format!("{e:?}: {}", e.desc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_destination_rules_follow_runc() {
        let d = Path::new("/x");
        assert!(check_proc_destination(Path::new("/proc"), d, "proc", false).is_ok());
        assert!(check_proc_destination(Path::new("/proc"), d, "tmpfs", false).is_err());
        assert!(check_proc_destination(Path::new("/proc"), d, "bind", true).is_ok());
        assert!(check_proc_destination(Path::new("/proc/cpuinfo"), d, "bind", false).is_ok());
        assert!(check_proc_destination(Path::new("/proc/self"), d, "bind", false).is_err());
        assert!(check_proc_destination(Path::new("/procfoo"), d, "tmpfs", false).is_ok());
        assert!(check_proc_destination(Path::new("/data"), d, "tmpfs", false).is_ok());
    }
}
