//! Container commands: run, create, start, stop, kill, restart, rm, ps, wait, rename, pause,
//! unpause (the engine does the work; this parses and prints). logs, inspect, top, stats and
//! exec live in their own files.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail};
use berth_engine::db::ContainerRow;
use berth_engine::{ContainerSettings, Engine, LogDriver, RestartPolicy};
use clap::Args;

use crate::context::Context;

/// Flags of `run` and `create`.
#[derive(Args, Debug)]
#[command(trailing_var_arg = true)]
pub struct RunArgs {
    /// Run in the background and print the container id.
    #[arg(short, long)]
    detach: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    rm: bool,
    /// Container name.
    #[arg(long)]
    name: Option<String>,
    /// Restart policy: no, on-failure[:N], always, unless-stopped.
    #[arg(long, default_value = "no")]
    restart: String,
    /// Log driver: json-file, k8s-file, none.
    #[arg(long = "log-driver", default_value = "json-file")]
    log_driver: String,
    /// Log options: max-size=SIZE.
    #[arg(long = "log-opt")]
    log_opt: Vec<String>,
    /// Signal that `stop` sends first (default: the image's StopSignal, else SIGTERM).
    #[arg(long = "stop-signal")]
    stop_signal: Option<String>,
    /// Seconds `stop` waits before SIGKILL.
    #[arg(long = "stop-timeout", default_value_t = 10)]
    stop_timeout: u64,
    /// A runc-compatible runtime binary to use instead of berth's own.
    #[arg(long, value_name = "PATH")]
    runtime: Option<PathBuf>,
    /// Pull the image: missing (default), always, never.
    #[arg(long, default_value = "missing")]
    pull: String,
    /// Platform of the image to pull: os/arch[/variant].
    #[arg(long)]
    platform: Option<String>,
    /// Allocate a terminal.
    #[arg(short, long)]
    tty: bool,
    /// Keep stdin open.
    #[arg(short, long)]
    interactive: bool,
    /// Flags that shape the spec.
    #[command(flatten)]
    spec: crate::run_flags::SpecFlags,
    /// Image.
    image: String,
    /// Command and arguments.
    #[arg(allow_hyphen_values = true)]
    command: Vec<String>,
}

/// Flags of `ps`.
#[derive(Args, Debug)]
pub struct PsArgs {
    /// Show all containers (default: running only).
    #[arg(short, long)]
    all: bool,
    /// Only ids.
    #[arg(short, long)]
    quiet: bool,
    /// Show full ids.
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Output: table (default), json, or a template like '{{.ID}} {{.Names}} {{.Status}}'.
    #[arg(long)]
    format: Option<String>,
    /// Filters: id=, name=, status=, label=KEY[=VALUE], ancestor=.
    #[arg(short, long)]
    filter: Vec<String>,
}

