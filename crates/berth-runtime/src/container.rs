//! The lifecycle operations of the runtime spec: create, start, state, kill, delete, list.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use serde::Serialize;

use crate::error::{Context, Error, Result};
use crate::hooks::{self, HookPhase};
use crate::init::{self, InitContext};
use crate::namespaces::{clone_into, NamespacePlan};
use crate::spec::Bundle;
use crate::state::{self, ContainerRecord, StateDir, Status};
use crate::sync::{self, FromInit, ToInit};

/// Options of `create` (and `run`), as runc's flags.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// The bundle directory.
    pub bundle: PathBuf,
    /// `--console-socket`.
    pub console_socket: Option<PathBuf>,
    /// `--pid-file`.
    pub pid_file: Option<PathBuf>,
    /// `--no-pivot`.
    pub no_pivot: bool,
    /// `--no-new-keyring`.
    pub no_new_keyring: bool,
    /// `--preserve-fds`.
    pub preserve_fds: i32,
    /// Rootless mode (`--rootless`): cgroups only if delegated, no device rules.
    pub rootless: bool,
    /// A connected socket of the caller's that receives the pty master if the config asks
    /// for a terminal and no `console_socket` is given (foreground `run`); unused otherwise.
    /// The caller keeps ownership; the runtime uses a duplicate.
    pub own_console: Option<std::os::fd::RawFd>,
}

/// The OCI state of a container, with runc's extra fields.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerState {
    /// Runtime spec version.
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    /// Container id.
    pub id: String,
    /// Host pid of the init (0 once stopped).
    pub pid: i32,
    /// Current status.
    pub status: Status,
    /// Bundle path.
    pub bundle: PathBuf,
    /// Root filesystem path.
    pub rootfs: PathBuf,
    /// Creation time, RFC 3339.
    pub created: String,
    /// Owner (user name of the creator).
    pub owner: String,
    /// Annotations of the config.
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub annotations: HashMap<String, String>,
}

/// A runtime rooted at a state directory (runc's `--root`).
pub struct Runtime {
    root: PathBuf,
}

