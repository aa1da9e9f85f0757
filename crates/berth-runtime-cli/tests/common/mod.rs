//! Shared fixtures of the integration tests: a busybox bundle built offline from Debian's
//! busybox-static, and a runtime root of its own per test, cleaned up even when a test fails.

#![allow(dead_code)]

pub mod mounts;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Value};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_berth-runtime");
const BUSYBOX: &str = "/bin/busybox";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A scratch directory with a runtime root and any number of bundles; every container it
/// created is force-deleted and the directory removed on drop.
pub struct Scratch {
    pub dir: PathBuf,
    pub root: PathBuf,
    ids: std::sync::Mutex<Vec<String>>,
}

impl Scratch {
    /// A fresh scratch area named after the test.
    pub fn new(test: &str) -> Scratch {
        assert!(Path::new(BUSYBOX).exists(), "{BUSYBOX} is missing: install Debian's busybox-static (README's setup does)");
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("berth-it-{}-{n}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let root = dir.join("state");
        Scratch { dir, root, ids: Default::default() }
    }

    /// A unique container id for this test.
    pub fn id(&self, name: &str) -> String {
        let id = format!("{}-{}-{name}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
        self.ids.lock().unwrap().push(id.clone());
        id
    }

    /// Build a busybox bundle called `name` whose process runs `args`.
    pub fn bundle(&self, name: &str, args: &[&str]) -> BundleDir {
        let path = self.dir.join(name);
        let rootfs = path.join("rootfs");
        for d in ["bin", "proc", "sys", "dev", "etc", "tmp", "root", "home/user"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy(BUSYBOX, rootfs.join("bin/busybox")).unwrap();
        let list = Command::new(BUSYBOX).arg("--list").output().unwrap();
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            if applet != "busybox" {
                let _ = symlink("busybox", rootfs.join("bin").join(applet));
            }
        }
        std::fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        )
        .unwrap();
        std::fs::write(rootfs.join("etc/group"), "root:x:0:\ntty:x:5:\nuser:x:1000:\nnogroup:x:65534:\n").unwrap();
        let out = Command::new(BIN).args(["spec", "--bundle"]).arg(&path).output().unwrap();
        assert!(out.status.success(), "spec failed: {}", String::from_utf8_lossy(&out.stderr));
        let mut b = BundleDir { path };
        b.edit(|c| {
            c["process"]["terminal"] = json!(false);
            c["process"]["args"] = json!(args);
            c["root"]["readonly"] = json!(false);
        });
        b
    }

    /// Run the binary with `--root` set to this scratch's runtime root. stdout and stderr go
    /// to files, not pipes: a created container inherits them and may outlive the command.
    pub fn rt(&self, args: &[&str]) -> Output {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let (out_p, err_p) = (self.dir.join(format!("out.{n}")), self.dir.join(format!("err.{n}")));
        let mut c = self.rt_cmd(args);
        c.stdout(std::fs::File::create(&out_p).unwrap());
        c.stderr(std::fs::File::create(&err_p).unwrap());
        let status = c.status().unwrap();
        let read = |p: &Path| std::fs::read(p).unwrap_or_default();
        Output { status, stdout: read(&out_p), stderr: read(&err_p) }
    }

    /// A command for the binary with `--root` set, stdio captured.
    pub fn rt_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--root").arg(&self.root).args(args);
        c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        c
    }

    /// `run` a bundle in the foreground and return its output (stdout, stderr, status).
    pub fn run(&self, bundle: &BundleDir, name: &str) -> Output {
        let id = self.id(name);
        self.rt(&["run", "--bundle", bundle.path.to_str().unwrap(), &id])
    }

    /// The state JSON of a container.
    pub fn state(&self, id: &str) -> Value {
        let out = self.rt(&["state", id]);
        assert!(out.status.success(), "state {id}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for id in self.ids.lock().unwrap().iter() {
            let _ = self.rt(&["delete", "--force", id]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A bundle directory whose config.json can be edited.
pub struct BundleDir {
    pub path: PathBuf,
}

impl BundleDir {
    /// Edit config.json as JSON.
    pub fn edit(&mut self, f: impl FnOnce(&mut Value)) {
        let p = self.path.join("config.json");
        let mut v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        f(&mut v);
        std::fs::write(&p, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    }

    /// The rootfs path.
    pub fn rootfs(&self) -> PathBuf {
        self.path.join("rootfs")
    }

    /// The path as a str.
    pub fn p(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

/// stdout as a String.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr as a String.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Assert success, printing stderr otherwise.
#[track_caller]
pub fn ok(o: &Output) -> String {
    assert!(o.status.success(), "command failed ({:?}): stdout={} stderr={}", o.status, stdout(o), stderr(o));
    stdout(o)
}
