//! The per-container monitor: the process that holds a container's stdio (pipes or a pty),
//! writes its log, waits for its init, records the exit, applies the restart policy, removes
//! a `--rm` container and takes attach clients' input (`attach.sock`: raw stdin bytes; the
//! output is read from the log).
//!
//! Detached (`run -d`, `start`), it is a double-forked child of the `berth` command with its
//! own session, and outlives it. In the foreground, the `berth` process is the monitor.
//!
//! ```text
//!   berth run -d ──fork──► child ──setsid, fork──► monitor ──clone──► container init
//!        ▲                   (exits)                 │ pipes/pty, log, attach.sock
//!        └──────────── "ok" or the error ────────────┘ (report pipe)
//! ```

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_runtime::signals::{pidfd_open, Forwarder};

use crate::backend::Backend;
use crate::db::ContainerRow;
use crate::error::{Error, IoContext, Result};
use crate::logs::{LogWriter, Stream};
use crate::run::Engine;
use crate::settings::ContainerSettings;

/// How the monitor presents the container's output.
pub(crate) enum Mode {
    /// Detached: log and attach clients only; "ok" or the error goes to `report`.
    Detached { report: Option<OwnedFd> },
    /// In the foreground: output also on our stdout/stderr, our stdin with `-i`, signals
    /// forwarded to the container.
    Foreground,
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into a valid array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).io_context(|| "pipe".into());
    }
    // SAFETY: two new fds owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl flag changes on an fd we own.
    unsafe { libc::fcntl(fd, libc::F_SETFL, libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK) };
}

/// The container's side and our side of its stdio for one run.
struct Stdio {
    /// What the init gets as fd 0, 1, 2 (None: keep ours).
    theirs: [Option<OwnedFd>; 3],
    /// Our ends: output streams to read, stdin to write.
    out: Option<OwnedFd>,
    err: Option<OwnedFd>,
    input: Option<OwnedFd>,
}

/// /dev/null for reading and writing: the stdio of what must not get ours.
pub(crate) fn dev_null() -> Result<OwnedFd> {
    Ok(std::fs::OpenOptions::new().read(true).write(true).open("/dev/null").io_context(|| "open /dev/null".into())?.into())
}

fn make_stdio(settings: &ContainerSettings, foreground: bool) -> Result<Stdio> {
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (stdin_theirs, input) = if settings.interactive && foreground {
        // Our own stdin, directly: nothing to relay.
        (None, None)
    } else if settings.interactive {
        let (r, w) = pipe()?;
        (Some(r), Some(w))
    } else {
        (Some(dev_null()?), None)
    };
    Ok(Stdio { theirs: [stdin_theirs, Some(out_w), Some(err_w)], out: Some(out_r), err: Some(err_r), input })
}

/// Run `f` with fds 0–2 replaced by `theirs` (the runtime's init inherits them), then restore.
pub(crate) fn with_stdio<T>(theirs: &[Option<OwnedFd>; 3], f: impl FnOnce() -> T) -> Result<T> {
    let mut saved: Vec<(i32, OwnedFd)> = Vec::new();
    for (i, fd) in theirs.iter().enumerate() {
        if let Some(fd) = fd {
            // SAFETY: F_DUPFD_CLOEXEC of an open standard fd gives a new fd we own.
            let keep = unsafe { libc::fcntl(i as i32, libc::F_DUPFD_CLOEXEC, 3) };
            if keep >= 0 {
                // SAFETY: the new fd is ours.
                saved.push((i as i32, unsafe { OwnedFd::from_raw_fd(keep) }));
            }
            // SAFETY: dup2 onto a standard fd number.
            unsafe { libc::dup2(fd.as_raw_fd(), i as i32) };
        }
    }
    let r = f();
    for (i, fd) in saved {
        // SAFETY: restores the saved standard fd.
        unsafe { libc::dup2(fd.as_raw_fd(), i) };
    }
    Ok(r)
}