impl Runtime {
    /// A runtime keeping its state under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Runtime { root: root.into() }
    }

    /// The state directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Create a container: its init is set up and waits for `start`. Returns the init's pid.
    ///
    /// The caller must be single-threaded (the init is forked from it).
    pub fn create(&self, id: &str, opts: &CreateOptions) -> Result<i32> {
        state::validate_id(id)?;
        let bundle = Bundle::load(&opts.bundle)?;
        tracing::debug!("bundle loaded");
        refuse_unimplemented(&bundle.spec)?;
        crate::rootless::validate(&bundle.spec)?;
        let dir = StateDir::create(&self.root, id)?;
        let mut cgroup = None;
        match self.create_in(&dir, id, &bundle, opts, &mut cgroup) {
            Ok(pid) => Ok(pid),
            Err(e) => {
                if let Some(cg) = cgroup {
                    if let Err(ce) = crate::cgroup::ContainerCgroup::from_paths(cg).destroy() {
                        tracing::warn!("container {id:?}: remove cgroup after failed create: {ce}");
                    }
                }
                if let Err(re) = dir.remove() {
                    tracing::warn!("container {id:?}: remove state after failed create: {re}");
                }
                Err(e)
            }
        }
    }

    fn create_in(
        &self,
        dir: &StateDir,
        id: &str,
        bundle: &Bundle,
        opts: &CreateOptions,
        cgroup_out: &mut Option<HashMap<String, PathBuf>>,
    ) -> Result<i32> {
        let spec = &bundle.spec;
        let linux = spec.linux().as_ref();
        let process = spec.process().as_ref().ok_or_else(|| Error::InvalidConfig("process is required".into()))?;
        dir.save_config_bytes(&bundle.raw)?;

        let terminal = process.terminal().unwrap_or(false);
        let console = match (&opts.console_socket, terminal) {
            (Some(p), true) => Some(crate::console::connect_socket(p)?),
            (None, true) if opts.own_console.is_some() => {
                let fd = opts.own_console.unwrap_or(-1);
                // SAFETY: F_DUPFD_CLOEXEC on the caller's open fd returns a new fd we own.
                let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
                if dup < 0 {
                    return Err(std::io::Error::last_os_error()).context("duplicate the console socket");
                }
                // SAFETY: `dup` is a fresh fd owned by nobody else.
                Some(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(dup) })
            }
            (None, true) => return Err(Error::InvalidConfig("process.terminal is set: --console-socket is required".into())),
            (Some(_), false) => return Err(Error::InvalidConfig("--console-socket given but process.terminal is false".into())),
            (None, false) => None,
        };

        let fifo_path = dir.fifo_path();
        nix::unistd::mkfifo(&fifo_path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .with_context(|| format!("create exec fifo {}", fifo_path.display()))?;
        // O_RDWR never blocks on a fifo; the init's read then blocks until `start` writes.
        let fifo: OwnedFd = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fifo_path)
            .with_context(|| format!("open exec fifo {}", fifo_path.display()))?
            .into();

        let seccomp = match linux.and_then(|l| l.seccomp().as_ref()) {
            Some(profile) => Some(crate::seccomp::prepare_cached(profile, &self.root.join(SECCOMP_CACHE))?),
            None => None,
        };
        let plan = NamespacePlan::from_spec(linux)?;
        let cgroups_path = linux.and_then(|l| l.cgroups_path().as_deref());
        let mut cgroup = match opts.rootless {
            true => crate::cgroup::ContainerCgroup::for_new_rootless(cgroups_path, id, linux.and_then(|l| l.resources().as_ref()))?,
            false => crate::cgroup::ContainerCgroup::for_new(cgroups_path, id)?,
        };
        let (parent_sock, init_sock) = sync::pair()?;

        tracing::debug!("cloning init");
        // The cgroup exists, with its limits, before the init does; the init joins it
        // itself (see cgroup::join_self_v1) unless it lives in a new user namespace.
        cgroup.create_for_clone()?;
        *cgroup_out = Some(cgroup.paths());
        let self_join = !plan.has(LinuxNamespaceType::User);
        let task_files = if self_join { cgroup.v1_task_files() } else { Vec::new() };
        let cg_fd = cgroup.clone_into_fd();
        let child = clone_into(&plan, linux, plan.clone_flags(), cg_fd.as_ref().map(|f| f.as_raw_fd()))?;
        let Some(child) = child else {
            drop(parent_sock);
            init::run(
                InitContext {
                    id,
                    bundle: &bundle.path,
                    rootfs: &bundle.rootfs,
                    spec,
                    namespaces: &plan,
                    fifo,
                    console,
                    no_pivot: opts.no_pivot,
                    no_new_keyring: opts.no_new_keyring,
                    preserve_fds: opts.preserve_fds,
                    seccomp: seccomp.as_ref(),
                    cgroup_task_files: &task_files,
                },
                init_sock,
            );
        };
        tracing::debug!("cloned");
        drop(init_sock);
        drop(fifo);
        drop(console);
        let kill_child = |e: Error| {
            kill_and_reap(&child.pidfd, child.pid);
            e
        };

        let mut setup = || -> Result<()> {
            if plan.creates(LinuxNamespaceType::User) {
                crate::namespaces::write_id_maps(child.pid, linux)?;
            }
            send_to_init(&parent_sock, &ToInit::Go { host_pid: child.pid })?;
            // While the init prepares its mounts, its cgroup is made and limited.
            cgroup.create()?;
            if let Some(res) = linux.and_then(crate::cgroup::effective_resources) {
                cgroup.set(&res)?;
            }
            if !self_join {
                cgroup.apply(child.pid)?;
            }
            send_to_init(&parent_sock, &ToInit::CgroupReady)?;
            tracing::debug!("cgroup ready");
            loop {
                let (msg, fd) = match parent_sock.recv_with_fd::<FromInit>()? {
                    Some((m, fd)) => (Some(m), fd),
                    None => (None, None),
                };
                match msg {
                    Some(FromInit::SeccompListener) => {
                        let fd = fd.ok_or_else(|| Error::Init("seccomp listener message without an fd".into()))?;
                        send_seccomp_listener(spec, id, child.pid, &bundle.path, &fd)?;
                    }
                    Some(FromInit::RunCreateRuntimeHooks) => {
                        if let Some(h) = spec.hooks().as_ref() {
                            let st = init::hook_state(id, child.pid, &bundle.path, spec, "creating");
                            hooks::run(HookPhase::Prestart, h.prestart().as_deref().unwrap_or(&[]), &st)?;
                            hooks::run(HookPhase::CreateRuntime, h.create_runtime().as_deref().unwrap_or(&[]), &st)?;
                        }
                        send_to_init(&parent_sock, &ToInit::HooksDone)?;
                    }
                    Some(FromInit::Ready) => return Ok(()),
                    Some(FromInit::ExecPid(_)) => return Err(Error::Init("unexpected exec message from the init".into())),
                    Some(FromInit::Error(msg)) => return Err(Error::Init(msg)),
                    None => return Err(Error::Init("the init exited during setup".into())),
                }
            }
        };
        setup().map_err(kill_child)?;

        let record = ContainerRecord {
            id: id.to_string(),
            pid: child.pid,
            pid_start_time: state::process_start_time(child.pid)
                .ok_or_else(|| kill_child(Error::Init("the init exited after setup".into())))?,
            bundle: bundle.path.clone(),
            rootfs: bundle.rootfs.clone(),
            created: crate::time::now_rfc3339(),
            owner: owner_name(),
            annotations: spec.annotations().clone().unwrap_or_default(),
            cgroup_paths: cgroup.paths(),
            has_poststart: spec.hooks().as_ref().and_then(|h| h.poststart().as_ref()).is_some_and(|p| !p.is_empty()),
            has_poststop: spec.hooks().as_ref().and_then(|h| h.poststop().as_ref()).is_some_and(|p| !p.is_empty()),
        };
        dir.save(&record).map_err(kill_child)?;
        tracing::debug!("created");
        if let Some(p) = &opts.pid_file {
            state::write_atomic(p, child.pid.to_string().as_bytes()).map_err(kill_child)?;
        }
        Ok(child.pid)
    }

    /// Start a created container: release its init from the exec fifo, then poststart hooks.
    pub fn start(&self, id: &str) -> Result<()> {
        let dir = StateDir::open(&self.root, id)?;
        let record = dir.load()?;
        match state::derive_status(&dir, &record) {
            Status::Created => {}
            Status::Stopped => return Err(wrong(id, "cannot start a container that has stopped")),
            s => return Err(wrong(id, &format!("cannot start an already {s} container"))),
        }
        let fifo = dir.fifo_path();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .map_err(|e| wrong(id, &format!("the init is not waiting for start: {e}")))?;
        let before = if record.has_poststart { exe_identity(record.pid) } else { None };
        use std::io::Write;
        (&f).write_all(&[0]).with_context(|| format!("write exec fifo {}", fifo.display()))?;
        drop(f);
        std::fs::remove_file(&fifo).with_context(|| format!("remove exec fifo {}", fifo.display()))?;
        // poststart runs after the user process is executed (runtime spec): wait until the
        // init's executable is no longer ours, or the init is gone.
        if !record.has_poststart {
            return Ok(());
        }
        wait_for_exec(&record, before);
        let spec = dir.load_config()?;
        if let Some(h) = spec.hooks().as_ref() {
            let st = init::hook_state(id, record.pid, &record.bundle, &spec, "running");
            hooks::run(HookPhase::Poststart, h.poststart().as_deref().unwrap_or(&[]), &st)?;
        }
        Ok(())
    }

    /// The state of a container.
    pub fn state(&self, id: &str) -> Result<ContainerState> {
        let dir = StateDir::open(&self.root, id)?;
        let record = dir.load()?;
        Ok(view(&dir, record))
    }

    /// The states of every container under the root.
    pub fn list(&self) -> Result<Vec<ContainerState>> {
        let mut out = Vec::new();
        for id in state::list_ids(&self.root)? {
            match self.state(&id) {
                Ok(s) => out.push(s),
                Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Send `signal` to the init, or with `all` to every process of the container.
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        let dir = StateDir::open(&self.root, id)?;
        let record = dir.load()?;
        if state::derive_status(&dir, &record) == Status::Stopped {
            return Err(wrong(id, "container not running"));
        }
        if all && crate::cgroup::ContainerCgroup::from_paths(record.cgroup_paths.clone()).kill_all(signal)? {
            return Ok(());
        }
        let pidfd = open_pidfd(&record).ok_or_else(|| wrong(id, "container not running"))?;
        send_signal(&pidfd, signal).with_context(|| format!("signal container {id:?}"))?;
        // Like runc: a SIGKILLed paused container is thawed so that it actually dies.
        if signal == libc::SIGKILL && state::derive_status(&dir, &record) == Status::Paused {
            crate::cgroup::ContainerCgroup::from_paths(record.cgroup_paths.clone()).thaw()?;
        }
        Ok(())
    }

    /// Delete a container: kill what remains (a running one only with `force`), remove its
    /// cgroup and state, then run the poststop hooks.
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        let dir = match StateDir::open(&self.root, id) {
            Err(Error::NotFound(_)) if force => return self.delete_abandoned(id),
            other => other?,
        };
        let record = dir.load()?;
        let status = state::derive_status(&dir, &record);
        if matches!(status, Status::Running | Status::Paused) && !force {
            return Err(wrong(id, &format!("cannot delete container that is not stopped: {status}")));
        }
        tracing::debug!("delete: start");
        let spec = if record.has_poststop { dir.load_config().ok() } else { None };
        let cgroup = crate::cgroup::ContainerCgroup::from_paths(record.cgroup_paths.clone());
        if status != Status::Stopped {
            if let Some(pidfd) = open_pidfd(&record) {
                let _ = send_signal(&pidfd, libc::SIGKILL);
                // A frozen process only dies once thawed (cgroup v1).
                if status == Status::Paused {
                    cgroup.thaw()?;
                }
                kill_and_wait(&pidfd);
            }
        }
        tracing::debug!("delete: init gone");
        // Removes every remaining process of the container too (e.g. exec'd ones).
        cgroup.destroy()?;
        tracing::debug!("cgroup destroyed");
        dir.remove()?;
        if let Some(h) = spec.as_ref().and_then(|s| s.hooks().as_ref()) {
            let st = init::hook_state(id, 0, &record.bundle, spec.as_ref().unwrap_or(&Spec::default()), "stopped");
            hooks::run(HookPhase::Poststop, h.poststop().as_deref().unwrap_or(&[]), &st)?;
        }
        Ok(())
    }
}

