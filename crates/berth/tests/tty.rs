//! Terminals end to end: `run -t` (the engine relays the container's pty) and `exec -t`, with
//! berth itself running under a pseudo-terminal the test opens, as under a user's shell.

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Env;

/// What a command printed on its terminal, and its exit status.
struct TtyRun {
    output: String,
    status: Option<i32>,
}

/// A new pty pair with the given window size: (master, slave).
fn open_pty(rows: u16, cols: u16) -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (-1, -1);
    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: openpty writes two fds; the name and termios pointers may be null.
    let r = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), &ws) };
    assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
    for fd in [master, slave] {
        // SAFETY: F_SETFD on our new fds: other tests' children (detached monitors among
        // them) must not inherit them, or the master never sees the end of the output.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    // SAFETY: two new fds owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

/// Run `cmd` with a new pty as its controlling terminal and stdio; type `input` into it after
/// `input_delay`; collect everything it shows until it exits (20 s at most).
fn run_in_pty(cmd: Command, input: &[u8], input_delay: Duration) -> TtyRun {
    run_in_pty_resized(cmd, input, input_delay, None)
}

/// [`run_in_pty`], resizing the terminal to 50x150 after `resize` (SIGWINCH to berth).
fn run_in_pty_resized(mut cmd: Command, input: &[u8], input_delay: Duration, resize: Option<Duration>) -> TtyRun {
    let (master, slave) = open_pty(33, 111);
    let dup = |fd: &OwnedFd| Stdio::from(fd.try_clone().unwrap());
    cmd.stdin(dup(&slave)).stdout(dup(&slave)).stderr(dup(&slave));
    // SAFETY: only async-signal-safe calls between fork and exec: a new session whose
    // controlling terminal is the pty on fd 0.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(slave);
    let mut reader = std::fs::File::from(master.try_clone().unwrap());
    let exited = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let exited_seen = exited.clone();
    let collector = std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let mut p = libc::pollfd { fd: reader.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut p, 1, 300) };
            if n == 0 {
                // Quiet after the command exited: nothing more is coming.
                if exited_seen.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                continue;
            }
            // EIO once every copy of the slave is closed.
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        out
    });
    if !input.is_empty() {
        std::thread::sleep(input_delay);
        std::fs::File::from(master.try_clone().unwrap()).write_all(input).unwrap();
    }
    if let Some(after) = resize {
        std::thread::sleep(after);
        let ws = libc::winsize { ws_row: 50, ws_col: 150, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ reads one winsize; the kernel signals the terminal's foreground group.
        assert_eq!(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) }, 0);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    exited.store(true, std::sync::atomic::Ordering::SeqCst);
    drop(master);
    let output = String::from_utf8_lossy(&collector.join().unwrap()).replace('\r', "");
    TtyRun { output, status }
}

fn berth_cmd(e: &Env, args: &[&str]) -> Command {
    let mut c = Command::new(common::BIN);
    c.arg("--root").arg(e.dir.join("root")).arg("--runroot").arg(e.dir.join("run")).args(args);
    c
}

#[test]
fn run_t_gives_the_container_a_terminal_of_our_size_and_relays_output_and_status() {
    let e = Env::new("tty-run");
    let r = run_in_pty(
        berth_cmd(
            &e,
            &[
                "run",
                "--rm",
                "-t",
                "localhost/demo",
                "sh",
                "-c",
                "test -t 0 && test -t 1 && test -t 2 && echo TTY-OK; busybox tty; busybox stty size; exit 3",
            ],
        ),
        b"",
        Duration::ZERO,
    );
    assert_eq!(r.status, Some(3), "{}", r.output);
    assert!(r.output.contains("TTY-OK\n"), "{}", r.output);
    assert!(r.output.contains("/dev/pts/0\n"), "{}", r.output);
    assert!(r.output.contains("33 111\n"), "the container's terminal has our size: {}", r.output);
    assert_eq!(e.mounts(), 0);
}

#[test]
fn a_foreground_run_t_is_logged_like_a_detached_one() {
    let e = Env::new("tty-logged");
    let r = run_in_pty(
        berth_cmd(&e, &["run", "--name", "kept", "-t", "localhost/demo", "sh", "-c", "echo first; echo second"]),
        b"",
        Duration::ZERO,
    );
    assert_eq!(r.status, Some(0), "{}", r.output);
    assert!(r.output.contains("first\nsecond\n"), "{}", r.output);
    assert_eq!(e.ok(&["logs", "kept"]).replace('\r', ""), "first\nsecond");
}

