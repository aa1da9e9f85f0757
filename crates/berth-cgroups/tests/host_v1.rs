//! Integration tests against the host's real /sys/fs/cgroup (v1 or hybrid; needs root).
//! Each test uses its own `/berth-test-<pid>-<n>` cgroup, so they run in parallel.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};

use berth_cgroups::{from_paths, is_frozen, new_manager, CgroupManager, Error, Layout, LinuxResources, Mode, Signal};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn unique_path() -> PathBuf {
    PathBuf::from(format!("/berth-test-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst)))
}

/// Skips (returns false) unless we are root on a host with v1 controllers.
fn host_has_v1() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let v1 = Layout::host().map(|l| l.mode != Mode::V2).unwrap_or(false);
    if !(root && v1) {
        eprintln!("skipped: needs root and cgroup v1/hybrid");
    }
    root && v1
}

/// Destroys the cgroup and reaps the child even when an assertion fails.
struct Guard {
    mgr: Box<dyn CgroupManager>,
    child: Option<Child>,
}

impl Guard {
    fn new(path: &Path) -> Guard {
        let mgr = new_manager(Some(path), "unused").expect("manager");
        Guard { mgr, child: None }
    }

    fn spawn_sleep(&mut self) -> i32 {
        let child = Command::new("sleep").arg("30").spawn().expect("spawn sleep");
        let pid = child.id() as i32;
        self.child = Some(child);
        pid
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
        }
        let _ = self.mgr.thaw();
        if let Err(e) = self.mgr.destroy() {
            eprintln!("guard: destroy failed: {e}");
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("read {}/{file}: {e}", dir.display())).trim().to_string()
}

fn resources(json: &str) -> LinuxResources {
    serde_json::from_str(json).expect("resources json")
}

#[test]
fn applied_pid_joins_every_hierarchy_and_limits_read_back() {
    if !host_has_v1() {
        return;
    }
    let path = unique_path();
    let mut g = Guard::new(&path);
    let pid = g.spawn_sleep();
    g.mgr.apply(pid).unwrap();
    let paths = g.mgr.paths();
    let layout = Layout::host().unwrap();
    for ctrl in layout.v1.keys() {
        let dir = &paths[ctrl];
        assert!(dir.ends_with(path.strip_prefix("/").unwrap()), "{ctrl}: {}", dir.display());
        let procs = read(dir, "cgroup.procs");
        assert!(procs.lines().any(|l| l == pid.to_string()), "{ctrl}: pid {pid} not in {procs:?}");
    }
    if layout.mode == Mode::Hybrid {
        let procs = read(&paths[""], "cgroup.procs");
        assert!(procs.lines().any(|l| l == pid.to_string()), "unified: {procs:?}");
    }
    assert_eq!(g.mgr.pids().unwrap(), vec![pid]);

    let r = resources(
        r#"{
        "memory": {"limit": 67108864, "reservation": 33554432, "swap": 134217728, "swappiness": 10, "kernelTCP": 16777216},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 50},
        "devices": [
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rw"}
        ]
    }"#,
    );
    g.mgr.set(&r).unwrap();
    let mem = &paths["memory"];
    assert_eq!(read(mem, "memory.limit_in_bytes"), "67108864");
    assert_eq!(read(mem, "memory.soft_limit_in_bytes"), "33554432");
    if mem.join("memory.memsw.limit_in_bytes").exists() {
        assert_eq!(read(mem, "memory.memsw.limit_in_bytes"), "134217728");
    }
    assert_eq!(read(mem, "memory.swappiness"), "10");
    let cpu = &paths["cpu"];
    assert_eq!(read(cpu, "cpu.shares"), "512");
    assert_eq!(read(cpu, "cpu.cfs_quota_us"), "50000");
    assert_eq!(read(cpu, "cpu.cfs_period_us"), "100000");
    assert_eq!(read(&paths["cpuset"], "cpuset.cpus"), "0");
    assert_eq!(read(&paths["pids"], "pids.max"), "50");
    let devs = read(&paths["devices"], "devices.list");
    assert_eq!(devs.lines().collect::<Vec<_>>(), vec!["c 1:3 rwm", "c 1:5 rw"]);

    // Lowering memory below memory+swap must reorder writes; raising must too.
    g.mgr.set(&resources(r#"{"memory": {"limit": 268435456, "swap": 536870912}}"#)).unwrap();
    assert_eq!(read(mem, "memory.limit_in_bytes"), "268435456");
    g.mgr.set(&resources(r#"{"memory": {"limit": -1}}"#)).unwrap();

    let stats = g.mgr.stats().unwrap();
    assert_eq!(stats.pids.current, 1);
    assert_eq!(stats.pids.limit, 50);
    let json = serde_json::to_value(&stats).unwrap();
    assert!(json["memory"]["raw"].is_object(), "{json}");
    assert_eq!(g.mgr.oom_kill_count().unwrap(), 0);
}

#[test]
fn freeze_then_thaw_changes_freezer_state_and_is_frozen() {
    if !host_has_v1() {
        return;
    }
    let mut g = Guard::new(&unique_path());
    let pid = g.spawn_sleep();
    g.mgr.apply(pid).unwrap();
    let paths = g.mgr.paths();
    g.mgr.freeze().unwrap();
    assert_eq!(read(&paths["freezer"], "freezer.state"), "FROZEN");
    assert!(is_frozen(&paths));
    g.mgr.thaw().unwrap();
    assert_eq!(read(&paths["freezer"], "freezer.state"), "THAWED");
    assert!(!is_frozen(&paths));
}

#[test]
fn kill_all_then_destroy_leaves_no_directory() {
    if !host_has_v1() {
        return;
    }
    let mut g = Guard::new(&unique_path());
    let pid = g.spawn_sleep();
    g.mgr.apply(pid).unwrap();
    let paths = g.mgr.paths();
    g.mgr.kill_all(Signal::SIGKILL).unwrap();
    let status = g.child.as_mut().unwrap().wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    g.child = None;
    g.mgr.destroy().unwrap();
    for (ctrl, dir) in &paths {
        assert!(!dir.exists(), "{ctrl}: {} still exists", dir.display());
    }
    // A second destroy of the now missing cgroup is fine.
    g.mgr.destroy().unwrap();
}

#[test]
fn destroy_kills_remaining_processes_and_sub_cgroups() {
    if !host_has_v1() {
        return;
    }
    let mut g = Guard::new(&unique_path());
    let pid = g.spawn_sleep();
    g.mgr.apply(pid).unwrap();
    let paths = g.mgr.paths();
    std::fs::create_dir(paths["memory"].join("nested")).unwrap();
    // Reopen from saved paths as `berth-runtime delete` would.
    let reopened = from_paths(paths.clone());
    assert_eq!(reopened.pids().unwrap(), vec![pid]);
    reopened.destroy().unwrap();
    let status = g.child.as_mut().unwrap().wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    g.child = None;
    for dir in paths.values() {
        assert!(!dir.exists(), "{} still exists", dir.display());
    }
}

#[test]
fn invalid_values_are_refused_with_the_file_named() {
    if !host_has_v1() {
        return;
    }
    let g = Guard::new(&unique_path());
    g.mgr.apply(0).unwrap();
    let paths = g.mgr.paths();
    let err = g.mgr.set(&resources(r#"{"cpu": {"quota": -5}}"#)).unwrap_err();
    assert!(err.to_string().contains("cpu.cfs_quota_us") && err.to_string().contains("-5"), "{err}");
    let err = g.mgr.set(&resources(r#"{"cpu": {"cpus": "abc"}}"#)).unwrap_err();
    assert!(err.to_string().contains("cpuset.cpus"), "{err}");
    let err = g.mgr.set(&resources(r#"{"memory": {"limit": -7}}"#)).unwrap_err();
    assert!(err.to_string().contains("memory.limit_in_bytes"), "{err}");
    let err = g.mgr.set(&resources(r#"{"cpu": {"shares": 1000000}}"#)).unwrap_err();
    assert!(err.to_string().contains("cpu.shares"), "{err}");
    let err = g.mgr.set(&resources(r#"{"unified": {"memory.max": "1"}}"#)).unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{err}");
    // A kernel refusal names the directory, the file and the value.
    let err = g.mgr.set(&resources(r#"{"cpu": {"quota": 10}}"#)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&paths["cpu"].display().to_string()) && msg.contains("cpu.cfs_quota_us=10"), "{msg}");
}

#[test]
fn paths_with_dotdot_are_rejected_before_anything_is_created() {
    let err = new_manager(Some(Path::new("/berth-test-x/../../etc")), "id").unwrap_err();
    assert!(matches!(err, Error::InvalidPath { .. }), "{err}");
    assert!(!Path::new("/sys/fs/cgroup/memory/berth-test-x").exists());
}

#[test]
fn checked_memory_limit_below_usage_is_refused() {
    if !host_has_v1() {
        return;
    }
    let mut g = Guard::new(&unique_path());
    // The child allocates only after it has been moved, so the memory is charged to our cgroup.
    let child =
        Command::new("sh").args(["-c", "sleep 0.3; x=$(head -c 8000000 /dev/zero | tr '\\0' a); sleep 30"]).spawn().expect("spawn sh");
    let pid = child.id() as i32;
    g.child = Some(child);
    g.mgr.apply(pid).unwrap();
    let mem = g.mgr.paths()["memory"].clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while read(&mem, "memory.usage_in_bytes").parse::<u64>().unwrap() < 4_000_000 {
        assert!(std::time::Instant::now() < deadline, "child never used memory");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let err = g.mgr.set(&resources(r#"{"memory": {"limit": 1048576, "checkBeforeUpdate": true}}"#)).unwrap_err();
    assert!(matches!(err, Error::LimitBelowUsage { .. }), "{err}");
    assert_ne!(read(&mem, "memory.limit_in_bytes"), "1048576");
}

/// On hybrid hosts the cgroup2 mount has no controllers, but its core files are real:
/// this runs the v2 manager's create/apply/freeze/kill/destroy against the kernel.
#[test]
fn v2_manager_on_the_hybrid_unified_mount_freezes_kills_and_removes() {
    let Some(unified) = Layout::host().ok().and_then(|l| l.unified.clone()) else { return };
    if !host_has_v1() {
        return;
    }
    let leaf = unified.mount_point.join(unique_path().strip_prefix("/").unwrap()).join("leaf");
    let m = berth_cgroups::V2Manager::new(unified.mount_point.clone(), leaf.clone());
    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = child.id() as i32;
    struct Cleanup<'a>(&'a berth_cgroups::V2Manager, &'a Path);
    impl Drop for Cleanup<'_> {
        fn drop(&mut self) {
            let _ = self.0.destroy();
            let _ = std::fs::remove_dir(self.1);
        }
    }
    let parent = leaf.parent().unwrap().to_path_buf();
    let _cleanup = Cleanup(&m, &parent);
    m.apply(pid).unwrap();
    assert_eq!(m.pids().unwrap(), vec![pid]);
    assert!(m.v2_dir_fd().is_some());
    m.freeze().unwrap();
    assert_eq!(read(&leaf, "cgroup.freeze"), "1");
    assert!(read(&leaf, "cgroup.events").contains("frozen 1"));
    m.thaw().unwrap();
    assert!(read(&leaf, "cgroup.events").contains("frozen 0"));
    m.kill_all(Signal::SIGTERM).unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGTERM));
    m.destroy().unwrap();
    assert!(!leaf.exists());
}
