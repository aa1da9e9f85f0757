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

/// The size (rows, columns) of the terminal on `fd`, if it is one with a size.
pub fn window_size(fd: i32) -> Option<(u16, u16)> {
    // SAFETY: TIOCGWINSZ writes one winsize struct.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: as above, on a valid out pointer.
    let ok = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0;
    (ok && ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
}

/// Give the container's terminal the size of ours (before start, so it sees it at once);
/// false if `from` is not a terminal.
pub fn copy_window_size(from: i32, to: BorrowedFd<'_>) -> bool {
    match window_size(from) {
        Some((rows, cols)) => {
            set_window_size(to, rows, cols);
            true
        }
        None => false,
    }
}

/// Set a terminal's size.
pub fn set_window_size(to: BorrowedFd<'_>, rows: u16, cols: u16) {
    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one winsize struct.
    unsafe { libc::ioctl(to.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
}

/// Write all of `buf` to `fd`, retrying on EINTR/EAGAIN.
pub fn write_all(fd: i32, mut buf: &[u8]) -> bool {
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
    relay_until_exit_tee(master, fwd, pid, &mut |_| {})
}

/// [`relay_until_exit`], also handing every piece of output to `tee` (an engine's log).
pub fn relay_until_exit_tee(master: OwnedFd, fwd: &Forwarder, pid: i32, tee: &mut dyn FnMut(&[u8])) -> Result<i32, String> {
    let _raw = RawMode::enter(0);
    copy_window_size(0, master.as_fd());
    // The exit is watched through a pidfd as well as SIGCHLD: a process that exited before
    // the caller blocked SIGCHLD (a short `exec -t`) sent its signal to no one.
    let pidfd = crate::signals::pidfd_open(pid);
    let m = master.as_raw_fd();
    let mut stdin_open = true;
    let mut master_open = true;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let mut fds = [
            libc::pollfd { fd: fwd.fd().as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: if master_open { m } else { -1 }, events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: if stdin_open && master_open { 0 } else { -1 }, events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: pidfd.as_ref().map_or(-1, |p| p.as_raw_fd()), events: libc::POLLIN, revents: 0 },
        ];
        // SAFETY: four valid pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 4, -1) };
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
                tee(&buf[..r as usize]);
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
        if fds[3].revents != 0 {
            if let Some(status) = reap(pid)? {
                drain(m, &mut buf, master_open, tee);
                return Ok(status);
            }
        }
        if fds[0].revents != 0 {
            match fwd.next_signal()? {
                // Taken by another thread of a multi-threaded caller.
                0 => {}
                libc::SIGCHLD => {
                    if let Some(status) = reap(pid)? {
                        drain(m, &mut buf, master_open, tee);
                        return Ok(status);
                    }
                }
                libc::SIGWINCH => {
                    copy_window_size(0, master.as_fd());
                }
                sig => {
                    // SAFETY: kill with a pid and a signal number.
                    unsafe { libc::kill(pid, sig) };
                }
            }
        }
    }
}

/// What the container wrote just before it exited.
fn drain(m: i32, buf: &mut [u8], open: bool, tee: &mut dyn FnMut(&[u8])) {
    if !open {
        return;
    }
    // SAFETY: fcntl on our own fd.
    unsafe { libc::fcntl(m, libc::F_SETFL, libc::fcntl(m, libc::F_GETFL) | libc::O_NONBLOCK) };
    loop {
        let r = read_some(m, buf);
        if r <= 0 {
            return;
        }
        tee(&buf[..r as usize]);
        if !write_all(1, &buf[..r as usize]) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::FromRawFd;

    #[test]
    fn relay_returns_the_status_of_a_process_that_exited_before_signals_were_blocked() {
        let (mut master, mut slave) = (-1, -1);
        // SAFETY: openpty writes two fds; the other pointers may be null.
        assert_eq!(unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) }, 0);
        // SAFETY: new fds nobody else owns.
        let (master, _slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        // The relay reaps it.
        #[allow(clippy::zombie_processes)]
        let child = std::process::Command::new("sh").args(["-c", "exit 7"]).spawn().unwrap();
        let pid = child.id() as i32;
        // Its SIGCHLD is gone by the time the relay starts (a quick `exec -t`).
        std::thread::sleep(std::time::Duration::from_millis(300));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let fwd = Forwarder::block().unwrap();
            let _ = tx.send(relay_until_exit(master, &fwd, pid));
        });
        let status = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("the relay missed the exit");
        assert_eq!(status, Ok(7));
    }
}
