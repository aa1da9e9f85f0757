//! Fixtures shared by the podman, containerd and docker interop tests: a scratch directory that
//! unmounts what the clients mounted under it, kills what they left running under it and
//! removes their cgroups on drop; busybox images built offline (rootfs tar, OCI and docker
//! archives); commands run under a time limit so that a hung client fails the test instead
//! of hanging it.

#![allow(dead_code)]

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_berth-runtime");
const BUSYBOX: &str = "/bin/busybox";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The path of `cmd` on PATH (and the sbin directories, which a non-login root shell may lack).
pub fn which(cmd: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path.split(':').chain(["/usr/sbin", "/sbin", "/usr/local/sbin"]).map(|d| Path::new(d).join(cmd)).find(|p| p.is_file());
    found
}

/// Print why a test is skipped and return true when one of `tools` is missing (or not root).
pub fn skip_unless(test: &str, tools: &[&str]) -> bool {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP {test}: not root");
        return true;
    }
    let missing: Vec<&str> = tools.iter().copied().filter(|t| which(t).is_none()).collect();
    if missing.is_empty() {
        return false;
    }
    eprintln!("SKIP {test}: {} not installed (scripts/setup installs it)", missing.join(", "));
    true
}

/// A per-test directory under /tmp, with a short unique tag for names, namespaces and cgroups.
pub struct Scratch {
    pub dir: PathBuf,
    pub tag: String,
    /// cgroup paths (relative to each hierarchy's root) to remove on drop.
    pub cgroups: Vec<String>,
}

