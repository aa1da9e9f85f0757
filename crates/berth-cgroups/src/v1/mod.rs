//! The cgroup v1 manager (also used on hybrid hosts, where it joins the unified tree too).

mod resources;
mod stats;

pub(crate) use resources::set_cpuset;

use std::collections::{BTreeMap, HashMap};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;

use crate::cgroup_path::CgroupPath;
use crate::cgroupfs;
use crate::error::{Error, Result};
use crate::layout::{Layout, Mode};
use crate::stats::Stats;
use crate::CgroupManager;

/// Controllers whose directory lists the container's processes best, in order of preference.
const PIDS_SOURCE: &[&str] = &["freezer", "pids", "devices", "memory", "cpu", "cpuacct"];

/// How long freeze/thaw may take before we give up.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

/// A container's cgroups on a v1 (or hybrid) host: one directory per mounted hierarchy.
#[derive(Debug, Clone)]
pub struct V1Manager {
    /// Controller → directory; "" is the unified directory on hybrid hosts.
    paths: BTreeMap<String, PathBuf>,
}

impl V1Manager {
    /// Resolves `path` in every v1 hierarchy of `layout` (and in the unified tree when hybrid).
    pub fn from_layout(layout: &Layout, path: &CgroupPath) -> Result<V1Manager> {
        let mut paths = BTreeMap::new();
        for (ctrl, mount) in &layout.v1 {
            paths.insert(ctrl.clone(), path.resolve_v1(mount, ctrl)?);
        }
        if layout.mode == Mode::Hybrid {
            if let Some(u) = &layout.unified {
                paths.insert(String::new(), path.resolve_unified(u, false)?);
            }
        }
        Ok(V1Manager { paths })
    }

    /// Reopens saved paths (controller → directory).
    pub fn from_paths(paths: HashMap<String, PathBuf>) -> V1Manager {
        V1Manager { paths: paths.into_iter().collect() }
    }

    /// The directory of `controller`, if that hierarchy is mounted.
    pub fn dir(&self, controller: &str) -> Option<&Path> {
        self.paths.get(controller).map(PathBuf::as_path)
    }

    /// Each distinct directory once (co-mounted controllers share one), with a controller using it.
    fn unique_dirs(&self) -> Vec<(&str, &Path)> {
        let mut seen: Vec<(&str, &Path)> = Vec::new();
        for (ctrl, dir) in &self.paths {
            match seen.iter_mut().find(|(_, d)| *d == dir.as_path()) {
                // cpuset needs special creation; remember it if it shares the directory.
                Some(entry) if ctrl == "cpuset" => entry.0 = ctrl,
                Some(_) => {}
                None => seen.push((ctrl, dir)),
            }
        }
        seen
    }

    fn freezer(&self) -> Result<&Path> {
        self.dir("freezer").ok_or_else(|| Error::ControllerMissing { controller: "freezer".into(), resource: "freeze/thaw".into() })
    }

    fn set_freezer_state(&self, want: &str) -> Result<()> {
        let dir = self.freezer()?;
        cgroupfs::write(dir, "freezer.state", want)?;
        let mut tries = 0u32;
        let res = cgroupfs::wait_until(dir, &format!("freezer.state {want}"), FREEZE_TIMEOUT, || {
            tries += 1;
            // A task forking while we freeze can leave the group in FREEZING; asking again helps.
            if tries == 100 {
                tries = 0;
                cgroupfs::write(dir, "freezer.state", want)?;
            }
            Ok(cgroupfs::read(dir, "freezer.state")?.trim() == want)
        });
        if res.is_err() && want == "FROZEN" {
            // Never leave a half-frozen container behind.
            let _ = cgroupfs::write(dir, "freezer.state", "THAWED");
        }
        res
    }
}

