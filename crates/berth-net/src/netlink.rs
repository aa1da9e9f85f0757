//! Links, addresses and routes through rtnetlink, synchronously (no async runtime): one
//! request, one acknowledgement. A socket belongs to the network namespace it was opened in;
//! `RouteSocket::in_netns` opens one inside a container's.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;

use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::error::{Error, IoContext, Result};

/// What a new veth pair looks like: the host end joins a bridge, the peer is created directly
/// inside the container's network namespace under its final name.
pub struct VethPair<'a> {
    /// Host-side name (≤ 15 bytes).
    pub host_name: &'a str,
    /// Name inside the container (`eth0`).
    pub peer_name: &'a str,
    /// An fd of the container's network namespace.
    pub peer_netns: RawFd,
    /// The bridge's index.
    pub bridge_index: u32,
    /// MTU of both ends.
    pub mtu: u32,
}

/// A NETLINK_ROUTE socket.
pub struct RouteSocket {
    socket: Socket,
    seq: u32,
}

impl RouteSocket {
    /// A socket in the caller's network namespace.
    pub fn open() -> Result<RouteSocket> {
        let mut socket = Socket::new(NETLINK_ROUTE).io_context(|| "open a netlink socket".into())?;
        socket.bind_auto().io_context(|| "bind a netlink socket".into())?;
        socket.connect(&SocketAddr::new(0, 0)).io_context(|| "connect a netlink socket".into())?;
        // Extended acks: the kernel says which attribute it refused.
        let _ = socket.set_ext_ack(true);
        Ok(RouteSocket { socket, seq: 0 })
    }

