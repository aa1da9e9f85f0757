//! Container commands: `run`, `ps`, `rm` (the engine does the work; this parses and prints).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail};
use berth_engine::{ContainerOptions, Engine, NetworkMode};
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
    /// Set an environment variable (KEY=VALUE).
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short, long)]
    workdir: Option<String>,
    /// User (name|uid[:group|gid]).
    #[arg(short, long)]
    user: Option<String>,
    /// Override the image's entrypoint.
    #[arg(long)]
    entrypoint: Option<String>,
    /// Container hostname.
    #[arg(long)]
    hostname: Option<String>,
    /// Mount the root filesystem read-only.
    #[arg(long = "read-only")]
    read_only: bool,
    /// none or host.
    #[arg(long, default_value = "none")]
    network: String,
    /// Memory limit (e.g. 64m, 1g).
    #[arg(short, long)]
    memory: Option<String>,
    /// Maximum number of processes.
    #[arg(long = "pids-limit")]
    pids_limit: Option<i64>,
    /// CPUs (fractional).
    #[arg(long)]
    cpus: Option<f64>,
    /// seccomp=unconfined, no-new-privileges.
    #[arg(long = "security-opt")]
    security_opt: Vec<String>,
    /// All capabilities, all devices, no seccomp, no masked paths.
    #[arg(long)]
    privileged: bool,
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

fn engine(ctx: &Context) -> anyhow::Result<Engine> {
    let run_root = ctx.runroot().map(Path::to_path_buf).unwrap_or_else(run_root);
    Ok(Engine::open(ctx.root(), &run_root)?)
}

/// Parse a size like 512m, 1g, 1024 (bytes).
pub fn parse_size(s: &str) -> anyhow::Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    let (num, mult) = match t.trim_end_matches('b').chars().last() {
        Some('k') => (&t[..t.trim_end_matches('b').len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.trim_end_matches('b').len() - 1], 1 << 20),
        Some('g') => (&t[..t.trim_end_matches('b').len() - 1], 1 << 30),
        _ => (t.trim_end_matches('b'), 1),
    };
    let n: f64 = num.parse().map_err(|_| anyhow!("invalid size {s:?}"))?;
    if n <= 0.0 {
        bail!("invalid size {s:?}: must be positive");
    }
    Ok((n * mult as f64) as i64)
}

/// `run`: create the container and run it in the foreground; returns its exit code.
pub fn run(ctx: &Context, a: RunArgs) -> anyhow::Result<i32> {
    berth_engine::seal_binary()?;
    if a.tty {
        bail!("run --tty is not supported yet by the engine (use berth-runtime with a console socket)");
    }
    let network = match a.network.as_str() {
        "none" => NetworkMode::None,
        "host" => NetworkMode::Host,
        other => bail!("--network {other:?}: only none and host are supported yet"),
    };
    let mut opts = ContainerOptions {
        command: a.command,
        entrypoint: a.entrypoint,
        env: a.env,
        workdir: a.workdir,
        user: a.user,
        tty: false,
        hostname: a.hostname,
        read_only: a.read_only,
        network,
        memory: a.memory.as_deref().map(parse_size).transpose()?,
        pids_limit: a.pids_limit,
        cpus: a.cpus,
        privileged: a.privileged,
        ..Default::default()
    };
    for o in &a.security_opt {
        match o.as_str() {
            "seccomp=unconfined" => opts.seccomp_unconfined = true,
            "no-new-privileges" | "no-new-privileges=true" => opts.no_new_privileges = true,
            other => bail!("--security-opt {other:?} is not supported yet"),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_docker() {
        assert_eq!(parse_size("64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("512k").unwrap(), 512 << 10);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("2MB").unwrap(), 2 << 20);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("-1m").is_err());
    }
}
