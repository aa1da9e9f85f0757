//! Resources through the built binary on the host's (v1) cgroups: limits enforced inside
//! real containers, values landing in the right files, and `pause`, `resume`, `ps`,
//! `events` and `update`. Every test deletes its containers and checks that no cgroup is
//! left behind.

mod common;
use common::*;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const MIB: i64 = 1 << 20;
/// v1 hierarchies a container gets a directory in.
const CONTROLLERS: &[&str] = &["memory", "cpu", "cpuacct", "cpuset", "pids", "devices", "freezer", "blkio", "unified"];

/// The container's directory in the v1 hierarchy `ctrl` (the default cgroups path /berth/<id>).
fn cg(ctrl: &str, id: &str) -> PathBuf {
    Path::new("/sys/fs/cgroup").join(ctrl).join("berth").join(id)
}

/// One value of a cgroup file, trimmed.
#[track_caller]
fn cg_read(ctrl: &str, id: &str, file: &str) -> String {
    let p = cg(ctrl, id).join(file);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display())).trim().to_string()
}

/// Poll `cond` for up to `secs` seconds.
#[track_caller]
fn wait_for(secs: u64, what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what}: not within {secs} s");
}

/// `run --detach` a bundle; returns the id.
#[track_caller]
fn run_detached(s: &Scratch, b: &BundleDir, name: &str) -> String {
    let id = s.id(name);
    ok(&s.rt(&["run", "--detach", "--bundle", b.p(), &id]));
    id
}

/// `delete --force`, then check that neither the state nor any cgroup of it is left.
#[track_caller]
fn delete_and_check(s: &Scratch, id: &str) {
    ok(&s.rt(&["delete", "--force", id]));
    assert!(!s.root.join(id).exists(), "state directory left behind");
    for ctrl in CONTROLLERS {
        assert!(!cg(ctrl, id).exists(), "{} left behind", cg(ctrl, id).display());
    }
}

/// A failed command with exactly one line on stderr containing `needle`; returns stderr.
#[track_caller]
fn fails_with(out: &std::process::Output, needle: &str) -> String {
    let err = stderr(out);
    assert!(!out.status.success(), "succeeded: stdout={} stderr={err}", stdout(out));
    assert!(err.contains(needle), "stderr lacks {needle:?}: {err}");
    assert_eq!(err.lines().count(), 1, "more than one error line: {err}");
    err
}

/// The integer in a file of the container's rootfs, if it has one yet.
fn read_counter(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[test]
fn a_memory_limit_oom_kills_the_process_that_exceeds_it_and_events_report_it() {
    let s = Scratch::new("oom");
    // dd's 64 MiB buffer is faulted in by the read from /dev/zero: twice the limit.
    let script = "while [ ! -e /tmp/go ]; do sleep 0.05; done; \
                  dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null; echo rc=$? > /tmp/r; sleep 300";
    let mut b = s.bundle("b", &["sh", "-c", script]);
    b.edit(|c| c["linux"]["resources"]["memory"] = json!({"limit": 32 * MIB, "swap": 32 * MIB}));
    let id = run_detached(&s, &b, "oom");
    assert_eq!(cg_read("memory", &id, "memory.limit_in_bytes"), (32 * MIB).to_string());
    assert_eq!(cg_read("memory", &id, "memory.memsw.limit_in_bytes"), (32 * MIB).to_string());

    // Watch events from before the OOM kill.
    let mut events = s.rt_cmd(&["events", "--interval", "200ms", &id]).spawn().unwrap();
    let (tx, rx) = mpsc::channel::<Value>();
    let reader = std::io::BufReader::new(events.stdout.take().unwrap());
    let pump = std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"));
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(10)).expect("no stats event");
    assert_eq!(first["type"], "stats", "{first}");
    assert_eq!(first["id"], id.as_str());
    assert_eq!(first["data"]["memory"]["usage"]["limit"], 32 * MIB, "{first}");

    std::fs::write(b.rootfs().join("tmp/go"), "").unwrap();
    wait_for(10, "dd finished", || b.rootfs().join("tmp/r").exists());
    let rc = std::fs::read_to_string(b.rootfs().join("tmp/r")).unwrap();
    assert_eq!(rc.trim(), "rc=137", "dd was not SIGKILLed by the OOM killer");
    let deadline = Instant::now() + Duration::from_secs(10);
    let oom = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = rx.recv_timeout(left).expect("no oom event");
        if ev["type"] == "oom" {
            break ev;
        }
    };
    assert_eq!(oom, json!({"type": "oom", "id": id}));

    // One stats event: the limit was hit, and the container is still running.
    let st: Value = serde_json::from_str(&ok(&s.rt(&["events", "--stats", &id]))).unwrap();
    assert_eq!(st["type"], "stats");
    // (failcnt stays 0 on kernels that only count failures when asked to.)
    assert_eq!(st["data"]["memory"]["usage"]["max"], 32 * MIB, "{st}");
    assert_eq!(st["data"]["pids"]["current"], 1, "only the init's sleep is left: {st}");
    for part in ["cpu", "memory", "pids", "blkio", "hugetlb"] {
        assert!(st["data"].get(part).is_some(), "no {part} in {st}");
    }
    assert_eq!(s.state(&id)["status"], "running");

    // The watcher exits by itself once the container is gone.
    delete_and_check(&s, &id);
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(st) = events.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "events did not exit after the container stopped");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "events: {status}");
    pump.join().unwrap();
}