impl Runtime {
    /// `delete --force` of a container whose `create` was killed before it recorded the
    /// container: its init has exited on its own (its sync socket closed); remove the cgroup
    /// the saved config names and the directory.
    fn delete_abandoned(&self, id: &str) -> Result<()> {
        let Some(dir) = StateDir::open_abandoned(&self.root, id)? else {
            return Err(Error::NotFound(id.to_string()));
        };
        if let Ok(spec) = dir.load_config() {
            let path = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone());
            if let Ok(cg) = crate::cgroup::ContainerCgroup::for_new(path.as_deref(), id) {
                cg.destroy()?;
            }
        }
        dir.remove()
    }
}

use std::os::unix::fs::OpenOptionsExt;

/// Send to the init; if it has already failed and gone, report its error rather than
/// the broken pipe.
fn send_to_init(sock: &sync::SyncSocket, msg: &ToInit) -> Result<()> {
    sock.send(msg).map_err(|send_err| match sock.recv::<FromInit>() {
        Ok(Some(FromInit::Error(m))) => Error::Init(m),
        _ => send_err,
    })
}

/// Cache of compiled seccomp programs, under the runtime root.
pub(crate) const SECCOMP_CACHE: &str = ".seccomp-cache";

/// Hand the seccomp notify fd to `linux.seccomp.listenerPath` (runtime-spec protocol).
pub(crate) fn send_seccomp_listener(spec: &Spec, id: &str, pid: i32, bundle: &Path, fd: &OwnedFd) -> Result<()> {
    use std::os::fd::AsFd;
    let profile = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    let path = profile
        .and_then(|p| p.listener_path().clone())
        .ok_or_else(|| Error::InvalidConfig("seccomp notify needs linux.seccomp.listenerPath".into()))?;
    let metadata = profile.and_then(|p| p.listener_metadata().clone()).unwrap_or_default();
    let state: serde_json::Value = serde_json::from_slice(&init::hook_state(id, pid, bundle, spec, "creating")).unwrap_or_default();
    let payload = crate::seccomp::container_process_state(pid, &metadata, state);
    crate::seccomp::send_to_listener(&path, &metadata, fd.as_fd(), &payload)
}