/// Reap `init` if it has exited: Some(status) (128+N when killed by signal N). Other children
/// (processes reparented to us as subreaper) are reaped on the way.
fn reap_children(init: i32) -> Option<i32> {
    let mut found = None;
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid out pointer.
        let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if r <= 0 {
            return found;
        }
        if r == init {
            found = Some(if libc::WIFSIGNALED(status) { 128 + libc::WTERMSIG(status) } else { libc::WEXITSTATUS(status) });
        }
    }
}

/// Our own pid and start time, recorded as the container's monitor.
pub(crate) fn self_identity() -> (i32, i64) {
    let pid = std::process::id() as i32;
    (pid, berth_runtime::state::process_start_time(pid).unwrap_or(0) as i64)
}

/// Whether the process recorded as a monitor still lives (the same process, not a reused pid).
pub(crate) fn monitor_alive(row: &ContainerRow) -> bool {
    match (row.monitor_pid, row.monitor_start) {
        (Some(pid), Some(start)) => berth_runtime::state::process_start_time(pid).map(|t| t as i64) == Some(start),
        _ => false,
    }
}

/// One run of the container: launched, pumped until its init exits.
struct Launched {
    pid: i32,
    pidfd: Option<OwnedFd>,
    out: Option<OwnedFd>,
    err: Option<OwnedFd>,
    input: Option<OwnedFd>,
    /// The pty master with `-t`.
    master: Option<OwnedFd>,
}

impl Engine {
    /// Create and start the container's processes once; the init inherits the prepared stdio.
    fn launch(&self, row: &ContainerRow, settings: &ContainerSettings, backend: &Backend, foreground: bool) -> Result<Launched> {
        let d = self.dirs(&row.id);
        let rund = self.run_dir(&row.id);
        std::fs::create_dir_all(&rund).io_context(|| format!("create {}", rund.display()))?;
        let log = rund.join("runtime.log");
        let (pid, stdio, master) = if settings.tty {
            // The console socket is bound relative to our cwd, the run dir: its absolute path may
            // exceed sun_path's 108 bytes.
            std::env::set_current_dir(&rund).io_context(|| format!("enter {}", rund.display()))?;
            let _ = std::fs::remove_file("console.sock");
            let listener = UnixListener::bind("console.sock").io_context(|| "bind the console socket".into())?;
            let pid = backend.create(&row.id, &d.bundle(), Some(Path::new("console.sock")), &log)?;
            let _ = std::fs::remove_file("console.sock");
            let (conn, _) = listener.accept().io_context(|| "accept the console".into())?;
            let master = berth_runtime::console::recv_master(&conn)?;
            // The size before start, so that the container's first look at its terminal
            // sees it: ours in the foreground, docker's 24x80 when detached.
            if !(foreground && berth_runtime::tty_relay::copy_window_size(0, master.as_fd())) {
                berth_runtime::tty_relay::set_window_size(master.as_fd(), 24, 80);
            }
            (pid, None, Some(master))
        } else {
            let stdio = make_stdio(settings, foreground)?;
            let pid = with_stdio(&stdio.theirs, || backend.create(&row.id, &d.bundle(), None, &log))??;
            (pid, Some(stdio), None)
        };
        let launched = match stdio {
            Some(s) => Launched { pid, pidfd: pidfd_open(pid), out: s.out, err: s.err, input: s.input, master },
            None => Launched { pid, pidfd: pidfd_open(pid), out: None, err: None, input: None, master },
        };
        // The network joins the init's namespace between create and start.
        if let Err(e) = self.attach_network(&row.id, pid) {
            let _ = backend.delete(&row.id, true);
            return Err(e);
        }
        if let Err(e) = backend.start(&row.id) {
            let _ = backend.delete(&row.id, true);
            self.detach_network_or_warn(&row.id);
            return Err(e);
        }
        Ok(launched)
    }

