//! The runtime's side of cgroups: the one place that talks to `berth-cgroups`.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use crate::error::{Error, Result};

/// A container's cgroup as the lifecycle operations use it.
pub struct ContainerCgroup {
    paths: HashMap<String, PathBuf>,
}

impl ContainerCgroup {
    /// The cgroup a new container will get.
    pub fn for_new(_cgroups_path: Option<&Path>, _id: &str) -> Result<Self> {
        Ok(ContainerCgroup { paths: HashMap::new() })
    }

    /// Reopen a container's cgroup from its recorded paths.
    pub fn from_paths(paths: HashMap<String, PathBuf>) -> Self {
        ContainerCgroup { paths }
    }

    /// An fd for clone3's CLONE_INTO_CGROUP (pure cgroup v2 only).
    pub fn clone_into_fd(&self) -> Option<OwnedFd> {
        None
    }

    /// Create the cgroup and move `pid` into it.
    pub fn apply(&mut self, _pid: i32) -> Result<()> {
        Ok(())
    }

    /// Write the config's resources.
    pub fn set(&self, r: &LinuxResources) -> Result<()> {
        if *r != LinuxResources::default() {
            return Err(Error::Unsupported("linux.resources (cgroups) are not implemented yet".into()));
        }
        Ok(())
    }

    /// The recorded paths.
    pub fn paths(&self) -> HashMap<String, PathBuf> {
        self.paths.clone()
    }

    /// Signal every process in the cgroup.
    pub fn kill_all(&self, _signal: i32) -> Result<bool> {
        Ok(false)
    }

    /// Remove the cgroup (killing what remains).
    pub fn destroy(&self) -> Result<()> {
        Ok(())
    }
}
