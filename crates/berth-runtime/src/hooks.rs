//! The six lifecycle hooks: run with the container state on stdin, `env`, `timeout`.
//!
//! Each hook is spawned with exactly its own `env`, gets the state JSON on stdin (then
//! EOF), and has its stdout and stderr captured (never mixed into the container's stdio).
//! The wait is a poll loop on the pipes without threads, as the container's init runs
//! hooks too and must stay single-threaded.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use oci_spec::runtime::Hook;

use crate::error::{Error, Result};

/// The lifecycle points at which hooks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookPhase {
    /// After the runtime environment is created, before pivot_root, runtime namespace.
    CreateRuntime,
    /// After createRuntime, before pivot_root, container namespace.
    CreateContainer,
    /// After start, before the user process, container namespace.
    StartContainer,
    /// After the user process started, runtime namespace.
    Poststart,
    /// After delete, runtime namespace.
    Poststop,
    /// Deprecated prestart hooks (run with createRuntime).
    Prestart,
}

impl HookPhase {
    /// The phase's name in config.json.
    pub fn name(self) -> &'static str {
        match self {
            HookPhase::CreateRuntime => "createRuntime",
            HookPhase::CreateContainer => "createContainer",
            HookPhase::StartContainer => "startContainer",
            HookPhase::Poststart => "poststart",
            HookPhase::Poststop => "poststop",
            HookPhase::Prestart => "prestart",
        }
    }

    /// Whether a failing hook of this phase fails the operation (the spec: poststart and
    /// poststop failures are only logged).
    pub fn failure_is_fatal(self) -> bool {
        !matches!(self, HookPhase::Poststart | HookPhase::Poststop)
    }
}

impl std::fmt::Display for HookPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How much of a hook's stderr (and stdout) an error message keeps, from the end.
const OUTPUT_TAIL: usize = 2048;
/// Stop reading beyond this much output per stream, keeping only the tail.
const OUTPUT_KEEP: usize = 64 * 1024;

/// Run `hooks` in order, writing `state_json` (the OCI state) to each one's stdin.
///
/// For createRuntime, createContainer, startContainer and prestart the first failure is
/// returned; poststart and poststop failures are logged and the remaining hooks still run.
pub fn run(phase: HookPhase, hooks: &[Hook], state_json: &[u8]) -> Result<()> {
    for hook in hooks {
        let started = Instant::now();
        match run_one(phase, hook, state_json) {
            Ok(()) => {
                tracing::debug!(phase = %phase, path = %hook.path().display(), elapsed = ?started.elapsed(), "hook done")
            }
            Err(e) if phase.failure_is_fatal() => return Err(e),
            Err(e) => tracing::warn!(phase = %phase, error = %e, "hook failed; continuing"),
        }
    }
    Ok(())
}

fn hook_error(phase: HookPhase, hook: &Hook, message: String) -> Error {
    Error::Hook { phase: phase.name().to_string(), path: hook.path().display().to_string(), message }
}

fn command(hook: &Hook) -> Command {
    let mut cmd = Command::new(hook.path());
    let args = hook.args().as_deref().unwrap_or(&[]);
    if let Some((argv0, rest)) = args.split_first() {
        cmd.arg0(argv0).args(rest);
    }
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                cmd.env(k, v);
            }
            _ => {
                tracing::warn!(path = %hook.path().display(), entry = %kv, "ignoring hook env entry without NAME=")
            }
        }
    }
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

fn run_one(phase: HookPhase, hook: &Hook, state_json: &[u8]) -> Result<()> {
    let timeout = match hook.timeout() {
        Some(t) if t <= 0 => {
            return Err(hook_error(phase, hook, format!("timeout must be greater than zero, got {t}")));
        }
        Some(t) => Some(Duration::from_secs(t as u64)),
        None => None,
    };
    let mut child = command(hook).spawn().map_err(|e| hook_error(phase, hook, format!("cannot start: {e}")))?;
    let outcome = supervise(&mut child, state_json, timeout);
    let (status, out) = match outcome {
        Ok(v) => v,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(hook_error(phase, hook, e));
        }
    };
    let Some(status) = status else {
        return Err(hook_error(phase, hook, format!("timed out after {} s{}", timeout.map_or(0, |t| t.as_secs()), out.describe())));
    };
    if status.success() {
        return Ok(());
    }
    let how = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => format!("{status}"),
    };
    Err(hook_error(phase, hook, format!("{how}{}", out.describe())))
}

