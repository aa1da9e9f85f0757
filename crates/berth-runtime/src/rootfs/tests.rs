//! Tests that mount: each runs in a forked child in its own mount namespace (with `/`
//! made rprivate first), so nothing leaks into the host. They need root and skip otherwise.

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use super::*;

/// Run `f` in a forked child in a private mount namespace; panic with its message if it fails.
fn in_private_mount_ns(f: impl FnOnce() -> std::result::Result<(), String>) {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let (rd, wr) = nix::unistd::pipe().expect("pipe");
    // SAFETY: the child only runs the test closure and exits with _exit; the test harness
    // threads are not touched in the child.
    match unsafe { nix::unistd::fork() }.expect("fork") {
        nix::unistd::ForkResult::Child => {
            drop(rd);
            let r = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
                .map_err(|e| format!("unshare: {e}"))
                .and_then(|_| {
                    mount_path(None, Path::new("/"), None, libc::MS_PRIVATE | libc::MS_REC, None)
                        .map_err(|e| format!("make / rprivate: {e}"))
                })
                .and_then(|_| f());
            let code = match r {
                Ok(()) => 0,
                Err(msg) => {
                    let _ = std::fs::File::from(wr).write_all(msg.as_bytes());
                    1
                }
            };
            // SAFETY: leaving the forked child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(wr);
            let mut msg = String::new();
            let _ = std::io::Read::read_to_string(&mut std::fs::File::from(rd), &mut msg);
            let status = nix::sys::wait::waitpid(child, None).expect("waitpid");
            assert!(matches!(status, nix::sys::wait::WaitStatus::Exited(_, 0)), "child failed ({status:?}): {msg}");
        }
    }
}

fn spec(json: &str) -> Spec {
    let base = r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}}}"#;
    let mut v: serde_json::Value = serde_json::from_str(base).unwrap();
    let extra: serde_json::Value = serde_json::from_str(json).unwrap();
    for (k, val) in extra.as_object().unwrap() {
        v[k] = val.clone();
    }
    serde_json::from_value(v).unwrap()
}

fn rootfs_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rootfs");
    std::fs::create_dir(&root).unwrap();
    let root = root.canonicalize().unwrap();
    (dir, root)
}

fn check(cond: bool, what: &str) -> std::result::Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(what.to_string())
    }
}

#[test]
fn full_rootfs_setup_mounts_devices_pivots_and_hides_paths() {
    let (dir, root) = rootfs_dir();
    let host_file = dir.path().join("hostfile");
    std::fs::write(&host_file, "from the host").unwrap();
    std::fs::create_dir_all(root.join("etc/copy/sub")).unwrap();
    std::fs::write(root.join("etc/copy/sub/a"), "copied").unwrap();
    symlink("x", root.join("etc/copy/link")).unwrap();
    std::fs::create_dir_all(root.join("hide/dir")).unwrap();
    std::fs::write(root.join("hide/dir/secret"), "s").unwrap();
    std::fs::write(root.join("hide/file"), "secret").unwrap();
    std::fs::create_dir_all(root.join("rodir")).unwrap();
    // CVE-2021-30465 style: a destination through a symlink that points out of the root.
    let outside = dir.path().join("outside");
    symlink(&outside, root.join("escape")).unwrap();
    let sp = spec(&format!(
        r#"{{
        "root": {{"path": "rootfs", "readonly": true}},
        "mounts": [
          {{"destination": "/proc", "type": "proc", "source": "proc"}},
          {{"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid","strictatime","mode=755","size=65536k"]}},
          {{"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid","noexec","newinstance","ptmxmode=0666","mode=0620"]}},
          {{"destination": "/etc/copy", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup","ro"]}},
          {{"destination": "/data/hostfile", "type": "bind", "source": "{}", "options": ["rbind","ro","nosuid"]}},
          {{"destination": "/escape/mnt", "type": "tmpfs", "source": "tmpfs"}}
        ],
        "linux": {{
          "maskedPaths": ["/hide/dir", "/hide/file", "/does/not/exist"],
          "readonlyPaths": ["/rodir", "/missing"],
          "namespaces": [{{"type": "mount"}}]
        }}
    }}"#,
        host_file.display()
    ));
    let outside2 = outside.clone();
    in_private_mount_ns(move || {
        let ctx = RootfsContext { spec: &sp, rootfs: &root, no_pivot: false, in_user_ns: false };
        prepare(&ctx).map_err(|e| format!("prepare: {e}"))?;
        check(!outside2.exists(), "the escaping destination was created outside the root")?;
        let inside = root.join(outside2.strip_prefix("/").unwrap()).join("mnt");
        check(inside.is_dir(), "the escaping destination was not created inside the root")?;
        pivot(&ctx).map_err(|e| format!("pivot: {e}"))?;
        finalize(&ctx).map_err(|e| format!("finalize: {e}"))?;

        let null = std::fs::metadata("/dev/null").map_err(|e| e.to_string())?;
        check(null.file_type().is_char_device() && null.rdev() == nix::sys::stat::makedev(1, 3), "/dev/null")?;
        check(std::fs::read_link("/dev/ptmx").map_err(|e| e.to_string())? == Path::new("pts/ptmx"), "ptmx link")?;
        check(std::fs::read_link("/dev/fd").map_err(|e| e.to_string())? == Path::new("/proc/self/fd"), "fd link")?;
        check(Path::new("/proc/self/status").exists(), "/proc mounted")?;
        check(std::fs::read_to_string("/etc/copy/sub/a").map_err(|e| e.to_string())? == "copied", "tmpcopyup")?;
        check(std::fs::read_link("/etc/copy/link").map_err(|e| e.to_string())? == Path::new("x"), "copyup link")?;
        check(std::fs::write("/etc/copy/new", "x").is_err(), "tmpcopyup mount is read-only")?;
        check(std::fs::read_to_string("/data/hostfile").map_err(|e| e.to_string())? == "from the host", "file bind")?;
        check(std::fs::OpenOptions::new().append(true).open("/data/hostfile").is_err(), "ro bind")?;
        check(std::fs::read_dir("/hide/dir").map_err(|e| e.to_string())?.next().is_none(), "masked dir")?;
        check(std::fs::read_to_string("/hide/file").map_err(|e| e.to_string())?.is_empty(), "masked file")?;
        check(std::fs::write("/rodir/x", "x").is_err(), "readonly path")?;
        check(std::fs::write("/newfile", "x").is_err(), "readonly root")?;
        check(std::fs::write("/dev/shm-test", "x").is_ok(), "/dev stays writable")?;
        Ok(())
    });
}

