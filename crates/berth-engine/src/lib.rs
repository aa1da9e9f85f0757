//! berth-engine: the daemonless container engine behind `berth run`.
//!
//! It owns the container records (an embedded SQLite database), the containers' root
//! filesystems (overlays of the image snapshots), the runtime spec generated from the image
//! and the user's flags, and drives the runtime in-process. See `docs/ARCHITECTURE.md`.

pub mod backend;
pub mod capabilities;
pub mod copy;
pub mod db;
pub mod devices;
pub mod env_file;
pub mod error;
pub mod exec;
pub mod image_rootfs;
pub mod init_binary;
pub mod lifecycle;
pub mod logs;
pub mod monitor;
pub mod mount_request;
pub mod network;
pub mod overlay;
pub mod run;
pub mod seccomp_profile;
pub mod security_opt;
pub mod settings;
pub mod specgen;
pub mod sysctls;
pub mod system;
pub mod ulimits;
pub mod user;
pub mod volumes;

pub use error::{Error, Result};

/// Protect this binary against overwrite from a container (CVE-2019-5736) before anything
/// else: the engine forks containers from its own process. Re-executes the process unless
/// the binary is already sealed (immutable, or on a read-only overlay); call it first.
pub fn seal_binary() -> Result<()> {
    init_binary::remember_location();
    Ok(berth_runtime::exe_seal::ensure_sealed()?)
}
/// A signal by name (with or without SIG) or number, as runc and docker accept them.
pub fn signal_number(s: &str) -> Result<i32> {
    berth_runtime::signals::parse(s).map_err(Error::Invalid)
}
/// Seconds and nanoseconds since the epoch as RFC 3339 UTC, as the logs record time.
pub fn format_time(secs: i64, nanos: u32) -> String {
    berth_runtime::time::format_rfc3339(secs, nanos)
}
pub use copy::CopyOptions;
pub use mount_request::MountRequest;
pub use network::NetworkInfo;
pub use run::Engine;
pub use settings::{ContainerSettings, LogDriver, RestartPolicy};
pub use specgen::{ContainerOptions, NetworkMode};
pub use volumes::VolumeInfo;