#[test]
fn a_pids_limit_makes_fork_fail() {
    let s = Scratch::new("pids");
    let mut b = s.bundle("b", &["sh", "-c", "for i in $(seq 20); do sleep 10 & done; echo looped"]);
    b.edit(|c| c["linux"]["resources"]["pids"] = json!({"limit": 5}));
    let out = s.run(&b, "pids");
    let err = stderr(&out);
    assert!(err.contains("can't fork") || err.contains("Resource temporarily unavailable"), "forks were not refused: {err}");
}

#[test]
fn cpu_cpuset_and_pids_values_land_in_their_v1_files() {
    let s = Scratch::new("cpu-files");
    let mut b = s.bundle("b", &["sleep", "300"]);
    b.edit(|c| {
        c["linux"]["resources"]["cpu"] = json!({"shares": 512, "quota": 20000, "period": 50000, "cpus": "0", "mems": "0"});
        c["linux"]["resources"]["pids"] = json!({"limit": 50});
    });
    let id = run_detached(&s, &b, "cpu");
    assert_eq!(cg_read("cpu", &id, "cpu.shares"), "512");
    assert_eq!(cg_read("cpu", &id, "cpu.cfs_quota_us"), "20000");
    assert_eq!(cg_read("cpu", &id, "cpu.cfs_period_us"), "50000");
    assert_eq!(cg_read("cpuset", &id, "cpuset.cpus"), "0");
    assert_eq!(cg_read("cpuset", &id, "cpuset.mems"), "0");
    assert_eq!(cg_read("pids", &id, "pids.max"), "50");
    // The init is in every hierarchy's directory.
    let pid = s.state(&id)["pid"].as_i64().unwrap().to_string();
    for ctrl in CONTROLLERS {
        let procs = cg_read(ctrl, &id, "cgroup.procs");
        assert!(procs.lines().any(|l| l == pid), "{ctrl}: init {pid} not in {procs:?}");
    }
    delete_and_check(&s, &id);
}

#[test]
fn a_blkio_weight_lands_in_its_file_or_is_refused_clearly() {
    let s = Scratch::new("blkio");
    let mut b = s.bundle("b", &["sleep", "300"]);
    b.edit(|c| c["linux"]["resources"]["blockIO"] = json!({"weight": 300}));
    let id = s.id("blkio");
    let out = s.rt(&["run", "--detach", "--bundle", b.p(), &id]);
    if !out.status.success() {
        // An I/O scheduler without weights (neither BFQ nor CFQ) is reported, not ignored.
        fails_with(&out, "blkio weights");
        assert!(!s.root.join(&id).exists());
        for ctrl in CONTROLLERS {
            assert!(!cg(ctrl, &id).exists(), "{ctrl} left behind");
        }
        return;
    }
    let file = ["blkio.bfq.weight", "blkio.weight"].into_iter().find(|f| cg("blkio", &id).join(f).exists());
    let file = file.expect("run succeeded without a weight file");
    let v = cg_read("blkio", &id, file);
    // bfq.weight reads "default 300".
    assert!(v == "300" || v.ends_with(" 300"), "{file}: {v}");
    delete_and_check(&s, &id);
}

