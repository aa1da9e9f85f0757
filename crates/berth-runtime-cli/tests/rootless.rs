//! Rootless mode: the binary run by an unprivileged user (created by the test) with a user
//! namespace — id maps (own id, and ranges through newuidmap/newgidmap), the state root under
//! XDG_RUNTIME_DIR, cgroups that are not delegated, and cleanup.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use common::*;
use serde_json::{json, Value};

const USER: &str = "berth-rootless-test";
/// The subordinate id range given to the test user (its own line in /etc/subuid, /etc/subgid).
const SUB_START: u32 = 200000;
const SUB_COUNT: u32 = 65536;

static N: AtomicUsize = AtomicUsize::new(0);

/// The unprivileged test user.
#[derive(Clone, Copy)]
struct TestUser {
    uid: u32,
    gid: u32,
}

/// Create the test user and its subordinate ids once (idempotent, also across concurrent
/// test processes: serialized by a lock file).
fn test_user() -> TestUser {
    static USER_IDS: OnceLock<TestUser> = OnceLock::new();
    *USER_IDS.get_or_init(|| {
        let lock = std::fs::File::create("/tmp/berth-rootless-test.lock").unwrap();
        // SAFETY: flock on an fd we own.
        assert_eq!(unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) }, 0);
        let id = |flag: &str| Command::new("id").args([flag, USER]).output().unwrap();
        if !id("-u").status.success() {
            let out =
                Command::new("useradd").args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER]).output().unwrap();
            assert!(out.status.success(), "useradd {USER}: {}", String::from_utf8_lossy(&out.stderr));
        }
        for file in ["/etc/subuid", "/etc/subgid"] {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            if !text.lines().any(|l| l.starts_with(&format!("{USER}:"))) {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new().create(true).append(true).open(file).unwrap();
                writeln!(f, "{USER}:{SUB_START}:{SUB_COUNT}").unwrap();
            }
        }
        let num = |flag: &str| String::from_utf8_lossy(&id(flag).stdout).trim().parse().unwrap();
        TestUser { uid: num("-u"), gid: num("-g") }
    })
}

/// A scratch area usable by the test user, with its own XDG_RUNTIME_DIR; every container
/// started through it is force-deleted (as the user) on drop, before the scratch goes.
struct Rootless {
    user: TestUser,
    xdg: PathBuf,
    ids: std::sync::Mutex<Vec<String>>,
    // Dropped last: removes the directory.
    scratch: Scratch,
}

impl Rootless {
    fn new(test: &str) -> Rootless {
        let user = test_user();
        let scratch = Scratch::new(test);
        std::fs::set_permissions(&scratch.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let xdg = scratch.dir.join("xdg");
        std::fs::create_dir(&xdg).unwrap();
        std::fs::set_permissions(&xdg, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&xdg, Some(user.uid), Some(user.gid)).unwrap();
        Rootless { user, xdg, ids: Default::default(), scratch }
    }

    /// A unique container id, deleted on drop.
    fn id(&self, name: &str) -> String {
        let id = self.scratch.id(name);
        self.ids.lock().unwrap().push(id.clone());
        id
    }

    /// The state root the binary picks for the user by default.
    fn state_root(&self) -> PathBuf {
        self.xdg.join("berth-runtime")
    }

    /// A busybox bundle with `spec --rootless` made by the user (mapping the user to root),
    /// a writable root whose /tmp the user owns, and `args` as the process.
    fn bundle(&self, name: &str, args: &[&str]) -> BundleDir {
        let mut b = self.scratch.bundle(name, args);
        std::fs::remove_file(b.path.join("config.json")).unwrap();
        std::os::unix::fs::chown(&b.path, Some(self.user.uid), Some(self.user.gid)).unwrap();
        ok(&self.rt_in(&b.path, &[], &["spec", "--rootless"]));
        b.edit(|c| {
            c["process"]["terminal"] = json!(false);
            c["process"]["args"] = json!(args);
            c["root"]["readonly"] = json!(false);
        });
        std::os::unix::fs::chown(b.rootfs().join("tmp"), Some(self.user.uid), Some(self.user.gid)).unwrap();
        b
    }

    /// Run the binary as the test user, with only XDG_RUNTIME_DIR and PATH in its
    /// environment (so `--root` is the default); stdio to files like `Scratch::rt`.
    fn rt(&self, args: &[&str]) -> Output {
        self.rt_in(&self.scratch.dir, &[], args)
    }

    /// Like [`Self::rt`] in `cwd` with extra environment variables.
    fn rt_in(&self, cwd: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
        let n = N.fetch_add(1, Ordering::SeqCst);
        let (out_p, err_p) = (self.scratch.dir.join(format!("u-out.{n}")), self.scratch.dir.join(format!("u-err.{n}")));
        let status = Command::new(BIN)
            .args(args)
            .current_dir(cwd)
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .env("XDG_RUNTIME_DIR", &self.xdg)
            .envs(env.iter().copied())
            .uid(self.user.uid)
            .gid(self.user.gid)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_p).unwrap())
            .stderr(std::fs::File::create(&err_p).unwrap())
            .status()
            .unwrap();
        let read = |p: &Path| std::fs::read(p).unwrap_or_default();
        Output { status, stdout: read(&out_p), stderr: read(&err_p) }
    }

    fn state(&self, id: &str) -> Value {
        serde_json::from_str(&ok(&self.rt(&["state", id]))).unwrap()
    }
}

