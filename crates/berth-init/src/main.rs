//! berth-init: the PID 1 of containers run with `berth run --init`.
//!
//! A process that is PID 1 of a PID namespace gets no default signal actions (a SIGTERM
//! without a handler is dropped) and inherits every orphan of the namespace. Most programs
//! are written for neither, so this init runs them as its child instead:
//!
//! - every signal but the synchronous ones is blocked and taken with `sigwaitinfo` (blocked
//!   signals are never dropped, even for PID 1), then sent on to the child;
//! - on SIGCHLD every exited process is reaped, orphans included;
//! - when the child exits, the init exits with its status (128+N if it was killed by N).
//!
//! Only libc and nix: it is bind-mounted into containers and must run in any of them.

use std::ffi::CString;
use std::os::unix::ffi::OsStringExt;
use std::process::ExitCode;

use nix::errno::Errno;
use nix::sys::signal::{kill, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{execvp, fork, ForkResult, Pid};

/// Faults the kernel raises in the thread that caused them: never blocked, never forwarded.
const SYNCHRONOUS: &[Signal] =
    &[Signal::SIGSEGV, Signal::SIGBUS, Signal::SIGFPE, Signal::SIGILL, Signal::SIGTRAP, Signal::SIGSYS, Signal::SIGABRT];

/// Exit status when the command could not be started (docker's 127/126 convention).
const EXIT_NOT_FOUND: u8 = 127;
const EXIT_CANNOT_INVOKE: u8 = 126;
const EXIT_INIT_FAILED: u8 = 125;

fn main() -> ExitCode {
    let args: Vec<CString> = match std::env::args_os().skip(1).map(|a| CString::new(a.into_vec())).collect() {
        Ok(a) => a,
        Err(_) => return fail("an argument contains a NUL byte"),
    };
    let args = match args.first().map(|a| a.as_bytes()) {
        Some(b"--") => args[1..].to_vec(),
        _ => args,
    };
    if args.is_empty() {
        eprintln!("usage: berth-init [--] COMMAND [ARG…]");
        return ExitCode::from(EXIT_INIT_FAILED);
    }
    let mut blocked = SigSet::all();
    for s in SYNCHRONOUS {
        blocked.remove(*s);
    }
    let mut original = SigSet::empty();
    if let Err(e) = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&blocked), Some(&mut original)) {
        return fail(&format!("block signals: {e}"));
    }
    // SAFETY: the process is single-threaded here; the child only resets its signal mask
    // and execs (or writes a message and exits).
    let child = match unsafe { fork() } {
        Ok(ForkResult::Child) => exec_command(&args, &original),
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => return fail(&format!("fork: {e}")),
    };
    ExitCode::from(supervise(child, &blocked))
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("berth-init: {msg}");
    ExitCode::from(EXIT_INIT_FAILED)
}

/// In the child: the caller's signal mask, then exec. It stays in the init's process group
/// (a terminal's foreground group), so reading the terminal does not stop it.
fn exec_command(args: &[CString], original: &SigSet) -> ! {
    if let Err(e) = sigprocmask(SigmaskHow::SIG_SETMASK, Some(original), None) {
        eprintln!("berth-init: restore the signal mask: {e}");
        std::process::exit(EXIT_INIT_FAILED.into());
    }
    let err = match execvp(&args[0], args) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    eprintln!("berth-init: exec {}: {}", args[0].to_string_lossy(), err.desc());
    let code = if err == Errno::ENOENT { EXIT_NOT_FOUND } else { EXIT_CANNOT_INVOKE };
    std::process::exit(code.into());
}

/// In the init: wait for signals; forward them, reap on SIGCHLD; return the child's status.
fn supervise(child: Pid, blocked: &SigSet) -> u8 {
    loop {
        let sig = match wait_signal(blocked) {
            Ok(s) => s,
            Err(Errno::EINTR) => continue,
            Err(e) => {
                eprintln!("berth-init: wait for signals: {e}");
                return EXIT_INIT_FAILED;
            }
        };
        if sig == libc::SIGCHLD {
            if let Some(status) = reap_all(child) {
                return status;
            }
            continue;
        }
        // The child may have just exited: ESRCH is not an error.
        if let Ok(s) = Signal::try_from(sig) {
            let _ = kill(child, s);
        }
    }
}

fn wait_signal(set: &SigSet) -> Result<libc::c_int, Errno> {
    // SAFETY: sigwaitinfo reads the set and writes one siginfo_t we own.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::sigwaitinfo(set.as_ref(), &mut info) };
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(rc)
    }
}

/// Reap every exited process; the child's exit status once it is among them. The rest are
/// left to the next SIGCHLD (one SIGCHLD may stand for many exits, hence the loop).
fn reap_all(child: Pid) -> Option<u8> {
    let mut status = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == child => status = Some(code as u8),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => status = Some(128u8.wrapping_add(sig as u8)),
            Ok(WaitStatus::StillAlive) => break,
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            // ECHILD: nothing left to reap.
            Err(_) => break,
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synchronous_signals_are_not_blocked() {
        let mut blocked = SigSet::all();
        for s in SYNCHRONOUS {
            blocked.remove(*s);
        }
        assert!(!blocked.contains(Signal::SIGSEGV));
        assert!(blocked.contains(Signal::SIGTERM) && blocked.contains(Signal::SIGWINCH) && blocked.contains(Signal::SIGCHLD));
    }
}
