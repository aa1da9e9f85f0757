//! IPv4 subnets and the choice of a free address in one. The reservation itself is a row in
//! the state database (UNIQUE(network, ip)) written in an IMMEDIATE transaction, see
//! `state.rs`; this module only does the arithmetic.

use std::collections::HashSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use crate::error::{Error, Result};

/// An IPv4 subnet `a.b.c.d/len` (the address is the network address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    /// Network address.
    pub addr: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
}

impl Subnet {
    fn mask(&self) -> u32 {
        u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0)
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr)
    }

    /// Whether the two subnets share an address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }

    /// The first host address (the default gateway).
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) + 1)
    }

    /// The broadcast address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    /// Whether `ip` may be given to a container (inside, not network, broadcast or gateway).
    pub fn assignable(&self, ip: Ipv4Addr, gateway: Ipv4Addr) -> bool {
        self.contains(ip) && ip != self.addr && ip != self.broadcast() && ip != gateway
    }

    /// The lowest assignable address not in `taken`.
    pub fn first_free(&self, gateway: Ipv4Addr, taken: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
        self.next_free(gateway, taken, None)
    }

    /// The first assignable address not in `taken` after `last` (round the subnet).
    pub fn next_free(&self, gateway: Ipv4Addr, taken: &HashSet<Ipv4Addr>, last: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
        let start = u32::from(self.addr) + 1;
        let end = u32::from(self.broadcast());
        let from = last.filter(|l| self.contains(*l)).map(|l| u32::from(l) + 1).unwrap_or(start).clamp(start, end);
        (from..end).chain(start..from).map(Ipv4Addr::from).find(|ip| *ip != gateway && !taken.contains(ip))
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = Error;

    fn from_str(s: &str) -> Result<Subnet> {
        let bad = || Error::Invalid(format!("invalid subnet {s:?}: expected an IPv4 CIDR like 10.89.0.0/24"));
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&prefix) {
            return Err(Error::Invalid(format!("invalid subnet {s:?}: the prefix must be between 8 and 30")));
        }
        let sub = Subnet { addr, prefix };
        if u32::from(addr) & sub.mask() != u32::from(addr) {
            return Err(Error::Invalid(format!(
                "invalid subnet {s:?}: host bits are set (did you mean {}?)",
                Subnet { addr: Ipv4Addr::from(u32::from(addr) & sub.mask()), prefix }
            )));
        }
        Ok(sub)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_and_refuse_host_bits() {
        let s: Subnet = "10.89.3.0/24".parse().unwrap();
        assert_eq!(s.first_host(), Ipv4Addr::new(10, 89, 3, 1));
        assert_eq!(s.broadcast(), Ipv4Addr::new(10, 89, 3, 255));
        assert!("10.89.3.1/24".parse::<Subnet>().is_err());
        assert!("10.89.3.0".parse::<Subnet>().is_err());
        assert!("10.89.3.0/31".parse::<Subnet>().is_err());
        assert!(s.overlaps(&"10.89.0.0/16".parse().unwrap()));
        assert!(!s.overlaps(&"10.89.4.0/24".parse().unwrap()));
    }

    #[test]
    fn the_first_free_address_skips_gateway_and_taken_ones_and_runs_out() {
        let s: Subnet = "10.9.0.0/30".parse().unwrap();
        let gw = s.first_host();
        let mut taken = HashSet::new();
        assert_eq!(s.first_free(gw, &taken), Some(Ipv4Addr::new(10, 9, 0, 2)));
        taken.insert(Ipv4Addr::new(10, 9, 0, 2));
        assert_eq!(s.first_free(gw, &taken), None);
        assert!(!s.assignable(Ipv4Addr::new(10, 9, 0, 3), gw));
        let s: Subnet = "10.9.0.0/29".parse().unwrap();
        let none = HashSet::new();
        assert_eq!(s.next_free(gw, &none, Some(Ipv4Addr::new(10, 9, 0, 3))), Some(Ipv4Addr::new(10, 9, 0, 4)));
        assert_eq!(s.next_free(gw, &none, Some(Ipv4Addr::new(10, 9, 0, 6))), Some(Ipv4Addr::new(10, 9, 0, 2)));
    }
}
