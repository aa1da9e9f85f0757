//! `linux.resources.devices` on cgroup v2: a BPF_PROG_TYPE_CGROUP_DEVICE program attached
//! to the container's cgroup2 directory (what runc's devices/ebpf and devicefilter do).
//!
//! Semantics (runc's, see [`rules`]): the rules are replayed in order like v1's
//! `devices.allow`/`devices.deny` starting from deny-all; a type `a` rule resets to
//! allow-all or deny-all; every other rule adds or removes access for exactly its device
//! numbers; the last matching rule wins; punching a hole in an earlier wildcard rule is an
//! error. The resulting default and exceptions are assembled by [`program`].
//!
//! Installing replaces the cgroup's device programs without a gap: the new program is
//! attached (BPF_F_ALLOW_MULTI) before the old ones are detached, so for a moment both
//! apply and a device must pass both — stricter, never looser.
//!
//! Hybrid hosts: a device program attaches to any cgroup2 directory, so
//! [`set_device_rules_on_unified`] can add the same filter to a hybrid container's unified
//! directory. The v1 devices controller stays authoritative there; the kernel asks both.

pub mod program;
pub mod rules;
mod syscall;

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxDeviceCgroup;

use crate::error::{Error, Result};
pub use program::BpfInsn;
pub use rules::{Access, DeviceKind, DeviceMatch, DevicePolicy};

/// The program name the kernel shows (`bpftool prog`); at most 15 bytes.
const PROG_NAME: &std::ffi::CStr = c"berth_devices";

/// A device filter compiled from OCI rules, ready to be installed on cgroup2 directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceFilter {
    policy: DevicePolicy,
    insns: Vec<BpfInsn>,
}

impl DeviceFilter {
    /// Validates `rules` and assembles the program; nothing touches the kernel yet.
    pub fn compile(rules: &[LinuxDeviceCgroup]) -> Result<DeviceFilter> {
        let policy = DevicePolicy::from_rules(rules)?;
        let insns = program::assemble(&policy);
        Ok(DeviceFilter { policy, insns })
    }

    /// The default action and the exceptions the program encodes.
    pub fn policy(&self) -> &DevicePolicy {
        &self.policy
    }

    /// The program's instructions.
    pub fn instructions(&self) -> &[BpfInsn] {
        &self.insns
    }

    /// Whether the program lets `access` (MKNOD 1 | READ 2 | WRITE 4) to a device through.
    pub fn allows(&self, kind: DeviceKind, access: Access, major: u32, minor: u32) -> bool {
        program::interpret(&self.insns, kind, access.bits(), major, minor).unwrap_or(false)
    }

    /// Loads the program and makes it the only device program of `cgroup_dir`.
    pub fn install(&self, cgroup_dir: &Path) -> Result<()> {
        let cgroup = open_cgroup(cgroup_dir)?;
        let prog = syscall::load_device_program(&self.insns, PROG_NAME).map_err(|e| {
            let mut msg = format!("device filter: BPF_PROG_LOAD ({} instructions): {}", self.insns.len(), e.source);
            if !e.log.is_empty() {
                msg.push_str("; verifier log:\n");
                msg.push_str(&e.log);
            }
            bpf_error(cgroup_dir, e.source.kind(), msg)
        })?;
        let old = syscall::query_attached(&cgroup).map_err(|e| op_error(cgroup_dir, "BPF_PROG_QUERY (BPF_CGROUP_DEVICE)", e))?;
        syscall::attach(&cgroup, &prog).map_err(|e| op_error(cgroup_dir, "BPF_PROG_ATTACH (BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI)", e))?;
        detach_ids(cgroup_dir, &cgroup, &old)?;
        tracing::debug!(
            cgroup = %cgroup_dir.display(),
            instructions = self.insns.len(),
            exceptions = self.policy.exceptions.len(),
            default_allow = self.policy.default_allow,
            replaced = old.len(),
            "device filter installed"
        );
        Ok(())
    }
}

/// Compiles `rules` and installs them on the cgroup2 directory `cgroup_dir`.
pub fn set_device_rules(cgroup_dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    DeviceFilter::compile(rules)?.install(cgroup_dir)
}

/// Opt-in for hybrid hosts: installs `rules` on the unified directory (key "") of a
/// container's cgroup `paths`, in addition to the v1 devices controller. Returns false
/// (and does nothing) when there is no unified directory.
pub fn set_device_rules_on_unified(paths: &HashMap<String, PathBuf>, rules: &[LinuxDeviceCgroup]) -> Result<bool> {
    let Some(dir) = paths.get("") else { return Ok(false) };
    set_device_rules(dir, rules)?;
    Ok(true)
}

/// The ids of the device programs attached to `cgroup_dir` itself.
pub fn attached_programs(cgroup_dir: &Path) -> Result<Vec<u32>> {
    let cgroup = open_cgroup(cgroup_dir)?;
    syscall::query_attached(&cgroup).map_err(|e| op_error(cgroup_dir, "BPF_PROG_QUERY (BPF_CGROUP_DEVICE)", e))
}

/// Detaches every device program of `cgroup_dir` (removing the directory does it too).
pub fn detach_all(cgroup_dir: &Path) -> Result<()> {
    let cgroup = open_cgroup(cgroup_dir)?;
    let ids = syscall::query_attached(&cgroup).map_err(|e| op_error(cgroup_dir, "BPF_PROG_QUERY (BPF_CGROUP_DEVICE)", e))?;
    detach_ids(cgroup_dir, &cgroup, &ids)
}

fn detach_ids(cgroup_dir: &Path, cgroup: &OwnedFd, ids: &[u32]) -> Result<()> {
    for &id in ids {
        let prog = match syscall::prog_fd_by_id(id) {
            Ok(fd) => fd,
            // Gone since the query: nothing to detach.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(op_error(cgroup_dir, &format!("BPF_PROG_GET_FD_BY_ID {id}"), e)),
        };
        match syscall::detach(cgroup, &prog) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(op_error(cgroup_dir, &format!("BPF_PROG_DETACH of the old device program {id}"), e)),
        }
    }
    Ok(())
}

/// Opens the cgroup directory; bpf(2) wants a real (not O_PATH) directory fd.
fn open_cgroup(dir: &Path) -> Result<OwnedFd> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map(OwnedFd::from)
        .map_err(|source| Error::Io { path: dir.to_path_buf(), source })
}

fn op_error(dir: &Path, op: &str, e: io::Error) -> Error {
    let hint = match e.raw_os_error() {
        Some(libc::EBADF) => " (not a cgroup2 directory?)",
        Some(libc::EPERM) => " (needs CAP_SYS_ADMIN, or CAP_BPF and CAP_NET_ADMIN)",
        _ => "",
    };
    bpf_error(dir, e.kind(), format!("device filter: {op}: {e}{hint}"))
}

fn bpf_error(dir: &Path, kind: io::ErrorKind, msg: String) -> Error {
    Error::Io { path: dir.to_path_buf(), source: io::Error::new(kind, msg) }
}
