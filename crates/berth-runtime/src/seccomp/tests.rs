//! Unit tests: filters are loaded in forked children, which report through their exit code.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use oci_spec::runtime::LinuxSeccomp;
use serde_json::{json, Value};

use super::*;

fn profile(json: &str) -> LinuxSeccomp {
    serde_json::from_str(json).expect("seccomp json")
}

fn bench_profile() -> LinuxSeccomp {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench/seccomp-default.json");
    let text = std::fs::read_to_string(&path).expect("bench/seccomp-default.json");
    profile(&text)
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Run `body` in a forked child (allocation-free calls only) and return its exit code.
fn in_child(body: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the child runs only `body`, which makes async-signal-safe calls, then _exits.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or(101);
            // SAFETY: _exit ends the child without running the parent's atexit handlers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => exit_code(child),
    }
}

fn exit_code(child: Pid) -> i32 {
    match waitpid(child, None).expect("waitpid") {
        WaitStatus::Exited(_, code) => code,
        WaitStatus::Signaled(_, sig, _) => 128 + sig as i32,
        other => panic!("unexpected wait status {other:?}"),
    }
}

/// In the child: set no_new_privs and install the filter; 90/91 on failure.
fn child_load(filter: &CompiledFilter) -> std::result::Result<Option<OwnedFd>, i32> {
    // SAFETY: prctl with these arguments only sets a flag on the calling thread.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(90);
    }
    load(filter).map_err(|_| 91)
}

fn mkdirat_missing() -> libc::c_long {
    // SAFETY: a NUL-terminated path literal; the call only fails or creates nothing.
    unsafe { libc::syscall(libc::SYS_mkdirat, libc::AT_FDCWD, c"/nonexistent-berth/x".as_ptr(), 0o700) }
}

#[test]
fn denied_syscall_returns_errno_ret_and_others_are_allowed() {
    let filter = prepare(&profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["mkdirat","mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":38},
            {"names":["getcwd"],"action":"SCMP_ACT_ERRNO"}]}"#,
    ))
    .expect("prepare");
    assert!(!filter.uses_notify());
    let code = in_child(|| {
        if let Err(code) = child_load(&filter) {
            return code;
        }
        if mkdirat_missing() != -1 || errno() != libc::ENOSYS {
            return 1;
        }
        let mut buf = [0u8; 64];
        // SAFETY: the buffer is valid for its length.
        if unsafe { libc::getcwd(buf.as_mut_ptr().cast(), buf.len()) }.is_null() && errno() == libc::EPERM {
            // SAFETY: getpid cannot fail.
            if unsafe { libc::getpid() } > 0 {
                return 0;
            }
        }
        2
    });
    assert_eq!(code, 0, "child exit code");
}

#[test]
fn docker_default_profile_denies_namespaces_and_odd_personalities() {
    let filter = prepare(&bench_profile()).expect("prepare bench profile");
    let code = in_child(|| {
        if let Err(code) = child_load(&filter) {
            return code;
        }
        // personality(0xffffffff) queries the persona: allowed by one of the split rules.
        // SAFETY: querying the persona changes nothing.
        if unsafe { libc::personality(0xffff_ffff) } < 0 {
            return 1;
        }
        // SAFETY: the filter refuses it before the kernel looks at the value.
        if unsafe { libc::personality(0x1234) } != -1 || errno() != libc::ENOSYS {
            return 2;
        }
        // clone with namespace flags fails SCMP_CMP_MASKED_EQ → defaultErrnoRet (ENOSYS).
        let flags = (libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::SIGCHLD) as libc::c_long;
        // SAFETY: raw clone; if wrongly allowed the grandchild (rc 0) exits at once.
        let rc = unsafe { libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0) };
        if rc == 0 {
            // SAFETY: leave the grandchild immediately.
            unsafe { libc::_exit(99) }
        }
        if rc != -1 || errno() != libc::ENOSYS {
            return 3;
        }
        // SAFETY: acct(NULL) would only switch accounting off; the profile refuses it.
        if unsafe { libc::acct(std::ptr::null()) } != -1 || errno() != libc::EPERM {
            return 4;
        }
        // SAFETY: clone3 with a NULL argument; the filter answers first.
        if unsafe { libc::syscall(libc::SYS_clone3, 0, 0) } != -1 || errno() != libc::ENOSYS {
            return 5;
        }
        0
    });
    assert_eq!(code, 0, "child exit code");
}