    /// The monitor's whole job for container `id`; returns the last exit status.
    pub(crate) fn monitor(&self, id: &str, mut mode: Mode) -> Result<i32> {
        let row = self.db.find(id)?.ok_or_else(|| Error::NoSuchContainer(id.to_string()))?;
        let settings = ContainerSettings::from_json(&row.settings)?;
        let backend = Backend::new(settings.runtime.as_deref(), &self.run_root);
        let foreground = matches!(mode, Mode::Foreground);
        if settings.runtime.is_some() || !foreground {
            // The init of an external runtime is reparented to us; exec'd orphans too.
            // SAFETY: prctl with an integer argument.
            unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        }
        let mut log = LogWriter::open(settings.log_driver, &self.dirs(id).log(), settings.log_max_size)?;
        let attach = if foreground { None } else { self.bind_attach(id).ok() };
        let mut first = true;
        loop {
            let launched = match self.launch(&row, &settings, &backend, foreground) {
                Ok(l) => l,
                Err(e) => {
                    let _ = self.db.set_exited(id, None, &berth_runtime::time::now_rfc3339());
                    let _ = self.db.clear_monitor(id);
                    if let Mode::Detached { report } = &mut mode {
                        if let Some(r) = report.take() {
                            let _ = (&std::fs::File::from(r)).write_all(format!("{e}").as_bytes());
                        }
                    }
                    if !first {
                        tracing::warn!("container {id}: restart failed: {e}");
                    }
                    if row.auto_remove {
                        let _ = self.remove_unlocked(id);
                    }
                    return Err(e);
                }
            };
            let fwd = Forwarder::block().map_err(Error::Invalid)?;
            self.db.set_running(id, launched.pid, Some(self_identity()), &berth_runtime::time::now_rfc3339())?;
            if let Mode::Detached { report } = &mut mode {
                if let Some(r) = report.take() {
                    let _ = (&std::fs::File::from(r)).write_all(b"ok");
                }
            }
            if !foreground {
                release_startup_pages();
            }
            first = false;
            let status = if foreground && settings.tty {
                let master = launched.master.ok_or_else(|| Error::Invalid("no terminal was received".into()))?;
                // The terminal's output is logged too, as docker logs a `run -t`.
                let mut tee = |data: &[u8]| log.write(Stream::Stdout, data);
                berth_runtime::tty_relay::relay_until_exit_tee(master, &fwd, launched.pid, &mut tee).map_err(Error::Invalid)?
            } else {
                pump(launched, &fwd, &mut log, attach.as_ref(), foreground)
            };
            unblock_signals();
            drop(fwd);
            log.flush();
            let _ = backend.delete(id, true);
            self.detach_network_or_warn(id);
            self.db.set_exited(id, Some(status), &berth_runtime::time::now_rfc3339())?;
            let now = self.db.find(id)?.ok_or_else(|| Error::NoSuchContainer(id.to_string()))?;
            if foreground || now.stop_requested || !settings.restart.restarts(status, now.restart_count) {
                self.db.clear_monitor(id)?;
                if row.auto_remove {
                    self.remove_unlocked(id)?;
                }
                return Ok(status);
            }
            self.db.count_restart(id)?;
            // docker's back-off: 100 ms, doubling, at most 10 s (a stop request ends it).
            let delay = Duration::from_millis(100u64 << now.restart_count.clamp(0, 7)).min(Duration::from_secs(10));
            std::thread::sleep(delay);
            if self.db.find(id)?.map(|r| r.stop_requested).unwrap_or(true) {
                self.db.set_exited(id, Some(status), &berth_runtime::time::now_rfc3339())?;
                self.db.clear_monitor(id)?;
                return Ok(status);
            }
        }
    }

