//! The one error type of berth-net.

/// Everything that can go wrong while managing networks.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The network state tables.
    #[error("network state database: {0}")]
    Db(#[from] rusqlite::Error),
    /// A netlink request the kernel refused.
    #[error("netlink: {op}: {source}")]
    Netlink {
        /// What was asked (`create bridge "berth0"`).
        op: String,
        /// The kernel's answer.
        source: std::io::Error,
    },
    /// nftables (libnftables) refused the ruleset.
    #[error("nftables: {0}")]
    Nft(String),
    /// A user error in a flag or a name.
    #[error("{0}")]
    Invalid(String),
    /// No network of that name.
    #[error("no such network: {0}")]
    NoSuchNetwork(String),
    /// The name, bridge or subnet is taken.
    #[error("network {0}: already exists")]
    NetworkExists(String),
    /// A network still has containers.
    #[error("network {0} is in use by {1} container(s)")]
    NetworkInUse(String, usize),
    /// The requested or every address is taken.
    #[error("network {network}: {reason}")]
    AddressUnavailable {
        /// The network.
        network: String,
        /// Why (`10.1.0.5 is already in use`, `no free address in 10.1.0.0/30`).
        reason: String,
    },
    /// The host port is taken (by berth or another program).
    #[error("host port {0} is already in use{1}")]
    PortInUse(String, String),
    /// An I/O or syscall failure.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// The result type of berth-net.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Add context to an I/O result.
pub(crate) trait IoContext<T> {
    fn io_context<F: FnOnce() -> String>(self, f: F) -> Result<T>;
}

impl<T> IoContext<T> for std::result::Result<T, std::io::Error> {
    fn io_context<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|source| Error::Io { context: f(), source })
    }
}