impl Scratch {
    /// A fresh directory named after the test.
    pub fn new(test: &str) -> Scratch {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let tag = format!("berth-it-{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(format!("{tag}-{test}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch { dir, tag, cgroups: Vec::new() }
    }

    /// A path inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A busybox root filesystem (bin/busybox and its applet links, passwd, group).
    pub fn busybox_rootfs(&self) -> PathBuf {
        let rootfs = self.path("rootfs");
        for d in ["bin", "etc", "tmp", "proc", "sys", "dev", "root"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy(BUSYBOX, rootfs.join("bin/busybox")).expect("copy /bin/busybox (busybox-static)");
        let list = Command::new(BUSYBOX).arg("--list").output().unwrap();
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            if applet != "busybox" {
                let _ = symlink("busybox", rootfs.join("bin").join(applet));
            }
        }
        std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        std::fs::write(rootfs.join("etc/group"), "root:x:0:\n").unwrap();
        rootfs
    }

    /// The busybox rootfs as a plain tarball (what `podman import` takes).
    pub fn busybox_tar(&self) -> PathBuf {
        let rootfs = self.busybox_rootfs();
        let tar = self.path("busybox.tar");
        ok(&run(Command::new("tar").arg("-C").arg(&rootfs).arg("-cf").arg(&tar).arg("."), 60));
        tar
    }

    /// An OCI image archive of the busybox rootfs, named `name` (what `ctr image import` takes).
    pub fn busybox_oci_archive(&self, name: &str) -> PathBuf {
        self.busybox_oci_archive_with_cmd(name, &["sh"])
    }

    /// An OCI image archive of the busybox rootfs whose image config runs `cmd` (a pod's
    /// sandbox image: the CRI plugin starts the image's command as the pause container).
    pub fn busybox_oci_archive_with_cmd(&self, name: &str, cmd: &[&str]) -> PathBuf {
        let layer = if self.path("busybox.tar").exists() { self.path("busybox.tar") } else { self.busybox_tar() };
        let layout = self.path("oci");
        let _ = std::fs::remove_dir_all(&layout);
        let blobs = layout.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        let put = |bytes: &[u8]| -> (String, usize) {
            let digest = sha256(bytes);
            std::fs::write(blobs.join(&digest), bytes).unwrap();
            (digest, bytes.len())
        };
        let (layer_digest, layer_size) = put(&std::fs::read(&layer).unwrap());
        let config = serde_json::json!({
            "architecture": go_arch(), "os": "linux",
            "config": {"Env": ["PATH=/bin"], "Cmd": cmd},
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_digest}")]},
        });
        let (config_digest, config_size) = put(config.to_string().as_bytes());
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": format!("sha256:{config_digest}"), "size": config_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": format!("sha256:{layer_digest}"), "size": layer_size}],
        });
        let (manifest_digest, manifest_size) = put(manifest.to_string().as_bytes());
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "digest": format!("sha256:{manifest_digest}"), "size": manifest_size,
                           "annotations": {"io.containerd.image.name": name,
                                           "org.opencontainers.image.ref.name": "latest"}}],
        });
        std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
        std::fs::write(layout.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let archive = self.path(&format!("busybox-oci-{}.tar", sha256(name.as_bytes())));
        ok(&run(Command::new("tar").arg("-C").arg(&layout).arg("-cf").arg(&archive).args(["oci-layout", "index.json", "blobs"]), 60));
        archive
    }

    /// A docker-archive of the busybox rootfs tagged `name` (what `docker load` takes;
    /// docker 20.10 does not load OCI archives): manifest.json, the config, one layer tar.
    pub fn busybox_docker_archive(&self, name: &str) -> PathBuf {
        let layer = self.busybox_tar();
        let dir = self.path("docker-archive");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(&layer, dir.join("layer.tar")).unwrap();
        let layer_digest = sha256(&std::fs::read(&layer).unwrap());
        let config = serde_json::json!({
            "architecture": go_arch(), "os": "linux",
            "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_digest}")]},
        })
        .to_string();
        let config_file = format!("{}.json", sha256(config.as_bytes()));
        std::fs::write(dir.join(&config_file), config).unwrap();
        let manifest = serde_json::json!([{"Config": config_file, "RepoTags": [name], "Layers": ["layer.tar"]}]);
        std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
        let archive = self.path("busybox-docker.tar");
        ok(&run(Command::new("tar").arg("-C").arg(&dir).arg("-cf").arg(&archive).args(["manifest.json", &config_file, "layer.tar"]), 60));
        archive
    }

    /// Kill, by pid, every process whose command line mentions this directory (a client's
    /// daemon, shims, conmon), waiting up to `grace` after SIGTERM before SIGKILL.
    pub fn kill_processes_under(&self, grace: Duration) {
        let needle = self.dir.to_string_lossy().into_owned();
        for sig in [libc::SIGTERM, libc::SIGKILL] {
            let pids = pids_mentioning(&needle);
            if pids.is_empty() {
                return;
            }
            for pid in &pids {
                // SAFETY: kill(2) on a pid we just read; at worst it is gone (ESRCH).
                unsafe { libc::kill(*pid, sig) };
            }
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline && !pids_mentioning(&needle).is_empty() {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.kill_processes_under(Duration::from_secs(5));
        // Containers whose client is gone (a daemon that did not clean up) live on in the
        // test's cgroups: kill them there, since their command lines need not name our dir.
        for cg in &self.cgroups {
            kill_cgroup_members(cg);
        }
        unmount_under(&self.dir);
        for cg in &self.cgroups {
            remove_cgroup_everywhere(cg);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn pids_mentioning(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).map(|c| String::from_utf8_lossy(&c).contains(needle)).unwrap_or(false))
        .collect()
}

/// Detach every mount at or below `dir`, deepest first.
pub fn unmount_under(dir: &Path) {
    for _ in 0..3 {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<PathBuf> =
            info.lines().filter_map(|l| l.split(' ').nth(4)).map(PathBuf::from).filter(|p| p.starts_with(dir)).collect();
        if points.is_empty() {
            return;
        }
        points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
        for p in points {
            let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: umount2 with a valid C string; failure is ignored (best-effort cleanup).
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// Mounts at or below `dir` (for asserting that a client cleaned up).
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines().filter_map(|l| l.split(' ').nth(4)).filter(|p| Path::new(p).starts_with(dir)).map(String::from).collect()
}

/// SIGKILL every process in `rel` or below, in every cgroup hierarchy (thawing frozen ones,
/// which would not die), and wait up to 5 s for them to go.
pub fn kill_cgroup_members(rel: &str) {
    let rel = rel.trim_start_matches('/');
    if rel.is_empty() {
        return;
    }
    let mut dirs = Vec::new();
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else { return };
    for h in hierarchies.filter_map(|e| e.ok()) {
        collect_dirs(&h.path().join(rel), &mut dirs);
    }
    collect_dirs(&Path::new("/sys/fs/cgroup").join(rel), &mut dirs);
    let members = |dirs: &[PathBuf]| -> Vec<i32> {
        dirs.iter()
            .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
            .flat_map(|procs| procs.lines().filter_map(|l| l.trim().parse().ok()).collect::<Vec<i32>>())
            .collect()
    };
    if members(&dirs).is_empty() {
        return;
    }
    for d in &dirs {
        let _ = std::fs::write(d.join("freezer.state"), "THAWED");
        let _ = std::fs::write(d.join("cgroup.freeze"), "0");
    }
    for pid in members(&dirs) {
        // SAFETY: kill(2) on a pid read from the test's own cgroup; at worst it is gone (ESRCH).
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    wait_for(5, || members(&dirs).is_empty());
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    if !dir.is_dir() {
        return;
    }
    out.push(dir.to_path_buf());
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_dirs(&e.path(), out);
            }
        }
    }
}

/// rmdir `rel` (and its empty children, deepest first) in every cgroup hierarchy.
pub fn remove_cgroup_everywhere(rel: &str) {
    let rel = rel.trim_start_matches('/');
    if rel.is_empty() {
        return;
    }
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else { return };
    let mut roots: Vec<PathBuf> = hierarchies.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    roots.push(PathBuf::from("/sys/fs/cgroup"));
    for root in roots {
        let top = root.join(rel);
        if top.is_dir() {
            rmdir_tree(&top);
        }
    }
}

fn rmdir_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                rmdir_tree(&e.path());
            }
        }
    }
    for _ in 0..20 {
        if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Run `cmd` with stdin closed, killing it after `secs` seconds.
pub fn run(cmd: &mut Command, secs: u64) -> Output {
    let mut t = Command::new("timeout");
    t.args(["-k", "5", &secs.to_string()]).arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => t.env(k, v),
            None => t.env_remove(k),
        };
    }
    if let Some(d) = cmd.get_current_dir() {
        t.current_dir(d);
    }
    t.stdin(Stdio::null()).output().expect("spawn timeout(1)")
}

