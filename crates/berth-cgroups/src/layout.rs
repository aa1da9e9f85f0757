//! Detection of the host's cgroup layout (v1, v2 or hybrid), done once per process.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::error::{Error, Result};

/// Which cgroup versions the host uses for its controllers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Mode {
    /// Only v1 hierarchies (no cgroup2 mount).
    V1,
    /// Only the unified (cgroup2) hierarchy carries controllers.
    V2,
    /// v1 controller hierarchies plus a cgroup2 mount (usually /sys/fs/cgroup/unified).
    Hybrid,
}

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HierarchyMount {
    /// Where the hierarchy is mounted (e.g. /sys/fs/cgroup/memory).
    pub mount_point: PathBuf,
    /// Which cgroup of the hierarchy is at the mount point ("/" unless in a cgroup namespace or bind mount).
    pub root: PathBuf,
}

/// The host's cgroup mounts as seen from /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Layout {
    /// V1, V2 or Hybrid.
    pub mode: Mode,
    /// v1 controller name (and named hierarchies as "name=systemd") → its mount.
    pub v1: BTreeMap<String, HierarchyMount>,
    /// The cgroup2 mount, if any.
    pub unified: Option<HierarchyMount>,
}

static LAYOUT: OnceLock<Layout> = OnceLock::new();

/// Mount options of a v1 cgroup mount that are not controller names.
const NON_CONTROLLER_OPTIONS: &[&str] = &[
    "rw",
    "ro",
    "noprefix",
    "clone_children",
    "xattr",
    "cpuset_v2_mode",
    "nosuid",
    "nodev",
    "noexec",
    "relatime",
    "noatime",
    "favordynmods",
    "all",
    "none",
];

