//! `exec`: run another process inside a running container — joins every namespace and the
//! cgroup of the container's init, applies the process's attributes and seccomp, execs.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};

use crate::cgroup::ContainerCgroup;
use crate::container::Runtime;
use crate::error::{Context, Error, Result};
use crate::init::{close_stray_fds, prepare_process, ExecTarget};
use crate::namespaces::{clone_into, JoinedNamespace, NamespacePlan};
use crate::state::{self, StateDir, Status};
use crate::sync::{self, FromInit, SyncSocket, ToInit};

/// Options of `exec`, as runc's flags (the process itself is already built).
#[derive(Debug, Default)]
pub struct ExecOptions {
    /// The process to run (runc's `--process` file, or built from the flags).
    pub process: Option<Process>,
    /// `--console-socket`.
    pub console_socket: Option<PathBuf>,
    /// `--pid-file`.
    pub pid_file: Option<PathBuf>,
    /// `--preserve-fds`.
    pub preserve_fds: i32,
    /// `--ignore-paused`.
    pub ignore_paused: bool,
    /// `--cgroup`: sub-cgroups of the container's cgroup, `PATH` (every controller) or
    /// `CONTROLLER[,CONTROLLER…]:PATH`; they must exist.
    pub sub_cgroups: Vec<String>,
}

/// The running exec'd process, a child of the calling process.
pub struct ExecProcess {
    /// Its pid (in the caller's pid namespace).
    pub pid: i32,
}

impl Runtime {
    /// The process `exec` would run by default: the container's own, for overriding.
    pub fn container_process(&self, id: &str) -> Result<Process> {
        let dir = StateDir::open(self.root(), id)?;
        Ok(dir.load_config()?.process().clone().unwrap_or_default())
    }

    /// Start `opts.process` inside the running container `id`. The caller waits for it.
    ///
    /// The caller must be single-threaded (the process is forked from it).
    pub fn exec(&self, id: &str, opts: ExecOptions) -> Result<ExecProcess> {
        let dir = StateDir::open(self.root(), id)?;
        let record = dir.load()?;
        match state::derive_status(&dir, &record) {
            Status::Running | Status::Created => {}
            Status::Paused if opts.ignore_paused => {}
            Status::Paused => return Err(wrong(id, "cannot exec in a paused container (use --ignore-paused)")),
            s => return Err(wrong(id, &format!("cannot exec in a {s} container"))),
        }
        let spec = dir.load_config()?;
        let process = opts.process.clone().ok_or_else(|| Error::InvalidConfig("exec: no process".into()))?;
        if process.args().as_ref().is_none_or(|a| a.is_empty()) {
            return Err(Error::InvalidConfig("exec: process.args must not be empty".into()));
        }
        crate::lsm::validate(process.apparmor_profile().as_deref(), process.selinux_label().as_deref())?;
        let console = match (&opts.console_socket, process.terminal().unwrap_or(false)) {
            (Some(p), true) => Some(crate::console::connect_socket(p)?),
            (None, true) => return Err(Error::InvalidConfig("exec --tty needs --console-socket".into())),
            _ => None,
        };
        let seccomp = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
            Some(profile) => Some(crate::seccomp::prepare_cached(profile, &self.root().join(crate::container::SECCOMP_CACHE))?),
            None => None,
        };
        let plan = join_plan(&spec, record.pid)?;
        // Entering the pid namespace around the clone needs CAP_SYS_ADMIN in the caller's own
        // user namespace. Without it (rootless), the child joins the container's user
        // namespace first, then its pid namespace, and forks the process that execs (runc's
        // double fork); the intermediate relays signals and the exit status.
        let two_step = crate::rootless::unprivileged() && plan.joined.iter().any(|j| j.typ == LinuxNamespaceType::User);
        // The container's lock is not held while the process runs.
        drop(dir);

