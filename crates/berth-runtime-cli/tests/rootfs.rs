//! What a container sees of its root filesystem: its mount table (read back from
//! /proc/self/mountinfo inside), bind and tmpfs mounts, propagation, masked and read-only
//! paths, device nodes, /dev symlinks and sysctls.

mod common;
use common::mounts::*;
use common::*;
use serde_json::json;

/// Run `args` in a fresh busybox container of `s`, edited by `f`; return stdout, asserting success.
#[track_caller]
fn run_ok(s: &Scratch, args: &[&str], f: impl FnOnce(&mut serde_json::Value)) -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let name = format!("b{}", N.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
    let mut b = s.bundle(&name, args);
    b.edit(f);
    ok(&s.run(&b, "c"))
}

/// The container's mount table.
#[track_caller]
fn container_mounts(s: &Scratch, f: impl FnOnce(&mut serde_json::Value)) -> Vec<MountInfoLine> {
    parse_mountinfo(&run_ok(s, &["cat", "/proc/self/mountinfo"], f))
}

fn push_mount(c: &mut serde_json::Value, m: serde_json::Value) {
    c["mounts"].as_array_mut().unwrap().push(m);
}

#[test]
fn readonly_root_rejects_writes_with_erofs() {
    let s = Scratch::new("ro-root");
    let out = run_ok(&s, &["sh", "-c", "touch /newfile 2>&1; echo rc=$?"], |c| c["root"]["readonly"] = json!(true));
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(out.contains("rc=1"), "{out}");
    let table = container_mounts(&s, |c| c["root"]["readonly"] = json!(true));
    assert!(mount_at(&table, "/").has("ro"), "{table:#?}");
}

#[test]
fn writable_root_accepts_writes() {
    let s = Scratch::new("rw-root");
    let out = run_ok(&s, &["sh", "-c", "echo hi > /newfile && cat /newfile"], |_| {});
    assert_eq!(out, "hi\n");
    let table = container_mounts(&s, |_| {});
    assert!(mount_at(&table, "/").has("rw"));
}

#[test]
fn default_mounts_carry_their_configured_options() {
    let s = Scratch::new("defaults");
    let t = container_mounts(&s, |_| {});

    let proc_ = mount_at(&t, "/proc");
    assert_eq!(proc_.fstype, "proc");

    let dev = mount_at(&t, "/dev");
    assert_eq!(dev.fstype, "tmpfs");
    assert!(dev.has("nosuid") && dev.has("mode=755") && dev.has("size=65536k"), "{dev:?}");

    let pts = mount_at(&t, "/dev/pts");
    assert_eq!(pts.fstype, "devpts");
    for o in ["nosuid", "noexec", "mode=620", "ptmxmode=666", "gid=5"] {
        assert!(pts.has(o), "/dev/pts lacks {o}: {pts:?}");
    }

    // tmpfs does not list mode=1777, its default: the mode is checked with stat below.
    let shm = mount_at(&t, "/dev/shm");
    assert_eq!(shm.fstype, "tmpfs");
    for o in ["nosuid", "nodev", "noexec", "size=65536k"] {
        assert!(shm.has(o), "/dev/shm lacks {o}: {shm:?}");
    }

    let mq = mount_at(&t, "/dev/mqueue");
    assert_eq!(mq.fstype, "mqueue");
    assert!(mq.has("nosuid") && mq.has("nodev") && mq.has("noexec"), "{mq:?}");

    let sys = mount_at(&t, "/sys");
    assert_eq!(sys.fstype, "sysfs");
    for o in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(sys.has(o), "/sys lacks {o}: {sys:?}");
    }

    // The cgroup mount and every hierarchy under it are read-only.
    let cg = mount_at(&t, "/sys/fs/cgroup");
    assert!(cg.has("ro"), "{cg:?}");
    let under: Vec<_> = t.iter().filter(|m| m.mount_point.starts_with("/sys/fs/cgroup/")).collect();
    assert!(std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() || !under.is_empty(), "no cgroup hierarchy mounted: {t:#?}");
    for m in under {
        assert!(m.has("ro"), "{m:?}");
        assert!(m.fstype.starts_with("cgroup"), "{m:?}");
    }
}

#[test]
fn dev_shm_is_world_writable_and_sticky() {
    let s = Scratch::new("shm-mode");
    assert_eq!(run_ok(&s, &["stat", "-c", "%a", "/dev/shm"], |_| {}), "1777\n");
}

