//! The container's init: runs in the cloned child, sets up the container, waits for `start`
//! on the exec fifo, and execs the user process. Never returns.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{Context, Error, Result};
use crate::hooks::{self, HookPhase};
use crate::namespaces::NamespacePlan;
use crate::rootfs::{self, RootfsContext};
use crate::sync::{FromInit, SyncSocket, ToInit};

/// Everything the init needs; it is a copy of the parent's memory, so nothing is serialized.
pub struct InitContext<'a> {
    pub id: &'a str,
    pub bundle: &'a std::path::Path,
    pub rootfs: &'a std::path::Path,
    pub spec: &'a Spec,
    pub namespaces: &'a NamespacePlan,
    pub fifo: OwnedFd,
    pub console: Option<OwnedFd>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: i32,
    pub seccomp: Option<&'a crate::seccomp::CompiledFilter>,
    /// v1 `tasks` files to join before anything else (empty when the parent did it).
    pub cgroup_task_files: &'a [std::path::PathBuf],
}

/// Run the init; exits the process.
pub fn run(ctx: InitContext, sync: SyncSocket) -> ! {
    // Only returns on failure: success execs.
    let msg = match setup(ctx, &sync) {
        Ok(never) => match never {},
        Err(e) => e.to_string(),
    };
    let _ = sync.send(&FromInit::Error(msg));
    // SAFETY: _exit ends this process without running the parent's destructors twice.
    unsafe { libc::_exit(1) }
}

enum Never {}

