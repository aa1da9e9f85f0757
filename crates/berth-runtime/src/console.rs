//! `process.terminal`: runc's console-socket protocol.
//!
//! The runtime connects to `--console-socket` before clone; the init, after pivot_root,
//! opens a pty from the container's `/dev/ptmx`, gets the peer with TIOCGPTPEER (no path
//! lookup of `/dev/pts/N`, the CVE-2025-52565 fix), sends the master with SCM_RIGHTS and
//! the pty name as payload, makes the peer its controlling terminal and stdio, and binds it
//! onto `/dev/console` through `/proc/self/fd`.

use std::ffi::CString;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::errno::Errno;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags, UnixAddr};
use nix::sys::stat::fstat;
use nix::sys::statfs::{fstatfs, statfs, DEVPTS_SUPER_MAGIC, PROC_SUPER_MAGIC};

use crate::error::{Context, Error, Result};

/// Longest pty name accepted with a master fd (runc's MaxNameLen).
const MAX_NAME_LEN: usize = 4096;
const PTMX_MAJOR: u64 = 5;
const PTMX_MINOR: u64 = 2;
/// The ptmx inode number inside every devpts instance.
const DEVPTS_PTMX_INO: u64 = 2;
/// UNIX98_PTY_SLAVE_MAJOR and the 7 majors after it.
const PTY_PEER_MAJORS: std::ops::RangeInclusive<u64> = 136..=143;

/// Connect to the `--console-socket` (in the runtime's namespaces, before clone).
pub fn connect_socket(path: &Path) -> Result<OwnedFd> {
    let stream = UnixStream::connect(path).with_context(|| format!("connect to console socket {}", path.display()))?;
    Ok(OwnedFd::from(stream))
}

/// A freshly opened pty: the master, its peer, and the peer's name (`/dev/pts/N`).
#[derive(Debug)]
pub struct Pty {
    /// The master side, sent to the console socket.
    pub master: OwnedFd,
    /// The peer (terminal) side, which becomes the container's stdio.
    pub peer: OwnedFd,
    /// The peer's name inside the container, e.g. `/dev/pts/0`.
    pub name: String,
}

fn ioctl_err(what: &str) -> Error {
    Error::Sys { context: what.to_string(), source: Errno::last() }
}

/// Check that `fd` is a real ptmx: a 5:2 character device, inode 2 when it is on devpts.
fn check_ptmx(fd: BorrowedFd<'_>, path: &Path) -> Result<()> {
    let st = fstat(fd).with_context(|| format!("fstat {}", path.display()))?;
    let (major, minor) = (libc::major(st.st_rdev) as u64, libc::minor(st.st_rdev) as u64);
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR || (major, minor) != (PTMX_MAJOR, PTMX_MINOR) {
        return Err(Error::Init(format!(
            "{} is not the ptmx device: type {:#o}, device {major}:{minor}",
            path.display(),
            st.st_mode & libc::S_IFMT
        )));
    }
    let fs = fstatfs(fd).with_context(|| format!("fstatfs {}", path.display()))?;
    if fs.filesystem_type() == DEVPTS_SUPER_MAGIC && st.st_ino != DEVPTS_PTMX_INO {
        return Err(Error::Init(format!("{} has a wrong devpts inode number {}", path.display(), st.st_ino)));
    }
    Ok(())
}

/// Check that the peer is a pty terminal on a devpts mount.
fn check_peer(fd: BorrowedFd<'_>) -> Result<()> {
    let st = fstat(fd).context("fstat the pty peer")?;
    let major = libc::major(st.st_rdev) as u64;
    let fs = fstatfs(fd).context("fstatfs the pty peer")?;
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR || !PTY_PEER_MAJORS.contains(&major) || fs.filesystem_type() != DEVPTS_SUPER_MAGIC {
        return Err(Error::Init(format!("the pty peer is not a devpts terminal: type {:#o}, major {major}", st.st_mode & libc::S_IFMT)));
    }
    Ok(())
}

