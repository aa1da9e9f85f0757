//! The engine's side of networking; berth-net does the work. At create, what the container
//! asked for is checked (the network exists, the host ports are free) and recorded in
//! `containers/<id>/network.json`; the hooks join it to its networks between the runtime's
//! create and start (`attach_network`) and take it off when it exits or is removed
//! (`detach_network`, idempotent). Allocations of containers that are gone (a killed `berth`)
//! are released by `reconcile_networks`, which every attach runs first.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use berth_net::{AttachRequest, Networks, PortMapping};
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::run::Engine;
use crate::specgen::{ContainerOptions, NetworkMode};

/// What a container got on one network.
pub use berth_net::Attachment as NetworkInfo;

/// `containers/<id>/network.json`: the networks a container joins when it starts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct NetworkRequest {
    /// Bridge networks, in order (the first gets eth0 and the default route).
    pub networks: Vec<String>,
    /// `-p`.
    pub ports: Vec<PortMapping>,
    /// `--ip` (on the first network).
    pub ip: Option<Ipv4Addr>,
    /// The container's name.
    pub name: String,
    /// Its hostname.
    pub hostname: String,
    /// `--add-host` (berth-net's encoding).
    pub extra_hosts: String,
}

const REQUEST_FILE: &str = "network.json";

/// How long a bridge without containers stays (see `retire_bridges`).
pub const BRIDGE_IDLE: std::time::Duration = std::time::Duration::from_millis(1000);

impl Engine {
    /// The program `retire_bridges` runs as `PROGRAM --root R network reap …` (the `berth`
    /// binary: "/proc/self/exe"); None deletes idle bridges at once.
    pub fn set_helper_exe(&mut self, exe: Option<PathBuf>) {
        self.helper_exe = exe;
    }

    /// The networks of this root (for `berth network …`).
    pub fn networks(&self) -> Result<Networks> {
        Ok(Networks::open(&self.root)?)
    }

    /// Check the network options before anything is created; returns the namespace to join
    /// for `container:`/`ns:`, and for `container:` the container whose /etc/hosts and
    /// /etc/resolv.conf are shared (as docker does: they describe the same network).
    pub(crate) fn network_preflight(&self, opts: &ContainerOptions) -> Result<(Option<PathBuf>, Option<String>)> {
        if !matches!(opts.network, NetworkMode::Bridge(_)) && (!opts.publish.is_empty() || opts.ip.is_some()) {
            return Err(Error::Invalid("-p and --ip need a bridge network (--network bridge or a network's name)".into()));
        }
        match &opts.network {
            NetworkMode::Bridge(name) => {
                let net = self.networks()?.get(name)?;
                if let Some(ip) = opts.ip {
                    if !net.subnet.assignable(ip, net.gateway) {
                        return Err(Error::Invalid(format!(
                            "--ip {ip}: not an assignable address of network {} ({})",
                            net.name, net.subnet
                        )));
                    }
                }
                // A clear error now rather than a half-created container later (attach checks
                // again under its lock).
                for p in opts.publish.iter().filter(|p| p.host_port != 0) {
                    p.clone().claim_host_port()?;
                }
                Ok((None, None))
            }
            NetworkMode::Container(key) => {
                let row = self.db.find(key)?.ok_or_else(|| Error::NoSuchContainer(key.clone()))?;
                let not_running = || Error::Invalid(format!("--network container:{key}: the container is not running"));
                let st = self.backend(&row)?.state(&row.id).ok().flatten().ok_or_else(not_running)?;
                if st.status == berth_runtime::state::Status::Stopped {
                    return Err(Error::Invalid(format!("--network container:{key}: the container is not running")));
                }
                Ok((Some(PathBuf::from(format!("/proc/{}/ns/net", st.pid))), Some(row.id)))
            }
            NetworkMode::Ns(path) => {
                if !path.exists() {
                    return Err(Error::Invalid(format!("--network ns:{}: no such file", path.display())));
                }
                Ok((Some(path.clone()), None))
            }
            NetworkMode::None | NetworkMode::Host => Ok((None, None)),
        }
    }

