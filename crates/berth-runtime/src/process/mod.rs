//! The container process's attributes: user and groups, capabilities, rlimits,
//! no_new_privs, oom_score_adj, personality, scheduler, I/O priority, umask.

pub mod capabilities;
mod exec;
pub mod rlimits;
pub mod scheduling;
pub mod user;

#[cfg(test)]
#[cfg(test)]
pub(crate) mod forked;

use oci_spec::runtime::{LinuxPersonality, Process};

pub use capabilities::CapabilitySets;
pub use exec::{exec, resolve_executable, DEFAULT_PATH};

use crate::error::{Error, Result};

/// Apply everything about the process that must happen while the init still runs as root
/// in the container, in runc's order: rlimits, oom_score_adj, personality (from
/// `linux.personality`), scheduler, ioPriority, umask; then drop the bounding set, switch to
/// `process.user` keeping capabilities, set the other four capability sets exactly and set
/// `noNewPrivileges`. After this returns only seccomp and execve remain.
///
/// The parent-death signal, which the kernel clears on a uid change, is restored.
/// This form skips `linux.personality`; see [`apply_with_personality`].
pub fn apply(process: &Process) -> Result<()> {
    apply_with_personality(process, None)
}

/// [`apply`], also setting `linux.personality` (between oom_score_adj and the scheduler).
pub fn apply_with_personality(process: &Process, personality: Option<&LinuxPersonality>) -> Result<()> {
    rlimits::apply(process.rlimits().as_deref().unwrap_or(&[]))?;
    if let Some(adj) = process.oom_score_adj() {
        scheduling::apply_oom_score_adj(adj)?;
    }
    if let Some(p) = personality {
        scheduling::apply_personality(p)?;
    }
    if let Some(s) = process.scheduler() {
        scheduling::apply_scheduler(s)?;
    }
    if let Some(io) = process.io_priority() {
        scheduling::apply_io_priority(io)?;
    }
    scheduling::apply_umask(process.user().umask())?;

    let caps = CapabilitySets::from_config(process.capabilities().as_ref());
    user::fix_stdio_ownership(process.user().uid())?;
    caps.apply_bounding()?;
    let pdeath = parent_death_signal()?;
    set_keep_caps(true)?;
    user::switch(process.user())?;
    set_keep_caps(false)?;
    caps.apply_sets()?;
    if pdeath != 0 {
        prctl("restore the parent-death signal", libc::PR_SET_PDEATHSIG, pdeath as libc::c_ulong)?;
    }
    if process.no_new_privileges().unwrap_or(false) {
        prctl("set no_new_privs", libc::PR_SET_NO_NEW_PRIVS, 1)?;
    }
    Ok(())
}

fn prctl(what: &str, option: libc::c_int, arg: libc::c_ulong) -> Result<()> {
    // SAFETY: the options used here (KEEPCAPS, PDEATHSIG, NO_NEW_PRIVS) take integers only.
    let rc = unsafe { libc::prctl(option, arg, 0 as libc::c_ulong, 0 as libc::c_ulong, 0 as libc::c_ulong) };
    if rc == -1 {
        return Err(Error::Sys { context: what.to_string(), source: nix::errno::Errno::last() });
    }
    Ok(())
}

fn set_keep_caps(on: bool) -> Result<()> {
    let what = if on { "prctl(PR_SET_KEEPCAPS, 1)" } else { "prctl(PR_SET_KEEPCAPS, 0)" };
    prctl(what, libc::PR_SET_KEEPCAPS, on as libc::c_ulong)
}

