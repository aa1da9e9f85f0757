//! `process.terminal` with `--console-socket`, through the built binary: the test is the
//! console socket's listener, receives the pty master and talks to the container through it.

mod common;
use common::*;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use serde_json::json;

/// A created terminal container and the pty master received for it.
struct Console {
    id: String,
    master: std::fs::File,
    /// The pty name sent along with the master.
    name: String,
}

/// `create` a terminal bundle with a console socket the test listens on; receive the master.
fn create_with_console(s: &Scratch, b: &BundleDir, name: &str) -> Console {
    let sock = s.dir.join(format!("{name}.sock"));
    let listener = UnixListener::bind(&sock).unwrap();
    let id = s.id(name);
    // The connection waits in the listener's backlog and the master in the socket buffer
    // until we accept: create can run to completion first.
    ok(&s.rt(&["create", "--console-socket", sock.to_str().unwrap(), "--bundle", b.p(), &id]));
    listener.set_nonblocking(true).unwrap();
    let (conn, _) = listener.accept().expect("create did not connect to the console socket");
    conn.set_nonblocking(false).unwrap();
    let (master, name): (OwnedFd, String) = berth_runtime::console::recv_master_named(&conn).unwrap();
    Console { id, master: std::fs::File::from(master), name }
}

impl Console {
    /// Read from the master until `done` holds for what was read (with `\r` removed), the
    /// other side is closed, or `limit` passes.
    fn read_until(&mut self, limit: Duration, done: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        let mut got = Vec::new();
        loop {
            let text = String::from_utf8_lossy(&got).replace('\r', "");
            if done(&text) {
                return text;
            }
            let left = limit.saturating_sub(start.elapsed());
            assert!(!left.is_zero(), "console output not as expected within {limit:?}: {text:?}");
            let mut pfd = libc::pollfd { fd: self.master.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: poll on one valid pollfd for at most `left`.
            let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
            if n <= 0 {
                continue;
            }
            let mut buf = [0u8; 4096];
            match self.master.read(&mut buf) {
                Ok(0) => return text,
                Ok(k) => got.extend_from_slice(&buf[..k]),
                // EIO: every peer fd is closed, the container is gone.
                Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                    return String::from_utf8_lossy(&got).replace('\r', "");
                }
                Err(e) => panic!("read the pty master: {e}"),
            }
        }
    }
}

fn terminal_bundle(s: &Scratch, args: &[&str]) -> BundleDir {
    let mut b = s.bundle("b", args);
    b.edit(|c| c["process"]["terminal"] = json!(true));
    b
}

const LIMIT: Duration = Duration::from_secs(10);

#[test]
fn a_terminal_container_has_the_pty_as_stdio_and_dev_console() {
    let s = Scratch::new("console-tty");
    let b = terminal_bundle(
        &s,
        &["sh", "-c", "tty; test -t 0 && test -t 1 && test -t 2 && echo all-stdio-are-ttys; stat -L -c 'console=%t:%T' /dev/console; stat -L -c 'pts=%t:%T' $(tty); echo END"],
    );
    let mut c = create_with_console(&s, &b, "c");
    assert!(c.name.starts_with("/dev/pts/"), "name sent with the master: {:?}", c.name);
    ok(&s.rt(&["start", &c.id]));
    let out = c.read_until(LIMIT, |t| t.contains("END\n"));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], c.name, "tty inside vs the name sent: {out:?}");
    assert_eq!(lines[1], "all-stdio-are-ttys", "{out:?}");
    let console = lines[2].strip_prefix("console=").unwrap();
    let pts = lines[3].strip_prefix("pts=").unwrap();
    assert_eq!(console, pts, "/dev/console is not the pty: {out:?}");
}

#[test]
fn input_written_to_the_master_reaches_the_process() {
    let s = Scratch::new("console-input");
    let b = terminal_bundle(&s, &["sh", "-c", "echo ready; read line; echo \"got:[$line]\""]);
    let mut c = create_with_console(&s, &b, "c");
    ok(&s.rt(&["start", &c.id]));
    c.read_until(LIMIT, |t| t.contains("ready\n"));
    c.master.write_all(b"hello there\n").unwrap();
    let out = c.read_until(LIMIT, |t| t.contains("got:[hello there]\n"));
    // The terminal echoes the input before the process answers.
    assert!(out.starts_with("hello there\n"), "{out:?}");
    let id = c.id.clone();
    wait_until_stopped(&s, &id);
}

