//! The engine as a whole: what `system info` reports about the host and the engine's state,
//! and `system prune`, which removes what nothing uses (stopped containers, dangling image
//! data, unused anonymous volumes).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::Result;
use crate::run::Engine;

/// Containers by state, as docker counts them.
/// Serialized with docker's names (`Containers`, `ContainersRunning`…).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ContainerCounts {
    /// Every container.
    #[serde(rename = "Containers")]
    pub total: usize,
    /// Running (or restarting).
    #[serde(rename = "ContainersRunning")]
    pub running: usize,
    /// Paused.
    #[serde(rename = "ContainersPaused")]
    pub paused: usize,
    /// Created or exited.
    #[serde(rename = "ContainersStopped")]
    pub stopped: usize,
}

/// Kernel and runtime features the engine relies on or offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Features {
    /// The kernel filters syscalls (seccomp mode 2): the default profile applies.
    pub seccomp: bool,
    /// overlayfs is available (container root filesystems).
    pub overlay: bool,
    /// openat2(2) (paths resolved inside roots: mounts, volumes, cp).
    pub openat2: bool,
    /// pidfd_open(2) (race-free waits and signals).
    pub pidfd: bool,
    /// cgroup namespaces.
    pub cgroup_namespace: bool,
    /// Unprivileged user namespaces can be made (rootless mode).
    pub user_namespaces: bool,
    /// AppArmor is enabled on the host.
    pub apparmor: bool,
    /// SELinux is enabled on the host.
    pub selinux: bool,
}

/// `system info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SystemInfo {
    /// berth's version.
    pub server_version: String,
    /// `uname -r`.
    pub kernel_version: String,
    /// PRETTY_NAME of /etc/os-release.
    pub operating_system: String,
    /// Always "linux".
    #[serde(rename = "OSType")]
    pub os_type: String,
    /// The machine architecture (x86_64, aarch64…).
    pub architecture: String,
    /// Online CPUs.
    #[serde(rename = "NCPU")]
    pub ncpu: usize,
    /// Total memory in bytes.
    pub mem_total: u64,
    /// The host's name.
    pub name: String,
    /// "1" or "2", as docker reports it (2 only on a pure v2 host).
    pub cgroup_version: String,
    /// v1, v2 or hybrid.
    pub cgroup_layout: String,
    /// The controllers berth can use.
    pub cgroup_controllers: Vec<String>,
    /// Containers by state.
    #[serde(flatten)]
    pub containers: ContainerCounts,
    /// Distinct images (by id) in the store.
    pub images: usize,
    /// Volumes.
    pub volumes: usize,
    /// Always "overlay".
    pub driver: String,
    /// The storage root.
    pub root_dir: PathBuf,
    /// The runtime state root.
    pub run_root: PathBuf,
    /// The default runtime.
    pub default_runtime: String,
    /// Whether the engine runs without root.
    pub rootless: bool,
    /// Kernel and runtime features.
    pub features: Features,
    /// docker's SecurityOptions (name=seccomp,profile=builtin…).
    pub security_options: Vec<String>,
}

/// What `system prune` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    /// Ids of removed containers.
    pub containers: Vec<String>,
    /// Names of removed volumes.
    pub volumes: Vec<String>,
    /// Digests of removed blobs.
    pub blobs: Vec<String>,
    /// Chain ids of removed snapshots.
    pub snapshots: Vec<String>,
    /// Bytes freed (containers' writable layers, volumes, blobs).
    pub reclaimed: u64,
}

/// Bytes in a tree, symlinks not followed; what cannot be read counts as nothing.
fn disk_usage(path: &Path) -> u64 {
    let Ok(md) = std::fs::symlink_metadata(path) else { return 0 };
    if !md.is_dir() {
        return std::os::unix::fs::MetadataExt::blocks(&md) * 512;
    }
    let own = std::os::unix::fs::MetadataExt::blocks(&md) * 512;
    let children = std::fs::read_dir(path).map(|rd| rd.flatten().map(|e| disk_usage(&e.path())).sum()).unwrap_or(0);
    own + children
}