impl Layout {
    /// The host layout, parsed from /proc/self/mountinfo on first use and cached.
    pub fn host() -> Result<&'static Layout> {
        if let Some(l) = LAYOUT.get() {
            return Ok(l);
        }
        let text = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|source| Error::Io { path: PathBuf::from("/proc/self/mountinfo"), source })?;
        let layout = Layout::parse_mountinfo(&text)?;
        Ok(LAYOUT.get_or_init(|| layout))
    }

    /// Builds a layout from the text of a mountinfo file.
    pub fn parse_mountinfo(text: &str) -> Result<Layout> {
        let mut v1: BTreeMap<String, HierarchyMount> = BTreeMap::new();
        let mut unified = None;
        for line in text.lines() {
            let Some((pre, post)) = line.split_once(" - ") else { continue };
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            if pre.len() < 5 || post.len() < 3 {
                continue;
            }
            let mount = HierarchyMount { mount_point: PathBuf::from(unescape(pre[4])), root: PathBuf::from(unescape(pre[3])) };
            match post[0] {
                "cgroup2" if unified.is_none() => unified = Some(mount),
                "cgroup" => {
                    for opt in post[2].split(',') {
                        let is_controller = if let Some(name) = opt.strip_prefix("name=") {
                            !name.is_empty()
                        } else {
                            !opt.contains('=') && !NON_CONTROLLER_OPTIONS.contains(&opt)
                        };
                        if is_controller && !v1.contains_key(opt) {
                            v1.insert(opt.to_string(), mount.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        let has_v1_controllers = v1.keys().any(|k| !k.starts_with("name="));
        let mode = match (has_v1_controllers, unified.is_some()) {
            (true, true) => Mode::Hybrid,
            (true, false) => Mode::V1,
            (false, true) => Mode::V2,
            (false, false) => return Err(Error::NoCgroupMounts),
        };
        Ok(Layout { mode, v1, unified })
    }

    /// The v1 mount of `controller`, if mounted.
    pub fn v1_mount(&self, controller: &str) -> Option<&HierarchyMount> {
        self.v1.get(controller)
    }

    /// The controllers available in the unified hierarchy's root (cgroup.controllers).
    pub fn unified_controllers(&self) -> Vec<String> {
        self.unified
            .as_ref()
            .and_then(|u| std::fs::read_to_string(u.mount_point.join("cgroup.controllers")).ok())
            .map(|s| s.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
    }
}

/// Decodes the octal escapes (\040 for space…) mountinfo uses in paths.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = oct.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                if let Ok(v) = u8::try_from(v) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The path of the calling process's cgroup for `controller` ("" = unified), from /proc/self/cgroup.
pub(crate) fn own_cgroup(controller: &str) -> Result<PathBuf> {
    let file = Path::new("/proc/self/cgroup");
    let text = std::fs::read_to_string(file).map_err(|source| Error::Io { path: file.into(), source })?;
    own_cgroup_in(&text, controller).ok_or_else(|| Error::Invalid(format!("/proc/self/cgroup has no entry for controller {controller:?}")))
}

/// Finds `controller`'s path in the text of a /proc/<pid>/cgroup file.
pub(crate) fn own_cgroup_in(text: &str, controller: &str) -> Option<PathBuf> {
    text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        let hit = if controller.is_empty() { ctrls.is_empty() } else { ctrls.split(',').any(|c| c == controller) };
        hit.then(|| PathBuf::from(path))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = "\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/net_cls,net_prio rw - cgroup cgroup rw,net_cls,net_prio
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,release_agent=/lib/systemd/systemd-cgroups-agent,name=systemd
";

    #[test]
    fn parses_pure_v1_with_comounted_controllers() {
        let l = Layout::parse_mountinfo(V1).unwrap();
        assert_eq!(l.mode, Mode::V1);
        assert!(l.unified.is_none());
        let cpu = l.v1_mount("cpu").unwrap();
        assert_eq!(cpu.mount_point, Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(l.v1_mount("cpuacct"), Some(cpu));
        assert!(l.v1_mount("net_prio").is_some());
        assert!(l.v1_mount("name=systemd").is_some());
        assert!(l.v1_mount("xattr").is_none());
        assert!(l.v1_mount("rw").is_none());
        assert!(!l.v1.keys().any(|k| k.starts_with("release_agent")));
    }

    #[test]
    fn parses_pure_v2() {
        let text =
            "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
        let l = Layout::parse_mountinfo(text).unwrap();
        assert_eq!(l.mode, Mode::V2);
        assert_eq!(l.unified.unwrap().mount_point, Path::new("/sys/fs/cgroup"));
        assert!(l.v1.is_empty());
    }

    #[test]
    fn parses_hybrid_like_this_host() {
        let text = format!("{V1}41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n");
        let l = Layout::parse_mountinfo(&text).unwrap();
        assert_eq!(l.mode, Mode::Hybrid);
        assert_eq!(l.unified.unwrap().mount_point, Path::new("/sys/fs/cgroup/unified"));
    }

    #[test]
    fn v2_with_only_named_v1_hierarchy_is_v2() {
        let text = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n\
                    40 31 0:37 / /run/systemd rw - cgroup cgroup rw,name=systemd\n";
        assert_eq!(Layout::parse_mountinfo(text).unwrap().mode, Mode::V2);
    }

    #[test]
    fn no_cgroup_mount_is_an_error() {
        let text = "25 30 0:23 / /sys rw - sysfs sysfs rw\n";
        assert!(matches!(Layout::parse_mountinfo(text), Err(Error::NoCgroupMounts)));
    }

    #[test]
    fn escaped_mount_points_and_namespace_roots_are_decoded() {
        let text = "32 31 0:29 /ns\\040root /sys/fs/cg\\040v1/memory rw - cgroup cgroup rw,memory\n";
        let l = Layout::parse_mountinfo(text).unwrap();
        let m = l.v1_mount("memory").unwrap();
        assert_eq!(m.mount_point, Path::new("/sys/fs/cg v1/memory"));
        assert_eq!(m.root, Path::new("/ns root"));
    }

    #[test]
    fn own_cgroup_finds_comounted_and_unified_entries() {
        let text = "12:cpu,cpuacct:/a\n4:memory:/process_api/x\n1:name=systemd:/s\n0::/u/v\n";
        assert_eq!(own_cgroup_in(text, "cpuacct"), Some(PathBuf::from("/a")));
        assert_eq!(own_cgroup_in(text, "memory"), Some(PathBuf::from("/process_api/x")));
        assert_eq!(own_cgroup_in(text, "name=systemd"), Some(PathBuf::from("/s")));
        assert_eq!(own_cgroup_in(text, ""), Some(PathBuf::from("/u/v")));
        assert_eq!(own_cgroup_in(text, "pids"), None);
    }
}
