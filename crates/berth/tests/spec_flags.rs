//! The spec-shaping flags of `berth run`, end to end through the built binary: what the
//! container sees in /proc, its environment and its mounts.

mod container_env;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use container_env::{ensure_init_built, stderr, stdout, Env};

#[test]
fn a_tmpfs_is_a_tmpfs_and_keeps_a_read_only_root_writable_there() {
    let e = Env::new("tmpfs");
    let out = e.berth(&[
        "run",
        "--rm",
        "--read-only",
        "--tmpfs",
        "/tmp:size=2m",
        "localhost/demo",
        "sh",
        "-c",
        "grep ' /tmp ' /proc/mounts; touch /tmp/ok && echo tmp-writable; touch /srv/nope 2>/dev/null || echo root-read-only",
    ]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    let line = text.lines().next().unwrap_or_default();
    assert!(line.starts_with("tmpfs /tmp tmpfs ") && line.contains("size=2048k") && line.contains("noexec"), "{text}");
    assert!(text.contains("tmp-writable\n") && text.contains("root-read-only\n"), "{text}");
    assert_eq!(e.mounts(), 0);
}

#[test]
fn env_precedence_is_image_then_env_file_then_e_flags() {
    let e = Env::new("env");
    e.load_image("localhost/envimg:latest", serde_json::json!({"Env": ["A=image", "B=image", "C=image", "PATH=/bin"]}));
    let file = e.dir.join("vars.env");
    std::fs::write(&file, "# a comment\n\nB=file\nC=file\nBERTH_IT_FROM_HOST\nBERTH_IT_UNSET\n").unwrap();
    let out = e
        .cmd(&[
            "run",
            "--rm",
            "--env-file",
            file.to_str().unwrap(),
            "-e",
            "C=flag",
            "localhost/envimg",
            "sh",
            "-c",
            "echo $A $B $C $BERTH_IT_FROM_HOST ${BERTH_IT_UNSET-unset}",
        ])
        .env("BERTH_IT_FROM_HOST", "host")
        .env_remove("BERTH_IT_UNSET")
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "image file flag host unset\n", "{}", stderr(&out));
}

fn cap_eff(e: &Env, args: &[&str]) -> String {
    let mut a = vec!["run", "--rm"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["localhost/demo", "grep", "CapEff", "/proc/self/status"]);
    let out = e.berth(&a);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).split_whitespace().nth(1).unwrap_or_default().to_string()
}

#[test]
fn cap_drop_all_leaves_no_capabilities_and_cap_add_brings_one_back() {
    let e = Env::new("caps");
    assert_eq!(cap_eff(&e, &["--cap-drop", "ALL"]), "0000000000000000");
    // CAP_SYS_ADMIN is bit 21.
    assert_eq!(cap_eff(&e, &["--cap-drop", "all", "--cap-add", "sys_admin"]), "0000000000200000");
    let default = u64::from_str_radix(&cap_eff(&e, &[]), 16).unwrap();
    let added = u64::from_str_radix(&cap_eff(&e, &["--cap-add", "CAP_SYS_ADMIN"]), 16).unwrap();
    assert_eq!(default & (1 << 21), 0);
    assert_eq!(added, default | (1 << 21));
}

#[test]
fn ulimit_nofile_sets_the_soft_and_hard_limits() {
    let e = Env::new("ulimit");
    let out = e.berth(&["run", "--rm", "--ulimit", "nofile=100:200", "localhost/demo", "sh", "-c", "ulimit -n; ulimit -Hn"]);
    assert_eq!(stdout(&out), "100\n200\n", "{}", stderr(&out));
}

#[test]
fn sysctl_sets_a_namespaced_kernel_parameter_and_shm_size_sizes_dev_shm() {
    let e = Env::new("sysctl");
    let out = e.berth(&[
        "run",
        "--rm",
        "--sysctl",
        "kernel.msgmax=12345",
        "--shm-size",
        "3m",
        "localhost/demo",
        "sh",
        "-c",
        "cat /proc/sys/kernel/msgmax; grep ' /dev/shm ' /proc/mounts",
    ]);
    let text = stdout(&out);
    assert!(text.starts_with("12345\n") && text.contains("size=3072k"), "{text}{}", stderr(&out));
    // The host's value is untouched.
    assert_ne!(std::fs::read_to_string("/proc/sys/kernel/msgmax").unwrap().trim(), "12345");
}