fn os_release() -> String {
    let text = std::fs::read_to_string("/etc/os-release").or_else(|_| std::fs::read_to_string("/usr/lib/os-release")).unwrap_or_default();
    text.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=")).map(|v| v.trim_matches('"').to_string()).unwrap_or_else(|| "Linux".into())
}

fn mem_total() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn kernel_features() -> Features {
    // Seccomp mode 2 is available when /proc shows the field (CONFIG_SECCOMP) and the
    // kernel accepts a filter query: prctl(PR_GET_SECCOMP) succeeds.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    // SAFETY: prctl with no pointer arguments.
    let seccomp = status.contains("Seccomp:") && unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) } >= 0;
    let overlay = std::fs::read_to_string("/proc/filesystems").unwrap_or_default().lines().any(|l| l.trim_end().ends_with("\toverlay"));
    let openat2 = berth_runtime::rootfs::safe_path::open_root(Path::new("/"))
        .ok()
        .and_then(|root| {
            berth_runtime::rootfs::safe_path::open_in_root_raw(std::os::fd::AsFd::as_fd(&root), Path::new("."), nix::fcntl::OFlag::O_PATH)
                .ok()
        })
        .is_some();
    // SAFETY: pidfd_open of our own pid; the fd is closed at once.
    let pidfd = unsafe {
        let fd = libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0);
        if fd >= 0 {
            libc::close(fd as i32);
        }
        fd >= 0
    };
    let max_userns = std::fs::read_to_string("/proc/sys/user/max_user_namespaces").ok().and_then(|s| s.trim().parse::<u64>().ok());
    let unpriv_clone = std::fs::read_to_string("/proc/sys/kernel/unprivileged_userns_clone").map_or(true, |s| s.trim() != "0");
    Features {
        seccomp,
        overlay,
        openat2,
        pidfd,
        cgroup_namespace: Path::new("/proc/self/ns/cgroup").exists(),
        user_namespaces: max_userns.is_some_and(|n| n > 0) && unpriv_clone,
        apparmor: berth_runtime::lsm::apparmor_enabled(),
        selinux: berth_runtime::lsm::selinux_enabled(),
    }
}

impl Engine {
    /// The storage root.
    pub fn root_dir(&self) -> &Path {
        &self.root
    }

    /// The runtime state root.
    pub fn run_root_dir(&self) -> &Path {
        &self.run_root
    }