#[test]
fn two_conditions_on_one_argument_are_ored_like_runc() {
    let filter = prepare(&profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["personality"],"action":"SCMP_ACT_ERRNO","errnoRet":95,
            "args":[{"index":0,"value":4660,"op":"SCMP_CMP_EQ"},{"index":0,"value":17185,"op":"SCMP_CMP_EQ"}]}]}"#,
    ))
    .expect("prepare");
    let code = in_child(|| {
        if let Err(code) = child_load(&filter) {
            return code;
        }
        for (value, denied) in [(0x1234, true), (0x4321, true), (0xffff_ffff, false)] {
            // SAFETY: the denied values never reach the kernel; 0xffffffff only queries.
            let rc = unsafe { libc::personality(value) };
            if denied != (rc == -1 && errno() == libc::EOPNOTSUPP) {
                return 1;
            }
        }
        0
    });
    assert_eq!(code, 0, "child exit code");
}

#[test]
fn notify_profile_hands_listener_to_parent_which_answers() {
    let filter = prepare(&profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/run/agent.sock",
            "syscalls":[{"names":["mkdirat"],"action":"SCMP_ACT_NOTIFY"}]}"#,
    ))
    .expect("prepare");
    assert!(filter.uses_notify());
    let (parent_end, child_end) = UnixStream::pair().expect("socketpair");
    // SAFETY: the child only makes allocation-free calls, then _exits.
    let child = match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            let code = (|| {
                let fd = match child_load(&filter) {
                    Ok(Some(fd)) => fd,
                    Ok(None) => return 92,
                    Err(code) => return code,
                };
                if send_fd(child_end.as_fd(), b"S", fd.as_fd()).is_err() {
                    return 93;
                }
                drop(fd);
                // The parent answers with val 42 instead of running the syscall.
                if mkdirat_missing() == 42 {
                    0
                } else {
                    3
                }
            })();
            // SAFETY: end the child without unwinding into the test harness.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => child,
    };
    drop(child_end);
    let mut byte = [0u8; 1];
    let (n, fd) = recv_fd(parent_end.as_fd(), &mut byte).expect("recv_fd");
    let listener = fd.expect("listener fd attached");
    assert_eq!((n, byte[0]), (1, b'S'));

    let mut pfd = libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    assert_eq!(unsafe { libc::poll(&mut pfd, 1, 10_000) }, 1, "no notification within 10s");
    // SAFETY: seccomp_notif is plain data; the kernel wants it zeroed.
    let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: RECV fills `req`, which is the size the ioctl number encodes.
    let rc = unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_RECV, &mut req) };
    assert_eq!(rc, 0, "NOTIF_RECV: {}", std::io::Error::last_os_error());
    assert_eq!(req.data.nr as libc::c_long, libc::SYS_mkdirat);
    assert_eq!(req.pid as i32, child.as_raw());
    let mut resp = libc::seccomp_notif_resp { id: req.id, val: 42, error: 0, flags: 0 };
    // SAFETY: SEND reads `resp`, which is the size the ioctl number encodes.
    let rc = unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND, &mut resp) };
    assert_eq!(rc, 0, "NOTIF_SEND: {}", std::io::Error::last_os_error());
    assert_eq!(exit_code(child), 0, "child exit code");
}

fn same_file(a: &impl AsRawFd, b: &impl AsRawFd) -> bool {
    let stat = |fd: i32| {
        // SAFETY: fstat fills the zeroed buffer for a valid fd.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::fstat(fd, &mut st) }, 0);
        (st.st_dev, st.st_ino)
    };
    stat(a.as_raw_fd()) == stat(b.as_raw_fd())
}

/// Accept one connection on `listener`, return the whole payload and the attached fd.
fn agent_receive(listener: UnixListener) -> std::thread::JoinHandle<(Vec<u8>, Option<OwnedFd>)> {
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        let mut buf = vec![0u8; 1 << 16];
        let (n, fd) = recv_fd(conn.as_fd(), &mut buf).expect("recv_fd");
        buf.truncate(n);
        conn.read_to_end(&mut buf).expect("read rest");
        (buf, fd)
    })
}

