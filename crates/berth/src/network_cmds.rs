//! `berth network create|ls|rm|inspect|connect|disconnect|prune` and `berth port` (berth-net
//! does the work through the engine; this parses and prints).

use anyhow::{anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::json;

use crate::container_cmds::engine;
use crate::context::Context;

/// `berth network …`
#[derive(Subcommand, Debug)]
pub enum NetworkCommand {
    /// Create a bridge network.
    Create(CreateArgs),
    /// List networks.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Remove networks.
    #[command(alias = "remove")]
    Rm(NamesArgs),
    /// Show networks and their containers as JSON.
    Inspect(NamesArgs),
    /// Connect a running container to a network.
    Connect(ConnectArgs),
    /// Disconnect a container from a network.
    Disconnect(DisconnectArgs),
    /// Remove every network without containers.
    Prune(PruneArgs),
    /// (internal) Delete bridges left without containers, after a delay.
    #[command(hide = true)]
    Reap(ReapArgs),
}

/// Flags of the internal `network reap`.
#[derive(Args, Debug)]
pub struct ReapArgs {
    /// Wait this long first; bridges idle for less are kept.
    #[arg(long = "after-ms", default_value_t = 1000)]
    after_ms: u64,
    /// The bridges that became idle (deleted if unused even when the root is gone).
    bridges: Vec<String>,
}

/// `network reap`: run by the engine in the background when a network's last container left.
/// It holds the root's reaper lock while it waits, so that one reaper serves a stream of
/// containers, and exits once no network is idle (or the root is gone).
fn reap(ctx: &Context, a: ReapArgs) -> anyhow::Result<()> {
    let idle = std::time::Duration::from_millis(a.after_ms);
    let root = ctx.root();
    // The root thrown away (a test's scratch root): nobody can join these any more.
    let orphaned = |bridges: &[String]| -> anyhow::Result<()> {
        let mut host = berth_net::netlink::RouteSocket::open()?;
        for b in bridges {
            berth_net::bridge::delete_bridge_if_unused(&mut host, b)?;
        }
        berth_net::nft::delete(&berth_net::nft::table_for(root))?;
        Ok(())
    };
    let mut known = a.bridges.clone();
    if !root.join("berth.db").exists() {
        std::thread::sleep(idle);
        return orphaned(&known);
    }
    let Some(lock) = berth_net::networks::try_reaper_lock(root)? else { return Ok(()) };
    // A port of a dying namespace can hold a bridge a little longer; a stream of containers
    // keeps a network busy: give up after a minute, the next idle network starts a reaper.
    for _ in 0..60 {
        std::thread::sleep(idle);
        if !root.join("berth.db").exists() {
            return orphaned(&known);
        }
        let mut nets = berth_net::Networks::open(root)?;
        known.extend(nets.idle_bridges()?);
        known.sort();
        known.dedup();
        let (_, busy) = nets.reap_idle_bridges(idle)?;
        if busy.is_empty() && nets.idle_bridges()?.is_empty() {
            drop(lock);
            // An idle mark made while this reaper was leaving found the lock taken.
            if !nets.idle_bridges()?.is_empty() {
                if let Some(_again) = berth_net::networks::try_reaper_lock(root)? {
                    std::thread::sleep(idle);
                    nets.reap_idle_bridges(idle)?;
                }
            }
            return Ok(());
        }
    }
    Ok(())
}

/// Flags of `network create`.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Driver (bridge only).
    #[arg(short, long, default_value = "bridge")]
    driver: String,
    /// Subnet in CIDR form (default: a free 10.89.N.0/24).
    #[arg(long)]
    subnet: Option<String>,
    /// Gateway (default: the subnet's first address).
    #[arg(long)]
    gateway: Option<String>,
    /// No outside connectivity.
    #[arg(long)]
    internal: bool,
    /// Bridge interface name (default berthN).
    #[arg(long = "interface-name", alias = "bridge")]
    interface_name: Option<String>,
    /// MTU (default: that of the host's default route's interface).
    #[arg(long)]
    mtu: Option<u32>,
    /// Name.
    name: String,
}

/// Flags of `network ls`.
#[derive(Args, Debug)]
pub struct LsArgs {
    /// Only names.
    #[arg(short, long)]
    quiet: bool,
}

/// Network names.
#[derive(Args, Debug)]
pub struct NamesArgs {
    /// Remove containers' endpoints first (rm only).
    #[arg(short, long)]
    force: bool,
    /// Networks (names or ids).
    #[arg(required = true)]
    networks: Vec<String>,
}

/// Flags of `network connect`.
#[derive(Args, Debug)]
pub struct ConnectArgs {
    /// IPv4 address on the network.
    #[arg(long)]
    ip: Option<String>,
    /// Network.
    network: String,
    /// Container.
    container: String,
}

/// Flags of `network disconnect`.
#[derive(Args, Debug)]
pub struct DisconnectArgs {
    /// Network.
    network: String,
    /// Container.
    container: String,
}

/// Flags of `network prune`.
#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Do not ask (berth never asks).
    #[arg(short, long)]
    force: bool,
}

