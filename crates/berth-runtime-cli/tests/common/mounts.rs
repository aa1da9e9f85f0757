//! Mount fixtures of the rootfs and security tests: a mountinfo parser, host mounts undone on
//! drop, and the check that a failed command left nothing behind.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::Scratch;

/// One line of /proc/<pid>/mountinfo.
#[derive(Debug, Clone)]
pub struct MountInfoLine {
    /// Mount point, unescaped.
    pub mount_point: String,
    /// Root of the mount within its filesystem.
    pub root: String,
    /// `major:minor` of the filesystem.
    pub dev: String,
    /// Per-mount options (`rw`, `nosuid`…).
    pub opts: Vec<String>,
    /// Optional fields (`shared:N`, `master:N`…).
    pub optional: Vec<String>,
    /// Filesystem type.
    pub fstype: String,
    /// Mount source.
    pub source: String,
    /// Super block options (`size=…`, `mode=…`).
    pub super_opts: Vec<String>,
}

impl MountInfoLine {
    /// Whether `opt` is a per-mount or super block option.
    pub fn has(&self, opt: &str) -> bool {
        self.opts.iter().chain(&self.super_opts).any(|o| o == opt)
    }

    /// Whether an optional field starts with `prefix` (`shared:`, `master:`).
    pub fn tagged(&self, prefix: &str) -> bool {
        self.optional.iter().any(|o| o.starts_with(prefix))
    }
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

/// Parse mountinfo text.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfoLine> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            Some(MountInfoLine {
                root: unescape(f.get(3)?),
                dev: f.get(2)?.to_string(),
                mount_point: unescape(f.get(4)?),
                opts: f.get(5)?.split(',').map(String::from).collect(),
                optional: f[6..sep].iter().map(|s| s.to_string()).collect(),
                fstype: f.get(sep + 1)?.to_string(),
                source: f.get(sep + 2)?.to_string(),
                super_opts: f.get(sep + 3).map(|s| s.split(',').map(String::from).collect()).unwrap_or_default(),
            })
        })
        .collect()
}

/// The topmost mount at `path` (the last one listed), panicking with the table otherwise.
#[track_caller]
pub fn mount_at<'a>(table: &'a [MountInfoLine], path: &str) -> &'a MountInfoLine {
    table.iter().rev().find(|m| m.mount_point == path).unwrap_or_else(|| panic!("no mount at {path} in:\n{table:#?}"))
}

/// Whether the host's mount table has a mount point under `dir`.
pub fn host_has_mount_under(dir: &Path) -> bool {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    parse_mountinfo(&text).iter().any(|m| Path::new(&m.mount_point).starts_with(dir))
}

/// A mount made on the host for a test, detached (with everything under it) on drop.
pub struct HostMount {
    /// Where it is mounted.
    pub path: PathBuf,
}

fn sh_mount(args: &[&str]) {
    let out = Command::new("mount").args(args).output().unwrap();
    assert!(out.status.success(), "mount {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl HostMount {
    /// Bind `dir` onto itself and give it the propagation `private` or `shared`, so that
    /// what is mounted under it stays out of the rest of the host.
    pub fn bind_self(dir: &Path, propagation: &str) -> HostMount {
        std::fs::create_dir_all(dir).unwrap();
        let p = dir.to_str().unwrap();
        sh_mount(&["--bind", p, p]);
        let guard = HostMount { path: dir.to_path_buf() };
        sh_mount(&[&format!("--make-{propagation}"), p]);
        guard
    }

    /// A small tmpfs at `dir` (created if missing).
    pub fn tmpfs(dir: &Path) -> HostMount {
        std::fs::create_dir_all(dir).unwrap();
        sh_mount(&["-t", "tmpfs", "-o", "size=1m", "tmpfs", dir.to_str().unwrap()]);
        HostMount { path: dir.to_path_buf() }
    }
}

impl Drop for HostMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Poll `cond` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub fn poll_until(timeout: Duration, cond: impl Fn() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Host pids whose command line mentions `needle` (a container id), other than ours.
pub fn pids_mentioning(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).map(|c| String::from_utf8_lossy(&c).contains(needle)).unwrap_or(false))
        .collect()
}

/// Assert that a failed create of `id` left no state directory, cgroup, process or mount.
#[track_caller]
pub fn assert_nothing_left(s: &Scratch, id: &str) {
    assert!(!s.root.join(id).exists(), "state directory {} left behind", s.root.join(id).display());
    for entry in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let cg = entry.path().join("berth").join(id);
        assert!(!cg.exists(), "cgroup {} left behind", cg.display());
    }
    // The init is killed and reaped before create returns; allow a moment for /proc.
    assert!(poll_until(Duration::from_secs(2), || pids_mentioning(id).is_empty()), "processes left behind: {:?}", pids_mentioning(id));
    assert!(!host_has_mount_under(&s.dir), "a mount under {} was left on the host", s.dir.display());
}