/// (device, inode) of a process's executable.
fn exe_identity(pid: i32) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/exe")).ok().map(|m| (m.dev(), m.ino()))
}

fn wait_for_exec(record: &ContainerRecord, before: Option<(u64, u64)>) {
    let mut delay = std::time::Duration::from_micros(50);
    loop {
        if state::process_start_time(record.pid) != Some(record.pid_start_time) {
            return;
        }
        let now = exe_identity(record.pid);
        if now.is_none() || now != before {
            return;
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(std::time::Duration::from_millis(10));
    }
}

fn wrong(id: &str, message: &str) -> Error {
    Error::WrongState { id: id.to_string(), message: message.to_string() }
}

fn view(dir: &StateDir, record: ContainerRecord) -> ContainerState {
    let status = state::derive_status(dir, &record);
    ContainerState {
        oci_version: crate::spec::OCI_VERSION.to_string(),
        id: record.id,
        pid: if status == Status::Stopped { 0 } else { record.pid },
        status,
        bundle: record.bundle,
        rootfs: record.rootfs,
        created: record.created,
        owner: record.owner,
        annotations: record.annotations,
    }
}

/// A pidfd on the recorded init, if it is still the same process.
fn open_pidfd(record: &ContainerRecord) -> Option<OwnedFd> {
    let fd = crate::signals::pidfd_open(record.pid)?;
    // Checked after opening the pidfd, so the pid cannot be reused in between.
    (state::process_start_time(record.pid) == Some(record.pid_start_time)).then_some(fd)
}

fn send_signal(pidfd: &OwnedFd, signal: i32) -> std::io::Result<()> {
    // SAFETY: pidfd_send_signal with a valid pidfd and no siginfo.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), signal, 0usize, 0) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// SIGKILL a process through its pidfd and wait (up to 10 s) until it is gone.
fn kill_and_wait(pidfd: &OwnedFd) {
    let _ = send_signal(pidfd, libc::SIGKILL);
    let mut pfd = libc::pollfd { fd: pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, 10_000) };
}

/// Kill and reap our own child after a failed create.
fn kill_and_reap(pidfd: &OwnedFd, pid: i32) {
    let _ = send_signal(pidfd, libc::SIGKILL);
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
}

/// The creator's user name from /etc/passwd (not NSS: no dlopen on the start path).
fn owner_name() -> String {
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                (f.nth(1)? == uid.to_string()).then(|| name.to_string())
            })
        })
        .unwrap_or_else(|| uid.to_string())
}

/// What the config asks for that this host or berth cannot give: a clear error, not a silent pass.
fn refuse_unimplemented(spec: &Spec) -> Result<()> {
    if let Some(linux) = spec.linux().as_ref() {
        // Ignored without SELinux, as runc does; with it, mount labels are not implemented.
        if linux.mount_label().as_ref().is_some_and(|l| !l.is_empty()) && crate::lsm::selinux_enabled() {
            return Err(Error::Unsupported("linux.mountLabel (SELinux) is not implemented yet".into()));
        }
        if linux.intel_rdt().is_some() {
            return Err(Error::Unsupported("linux.intelRdt".into()));
        }
    }
    if let Some(p) = spec.process().as_ref() {
        crate::lsm::validate(p.apparmor_profile().as_deref(), p.selinux_label().as_deref())?;
    }
    Ok(())
}
