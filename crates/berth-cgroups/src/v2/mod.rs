//! The cgroup v2 (unified) manager.

pub mod devices_bpf;
mod resources;
mod stats;

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use oci_spec::runtime::LinuxResources;

use crate::cgroup_path::CgroupPath;
use crate::cgroupfs;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::stats::Stats;
use crate::v1::signal_pids;
use crate::CgroupManager;

/// How long freeze/thaw may take before we give up.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

/// A container's cgroup on a pure v2 host: one leaf directory in the unified tree.
#[derive(Debug, Clone)]
pub struct V2Manager {
    /// The unified mount point; controllers are enabled on the way from here to the leaf.
    root: PathBuf,
    /// The container's cgroup directory.
    leaf: PathBuf,
}

impl V2Manager {
    /// Resolves `path` in the unified mount of `layout`.
    pub fn from_layout(layout: &Layout, path: &CgroupPath) -> Result<V2Manager> {
        let mount = layout.unified.as_ref().ok_or(Error::NoCgroupMounts)?;
        Ok(V2Manager { root: mount.mount_point.clone(), leaf: path.resolve_unified(mount, true)? })
    }

    /// Reopens a saved leaf directory.
    pub fn from_leaf(leaf: PathBuf) -> V2Manager {
        let root = Layout::host()
            .ok()
            .and_then(|l| l.unified.as_ref())
            .map(|u| u.mount_point.clone())
            .filter(|r| leaf.starts_with(r))
            .or_else(|| leaf.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("/"));
        V2Manager { root, leaf }
    }

    /// A manager for `leaf` below `root` (a cgroup2 mount, or a fake tree in tests).
    pub fn new(root: PathBuf, leaf: PathBuf) -> V2Manager {
        V2Manager { root, leaf }
    }

    /// The container's cgroup directory.
    pub fn leaf(&self) -> &Path {
        &self.leaf
    }

    /// Creates the leaf, enabling every available controller in each ancestor's subtree_control.
    pub fn create(&self) -> Result<()> {
        let rel = self.leaf.strip_prefix(&self.root).map_err(|_| Error::InvalidPath {
            path: self.leaf.display().to_string(),
            reason: format!("not below the cgroup2 mount {}", self.root.display()),
        })?;
        let wanted: Vec<String> =
            cgroupfs::read_opt(&self.root, "cgroup.controllers")?.unwrap_or_default().split_whitespace().map(|c| format!("+{c}")).collect();
        let mut current = self.root.clone();
        for component in rel.components() {
            if !wanted.is_empty() {
                enable_controllers(&current, &wanted);
            }
            current.push(component);
            match std::fs::create_dir(&current) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(source) => return Err(Error::Io { path: current, source }),
            }
        }
        Ok(())
    }

    fn set_frozen(&self, frozen: bool) -> Result<()> {
        let want = if frozen { "1" } else { "0" };
        if !self.leaf.join("cgroup.freeze").exists() {
            return Err(Error::Unsupported(format!("freezing {}: no cgroup.freeze (Linux < 5.2?)", self.leaf.display())));
        }
        cgroupfs::write(&self.leaf, "cgroup.freeze", want)?;
        let res = cgroupfs::wait_until(&self.leaf, &format!("cgroup.events frozen {want}"), FREEZE_TIMEOUT, || {
            Ok(cgroupfs::read_keyed(&self.leaf, "cgroup.events", "frozen")? == Some(u64::from(frozen)))
        });
        if res.is_err() && frozen {
            let _ = cgroupfs::write(&self.leaf, "cgroup.freeze", "0");
        }
        res
    }
}

/// Enables `wanted` ("+cpu" …) in `dir`'s subtree_control: all at once, else one by one.
/// Failures are not fatal here: the write of a limit that needs a missing controller reports them.
fn enable_controllers(dir: &Path, wanted: &[String]) {
    if cgroupfs::write_raw(dir, "cgroup.subtree_control", &wanted.join(" ")).is_ok() {
        return;
    }
    for c in wanted {
        if let Err(e) = cgroupfs::write_raw(dir, "cgroup.subtree_control", c) {
            tracing::debug!(dir = %dir.display(), controller = %c, error = %e, "controller not enabled");
        }
    }
}

impl CgroupManager for V2Manager {
    fn apply(&self, pid: i32) -> Result<()> {
        self.create()?;
        if pid > 0 {
            cgroupfs::add_pid(&self.leaf, pid)?;
        }
        Ok(())
    }

    fn set(&self, r: &LinuxResources) -> Result<()> {
        resources::set(&self.leaf, r)
    }

    fn paths(&self) -> HashMap<String, PathBuf> {
        HashMap::from([(String::new(), self.leaf.clone())])
    }

    fn pids(&self) -> Result<Vec<i32>> {
        cgroupfs::all_pids(&self.leaf)
    }

    fn freeze(&self) -> Result<()> {
        self.set_frozen(true)
    }

    fn thaw(&self) -> Result<()> {
        self.set_frozen(false)
    }

    fn kill_all(&self, sig: Signal) -> Result<()> {
        if !self.leaf.exists() {
            return Ok(());
        }
        // cgroup.kill (Linux 5.14) kills the whole subtree atomically, forks included.
        if sig == Signal::SIGKILL && self.leaf.join("cgroup.kill").exists() {
            return cgroupfs::write(&self.leaf, "cgroup.kill", "1");
        }
        let frozen = self.freeze().map(|_| true).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not freeze before signalling; signalling anyway");
            false
        });
        let result = self.pids().and_then(|pids| signal_pids(&pids, sig));
        if frozen {
            self.thaw()?;
        }
        result
    }

    fn destroy(&self) -> Result<()> {
        if cgroupfs::remove_if_empty(&self.leaf)? {
            return Ok(());
        }
        if self.leaf.exists() {
            if let Err(e) = self.kill_all(Signal::SIGKILL) {
                tracing::warn!(error = %e, "killing the cgroup's processes before removal failed");
            }
        }
        cgroupfs::remove_tree(&self.leaf)
    }

    fn stats(&self) -> Result<Stats> {
        stats::collect(&self.leaf)
    }

    fn oom_kill_count(&self) -> Result<u64> {
        Ok(cgroupfs::read_keyed(&self.leaf, "memory.events", "oom_kill")?.unwrap_or(0))
    }

    fn v2_dir_fd(&self) -> Option<OwnedFd> {
        if let Err(e) = self.create() {
            tracing::warn!(error = %e, "cannot create the v2 cgroup for CLONE_INTO_CGROUP");
            return None;
        }
        let opened = OpenOptions::new().read(true).custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC).open(&self.leaf);
        match opened {
            Ok(f) => Some(OwnedFd::from(f)),
            Err(e) => {
                tracing::warn!(dir = %self.leaf.display(), error = %e, "cannot open the v2 cgroup");
                None
            }
        }
    }
}
