//! Bind mounts, named and anonymous volumes, and `berth volume`, end to end through the
//! built binary.

mod container_env;

use container_env::{stderr, stdout, Env};

#[test]
fn a_bind_mount_shows_host_files_and_ro_refuses_writes() {
    let e = Env::new("bind");
    let host = e.dir.join("host-data");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("f"), "from the host\n").unwrap();
    let rw = format!("{}:/data", host.display());
    let out = e.berth(&["run", "--rm", "-v", &rw, "localhost/demo", "sh", "-c", "cat /data/f; echo written > /data/g"]);
    assert_eq!(stdout(&out), "from the host\n", "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(host.join("g")).unwrap(), "written\n");
    // z/Z (SELinux relabelling) are accepted and mean nothing without SELinux.
    let ro = format!("{}:/data:ro,Z", host.display());
    let out = e.berth(&["run", "--rm", "-v", &ro, "localhost/demo", "sh", "-c", "cat /data/f; echo no > /data/h"]);
    assert_eq!(stdout(&out), "from the host\n");
    assert_ne!(out.status.code(), Some(0), "a write to a :ro bind succeeded");
    assert!(stderr(&out).contains("Read-only file system"), "{}", stderr(&out));
    assert!(!host.join("h").exists());
    // --mount's readonly too.
    let m = format!("type=bind,source={},target=/data,readonly", host.display());
    let out = e.berth(&["run", "--rm", "--mount", &m, "localhost/demo", "touch", "/data/h"]);
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(e.mounts(), 0);
}

