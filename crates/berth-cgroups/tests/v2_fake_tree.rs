//! v2 write and read paths against a fake cgroup2 tree in a temp dir: this host has no
//! cgroup2 controllers, so these check file names, values and conversions, not kernel effects.

use std::path::Path;

use berth_cgroups::{CgroupManager, Error, LinuxResources, V2Manager};

const LEAF_FILES: &[(&str, &str)] = &[
    ("cgroup.procs", ""),
    ("cgroup.freeze", "0"),
    ("cgroup.events", "populated 1\nfrozen 1\n"),
    ("memory.max", "max"),
    ("memory.swap.max", "max"),
    ("memory.low", "0"),
    ("memory.current", "4096"),
    ("memory.peak", "8192"),
    ("memory.swap.current", "0"),
    ("memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\noom_group_kill 0\n"),
    ("memory.stat", "anon 100\nfile 200\n"),
    ("memory.high", "max"),
    ("cpu.weight", "100"),
    ("cpu.max", "max 100000"),
    ("cpu.max.burst", "0"),
    ("cpu.idle", "0"),
    ("cpu.stat", "usage_usec 10\nuser_usec 6\nsystem_usec 4\nnr_periods 5\nnr_throttled 1\nthrottled_usec 7\n"),
    ("cpuset.cpus", ""),
    ("cpuset.mems", ""),
    ("pids.max", "max"),
    ("pids.current", "1"),
    ("io.weight", "default 100"),
    ("io.max", ""),
    ("io.stat", "8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n"),
];

fn fake_tree() -> (tempfile::TempDir, V2Manager) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    std::fs::write(root.join("cgroup.controllers"), "cpuset cpu io memory pids\n").unwrap();
    std::fs::write(root.join("cgroup.subtree_control"), "").unwrap();
    let leaf = root.join("c1");
    std::fs::create_dir(&leaf).unwrap();
    for (f, v) in LEAF_FILES {
        std::fs::write(leaf.join(f), v).unwrap();
    }
    (tmp, V2Manager::new(root, leaf))
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap().trim().to_string()
}

fn resources(json: &str) -> LinuxResources {
    serde_json::from_str(json).unwrap()
}

#[test]
fn v2_resources_are_converted_and_written_to_the_leaf() {
    let (_tmp, m) = fake_tree();
    let r = resources(
        r#"{
        "memory": {"limit": 67108864, "swap": 134217728, "reservation": 1048576},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "burst": 1000, "cpus": "0-1", "mems": "0", "idle": 0},
        "pids": {"limit": -1},
        "blockIO": {"weight": 500, "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}]},
        "unified": {"memory.high": "50000000"}
    }"#,
    );
    m.set(&r).unwrap();
    let d = m.leaf();
    assert_eq!(read(d, "memory.max"), "67108864");
    assert_eq!(read(d, "memory.swap.max"), "67108864", "swap.max = memory+swap - memory");
    assert_eq!(read(d, "memory.low"), "1048576");
    assert_eq!(read(d, "cpu.weight"), "20", "shares 512 → 1 + 510*9999/262142");
    assert_eq!(read(d, "cpu.max"), "50000 100000");
    assert_eq!(read(d, "cpu.max.burst"), "1000");
    assert_eq!(read(d, "cpuset.cpus"), "0-1");
    assert_eq!(read(d, "pids.max"), "max");
    assert_eq!(read(d, "io.weight"), (1 + 490 * 9999 / 990).to_string());
    assert_eq!(read(d, "io.max"), "8:0 rbps=1048576");
    assert_eq!(read(d, "memory.high"), "50000000");
}

