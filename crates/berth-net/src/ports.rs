//! Published ports: the `-p` syntax (docker's), and whether a host port is free.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// tcp or udp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// `tcp` / `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    /// Parse `tcp` / `udp`.
    pub fn parse(s: &str) -> Result<Protocol> {
        match s {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            other => Err(Error::Invalid(format!("unsupported protocol {other:?}: tcp or udp"))),
        }
    }
}

/// One host port forwarded to one container port. `host_port` 0 means "any free port",
/// resolved when the container is attached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// The host address (0.0.0.0: every address of the host).
    pub host_ip: Ipv4Addr,
    /// The host port (0 until chosen).
    pub host_port: u16,
    /// The container port.
    pub container_port: u16,
    /// tcp or udp.
    pub protocol: Protocol,
}

impl std::fmt::Display for PortMapping {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{}/{} -> {}:{}", self.container_port, self.protocol.as_str(), self.host_ip, self.host_port)
    }
}

fn port_range(s: &str, what: &str, spec: &str) -> Result<(u16, u16)> {
    let bad = || Error::Invalid(format!("-p {spec:?}: invalid {what} {s:?}"));
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (a.parse::<u16>().map_err(|_| bad())?, b.parse::<u16>().map_err(|_| bad())?),
        None => {
            let p = s.parse::<u16>().map_err(|_| bad())?;
            (p, p)
        }
    };
    if a == 0 || b < a {
        return Err(bad());
    }
    Ok((a, b))
}

impl PortMapping {
    /// Parse one `-p`: `[IP:][HOSTPORT[-END]:]CTRPORT[-END][/tcp|/udp]`. Ranges give one
    /// mapping per port; a missing host port is chosen later.
    pub fn parse(spec: &str) -> Result<Vec<PortMapping>> {
        let (body, proto) = match spec.rsplit_once('/') {
            Some((b, p)) => (b, Protocol::parse(p)?),
            None => (spec, Protocol::Tcp),
        };
        let parts: Vec<&str> = body.split(':').collect();
        let (ip, host, ctr) = match parts.as_slice() {
            [c] => (None, None, *c),
            [h, c] => (None, Some(*h), *c),
            [ip, h, c] => (Some(*ip), if h.is_empty() { None } else { Some(*h) }, *c),
            _ => return Err(Error::Invalid(format!("-p {spec:?}: expected [IP:][HOSTPORT:]CONTAINERPORT[/PROTOCOL]"))),
        };
        let host_ip = match ip {
            None | Some("") => Ipv4Addr::UNSPECIFIED,
            Some(ip) => ip.parse().map_err(|_| Error::Invalid(format!("-p {spec:?}: invalid host IPv4 address {ip:?}")))?,
        };
        let (c0, c1) = port_range(ctr, "container port", spec)?;
        let hosts: Vec<u16> = match host {
            None => vec![0; usize::from(c1 - c0) + 1],
            Some(h) => {
                let (h0, h1) = port_range(h, "host port", spec)?;
                if h1 - h0 != c1 - c0 {
                    return Err(Error::Invalid(format!("-p {spec:?}: the host and container ranges differ in length")));
                }
                (h0..=h1).collect()
            }
        };
        Ok((c0..=c1).zip(hosts).map(|(c, h)| PortMapping { host_ip, host_port: h, container_port: c, protocol: proto }).collect())
    }

    /// Fail with a clear error when another program holds the host port; choose one when 0.
    /// berth's own mappings are refused by the database (UNIQUE(protocol, host_port)).
    pub fn claim_host_port(&mut self) -> Result<()> {
        let addr = SocketAddrV4::new(self.host_ip, self.host_port);
        let taken = |e: std::io::Error| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                Error::PortInUse(
                    format!("{}:{}/{}", self.host_ip, self.host_port, self.protocol.as_str()),
                    " (another program listens on it)".into(),
                )
            } else {
                Error::Io { context: format!("check host port {addr}"), source: e }
            }
        };
        // The socket is closed at once: the kernel's DNAT needs no listener. Binding tells
        // whether someone else listens there, and with port 0 picks a free port.
        let port = match self.protocol {
            Protocol::Tcp => TcpListener::bind(addr).map_err(taken)?.local_addr().map_err(taken)?.port(),
            Protocol::Udp => UdpSocket::bind(addr).map_err(taken)?.local_addr().map_err(taken)?.port(),
        };
        self.host_port = port;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specs_parse_like_docker() {
        let m = PortMapping::parse("8080:80").unwrap();
        assert_eq!(m, vec![PortMapping { host_ip: Ipv4Addr::UNSPECIFIED, host_port: 8080, container_port: 80, protocol: Protocol::Tcp }]);
        let m = PortMapping::parse("127.0.0.1:5353:53/udp").unwrap();
        assert_eq!((m[0].host_ip, m[0].protocol), (Ipv4Addr::LOCALHOST, Protocol::Udp));
        let m = PortMapping::parse("9000-9002:80-82").unwrap();
        assert_eq!(m.iter().map(|p| (p.host_port, p.container_port)).collect::<Vec<_>>(), [(9000, 80), (9001, 81), (9002, 82)]);
        assert_eq!(PortMapping::parse("80").unwrap()[0].host_port, 0);
        assert_eq!(PortMapping::parse("127.0.0.1::80").unwrap()[0].host_port, 0);
        for bad in ["", "x:80", "80/sctp", "9000-9001:80", "1:2:3:4", "0:80", "70000"] {
            assert!(PortMapping::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_port_held_by_another_program_is_refused_and_port_zero_picks_one() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let mut m = PortMapping { host_ip: Ipv4Addr::UNSPECIFIED, host_port: port, container_port: 80, protocol: Protocol::Tcp };
        assert!(matches!(m.claim_host_port(), Err(Error::PortInUse(..))));
        let mut m = PortMapping { host_port: 0, ..m };
        m.claim_host_port().unwrap();
        assert_ne!(m.host_port, 0);
    }
}
