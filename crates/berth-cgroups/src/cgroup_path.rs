//! The spec's `linux.cgroupsPath`: validation and resolution per hierarchy (runc's cgroupfs rules).

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::layout::{own_cgroup, HierarchyMount};

/// The parent used when the spec gives no cgroups path: `/berth/<container id>`.
pub const DEFAULT_PARENT: &str = "/berth";

/// A validated cgroups path: absolute (under each hierarchy's root) or relative (under our own cgroup).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupPath {
    /// The path without `.` components; never contains `..`.
    inner: PathBuf,
}

impl CgroupPath {
    /// Validates the spec's path; `None` or empty gives `/berth/<container_id>`.
    pub fn parse(path: Option<&Path>, container_id: &str) -> Result<CgroupPath> {
        let given = path.filter(|p| !p.as_os_str().is_empty());
        let Some(p) = given else {
            if container_id.is_empty() || container_id.contains('/') || container_id == ".." || container_id == "." {
                return Err(Error::InvalidPath {
                    path: container_id.to_string(),
                    reason: "a container id used as a cgroup name must be a single path component".into(),
                });
            }
            return Ok(CgroupPath { inner: Path::new(DEFAULT_PARENT).join(container_id) });
        };
        let text = p.to_string_lossy();
        if !text.contains('/') && text.matches(':').count() == 2 {
            return Err(Error::SystemdDriverUnsupported(text.into_owned()));
        }
        let mut inner = PathBuf::new();
        for c in p.components() {
            match c {
                Component::RootDir => inner.push("/"),
                Component::CurDir => {}
                Component::Normal(n) => inner.push(n),
                Component::ParentDir | Component::Prefix(_) => {
                    return Err(Error::InvalidPath { path: text.into_owned(), reason: "\"..\" components are not allowed".into() })
                }
            }
        }
        if inner.as_os_str().is_empty() || inner == Path::new("/") {
            return Err(Error::InvalidPath { path: text.into_owned(), reason: "the root cgroup cannot be a container's cgroup".into() });
        }
        Ok(CgroupPath { inner })
    }

    /// Whether the path is absolute (relative to each hierarchy's root).
    pub fn is_absolute(&self) -> bool {
        self.inner.is_absolute()
    }

    /// The path as validated.
    pub fn as_path(&self) -> &Path {
        &self.inner
    }

    /// The directory in a hierarchy mounted at `mount`. A relative path is placed under
    /// `base`, our own cgroup in that hierarchy, like runc's cgroupfs driver does.
    pub fn resolve(&self, mount: &HierarchyMount, base: Option<&Path>) -> PathBuf {
        let rel = self.inner.strip_prefix("/").unwrap_or(&self.inner);
        if self.is_absolute() {
            return mount.mount_point.join(rel);
        }
        let base = base.unwrap_or(Path::new("/"));
        // /proc/self/cgroup paths are from the hierarchy root; the mount may show a subtree.
        let base = base.strip_prefix(&mount.root).unwrap_or(base);
        let base = base.strip_prefix("/").unwrap_or(base);
        mount.mount_point.join(base).join(rel)
    }

    /// Resolves for a v1 controller, reading our own cgroup when the path is relative.
    pub(crate) fn resolve_v1(&self, mount: &HierarchyMount, controller: &str) -> Result<PathBuf> {
        if self.is_absolute() {
            return Ok(self.resolve(mount, None));
        }
        let own = own_cgroup(controller)?;
        Ok(self.resolve(mount, Some(&own)))
    }

    /// Resolves in the unified tree. On pure v2 a relative path goes under the parent of our
    /// own cgroup (runc: our leaf holds processes, so its children could not get controllers).
    pub(crate) fn resolve_unified(&self, mount: &HierarchyMount, use_parent: bool) -> Result<PathBuf> {
        if self.is_absolute() {
            return Ok(self.resolve(mount, None));
        }
        let own = own_cgroup("")?;
        let base = if use_parent { own.parent().map(Path::to_path_buf).unwrap_or(own) } else { own };
        Ok(self.resolve(mount, Some(&base)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(mp: &str, root: &str) -> HierarchyMount {
        HierarchyMount { mount_point: mp.into(), root: root.into() }
    }

    #[test]
    fn empty_path_defaults_to_berth_parent() {
        let p = CgroupPath::parse(None, "abc").unwrap();
        assert_eq!(p.as_path(), Path::new("/berth/abc"));
        let p = CgroupPath::parse(Some(Path::new("")), "abc").unwrap();
        assert_eq!(p.as_path(), Path::new("/berth/abc"));
    }

    #[test]
    fn dotdot_is_rejected_anywhere() {
        for bad in ["/a/../b", "../x", "a/..", "/.."] {
            let err = CgroupPath::parse(Some(Path::new(bad)), "id").unwrap_err();
            assert!(matches!(err, Error::InvalidPath { .. }), "{bad}: {err}");
        }
        assert!(CgroupPath::parse(None, "../x").is_err());
        assert!(CgroupPath::parse(None, "..").is_err());
        assert!(CgroupPath::parse(Some(Path::new("/")), "id").is_err());
    }

    #[test]
    fn systemd_style_path_reports_the_missing_driver() {
        let err = CgroupPath::parse(Some(Path::new("system.slice:berth:abc")), "abc").unwrap_err();
        assert!(matches!(err, Error::SystemdDriverUnsupported(_)));
    }

    #[test]
    fn absolute_path_goes_under_the_mount_point() {
        let p = CgroupPath::parse(Some(Path::new("/x/./y")), "id").unwrap();
        let m = mount("/sys/fs/cgroup/memory", "/");
        assert_eq!(p.resolve(&m, None), Path::new("/sys/fs/cgroup/memory/x/y"));
    }

    #[test]
    fn relative_path_goes_under_own_cgroup_minus_mount_root() {
        let p = CgroupPath::parse(Some(Path::new("x/y")), "id").unwrap();
        assert!(!p.is_absolute());
        let m = mount("/sys/fs/cgroup/memory", "/");
        assert_eq!(p.resolve(&m, Some(Path::new("/me"))), Path::new("/sys/fs/cgroup/memory/me/x/y"));
        let m = mount("/sys/fs/cgroup/memory", "/docker/c1");
        assert_eq!(p.resolve(&m, Some(Path::new("/docker/c1/me"))), Path::new("/sys/fs/cgroup/memory/me/x/y"));
    }
}
