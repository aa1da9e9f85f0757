//! The one error type of the runtime library.

use std::path::PathBuf;

/// Everything that can go wrong while creating or managing a container.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A container id that cannot be used as a directory name.
    #[error("invalid container id {0:?}: only letters, digits, '_', '-', '+' and '.' are allowed, and it may not be '.' or '..'")]
    InvalidId(String),
    /// `create` for an id that is already taken.
    #[error("container {0:?} already exists")]
    AlreadyExists(String),
    /// An operation on an id that does not exist.
    #[error("container {0:?} does not exist")]
    NotFound(String),
    /// An operation that the container's current status forbids.
    #[error("container {id:?}: {message}")]
    WrongState {
        /// The container.
        id: String,
        /// What was refused and why.
        message: String,
    },
    /// The bundle or its config.json cannot be used.
    #[error("bundle {path}: {message}")]
    Bundle {
        /// The bundle or config path.
        path: PathBuf,
        /// The cause.
        message: String,
    },
    /// The config asks for something that is invalid.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// The config asks for something berth-runtime does not implement yet.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A mount could not be set up.
    #[error("mount {destination}: {message}")]
    Mount {
        /// The mount's destination inside the container.
        destination: String,
        /// The cause.
        message: String,
    },
    /// A path inside the container root could not be resolved safely.
    #[error("path {path:?} in the container root: {message}")]
    UnsafePath {
        /// The path, relative to the root.
        path: String,
        /// The cause.
        message: String,
    },
    /// A hook failed.
    #[error("{phase} hook {path}: {message}")]
    Hook {
        /// Which hook phase.
        phase: String,
        /// The hook's path.
        path: String,
        /// The cause.
        message: String,
    },
    /// The container's init process reported a failure during setup.
    #[error("container init: {0}")]
    Init(String),
    /// A cgroup operation failed.
    #[error(transparent)]
    Cgroup(#[from] berth_cgroups::Error),
    /// A system call failed.
    #[error("{context}: {source}")]
    Sys {
        /// What was being done.
        context: String,
        /// The errno.
        source: nix::Error,
    },
    /// newuidmap / newgidmap is missing or refused to write a user namespace's id map.
    #[error("{helper}: {message}")]
    IdMapHelper {
        /// The helper program.
        helper: String,
        /// What was asked and why it failed.
        message: String,
    },
    /// An I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// The result type of the runtime library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach a description of what was being done to a failing syscall or I/O result.
pub trait Context<T> {
    /// Wrap the error with `context`.
    fn context(self, context: impl Into<String>) -> Result<T>;
    /// Wrap the error with a lazily built context.
    fn with_context<F: FnOnce() -> String>(self, f: F) -> Result<T>;
}

impl<T> Context<T> for Result<T, nix::Error> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|source| Error::Sys { context: context.into(), source })
    }
    fn with_context<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|source| Error::Sys { context: f(), source })
    }
}

impl<T> Context<T> for Result<T, std::io::Error> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|source| Error::Io { context: context.into(), source })
    }
    fn with_context<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|source| Error::Io { context: f(), source })
    }
}
