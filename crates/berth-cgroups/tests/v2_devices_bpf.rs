//! Device rules as a BPF_CGROUP_DEVICE program, against the real kernel: each test makes
//! its own directory in the host's cgroup2 mount (/sys/fs/cgroup/unified on this hybrid
//! host), runs a shell inside it and looks at which device opens succeed.
//! Skipped (with a message) when not root or without a cgroup2 mount.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_cgroups::v2::devices_bpf::{self, DeviceFilter};
use berth_cgroups::{CgroupManager, Layout, LinuxResources, V2Manager};
use oci_spec::runtime::LinuxDeviceCgroup;

/// Opens each device the way the assertions need and says what happened.
const PROBE: &str = "\
head -c1 /dev/zero >/dev/null && echo zero-read-ok || echo zero-read-denied
(echo x > /dev/zero) 2>/dev/null && echo zero-write-ok || echo zero-write-denied
head -c1 /dev/urandom >/dev/null 2>&1 && echo urandom-ok || echo urandom-denied
(echo y > /dev/null) 2>/dev/null && echo null-ok || echo null-denied";

const NULL_AND_READ_ONLY_ZERO: &str = r#"[
    {"allow": false, "access": "rwm"},
    {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "r"}]"#;

/// A cgroup2 directory of its own; the drop kills what runs in it, detaches, removes it.
struct TestCgroup {
    dir: PathBuf,
    root: PathBuf,
    children: Vec<Child>,
}

impl TestCgroup {
    fn new(tag: &str) -> Option<TestCgroup> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root to attach BPF device programs");
            return None;
        }
        let Some(unified) = Layout::host().ok().and_then(|l| l.unified.clone()) else {
            eprintln!("skipped: no cgroup2 mount");
            return None;
        };
        let root = unified.mount_point;
        let dir = root.join(format!("berth-devtest-{}-{tag}", std::process::id()));
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        Some(TestCgroup { dir, root, children: Vec::new() })
    }

    fn manager(&self) -> V2Manager {
        V2Manager::new(self.root.clone(), self.dir.clone())
    }

    /// Runs `sh -c script` inside the cgroup (joined in pre_exec, before exec) → stdout lines.
    fn run(&self, script: &str) -> Vec<String> {
        let out = self.command(script).stdout(Stdio::piped()).output().expect("spawn sh");
        assert!(out.status.success(), "sh failed: {out:?}");
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
    }

    /// Starts a long-running process in the cgroup so that it is live.
    fn keep_busy(&mut self) {
        let child = self.command("exec sleep 60").stdout(Stdio::null()).spawn().expect("spawn sleep");
        self.children.push(child);
    }

    fn command(&self, script: &str) -> Command {
        let procs = CString::new(self.dir.join("cgroup.procs").as_os_str().as_bytes()).expect("no NUL in path");
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg(script).stdin(Stdio::null()).stderr(Stdio::null());
        // SAFETY: the hook runs between fork and exec and only makes async-signal-safe
        // syscalls (open, write, close) on a path allocated before the fork.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // "0" moves the writing process itself.
                let n = libc::write(fd, b"0".as_ptr().cast(), 1);
                let err = std::io::Error::last_os_error();
                libc::close(fd);
                if n == 1 {
                    Ok(())
                } else {
                    Err(err)
                }
            });
        }
        cmd
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = devices_bpf::detach_all(&self.dir);
        let deadline = Instant::now() + Duration::from_secs(5);
        // rmdir is EBUSY until the last exited member is gone from the cgroup.
        while std::fs::remove_dir(&self.dir).is_err() && self.dir.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn rules(json: &str) -> Vec<LinuxDeviceCgroup> {
    serde_json::from_str(json).expect("test JSON")
}

