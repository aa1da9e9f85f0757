//! berth-net's tables in the engine's SQLite file (`<root>/berth.db`). They have their own
//! schema version (`net_schema_version`), apart from the engine's `user_version`.
//!
//! Every change that allocates is one IMMEDIATE transaction (the write lock is taken before
//! reading), and UNIQUE constraints back it: two `berth` processes never get one address or
//! one host port.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::ipam::Subnet;
use crate::ports::{PortMapping, Protocol};

const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE net_networks (
        name TEXT PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        driver TEXT NOT NULL,
        bridge TEXT NOT NULL UNIQUE,
        subnet TEXT NOT NULL UNIQUE,
        gateway TEXT NOT NULL,
        internal INTEGER NOT NULL,
        mtu INTEGER NOT NULL,
        created TEXT NOT NULL,
        -- The last address given (allocation goes round the subnet: an address just
        -- released may still answer ARP from a namespace the kernel is tearing down).
        last_ip TEXT,
        -- Milliseconds since the epoch when the last container left; NULL while in use.
        idle_since INTEGER
    );
    CREATE TABLE net_containers (
        container TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        hostname TEXT NOT NULL,
        hosts_file TEXT NOT NULL,
        extra_hosts TEXT NOT NULL
    );
    CREATE TABLE net_endpoints (
        network TEXT NOT NULL REFERENCES net_networks(name),
        container TEXT NOT NULL,
        ip TEXT NOT NULL,
        ifname TEXT NOT NULL,
        host_ifname TEXT NOT NULL UNIQUE,
        PRIMARY KEY (network, container),
        UNIQUE (network, ip)
    );
    CREATE TABLE net_ports (
        container TEXT NOT NULL,
        network TEXT NOT NULL,
        host_ip TEXT NOT NULL,
        host_port INTEGER NOT NULL,
        container_port INTEGER NOT NULL,
        protocol TEXT NOT NULL,
        UNIQUE (protocol, host_port)
    );
",
    "
    -- berth-net's own bookkeeping: what was last handed to nftables (so that an unchanged
    -- ruleset is not sent again).
    CREATE TABLE net_meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
",
];

/// A network as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkRecord {
    /// Unique name.
    pub name: String,
    /// 64 hex characters.
    pub id: String,
    /// Always `bridge` today.
    pub driver: String,
    /// The Linux bridge (≤ 15 bytes).
    pub bridge: String,
    /// IPv4 subnet.
    #[serde(serialize_with = "display")]
    pub subnet: Subnet,
    /// The bridge's address, the containers' default route.
    pub gateway: Ipv4Addr,
    /// No masquerade, no forwarding out of the bridge.
    pub internal: bool,
    /// MTU of the bridge and the veths.
    pub mtu: u32,
    /// RFC 3339.
    pub created: String,
}

fn display<S: serde::Serializer>(v: &Subnet, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// A container's address on one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    /// Network name.
    pub network: String,
    /// Container id.
    pub container: String,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Interface inside the container (`eth0`).
    pub ifname: String,
    /// The host end of the veth.
    pub host_ifname: String,
}

/// What the hosts files need to know of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerNames {
    /// Container id.
    pub container: String,
    /// Its name.
    pub name: String,
    /// Its hostname.
    pub hostname: String,
    /// The engine-owned hosts file bind-mounted on its /etc/hosts.
    pub hosts_file: String,
    /// `--add-host` lines (`NAME IP`), newline-separated.
    pub extra_hosts: String,
}

/// A published port of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRecord {
    /// Container id.
    pub container: String,
    /// Network it goes through.
    pub network: String,
    /// The mapping (host port resolved).
    pub mapping: PortMapping,
}

/// The network tables.
pub struct State {
    conn: Connection,
}

fn is_constraint(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

fn parse_ip(s: String) -> rusqlite::Result<Ipv4Addr> {
    s.parse().map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))
}

