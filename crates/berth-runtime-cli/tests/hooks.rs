//! The six hooks through the built binary: the order of the spec's lifecycle, the state on
//! their stdin, their namespaces, exact args and env, failures and timeouts.

mod common;
use common::*;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Poll `cond` until it holds, for at most `limit`.
fn wait_until(what: &str, limit: Duration, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn gone_or_zombie(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
        .unwrap_or(true)
}

/// A hook that appends `=== name <mnt ns>` and its stdin to `log`, in one write so that a
/// reader polling the log never sees half an entry.
fn logging_hook(name: &str, log: &str) -> Value {
    let script = format!("stdin=$(cat); printf '=== %s %s\\n%s\\n' {name} \"$(readlink /proc/self/ns/mnt)\" \"$stdin\" >> {log}");
    json!({"path": "/bin/sh", "args": ["sh", "-c", script], "env": ["PATH=/bin:/usr/bin"]})
}

/// One entry of the hook log: the hook's name, its mount namespace and the state it got.
struct Entry {
    name: String,
    mnt_ns: String,
    state: Value,
}

fn read_log(path: &Path) -> Vec<Entry> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.split("=== ")
        .filter(|chunk| !chunk.trim().is_empty())
        .map(|chunk| {
            let (head, body) = chunk.split_once('\n').unwrap();
            let (name, ns) = head.split_once(' ').unwrap();
            let state = serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("{name}: stdin is not JSON ({e}): {body:?}"));
            Entry { name: name.to_string(), mnt_ns: ns.to_string(), state }
        })
        .collect()
}

/// The six logging hooks, all appending to `rootfs/hooks.log`; startContainer first sleeps
/// `start_delay` (a shell duration).
fn log_every_hook(b: &mut BundleDir, start_delay: &str) -> std::path::PathBuf {
    let host_log = b.rootfs().join("hooks.log");
    let log = host_log.to_str().unwrap().to_string();
    // startContainer runs after pivot_root: the same file through the container's path.
    let mut start_container = logging_hook("startContainer", "/hooks.log");
    start_container["args"][2] = json!(format!("sleep {start_delay}; {}", start_container["args"][2].as_str().unwrap()));
    b.edit(|c| {
        c["hooks"] = json!({
            "prestart": [logging_hook("prestart", &log)],
            "createRuntime": [logging_hook("createRuntime", &log)],
            "createContainer": [logging_hook("createContainer", &log)],
            "startContainer": [start_container],
            "poststart": [logging_hook("poststart", &log)],
            "poststop": [logging_hook("poststop", &log)],
        })
    });
    host_log
}

fn names(log: &[Entry]) -> Vec<String> {
    log.iter().map(|e| e.name.clone()).collect()
}

#[test]
fn all_six_hooks_run_in_lifecycle_order_with_the_state_on_stdin() {
    let s = Scratch::new("hooks-order");
    let mut b = s.bundle("b", &["sleep", "300"]);
    let host_log = log_every_hook(&mut b, "0");
    let id = s.id("c");
    ok(&s.rt(&["create", "--bundle", b.p(), &id]));
    let pid = s.state(&id)["pid"].as_i64().unwrap();
    let container_mnt = std::fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap().to_string_lossy().into_owned();
    let host_mnt = std::fs::read_link("/proc/self/ns/mnt").unwrap().to_string_lossy().into_owned();
    assert_eq!(names(&read_log(&host_log)), ["prestart", "createRuntime", "createContainer"]);

    ok(&s.rt(&["start", &id]));
    wait_until("startContainer and poststart ran", Duration::from_secs(5), || read_log(&host_log).len() == 5);
    ok(&s.rt(&["kill", &id, "KILL"]));
    wait_until("stopped", Duration::from_secs(10), || s.state(&id)["status"] == "stopped");
    assert_eq!(read_log(&host_log).len(), 5, "poststop ran before delete");
    ok(&s.rt(&["delete", &id]));

    let log = read_log(&host_log);
    let mut order = names(&log);
    // Whether poststart waits for the process is checked by its own test.
    order[3..5].sort();
    assert_eq!(order, ["prestart", "createRuntime", "createContainer", "poststart", "startContainer", "poststop"]);
    for e in &log {
        assert_eq!(e.state["id"], id.as_str(), "{}", e.name);
        assert_eq!(e.state["bundle"], b.p(), "{}", e.name);
        assert!(e.state["ociVersion"].as_str().is_some_and(|v| v.starts_with("1.")), "{}", e.name);
        let (status, in_container) = match e.name.as_str() {
            "prestart" | "createRuntime" => ("creating", false),
            "createContainer" => ("creating", true),
            "startContainer" => ("created", true),
            "poststart" => ("running", false),
            _ => ("stopped", false),
        };
        assert_eq!(e.state["status"], status, "{}", e.name);
        let want_ns = if in_container { &container_mnt } else { &host_mnt };
        assert_eq!(&e.mnt_ns, want_ns, "{} ran in the wrong mount namespace", e.name);
        if e.name != "poststop" {
            assert_eq!(e.state["pid"], pid, "{}", e.name);
        }
    }
}

#[test]
fn poststart_runs_only_after_the_process_was_started() {
    let s = Scratch::new("hooks-poststart");
    let mut b = s.bundle("b", &["sleep", "300"]);
    // A slow startContainer hook holds the exec back.
    let host_log = log_every_hook(&mut b, "0.5");
    let id = s.id("c");
    ok(&s.rt(&["create", "--bundle", b.p(), &id]));
    let pid = s.state(&id)["pid"].as_i64().unwrap();
    ok(&s.rt(&["start", &id]));
    // The spec: poststart is called after the process is executed, before start returns.
    assert_eq!(names(&read_log(&host_log)), ["prestart", "createRuntime", "createContainer", "startContainer", "poststart"]);
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "sleep", "start returned before the process was executed");
}

