//! The container life through the built `berth`: detached runs under a monitor, logs, exec,
//! stop/kill/start/restart/wait, restart policies, --rm, reconciliation after a lost monitor.

mod common;

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{alive, Env};

#[test]
fn detached_run_has_logs_followed_until_stop_and_records_the_exit() {
    let e = Env::new("logs-follow");
    let id = e.ok(&[
        "run",
        "-d",
        "--name",
        "ticker",
        "localhost/demo",
        "sh",
        "-c",
        "trap 'echo bye; exit 3' TERM; echo started; echo oops >&2; while true; do echo tick; sleep 0.1; done",
    ]);
    assert_eq!(id.len(), 64, "run -d prints the full id: {id}");
    e.wait_for("ticker", "{{.State.Status}}", "running");
    let mut follow = e.cmd(&["logs", "-f", "ticker"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let t = Instant::now();
    e.ok(&["stop", "ticker"]);
    assert!(t.elapsed() < Duration::from_secs(5), "the container handles TERM: stop must not wait for the timeout");
    // logs -f ends by itself once the container exited.
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = follow.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "logs -f did not end after the container stopped");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
    let mut out = String::new();
    follow.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let mut err = String::new();
    follow.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(out.starts_with("started\ntick\n"), "{out}");
    assert!(out.trim_end().ends_with("bye"), "the output after the stop signal is logged too: {out}");
    assert_eq!(err, "oops\n", "stderr stays stderr");
    assert_eq!(e.inspect("ticker", "{{.State.Status}} {{.State.ExitCode}}"), "exited 3");
    assert_eq!(e.ok(&["wait", "ticker"]), "3");
    // --tail and timestamps.
    let tail = e.ok(&["logs", "--tail", "1", "-t", "ticker"]);
    assert!(tail.ends_with(" bye") && tail.starts_with("20"), "{tail}");
    // The monitor is gone and nothing of the container runs.
    assert_eq!(e.ok(&["ps", "-q"]), "");
}

#[test]
fn exec_runs_in_the_running_container_with_user_env_workdir_and_status() {
    let e = Env::new("exec");
    e.ok(&["run", "-d", "--name", "box", "-e", "FROM_RUN=1", "localhost/demo", "sleep", "1000"]);
    let out = e.ok(&["exec", "-u", "app", "-e", "X=y", "-w", "/etc", "box", "sh", "-c", "echo $(id -u) $X $FROM_RUN $(pwd) $HOME"]);
    assert_eq!(out, "4000 y 1 /etc /home/app");
    // Same pid namespace as the container's init: it sees `sleep` as PID 1.
    assert_eq!(e.ok(&["exec", "box", "cat", "/proc/1/cmdline"]).trim_end_matches(char::from(0)), "sleep\01000");
    assert_eq!(e.berth(&["exec", "box", "sh", "-c", "exit 7"]).status.code(), Some(7));
    let missing = e.berth(&["exec", "box", "no-such-command"]);
    assert_eq!(missing.status.code(), Some(127), "{}", String::from_utf8_lossy(&missing.stderr));
    // Detached exec leaves a process behind that top shows.
    e.ok(&["exec", "-d", "box", "sleep", "999"]);
    let top = e.ok(&["top", "box"]);
    assert!(top.contains("sleep 999") && top.contains("sleep 1000"), "{top}");
    let stats = e.ok(&["stats", "--no-stream", "box"]);
    assert!(stats.contains("box"), "{stats}");
    // Blocked and ignored signals of the monitor do not leak into the container.
    let status = e.ok(&["exec", "box", "grep", "-E", "^Sig(Blk|Ign)", "/proc/1/status"]);
    assert_eq!(status, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000", "{status}");
    e.ok(&["rm", "-f", "box"]);
    assert_eq!(e.mounts(), 0);
}

#[test]
fn stop_sends_the_stop_signal_then_sigkill_after_the_timeout() {
    let e = Env::new("stop-timeout");
    // PID 1 without a TERM handler ignores TERM: only SIGKILL ends it.
    e.ok(&["run", "-d", "--name", "stubborn", "--stop-timeout", "1", "localhost/demo", "sleep", "1000"]);
    let t = Instant::now();
    e.ok(&["stop", "stubborn"]);
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(6), "stop took {took:?}");
    assert_eq!(e.inspect("stubborn", "{{.State.ExitCode}}"), "137");
    // --stop-signal is what stop sends first.
    e.ok(&[
        "run",
        "-d",
        "--name",
        "usr1",
        "--stop-signal",
        "USR1",
        "localhost/demo",
        "sh",
        "-c",
        "trap 'exit 42' USR1; while true; do sleep 0.1; done",
    ]);
    e.wait_for("usr1", "{{.State.Status}}", "running");
    std::thread::sleep(Duration::from_millis(200));
    e.ok(&["stop", "-t", "5", "usr1"]);
    assert_eq!(e.inspect("usr1", "{{.State.ExitCode}}"), "42");
    // Stopping a stopped container is fine; start brings it back; kill ends it.
    e.ok(&["stop", "usr1"]);
    e.ok(&["start", "usr1"]);
    assert_eq!(e.inspect("usr1", "{{.State.Status}}"), "running");
    e.ok(&["kill", "usr1"]);
    e.wait_for("usr1", "{{.State.Status}} {{.State.ExitCode}}", "exited 137");
}

#[test]
fn restart_policy_on_failure_2_restarts_twice_then_stays_exited() {
    let e = Env::new("restart");
    e.ok(&["run", "-d", "--name", "flaky", "--restart", "on-failure:2", "localhost/demo", "sh", "-c", "echo run; exit 1"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = e.inspect("flaky", "{{.State.Status}} {{.RestartCount}}");
        if s == "exited 2" {
            break;
        }
        assert!(Instant::now() < deadline, "still {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // No third restart comes.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(e.inspect("flaky", "{{.State.Status}} {{.RestartCount}} {{.State.ExitCode}}"), "exited 2 1");
    assert_eq!(e.ok(&["logs", "flaky"]), "run\nrun\nrun");
    // always, then a stop: the policy does not bring a stopped container back.
    e.ok(&["run", "-d", "--name", "always", "--restart", "always", "localhost/demo", "sh", "-c", "sleep 0.2; exit 0"]);
    e.wait_for("always", "{{.RestartCount}}", "1");
    e.ok(&["stop", "-t", "1", "always"]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(e.inspect("always", "{{.State.Status}}"), "exited");
}

#[test]
fn detached_rm_container_leaves_no_row_mount_or_directory() {
    let e = Env::new("rm-detached");
    let id = e.ok(&["run", "-d", "--rm", "localhost/demo", "sh", "-c", "sleep 0.3"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !e.ok(&["ps", "-a", "-q"]).is_empty() {
        assert!(Instant::now() < deadline, "the --rm container was not removed");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(e.mounts(), 0);
    assert!(!e.dir.join("root/containers").join(&id).exists());
    assert!(!e.dir.join("run/containers").join(&id).exists());
}

#[test]
fn create_then_start_attach_prints_the_output_and_returns_the_status() {
    let e = Env::new("create-start");
    let id = e.ok(&["create", "--name", "later", "localhost/demo", "sh", "-c", "echo hello; echo err >&2; exit 4"]);
    assert_eq!(e.inspect(&id, "{{.State.Status}}"), "created");
    let out = e.berth(&["start", "-a", "later"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    assert_eq!(out.status.code(), Some(4));
    // A foreground run without --rm is logged and inspectable afterwards.
    let out = e.berth(&["run", "--name", "fg", "localhost/demo", "echo", "kept"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "kept\n");
    assert_eq!(e.ok(&["logs", "fg"]), "kept");
    assert_eq!(e.inspect("fg", "{{.State.Status}} {{.State.ExitCode}}"), "exited 0");
    e.ok(&["rename", "fg", "renamed"]);
    assert_eq!(e.inspect("renamed", "{{.Name}}"), "renamed");
    let filtered = e.ok(&["ps", "-a", "--filter", "name=renamed", "--format", "{{.Names}} {{.Status}}"]);
    assert_eq!(filtered, "renamed Exited (0)");
}

#[test]
fn k8s_file_logs_and_the_none_driver() {
    let e = Env::new("log-drivers");
    e.ok(&["run", "--name", "k8s", "--log-driver", "k8s-file", "localhost/demo", "sh", "-c", "echo one; printf two"]);
    assert_eq!(e.ok(&["logs", "k8s"]), "one\ntwo");
    let path = e.inspect("k8s", "{{.LogPath}}");
    let raw = std::fs::read_to_string(path).unwrap();
    assert!(raw.contains(" stdout F one\n") && raw.contains(" stdout P two\n"), "{raw}");
    e.ok(&["run", "--name", "quiet", "--log-driver", "none", "localhost/demo", "echo", "x"]);
    let out = e.berth(&["logs", "quiet"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("log driver is none"));
}

#[test]
fn a_monitor_killed_mid_life_is_reconciled_and_rm_force_cleans_up() {
    let e = Env::new("lost-monitor");
    e.ok(&["run", "-d", "--name", "orphan", "localhost/demo", "sleep", "1000"]);
    e.ok(&["run", "-d", "--name", "gone", "localhost/demo", "sleep", "1000"]);
    let monitor_of = |name: &str| -> i32 {
        let out = std::process::Command::new("pgrep").args(["-f", &format!("__monitor {}", e.inspect(name, "{{.Id}}"))]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().expect("the monitor process")
    };
    let init_orphan: i32 = e.inspect("orphan", "{{.State.Pid}}").parse().unwrap();
    let init_gone: i32 = e.inspect("gone", "{{.State.Pid}}").parse().unwrap();
    for name in ["orphan", "gone"] {
        let m = monitor_of(name);
        // SAFETY: kill with a pid and a signal.
        unsafe { libc::kill(m, libc::SIGKILL) };
    }
    // SAFETY: as above.
    unsafe { libc::kill(init_gone, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(300));
    let ps = e.ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.contains("orphan Up"), "a container whose init still runs is shown running: {ps}");
    assert!(ps.contains("gone Exited (unknown)"), "a container whose init died is exited: {ps}");
    assert!(alive(init_orphan));
    e.ok(&["rm", "-f", "orphan", "gone"]);
    std::thread::sleep(Duration::from_millis(100));
    assert!(!alive(init_orphan), "rm -f killed the orphaned container");
    assert_eq!(e.ok(&["ps", "-a", "-q"]), "");
    assert_eq!(e.mounts(), 0);
}

#[test]
fn twenty_concurrent_detached_runs_then_rm_f_leave_nothing_behind() {
    let e = Env::new("concurrent");
    let children: Vec<_> = (0..20)
        .map(|i| {
            e.cmd(&["run", "-d", "--name", &format!("c{i}"), "localhost/demo", "sleep", "1000"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(e.ok(&["ps", "-q"]).lines().count(), 20);
    let pids: Vec<i32> = (0..20).map(|i| e.inspect(&format!("c{i}"), "{{.State.Pid}}").parse().unwrap()).collect();
    let children: Vec<_> =
        (0..20).map(|i| e.cmd(&["rm", "-f", &format!("c{i}")]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()).collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(e.ok(&["ps", "-a", "-q"]), "");
    assert_eq!(e.mounts(), 0);
    assert!(pids.iter().all(|&p| !alive(p)));
    assert_eq!(std::fs::read_dir(e.dir.join("root/containers")).unwrap().count(), 0);
}

#[test]
fn pause_and_unpause_freeze_the_container() {
    let e = Env::new("pause");
    e.ok(&["run", "-d", "--name", "p", "localhost/demo", "sleep", "1000"]);
    e.ok(&["pause", "p"]);
    assert_eq!(e.ok(&["ps", "--format", "{{.Names}} {{.Status}}"]), "p Up (Paused)");
    let pid = e.inspect("p", "{{.State.Pid}}");
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    assert!(state.contains(") S ") || state.contains(") D "), "{state}");
    e.ok(&["unpause", "p"]);
    assert_eq!(e.inspect("p", "{{.State.Status}}"), "running");
    // rm -f of a paused container works too.
    e.ok(&["pause", "p"]);
    e.ok(&["rm", "-f", "p"]);
}

#[test]
fn engine_errors_exit_125_with_one_clear_line() {
    let e = Env::new("errors");
    for (args, needle) in [
        (vec!["run", "--pull", "never", "localhost/nope", "true"], "not found"),
        (vec!["run", "-u", "nobody-here", "localhost/demo", "true"], "nobody-here"),
        (vec!["run", "--restart", "sometimes", "localhost/demo", "true"], "--restart"),
        (vec!["run", "--no-such-flag", "localhost/demo"], "--no-such-flag"),
        (vec!["stop", "no-such-container"], "no such container"),
    ] {
        let out = e.berth(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let out = e.berth(&["run", "--rm", "localhost/demo", "/no/such/binary"]);
    assert_eq!(out.status.code(), Some(127));
    let out = e.berth(&["run", "-d", "localhost/demo", "/no/such/binary"]);
    assert_eq!(out.status.code(), Some(127), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn an_external_runc_compatible_runtime_drives_the_container() {
    let runc = ["/usr/sbin/runc", "/usr/bin/runc"].into_iter().find(|p| std::path::Path::new(p).exists());
    let Some(runc) = runc else {
        eprintln!("skipped: runc is not installed (apt-get install runc)");
        return;
    };
    let e = Env::new("ext-runtime");
    let out = e.berth(&["run", "--rm", "--runtime", runc, "localhost/demo", "sh", "-c", "echo via runc; exit 3"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "via runc\n", "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(3));
    e.ok(&["run", "-d", "--name", "r", "--runtime", runc, "localhost/demo", "sh", "-c", "echo up; sleep 1000"]);
    e.wait_for("r", "{{.State.Status}}", "running");
    assert_eq!(e.ok(&["exec", "r", "echo", "hi"]), "hi");
    e.ok(&["stop", "-t", "1", "r"]);
    assert_eq!(e.inspect("r", "{{.State.ExitCode}}"), "137");
    assert_eq!(e.ok(&["logs", "r"]), "up");
    e.ok(&["rm", "r"]);
    assert_eq!(e.mounts(), 0);
}

#[test]
fn start_attach_interactive_feeds_stdin_through_the_monitor() {
    let e = Env::new("attach-stdin");
    e.ok(&["create", "-i", "--name", "cat", "localhost/demo", "sh", "-c", "while read l; do echo got $l; done; echo eof"]);
    let mut child =
        e.cmd(&["start", "-a", "-i", "cat"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"one\ntwo\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "got one\ngot two\neof\n", "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0));
}