impl Drop for Rootless {
    fn drop(&mut self) {
        for id in self.ids.lock().unwrap().iter() {
            let _ = self.rt(&["delete", "--force", id]);
        }
    }
}

/// The `uid_map` lines as number triples.
fn map_lines(text: &str) -> Vec<Vec<u64>> {
    text.lines().map(|l| l.split_whitespace().map(|f| f.parse().unwrap()).collect::<Vec<u64>>()).filter(|f| f.len() == 3).collect()
}

/// Whether `pid` exists and is not a zombie (a detached init is reparented to a process
/// that may reap it late).
fn alive(pid: i64) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next().map(str::to_string));
    pid > 0 && matches!(state.as_deref(), Some(s) if s != "Z" && s != "X")
}

#[test]
fn rootless_spec_runs_as_root_of_a_user_namespace_mapped_to_the_caller() {
    let r = Rootless::new("own-id");
    let b = r.bundle("b", &["sh", "-c", "id -u; cat /proc/self/uid_map; touch /tmp/made-inside"]);
    let id = r.id("own");
    // BERTH_LOG shows warnings (the default output has errors only).
    let out = r.rt_in(&r.scratch.dir, &[("BERTH_LOG", "warn")], &["run", "--bundle", b.p(), &id]);
    let text = ok(&out);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("0"), "id -u inside: {text}");
    assert_eq!(map_lines(&text), [vec![0, u64::from(r.user.uid), 1]], "uid_map: {text}");
    let made = std::fs::metadata(b.rootfs().join("tmp/made-inside")).unwrap();
    assert_eq!((made.uid(), made.gid()), (r.user.uid, r.user.gid), "owner on the host");
    assert!(stderr(&out).contains("cgroups not delegated"), "one warning: {}", stderr(&out));
}

#[test]
fn id_ranges_are_mapped_through_newuidmap_and_newgidmap() {
    let r = Rootless::new("ranges");
    let mut b = r.bundle("b", &["sh", "-c", "cat /proc/self/uid_map; cat /proc/self/gid_map >&2; touch /tmp/f && chown 1000:1000 /tmp/f"]);
    let (uid, gid) = (r.user.uid, r.user.gid);
    b.edit(|c| {
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": uid, "size": 1},
                                           {"containerID": 1, "hostID": SUB_START, "size": SUB_COUNT}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": gid, "size": 1},
                                           {"containerID": 1, "hostID": SUB_START, "size": SUB_COUNT}]);
        for set in ["bounding", "effective", "permitted"] {
            c["process"]["capabilities"][set].as_array_mut().unwrap().push(json!("CAP_CHOWN"));
        }
    });
    let id = r.id("ranges");
    let out = r.rt(&["run", "--bundle", b.p(), &id]);
    let text = ok(&out);
    let want = [vec![0, u64::from(uid), 1], vec![1, u64::from(SUB_START), u64::from(SUB_COUNT)]];
    assert_eq!(map_lines(&text), want, "uid_map: {text}");
    let want = [vec![0, u64::from(gid), 1], vec![1, u64::from(SUB_START), u64::from(SUB_COUNT)]];
    assert_eq!(map_lines(&stderr(&out)), want, "gid_map: {}", stderr(&out));
    let f = std::fs::metadata(b.rootfs().join("tmp/f")).unwrap();
    assert_eq!((f.uid(), f.gid()), (SUB_START + 999, SUB_START + 999), "container uid 1000 on the host");
}

#[test]
fn a_range_outside_the_users_subordinate_ids_names_newuidmap_and_its_error() {
    let r = Rootless::new("bad-range");
    let mut b = r.bundle("b", &["true"]);
    let uid = r.user.uid;
    b.edit(|c| {
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": uid, "size": 1},
                                           {"containerID": 1, "hostID": 10, "size": 5}]);
    });
    let id = r.id("bad");
    let out = r.rt(&["run", "--bundle", b.p(), &id]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("newuidmap") && err.contains("1 10 5"), "{err}");
    assert!(!r.state_root().join(&id).exists(), "state left behind");
}

