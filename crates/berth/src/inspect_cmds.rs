//! Looking into containers: `inspect`, `top`, `stats`, and `exec`.

use anyhow::bail;
use berth_engine::db::ContainerRow;
use berth_engine::exec::ExecRequest;
use berth_engine::Engine;
use clap::Args;
use serde_json::{json, Value};

use crate::container_cmds::engine;
use crate::context::Context;

/// Flags of `inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// A template like '{{.State.Status}}' or '{{json .Config}}' instead of the JSON.
    #[arg(short, long)]
    format: Option<String>,
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Flags of `top`.
#[derive(Args, Debug)]
pub struct TopArgs {
    /// The container.
    container: String,
}

/// Flags of `stats`.
#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Print once and exit.
    #[arg(long = "no-stream")]
    no_stream: bool,
    /// Containers (default: every running one).
    containers: Vec<String>,
}

/// Flags of `exec`.
#[derive(Args, Debug)]
#[command(trailing_var_arg = true)]
pub struct ExecArgs {
    /// Keep stdin open.
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a terminal.
    #[arg(short, long)]
    tty: bool,
    /// Do not wait for the process.
    #[arg(short, long)]
    detach: bool,
    /// Set an environment variable.
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// User (name|uid[:group|gid]).
    #[arg(short, long)]
    user: Option<String>,
    /// Working directory.
    #[arg(short, long)]
    workdir: Option<String>,
    /// Every capability.
    #[arg(long)]
    privileged: bool,
    /// The container.
    container: String,
    /// Command and arguments.
    #[arg(required = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

fn inspect_one(engine: &Engine, row: &ContainerRow) -> anyhow::Result<Value> {
    let settings = engine.settings(row)?;
    let bundle = engine.bundle_dir(row);
    let spec: Value = std::fs::read(bundle.join("config.json")).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or(Value::Null);
    let process = &spec["process"];
    let args: Vec<Value> = process["args"].as_array().cloned().unwrap_or_default();
    let (log_path, log_driver) = engine.log_file(row)?;
    let running = matches!(row.state.as_str(), "running" | "paused");
    let mounts: Vec<Value> = spec["mounts"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter(|m| m["type"] == "bind" || m["type"] == "tmpfs")
                .map(|m| {
                    let opts: Vec<&str> =
                        m["options"].as_array().map(|o| o.iter().filter_map(|x| x.as_str()).collect()).unwrap_or_default();
                    json!({"Type": m["type"], "Source": m["source"], "Destination": m["destination"], "RW": !opts.contains(&"ro")})
                })
                .collect()
        })
        .unwrap_or_default();
    let max_retries = match settings.restart {
        berth_engine::RestartPolicy::OnFailure { max } => max,
        _ => 0,
    };
    Ok(json!({
        "Id": row.id,
        "Created": row.created,
        "Path": args.first().cloned().unwrap_or(Value::Null),
        "Args": args.get(1..).map(|a| a.to_vec()).unwrap_or_default(),
        "State": {
            "Status": row.state,
            "Running": running,
            "Paused": row.state == "paused",
            "Restarting": row.state == "restarting",
            "OOMKilled": false,
            "Dead": false,
            "Pid": if running { row.pid.unwrap_or(0) } else { 0 },
            "ExitCode": row.exit_code.unwrap_or(if row.state == "exited" { -1 } else { 0 }),
            "StartedAt": row.started.clone().unwrap_or_default(),
            "FinishedAt": row.finished.clone().unwrap_or_default(),
        },
        "Image": row.image_id,
        "ImageName": row.image,
        "Name": row.name,
        "RestartCount": row.restart_count,
        "Driver": "overlay",
        "LogPath": log_path,
        "HostConfig": {
            "RestartPolicy": {"Name": settings.restart.name(), "MaximumRetryCount": max_retries},
            "AutoRemove": row.auto_remove,
            "LogConfig": {"Type": serde_json::to_value(log_driver)?},
            "Runtime": settings.runtime.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "berth".into()),
            "ReadonlyRootfs": spec["root"]["readonly"].as_bool().unwrap_or(false),
        },
        "Config": {
            "Hostname": spec["hostname"],
            "User": format!("{}:{}", process["user"]["uid"], process["user"]["gid"]),
            "Env": process["env"],
            "Cmd": settings.command,
            "Image": row.image,
            "WorkingDir": process["cwd"],
            "Labels": settings.labels,
            "StopSignal": settings.stop_signal,
            "StopTimeout": settings.stop_timeout,
            "Tty": settings.tty,
            "OpenStdin": settings.interactive,
        },
        "Mounts": mounts,
        "GraphDriver": {"Name": "overlay", "Data": {"MergedDir": spec["root"]["path"]}},
    }))
}

