//! The container's root filesystem: mounts, devices, pivot_root, masked and read-only paths.
//!
//! Called by the container's init, inside its new mount namespace, in three steps:
//! [`prepare`] (before the createContainer hooks), [`pivot`] and [`finalize`] (after the console
//! is set up). Every target inside the root is resolved with [`safe_path`], never by joining
//! strings.

mod cgroup_mount;
mod copyup;
pub mod devices;
mod masked;
pub mod mount_fd;
mod mounts;
pub mod options;
mod pivot;
pub mod safe_path;
#[cfg(test)]
mod tests;

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxNamespaceType, Mount, Spec};

use crate::error::{Context, Error, Result};
use mount_fd::mount_path;
use options::propagation_flag;

/// What the rootfs steps need to know.
pub struct RootfsContext<'a> {
    /// The whole config.
    pub spec: &'a Spec,
    /// Absolute, canonical host path of the root filesystem.
    pub rootfs: &'a Path,
    /// `--no-pivot`: move the root and chroot instead of pivot_root.
    pub no_pivot: bool,
    /// The container has its own user namespace (device nodes must be bind-mounted).
    pub in_user_ns: bool,
}

/// `linux.rootfsPropagation` as a mount flag, if set.
fn rootfs_propagation(spec: &Spec) -> Result<Option<u64>> {
    match spec.linux().as_ref().and_then(|l| l.rootfs_propagation().as_deref()) {
        None | Some("") => Ok(None),
        Some(p) => propagation_flag(p).map(Some).ok_or_else(|| Error::InvalidConfig(format!("unknown rootfsPropagation {p:?}"))),
    }
}

fn namespace(spec: &Spec, t: LinuxNamespaceType) -> Option<bool> {
    let ns = spec.linux().as_ref()?.namespaces().as_ref()?;
    ns.iter().find(|n| n.typ() == t).map(|n| n.path().is_none())
}

fn mounts(spec: &Spec) -> &[Mount] {
    spec.mounts().as_deref().unwrap_or(&[])
}

fn has_option(m: &Mount, opt: &str) -> bool {
    m.options().as_deref().unwrap_or(&[]).iter().any(|o| o == opt)
}

fn is_bind(m: &Mount) -> bool {
    m.typ().as_deref() == Some("bind") || has_option(m, "bind") || has_option(m, "rbind")
}

/// The `/dev` entry that is not a bind and asks for `ro`: mounted rw so that the devices can
/// be created, made read-only by [`finalize`] (runc does the same).
fn readonly_dev_mount(spec: &Spec) -> bool {
    mounts(spec).iter().any(|m| m.destination() == Path::new("/dev") && !is_bind(m) && has_option(m, "ro"))
}

/// Before pivot: root propagation, bind of the rootfs, `mounts`, devices, `/dev` symlinks.
pub fn prepare(ctx: &RootfsContext) -> Result<()> {
    prepare_with_barrier(ctx, &mut || Ok(()))
}

/// [`prepare`], calling `cgroup_barrier` before the first `cgroup` mount (whose content
/// depends on the init's cgroup and cgroup namespace), so that everything before it can
/// overlap with the parent's cgroup setup.
pub fn prepare_with_barrier(ctx: &RootfsContext, cgroup_barrier: &mut dyn FnMut() -> Result<()>) -> Result<()> {
    let spec = ctx.spec;
    let root_flag = rootfs_propagation(spec)?.unwrap_or(libc::MS_SLAVE | libc::MS_REC);
    // Nothing the container mounts may propagate back to the host.
    mount_path(None, Path::new("/"), None, root_flag, None).context("set the propagation of /")?;
    // Only a shared parent mount stops pivot_root; after rslave/rprivate there is none.
    if root_flag & libc::MS_SHARED != 0 {
        make_parent_mount_private(ctx.rootfs)?;
    }
    mount_path(Some(ctx.rootfs), ctx.rootfs, None, libc::MS_BIND | libc::MS_REC, None)
        .with_context(|| format!("bind the rootfs {} onto itself", ctx.rootfs.display()))?;
    // Opened after the bind, so that it is the root of the new mount.
    let root = safe_path::open_root(ctx.rootfs)?;
    let env = mounts::MountEnv {
        root: root.as_fd(),
        rootfs: ctx.rootfs,
        in_user_ns: ctx.in_user_ns,
        new_netns: namespace(spec, LinuxNamespaceType::Network) == Some(true),
        cgroupns: namespace(spec, LinuxNamespaceType::Cgroup).is_some(),
    };
    let ro_dev = readonly_dev_mount(spec);
    for m in mounts(spec) {
        let _span = tracing::debug_span!("mount", destination = %m.destination().display()).entered();
        if matches!(m.typ().as_deref(), Some("cgroup" | "cgroup2")) {
            cgroup_barrier()?;
        }
        if ro_dev && m.destination() == Path::new("/dev") && !is_bind(m) {
            let mut rw = m.clone();
            let opts = m.options().as_deref().unwrap_or(&[]).iter().filter(|o| *o != "ro").cloned().collect();
            rw.set_options(Some(opts));
            mounts::mount_entry(&env, &rw)?;
        } else {
            mounts::mount_entry(&env, m)?;
        }
    }
    let dev_is_bind = mounts(spec).iter().any(|m| m.destination() == Path::new("/dev") && is_bind(m));
    if !dev_is_bind {
        let spec_devices = spec.linux().as_ref().and_then(|l| l.devices().as_deref()).unwrap_or(&[]);
        let list = devices::device_list(spec_devices)?;
        devices::create_devices(root.as_fd(), &list, ctx.in_user_ns)?;
        let devpts = mounts(spec).iter().any(|m| m.destination() == Path::new("/dev/pts") && m.typ().as_deref() == Some("devpts"));
        devices::create_dev_symlinks(root.as_fd(), devpts)?;
    }
    Ok(())
}

