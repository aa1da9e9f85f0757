//! Per-process kernel knobs: scheduler, I/O priority, personality, oom_score_adj, umask.

use oci_spec::runtime::{
    IOPriorityClass, LinuxIOPriority, LinuxPersonality, LinuxPersonalityDomain, LinuxSchedulerFlag, LinuxSchedulerPolicy, Scheduler,
};

use crate::error::{Context, Error, Result};

/// The umask runc uses when `process.user.umask` is unset.
pub const DEFAULT_UMASK: u32 = 0o022;

/// Set the umask to `umask`, or to 0022 when unset (like runc).
pub fn apply_umask(umask: Option<u32>) -> Result<()> {
    let mask = umask.unwrap_or(DEFAULT_UMASK);
    if mask > 0o777 {
        return Err(Error::InvalidConfig(format!("process.user.umask {mask:#o} is not a permission mask")));
    }
    // SAFETY: umask only changes the calling process's file creation mask; it cannot fail.
    unsafe { libc::umask(mask as libc::mode_t) };
    Ok(())
}

/// Write `value` to /proc/self/oom_score_adj.
///
/// Going below the current minimum needs CAP_SYS_RESOURCE; the kernel's EACCES is reported.
pub fn apply_oom_score_adj(value: i32) -> Result<()> {
    if !(-1000..=1000).contains(&value) {
        return Err(Error::InvalidConfig(format!("oomScoreAdj {value} is outside -1000..1000")));
    }
    let file = open_proc_self_oom_score_adj()?;
    std::io::Write::write_all(&mut std::fs::File::from(file), value.to_string().as_bytes())
        .with_context(|| format!("set oom_score_adj to {value} (lowering it needs CAP_SYS_RESOURCE)"))
}

/// `/proc/self/oom_score_adj`, opened only inside a procfs (CVE-2025-52881): the container's
/// /proc may be a plain directory of the image whose `self` is a symlink to a bind mount.
fn open_proc_self_oom_score_adj() -> Result<std::os::fd::OwnedFd> {
    use nix::fcntl::OFlag;
    let proc = nix::fcntl::open("/proc", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())
        .context("set oom_score_adj: open /proc")?;
    let is_proc = nix::sys::statfs::fstatfs(&proc).context("set oom_score_adj: statfs /proc")?.filesystem_type()
        == nix::sys::statfs::PROC_SUPER_MAGIC;
    if !is_proc {
        return Err(Error::InvalidConfig("set oom_score_adj: /proc is not a procfs".into()));
    }
    // `self` is an ordinary symlink within the procfs; nothing may leave it.
    let resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_XDEV | libc::RESOLVE_NO_MAGICLINKS;
    crate::rootfs::safe_path::openat2(
        std::os::fd::AsFd::as_fd(&proc),
        std::path::Path::new("self/oom_score_adj"),
        OFlag::O_WRONLY | OFlag::O_NOFOLLOW,
        0,
        resolve,
    )
    .context("set oom_score_adj: open /proc/self/oom_score_adj")
}

const PER_LINUX: libc::c_ulong = 0x0000;
const PER_LINUX32: libc::c_ulong = 0x0008;

/// The personality(2) flag bits by their names in `<sys/personality.h>`.
pub fn personality_flag(name: &str) -> Option<libc::c_ulong> {
    let bit: libc::c_ulong = match name {
        "UNAME26" => 0x002_0000,
        "ADDR_NO_RANDOMIZE" => 0x004_0000,
        "FDPIC_FUNCPTRS" => 0x008_0000,
        "MMAP_PAGE_ZERO" => 0x010_0000,
        "ADDR_COMPAT_LAYOUT" => 0x020_0000,
        "READ_IMPLIES_EXEC" => 0x040_0000,
        "ADDR_LIMIT_32BIT" => 0x080_0000,
        "SHORT_INODE" => 0x100_0000,
        "WHOLE_SECONDS" => 0x200_0000,
        "STICKY_TIMEOUTS" => 0x400_0000,
        "ADDR_LIMIT_3GB" => 0x800_0000,
        _ => return None,
    };
    Some(bit)
}

/// The personality(2) argument for `linux.personality`.
pub fn personality_value(p: &LinuxPersonality) -> Result<libc::c_ulong> {
    let mut value = match p.domain() {
        LinuxPersonalityDomain::PerLinux => PER_LINUX,
        LinuxPersonalityDomain::PerLinux32 => PER_LINUX32,
    };
    for name in p.flags().iter().flatten() {
        let bit = personality_flag(name).ok_or_else(|| Error::InvalidConfig(format!("linux.personality: unknown flag {name:?}")))?;
        value |= bit;
    }
    Ok(value)
}

