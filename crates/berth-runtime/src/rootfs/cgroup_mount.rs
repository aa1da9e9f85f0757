//! `cgroup` mounts.
//!
//! On a pure cgroup v2 host: a cgroup2 mount (the container's cgroup namespace makes its own
//! cgroup the root of it); in a user namespace without a cgroup namespace, where mounting
//! cgroup2 is refused, the host's /sys/fs/cgroup is bound recursively instead.
//! On a v1 or hybrid host with a cgroup namespace: a tmpfs at the destination, and in it
//! one `cgroup` mount per hierarchy of /proc/self/cgroup (`-o <controllers>`, `none,name=X` for
//! named ones, cgroup2 at `unified`), plus runc's `cpu` → `cpu,cpuacct` style symlinks.
//! Without a cgroup namespace (podman's and containerd's default on v1) it binds, as runc
//! does, the container's own directory of each v1 hierarchy onto the same names instead.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use super::mount_fd::set_attr;
use super::mounts::{bind_mount, mount_err, new_fs_mount, MountEnv};
use super::options::MountOptions;
use crate::error::{Error, Result};

fn host_is_pure_v2() -> bool {
    nix::sys::statfs::statfs("/sys/fs/cgroup").map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC).unwrap_or(false)
}

/// Mount a `cgroup` (or `cgroup2`) entry of the spec at `dest`.
pub fn mount_cgroup(env: &MountEnv, dest: &Path, typ: &str, opts: &MountOptions) -> Result<()> {
    if host_is_pure_v2() || typ == "cgroup2" {
        return match new_fs_mount(env, dest, Path::new("cgroup2"), "cgroup2", opts) {
            Ok(_) => Ok(()),
            Err(Error::Mount { message, .. }) if env.in_user_ns && (message.contains("EPERM") || message.contains("EBUSY")) => {
                let mut o = opts.clone();
                o.flags |= libc::MS_BIND | libc::MS_REC;
                bind_mount(env, dest, Path::new("/sys/fs/cgroup"), &o)
            }
            Err(e) => Err(e),
        };
    }
    let tmpfs_opts =
        MountOptions { flags: opts.mount_flags() & !libc::MS_RDONLY, data: vec!["mode=755".into()], ..MountOptions::default() };
    let tmpfs = new_fs_mount(env, dest, Path::new("tmpfs"), "tmpfs", &tmpfs_opts)?;
    let table = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| mount_err(dest, format!("read /proc/self/cgroup: {e}")))?;
    let mountinfo = if env.cgroupns {
        String::new()
    } else {
        std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| mount_err(dest, format!("read /proc/self/mountinfo: {e}")))?
    };
    for line in table.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let (sub, fstype, data) = if ctrls.is_empty() {
            ("unified".to_string(), "cgroup2", String::new())
        } else if let Some(name) = ctrls.strip_prefix("name=") {
            (name.to_string(), "cgroup", format!("none,{ctrls}"))
        } else {
            (ctrls.to_string(), "cgroup", ctrls.to_string())
        };
        if sub.is_empty() || sub.contains('/') || sub == "." || sub == ".." {
            continue;
        }
        if env.cgroupns {
            let o = MountOptions { flags: opts.mount_flags(), data: vec![data], ..MountOptions::default() };
            new_fs_mount(env, &dest.join(&sub), Path::new("cgroup"), fstype, &o)?;
        } else {
            // runc binds v1 hierarchies only, and skips those the host has not mounted.
            let Some(source) = (!ctrls.is_empty()).then(|| host_dir_of(&mountinfo, ctrls, path)).flatten() else {
                continue;
            };
            let mut o = opts.clone();
            o.flags |= libc::MS_BIND | libc::MS_REC;
            bind_mount(env, &dest.join(&sub), &source, &o)?;
        }
        if sub.contains(',') && !sub.starts_with("name=") {
            for ctrl in sub.split(',') {
                // Existing names (a hierarchy of its own) are kept.
                let _ = nix::unistd::symlinkat(sub.as_str(), &tmpfs, ctrl);
            }
        }
    }
    if opts.flags & libc::MS_RDONLY != 0 {
        set_attr(tmpfs.as_fd(), false, libc::MOUNT_ATTR_RDONLY, 0, 0)
            .map_err(|e| mount_err(dest, format!("make the cgroup tmpfs read-only: {e}")))?;
    }
    Ok(())
}

/// The host directory of cgroup `path` in the v1 hierarchy `ctrls` (`cpu,cpuacct`,
/// `name=systemd`), found through a mount of that hierarchy whose root contains `path`.
fn host_dir_of(mountinfo: &str, ctrls: &str, path: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (pre, post) = line.split_once(" - ")?;
        let mut post = post.split(' ');
        let (fstype, super_opts) = (post.next()?, post.nth(1)?);
        let mut pre = pre.split(' ').skip(3);
        let (root, mountpoint) = (pre.next()?, pre.next()?);
        let opts: Vec<&str> = super_opts.split(',').collect();
        if fstype != "cgroup" || !ctrls.split(',').all(|c| opts.contains(&c)) {
            return None;
        }
        let rel = Path::new(path).strip_prefix(root).ok()?;
        Some(Path::new(mountpoint).join(rel))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_dir_of_finds_the_hierarchy_mount_containing_the_path() {
        let mi = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
                  40 31 0:37 /sub /x/systemd rw - cgroup cgroup rw,xattr,name=systemd\n\
                  41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        assert_eq!(host_dir_of(mi, "cpu,cpuacct", "/a/b"), Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/a/b")));
        assert_eq!(host_dir_of(mi, "name=systemd", "/sub/c"), Some(PathBuf::from("/x/systemd/c")));
        assert_eq!(host_dir_of(mi, "name=systemd", "/other"), None);
        assert_eq!(host_dir_of(mi, "memory", "/a"), None);
    }
}