/// Open a pty through `ptmx` (normally `/dev/ptmx`), unlock it and get its peer by fd.
pub fn open_pty(ptmx: &Path) -> Result<Pty> {
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    let c = CString::new(ptmx.as_os_str().as_encoded_bytes()).map_err(|_| Error::InvalidConfig(format!("{ptmx:?} contains a NUL byte")))?;
    // SAFETY: `c` is a valid NUL-terminated path; the returned fd is owned below.
    let raw = unsafe { libc::open(c.as_ptr(), flags) };
    if raw < 0 {
        return Err(Error::Sys { context: format!("open {}", ptmx.display()), source: Errno::last() });
    }
    // SAFETY: `raw` was just returned by open and is owned by nothing else.
    let master = unsafe { OwnedFd::from_raw_fd(raw) };
    check_ptmx(master.as_fd(), ptmx)?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from the pointer, which points at `unlock`.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } < 0 {
        return Err(ioctl_err("unlock the pty (TIOCSPTLCK)"));
    }
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one unsigned int through the pointer, which points at `n`.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut n) } < 0 {
        return Err(ioctl_err("get the pty number (TIOCGPTN)"));
    }
    // SAFETY: TIOCGPTPEER takes open flags by value and returns a new fd, owned below.
    let raw_peer = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) };
    if raw_peer < 0 {
        return Err(ioctl_err("open the pty peer (TIOCGPTPEER)"));
    }
    // SAFETY: `raw_peer` is a fresh fd returned by the ioctl and owned by nothing else.
    let peer = unsafe { OwnedFd::from_raw_fd(raw_peer) };
    check_peer(peer.as_fd())?;
    Ok(Pty { master, peer, name: format!("/dev/pts/{n}") })
}

/// Set the terminal size of `fd` (TIOCSWINSZ).
pub fn set_window_size(fd: BorrowedFd<'_>, size: &oci_spec::runtime::Box) -> Result<()> {
    let ws = libc::winsize {
        ws_row: u16::try_from(size.height()).unwrap_or(u16::MAX),
        ws_col: u16::try_from(size.width()).unwrap_or(u16::MAX),
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize struct from the pointer, which points at `ws`.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(ioctl_err("set the console size (TIOCSWINSZ)"));
    }
    Ok(())
}

/// Send `fd` over `socket` with SCM_RIGHTS and `name` as the message data.
pub fn send_fd(socket: BorrowedFd<'_>, name: &str, fd: BorrowedFd<'_>) -> Result<()> {
    if name.len() >= MAX_NAME_LEN {
        return Err(Error::Init(format!("pty name {name:?} is too long to send")));
    }
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(name.as_bytes())];
    loop {
        match sendmsg::<UnixAddr>(socket.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(Error::Sys { context: "send the pty master to the console socket".into(), source: e }),
        }
    }
}

/// Receive a pty master sent by [`setup_in_container`] on an accepted console-socket
/// connection, with the pty name sent along.
pub fn recv_master_named(conn: &UnixStream) -> Result<(OwnedFd, String)> {
    let mut name = vec![0u8; MAX_NAME_LEN];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let (len, fds) = loop {
        let mut iov = [IoSliceMut::new(&mut name)];
        match recvmsg::<UnixAddr>(conn.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
            Ok(msg) => {
                let mut fds = Vec::new();
                for c in msg.cmsgs().context("console socket message")? {
                    if let ControlMessageOwned::ScmRights(r) = c {
                        fds.extend(r);
                    }
                }
                break (msg.bytes, fds);
            }
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(Error::Sys { context: "receive from the console socket".into(), source: e }),
        }
    };
    // SAFETY: SCM_RIGHTS installed these fds in our table for us; each is owned exactly once.
    let mut owned: Vec<OwnedFd> = fds.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }).collect();
    if owned.len() != 1 {
        return Err(Error::Init(format!("console socket: expected 1 fd, got {}", owned.len())));
    }
    let master = owned.remove(0);
    Ok((master, String::from_utf8_lossy(&name[..len]).into_owned()))
}

