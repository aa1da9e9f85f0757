//! Namespaces: which to create at clone, which to join by path, and the clone itself.
//!
//! New namespaces are created by the single clone of the init (crun's model). Joined pid and
//! time namespaces only apply to children, so the parent enters them around the clone and
//! returns to its own. The cgroup namespace is unshared by the init after the parent has put
//! it in its cgroup, so that the namespace's root is the container's cgroup.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use oci_spec::runtime::{Linux, LinuxIdMapping, LinuxNamespaceType};

use crate::error::{Context, Error, Result};

/// Namespace flag of a spec namespace type.
pub fn clone_flag(t: LinuxNamespaceType) -> u64 {
    (match t {
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::User => libc::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Time => libc::CLONE_NEWTIME,
    }) as u64
}

/// An existing namespace to join, opened before clone.
pub struct JoinedNamespace {
    /// Its type.
    pub typ: LinuxNamespaceType,
    /// An open fd on the namespace file.
    pub fd: OwnedFd,
}

/// The namespaces of a container, resolved from `linux.namespaces`.
pub struct NamespacePlan {
    /// Types the container gets new namespaces of.
    pub new: Vec<LinuxNamespaceType>,
    /// Namespaces joined by path, opened already.
    pub joined: Vec<JoinedNamespace>,
}

impl NamespacePlan {
    /// Resolve the config's namespaces, opening every path to join.
    pub fn from_spec(linux: Option<&Linux>) -> Result<Self> {
        let mut plan = NamespacePlan { new: Vec::new(), joined: Vec::new() };
        for ns in linux.and_then(|l| l.namespaces().as_ref()).into_iter().flatten() {
            match ns.path() {
                None => plan.new.push(ns.typ()),
                Some(path) => {
                    let f =
                        File::open(path).map_err(|e| Error::InvalidConfig(format!("{} namespace {}: {e}", ns.typ(), path.display())))?;
                    plan.joined.push(JoinedNamespace { typ: ns.typ(), fd: f.into() });
                }
            }
        }
        Ok(plan)
    }

    /// Whether the container gets a namespace of type `t` (new or joined).
    pub fn has(&self, t: LinuxNamespaceType) -> bool {
        self.creates(t) || self.joined.iter().any(|j| j.typ == t)
    }

    /// Whether the container gets a new namespace of type `t`.
    pub fn creates(&self, t: LinuxNamespaceType) -> bool {
        self.new.contains(&t)
    }

    fn joined_fd(&self, t: LinuxNamespaceType) -> Option<RawFd> {
        self.joined.iter().find(|j| j.typ == t).map(|j| j.fd.as_raw_fd())
    }

    /// Flags for the clone of the init. Time is unshared by the parent around the clone and
    /// cgroup by the init itself; when a user namespace is joined, the other new namespaces
    /// are unshared by the init after joining it so that it owns them.
    pub fn clone_flags(&self) -> u64 {
        let joins_user = self.joined_fd(LinuxNamespaceType::User).is_some();
        self.new
            .iter()
            .filter(|t| !matches!(t, LinuxNamespaceType::Time | LinuxNamespaceType::Cgroup))
            .filter(|t| !joins_user || **t == LinuxNamespaceType::Pid)
            .fold(0, |acc, t| acc | clone_flag(*t))
    }

    /// In the init: join the namespaces given by path (user first, mount last), then unshare
    /// what the clone could not create — except a new cgroup namespace, which waits for
    /// [`Self::unshare_cgroup`] once the init is in its cgroup.
    pub fn enter_in_init(&self) -> Result<()> {
        let order = [
            LinuxNamespaceType::User,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Network,
            LinuxNamespaceType::Cgroup,
            LinuxNamespaceType::Mount,
        ];
        for t in order {
            if let Some(fd) = self.joined_fd(t) {
                setns(fd, t)?;
            }
        }
        let mut late = 0u64;
        if self.joined_fd(LinuxNamespaceType::User).is_some() {
            late |= self
                .new
                .iter()
                .filter(|t| !matches!(t, LinuxNamespaceType::Time | LinuxNamespaceType::Pid | LinuxNamespaceType::User))
                .fold(0, |acc, t| acc | clone_flag(*t));
        }
        if late != 0 {
            // SAFETY: unshare takes only flags.
            if unsafe { libc::unshare(late as libc::c_int) } != 0 {
                return Err(std::io::Error::last_os_error()).context("unshare namespaces in init");
            }
        }
        Ok(())
    }
}

impl NamespacePlan {
    /// Join the pid and time namespaces given by path for this process's children only
    /// (after the user namespace, so that an unprivileged caller holds the capabilities).
    pub fn enter_child_only(&self) -> Result<()> {
        for t in [LinuxNamespaceType::Pid, LinuxNamespaceType::Time] {
            if let Some(fd) = self.joined_fd(t) {
                setns(fd, t)?;
            }
        }
        Ok(())
    }

