//! `exec`: another process in a running container, through the in-process runtime (or the
//! container's `--runtime` binary), waited for in the foreground unless detached.

use std::os::unix::net::UnixListener;
use std::path::Path;

use berth_runtime::exec::ExecOptions;

use crate::backend::Backend;
use crate::error::{Error, IoContext, Result};
use crate::run::Engine;

/// What `berth exec` asks for.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    /// The command.
    pub command: Vec<String>,
    /// `-e` KEY=VALUE, over the container's environment.
    pub env: Vec<String>,
    /// `-u` name|uid[:group|gid] (resolved in the container's /etc/passwd and /etc/group).
    pub user: Option<String>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `-t`.
    pub tty: bool,
    /// `-i`: our stdin is the process's.
    pub interactive: bool,
    /// `-d`: do not wait.
    pub detach: bool,
    /// `--privileged`: every capability.
    pub privileged: bool,
}

impl Engine {
    /// Run `req` in the running container `key`; its exit status (0 when detached).
    ///
    /// The caller must be single-threaded.
    pub fn exec(&self, key: &str, req: &ExecRequest) -> Result<i32> {
        let row = self.find(key)?;
        if row.state != "running" {
            return Err(Error::WrongState(format!("container {} is {}, not running", row.name, row.state)));
        }
        if req.command.is_empty() {
            return Err(Error::Invalid("exec: a command is required".into()));
        }
        let backend = self.backend(&row)?;
        let Backend::InProcess(rt) = &backend else {
            return self.exec_external(&backend, &row.id, req);
        };
        let mut p = rt.container_process(&row.id)?;
        p.set_args(Some(req.command.clone()));
        p.set_terminal(Some(req.tty));
        if req.tty {
            // The runtime sizes the terminal before the process runs (a relay would be late).
            let (rows, cols) = berth_runtime::tty_relay::window_size(0).unwrap_or((24, 80));
            let size: Option<oci_spec::runtime::Box> = serde_json::from_value(serde_json::json!({"height": rows, "width": cols})).ok();
            p.set_console_size(size);
        }
        if let Some(w) = &req.workdir {
            p.set_cwd(w.into());
        }
        let mut env = p.env().clone().unwrap_or_default();
        for kv in &req.env {
            let k = kv.split('=').next().unwrap_or(kv);
            env.retain(|e| e.split('=').next() != Some(k));
            env.push(kv.clone());
        }
        if let Some(u) = &req.user {
            let user = crate::user::resolve(&self.dirs(&row.id).rootfs(), u)?;
            let mut pu = p.user().clone();
            pu.set_uid(user.uid);
            pu.set_gid(user.gid);
            pu.set_additional_gids(Some(user.additional_gids.clone()));
            p.set_user(pu);
            env.retain(|e| !e.starts_with("HOME="));
            env.push(format!("HOME={}", user.home));
        }
        p.set_env(Some(env));
        if req.privileged {
            let all: std::collections::HashSet<oci_spec::runtime::Capability> =
                caps::all().iter().filter_map(|c| serde_json::from_value(serde_json::Value::String(c.to_string())).ok()).collect();
            let mut c = p.capabilities().clone().unwrap_or_default();
            c.set_bounding(Some(all.clone()));
            c.set_effective(Some(all.clone()));
            c.set_permitted(Some(all));
            p.set_capabilities(Some(c));
        }
        let rund = self.run_dir(&row.id);
        std::fs::create_dir_all(&rund).io_context(|| format!("create {}", rund.display()))?;
        let sock_name = format!("exec-{}.sock", std::process::id());
        let listener = if req.tty { Some(bind_in(&rund, &sock_name)?) } else { None };
        let opts = ExecOptions {
            process: Some(p),
            // Relative: exec runs with the run dir as cwd.
            console_socket: listener.as_ref().map(|_| std::path::PathBuf::from(&sock_name)),
            ..Default::default()
        };
        let null = || crate::monitor::dev_null().map(Some);
        // A detached process keeps none of our stdio (a caller waiting for EOF would hang);
        // stdin is ours only with -i.
        let stdio = if req.detach {
            [null()?, null()?, null()?]
        } else if req.interactive || req.tty {
            [None, None, None]
        } else {
            [null()?, None, None]
        };
        let child = crate::monitor::with_stdio(&stdio, || in_dir(&rund, || rt.exec(&row.id, opts)))???;
        let _ = std::fs::remove_file(rund.join(&sock_name));
        if req.detach {
            return Ok(0);
        }
        let fwd = berth_runtime::signals::Forwarder::block().map_err(Error::Invalid)?;
        match listener {
            Some(l) => {
                let (conn, _) = l.accept().io_context(|| "accept the exec console".into())?;
                let master = berth_runtime::console::recv_master(&conn)?;
                berth_runtime::tty_relay::relay_until_exit(master, &fwd, child.pid).map_err(Error::Invalid)
            }
            None => fwd.forward_until_exit(child.pid).map_err(Error::Invalid),
        }
    }

    fn exec_external(&self, backend: &Backend, id: &str, req: &ExecRequest) -> Result<i32> {
        let Backend::External { binary, root } = backend else { unreachable!("in-process handled by the caller") };
        if req.tty {
            return Err(Error::Invalid("exec -t in a container of another --runtime is not supported".into()));
        }
        let mut cmd = std::process::Command::new(binary);
        cmd.arg("--root").arg(root).arg("exec");
        if req.detach {
            cmd.arg("--detach");
        }
        for e in &req.env {
            cmd.arg("--env").arg(e);
        }
        if let Some(w) = &req.workdir {
            cmd.arg("--cwd").arg(w);
        }
        if let Some(u) = &req.user {
            let user = crate::user::resolve(&self.dirs(id).rootfs(), u)?;
            cmd.arg("--user").arg(format!("{}:{}", user.uid, user.gid));
        }
        if !req.interactive {
            cmd.stdin(std::process::Stdio::null());
        }
        let status = cmd.arg(id).args(&req.command).status().io_context(|| format!("run {}", binary.display()))?;
        Ok(status.code().unwrap_or(125))
    }
}

/// Run `f` with the current directory set to `dir` (restored after), so that sockets can be
/// named relative to it: a run dir's absolute path may exceed sun_path's 108 bytes.
fn in_dir<T>(dir: &Path, f: impl FnOnce() -> T) -> Result<T> {
    let back = std::env::current_dir().ok();
    std::env::set_current_dir(dir).io_context(|| format!("enter {}", dir.display()))?;
    let r = f();
    if let Some(b) = back {
        let _ = std::env::set_current_dir(b);
    }
    Ok(r)
}

fn bind_in(dir: &Path, name: &str) -> Result<UnixListener> {
    let _ = std::fs::remove_file(dir.join(name));
    in_dir(dir, || UnixListener::bind(name))?.io_context(|| format!("bind {}", dir.join(name).display()))
}