#[test]
fn state_lives_under_the_users_xdg_runtime_dir_and_delete_removes_everything() {
    let r = Rootless::new("state");
    let b = r.bundle("b", &["sleep", "1000"]);
    let id = r.id("life");
    ok(&r.rt(&["create", "--bundle", b.p(), &id]));
    let dir = r.state_root().join(&id);
    let meta = std::fs::metadata(dir.join("state.json")).unwrap();
    assert_eq!(meta.uid(), r.user.uid, "state.json belongs to the user");
    assert_eq!(r.state(&id)["status"], "created");
    ok(&r.rt(&["start", &id]));
    let st = r.state(&id);
    assert_eq!(st["status"], "running");
    assert_eq!(st["owner"], USER);
    let pid = st["pid"].as_i64().unwrap();
    assert!(alive(pid));
    // exec joins the user namespace first, then the others (a double fork, as runc).
    let exec = ok(&r.rt(&["exec", &id, "sh", "-c", "id -u; readlink /proc/self/ns/pid; readlink /proc/self/ns/mnt"]));
    let lines: Vec<&str> = exec.lines().collect();
    assert_eq!(lines[0], "0", "{exec}");
    assert_eq!(lines[1], std::fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap().to_str().unwrap());
    assert_eq!(lines[2], std::fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap().to_str().unwrap());
    assert_eq!(r.rt(&["exec", &id, "sh", "-c", "exit 5"]).status.code(), Some(5));
    // Without a cgroup: pause says why; kill --all still reaches the container.
    let pause = r.rt(&["pause", &id]);
    assert!(!pause.status.success() && stderr(&pause).contains("no cgroup"), "{}", stderr(&pause));
    ok(&r.rt(&["kill", "--all", &id, "KILL"]));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while r.state(&id)["status"] != "stopped" && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(r.state(&id)["status"], "stopped");
    ok(&r.rt(&["delete", &id]));
    assert!(!dir.exists(), "state dir left behind");
    assert!(!alive(pid), "init left behind");
    assert_eq!(ok(&r.rt(&["list", "-q"])).trim(), "");
}

#[test]
fn delete_force_removes_a_running_rootless_container() {
    let r = Rootless::new("delete-force");
    let b = r.bundle("b", &["sleep", "1000"]);
    let id = r.id("force");
    ok(&r.rt(&["run", "--detach", "--bundle", b.p(), &id]));
    let pid = r.state(&id)["pid"].as_i64().unwrap();
    ok(&r.rt(&["delete", "--force", &id]));
    assert!(!alive(pid), "init left behind");
    assert!(!r.state_root().join(&id).exists(), "state dir left behind");
}

#[test]
fn a_memory_limit_without_a_delegated_cgroup_fails_and_leaves_nothing() {
    let r = Rootless::new("memory");
    let mut b = r.bundle("b", &["true"]);
    b.edit(|c| c["linux"]["resources"] = json!({"memory": {"limit": 33554432}}));
    let id = r.id("mem");
    let out = r.rt(&["run", "--bundle", b.p(), &id]);
    assert!(!out.status.success(), "ran without its memory limit");
    let err = stderr(&out);
    assert!(err.contains("memory") && err.contains("not delegated"), "{err}");
    assert!(!r.state_root().join(&id).exists(), "state left behind");
    assert_eq!(ok(&r.rt(&["list", "-q"])).trim(), "");
    for hierarchy in ["memory", "pids", "unified"] {
        let cg = Path::new("/sys/fs/cgroup").join(hierarchy).join("berth").join(&id);
        assert!(!cg.exists(), "{} left behind", cg.display());
    }
}

#[test]
fn device_rules_alone_do_not_need_a_cgroup() {
    let r = Rootless::new("devices");
    let mut b = r.bundle("b", &["true"]);
    b.edit(|c| c["linux"]["resources"] = json!({"devices": [{"allow": false, "access": "rwm"}]}));
    let id = r.id("dev");
    ok(&r.rt(&["run", "--bundle", b.p(), &id]));
}

#[test]
fn a_config_without_a_user_namespace_is_refused_for_a_non_root_user() {
    let r = Rootless::new("no-userns");
    let mut b = r.bundle("b", &["true"]);
    b.edit(|c| {
        let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "user");
        let linux = c["linux"].as_object_mut().unwrap();
        linux.remove("uidMappings");
        linux.remove("gidMappings");
    });
    let id = r.id("nouserns");
    let out = r.rt(&["run", "--bundle", b.p(), &id]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("requires a user namespace"), "{}", stderr(&out));
    assert!(!r.state_root().join(&id).exists(), "state left behind");
}

#[test]
fn without_xdg_runtime_dir_a_non_root_user_is_told_to_give_root() {
    let user = test_user();
    let out =
        Command::new(BIN).args(["list"]).env_remove("XDG_RUNTIME_DIR").uid(user.uid).gid(user.gid).stdin(Stdio::null()).output().unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("XDG_RUNTIME_DIR is not set"), "{}", stderr(&out));
}