    /// In the init, once it is in its cgroup: a new cgroup namespace rooted there.
    pub fn unshare_cgroup(&self) -> Result<()> {
        if self.creates(LinuxNamespaceType::Cgroup) {
            // SAFETY: unshare takes only flags.
            if unsafe { libc::unshare(libc::CLONE_NEWCGROUP) } != 0 {
                return Err(std::io::Error::last_os_error()).context("unshare cgroup namespace");
            }
        }
        Ok(())
    }
}

fn setns(fd: RawFd, t: LinuxNamespaceType) -> Result<()> {
    // SAFETY: setns on an fd we hold open.
    if unsafe { libc::setns(fd, clone_flag(t) as libc::c_int) } != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("join {t} namespace"));
    }
    Ok(())
}

/// Namespaces the parent enters only for the duration of the clone (pid and time apply to
/// children), restored by dropping the guard.
pub struct ChildOnlyNamespaces {
    restore: Vec<(LinuxNamespaceType, OwnedFd)>,
}

impl ChildOnlyNamespaces {
    /// Enter a joined pid / time namespace, or create a new time namespace with `offsets`
    /// written, so that the next child lands in them.
    pub fn enter(plan: &NamespacePlan, linux: Option<&Linux>) -> Result<Self> {
        let mut guard = ChildOnlyNamespaces { restore: Vec::new() };
        for t in [LinuxNamespaceType::Pid, LinuxNamespaceType::Time] {
            let joined = plan.joined_fd(t);
            let new_time = t == LinuxNamespaceType::Time && plan.creates(t);
            if joined.is_none() && !new_time {
                continue;
            }
            let own = File::open(format!("/proc/self/ns/{}", ns_file(t))).with_context(|| format!("open own {t} namespace"))?;
            guard.restore.push((t, own.into()));
            if let Some(fd) = joined {
                setns(fd, t)?;
            } else {
                // SAFETY: unshare takes only flags.
                if unsafe { libc::unshare(libc::CLONE_NEWTIME) } != 0 {
                    return Err(std::io::Error::last_os_error()).context("unshare time namespace");
                }
                write_time_offsets(linux)?;
            }
        }
        Ok(guard)
    }
}

impl Drop for ChildOnlyNamespaces {
    fn drop(&mut self) {
        for (t, fd) in self.restore.drain(..).rev() {
            if let Err(e) = setns(fd.as_raw_fd(), t) {
                tracing::error!("return to own {t} namespace: {e}");
            }
        }
    }
}

fn ns_file(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Pid => "pid_for_children",
        LinuxNamespaceType::Time => "time_for_children",
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
    }
}

fn write_time_offsets(linux: Option<&Linux>) -> Result<()> {
    let Some(offsets) = linux.and_then(|l| l.time_offsets().as_ref()) else {
        return Ok(());
    };
    let mut text = String::new();
    for (clock, off) in offsets {
        let name = match clock.as_str() {
            "monotonic" | "boottime" => clock.as_str(),
            other => return Err(Error::InvalidConfig(format!("timeOffsets: unknown clock {other:?}"))),
        };
        text.push_str(&format!("{name} {} {}\n", off.secs().unwrap_or(0), off.nanosecs().unwrap_or(0)));
    }
    std::fs::write("/proc/self/timens_offsets", text).context("write /proc/self/timens_offsets")
}

/// Clone a child into the plan's namespaces: joined pid/time namespaces (and a new time
/// namespace) are entered around the clone, so only the child stays in them. Returns
/// `None` in the child, like fork.
pub fn clone_into(plan: &NamespacePlan, linux: Option<&Linux>, flags: u64, cgroup_fd: Option<RawFd>) -> Result<Option<ClonedChild>> {
    let guard = ChildOnlyNamespaces::enter(plan, linux)?;
    match clone_init(flags, cgroup_fd) {
        Ok(None) => {
            // The child keeps them: their restore belongs to the parent.
            std::mem::forget(guard);
            Ok(None)
        }
        other => other,
    }
}

/// The result of [`clone_init`] on the parent's side.
pub struct ClonedChild {
    /// The child's pid in the parent's pid namespace.
    pub pid: i32,
    /// A pidfd on the child.
    pub pidfd: OwnedFd,
}

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Fork the init with `flags` (namespaces), optionally straight into the cgroup `cgroup_fd`
/// (v2 only). Returns `None` in the child, like fork.
///
/// The caller must be single-threaded: the child is a copy of the calling thread only.
pub fn clone_init(flags: u64, cgroup_fd: Option<RawFd>) -> Result<Option<ClonedChild>> {
    let mut pidfd: RawFd = -1;
    let mut args = CloneArgs {
        flags: flags | libc::CLONE_PIDFD as u64,
        pidfd: &mut pidfd as *mut RawFd as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    if let Some(fd) = cgroup_fd {
        args.flags |= 0x200000000; // CLONE_INTO_CGROUP
        args.cgroup = fd as u64;
    }
    // SAFETY: clone3 without CLONE_VM and without a stack behaves like fork: the child gets a
    // copy of this (single) thread's memory and continues here with a return value of 0.
    let rc = unsafe { libc::syscall(libc::SYS_clone3, &mut args as *mut CloneArgs, std::mem::size_of::<CloneArgs>()) };
    match rc {
        -1 => Err(std::io::Error::last_os_error()).context("clone the container init"),
        0 => Ok(None),
        // SAFETY: the kernel stored a fresh pidfd that nobody else owns.
        pid => Ok(Some(ClonedChild { pid: pid as i32, pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) } })),
    }
}

