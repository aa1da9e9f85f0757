//! Signal names, and forwarding signals to a container process waited for in the foreground.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Parse a signal as runc does: a number, or a name with or without "SIG", any case.
pub fn parse(s: &str) -> Result<i32, String> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        return Err(format!("invalid signal {s:?}"));
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") { up } else { format!("SIG{up}") };
    name.parse::<nix::sys::signal::Signal>().map(|sig| sig as i32).map_err(|_| format!("unknown signal {s:?}"))
}

/// A pidfd on process `pid` (None if it is gone or the kernel has no pidfd_open).
pub fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open with a pid and no flags returns a new fd.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a new fd owned by nobody else.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Signals blocked and read through a signalfd, so they can be passed on to the container.
pub struct Forwarder {
    fd: OwnedFd,
}

const FORWARDED: &[i32] = &[
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
    libc::SIGCONT,
    libc::SIGTSTP,
    libc::SIGTTIN,
    libc::SIGTTOU,
    libc::SIGCHLD,
    libc::SIGALRM,
    libc::SIGPIPE,
];

impl Forwarder {
    /// The signalfd, for polling together with other fds.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

    /// Read one pending signal; 0 if none is pending any more (the fd is non-blocking: in a
    /// multi-threaded caller, another thread may take a process-wide signal between the
    /// poll that saw it and this read).
    pub fn next_signal(&self) -> Result<i32, String> {
        loop {
            // SAFETY: signalfd_siginfo is plain data; read fills at most its size.
            let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    (&mut info as *mut libc::signalfd_siginfo).cast(),
                    std::mem::size_of::<libc::signalfd_siginfo>(),
                )
            };
            if n >= 0 {
                return Ok(info.ssi_signo as i32);
            }
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::WouldBlock {
                return Ok(0);
            }
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(format!("read signalfd: {e}"));
            }
        }
    }

    /// Block the forwarded signals and SIGCHLD and open a signalfd for them.
    pub fn block() -> Result<Self, String> {
        // SAFETY: sigset operations on a local, zero-initialised set.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for &s in FORWARDED {
                libc::sigaddset(&mut set, s);
            }
            if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
                return Err(format!("block signals: {}", std::io::Error::last_os_error()));
            }
            let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
            if fd < 0 {
                return Err(format!("signalfd: {}", std::io::Error::last_os_error()));
            }
            Ok(Forwarder { fd: OwnedFd::from_raw_fd(fd) })
        }
    }

    /// Forward signals to `pid` until it exits; returns its exit status (128+N if killed).
    pub fn forward_until_exit(&self, pid: i32) -> Result<i32, String> {
        // The child's exit is watched through a pidfd rather than SIGCHLD, which a
        // multi-threaded caller may have delivered to another thread.
        let pidfd = pidfd_open(pid).ok_or_else(|| format!("pidfd_open {pid}: {}", std::io::Error::last_os_error()))?;
        loop {
            if let Some(status) = reap(pid)? {
                return Ok(status);
            }
            let mut fds = [
                libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 },
                libc::pollfd { fd: pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            ];
            // SAFETY: two valid pollfds.
            if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(format!("poll: {e}"));
                }
                continue;
            }
            if fds[0].revents != 0 {
                let sig = self.next_signal()?;
                if sig != libc::SIGCHLD && sig != 0 {
                    // SAFETY: kill with a pid and signal number.
                    unsafe { libc::kill(pid, sig) };
                }
            }
        }
    }
}

/// The exit status of `pid` (our child) if it has finished: 128+N when killed by signal N.
/// Only that child is reaped: other children of the caller are not ours to wait for.
pub fn reap(pid: i32) -> Result<Option<i32>, String> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == 0 {
            return Ok(None);
        }
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ECHILD) {
                return Err("the container's init is not a child of this process".into());
            }
            return Err(format!("waitpid: {e}"));
        }
        if r == pid {
            if libc::WIFEXITED(status) {
                return Ok(Some(libc::WEXITSTATUS(status)));
            }
            if libc::WIFSIGNALED(status) {
                return Ok(Some(128 + libc::WTERMSIG(status)));
            }
        }
    }
}
