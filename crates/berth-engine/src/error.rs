//! The one error type of the engine.

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An image problem (resolve, unpack, store).
    #[error(transparent)]
    Image(#[from] berth_image::Error),
    /// A runtime problem (create, start, delete).
    #[error(transparent)]
    Runtime(#[from] berth_runtime::Error),
    /// Networking (berth-net).
    #[error(transparent)]
    Net(#[from] berth_net::Error),
    /// The state database.
    #[error("state database: {0}")]
    Db(#[from] rusqlite::Error),
    /// A user error in the options or the image config.
    #[error("{0}")]
    Invalid(String),
    /// No such container.
    #[error("no such container: {0}")]
    NoSuchContainer(String),
    /// The container's process could not be started (the runtime's message).
    #[error("{0}")]
    StartFailed(String),
    /// The container is not in a state the operation accepts.
    #[error("{0}")]
    WrongState(String),
    /// A name already in use.
    #[error("the container name {0:?} is already in use")]
    NameInUse(String),
    /// An I/O or syscall failure.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// The result type of the engine.
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