#[test]
fn hook_args_and_env_are_exactly_the_configured_ones() {
    let s = Scratch::new("hooks-argv");
    let mut b = s.bundle("b", &["true"]);
    let out = s.dir.join("seen");
    let script = format!("cat /proc/$$/cmdline > {o}.args; cat /proc/$$/environ > {o}.env", o = out.display());
    let args = ["my-argv0", "-c", script.as_str(), "two words", "'quoted'", ""];
    let env = ["ONE=1", "SPACED=a b", "EMPTY=", "EQ=x=y"];
    b.edit(|c| c["hooks"] = json!({"createRuntime": [{"path": "/bin/sh", "args": args, "env": env}]}));
    ok(&s.run(&b, "c"));

    let argv = std::fs::read(out.with_extension("args")).unwrap();
    let argv: Vec<&[u8]> = argv.strip_suffix(b"\0").unwrap().split(|c| *c == 0).collect();
    assert_eq!(argv, args.map(str::as_bytes));
    let environ = std::fs::read(out.with_extension("env")).unwrap();
    let mut environ: Vec<&[u8]> = environ.strip_suffix(b"\0").unwrap().split(|c| *c == 0).collect();
    environ.sort();
    let mut want = env.map(str::as_bytes);
    want.sort();
    assert_eq!(environ, want, "the hook must get exactly its env, nothing of the runtime's");
}

#[test]
fn a_failing_create_runtime_hook_fails_create_and_leaves_nothing_behind() {
    let s = Scratch::new("hooks-fail");
    let mut b = s.bundle("b", &["sleep", "300"]);
    let id = s.id("c");
    let seen = s.dir.join("state-seen");
    let cgroups = s.dir.join("cgroups-seen");
    // Record the state (for the init's pid) and the cgroup that existed, then fail.
    let script = format!(
        "cat > {st}; ls -d /sys/fs/cgroup/*/berth/{id} /sys/fs/cgroup/berth/{id} > {cg} 2>/dev/null; echo hook-says-no >&2; exit 7",
        st = seen.display(),
        cg = cgroups.display()
    );
    b.edit(|c| c["hooks"] = json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", script]}]}));

    let out = s.rt(&["create", "--bundle", b.p(), &id]);
    assert!(!out.status.success(), "create must fail");
    let err = stderr(&out);
    assert!(err.contains("createRuntime") && err.contains("hook-says-no"), "{err}");
    assert!(!s.root.join(&id).exists(), "state directory left behind");
    assert!(!s.rt(&["state", &id]).status.success());

    let state: Value = serde_json::from_slice(&std::fs::read(&seen).unwrap()).unwrap();
    let pid = state["pid"].as_i64().unwrap();
    assert!(pid > 0);
    wait_until("the init is gone", Duration::from_secs(5), || gone_or_zombie(pid));

    let had = std::fs::read_to_string(&cgroups).unwrap();
    assert!(!had.trim().is_empty(), "the hook saw no cgroup: the check below would prove nothing");
    for dir in had.lines() {
        wait_until(&format!("cgroup {dir} removed"), Duration::from_secs(5), || !Path::new(dir).exists());
    }
}

#[test]
fn a_failing_poststop_hook_does_not_fail_delete() {
    let s = Scratch::new("hooks-poststop");
    let mut b = s.bundle("b", &["true"]);
    let ran = s.dir.join("poststop-ran");
    let script = format!("touch {}; exit 1", ran.display());
    b.edit(|c| c["hooks"] = json!({"poststop": [{"path": "/bin/sh", "args": ["sh", "-c", script]}]}));
    let id = s.id("c");
    ok(&s.rt(&["run", "--keep", "--bundle", b.p(), &id]));
    assert!(!ran.exists(), "poststop ran before delete");
    ok(&s.rt(&["delete", &id]));
    assert!(ran.exists(), "poststop did not run");
    assert!(!s.root.join(&id).exists(), "state directory left behind");
}

#[test]
fn a_hook_timeout_is_enforced() {
    let s = Scratch::new("hooks-timeout");
    let mut b = s.bundle("b", &["true"]);
    let id = s.id("c");
    // An argument no other process has, to find a surviving hook.
    let marker = format!("{}.{}", 600 + std::process::id() % 100, std::process::id());
    b.edit(|c| c["hooks"] = json!({"prestart": [{"path": "/bin/sleep", "args": ["sleep", marker], "timeout": 1}]}));
    let started = Instant::now();
    let out = s.rt(&["create", "--bundle", b.p(), &id]);
    let took = started.elapsed();
    assert!(!out.status.success(), "create must fail on a hook timeout");
    assert!(took < Duration::from_secs(10), "the timeout was not enforced: {took:?}");
    assert!(took >= Duration::from_secs(1), "failed before the timeout: {took:?}: {}", stderr(&out));
    assert!(stderr(&out).contains("timed out"), "{}", stderr(&out));
    assert!(!s.root.join(&id).exists(), "state directory left behind");
    let sleeping = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.unwrap().path().join("cmdline")).ok())
        .any(|c| c == format!("sleep\0{marker}\0").as_bytes());
    assert!(!sleeping, "the timed-out hook is still running");
}
