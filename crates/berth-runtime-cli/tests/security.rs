//! One regression test per runc CVE, through the built binary: each says what the CVE was and
//! what the test proves about berth.

mod common;
use common::mounts::*;
use common::*;
use serde_json::json;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;

fn statfs_type(f: &std::fs::File) -> i64 {
    // SAFETY: fstatfs fills a zeroed statfs for an open fd.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::fstatfs(f.as_raw_fd(), &mut st) }, 0);
    st.f_type as i64
}

fn mounts_of(m: &mut serde_json::Value) -> &mut Vec<serde_json::Value> {
    m["mounts"].as_array_mut().unwrap()
}

/// CVE-2019-5736: a container process could open `/proc/<runtime pid>/exe` (directly, or by
/// making the runtime exec a `#!/proc/self/exe` script) and rewrite the host's runc binary.
/// berth re-executes itself from a detached read-only overlay before it forks the init, so the
/// init's exe is a file on a read-only overlayfs, not the host binary, and cannot be opened for
/// writing. The test looks at the init of a created container (still berth-runtime) from the host.
#[test]
fn cve_2019_5736_the_init_exe_is_on_a_read_only_overlay_not_the_host_binary() {
    let s = Scratch::new("cve-2019-5736");
    let host_bin_before = std::fs::read(BIN).unwrap();
    let b = s.bundle("b", &["sleep", "300"]);
    let id = s.id("c");
    ok(&s.rt(&["create", "--bundle", b.p(), &id]));
    let pid = s.state(&id)["pid"].as_i64().unwrap();
    let exe_path = format!("/proc/{pid}/exe");

    let exe = std::fs::File::open(&exe_path).unwrap();
    assert_eq!(statfs_type(&exe), OVERLAYFS_SUPER_MAGIC, "the init's exe is not on an overlayfs");
    use std::os::unix::fs::MetadataExt;
    let (exe_md, host_md) = (exe.metadata().unwrap(), std::fs::metadata(BIN).unwrap());
    assert_ne!(exe_md.dev(), host_md.dev(), "the init's exe is the host binary's file");

    let w = std::fs::OpenOptions::new().write(true).open(&exe_path);
    let errno = w.expect_err("the init's exe could be opened for writing").raw_os_error();
    assert!(matches!(errno, Some(libc::EROFS) | Some(libc::ETXTBSY)), "unexpected error {errno:?}");

    ok(&s.rt(&["delete", "--force", &id]));
    assert!(std::fs::read(BIN).unwrap() == host_bin_before, "the host binary changed");
}