/// Run `shell_cmd` under a pty (util-linux `script`), feeding `input` after `delay`.
pub fn run_in_pty(shell_cmd: &str, input: &str, delay: Duration, secs: u64) -> Output {
    let mut c = Command::new("timeout");
    c.args(["-k", "5", &secs.to_string(), "script", "-qec", shell_cmd, "/dev/null"]);
    c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn script(1)");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_string();
    let feeder = std::thread::spawn(move || {
        use std::io::Write;
        std::thread::sleep(delay);
        let _ = stdin.write_all(input.as_bytes());
        // Keep the pipe open a little: script(1) ends the session at EOF on its input.
        std::thread::sleep(Duration::from_secs(3));
    });
    let out = child.wait_with_output().unwrap();
    let _ = feeder.join();
    out
}

/// Wait until `f` is true, polling every 50ms, for up to `secs` seconds.
pub fn wait_for(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// The hard limit of a resource for this process.
pub fn hard_rlimit(resource: libc::__rlimit_resource_t) -> u64 {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we pass.
    unsafe { libc::getrlimit(resource, &mut r) };
    r.rlim_max
}

/// stdout as a String.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr as a String.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Assert success, printing the output otherwise; returns stdout.
#[track_caller]
pub fn ok(o: &Output) -> String {
    assert!(o.status.success(), "command failed ({:?}):\nstdout: {}\nstderr: {}", o.status, stdout(o), stderr(o));
    stdout(o)
}

fn sha256(bytes: &[u8]) -> String {
    let mut c = Command::new("sha256sum");
    c.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = c.spawn().expect("spawn sha256sum");
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(bytes).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}
