//! What the container's process is given, seen from inside: capabilities, ids, umask,
//! rlimits, no_new_privs, oom score, cwd, env, args, file descriptors, exit status.

mod common;
use common::*;

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

/// `/proc/self/status` of the container's process as `field → value`.
fn status_of(s: &Scratch, b: &mut BundleDir, name: &str) -> BTreeMap<String, String> {
    b.edit(|c| c["process"]["args"] = json!(["cat", "/proc/self/status"]));
    let out = ok(&s.run(b, name));
    out.lines().filter_map(|l| l.split_once(':')).map(|(k, v)| (k.to_string(), v.trim().to_string())).collect()
}

/// A capability mask from bit numbers, in /proc's 16-hex-digit format.
fn mask(bits: &[u32]) -> String {
    format!("{:016x}", bits.iter().fold(0u64, |m, b| m | 1 << b))
}

const CHOWN: u32 = 0;
const KILL: u32 = 5;
const SETUID: u32 = 7;
const NET_RAW: u32 = 13;

/// Poll `cond` until it holds, for at most `limit`.
fn wait_until(what: &str, limit: Duration, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn capabilities_match_the_configured_sets_for_a_non_root_user() {
    let s = Scratch::new("caps-user");
    let mut b = s.bundle("b", &[]);
    // For a non-root user without file capabilities, exec keeps only the ambient set in the
    // permitted and effective sets: configure sets that are consistent across exec.
    b.edit(|c| {
        c["process"]["user"] = json!({"uid": 1000, "gid": 1000});
        c["process"]["capabilities"] = json!({
            "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_SETUID", "CAP_NET_RAW"],
            "inheritable": ["CAP_KILL", "CAP_NET_RAW"],
            "permitted": ["CAP_KILL", "CAP_NET_RAW"],
            "effective": ["CAP_KILL", "CAP_NET_RAW"],
            "ambient": ["CAP_KILL", "CAP_NET_RAW"],
        });
    });
    let st = status_of(&s, &mut b, "c");
    assert_eq!(st["CapBnd"], mask(&[CHOWN, KILL, SETUID, NET_RAW]));
    assert_eq!(st["CapInh"], mask(&[KILL, NET_RAW]));
    assert_eq!(st["CapPrm"], mask(&[KILL, NET_RAW]));
    assert_eq!(st["CapEff"], mask(&[KILL, NET_RAW]));
    assert_eq!(st["CapAmb"], mask(&[KILL, NET_RAW]));
}

#[test]
fn capabilities_of_root_are_limited_to_the_bounding_set() {
    let s = Scratch::new("caps-root");
    let mut b = s.bundle("b", &[]);
    b.edit(|c| {
        c["process"]["capabilities"] = json!({
            "bounding": ["CAP_CHOWN", "CAP_KILL"],
            "permitted": ["CAP_CHOWN", "CAP_KILL"],
            "effective": ["CAP_CHOWN", "CAP_KILL"],
        });
    });
    let st = status_of(&s, &mut b, "c");
    assert_eq!(st["CapBnd"], mask(&[CHOWN, KILL]));
    assert_eq!(st["CapPrm"], mask(&[CHOWN, KILL]));
    assert_eq!(st["CapEff"], mask(&[CHOWN, KILL]));
    assert_eq!(st["CapInh"], mask(&[]));
    assert_eq!(st["CapAmb"], mask(&[]));
}

#[test]
fn unknown_capability_names_are_ignored() {
    let s = Scratch::new("caps-unknown");
    let mut b = s.bundle("b", &[]);
    b.edit(|c| {
        c["process"]["user"] = json!({"uid": 1000, "gid": 1000});
        let set = json!(["CAP_KILL", "CAP_FROM_THE_FUTURE"]);
        c["process"]["capabilities"] = json!({
            "bounding": set, "inheritable": set, "permitted": set, "effective": set, "ambient": set,
        });
    });
    let st = status_of(&s, &mut b, "c");
    for field in ["CapBnd", "CapInh", "CapPrm", "CapEff", "CapAmb"] {
        assert_eq!(st[field], mask(&[KILL]), "{field}");
    }
}

