//! The files a container's resolver reads: `/etc/hosts` and `/etc/resolv.conf`. The engine
//! writes them next to the container and bind-mounts them; berth-net rewrites the hosts
//! files of a user network's containers in place (a rename would detach the bind mount) as
//! containers come and go, which is how they resolve each other by name.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use crate::error::{IoContext, Result};

/// A line of a hosts file: an address and its names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    /// The address.
    pub ip: IpAddr,
    /// Its names, first the canonical one.
    pub names: Vec<String>,
}

/// Parse `--add-host NAME:IP` (docker's syntax; `NAME=IP` too).
pub fn parse_add_host(s: &str) -> Result<HostEntry> {
    let bad = || crate::Error::Invalid(format!("--add-host {s:?}: expected NAME:IP"));
    let (name, ip) = s.split_once('=').or_else(|| s.split_once(':')).ok_or_else(bad)?;
    let ip: IpAddr = ip.trim_matches(|c| c == '[' || c == ']').parse().map_err(|_| bad())?;
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(bad());
    }
    Ok(HostEntry { ip, names: vec![name.to_string()] })
}

/// A hosts file: localhost, the `--add-host` entries, the container itself (its addresses,
/// or 127.0.1.1 without any), then its peers on user networks.
pub fn hosts(hostname: &str, name: &str, own: &[Ipv4Addr], extra: &[HostEntry], peers: &[HostEntry]) -> String {
    let mut s = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for e in extra {
        s.push_str(&format!("{}\t{}\n", e.ip, e.names.join(" ")));
    }
    let names = if name.is_empty() || name == hostname { hostname.to_string() } else { format!("{hostname} {name}") };
    if own.is_empty() {
        s.push_str(&format!("127.0.1.1\t{names}\n"));
    }
    for ip in own {
        s.push_str(&format!("{ip}\t{names}\n"));
    }
    for p in peers {
        s.push_str(&format!("{}\t{}\n", p.ip, p.names.join(" ")));
    }
    s
}

/// `--add-host` entries as stored (one `IP NAME…` per line) and back.
pub fn encode_entries(e: &[HostEntry]) -> String {
    e.iter().map(|e| format!("{} {}", e.ip, e.names.join(" "))).collect::<Vec<_>>().join("\n")
}

/// The inverse of `encode_entries`; malformed lines are skipped.
pub fn decode_entries(s: &str) -> Vec<HostEntry> {
    s.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let ip = it.next()?.parse().ok()?;
            Some(HostEntry { ip, names: it.map(String::from).collect() })
        })
        .collect()
}

/// The container's resolv.conf: the host's without loopback resolvers (unreachable from the
/// container's namespace), as podman does; `dns` replaces the nameservers; public resolvers
/// when nothing is left.
pub fn resolv_conf(host: &str, dns: &[IpAddr]) -> String {
    let is_ns = |l: &str| l.trim_start().starts_with("nameserver");
    let mut out: Vec<String> = host
        .lines()
        .filter(|l| {
            if !is_ns(l) {
                return true;
            }
            if !dns.is_empty() {
                return false;
            }
            let addr = l.split_whitespace().nth(1).and_then(|a| a.parse::<IpAddr>().ok());
            !matches!(addr, Some(a) if a.is_loopback())
        })
        .map(String::from)
        .collect();
    out.extend(dns.iter().map(|d| format!("nameserver {d}")));
    if !out.iter().any(|l| is_ns(l)) {
        out.push("nameserver 8.8.8.8".into());
        out.push("nameserver 8.8.4.4".into());
    }
    out.join("\n") + "\n"
}

/// Replace a bind-mounted file's contents in place (same inode).
pub fn rewrite_in_place(path: &Path, text: &str) -> Result<()> {
    let mut f = std::fs::OpenOptions::new().write(true).truncate(true).open(path).io_context(|| format!("open {}", path.display()))?;
    f.write_all(text.as_bytes()).io_context(|| format!("write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_drops_loopback_resolvers_and_dns_replaces_them() {
        let host = "search lan\nnameserver 127.0.0.53\nnameserver 192.168.1.1\noptions edns0\n";
        assert_eq!(resolv_conf(host, &[]), "search lan\nnameserver 192.168.1.1\noptions edns0\n");
        assert_eq!(resolv_conf("nameserver 127.0.0.53\n", &[]), "nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
        assert_eq!(resolv_conf(host, &["1.1.1.1".parse().unwrap()]), "search lan\noptions edns0\nnameserver 1.1.1.1\n");
    }

    #[test]
    fn hosts_list_the_container_its_extra_hosts_and_its_peers() {
        let extra = [parse_add_host("db:10.0.0.9").unwrap()];
        let peers = [HostEntry { ip: "10.5.0.3".parse().unwrap(), names: vec!["web".into(), "abc".into()] }];
        let h = hosts("box", "app", &["10.5.0.2".parse().unwrap()], &extra, &peers);
        assert!(h.contains("10.0.0.9\tdb\n") && h.contains("10.5.0.2\tbox app\n") && h.contains("10.5.0.3\tweb abc\n"), "{h}");
        assert!(hosts("box", "box", &[], &[], &[]).contains("127.0.1.1\tbox\n"));
        assert_eq!(decode_entries(&encode_entries(&extra)), extra);
        assert!(parse_add_host("nohost").is_err());
    }
}
