//! `system info` (`info`), `system prune` and `version` through the built binary.

mod common;

use common::Env;
use serde_json::Value;

fn expected_cgroup_layout() -> &'static str {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let fstype = |l: &str| l.split(" - ").nth(1).and_then(|r| r.split(' ').next()).unwrap_or("").to_string();
    let v1 = mountinfo.lines().any(|l| fstype(l) == "cgroup");
    let v2 = mountinfo.lines().any(|l| fstype(l) == "cgroup2");
    match (v1, v2) {
        (true, true) => "hybrid",
        (true, false) => "v1",
        _ => "v2",
    }
}

#[test]
fn system_info_reports_the_host_the_cgroup_layout_the_roots_and_the_counts() {
    let e = Env::new("sys-info");
    e.ok(&["run", "-d", "--name", "up", "localhost/demo", "sleep", "1000"]);
    e.ok(&["run", "--name", "done", "localhost/demo", "true"]);
    e.ok(&["create", "--name", "new", "localhost/demo", "true"]);
    e.ok(&["volume", "create", "vol"]);
    let v: Value = serde_json::from_str(&e.ok(&["system", "info", "--format", "json"])).unwrap();
    // docker's names, so that scripts written for `docker info` read it.
    assert_eq!(v["Containers"], 3, "{v}");
    assert_eq!(v["ContainersRunning"], 1);
    assert_eq!(v["ContainersPaused"], 0);
    assert_eq!(v["ContainersStopped"], 2);
    assert_eq!(v["Images"], 1);
    assert_eq!(v["Volumes"], 1);
    assert_eq!(v["RootDir"], e.dir.join("root").to_str().unwrap());
    assert_eq!(v["RunRoot"], e.dir.join("run").to_str().unwrap());
    assert_eq!(v["Driver"], "overlay");
    assert_eq!(v["CgroupLayout"], expected_cgroup_layout());
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(v["KernelVersion"], release.trim());
    assert_eq!(v["Features"]["Overlay"], true);
    assert_eq!(v["Features"]["Openat2"], true);
    assert_eq!(v["Rootless"], false);
    // The text form, the `info` alias and templates.
    let text = e.ok(&["system", "info"]);
    for want in ["Containers: 3", "Running: 1", "Stopped: 2", "Images: 1", "Storage Driver: overlay", "Cgroup Version:", "seccomp:"] {
        assert!(text.contains(want), "{want:?} missing in:\n{text}");
    }
    assert_eq!(e.ok(&["info", "--format", "{{.ContainersRunning}} {{.OSType}}"]), "1 linux");
}

#[test]
fn system_prune_removes_stopped_containers_and_dangling_image_data_and_with_volumes_unused_anonymous_volumes() {
    let e = Env::new("sys-prune");
    let running = e.ok(&["run", "-d", "--name", "up", "localhost/demo", "sleep", "1000"]);
    let exited = e.ok(&["run", "-d", "--name", "gone", "-v", "/anon", "localhost/demo", "sh", "-c", "echo data > /anon/f"]);
    e.wait_for("gone", "{{.State.Status}}", "exited");
    let created = e.ok(&["create", "--name", "new", "localhost/demo", "true"]);
    e.ok(&["volume", "create", "named"]);
    // Two imports under one name: the first image's data dangles once the name moves on.
    for (i, content) in [b"first".as_slice(), b"second".as_slice()].into_iter().enumerate() {
        let tar = e.dir.join(format!("other{i}.tar"));
        let mut b = tar::Builder::new(std::fs::File::create(&tar).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, "only-here", content).unwrap();
        b.finish().unwrap();
        drop(b);
        e.ok(&["import", tar.to_str().unwrap(), "localhost/other:latest"]);
    }
    let out = e.ok(&["system", "prune", "-f"]);
    assert!(out.contains("Deleted Containers:"), "{out}");
    assert!(out.contains(&exited) && out.contains(&created), "{out}");
    assert!(!out.contains(&running), "{out}");
    assert!(out.contains("Deleted Images:\ndeleted: sha256:"), "the first import's blobs: {out}");
    assert!(out.contains("Total reclaimed space:"), "{out}");
    assert_eq!(e.ok(&["ps", "-a", "-q", "--no-trunc"]), running);
    assert!(e.ok(&["images"]).contains("localhost/other"), "the named image stays");
    // Without --volumes every volume stays; with it the unused anonymous one goes, the named stays.
    let volumes = e.ok(&["volume", "ls", "-q"]);
    assert_eq!(volumes.lines().count(), 2, "{volumes}");
    let out = e.ok(&["system", "prune", "--volumes"]);
    assert!(out.contains("Deleted Volumes:"), "{out}");
    assert_eq!(e.ok(&["volume", "ls", "-q"]), "named");
    // The running container's image and snapshots were spared: it still runs and new ones start.
    assert_eq!(e.inspect("up", "{{.State.Status}}"), "running");
    assert_eq!(e.ok(&["run", "--rm", "localhost/demo", "echo", "still here"]), "still here");
    // Nothing left: a second prune reclaims nothing.
    let out = e.ok(&["system", "prune", "-f"]);
    assert_eq!(out, "Total reclaimed space: 0 B", "{out}");
}

#[test]
fn version_prints_client_and_engine_versions_os_arch_and_runtime() {
    let e = Env::new("sys-version");
    let text = e.ok(&["version"]);
    for want in ["Client:", "Engine:", "Version:\t", "OS/Arch:\tlinux/", "Runtime:\tberth-runtime", "Kernel:\t"] {
        assert!(text.contains(want), "{want:?} missing in:\n{text}");
    }
    let v: Value = serde_json::from_str(&e.ok(&["version", "--format", "json"])).unwrap();
    assert_eq!(v["Client"]["Version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["Server"]["Os"], "linux");
    assert_eq!(e.ok(&["version", "--format", "{{.Server.Version}}"]), env!("CARGO_PKG_VERSION"));
}
