//! cgroup management for berth: detects the host's layout (v1, v2, hybrid) once and
//! applies the OCI `linux.resources` to a container's cgroup.
//!
//! Path rules follow runc's cgroupfs driver: an absolute `cgroupsPath` is placed under each
//! hierarchy's root, a relative one under the runtime's own cgroup (on pure v2 under its
//! parent), and none at all gives [`cgroup_path::DEFAULT_PARENT`]`/<container id>` = `/berth/<id>`.
//! Paths with `..` are refused before anything is created.

pub mod cgroup_path;
mod cgroupfs;
pub mod error;
pub mod layout;
pub mod resources;
pub mod stats;
pub mod v1;
pub mod v2;

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

pub use cgroup_path::CgroupPath;
pub use error::{Error, Result};
pub use layout::{HierarchyMount, Layout, Mode};
pub use nix::sys::signal::Signal;
pub use oci_spec::runtime::LinuxResources;
pub use stats::Stats;
pub use v1::V1Manager;
pub use v2::V2Manager;

/// How cgroups are driven: directly through cgroupfs, or through systemd (not implemented).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Driver {
    /// Write cgroupfs files directly (the only driver berth has).
    #[default]
    Cgroupfs,
    /// Ask systemd for a transient scope; always [`Error::SystemdDriverUnsupported`].
    Systemd,
}

/// A container's cgroup(s): one directory per v1 hierarchy, or one unified directory.
pub trait CgroupManager: Send + Sync + std::fmt::Debug {
    /// Creates the cgroup directories and moves `pid` into all of them (pid <= 0: create only).
    fn apply(&self, pid: i32) -> Result<()>;
    /// Writes the resource limits of `r`.
    fn set(&self, r: &LinuxResources) -> Result<()>;
    /// Controller name ("" for the unified tree) → cgroup directory, to be saved in the state.
    fn paths(&self) -> HashMap<String, PathBuf>;
    /// Every process in the cgroup and its sub-cgroups.
    fn pids(&self) -> Result<Vec<i32>>;
    /// Freezes all processes and waits until the kernel reports them frozen.
    fn freeze(&self) -> Result<()>;
    /// Thaws the cgroup and waits until it is running again.
    fn thaw(&self) -> Result<()>;
    /// Sends `sig` to every process of the cgroup without racing against forks.
    fn kill_all(&self, sig: Signal) -> Result<()>;
    /// Kills what is left and removes every directory; a missing cgroup is not an error.
    fn destroy(&self) -> Result<()>;
    /// Reads usage statistics.
    fn stats(&self) -> Result<Stats>;
    /// How many processes the OOM killer has killed in this cgroup.
    fn oom_kill_count(&self) -> Result<u64>;
    /// An O_PATH directory fd of the v2 leaf for clone3(CLONE_INTO_CGROUP); pure v2 only.
    fn v2_dir_fd(&self) -> Option<OwnedFd>;
}

/// The cgroupfs manager for a container, per the host layout and runc's path rules.
pub fn new_manager(cgroups_path: Option<&Path>, container_id: &str) -> Result<Box<dyn CgroupManager>> {
    new_manager_with_driver(Driver::Cgroupfs, cgroups_path, container_id)
}

/// Like [`new_manager`] with an explicit driver; [`Driver::Systemd`] is refused.
pub fn new_manager_with_driver(driver: Driver, cgroups_path: Option<&Path>, container_id: &str) -> Result<Box<dyn CgroupManager>> {
    if driver == Driver::Systemd {
        let shown = cgroups_path.map(|p| p.display().to_string()).unwrap_or_default();
        return Err(Error::SystemdDriverUnsupported(shown));
    }
    let path = CgroupPath::parse(cgroups_path, container_id)?;
    let layout = Layout::host()?;
    Ok(match layout.mode {
        Mode::V2 => Box::new(V2Manager::from_layout(layout, &path)?),
        Mode::V1 | Mode::Hybrid => Box::new(V1Manager::from_layout(layout, &path)?),
    })
}

/// Reopens a container's cgroups from saved [`CgroupManager::paths`].
pub fn from_paths(paths: HashMap<String, PathBuf>) -> Box<dyn CgroupManager> {
    match paths.get("") {
        Some(leaf) if paths.len() == 1 => Box::new(V2Manager::from_leaf(leaf.clone())),
        _ => Box::new(V1Manager::from_paths(paths)),
    }
}

/// Whether the container's cgroup is frozen (paused). `paths` maps a controller name
/// ("" for the unified tree) to the container's cgroup directory.
pub fn is_frozen(paths: &HashMap<String, PathBuf>) -> bool {
    if let Some(p) = paths.get("freezer") {
        if let Ok(s) = std::fs::read_to_string(p.join("freezer.state")) {
            return s.trim() == "FROZEN";
        }
    }
    if let Some(p) = paths.get("") {
        if let Ok(s) = std::fs::read_to_string(p.join("cgroup.freeze")) {
            return s.trim() == "1";
        }
    }
    false
}
