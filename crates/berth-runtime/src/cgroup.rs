//! The runtime's side of cgroups: the one place that talks to `berth-cgroups`.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use berth_cgroups::CgroupManager;
use oci_spec::runtime::LinuxResources;

use crate::error::{Error, Result};

/// A container's cgroup as the lifecycle operations use it.
pub struct ContainerCgroup {
    manager: Box<dyn CgroupManager>,
    // Rootless mode: device rules are dropped, as runc does (writing them needs privileges).
    rootless: bool,
    // Shared lock on the parents while this container's directories are being made.
    parents_guard: Option<std::fs::File>,
}

/// Serializes the removal of the shared `/berth` parent cgroups with the creation of
/// containers under them: creators hold it shared, the remover takes it exclusively or
/// leaves the parents for later (otherwise a parent removed between a creator's two
/// mkdirs comes back without its cpuset values, and joining it fails with ENOSPC).
const PARENTS_LOCK: &str = "/run/berth-cgroup-parents.lock";

fn parents_lock(exclusive_now: bool) -> Option<std::fs::File> {
    // Only root creates the shared parents.
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(PARENTS_LOCK).ok()?;
    let op = if exclusive_now { libc::LOCK_EX | libc::LOCK_NB } else { libc::LOCK_SH };
    loop {
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), op) } == 0 {
            return Some(f);
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return None;
        }
    }
}

impl ContainerCgroup {
    /// The cgroup a new container will get (`linux.cgroupsPath`, or `/berth/<id>`).
    pub fn for_new(cgroups_path: Option<&Path>, id: &str) -> Result<Self> {
        Ok(ContainerCgroup { manager: berth_cgroups::new_manager(cgroups_path, id)?, rootless: false, parents_guard: None })
    }

    /// The cgroup of a new rootless container: used only if it is delegated to us (every
    /// directory, or its parent, writable); otherwise none, which is an error if `resources`
    /// asks for limits (device rules are dropped in rootless mode).
    pub fn for_new_rootless(cgroups_path: Option<&Path>, id: &str, resources: Option<&LinuxResources>) -> Result<Self> {
        let manager = berth_cgroups::new_manager(cgroups_path, id)?;
        let paths = manager.paths();
        let mut missing: Vec<&PathBuf> = paths.values().filter(|d| !crate::rootless::delegated(d)).collect();
        missing.sort();
        if missing.is_empty() && !paths.is_empty() {
            return Ok(ContainerCgroup { manager, rootless: true, parents_guard: None });
        }
        let limits = resources.map(crate::rootless::requested_limits).unwrap_or_default();
        if !limits.is_empty() {
            let shown = missing.first().map(|d| d.display().to_string()).unwrap_or_default();
            return Err(Error::InvalidConfig(format!(
                "rootless container {id:?}: linux.resources asks for {} but its cgroup is not delegated \
                 to this user ({shown} and its parent are not writable), so the limits cannot be applied",
                limits.join(", ")
            )));
        }
        tracing::warn!("rootless: cgroups not delegated, resource limits ignored");
        Ok(ContainerCgroup { manager: berth_cgroups::from_paths(HashMap::new()), rootless: true, parents_guard: None })
    }

    /// Reopen a container's cgroup from its recorded paths.
    pub fn from_paths(paths: HashMap<String, PathBuf>) -> Self {
        ContainerCgroup { manager: berth_cgroups::from_paths(paths), rootless: false, parents_guard: None }
    }

    /// An fd for clone3's CLONE_INTO_CGROUP: the container's cgroup2 directory (the whole
    /// cgroup on v2, the unified part on hybrid hosts). Call after [`Self::create`].
    pub fn clone_into_fd(&self) -> Option<OwnedFd> {
        if let Some(fd) = self.manager.v2_dir_fd() {
            return Some(fd);
        }
        let dir = self.manager.paths().remove("")?;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(dir)
            .ok()
            .map(OwnedFd::from)
    }

    /// Create only what clone3's CLONE_INTO_CGROUP needs: the cgroup2 directory.
    pub fn create_for_clone(&mut self) -> Result<()> {
        if self.parents_guard.is_none() {
            self.parents_guard = parents_lock(false);
        }
        if let Some(dir) = self.manager.paths().remove("") {
            std::fs::create_dir_all(&dir).map_err(|e| Error::Io { context: format!("create cgroup {}", dir.display()), source: e })?;
        }
        Ok(())
    }

    /// Create the cgroup's directories without moving any process.
    pub fn create(&mut self) -> Result<()> {
        if self.parents_guard.is_none() {
            self.parents_guard = parents_lock(false);
        }
        let r = self.manager.apply(0);
        // The container's own directory now keeps its parents from being removed.
        self.parents_guard = None;
        Ok(r?)
    }