#[test]
fn volume_flag_creates_a_missing_host_dir_and_mount_refuses_it() {
    let e = Env::new("bind-missing");
    let missing = e.dir.join("made-by-v");
    let v = format!("{}:/made", missing.display());
    e.ok(&["run", "--rm", "-v", &v, "localhost/demo", "touch", "/made/x"]);
    assert!(missing.join("x").is_file());
    // A ./relative host path is the caller's directory's.
    let out = e.cmd(&["run", "--rm", "-v", "./rel:/rel", "localhost/demo", "touch", "/rel/y"]).current_dir(&e.dir).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(e.dir.join("rel/y").is_file());
    let absent = e.dir.join("absent");
    let m = format!("type=bind,source={},target=/x", absent.display());
    let out = e.berth(&["run", "--rm", "--mount", &m, "localhost/demo", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("bind source path does not exist"), "{}", stderr(&out));
    assert!(!absent.exists());
}

#[test]
fn a_named_volume_keeps_its_data_across_containers_and_ro_refuses_writes() {
    let e = Env::new("named");
    e.ok(&["run", "--rm", "-v", "data:/d", "localhost/demo", "sh", "-c", "echo kept > /d/file"]);
    assert_eq!(e.ok(&["run", "--rm", "-v", "data:/other", "localhost/demo", "cat", "/other/file"]), "kept\n");
    assert_eq!(std::fs::read_to_string(e.dir.join("root/volumes/data/_data/file")).unwrap(), "kept\n");
    let out = e.berth(&[
        "run",
        "--rm",
        "--mount",
        "source=data,target=/d,readonly",
        "localhost/demo",
        "sh",
        "-c",
        "cat /d/file; echo x > /d/file",
    ]);
    assert_eq!(stdout(&out), "kept\n");
    assert_ne!(out.status.code(), Some(0), "a write to a read-only volume succeeded");
    let out = e.berth(&["run", "--rm", "-v", "data:/d:ro", "localhost/demo", "rm", "/d/file"]);
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(e.ok(&["volume", "ls", "-q"]), "data\n");
    assert_eq!(e.mounts(), 0);
}

#[test]
fn a_new_volume_gets_a_copy_of_the_images_content_with_its_owners() {
    let e = Env::new("copy-up");
    let out = e.ok(&["run", "--rm", "-v", "srv:/srv", "localhost/demo", "sh", "-c", "cat /srv/seed; stat -c '%u %a' /srv /srv/seed"]);
    assert_eq!(out, "from the image\n4000 755\n4000 644\n");
    // Not again into a volume that has content: the user's data wins.
    e.ok(&["run", "--rm", "-v", "srv:/srv", "localhost/demo", "sh", "-c", "rm /srv/seed; echo mine > /srv/own"]);
    assert_eq!(e.ok(&["run", "--rm", "-v", "srv:/srv", "localhost/demo", "ls", "/srv"]), "own\n");
    // nocopy: an empty volume stays empty.
    assert_eq!(e.ok(&["run", "--rm", "-v", "bare:/srv:nocopy", "localhost/demo", "ls", "/srv"]), "");
}

#[test]
fn image_volumes_and_anonymous_volumes_go_with_run_rm() {
    let e = Env::new("anonymous");
    e.load_image("localhost/withvol:latest", serde_json::json!({"Volumes": {"/srv": {}}, "ExposedPorts": {"80/tcp": {}}, "Cmd": ["sh"]}));
    let out = e.ok(&[
        "run",
        "--rm",
        "-v",
        "/scratch",
        "localhost/withvol",
        "sh",
        "-c",
        "grep -c ' /srv \\| /scratch ' /proc/mounts; cat /srv/seed",
    ]);
    assert_eq!(out, "2\nfrom the image\n");
    assert_eq!(e.ok(&["volume", "ls", "-q"]), "", "run --rm left anonymous volumes");
    // Also when the command cannot start (docker's 127).
    let out = e.berth(&["run", "--rm", "-v", "/scratch", "localhost/withvol", "no-such-command"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert_eq!(e.ok(&["volume", "ls", "-q"]), "", "a failed run --rm left anonymous volumes");
    assert_eq!(std::fs::read_dir(e.dir.join("root/volumes")).unwrap().count(), 0);
}

#[test]
fn a_kept_containers_anonymous_volume_is_dangling_after_rm_and_pruned() {
    let e = Env::new("prune");
    e.ok(&["run", "--name", "keeper", "-v", "/cache", "-v", "named:/n", "localhost/demo", "true"]);
    let names = e.ok(&["volume", "ls", "-q"]);
    assert_eq!(names.lines().count(), 2, "{names}");
    let anon = names.lines().find(|n| *n != "named").unwrap().to_string();
    assert_eq!(anon.len(), 64);
    let inspect: serde_json::Value = serde_json::from_str(&e.ok(&["volume", "inspect", &anon])).unwrap();
    assert_eq!(inspect[0]["Anonymous"], true);
    assert_eq!(inspect[0]["Containers"].as_array().unwrap().len(), 1);
    // In use: refused.
    let out = e.berth(&["volume", "rm", "named"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("in use"), "{}", stderr(&out));
    assert_eq!(e.ok(&["volume", "prune"]), "", "prune took a volume in use");
    e.ok(&["rm", "keeper"]);
    assert_eq!(e.ok(&["volume", "prune"]), format!("Deleted Volumes:\n{anon}\n"));
    assert_eq!(e.ok(&["volume", "ls", "-q"]), "named\n", "prune without --all took a named volume");
    assert_eq!(e.ok(&["volume", "prune", "--all"]), "Deleted Volumes:\nnamed\n");
    assert_eq!(std::fs::read_dir(e.dir.join("root/volumes")).unwrap().count(), 0);
}

#[test]
fn volume_commands_create_inspect_list_and_remove() {
    let e = Env::new("volume-cmds");
    assert_eq!(e.ok(&["volume", "create", "--label", "team=infra", "v1"]), "v1\n");
    assert_eq!(e.ok(&["volume", "create", "v1"]), "v1\n", "create is idempotent");
    let random = e.ok(&["volume", "create"]).trim().to_string();
    assert_eq!(random.len(), 64);
    let v: serde_json::Value = serde_json::from_str(&e.ok(&["volume", "inspect", "v1"])).unwrap();
    assert_eq!(v[0]["Name"], "v1");
    assert_eq!(v[0]["Driver"], "local");
    assert_eq!(v[0]["Labels"]["team"], "infra");
    assert_eq!(v[0]["Mountpoint"].as_str().unwrap(), e.dir.join("root/volumes/v1/_data").to_str().unwrap());
    let ls = e.ok(&["volume", "ls"]);
    assert!(ls.starts_with("DRIVER") && ls.contains("local     v1\n"), "{ls}");
    let out = e.berth(&["volume", "create", "bad/name"]);
    assert_eq!(out.status.code(), Some(125));
    let out = e.berth(&["volume", "rm", "absent"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("no such volume: absent"), "{}", stderr(&out));
    // -f removes the containers using it first.
    e.ok(&["run", "--name", "user", "-v", "v1:/v", "localhost/demo", "true"]);
    e.ok(&["volume", "rm", "-f", "v1", &random]);
    assert_eq!(e.ok(&["ps", "-a", "-q"]), "");
    assert_eq!(e.ok(&["volume", "ls", "-q"]), "");
}