/// pivot_root(2) fails when the rootfs's parent mount is shared (possible when
/// `rootfsPropagation` is shared): make that one mount private, as runc does.
fn make_parent_mount_private(rootfs: &Path) -> Result<()> {
    let parent = rootfs.parent().unwrap_or(Path::new("/"));
    let info = std::fs::read_to_string("/proc/self/mountinfo").context("read /proc/self/mountinfo")?;
    let mut best: Option<(PathBuf, bool)> = None;
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(mp) = fields.get(4).map(|m| PathBuf::from(unescape_mountinfo(m))) else { continue };
        if !parent.starts_with(&mp) {
            continue;
        }
        let shared = fields.iter().skip(6).take_while(|f| **f != "-").any(|f| f.starts_with("shared:"));
        if best.as_ref().is_none_or(|(b, _)| mp.as_os_str().len() >= b.as_os_str().len()) {
            best = Some((mp, shared));
        }
    }
    if let Some((mp, true)) = best {
        mount_path(None, &mp, None, libc::MS_PRIVATE, None)
            .with_context(|| format!("make the rootfs's parent mount {} private", mp.display()))?;
    }
    Ok(())
}

/// Undo mountinfo's octal escapes (`\040` for a space…).
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = u32::from(b[i + 1] - b'0') * 64 + u32::from(b[i + 2] - b'0') * 8 + u32::from(b[i + 3] - b'0');
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Make the rootfs the process's `/` (pivot_root, or MS_MOVE + chroot with `--no-pivot`).
pub fn pivot(ctx: &RootfsContext) -> Result<()> {
    if ctx.no_pivot {
        pivot::move_root(ctx.rootfs)
    } else {
        pivot::pivot_root(ctx.rootfs)
    }
}

/// After pivot: the cwd (created if missing), masked paths, read-only paths, read-only root, rootfsPropagation.
pub fn finalize(ctx: &RootfsContext) -> Result<()> {
    let spec = ctx.spec;
    let root = safe_path::open_root(Path::new("/"))?;
    // runc creates a missing cwd; done first, while "/" and the read-only paths are writable.
    if let Some(process) = spec.process().as_ref() {
        safe_path::mkdir_all_in_root(root.as_fd(), process.cwd(), Mode::from_bits_truncate(0o755))?;
    }
    let linux = spec.linux().as_ref();
    let readonly = linux.and_then(|l| l.readonly_paths().as_deref()).unwrap_or(&[]);
    masked::readonly_paths(root.as_fd(), readonly)?;
    let masked = linux.and_then(|l| l.masked_paths().as_deref()).unwrap_or(&[]);
    masked::masked_paths(root.as_fd(), masked)?;
    if readonly_dev_mount(spec) {
        masked::make_readonly(root.as_fd(), Path::new("/dev"))?;
    }
    if spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false) {
        masked::make_readonly(root.as_fd(), Path::new("/"))?;
    }
    // Applied to the new "/" only now: before pivot it would have changed the host's root.
    if let Some(flag) = rootfs_propagation(spec)? {
        mount_path(None, Path::new("/"), None, flag, None).context("apply rootfsPropagation to /")?;
    }
    Ok(())
}