    /// Record what `attach_network` will do for this container.
    pub(crate) fn write_network_request(&self, id: &str, name: &str, hostname: &str, opts: &ContainerOptions) -> Result<()> {
        let NetworkMode::Bridge(net) = &opts.network else { return Ok(()) };
        let req = NetworkRequest {
            networks: vec![net.clone()],
            ports: opts.publish.clone(),
            ip: opts.ip,
            name: name.to_string(),
            hostname: hostname.to_string(),
            extra_hosts: berth_net::etc::encode_entries(&opts.add_hosts),
        };
        let path = self.dirs(id).base.join(REQUEST_FILE);
        let bytes = serde_json::to_vec(&req).map_err(|e| Error::Invalid(format!("serialize {}: {e}", path.display())))?;
        std::fs::write(&path, bytes).io_context(|| format!("write {}", path.display()))
    }

    fn network_request(&self, id: &str) -> Result<Option<NetworkRequest>> {
        let path = self.dirs(id).base.join(REQUEST_FILE);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(serde_json::from_slice(&b).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).io_context(|| format!("read {}", path.display())),
        }
    }

    fn alive(&self, id: &str) -> bool {
        let row = match self.db.find(id) {
            Ok(Some(r)) if r.id == id => r,
            _ => return false,
        };
        let Ok(backend) = self.backend(&row) else { return true };
        match backend.state(id) {
            Ok(Some(st)) => st.status != berth_runtime::state::Status::Stopped,
            Ok(None) => false,
            // Unsure (a lock, a half-written state): keep its addresses.
            Err(_) => true,
        }
    }

    /// Hook between the runtime's create and start: join the container (init `init_pid`,
    /// namespace `/proc/<pid>/ns/net`) to the networks it asked for. Nothing to do for
    /// none/host/container:/ns:. On failure the container holds nothing.
    pub fn attach_network(&self, id: &str, init_pid: i32) -> Result<Vec<NetworkInfo>> {
        let Some(req) = self.network_request(id)? else { return Ok(Vec::new()) };
        let t = std::time::Instant::now();
        let mut nets = self.networks()?;
        nets.reconcile(&|c| c == id || self.alive(c))?;
        tracing::debug!("network: state opened and reconciled in {:?}", t.elapsed());
        let mut out = Vec::new();
        for (i, network) in req.networks.iter().enumerate() {
            let ar = AttachRequest {
                container: id.to_string(),
                name: req.name.clone(),
                hostname: req.hostname.clone(),
                netns: PathBuf::from(format!("/proc/{init_pid}/ns/net")),
                network: network.clone(),
                ip: if i == 0 { req.ip } else { None },
                ports: if i == 0 { req.ports.clone() } else { Vec::new() },
                hosts_file: self.dirs(id).base.join("hosts"),
                extra_hosts: berth_net::etc::decode_entries(&req.extra_hosts),
            };
            match nets.attach(&ar) {
                Ok(a) => {
                    tracing::debug!("network {}: attached {} at {} in {:?}", a.network.name, a.endpoint.ifname, a.endpoint.ip, t.elapsed());
                    out.push(a)
                }
                Err(e) => {
                    let _ = nets.detach(id, None, false);
                    let _ = nets.idle_bridges().map(|b| self.retire_bridges(&b));
                    return Err(e.into());
                }
            }
        }
        Ok(out)
    }

    /// Hook at exit and removal: take the container off every network (veth, address,
    /// rules, and the bridge and table when it was the last). Idempotent.
    pub fn detach_network(&self, id: &str) -> Result<()> {
        if !self.dirs(id).base.join(REQUEST_FILE).exists() {
            return Ok(());
        }
        let t = std::time::Instant::now();
        let idle = self.networks()?.detach(id, None, true)?;
        tracing::debug!("network: detached in {:?}", t.elapsed());
        self.retire_bridges(&idle)
    }

    /// `detach_network` where a failure must not stop the caller (exit, removal): what is
    /// left is released by the next reconciliation, since the container is gone.
    pub fn detach_network_or_warn(&self, id: &str) {
        if let Err(e) = self.detach_network(id) {
            tracing::warn!("container {}: network detach failed ({e}); the next network command releases it", id.get(..12).unwrap_or(id));
        }
    }

    /// Bridges left without containers go after `BRIDGE_IDLE`: a deletion costs 20–80 ms of
    /// kernel time (RCU grace periods), which a container's exit should not wait for, and
    /// the next container usually comes sooner. A helper process (`helper_exe network reap`)
    /// does it; without a helper they go now.
    fn retire_bridges(&self, bridges: &[String]) -> Result<()> {
        if bridges.is_empty() {
            return Ok(());
        }
        let Some(exe) = &self.helper_exe else {
            self.networks()?.reap_idle_bridges(std::time::Duration::ZERO)?;
            return Ok(());
        };
        // One reaper per root at a time: it holds this lock while it waits, and keeps waiting
        // while networks are idle, so a stream of short containers starts none after the first.
        if berth_net::networks::reaper_running(&self.root)? {
            return Ok(());
        }
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("--root").arg(&self.root).args(["network", "reap", "--after-ms"]).arg(BRIDGE_IDLE.as_millis().to_string()).args(bridges);
        cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        if let Err(e) = cmd.spawn() {
            tracing::warn!("network: cannot start the bridge reaper ({e}); bridges {bridges:?} stay until the next network command");
        }
        Ok(())
    }

    /// Release what containers that are gone still hold, and bring the host's bridges and
    /// rules in line with the database. Returns the ids released.
    pub fn reconcile_networks(&self) -> Result<Vec<String>> {
        let mut nets = self.networks()?;
        let released = nets.reconcile(&|c| self.alive(c))?;
        nets.sync_host()?;
        Ok(released)
    }

    /// `network connect`: join a running container to one more network.
    pub fn connect_network(&self, network: &str, key: &str, ip: Option<Ipv4Addr>) -> Result<NetworkInfo> {
        let row = self.db.find(key)?.ok_or_else(|| Error::NoSuchContainer(key.to_string()))?;
        let st = self
            .backend(&row)?
            .state(&row.id)
            .ok()
            .flatten()
            .ok_or_else(|| Error::Invalid(format!("container {}: not running", row.name)))?;
        if st.status == berth_runtime::state::Status::Stopped {
            return Err(Error::Invalid(format!("container {}: not running", row.name)));
        }
        let mut req = self
            .network_request(&row.id)?
            .ok_or_else(|| Error::Invalid(format!("container {}: its network mode has no bridge networks to add to", row.name)))?;
        let net = self.networks()?.get(network)?;
        let a = self.networks()?.attach(&AttachRequest {
            container: row.id.clone(),
            name: req.name.clone(),
            hostname: req.hostname.clone(),
            netns: PathBuf::from(format!("/proc/{}/ns/net", st.pid)),
            network: net.name.clone(),
            ip,
            ports: Vec::new(),
            hosts_file: self.dirs(&row.id).base.join("hosts"),
            extra_hosts: berth_net::etc::decode_entries(&req.extra_hosts),
        })?;
        if !req.networks.contains(&net.name) {
            req.networks.push(net.name);
            let path = self.dirs(&row.id).base.join(REQUEST_FILE);
            let bytes = serde_json::to_vec(&req).map_err(|e| Error::Invalid(e.to_string()))?;
            std::fs::write(&path, bytes).io_context(|| format!("write {}", path.display()))?;
        }
        Ok(a)
    }

    /// `network disconnect`: take a container off one network.
    pub fn disconnect_network(&self, network: &str, key: &str) -> Result<()> {
        let row = self.db.find(key)?.ok_or_else(|| Error::NoSuchContainer(key.to_string()))?;
        let mut nets = self.networks()?;
        let net = nets.get(network)?;
        let idle = nets.detach(&row.id, Some(&net.name), false)?;
        self.retire_bridges(&idle)?;
        if let Some(mut req) = self.network_request(&row.id)? {
            req.networks.retain(|n| *n != net.name);
            let path = self.dirs(&row.id).base.join(REQUEST_FILE);
            let bytes = serde_json::to_vec(&req).map_err(|e| Error::Invalid(e.to_string()))?;
            std::fs::write(&path, bytes).io_context(|| format!("write {}", path.display()))?;
        }
        Ok(())
    }

    /// `port`: a container's published ports, host ports resolved.
    pub fn published_ports(&self, key: &str) -> Result<Vec<PortMapping>> {
        let row = self.db.find(key)?.ok_or_else(|| Error::NoSuchContainer(key.to_string()))?;
        Ok(self.networks()?.ports_of(&row.id)?)
    }

    /// A container's addresses (network, endpoint).
    pub fn container_endpoints(&self, key: &str) -> Result<Vec<berth_net::Endpoint>> {
        let row = self.db.find(key)?.ok_or_else(|| Error::NoSuchContainer(key.to_string()))?;
        Ok(self.networks()?.endpoints_of(&row.id)?)
    }
}
