//! Install a compiled program with the raw `seccomp(2)` syscall: no libseccomp, no allocation
//! on the success path, so it is safe in a forked child.

use std::os::fd::{FromRawFd, OwnedFd};

use nix::errno::Errno;

use super::CompiledFilter;
use crate::error::{Error, Result};

/// Install `filter` on the calling thread (and its future children). Needs `no_new_privs`
/// or `CAP_SYS_ADMIN`. Returns the user-notification listener fd for `SCMP_ACT_NOTIFY`
/// profiles (close-on-exec, as the kernel creates it).
pub fn load(filter: &CompiledFilter) -> Result<Option<OwnedFd>> {
    let len =
        u16::try_from(filter.program.len()).map_err(|_| Error::InvalidConfig("seccomp: program longer than 65535 instructions".into()))?;
    let prog = libc::sock_fprog {
        len,
        // The kernel only reads the program; u64 elements are 8 bytes, 8-aligned, which
        // satisfies sock_filter's size (8) and alignment (4).
        filter: filter.program.as_ptr() as *mut libc::sock_filter,
    };
    let rc = loop {
        // SAFETY: `prog` points at `len` valid sock_filter instructions that outlive the call;
        // the kernel copies the program before it returns.
        let rc = unsafe { libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, filter.flags, &prog as *const libc::sock_fprog) };
        if rc >= 0 || Errno::last() != Errno::EINTR {
            break rc;
        }
    };
    if rc < 0 {
        let errno = Errno::last();
        let context = match errno {
            Errno::EACCES => "seccomp: install filter (set no_new_privs first, or keep CAP_SYS_ADMIN until seccomp is loaded)",
            Errno::EINVAL => "seccomp: install filter (the kernel rejected the program or its flags)",
            _ => "seccomp: install filter",
        };
        return Err(Error::Sys { context: context.into(), source: errno });
    }
    if filter.uses_notify() {
        let fd = i32::try_from(rc).map_err(|_| Error::Init(format!("seccomp: listener fd {rc} out of range")))?;
        // SAFETY: with NEW_LISTENER a non-negative return is a new fd that we now own.
        return Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }));
    }
    if rc > 0 {
        // With TSYNC (without ESRCH) a positive return is the thread that could not sync.
        return Err(Error::Init(format!("seccomp: install filter: thread {rc} could not be synchronized (TSYNC)")));
    }
    Ok(None)
}
