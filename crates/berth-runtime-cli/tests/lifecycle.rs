//! The lifecycle through the built binary: create, start, state, kill, delete, run, list,
//! and operations refused in the wrong state.

mod common;
use common::*;

#[test]
fn run_prints_container_output_and_returns_its_exit_code() {
    let s = Scratch::new("run-exit");
    let b = s.bundle("b", &["sh", "-c", "echo hello; exit 3"]);
    let out = s.run(&b, "c");
    assert_eq!(stdout(&out), "hello\n", "stderr: {}", stderr(&out));
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn create_start_state_kill_delete_walks_every_status() {
    let s = Scratch::new("walk");
    let b = s.bundle("b", &["sleep", "300"]);
    let id = s.id("walk");
    let pid_file = s.dir.join("pid");
    ok(&s.rt(&["create", "--bundle", b.p(), "--pid-file", pid_file.to_str().unwrap(), &id]));

    let st = s.state(&id);
    assert_eq!(st["status"], "created");
    assert_eq!(st["id"], id.as_str());
    let pid = st["pid"].as_i64().unwrap();
    assert!(pid > 0);
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap().trim(), pid.to_string());
    assert_eq!(st["bundle"], b.p());
    assert!(st["created"].as_str().unwrap().ends_with('Z'));
    assert_eq!(st["owner"], "root");
    assert!(st["ociVersion"].as_str().unwrap().starts_with("1."));
    // Before start the init is still berth-runtime, not sleep.
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_ne!(comm.trim(), "sleep");

    ok(&s.rt(&["start", &id]));
    assert_eq!(s.state(&id)["status"], "running");
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "sleep");

    // Wrong states: start twice, delete while running.
    let again = s.rt(&["start", &id]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("running"), "{}", stderr(&again));
    let del = s.rt(&["delete", &id]);
    assert!(!del.status.success());
    assert!(stderr(&del).contains("not stopped"), "{}", stderr(&del));

    ok(&s.rt(&["kill", &id, "KILL"]));
    wait_for(|| s.state(&id)["status"] == "stopped");
    assert_eq!(s.state(&id)["pid"], 0);
    let k = s.rt(&["kill", &id, "TERM"]);
    assert!(!k.status.success(), "killing a stopped container must fail");

    ok(&s.rt(&["delete", &id]));
    let gone = s.rt(&["state", &id]);
    assert!(!gone.status.success());
    assert!(stderr(&gone).contains("does not exist"), "{}", stderr(&gone));
    assert!(!s.root.join(&id).exists(), "state directory left behind");
}

#[test]
fn delete_force_kills_a_running_container() {
    let s = Scratch::new("force");
    let b = s.bundle("b", &["sleep", "300"]);
    let id = s.id("force");
    ok(&s.rt(&["run", "--detach", "--bundle", b.p(), &id]));
    let pid = s.state(&id)["pid"].as_i64().unwrap();
    ok(&s.rt(&["delete", "--force", &id]));
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists() || proc_is_zombie(pid));
    assert!(!s.root.join(&id).exists());
}

#[test]
fn delete_of_a_created_container_needs_no_force() {
    let s = Scratch::new("del-created");
    let b = s.bundle("b", &["true"]);
    let id = s.id("c");
    ok(&s.rt(&["create", "--bundle", b.p(), &id]));
    let pid = s.state(&id)["pid"].as_i64().unwrap();
    ok(&s.rt(&["delete", &id]));
    wait_for(|| !std::path::Path::new(&format!("/proc/{pid}")).exists() || proc_is_zombie(pid));
}

#[test]
fn kill_sends_the_named_signal_to_init() {
    let s = Scratch::new("signal");
    let b = s.bundle("b", &["sh", "-c", "trap 'echo got-usr1 > /tmp/sig; exit 0' USR1; while true; do sleep 0.1; done"]);
    let id = s.id("sig");
    ok(&s.rt(&["run", "--detach", "--bundle", b.p(), &id]));
    std::thread::sleep(std::time::Duration::from_millis(300));
    ok(&s.rt(&["kill", &id, "SIGUSR1"]));
    wait_for(|| s.state(&id)["status"] == "stopped");
    assert_eq!(std::fs::read_to_string(b.rootfs().join("tmp/sig")).unwrap(), "got-usr1\n");
}

#[test]
fn list_shows_containers_in_table_and_json() {
    let s = Scratch::new("list");
    let b = s.bundle("b", &["sleep", "300"]);
    let id = s.id("listed");
    ok(&s.rt(&["create", "--bundle", b.p(), &id]));
    let table = ok(&s.rt(&["list"]));
    assert!(table.starts_with("ID"), "{table}");
    assert!(table.lines().any(|l| l.starts_with(&id) && l.contains("created")), "{table}");
    let json: serde_json::Value = serde_json::from_str(&ok(&s.rt(&["list", "--format", "json"]))).unwrap();
    assert_eq!(json[0]["id"], id.as_str());
    assert_eq!(json[0]["status"], "created");
    assert_eq!(ok(&s.rt(&["list", "-q"])).trim(), id);
}