#[test]
fn uid_gid_and_additional_gids_are_the_configured_ones() {
    let s = Scratch::new("ids");
    let mut b = s.bundle("b", &[]);
    b.edit(|c| c["process"]["user"] = json!({"uid": 1000, "gid": 1001, "additionalGids": [5, 65534]}));
    let st = status_of(&s, &mut b, "c");
    assert_eq!(st["Uid"].split_whitespace().collect::<Vec<_>>(), ["1000"; 4]);
    assert_eq!(st["Gid"].split_whitespace().collect::<Vec<_>>(), ["1001"; 4]);
    assert_eq!(st["Groups"].split_whitespace().collect::<Vec<_>>(), ["5", "65534"]);

    b.edit(|c| c["process"]["args"] = json!(["id"]));
    let id = ok(&s.run(&b, "id"));
    assert!(id.starts_with("uid=1000(user) gid=1001"), "{id}");
}

#[test]
fn a_root_user_without_additional_gids_has_no_supplementary_groups() {
    let s = Scratch::new("ids-root");
    let mut b = s.bundle("b", &[]);
    let st = status_of(&s, &mut b, "c");
    assert_eq!(st["Uid"].split_whitespace().collect::<Vec<_>>(), ["0"; 4]);
    assert_eq!(st["Groups"], "", "the host's groups leaked in");
}

#[test]
fn umask_is_the_configured_one_and_0022_by_default() {
    let s = Scratch::new("umask");
    let mut b = s.bundle("b", &["sh", "-c", "umask"]);
    assert_eq!(ok(&s.run(&b, "default")).trim(), "0022");
    b.edit(|c| c["process"]["user"]["umask"] = json!(0o027));
    assert_eq!(ok(&s.run(&b, "set")).trim(), "0027");
}

#[test]
fn rlimits_set_the_soft_and_hard_limits() {
    let s = Scratch::new("rlimits");
    let mut b = s.bundle("b", &["sh", "-c", "ulimit -n; grep -e 'open files' -e 'processes' /proc/self/limits"]);
    b.edit(|c| {
        c["process"]["rlimits"] = json!([
            {"type": "RLIMIT_NOFILE", "soft": 1234, "hard": 5678},
            {"type": "RLIMIT_NPROC", "soft": 300, "hard": 400},
        ])
    });
    let out = ok(&s.run(&b, "c"));
    let lines: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["1234"], "{out}");
    let limit = |name: &str| lines.iter().find(|l| l.join(" ").starts_with(name)).unwrap_or_else(|| panic!("{name} in {out}")).clone();
    assert_eq!(limit("Max open files")[3..5], ["1234", "5678"]);
    assert_eq!(limit("Max processes")[2..4], ["300", "400"]);
}

#[test]
fn no_new_privileges_is_set_when_true_and_not_when_false() {
    let s = Scratch::new("nnp");
    let mut b = s.bundle("b", &[]);
    b.edit(|c| c["process"]["noNewPrivileges"] = json!(true));
    assert_eq!(status_of(&s, &mut b, "on")["NoNewPrivs"], "1");
    b.edit(|c| c["process"]["noNewPrivileges"] = json!(false));
    assert_eq!(status_of(&s, &mut b, "off")["NoNewPrivs"], "0");
}

#[test]
fn oom_score_adj_is_the_configured_one() {
    let s = Scratch::new("oom");
    let mut b = s.bundle("b", &["cat", "/proc/self/oom_score_adj"]);
    b.edit(|c| c["process"]["oomScoreAdj"] = json!(123));
    assert_eq!(ok(&s.run(&b, "c")).trim(), "123");
    // Raising needs no capability; lowering below the host's needs CAP_SYS_RESOURCE, which
    // a test host may lack.
    b.edit(|c| c["process"]["oomScoreAdj"] = json!(1000));
    assert_eq!(ok(&s.run(&b, "max")).trim(), "1000");
}

#[test]
fn cwd_is_the_configured_directory() {
    let s = Scratch::new("cwd");
    let mut b = s.bundle("b", &["pwd"]);
    b.edit(|c| c["process"]["cwd"] = json!("/home/user"));
    assert_eq!(ok(&s.run(&b, "c")), "/home/user\n");
}

#[test]
fn a_missing_cwd_is_created() {
    let s = Scratch::new("cwd-missing");
    let mut b = s.bundle("b", &["pwd"]);
    b.edit(|c| c["process"]["cwd"] = json!("/work/dir"));
    assert_eq!(ok(&s.run(&b, "c")), "/work/dir\n");
    assert!(b.rootfs().join("work/dir").is_dir());
}

#[test]
fn env_is_exactly_the_configured_one() {
    let s = Scratch::new("env");
    let mut b = s.bundle("b", &["env"]);
    let env = ["PATH=/bin", "HOME=/somewhere", "WITH_SPACES=a b  c", "EMPTY=", "EQ=x=y"];
    b.edit(|c| c["process"]["env"] = json!(env));
    let out = ok(&s.run(&b, "c"));
    let mut seen: Vec<&str> = out.lines().collect();
    seen.sort();
    let mut want = env.to_vec();
    want.sort();
    assert_eq!(seen, want);
}

