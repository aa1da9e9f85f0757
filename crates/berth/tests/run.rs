//! `berth run`, `ps`, `rm` through the built binary, from an image imported offline.

mod common;

use std::process::Command;

use common::{Env, BIN};

#[test]
fn run_rm_prints_output_returns_the_exit_code_and_leaves_nothing() {
    let e = Env::new("rm");
    let out = e.berth(&[
        "run",
        "--rm",
        "-e",
        "GREETING=hi",
        "-u",
        "app",
        "--hostname",
        "box",
        "localhost/demo",
        "sh",
        "-c",
        "echo $GREETING from $(hostname) as $(id -u):$(id -g); exit 5",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi from box as 4000:4000\n", "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(String::from_utf8_lossy(&e.berth(&["ps", "-a", "-q"]).stdout), "");
    assert_eq!(e.mounts(), 0, "an overlay was left mounted");
    assert_eq!(std::fs::read_dir(e.dir.join("root/containers")).unwrap().count(), 0);
}

#[test]
fn a_kept_container_is_listed_and_removed_by_name() {
    let e = Env::new("keep");
    let out = e.berth(&["run", "--name", "kept", "localhost/demo", "true"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ps = String::from_utf8_lossy(&e.berth(&["ps", "-a"]).stdout).into_owned();
    assert!(ps.lines().any(|l| l.contains("kept") && l.contains("Exited (0)")), "{ps}");
    assert!(String::from_utf8_lossy(&e.berth(&["ps"]).stdout).lines().count() == 1, "only running ones without -a");
    let dup = e.berth(&["run", "--name", "kept", "localhost/demo", "true"]);
    assert_eq!(dup.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already in use"));
    assert!(e.berth(&["rm", "kept"]).status.success());
    assert_eq!(String::from_utf8_lossy(&e.berth(&["ps", "-a", "-q"]).stdout), "");
    assert_eq!(e.mounts(), 0);
}

#[test]
fn a_missing_command_exits_127_and_an_unknown_image_125() {
    let e = Env::new("codes");
    let out = e.berth(&["run", "--rm", "localhost/demo", "no-such-command"]);
    assert_eq!(out.status.code(), Some(127), "{}", String::from_utf8_lossy(&out.stderr));
    let out = e.berth(&["run", "--rm", "localhost/absent", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(String::from_utf8_lossy(&e.berth(&["ps", "-a", "-q"]).stdout), "");
    assert_eq!(e.mounts(), 0);
}

#[test]
fn rmi_refuses_an_image_a_container_uses_and_force_keeps_its_layers() {
    let e = Env::new("rmi-in-use");
    assert!(e.berth(&["run", "--name", "user", "localhost/demo", "true"]).status.success());
    let out = e.berth(&["rmi", "localhost/demo"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use"), "{}", String::from_utf8_lossy(&out.stderr));
    // Forced: the name goes, the container's layers stay until it is removed.
    assert!(e.berth(&["rmi", "-f", "localhost/demo"]).status.success());
    let layers = std::fs::read_dir(e.dir.join("root/layers"))
        .unwrap()
        .filter_map(|d| d.ok())
        .filter(|d| !d.file_name().to_string_lossy().starts_with('.'))
        .count();
    assert_eq!(layers, 1, "the container's snapshot was collected");
    assert!(e.berth(&["rm", "user"]).status.success());
    assert!(e.berth(&["image", "prune"]).status.success());
    let layers = std::fs::read_dir(e.dir.join("root/layers"))
        .unwrap()
        .filter_map(|d| d.ok())
        .filter(|d| !d.file_name().to_string_lossy().starts_with('.'))
        .count();
    assert_eq!(layers, 0, "an unused snapshot survived prune");
}

#[test]
fn pull_and_push_take_the_oci_and_archive_transports() {
    let e = Env::new("transports");
    let layout = e.dir.join("layout");
    let out = e.berth(&["push", "localhost/demo", &format!("oci:{}:v1", layout.display())]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(layout.join("index.json").is_file());
    let archive = e.dir.join("demo.tar");
    assert!(e.berth(&["push", "localhost/demo", &format!("docker-archive:{}", archive.display())]).status.success());
    for (i, src) in [format!("oci:{}:v1", layout.display()), format!("docker-archive:{}", archive.display())].iter().enumerate() {
        let root = e.dir.join(format!("other{i}"));
        let berth =
            |args: &[&str]| Command::new(BIN).arg("--root").arg(&root).arg("--runroot").arg(root.join("run")).args(args).output().unwrap();
        let out = berth(&["pull", src]);
        assert!(out.status.success(), "{src}: {}", String::from_utf8_lossy(&out.stderr));
        let images = String::from_utf8_lossy(&berth(&["images", "-q"]).stdout).into_owned();
        assert_eq!(images.lines().count(), 1, "{src}: {images}");
        let img = images.trim().to_string();
        let out = berth(&["run", "--rm", &img, "echo", "from-transport"]);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "from-transport\n", "{src}: {}", String::from_utf8_lossy(&out.stderr));
    }
}