/// Write the uid/gid maps of a child's new user namespace: directly as root or when a map
/// is just the caller's own id, otherwise through the setuid helpers newuidmap/newgidmap
/// (which check /etc/subuid and /etc/subgid), as runc and podman do.
pub fn write_id_maps(pid: i32, linux: Option<&Linux>) -> Result<()> {
    let uids = linux.and_then(|l| l.uid_mappings().as_deref()).unwrap_or(&[]);
    let gids = linux.and_then(|l| l.gid_mappings().as_deref()).unwrap_or(&[]);
    if uids.is_empty() || gids.is_empty() {
        return Err(Error::InvalidConfig("a new user namespace needs uidMappings and gidMappings".into()));
    }
    // SAFETY: geteuid/getegid cannot fail.
    let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
    write_id_map(pid, IdKind::Uid, uids, euid)?;
    write_id_map(pid, IdKind::Gid, gids, egid)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum IdKind {
    Uid,
    Gid,
}

impl IdKind {
    fn name(self) -> &'static str {
        match self {
            IdKind::Uid => "uid",
            IdKind::Gid => "gid",
        }
    }
}

/// How a map gets written: the kernel lets an unprivileged process map only its own id.
fn needs_helper(maps: &[LinuxIdMapping], own: u32, root: bool) -> bool {
    !root && !matches!(maps, [m] if m.size() == 1 && m.host_id() == own)
}

fn write_id_map(pid: i32, kind: IdKind, maps: &[LinuxIdMapping], own: u32) -> Result<()> {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if needs_helper(maps, own, root) {
        return run_id_map_helper(pid, kind, maps);
    }
    if kind == IdKind::Gid && !root {
        // Without CAP_SETGID in the parent namespace the kernel accepts a gid map only once
        // setgroups(2) is denied in the new namespace.
        std::fs::write(format!("/proc/{pid}/setgroups"), "deny").with_context(|| format!("write \"deny\" to /proc/{pid}/setgroups"))?;
    }
    let text: String = maps.iter().map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size())).collect();
    let file = format!("/proc/{pid}/{}_map", kind.name());
    std::fs::write(&file, &text).with_context(|| format!("write {file} {:?}", text.trim()))
}

/// `newuidmap <pid> <ctr> <host> <size>...` (or newgidmap), with its stderr in the error.
fn run_id_map_helper(pid: i32, kind: IdKind, maps: &[LinuxIdMapping]) -> Result<()> {
    let helper = format!("new{}map", kind.name());
    let mut args = vec![pid.to_string()];
    for m in maps {
        args.extend([m.container_id().to_string(), m.host_id().to_string(), m.size().to_string()]);
    }
    let shown = args[1..].join(" ");
    let err = |message: String| Error::IdMapHelper { helper: helper.clone(), message };
    let out = std::process::Command::new(&helper).args(&args).stdin(std::process::Stdio::null()).output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            err(format!("not found in PATH: mapping {}s {shown} needs it (install the uidmap package)", kind.name()))
        }
        _ => err(format!("run it to map {}s {shown}: {e}", kind.name())),
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(err(format!(
            "mapping {}s {shown} failed ({}): {} (are the host ranges in /etc/sub{}?)",
            kind.name(),
            out.status,
            stderr.trim(),
            kind.name()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod id_map_tests {
    use super::*;

    fn map(c: u32, h: u32, n: u32) -> LinuxIdMapping {
        serde_json::from_value(serde_json::json!({"containerID": c, "hostID": h, "size": n})).unwrap()
    }

    #[test]
    fn only_own_single_id_is_written_directly_without_root() {
        assert!(!needs_helper(&[map(0, 1000, 1)], 1000, false));
        assert!(needs_helper(&[map(0, 1001, 1)], 1000, false));
        assert!(needs_helper(&[map(0, 1000, 2)], 1000, false));
        assert!(needs_helper(&[map(0, 1000, 1), map(1, 100000, 65536)], 1000, false));
        assert!(!needs_helper(&[map(0, 1000, 1), map(1, 100000, 65536)], 1000, true));
    }
}