#[test]
fn home_is_set_from_passwd_when_the_env_has_none() {
    let s = Scratch::new("env-home");
    let mut b = s.bundle("b", &["env"]);
    b.edit(|c| {
        c["process"]["env"] = json!(["PATH=/bin"]);
        c["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    });
    let out = ok(&s.run(&b, "c"));
    let mut seen: Vec<&str> = out.lines().collect();
    seen.sort();
    assert_eq!(seen, ["HOME=/home/user", "PATH=/bin"]);
}

#[test]
fn args_are_passed_as_is() {
    let s = Scratch::new("args");
    let args = ["printf", "[%s]", "a b", "'single'", "\"double\"", "", "$HOME", "*", "back\\slash", "new\nline"];
    let b = s.bundle("b", &args);
    let out = ok(&s.run(&b, "c"));
    assert_eq!(out, "[a b]['single'][\"double\"][][$HOME][*][back\\slash][new\nline]");
}

/// Run `script` under the host's sh with `$RT` set to the binary and its `--root`, stdio to
/// files as `Scratch::rt` does.
fn host_sh(s: &Scratch, script: &str) -> Output {
    let (out_p, err_p) = (s.dir.join("sh.out"), s.dir.join("sh.err"));
    let status = Command::new("sh")
        .arg("-c")
        .arg(script)
        .env("RT", format!("{BIN} --root {}", s.root.display()))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_p).unwrap())
        .stderr(std::fs::File::create(&err_p).unwrap())
        .status()
        .unwrap();
    Output { status, stdout: std::fs::read(&out_p).unwrap(), stderr: std::fs::read(&err_p).unwrap() }
}

/// The fds listed by `ls -l /proc/self/fd` inside, without ls's own directory fd.
fn fds_in(listing: &str) -> Vec<u32> {
    listing
        .lines()
        .filter_map(|l| l.split_once(" -> "))
        .filter(|(_, target)| !(target.starts_with("/proc/") && target.ends_with("/fd")))
        .map(|(a, _)| a.split_whitespace().last().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn preserve_fds_passes_fd_3_and_closes_every_other_fd() {
    let s = Scratch::new("preserve");
    let secret = s.dir.join("passed-in");
    std::fs::write(&secret, "through fd 3\n").unwrap();
    let b = s.bundle("b", &["sh", "-c", "cat <&3; ls -l /proc/self/fd"]);
    let id = s.id("c");
    let out = host_sh(&s, &format!("exec 3<{f} 4<{f} 5<{f}; $RT run --preserve-fds 1 --bundle {b} {id}", f = secret.display(), b = b.p()));
    let text = ok(&out);
    let (first, listing) = text.split_once('\n').unwrap();
    assert_eq!(first, "through fd 3");
    assert_eq!(fds_in(listing), [0, 1, 2, 3], "{listing}");
}

#[test]
fn without_preserve_fds_only_stdio_is_open() {
    let s = Scratch::new("no-preserve");
    let f = s.dir.join("leaky");
    std::fs::write(&f, "x").unwrap();
    let b = s.bundle("b", &["ls", "-l", "/proc/self/fd"]);
    let id = s.id("c");
    let out = host_sh(&s, &format!("exec 3<{f} 4<{f}; $RT run --bundle {b} {id}", f = f.display(), b = b.p()));
    let listing = ok(&out);
    assert_eq!(fds_in(&listing), [0, 1, 2], "{listing}");
}

#[test]
fn run_returns_the_exit_code_of_the_process() {
    let s = Scratch::new("exit-code");
    for code in [0, 1, 42, 255] {
        let b = s.bundle(&format!("b{code}"), &["sh", "-c", &format!("exit {code}")]);
        assert_eq!(s.run(&b, "c").status.code(), Some(code));
    }
}

#[test]
fn run_of_a_container_killed_by_a_signal_returns_128_plus_the_signal() {
    let s = Scratch::new("exit-signal");
    let b = s.bundle("b", &["sleep", "300"]);
    let id = s.id("c");
    let mut run = s.rt_cmd(&["run", "--bundle", b.p(), &id]);
    run.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = run.spawn().unwrap();
    wait_until("container running", Duration::from_secs(10), || {
        let o = s.rt(&["state", &id]);
        o.status.success() && serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["status"] == "running"
    });
    ok(&s.rt(&["kill", &id, "KILL"]));
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("run did not return after its container was killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(128 + 9));
}