/// CVE-2019-5736, the `#!/proc/self/exe` variant: the container's entrypoint is a script whose
/// interpreter is the runtime itself; the runtime binary then runs inside the container.
/// Whatever it does there, the host binary must be unchanged afterwards.
#[test]
fn cve_2019_5736_a_proc_self_exe_shebang_cannot_change_the_host_binary() {
    let s = Scratch::new("cve-2019-5736-shebang");
    let before = std::fs::read(BIN).unwrap();
    let b = s.bundle("b", &["/evil"]);
    std::fs::write(b.rootfs().join("evil"), "#!/proc/self/exe\n").unwrap();
    std::fs::set_permissions(b.rootfs().join("evil"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = s.run(&b, "c");
    // The runtime, run as `/proc/self/exe /evil`, does not understand its arguments.
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(std::fs::read(BIN).unwrap() == before, "the host binary changed");
}

/// CVE-2024-21626: runc leaked an fd of the host's /sys/fs/cgroup into the init, so a cwd of
/// `/proc/self/fd/7` put the container process in a host directory (and let it walk up to
/// the host's root). berth closes every fd but stdio before chdir and checks that the cwd is
/// inside the root: such a cwd must fail, or at least not be outside the container.
#[test]
fn cve_2024_21626_a_cwd_through_a_leaked_fd_does_not_reach_the_host() {
    let s = Scratch::new("cve-2024-21626");
    for n in 3..=10 {
        let mut b = s.bundle(&format!("b{n}"), &["sh", "-c", "pwd; ls /"]);
        let cwd = format!("/proc/self/fd/{n}");
        b.edit(|c| c["process"]["cwd"] = json!(cwd));
        let id = s.id(&format!("fd{n}"));
        let out = s.rt(&["run", "--bundle", b.p(), &id]);
        if out.status.success() {
            let o = stdout(&out);
            assert!(!o.contains("unreachable"), "cwd {cwd} is outside the root: {o}");
            assert!(o.contains("busybox") || o.contains("bin"), "{o}");
        } else {
            let e = stderr(&out);
            assert!(e.contains(&cwd), "cwd {cwd}: the error does not name the cwd: {e}");
        }
        // The magic link's text (a host path) was not taken for a path to create in the root.
        let host_in_root = b.rootfs().join(s.dir.strip_prefix("/").unwrap());
        assert!(!host_in_root.exists(), "cwd {cwd}: {} was created in the root", host_in_root.display());
    }
}

/// CVE-2024-21626, the other half: the container process starts with no fd but its stdio
/// (only `ls`'s own directory fd shows up besides 0, 1 and 2).
#[test]
fn cve_2024_21626_the_container_process_inherits_only_stdio() {
    let s = Scratch::new("cve-2024-21626-fds");
    let b = s.bundle("b", &["ls", "-l", "/proc/self/fd/"]);
    let out = ok(&s.run(&b, "c"));
    let fds: Vec<(u32, String)> = out
        .lines()
        .filter_map(|l| {
            // `ls` may list its own fd, already closed, without a target.
            let (name, target) = l.split_once(" -> ").unwrap_or((l, ""));
            let n = name.rsplit(' ').next()?.parse().ok()?;
            Some((n, target.to_string()))
        })
        .collect();
    let extra: Vec<_> = fds.iter().filter(|(n, _)| *n > 2).collect();
    assert_eq!(extra.len(), 1, "fds other than stdio and ls's own: {out}");
    assert!(extra[0].1.is_empty() || extra[0].1.starts_with("/proc/"), "{out}");
}

/// CVE-2021-30465: a mount destination inside the rootfs that is (or is swapped for) a symlink
/// made runc mount onto the symlink's target on the host. berth resolves destinations in the
/// root (openat2 RESOLVE_IN_ROOT semantics), so a symlink to an absolute host path lands inside
/// the root; the host directory stays untouched.
#[test]
fn cve_2021_30465_a_bind_destination_symlinked_to_a_host_path_lands_inside_the_root() {
    let s = Scratch::new("cve-2021-30465");
    let host = s.dir.join("host-victim");
    std::fs::create_dir_all(&host).unwrap();
    let src = s.dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("marker"), "bound\n").unwrap();
    let mut b = s.bundle("b", &["sh", "-c", "cat /abs/marker /rel/marker"]);
    std::os::unix::fs::symlink(&host, b.rootfs().join("abs")).unwrap();
    // A relative symlink climbing above the root must be clamped at the root too.
    let up = format!("../../../../../../../..{}", host.display());
    std::os::unix::fs::symlink(&up, b.rootfs().join("rel")).unwrap();
    b.edit(|c| {
        mounts_of(c).push(json!({"destination": "/abs", "type": "bind", "source": src, "options": ["rbind"]}));
        mounts_of(c).push(json!({"destination": "/rel", "type": "bind", "source": src, "options": ["rbind", "ro"]}));
    });
    let out = ok(&s.run(&b, "c"));
    assert_eq!(out, "bound\nbound\n");
    assert_eq!(std::fs::read_dir(&host).unwrap().count(), 0, "the host directory was written to");
    assert!(!host_has_mount_under(&host));
    assert!(b.rootfs().join(host.strip_prefix("/").unwrap()).is_dir(), "the target was not made inside the root");
}

/// CVE-2023-27561 (a regression of CVE-2019-19921): a rootfs whose `proc` is a symlink made
/// runc mount procfs wherever the symlink pointed, on the host. berth refuses a proc (or
/// sysfs) mount point that is a symlink.
#[test]
fn cve_2023_27561_a_proc_symlink_in_the_rootfs_is_refused() {
    for target in ["/tmp", ".", "../../.."] {
        let s = Scratch::new("cve-2023-27561");
        let b = s.bundle("b", &["true"]);
        std::fs::remove_dir(b.rootfs().join("proc")).unwrap();
        std::os::unix::fs::symlink(target, b.rootfs().join("proc")).unwrap();
        let tmp_mounts = || {
            parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").unwrap()).iter().filter(|m| m.mount_point == "/tmp").count()
        };
        let before = tmp_mounts();
        let id = s.id("c");
        let out = s.rt(&["create", "--bundle", b.p(), &id]);
        assert!(!out.status.success(), "proc -> {target} was accepted");
        assert!(stderr(&out).contains("/proc is a symlink"), "{}", stderr(&out));
        assert_nothing_left(&s, &id);
        assert_eq!(tmp_mounts(), before, "something was mounted on the host's /tmp");
    }
}

/// A bundle whose /dev is a bind of `devdir` (so that berth creates no device there).
fn bundle_with_bound_dev(s: &Scratch, devdir: &Path) -> BundleDir {
    let mut b = s.bundle("b", &["true"]);
    b.edit(|c| {
        for m in mounts_of(c).iter_mut() {
            if m["destination"] == "/dev" {
                *m = json!({"destination": "/dev", "type": "bind", "source": devdir, "options": ["rbind"]});
            }
        }
    });
    b
}

/// CVE-2025-31133: runc masked paths by bind-mounting the container's /dev/null over them
/// without checking what /dev/null was; a container that replaced it with a symlink or a
/// regular file got a host file (e.g. /proc/sys/kernel/core_pattern) bound writable instead.
/// berth opens /dev/null without following symlinks and requires the 1:3 character device.
#[test]
fn cve_2025_31133_masking_refuses_a_dev_null_that_is_not_the_null_device() {
    let s = Scratch::new("cve-2025-31133");
    let host_file = s.dir.join("host-secret");
    std::fs::write(&host_file, "host secret\n").unwrap();
    for (kind, make) in [
        ("regular file", Box::new(|p: &Path| std::fs::write(p, "not a device").unwrap()) as Box<dyn Fn(&Path)>),
        ("symlink", Box::new(|p: &Path| std::os::unix::fs::symlink(&host_file, p).unwrap())),
    ] {
        let devdir = s.dir.join(format!("dev-{}", kind.replace(' ', "-")));
        std::fs::create_dir_all(&devdir).unwrap();
        make(&devdir.join("null"));
        let b = bundle_with_bound_dev(&s, &devdir);
        let id = s.id("c");
        let out = s.rt(&["create", "--bundle", b.p(), &id]);
        assert!(!out.status.success(), "a /dev/null that is a {kind} was used to mask paths");
        assert!(stderr(&out).contains("is not the null device"), "{kind}: {}", stderr(&out));
        assert_nothing_left(&s, &id);
        std::fs::remove_dir_all(&b.path).unwrap();
    }
    assert_eq!(std::fs::read_to_string(&host_file).unwrap(), "host secret\n");
}

/// CVE-2025-31133, the normal case: with berth's own /dev, a masked file is the null device.
#[test]
fn cve_2025_31133_a_masked_file_is_the_real_null_device() {
    let s = Scratch::new("cve-2025-31133-ok");
    let b = s.bundle("b", &["stat", "-c", "%F %t:%T", "/proc/keys"]);
    assert_eq!(ok(&s.run(&b, "c")), "character special file 1:3\n");
}

/// A console socket: accepts one connection and hands back the pty master berth sends.
struct ConsoleSocket {
    path: std::path::PathBuf,
    listener: std::os::unix::net::UnixListener,
}

impl ConsoleSocket {
    fn new(s: &Scratch) -> ConsoleSocket {
        let path = s.dir.join("console.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        ConsoleSocket { path, listener }
    }

    fn master(&self) -> std::fs::File {
        let (conn, _) = self.listener.accept().unwrap();
        let (fd, _name) = berth_runtime::console::recv_master_named(&conn).unwrap();
        std::fs::File::from(fd)
    }
}

/// Everything the container writes to its terminal until it closes it.
fn read_terminal(mut master: std::fs::File) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        // EIO once the container's side is closed.
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        let _ = tx.send(out);
    });
    let out = rx.recv_timeout(Duration::from_secs(10)).expect("the container's terminal never closed");
    String::from_utf8_lossy(&out).replace('\r', "")
}