#[test]
fn v2_quota_minus_one_writes_max() {
    let (_tmp, m) = fake_tree();
    m.set(&resources(r#"{"cpu": {"quota": -1, "period": 20000}}"#)).unwrap();
    assert_eq!(read(m.leaf(), "cpu.max"), "max 20000");
}

#[test]
fn v2_swap_equal_to_limit_disables_swap() {
    let (_tmp, m) = fake_tree();
    m.set(&resources(r#"{"memory": {"limit": 1000000, "swap": 1000000}}"#)).unwrap();
    assert_eq!(read(m.leaf(), "memory.swap.max"), "0");
}

#[test]
fn v2_unified_keys_with_slashes_or_dotdot_are_refused_and_nothing_written() {
    let (_tmp, m) = fake_tree();
    for key in ["../memory.max", "a/b", "..", "cgroup.procs"] {
        let json = format!(r#"{{"unified": {{"memory.high": "1", "{key}": "1"}}}}"#);
        let err = m.set(&resources(&json)).unwrap_err();
        assert!(matches!(err, Error::InvalidValue { .. }), "{key}: {err}");
    }
    assert_eq!(read(m.leaf(), "memory.high"), "max");
    let err = m.set(&resources(r#"{"unified": {"rdma.max": "x"}}"#)).unwrap_err();
    assert!(err.to_string().contains("rdma.max"), "{err}");
}

#[test]
fn v2_device_rules_on_a_directory_that_is_no_cgroup_fail_naming_it() {
    let (_tmp, m) = fake_tree();
    let err = m.set(&resources(r#"{"devices": [{"allow": false, "access": "rwm"}]}"#)).unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&m.leaf().display().to_string()) && text.contains("device filter"), "{text}");
}

#[test]
fn v2_invalid_device_rules_are_refused_before_anything_is_written() {
    let (_tmp, m) = fake_tree();
    let json = r#"{"pids": {"limit": 7}, "devices": [{"allow": true, "type": "c", "access": "rwx"}]}"#;
    let err = m.set(&resources(json)).unwrap_err();
    assert!(matches!(err, Error::InvalidValue { .. }) && err.to_string().contains("devices[0]"), "{err}");
    assert_eq!(read(m.leaf(), "pids.max"), "max");
}

#[test]
fn v2_invalid_values_name_the_file() {
    let (_tmp, m) = fake_tree();
    let err = m.set(&resources(r#"{"cpu": {"quota": -3}}"#)).unwrap_err().to_string();
    assert!(err.contains("cpu.max") && err.contains("-3"), "{err}");
    let err = m.set(&resources(r#"{"memory": {"limit": 100, "swap": 50}}"#)).unwrap_err().to_string();
    assert!(err.contains("memory.swap.max"), "{err}");
    let err = m.set(&resources(r#"{"cpu": {"mems": "x-1"}}"#)).unwrap_err().to_string();
    assert!(err.contains("cpuset.mems"), "{err}");
}

#[test]
fn v2_check_before_update_refuses_limit_below_current() {
    let (_tmp, m) = fake_tree();
    let err = m.set(&resources(r#"{"memory": {"limit": 1024, "checkBeforeUpdate": true}}"#)).unwrap_err();
    assert!(matches!(err, Error::LimitBelowUsage { usage: 4096, .. }), "{err}");
    assert_eq!(read(m.leaf(), "memory.max"), "max");
}

#[test]
fn v2_stats_and_oom_count_are_read_from_interface_files() {
    let (_tmp, m) = fake_tree();
    let s = m.stats().unwrap();
    assert_eq!(s.cpu.usage.total, 10_000);
    assert_eq!(s.cpu.usage.user, 6_000);
    assert_eq!(s.cpu.throttling.throttled_time, 7_000);
    assert_eq!(s.memory.usage.usage, 4096);
    assert_eq!(s.memory.usage.limit, u64::MAX);
    assert_eq!(s.memory.usage.failcnt, 3);
    assert_eq!(s.memory.cache, 200);
    assert_eq!(s.pids.current, 1);
    assert_eq!(s.pids.limit, 0);
    assert_eq!(s.blkio.io_service_bytes_recursive.len(), 3);
    assert_eq!(m.oom_kill_count().unwrap(), 2);
}

#[test]
fn v2_create_enables_controllers_and_freeze_waits_for_events() {
    let (tmp, m) = fake_tree();
    let nested = V2Manager::new(tmp.path().to_path_buf(), tmp.path().join("c1/sub"));
    nested.create().unwrap();
    assert!(tmp.path().join("c1/sub").is_dir());
    assert_eq!(read(tmp.path(), "cgroup.subtree_control"), "+cpuset +cpu +io +memory +pids");
    m.freeze().unwrap();
    assert_eq!(read(m.leaf(), "cgroup.freeze"), "1");
    assert_eq!(m.paths().get("").map(|p| p.as_path()), Some(m.leaf()));
    assert!(berth_cgroups::is_frozen(&m.paths()));
}

#[test]
fn v2_dir_fd_is_an_o_path_directory() {
    let (_tmp, m) = fake_tree();
    let fd = m.v2_dir_fd().expect("fd");
    let flags = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFL).unwrap();
    assert_ne!(flags & libc::O_PATH, 0);
}
