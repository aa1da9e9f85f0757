//! The bridge driver: a container joins a network through a veth pair whose host end is
//! enslaved to the network's bridge; it leaves by the deletion of that veth. The bridge
//! exists while at least one container is on it; the nftables table while at least one
//! container is on any network.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::etc::{self, HostEntry};
use crate::netlink::{self, RouteSocket, VethPair};
use crate::networks::{Networks, DEFAULT_NETWORK};
use crate::nft::{self, ActiveNetwork, ActivePort};
use crate::ports::PortMapping;
use crate::state::{ContainerNames, Endpoint, NetworkRecord};

/// What the engine asks for when a container joins a network.
#[derive(Debug, Clone)]
pub struct AttachRequest {
    /// Container id (64 hex).
    pub container: String,
    /// Container name (resolvable by its peers).
    pub name: String,
    /// Its hostname.
    pub hostname: String,
    /// Its network namespace (`/proc/<pid>/ns/net`).
    pub netns: PathBuf,
    /// The network (name or id).
    pub network: String,
    /// `--ip`.
    pub ip: Option<Ipv4Addr>,
    /// `-p` (host port 0: chosen now).
    pub ports: Vec<PortMapping>,
    /// The engine-owned file bind-mounted on its /etc/hosts.
    pub hosts_file: PathBuf,
    /// `--add-host`.
    pub extra_hosts: Vec<HostEntry>,
}

/// What the container got.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// Its network.
    pub network: NetworkRecord,
    /// Its address and interfaces.
    pub endpoint: Endpoint,
    /// Its published ports, host ports resolved.
    pub ports: Vec<PortMapping>,
}

/// The host end of a container's veth on a network: `bv` + 8 hex of the id + 4 of the
/// network name's hash (14 bytes; IFNAMSIZ is 16 with the NUL).
fn host_ifname(container: &str, network: &str) -> String {
    let h = network.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("bv{}{:04x}", container.get(..8).unwrap_or(container), h & 0xffff)
}

/// Delete a bridge unless something is still enslaved to it (the veth of a container whose
/// namespace the kernel has not torn down yet, a container of another root using the same
/// user-chosen bridge name, a port added by hand): the kernel's view, not the database's,
/// decides. Whether it was deleted.
pub fn delete_bridge_if_unused(host: &mut RouteSocket, bridge: &str) -> Result<bool> {
    let dir = format!("/sys/class/net/{bridge}");
    if !std::path::Path::new(&dir).exists() {
        return Ok(false);
    }
    let ports = std::fs::read_dir(format!("{dir}/brif")).map(|d| d.count()).unwrap_or(0);
    if ports > 0 {
        return Ok(false);
    }
    host.delete_link(bridge)?;
    Ok(true)
}

/// `net_meta` key of the last ruleset sent to nftables.
const APPLIED_RULESET: &str = "applied-ruleset";