fn parent_death_signal() -> Result<libc::c_int> {
    let mut sig: libc::c_int = 0;
    // SAFETY: PR_GET_PDEATHSIG writes one int through the pointer, which points at `sig`.
    let rc = unsafe { libc::prctl(libc::PR_GET_PDEATHSIG, &mut sig as *mut libc::c_int) };
    if rc == -1 {
        return Err(Error::Sys { context: "read the parent-death signal".into(), source: nix::errno::Errno::last() });
    }
    Ok(sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Process` from its JSON form, as in config.json.
    fn process(json: serde_json::Value) -> Process {
        let mut base = serde_json::json!({"cwd": "/", "user": {"uid": 0, "gid": 0}, "args": ["sh"]});
        if let (Some(b), Some(extra)) = (base.as_object_mut(), json.as_object()) {
            for (k, v) in extra {
                b.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(base).unwrap()
    }

    fn status_field(status: &str, key: &str) -> String {
        status.lines().find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string())).unwrap_or_default()
    }

    fn mask(caps: &[caps::Capability]) -> String {
        format!("{:016x}", caps.iter().fold(0u64, |m, c| m | c.bitmask()))
    }

    #[test]
    fn apply_switches_user_and_sets_exact_capabilities_in_a_child() {
        use caps::Capability::*;
        let p = process(serde_json::json!({
            "user": {"uid": 65534, "gid": 65534, "additionalGids": [1000, 1001], "umask": 63},
            "capabilities": {
                "bounding": ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_CHOWN"],
                "effective": ["CAP_KILL"],
                "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "inheritable": ["CAP_NET_BIND_SERVICE"],
                "ambient": ["CAP_NET_BIND_SERVICE"]
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 512}],
            "oomScoreAdj": 500,
            "noNewPrivileges": true
        }));
        let code = forked::exit_code_of(|| {
            if apply(&p).is_err() {
                return 2;
            }
            let Ok(s) = std::fs::read_to_string("/proc/self/status") else {
                return 3;
            };
            let checks = [
                (status_field(&s, "Uid:") == "65534\t65534\t65534\t65534", 10),
                (status_field(&s, "Gid:") == "65534\t65534\t65534\t65534", 11),
                (status_field(&s, "Groups:") == "1000 1001", 12),
                (status_field(&s, "CapBnd:") == mask(&[CAP_KILL, CAP_NET_BIND_SERVICE, CAP_CHOWN]), 13),
                (status_field(&s, "CapEff:") == mask(&[CAP_KILL]), 14),
                (status_field(&s, "CapPrm:") == mask(&[CAP_KILL, CAP_NET_BIND_SERVICE]), 15),
                (status_field(&s, "CapInh:") == mask(&[CAP_NET_BIND_SERVICE]), 16),
                (status_field(&s, "CapAmb:") == mask(&[CAP_NET_BIND_SERVICE]), 17),
                (status_field(&s, "NoNewPrivs:") == "1", 18),
                (status_field(&s, "Umask:") == "0077", 19),
                (std::fs::read_to_string("/proc/self/oom_score_adj").is_ok_and(|v| v.trim() == "500"), 20),
            ];
            checks.iter().find(|(ok, _)| !ok).map_or(0, |(_, code)| *code)
        });
        assert_eq!(code, 0, "child check failed (see the code in the test)");
    }

    #[test]
    fn apply_without_capabilities_object_leaves_all_sets_empty_and_default_umask() {
        let p = process(serde_json::json!({"user": {"uid": 0, "gid": 0}}));
        let code = forked::exit_code_of(|| {
            if apply(&p).is_err() {
                return 2;
            }
            let Ok(s) = std::fs::read_to_string("/proc/self/status") else {
                return 3;
            };
            let zero = "0000000000000000";
            let ok = ["CapBnd:", "CapEff:", "CapPrm:", "CapInh:", "CapAmb:"].iter().all(|k| status_field(&s, k) == zero)
                && status_field(&s, "Umask:") == "0022"
                && status_field(&s, "Groups:").is_empty()
                && status_field(&s, "NoNewPrivs:") == "0";
            if ok {
                0
            } else {
                4
            }
        });
        assert_eq!(code, 0);
    }

    #[test]
    fn raising_the_hard_rlimit_without_cap_sys_resource_fails_clearly() {
        let code = forked::exit_code_of(|| {
            let _ = caps::drop(None, caps::CapSet::Effective, caps::Capability::CAP_SYS_RESOURCE);
            let mut cur = libc::rlimit64 { rlim_cur: 0, rlim_max: 0 };
            // SAFETY: read-only query into an owned struct.
            unsafe { libc::prlimit64(0, libc::RLIMIT_NOFILE, std::ptr::null(), &mut cur) };
            let p = process(serde_json::json!({"rlimits": [
                {"type": "RLIMIT_NOFILE", "soft": cur.rlim_max + 1, "hard": cur.rlim_max + 1}]}));
            match apply(&p) {
                Err(e) if e.to_string().contains("CAP_SYS_RESOURCE") && e.to_string().contains("RLIMIT_NOFILE") => 0,
                Err(_) => 5,
                Ok(()) => 6,
            }
        });
        assert_eq!(code, 0);
    }

    #[test]
    fn scheduler_io_priority_and_personality_are_applied_in_a_child() {
        let p = process(serde_json::json!({
            "scheduler": {"policy": "SCHED_BATCH", "nice": 5},
            "ioPriority": {"class": "IOPRIO_CLASS_IDLE", "priority": 0},
            "capabilities": {"bounding": ["CAP_KILL"]}
        }));
        let pers: LinuxPersonality =
            serde_json::from_value(serde_json::json!({"domain": "LINUX32", "flags": ["ADDR_NO_RANDOMIZE"]})).unwrap();
        let code = forked::exit_code_of(|| {
            if apply_with_personality(&p, Some(&pers)).is_err() {
                return 2;
            }
            // SAFETY: queries of our own scheduling attributes; no memory is passed.
            let (policy, nice, ioprio, persona) = unsafe {
                *libc::__errno_location() = 0;
                (
                    libc::sched_getscheduler(0),
                    libc::getpriority(libc::PRIO_PROCESS, 0),
                    libc::syscall(libc::SYS_ioprio_get, 1, 0),
                    libc::personality(0xffff_ffff),
                )
            };
            if policy != libc::SCHED_BATCH {
                return 10;
            }
            if nice != 5 {
                return 11;
            }
            if ioprio != 3 << 13 {
                return 12;
            }
            if persona != 0x8 | 0x4_0000 {
                return 13;
            }
            0
        });
        assert_eq!(code, 0);
    }

    #[test]
    fn a_scheduler_the_kernel_refuses_is_a_clear_error() {
        let p = process(serde_json::json!({
            "scheduler": {"policy": "SCHED_DEADLINE", "runtime": 20_000_000u64, "deadline": 10_000_000u64, "period": 30_000_000u64}
        }));
        let err = apply(&p).unwrap_err().to_string();
        assert!(err.contains("sched_setattr(policy SCHED_DEADLINE") && err.contains("kernel refused"), "{err}");
    }
}
