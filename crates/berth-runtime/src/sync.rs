//! Typed messages between the runtime (parent) and the container's init, over a
//! SOCK_SEQPACKET socketpair so that each message keeps its boundaries.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};

/// Parent → init.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToInit {
    /// Id maps and cgroup are in place; `host_pid` is the init's pid in the runtime's namespace.
    Go {
        /// The init's pid as the host sees it.
        host_pid: i32,
    },
    /// The cgroup exists with its limits (and holds the init, if it cannot join by itself).
    CgroupReady,
    /// The createRuntime hooks have run.
    HooksDone,
}

/// Init → parent.
#[derive(Debug, Serialize, Deserialize)]
pub enum FromInit {
    /// Mounts are prepared, before pivot_root: run the createRuntime hooks now.
    RunCreateRuntimeHooks,
    /// Everything is set up; the init waits on the exec fifo.
    Ready,
    /// The seccomp notify listener fd is attached (SCM_RIGHTS) to this message.
    SeccompListener,
    /// `exec` through an intermediate process: the pid (runtime's view) of the process that
    /// will exec inside the container.
    ExecPid(i32),
    /// Setup failed; the init exits.
    Error(String),
}

/// One end of the sync socketpair.
pub struct SyncSocket(OwnedFd);

/// Make a connected pair (parent end, init end), close-on-exec.
pub fn pair() -> Result<(SyncSocket, SyncSocket)> {
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two fds into the array we pass.
    let rc = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("socketpair");
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    unsafe { Ok((SyncSocket(OwnedFd::from_raw_fd(fds[0])), SyncSocket(OwnedFd::from_raw_fd(fds[1])))) }
}

impl SyncSocket {
    /// Raw fd, for keeping it open across fd cleanup.
    pub fn raw(&self) -> i32 {
        self.0.as_raw_fd()
    }

    /// Send one message.
    pub fn send<T: Serialize>(&self, msg: &T) -> Result<()> {
        let bytes = serde_json::to_vec(msg).map_err(|e| Error::Init(format!("encode sync message: {e}")))?;
        loop {
            // SAFETY: the buffer is valid for its length.
            let n = unsafe { libc::send(self.raw(), bytes.as_ptr().cast(), bytes.len(), libc::MSG_NOSIGNAL) };
            if n >= 0 {
                return Ok(());
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e).context("send sync message");
            }
        }
    }

    /// Send one message with an fd attached.
    pub fn send_with_fd<T: Serialize>(&self, msg: &T, fd: BorrowedFd<'_>) -> Result<()> {
        let bytes = serde_json::to_vec(msg).map_err(|e| Error::Init(format!("encode sync message: {e}")))?;
        crate::seccomp::send_fd(self.0.as_fd(), &bytes, fd).map(|_| ())
    }

    /// Receive one message; `Ok(None)` when the other side has closed.
    pub fn recv<T: for<'de> Deserialize<'de>>(&self) -> Result<Option<T>> {
        Ok(self.recv_with_fd()?.map(|(m, _)| m))
    }

    /// Receive one message and the fd attached to it, if any.
    pub fn recv_with_fd<T: for<'de> Deserialize<'de>>(&self) -> Result<Option<(T, Option<OwnedFd>)>> {
        let mut buf = vec![0u8; 65536];
        let (n, fd) = match crate::seccomp::recv_fd(self.0.as_fd(), &mut buf) {
            // A peer that exits with unread messages makes the next recv fail once with
            // ECONNRESET; what it sent before exiting is still queued behind that.
            Err(Error::Io { source, .. }) if source.raw_os_error() == Some(libc::ECONNRESET) => {
                crate::seccomp::recv_fd(self.0.as_fd(), &mut buf)?
            }
            other => other?,
        };
        if n == 0 {
            return Ok(None);
        }
        let msg = serde_json::from_slice(&buf[..n]).map_err(|e| Error::Init(format!("decode sync message: {e}")))?;
        Ok(Some((msg, fd)))
    }
}
