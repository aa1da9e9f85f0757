//! `linux.sysctl`: written under `/proc/sys` from inside the container.
//!
//! Only namespaced sysctls are accepted, as in runc: `kernel.msg*`, `kernel.sem`, `kernel.shm*`
//! and `fs.mqueue.*` (IPC namespace), `net.*` (network namespace), `kernel.hostname` and
//! `kernel.domainname` (UTS namespace). Keys are written through an fd of `/proc/sys` checked to
//! be a procfs, with openat2 so that no symlink or mount crossing can redirect the write.

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::error::{Error, Result};
use crate::rootfs::safe_path::openat2;

/// Which namespaces the container has (new or joined), as the sysctl rules need them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SysctlNamespaces {
    /// An IPC namespace of its own.
    pub ipc: bool,
    /// A network namespace of its own.
    pub net: bool,
    /// A UTS namespace of its own.
    pub uts: bool,
}

impl SysctlNamespaces {
    /// From the resolved namespace plan (new or joined by path).
    pub fn from_plan(plan: &crate::namespaces::NamespacePlan) -> Self {
        use oci_spec::runtime::LinuxNamespaceType as T;
        SysctlNamespaces { ipc: plan.has(T::Ipc), net: plan.has(T::Network), uts: plan.has(T::Uts) }
    }
}

fn invalid(key: &str, why: &str) -> Error {
    Error::InvalidConfig(format!("sysctl {key:?}: {why}"))
}

/// Check a key and return its path relative to `/proc/sys`. Keys use dots (`net.ipv4.ip_forward`)
/// or slashes (`net/ipv4/conf/eth0.100/forwarding`, where dots belong to a name) as in sysctl(8).
pub fn key_path(key: &str, ns: SysctlNamespaces) -> Result<PathBuf> {
    if key.is_empty() || key.contains('\0') {
        return Err(invalid(key, "empty key or NUL byte"));
    }
    let parts: Vec<&str> = if key.contains('/') { key.split('/').collect() } else { key.split('.').collect() };
    if parts.iter().any(|p| p.is_empty() || *p == "." || *p == "..") {
        return Err(invalid(key, "empty, '.' or '..' component"));
    }
    let dotted = parts.join(".");
    let allowed = match parts[0] {
        "kernel" => {
            let name = parts.get(1).copied().unwrap_or("");
            if parts.len() == 2 && (name == "hostname" || name == "domainname") {
                if !ns.uts {
                    return Err(invalid(key, "needs a UTS namespace"));
                }
                true
            } else if parts.len() == 2 && (name.starts_with("msg") || name == "sem" || name.starts_with("shm")) {
                if !ns.ipc {
                    return Err(invalid(key, "needs an IPC namespace"));
                }
                true
            } else {
                false
            }
        }
        "fs" if parts.get(1) == Some(&"mqueue") && parts.len() > 2 => {
            if !ns.ipc {
                return Err(invalid(key, "needs an IPC namespace"));
            }
            true
        }
        "net" if parts.len() > 1 => {
            if !ns.net {
                return Err(invalid(key, "net.* sysctls need a network namespace"));
            }
            true
        }
        _ => false,
    };
    if !allowed {
        return Err(invalid(&dotted, "not a namespaced sysctl: it would change the host"));
    }
    Ok(parts.iter().collect())
}

/// Write every sysctl of `map` (sorted by key) under `/proc/sys`. Call after pivot, with the
/// container's /proc mounted.
pub fn apply(map: &HashMap<String, String>, plan: &crate::namespaces::NamespacePlan) -> Result<()> {
    apply_with(map, SysctlNamespaces::from_plan(plan))
}

/// [`apply`] with the namespaces given directly.
pub fn apply_with(map: &HashMap<String, String>, ns: SysctlNamespaces) -> Result<()> {
    if map.is_empty() {
        return Ok(());
    }
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    // Validate everything before writing anything.
    let paths = keys.iter().map(|k| key_path(k, ns)).collect::<Result<Vec<_>>>()?;
    // The clone stays alive (and attached to nothing) while the keys are written.
    let (_clone, sys) = open_proc_sys(Path::new("/proc"))?;
    for (key, rel) in keys.iter().zip(paths) {
        let value = &map[*key];
        write_key(sys.as_fd(), &rel, value).map_err(|e| invalid(key, &format!("write {value:?}: {e}")))?;
    }
    Ok(())
}

