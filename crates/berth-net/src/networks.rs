//! The networks of one berth root: create, list, inspect, remove, prune. Every change to
//! links, rules or allocations happens under `<root>/network.lock` (flock), so that of two
//! `berth` processes one sets a bridge up and the other finds it, and the last container
//! out removes a bridge nobody is joining.

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::ipam::Subnet;
use crate::netlink::RouteSocket;
use crate::state::{Endpoint, NetworkRecord, State};

/// The network `--network bridge` (the default for rootful containers) means.
pub const DEFAULT_NETWORK: &str = "bridge";
/// Its bridge in the default root.
pub const DEFAULT_BRIDGE: &str = "berth0";
/// Its subnet in the default root.
pub const DEFAULT_SUBNET: &str = "10.88.0.0/16";
/// The default root (rootful).
pub const DEFAULT_ROOT: &str = "/var/lib/berth";

/// The bridge and subnet of the default network of a root. Other roots (tests, a second
/// engine) get their own bridge `bb<hash>` and a /24 in 10.200.0.0–10.239.255.0 picked by
/// the same hash, so that two roots never share a bridge, nor, but by a rare hash
/// collision, a subnet.
pub fn default_network_of(root: &Path) -> (String, Subnet) {
    if root == Path::new(DEFAULT_ROOT) {
        return (DEFAULT_BRIDGE.into(), Subnet { addr: Ipv4Addr::new(10, 88, 0, 0), prefix: 16 });
    }
    let h =
        root.as_os_str().as_encoded_bytes().iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
    let (b, c) = (200 + ((h >> 8) % 40) as u8, (h >> 16) as u8);
    (format!("bb{:08x}", h as u32), Subnet { addr: Ipv4Addr::new(10, b, c, 0), prefix: 24 })
}
/// MTU when the host's default route says nothing (docker's and podman's).
pub const DEFAULT_MTU: u32 = 1500;

/// The MTU of the interface of the host's default IPv4 route (a VM's uplink is often below
/// 1500: containers must not send more than it carries), else `DEFAULT_MTU`.
pub fn host_default_mtu() -> u32 {
    let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    routes
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 7 && f[1] == "00000000" && f[7] == "00000000")
        .and_then(|f| std::fs::read_to_string(format!("/sys/class/net/{}/mtu", f[0])).ok())
        .and_then(|m| m.trim().parse().ok())
        .filter(|m| (576..=65535).contains(m))
        .unwrap_or(DEFAULT_MTU)
}

/// What `network create` asks for.
#[derive(Debug, Clone, Default)]
pub struct NetworkSpec {
    /// Name ([a-zA-Z0-9][a-zA-Z0-9_.-]*).
    pub name: String,
    /// Subnet (default: a free 10.89.N.0/24).
    pub subnet: Option<Subnet>,
    /// Gateway (default: the subnet's first address).
    pub gateway: Option<Ipv4Addr>,
    /// Bridge name (default: `berth<N>`, ≤ 15 bytes).
    pub bridge: Option<String>,
    /// No outside connectivity.
    pub internal: bool,
    /// MTU (default: the host's default route's interface's).
    pub mtu: Option<u32>,
}

/// The networks of a root.
pub struct Networks {
    pub(crate) root: PathBuf,
    pub(crate) state: State,
}

/// An exclusive flock held for the duration of a change (released when the file closes).
pub(crate) struct NetLock(#[allow(dead_code)] std::fs::File);

impl NetLock {
    fn take(root: &Path) -> Result<NetLock> {
        let path = root.join("network.lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .io_context(|| format!("open {}", path.display()))?;
        loop {
            // SAFETY: flock on an fd we own; no memory is involved.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(NetLock(f));
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(Error::Io { context: format!("lock {}", path.display()), source: e });
            }
        }
    }
}

/// The lock a bridge reaper holds while it waits (see `berth network reap`).
pub struct ReaperLock(#[allow(dead_code)] std::fs::File);

fn reaper_lock_file(root: &Path) -> Result<std::fs::File> {
    let path = root.join("network-reaper.lock");
    std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).io_context(|| format!("open {}", path.display()))
}

/// Take the reaper lock of `root` if no reaper holds it.
pub fn try_reaper_lock(root: &Path) -> Result<Option<ReaperLock>> {
    let f = reaper_lock_file(root)?;
    // SAFETY: flock on an fd we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(Some(ReaperLock(f)));
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        return Ok(None);
    }
    Err(Error::Io { context: format!("lock {}", root.join("network-reaper.lock").display()), source: e })
}

/// Whether a reaper is waiting for this root's idle bridges.
pub fn reaper_running(root: &Path) -> Result<bool> {
    Ok(try_reaper_lock(root)?.is_none())
}

fn new_id() -> Result<String> {
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .io_context(|| "read /dev/urandom".into())?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    secs.to_string()
}

fn valid_name(name: &str) -> bool {
    let mut c = name.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphanumeric())
        && c.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && name.len() <= 64
}