        let (parent_sock, child_sock) = sync::pair()?;
        // Like the init, the process joins the cgroup without the slow pid migration: the
        // v2 part at clone, the v1 part by moving itself before it enters the namespaces.
        let cgroup = ContainerCgroup::from_paths(sub_cgroup_paths(&record.cgroup_paths, &opts.sub_cgroups)?);
        let task_files = cgroup.v1_task_files();
        let cg_fd = cgroup.clone_into_fd();
        let child = if two_step {
            clone_into(&NamespacePlan { new: Vec::new(), joined: Vec::new() }, None, 0, None)?
        } else {
            clone_into(&plan, None, 0, cg_fd.as_ref().map(|f| f.as_raw_fd()))?
        };
        let Some(child) = child else {
            drop(parent_sock);
            let steps = ChildSteps { two_step, preserve_fds: opts.preserve_fds, cgroup_task_files: &task_files };
            let err = match exec_child(&plan, &spec, &process, console, seccomp.as_ref(), &child_sock, &steps) {
                Ok(never) => match never {},
                Err(e) => e,
            };
            let _ = child_sock.send(&FromInit::Error(err.to_string()));
            // SAFETY: ends the forked child without running the parent's destructors.
            unsafe { libc::_exit(1) }
        };
        drop(child_sock);
        let fail = |e: Error| {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.pid), nix::sys::signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child.pid), None);
            e
        };
        parent_sock.send(&ToInit::Go { host_pid: child.pid }).map_err(fail)?;
        let mut container_pid = child.pid;
        loop {
            match parent_sock.recv_with_fd::<FromInit>().map_err(fail)? {
                Some((FromInit::Ready, _)) => break,
                Some((FromInit::ExecPid(pid), _)) => container_pid = pid,
                Some((FromInit::SeccompListener, Some(fd))) => {
                    crate::container::send_seccomp_listener(&spec, id, child.pid, &record.bundle, &fd).map_err(fail)?;
                }
                Some((FromInit::Error(msg), _)) => return Err(fail(Error::Init(format!("exec: {msg}")))),
                Some((other, _)) => return Err(fail(Error::Init(format!("exec: unexpected message {other:?}")))),
                None => return Err(fail(Error::Init("exec: the process exited during setup".into()))),
            }
        }
        // The child's end of the socket is close-on-exec: EOF means it has exec'd (or died
        // trying, which its exit status tells). Only then is the pid file meaningful.
        let _ = parent_sock.recv::<FromInit>();
        if let Some(p) = &opts.pid_file {
            state::write_atomic(p, container_pid.to_string().as_bytes()).map_err(fail)?;
        }
        drop(child.pidfd);
        Ok(ExecProcess { pid: child.pid })
    }
}

/// The container's cgroup paths with `--cgroup` sub-cgroups applied (runc's syntax).
fn sub_cgroup_paths(
    paths: &std::collections::HashMap<String, PathBuf>,
    subs: &[String],
) -> Result<std::collections::HashMap<String, PathBuf>> {
    let mut out = paths.clone();
    for sub in subs {
        let (controllers, rel) = match sub.split_once(':') {
            Some((c, p)) => (Some(c.split(',').collect::<Vec<_>>()), p),
            None => (None, sub.as_str()),
        };
        let rel = std::path::Path::new(rel);
        if rel.is_absolute() || rel.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
            return Err(Error::InvalidConfig(format!("--cgroup {sub:?}: the path must be relative, without '..'")));
        }
        for (ctrl, dir) in out.iter_mut() {
            let wanted = match &controllers {
                None => true,
                // "" is the unified (v2) hierarchy, named as runc does.
                Some(list) => list.iter().any(|c| *c == ctrl.as_str() || (ctrl.is_empty() && c.is_empty())),
            };
            if wanted {
                let sub_dir = paths[ctrl].join(rel);
                if !sub_dir.is_dir() {
                    return Err(Error::InvalidConfig(format!("--cgroup {sub:?}: {} does not exist", sub_dir.display())));
                }
                *dir = sub_dir;
            }
        }
    }
    Ok(out)
}

fn wrong(id: &str, message: &str) -> Error {
    Error::WrongState { id: id.to_string(), message: message.to_string() }
}

