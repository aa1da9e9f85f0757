//! berth-engine: the daemonless container engine behind `berth run`.
//!
//! It owns the container records (an embedded SQLite database), the containers' root
//! filesystems (overlays of the image snapshots), the runtime spec generated from the image
//! and the user's flags, and drives the runtime in-process. See `docs/ARCHITECTURE.md`.

pub mod db;
pub mod error;
pub mod image_rootfs;
pub mod network;
pub mod overlay;
pub mod run;
pub mod specgen;
pub mod user;

pub use error::{Error, Result};

/// Protect this binary against overwrite from a container (CVE-2019-5736) before anything
/// else: the engine forks containers from its own process. Re-executes the process unless
/// the binary is already sealed (immutable, or on a read-only overlay); call it first.
pub fn seal_binary() -> Result<()> {
    Ok(berth_runtime::exe_seal::ensure_sealed()?)
}
pub use run::Engine;
pub use network::NetworkInfo;
pub use specgen::{ContainerOptions, NetworkMode};