/// Receive a pty master sent by [`setup_in_container`] (the engine's or a test's side).
pub fn recv_master(listener_conn: &UnixStream) -> Result<OwnedFd> {
    recv_master_named(listener_conn).map(|(fd, _)| fd)
}

/// Become a session leader (unless already one) and take `tty` as controlling terminal.
fn take_controlling_terminal(tty: BorrowedFd<'_>) -> Result<()> {
    if let Err(e) = nix::unistd::setsid() {
        let leader = nix::unistd::getsid(None).ok() == Some(nix::unistd::getpid());
        if !(e == Errno::EPERM && leader) {
            return Err(Error::Sys { context: "setsid".into(), source: e });
        }
    }
    // SAFETY: TIOCSCTTY takes an int argument by value (0: do not steal).
    if unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
        return Err(ioctl_err("make the pty the controlling terminal (TIOCSCTTY)"));
    }
    Ok(())
}

fn dup_onto_stdio(tty: BorrowedFd<'_>) -> Result<()> {
    for target in 0..=2 {
        // SAFETY: dup2 onto the stdio numbers; the fds they held (if any) are replaced, which
        // is the point: nothing else in the init owns them as OwnedFd.
        if unsafe { libc::dup2(tty.as_raw_fd(), target) } < 0 {
            return Err(Error::Sys { context: format!("dup2 the pty onto fd {target}"), source: Errno::last() });
        }
    }
    Ok(())
}

/// Open `/dev/console` as O_PATH without following a symlink, creating an empty file
/// when it is missing; it must be a regular file or a character device.
fn open_console_target(path: &Path) -> Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| Error::InvalidConfig(format!("{path:?} contains a NUL byte")))?;
    // SAFETY: `c` is a valid path; O_CREAT|O_EXCL|O_NOFOLLOW never follows a symlink.
    let created =
        unsafe { libc::open(c.as_ptr(), libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_WRONLY | libc::O_CLOEXEC, 0o600) };
    if created >= 0 {
        // SAFETY: `created` is a fresh fd owned by nobody else; closing it now.
        drop(unsafe { OwnedFd::from_raw_fd(created) });
    } else if Errno::last() != Errno::EEXIST {
        return Err(Error::Sys { context: format!("create {}", path.display()), source: Errno::last() });
    }
    // SAFETY: O_PATH|O_NOFOLLOW opens the inode itself (a symlink stays a symlink).
    let raw = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
    if raw < 0 {
        return Err(Error::Sys { context: format!("open {}", path.display()), source: Errno::last() });
    }
    // SAFETY: `raw` is a fresh fd owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let st = fstat(fd.as_fd()).with_context(|| format!("fstat {}", path.display()))?;
    match st.st_mode & libc::S_IFMT {
        libc::S_IFREG | libc::S_IFCHR => Ok(fd),
        libc::S_IFLNK => Err(Error::UnsafePath { path: path.display().to_string(), message: "is a symlink".into() }),
        t => Err(Error::UnsafePath {
            path: path.display().to_string(),
            message: format!("is neither a regular file nor a device (type {t:#o})"),
        }),
    }
}

/// Bind-mount the pty `peer` onto `/dev/console`, both named through `/proc/self/fd`.
fn mount_console(peer: BorrowedFd<'_>) -> Result<()> {
    let proc_ok = statfs("/proc/self/fd").is_ok_and(|s| s.filesystem_type() == PROC_SUPER_MAGIC);
    if !proc_ok {
        return Err(Error::Mount {
            destination: "/dev/console".into(),
            message: "the container has no /proc mounted, which the console bind mount needs".into(),
        });
    }
    let target = open_console_target(Path::new("/dev/console"))?;
    let src = format!("/proc/self/fd/{}", peer.as_raw_fd());
    let dst = format!("/proc/self/fd/{}", target.as_raw_fd());
    nix::mount::mount(Some(src.as_str()), dst.as_str(), None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| Error::Mount { destination: "/dev/console".into(), message: format!("bind the pty: {e}") })
}

