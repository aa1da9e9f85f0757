//! Test support: run a closure in a forked child and collect its exit code.

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Pid};

/// Fork and run `f` in the child with stdio on /dev/null; the child exits with `f`'s
/// return value (101 for a panic).
///
/// The child only makes syscalls and allocates (glibc's malloc is fork-safe), so forking
/// from the multi-threaded test harness is sound enough for tests.
pub(crate) fn spawn(f: impl FnOnce() -> i32) -> Pid {
    // SAFETY: the child runs `f` and leaves with _exit, never returning into the harness.
    match unsafe { nix::unistd::fork() }.expect("fork") {
        ForkResult::Child => {
            // SAFETY: open/dup2 on fresh fds; keeps the child off the harness's terminal.
            unsafe {
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                for fd in 0..=2 {
                    libc::dup2(null, fd);
                }
            }
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
            // SAFETY: _exit ends the child without running the harness's atexit handlers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => child,
    }
}

/// Wait for `child`; its exit code, or 128+N when killed by signal N.
pub(crate) fn wait(child: Pid) -> i32 {
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => panic!("waitpid: {e}"),
        }
    }
}

/// [`spawn`] then [`wait`].
pub(crate) fn exit_code_of(f: impl FnOnce() -> i32) -> i32 {
    wait(spawn(f))
}