#[test]
fn proc_on_a_symlink_is_refused() {
    let (_dir, root) = rootfs_dir();
    std::fs::create_dir(root.join("realproc")).unwrap();
    symlink("/realproc", root.join("proc")).unwrap();
    let sp = spec(r#"{"mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}]}"#);
    in_private_mount_ns(move || {
        let ctx = RootfsContext { spec: &sp, rootfs: &root, no_pivot: false, in_user_ns: false };
        match prepare(&ctx) {
            Err(e) if e.to_string().contains("mount destination /proc is a symlink") => Ok(()),
            other => Err(format!("expected a symlink error, got {other:?}")),
        }
    });
}

#[test]
fn mounts_inside_proc_and_relative_destinations_are_refused() {
    let (_dir, root) = rootfs_dir();
    let sp = spec(r#"{"mounts": [{"destination": "/proc/self", "type": "tmpfs", "source": "tmpfs"}]}"#);
    let sp2 = spec(r#"{"mounts": [{"destination": "relative", "type": "tmpfs", "source": "tmpfs"}]}"#);
    let sp3 = spec(r#"{"mounts": [{"destination": "/x", "type": "tmpfs", "source": "tmpfs", "options": ["idmap"]}]}"#);
    in_private_mount_ns(move || {
        let ctx = RootfsContext { spec: &sp, rootfs: &root, no_pivot: false, in_user_ns: false };
        let e = prepare(&ctx).err().ok_or("mount in /proc accepted")?;
        check(e.to_string().contains("inside /proc"), &format!("wrong error {e}"))?;
        let ctx = RootfsContext { spec: &sp2, ..ctx };
        let e = prepare(&ctx).err().ok_or("relative destination accepted")?;
        check(e.to_string().contains("absolute"), &format!("wrong error {e}"))?;
        let ctx = RootfsContext { spec: &sp3, ..ctx };
        let e = prepare(&ctx).err().ok_or("idmap accepted")?;
        check(matches!(e, Error::Unsupported(_)), &format!("wrong error {e}"))
    });
}

#[test]
fn bind_with_recursive_readonly_and_propagation_and_no_pivot() {
    let (dir, root) = rootfs_dir();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    let sp = spec(&format!(
        r#"{{"mounts": [{{"destination": "/vol", "type": "bind", "source": "{}", "options": ["rbind","rro","rslave"]}}]}}"#,
        src.display()
    ));
    in_private_mount_ns(move || {
        // A submount in the source, to check that `rro` reaches it.
        mount_path(Some(Path::new("tmpfs")), &src.join("sub"), Some("tmpfs"), 0, None).map_err(|e| e.to_string())?;
        let ctx = RootfsContext { spec: &sp, rootfs: &root, no_pivot: true, in_user_ns: false };
        prepare(&ctx).map_err(|e| format!("prepare: {e}"))?;
        pivot(&ctx).map_err(|e| format!("pivot: {e}"))?;
        check(std::fs::write("/vol/x", "x").is_err(), "rro top")?;
        check(std::fs::write("/vol/sub/x", "x").is_err(), "rro submount")?;
        finalize(&ctx).map_err(|e| format!("finalize: {e}"))
    });
}

#[test]
fn masking_refuses_a_fake_dev_null() {
    let (_dir, root) = rootfs_dir();
    std::fs::write(root.join("secret"), "s").unwrap();
    let sp = spec(
        r#"{"mounts": [{"destination": "/dev", "type": "tmpfs", "source": "tmpfs"}],
            "linux": {"maskedPaths": ["/secret"]}}"#,
    );
    in_private_mount_ns(move || {
        let ctx = RootfsContext { spec: &sp, rootfs: &root, no_pivot: false, in_user_ns: false };
        prepare(&ctx).map_err(|e| format!("prepare: {e}"))?;
        pivot(&ctx).map_err(|e| format!("pivot: {e}"))?;
        // The container replaces /dev/null with a symlink to the file it wants to write.
        std::fs::remove_file("/dev/null").map_err(|e| e.to_string())?;
        symlink("/secret", "/dev/null").map_err(|e| e.to_string())?;
        let root_fd = safe_path::open_root(Path::new("/")).map_err(|e| e.to_string())?;
        let e = masked::masked_paths(root_fd.as_fd(), &["/secret".to_string()]).err().ok_or("fake /dev/null used")?;
        check(e.to_string().contains("null device"), &format!("wrong error {e}"))
    });
}