/// Flags of `port`.
#[derive(Args, Debug)]
pub struct PortArgs {
    /// Container.
    container: String,
    /// Only this container port (PORT[/PROTO]).
    port: Option<String>,
}

/// Run a `network` subcommand.
pub fn network(ctx: &Context, cmd: NetworkCommand) -> anyhow::Result<()> {
    let cmd = match cmd {
        NetworkCommand::Reap(a) => return reap(ctx, a),
        cmd => cmd,
    };
    let engine = engine(ctx)?;
    // What a killed berth left behind is released first (cheap: a query and a state read per
    // attached container).
    engine.reconcile_networks()?;
    match cmd {
        NetworkCommand::Create(a) => {
            if a.driver != "bridge" {
                bail!("network driver {:?} is not supported (bridge only)", a.driver);
            }
            let spec = berth_net::NetworkSpec {
                name: a.name,
                subnet: a.subnet.as_deref().map(str::parse).transpose()?,
                gateway: a
                    .gateway
                    .as_deref()
                    .map(|g| g.parse().map_err(|_| anyhow!("--gateway {g:?}: not an IPv4 address")))
                    .transpose()?,
                bridge: a.interface_name,
                internal: a.internal,
                mtu: a.mtu,
            };
            let n = engine.networks()?.create(&spec)?;
            println!("{}", n.name);
        }
        NetworkCommand::Ls(a) => {
            let nets = engine.networks()?.list()?;
            if a.quiet {
                nets.iter().for_each(|n| println!("{}", n.name));
                return Ok(());
            }
            println!("{:<14}{:<24}{:<10}{:<20}{:<16}INTERNAL", "NETWORK ID", "NAME", "DRIVER", "SUBNET", "BRIDGE");
            for n in nets {
                println!("{:<14}{:<24}{:<10}{:<20}{:<16}{}", &n.id[..12], n.name, n.driver, n.subnet.to_string(), n.bridge, n.internal);
            }
        }
        NetworkCommand::Rm(a) => {
            let mut nets = engine.networks()?;
            let mut failed = 0;
            for name in &a.networks {
                if a.force {
                    if let Ok((n, eps)) = nets.inspect(name) {
                        for ep in eps {
                            engine.disconnect_network(&n.name, &ep.container)?;
                        }
                    }
                }
                match nets.remove(name) {
                    Ok(n) => println!("{n}"),
                    Err(e) => {
                        eprintln!("Error: {e}");
                        failed += 1;
                    }
                }
            }
            if failed > 0 {
                bail!("{failed} of {} networks could not be removed", a.networks.len());
            }
        }
        NetworkCommand::Inspect(a) => {
            let nets = engine.networks()?;
            let containers = engine.containers()?;
            let mut out = Vec::new();
            for name in &a.networks {
                let (n, eps) = nets.inspect(name)?;
                let eps: serde_json::Map<String, serde_json::Value> = eps
                    .iter()
                    .map(|e| {
                        let cname = containers.iter().find(|c| c.id == e.container).map(|c| c.name.clone()).unwrap_or_default();
                        (e.container.clone(), json!({"name": cname, "ipv4_address": format!("{}/{}", e.ip, n.subnet.prefix), "interface": e.ifname, "host_interface": e.host_ifname}))
                    })
                    .collect();
                out.push(json!({
                    "name": n.name, "id": n.id, "driver": n.driver, "network_interface": n.bridge,
                    "subnets": [{"subnet": n.subnet.to_string(), "gateway": n.gateway}],
                    "internal": n.internal, "mtu": n.mtu, "created": n.created, "containers": eps,
                }));
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        NetworkCommand::Connect(a) => {
            let ip = a.ip.as_deref().map(|ip| ip.parse().map_err(|_| anyhow!("--ip {ip:?}: not an IPv4 address"))).transpose()?;
            engine.connect_network(&a.network, &a.container, ip)?;
        }
        NetworkCommand::Disconnect(a) => engine.disconnect_network(&a.network, &a.container)?,
        NetworkCommand::Reap(_) => {}
        NetworkCommand::Prune(_) => {
            for n in engine.networks()?.prune()? {
                println!("{n}");
            }
        }
    }
    Ok(())
}

/// `port CONTAINER [PORT[/PROTO]]`: `80/tcp -> 0.0.0.0:8080`, as docker prints.
pub fn port(ctx: &Context, a: PortArgs) -> anyhow::Result<()> {
    let engine = engine(ctx)?;
    let filter = a.port.as_deref().map(|p| {
        let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
        (port.to_string(), proto.to_string())
    });
    let mut any = false;
    for m in engine.published_ports(&a.container)? {
        if let Some((port, proto)) = &filter {
            if *port != m.container_port.to_string() || proto != m.protocol.as_str() {
                continue;
            }
            println!("{}:{}", m.host_ip, m.host_port);
        } else {
            println!("{}/{} -> {}:{}", m.container_port, m.protocol.as_str(), m.host_ip, m.host_port);
        }
        any = true;
    }
    if !any && filter.is_some() {
        bail!("no public port {} published for {}", a.port.unwrap_or_default(), a.container);
    }
    Ok(())
}