/// Every namespace of the container, opened from its init; the ones the caller already
/// shares are left out (joining one's own user namespace is an error).
fn join_plan(spec: &Spec, init_pid: i32) -> Result<NamespacePlan> {
    let mut joined = Vec::new();
    for ns in spec.linux().as_ref().and_then(|l| l.namespaces().as_ref()).into_iter().flatten() {
        let name = match ns.typ() {
            LinuxNamespaceType::Mount => "mnt",
            LinuxNamespaceType::Network => "net",
            other => match other {
                LinuxNamespaceType::Pid => "pid",
                LinuxNamespaceType::User => "user",
                LinuxNamespaceType::Ipc => "ipc",
                LinuxNamespaceType::Uts => "uts",
                LinuxNamespaceType::Cgroup => "cgroup",
                _ => "time",
            },
        };
        let theirs = format!("/proc/{init_pid}/ns/{name}");
        let ino = std::fs::metadata(&theirs).with_context(|| format!("container namespace {theirs}"))?.ino();
        let ours = std::fs::metadata(format!("/proc/self/ns/{name}")).map(|m| m.ino()).unwrap_or(0);
        if ino == ours {
            continue;
        }
        let f = File::open(&theirs).with_context(|| format!("open {theirs}"))?;
        joined.push(JoinedNamespace { typ: ns.typ(), fd: f.into() });
    }
    Ok(NamespacePlan { new: Vec::new(), joined })
}

enum Never {}

/// How the exec'd process gets into the container.
struct ChildSteps<'a> {
    /// Join user first and fork again (rootless).
    two_step: bool,
    preserve_fds: i32,
    cgroup_task_files: &'a [PathBuf],
}

fn exec_child(
    plan: &NamespacePlan,
    spec: &Spec,
    process: &Process,
    console: Option<OwnedFd>,
    seccomp: Option<&crate::seccomp::CompiledFilter>,
    sync: &SyncSocket,
    steps: &ChildSteps,
) -> Result<Never> {
    match sync.recv::<ToInit>()? {
        Some(ToInit::Go { .. }) => {}
        other => return Err(Error::Init(format!("unexpected message {other:?}"))),
    }
    crate::cgroup::join_self_v1(steps.cgroup_task_files)?;
    plan.enter_in_init()?;
    if steps.two_step {
        plan.enter_child_only()?;
        // Signals stay blocked in the intermediate from before the fork on, so that none
        // meant for the process kills the relay first.
        // SAFETY: sigset operations on local sets.
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::sigprocmask(libc::SIG_BLOCK, &all, &mut old);
        }
        // SAFETY: this process is single-threaded (a fork of the runtime).
        match unsafe { nix::unistd::fork() }.context("fork into the container's pid namespace")? {
            nix::unistd::ForkResult::Child => {
                // SAFETY: restores the mask saved above.
                unsafe { libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
            }
            nix::unistd::ForkResult::Parent { child } => {
                sync.send(&FromInit::ExecPid(child.as_raw()))?;
                relay_and_exit(child.as_raw(), sync.raw());
            }
        }
    }
    if let Some(sock) = console {
        crate::console::setup_for_exec(sock, process.console_size().as_ref())?;
    }
    close_stray_fds(&[sync.raw()], steps.preserve_fds)?;
    let ExecTarget { exe, args, env } = prepare_process(process, spec.linux().as_ref(), seccomp, sync)?;
    sync.send(&FromInit::Ready)?;
    let err = crate::process::exec(&exe, &args, &env);
    eprintln!("berth-runtime exec: {}: {err}", exe.display());
    // SAFETY: ends the process.
    unsafe { libc::_exit(127) }
}

/// The intermediate of a two-step exec: pass every signal on to `pid`, and leave with its
/// exit status (128+N when a signal killed it).
fn relay_and_exit(pid: i32, sync_fd: i32) -> ! {
    // SAFETY: closes our copy of the sync socket (the runtime sees EOF once the process has
    // exec'd); sigset operations on a local set; waitpid/kill with plain integers.
    unsafe {
        libc::close(sync_fd);
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
        loop {
            let mut status = 0;
            let r = libc::waitpid(pid, &mut status, libc::WNOHANG);
            if r == pid {
                if libc::WIFEXITED(status) {
                    libc::_exit(libc::WEXITSTATUS(status));
                }
                if libc::WIFSIGNALED(status) {
                    libc::_exit(128 + libc::WTERMSIG(status));
                }
            } else if r < 0 {
                libc::_exit(1);
            }
            let sig = libc::sigwaitinfo(&all, std::ptr::null_mut());
            if sig > 0 && sig != libc::SIGCHLD {
                libc::kill(pid, sig);
            }
        }
    }
}