/// `sys` of a detached, non-recursive clone of the procfs at `proc`: the submounts the config
/// put under /proc (the read-only bind of `readonlyPaths`, masks) are not in the clone, so
/// the write reaches procfs itself, and nothing mounted over /proc/sys can redirect it.
fn open_proc_sys(proc: &Path) -> Result<(OwnedFd, OwnedFd)> {
    let fail = |what: &str, e: nix::Error| Error::InvalidConfig(format!("sysctl: {what} {}: {e}", proc.display()));
    let fd = nix::fcntl::open(proc, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).map_err(|e| fail("open", e))?;
    let clone = crate::rootfs::mount_fd::clone_tree(fd.as_fd(), false).map_err(|e| fail("clone the mount of", e))?;
    let resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS | libc::RESOLVE_NO_XDEV;
    let sys =
        openat2(clone.as_fd(), Path::new("sys"), OFlag::O_PATH | OFlag::O_DIRECTORY, 0, resolve).map_err(|e| fail("open sys in", e))?;
    let st = nix::sys::statfs::fstatfs(&sys).map_err(|e| fail("statfs", e))?;
    if st.filesystem_type() != nix::sys::statfs::PROC_SUPER_MAGIC {
        return Err(Error::InvalidConfig(format!("sysctl: {} is not a procfs", proc.display())));
    }
    Ok((clone, sys))
}

fn write_key(sys: std::os::fd::BorrowedFd, rel: &Path, value: &str) -> std::result::Result<(), String> {
    let resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS | libc::RESOLVE_NO_XDEV;
    let fd = openat2(sys, rel, OFlag::O_WRONLY | OFlag::O_TRUNC | OFlag::O_NOCTTY, 0, resolve).map_err(|e| e.to_string())?;
    std::fs::File::from(fd).write_all(value.as_bytes()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: SysctlNamespaces = SysctlNamespaces { ipc: true, net: true, uts: true };

    #[test]
    fn namespaced_keys_map_to_paths() {
        assert_eq!(key_path("net.ipv4.ip_forward", ALL).unwrap(), Path::new("net/ipv4/ip_forward"));
        assert_eq!(key_path("kernel.shmmax", ALL).unwrap(), Path::new("kernel/shmmax"));
        assert_eq!(key_path("kernel.msgmax", ALL).unwrap(), Path::new("kernel/msgmax"));
        assert_eq!(key_path("kernel.sem", ALL).unwrap(), Path::new("kernel/sem"));
        assert_eq!(key_path("fs.mqueue.msg_max", ALL).unwrap(), Path::new("fs/mqueue/msg_max"));
        assert_eq!(key_path("kernel.hostname", ALL).unwrap(), Path::new("kernel/hostname"));
        assert_eq!(key_path("net/ipv4/conf/eth0.100/forwarding", ALL).unwrap(), Path::new("net/ipv4/conf/eth0.100/forwarding"));
    }

    #[test]
    fn host_wide_and_escaping_keys_are_rejected() {
        for k in ["kernel.pid_max", "vm.swappiness", "kernel.shmmax.x", "net..x", "net/../kernel/x", "/net/x", "", "fs.file-max", "kernel"]
        {
            assert!(key_path(k, ALL).is_err(), "{k} accepted");
        }
    }

    #[test]
    fn keys_need_their_namespace() {
        let none = SysctlNamespaces::default();
        assert!(key_path("net.ipv4.ip_forward", none).is_err());
        assert!(key_path("kernel.hostname", none).is_err());
        assert!(key_path("kernel.msgmax", none).is_err());
        assert!(key_path("fs.mqueue.msg_max", SysctlNamespaces { ipc: true, ..none }).is_ok());
    }

    #[test]
    fn apply_writes_nothing_when_a_key_is_invalid() {
        let map: HashMap<String, String> = [("kernel.pid_max".to_string(), "1".to_string())].into();
        assert!(apply_with(&map, ALL).is_err());
        assert!(apply_with(&HashMap::new(), SysctlNamespaces::default()).is_ok());
    }
}