/// Create and start a terminal container of `b`; its terminal output.
fn run_with_terminal(s: &Scratch, b: &BundleDir) -> Result<String, String> {
    let sock = ConsoleSocket::new(s);
    let id = s.id("tty");
    let sock_path = sock.path.to_str().unwrap().to_string();
    let (out, master) = std::thread::scope(|sc| {
        let h = sc.spawn(|| sock.master());
        let out = s.rt(&["create", "--console-socket", &sock_path, "--bundle", b.p(), &id]);
        if !out.status.success() {
            // Unblock the accept.
            let _ = std::os::unix::net::UnixStream::connect(&sock.path);
            return (out, None);
        }
        (out, Some(h.join().unwrap()))
    });
    let Some(master) = master else { return Err(stderr(&out)) };
    ok(&s.rt(&["start", &id]));
    Ok(read_terminal(master))
}

const CONSOLE_SCRIPT: &str = "t=$(tty); echo $t; stat -c %t:%T $t /dev/console; grep -c ' /dev/console ' /proc/self/mountinfo";

/// Assert the terminal output of [`CONSOLE_SCRIPT`]: /dev/console is the container's pty.
#[track_caller]
fn assert_console_is_the_pty(out: &str) {
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[0].starts_with("/dev/pts/"), "{out}");
    assert_eq!(lines[1], lines[2], "/dev/console is not the pty: {out}");
    assert!(lines[1].starts_with("88:") || lines[1].starts_with("88"), "not a pty peer (major 136 = 0x88): {out}");
    assert_eq!(lines[3], "1", "/dev/console is not a mount: {out}");
}