/// Inside the container, after pivot_root: open a pty from `/dev/ptmx`, send the master over
/// `socket` with SCM_RIGHTS, make the peer the controlling terminal and stdio, and bind it
/// onto `/dev/console` through its fd.
///
/// Needs the container's /dev (with `/dev/pts` and `/dev/ptmx`) and /proc mounted.
pub fn setup_in_container(socket: OwnedFd, size: Option<&oci_spec::runtime::Box>) -> Result<()> {
    let peer = attach_new_pty(socket, size)?;
    mount_console(peer.as_fd())?;
    Ok(())
}

/// For a process exec'd into a running container: a new pty from the container's
/// `/dev/ptmx`, master sent over `socket`, peer as controlling terminal and stdio (no
/// `/dev/console` mount: that belongs to the init).
pub fn setup_for_exec(socket: OwnedFd, size: Option<&oci_spec::runtime::Box>) -> Result<()> {
    attach_new_pty(socket, size).map(drop)
}

fn attach_new_pty(socket: OwnedFd, size: Option<&oci_spec::runtime::Box>) -> Result<OwnedFd> {
    let Pty { master, peer, name } = open_pty(Path::new("/dev/ptmx"))?;
    if let Some(size) = size {
        set_window_size(peer.as_fd(), size)?;
    }
    send_fd(socket.as_fd(), &name, master.as_fd())?;
    drop(master);
    drop(socket);
    take_controlling_terminal(peer.as_fd())?;
    dup_onto_stdio(peer.as_fd())?;
    Ok(peer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::forked;
    use std::io::{Read, Write};

    #[test]
    fn an_fd_and_its_name_travel_over_the_socket() {
        let (a, b) = UnixStream::pair().unwrap();
        let file = std::fs::File::open("/dev/null").unwrap();
        send_fd(a.as_fd(), "/dev/pts/7", file.as_fd()).unwrap();
        let (fd, name) = recv_master_named(&b).unwrap();
        assert_eq!(name, "/dev/pts/7");
        let (x, y) = (fstat(fd.as_fd()).unwrap(), fstat(file.as_fd()).unwrap());
        assert_eq!((x.st_dev, x.st_ino), (y.st_dev, y.st_ino));
    }

    #[test]
    fn a_message_without_an_fd_is_an_error() {
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(b"hello").unwrap();
        assert!(recv_master(&b).is_err());
    }

    #[test]
    fn connect_socket_reaches_a_listener() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("console.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let fd = connect_socket(&path).unwrap();
        let (conn, _) = listener.accept().unwrap();
        let tty = std::fs::File::open("/dev/null").unwrap();
        send_fd(fd.as_fd(), "x", tty.as_fd()).unwrap();
        assert!(recv_master(&conn).is_ok());
        assert!(connect_socket(&d.path().join("absent")).is_err());
    }

    #[test]
    fn open_pty_gives_a_master_and_its_peer_without_a_path_lookup() {
        let pty = open_pty(Path::new("/dev/ptmx")).unwrap();
        assert!(pty.name.starts_with("/dev/pts/"), "{}", pty.name);
        let size: oci_spec::runtime::Box = serde_json::from_str(r#"{"height": 40, "width": 132}"#).unwrap();
        set_window_size(pty.peer.as_fd(), &size).unwrap();
        let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCGWINSZ writes one winsize into `ws`.
        assert_eq!(unsafe { libc::ioctl(pty.master.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) }, 0);
        assert_eq!((ws.ws_row, ws.ws_col), (40, 132));
        let mut master = std::fs::File::from(pty.master);
        let mut peer = std::fs::File::from(pty.peer);
        peer.write_all(b"ping\n").unwrap();
        let mut buf = [0u8; 16];
        let n = master.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"ping"));
    }

    #[test]
    fn something_other_than_ptmx_is_refused() {
        let err = open_pty(Path::new("/dev/null")).unwrap_err().to_string();
        assert!(err.contains("is not the ptmx device"), "{err}");
    }

    #[test]
    fn a_symlinked_console_target_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let link = d.path().join("console");
        std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
        assert!(matches!(open_console_target(&link), Err(Error::UnsafePath { .. })));
        let missing = d.path().join("new-console");
        open_console_target(&missing).unwrap();
        assert!(std::fs::metadata(&missing).unwrap().is_file());
    }

    /// The whole protocol in a child with a private mount namespace, its own /dev (tmpfs)
    /// and devpts instance, so nothing touches the host's /dev/console.
    #[test]
    fn setup_in_container_sends_the_master_and_binds_the_peer_on_dev_console() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        ours.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        let ours_in_child = ours.as_raw_fd();
        let child = forked::spawn(move || {
            // SAFETY: the child's copy of the parent's end; closing it lets the parent see EOF.
            unsafe { libc::close(ours_in_child) };
            if private_dev().is_err() {
                return 2;
            }
            let size: oci_spec::runtime::Box = match serde_json::from_str(r#"{"height": 30, "width": 100}"#) {
                Ok(s) => s,
                Err(_) => return 3,
            };
            if setup_in_container(OwnedFd::from(theirs), Some(&size)).is_err() {
                return 4;
            }
            let (Ok(stdin), Ok(console)) = (fstat(std::io::stdin().as_fd()), nix::sys::stat::stat("/dev/console")) else {
                return 5;
            };
            if stdin.st_rdev != console.st_rdev {
                return 6;
            }
            // SAFETY: plain queries on our own fds.
            if unsafe { libc::tcgetsid(0) } != nix::unistd::getpid().as_raw() {
                return 7;
            }
            let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
            // SAFETY: TIOCGWINSZ writes one winsize into `ws`.
            if unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) } != 0 || (ws.ws_row, ws.ws_col) != (30, 100) {
                return 8;
            }
            let mut out = std::io::stdout();
            if out.write_all(b"ready\n").and_then(|()| out.flush()).is_err() {
                return 9;
            }
            let mut line = String::new();
            if std::io::stdin().read_line(&mut line).is_err() || line.trim() != "go" {
                return 10;
            }
            0
        });
        let received = recv_master_named(&ours);
        let Ok((master, name)) = received else {
            panic!("no master received ({received:?}); child exit code {}", forked::wait(child));
        };
        assert_eq!(name, "/dev/pts/0");
        let mut master = std::fs::File::from(master);
        let mut seen = Vec::new();
        let mut buf = [0u8; 64];
        while !String::from_utf8_lossy(&seen).contains("ready") {
            let mut pfd = [nix::poll::PollFd::new(master.as_fd(), nix::poll::PollFlags::POLLIN)];
            let ready = nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(10_000u16)).unwrap();
            assert!(ready > 0, "timed out waiting for the child; so far {seen:?}");
            match master.read(&mut buf) {
                Ok(n) if n > 0 => seen.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        master.write_all(b"go\n").unwrap();
        assert_eq!(forked::wait(child), 0, "child check failed; output {seen:?}");
    }

    /// A private mount namespace with a tmpfs /dev, a new devpts instance and /dev/ptmx.
    fn private_dev() -> Result<()> {
        use nix::mount::{mount, MsFlags};
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).context("unshare")?;
        mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>).context("rprivate")?;
        mount(Some("tmpfs"), "/dev", Some("tmpfs"), MsFlags::empty(), Some("mode=755")).context("tmpfs")?;
        std::fs::create_dir("/dev/pts").context("mkdir")?;
        mount(Some("devpts"), "/dev/pts", Some("devpts"), MsFlags::empty(), Some("newinstance,ptmxmode=0666,mode=0620"))
            .context("devpts")?;
        std::os::unix::fs::symlink("pts/ptmx", "/dev/ptmx").context("symlink")?;
        Ok(())
    }
}
