//! `system info` (and `info`), `system prune`, `version`.

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::container_cmds::engine;
use crate::context::Context;
use crate::format::human_size;
use crate::inspect_cmds::render_template;

/// `berth system …`
#[derive(Subcommand, Debug)]
pub enum SystemCommand {
    /// Show the host, the engine's state and the runtime's features.
    Info(InfoArgs),
    /// Remove stopped containers, dangling image data and (with --volumes) unused anonymous volumes.
    Prune(PruneArgs),
}

/// Flags of `system info` and `info`.
#[derive(Args, Debug)]
pub struct InfoArgs {
    /// json, or a template like '{{.KernelVersion}}'.
    #[arg(short, long)]
    format: Option<String>,
}

/// Flags of `system prune`.
#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Do not ask (berth never asks; accepted for compatibility).
    #[arg(short, long)]
    force: bool,
    /// Remove anonymous volumes no container uses too.
    #[arg(long)]
    volumes: bool,
}

/// Flags of `version`.
#[derive(Args, Debug)]
pub struct VersionArgs {
    /// json, or a template like '{{.Client.Version}}'.
    #[arg(short, long)]
    format: Option<String>,
}

/// `system …`.
pub fn system(ctx: &Context, cmd: SystemCommand) -> anyhow::Result<()> {
    match cmd {
        SystemCommand::Info(a) => info(ctx, a),
        SystemCommand::Prune(a) => prune(ctx, a),
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// `system info`, `info`.
pub fn info(ctx: &Context, a: InfoArgs) -> anyhow::Result<()> {
    let info = engine(ctx)?.system_info()?;
    let v = serde_json::to_value(&info)?;
    match a.format.as_deref() {
        Some("json") => println!("{}", serde_json::to_string_pretty(&v)?),
        Some(t) => println!("{}", render_template(t, &v)),
        None => {
            let c = &info.containers;
            let f = &info.features;
            println!("Client:\n Version: {}", env!("CARGO_PKG_VERSION"));
            println!("\nServer:");
            println!(" Containers: {}\n  Running: {}\n  Paused: {}\n  Stopped: {}", c.total, c.running, c.paused, c.stopped);
            println!(" Images: {}\n Volumes: {}", info.images, info.volumes);
            println!(" Server Version: {}", info.server_version);
            println!(" Storage Driver: {}\n Root Dir: {}\n Run Root: {}", info.driver, info.root_dir.display(), info.run_root.display());
            println!(" Cgroup Version: {} ({})", info.cgroup_version, info.cgroup_layout);
            println!(" Cgroup Controllers: {}", info.cgroup_controllers.join(" "));
            println!(" Default Runtime: {}", info.default_runtime);
            println!(" Security Options:");
            for o in &info.security_options {
                println!("  {o}");
            }
            println!(" Kernel Features:");
            for (k, b) in [
                ("seccomp", f.seccomp),
                ("overlay", f.overlay),
                ("openat2", f.openat2),
                ("pidfd", f.pidfd),
                ("cgroup namespace", f.cgroup_namespace),
                ("user namespaces", f.user_namespaces),
                ("apparmor", f.apparmor),
                ("selinux", f.selinux),
            ] {
                println!("  {k}: {}", yes_no(b));
            }
            println!(
                " Kernel Version: {}\n Operating System: {}\n OSType: {}\n Architecture: {}",
                info.kernel_version, info.operating_system, info.os_type, info.architecture
            );
            println!(
                " CPUs: {}\n Total Memory: {}\n Name: {}\n Rootless: {}",
                info.ncpu,
                human_size(info.mem_total),
                info.name,
                info.rootless
            );
        }
    }
    Ok(())
}

/// `system prune`.
pub fn prune(ctx: &Context, a: PruneArgs) -> anyhow::Result<()> {
    let _ = a.force;
    let report = engine(ctx)?.prune_system(a.volumes, false)?;
    if !report.containers.is_empty() {
        println!("Deleted Containers:");
        for c in &report.containers {
            println!("{c}");
        }
        println!();
    }
    if !report.volumes.is_empty() {
        println!("Deleted Volumes:");
        for v in &report.volumes {
            println!("{v}");
        }
        println!();
    }
    if !report.blobs.is_empty() || !report.snapshots.is_empty() {
        println!("Deleted Images:");
        for b in &report.blobs {
            println!("deleted: {b}");
        }
        for s in &report.snapshots {
            println!("deleted snapshot: {s}");
        }
        println!();
    }
    println!("Total reclaimed space: {}", human_size(report.reclaimed));
    Ok(())
}

/// docker's names for architectures (GOARCH).
fn go_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// `version`: no engine state is opened (it works before anything exists).
pub fn version(a: VersionArgs) -> anyhow::Result<()> {
    let version = env!("CARGO_PKG_VERSION");
    let os_arch = format!("{}/{}", std::env::consts::OS, go_arch(std::env::consts::ARCH));
    let runtime = berth_engine::system::runtime_description();
    let kernel = berth_engine::system::kernel_release();
    let v: Value = json!({
        "Client": {"Version": version, "Os": std::env::consts::OS, "Arch": go_arch(std::env::consts::ARCH)},
        "Server": {"Version": version, "Os": std::env::consts::OS, "Arch": go_arch(std::env::consts::ARCH),
                   "KernelVersion": kernel, "Runtime": runtime},
    });
    match a.format.as_deref() {
        Some("json") => println!("{}", serde_json::to_string_pretty(&v)?),
        Some(t) => println!("{}", render_template(t, &v)),
        None => {
            println!("Client:\n Version:\t{version}\n OS/Arch:\t{os_arch}\n");
            println!("Engine:\n Version:\t{version}\n OS/Arch:\t{os_arch}\n Kernel:\t{kernel}\n Runtime:\t{runtime}");
        }
    }
    Ok(())
}