    /// A socket in the network namespace at `netns` (`/proc/<pid>/ns/net`): opened by a
    /// short-lived thread that joins the namespace; the socket keeps it, the process does not.
    pub fn in_netns(netns: &Path) -> Result<RouteSocket> {
        let file = std::fs::File::open(netns).io_context(|| format!("open {}", netns.display()))?;
        let handle = std::thread::spawn(move || -> Result<RouteSocket> {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::Io { context: "join the container's network namespace".into(), source: e.into() })?;
            RouteSocket::open()
        });
        handle.join().map_err(|_| Error::Invalid("the netns thread panicked".into()))?
    }

    fn request(&mut self, op: &dyn Fn() -> String, msg: RouteNetlinkMessage, flags: u16) -> Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket.send(&buf, 0).map_err(|source| Error::Netlink { op: op(), source })?;
        let mut replies = Vec::new();
        loop {
            let (data, _) = self.socket.recv_from_full().map_err(|source| Error::Netlink { op: op(), source })?;
            let mut offset = 0;
            while offset < data.len() {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[offset..]).map_err(|e| Error::Netlink {
                    op: op(),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
                })?;
                let len = reply.header.length as usize;
                if reply.header.sequence_number == self.seq {
                    match reply.payload {
                        NetlinkPayload::Error(e) => match e.code {
                            None => return Ok(replies),
                            Some(_) => return Err(Error::Netlink { op: op(), source: e.to_io() }),
                        },
                        NetlinkPayload::Done(_) => return Ok(replies),
                        NetlinkPayload::InnerMessage(m) => replies.push(m),
                        _ => {}
                    }
                }
                if len == 0 {
                    break;
                }
                offset += (len + 3) & !3;
            }
        }
    }

    /// The index of the link called `name`, if it exists.
    pub fn link_index(&mut self, name: &str) -> Result<Option<u32>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(&|| format!("find link {name:?}"), RouteNetlinkMessage::GetLink(msg), 0) {
            Ok(replies) => Ok(replies.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l.header.index),
                _ => None,
            })),
            Err(Error::Netlink { source, .. }) if source.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Create a bridge (up, with `mtu`); fails with EEXIST when it exists.
    pub fn create_bridge(&mut self, name: &str, mtu: u32) -> Result<u32> {
        let mut msg = LinkMessage::default();
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes.push(LinkAttribute::Mtu(mtu));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]));
        self.request(&|| format!("create bridge {name:?}"), RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)?;
        self.link_index(name)?.ok_or_else(|| Error::Invalid(format!("bridge {name:?} vanished after its creation")))
    }

    /// Create a veth pair: the host end up and enslaved to the bridge, the peer (down) in the
    /// container's namespace. One request.
    pub fn create_veth(&mut self, v: &VethPair) -> Result<()> {
        // The peer cannot be set up here: veth links the two ends only after configuring the
        // peer, and opening an unlinked end fails with ENOTCONN.
        let mut peer = LinkMessage::default();
        peer.attributes.push(LinkAttribute::IfName(v.peer_name.to_string()));
        peer.attributes.push(LinkAttribute::Mtu(v.mtu));
        peer.attributes.push(LinkAttribute::NetNsFd(v.peer_netns));
        let mut msg = LinkMessage::default();
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes.push(LinkAttribute::IfName(v.host_name.to_string()));
        msg.attributes.push(LinkAttribute::Mtu(v.mtu));
        msg.attributes.push(LinkAttribute::Controller(v.bridge_index));
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Veth), LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer)))]));
        self.request(
            &|| format!("create veth {:?} (peer {:?})", v.host_name, v.peer_name),
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }

    /// Bring the link `index` up.
    pub fn set_up(&mut self, index: u32) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        self.request(&|| format!("set link {index} up"), RouteNetlinkMessage::SetLink(msg), 0)?;
        Ok(())
    }

    /// Delete the link called `name`; absent is fine.
    pub fn delete_link(&mut self, name: &str) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(&|| format!("delete link {name:?}"), RouteNetlinkMessage::DelLink(msg), 0) {
            Err(Error::Netlink { source, .. }) if source.raw_os_error() == Some(libc::ENODEV) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Add `addr/prefix` to link `index` (EEXIST is fine: the bridge may already have it).
    pub fn add_address(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = prefix;
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Local(addr.into()));
        msg.attributes.push(AddressAttribute::Address(addr.into()));
        let bits = u32::from(addr) | (u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0));
        msg.attributes.push(AddressAttribute::Broadcast(Ipv4Addr::from(bits)));
        match self.request(
            &|| format!("add {addr}/{prefix} to link {index}"),
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Err(Error::Netlink { source, .. }) if source.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Add the default route via `gateway`.
    pub fn add_default_route(&mut self, gateway: Ipv4Addr) -> Result<()> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.table = RouteHeaderTable::MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = RouteScope::Universe;
        msg.header.kind = RouteType::Unicast;
        msg.attributes.push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        self.request(&|| format!("add the default route via {gateway}"), RouteNetlinkMessage::NewRoute(msg), NLM_F_CREATE | NLM_F_EXCL)?;
        Ok(())
    }
}

struct RouteHeaderTable;
impl RouteHeaderTable {
    const MAIN: u8 = netlink_packet_route::route::RouteHeader::RT_TABLE_MAIN;
}

/// The index of a link in the calling thread's namespace (one ioctl; no dump to parse).
pub fn host_link_index(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: if_nametoindex reads a NUL-terminated string and returns 0 when absent.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

/// The fd of a namespace file, kept open while a veth is created into it.
pub fn open_netns(path: &Path) -> Result<std::fs::File> {
    std::fs::File::open(path).io_context(|| format!("open {}", path.display()))
}

/// `fd.as_raw_fd()` for a namespace file.
pub fn raw(f: &std::fs::File) -> RawFd {
    f.as_raw_fd()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_link_has_no_index() {
        let mut s = RouteSocket::open().unwrap();
        assert_eq!(s.link_index("berth-nolink0").unwrap(), None);
        assert!(s.link_index("lo").unwrap().is_some());
        s.delete_link("berth-nolink0").unwrap();
    }
}
