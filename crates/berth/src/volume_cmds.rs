//! Volume commands: `volume create|ls|rm|inspect|prune` (docker's flags and output).

use anyhow::bail;
use berth_engine::VolumeInfo;
use clap::{Args, Subcommand};
use serde_json::json;

use crate::container_cmds::engine;
use crate::context::Context;

/// `berth volume …`
#[derive(Subcommand, Debug)]
pub enum VolumeCommand {
    /// Create a volume (a random name when none is given).
    Create(CreateArgs),
    /// List volumes.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Remove volumes (refused for volumes containers use, unless --force).
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Show volumes as JSON.
    Inspect(InspectArgs),
    /// Remove the volumes no container uses (anonymous ones only, unless --all).
    Prune(PruneArgs),
}

/// `volume create`
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Label: KEY=VALUE.
    #[arg(short, long)]
    label: Vec<String>,
    /// The volume's name.
    name: Option<String>,
}

/// `volume ls`
#[derive(Args, Debug)]
pub struct LsArgs {
    /// Only names.
    #[arg(short, long)]
    quiet: bool,
    /// Filter: dangling=true|false, name=SUBSTRING, label=KEY[=VALUE] (all must match).
    #[arg(short, long)]
    filter: Vec<String>,
}

/// Whether a volume passes every `--filter` of `volume ls`.
fn matches(v: &VolumeInfo, filters: &[String]) -> anyhow::Result<bool> {
    for f in filters {
        let ok = match f.split_once('=') {
            Some(("dangling", "true" | "1")) => v.containers.is_empty(),
            Some(("dangling", "false" | "0")) => !v.containers.is_empty(),
            Some(("name", n)) => v.name.contains(n),
            Some(("label", l)) => match l.split_once('=') {
                Some((k, val)) => v.labels.get(k).is_some_and(|x| x == val),
                None => v.labels.contains_key(l),
            },
            _ => bail!("--filter {f:?}: expected dangling=true|false, name=… or label=…"),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `volume rm`
#[derive(Args, Debug)]
pub struct RmArgs {
    /// Remove the containers that use the volumes first.
    #[arg(short, long)]
    force: bool,
    /// Volume names.
    #[arg(required = true)]
    volumes: Vec<String>,
}

/// `volume inspect`
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Volume names.
    #[arg(required = true)]
    volumes: Vec<String>,
}

/// `volume prune`
#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Named volumes too, not only anonymous ones.
    #[arg(short, long)]
    all: bool,
    /// Do not ask (berth never asks; accepted for docker's scripts).
    #[arg(short, long)]
    force: bool,
}

/// Run a `volume` subcommand.
pub fn volume(ctx: &Context, cmd: VolumeCommand) -> anyhow::Result<()> {
    let engine = engine(ctx)?;
    match cmd {
        VolumeCommand::Create(a) => {
            let mut labels = std::collections::BTreeMap::new();
            for l in &a.label {
                let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
                if k.is_empty() {
                    bail!("--label {l:?}: expected KEY=VALUE");
                }
                labels.insert(k.to_string(), v.to_string());
            }
            println!("{}", engine.create_volume(a.name.as_deref(), &labels)?);
        }
        VolumeCommand::Ls(a) => {
            let mut volumes = Vec::new();
            for v in engine.volumes()? {
                if matches(&v, &a.filter)? {
                    volumes.push(v);
                }
            }
            if !a.quiet {
                println!("DRIVER    VOLUME NAME");
            }
            for v in volumes {
                if a.quiet {
                    println!("{}", v.name);
                } else {
                    println!("{:<10}{}", "local", v.name);
                }
            }
        }
        VolumeCommand::Rm(a) => {
            let mut failed = 0;
            for name in &a.volumes {
                match engine.remove_volume(name, a.force) {
                    Ok(()) => println!("{name}"),
                    Err(e) => {
                        eprintln!("Error: {e}");
                        failed += 1;
                    }
                }
            }
            if failed > 0 {
                bail!("{failed} of {} volumes could not be removed", a.volumes.len());
            }
        }
        VolumeCommand::Inspect(a) => {
            let infos = a.volumes.iter().map(|n| engine.inspect_volume(n)).collect::<Result<Vec<_>, _>>()?;
            println!("{}", serde_json::to_string_pretty(&infos.iter().map(inspect_json).collect::<Vec<_>>())?);
        }
        VolumeCommand::Prune(a) => {
            let removed = engine.prune_volumes(a.all)?;
            if !removed.is_empty() {
                println!("Deleted Volumes:");
                for n in &removed {
                    println!("{n}");
                }
            }
        }
    }
    Ok(())
}

/// docker's `volume inspect` document (plus the containers using it).
fn inspect_json(v: &VolumeInfo) -> serde_json::Value {
    json!({
        "CreatedAt": v.created,
        "Driver": "local",
        "Labels": v.labels,
        "Mountpoint": v.mountpoint,
        "Name": v.name,
        "Options": {},
        "Scope": "local",
        "Anonymous": v.anonymous,
        "Containers": v.containers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_ls_filters_like_docker() {
        let v = VolumeInfo {
            name: "web-data".into(),
            created: String::new(),
            anonymous: false,
            labels: [("team".to_string(), "infra".to_string())].into(),
            mountpoint: "/x".into(),
            containers: vec![],
        };
        let f = |fs: &[&str]| matches(&v, &fs.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(f(&["dangling=true", "name=data", "label=team", "label=team=infra"]).unwrap());
        assert!(!f(&["dangling=false"]).unwrap());
        assert!(!f(&["label=team=web"]).unwrap());
        assert!(f(&["colour=red"]).unwrap_err().to_string().starts_with("--filter"));
    }
}