#[test]
fn cpu_and_memory_flags_reach_the_containers_cgroup() {
    let e = Env::new("cgroup");
    let script = "c=/sys/fs/cgroup; if [ -d $c/cpuset ]; then \
        echo v1 $(cat $c/cpuset/cpuset.cpus $c/cpu/cpu.shares $c/memory/memory.limit_in_bytes) $(cat $c/memory/memory.memsw.limit_in_bytes 2>/dev/null || echo none); \
        else echo v2 $(cat $c/cpuset.cpus $c/cpu.weight $c/memory.max) $(cat $c/memory.swap.max 2>/dev/null || echo none); fi";
    let out = e.berth(&[
        "run",
        "--rm",
        "--cpuset-cpus",
        "0",
        "--cpu-shares",
        "512",
        "--memory",
        "64m",
        "--memory-swap",
        "128m",
        "localhost/demo",
        "sh",
        "-c",
        script,
    ]);
    let text = stdout(&out);
    let f: Vec<&str> = text.split_whitespace().collect();
    assert!(out.status.success() && f.len() == 5, "{text}{}", stderr(&out));
    let mib = |n: u64| (n << 20).to_string();
    match f[0] {
        // Without swap accounting the memsw file is absent.
        "v1" => assert!(f[1..4] == ["0", "512", &mib(64)] && (f[4] == mib(128) || f[4] == "none"), "{text}"),
        // runc's conversions: shares 512 → weight 20; swap.max = memory-swap − memory.
        _ => assert!(f[1..4] == ["0", "20", &mib(64)] && (f[4] == mib(64) || f[4] == "none"), "{text}"),
    }
}

#[test]
fn a_device_appears_at_its_container_path_and_is_usable() {
    let e = Env::new("device");
    let out = e.berth(&[
        "run",
        "--rm",
        "--device",
        "/dev/null:/dev/mynull",
        "localhost/demo",
        "sh",
        "-c",
        "echo gone > /dev/mynull && stat -c '%F %t:%T' /dev/mynull",
    ]);
    assert_eq!(stdout(&out), "character special file 1:3\n", "{}", stderr(&out));
}

/// The command execs `sleep`, which never reaps: the inner shell's two sleeps, orphaned at
/// once, are reparented to PID 1 and exit; a reporter in the background lists every
/// process's state after they have. As PID 1 itself (no --init) they stay zombies.
const ORPHANS: &str = "(sleep 0.6; cat /proc/1/cmdline | tr '\\0' ' '; echo; grep -h '^State:' /proc/[0-9]*/status) & sh -c 'sleep 0.1 & sleep 0.2 &'; exec sleep 1";

#[test]
fn init_is_pid_1_and_reaps_orphaned_zombies() {
    ensure_init_built();
    let e = Env::new("init-reap");
    let out = e.berth(&["run", "--rm", "--init", "localhost/demo", "sh", "-c", ORPHANS]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.starts_with("/dev/init -- sh -c"), "PID 1 is not berth-init: {text}");
    assert!(!text.contains("zombie"), "zombies left: {text}");
    // The same without --init shows what the init is for.
    let out = e.berth(&["run", "--rm", "localhost/demo", "sh", "-c", ORPHANS]);
    assert!(stdout(&out).contains("zombie"), "no zombies without --init: the test proves nothing: {}", stdout(&out));
    assert_eq!(e.mounts(), 0);
}

