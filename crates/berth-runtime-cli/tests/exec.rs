//! `exec` through the built binary: the process joins the container's namespaces and
//! cgroup, gets the requested attributes, and its exit code comes back.

mod common;
use common::*;

fn running(s: &Scratch, name: &str) -> (String, i64) {
    let b = s.bundle(name, &["sleep", "300"]);
    let id = s.id(name);
    ok(&s.rt(&["run", "--detach", "--bundle", b.p(), &id]));
    let pid = s.state(&id)["pid"].as_i64().unwrap();
    (id, pid)
}

#[test]
fn exec_sees_the_same_namespaces_and_cgroup_as_init() {
    let s = Scratch::new("exec-ns");
    let (id, pid) = running(&s, "c");
    let out = ok(&s.rt(&[
        "exec",
        &id,
        "sh",
        "-c",
        "for n in mnt pid net ipc uts cgroup; do readlink /proc/self/ns/$n; done; cat /proc/self/cgroup | grep memory",
    ]));
    let lines: Vec<&str> = out.lines().collect();
    for (i, n) in ["mnt", "pid", "net", "ipc", "uts", "cgroup"].iter().enumerate() {
        let init = std::fs::read_link(format!("/proc/{pid}/ns/{n}")).unwrap();
        assert_eq!(lines[i], init.to_str().unwrap(), "{n} namespace differs from init's");
    }
    // In the container's cgroup namespace its own cgroup is the root.
    assert!(lines[6].ends_with(":/"), "{out}");
    let host_cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(host_cg.contains(&format!("/berth/{id}")), "{host_cg}");
}

#[test]
fn exec_returns_the_process_exit_code() {
    let s = Scratch::new("exec-code");
    let (id, _) = running(&s, "c");
    let out = s.rt(&["exec", &id, "sh", "-c", "exit 42"]);
    assert_eq!(out.status.code(), Some(42));
    let out = s.rt(&["exec", &id, "no-such-command"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("executable file not found"), "{}", stderr(&out));
}

#[test]
fn exec_applies_env_cwd_user_and_caps_flags() {
    let s = Scratch::new("exec-flags");
    let (id, _) = running(&s, "c");
    let out = ok(&s.rt(&[
        "exec",
        "--env",
        "FOO=bar",
        "--cwd",
        "/tmp",
        "--user",
        "1000:1000",
        "--additional-gids",
        "65534",
        &id,
        "sh",
        "-c",
        "echo $FOO; pwd; id -u; id -g; id -G; grep CapEff /proc/self/status",
    ]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..4], &["bar", "/tmp", "1000", "1000"], "{out}");
    assert!(lines[4].split_whitespace().any(|g| g == "65534"), "{out}");
    assert!(lines[5].ends_with("0000000000000000"), "a non-root user keeps no effective caps: {out}");
    let out = ok(&s.rt(&["exec", "--cap", "CAP_SYS_ADMIN", &id, "grep", "CapBnd", "/proc/self/status"]));
    let mask = u64::from_str_radix(out.split_whitespace().last().unwrap(), 16).unwrap();
    assert!(mask & (1 << 21) != 0, "CAP_SYS_ADMIN not added: {out}");
}

#[test]
fn exec_detach_writes_the_pid_file_and_the_process_runs_in_the_container() {
    let s = Scratch::new("exec-detach");
    let (id, _) = running(&s, "c");
    let pid_file = s.dir.join("exec.pid");
    ok(&s.rt(&["exec", "--detach", "--pid-file", pid_file.to_str().unwrap(), &id, "sleep", "200"]));
    let pid: i64 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "sleep");
    // kill --all reaches it through the cgroup; delete --force leaves nothing.
    ok(&s.rt(&["delete", "--force", &id]));
    for _ in 0..100 {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let st = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(st.is_empty() || st.contains(") Z"), "exec'd process survived delete --force: {st}");
}

#[test]
fn exec_with_a_process_file_runs_exactly_that_process() {
    let s = Scratch::new("exec-procfile");
    let (id, _) = running(&s, "c");
    let p = s.dir.join("process.json");
    std::fs::write(&p, r#"{"args":["sh","-c","echo $ONLY; pwd"],"env":["ONLY=this","PATH=/bin"],"cwd":"/etc","user":{"uid":0,"gid":0}}"#)
        .unwrap();
    let out = ok(&s.rt(&["exec", "--process", p.to_str().unwrap(), &id]));
    assert_eq!(out, "this\n/etc\n");
}

#[test]
fn exec_into_a_stopped_or_unknown_container_is_a_clear_error() {
    let s = Scratch::new("exec-bad");
    let b = s.bundle("b", &["true"]);
    let id = s.id("stopped");
    ok(&s.rt(&["run", "--keep", "--bundle", b.p(), &id]));
    let out = s.rt(&["exec", &id, "true"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("stopped"), "{}", stderr(&out));
    let out = s.rt(&["exec", "no-such-container-berth", "true"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
}

#[test]
fn exec_with_a_tty_sends_a_pty_to_the_console_socket() {
    use std::io::Read;
    use std::os::unix::net::UnixListener;
    let s = Scratch::new("exec-tty");
    let (id, _) = running(&s, "c");
    let sock = s.dir.join("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let t = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let (master, name) = berth_runtime::console::recv_master_named(&conn).unwrap();
        let mut f = std::fs::File::from(master);
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        // Read until the slave side closes (EIO). Closing the master earlier would hang up
        // the process (SIGHUP) before it exits.
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        (name, String::from_utf8_lossy(&out).into_owned())
    });
    let out =
        s.rt(&["exec", "--tty", "--console-socket", sock.to_str().unwrap(), &id, "sh", "-c", "tty; test -t 0 && echo isatty; echo END"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (name, text) = t.join().unwrap();
    assert!(text.contains(&name), "tty printed {text:?}, pty sent was {name}");
    assert!(text.contains("isatty"), "{text}");
}

#[test]
fn exec_cgroup_puts_the_process_in_an_existing_sub_cgroup() {
    let s = Scratch::new("exec-subcg");
    let (id, _) = running(&s, "c");
    let sub = format!("/sys/fs/cgroup/memory/berth/{id}/sub");
    std::fs::create_dir(&sub).unwrap();
    let out = ok(&s.rt(&["exec", "--cgroup", "memory:sub", &id, "sh", "-c", "grep memory /proc/self/cgroup"]));
    assert!(out.trim().ends_with(":/sub"), "{out}");
    let out = s.rt(&["exec", "--cgroup", "memory:missing", &id, "true"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    let out = s.rt(&["exec", "--cgroup", "../escape", &id, "true"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("relative"), "{}", stderr(&out));
}
