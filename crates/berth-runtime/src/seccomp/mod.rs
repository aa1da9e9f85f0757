//! The OCI `linux.seccomp` object: compile it to classic BPF, cache it, install it, and hand
//! the user-notification fd to the seccomp agent.
//!
//! Semantics follow the runtime spec (config-linux.md#seccomp) and runc:
//! - `defaultAction` / `defaultErrnoRet`; `SCMP_ACT_ERRNO` and `SCMP_ACT_TRACE` without an
//!   `errnoRet` return `EPERM`. `errnoRet` on other actions is ignored, as runc does.
//! - `architectures` are added to the filter; the native architecture is always included.
//! - A syscall name that libseccomp does not know on any architecture is **ignored** with a
//!   debug log (runc does the same) so that one profile works across kernels, libseccomp
//!   versions and architectures. A name only known on a foreign architecture of the filter
//!   (e.g. `_llseek` on x86_64) applies to that architecture only.
//! - A rule whose action equals the default action is skipped (libseccomp refuses it).
//! - Several `args` on one rule are ANDed; when two of them test the same argument index the
//!   rule is split into one rule per condition (ORed), runc's behaviour that docker's
//!   `personality` rules rely on. `SCMP_CMP_MASKED_EQ` uses `value` as the mask and
//!   `valueTwo` as the expected value.
//! - `flags` are passed to the kernel and rejected when the kernel lacks them.
//! - `SCMP_ACT_NOTIFY` needs `listenerPath`; it cannot be the default action, nor apply to
//!   `write` or `sendmsg`, which the init needs to hand the listener fd over (runc refuses
//!   `write` for the same reason). With `SECCOMP_FILTER_FLAG_TSYNC` the kernel needs
//!   `TSYNC_ESRCH`, which is added for it.
//!
//! Speed: libseccomp only *compiles* ([`prepare`]); the program is installed with the raw
//! `seccomp(2)` syscall ([`load`]), and [`prepare_cached`] keeps the compiled program in a
//! content-addressed cache so that later starts skip libseccomp entirely.
//!
//! Order for the caller: [`prepare`] (or [`prepare_cached`]) anywhere before the fork, so
//! that config errors surface early; [`load`] in the init as late as possible, after
//! `no_new_privs` (or while `CAP_SYS_ADMIN` is still held), right before reporting ready.
//! With a notify profile the init sends the returned fd to the parent ([`send_fd`]), which
//! calls [`send_to_listener`] from the runtime's namespaces.

mod cache;
mod compile;
mod install;
mod listener;
mod validate;

#[cfg(test)]
mod tests;

use std::fmt;

pub use cache::prepare_cached;
pub use compile::prepare;
pub use install::load;
pub use listener::{container_process_state, recv_fd, send_fd, send_to_listener};

/// Size of one classic BPF instruction (`struct sock_filter`).
const INSN_SIZE: usize = std::mem::size_of::<libc::sock_filter>();
/// The kernel's limit on the length of one filter program (`BPF_MAXINSNS`).
const MAX_INSNS: usize = 4096;

/// A seccomp filter compiled to classic BPF with the flags to install it with.
#[derive(Clone, PartialEq, Eq)]
pub struct CompiledFilter {
    /// One `struct sock_filter` per element, in native layout (u64 keeps the alignment).
    program: Vec<u64>,
    /// `SECCOMP_FILTER_FLAG_*` bits for `seccomp(SECCOMP_SET_MODE_FILTER)`.
    flags: libc::c_ulong,
}

impl CompiledFilter {
    /// Build from exported BPF bytes; rejects empty, ragged or oversized programs.
    fn from_bpf(bytes: &[u8], flags: libc::c_ulong) -> crate::Result<Self> {
        if bytes.is_empty() || !bytes.len().is_multiple_of(INSN_SIZE) || bytes.len() / INSN_SIZE > MAX_INSNS {
            return Err(crate::Error::InvalidConfig(format!(
                "seccomp: compiled program of {} bytes is not 1..={MAX_INSNS} BPF instructions",
                bytes.len()
            )));
        }
        let program = bytes
            .chunks_exact(INSN_SIZE)
            .map(|c| {
                let mut insn = [0u8; INSN_SIZE];
                insn.copy_from_slice(c);
                u64::from_ne_bytes(insn)
            })
            .collect();
        Ok(Self { program, flags })
    }

    /// The program as bytes (`struct sock_filter` array, native endianness).
    pub fn bpf_bytes(&self) -> Vec<u8> {
        self.program.iter().flat_map(|i| i.to_ne_bytes()).collect()
    }

    /// Number of BPF instructions.
    pub fn instructions(&self) -> usize {
        self.program.len()
    }

    /// The `SECCOMP_FILTER_FLAG_*` bits passed to the kernel.
    pub fn flags(&self) -> libc::c_ulong {
        self.flags
    }

    /// Whether loading returns a user-notification listener fd (`SCMP_ACT_NOTIFY`).
    pub fn uses_notify(&self) -> bool {
        self.flags & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER != 0
    }
}

impl fmt::Debug for CompiledFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledFilter")
            .field("instructions", &self.program.len())
            .field("flags", &format_args!("{:#x}", self.flags))
            .finish()
    }
}