impl Networks {
    /// Open the networks of the root at `root` (the engine's `berth.db` is in it).
    pub fn open(root: &Path) -> Result<Networks> {
        std::fs::create_dir_all(root).io_context(|| format!("create {}", root.display()))?;
        let mut state = State::open(&root.join("berth.db"))?;
        if state.network(DEFAULT_NETWORK)?.is_none() {
            let (bridge, subnet) = default_network_of(root);
            let rec = NetworkRecord {
                name: DEFAULT_NETWORK.into(),
                id: new_id()?,
                driver: "bridge".into(),
                bridge,
                subnet,
                gateway: subnet.first_host(),
                internal: false,
                mtu: host_default_mtu(),
                created: now(),
            };
            match state.insert_network(&rec) {
                Ok(()) | Err(Error::NetworkExists(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Networks { root: root.to_path_buf(), state })
    }

    pub(crate) fn lock(&self) -> Result<NetLock> {
        NetLock::take(&self.root)
    }

    /// Create a network (nothing on the host until a container joins it).
    pub fn create(&mut self, spec: &NetworkSpec) -> Result<NetworkRecord> {
        if !valid_name(&spec.name) {
            return Err(Error::Invalid(format!("invalid network name {:?}: [a-zA-Z0-9][a-zA-Z0-9_.-]*", spec.name)));
        }
        let existing = self.state.networks()?;
        let subnet = match spec.subnet {
            Some(s) => s,
            None => (0..=255u8)
                .map(|n| Subnet { addr: Ipv4Addr::new(10, 89, n, 0), prefix: 24 })
                .find(|s| !existing.iter().any(|e| e.subnet.overlaps(s)))
                .ok_or_else(|| Error::Invalid("no free subnet left in 10.89.0.0/16: give --subnet".into()))?,
        };
        let gateway = spec.gateway.unwrap_or_else(|| subnet.first_host());
        if !subnet.contains(gateway) || gateway == subnet.addr || gateway == subnet.broadcast() {
            return Err(Error::Invalid(format!("gateway {gateway} is not a host address of {subnet}")));
        }
        let bridge = match &spec.bridge {
            Some(b) => b.clone(),
            None => (1..).map(|n| format!("berth{n}")).find(|b| !existing.iter().any(|e| &e.bridge == b)).unwrap_or_default(),
        };
        if bridge.is_empty() || bridge.len() > 15 || bridge.contains(['/', ' ', ':']) {
            return Err(Error::Invalid(format!("invalid bridge name {bridge:?}: 1 to 15 bytes, no '/', ':' or space")));
        }
        let rec = NetworkRecord {
            name: spec.name.clone(),
            id: new_id()?,
            driver: "bridge".into(),
            bridge,
            subnet,
            gateway,
            internal: spec.internal,
            mtu: spec.mtu.unwrap_or_else(host_default_mtu),
            created: now(),
        };
        self.state.insert_network(&rec)?;
        Ok(rec)
    }

    /// Every network.
    pub fn list(&self) -> Result<Vec<NetworkRecord>> {
        self.state.networks()
    }

    /// A network by name or id (prefix).
    pub fn get(&self, key: &str) -> Result<NetworkRecord> {
        self.state.network(key)?.ok_or_else(|| Error::NoSuchNetwork(key.to_string()))
    }

    /// A network and the containers on it.
    pub fn inspect(&self, key: &str) -> Result<(NetworkRecord, Vec<Endpoint>)> {
        let n = self.get(key)?;
        let eps = self.state.endpoints_on(&n.name)?;
        Ok((n, eps))
    }

    /// Remove a network without containers (not the default one).
    pub fn remove(&mut self, key: &str) -> Result<String> {
        let n = self.get(key)?;
        if n.name == DEFAULT_NETWORK {
            return Err(Error::Invalid(format!("network {DEFAULT_NETWORK} is the default network and cannot be removed")));
        }
        let _lock = self.lock()?;
        self.state.remove_network(&n.name)?;
        crate::bridge::delete_bridge_and_stale_veths(&mut RouteSocket::open()?, &n.bridge)?;
        Ok(n.name)
    }

    /// Remove every network without containers (but the default); returns their names.
    pub fn prune(&mut self) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for n in self.state.networks()? {
            if n.name != DEFAULT_NETWORK && self.state.endpoints_on(&n.name)?.is_empty() {
                removed.push(self.remove(&n.name)?);
            }
        }
        Ok(removed)
    }

    /// Bridges of networks without containers, waiting for `reap_idle_bridges`.
    pub fn idle_bridges(&self) -> Result<Vec<String>> {
        Ok(self.state.idle_networks()?.into_iter().map(|n| n.bridge).collect())
    }

    /// A container's endpoints (address per network).
    pub fn endpoints_of(&self, container: &str) -> Result<Vec<Endpoint>> {
        self.state.endpoints_of(container)
    }

    /// A container's published ports (host ports resolved).
    pub fn ports_of(&self, container: &str) -> Result<Vec<crate::PortMapping>> {
        Ok(self.state.ports(Some(container))?.into_iter().map(|p| p.mapping).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_mtu_is_a_sane_link_mtu() {
        assert!((576..=65535).contains(&host_default_mtu()));
    }

    #[test]
    fn other_roots_get_their_own_default_bridge_and_subnet() {
        let (b, s) = default_network_of(Path::new(DEFAULT_ROOT));
        assert_eq!((b.as_str(), s.to_string().as_str()), (DEFAULT_BRIDGE, DEFAULT_SUBNET));
        let (b1, s1) = default_network_of(Path::new("/tmp/a/root"));
        let (b2, s2) = default_network_of(Path::new("/tmp/b/root"));
        assert!(b1.len() <= 15 && b1 != b2 && b1 != DEFAULT_BRIDGE);
        assert!(!s1.overlaps(&DEFAULT_SUBNET.parse().unwrap()));
        assert_ne!(s1, s2);
    }
}