#[test]
fn bind_mounts_of_a_directory_and_a_file_show_the_host_content() {
    let s = Scratch::new("bind");
    let src = s.dir.join("hostdir");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), "from-dir\n").unwrap();
    let file = s.dir.join("hostfile");
    std::fs::write(&file, "from-file\n").unwrap();
    let out = run_ok(&s, &["sh", "-c", "cat /data/f /etc/hostfile; echo w > /data/new"], |c| {
        push_mount(c, json!({"destination": "/data", "type": "bind", "source": src, "options": ["bind"]}));
        push_mount(c, json!({"destination": "/etc/hostfile", "type": "bind", "source": file, "options": ["rbind"]}));
    });
    assert_eq!(out, "from-dir\nfrom-file\n");
    assert_eq!(std::fs::read_to_string(src.join("new")).unwrap(), "w\n", "a rw bind writes through to the host");
}

#[test]
fn ro_bind_rejects_writes() {
    let s = Scratch::new("bind-ro");
    let src = s.dir.join("hostdir");
    std::fs::create_dir_all(&src).unwrap();
    let out = run_ok(&s, &["sh", "-c", "touch /data/x 2>&1; grep ' /data ' /proc/self/mountinfo"], |c| {
        push_mount(c, json!({"destination": "/data", "type": "bind", "source": src, "options": ["bind", "ro"]}));
    });
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(!src.join("x").exists());
    let line = parse_mountinfo(out.lines().last().unwrap());
    assert!(line[0].has("ro"), "{out}");
}

/// A host directory holding a tmpfs submount, inside a private bind so nothing leaks.
struct HostTree {
    src: std::path::PathBuf,
    _sub: HostMount,
    _outer: HostMount,
}

fn host_tree_with_submount(s: &Scratch) -> HostTree {
    let src = s.dir.join("tree");
    let outer = HostMount::bind_self(&src, "private");
    let sub = HostMount::tmpfs(&src.join("sub"));
    std::fs::write(src.join("sub/inner"), "inner\n").unwrap();
    HostTree { src, _sub: sub, _outer: outer }
}

#[test]
fn rbind_shows_a_host_submount_and_ro_leaves_it_writable() {
    let s = Scratch::new("rbind");
    let tree = host_tree_with_submount(&s);
    let out = run_ok(
        &s,
        &["sh", "-c", "cat /data/sub/inner; touch /data/sub/w 2>&1 && echo sub-writable; touch /data/top 2>&1 || echo top-ro"],
        |c| push_mount(c, json!({"destination": "/data", "type": "bind", "source": tree.src, "options": ["rbind", "ro"]})),
    );
    assert!(out.starts_with("inner\n"), "the submount is not visible: {out}");
    // Plain `ro` only applies to the top mount, as with runc.
    assert!(out.contains("sub-writable"), "{out}");
    assert!(out.contains("top-ro"), "{out}");
}

#[test]
fn bind_without_rbind_hides_the_host_submount() {
    let s = Scratch::new("bind-norec");
    let tree = host_tree_with_submount(&s);
    let out = run_ok(&s, &["sh", "-c", "ls /data/sub"], |c| {
        push_mount(c, json!({"destination": "/data", "type": "bind", "source": tree.src, "options": ["bind"]}))
    });
    assert_eq!(out, "", "a non-recursive bind shows the submount's content");
}