/// Flags of `rm`.
#[derive(Args, Debug)]
pub struct RmArgs {
    /// Remove running containers too.
    #[arg(short, long)]
    force: bool,
    /// Remove the container's anonymous volumes too.
    #[arg(short, long)]
    volumes: bool,
    /// Containers (names or ids).
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Flags of `start`.
#[derive(Args, Debug)]
pub struct StartArgs {
    /// Attach to the container's output and wait for it (its status is the command's).
    #[arg(short, long)]
    attach: bool,
    /// Attach stdin too.
    #[arg(short, long)]
    interactive: bool,
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Flags of `stop` and `restart`.
#[derive(Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait before SIGKILL (default: the container's --stop-timeout).
    #[arg(short = 't', long = "time", alias = "timeout")]
    time: Option<u64>,
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Flags of `kill`.
#[derive(Args, Debug)]
pub struct KillArgs {
    /// Signal (name or number).
    #[arg(short, long, default_value = "KILL")]
    signal: String,
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Flags of commands that take containers only (wait, pause, unpause).
#[derive(Args, Debug)]
pub struct ContainersArgs {
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Flags of `rename`.
#[derive(Args, Debug)]
pub struct RenameArgs {
    /// The container.
    container: String,
    /// Its new name.
    name: String,
}

fn run_root() -> PathBuf {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/run/berth");
    }
    std::env::var_os("XDG_RUNTIME_DIR").map(|d| PathBuf::from(d).join("berth")).unwrap_or_else(|| PathBuf::from("/tmp/berth-run"))
}

/// The engine of this root.
pub fn engine(ctx: &Context) -> anyhow::Result<Engine> {
    let run_root = ctx.runroot().map(Path::to_path_buf).unwrap_or_else(run_root);
    let mut engine = Engine::open(ctx.root(), &run_root)?;
    // Idle bridges are removed by `berth network reap` in the background.
    engine.set_helper_exe(Some(PathBuf::from("/proc/self/exe")));
    Ok(engine)
}

fn settings(a: &RunArgs) -> anyhow::Result<ContainerSettings> {
    let mut s = ContainerSettings {
        tty: a.tty,
        interactive: a.interactive,
        log_driver: a.log_driver.parse::<LogDriver>()?,
        restart: a.restart.parse::<RestartPolicy>()?,
        stop_signal: match &a.stop_signal {
            Some(sig) => berth_runtime_signal(sig)?,
            None => 0,
        },
        stop_timeout: a.stop_timeout,
        runtime: a.runtime.clone(),
        ..Default::default()
    };
    for o in &a.log_opt {
        match o.split_once('=') {
            Some(("max-size", v)) => s.log_max_size = crate::run_flags::parse_size(v)? as u64,
            _ => bail!("--log-opt {o:?}: only max-size=SIZE is supported"),
        }
    }
    if let Some(rt) = &s.runtime {
        if !rt.is_file() {
            bail!("--runtime {}: no such file", rt.display());
        }
        s.runtime = Some(std::fs::canonicalize(rt)?);
    }
    if a.rm && s.restart != RestartPolicy::No {
        bail!("--rm and --restart {} conflict: a removed container cannot be restarted", a.restart);
    }
    Ok(s)
}

fn berth_runtime_signal(s: &str) -> anyhow::Result<i32> {
    berth_engine::signal_number(s).map_err(|e| anyhow!("{e}"))
}

/// Resolve the image for `run`/`create`, pulling it per `--pull`.
fn image_for_run(ctx: &Context, a: &RunArgs) -> anyhow::Result<String> {
    let image = crate::image_cmds::image_arg(ctx, &a.image)?;
    let pull = match a.pull.as_str() {
        "missing" => !crate::image_cmds::image_present(ctx, &image)?,
        "always" => true,
        "never" => false,
        other => bail!("--pull {other:?}: expected missing, always or never"),
    };
    if pull {
        crate::image_cmds::pull_for_run(ctx, &image, a.platform.as_deref())?;
    }
    Ok(image)
}

fn create_container(ctx: &Context, engine: &Engine, a: RunArgs) -> anyhow::Result<String> {
    let settings = settings(&a)?;
    let image = image_for_run(ctx, &a)?;
    let opts = a.spec.to_options(a.command, a.tty)?;
    Ok(engine.create(&image, a.name.as_deref(), &opts, &settings, a.rm)?)
}

/// docker's codes for a process that could not start: 127 not found, 126 not invocable;
/// None for an engine error (125).
fn start_failure_code(e: &berth_engine::Error) -> Option<i32> {
    let msg = e.to_string();
    // berth-runtime spells errno like runc ("no such file or directory"), as docker matches.
    if msg.contains("executable file not found") || msg.to_lowercase().contains("no such file or directory") {
        Some(127)
    } else if msg.contains("ermission denied") {
        Some(126)
    } else {
        None
    }
}

/// `run`: create the container and run it; returns the command's exit code.
pub fn run(ctx: &Context, a: RunArgs) -> anyhow::Result<i32> {
    berth_engine::seal_binary()?;
    let detach = a.detach;
    let engine = engine(ctx)?;
    let id = create_container(ctx, &engine, a)?;
    let result = if detach { engine.run_detached(&id).map(|()| 0) } else { engine.run_foreground(&id) };
    match result {
        Ok(code) => {
            if detach {
                println!("{id}");
            }
            Ok(code)
        }
        Err(e) => match start_failure_code(&e) {
            Some(code) => {
                eprintln!("Error: {e}");
                Ok(code)
            }
            None => Err(e.into()),
        },
    }
}

/// `create`: the container, not started; prints its id.
pub fn create(ctx: &Context, a: RunArgs) -> anyhow::Result<()> {
    let engine = engine(ctx)?;
    let id = create_container(ctx, &engine, a)?;
    println!("{id}");
    Ok(())
}

/// Apply `f` to each container; print the name given on success; fail if any failed.
fn each(containers: &[String], mut f: impl FnMut(&str) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let mut failed = 0;
    for c in containers {
        match f(c) {
            Ok(()) => println!("{c}"),
            Err(e) => {
                eprintln!("Error: {c}: {e:#}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} containers failed", containers.len());
    }
    Ok(())
}

/// `start`; with `-a`, the container's status is the command's.
pub fn start(ctx: &Context, a: StartArgs) -> anyhow::Result<i32> {
    berth_engine::seal_binary()?;
    let engine = engine(ctx)?;
    if a.attach {
        if a.containers.len() != 1 {
            bail!("start --attach takes one container");
        }
        let row = engine.find(&a.containers[0])?;
        let offset = crate::attach::log_offset(&engine, &row.id)?;
        if let Err(e) = engine.start(&row.id) {
            return match start_failure_code(&e) {
                Some(code) => {
                    eprintln!("Error: {e}");
                    Ok(code)
                }
                None => Err(e.into()),
            };
        }
        return crate::attach::attach_and_wait(&engine, &row.id, offset, a.interactive);
    }
    each(&a.containers, |c| engine.start(c).map(drop).map_err(Into::into))?;
    Ok(0)
}

/// `stop`.
pub fn stop(ctx: &Context, a: StopArgs) -> anyhow::Result<()> {
    let engine = engine(ctx)?;
    each(&a.containers, |c| engine.stop(c, a.time).map(drop).map_err(Into::into))
}

/// `restart`.
pub fn restart(ctx: &Context, a: StopArgs) -> anyhow::Result<()> {
    berth_engine::seal_binary()?;
    let engine = engine(ctx)?;
    each(&a.containers, |c| engine.restart(c, a.time).map(drop).map_err(Into::into))
}

/// `kill`.
pub fn kill(ctx: &Context, a: KillArgs) -> anyhow::Result<()> {
    let signal = berth_runtime_signal(&a.signal)?;
    let engine = engine(ctx)?;
    each(&a.containers, |c| engine.kill(c, signal).map(drop).map_err(Into::into))
}

/// `wait`: each container's exit status, one per line.
pub fn wait(ctx: &Context, a: ContainersArgs) -> anyhow::Result<()> {
    let engine = engine(ctx)?;
    for c in &a.containers {
        match engine.wait(c)? {
            Some(code) => println!("{code}"),
            None => println!("-1"),
        }
    }
    Ok(())
}

/// `pause`.
pub fn pause(ctx: &Context, a: ContainersArgs) -> anyhow::Result<()> {
    let engine = engine(ctx)?;
    each(&a.containers, |c| engine.pause(c).map_err(Into::into))
}

/// `unpause`.
pub fn unpause(ctx: &Context, a: ContainersArgs) -> anyhow::Result<()> {
    let engine = engine(ctx)?;
    each(&a.containers, |c| engine.unpause(c).map_err(Into::into))
}

/// `rename`.
pub fn rename(ctx: &Context, a: RenameArgs) -> anyhow::Result<()> {
    Ok(engine(ctx)?.rename(&a.container, &a.name)?)
}

/// Image ids and snapshot chain ids that containers use (for rmi and prune).
pub fn in_use(ctx: &Context) -> anyhow::Result<(std::collections::HashSet<String>, std::collections::HashSet<String>)> {
    // No database yet: no containers (and nothing is created by asking).
    if !ctx.root().join("berth.db").exists() {
        return Ok(Default::default());
    }
    let engine = engine(ctx)?;
    Ok((engine.images_in_use()?, engine.snapshots_in_use()?))
}

/// docker's STATUS column.
pub fn status_text(r: &ContainerRow) -> String {
    match (r.state.as_str(), r.exit_code) {
        ("exited", Some(c)) => format!("Exited ({c})"),
        ("exited", None) => "Exited (unknown)".into(),
        ("running", _) => "Up".into(),
        ("paused", _) => "Up (Paused)".into(),
        ("restarting", _) => "Restarting".into(),
        ("created", _) => "Created".into(),
        (s, _) => s.to_string(),
    }
}

fn matches_filter(engine: &Engine, r: &ContainerRow, f: &str) -> anyhow::Result<bool> {
    let (k, v) = f.split_once('=').ok_or_else(|| anyhow!("--filter {f:?}: expected KEY=VALUE"))?;
    Ok(match k {
        "id" => r.id.starts_with(v),
        "name" => r.name.contains(v),
        "status" => r.state == v,
        "ancestor" => {
            r.image == v || r.image.starts_with(&format!("{v}:")) || r.image_id.contains(v) || r.image.ends_with(&format!("/{v}:latest"))
        }
        "label" => {
            let labels = engine.settings(r)?.labels;
            match v.split_once('=') {
                Some((lk, lv)) => labels.get(lk).is_some_and(|x| x == lv),
                None => labels.contains_key(v),
            }
        }
        other => bail!("--filter {other:?}: supported are id, name, status, label, ancestor"),
    })
}

/// `ps`.
pub fn ps(ctx: &Context, a: PsArgs) -> anyhow::Result<()> {
    let engine = engine(ctx)?;
    let mut rows = Vec::new();
    for r in engine.containers()? {
        let shown = a.all || r.state == "running" || r.state == "paused" || r.state == "restarting";
        let mut ok = shown;
        for f in &a.filter {
            ok = ok && matches_filter(&engine, &r, f)?;
        }
        if ok {
            rows.push(r);
        }
    }
    let id = |r: &ContainerRow| if a.no_trunc { r.id.clone() } else { r.id.get(..12).unwrap_or(&r.id).to_string() };
    if a.quiet {
        for r in &rows {
            println!("{}", id(r));
        }
        return Ok(());
    }
    match a.format.as_deref() {
        Some("json") => {
            let list: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| {
                    serde_json::json!({"Id": r.id, "Names": [r.name], "Image": r.image, "ImageID": r.image_id,
                        "Created": r.created, "State": r.state, "Status": status_text(r), "ExitCode": r.exit_code,
                        "Command": engine.settings(r).map(|s| s.command).unwrap_or_default(),
                        "Labels": engine.settings(r).map(|s| s.labels).unwrap_or_default()})
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&list)?);
        }
        Some(template) => {
            for r in &rows {
                let cmd = engine.settings(r).map(|s| s.command.join(" ")).unwrap_or_default();
                let line = template
                    .replace("\\t", "\t")
                    .replace("{{.ID}}", &id(r))
                    .replace("{{.Names}}", &r.name)
                    .replace("{{.Image}}", &r.image)
                    .replace("{{.Status}}", &status_text(r))
                    .replace("{{.State}}", &r.state)
                    .replace("{{.Command}}", &cmd)
                    .replace("{{.CreatedAt}}", &r.created);
                println!("{line}");
            }
        }
        None => {
            println!("{:<14}{:<32}{:<24}{:<32}{:<20}NAMES", "CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS");
            for r in &rows {
                let mut cmd = engine.settings(r).map(|s| s.command.join(" ")).unwrap_or_default();
                if cmd.len() > 20 && !a.no_trunc {
                    cmd = format!("{}…", cmd.chars().take(19).collect::<String>());
                }
                println!("{:<14}{:<32}{:<24}{:<32}{:<20}{}", id(r), r.image, format!("\"{cmd}\""), r.created, status_text(r), r.name);
            }
        }
    }
    Ok(())
}

/// `rm`.
pub fn rm(ctx: &Context, a: RmArgs) -> anyhow::Result<()> {
    let engine = engine(ctx)?;
    each(&a.containers, |c| engine.remove(c, a.force, a.volumes).map_err(Into::into))
}
