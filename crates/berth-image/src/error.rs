//! The one error type of the image crate.

/// Everything that can go wrong with images.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An image reference that cannot be parsed.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A digest that does not match the content.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was being verified.
        what: String,
        /// The expected digest.
        expected: String,
        /// The computed digest.
        actual: String,
    },
    /// A layer that tries to escape its snapshot or is otherwise hostile.
    #[error("layer {layer}: entry {entry:?}: {reason}")]
    HostileLayer {
        /// The layer digest.
        layer: String,
        /// The tar entry name.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Something is not in the store.
    #[error("{0} not found")]
    NotFound(String),
    /// The registry answered with an error.
    #[error("registry {registry}: {message}")]
    Registry {
        /// Registry host.
        registry: String,
        /// What went wrong.
        message: String,
    },
    /// A registry operation on one repository failed.
    #[error("registry {registry}, repository {repository}: {message}")]
    RegistryRepository {
        /// Registry host (host[:port]).
        registry: String,
        /// Repository name within the registry.
        repository: String,
        /// The operation and its cause.
        message: String,
    },
    /// An index has no manifest for the wanted platform.
    #[error("{reference}: no manifest for platform {wanted}; available: {}", available.join(", "))]
    NoMatchingPlatform {
        /// The image that was resolved.
        reference: String,
        /// The platform asked for.
        wanted: String,
        /// The platforms the index offers.
        available: Vec<String>,
    },
    /// Content whose size differs from its descriptor.
    #[error("size mismatch for {what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// What was being verified.
        what: String,
        /// The size the descriptor gives.
        expected: u64,
        /// The size received.
        actual: u64,
    },
    /// Malformed JSON or an unsupported media type.
    #[error("{what}: {message}")]
    Format {
        /// The document.
        what: String,
        /// The cause.
        message: String,
    },
    /// An I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// The result type of the image crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Add context to an I/O result.
pub trait IoContext<T> {
    /// Wrap the error with a lazily built description of what was being done.
    fn io_context<F: FnOnce() -> String>(self, f: F) -> Result<T>;
}

impl<T> IoContext<T> for std::result::Result<T, std::io::Error> {
    fn io_context<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|source| Error::Io { context: f(), source })
    }
}
