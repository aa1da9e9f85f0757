//! podman drives berth-runtime (`podman --runtime berth-runtime`): run, detached run + logs +
//! stop + rm, exec, memory limit, pause/unpause, stats, `run -it` through the console socket,
//! and the same exit statuses as runc.
//!
//! Each test has a private podman (--root, --runroot, --tmpdir under its own directory, vfs
//! storage, cgroupfs under a cgroup parent of its own, file events, no network), imports a
//! busybox image built offline, and on drop removes its containers, kills what is left of
//! conmon, unmounts, and removes its cgroups. Without CAP_SYS_RESOURCE (this sandbox) podman's
//! default rlimits (nofile 1048576) cannot be set by runc either, so the tests pass ulimits
//! that fit the current hard limits.

#[path = "common/interop.rs"]
mod interop;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use interop::{ok, run, run_in_pty, skip_unless, stderr, stdout, wait_for, Scratch, BIN};

const IMAGE: &str = "localhost/berth-busybox:latest";

struct Podman {
    scratch: Scratch,
    runtime: String,
    cgroup_parent: String,
}

impl Podman {
    /// A private podman with the busybox image, or None (with the reason printed).
    fn new(test: &str) -> Option<Podman> {
        if skip_unless(test, &["podman", "conmon", "script", "timeout", "tar"]) {
            return None;
        }
        let mut scratch = Scratch::new(test);
        let cgroup_parent = format!("/{}", scratch.tag);
        scratch.cgroups.push(cgroup_parent.clone());
        let p = Podman { scratch, runtime: BIN.to_string(), cgroup_parent };
        let tar = p.scratch.busybox_tar();
        ok(&p.podman(&["import", tar.to_str().unwrap(), IMAGE]));
        Some(p)
    }

