//! dockerd (Debian's docker.io 20.10) drives berth-runtime registered with `--add-runtime
//! berth=<berth-runtime>`: `docker run --runtime berth` with --rm, detached + logs + exec +
//! stop + rm, `-it` and `exec -it` through a pty, `--memory`, pause/unpause, top, stats, and
//! the exit statuses docker derives from the runtime's error text (126/127), against runc.
//!
//! The tests of this file share one private dockerd, started by the first test that needs it
//! and stopped when the last one running lets go of it (a lock orders starts and stops). It
//! has its own data root, exec root, pid file, key file, socket and daemon.json under a
//! scratch directory, no networking (`--bridge=none`, no iptables, `--network none` on every
//! container), vfs storage, cgroupfs under a cgroup parent of its own, and the containerd it
//! starts itself (under its exec root). On stop its containers are removed, dockerd is
//! stopped, what is left of its containerd and shims is killed, everything under its roots is
//! unmounted, its cgroups are removed, and /run/docker (which dockerd creates whatever its
//! exec root) is removed if dockerd made it.

#[path = "common/interop.rs"]
mod interop;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use interop::{ok, run, run_in_pty, skip_unless, stderr, stdout, wait_for, Scratch, BIN};

const IMAGE: &str = "berth-busybox:latest";
/// Debian's docker CLI, the one that matches its dockerd (PATH may hold another).
const DEBIAN_DOCKER_CLI: &str = "/usr/bin/docker";
/// Created by dockerd for plugin sockets, whatever its exec root.
const RUN_DOCKER: &str = "/run/docker";

/// The daemon shared by the tests running now; a start or a stop holds the lock.
static SHARED: Mutex<Weak<Dockerd>> = Mutex::new(Weak::new());
/// Whether /run/docker existed before this file started its first dockerd.
static RUN_DOCKER_PREEXISTED: OnceLock<bool> = OnceLock::new();

struct Dockerd {
    daemon: Option<Child>,
    cli: PathBuf,
    cgroup_parent: String,
    scratch: Scratch,
    /// Set while `start` runs (its caller holds the lock): a failed start must not take it.
    starting: bool,
}

impl Dockerd {
    /// The private dockerd with the busybox image loaded, or None (with the reason printed).
    fn shared(test: &str) -> Option<Arc<Dockerd>> {
        if skip_unless(test, &["dockerd", "containerd", "containerd-shim-runc-v2", "docker", "script", "timeout", "tar", "sha256sum"]) {
            return None;
        }
        let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = slot.upgrade() {
            return Some(d);
        }
        let d = Arc::new(Dockerd::start());
        *slot = Arc::downgrade(&d);
        Some(d)
    }

