//! Container commands: `run`, `ps`, `rm` (the engine does the work; this parses and prints).

use std::path::{Path, PathBuf};

use anyhow::bail;
use berth_engine::Engine;
use clap::Args;

use crate::context::Context;

/// Flags of `run`.
#[derive(Args, Debug)]
#[command(trailing_var_arg = true)]
pub struct RunArgs {
    /// Remove the container when it exits.
    #[arg(long)]
    rm: bool,
    /// Container name.
    #[arg(long)]
    name: Option<String>,
    /// Flags that shape the spec.
    #[command(flatten)]
    spec: crate::run_flags::SpecFlags,
    /// Allocate a terminal (not yet: containers run with the caller's stdio).
    #[arg(short, long)]
    tty: bool,
    /// Keep stdin open (stdin is always the caller's for foreground runs).
    #[arg(short, long)]
    interactive: bool,
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
}

/// Flags of `rm`.
#[derive(Args, Debug)]
pub struct RmArgs {
    /// Remove running containers too.
    #[arg(short, long)]
    force: bool,
    /// Containers (names or ids).
    #[arg(required = true)]
    containers: Vec<String>,
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

/// `run`: create the container and run it in the foreground; returns its exit code.
pub fn run(ctx: &Context, a: RunArgs) -> anyhow::Result<i32> {
    berth_engine::seal_binary()?;
    if a.tty {
        bail!("run --tty is not supported yet by the engine (use berth-runtime with a console socket)");
    }
    let opts = a.spec.to_options(a.command, false)?;
    let engine = engine(ctx)?;
    let image = crate::image_cmds::image_arg(ctx, &a.image)?;
    let id = engine.create(&image, a.name.as_deref(), &opts, a.rm)?;
    match engine.run_foreground(&id) {
        Ok(code) => Ok(code),
        // docker's codes: 127 the command was not found, 126 it could not be invoked.
        Err(e) => {
            let msg = e.to_string();
            // berth-runtime spells errno like runc ("no such file or directory"), as docker matches.
            let code = if msg.contains("executable file not found") || msg.to_lowercase().contains("no such file or directory") {
                127
            } else if msg.contains("ermission denied") {
                126
            } else {
                return Err(e.into());
            };
            eprintln!("Error: {msg}");
            Ok(code)
        }
    }
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

/// `ps`.
pub fn ps(ctx: &Context, a: PsArgs) -> anyhow::Result<()> {
    let rows = engine(ctx)?.containers()?;
    let rows: Vec<_> = rows.into_iter().filter(|r| a.all || r.state == "running").collect();
    if a.quiet {
        for r in rows {
            println!("{}", r.id.get(..12).unwrap_or(&r.id));
        }
        return Ok(());
    }
    println!("{:<14}{:<40}{:<32}{:<20}{}", "CONTAINER ID", "IMAGE", "CREATED", "STATUS", "NAMES");
    for r in rows {
        let status = match (r.state.as_str(), r.exit_code) {
            ("exited", Some(c)) => format!("Exited ({c})"),
            (s, _) => s.to_string(),
        };
        println!("{:<14}{:<40}{:<32}{:<20}{}", r.id.get(..12).unwrap_or(&r.id), r.image, r.created, status, r.name);
    }
    Ok(())
}

/// `rm`.
pub fn rm(ctx: &Context, a: RmArgs) -> anyhow::Result<()> {
    let engine = engine(ctx)?;
    let mut failed = 0;
    for c in &a.containers {
        match engine.remove(c, a.force) {
            Ok(()) => println!("{c}"),
            Err(e) => {
                eprintln!("Error: {c}: {e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} containers could not be removed", a.containers.len());
    }
    Ok(())
}