/// Delete a bridge of a network without containers, first the veths of containers that are
/// gone which the kernel has not removed yet (explicit commands: they may take the time).
pub(crate) fn delete_bridge_and_stale_veths(host: &mut RouteSocket, bridge: &str) -> Result<bool> {
    let ports: Vec<String> = std::fs::read_dir(format!("/sys/class/net/{bridge}/brif"))
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    for p in ports.iter().filter(|p| p.starts_with("bv")) {
        host.delete_link(p)?;
    }
    delete_bridge_if_unused(host, bridge)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn write_sysctl(path: &str, value: &str) -> Result<()> {
    match std::fs::read_to_string(path) {
        Ok(v) if v.trim() == value => Ok(()),
        _ => std::fs::write(path, value).map_err(|source| Error::Io { context: format!("write {path}"), source }),
    }
}

impl Networks {
    /// Join a container to a network: address, veth, routes, rules, hosts files. On failure
    /// nothing of it is left.
    pub fn attach(&mut self, req: &AttachRequest) -> Result<Attachment> {
        let net = self.get(&req.network)?;
        let mut ports = req.ports.clone();
        for p in &mut ports {
            p.claim_host_port()?;
        }
        let _lock = self.lock()?;
        self.state.upsert_container(&ContainerNames {
            container: req.container.clone(),
            name: req.name.clone(),
            hostname: req.hostname.clone(),
            hosts_file: req.hosts_file.to_string_lossy().into_owned(),
            extra_hosts: etc::encode_entries(&req.extra_hosts),
        })?;
        let endpoint = self.state.reserve(&net, &req.container, req.ip, &host_ifname(&req.container, &net.name), &ports)?;
        match self.plumb(&net, &endpoint, req) {
            Ok(()) => Ok(Attachment { network: net, endpoint, ports }),
            Err(e) => {
                if let Err(e2) = self.unplumb(&endpoint, false) {
                    tracing::warn!("network {}: undoing a failed attach: {e2}", net.name);
                }
                Err(e)
            }
        }
    }

    fn plumb(&mut self, net: &NetworkRecord, ep: &Endpoint, req: &AttachRequest) -> Result<()> {
        let t = std::time::Instant::now();
        let mut host = RouteSocket::open()?;
        let bridge_index = match netlink::host_link_index(&net.bridge) {
            Some(i) => {
                host.set_up(i)?;
                i
            }
            None => host.create_bridge(&net.bridge, net.mtu)?,
        };
        host.add_address(bridge_index, net.gateway, net.subnet.prefix)?;
        // The host's own 127.0.0.1 reaches published ports through this bridge (see nft.rs).
        write_sysctl(&format!("/proc/sys/net/ipv4/conf/{}/route_localnet", net.bridge), "1")?;
        if !net.internal {
            write_sysctl("/proc/sys/net/ipv4/ip_forward", "1")?;
        }
        tracing::debug!("network {}: bridge {} ready at {:?}", net.name, net.bridge, t.elapsed());
        let ns = netlink::open_netns(&req.netns)?;
        host.create_veth(&VethPair {
            host_name: &ep.host_ifname,
            peer_name: &ep.ifname,
            peer_netns: netlink::raw(&ns),
            bridge_index,
            mtu: net.mtu,
        })?;
        tracing::debug!("network {}: veth {} at {:?}", net.name, ep.host_ifname, t.elapsed());
        let mut inner = RouteSocket::in_netns(&req.netns)?;
        tracing::debug!("network {}: socket in the container's namespace at {:?}", net.name, t.elapsed());
        let lo = inner.link_index("lo")?.ok_or_else(|| Error::Invalid("the container has no loopback".into()))?;
        inner.set_up(lo)?;
        tracing::debug!("network {}: lo up at {:?}", net.name, t.elapsed());
        let eth = inner.link_index(&ep.ifname)?.ok_or_else(|| Error::Invalid(format!("{} vanished from the container", ep.ifname)))?;
        inner.add_address(eth, ep.ip, net.subnet.prefix)?;
        tracing::debug!("network {}: address at {:?}", net.name, t.elapsed());
        inner.set_up(eth)?;
        tracing::debug!("network {}: {} up at {:?}", net.name, ep.ifname, t.elapsed());
        if ep.ifname == "eth0" {
            inner.add_default_route(net.gateway)?;
        }
        tracing::debug!("network {}: {} configured at {:?}", net.name, ep.ifname, t.elapsed());
        self.apply_rules()?;
        tracing::debug!("network {}: nftables at {:?}", net.name, t.elapsed());
        self.refresh_hosts(&net.name, Some(&req.container))
    }

    /// Undo an endpoint: veth (unless `gone`: the kernel deletes it with the container's
    /// namespace, off our critical path — a link deletion costs 20–80 ms of RCU grace
    /// periods here), reservation, rules, the peers' hosts files. Returns the bridge when
    /// the network became empty: it is marked idle, and removed later by `reap_idle_bridges`.
    fn unplumb(&mut self, ep: &Endpoint, gone: bool) -> Result<Option<String>> {
        if !gone {
            RouteSocket::open()?.delete_link(&ep.host_ifname)?;
        }
        let t = std::time::Instant::now();
        self.state.release(&ep.network, &ep.container)?;
        tracing::debug!("network {}: released {} at {:?}", ep.network, ep.ip, t.elapsed());
        let empty = self.state.endpoints_on(&ep.network)?.is_empty();
        if empty {
            // Idle before the rules are rebuilt: its rules stay with its bridge.
            self.state.set_idle_since(&ep.network, Some(now_ms()))?;
        }
        self.apply_rules()?;
        tracing::debug!("network {}: nftables at {:?}", ep.network, t.elapsed());
        if empty {
            return Ok(self.state.network(&ep.network)?.map(|n| n.bridge));
        }
        self.refresh_hosts(&ep.network, None)?;
        Ok(None)
    }

    /// Take a container off one network (or all): idempotent. `gone`: its namespace is gone
    /// or going (it exited or was killed), so its veths need no deletion. Returns the bridges
    /// left without containers (see `reap_idle_bridges`).
    pub fn detach(&mut self, container: &str, network: Option<&str>, gone: bool) -> Result<Vec<String>> {
        let net = network.map(|n| self.get(n)).transpose()?;
        let _lock = self.lock()?;
        let eps = self.state.endpoints_of(container)?;
        let eps: Vec<Endpoint> = eps
            .into_iter()
            .filter(|e| match &net {
                Some(n) => n.name == e.network,
                None => true,
            })
            .collect();
        if let (Some(n), true) = (&net, eps.is_empty()) {
            return Err(Error::Invalid(format!(
                "container {} is not connected to network {}",
                container.get(..12).unwrap_or(container),
                n.name
            )));
        }
        let mut idle = Vec::new();
        for ep in &eps {
            idle.extend(self.unplumb(ep, gone)?);
        }
        if network.is_some() {
            // The container stays on its other networks: its own hosts file loses this one.
            if let Some(first) = self.state.endpoints_of(container)?.first() {
                let first = first.network.clone();
                self.refresh_hosts(&first, Some(container))?;
            }
        }
        Ok(idle)
    }

    /// Delete the bridges of networks that have had no container for `idle_for` (and have
    /// no port in the kernel's view), and the nftables table once no network has any. Run by
    /// a helper process after the last container of a network left, so that sequential
    /// `run --rm` keep their bridge and hooks and never wait for a deletion. Returns the
    /// bridges deleted and those still busy (a dying namespace still holds a port: try again).
    pub fn reap_idle_bridges(&mut self, idle_for: std::time::Duration) -> Result<(Vec<String>, Vec<String>)> {
        let _lock = self.lock()?;
        let mut host = RouteSocket::open()?;
        let (mut deleted, mut busy) = (Vec::new(), Vec::new());
        for n in self.state.networks()? {
            let Some(since) = self.state.idle_since(&n.name)? else { continue };
            if now_ms() - since < idle_for.as_millis() as i64 || !self.state.endpoints_on(&n.name)?.is_empty() {
                continue;
            }
            if delete_bridge_if_unused(&mut host, &n.bridge)? {
                deleted.push(n.bridge.clone());
            } else if std::path::Path::new(&format!("/sys/class/net/{}", n.bridge)).exists() {
                busy.push(n.bridge.clone());
                continue;
            }
            self.state.set_idle_since(&n.name, None)?;
        }
        if self.state.endpoints()?.is_empty() {
            self.delete_rules()?;
        } else {
            self.apply_rules()?;
        }
        Ok((deleted, busy))
    }

    /// Release what containers that are gone (crashed `berth`, killed monitor) still hold;
    /// `alive` says whether a container id still runs. Returns the containers released.
    pub fn reconcile(&mut self, alive: &dyn Fn(&str) -> bool) -> Result<Vec<String>> {
        let mut dead: Vec<String> = self.state.endpoints()?.into_iter().map(|e| e.container).filter(|c| !alive(c)).collect();
        dead.sort();
        dead.dedup();
        for c in &dead {
            tracing::info!("network: releasing the addresses of container {c}, which is gone");
            self.detach(c, None, true)?;
        }
        Ok(dead)
    }

    /// Rebuild berth's nftables table from the database, and delete bridges without
    /// containers now (explicit network commands; what a crash may leave).
    pub fn sync_host(&mut self) -> Result<()> {
        let _lock = self.lock()?;
        let mut host = RouteSocket::open()?;
        for n in self.state.networks()? {
            if self.state.endpoints_on(&n.name)?.is_empty() {
                delete_bridge_and_stale_veths(&mut host, &n.bridge)?;
                self.state.set_idle_since(&n.name, None)?;
            }
        }
        // Sent again even if unchanged: the kernel's table is the truth to repair.
        self.state.set_meta(APPLIED_RULESET, None)?;
        if self.state.endpoints()?.is_empty() {
            self.delete_rules()
        } else {
            self.apply_rules()
        }
    }

    /// Bring the nftables table in line with the database. Networks keep their rules while
    /// their bridge exists (containers, or idle and not yet reaped), so a container without
    /// published ports joining or leaving changes nothing, and nothing is sent.
    fn apply_rules(&self) -> Result<()> {
        let endpoints = self.state.endpoints()?;
        let nets = self.state.networks()?;
        let mut active: Vec<ActiveNetwork> = Vec::new();
        for n in &nets {
            if endpoints.iter().any(|e| e.network == n.name) || self.state.idle_since(&n.name)?.is_some() {
                active.push(ActiveNetwork { bridge: n.bridge.clone(), subnet: n.subnet, internal: n.internal });
            }
        }
        let ports: Vec<ActivePort> = self
            .state
            .ports(None)?
            .into_iter()
            .filter_map(|p| {
                let ep = endpoints.iter().find(|e| e.container == p.container && e.network == p.network)?;
                let n = nets.iter().find(|n| n.name == p.network)?;
                Some(ActivePort { mapping: p.mapping, container_ip: ep.ip, bridge: n.bridge.clone() })
            })
            .collect();
        let ruleset = nft::render(&nft::table_for(&self.root), &active, &ports);
        if self.state.meta(APPLIED_RULESET)?.as_deref() == Some(ruleset.as_str()) {
            return Ok(());
        }
        nft::apply(&ruleset)?;
        self.state.set_meta(APPLIED_RULESET, Some(&ruleset))
    }

    fn delete_rules(&self) -> Result<()> {
        nft::delete(&nft::table_for(&self.root))?;
        self.state.set_meta(APPLIED_RULESET, None)
    }

    /// Rewrite the hosts files on a network: every container's on a user network (they list
    /// each other), only `only`'s on the default one (docker's default bridge has no names).
    fn refresh_hosts(&self, network: &str, only: Option<&str>) -> Result<()> {
        let eps = self.state.endpoints_on(network)?;
        let targets: Vec<&Endpoint> = if network == DEFAULT_NETWORK {
            eps.iter().filter(|e| Some(e.container.as_str()) == only).collect()
        } else {
            eps.iter().collect()
        };
        for t in targets {
            let Some(me) = self.state.container(&t.container)? else { continue };
            let mine = self.state.endpoints_of(&t.container)?;
            let own: Vec<Ipv4Addr> = mine.iter().map(|e| e.ip).collect();
            let mut peers = Vec::new();
            for my in mine.iter().filter(|e| e.network != DEFAULT_NETWORK) {
                for p in self.state.endpoints_on(&my.network)?.iter().filter(|p| p.container != t.container) {
                    if let Some(pc) = self.state.container(&p.container)? {
                        let mut names = vec![pc.name.clone()];
                        if pc.hostname != pc.name {
                            names.push(pc.hostname.clone());
                        }
                        peers.push(HostEntry { ip: p.ip.into(), names });
                    }
                }
            }
            let text = etc::hosts(&me.hostname, &me.name, &own, &etc::decode_entries(&me.extra_hosts), &peers);
            if let Err(e) = etc::rewrite_in_place(std::path::Path::new(&me.hosts_file), &text) {
                // A container being removed may have lost its files already.
                tracing::debug!("hosts of {}: {e}", me.container);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_interface_names_fit_ifnamsiz_and_differ_per_network() {
        let a = host_ifname("0123456789abcdef", "web");
        assert!(a.len() <= 15, "{a}");
        assert_ne!(a, host_ifname("0123456789abcdef", "db"));
    }
}
