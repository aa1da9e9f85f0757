//! `exec`: runc's flags turned into the process to run, then wait for it.

use std::path::PathBuf;
use std::process::ExitCode;

use berth_runtime::exec::ExecOptions;
use berth_runtime::Runtime;
use clap::Args;
use oci_spec::runtime::{Capability, Process};

use berth_runtime::signals;

/// Flags of `exec`.
#[derive(Args)]
pub struct ExecArgs {
    /// Unix socket that receives the pty master.
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Working directory inside the container.
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// Set an environment variable (KEY=VALUE).
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// Allocate a pseudo-TTY.
    #[arg(short, long)]
    tty: bool,
    /// UID[:GID] to run as.
    #[arg(short, long)]
    user: Option<String>,
    /// Additional group ids.
    #[arg(short = 'g', long = "additional-gids")]
    additional_gids: Vec<u32>,
    /// A process.json describing the whole process.
    #[arg(short, long)]
    process: Option<PathBuf>,
    /// Detach from the process.
    #[arg(short, long)]
    detach: bool,
    /// File to write the process's pid to.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// SELinux label for the process.
    #[arg(long = "process-label")]
    process_label: Option<String>,
    /// AppArmor profile for the process.
    #[arg(long)]
    apparmor: Option<String>,
    /// Set no_new_privs.
    #[arg(long = "no-new-privs")]
    no_new_privs: bool,
    /// Add a capability.
    #[arg(short, long = "cap")]
    cap: Vec<String>,
    /// Pass N extra fds to the process.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: i32,
    /// Sub-cgroup to run in: PATH, or CONTROLLER[,CONTROLLER]:PATH (must exist).
    #[arg(long)]
    cgroup: Vec<String>,
    /// Allow exec in a paused container.
    #[arg(long = "ignore-paused")]
    ignore_paused: bool,
    /// Container id.
    id: String,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

type CliResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Build the process from the flags over the container's own, run it, wait unless detached.
pub fn exec(runtime: &Runtime, a: &ExecArgs) -> CliResult<ExitCode> {
    let process = match &a.process {
        Some(path) => {
            let text = std::fs::read(path).map_err(|e| format!("read process file {}: {e}", path.display()))?;
            serde_json::from_slice::<Process>(&text).map_err(|e| format!("process file {}: {e}", path.display()))?
        }
        None => process_from_flags(runtime.container_process(&a.id)?, a)?,
    };
    let opts = ExecOptions {
        process: Some(process),
        console_socket: a.console_socket.clone(),
        pid_file: a.pid_file.clone(),
        preserve_fds: a.preserve_fds,
        ignore_paused: a.ignore_paused,
        sub_cgroups: a.cgroup.clone(),
    };
    let child = runtime.exec(&a.id, opts)?;
    if a.detach {
        return Ok(ExitCode::SUCCESS);
    }
    let fwd = signals::Forwarder::block()?;
    let status = fwd.forward_until_exit(child.pid)?;
    Ok(ExitCode::from(status as u8))
}

fn process_from_flags(mut p: Process, a: &ExecArgs) -> CliResult<Process> {
    if a.command.is_empty() {
        return Err("exec: a command is required (or --process)".into());
    }
    p.set_args(Some(a.command.clone()));
    p.set_terminal(Some(a.tty));
    if let Some(cwd) = &a.cwd {
        p.set_cwd(cwd.clone());
    }
    let mut env = p.env().clone().unwrap_or_default();
    for kv in &a.env {
        let key = kv.split('=').next().unwrap_or(kv);
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(kv.clone());
    }
    p.set_env(Some(env));
    if let Some(u) = &a.user {
        let (uid, gid) = match u.split_once(':') {
            Some((u, g)) => (u.parse::<u32>()?, Some(g.parse::<u32>()?)),
            None => (u.parse::<u32>().map_err(|_| format!("--user {u:?}: expected UID[:GID]"))?, None),
        };
        let mut user = p.user().clone();
        user.set_uid(uid);
        user.set_gid(gid.unwrap_or(0));
        p.set_user(user);
    }
    if !a.additional_gids.is_empty() {
        let mut user = p.user().clone();
        user.set_additional_gids(Some(a.additional_gids.clone()));
        p.set_user(user);
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if !a.cap.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        for name in &a.cap {
            let up = name.to_ascii_uppercase();
            let full = if up.starts_with("CAP_") { up } else { format!("CAP_{up}") };
            let cap: Capability = serde_json::from_value(serde_json::Value::String(full.clone()))
                .map_err(|_| format!("--cap {name:?}: unknown capability"))?;
            let add = |s: Option<std::collections::HashSet<Capability>>| {
                let mut s = s.unwrap_or_default();
                s.insert(cap);
                Some(s)
            };
            caps.set_bounding(add(caps.bounding().clone()));
            caps.set_effective(add(caps.effective().clone()));
            caps.set_permitted(add(caps.permitted().clone()));
        }
        p.set_capabilities(Some(caps));
    }
    if let Some(l) = &a.apparmor {
        p.set_apparmor_profile(Some(l.clone()));
    }
    if let Some(l) = &a.process_label {
        p.set_selinux_label(Some(l.clone()));
    }
    Ok(p)
}