fn network_row(r: &rusqlite::Row) -> rusqlite::Result<NetworkRecord> {
    let subnet: String = r.get(4)?;
    Ok(NetworkRecord {
        name: r.get(0)?,
        id: r.get(1)?,
        driver: r.get(2)?,
        bridge: r.get(3)?,
        subnet: subnet
            .parse()
            .map_err(|e: Error| rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, e.to_string().into()))?,
        gateway: parse_ip(r.get(5)?)?,
        internal: r.get(6)?,
        mtu: r.get(7)?,
        created: r.get(8)?,
    })
}

fn endpoint_row(r: &rusqlite::Row) -> rusqlite::Result<Endpoint> {
    Ok(Endpoint { network: r.get(0)?, container: r.get(1)?, ip: parse_ip(r.get(2)?)?, ifname: r.get(3)?, host_ifname: r.get(4)? })
}

fn port_row(r: &rusqlite::Row) -> rusqlite::Result<PortRecord> {
    let proto: String = r.get(5)?;
    Ok(PortRecord {
        container: r.get(0)?,
        network: r.get(1)?,
        mapping: PortMapping {
            host_ip: parse_ip(r.get(2)?)?,
            host_port: r.get(3)?,
            container_port: r.get(4)?,
            protocol: if proto == "udp" { Protocol::Udp } else { Protocol::Tcp },
        },
    })
}

const NETWORK_COLS: &str = "name, id, driver, bridge, subnet, gateway, internal, mtu, created";
const ENDPOINT_COLS: &str = "network, container, ip, ifname, host_ifname";
const PORT_COLS: &str = "container, network, host_ip, host_port, container_port, protocol";

