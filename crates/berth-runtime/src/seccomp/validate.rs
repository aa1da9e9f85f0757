//! Checks on the seccomp object that need no libseccomp, and the kernel flags it asks for.
//!
//! Both the compiling and the cached path run these, so a bad config fails the same way
//! whether or not its program is in the cache.

use libc::c_ulong;
use libseccomp::ScmpAction;
use nix::errno::Errno;
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag};

use crate::error::{Error, Result};

/// Syscalls that may not be notified: the init needs them to hand the listener fd over.
const NOT_NOTIFIABLE: [&str; 2] = ["write", "sendmsg"];

/// Highest syscall argument index (six arguments).
pub(super) const MAX_ARG_INDEX: usize = 5;

/// The libseccomp action for an OCI action; `what` names the rule in errors.
pub(super) fn scmp_action(action: LinuxSeccompAction, errno_ret: Option<u32>, what: &str) -> Result<ScmpAction> {
    let ret = || -> Result<u16> {
        match errno_ret {
            None => Ok(libc::EPERM as u16),
            Some(v) => u16::try_from(v)
                .map_err(|_| Error::InvalidConfig(format!("seccomp: {what}: errnoRet {v} does not fit the 16-bit SECCOMP_RET_DATA"))),
        }
    };
    Ok(match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => ScmpAction::KillThread,
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(i32::from(ret()?)),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(ret()?),
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
    })
}

/// Validate what libseccomp would not (or would only report obscurely) and return the
/// `SECCOMP_FILTER_FLAG_*` bits to install the filter with.
pub(super) fn check(seccomp: &LinuxSeccomp) -> Result<c_ulong> {
    if seccomp.default_action() == LinuxSeccompAction::ScmpActNotify {
        return Err(Error::InvalidConfig("seccomp: SCMP_ACT_NOTIFY cannot be the defaultAction".into()));
    }
    scmp_action(seccomp.default_action(), seccomp.default_errno_ret(), "defaultAction")?;

    let mut notify = false;
    for rule in seccomp.syscalls().iter().flatten() {
        let first = rule.names().first().map(String::as_str).unwrap_or("");
        let what = format!("syscall rule {first:?}");
        scmp_action(rule.action(), rule.errno_ret(), &what)?;
        if rule.names().iter().any(String::is_empty) {
            return Err(Error::InvalidConfig(format!("seccomp: {what}: an empty string is not a syscall name")));
        }
        for arg in rule.args().iter().flatten() {
            if arg.index() > MAX_ARG_INDEX {
                return Err(Error::InvalidConfig(format!(
                    "seccomp: {what}: argument index {} is out of range 0..={MAX_ARG_INDEX}",
                    arg.index()
                )));
            }
        }
        if rule.action() == LinuxSeccompAction::ScmpActNotify && !rule.names().is_empty() {
            if let Some(name) = rule.names().iter().find(|n| NOT_NOTIFIABLE.contains(&n.as_str())) {
                return Err(Error::InvalidConfig(format!(
                    "seccomp: SCMP_ACT_NOTIFY cannot be used for {name:?}: the container init needs it to hand the listener over"
                )));
            }
            notify = true;
        }
    }
    if notify && seccomp.listener_path().as_ref().is_none_or(|p| p.as_os_str().is_empty()) {
        return Err(Error::InvalidConfig("seccomp: SCMP_ACT_NOTIFY requires listenerPath".into()));
    }
    filter_flags(seccomp.flags().as_deref().unwrap_or(&[]), notify)
}

/// Map the OCI flags to kernel bits, checking that the kernel knows each of them.
fn filter_flags(requested: &[LinuxSeccompFilterFlag], notify: bool) -> Result<c_ulong> {
    let mut flags: c_ulong = 0;
    for flag in requested {
        let (bit, name) = match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => (libc::SECCOMP_FILTER_FLAG_TSYNC, "SECCOMP_FILTER_FLAG_TSYNC"),
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => (libc::SECCOMP_FILTER_FLAG_LOG, "SECCOMP_FILTER_FLAG_LOG"),
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => (libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW, "SECCOMP_FILTER_FLAG_SPEC_ALLOW"),
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                if !notify {
                    return Err(Error::InvalidConfig(
                        "seccomp: SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV requires an SCMP_ACT_NOTIFY rule".into(),
                    ));
                }
                (libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV")
            }
        };
        require_kernel_flag(bit, name)?;
        flags |= bit;
    }
    if notify {
        require_kernel_flag(libc::SECCOMP_FILTER_FLAG_NEW_LISTENER, "SECCOMP_FILTER_FLAG_NEW_LISTENER (SCMP_ACT_NOTIFY)")?;
        flags |= libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
        if flags & libc::SECCOMP_FILTER_FLAG_TSYNC != 0 {
            // The listener fd and a TSYNC failure would share the return value; the kernel
            // only accepts both when failures are reported as ESRCH instead.
            require_kernel_flag(
                libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH,
                "SECCOMP_FILTER_FLAG_TSYNC_ESRCH (needed for SECCOMP_FILTER_FLAG_TSYNC with SCMP_ACT_NOTIFY)",
            )?;
            flags |= libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH;
        }
    }
    Ok(flags)
}

/// Fail with `Unsupported` unless the running kernel accepts `bit`.
fn require_kernel_flag(bit: c_ulong, name: &str) -> Result<()> {
    if kernel_supports_flag(bit) {
        Ok(())
    } else {
        Err(Error::Unsupported(format!("seccomp: flag {name} is not supported by this kernel")))
    }
}

/// The kernel checks the flags before it reads the program: a NULL program fails with
/// EFAULT when the flag is known and EINVAL when it is not (libseccomp probes the same way).
fn kernel_supports_flag(bit: c_ulong) -> bool {
    // SAFETY: with a NULL program the kernel installs nothing; it only validates the flags
    // and then fails to copy the (absent) program.
    let rc = unsafe { libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, bit, std::ptr::null::<libc::c_void>()) };
    rc < 0 && Errno::last() == Errno::EFAULT
}