fn setup(ctx: InitContext, sync: &SyncSocket) -> Result<Never> {
    let host_pid = match sync.recv::<ToInit>()? {
        Some(ToInit::Go { host_pid }) => host_pid,
        other => return Err(Error::Init(format!("unexpected message {other:?} while waiting to start setup"))),
    };
    let spec = ctx.spec;
    let ns = ctx.namespaces;
    let linux = spec.linux().as_ref();

    if ns.creates(LinuxNamespaceType::User) {
        // Become root of the new user namespace if 0 is mapped; otherwise keep the
        // namespace's full capability set under the mapped ids.
        // SAFETY: plain syscalls with integer arguments.
        unsafe {
            libc::setresgid(0, 0, 0);
            libc::setresuid(0, 0, 0);
        }
    }
    ns.enter_in_init()?;
    tracing::debug!("init: namespaces entered");

    if !ctx.no_new_keyring {
        join_session_keyring(ctx.id);
    }
    if ns.has(LinuxNamespaceType::Uts) {
        if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
            nix::unistd::sethostname(h).with_context(|| format!("set hostname {h:?}"))?;
        }
        if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
            set_domainname(d)?;
        }
    }

    if !ns.has(LinuxNamespaceType::Mount) {
        return Err(Error::Unsupported("a container without a mount namespace".into()));
    }
    let rctx = RootfsContext { spec, rootfs: ctx.rootfs, no_pivot: ctx.no_pivot, in_user_ns: ns.has(LinuxNamespaceType::User) };
    // Relative bind sources are relative to the bundle, as with runc.
    nix::unistd::chdir(ctx.bundle).with_context(|| format!("chdir to bundle {}", ctx.bundle.display()))?;
    // The parent sets the cgroup up meanwhile; the init joins it before the first cgroup
    // mount, or at the latest before the hooks.
    let mut in_cgroup = false;
    let mut cgroup_barrier = || -> Result<()> {
        if in_cgroup {
            return Ok(());
        }
        match sync.recv::<ToInit>()? {
            Some(ToInit::CgroupReady) => {}
            other => return Err(Error::Init(format!("unexpected message {other:?} while waiting for the cgroup"))),
        }
        crate::cgroup::join_self_v1(ctx.cgroup_task_files)?;
        ns.unshare_cgroup()?;
        in_cgroup = true;
        Ok(())
    };
    rootfs::prepare_with_barrier(&rctx, &mut cgroup_barrier)?;
    cgroup_barrier()?;
    tracing::debug!("init: rootfs prepared");

    let state = hook_state(ctx.id, host_pid, ctx.bundle, spec, "creating");
    sync.send(&FromInit::RunCreateRuntimeHooks)?;
    match sync.recv::<ToInit>()? {
        Some(ToInit::HooksDone) => {}
        other => return Err(Error::Init(format!("unexpected message {other:?} while waiting for hooks"))),
    }
    if let Some(h) = spec.hooks().as_ref() {
        hooks::run(HookPhase::CreateContainer, h.create_container().as_deref().unwrap_or(&[]), &state)?;
    }

    rootfs::pivot(&rctx)?;
    tracing::debug!("init: pivoted");
    let process = spec.process().as_ref().ok_or_else(|| Error::InvalidConfig("process is required".into()))?;
    if process.terminal().unwrap_or(false) {
        let sock = ctx.console.ok_or_else(|| Error::InvalidConfig("terminal is set but there is no console socket".into()))?;
        crate::console::setup_in_container(sock, process.console_size().as_ref())?;
    }
    rootfs::finalize(&rctx)?;
    tracing::debug!("init: rootfs finalized");
    if let Some(sysctl) = linux.and_then(|l| l.sysctl().as_ref()) {
        crate::sysctl::apply(sysctl, ns)?;
    }

    close_stray_fds(&[sync.raw(), ctx.fifo.as_raw_fd()], ctx.preserve_fds)?;
    let ExecTarget { exe, args, env } = prepare_process(process, linux, ctx.seccomp, sync)?;
    tracing::debug!("init: process attributes applied");

    sync.send(&FromInit::Ready)?;

    wait_for_start(&ctx.fifo)?;
    if let Some(h) = spec.hooks().as_ref() {
        let state = hook_state(ctx.id, host_pid, ctx.bundle, spec, "created");
        hooks::run(HookPhase::StartContainer, h.start_container().as_deref().unwrap_or(&[]), &state)?;
    }
    drop(ctx.fifo);
    let err = crate::process::exec(&exe, &args, &env);
    // The parent is gone by now: say it on stderr like runc does, with exec's exit code.
    eprintln!("berth-runtime: exec {}: {err}", exe.display());
    // SAFETY: ends the process.
    unsafe { libc::_exit(if matches!(&err, Error::Sys { source, .. } if *source == nix::Error::ENOENT) { 127 } else { 126 }) }
}

/// What to execve once the process is set up.
pub(crate) struct ExecTarget {
    pub exe: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<String>,
}

/// The last steps before exec, shared by the init and `exec`: cwd (checked), the
/// executable, seccomp and the process attributes, in runc's order.
pub(crate) fn prepare_process(
    process: &oci_spec::runtime::Process,
    linux: Option<&oci_spec::runtime::Linux>,
    seccomp: Option<&crate::seccomp::CompiledFilter>,
    sync: &SyncSocket,
) -> Result<ExecTarget> {
    enter_cwd(process.cwd())?;
    let env = process.env().clone().unwrap_or_default();
    let args = process.args().clone().unwrap_or_default();
    let arg0 = args.first().ok_or_else(|| Error::InvalidConfig("process.args is empty".into()))?;
    let exe = crate::process::resolve_executable(arg0, &env)?;
    // Without no_new_privs the kernel only lets a process holding CAP_SYS_ADMIN install a
    // filter, so then it is loaded before the capabilities are dropped (as runc does).
    let nnp = process.no_new_privileges().unwrap_or(false);
    if !nnp {
        load_seccomp(seccomp, sync)?;
    }
    crate::process::apply_with_personality(process, linux.and_then(|l| l.personality().as_ref()))?;
    // The labels take effect at execve; written last, once nothing else needs doing.
    crate::lsm::apply_exec_labels(process.apparmor_profile().as_deref(), process.selinux_label().as_deref())?;
    if nnp {
        load_seccomp(seccomp, sync)?;
    }
    Ok(ExecTarget { exe, args, env })
}