impl State {
    /// Open the tables in `db` (creating or migrating them).
    pub fn open(db: &Path) -> Result<State> {
        let mut conn = Connection::open(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
        let version = |c: &Connection| -> rusqlite::Result<usize> {
            let exists: bool = c.query_row("SELECT count(*) FROM sqlite_master WHERE name = 'net_schema_version'", [], |r| r.get(0))?;
            if !exists {
                return Ok(0);
            }
            c.query_row("SELECT version FROM net_schema_version", [], |r| r.get(0)).optional().map(|v| v.unwrap_or(0))
        };
        if version(&conn)? < MIGRATIONS.len() {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // Re-read under the write lock: another process may have migrated meanwhile.
            let v = version(&tx)?;
            tx.execute_batch("CREATE TABLE IF NOT EXISTS net_schema_version (version INTEGER NOT NULL)")?;
            for m in &MIGRATIONS[v.min(MIGRATIONS.len())..] {
                tx.execute_batch(m)?;
            }
            tx.execute("DELETE FROM net_schema_version", [])?;
            tx.execute("INSERT INTO net_schema_version (version) VALUES (?1)", params![MIGRATIONS.len()])?;
            tx.commit()?;
        }
        Ok(State { conn })
    }

    /// Record a network; refuses a taken name or bridge and an overlapping subnet.
    pub fn insert_network(&mut self, n: &NetworkRecord) -> Result<()> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for other in tx.prepare(&format!("SELECT {NETWORK_COLS} FROM net_networks"))?.query_map([], network_row)? {
            let other = other?;
            if other.name == n.name {
                return Err(Error::NetworkExists(n.name.clone()));
            }
            if other.bridge == n.bridge {
                return Err(Error::Invalid(format!("network {}: the bridge {} belongs to network {}", n.name, n.bridge, other.name)));
            }
            if other.subnet.overlaps(&n.subnet) {
                return Err(Error::Invalid(format!(
                    "network {}: subnet {} overlaps {} of network {}",
                    n.name, n.subnet, other.subnet, other.name
                )));
            }
        }
        tx.execute(
            &format!("INSERT INTO net_networks ({NETWORK_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
            params![n.name, n.id, n.driver, n.bridge, n.subnet.to_string(), n.gateway.to_string(), n.internal, n.mtu, n.created],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// A network by name, or by id or id prefix.
    pub fn network(&self, key: &str) -> Result<Option<NetworkRecord>> {
        let mut stmt =
            self.conn.prepare(&format!("SELECT {NETWORK_COLS} FROM net_networks WHERE name = ?1 OR id LIKE ?1 || '%' LIMIT 2"))?;
        let rows: Vec<NetworkRecord> = stmt.query_map(params![key], network_row)?.collect::<rusqlite::Result<_>>()?;
        Ok(match rows.len() {
            1 => rows.into_iter().next(),
            _ => rows.into_iter().find(|r| r.name == key),
        })
    }

    /// Every network, by name.
    pub fn networks(&self) -> Result<Vec<NetworkRecord>> {
        let mut stmt = self.conn.prepare(&format!("SELECT {NETWORK_COLS} FROM net_networks ORDER BY name"))?;
        let rows = stmt.query_map([], network_row)?.collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Forget a network that has no endpoint.
    pub fn remove_network(&mut self, name: &str) -> Result<()> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n: usize = tx.query_row("SELECT count(*) FROM net_endpoints WHERE network = ?1", params![name], |r| r.get(0))?;
        if n > 0 {
            return Err(Error::NetworkInUse(name.to_string(), n));
        }
        tx.execute("DELETE FROM net_networks WHERE name = ?1", params![name])?;
        tx.commit()?;
        Ok(())
    }

    /// Record (or refresh) what the hosts files say of a container.
    pub fn upsert_container(&self, c: &ContainerNames) -> Result<()> {
        self.conn.execute(
            "INSERT INTO net_containers (container, name, hostname, hosts_file, extra_hosts) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(container) DO UPDATE SET name = ?2, hostname = ?3, hosts_file = ?4, extra_hosts = ?5",
            params![c.container, c.name, c.hostname, c.hosts_file, c.extra_hosts],
        )?;
        Ok(())
    }

    /// What the hosts files say of a container.
    pub fn container(&self, id: &str) -> Result<Option<ContainerNames>> {
        Ok(self
            .conn
            .query_row(
                "SELECT container, name, hostname, hosts_file, extra_hosts FROM net_containers WHERE container = ?1",
                params![id],
                |r| {
                    Ok(ContainerNames {
                        container: r.get(0)?,
                        name: r.get(1)?,
                        hostname: r.get(2)?,
                        hosts_file: r.get(3)?,
                        extra_hosts: r.get(4)?,
                    })
                },
            )
            .optional()?)
    }

    /// Reserve an address for `container` on `network` (the requested one, or the lowest free),
    /// with its interface names and published ports, in one IMMEDIATE transaction.
    pub fn reserve(
        &mut self,
        net: &NetworkRecord,
        container: &str,
        requested: Option<Ipv4Addr>,
        host_ifname: &str,
        ports: &[PortMapping],
    ) -> Result<Endpoint> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut used_if: HashSet<String> = HashSet::new();
        for r in
            tx.prepare("SELECT ifname FROM net_endpoints WHERE container = ?1")?.query_map(params![container], |r| r.get::<_, String>(0))?
        {
            used_if.insert(r?);
        }
        let ifname = (0..).map(|i| format!("eth{i}")).find(|n| !used_if.contains(n)).unwrap_or_else(|| "eth0".into());
        let ip = match requested {
            Some(ip) => {
                if !net.subnet.assignable(ip, net.gateway) {
                    return Err(Error::AddressUnavailable {
                        network: net.name.clone(),
                        reason: format!("{ip} is not an assignable address of {}", net.subnet),
                    });
                }
                ip
            }
            None => {
                let mut taken = HashSet::new();
                for r in
                    tx.prepare("SELECT ip FROM net_endpoints WHERE network = ?1")?.query_map(params![net.name], |r| parse_ip(r.get(0)?))?
                {
                    taken.insert(r?);
                }
                let last: Option<String> =
                    tx.query_row("SELECT last_ip FROM net_networks WHERE name = ?1", params![net.name], |r| r.get(0)).optional()?.flatten();
                net.subnet.next_free(net.gateway, &taken, last.and_then(|l| l.parse().ok())).ok_or_else(|| Error::AddressUnavailable {
                    network: net.name.clone(),
                    reason: format!("no free address left in {}", net.subnet),
                })?
            }
        };
        let ep = Endpoint { network: net.name.clone(), container: container.to_string(), ip, ifname, host_ifname: host_ifname.to_string() };
        let r = tx.execute(
            &format!("INSERT INTO net_endpoints ({ENDPOINT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5)"),
            params![ep.network, ep.container, ep.ip.to_string(), ep.ifname, ep.host_ifname],
        );
        match r {
            Err(e) if is_constraint(&e) => {
                let reason = if tx
                    .query_row(
                        "SELECT 1 FROM net_endpoints WHERE network = ?1 AND container = ?2",
                        params![net.name, container],
                        |_| Ok(()),
                    )
                    .optional()?
                    .is_some()
                {
                    "the container is already connected".to_string()
                } else {
                    format!("{ip} is already in use")
                };
                return Err(Error::AddressUnavailable { network: net.name.clone(), reason });
            }
            r => r?,
        };
        tx.execute("UPDATE net_networks SET idle_since = NULL WHERE name = ?1", params![net.name])?;
        if requested.is_none() {
            tx.execute("UPDATE net_networks SET last_ip = ?2 WHERE name = ?1", params![net.name, ip.to_string()])?;
        }
        for p in ports {
            let r = tx.execute(
                &format!("INSERT INTO net_ports ({PORT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
                params![container, net.name, p.host_ip.to_string(), p.host_port, p.container_port, p.protocol.as_str()],
            );
            match r {
                Err(e) if is_constraint(&e) => {
                    return Err(Error::PortInUse(
                        format!("{}:{}/{}", p.host_ip, p.host_port, p.protocol.as_str()),
                        " (published by another berth container)".into(),
                    ))
                }
                r => r?,
            };
        }
        tx.commit()?;
        Ok(ep)
    }

    /// Forget a container's endpoint on one network (and the ports through it).
    pub fn release(&mut self, network: &str, container: &str) -> Result<()> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM net_endpoints WHERE network = ?1 AND container = ?2", params![network, container])?;
        tx.execute("DELETE FROM net_ports WHERE network = ?1 AND container = ?2", params![network, container])?;
        let left: usize = tx.query_row("SELECT count(*) FROM net_endpoints WHERE container = ?1", params![container], |r| r.get(0))?;
        if left == 0 {
            tx.execute("DELETE FROM net_containers WHERE container = ?1", params![container])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Mark a network idle (no container) since `ms`, or in use.
    pub fn set_idle_since(&self, network: &str, ms: Option<i64>) -> Result<()> {
        self.conn.execute("UPDATE net_networks SET idle_since = ?2 WHERE name = ?1", params![network, ms])?;
        Ok(())
    }

    /// Since when a network has had no container (ms since the epoch).
    pub fn idle_since(&self, network: &str) -> Result<Option<i64>> {
        Ok(self.conn.query_row("SELECT idle_since FROM net_networks WHERE name = ?1", params![network], |r| r.get(0)).optional()?.flatten())
    }

    /// A value of berth-net's own bookkeeping.
    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(self.conn.query_row("SELECT value FROM net_meta WHERE key = ?1", params![key], |r| r.get(0)).optional()?)
    }

    /// Set (or with None forget) a value of berth-net's own bookkeeping.
    pub fn set_meta(&self, key: &str, value: Option<&str>) -> Result<()> {
        match value {
            Some(v) => self
                .conn
                .execute("INSERT INTO net_meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = ?2", params![key, v])?,
            None => self.conn.execute("DELETE FROM net_meta WHERE key = ?1", params![key])?,
        };
        Ok(())
    }

    /// Networks without containers whose bridge may still exist.
    pub fn idle_networks(&self) -> Result<Vec<NetworkRecord>> {
        let mut stmt = self.conn.prepare(&format!("SELECT {NETWORK_COLS} FROM net_networks WHERE idle_since IS NOT NULL"))?;
        let rows = stmt.query_map([], network_row)?.collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// A container's endpoints.
    pub fn endpoints_of(&self, container: &str) -> Result<Vec<Endpoint>> {
        let mut stmt = self.conn.prepare(&format!("SELECT {ENDPOINT_COLS} FROM net_endpoints WHERE container = ?1 ORDER BY ifname"))?;
        let rows = stmt.query_map(params![container], endpoint_row)?.collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// The endpoints on a network.
    pub fn endpoints_on(&self, network: &str) -> Result<Vec<Endpoint>> {
        let mut stmt = self.conn.prepare(&format!("SELECT {ENDPOINT_COLS} FROM net_endpoints WHERE network = ?1 ORDER BY ip"))?;
        let rows = stmt.query_map(params![network], endpoint_row)?.collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Every endpoint.
    pub fn endpoints(&self) -> Result<Vec<Endpoint>> {
        let mut stmt = self.conn.prepare(&format!("SELECT {ENDPOINT_COLS} FROM net_endpoints"))?;
        let rows = stmt.query_map([], endpoint_row)?.collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Published ports (of one container, or all).
    pub fn ports(&self, container: Option<&str>) -> Result<Vec<PortRecord>> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {PORT_COLS} FROM net_ports WHERE ?1 IS NULL OR container = ?1 ORDER BY container_port, protocol"))?;
        let rows = stmt.query_map(params![container], port_row)?.collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(name: &str, bridge: &str, subnet: &str) -> NetworkRecord {
        let subnet: Subnet = subnet.parse().unwrap();
        NetworkRecord {
            name: name.into(),
            id: format!("{name:0>64}"),
            driver: "bridge".into(),
            bridge: bridge.into(),
            subnet,
            gateway: subnet.first_host(),
            internal: false,
            mtu: 1500,
            created: String::new(),
        }
    }

    #[test]
    fn overlapping_subnets_and_taken_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::open(&dir.path().join("berth.db")).unwrap();
        s.insert_network(&net("a", "ba", "10.1.0.0/24")).unwrap();
        assert!(matches!(s.insert_network(&net("a", "bb", "10.2.0.0/24")), Err(Error::NetworkExists(_))));
        assert!(s.insert_network(&net("b", "bb", "10.1.0.0/16")).is_err());
        assert!(s.insert_network(&net("b", "ba", "10.2.0.0/24")).is_err());
        s.insert_network(&net("b", "bb", "10.2.0.0/24")).unwrap();
        assert_eq!(s.networks().unwrap().len(), 2);
    }

    #[test]
    fn concurrent_reservations_from_many_connections_never_share_an_address() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("berth.db");
        let n = net("n", "bn", "10.3.0.0/24");
        State::open(&db).unwrap().insert_network(&n).unwrap();
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let (db, n) = (db.clone(), n.clone());
                std::thread::spawn(move || State::open(&db).unwrap().reserve(&n, &format!("c{i}"), None, &format!("h{i}"), &[]).unwrap().ip)
            })
            .collect();
        let ips: HashSet<Ipv4Addr> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(ips.len(), 16);
        assert!(!ips.contains(&n.gateway));
        let mut s = State::open(&db).unwrap();
        let ip = s.endpoints_of("c0").unwrap()[0].ip;
        assert!(matches!(s.reserve(&n, "x", Some(ip), "hx", &[]), Err(Error::AddressUnavailable { .. })));
        s.release("n", "c0").unwrap();
        assert_eq!(s.reserve(&n, "x", Some(ip), "hx", &[]).unwrap().ip, ip);
        // A released address is not the next one given: allocation goes round the subnet.
        s.release("n", "c1").unwrap();
        let next = s.reserve(&n, "y", None, "hy", &[]).unwrap().ip;
        assert!(!ips.iter().any(|i| *i == next), "{next} was given again at once");
        assert!(matches!(s.remove_network("n"), Err(Error::NetworkInUse(_, 16))));
    }

    #[test]
    fn a_host_port_is_published_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::open(&dir.path().join("berth.db")).unwrap();
        let n = net("n", "bn", "10.4.0.0/24");
        s.insert_network(&n).unwrap();
        let p = PortMapping::parse("18080:80").unwrap();
        s.reserve(&n, "a", None, "ha", &p).unwrap();
        assert!(matches!(s.reserve(&n, "b", None, "hb", &p), Err(Error::PortInUse(..))));
        assert!(s.endpoints_of("b").unwrap().is_empty(), "the failed reservation left an address");
        assert_eq!(s.ports(Some("a")).unwrap().len(), 1);
    }
}
