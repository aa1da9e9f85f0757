//! The crate's one error type.

use std::path::PathBuf;

/// Result alias of the cgroup crate.
pub type Result<T> = std::result::Result<T, Error>;

/// The one error type of the cgroup crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A cgroup file or directory could not be created, opened or removed.
    #[error("cgroup {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The request is invalid.
    #[error("cgroup: {0}")]
    Invalid(String),
    /// Writing a value to a cgroup file failed.
    #[error("cgroup {dir}: write {file}={value}: {source}")]
    Write {
        /// The cgroup directory.
        dir: PathBuf,
        /// The file name inside `dir`.
        file: String,
        /// The value that was written.
        value: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Reading a cgroup file failed.
    #[error("cgroup {dir}: read {file}: {source}")]
    Read {
        /// The cgroup directory.
        dir: PathBuf,
        /// The file name inside `dir`.
        file: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A cgroup file held something we could not parse.
    #[error("cgroup {dir}: parse {file}: {reason}")]
    Parse {
        /// The cgroup directory.
        dir: PathBuf,
        /// The file name inside `dir`.
        file: String,
        /// What was wrong.
        reason: String,
    },
    /// A resource value of the spec is out of range or malformed.
    #[error("cgroup: invalid value {value:?} for {file}: {reason}")]
    InvalidValue {
        /// The cgroup file (or spec field) the value is meant for.
        file: String,
        /// The rejected value.
        value: String,
        /// Why it is rejected.
        reason: String,
    },
    /// The cgroups path of the spec is not acceptable.
    #[error("cgroup path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// Why it is rejected.
        reason: String,
    },
    /// The requested feature does not exist on this cgroup version or host.
    #[error("cgroup: {0} is not supported")]
    Unsupported(String),
    /// The systemd cgroup driver was asked for; berth only has the cgroupfs driver.
    #[error("cgroup: the systemd cgroup driver is not supported (path {0:?}); use the cgroupfs driver with a path like /berth/<id>")]
    SystemdDriverUnsupported(String),
    /// A resource is set but its controller is not mounted / enabled.
    #[error("cgroup: {resource} is set but the {controller} controller is not available")]
    ControllerMissing {
        /// The controller name (e.g. "hugetlb").
        controller: String,
        /// The resource of the spec that needs it.
        resource: String,
    },
    /// A memory limit lower than the current usage was refused (checkBeforeUpdate).
    #[error("cgroup {dir}: memory limit {limit} is below the current usage {usage}")]
    LimitBelowUsage {
        /// The memory cgroup directory.
        dir: PathBuf,
        /// The requested limit.
        limit: i64,
        /// The usage read from the cgroup.
        usage: u64,
    },
    /// Waiting for a state change (freeze, thaw, removal) took too long.
    #[error("cgroup {dir}: timed out waiting for {what}")]
    Timeout {
        /// The cgroup directory.
        dir: PathBuf,
        /// What we were waiting for.
        what: String,
    },
    /// No cgroup filesystem is mounted on this host.
    #[error("cgroup: no cgroup filesystem found in /proc/self/mountinfo")]
    NoCgroupMounts,
}
