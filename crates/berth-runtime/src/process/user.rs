//! `process.user`: supplementary groups, gid and uid.

use std::os::fd::BorrowedFd;

use nix::errno::Errno;
use nix::sys::stat::fstat;
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::User;

use crate::error::{Context, Error, Result};

/// Whether setgroups(2) is allowed: false when /proc/self/setgroups says "deny" (a user
/// namespace whose gid map was written without CAP_SETGID in the parent).
pub fn setgroups_allowed() -> bool {
    match std::fs::read_to_string("/proc/self/setgroups") {
        Ok(s) => s.trim() != "deny",
        Err(_) => true,
    }
}

/// Give the container's stdio to `uid` when it is owned by someone else, as runc does, so
/// the process can reopen `/proc/self/fd/N`. /dev/null, and inodes whose owner is not
/// mapped or that live on a read-only filesystem, are left alone.
pub fn fix_stdio_ownership(uid: u32) -> Result<()> {
    let null = nix::sys::stat::stat("/dev/null").ok().map(|s| s.st_rdev);
    for fd in 0..=2 {
        // SAFETY: fds 0..2 stay open for the whole loop; the borrow does not outlive it.
        let bfd = unsafe { BorrowedFd::borrow_raw(fd) };
        let Ok(st) = fstat(bfd) else { continue };
        let is_null = (st.st_mode & libc::S_IFMT) == libc::S_IFCHR && Some(st.st_rdev) == null;
        if st.st_uid == uid || is_null {
            continue;
        }
        match nix::unistd::fchown(bfd, Some(Uid::from_raw(uid)), None) {
            Ok(()) | Err(Errno::EINVAL | Errno::EPERM | Errno::EROFS) => {}
            Err(e) => return Err(Error::Sys { context: format!("chown stdio fd {fd} to uid {uid}"), source: e }),
        }
    }
    Ok(())
}

/// setgroups(additionalGids) (skipped when denied), then setresgid and setresuid.
///
/// With setgroups allowed the supplementary list is always set, so an empty
/// `additionalGids` clears the groups inherited from the runtime.
pub fn switch(user: &User) -> Result<()> {
    let extra: Vec<Gid> = user.additional_gids().iter().flatten().map(|g| Gid::from_raw(*g)).collect();
    if setgroups_allowed() {
        nix::unistd::setgroups(&extra).with_context(|| format!("setgroups({:?})", user.additional_gids().as_deref().unwrap_or(&[])))?;
    } else if !extra.is_empty() {
        return Err(Error::InvalidConfig(format!(
            "process.user.additionalGids {:?}: setgroups is denied in this user namespace",
            user.additional_gids().as_deref().unwrap_or(&[])
        )));
    }
    let gid = Gid::from_raw(user.gid());
    nix::unistd::setresgid(gid, gid, gid)
        .with_context(|| format!("setresgid({}) (is the gid mapped in the user namespace?)", user.gid()))?;
    let uid = Uid::from_raw(user.uid());
    nix::unistd::setresuid(uid, uid, uid)
        .with_context(|| format!("setresuid({}) (is the uid mapped in the user namespace?)", user.uid()))?;
    Ok(())
}

/// `env` with `HOME` set from `passwd` (the container's /etc/passwd) for `uid` when it is
/// missing or empty, as runc does; `/` when the uid has no entry.
pub fn env_with_home(env: &[String], uid: u32, passwd: &str) -> Vec<String> {
    let has_home = env.iter().any(|kv| kv.strip_prefix("HOME=").is_some_and(|v| !v.is_empty()));
    if has_home {
        return env.to_vec();
    }
    let home = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 6 && f[2].parse::<u32>() == Ok(uid))
        .map_or("/", |f| f[5]);
    let mut out: Vec<String> = env.iter().filter(|kv| !kv.starts_with("HOME=")).cloned().collect();
    out.push(format!("HOME={home}"));
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn home_comes_from_passwd_only_when_the_env_has_none() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n";
        let env = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(env_with_home(&env(&["PATH=/bin"]), 1000, passwd), env(&["PATH=/bin", "HOME=/home/user"]));
        assert_eq!(env_with_home(&env(&["HOME=", "A=1"]), 0, passwd), env(&["A=1", "HOME=/root"]));
        assert_eq!(env_with_home(&env(&["HOME=/x"]), 0, passwd), env(&["HOME=/x"]));
        assert_eq!(env_with_home(&env(&[]), 4242, passwd), env(&["HOME=/"]));
    }

    use super::*;

    #[test]
    fn setgroups_is_allowed_in_the_initial_user_namespace() {
        assert!(setgroups_allowed());
    }
}