/// Runs a script that opens the host's /dev/loop-control (c 10:237, bound in) for reading,
/// with `rules` as the config's device rules. (A rule on a device the runtime creates itself,
/// like /dev/null, would be overridden by the allow rules appended after the config's, as in
/// runc.)
fn open_loop_control(name: &str, rules: Value) -> String {
    let s = Scratch::new(name);
    let script = "if true < /dev/loop-control; then echo opened; else echo refused; fi";
    let mut b = s.bundle("b", &["sh", "-c", script]);
    b.edit(|c| {
        c["linux"]["resources"]["devices"] = rules;
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/dev/loop-control", "type": "bind", "source": "/dev/loop-control", "options": ["bind", "ro"]
        }));
    });
    let out = s.run(&b, "dev");
    format!("{}{}", stdout(&out), stderr(&out))
}

#[test]
fn a_denied_device_cannot_be_opened() {
    let deny = |access: &str| {
        json!([
            {"allow": true, "access": "rwm"},
            {"allow": false, "type": "c", "major": 10, "minor": 237, "access": access},
        ])
    };
    let out = open_loop_control("dev-deny", deny("rw"));
    assert!(out.contains("refused") && out.contains("Operation not permitted"), "{out}");
    // Denying only "w" leaves reading allowed, and without the rule the open works: the
    // rule, not the bind, refused it.
    assert!(open_loop_control("dev-deny-w", deny("w")).contains("opened"));
    assert!(open_loop_control("dev-allow", json!([{"allow": true, "access": "rwm"}])).contains("opened"));
    // The default config denies every device it does not list.
    let out = open_loop_control("dev-default", json!([{"allow": false, "access": "rwm"}]));
    assert!(out.contains("refused"), "{out}");
}

#[test]
fn a_paused_container_makes_no_progress_until_resumed() {
    let s = Scratch::new("pause");
    let b = s.bundle("b", &["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.02; done"]);
    let id = run_detached(&s, &b, "pause");
    let count = b.rootfs().join("tmp/count");
    wait_for(5, "counter started", || read_counter(&count).is_some_and(|n| n > 2));

    ok(&s.rt(&["pause", &id]));
    assert_eq!(s.state(&id)["status"], "paused");
    assert_eq!(cg_read("freezer", &id, "freezer.state"), "FROZEN");
    let frozen_at = read_counter(&count);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(read_counter(&count), frozen_at, "the counter moved while paused");
    fails_with(&s.rt(&["pause", &id]), &format!("container \"{id}\": container not running"));

    ok(&s.rt(&["resume", &id]));
    assert_eq!(s.state(&id)["status"], "running");
    let before = frozen_at.unwrap_or(0);
    wait_for(5, "counter moved after resume", || read_counter(&count).is_some_and(|n| n > before + 2));
    fails_with(&s.rt(&["resume", &id]), &format!("container \"{id}\": container not paused"));

    // A paused container can be force-deleted.
    ok(&s.rt(&["pause", &id]));
    delete_and_check(&s, &id);
}

