//! Linux security modules: AppArmor profiles and SELinux labels.
//!
//! Like runc: an AppArmor profile on a host without AppArmor is an error (the container
//! would silently run unconfined otherwise); an SELinux label on a host without SELinux is
//! ignored (go-selinux's behaviour, which runc inherits). Where the LSM is enabled, the
//! profile/label is written to `/proc/thread-self/attr/{apparmor/,}exec` right before execve.

use crate::error::{Context, Error, Result};

/// Whether AppArmor is enabled on this host.
pub fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled").is_ok_and(|s| s.starts_with('Y'))
        && std::path::Path::new("/sys/kernel/security/apparmor").exists()
}

/// Whether SELinux is enabled on this host.
pub fn selinux_enabled() -> bool {
    std::fs::read_to_string("/proc/self/attr/current").is_ok_and(|s| !s.trim_end_matches('\0').trim().is_empty() && s.contains(':'))
        && std::path::Path::new("/sys/fs/selinux/enforce").exists()
}

/// Check a process's labels against the host before anything is created.
pub fn validate(apparmor: Option<&str>, selinux: Option<&str>) -> Result<()> {
    if apparmor.is_some_and(|p| !p.is_empty()) && !apparmor_enabled() {
        return Err(Error::InvalidConfig("process.apparmorProfile is set but AppArmor is not enabled on this host".into()));
    }
    if selinux.is_some_and(|l| !l.is_empty()) && !selinux_enabled() {
        tracing::debug!("SELinux is not enabled: process.selinuxLabel ignored");
    }
    Ok(())
}

/// Apply the labels for the next execve (in the container's process, last thing before exec).
pub fn apply_exec_labels(apparmor: Option<&str>, selinux: Option<&str>) -> Result<()> {
    if let Some(p) = apparmor.filter(|p| !p.is_empty()) {
        let path = if std::path::Path::new("/proc/thread-self/attr/apparmor/exec").exists() {
            "/proc/thread-self/attr/apparmor/exec"
        } else {
            "/proc/thread-self/attr/exec"
        };
        std::fs::write(path, format!("exec {p}")).with_context(|| format!("set AppArmor profile {p:?}"))?;
    }
    if let Some(l) = selinux.filter(|l| !l.is_empty()) {
        if selinux_enabled() {
            std::fs::write("/proc/thread-self/attr/exec", l).with_context(|| format!("set SELinux label {l:?}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_host_has_neither_lsm_so_apparmor_is_refused_and_selinux_ignored() {
        if apparmor_enabled() || selinux_enabled() {
            return; // the behaviour below is for hosts without them
        }
        let err = validate(Some("docker-default"), None).unwrap_err().to_string();
        assert!(err.contains("AppArmor is not enabled"), "{err}");
        assert!(validate(None, Some("system_u:system_r:container_t:s0")).is_ok());
        assert!(validate(Some(""), Some("")).is_ok());
        assert!(apply_exec_labels(None, Some("system_u:system_r:container_t:s0")).is_ok());
    }
}
