//! Hand the seccomp user-notification fd over: init → parent over the sync socket, and parent
//! → seccomp agent over `listenerPath`, as the runtime spec's "containerProcessState".

use std::io::Write;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use serde_json::{json, Value};

use crate::error::{Context, Error, Result};

/// Control buffer for one SCM_RIGHTS fd; the union gives it cmsghdr's alignment.
#[repr(C)]
union CmsgBuffer {
    bytes: [u8; 64],
    _align: libc::cmsghdr,
}

/// The runtime spec's containerProcessState for the seccomp agent, as JSON bytes.
pub fn container_process_state(pid: i32, metadata: &str, state: Value) -> Vec<u8> {
    let oci_version = state.get("ociVersion").and_then(Value::as_str).unwrap_or(crate::spec::OCI_VERSION).to_owned();
    let doc = json!({
        "ociVersion": oci_version,
        "fds": ["seccompFd"],
        "pid": pid,
        "metadata": metadata,
        "state": state,
    });
    // Serializing a Value cannot fail: every map key is already a string.
    serde_json::to_vec(&doc).unwrap_or_default()
}

/// Connect to the agent's unix socket at `listener_path` and send `state_json_with_fds`
/// with `notify_fd` attached (SCM_RIGHTS). The payload is either a containerProcessState
/// (from [`container_process_state`]) sent as is, or a bare container state object, which is
/// wrapped with its `pid` and `listener_metadata` first.
pub fn send_to_listener(
    listener_path: &Path,
    listener_metadata: &str,
    notify_fd: BorrowedFd<'_>,
    state_json_with_fds: &[u8],
) -> Result<()> {
    let parsed: Value = serde_json::from_slice(state_json_with_fds)
        .map_err(|e| Error::InvalidConfig(format!("seccomp: listener payload is not JSON: {e}")))?;
    let payload = match parsed {
        Value::Object(ref map) if map.contains_key("fds") => state_json_with_fds.to_vec(),
        Value::Object(ref map) => {
            let pid = map.get("pid").and_then(Value::as_i64).and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
            container_process_state(pid, listener_metadata, parsed)
        }
        _ => return Err(Error::InvalidConfig("seccomp: listener payload is not a JSON object".into())),
    };
    let mut stream =
        UnixStream::connect(listener_path).with_context(|| format!("seccomp: connect to listenerPath {}", listener_path.display()))?;
    let sent = send_fd(stream.as_fd(), &payload, notify_fd)
        .map_err(|e| Error::Init(format!("seccomp: send to listenerPath {}: {e}", listener_path.display())))?;
    // A stream socket may take the fd with only part of a large payload.
    stream.write_all(&payload[sent..]).with_context(|| format!("seccomp: send state to listenerPath {}", listener_path.display()))?;
    tracing::debug!(listener = %listener_path.display(), bytes = payload.len(), "seccomp: listener fd sent to the agent");
    Ok(())
}

/// Send `payload` (at least one byte) with `fd` attached over a unix socket; returns the
/// number of payload bytes sent. Allocation-free, so usable in a forked child.
pub fn send_fd(socket: BorrowedFd<'_>, payload: &[u8], fd: BorrowedFd<'_>) -> Result<usize> {
    if payload.is_empty() {
        return Err(Error::InvalidConfig("seccomp: an fd needs at least one byte of payload".into()));
    }
    let mut control = CmsgBuffer { bytes: [0; 64] };
    let mut iov = libc::iovec { iov_base: payload.as_ptr() as *mut libc::c_void, iov_len: payload.len() };
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    // SAFETY: taking a pointer to a union field does not read it.
    msg.msg_control = unsafe { control.bytes.as_mut_ptr() }.cast();
    // SAFETY: CMSG_SPACE is pure arithmetic.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(size_of::<RawFd>() as u32) } as _;
    // SAFETY: msg_control points at 64 zeroed, aligned bytes, more than CMSG_SPACE(4), so the
    // first header and its data fit inside the buffer.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd.as_raw_fd());
    }
    loop {
        // SAFETY: msg and everything it points to (iov, payload, control) outlive the call.
        let n = unsafe { libc::sendmsg(socket.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e).context("seccomp: sendmsg with SCM_RIGHTS");
        }
    }
}

/// Receive one message into `buf` and the fd attached to it, if any (close-on-exec).
/// Returns the number of bytes received; 0 means the peer closed.
pub fn recv_fd(socket: BorrowedFd<'_>, buf: &mut [u8]) -> Result<(usize, Option<OwnedFd>)> {
    let mut control = CmsgBuffer { bytes: [0; 64] };
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    // SAFETY: taking a pointer to a union field does not read it.
    msg.msg_control = unsafe { control.bytes.as_mut_ptr() }.cast();
    msg.msg_controllen = size_of::<CmsgBuffer>() as _;
    let n = loop {
        // SAFETY: msg points at a valid iovec over `buf` and at `control`, both live and
        // writable for their lengths.
        let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e).context("seccomp: recvmsg with SCM_RIGHTS");
        }
    };
    let mut received: Option<OwnedFd> = None;
    // SAFETY: the kernel filled msg_control/msg_controllen; CMSG_FIRSTHDR/NXTHDR stay within
    // them, and each SCM_RIGHTS payload holds (cmsg_len - CMSG_LEN(0)) / 4 fds that are now ours.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data_len = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                for i in 0..data_len / size_of::<RawFd>() {
                    let fd = OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i)));
                    // Keep the first; any extra fd is closed by dropping it.
                    if received.is_none() {
                        received = Some(fd);
                    }
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(Error::Init("seccomp: received control message was truncated".into()));
    }
    Ok((n, received))
}