#[test]
fn update_changes_the_limits_of_a_running_container() {
    let s = Scratch::new("update");
    let mut b = s.bundle("b", &["sleep", "300"]);
    b.edit(|c| {
        c["linux"]["resources"]["memory"] = json!({"limit": 32 * MIB});
        c["linux"]["resources"]["cpu"] = json!({"shares": 512});
    });
    let id = run_detached(&s, &b, "upd");
    assert_eq!(cg_read("memory", &id, "memory.limit_in_bytes"), (32 * MIB).to_string());

    ok(&s.rt(&["update", "--memory", "64m", &id]));
    assert_eq!(cg_read("memory", &id, "memory.limit_in_bytes"), (64 * MIB).to_string());
    ok(&s.rt(&[
        "update",
        "--memory-swap",
        "128M",
        "--memory-reservation",
        "16m",
        "--cpu-share",
        "256",
        "--cpu-period",
        "100000",
        "--cpu-quota",
        "30000",
        "--cpuset-cpus",
        "0",
        "--pids-limit",
        "20",
        &id,
    ]));
    assert_eq!(cg_read("memory", &id, "memory.memsw.limit_in_bytes"), (128 * MIB).to_string());
    assert_eq!(cg_read("memory", &id, "memory.soft_limit_in_bytes"), (16 * MIB).to_string());
    assert_eq!(cg_read("cpu", &id, "cpu.shares"), "256");
    assert_eq!(cg_read("cpu", &id, "cpu.cfs_period_us"), "100000");
    assert_eq!(cg_read("cpu", &id, "cpu.cfs_quota_us"), "30000");
    assert_eq!(cg_read("cpuset", &id, "cpuset.cpus"), "0");
    assert_eq!(cg_read("pids", &id, "pids.max"), "20");

    // A LinuxResources file, as containerd passes it.
    let file = s.dir.join("res.json");
    std::fs::write(&file, json!({"memory": {"limit": 48 * MIB}, "pids": {"limit": 30}}).to_string()).unwrap();
    ok(&s.rt(&["update", "-r", file.to_str().unwrap(), &id]));
    assert_eq!(cg_read("memory", &id, "memory.limit_in_bytes"), (48 * MIB).to_string());
    assert_eq!(cg_read("pids", &id, "pids.max"), "30");

    // The saved config copy follows, so later commands see the values in force.
    let saved: Value = serde_json::from_slice(&std::fs::read(s.root.join(&id).join("config.json")).unwrap()).unwrap();
    let r = &saved["linux"]["resources"];
    assert_eq!(r["memory"]["limit"], 48 * MIB, "{r}");
    assert_eq!(r["memory"]["swap"], 128 * MIB, "{r}");
    assert_eq!(r["cpu"]["shares"], 256, "{r}");
    assert_eq!(r["pids"]["limit"], 30, "{r}");
    let st: Value = serde_json::from_str(&ok(&s.rt(&["events", "--stats", &id]))).unwrap();
    assert_eq!(st["data"]["memory"]["usage"]["limit"], 48 * MIB);
    assert_eq!(st["data"]["pids"]["limit"], 30);

    // Unlimited memory without a swap value makes swap unlimited too.
    ok(&s.rt(&["update", "--memory", "-1", &id]));
    assert_eq!(cg_read("memory", &id, "memory.limit_in_bytes"), cg_read_root("memory.limit_in_bytes"));
    delete_and_check(&s, &id);
}

/// A value of the memory hierarchy's root (what "unlimited" reads as).
fn cg_read_root(file: &str) -> String {
    std::fs::read_to_string(Path::new("/sys/fs/cgroup/memory").join(file)).unwrap().trim().to_string()
}

#[test]
fn ps_lists_the_container_processes_as_json_and_as_a_table() {
    let s = Scratch::new("ps");
    let b = s.bundle("b", &["sleep", "300"]);
    let id = run_detached(&s, &b, "ps");
    let pid = s.state(&id)["pid"].as_i64().unwrap();

    let json: Value = serde_json::from_str(&ok(&s.rt(&["ps", "--format", "json", &id]))).unwrap();
    assert_eq!(json, json!([pid]));

    let table = ok(&s.rt(&["ps", &id]));
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    assert!(header.split_whitespace().any(|f| f == "PID") && header.contains("CMD"), "{table}");
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 1, "{table}");
    assert_eq!(rows[0].split_whitespace().nth(1), Some(pid.to_string().as_str()), "{table}");
    assert!(rows[0].contains("sleep 300"), "{table}");

    // ps arguments after "--".
    let custom = ok(&s.rt(&["ps", &id, "--", "-o", "pid,comm"]));
    assert_eq!(custom.lines().count(), 2, "{custom}");
    assert!(custom.lines().nth(1).unwrap().split_whitespace().eq([pid.to_string().as_str(), "sleep"]), "{custom}");
    // Without a PID column there is nothing to filter on.
    fails_with(&s.rt(&["ps", &id, "--", "-o", "comm"]), "couldn't find PID field in ps output");
    delete_and_check(&s, &id);
}