/// Expand a docker-style template over `v`: `{{.A.B}}` and `{{json .A}}`.
pub fn render_template(template: &str, v: &Value) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find("}}") else { break };
        let expr = rest[start + 2..start + end].trim();
        let (json_mode, path) = match expr.strip_prefix("json ") {
            Some(p) => (true, p.trim()),
            None => (false, expr),
        };
        let mut cur = v;
        for key in path.trim_start_matches('.').split('.').filter(|k| !k.is_empty()) {
            cur = cur.get(key).unwrap_or(&Value::Null);
        }
        match (json_mode, cur) {
            (false, Value::String(s)) => out.push_str(s),
            (false, Value::Null) => out.push_str("<no value>"),
            (_, other) => out.push_str(&other.to_string()),
        }
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    out.replace("\\n", "\n").replace("\\t", "\t")
}

/// `inspect`.
pub fn inspect(ctx: &Context, a: InspectArgs) -> anyhow::Result<()> {
    let engine = engine(ctx)?;
    let mut all = Vec::new();
    for c in &a.containers {
        let row = engine.find(c)?;
        all.push(inspect_one(&engine, &row)?);
    }
    match &a.format {
        Some(t) => {
            for v in &all {
                println!("{}", render_template(t, v));
            }
        }
        None => println!("{}", serde_json::to_string_pretty(&all)?),
    }
    Ok(())
}

fn proc_line(pid: i32) -> Option<(u32, i32, String)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| status.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().nth(1)).map(String::from);
    let uid = field("Uid:")?.parse().ok()?;
    let ppid = field("PPid:")?.parse().ok()?;
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmd = String::from_utf8_lossy(&cmd).split('\0').filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ");
    Some((uid, ppid, if cmd.is_empty() { format!("[{}]", field("Name:")?) } else { cmd }))
}

/// `top`: the container's processes as the host sees them.
pub fn top(ctx: &Context, a: TopArgs) -> anyhow::Result<()> {
    let engine = engine(ctx)?;
    let mut pids = engine.pids(&a.container)?;
    pids.sort_unstable();
    println!("{:<8}{:<10}{:<10}CMD", "UID", "PID", "PPID");
    for pid in pids {
        if let Some((uid, ppid, cmd)) = proc_line(pid) {
            println!("{uid:<8}{pid:<10}{ppid:<10}{cmd}");
        }
    }
    Ok(())
}

fn human(bytes: u64) -> String {
    crate::format::human_size(bytes)
}

/// `stats`: CPU (over 200 ms), memory and pids of running containers.
pub fn stats(ctx: &Context, a: StatsArgs) -> anyhow::Result<()> {
    let engine = engine(ctx)?;
    let keys: Vec<String> = if a.containers.is_empty() {
        engine.containers()?.into_iter().filter(|r| r.state == "running").map(|r| r.id).collect()
    } else {
        a.containers.clone()
    };
    loop {
        let mut first = Vec::new();
        for k in &keys {
            first.push(engine.stats(k)?);
        }
        let t0 = std::time::Instant::now();
        std::thread::sleep(std::time::Duration::from_millis(200));
        println!("{:<14}{:<24}{:<10}{:<24}{:<10}PIDS", "CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %");
        for (row, before) in first {
            let (_, after) = engine.stats(&row.id)?;
            let dt = t0.elapsed().as_nanos() as f64;
            let cpu = (after.cpu.usage.total.saturating_sub(before.cpu.usage.total)) as f64 / dt * 100.0;
            let mem = after.memory.usage.usage;
            let limit = after.memory.usage.limit;
            let pct = if limit > 0 && limit < (1 << 60) { mem as f64 / limit as f64 * 100.0 } else { 0.0 };
            let limit_text = if limit > 0 && limit < (1 << 60) { human(limit) } else { "unlimited".into() };
            println!(
                "{:<14}{:<24}{:<10}{:<24}{:<10}{}",
                &row.id[..12],
                row.name,
                format!("{cpu:.2}%"),
                format!("{} / {}", human(mem), limit_text),
                format!("{pct:.2}%"),
                after.pids.current
            );
        }
        if a.no_stream {
            return Ok(());
        }
    }
}

/// `exec`: the process's exit status is the command's.
pub fn exec(ctx: &Context, a: ExecArgs) -> anyhow::Result<i32> {
    berth_engine::seal_binary()?;
    if a.tty && !a.interactive && a.detach {
        bail!("exec: -t with -d makes no sense");
    }
    let engine = engine(ctx)?;
    let req = ExecRequest {
        command: a.command,
        env: a.env,
        user: a.user,
        workdir: a.workdir,
        tty: a.tty,
        interactive: a.interactive,
        detach: a.detach,
        privileged: a.privileged,
    };
    match engine.exec(&a.container, &req) {
        Ok(code) => Ok(code),
        Err(e) => {
            let msg = e.to_string();
            if msg.contains("executable file not found") || msg.to_lowercase().contains("no such file or directory") {
                eprintln!("Error: {msg}");
                return Ok(127);
            }
            if msg.contains("ermission denied") {
                eprintln!("Error: {msg}");
                return Ok(126);
            }
            Err(e.into())
        }
    }
}