fn wait_until_stopped(s: &Scratch, id: &str) {
    let start = Instant::now();
    while s.state(id)["status"] != "stopped" {
        assert!(start.elapsed() < LIMIT, "{id} did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn console_size_is_applied_to_the_pty() {
    let s = Scratch::new("console-size");
    let mut b = terminal_bundle(&s, &["sh", "-c", "stty size; echo END"]);
    b.edit(|c| c["process"]["consoleSize"] = json!({"height": 33, "width": 101}));
    let mut c = create_with_console(&s, &b, "c");
    ok(&s.rt(&["start", &c.id]));
    let out = c.read_until(LIMIT, |t| t.contains("END\n"));
    assert_eq!(out.lines().next(), Some("33 101"), "{out:?}");
}

#[test]
fn terminal_without_a_console_socket_is_refused_and_leaves_nothing() {
    let s = Scratch::new("console-missing");
    let b = terminal_bundle(&s, &["true"]);
    let id = s.id("c");
    let out = s.rt(&["create", "--bundle", b.p(), &id]);
    assert!(!out.status.success(), "create must fail");
    assert!(stderr(&out).contains("console-socket"), "{}", stderr(&out));
    assert!(!s.root.join(&id).exists(), "state directory left behind");
    assert!(!s.rt(&["state", &id]).status.success());
}

#[test]
fn a_console_socket_without_terminal_is_refused_and_leaves_nothing() {
    let s = Scratch::new("console-unwanted");
    let b = s.bundle("b", &["true"]);
    let sock = s.dir.join("unused.sock");
    let _listener = UnixListener::bind(&sock).unwrap();
    let id = s.id("c");
    let out = s.rt(&["create", "--console-socket", sock.to_str().unwrap(), "--bundle", b.p(), &id]);
    assert!(!out.status.success(), "create must fail");
    assert!(stderr(&out).contains("terminal"), "{}", stderr(&out));
    assert!(!s.root.join(&id).exists(), "state directory left behind");
}

#[test]
fn a_console_socket_nobody_listens_on_fails_create_and_leaves_nothing() {
    let s = Scratch::new("console-absent");
    let b = terminal_bundle(&s, &["true"]);
    let id = s.id("c");
    let sock = s.dir.join("absent.sock");
    let out = s.rt(&["create", "--console-socket", sock.to_str().unwrap(), "--bundle", b.p(), &id]);
    assert!(!out.status.success(), "create must fail");
    assert!(stderr(&out).contains("absent.sock"), "{}", stderr(&out));
    assert!(!s.root.join(&id).exists(), "state directory left behind");
}

/// `run` in the foreground with a terminal and no --console-socket relays the pty itself,
/// like runc: the container sees a tty, and what it prints reaches our terminal.
#[test]
fn foreground_run_with_a_terminal_relays_the_pty() {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let s = Scratch::new("run-tty");
    let mut b = s.bundle("b", &["sh", "-c", "tty; test -t 0 && echo stdin-is-a-tty; stty size; exit 7"]);
    b.edit(|c| {
        c["process"]["terminal"] = serde_json::json!(true);
        c["process"]["consoleSize"] = serde_json::json!({"height": 33, "width": 101});
    });
    let pty = nix::pty::openpty(None, None).unwrap();
    // Our side of the terminal has a size too; the relay copies it over consoleSize.
    let ws = libc::winsize { ws_row: 40, ws_col: 120, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ on the pty we just opened.
    unsafe { libc::ioctl(pty.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    let id = s.id("tty");
    let slave = std::fs::File::from(pty.slave);
    let mut child = std::process::Command::new(BIN)
        .arg("--root")
        .arg(&s.root)
        .args(["run", "--bundle", b.p(), &id])
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave)
        .spawn()
        .unwrap();
    let status = child.wait().unwrap();
    let mut master = std::fs::File::from(pty.master);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // The slave is closed now; read what is buffered until EIO.
    while let Ok(n) = master.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&out);
    assert_eq!(status.code(), Some(7), "{text}");
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(text.contains("stdin-is-a-tty"), "{text}");
    assert!(text.contains("40 120"), "window size not relayed: {text}");
}