/// Install the seccomp filter; a notify listener fd goes to the parent, which passes it on.
fn load_seccomp(filter: Option<&crate::seccomp::CompiledFilter>, sync: &SyncSocket) -> Result<()> {
    let Some(filter) = filter else { return Ok(()) };
    if let Some(listener) = crate::seccomp::load(filter)? {
        use std::os::fd::AsFd;
        sync.send_with_fd(&FromInit::SeccompListener, listener.as_fd())?;
    }
    Ok(())
}

/// The OCI state JSON handed to hooks.
pub fn hook_state(id: &str, pid: i32, bundle: &std::path::Path, spec: &Spec, status: &str) -> Vec<u8> {
    let v = serde_json::json!({
        "ociVersion": crate::spec::OCI_VERSION,
        "id": id,
        "status": status,
        "pid": pid,
        "bundle": bundle,
        "annotations": spec.annotations().clone().unwrap_or_default(),
    });
    serde_json::to_vec(&v).unwrap_or_default()
}

fn join_session_keyring(id: &str) {
    let name = CString::new(format!("_ses.{id}")).unwrap_or_default();
    // SAFETY: keyctl(KEYCTL_JOIN_SESSION_KEYRING, name) reads the NUL-terminated name only.
    let rc = unsafe {
        libc::syscall(libc::SYS_keyctl, 1 /* KEYCTL_JOIN_SESSION_KEYRING */, name.as_ptr())
    };
    if rc < 0 {
        // Keyrings may be unavailable (ENOSYS) or denied in a user namespace: runc ignores that too.
        tracing::debug!("join session keyring: {}", std::io::Error::last_os_error());
    }
}

fn set_domainname(d: &str) -> Result<()> {
    // SAFETY: the pointer and length describe the string's bytes.
    if unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) } != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("set domainname {d:?}"));
    }
    Ok(())
}

/// Close every fd except stdio, the preserved ones (3..3+n) and `keep` (CVE-2024-21626: no
/// host fd may survive into the container, not even until exec).
pub(crate) fn close_stray_fds(keep: &[i32], preserve_fds: i32) -> Result<()> {
    let mut keep: Vec<u32> = keep.iter().map(|&f| f as u32).collect();
    keep.sort_unstable();
    let mut next = 3 + preserve_fds.max(0) as u32;
    for k in keep {
        if k < next {
            continue;
        }
        if k > next {
            close_range(next, k - 1)?;
        }
        next = k + 1;
    }
    close_range(next, u32::MAX)
}

fn close_range(first: u32, last: u32) -> Result<()> {
    // SAFETY: close_range only closes fds in the range; none of them is used afterwards.
    if unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).context("close inherited file descriptors");
    }
    Ok(())
}

/// chdir into the cwd and check it is reachable from the container's root.
fn enter_cwd(cwd: &std::path::Path) -> Result<()> {
    nix::unistd::chdir(cwd).with_context(|| format!("chdir to cwd {}", cwd.display()))?;
    let now: PathBuf = nix::unistd::getcwd().context("getcwd")?;
    // A cwd outside the root shows as "(unreachable)/…" (CVE-2024-21626).
    if !now.is_absolute() || now.starts_with("(unreachable)") {
        return Err(Error::UnsafePath {
            path: cwd.display().to_string(),
            message: "current working directory is outside of the container root".into(),
        });
    }
    Ok(())
}

fn wait_for_start(fifo: &OwnedFd) -> Result<()> {
    let mut b = [0u8; 1];
    loop {
        // SAFETY: reads one byte into a valid buffer.
        let n = unsafe { libc::read(fifo.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
        if n == 1 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if n < 0 && e.kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        return Err(Error::Init(format!("wait for start on the exec fifo: {e}")));
    }
}