#[test]
fn an_invalid_update_is_refused_and_changes_nothing() {
    let s = Scratch::new("upd-bad");
    let mut b = s.bundle("b", &["sleep", "300"]);
    b.edit(|c| {
        c["linux"]["resources"]["memory"] = json!({"limit": 32 * MIB, "swap": 32 * MIB});
        c["linux"]["resources"]["cpu"] = json!({"quota": 20000, "period": 100000});
    });
    let id = run_detached(&s, &b, "bad");
    let files = [
        ("memory", "memory.limit_in_bytes"),
        ("memory", "memory.memsw.limit_in_bytes"),
        ("cpu", "cpu.cfs_quota_us"),
        ("cpu", "cpu.shares"),
        ("cpuset", "cpuset.cpus"),
        ("pids", "pids.max"),
    ];
    let snapshot = || files.map(|(c, f)| cg_read(c, &id, f));
    let before = snapshot();
    let config_before = std::fs::read(s.root.join(&id).join("config.json")).unwrap();

    fails_with(&s.rt(&["update", "--cpu-quota", "abc", &id]), "invalid value \"abc\" for --cpu-quota");
    fails_with(&s.rt(&["update", "--memory", "lots", "--pids-limit", "3", &id]), "--memory");
    fails_with(&s.rt(&["update", "--cpu-share", "1", &id]), "cpu.shares");
    // The memory+swap limit would fall below the memory limit.
    fails_with(&s.rt(&["update", "--memory", "64m", &id]), "memory+swap limit must be >= the memory limit");
    let file = s.dir.join("res.json");
    std::fs::write(&file, json!({"memory": {"limit": 16 * MIB}, "cpu": {"cpus": "x-y"}}).to_string()).unwrap();
    fails_with(&s.rt(&["update", "-r", file.to_str().unwrap(), &id]), "invalid value \"x-y\" for cpuset.cpus");
    std::fs::write(&file, "{\"memory\": ").unwrap();
    fails_with(&s.rt(&["update", "-r", file.to_str().unwrap(), &id]), "invalid LinuxResources JSON");
    fails_with(&s.rt(&["update", "-r", file.to_str().unwrap(), "--memory", "1g", &id]), "cannot be combined");

    assert_eq!(snapshot(), before, "an invalid update changed the cgroup");
    assert_eq!(std::fs::read(s.root.join(&id).join("config.json")).unwrap(), config_before);
    assert_eq!(s.state(&id)["status"], "running");
    delete_and_check(&s, &id);
}

#[test]
fn operations_on_a_stopped_container_are_refused() {
    let s = Scratch::new("stopped");
    let b = s.bundle("b", &["true"]);
    let id = s.id("stopped");
    ok(&s.rt(&["run", "--keep", "--bundle", b.p(), &id]));
    assert_eq!(s.state(&id)["status"], "stopped");
    let not_running = format!("container \"{id}\": container not running");
    fails_with(&s.rt(&["pause", &id]), &not_running);
    fails_with(&s.rt(&["resume", &id]), &format!("container \"{id}\": container not paused"));
    fails_with(&s.rt(&["update", "--memory", "64m", &id]), &not_running);
    fails_with(&s.rt(&["events", "--stats", &id]), &not_running);
    fails_with(&s.rt(&["events", &id]), &not_running);
    assert_eq!(ok(&s.rt(&["ps", "--format", "json", &id])).trim(), "[]");
    delete_and_check(&s, &id);
}

#[test]
fn operations_on_an_unknown_id_say_it_does_not_exist() {
    let s = Scratch::new("ghost");
    let id = s.id("ghost");
    for args in
        [vec!["pause", &id], vec!["resume", &id], vec!["ps", &id], vec!["events", "--stats", &id], vec!["update", "--memory", "1g", &id]]
    {
        fails_with(&s.rt(&args), &format!("container \"{id}\" does not exist"));
    }
}

#[test]
fn an_events_interval_must_be_a_positive_duration() {
    let s = Scratch::new("interval");
    let b = s.bundle("b", &["sleep", "300"]);
    let id = run_detached(&s, &b, "iv");
    fails_with(&s.rt(&["events", "--interval", "0", &id]), "duration interval must be greater than 0");
    fails_with(&s.rt(&["events", "--interval", "soon", &id]), "--interval");
    delete_and_check(&s, &id);
}

#[test]
fn a_cgroups_path_with_dot_dot_is_refused_and_leaves_nothing() {
    let s = Scratch::new("cg-dotdot");
    let mut b = s.bundle("b", &["true"]);
    b.edit(|c| c["linux"]["cgroupsPath"] = json!("/berth-escape/../../escaped"));
    let id = s.id("c");
    fails_with(&s.rt(&["create", "--bundle", b.p(), &id]), "\"..\" components are not allowed");
    assert!(!s.root.join(&id).exists(), "state directory left behind");
    for ctrl in CONTROLLERS {
        for name in ["berth-escape", "escaped"] {
            let p = Path::new("/sys/fs/cgroup").join(ctrl).join(name);
            assert!(!p.exists(), "{} was created", p.display());
        }
        assert!(!cg(ctrl, &id).exists());
    }
}
