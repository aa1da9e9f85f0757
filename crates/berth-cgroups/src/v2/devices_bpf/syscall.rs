//! The few bpf(2) commands a device filter needs, through raw `syscall(SYS_bpf, …)`.
//!
//! Each attribute struct is the prefix of the kernel's `union bpf_attr` that the command
//! reads; the kernel zero-fills the rest of the union when the size passed is smaller.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::program::BpfInsn;

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_PROG_QUERY: libc::c_int = 16;

const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
/// Several programs may be attached; a device access needs all of them to allow it.
const BPF_F_ALLOW_MULTI: u32 = 2;

/// Verifier log size used when a load fails and is retried to get the reason.
const LOG_SIZE: usize = 256 * 1024;

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct ProgQueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdByIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// Calls bpf(2) with `attr`, retrying on EINTR; returns the non-negative result.
fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    loop {
        // SAFETY: `attr` is a live, exclusively borrowed repr(C) prefix of union bpf_attr for
        // `cmd`, and its exact size is passed; any pointer inside it (instructions, license,
        // log, id array) is set by the caller to a buffer that outlives this call.
        let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T as *mut libc::c_void, std::mem::size_of::<T>() as libc::c_uint) };
        if r >= 0 {
            return Ok(r);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// Takes ownership of a file descriptor returned by bpf(2).
fn owned_fd(r: libc::c_long) -> io::Result<OwnedFd> {
    let fd = libc::c_int::try_from(r).map_err(|_| io::Error::other(format!("bpf(2) returned {r}, not an fd")))?;
    // SAFETY: the kernel just returned `fd` as a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Why a load failed: the errno, and the verifier's log when it has something to say.
#[derive(Debug)]
pub struct LoadError {
    /// The error of the failed BPF_PROG_LOAD.
    pub source: io::Error,
    /// The verifier log of the retry with logging on (trimmed; may be empty).
    pub log: String,
}

/// Loads `insns` as a cgroup device program named `name`.
///
/// The first try has no log (cheaper); a failure is retried with a log to explain it. On
/// kernels before 5.11 BPF memory counts against RLIMIT_MEMLOCK, so EPERM raises it once,
/// as runc does; newer kernels charge the memory cgroup instead.
pub fn load_device_program(insns: &[BpfInsn], name: &CStr) -> Result<OwnedFd, LoadError> {
    match load(insns, name, None) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
            // SAFETY: setrlimit reads a valid rlimit struct; failure (no CAP_SYS_RESOURCE) is fine.
            unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
            if let Ok(fd) = load(insns, name, None) {
                return Ok(fd);
            }
        }
        Err(_) => {}
    }
    let mut log = vec![0u8; LOG_SIZE];
    match load(insns, name, Some(&mut log)) {
        // Loading with a log can succeed where the first try hit a transient error.
        Ok(fd) => Ok(fd),
        Err(source) => {
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            let log = String::from_utf8_lossy(&log[..end]).trim().to_string();
            Err(LoadError { source, log })
        }
    }
}

fn load(insns: &[BpfInsn], name: &CStr, log: Option<&mut [u8]>) -> io::Result<OwnedFd> {
    // Any license will do: the program calls no GPL-only helper.
    const LICENSE: &CStr = c"Apache-2.0";
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: u32::try_from(insns.len()).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?,
        insns: insns.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        ..Default::default()
    };
    let bytes = name.to_bytes();
    let n = bytes.len().min(attr.prog_name.len() - 1);
    attr.prog_name[..n].copy_from_slice(&bytes[..n]);
    if let Some(buf) = log {
        attr.log_level = 1;
        attr.log_size = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        attr.log_buf = buf.as_mut_ptr() as u64;
    }
    owned_fd(bpf(BPF_PROG_LOAD, &mut attr)?)
}

/// Attaches `prog` to the cgroup `cgroup` with BPF_F_ALLOW_MULTI.
pub fn attach(cgroup: &OwnedFd, prog: &OwnedFd) -> io::Result<()> {
    let mut attr = ProgAttachAttr {
        target_fd: fd_u32(cgroup),
        attach_bpf_fd: fd_u32(prog),
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map(drop)
}

/// Detaches `prog` from the cgroup `cgroup`.
pub fn detach(cgroup: &OwnedFd, prog: &OwnedFd) -> io::Result<()> {
    let mut attr =
        ProgAttachAttr { target_fd: fd_u32(cgroup), attach_bpf_fd: fd_u32(prog), attach_type: BPF_CGROUP_DEVICE, attach_flags: 0 };
    bpf(BPF_PROG_DETACH, &mut attr).map(drop)
}

/// The ids of the device programs attached to the cgroup itself (not inherited ones).
pub fn query_attached(cgroup: &OwnedFd) -> io::Result<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    // ENOSPC says how many there are; the list can grow in between, so try a few times.
    for _ in 0..10 {
        let mut attr = ProgQueryAttr {
            target_fd: fd_u32(cgroup),
            attach_type: BPF_CGROUP_DEVICE,
            prog_ids: ids.as_mut_ptr() as u64,
            prog_cnt: u32::try_from(ids.len()).unwrap_or(u32::MAX),
            ..Default::default()
        };
        match bpf(BPF_PROG_QUERY, &mut attr) {
            Ok(_) => {
                ids.truncate(attr.prog_cnt as usize);
                return Ok(ids);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                ids = vec![0u32; (attr.prog_cnt as usize).max(ids.len()) * 2];
            }
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("the list of attached programs kept growing"))
}

/// An fd for the loaded program with id `id`.
pub fn prog_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    let mut attr = GetFdByIdAttr { prog_id: id, ..Default::default() };
    owned_fd(bpf(BPF_PROG_GET_FD_BY_ID, &mut attr)?)
}

fn fd_u32(fd: &OwnedFd) -> u32 {
    // Open descriptors are never negative.
    fd.as_raw_fd() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rejected_program_comes_back_with_the_verifier_log() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: loading BPF programs needs root");
            return;
        }
        // "w0 = 0" and no exit: the verifier refuses to fall off the end.
        let insns = [BpfInsn { code: 0xb4, regs: 0, off: 0, imm: 0 }];
        let err = load_device_program(&insns, c"berth_bad").unwrap_err();
        assert_eq!(err.source.raw_os_error(), Some(libc::EINVAL), "{err:?}");
        assert!(!err.log.is_empty(), "{err:?}");
    }
}