#[test]
fn send_to_listener_delivers_process_state_and_fd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("agent.sock");
    let agent = agent_receive(UnixListener::bind(&sock).expect("bind"));
    let notify = std::fs::File::open("/proc/self/exe").expect("some fd");
    let state = json!({"ociVersion": "1.2.0", "id": "c1", "status": "creating", "pid": 4242, "bundle": "/b"});
    let payload = container_process_state(4242, "MKNOD=/dev/null", state);
    send_to_listener(&sock, "MKNOD=/dev/null", notify.as_fd(), &payload).expect("send_to_listener");

    let (bytes, fd) = agent.join().expect("agent thread");
    let doc: Value = serde_json::from_slice(&bytes).expect("payload is JSON");
    assert_eq!(doc["fds"], json!(["seccompFd"]));
    assert_eq!(doc["pid"], 4242);
    assert_eq!(doc["metadata"], "MKNOD=/dev/null");
    assert_eq!(doc["ociVersion"], "1.2.0");
    assert_eq!(doc["state"]["id"], "c1");
    assert!(same_file(&fd.expect("fd attached"), &notify));
}

#[test]
fn send_to_listener_wraps_a_bare_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("agent.sock");
    let agent = agent_receive(UnixListener::bind(&sock).expect("bind"));
    let notify = std::fs::File::open("/proc/self/exe").expect("some fd");
    let state = br#"{"ociVersion":"1.2.0","id":"c2","status":"creating","pid":7,"bundle":"/b"}"#;
    send_to_listener(&sock, "meta", notify.as_fd(), state).expect("send_to_listener");
    let (bytes, fd) = agent.join().expect("agent thread");
    let doc: Value = serde_json::from_slice(&bytes).expect("payload is JSON");
    assert_eq!((doc["pid"].clone(), doc["metadata"].clone()), (json!(7), json!("meta")));
    assert_eq!(doc["state"]["id"], "c2");
    assert!(fd.is_some());
}

