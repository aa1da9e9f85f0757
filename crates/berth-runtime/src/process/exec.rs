//! Finding `process.args[0]` and replacing the init with it.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The PATH used when the process environment has none (runc's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Resolve `args0` like runc (Go's `exec.LookPath`) with the PATH of `env`.
///
/// A name with a '/' is checked as is; otherwise each absolute PATH entry is tried in order
/// (empty and relative entries are skipped, as Go refuses results relative to the cwd).
pub fn resolve_executable(args0: &str, env: &[String]) -> Result<PathBuf> {
    if args0.is_empty() {
        return Err(Error::InvalidConfig("exec: process.args[0] is empty".into()));
    }
    if args0.contains('/') {
        let path = PathBuf::from(args0);
        return check_executable(&path)
            .map(|()| path)
            .map_err(|why| Error::InvalidConfig(format!("exec: {args0:?}: {}", go_error_text(&why))));
    }
    let path_var = env.iter().rev().find_map(|kv| kv.strip_prefix("PATH=")).unwrap_or(DEFAULT_PATH);
    // Like Go's LookPath, a candidate that exists but cannot be executed is skipped.
    for dir in path_var.split(':').filter(|d| d.starts_with('/')) {
        let candidate = Path::new(dir).join(args0);
        if check_executable(&candidate).is_ok() {
            return Ok(candidate);
        }
    }
    Err(Error::InvalidConfig(format!("exec: {args0:?}: executable file not found in $PATH")))
}

/// An errno as Go (and so runc) spells it: "no such file or directory", "permission denied".
///
/// docker's CLI and daemon match these lowercase strings to exit with 127 or 126 instead of
/// 125; Rust's "No such file or directory (os error 2)" would not match.
fn go_error_text(err: &std::io::Error) -> String {
    let Some(errno) = err.raw_os_error() else {
        return err.to_string();
    };
    let text = nix::errno::Errno::from_raw(errno).desc();
    let mut chars = text.chars();
    chars.next().map(|c| c.to_lowercase().chain(chars).collect()).unwrap_or_default()
}

/// A regular (or symlinked-to-regular) file that the effective ids may execute.
fn check_executable(path: &Path) -> std::io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if meta.is_dir() {
        return Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, "is a directory"));
    }
    if meta.mode() & 0o111 == 0 {
        return Err(std::io::Error::from_raw_os_error(libc::EACCES));
    }
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    let rc = unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), libc::X_OK, libc::AT_EACCESS) };
    if rc == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn cstrings(what: &str, items: &[String]) -> Result<Vec<CString>> {
    items
        .iter()
        .map(|s| CString::new(s.as_bytes()).map_err(|_| Error::InvalidConfig(format!("{what} entry {s:?} contains a NUL byte"))))
        .collect()
}

/// The container's process starts with no blocked and no ignored signal, whatever its
/// creator had (an engine blocks signals to forward them; Rust ignores SIGPIPE), as crun does.
fn reset_signals() {
    /// The kernel's struct sigaction (x86_64/aarch64 layout): glibc's sigaction refuses the
    /// signals it reserves (32, 33), which an ancestor may still have ignored.
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    // SAFETY: sigprocmask with an empty set; rt_sigaction reads/writes one KernelSigaction
    // of the size given; invalid signal numbers (SIGKILL, SIGSTOP) simply fail.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        for sig in 1..=64 {
            let mut old = KernelSigaction { handler: 0, flags: 0, restorer: 0, mask: 0 };
            if libc::syscall(libc::SYS_rt_sigaction, sig, std::ptr::null::<KernelSigaction>(), &mut old, 8) == 0
                && old.handler == libc::SIG_IGN
            {
                let dfl = KernelSigaction { handler: libc::SIG_DFL, flags: 0, restorer: 0, mask: 0 };
                libc::syscall(libc::SYS_rt_sigaction, sig, &dfl, std::ptr::null_mut::<KernelSigaction>(), 8);
            }
        }
    }
}

/// execve(path, args, env); it only returns on failure, with the error.
///
/// Called after the user switch: a missing `HOME` is set from the container's /etc/passwd
/// entry of the current uid (runc does the same).
pub fn exec(path: &Path, args: &[String], env: &[String]) -> Error {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let env = super::user::env_with_home(env, nix::unistd::getuid().as_raw(), &passwd);
    let prepared = (|| -> Result<(CString, Vec<CString>, Vec<CString>)> {
        let p = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| Error::InvalidConfig(format!("exec path {path:?} contains a NUL byte")))?;
        Ok((p, cstrings("process.args", args)?, cstrings("process.env", &env)?))
    })();
    let (p, argv, envp) = match prepared {
        Ok(v) => v,
        Err(e) => return e,
    };
    reset_signals();
    match nix::unistd::execve(&p, &argv, &envp) {
        Err(source) => Error::Sys { context: format!("exec {}", path.display()), source },
        Ok(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write_file(path: &Path, mode: u32) {
        std::fs::write(path, b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn resolve_searches_path_entries_in_order() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        write_file(&a.path().join("tool"), 0o644);
        write_file(&b.path().join("tool"), 0o755);
        let env = vec![format!("PATH={}:{}", a.path().display(), b.path().display())];
        assert_eq!(resolve_executable("tool", &env).unwrap(), b.path().join("tool"));
    }

    #[test]
    fn resolve_reports_missing_names_like_runc() {
        let d = tempfile::tempdir().unwrap();
        let env = vec![format!("PATH={}", d.path().display())];
        let err = resolve_executable("foo", &env).unwrap_err().to_string();
        assert!(err.contains(r#"exec: "foo": executable file not found in $PATH"#), "{err}");
    }

    #[test]
    fn resolve_uses_the_default_path_without_a_path_variable() {
        assert_eq!(resolve_executable("sh", &["HOME=/".into()]).unwrap().file_name().unwrap(), "sh");
    }

    #[test]
    fn resolve_checks_names_with_a_slash_directly() {
        let d = tempfile::tempdir().unwrap();
        let exe = d.path().join("run");
        write_file(&exe, 0o755);
        assert_eq!(resolve_executable(exe.to_str().unwrap(), &[]).unwrap(), exe);
        let absent = resolve_executable(d.path().join("absent").to_str().unwrap(), &[]).unwrap_err();
        assert!(absent.to_string().ends_with(": no such file or directory"), "{absent}");
        assert!(resolve_executable(d.path().to_str().unwrap(), &[]).is_err());
        let plain = d.path().join("plain");
        write_file(&plain, 0o644);
        let plain = resolve_executable(plain.to_str().unwrap(), &[]).unwrap_err();
        assert!(plain.to_string().ends_with(": permission denied"), "{plain}");
    }

    #[test]
    fn exec_with_a_nul_in_args_returns_an_error_without_exec() {
        let e = exec(Path::new("/bin/true"), &["a\0b".into()], &[]);
        assert!(e.to_string().contains("NUL"), "{e}");
    }
}
