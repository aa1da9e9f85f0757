//! `process.rlimits`: setrlimit for each configured resource.

use oci_spec::runtime::{PosixRlimit, PosixRlimitType};

use crate::error::{Error, Result};

/// The kernel's resource number for an rlimit type.
pub fn resource_number(typ: PosixRlimitType) -> libc::c_int {
    let r = match typ {
        PosixRlimitType::RlimitCpu => libc::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => libc::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => libc::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => libc::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => libc::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => libc::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => libc::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => libc::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => libc::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => libc::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => libc::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => libc::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => libc::RLIMIT_RTTIME,
    };
    r as libc::c_int
}

/// Set every rlimit of `rlimits` on the calling process, in order.
///
/// Raising a hard limit above the current one needs CAP_SYS_RESOURCE in the user namespace
/// that owns the process; without it the kernel answers EPERM and the error says so.
pub fn apply(rlimits: &[PosixRlimit]) -> Result<()> {
    for rl in rlimits {
        set_one(rl.typ(), rl.soft(), rl.hard())?;
    }
    Ok(())
}

fn set_one(typ: PosixRlimitType, soft: u64, hard: u64) -> Result<()> {
    if soft > hard {
        return Err(Error::InvalidConfig(format!("rlimit {typ}: soft limit {soft} is above the hard limit {hard}")));
    }
    let resource = resource_number(typ);
    let new = libc::rlimit64 { rlim_cur: soft, rlim_max: hard };
    let mut old = libc::rlimit64 { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: prlimit64 on pid 0 (ourselves) reads `new` and writes `old`, both valid
    // rlimit64 values that live for the whole call.
    let rc = unsafe { libc::prlimit64(0, resource as _, &new, &mut old) };
    if rc == 0 {
        return Ok(());
    }
    let errno = nix::errno::Errno::last();
    let mut context = format!("error setting rlimit {typ} (type {resource}) to soft {soft}, hard {hard}");
    if errno == nix::errno::Errno::EPERM {
        let mut cur = libc::rlimit64 { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: a read-only prlimit64 query into a valid, owned struct.
        if unsafe { libc::prlimit64(0, resource as _, std::ptr::null(), &mut cur) } == 0 {
            context.push_str(&format!(" (the current hard limit is {}; raising it needs CAP_SYS_RESOURCE)", fmt_limit(cur.rlim_max)));
        }
    }
    Err(Error::Sys { context, source: errno })
}

fn fmt_limit(v: u64) -> String {
    if v == libc::RLIM64_INFINITY {
        "unlimited".into()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rlimit_names_map_to_kernel_numbers() {
        assert_eq!(resource_number(PosixRlimitType::RlimitNofile), libc::RLIMIT_NOFILE as i32);
        assert_eq!(resource_number(PosixRlimitType::RlimitRttime), libc::RLIMIT_RTTIME as i32);
        assert_eq!(resource_number(PosixRlimitType::RlimitCpu), 0);
    }

    #[test]
    fn soft_above_hard_is_rejected_before_the_syscall() {
        let err = set_one(PosixRlimitType::RlimitCore, 10, 5).unwrap_err();
        assert!(err.to_string().contains("soft limit 10 is above the hard limit 5"), "{err}");
    }

    #[test]
    fn lowering_the_soft_limit_to_its_current_value_succeeds() {
        let mut cur = libc::rlimit64 { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: read-only query into an owned struct.
        assert_eq!(unsafe { libc::prlimit64(0, libc::RLIMIT_CORE, std::ptr::null(), &mut cur) }, 0);
        set_one(PosixRlimitType::RlimitCore, cur.rlim_cur, cur.rlim_max).unwrap();
    }
}