#[test]
fn two_creates_with_one_id_leave_the_first_untouched() {
    let s = Scratch::new("dup");
    let b = s.bundle("b", &["sleep", "300"]);
    let id = s.id("dup");
    let (a, c) = std::thread::scope(|sc| {
        let h1 = sc.spawn(|| s.rt(&["create", "--bundle", b.p(), &id]));
        let h2 = sc.spawn(|| s.rt(&["create", "--bundle", b.p(), &id]));
        (h1.join().unwrap(), h2.join().unwrap())
    });
    assert!(a.status.success() != c.status.success(), "exactly one create must succeed: {a:?} {c:?}");
    let failed = if a.status.success() { &c } else { &a };
    assert!(stderr(failed).contains("already exists"), "{}", stderr(failed));
    assert_eq!(s.state(&id)["status"], "created");
    ok(&s.rt(&["start", &id]));
    assert_eq!(s.state(&id)["status"], "running");
}

#[test]
fn run_keep_leaves_a_stopped_container_to_delete() {
    let s = Scratch::new("keep");
    let b = s.bundle("b", &["true"]);
    let id = s.id("keep");
    ok(&s.rt(&["run", "--keep", "--bundle", b.p(), &id]));
    assert_eq!(s.state(&id)["status"], "stopped");
    ok(&s.rt(&["delete", &id]));
}

#[test]
fn a_missing_executable_fails_at_create_and_leaves_nothing() {
    let s = Scratch::new("noexe");
    let b = s.bundle("b", &["does-not-exist"]);
    let id = s.id("noexe");
    let out = s.rt(&["create", "--bundle", b.p(), &id]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("executable file not found"), "{}", stderr(&out));
    assert!(!s.root.join(&id).exists());
}

/// Poll `cond` for up to 20 seconds (CI machines are slow and loaded).
pub fn wait_for(cond: impl Fn() -> bool) {
    for _ in 0..400 {
        if cond() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("condition not met within 20 s");
}

fn proc_is_zombie(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
        .unwrap_or(true)
}

#[test]
fn kill_all_signals_every_process_of_the_container() {
    let s = Scratch::new("kill-all");
    // The init handles TERM (a trap; handlers are not inherited), its children die of it.
    let b = s.bundle("b", &["sh", "-c", "trap : TERM; sleep 300 & sleep 300 & while true; do sleep 1; done"]);
    let id = s.id("all");
    ok(&s.rt(&["run", "--detach", "--bundle", b.p(), &id]));
    let cg = format!("/sys/fs/cgroup/pids/berth/{id}/cgroup.procs");
    wait_for(|| std::fs::read_to_string(&cg).map(|t| t.lines().count() >= 3).unwrap_or(false));
    let before: Vec<String> = std::fs::read_to_string(&cg).unwrap().lines().map(String::from).collect();
    ok(&s.rt(&["kill", "--all", &id, "TERM"]));
    // The two sleeps die; the init (trap) survives.
    wait_for(|| {
        let now = std::fs::read_to_string(&cg).unwrap_or_default();
        before.iter().filter(|p| now.lines().any(|l| l == p.as_str())).count() <= before.len() - 2
    });
    assert_eq!(s.state(&id)["status"], "running");
    ok(&s.rt(&["kill", "--all", &id, "KILL"]));
    wait_for(|| s.state(&id)["status"] == "stopped");
    ok(&s.rt(&["delete", &id]));
    assert!(!std::path::Path::new(&cg).exists(), "cgroup left after delete");
}

#[test]
fn a_create_killed_midway_is_cleaned_by_delete_force_and_the_id_is_reusable() {
    let s = Scratch::new("killed-create");
    let mut b = s.bundle("b", &["true"]);
    // The createRuntime hook holds `create` long enough to SIGKILL it mid-way.
    b.edit(|c| {
        c["hooks"] = serde_json::json!({"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "3"]}]});
    });
    let id = s.id("killed");
    let mut child = s
        .rt_cmd(&["create", "--bundle", b.p(), &id])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let cg = format!("/sys/fs/cgroup/memory/berth/{id}");
    wait_for(|| std::path::Path::new(&cg).exists());
    child.kill().unwrap();
    child.wait().unwrap();
    // Not a recorded container: plain delete and state say so; delete --force cleans up.
    assert!(!s.rt(&["state", &id]).status.success());
    ok(&s.rt(&["delete", "--force", &id]));
    assert!(!s.root.join(&id).exists(), "state directory left");
    assert!(!std::path::Path::new(&cg).exists(), "cgroup left");
    // The id can be used again.
    let mut b2 = s.bundle("b2", &["true"]);
    b2.edit(|c| {
        c["hooks"] = serde_json::Value::Null;
    });
    ok(&s.rt(&["run", "--bundle", b2.p(), &id]));
}
