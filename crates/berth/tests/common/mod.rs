//! The harness of the engine's end-to-end tests: a private `--root`/`--runroot` per test with
//! a busybox image imported offline, and cleanup (containers, mounts, dirs) even on failure.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The built `berth`.
pub const BIN: &str = env!("CARGO_BIN_EXE_berth");

/// A test's own engine roots.
pub struct Env {
    /// Scratch dir: root/, run/, rootfs.tar.
    pub dir: PathBuf,
}

const APPLETS: &[&str] = &[
    "sh", "id", "echo", "cat", "hostname", "pwd", "true", "false", "sleep", "ps", "ls", "kill", "grep", "wc", "head", "trap", "seq",
    "touch", "test", "env", "printf",
];

impl Env {
    /// A new environment named after the test, with `localhost/demo:latest` imported.
    pub fn new(name: &str) -> Env {
        let dir = std::env::temp_dir().join(format!("berth-e2e-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let e = Env { dir };
        let tar = e.dir.join("rootfs.tar");
        rootfs_tar(&tar);
        let out = e.berth(&["import", tar.to_str().unwrap(), "localhost/demo:latest"]);
        assert!(out.status.success(), "import: {}", String::from_utf8_lossy(&out.stderr));
        e
    }

    /// A `berth` command on this environment's roots.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--root").arg(self.dir.join("root")).arg("--runroot").arg(self.dir.join("run")).args(args);
        c.stdin(Stdio::null());
        c
    }

    /// Run `berth` and collect its output.
    pub fn berth(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Run `berth`, assert success, return stdout trimmed.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.berth(args);
        assert!(out.status.success(), "berth {args:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `inspect -f TEMPLATE`.
    pub fn inspect(&self, container: &str, template: &str) -> String {
        self.ok(&["inspect", "-f", template, container])
    }

    /// Wait until `inspect -f TEMPLATE` prints `want` (10 s at most).
    pub fn wait_for(&self, container: &str, template: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.inspect(container, template);
            if got == want {
                return;
            }
            assert!(Instant::now() < deadline, "{container}: {template} is {got:?}, waited for {want:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Mounts under this environment's dir.
    pub fn mounts(&self) -> usize {
        let d = format!("{}/", self.dir.to_str().unwrap());
        std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().filter(|l| l.contains(&d)).count()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let out = self.berth(&["ps", "-a", "-q", "--no-trunc"]);
        for id in String::from_utf8_lossy(&out.stdout).lines() {
            let _ = self.berth(&["rm", "-f", id]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A busybox image's root filesystem (Debian's busybox-static) with an `app` user.
pub fn rootfs_tar(path: &Path) {
    let f = std::fs::File::create(path).unwrap();
    let mut b = tar::Builder::new(f);
    b.append_path_with_name("/bin/busybox", "bin/busybox").expect("/bin/busybox (busybox-static) is required");
    for applet in APPLETS {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox").unwrap();
    }
    for (p, text) in [
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:4000:4000:app:/home/app:/bin/sh\n"),
        ("etc/group", "root:x:0:\napp:x:4000:\n"),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(text.len() as u64);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, p, text.as_bytes()).unwrap();
    }
    b.finish().unwrap();
}

/// Whether a process lives.
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| !s.contains(") Z ")).unwrap_or(false)
}
