//! berth-net: container networking for berth — bridge networks, an IPAM persisted in the
//! engine's database, veth pairs into the containers' namespaces (netlink), masquerade and
//! published ports (one nftables table, `inet berth`), and the hosts/resolv.conf files.
//!
//! The engine calls `Networks::attach` between the runtime's create and start (the
//! container's namespace exists, nothing runs in it yet) and `Networks::detach` when the
//! container exits or is removed. See `docs/ARCHITECTURE.md`, "Networking".

pub mod bridge;
pub mod error;
pub mod etc;
pub mod ipam;
pub mod netlink;
pub mod networks;
pub mod nft;
pub mod ports;
pub mod state;

pub use bridge::{AttachRequest, Attachment};
pub use error::{Error, Result};
pub use etc::HostEntry;
pub use ipam::Subnet;
pub use networks::{default_network_of, NetworkSpec, Networks, DEFAULT_NETWORK};
pub use ports::{PortMapping, Protocol};
pub use state::{Endpoint, NetworkRecord};