    fn start() -> Dockerd {
        RUN_DOCKER_PREEXISTED.get_or_init(|| Path::new(RUN_DOCKER).exists());
        let mut scratch = Scratch::new("dockerd");
        let cgroup_parent = format!("/{}", scratch.tag);
        scratch.cgroups.push(cgroup_parent.clone());
        let d = |n: &str| scratch.path(n).to_string_lossy().into_owned();
        // A config file of our own, so that /etc/docker/daemon.json is not read; the key
        // file's place (else /etc/docker/key.json) has no command-line flag.
        let config = serde_json::json!({"deprecated-key-path": d("key.json")});
        std::fs::write(scratch.path("daemon.json"), config.to_string()).unwrap();
        let log = std::fs::File::create(scratch.path("dockerd.log")).unwrap();
        let daemon = Command::new("dockerd")
            .args(["--config-file", &d("daemon.json"), "--data-root", &d("data"), "--exec-root", &d("exec")])
            .args(["--pidfile", &d("dockerd.pid")])
            .args(["-H", &format!("unix://{}", d("docker.sock"))])
            .args(["--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false", "--userland-proxy=false"])
            .args(["--storage-driver", "vfs", "--exec-opt", "native.cgroupdriver=cgroupfs", "--cgroup-parent", &cgroup_parent])
            .args(["--add-runtime", &format!("berth={BIN}")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn dockerd");
        let cli = if Path::new(DEBIAN_DOCKER_CLI).exists() { PathBuf::from(DEBIAN_DOCKER_CLI) } else { interop::which("docker").unwrap() };
        let mut dockerd = Dockerd { daemon: Some(daemon), cli, cgroup_parent, scratch, starting: true };
        assert!(wait_for(60, || dockerd.docker(&["version"]).status.success()), "dockerd did not come up: {}", dockerd.log());
        let archive = dockerd.scratch.busybox_docker_archive(IMAGE);
        ok(&dockerd.docker(&["load", "--input", archive.to_str().unwrap()]));
        dockerd.starting = false;
        dockerd
    }

    fn docker_cmd(&self) -> Command {
        let mut c = Command::new(&self.cli);
        c.env("DOCKER_CONFIG", self.scratch.path("cli-config"));
        c.arg("--host").arg(format!("unix://{}", self.scratch.path("docker.sock").display()));
        c
    }

    fn docker(&self, args: &[&str]) -> Output {
        run(self.docker_cmd().args(args), 120)
    }

    /// `docker run --runtime <runtime> --network none <extra> IMAGE <cmd>`.
    fn run_container(&self, runtime: &str, extra: &[&str], cmd: &[&str]) -> Output {
        let mut args = vec!["run", "--runtime", runtime, "--network", "none"];
        args.extend(extra);
        args.push(IMAGE);
        args.extend(cmd);
        self.docker(&args)
    }

    /// A container name unique to this daemon and test.
    fn name(&self, what: &str) -> String {
        format!("{}-{what}", self.scratch.tag)
    }

    fn inspect(&self, format: &str, name: &str) -> String {
        stdout(&self.docker(&["inspect", "--format", format, name])).trim().to_string()
    }

    /// The host directory of a container's cgroup in the v1 hierarchy `controller`.
    fn v1_cgroup_dir(&self, controller: &str, id: &str) -> PathBuf {
        PathBuf::from("/sys/fs/cgroup").join(controller).join(self.cgroup_parent.trim_start_matches('/')).join(id)
    }

    /// The `--root` dockerd 20.10 gives every runtime of the runc shim, berth included.
    fn berth_root(&self) -> PathBuf {
        self.scratch.path("exec/runtime-runc/moby")
    }

    /// `berth-runtime state` of a container: it fails unless berth-runtime created it.
    fn berth_state(&self, id: &str) -> serde_json::Value {
        let out = run(Command::new(BIN).arg("--root").arg(self.berth_root()).args(["state", id]), 30);
        serde_json::from_str(&ok(&out)).expect("state JSON")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.scratch.path("dockerd.log")).unwrap_or_default()
    }

    /// A docker command line for a shell (`script -c`).
    fn shell_line(&self, args: &[&str]) -> String {
        let c = self.docker_cmd();
        let mut words = vec![format!("DOCKER_CONFIG={}", self.scratch.path("cli-config").display())];
        words.push(self.cli.to_string_lossy().into_owned());
        words.extend(c.get_args().map(|a| a.to_string_lossy().into_owned()));
        words.extend(args.iter().map(|a| a.to_string()));
        let quoted: Vec<String> = words.iter().map(|w| format!("'{}'", w.replace('\'', r"'\''"))).collect();
        format!("env {}", quoted.join(" "))
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // Ordered with starts: a test starting a new daemon waits until this one is gone.
        let slot = (!self.starting).then(|| SHARED.lock().unwrap_or_else(|e| e.into_inner()));
        let ids = stdout(&self.docker(&["ps", "--all", "--quiet"]));
        let ids: Vec<&str> = ids.lines().collect();
        if !ids.is_empty() {
            let _ = self.docker(&[&["rm", "--force", "--volumes"], ids.as_slice()].concat());
        }
        if let Some(mut d) = self.daemon.take() {
            // SAFETY: kill(2) on the pid of the dockerd we spawned and have not reaped.
            unsafe { libc::kill(d.id() as i32, libc::SIGTERM) };
            if !wait_for(20, || d.try_wait().map(|s| s.is_some()).unwrap_or(true)) {
                let _ = d.kill();
            }
            let _ = d.wait();
        }
        // Its containerd and shims name our exec root: Scratch kills them, unmounts, removes
        // the cgroup parent. Then what dockerd made outside its roots, if no daemon is left.
        self.scratch.kill_processes_under(Duration::from_secs(5));
        let other_daemon = slot.as_ref().is_some_and(|s| s.upgrade().is_some());
        if !other_daemon && RUN_DOCKER_PREEXISTED.get() == Some(&false) {
            let _ = std::fs::remove_dir(Path::new(RUN_DOCKER).join("plugins"));
            let _ = std::fs::remove_dir(RUN_DOCKER);
        }
    }
}

#[test]
fn docker_run_rm_echo_prints_hi() {
    let Some(d) = Dockerd::shared("docker_run_rm_echo") else { return };
    let name = d.name("hi");
    assert_eq!(ok(&d.run_container("berth", &["--rm", "--name", &name], &["echo", "hi"])), "hi\n");
    assert!(!d.docker(&["inspect", &name]).status.success(), "--rm left the container");
}

#[test]
fn docker_detached_container_has_logs_exec_stops_and_is_removed() {
    let Some(d) = Dockerd::shared("docker_detached") else { return };
    let name = d.name("d");
    // A shell as pid 1 that exits on SIGTERM, so `stop` needs no SIGKILL.
    let script = "trap 'echo bye; exit 0' TERM; echo started; while :; do sleep 0.1; done";
    let id = ok(&d.run_container("berth", &["-d", "--name", &name], &["sh", "-c", script])).trim().to_string();
    assert!(wait_for(10, || stdout(&d.docker(&["logs", &name])).contains("started")), "no log line");
    assert_eq!(d.inspect("{{.State.Status}}", &name), "running");
    let state = d.berth_state(&id);
    assert_eq!(state["status"], "running", "berth-runtime does not know the container: {state}");

    let out = ok(&d.docker(&["exec", &name, "sh", "-c", "echo in-exec; cat /proc/1/cmdline | tr '\\0' ' '"]));
    assert!(out.starts_with("in-exec\nsh -c "), "exec output: {out}");
    let out = d.docker(&["exec", &name, "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "exec exit status: {}", stderr(&out));
    assert_eq!(ok(&d.docker(&["exec", "--user", "1000", &name, "id", "-u"])), "1000\n");
    assert_eq!(ok(&d.docker(&["exec", "--workdir", "/tmp", "--env", "FOO=bar", &name, "sh", "-c", "pwd; echo $FOO"])), "/tmp\nbar\n");

    ok(&d.docker(&["stop", "--time", "10", &name]));
    assert_eq!(d.inspect("{{.State.Status}} {{.State.ExitCode}}", &name), "exited 0");
    assert!(stdout(&d.docker(&["logs", &name])).contains("bye"), "the TERM trap did not run");
    ok(&d.docker(&["rm", &name]));
    assert!(!d.docker(&["inspect", &name]).status.success(), "rm left the container");
    assert!(!d.berth_root().join(&id).exists(), "rm left berth-runtime's state");
}

#[test]
fn docker_run_it_talks_to_the_shell_through_a_pty() {
    let Some(d) = Dockerd::shared("docker_run_it") else { return };
    let line = d.shell_line(&["run", "--rm", "-it", "--runtime", "berth", "--network", "none", IMAGE, "sh"]);
    let out = run_in_pty(&line, "tty\necho $((6*7))\nexit 3\n", Duration::from_secs(2), 60);
    let text = stdout(&out).replace('\r', "");
    assert!(text.contains("/dev/pts/0\n"), "no pty: {text:?} {}", stderr(&out));
    assert!(text.contains("\n42\n"), "the shell did not answer: {text:?}");
    assert_eq!(out.status.code(), Some(3), "exit status through the tty: {text:?}");
}

#[test]
fn docker_exec_it_gets_a_tty_of_the_terminal_size() {
    let Some(d) = Dockerd::shared("docker_exec_it") else { return };
    let name = d.name("e");
    ok(&d.run_container("berth", &["-d", "--name", &name], &["sleep", "600"]));
    let exec = d.shell_line(&["exec", "-it", &name, "sh", "-c", "tty; sleep 1; stty size"]);
    let out = run_in_pty(&format!("stty rows 30 cols 100; {exec}"), "", Duration::ZERO, 60);
    let text = stdout(&out).replace('\r', "");
    assert!(out.status.success(), "exec -it failed: {text} {}", stderr(&out));
    assert!(text.contains("/dev/pts/"), "no tty in exec -it: {text:?}");
    assert!(text.contains("30 100\n"), "the window size did not reach the exec: {text:?}");
    ok(&d.docker(&["rm", "--force", &name]));
}

#[test]
fn docker_memory_limit_is_set_in_the_v1_memory_cgroup() {
    let Some(d) = Dockerd::shared("docker_memory") else { return };
    let inside = d.run_container("berth", &["--rm", "--memory", "64m"], &["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]);
    assert_eq!(ok(&inside).trim(), "67108864");

    let name = d.name("m");
    let id = ok(&d.run_container("berth", &["-d", "--name", &name, "--memory", "64m"], &["sleep", "600"])).trim().to_string();
    let dir = d.v1_cgroup_dir("memory", &id);
    let limit = std::fs::read_to_string(dir.join("memory.limit_in_bytes")).expect("the container's memory cgroup under our cgroup parent");
    assert_eq!(limit.trim(), "67108864");
    ok(&d.docker(&["rm", "--force", &name]));
    assert!(wait_for(10, || !dir.exists()), "{} outlived its container", dir.display());
}

#[test]
fn docker_pause_top_and_stats_see_the_container() {
    let Some(d) = Dockerd::shared("docker_pause") else { return };
    let name = d.name("p");
    let id = ok(&d.run_container("berth", &["-d", "--name", &name, "--memory", "64m"], &["sleep", "600"])).trim().to_string();
    ok(&d.docker(&["pause", &name]));
    assert_eq!(d.inspect("{{.State.Status}}", &name), "paused");
    let freezer = d.v1_cgroup_dir("freezer", &id).join("freezer.state");
    assert_eq!(std::fs::read_to_string(freezer).unwrap().trim(), "FROZEN");
    ok(&d.docker(&["unpause", &name]));
    assert_eq!(d.inspect("{{.State.Status}}", &name), "running");
    assert_eq!(ok(&d.docker(&["exec", &name, "echo", "thawed"])), "thawed\n");

    let top = ok(&d.docker(&["top", &name]));
    assert!(top.contains("sleep 600"), "top: {top}");
    let stats = ok(&d.docker(&["stats", "--no-stream", "--format", "{{.MemUsage}} {{.PIDs}}", &name]));
    assert!(stats.contains("/ 64MiB"), "stats shows the memory limit: {stats}");
    assert!(stats.trim_end().ends_with(" 1"), "stats shows one pid: {stats}");
    ok(&d.docker(&["rm", "--force", &name]));
}

#[test]
fn docker_exit_statuses_match_runc() {
    let Some(d) = Dockerd::shared("docker_vs_runc") else { return };
    let mut runtimes = vec!["berth"];
    match interop::which("runc") {
        Some(_) => runtimes.push("runc"),
        None => eprintln!("docker_vs_runc: runc not installed, checking berth-runtime alone"),
    }
    let mut results = Vec::new();
    for rt in runtimes {
        let code = |o: &Output| o.status.code();
        let exit7 = d.run_container(rt, &["--rm"], &["sh", "-c", "echo out; echo err >&2; exit 7"]);
        // docker turns the runtime's "no such file or directory" / "permission denied" into
        // 127 / 126 by matching the error text; anything else is 125.
        let missing = d.run_container(rt, &["--rm"], &["/nonexistent"]);
        let not_in_path = d.run_container(rt, &["--rm"], &["nonexistent"]);
        let not_exec = d.run_container(rt, &["--rm"], &["/etc/passwd"]);
        let name = d.name(&format!("k-{rt}"));
        ok(&d.run_container(rt, &["-d", "--name", &name], &["sleep", "600"]));
        let exec_missing = d.docker(&["exec", &name, "/nonexistent"]);
        // sleep as pid 1 ignores SIGTERM: stop ends with SIGKILL after the timeout.
        ok(&d.docker(&["stop", "--time", "1", &name]));
        let stopped = d.inspect("{{.State.ExitCode}}", &name);
        ok(&d.docker(&["rm", &name]));
        let outcome = (code(&exit7), stdout(&exit7), code(&missing), code(&not_in_path), code(&not_exec), code(&exec_missing), stopped);
        results.push((rt, outcome));
    }
    let (_, berth) = &results[0];
    let expected = (Some(7), "out\n".to_string(), Some(127), Some(127), Some(126), Some(126), "137".to_string());
    assert_eq!(berth, &expected, "berth-runtime");
    for (rt, other) in &results[1..] {
        assert_eq!(berth, other, "berth-runtime vs {rt}");
    }
}
