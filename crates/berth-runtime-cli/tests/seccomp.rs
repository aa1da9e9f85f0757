//! seccomp through the built binary: errno rules, argument conditions, notify listeners,
//! and profiles the runtime must refuse or tolerate.

mod common;
use common::*;
use serde_json::json;

#[test]
fn a_seccomp_rule_returns_the_configured_errno() {
    let s = Scratch::new("sc-errno");
    // mkdir is denied with ENOTSUP (95); everything else is allowed.
    let mut b = s.bundle("b", &["sh", "-c", "mkdir /tmp/x 2>&1; echo rc=$?; echo still-running"]);
    b.edit(|c| {
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 95}]
        });
    });
    let out = s.run(&b, "c");
    let text = ok(&out);
    assert!(text.contains("Not supported") || text.contains("not supported"), "{text}");
    assert!(text.contains("rc=1"), "{text}");
    assert!(text.contains("still-running"), "{text}");
}

#[test]
fn argument_conditions_select_which_calls_are_denied() {
    let s = Scratch::new("sc-args");
    // personality(0xffffffff) (query) is allowed; any other value is denied with EPERM.
    let mut b = s.bundle("b", &["sh", "-c", "setarch linux32 true 2>/dev/null; echo setarch=$?; uname -m"]);
    b.edit(|c| {
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                          "args": [{"index": 0, "value": 4294967295u64, "op": "SCMP_CMP_NE"}]}]
        });
    });
    let text = ok(&s.run(&b, "c"));
    assert!(text.contains("setarch=1"), "setarch must be denied: {text}");
    assert!(text.contains("x86_64"), "{text}");
}

#[test]
fn unknown_syscall_names_are_ignored_like_runc() {
    let s = Scratch::new("sc-unknown");
    let mut b = s.bundle("b", &["echo", "fine"]);
    b.edit(|c| {
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["no_such_syscall_berth"], "action": "SCMP_ACT_ERRNO"}]
        });
    });
    assert_eq!(ok(&s.run(&b, "c")), "fine\n");
}

#[test]
fn an_invalid_seccomp_action_is_a_clear_error_and_leaves_nothing() {
    let s = Scratch::new("sc-bad");
    let mut b = s.bundle("b", &["true"]);
    b.edit(|c| {
        c["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_BANANA"});
    });
    let id = s.id("bad");
    let out = s.rt(&["create", "--bundle", b.p(), &id]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("SCMP_ACT_BANANA"), "{}", stderr(&out));
    assert!(!s.root.join(&id).exists());
}

#[test]
fn a_notify_listener_receives_the_fd_and_the_container_state() {
    use std::os::unix::net::UnixListener;
    let s = Scratch::new("sc-notify");
    let sock = s.dir.join("listener.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let mut b = s.bundle("b", &["sh", "-c", "echo started"]);
    b.edit(|c| {
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": sock.to_str().unwrap(),
            "listenerMetadata": "berth-test-metadata",
            "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_NOTIFY"}]
        });
    });
    let id = s.id("notify");
    let accept = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 65536];
        use std::os::fd::AsFd;
        let (n, fd) = berth_runtime::seccomp::recv_fd(conn.as_fd(), &mut buf).unwrap();
        (String::from_utf8_lossy(&buf[..n]).into_owned(), fd.is_some())
    });
    ok(&s.rt(&["create", "--bundle", b.p(), &id]));
    let (payload, got_fd) = accept.join().unwrap();
    assert!(got_fd, "no fd attached");
    let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(v["fds"], json!(["seccompFd"]));
    assert_eq!(v["metadata"], "berth-test-metadata");
    assert_eq!(v["state"]["id"], id.as_str());
    assert_eq!(v["pid"], s.state(&id)["pid"]);
}