#[test]
fn unknown_syscall_names_are_ignored() {
    let with = prepare(&profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["mkdirat","no_such_syscall_berth"],"action":"SCMP_ACT_ERRNO"}]}"#,
    ))
    .expect("unknown name must not fail");
    let without = prepare(&profile(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdirat"],"action":"SCMP_ACT_ERRNO"}]}"#))
        .expect("prepare");
    assert_eq!(with.bpf_bytes(), without.bpf_bytes());
}

#[test]
fn rule_with_the_default_action_is_skipped() {
    let skipped = prepare(&profile(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
            {"names":["read"],"action":"SCMP_ACT_ALLOW"},
            {"names":["mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#,
    ))
    .expect("prepare");
    let plain = prepare(&profile(r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}"#))
        .expect("prepare");
    assert_eq!(skipped.bpf_bytes(), plain.bpf_bytes());
}

fn prepare_err(json: &str) -> String {
    prepare(&profile(json)).expect_err("must fail").to_string()
}

#[test]
fn invalid_action_and_operator_are_clear_errors() {
    let err = serde_json::from_str::<LinuxSeccomp>(r#"{"defaultAction":"SCMP_ACT_BOGUS"}"#).expect_err("unknown action").to_string();
    assert!(err.contains("SCMP_ACT_BOGUS"), "{err}");
    let err = serde_json::from_str::<LinuxSeccomp>(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO",
            "args":[{"index":0,"value":1,"op":"SCMP_CMP_SOMETIMES"}]}]}"#,
    )
    .expect_err("unknown operator")
    .to_string();
    assert!(err.contains("SCMP_CMP_SOMETIMES"), "{err}");

    let err = prepare_err(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO",
            "args":[{"index":6,"value":1,"op":"SCMP_CMP_EQ"}]}]}"#,
    );
    assert!(err.contains("seccomp") && err.contains("argument index 6"), "{err}");
    let err = prepare_err(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":[""],"action":"SCMP_ACT_ERRNO"}]}"#);
    assert!(err.contains("empty string"), "{err}");
    let err =
        prepare_err(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","errnoRet":70000}]}"#);
    assert!(err.contains("errnoRet 70000"), "{err}");
}

#[test]
fn notify_rules_are_checked() {
    let err = prepare_err(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdirat"],"action":"SCMP_ACT_NOTIFY"}]}"#);
    assert!(err.contains("requires listenerPath"), "{err}");
    let err = prepare_err(r#"{"defaultAction":"SCMP_ACT_NOTIFY","listenerPath":"/a"}"#);
    assert!(err.contains("defaultAction"), "{err}");
    let err = prepare_err(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/a","syscalls":[{"names":["write"],"action":"SCMP_ACT_NOTIFY"}]}"#,
    );
    assert!(err.contains("\"write\""), "{err}");
    let err = prepare_err(r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}"#);
    assert!(err.contains("requires an SCMP_ACT_NOTIFY rule"), "{err}");

    let filter = prepare(&profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/a","flags":["SECCOMP_FILTER_FLAG_TSYNC","SECCOMP_FILTER_FLAG_LOG"],
            "syscalls":[{"names":["mkdirat"],"action":"SCMP_ACT_NOTIFY"}]}"#,
    ))
    .expect("TSYNC with notify");
    let want = libc::SECCOMP_FILTER_FLAG_TSYNC
        | libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH
        | libc::SECCOMP_FILTER_FLAG_LOG
        | libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
    assert_eq!(filter.flags(), want);
}

#[test]
fn cache_hit_is_identical_and_corrupt_entries_are_rewritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("seccomp-cache");
    let spec = bench_profile();
    let fresh = prepare(&spec).expect("prepare");
    let first = prepare_cached(&spec, &cache).expect("miss");
    let second = prepare_cached(&spec, &cache).expect("hit");
    assert_eq!(first, fresh);
    assert_eq!(second, fresh);

    let entries: Vec<_> = std::fs::read_dir(&cache).expect("cache dir").map(|e| e.expect("entry").path()).collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    let good = std::fs::read(entry).expect("entry");
    for damage in [good[..5].to_vec(), good[..good.len() - 3].to_vec(), {
        let mut flipped = good.clone();
        flipped[40] ^= 0x80;
        flipped
    }] {
        std::fs::write(entry, &damage).expect("damage the entry");
        assert_eq!(prepare_cached(&spec, &cache).expect("recompile"), fresh);
        assert_eq!(std::fs::read(entry).expect("rewritten"), good);
    }
    // A different profile gets a different entry.
    let other = profile(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdirat"],"action":"SCMP_ACT_ERRNO"}]}"#);
    prepare_cached(&other, &cache).expect("other profile");
    assert_eq!(std::fs::read_dir(&cache).expect("cache dir").count(), 2);
}

#[test]
fn cache_key_ignores_key_order_and_whitespace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = profile(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdirat"],"action":"SCMP_ACT_ERRNO"}]}"#);
    let b = profile(r#"{ "syscalls": [ { "action": "SCMP_ACT_ERRNO", "names": [ "mkdirat" ] } ], "defaultAction": "SCMP_ACT_ALLOW" }"#);
    prepare_cached(&a, dir.path()).expect("a");
    prepare_cached(&b, dir.path()).expect("b");
    assert_eq!(std::fs::read_dir(dir.path()).expect("cache dir").count(), 1);
}

#[test]
fn cached_path_still_validates_the_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = prepare_cached(
        &profile(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdirat"],"action":"SCMP_ACT_NOTIFY"}]}"#),
        dir.path(),
    )
    .expect_err("notify without listenerPath")
    .to_string();
    assert!(err.contains("requires listenerPath"), "{err}");
}

/// Prints the time to compile the docker-default profile with libseccomp vs a cache hit
/// (`cargo test -p berth-runtime --lib seccomp::tests::timing -- --nocapture`).
#[test]
fn timing_compile_vs_cached_load() {
    const ROUNDS: u32 = 50;
    let spec = bench_profile();
    let dir = tempfile::tempdir().expect("tempdir");
    prepare_cached(&spec, dir.path()).expect("fill the cache");

    let started = Instant::now();
    let mut insns = 0;
    for _ in 0..ROUNDS {
        insns = prepare(&spec).expect("prepare").instructions();
    }
    let compile = started.elapsed() / ROUNDS;
    let started = Instant::now();
    for _ in 0..ROUNDS {
        prepare_cached(&spec, dir.path()).expect("cache hit");
    }
    let cached = started.elapsed() / ROUNDS;
    println!(
        "seccomp docker-default ({insns} BPF instructions): libseccomp compile {:?}, cache hit {:?} ({:.1}x)",
        compile,
        cached,
        compile.as_secs_f64() / cached.as_secs_f64().max(1e-9)
    );
    assert!(insns > 0 && insns <= 4096);
    assert!(cached < compile + Duration::from_millis(5));
}