    fn global_args(&self) -> Vec<String> {
        let d = |n: &str| self.scratch.path(n).to_string_lossy().into_owned();
        let mut a: Vec<String> = vec!["--root".into(), d("storage"), "--runroot".into(), d("run"), "--tmpdir".into(), d("tmp")];
        a.extend(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file"].map(String::from));
        a.extend(["--runtime".to_string(), self.runtime.clone()]);
        a
    }

    /// A podman command line for a shell (`script -c`).
    fn shell_line(&self, args: &[&str]) -> String {
        let mut words = vec!["podman".to_string()];
        words.extend(self.global_args());
        words.extend(args.iter().map(|a| a.to_string()));
        words.iter().map(|w| format!("'{}'", w.replace('\'', r"'\''"))).collect::<Vec<_>>().join(" ")
    }

    fn podman(&self, args: &[&str]) -> Output {
        run(Command::new("podman").args(self.global_args()).args(args), 120)
    }

    /// `run` options every container gets: no network, ulimits that fit, our cgroup parent.
    fn run_opts(&self) -> Vec<String> {
        let nofile = interop::hard_rlimit(libc::RLIMIT_NOFILE).min(1 << 20);
        let nproc = interop::hard_rlimit(libc::RLIMIT_NPROC).min(32768);
        vec![
            "--network".into(),
            "none".into(),
            "--ulimit".into(),
            format!("nofile={nofile}:{nofile}"),
            "--ulimit".into(),
            format!("nproc={nproc}:{nproc}"),
            "--cgroup-parent".into(),
            self.cgroup_parent.clone(),
        ]
    }

    /// `podman run <run_opts> <extra> IMAGE <cmd>`.
    fn run_container(&self, extra: &[&str], cmd: &[&str]) -> Output {
        let opts = self.run_opts();
        let mut args: Vec<&str> = vec!["run"];
        args.extend(opts.iter().map(String::as_str));
        args.extend(extra);
        args.push(IMAGE);
        args.extend(cmd);
        self.podman(&args)
    }

    fn name(&self, what: &str) -> String {
        format!("{}-{what}", self.scratch.tag)
    }

    fn status(&self, name: &str) -> String {
        stdout(&self.podman(&["inspect", "--format", "{{.State.Status}}", name])).trim().to_string()
    }

    /// The host directory of a container's cgroup in the v1 hierarchy `controller`.
    fn v1_cgroup_dir(&self, controller: &str, name: &str) -> Option<PathBuf> {
        let id = stdout(&self.podman(&["inspect", "--format", "{{.Id}}", name])).trim().to_string();
        let dir = PathBuf::from("/sys/fs/cgroup").join(controller).join(self.cgroup_parent.trim_start_matches('/'));
        let entries = std::fs::read_dir(&dir).ok()?;
        entries.flatten().map(|e| e.path()).find(|p| p.file_name().unwrap().to_string_lossy().contains(&id))
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.podman(&["rm", "--force", "--all", "--time", "0"]);
        let _ = self.podman(&["image", "rm", "--all", "--force"]);
        // Scratch's drop kills leftover conmons, unmounts, removes the cgroup parent.
    }
}

#[test]
fn podman_run_rm_echo_prints_hi() {
    let Some(p) = Podman::new("podman_run_rm_echo") else { return };
    let out = p.run_container(&["--rm"], &["echo", "hi"]);
    assert_eq!(ok(&out), "hi\n");
    assert_eq!(stdout(&p.podman(&["ps", "-a", "-q"])), "", "--rm left a container");
}

#[test]
fn podman_detached_container_has_logs_exec_and_stops() {
    let Some(p) = Podman::new("podman_detached") else { return };
    let name = p.name("d");
    // A shell as pid 1 that exits on SIGTERM, so `stop` needs no SIGKILL.
    let script = "trap 'echo bye; exit 0' TERM; echo started; while :; do sleep 0.1; done";
    ok(&p.run_container(&["-d", "--name", &name], &["sh", "-c", script]));
    assert!(wait_for(10, || stdout(&p.podman(&["logs", &name])).contains("started")), "no log line");
    assert_eq!(p.status(&name), "running");

    let out = ok(&p.podman(&["exec", &name, "sh", "-c", "echo in-exec; cat /proc/1/cmdline | tr '\\0' ' '"]));
    assert!(out.starts_with("in-exec\nsh -c "), "exec output: {out}");
    let out = p.podman(&["exec", &name, "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "exec exit status: {}", stderr(&out));

    ok(&p.podman(&["stop", "--time", "10", &name]));
    assert_eq!(p.status(&name), "exited");
    let code = stdout(&p.podman(&["inspect", "--format", "{{.State.ExitCode}}", &name]));
    assert_eq!(code.trim(), "0");
    assert!(stdout(&p.podman(&["logs", &name])).contains("bye"), "the TERM trap did not run");
    ok(&p.podman(&["rm", &name]));
    assert_eq!(stdout(&p.podman(&["ps", "-a", "-q"])), "");
}

#[test]
fn podman_exec_it_gets_a_tty() {
    let Some(p) = Podman::new("podman_exec_it") else { return };
    let name = p.name("e");
    ok(&p.run_container(&["-d", "--name", &name], &["sleep", "600"]));
    let line = p.shell_line(&["exec", "-it", &name, "sh", "-c", "tty; echo cols=$(stty size)"]);
    let out = run_in_pty(&line, "", Duration::ZERO, 60);
    let text = stdout(&out);
    assert!(out.status.success(), "exec -it failed: {text} {}", stderr(&out));
    assert!(text.contains("/dev/pts/"), "no tty in exec -it: {text:?}");
    ok(&p.podman(&["rm", "--force", "--time", "0", &name]));
}

#[test]
fn podman_memory_limit_is_set_in_the_v1_memory_cgroup() {
    let Some(p) = Podman::new("podman_memory") else { return };
    let inside = p.run_container(&["--rm", "--memory", "64m"], &["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]);
    assert_eq!(ok(&inside).trim(), "67108864");

    let name = p.name("m");
    ok(&p.run_container(&["-d", "--name", &name, "--memory", "64m"], &["sleep", "600"]));
    let dir = p.v1_cgroup_dir("memory", &name).expect("the container's memory cgroup under our cgroup parent");
    let limit = std::fs::read_to_string(dir.join("memory.limit_in_bytes")).unwrap();
    assert_eq!(limit.trim(), "67108864");
    ok(&p.podman(&["rm", "--force", "--time", "0", &name]));
    assert!(wait_for(10, || !dir.exists()), "{} outlived its container", dir.display());
}

#[test]
fn podman_pause_and_unpause_freeze_and_thaw_the_container() {
    let Some(p) = Podman::new("podman_pause") else { return };
    let name = p.name("p");
    ok(&p.run_container(&["-d", "--name", &name], &["sleep", "600"]));
    ok(&p.podman(&["pause", &name]));
    assert_eq!(p.status(&name), "paused");
    let dir = p.v1_cgroup_dir("freezer", &name).expect("the container's freezer cgroup");
    assert_eq!(std::fs::read_to_string(dir.join("freezer.state")).unwrap().trim(), "FROZEN");
    ok(&p.podman(&["unpause", &name]));
    assert_eq!(p.status(&name), "running");
    assert_eq!(ok(&p.podman(&["exec", &name, "echo", "thawed"])), "thawed\n");
    ok(&p.podman(&["rm", "--force", "--time", "0", &name]));
}

#[test]
fn podman_stats_no_stream_reports_the_container() {
    let Some(p) = Podman::new("podman_stats") else { return };
    let name = p.name("s");
    ok(&p.run_container(&["-d", "--name", &name, "--memory", "64m"], &["sleep", "600"]));
    let out = ok(&p.podman(&["stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}} {{.PIDs}}", &name]));
    assert!(out.starts_with(&format!("{name} ")), "stats: {out}");
    assert!(out.contains("/ 67.11MB"), "stats shows the memory limit: {out}");
    assert!(out.trim_end().ends_with(" 1"), "stats shows one pid: {out}");
    ok(&p.podman(&["rm", "--force", "--time", "0", &name]));
}

#[test]
fn podman_run_it_talks_to_the_shell_through_the_console_socket() {
    let Some(p) = Podman::new("podman_run_it") else { return };
    let opts = p.run_opts();
    let mut args: Vec<&str> = vec!["run", "--rm", "-it"];
    args.extend(opts.iter().map(String::as_str));
    args.extend([IMAGE, "sh"]);
    let out = run_in_pty(&p.shell_line(&args), "tty\necho $((6*7))\nexit 3\n", Duration::from_secs(2), 60);
    let text = stdout(&out).replace('\r', "");
    assert!(text.contains("/dev/pts/0\n"), "no pty: {text:?}");
    assert!(text.contains("\n42\n"), "the shell did not answer: {text:?}");
    assert_eq!(out.status.code(), Some(3), "exit status through the tty: {text:?} {}", stderr(&out));
}

#[test]
fn podman_exit_status_and_missing_command_match_runc() {
    let Some(mut p) = Podman::new("podman_vs_runc") else { return };
    let mut runtimes = vec![BIN.to_string()];
    match interop::which("runc") {
        Some(r) => runtimes.push(r.to_string_lossy().into_owned()),
        None => eprintln!("podman_vs_runc: runc not installed, checking berth-runtime alone"),
    }
    let mut results = Vec::new();
    for rt in runtimes {
        p.runtime = rt.clone();
        let exit7 = p.run_container(&["--rm"], &["sh", "-c", "echo out; echo err >&2; exit 7"]);
        let missing = p.run_container(&["--rm"], &["/nonexistent"]);
        let not_exec = p.run_container(&["--rm"], &["/etc/passwd"]);
        results.push((
            rt,
            exit7.status.code(),
            stdout(&exit7),
            missing.status.code(),
            stderr(&missing).contains("invoke a command that was not found"),
            not_exec.status.code(),
        ));
    }
    let berth = &results[0];
    assert_eq!((berth.1, berth.2.as_str(), berth.3, berth.4, berth.5), (Some(7), "out\n", Some(127), true, Some(126)), "{berth:?}");
    for other in &results[1..] {
        assert_eq!(
            (&berth.1, &berth.2, &berth.3, &berth.4, &berth.5),
            (&other.1, &other.2, &other.3, &other.4, &other.5),
            "berth vs {}",
            other.0
        );
    }
    p.runtime = BIN.to_string();
}
