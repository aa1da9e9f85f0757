//! Device nodes in the container's /dev, its standard symlinks and /dev/ptmx.
//!
//! As in runc, nothing is created when /dev is a bind mount. In a user namespace mknod is
//! impossible, so each device is an empty file with the host's node bound over it.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Component, Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, SFlag};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::mount_fd::{clone_tree, move_mount_onto};
use super::safe_path::{create_file_in_root, mkdir_all_in_root};
use crate::error::{Error, Result};

/// One node to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNode {
    /// Absolute path in the container.
    pub path: PathBuf,
    /// `S_IFCHR`, `S_IFBLK` or `S_IFIFO`.
    pub kind: SFlag,
    /// Major number.
    pub major: u64,
    /// Minor number.
    pub minor: u64,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// The devices every container gets (runc's default list).
pub fn default_devices() -> Vec<DeviceNode> {
    [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)]
        .into_iter()
        .map(|(name, major, minor)| DeviceNode {
            path: Path::new("/dev").join(name),
            kind: SFlag::S_IFCHR,
            major,
            minor,
            mode: 0o666,
            uid: 0,
            gid: 0,
        })
        .collect()
}

/// Convert a `linux.devices` entry, validating it.
pub fn from_spec(d: &LinuxDevice) -> Result<DeviceNode> {
    let path = d.path().clone();
    let bad = |m: &str| Error::InvalidConfig(format!("device {}: {m}", path.display()));
    if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) || path.file_name().is_none() {
        return Err(bad("the path must be absolute, without '..'"));
    }
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        LinuxDeviceType::A => return Err(bad("type 'a' is not a device node type")),
    };
    let major = u64::try_from(d.major()).map_err(|_| bad("negative major number"))?;
    let minor = u64::try_from(d.minor()).map_err(|_| bad("negative minor number"))?;
    Ok(DeviceNode {
        path,
        kind,
        major,
        minor,
        mode: d.file_mode().unwrap_or(0o666) & 0o7777,
        uid: d.uid().unwrap_or(0),
        gid: d.gid().unwrap_or(0),
    })
}

/// The defaults plus the spec's devices; a spec entry replaces a default of the same path.
pub fn device_list(spec_devices: &[LinuxDevice]) -> Result<Vec<DeviceNode>> {
    let mut from = spec_devices.iter().map(from_spec).collect::<Result<Vec<_>>>()?;
    let mut list: Vec<DeviceNode> = default_devices().into_iter().filter(|d| !from.iter().any(|s| s.path == d.path)).collect();
    list.append(&mut from);
    Ok(list)
}

/// Create the device nodes (or bind the host's in a user namespace) inside `root`.
pub fn create_devices(root: BorrowedFd, devices: &[DeviceNode], in_user_ns: bool) -> Result<()> {
    // SAFETY: umask only swaps the process mask; the init is single-threaded here.
    let old = unsafe { libc::umask(0) };
    let r = devices.iter().try_for_each(|d| create_device(root, d, in_user_ns));
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    r
}

fn dev_err(d: &DeviceNode, m: impl std::fmt::Display) -> Error {
    Error::Mount { destination: d.path.display().to_string(), message: format!("device node: {m}") }
}

fn create_device(root: BorrowedFd, d: &DeviceNode, in_user_ns: bool) -> Result<()> {
    if in_user_ns {
        return bind_host_device(root, d);
    }
    let (Some(parent), Some(name)) = (d.path.parent(), d.path.file_name()) else {
        return Err(dev_err(d, "no file name"));
    };
    let dir = mkdir_all_in_root(root, parent, Mode::from_bits_truncate(0o755))?;
    let dev = nix::sys::stat::makedev(d.major, d.minor);
    match nix::sys::stat::mknodat(&dir, name, d.kind, Mode::from_bits_truncate(d.mode), dev) {
        Ok(()) => {}
        // An existing node (or anything else) is left as it is, like runc.
        Err(nix::Error::EEXIST) => return Ok(()),
        Err(e) => return Err(dev_err(d, format!("mknod: {e}"))),
    }
    nix::unistd::fchownat(&dir, name, Some(d.uid.into()), Some(d.gid.into()), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(|e| dev_err(d, format!("chown: {e}")))
}

fn bind_host_device(root: BorrowedFd, d: &DeviceNode) -> Result<()> {
    let host = nix::fcntl::open(&d.path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| dev_err(d, format!("open the host's {}: {e}", d.path.display())))?;
    let target = create_file_in_root(root, &d.path, Mode::from_bits_truncate(0o644))?;
    let tree = clone_tree(host.as_fd(), false).map_err(|e| dev_err(d, format!("clone mount: {e}")))?;
    move_mount_onto(tree.as_fd(), target.as_fd()).map_err(|e| dev_err(d, format!("bind the host device: {e}")))
}

/// `/dev/fd`, `/dev/std{in,out,err}` and (if the host has it) `/dev/core`; existing entries
/// are kept. With a devpts at /dev/pts, `/dev/ptmx` becomes a symlink to `pts/ptmx`.
pub fn create_dev_symlinks(root: BorrowedFd, devpts: bool) -> Result<()> {
    let dev = mkdir_all_in_root(root, Path::new("/dev"), Mode::from_bits_truncate(0o755))?;
    let mut links =
        vec![("/proc/self/fd", "fd"), ("/proc/self/fd/0", "stdin"), ("/proc/self/fd/1", "stdout"), ("/proc/self/fd/2", "stderr")];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    for (target, name) in links {
        match nix::unistd::symlinkat(target, &dev, name) {
            Ok(()) | Err(nix::Error::EEXIST) => {}
            Err(e) => return Err(Error::Mount { destination: format!("/dev/{name}"), message: format!("symlink: {e}") }),
        }
    }
    if devpts {
        let ptmx_err = |m: String| Error::Mount { destination: "/dev/ptmx".into(), message: m };
        match nix::unistd::unlinkat(&dev, "ptmx", nix::unistd::UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(nix::Error::ENOENT) => {}
            Err(e) => return Err(ptmx_err(format!("remove: {e}"))),
        }
        nix::unistd::symlinkat("pts/ptmx", &dev, "ptmx").map_err(|e| ptmx_err(format!("symlink to pts/ptmx: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_devices_replace_defaults_and_are_validated() {
        let fuse: LinuxDevice =
            serde_json::from_str(r#"{"path":"/dev/fuse","type":"c","major":10,"minor":229,"fileMode":8630,"uid":0,"gid":0}"#).unwrap();
        let null: LinuxDevice = serde_json::from_str(r#"{"path":"/dev/null","type":"c","major":1,"minor":3,"fileMode":438}"#).unwrap();
        let list = device_list(&[fuse, null]).unwrap();
        assert_eq!(list.len(), 7);
        let f = list.iter().find(|d| d.path == Path::new("/dev/fuse")).unwrap();
        assert_eq!((f.major, f.minor, f.mode), (10, 229, 0o666));
        assert_eq!(list.iter().filter(|d| d.path == Path::new("/dev/null")).count(), 1);
        let bad: LinuxDevice = serde_json::from_str(r#"{"path":"dev/../x","type":"c","major":1,"minor":3}"#).unwrap();
        assert!(from_spec(&bad).is_err());
        let neg: LinuxDevice = serde_json::from_str(r#"{"path":"/dev/x","type":"b","major":-1,"minor":3}"#).unwrap();
        assert!(from_spec(&neg).is_err());
    }
}