/// What a hook wrote on stdout and stderr (tails).
#[derive(Default)]
struct Output {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

fn tail(buf: &[u8]) -> String {
    let start = buf.len().saturating_sub(OUTPUT_TAIL);
    String::from_utf8_lossy(&buf[start..]).trim().to_string()
}

impl Output {
    fn describe(&self) -> String {
        let mut s = String::new();
        for (name, buf) in [("stderr", &self.stderr), ("stdout", &self.stdout)] {
            let t = tail(buf);
            if !t.is_empty() {
                s.push_str(&format!(", {name}: {t}"));
            }
        }
        s
    }
}

fn keep_tail(buf: &mut Vec<u8>, chunk: &[u8]) {
    buf.extend_from_slice(chunk);
    if buf.len() > OUTPUT_KEEP {
        buf.drain(..buf.len() - OUTPUT_KEEP);
    }
}

fn set_nonblocking(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(std::io::Error::from)?;
    let flags = OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(std::io::Error::from)?;
    Ok(())
}

/// Feed stdin, collect output and wait, killing the hook at `timeout`. Returns `None` as
/// the status when it was killed for the timeout.
fn supervise(child: &mut Child, input: &[u8], timeout: Option<Duration>) -> std::result::Result<(Option<ExitStatus>, Output), String> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut stdin = child.stdin.take();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    for fd in
        [stdin.as_ref().map(|f| f.as_fd()), stdout.as_ref().map(|f| f.as_fd()), stderr.as_ref().map(|f| f.as_fd())].into_iter().flatten()
    {
        set_nonblocking(fd).map_err(|e| format!("set a hook pipe non-blocking: {e}"))?;
    }
    let mut written = 0;
    if input.is_empty() {
        stdin = None;
    }
    let mut out = Output::default();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(status) = child.try_wait().map_err(|e| format!("wait: {e}"))? {
            // Whatever is already in the pipes; a grandchild holding them open is not waited for.
            drain(&mut stdout, &mut out.stdout, &mut buf);
            drain(&mut stderr, &mut out.stderr, &mut buf);
            return Ok((Some(status), out));
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            let _ = child.kill();
            let _ = child.wait();
            drain(&mut stdout, &mut out.stdout, &mut buf);
            drain(&mut stderr, &mut out.stderr, &mut buf);
            return Ok((None, out));
        }
        // Short ticks: the exit of the hook itself does not wake poll when a grandchild
        // keeps its pipes open.
        let tick = deadline.map_or(Duration::from_millis(50), |d| (d - now).min(Duration::from_millis(50)));
        let mut fds = Vec::with_capacity(3);
        if let Some(f) = &stdin {
            fds.push(PollFd::new(f.as_fd(), PollFlags::POLLOUT));
        }
        if let Some(f) = &stdout {
            fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
        }
        if let Some(f) = &stderr {
            fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
        }
        if fds.is_empty() {
            std::thread::sleep(tick.min(Duration::from_millis(10)));
            continue;
        }
        let ms = PollTimeout::from(tick.as_millis().clamp(1, 50) as u16);
        match poll(&mut fds, ms) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(format!("poll the hook's pipes: {e}")),
        }
        drop(fds);
        if let Some(f) = stdin.as_mut() {
            match f.write(&input[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::Interrupted => {}
                // A hook may exit or close stdin without reading the state (EPIPE): not an error.
                Err(_) => written = input.len(),
            }
            if written >= input.len() {
                stdin = None;
            }
        }
        read_some(&mut stdout, &mut out.stdout, &mut buf);
        read_some(&mut stderr, &mut out.stderr, &mut buf);
    }
}

