//! Foreground runs of a container with `process.terminal`: runc's behaviour without a
//! console socket — the runtime receives the pty master itself and relays it to its own
//! stdio (raw mode and window size when stdin is a terminal), forwarding signals.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use crate::signals::{reap, Forwarder};

/// Puts a terminal in raw mode and restores it on drop.
struct RawMode {
    fd: i32,
    saved: libc::termios,
}

impl RawMode {
    fn enter(fd: i32) -> Option<RawMode> {
        // SAFETY: isatty/tcgetattr/tcsetattr on an fd we do not own but that stays open
        // (stdin); termios is plain data.
        unsafe {
            if libc::isatty(fd) != 1 {
                return None;
            }
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut saved) != 0 {
                return None;
            }
            let mut raw = saved;
            libc::cfmakeraw(&mut raw);
            libc::tcsetattr(fd, libc::TCSANOW, &raw);
            Some(RawMode { fd, saved })
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restores the saved attributes of the same terminal fd.
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
    }
}

/// Give the container's terminal the size of ours (before start, so it sees it at once).
pub fn copy_window_size(from: i32, to: BorrowedFd<'_>) {
    // SAFETY: TIOCGWINSZ/TIOCSWINSZ read/write one winsize struct.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(from, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(to.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
    }
}

/// Write all of `buf` to `fd`, retrying on EINTR/EAGAIN.
fn write_all(fd: i32, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        // SAFETY: writes from a valid buffer.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n > 0 {
            buf = &buf[n as usize..];
            continue;
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::EAGAIN) => {
                let mut p = libc::pollfd { fd, events: libc::POLLOUT, revents: 0 };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut p, 1, 1000) };
            }
            _ => return false,
        }
    }
    true
}

fn read_some(fd: i32, buf: &mut [u8]) -> isize {
    // SAFETY: reads into a valid buffer.
    unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) }
}

/// Relay stdin → master and master → stdout until `pid` exits; returns its status.
pub fn relay_until_exit(master: OwnedFd, fwd: &Forwarder, pid: i32) -> Result<i32, String> {
    let _raw = RawMode::enter(0);
    copy_window_size(0, master.as_fd());
    let m = master.as_raw_fd();
    let mut stdin_open = true;
    let mut master_open = true;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let mut fds = [
            libc::pollfd { fd: fwd.fd().as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: if master_open { m } else { -1 }, events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: if stdin_open && master_open { 0 } else { -1 }, events: libc::POLLIN, revents: 0 },
        ];
        // SAFETY: three valid pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 3, -1) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("poll: {e}"));
        }
        if fds[1].revents != 0 {
            let r = read_some(m, &mut buf);
            if r > 0 {
                if !write_all(1, &buf[..r as usize]) {
                    master_open = false;
                }
            } else if r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                // EIO: every copy of the peer is closed.
                master_open = false;
            }
        }
        if fds[2].revents != 0 {
            let r = read_some(0, &mut buf);
            if r > 0 {
                write_all(m, &buf[..r as usize]);
            } else if r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                stdin_open = false;
            }
        }
        if fds[0].revents != 0 {
            match fwd.next_signal()? {
                libc::SIGCHLD => {
                    if let Some(status) = reap(pid)? {
                        drain(m, &mut buf, master_open);
                        return Ok(status);
                    }
                }
                libc::SIGWINCH => copy_window_size(0, master.as_fd()),
                sig => {
                    // SAFETY: kill with a pid and a signal number.
                    unsafe { libc::kill(pid, sig) };
                }
            }
        }
    }
}

/// What the container wrote just before it exited.
fn drain(m: i32, buf: &mut [u8], open: bool) {
    if !open {
        return;
    }
    // SAFETY: fcntl on our own fd.
    unsafe { libc::fcntl(m, libc::F_SETFL, libc::fcntl(m, libc::F_GETFL) | libc::O_NONBLOCK) };
    loop {
        let r = read_some(m, buf);
        if r <= 0 || !write_all(1, &buf[..r as usize]) {
            return;
        }
    }
}