#[test]
fn init_forwards_sigterm_and_exits_with_the_commands_status() {
    ensure_init_built();
    let e = Env::new("init-signal");
    let mut child = e
        .cmd(&[
            "run",
            "--rm",
            "--init",
            "localhost/demo",
            "sh",
            "-c",
            "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.1; done",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A broken forwarder would leave the container running: kill it after a while.
    let (done, watchdog) = std::sync::mpsc::channel::<()>();
    let pid = child.id() as i32;
    std::thread::spawn(move || {
        if watchdog.recv_timeout(std::time::Duration::from_secs(30)).is_err() {
            // SAFETY: kill on the pid of the test's child, which has not been waited for.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    // SAFETY: kill on the pid of our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    assert_eq!(lines.next().map(|l| l.unwrap()).as_deref(), Some("got-term"));
    let status = child.wait().unwrap();
    let _ = done.send(());
    assert_eq!(status.code(), Some(7));
    assert_eq!(e.mounts(), 0);
}

#[test]
fn init_exits_128_plus_the_signal_that_killed_the_command() {
    ensure_init_built();
    let e = Env::new("init-killed");
    // As a non-root user on a read-only root: berth-init needs neither.
    let out = e.berth(&["run", "--rm", "--init", "-u", "app", "--read-only", "localhost/demo", "sh", "-c", "kill -KILL $$"]);
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
}

#[test]
fn init_without_berth_init_next_to_berth_is_refused_clearly() {
    let e = Env::new("init-missing");
    // A berth whose directory has no berth-init.
    let lonely = e.dir.join("lonely");
    std::fs::create_dir(&lonely).unwrap();
    let bin = lonely.join("berth");
    if std::fs::hard_link(container_env::BIN, &bin).is_err() {
        std::fs::copy(container_env::BIN, &bin).unwrap();
    }
    let out = std::process::Command::new(&bin)
        .arg("--root")
        .arg(e.dir.join("root"))
        .arg("--runroot")
        .arg(e.dir.join("run"))
        .args(["run", "--rm", "--init", "localhost/demo", "true"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&format!("--init: {} not found", lonely.join("berth-init").display())), "{err}");
    assert_eq!(stdout(&e.berth(&["ps", "-a", "-q"])), "");
}

#[test]
fn no_new_privileges_is_set_for_the_process() {
    let e = Env::new("nnp");
    let out = e.berth(&["run", "--rm", "--security-opt", "no-new-privileges", "localhost/demo", "grep", "NoNewPrivs", "/proc/self/status"]);
    assert_eq!(stdout(&out).split_whitespace().nth(1), Some("1"), "{}", stderr(&out));
    let out = e.berth(&["run", "--rm", "localhost/demo", "grep", "NoNewPrivs", "/proc/self/status"]);
    assert_eq!(stdout(&out).split_whitespace().nth(1), Some("0"), "{}", stderr(&out));
}

#[test]
fn labels_and_annotations_are_written_into_the_bundle() {
    let e = Env::new("labels");
    e.ok(&["run", "--name", "labelled", "-l", "team=infra", "--annotation", "io.berth.test=yes", "localhost/demo", "true"]);
    let dir = std::fs::read_dir(e.dir.join("root/containers")).unwrap().next().unwrap().unwrap().path();
    let spec: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("bundle/config.json")).unwrap()).unwrap();
    assert_eq!(spec["annotations"], serde_json::json!({"team": "infra", "io.berth.test": "yes"}));
}

#[test]
fn bad_flag_values_and_unknown_users_exit_125_with_one_clear_line() {
    let e = Env::new("errors");
    let cases: &[(&[&str], &str)] = &[
        (&["-u", "nobody"], "unable to find user nobody"),
        (&["--ulimit", "nofile=many"], "--ulimit"),
        (&["--cap-add", "CAP_MAKE_COFFEE"], "--cap-add"),
        (&["--sysctl", "kernel.panic=1"], "--sysctl"),
        (&["--device", "/dev/no-such-device"], "--device /dev/no-such-device"),
        (&["--mount", "type=bind,source=/nonexistent-berth-src,target=/x"], "bind source path does not exist"),
        (&["-v", "relative/path:/x"], "--volume"),
        (&["--tmpfs", "relative"], "--tmpfs"),
        (&["--memory-swap", "1g"], "--memory-swap needs --memory"),
        (&["--security-opt", "seccomp=/nonexistent.json"], "--security-opt seccomp=/nonexistent.json"),
        (&["--env-file", "/nonexistent.env"], "--env-file /nonexistent.env"),
        (&["--cpuset-cpus", "x"], "--cpuset-cpus"),
    ];
    for (flags, expect) in cases {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["localhost/demo", "true"]);
        let out = e.berth(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(125), "{flags:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{flags:?}: not one line: {err}");
        assert!(err.starts_with("Error: ") && err.contains(expect), "{flags:?}: {err}");
    }
    assert_eq!(stdout(&e.berth(&["ps", "-a", "-q"])), "", "a failed run left a container");
    assert_eq!(e.mounts(), 0);
}

#[test]
fn a_docker_format_seccomp_profile_applies_its_capability_conditional_rules() {
    let e = Env::new("seccomp");
    let arch = match std::env::consts::ARCH {
        "aarch64" => "SCMP_ARCH_AARCH64",
        _ => "SCMP_ARCH_X86_64",
    };
    // mkdir is refused only for containers that have CAP_SYS_ADMIN (a docker `includes` rule).
    let profile = serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "archMap": [{"architecture": arch, "subArchitectures": []}],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "includes": {"caps": ["CAP_SYS_ADMIN"]}}]
    });
    let file = e.dir.join("profile.json");
    std::fs::write(&file, profile.to_string()).unwrap();
    let opt = format!("seccomp={}", file.display());
    let script = "mkdir /tmp/d 2>&1 && echo made";
    let out = e.berth(&["run", "--rm", "--security-opt", &opt, "localhost/demo", "sh", "-c", script]);
    assert_eq!(stdout(&out), "made\n", "{}", stderr(&out));
    let out = e.berth(&["run", "--rm", "--security-opt", &opt, "--cap-add", "SYS_ADMIN", "localhost/demo", "sh", "-c", script]);
    assert!(stdout(&out).contains("Operation not permitted"), "{}{}", stdout(&out), stderr(&out));
}

#[test]
fn an_apparmor_profile_is_refused_clearly_where_apparmor_is_absent() {
    if std::path::Path::new("/sys/kernel/security/apparmor").exists() {
        return; // the refusal is for hosts without AppArmor
    }
    let e = Env::new("apparmor");
    let out = e.berth(&["run", "--rm", "--security-opt", "apparmor=docker-default", "localhost/demo", "true"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("AppArmor is not enabled on this host"), "{err}");
    assert_eq!(stdout(&e.berth(&["ps", "-a", "-q"])), "");
    assert_eq!(e.mounts(), 0);
}
