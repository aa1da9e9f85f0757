//! berth-runtime: an OCI runtime library.
//!
//! It creates, starts, signals and deletes containers from OCI bundles, following the
//! runtime specification's lifecycle. The `berth-runtime` binary is a thin runc-compatible
//! command line over this library; the `berth` engine links it in-process.
//!
//! Process model (see `docs/ARCHITECTURE.md`): the calling process clones the container's
//! init once with all the new namespaces; parent and init talk over a socketpair with the
//! typed messages of [`sync`]. The init sets up the root filesystem and the process, reports
//! `Ready`, and blocks on the exec fifo until `start`.

mod cgroup;
pub mod console;
pub mod container;
pub mod error;
pub mod exe_seal;
pub mod exec;
pub mod hooks;
mod init;
pub mod lsm;
pub mod manage;
pub mod namespaces;
pub mod process;
pub mod rootfs;
pub mod rootless;
pub mod seccomp;
pub mod signals;
pub mod spec;
mod spec_template;
pub mod state;
mod sync;
pub mod sysctl;
pub mod time;
pub mod tty_relay;

pub use container::{CreateOptions, Runtime};
pub use error::{Error, Result};
