//! The runtime that drives a container's processes: berth's own, in-process, or any
//! runc-compatible binary (`--runtime PATH`) through runc's command line.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use berth_runtime::state::Status;
use berth_runtime::{CreateOptions, Runtime};

use crate::error::{Error, IoContext, Result};

/// What drives the container.
pub enum Backend {
    /// berth-runtime as a library: no exec, no extra process.
    InProcess(Runtime),
    /// A runc-compatible binary with its own state root.
    External {
        /// The binary.
        binary: PathBuf,
        /// Its `--root`.
        root: PathBuf,
    },
}

/// The runtime's view of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeState {
    /// created, running, paused, stopped.
    pub status: Status,
    /// The init's pid (0 when stopped).
    pub pid: i32,
}

impl Backend {
    /// The backend for a container's `--runtime` choice; `run_root` holds runtime state.
    pub fn new(runtime: Option<&Path>, run_root: &Path) -> Backend {
        match runtime {
            None => Backend::InProcess(Runtime::new(run_root.join("runtime"))),
            Some(binary) => Backend::External { binary: binary.to_path_buf(), root: run_root.join("runtime-ext") },
        }
    }

    fn cli(&self, binary: &Path, root: &Path, args: &[&str]) -> Result<std::process::Output> {
        Command::new(binary)
            .arg("--root")
            .arg(root)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .io_context(|| format!("run the runtime {}", binary.display()))
    }

    fn cli_ok(&self, binary: &Path, root: &Path, args: &[&str]) -> Result<String> {
        let out = self.cli(binary, root, args)?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(Error::Invalid(format!("{} {}: {}", binary.display(), args.first().unwrap_or(&""), err.trim())));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Create the container from `bundle`; its init inherits the caller's stdio 0–2 (or gets
    /// a terminal sent to `console_socket`). Returns the init's pid.
    ///
    /// The caller must be single-threaded (the in-process runtime forks).
    pub fn create(&self, id: &str, bundle: &Path, console_socket: Option<&Path>, log: &Path) -> Result<i32> {
        match self {
            Backend::InProcess(rt) => {
                let opts = CreateOptions {
                    bundle: bundle.to_path_buf(),
                    console_socket: console_socket.map(Path::to_path_buf),
                    ..Default::default()
                };
                Ok(rt.create(id, &opts)?)
            }
            Backend::External { binary, root } => {
                let pid_file = bundle.join("init.pid");
                let mut cmd = Command::new(binary);
                cmd.arg("--root").arg(root).arg("--log").arg(log).args(["--log-format", "json", "create", "--bundle"]);
                cmd.arg(bundle).arg("--pid-file").arg(&pid_file);
                if let Some(s) = console_socket {
                    cmd.arg("--console-socket").arg(s);
                }
                // The init inherits these (runc passes its stdio through when there is no terminal).
                let status = cmd.arg(id).status().io_context(|| format!("run the runtime {}", binary.display()))?;
                if !status.success() {
                    return Err(Error::Invalid(format!("{} create: {}", binary.display(), last_runtime_error(log))));
                }
                let text = std::fs::read_to_string(&pid_file).io_context(|| format!("read {}", pid_file.display()))?;
                text.trim().parse().map_err(|_| Error::Invalid(format!("{}: not a pid: {text:?}", pid_file.display())))
            }
        }
    }

    /// Start the created container's process.
    pub fn start(&self, id: &str) -> Result<()> {
        match self {
            Backend::InProcess(rt) => Ok(rt.start(id)?),
            Backend::External { binary, root } => self.cli_ok(binary, root, &["start", id]).map(drop),
        }
    }

    /// Signal the init (or every process with `all`).
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        match self {
            Backend::InProcess(rt) => Ok(rt.kill(id, signal, all)?),
            Backend::External { binary, root } => {
                let sig = signal.to_string();
                let mut args = vec!["kill"];
                if all {
                    args.push("--all");
                }
                args.extend([id, sig.as_str()]);
                self.cli_ok(binary, root, &args).map(drop)
            }
        }
    }

    /// Delete the container's runtime state (killing what remains with `force`); a container
    /// the runtime does not know is not an error.
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        match self {
            Backend::InProcess(rt) => match rt.delete(id, force) {
                Ok(()) | Err(berth_runtime::Error::NotFound(_)) => Ok(()),
                Err(e) => Err(e.into()),
            },
            Backend::External { binary, root } => {
                let mut args = vec!["delete"];
                if force {
                    args.push("--force");
                }
                args.push(id);
                let out = self.cli(binary, root, &args)?;
                let err = String::from_utf8_lossy(&out.stderr);
                if out.status.success() || err.contains("does not exist") || err.contains("not exist") {
                    Ok(())
                } else {
                    Err(Error::Invalid(format!("{} delete: {}", binary.display(), err.trim())))
                }
            }
        }
    }

    /// The runtime's state of the container, or None if it does not know it.
    pub fn state(&self, id: &str) -> Result<Option<RuntimeState>> {
        match self {
            Backend::InProcess(rt) => match rt.state(id) {
                Ok(st) => Ok(Some(RuntimeState { status: st.status, pid: st.pid })),
                Err(berth_runtime::Error::NotFound(_)) => Ok(None),
                Err(e) => Err(e.into()),
            },
            Backend::External { binary, root } => {
                let out = self.cli(binary, root, &["state", id])?;
                if !out.status.success() {
                    return Ok(None);
                }
                let v: serde_json::Value =
                    serde_json::from_slice(&out.stdout).map_err(|e| Error::Invalid(format!("{} state: {e}", binary.display())))?;
                let status = match v.get("status").and_then(|s| s.as_str()) {
                    Some("created") => Status::Created,
                    Some("running") => Status::Running,
                    Some("paused") => Status::Paused,
                    Some("creating") => Status::Creating,
                    _ => Status::Stopped,
                };
                Ok(Some(RuntimeState { status, pid: v.get("pid").and_then(|p| p.as_i64()).unwrap_or(0) as i32 }))
            }
        }
    }

    /// Freeze the container.
    pub fn pause(&self, id: &str) -> Result<()> {
        match self {
            Backend::InProcess(rt) => Ok(rt.pause(id)?),
            Backend::External { binary, root } => self.cli_ok(binary, root, &["pause", id]).map(drop),
        }
    }

    /// Thaw the container.
    pub fn resume(&self, id: &str) -> Result<()> {
        match self {
            Backend::InProcess(rt) => Ok(rt.resume(id)?),
            Backend::External { binary, root } => self.cli_ok(binary, root, &["resume", id]).map(drop),
        }
    }

    /// The host pids of the container's processes.
    pub fn pids(&self, id: &str) -> Result<Vec<i32>> {
        match self {
            Backend::InProcess(rt) => Ok(rt.pids(id)?),
            Backend::External { binary, root } => {
                let text = self.cli_ok(binary, root, &["ps", "--format", "json", id])?;
                serde_json::from_str(&text).map_err(|e| Error::Invalid(format!("{} ps: {e}", binary.display())))
            }
        }
    }

    /// The in-process runtime, for what only it offers (exec, stats).
    pub fn in_process(&self) -> Option<&Runtime> {
        match self {
            Backend::InProcess(rt) => Some(rt),
            Backend::External { .. } => None,
        }
    }
}

/// The last error a runtime logged in its JSON log (runc's `--log-format json`).
fn last_runtime_error(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v.get("level").and_then(|l| l.as_str()) == Some("error"))
        .and_then(|v| v.get("msg").and_then(|m| m.as_str()).map(String::from))
        .unwrap_or_else(|| "failed (no error in its log)".into())
}