/// Creates a cpuset cgroup, copying cpus/mems from the parent into each new level:
/// a v1 cpuset with empty cpus or mems refuses tasks.
fn create_cpuset_dir(dir: &Path) -> Result<()> {
    // Done only when the values are there too: a directory another creator has just made may
    // not have them yet, and a child copied from it would get none (joining fails: ENOSPC).
    let filled = |file: &str| cgroupfs::read(dir, file).map(|v| !v.trim().is_empty()).unwrap_or(true);
    if dir.exists() && filled("cpuset.cpus") && filled("cpuset.mems") {
        return Ok(());
    }
    let Some(parent) = dir.parent() else {
        return cgroupfs::create_dir_all(dir);
    };
    create_cpuset_dir(parent)?;
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(source) => return Err(Error::Io { path: dir.to_path_buf(), source }),
    }
    for file in ["cpuset.cpus", "cpuset.mems"] {
        if cgroupfs::read(dir, file)?.trim().is_empty() {
            let from_parent = cgroupfs::read(parent, file)?;
            cgroupfs::write(dir, file, from_parent.trim())?;
        }
    }
    Ok(())
}

/// Sends `sig` to each pid; processes that already left are fine.
pub(crate) fn signal_pids(pids: &[i32], sig: Signal) -> Result<()> {
    for &pid in pids {
        match kill(Pid::from_raw(pid), sig) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => {
                return Err(Error::Invalid(format!("kill pid {pid} with {sig}: {e}")));
            }
        }
    }
    Ok(())
}

impl CgroupManager for V1Manager {
    fn apply(&self, pid: i32) -> Result<()> {
        for (ctrl, dir) in self.unique_dirs() {
            if ctrl == "cpuset" {
                create_cpuset_dir(dir)?;
            } else {
                cgroupfs::create_dir_all(dir)?;
            }
            if pid > 0 {
                cgroupfs::add_pid(dir, pid)?;
            }
        }
        Ok(())
    }

    fn set(&self, r: &LinuxResources) -> Result<()> {
        resources::set(self, r)
    }

    fn paths(&self) -> HashMap<String, PathBuf> {
        self.paths.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    fn pids(&self) -> Result<Vec<i32>> {
        let dir = PIDS_SOURCE.iter().find_map(|c| self.dir(c)).or_else(|| self.paths.values().next().map(PathBuf::as_path));
        match dir {
            Some(d) => cgroupfs::all_pids(d),
            None => Ok(Vec::new()),
        }
    }

    fn freeze(&self) -> Result<()> {
        self.set_freezer_state("FROZEN")
    }

    fn thaw(&self) -> Result<()> {
        self.set_freezer_state("THAWED")
    }

    fn kill_all(&self, sig: Signal) -> Result<()> {
        // Freezing first stops forks from escaping between listing and signalling (as runc does).
        let frozen = match self.dir("freezer") {
            Some(d) if d.exists() => self.freeze().map(|_| true).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "could not freeze before signalling; signalling anyway");
                false
            }),
            _ => false,
        };
        let result = self.pids().and_then(|pids| signal_pids(&pids, sig));
        if frozen {
            self.thaw()?;
        }
        result
    }

    fn destroy(&self) -> Result<()> {
        let mut all_gone = true;
        for (_, dir) in self.unique_dirs() {
            all_gone &= cgroupfs::remove_if_empty(dir)?;
        }
        if all_gone {
            return Ok(());
        }
        if self.paths.values().any(|d| d.exists()) {
            if let Err(e) = self.kill_all(Signal::SIGKILL) {
                tracing::warn!(error = %e, "killing the cgroup's processes before removal failed");
            }
        }
        let mut first_err = None;
        for (_, dir) in self.unique_dirs() {
            if let Err(e) = cgroupfs::remove_tree(dir) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn stats(&self) -> Result<Stats> {
        stats::collect(self)
    }

    fn oom_kill_count(&self) -> Result<u64> {
        let dir = self
            .dir("memory")
            .ok_or_else(|| Error::ControllerMissing { controller: "memory".into(), resource: "OOM kill count".into() })?;
        Ok(cgroupfs::read_keyed(dir, "memory.oom_control", "oom_kill")?.unwrap_or(0))
    }

    fn v2_dir_fd(&self) -> Option<OwnedFd> {
        None
    }
}