#[test]
fn rro_makes_the_submount_read_only_too() {
    let s = Scratch::new("rro");
    let tree = host_tree_with_submount(&s);
    let out = run_ok(&s, &["sh", "-c", "cat /data/sub/inner; touch /data/sub/w 2>&1; grep ' /data/sub ' /proc/self/mountinfo"], |c| {
        push_mount(c, json!({"destination": "/data", "type": "bind", "source": tree.src, "options": ["rbind", "rro"]}))
    });
    assert!(out.starts_with("inner\n"), "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    let sub = parse_mountinfo(out.lines().last().unwrap());
    assert!(sub[0].has("ro"), "{out}");
    assert!(!tree.src.join("sub/w").exists());
}

#[test]
fn nosuid_nodev_noexec_show_up_as_mount_options() {
    let s = Scratch::new("bind-flags");
    let src = s.dir.join("hostdir");
    std::fs::create_dir_all(&src).unwrap();
    let t = container_mounts(&s, |c| {
        push_mount(c, json!({"destination": "/data", "type": "bind", "source": src, "options": ["bind", "nosuid", "nodev", "noexec"]}))
    });
    let m = mount_at(&t, "/data");
    for o in ["nosuid", "nodev", "noexec", "rw"] {
        assert!(m.has(o), "/data lacks {o}: {m:?}");
    }
}

#[test]
fn tmpfs_gets_its_size_and_mode() {
    let s = Scratch::new("tmpfs");
    let out = run_ok(&s, &["sh", "-c", "stat -c %a /scratch; grep ' /scratch ' /proc/self/mountinfo"], |c| {
        push_mount(c, json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m", "mode=700", "nodev"]}))
    });
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("700"), "{out}");
    let m = &parse_mountinfo(lines.next().unwrap())[0];
    assert_eq!(m.fstype, "tmpfs");
    assert!(m.has("size=1024k") && m.has("mode=700") && m.has("nodev"), "{m:?}");
}

#[test]
fn tmpcopyup_copies_the_image_content_into_the_tmpfs() {
    let s = Scratch::new("copyup");
    let mut b = s
        .bundle("b", &["sh", "-c", "cat /data/f /data/d/g; readlink /data/l; echo changed > /data/f; grep ' /data ' /proc/self/mountinfo"]);
    let data = b.rootfs().join("data");
    std::fs::create_dir_all(data.join("d")).unwrap();
    std::fs::write(data.join("f"), "image\n").unwrap();
    std::fs::write(data.join("d/g"), "nested\n").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", data.join("l")).unwrap();
    b.edit(|c| push_mount(c, json!({"destination": "/data", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup"]})));
    let out = ok(&s.run(&b, "c"));
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("image"), "{out}");
    assert_eq!(lines.next(), Some("nested"), "{out}");
    assert_eq!(lines.next(), Some("/etc/passwd"), "symlinks are copied as symlinks: {out}");
    assert_eq!(parse_mountinfo(lines.next().unwrap())[0].fstype, "tmpfs");
    assert_eq!(std::fs::read_to_string(data.join("f")).unwrap(), "image\n", "the image was written through");
}

#[test]
fn rootfs_propagation_shared_makes_the_root_a_shared_mount() {
    let s = Scratch::new("prop-root");
    let t = container_mounts(&s, |c| c["linux"]["rootfsPropagation"] = json!("shared"));
    assert!(mount_at(&t, "/").tagged("shared:"), "{:?}", mount_at(&t, "/"));
    let t = container_mounts(&s, |c| c["linux"]["rootfsPropagation"] = json!("private"));
    let root = mount_at(&t, "/");
    assert!(!root.tagged("shared:") && !root.tagged("master:"), "{root:?}");
}

#[test]
fn per_mount_rshared_and_rslave_show_in_the_optional_fields() {
    let s = Scratch::new("prop-mount");
    // A shared host mount, so that a slave in the container has a master to name.
    let src = s.dir.join("shared-src");
    let _host = HostMount::bind_self(&src, "shared");
    let t = container_mounts(&s, |c| {
        push_mount(c, json!({"destination": "/shared", "type": "bind", "source": src, "options": ["rbind", "rshared"]}));
        push_mount(c, json!({"destination": "/slave", "type": "bind", "source": src, "options": ["rbind", "rslave"]}));
        push_mount(c, json!({"destination": "/private", "type": "bind", "source": src, "options": ["rbind", "rprivate"]}));
    });
    let shared = mount_at(&t, "/shared");
    assert!(shared.tagged("shared:"), "{shared:?}");
    let slave = mount_at(&t, "/slave");
    assert!(slave.tagged("master:") && !slave.tagged("shared:"), "{slave:?}");
    let private = mount_at(&t, "/private");
    assert!(private.optional.is_empty(), "{private:?}");
}

#[test]
fn no_pivot_runs_the_container_in_its_root() {
    let s = Scratch::new("no-pivot");
    let b = s.bundle("b", &["sh", "-c", "cat /etc/group | head -1; ls /"]);
    let id = s.id("c");
    let out = ok(&s.rt(&["run", "--no-pivot", "--bundle", b.p(), &id]));
    assert!(out.starts_with("root:x:0:\n"), "{out}");
    assert!(out.contains("busybox") || out.contains("bin"), "{out}");
    assert!(!out.contains("rootfs"), "the bundle directory is visible: {out}");
}

#[test]
fn a_masked_file_reads_empty_and_a_masked_directory_is_an_empty_tmpfs() {
    let s = Scratch::new("masked");
    let mut b = s.bundle(
        "b",
        &["sh", "-c", "stat -c '%s %t:%T' /etc/masked; wc -c < /etc/masked; ls -A /secret | wc -l; grep ' /secret ' /proc/self/mountinfo"],
    );
    std::fs::create_dir_all(b.rootfs().join("secret")).unwrap();
    std::fs::write(b.rootfs().join("secret/key"), "k").unwrap();
    std::fs::write(b.rootfs().join("etc/masked"), "secret content").unwrap();
    b.edit(|c| {
        let masked = c["linux"]["maskedPaths"].as_array_mut().unwrap();
        masked.push(json!("/secret"));
        masked.push(json!("/etc/masked"));
    });
    let out = ok(&s.run(&b, "c"));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0 1:3", "the masked file is not /dev/null: {out}");
    assert_eq!(lines[1].trim(), "0");
    assert_eq!(lines[2].trim(), "0", "the masked directory shows its content: {out}");
    let m = &parse_mountinfo(lines[3])[0];
    assert_eq!(m.fstype, "tmpfs");
    assert!(m.has("ro"), "{m:?}");
}

#[test]
fn default_masked_proc_files_read_empty() {
    let s = Scratch::new("masked-proc");
    // /proc/kcore is not built into every kernel; /proc/keys and /proc/timer_list usually are.
    let out = run_ok(
        &s,
        &[
            "sh",
            "-c",
            "for f in /proc/kcore /proc/keys /proc/timer_list; do [ -e $f ] && echo $f $(stat -c '%t:%T' $f) $(wc -c < $f); done",
        ],
        |_| {},
    );
    assert!(!out.is_empty(), "none of the masked /proc files exists here");
    for line in out.lines() {
        assert!(line.ends_with(" 1:3 0"), "not masked by /dev/null: {line}");
    }
}

#[test]
fn readonly_paths_reject_writes() {
    let s = Scratch::new("ro-paths");
    let out = run_ok(&s, &["sh", "-c", "(echo x > /proc/sys/kernel/domainname) 2>&1; echo rc=$?; cat /proc/sys/kernel/domainname"], |_| {});
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(out.contains("rc=1"), "{out}");
}

#[test]
fn default_devices_exist_with_their_numbers_and_mode() {
    let s = Scratch::new("devices");
    let out = run_ok(&s, &["sh", "-c", "for d in null zero full random urandom tty; do stat -c '%n %F %t:%T %a' /dev/$d; done"], |_| {});
    let want = [("null", "1:3"), ("zero", "1:5"), ("full", "1:7"), ("random", "1:8"), ("urandom", "1:9"), ("tty", "5:0")];
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), want.len(), "{out}");
    for (line, (name, dev)) in lines.iter().zip(want) {
        assert_eq!(*line, format!("/dev/{name} character special file {dev} 666"));
    }
}

#[test]
fn linux_devices_entry_is_created_with_its_mode_and_owner() {
    let s = Scratch::new("spec-devices");
    let out = run_ok(&s, &["stat", "-c", "%F %t:%T %a %u:%g", "/dev/fuse"], |c| {
        c["linux"]["devices"] =
            json!([{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o640, "uid": 1000, "gid": 5}]);
    });
    assert_eq!(out, "character special file a:e5 640 1000:5\n");
}

#[test]
fn linux_devices_fifo_entry_is_created() {
    let s = Scratch::new("spec-fifo");
    let out = run_ok(&s, &["stat", "-c", "%F %a %u:%g", "/dev/myfifo"], |c| {
        c["linux"]["devices"] =
            json!([{"path": "/dev/myfifo", "type": "p", "major": 0, "minor": 0, "fileMode": 0o600, "uid": 1000, "gid": 1000}]);
    });
    assert_eq!(out, "fifo 600 1000:1000\n");
}

#[test]
fn dev_symlinks_point_into_proc_and_ptmx_into_devpts() {
    let s = Scratch::new("dev-links");
    let out = run_ok(&s, &["sh", "-c", "for l in fd stdin stdout stderr ptmx; do echo $l=$(readlink /dev/$l); done"], |_| {});
    assert_eq!(out, "fd=/proc/self/fd\nstdin=/proc/self/fd/0\nstdout=/proc/self/fd/1\nstderr=/proc/self/fd/2\nptmx=pts/ptmx\n");
}

#[test]
fn sysctls_of_new_net_and_ipc_namespaces_are_visible_inside() {
    let s = Scratch::new("sysctl");
    let out = run_ok(&s, &["sh", "-c", "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmax"], |c| {
        c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.shmmax": "123456789"});
    });
    assert_eq!(out, "1\n123456789\n");
    // The host's values are untouched.
    assert_ne!(std::fs::read_to_string("/proc/sys/kernel/shmmax").unwrap().trim(), "123456789");
}

#[test]
fn a_sysctl_that_is_not_namespaced_is_refused() {
    let s = Scratch::new("sysctl-host");
    let before = std::fs::read_to_string("/proc/sys/kernel/pid_max").unwrap();
    let mut b = s.bundle("b", &["true"]);
    b.edit(|c| c["linux"]["sysctl"] = json!({"kernel.pid_max": "4242"}));
    let id = s.id("c");
    let out = s.rt(&["run", "--bundle", b.p(), &id]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not a namespaced sysctl"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string("/proc/sys/kernel/pid_max").unwrap(), before);
    assert_nothing_left(&s, &id);
}