#[test]
fn run_t_passes_a_resize_of_our_terminal_on_to_the_container() {
    let e = Env::new("tty-winch");
    let r = run_in_pty_resized(
        berth_cmd(&e, &["run", "--rm", "-t", "localhost/demo", "sh", "-c", "busybox stty size; i=0; while test \"$(busybox stty size)\" = '33 111' && test $i -lt 150; do sleep 0.1; i=$((i+1)); done; busybox stty size"]),
        b"",
        Duration::ZERO,
        Some(Duration::from_millis(2000)),
    );
    assert_eq!(r.status, Some(0), "{}", r.output);
    assert!(r.output.contains("33 111\n50 150\n"), "{}", r.output);
}

#[test]
fn run_it_relays_what_we_type_to_the_container() {
    let e = Env::new("tty-run-it");
    let r = run_in_pty(
        berth_cmd(&e, &["run", "--rm", "-it", "localhost/demo", "sh", "-c", "read line; echo got:$line; exit 4"]),
        b"typed words\r",
        Duration::from_millis(1500),
    );
    assert_eq!(r.status, Some(4), "{}", r.output);
    assert!(r.output.contains("got:typed words\n"), "{}", r.output);
}

#[test]
fn run_t_without_a_terminal_of_ours_still_gives_the_container_one() {
    let e = Env::new("tty-run-pipe");
    let out = e.berth(&["run", "--rm", "-t", "localhost/demo", "sh", "-c", "test -t 1 && echo yes; exit 2"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).replace('\r', ""), "yes\n");
}

#[test]
fn exec_t_in_a_running_container_gets_a_terminal_and_returns_the_status() {
    let e = Env::new("tty-exec");
    e.ok(&["run", "-d", "--name", "box", "localhost/demo", "sleep", "1000"]);
    let r = run_in_pty(
        berth_cmd(
            &e,
            &["exec", "-t", "box", "sh", "-c", "test -t 0 && test -t 1 && echo EXEC-TTY; busybox tty; busybox stty size; exit 5"],
        ),
        b"",
        Duration::ZERO,
    );
    assert_eq!(r.status, Some(5), "{}", r.output);
    assert!(r.output.contains("EXEC-TTY\n"), "{}", r.output);
    assert!(r.output.contains("/dev/pts/"), "{}", r.output);
    assert!(r.output.contains("33 111\n"), "{}", r.output);
    let r =
        run_in_pty(berth_cmd(&e, &["exec", "-it", "box", "sh", "-c", "read x; echo exec-got:$x"]), b"abc\r", Duration::from_millis(1500));
    assert_eq!(r.status, Some(0), "{}", r.output);
    assert!(r.output.contains("exec-got:abc\n"), "{}", r.output);
}

#[test]
fn run_d_t_logs_the_terminal_and_exec_t_gets_a_second_one() {
    let e = Env::new("tty-detached");
    e.ok(&[
        "run",
        "-d",
        "-t",
        "--name",
        "term",
        "localhost/demo",
        "sh",
        "-c",
        "test -t 0 && echo DETACHED-TTY; busybox tty; exec sleep 1000",
    ]);
    e.wait_for("term", "{{.State.Status}}", "running");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut logs = String::new();
    while Instant::now() < deadline {
        logs = e.ok(&["logs", "term"]).replace('\r', "");
        if logs.contains("/dev/pts/0") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(logs.contains("DETACHED-TTY\n/dev/pts/0"), "{logs}");
    assert_eq!(e.inspect("term", "{{.Config.Tty}}"), "true");
    let r = run_in_pty(berth_cmd(&e, &["exec", "-t", "term", "sh", "-c", "busybox tty; exit 6"]), b"", Duration::ZERO);
    assert_eq!(r.status, Some(6), "{}", r.output);
    assert!(r.output.contains("/dev/pts/1\n"), "exec -t gets its own terminal: {}", r.output);
    // exec -t without a terminal of ours works too (its output arrives on our stdout).
    let out = e.berth(&["exec", "-t", "term", "sh", "-c", "test -t 1 && echo piped-ok"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).replace('\r', ""), "piped-ok\n", "{}", String::from_utf8_lossy(&out.stderr));
    e.ok(&["stop", "-t", "1", "term"]);
    assert_eq!(e.inspect("term", "{{.State.Status}}"), "exited");
}

#[test]
fn a_detached_terminal_has_dockers_default_size_from_the_first_instant() {
    let e = Env::new("tty-detached-size");
    e.ok(&["run", "-d", "-t", "--name", "sz", "localhost/demo", "busybox", "stty", "size"]);
    e.wait_for("sz", "{{.State.Status}}", "exited");
    assert_eq!(e.ok(&["logs", "sz"]).replace('\r', ""), "24 80");
}
