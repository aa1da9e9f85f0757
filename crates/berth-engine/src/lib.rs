//! berth-engine: the daemonless container engine behind `berth run`.
//!
//! It owns the container records (an embedded SQLite database), the containers' root
//! filesystems (overlays of the image snapshots), the runtime spec generated from the image
//! and the user's flags, and drives the runtime in-process. See `docs/ARCHITECTURE.md`.

pub mod db;
pub mod error;
pub mod image_rootfs;
pub mod overlay;
pub mod run;
pub mod specgen;
pub mod user;

pub use error::{Error, Result};
pub use run::Engine;
pub use specgen::{ContainerOptions, NetworkMode};