fn with_devices(json: &str) -> LinuxResources {
    serde_json::from_str(&format!(r#"{{"devices": {json}}}"#)).expect("test JSON")
}

#[test]
fn without_a_filter_the_probe_opens_everything() {
    let Some(cg) = TestCgroup::new("none") else { return };
    assert_eq!(cg.run(PROBE), ["zero-read-ok", "zero-write-ok", "urandom-ok", "null-ok"]);
}

#[test]
fn deny_all_plus_null_and_read_only_zero_is_enforced_by_the_kernel() {
    let Some(cg) = TestCgroup::new("enforce") else { return };
    cg.manager().set(&with_devices(NULL_AND_READ_ONLY_ZERO)).expect("set device rules");
    assert_eq!(cg.run(PROBE), ["zero-read-ok", "zero-write-denied", "urandom-denied", "null-ok"]);
    assert_eq!(devices_bpf::attached_programs(&cg.dir).expect("query").len(), 1);
}

#[test]
fn mknod_is_denied_unless_a_rule_allows_it() {
    let Some(cg) = TestCgroup::new("mknod") else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let script = format!(
        "mknod {d}/null c 1 3 2>/dev/null && echo null-mknod-ok || echo null-mknod-denied
         mknod {d}/zero c 1 5 2>/dev/null && echo zero-mknod-ok || echo zero-mknod-denied",
        d = tmp.path().display()
    );
    cg.manager().set(&with_devices(NULL_AND_READ_ONLY_ZERO)).expect("set device rules");
    assert_eq!(cg.run(&script), ["null-mknod-ok", "zero-mknod-denied"]);
}

#[test]
fn update_replaces_the_program_on_a_live_cgroup() {
    let Some(mut cg) = TestCgroup::new("update") else { return };
    cg.keep_busy();
    let m = cg.manager();
    m.set(&with_devices(NULL_AND_READ_ONLY_ZERO)).expect("first rules");
    let before = devices_bpf::attached_programs(&cg.dir).expect("query");
    assert_eq!(before.len(), 1);
    assert!(cg.run(PROBE).contains(&"urandom-denied".to_string()));

    let wider = r#"[
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "r"},
        {"allow": true, "type": "c", "major": 1, "minor": 9, "access": "r"}]"#;
    m.set(&with_devices(wider)).expect("updated rules");
    let after = devices_bpf::attached_programs(&cg.dir).expect("query");
    assert_eq!(after.len(), 1, "only the new program stays attached: {after:?}");
    assert_ne!(after, before);
    assert_eq!(cg.run(PROBE), ["zero-read-ok", "zero-write-denied", "urandom-ok", "null-ok"]);
    assert_eq!(m.pids().expect("pids").len(), 1, "the sleeping process is still in the cgroup");
}

#[test]
fn a_later_deny_wins_over_an_earlier_allow_in_the_kernel_too() {
    let Some(cg) = TestCgroup::new("order") else { return };
    let json = r#"[
        {"allow": false},
        {"allow": true, "type": "c", "major": 1, "access": "rwm"},
        {"allow": false, "type": "c", "major": 1, "access": "w"}]"#;
    devices_bpf::set_device_rules(&cg.dir, &rules(json)).expect("install");
    // No redirection to /dev/null here: writing to it is what this filter denies.
    let probe = "echo zero-read-$(head -c1 /dev/zero | wc -c)
        echo urandom-read-$(head -c1 /dev/urandom | wc -c)
        (echo x > /dev/zero) && echo zero-write-ok || echo zero-write-denied
        (echo y > /dev/null) && echo null-write-ok || echo null-write-denied";
    assert_eq!(cg.run(probe), ["zero-read-1", "urandom-read-1", "zero-write-denied", "null-write-denied"]);
}

#[test]
fn the_hybrid_opt_in_installs_on_the_unified_directory_only() {
    let Some(cg) = TestCgroup::new("hybrid") else { return };
    let r = rules(NULL_AND_READ_ONLY_ZERO);
    let no_unified = HashMap::from([("devices".to_string(), PathBuf::from("/nonexistent"))]);
    assert!(!devices_bpf::set_device_rules_on_unified(&no_unified, &r).expect("nothing to do"));
    let paths = HashMap::from([(String::new(), cg.dir.clone())]);
    assert!(devices_bpf::set_device_rules_on_unified(&paths, &r).expect("install"));
    assert!(cg.run(PROBE).contains(&"urandom-denied".to_string()));
}

#[test]
fn installing_on_a_directory_that_is_no_cgroup2_names_it() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let err = devices_bpf::set_device_rules(tmp.path(), &rules(NULL_AND_READ_ONLY_ZERO)).unwrap_err().to_string();
    assert!(err.contains(&tmp.path().display().to_string()) && err.contains("BPF_PROG_"), "{err}");
    let missing = Path::new("/sys/fs/cgroup/berth-no-such-cgroup");
    let err = devices_bpf::set_device_rules(missing, &rules(NULL_AND_READ_ONLY_ZERO)).unwrap_err().to_string();
    assert!(err.contains("berth-no-such-cgroup"), "{err}");
}

#[test]
fn compile_reports_the_policy_without_touching_the_kernel() {
    let f = DeviceFilter::compile(&rules(NULL_AND_READ_ONLY_ZERO)).expect("valid");
    assert!(!f.policy().default_allow);
    assert_eq!(f.policy().exceptions.len(), 2);
    assert_eq!(f.instructions().len(), 21);
    use devices_bpf::{Access, DeviceKind::Char};
    assert!(f.allows(Char, Access::READ, 1, 5));
    assert!(!f.allows(Char, Access::WRITE, 1, 5));
    assert!(!f.allows(Char, Access::READ, 1, 9));
    let err = DeviceFilter::compile(&rules(r#"[{"allow": true, "type": "p", "access": "rwm"}]"#)).unwrap_err();
    assert!(err.to_string().contains("devices[0]"), "{err}");
    let err = DeviceFilter::compile(&rules(r#"[{"allow": true, "type": "c", "access": "x"}]"#)).unwrap_err();
    assert!(err.to_string().contains("\"x\""), "{err}");
}