    fn bind_attach(&self, id: &str) -> Result<UnixListener> {
        let rund = self.run_dir(id);
        std::fs::create_dir_all(&rund).io_context(|| format!("create {}", rund.display()))?;
        std::env::set_current_dir(&rund).io_context(|| format!("enter {}", rund.display()))?;
        let _ = std::fs::remove_file("attach.sock");
        let l = UnixListener::bind("attach.sock").io_context(|| "bind the attach socket".into())?;
        l.set_nonblocking(true).io_context(|| "attach socket".into())?;
        Ok(l)
    }

    /// Start the detached monitor of a created container and wait for it to report the
    /// start: fork, setsid, fork, and exec this binary's `__monitor` command — a fresh
    /// process, as SQLite connections must not cross a fork, and a small one.
    ///
    /// The caller must be single-threaded.
    pub(crate) fn spawn_monitor(&self, id: &str) -> Result<()> {
        let (report_r, report_w) = pipe()?;
        let cstr = |s: &[u8]| std::ffi::CString::new(s).map_err(|_| Error::Invalid("a path contains a NUL byte".into()));
        use std::os::unix::ffi::OsStrExt;
        let exe = cstr(b"/proc/self/exe")?;
        let argv = [
            cstr(b"berth")?,
            cstr(b"--root")?,
            cstr(self.root.as_os_str().as_bytes())?,
            cstr(b"--runroot")?,
            cstr(self.run_root.as_os_str().as_bytes())?,
            cstr(b"__monitor")?,
            cstr(id.as_bytes())?,
        ];
        let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let null = dev_null()?;
        // SAFETY: the caller is single-threaded; between fork and exec the children only make
        // async-signal-safe calls (setsid, fork, dup2, close_range, execv, _exit).
        match unsafe { libc::fork() } {
            -1 => return Err(std::io::Error::last_os_error()).io_context(|| "fork the monitor".into()),
            0 => unsafe {
                libc::setsid();
                match libc::fork() {
                    0 => {}
                    -1 => libc::_exit(1),
                    _ => libc::_exit(0),
                }
                for fd in 0..3 {
                    libc::dup2(null.as_raw_fd(), fd);
                }
                // The report pipe becomes fd 3 (dup2 clears close-on-exec); nothing else of
                // the caller's survives: its pipes must see EOF when it exits.
                libc::dup2(report_w.as_raw_fd(), MONITOR_REPORT_FD);
                libc::syscall(libc::SYS_close_range, (MONITOR_REPORT_FD + 1) as u32, u32::MAX, 0u32);
                libc::execv(exe.as_ptr(), argv_ptrs.as_ptr());
                libc::_exit(127);
            },
            child => {
                drop(report_w);
                let mut status = 0;
                // SAFETY: reap the intermediate child.
                unsafe { libc::waitpid(child, &mut status, 0) };
            }
        }
        let mut msg = String::new();
        let _ = std::fs::File::from(report_r).read_to_string(&mut msg);
        match msg.as_str() {
            "ok" => Ok(()),
            "" => Err(Error::Invalid(format!("container {}: the monitor died before starting it", &id[..12.min(id.len())]))),
            err => Err(Error::StartFailed(err.to_string())),
        }
    }