    /// `system info`: the host, the cgroup layout, the engine's roots and counts, features.
    pub fn system_info(&self) -> Result<SystemInfo> {
        let mut counts = ContainerCounts::default();
        for c in self.containers()? {
            counts.total += 1;
            match c.state.as_str() {
                "running" | "restarting" => counts.running += 1,
                "paused" => counts.paused += 1,
                _ => counts.stopped += 1,
            }
        }
        let images: BTreeSet<String> = berth_image::images::list(self.store())?.into_iter().map(|n| n.image.id.to_string()).collect();
        let uts = nix::sys::utsname::uname().map_err(|e| crate::Error::Invalid(format!("uname: {e}")))?;
        let (cgroup_version, cgroup_layout, cgroup_controllers) = match berth_cgroups::Layout::host() {
            Ok(l) => {
                let (v, name) = match l.mode {
                    berth_cgroups::layout::Mode::V1 => ("1", "v1"),
                    berth_cgroups::layout::Mode::V2 => ("2", "v2"),
                    berth_cgroups::layout::Mode::Hybrid => ("1", "hybrid"),
                };
                let controllers = if l.mode == berth_cgroups::layout::Mode::V2 {
                    l.unified_controllers()
                } else {
                    l.v1.keys().filter(|k| !k.starts_with("name=")).cloned().collect()
                };
                (v.to_string(), name.to_string(), controllers)
            }
            Err(e) => {
                tracing::warn!("cgroup layout: {e}");
                (String::new(), "none".to_string(), Vec::new())
            }
        };
        let features = kernel_features();
        let mut security_options = Vec::new();
        if features.seccomp {
            security_options.push("name=seccomp,profile=builtin".to_string());
        }
        if features.apparmor {
            security_options.push("name=apparmor".to_string());
        }
        if features.selinux {
            security_options.push("name=selinux".to_string());
        }
        if features.cgroup_namespace && cgroup_version == "2" {
            security_options.push("name=cgroupns".to_string());
        }
        // SAFETY: geteuid cannot fail.
        let rootless = unsafe { libc::geteuid() } != 0;
        if rootless {
            security_options.push("name=rootless".to_string());
        }
        Ok(SystemInfo {
            server_version: env!("CARGO_PKG_VERSION").to_string(),
            kernel_version: uts.release().to_string_lossy().into_owned(),
            operating_system: os_release(),
            os_type: "linux".into(),
            architecture: uts.machine().to_string_lossy().into_owned(),
            ncpu: std::thread::available_parallelism().map_or(1, |n| n.get()),
            mem_total: mem_total(),
            name: uts.nodename().to_string_lossy().into_owned(),
            cgroup_version,
            cgroup_layout,
            cgroup_controllers,
            containers: counts,
            images: images.len(),
            volumes: self.volumes()?.len(),
            driver: "overlay".into(),
            root_dir: self.root.clone(),
            run_root: self.run_root.clone(),
            default_runtime: "berth-runtime (in-process)".into(),
            rootless,
            features,
            security_options,
        })
    }

    /// `system prune`: every stopped container (created or exited), then with `volumes` the
    /// anonymous volumes no container uses (docker's `--volumes`; `all_volumes`: named ones
    /// too), then blobs and snapshots no image or container needs.
    pub fn prune_system(&self, volumes: bool, all_volumes: bool) -> Result<PruneReport> {
        let mut report = PruneReport::default();
        for c in self.containers()? {
            if matches!(c.state.as_str(), "running" | "paused" | "restarting") {
                continue;
            }
            let size = disk_usage(&self.dirs(&c.id).base.join("upper"));
            match self.remove(&c.id, false, false) {
                Ok(()) => {
                    report.reclaimed += size;
                    report.containers.push(c.id);
                }
                // Started meanwhile: not stopped any more.
                Err(crate::Error::WrongState(_)) => {}
                Err(e) => return Err(e),
            }
        }
        if volumes {
            let sizes: std::collections::HashMap<String, u64> = self
                .volumes()?
                .into_iter()
                .filter(|v| v.containers.is_empty())
                .map(|v| (v.name.clone(), disk_usage(&v.mountpoint)))
                .collect();
            for name in self.prune_volumes(all_volumes)? {
                report.reclaimed += sizes.get(&name).copied().unwrap_or(0);
                report.volumes.push(name);
            }
        }
        let used = self.snapshots_in_use()?;
        let gc = berth_image::images::prune(self.store(), &self.root.join("layers"), &|chain| used.contains(&chain.to_string()))?;
        report.reclaimed += gc.blobs.bytes;
        report.blobs = gc.blobs.removed.iter().map(|d| d.to_string()).collect();
        report.snapshots = gc.snapshots.iter().map(|d| d.to_string()).collect();
        Ok(report)
    }
}

/// The runtime berth drives by default, with the OCI spec version it implements.
pub fn runtime_description() -> String {
    format!("berth-runtime {} (in-process), OCI {}", env!("CARGO_PKG_VERSION"), berth_runtime::spec::OCI_VERSION)
}

/// `uname -r`, or "unknown".
pub fn kernel_release() -> String {
    nix::sys::utsname::uname().map_or_else(|_| "unknown".into(), |u| u.release().to_string_lossy().into_owned())
}