/// Set the execution domain and flags of `linux.personality`.
pub fn apply_personality(p: &LinuxPersonality) -> Result<()> {
    let value = personality_value(p)?;
    // SAFETY: personality only changes the calling process's execution domain flags.
    let rc = unsafe { libc::personality(value) };
    if rc == -1 {
        return Err(Error::Sys { context: format!("personality({value:#x})"), source: nix::errno::Errno::last() });
    }
    Ok(())
}

/// The kernel's `struct sched_attr` (SCHED_ATTR_SIZE_VER1, 56 bytes).
#[repr(C)]
#[derive(Debug, Default)]
struct SchedAttr {
    size: u32,
    sched_policy: u32,
    sched_flags: u64,
    sched_nice: i32,
    sched_priority: u32,
    sched_runtime: u64,
    sched_deadline: u64,
    sched_period: u64,
    sched_util_min: u32,
    sched_util_max: u32,
}

fn policy_number(p: LinuxSchedulerPolicy) -> u32 {
    match p {
        LinuxSchedulerPolicy::SchedOther => 0,
        LinuxSchedulerPolicy::SchedFifo => 1,
        LinuxSchedulerPolicy::SchedRr => 2,
        LinuxSchedulerPolicy::SchedBatch => 3,
        LinuxSchedulerPolicy::SchedIso => 4,
        LinuxSchedulerPolicy::SchedIdle => 5,
        LinuxSchedulerPolicy::SchedDeadline => 6,
    }
}

fn flag_bit(f: LinuxSchedulerFlag) -> u64 {
    let bit = match f {
        LinuxSchedulerFlag::SchedResetOnFork => libc::SCHED_FLAG_RESET_ON_FORK,
        LinuxSchedulerFlag::SchedFlagReclaim => libc::SCHED_FLAG_RECLAIM,
        LinuxSchedulerFlag::SchedFlagDLOverrun => libc::SCHED_FLAG_DL_OVERRUN,
        LinuxSchedulerFlag::SchedFlagKeepPolicy => libc::SCHED_FLAG_KEEP_POLICY,
        LinuxSchedulerFlag::SchedFlagKeepParams => libc::SCHED_FLAG_KEEP_PARAMS,
        LinuxSchedulerFlag::SchedFlagUtilClampMin => libc::SCHED_FLAG_UTIL_CLAMP_MIN,
        LinuxSchedulerFlag::SchedFlagUtilClampMax => libc::SCHED_FLAG_UTIL_CLAMP_MAX,
    };
    bit as u64
}

/// Check `process.scheduler` the way runc does and build the sched_setattr argument.
fn sched_attr(s: &Scheduler) -> Result<SchedAttr> {
    let policy = *s.policy();
    let invalid = |m: String| Error::InvalidConfig(format!("process.scheduler: {m}"));
    let nice = s.nice().unwrap_or(0);
    if !(-20..=19).contains(&nice) {
        return Err(invalid(format!("nice {nice} is outside -20..19")));
    }
    let priority = s.priority().unwrap_or(0);
    let realtime = matches!(policy, LinuxSchedulerPolicy::SchedFifo | LinuxSchedulerPolicy::SchedRr);
    if priority != 0 && !realtime {
        return Err(invalid(format!("priority is only allowed with SCHED_FIFO and SCHED_RR, not {policy}")));
    }
    if realtime && !(1..=99).contains(&priority) {
        return Err(invalid(format!("{policy} needs a priority in 1..99, got {priority}")));
    }
    let dl = (s.runtime().unwrap_or(0), s.deadline().unwrap_or(0), s.period().unwrap_or(0));
    if policy != LinuxSchedulerPolicy::SchedDeadline && dl != (0, 0, 0) {
        return Err(invalid(format!("runtime/deadline/period are only allowed with SCHED_DEADLINE, not {policy}")));
    }
    let flags = s.flags().iter().flatten().fold(0u64, |acc, f| acc | flag_bit(*f));
    Ok(SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        sched_policy: policy_number(policy),
        sched_flags: flags,
        sched_nice: nice,
        sched_priority: priority as u32,
        sched_runtime: dl.0,
        sched_deadline: dl.1,
        sched_period: dl.2,
        ..Default::default()
    })
}