    /// The body of `berth __monitor ID`: the detached monitor, reporting the start on fd 3.
    pub fn monitor_main(&self, id: &str) -> i32 {
        // Only spawn_monitor starts this command, with the report pipe on fd 3.
        // SAFETY: fstat writes one stat struct.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(MONITOR_REPORT_FD, &mut st) } != 0 || st.st_mode & libc::S_IFMT != libc::S_IFIFO {
            eprintln!("berth __monitor is internal: `berth start` starts a container's monitor");
            return 125;
        }
        // SAFETY: fd 3 is the report pipe spawn_monitor set up for this process alone.
        let report = unsafe { OwnedFd::from_raw_fd(MONITOR_REPORT_FD) };
        // SAFETY: F_SETFD on our own fd: children must not inherit the report pipe.
        unsafe { libc::fcntl(report.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
        match self.monitor(id, Mode::Detached { report: Some(report) }) {
            Ok(_) => 0,
            Err(_) => 1,
        }
    }
}

/// The fd on which an exec'd monitor reports "ok" or the start error.
const MONITOR_REPORT_FD: i32 = 3;

/// Drop from this process's memory the executable's read-only pages touched while starting
/// the container (argument parsing, the runtime, SQLite setup): an idle monitor then holds
/// only what its poll loop uses, re-faulted from the page cache. Only segments that are never
/// written (text, read-only data outside RELRO) are dropped: MADV_DONTNEED on a private file
/// mapping discards private changes, which those segments cannot have.
fn release_startup_pages() {
    unsafe extern "C" fn each(info: *mut libc::dl_phdr_info, _size: libc::size_t, _data: *mut libc::c_void) -> libc::c_int {
        // SAFETY: the loader passes a valid dl_phdr_info whose phdrs array has dlpi_phnum entries.
        let info = unsafe { &*info };
        // Only the main program (the first object, with an empty name).
        // SAFETY: dlpi_name is a NUL-terminated string or null.
        if !info.dlpi_name.is_null() && unsafe { *info.dlpi_name } != 0 {
            return 1;
        }
        // SAFETY: as above.
        let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
        let relro = phdrs.iter().find(|p| p.p_type == libc::PT_GNU_RELRO).map(|p| (p.p_vaddr, p.p_vaddr + p.p_memsz));
        let page = 4096u64;
        for p in phdrs.iter().filter(|p| p.p_type == libc::PT_LOAD && p.p_flags & libc::PF_W == 0) {
            let (start, end) = (p.p_vaddr, p.p_vaddr + p.p_filesz);
            if relro.is_some_and(|(rs, re)| start < re && rs < end) {
                continue;
            }
            // Whole pages inside the segment only.
            let first = start.div_ceil(page) * page;
            let last = end / page * page;
            if last > first {
                let addr = (info.dlpi_addr + first) as *mut libc::c_void;
                // SAFETY: the range lies inside a read-only, never-written mapping of our own
                // executable; dropping it only makes later accesses fault the pages back in.
                unsafe { libc::madvise(addr, (last - first) as usize, libc::MADV_DONTNEED) };
            }
        }
        1
    }
    // SAFETY: dl_iterate_phdr calls `each` with loader-owned data; no state is passed.
    // malloc_trim returns the heap freed after setup to the kernel.
    unsafe {
        libc::dl_iterate_phdr(Some(each), std::ptr::null_mut());
        libc::malloc_trim(0);
    }
}

fn unblock_signals() {
    // SAFETY: sigprocmask with an empty set.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
}

/// Relay the container's output to the log (and our stdio in the foreground, and attach
/// clients) until its init exits; returns its status.
fn pump(l: Launched, fwd: &Forwarder, log: &mut LogWriter, attach: Option<&UnixListener>, foreground: bool) -> i32 {
    let Launched { pid, pidfd, out, err, mut input, master } = l;
    // With a terminal, the pty master is both the output and the input.
    let (mut out, mut err) = match master {
        Some(m) => {
            // SAFETY: F_DUPFD_CLOEXEC of our master gives a new fd we own, for input.
            let dup = unsafe { libc::fcntl(m.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
            if dup >= 0 {
                // SAFETY: the new fd is ours.
                input = Some(unsafe { OwnedFd::from_raw_fd(dup) });
            }
            (Some(m), None)
        }
        None => (out, err),
    };
    for fd in [&out, &err].into_iter().flatten() {
        set_nonblocking(fd.as_raw_fd());
    }
    let mut clients: Vec<UnixStream> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut status = None;
    while status.is_none() {
        let mut fds = vec![
            libc::pollfd { fd: fwd.fd().as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: pidfd.as_ref().map_or(-1, |p| p.as_raw_fd()), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: out.as_ref().map_or(-1, |p| p.as_raw_fd()), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: err.as_ref().map_or(-1, |p| p.as_raw_fd()), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: attach.map_or(-1, |a| a.as_raw_fd()), events: libc::POLLIN, revents: 0 },
        ];
        for c in &clients {
            fds.push(libc::pollfd { fd: c.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        }
        // Without a pidfd (very old kernel), SIGCHLD still wakes us; poll every second anyway.
        // SAFETY: a valid array of pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 1000) };
        if n < 0 {
            continue;
        }
        if fds[0].revents != 0 {
            if let Ok(sig) = fwd.next_signal() {
                if foreground && sig != 0 && sig != libc::SIGCHLD && sig != libc::SIGPIPE {
                    // SAFETY: kill with a pid and a signal number.
                    unsafe { libc::kill(pid, sig) };
                }
            }
        }
        for (i, stream) in [(2usize, Stream::Stdout), (3, Stream::Stderr)] {
            if fds[i].revents == 0 {
                continue;
            }
            let src = if i == 2 { &mut out } else { &mut err };
            if !relay(src, stream, &mut buf, log, foreground) {
                *src = None;
            }
        }
        let mut gone = Vec::new();
        for (k, c) in clients.iter_mut().enumerate() {
            if fds.get(5 + k).is_none_or(|f| f.revents == 0) {
                continue;
            }
            match c.read(&mut buf) {
                Ok(0) => {
                    // The client closed its input: so does the container's stdin (docker's -i).
                    input = None;
                    gone.push(k);
                }
                Ok(n) => {
                    if let Some(i) = &input {
                        berth_runtime::tty_relay::write_all(i.as_raw_fd(), &buf[..n]);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => gone.push(k),
            }
        }
        for k in gone.into_iter().rev() {
            clients.remove(k);
        }
        // New clients last: the loop above indexes `fds` by the clients polled.
        if fds[4].revents != 0 {
            if let Some(a) = attach {
                while let Ok((c, _)) = a.accept() {
                    let _ = c.set_nonblocking(true);
                    clients.push(c);
                }
            }
        }
        if fds[1].revents != 0 || pidfd.is_none() || fds[0].revents != 0 {
            status = reap_children(pid);
            if status.is_none() && pidfd.is_some() && fds[1].revents != 0 {
                // Dead but not our child (an external runtime's init not reparented to us).
                status = Some(-1);
            }
        }
    }
    // What the container wrote just before it exited.
    for (src, stream) in [(&mut out, Stream::Stdout), (&mut err, Stream::Stderr)] {
        while src.is_some() && relay(src, stream, &mut buf, log, foreground) {}
    }
    status.unwrap_or(-1)
}

/// Move one read of `src` to the log and, in the foreground, our stdio; false at
/// EOF/error/empty. (Attach clients read the output from the log: a client that does not
/// read can never stall the monitor, hence the container.)
fn relay(src: &mut Option<OwnedFd>, stream: Stream, buf: &mut [u8], log: &mut LogWriter, foreground: bool) -> bool {
    let Some(fd) = src.as_ref() else { return false };
    // SAFETY: read into a valid buffer.
    let n = unsafe { libc::read(fd.as_fd().as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n <= 0 {
        let again = n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR);
        if n == 0 || (n < 0 && !again && std::io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN)) {
            *src = None;
        }
        return again;
    }
    let data = &buf[..n as usize];
    log.write(stream, data);
    if foreground {
        berth_runtime::tty_relay::write_all(if stream == Stream::Stdout { 1 } else { 2 }, data);
    }
    true
}

/// Connect to a container's attach socket in `run_dir` (through /proc/self/fd, whose path is
/// short whatever the run dir's length).
pub fn connect_attach(run_dir: &Path) -> Result<UnixStream> {
    let dir = std::fs::File::open(run_dir).io_context(|| format!("open {}", run_dir.display()))?;
    let path = PathBuf::from(format!("/proc/self/fd/{}/attach.sock", dir.as_raw_fd()));
    UnixStream::connect(&path).io_context(|| "connect to the container's monitor".into())
}