/// CVE-2025-52565: runc bind-mounted the pty onto /dev/console by path, so a container with a
/// /dev/console symlink (or a racing /dev/pts) could make it mount over a host path. berth gets
/// the pty peer with TIOCGPTPEER and binds it by fd: /dev/console is the container's pty.
#[test]
fn cve_2025_52565_dev_console_is_a_bind_of_the_pty_peer() {
    let s = Scratch::new("cve-2025-52565");
    let mut b = s.bundle("b", &["sh", "-c", CONSOLE_SCRIPT]);
    b.edit(|c| c["process"]["terminal"] = json!(true));
    assert_console_is_the_pty(&run_with_terminal(&s, &b).unwrap());
}

/// CVE-2025-52565 with a hostile image: the rootfs's /dev (used as is: no /dev tmpfs) holds a
/// `console` symlink to a host file. berth must either refuse or bind the pty onto a
/// /dev/console inside the root; the host file is never touched.
#[test]
fn cve_2025_52565_a_dev_console_symlink_in_the_image_never_reaches_the_host() {
    let s = Scratch::new("cve-2025-52565-link");
    let host_file = s.dir.join("host-console");
    std::fs::write(&host_file, "host file\n").unwrap();
    let mut b = s.bundle("b", &["sh", "-c", CONSOLE_SCRIPT]);
    std::os::unix::fs::symlink(&host_file, b.rootfs().join("dev/console")).unwrap();
    b.edit(|c| {
        c["process"]["terminal"] = json!(true);
        mounts_of(c).retain(|m| m["destination"] != "/dev");
    });
    match run_with_terminal(&s, &b) {
        Ok(out) => assert_console_is_the_pty(&out),
        Err(e) => assert!(e.contains("/dev/console") && e.contains("symlink"), "unclear error: {e}"),
    }
    assert_eq!(std::fs::read_to_string(&host_file).unwrap(), "host file\n");
    let md = std::fs::symlink_metadata(&host_file).unwrap();
    assert!(md.file_type().is_file());
    assert!(!host_has_mount_under(&s.dir));
}

/// CVE-2025-52881: runc's writes to /proc (sysctls, oom_score_adj, LSM labels) could be
/// redirected by mounts the container configured over /proc, landing in a non-proc file. berth
/// refuses mounts over /proc paths (except lxcfs's few files), so a tmpfs or bind over
/// /proc/sys, /proc/self/attr or a sysctl file fails, and the bound host file is untouched.
#[test]
fn cve_2025_52881_mounts_over_proc_sys_and_proc_self_attr_are_refused() {
    let s = Scratch::new("cve-2025-52881");
    let victim = s.dir.join("victim");
    std::fs::write(&victim, "0\n").unwrap();
    let cases = [
        json!({"destination": "/proc/sys", "type": "tmpfs", "source": "tmpfs"}),
        json!({"destination": "/proc/sys/net/ipv4/ip_forward", "type": "bind", "source": victim, "options": ["bind"]}),
        json!({"destination": "/proc/self/attr", "type": "tmpfs", "source": "tmpfs"}),
        json!({"destination": "/proc/self/oom_score_adj", "type": "bind", "source": victim, "options": ["bind"]}),
    ];
    for (i, m) in cases.into_iter().enumerate() {
        let mut b = s.bundle(&format!("b{i}"), &["true"]);
        b.edit(|c| {
            mounts_of(c).push(m.clone());
            c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
            c["process"]["oomScoreAdj"] = json!(500);
        });
        let id = s.id("c");
        let out = s.rt(&["create", "--bundle", b.p(), &id]);
        assert!(!out.status.success(), "{m} was accepted");
        assert!(stderr(&out).contains("inside /proc"), "{m}: {}", stderr(&out));
        assert_nothing_left(&s, &id);
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "0\n");
}