    /// The v1 `tasks` files through which a single-threaded process moves itself.
    pub fn v1_task_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> =
            self.manager.paths().into_iter().filter(|(k, _)| !k.is_empty()).map(|(_, d)| d.join("tasks")).collect();
        files.sort();
        files.dedup();
        files
    }

    /// Create the cgroup and move `pid` into it (a no-op for the pid if it is already there
    /// through CLONE_INTO_CGROUP).
    pub fn apply(&mut self, pid: i32) -> Result<()> {
        Ok(self.manager.apply(pid)?)
    }

    /// Write the config's resources.
    pub fn set(&self, r: &LinuxResources) -> Result<()> {
        if self.manager.paths().is_empty() {
            let limits = crate::rootless::requested_limits(r);
            if limits.is_empty() {
                return Ok(());
            }
            return Err(no_cgroup(&format!("set {}", limits.join(", "))));
        }
        if self.rootless && r.devices().is_some() {
            let mut without_devices = r.clone();
            without_devices.set_devices(None);
            return Ok(self.manager.set(&without_devices)?);
        }
        Ok(self.manager.set(r)?)
    }

    fn require(&self, what: &str) -> Result<()> {
        if self.manager.paths().is_empty() {
            return Err(no_cgroup(what));
        }
        Ok(())
    }

    /// The cgroup's directories, per controller ("" for the unified tree).
    pub fn paths(&self) -> HashMap<String, PathBuf> {
        self.manager.paths()
    }

    /// Every process of the container (its cgroup and sub-cgroups).
    pub fn pids(&self) -> Result<Vec<i32>> {
        self.require("list processes")?;
        Ok(self.manager.pids()?)
    }

    /// Freeze every process of the container (pause).
    pub fn freeze(&self) -> Result<()> {
        self.require("pause")?;
        Ok(self.manager.freeze()?)
    }

    /// Thaw a frozen container (resume).
    pub fn thaw(&self) -> Result<()> {
        self.require("resume")?;
        Ok(self.manager.thaw()?)
    }

    /// Usage statistics, shaped like the `data` of runc's stats event.
    pub fn stats(&self) -> Result<berth_cgroups::Stats> {
        self.require("stats")?;
        Ok(self.manager.stats()?)
    }

    /// How many processes the OOM killer has killed in the container's cgroup.
    pub fn oom_kill_count(&self) -> Result<u64> {
        self.require("count OOM kills")?;
        Ok(self.manager.oom_kill_count()?)
    }

    /// Signal every process in the cgroup; false if the container has no cgroup recorded.
    pub fn kill_all(&self, signal: i32) -> Result<bool> {
        if self.manager.paths().is_empty() {
            return Ok(false);
        }
        let sig = berth_cgroups::Signal::try_from(signal).map_err(|_| Error::InvalidConfig(format!("invalid signal {signal}")))?;
        self.manager.kill_all(sig)?;
        Ok(true)
    }

    /// Remove the cgroup, killing what remains, and the default `/berth` parent once empty.
    pub fn destroy(&self) -> Result<()> {
        self.manager.destroy()?;
        // Only when no container is being created (they hold the lock shared).
        let Some(_exclusive) = parents_lock(true) else { return Ok(()) };
        for p in self.manager.paths().values() {
            if let Some(parent) = p.parent().filter(|d| d.file_name().is_some_and(|n| n == "berth")) {
                // Fails harmlessly while other containers live under it.
                let _ = std::fs::remove_dir(parent);
            }
        }
        Ok(())
    }
}

fn no_cgroup(what: &str) -> Error {
    Error::Unsupported(format!("{what}: the container has no cgroup (created rootless without a delegated cgroup)"))
}

/// The resources to write: the config's, with the device rules completed as runc does —
/// after the config's own rules, allow the devices the runtime creates (the defaults and
/// `linux.devices`) and the pty devices, so that a deny-all config still gets a usable /dev.
pub fn effective_resources(linux: &oci_spec::runtime::Linux) -> Option<LinuxResources> {
    use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};
    let mut r = linux.resources().clone()?;
    if let Some(rules) = r.devices().clone() {
        let mut rules = rules;
        let allow = |typ: LinuxDeviceType, major: Option<i64>, minor: Option<i64>, access: &str| {
            let mut d = LinuxDeviceCgroup::default();
            d.set_allow(true);
            d.set_typ(Some(typ));
            d.set_major(major);
            d.set_minor(minor);
            d.set_access(Some(access.to_string()));
            d
        };
        // A fifo needs no device cgroup rule (and "p" is not a cgroup device type).
        for d in linux.devices().iter().flatten().filter(|d| d.typ() != LinuxDeviceType::P) {
            rules.push(allow(d.typ(), Some(d.major()), Some(d.minor()), "rwm"));
        }
        let c = LinuxDeviceType::C;
        rules.extend([
            allow(c, None, None, "m"),
            allow(LinuxDeviceType::B, None, None, "m"),
            allow(c, Some(1), Some(3), "rwm"), // null
            allow(c, Some(1), Some(5), "rwm"), // zero
            allow(c, Some(1), Some(7), "rwm"), // full
            allow(c, Some(1), Some(8), "rwm"), // random
            allow(c, Some(1), Some(9), "rwm"), // urandom
            allow(c, Some(5), Some(0), "rwm"), // tty
            allow(c, Some(5), Some(1), "rwm"), // console
            allow(c, Some(5), Some(2), "rwm"), // ptmx
            allow(c, Some(136), None, "rwm"),  // pts
        ]);
        r.set_devices(Some(rules));
    }
    Some(r)
}

/// Move the calling (single-threaded) process into the v1 cgroups by writing "0" to their
/// `tasks` files.
///
/// A process moving only itself this way does not take the kernel's global
/// cgroup_threadgroup_rwsem for writing, which a write of a pid to `cgroup.procs` does and
/// which waits for an RCU grace period — 5 to 20 ms here on a third of all starts. The v2
/// part is joined at clone time with CLONE_INTO_CGROUP for the same reason.
pub fn join_self_v1(task_files: &[PathBuf]) -> Result<()> {
    for f in task_files {
        std::fs::write(f, b"0").map_err(|e| Error::Io { context: format!("join cgroup {}", f.display()), source: e })?;
    }
    Ok(())
}