/// One non-blocking read; closes the pipe at EOF or on error.
fn read_some<R: Read>(pipe: &mut Option<R>, into: &mut Vec<u8>, buf: &mut [u8]) -> bool {
    let Some(r) = pipe.as_mut() else { return false };
    match r.read(buf) {
        Ok(0) => {
            *pipe = None;
            false
        }
        Ok(n) => {
            keep_tail(into, &buf[..n]);
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::Interrupted => false,
        Err(_) => {
            *pipe = None;
            false
        }
    }
}

fn drain<R: Read>(pipe: &mut Option<R>, into: &mut Vec<u8>, buf: &mut [u8]) {
    while read_some(pipe, into, buf) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn hook(path: &Path, args: Option<Vec<&str>>, env: Option<Vec<&str>>, timeout: Option<i64>) -> Hook {
        let mut v = serde_json::json!({"path": path});
        if let Some(a) = args {
            v["args"] = serde_json::json!(a);
        }
        if let Some(e) = env {
            v["env"] = serde_json::json!(e);
        }
        if let Some(t) = timeout {
            v["timeout"] = serde_json::json!(t);
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn hooks_run_in_order_with_state_on_stdin_and_exactly_their_env() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("log");
        let body = format!(
            "echo \"$0 $1 $MARK\" >> {log}\ncat > {dir}/stdin.$MARK\nenv > {dir}/env.$MARK",
            log = log.display(),
            dir = d.path().display()
        );
        let s = script(d.path(), "h.sh", &body);
        let hooks =
            vec![hook(&s, Some(vec!["first", "a"]), Some(vec!["MARK=1", "X=y=z"]), Some(5)), hook(&s, None, Some(vec!["MARK=2"]), None)];
        run(HookPhase::CreateRuntime, &hooks, br#"{"id":"c1"}"#).unwrap();
        let logged = std::fs::read_to_string(&log).unwrap();
        // For a script the kernel replaces argv[0] with the script path; argv[1..] stay.
        assert_eq!(logged, format!("{0} a 1\n{0}  2\n", s.display()));
        assert_eq!(std::fs::read_to_string(d.path().join("stdin.1")).unwrap(), r#"{"id":"c1"}"#);
        let env1 = std::fs::read_to_string(d.path().join("env.1")).unwrap();
        assert!(env1.contains("X=y=z") && env1.contains("MARK=1"), "{env1}");
        assert!(!env1.contains("HOME=") && !env1.contains("CARGO"), "hook saw the runtime's env: {env1}");
    }

    #[test]
    fn args_zero_is_the_hooks_argv0() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("cmdline");
        let cmd = format!("tr '\\0' ' ' < /proc/$$/cmdline > {}", out.display());
        let h = hook(Path::new("/bin/sh"), Some(vec!["my-hook", "-c", &cmd]), None, None);
        run(HookPhase::CreateRuntime, &[h], b"{}").unwrap();
        assert!(std::fs::read_to_string(&out).unwrap().starts_with("my-hook -c "));
    }

    #[test]
    fn large_state_is_written_completely() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        let s = script(d.path(), "h.sh", &format!("exec cat > {}", out.display()));
        let state = vec![b'x'; 300_000];
        run(HookPhase::StartContainer, &[hook(&s, None, None, None)], &state).unwrap();
        assert_eq!(std::fs::metadata(&out).unwrap().len(), 300_000);
    }

    #[test]
    fn a_failing_hook_reports_its_status_and_stderr() {
        let d = tempfile::tempdir().unwrap();
        let s = script(d.path(), "bad.sh", "echo 'no network for you' >&2\nexit 3");
        let err = run(HookPhase::CreateContainer, &[hook(&s, None, None, None)], b"{}").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Hook { .. }));
        assert!(msg.starts_with("createContainer hook "), "{msg}");
        assert!(msg.contains("exit status 3") && msg.contains("no network for you"), "{msg}");
    }

    #[test]
    fn a_hook_past_its_timeout_is_killed() {
        let d = tempfile::tempdir().unwrap();
        let s = script(d.path(), "slow.sh", "exec sleep 30");
        let started = Instant::now();
        let err = run(HookPhase::Prestart, &[hook(&s, None, None, Some(1))], b"{}").unwrap_err();
        assert!(err.to_string().contains("timed out after 1 s"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn poststop_failures_are_logged_and_later_hooks_still_run() {
        let d = tempfile::tempdir().unwrap();
        let bad = script(d.path(), "bad.sh", "exit 1");
        let marker = d.path().join("ran");
        let good = script(d.path(), "good.sh", &format!("touch {}", marker.display()));
        let hooks = [hook(&bad, None, None, None), hook(&good, None, None, None)];
        run(HookPhase::Poststop, &hooks, b"{}").unwrap();
        assert!(marker.exists());
    }

    #[test]
    fn a_missing_hook_binary_is_an_error_for_fatal_phases() {
        let h = hook(Path::new("/nonexistent/hook"), None, None, None);
        let err = run(HookPhase::CreateRuntime, std::slice::from_ref(&h), b"{}").unwrap_err();
        assert!(err.to_string().contains("cannot start"), "{err}");
        run(HookPhase::Poststart, &[h], b"{}").unwrap();
    }

    #[test]
    fn a_zero_timeout_is_rejected() {
        let err = run(HookPhase::CreateRuntime, &[hook(Path::new("/bin/true"), None, None, Some(0))], b"{}").unwrap_err();
        assert!(err.to_string().contains("greater than zero"), "{err}");
    }
}