/// sched_setattr(2) on the calling thread with `process.scheduler`.
pub fn apply_scheduler(s: &Scheduler) -> Result<()> {
    let attr = sched_attr(s)?;
    // SAFETY: sched_setattr(pid 0 = self, attr, flags 0) only reads `attr`, a properly sized
    // and initialised struct sched_attr whose `size` field matches its layout.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    if rc == 0 {
        return Ok(());
    }
    let errno = nix::errno::Errno::last();
    let why = match errno {
        nix::errno::Errno::EPERM => {
            "; the kernel refused: real-time and deadline policies need CAP_SYS_NICE (and RLIMIT_RTPRIO / cgroup rt bandwidth)"
        }
        nix::errno::Errno::EINVAL => {
            "; the kernel refused these parameters (unsupported policy, or invalid deadline runtime <= deadline <= period)"
        }
        nix::errno::Errno::EBUSY => "; the kernel refused: not enough SCHED_DEADLINE bandwidth",
        _ => "",
    };
    Err(Error::Sys {
        context: format!(
            "sched_setattr(policy {}, nice {}, priority {}, flags {:#x}, runtime {}, deadline {}, period {}){why}",
            s.policy(),
            attr.sched_nice,
            attr.sched_priority,
            attr.sched_flags,
            attr.sched_runtime,
            attr.sched_deadline,
            attr.sched_period
        ),
        source: errno,
    })
}

const IOPRIO_WHO_PROCESS: libc::c_int = 1;
const IOPRIO_CLASS_SHIFT: u32 = 13;

/// The ioprio_set(2) value for `process.ioPriority`.
pub fn ioprio_value(p: &LinuxIOPriority) -> Result<libc::c_int> {
    let prio = p.priority();
    if !(0..=7).contains(&prio) {
        return Err(Error::InvalidConfig(format!("process.ioPriority: priority {prio} is outside 0..7")));
    }
    let class: libc::c_int = match p.class() {
        IOPriorityClass::IoprioClassRt => 1,
        IOPriorityClass::IoprioClassBe => 2,
        IOPriorityClass::IoprioClassIdle => 3,
    };
    Ok((class << IOPRIO_CLASS_SHIFT) | prio as libc::c_int)
}

/// ioprio_set(IOPRIO_WHO_PROCESS, self) with `process.ioPriority`.
pub fn apply_io_priority(p: &LinuxIOPriority) -> Result<()> {
    let value = ioprio_value(p)?;
    // SAFETY: ioprio_set takes three integers and touches no memory of ours.
    let rc = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, value) };
    if rc == -1 {
        return Err(Error::Sys {
            context: format!("ioprio_set(class {}, priority {})", p.class(), p.priority()),
            source: nix::errno::Errno::last(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxIOPriorityBuilder, LinuxPersonalityBuilder, SchedulerBuilder};

    #[test]
    fn sched_attr_has_the_kernel_ver1_size() {
        assert_eq!(std::mem::size_of::<SchedAttr>(), 56);
    }

    #[test]
    fn scheduler_priority_is_rejected_for_non_realtime_policies() {
        let s = SchedulerBuilder::default().policy(LinuxSchedulerPolicy::SchedBatch).priority(5).build().unwrap();
        let err = sched_attr(&s).unwrap_err().to_string();
        assert!(err.contains("only allowed with SCHED_FIFO"), "{err}");
    }

    #[test]
    fn scheduler_deadline_fields_need_the_deadline_policy() {
        let s = SchedulerBuilder::default().policy(LinuxSchedulerPolicy::SchedOther).runtime(10u64).build().unwrap();
        assert!(sched_attr(&s).is_err());
    }

    #[test]
    fn scheduler_flags_and_nice_are_encoded() {
        let s = SchedulerBuilder::default()
            .policy(LinuxSchedulerPolicy::SchedBatch)
            .nice(7)
            .flags(vec![LinuxSchedulerFlag::SchedResetOnFork])
            .build()
            .unwrap();
        let a = sched_attr(&s).unwrap();
        assert_eq!((a.sched_policy, a.sched_nice, a.sched_flags), (3, 7, 1));
    }

    #[test]
    fn ioprio_value_packs_class_and_priority() {
        let p = LinuxIOPriorityBuilder::default().class(IOPriorityClass::IoprioClassBe).priority(4).build().unwrap();
        assert_eq!(ioprio_value(&p).unwrap(), (2 << 13) | 4);
        let bad = LinuxIOPriorityBuilder::default().priority(8).build().unwrap();
        assert!(ioprio_value(&bad).is_err());
    }

    #[test]
    fn personality_linux32_with_flags_is_encoded_and_unknown_flags_rejected() {
        let p = LinuxPersonalityBuilder::default()
            .domain(LinuxPersonalityDomain::PerLinux32)
            .flags(vec!["ADDR_NO_RANDOMIZE".to_string()])
            .build()
            .unwrap();
        assert_eq!(personality_value(&p).unwrap(), 0x8 | 0x4_0000);
        let bad = LinuxPersonalityBuilder::default().flags(vec!["NOPE".to_string()]).build().unwrap();
        assert!(personality_value(&bad).is_err());
    }

    #[test]
    fn oom_score_adj_out_of_range_is_rejected() {
        assert!(apply_oom_score_adj(1001).is_err());
    }
}