/// CVE-2025-52881 without any mount over /proc: the image itself makes /proc/self a symlink
/// to a bind-mounted host directory and the config mounts no procfs, so a write to
/// `/proc/self/oom_score_adj` by path would land in a host file. The write must only ever
/// reach procfs: berth refuses, and the host file is untouched.
#[test]
fn cve_2025_52881_oom_score_adj_is_never_written_to_a_non_proc_file() {
    let s = Scratch::new("cve-2025-52881-oom");
    let victim_dir = s.dir.join("victim");
    std::fs::create_dir_all(&victim_dir).unwrap();
    std::fs::write(victim_dir.join("oom_score_adj"), "host\n").unwrap();
    let mut b = s.bundle("b", &["true"]);
    std::fs::create_dir_all(b.rootfs().join("proc")).unwrap();
    std::os::unix::fs::symlink("/data", b.rootfs().join("proc/self")).unwrap();
    b.edit(|c| {
        mounts_of(c).retain(|m| m["type"] != "proc");
        mounts_of(c).push(json!({"destination": "/data", "type": "bind", "source": victim_dir, "options": ["rbind"]}));
        c["process"]["oomScoreAdj"] = json!(500);
    });
    let id = s.id("c");
    let out = s.rt(&["run", "--bundle", b.p(), &id]);
    assert_eq!(std::fs::read_to_string(victim_dir.join("oom_score_adj")).unwrap(), "host\n", "oom_score_adj was written into a host file");
    assert!(!out.status.success(), "a container without a procfs got an oom_score_adj");
    assert!(stderr(&out).contains("oom_score_adj"), "{}", stderr(&out));
    assert_nothing_left(&s, &id);
}

/// CVE-2025-52881 for sysctls: with no procfs at /proc (the image's /proc holds a fake
/// `sys/net/ipv4/ip_forward` file), the sysctl is refused instead of written into the file.
#[test]
fn cve_2025_52881_a_sysctl_is_never_written_to_a_non_proc_file() {
    let s = Scratch::new("cve-2025-52881-sysctl");
    let mut b = s.bundle("b", &["true"]);
    let fake = b.rootfs().join("proc/sys/net/ipv4");
    std::fs::create_dir_all(&fake).unwrap();
    std::fs::write(fake.join("ip_forward"), "0\n").unwrap();
    b.edit(|c| {
        mounts_of(c).retain(|m| m["type"] != "proc");
        c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
        c["linux"]["maskedPaths"] = json!([]);
        c["linux"]["readonlyPaths"] = json!([]);
    });
    let id = s.id("c");
    let out = s.rt(&["run", "--bundle", b.p(), &id]);
    assert_eq!(std::fs::read_to_string(fake.join("ip_forward")).unwrap(), "0\n", "the sysctl was written into a plain file");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("procfs"), "{}", stderr(&out));
    assert_nothing_left(&s, &id);
}

/// CVE-2019-5736 with an immutable binary (`chattr +i`, how scripts/build-release installs
/// berth-runtime): no re-exec happens, the init's exe is the installed file itself, and
/// it cannot be opened for writing by anyone (EPERM), which is the protection.
#[test]
fn cve_2019_5736_an_immutable_binary_is_used_as_is_and_cannot_be_written() {
    let s = Scratch::new("cve-2019-5736-immutable");
    // A copy next to the scratch dir (ext4 here); the flag is removed before cleanup.
    let bin = s.dir.join("berth-runtime-immutable");
    std::fs::copy(BIN, &bin).unwrap();
    let chattr = std::process::Command::new("chattr").arg("+i").arg(&bin).status();
    if !chattr.is_ok_and(|st| st.success()) {
        eprintln!("skipped: chattr +i is not supported on {} (needs e2fsprogs and ext4/xfs/btrfs)", s.dir.display());
        return;
    }
    struct Unfreeze(std::path::PathBuf);
    impl Drop for Unfreeze {
        fn drop(&mut self) {
            let _ = std::process::Command::new("chattr").arg("-i").arg(&self.0).status();
        }
    }
    let _unfreeze = Unfreeze(bin.clone());
    let b = s.bundle("b", &["sleep", "300"]);
    let id = s.id("c");
    let out = std::process::Command::new(&bin)
        .args(["--root", s.root.to_str().unwrap(), "create", "--bundle", b.p(), &id])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(out.success());
    let pid = s.state(&id)["pid"].as_i64().unwrap();
    let exe_path = format!("/proc/{pid}/exe");
    use std::os::unix::fs::MetadataExt;
    let (exe_md, bin_md) = (std::fs::metadata(&exe_path).unwrap(), std::fs::metadata(&bin).unwrap());
    assert_eq!((exe_md.dev(), exe_md.ino()), (bin_md.dev(), bin_md.ino()), "an immutable binary is not re-executed");
    let w = std::fs::OpenOptions::new().write(true).open(&exe_path);
    assert_eq!(w.expect_err("the immutable exe could be opened for writing").raw_os_error(), Some(libc::EPERM));
    ok(&s.rt(&["delete", "--force", &id]));
}
