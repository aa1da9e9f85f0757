//! The harness of the container tests (`spec_flags.rs`, `volumes.rs`), from `run.rs`'s: a
//! private `--root`/`--runroot` in a unique scratch dir, busybox images built offline
//! (`import` of a rootfs tar, or `load` of a docker-archive when the image needs a config:
//! Env, Volumes), and a Drop that removes containers, unmounts leftovers and the dir even
//! when the test failed.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use sha2::{Digest as _, Sha256};

pub const BIN: &str = env!("CARGO_BIN_EXE_berth");

/// busybox applets the tests use.
const APPLETS: &[&str] = &[
    "sh", "id", "echo", "cat", "hostname", "pwd", "true", "false", "ls", "grep", "touch", "sleep", "ps", "kill", "mkdir", "stat", "wc",
    "head", "tr", "test", "[", "rm",
];

/// One test's scratch root.
pub struct Env {
    pub dir: PathBuf,
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

impl Env {
    /// A fresh root with `localhost/demo` imported (busybox, passwd with `app` 4000:4000,
    /// `/srv/seed` owned by app).
    pub fn new(name: &str) -> Env {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("berth-spec-it-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let e = Env { dir };
        let tar = e.dir.join("rootfs.tar");
        std::fs::write(&tar, rootfs_tar()).unwrap();
        e.ok(&["import", tar.to_str().unwrap(), "localhost/demo:latest"]);
        e
    }

    /// `berth --root … --runroot … ARGS`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--root").arg(self.dir.join("root")).arg("--runroot").arg(self.dir.join("run")).args(args);
        c.stdin(std::process::Stdio::null());
        c
    }

    pub fn berth(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Run, assert success, return stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.berth(args);
        assert!(
            out.status.success(),
            "berth {args:?}: {:?}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Load an image named `name` from the busybox rootfs with this image `config` section
    /// (Env, Volumes, User…).
    pub fn load_image(&self, name: &str, config: serde_json::Value) {
        let layer = rootfs_tar();
        let diff_id = format!("sha256:{}", hex::encode(Sha256::digest(&layer)));
        let image_config = serde_json::json!({
            "architecture": "amd64", "os": "linux", "config": config,
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        });
        let mut b = tar::Builder::new(Vec::new());
        let manifest = serde_json::json!([{"Config": "config.json", "RepoTags": [name], "Layers": ["layer.tar"]}]);
        for (path, bytes) in [
            ("manifest.json", serde_json::to_vec(&manifest).unwrap()),
            ("config.json", serde_json::to_vec(&image_config).unwrap()),
            ("layer.tar", layer),
        ] {
            let mut h = header(bytes.len() as u64, 0o644);
            b.append_data(&mut h, path, bytes.as_slice()).unwrap();
        }
        let archive = self.dir.join(format!("image-{}.tar", SEQ.fetch_add(1, Ordering::Relaxed)));
        std::fs::write(&archive, b.into_inner().unwrap()).unwrap();
        self.ok(&["load", "-q", "-i", archive.to_str().unwrap()]);
    }

    /// Mounts left under this test's dir.
    pub fn mounts(&self) -> usize {
        mounts_under(&self.dir)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let out = self.berth(&["ps", "-a", "-q"]);
        for id in String::from_utf8_lossy(&out.stdout).lines() {
            let _ = self.berth(&["rm", "-f", id]);
        }
        // Whatever a failed test left mounted (deepest first), so the dir can go.
        let d = format!("{}/", self.dir.display());
        let mut targets: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(String::from))
            .filter(|t| t.starts_with(&d))
            .collect();
        targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
        for t in targets {
            let _ = nix_umount(&t);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn nix_umount(target: &str) -> std::io::Result<()> {
    let c = std::ffi::CString::new(target).map_err(std::io::Error::other)?;
    // SAFETY: umount2 reads a NUL-terminated path.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

pub fn mounts_under(dir: &Path) -> usize {
    let d = format!("{}/", dir.to_str().unwrap());
    std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().filter(|l| l.contains(&d)).count()
}

fn header(size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h
}

/// The busybox rootfs as a tar (deterministic: the same bytes every time).
pub fn rootfs_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let busybox = std::fs::read("/bin/busybox").expect("/bin/busybox (busybox-static) is required");
    let mut h = header(busybox.len() as u64, 0o755);
    b.append_data(&mut h, "bin/busybox", busybox.as_slice()).unwrap();
    for applet in APPLETS {
        let mut h = header(0, 0o777);
        h.set_entry_type(tar::EntryType::Symlink);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox").unwrap();
    }
    for dir in ["srv", "tmp", "etc"] {
        let mut h = header(0, if dir == "tmp" { 0o1777 } else { 0o755 });
        h.set_entry_type(tar::EntryType::Directory);
        if dir == "srv" {
            h.set_uid(4000);
            h.set_gid(4000);
        }
        b.append_data(&mut h, dir, std::io::empty()).unwrap();
    }
    for (p, text, uid) in [
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:4000:4000:app:/home/app:/bin/sh\n", 0),
        ("etc/group", "root:x:0:\napp:x:4000:\n", 0),
        ("srv/seed", "from the image\n", 4000),
    ] {
        let mut h = header(text.len() as u64, 0o644);
        h.set_uid(uid);
        h.set_gid(uid);
        b.append_data(&mut h, p, text.as_bytes()).unwrap();
    }
    b.into_inner().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The path of berth-init next to berth (built by `cargo build --workspace`; built here if
/// this test run did not).
pub fn ensure_init_built() {
    let init = Path::new(BIN).with_file_name("berth-init");
    if !init.exists() {
        let status = Command::new(env!("CARGO")).args(["build", "-p", "berth-init"]).status().unwrap();
        assert!(status.success() && init.exists(), "berth-init is missing next to berth: cargo build --workspace");
    }
}
