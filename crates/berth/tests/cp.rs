//! `berth cp` end to end: files and directories in and out of running and stopped containers,
//! tar streams, docker's path rules, and a container's symlinks and races that must never let
//! a copy read or write outside its root.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::Env;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A running container named `name` (busybox sleeping).
fn running(e: &Env, name: &str, extra: &[&str]) {
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["localhost/demo", "sleep", "1000"]);
    e.ok(&args);
    // The test image has only /bin and /etc.
    e.ok(&["exec", name, "busybox", "mkdir", "-p", "/tmp"]);
}

#[test]
fn cp_copies_a_file_in_and_out_keeping_content_and_mode() {
    let e = Env::new("cp-file");
    running(&e, "box", &[]);
    let f = e.dir.join("script.sh");
    std::fs::write(&f, "#!/bin/sh\necho from the host\n").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o750)).unwrap();
    // Into an existing directory: under its own name, owned by the container's root.
    e.ok(&["cp", f.to_str().unwrap(), "box:/tmp"]);
    assert_eq!(e.ok(&["exec", "box", "/tmp/script.sh"]), "from the host");
    assert_eq!(e.ok(&["exec", "box", "busybox", "stat", "-c", "%a %u:%g", "/tmp/script.sh"]), "750 0:0");
    // To a new name; over an existing file.
    e.ok(&["cp", f.to_str().unwrap(), "box:/renamed"]);
    e.ok(&["exec", "box", "sh", "-c", "echo old > /etc/motd"]);
    e.ok(&["cp", f.to_str().unwrap(), "box:/etc/motd"]);
    assert_eq!(e.ok(&["exec", "box", "cat", "/renamed", "/etc/motd"]).lines().count(), 4);
    // -a keeps the host's owner.
    let owned = e.dir.join("owned");
    std::fs::write(&owned, "x").unwrap();
    std::os::unix::fs::chown(&owned, Some(1234), Some(5678)).unwrap();
    e.ok(&["cp", "-a", owned.to_str().unwrap(), "box:/tmp/"]);
    assert_eq!(e.ok(&["exec", "box", "busybox", "stat", "-c", "%u:%g", "/tmp/owned"]), "1234:5678");
    // Out: to a host directory and to a new file name.
    e.ok(&["exec", "box", "sh", "-c", "echo inside > /made; busybox chmod 640 /made; busybox chown 4000:4000 /made"]);
    let out = e.dir.join("out");
    std::fs::create_dir(&out).unwrap();
    e.ok(&["cp", "box:/made", out.to_str().unwrap()]);
    let md = std::fs::metadata(out.join("made")).unwrap();
    assert_eq!(std::fs::read_to_string(out.join("made")).unwrap(), "inside\n");
    assert_eq!(md.mode() & 0o7777, 0o640);
    assert_eq!(md.uid(), 0, "without -a the copy is the caller's, as with docker");
    e.ok(&["cp", "-a", "box:/made", out.join("kept").to_str().unwrap()]);
    assert_eq!(std::fs::metadata(out.join("kept")).unwrap().uid(), 4000);
    // A container's device node comes out as the caller's alone (-a keeps its mode).
    e.ok(&["exec", "box", "sh", "-c", "busybox mknod /node c 1 3 && busybox chmod 666 /node"]);
    e.ok(&["cp", "box:/node", out.join("node").to_str().unwrap()]);
    assert_eq!(std::fs::symlink_metadata(out.join("node")).unwrap().mode() & 0o7777, 0o600);
    // A trailing slash on a file is an error, as is a directory onto a file.
    assert_eq!(e.berth(&["cp", "box:/made/", out.to_str().unwrap()]).status.code(), Some(125));
    assert_eq!(e.berth(&["cp", "box:/etc", out.join("made").to_str().unwrap()]).status.code(), Some(125));
}

#[test]
fn cp_copies_directories_recursively_with_symlinks_as_symlinks_and_slash_dot_contents() {
    let e = Env::new("cp-dir");
    running(&e, "box", &[]);
    let src = e.dir.join("tree");
    std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
    std::fs::write(src.join("top.txt"), "top\n").unwrap();
    std::fs::write(src.join("sub/deeper/leaf.txt"), "leaf\n").unwrap();
    std::fs::set_permissions(src.join("sub"), std::fs::Permissions::from_mode(0o711)).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", src.join("abs-link")).unwrap();
    std::os::unix::fs::symlink("sub/deeper", src.join("rel-link")).unwrap();
    std::fs::hard_link(src.join("top.txt"), src.join("hard.txt")).unwrap();
    // A missing destination becomes the directory.
    e.ok(&["cp", src.to_str().unwrap(), "box:/data"]);
    let listing = e.ok(&["exec", "box", "sh", "-c",
        "cd /data && cat top.txt sub/deeper/leaf.txt && busybox readlink abs-link && busybox readlink rel-link && busybox stat -c %a sub && busybox stat -c %h top.txt"]);
    assert_eq!(listing, "top\nleaf\n/etc/passwd\nsub/deeper\n711\n2");
    // Into an existing directory: under the source's name; with /. its content.
    e.ok(&["exec", "box", "busybox", "mkdir", "/into", "/content"]);
    e.ok(&["cp", src.to_str().unwrap(), "box:/into"]);
    e.ok(&["cp", &format!("{}/.", src.display()), "box:/content"]);
    assert_eq!(e.ok(&["exec", "box", "cat", "/into/tree/top.txt", "/content/top.txt"]), "top\ntop");
    // Back out: symlinks stay symlinks (the container's /etc/passwd is not read through them).
    let back = e.dir.join("back");
    e.ok(&["cp", "box:/data", back.to_str().unwrap()]);
    assert_eq!(std::fs::read_link(back.join("abs-link")).unwrap(), Path::new("/etc/passwd"));
    assert!(std::fs::symlink_metadata(back.join("rel-link")).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read_to_string(back.join("sub/deeper/leaf.txt")).unwrap(), "leaf\n");
    assert_eq!(std::fs::metadata(back.join("sub")).unwrap().mode() & 0o7777, 0o711);
    assert_eq!(std::fs::metadata(back.join("hard.txt")).unwrap().ino(), std::fs::metadata(back.join("top.txt")).unwrap().ino());
    // -L follows a symlink given as the source.
    e.ok(&["cp", "-L", "box:/data/rel-link", e.dir.join("followed").to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(e.dir.join("followed/leaf.txt")).unwrap(), "leaf\n");
}

#[test]
fn cp_streams_a_tar_on_stdout_and_unpacks_one_from_stdin() {
    let e = Env::new("cp-stream");
    running(&e, "box", &[]);
    let out = e.cmd(&["cp", "box:/etc", "-"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let mut names = Vec::new();
    let mut archive = tar::Archive::new(&out.stdout[..]);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        if name == "etc/passwd" {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
            assert!(text.starts_with("root:x:0:0"), "{text}");
        }
        names.push(name);
    }
    assert!(names.contains(&"etc".to_string()) && names.contains(&"etc/passwd".to_string()), "{names:?}");
    // A tar on stdin lands in the destination directory.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o604);
    h.set_size(6);
    h.set_uid(77);
    h.set_gid(88);
    b.append_data(&mut h, "streamed/hello.txt", &b"hello\n"[..]).unwrap();
    let tar = b.into_inner().unwrap();
    let mut child =
        e.cmd(&["cp", "-a", "-", "box:/tmp"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &tar).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(e.ok(&["exec", "box", "busybox", "stat", "-c", "%a %u:%g", "/tmp/streamed/hello.txt"]), "604 77:88");
    assert_eq!(e.ok(&["exec", "box", "cat", "/tmp/streamed/hello.txt"]), "hello");
    // An entry climbing out with .. is refused.
    let mut raw = vec![0u8; 512];
    let name = b"../../escaped";
    raw[..name.len()].copy_from_slice(name);
    let mut h = tar::Header::from_byte_slice(&raw).clone();
    h.set_mode(0o644);
    h.set_size(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    let mut bad = h.as_bytes().to_vec();
    bad.extend(vec![0u8; 1024]);
    let mut child = e.cmd(&["cp", "-", "box:/tmp"]).stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &bad).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(stderr(&out).contains(".."), "{}", stderr(&out));
}

#[test]
fn cp_never_follows_a_containers_symlinks_out_of_its_root() {
    let e = Env::new("cp-escape");
    let secret = e.dir.join("host-secret");
    std::fs::write(&secret, "host only\n").unwrap();
    let target = e.dir.join("host-target");
    std::fs::create_dir(&target).unwrap();
    let dir = e.dir.to_str().unwrap().to_string();
    // The malicious container: / and ../../ links, a link to the host's own paths, a dangling one.
    let setup = format!(
        "busybox mkdir -p /tmp; busybox ln -s / /escape; busybox ln -s ../../../../../../../.. /up; busybox ln -s {dir} /hostdir; \
         busybox ln -s {dir}/host-target /tmp/target-link; busybox ln -s {dir}/host-secret /dangling; \
         busybox mkdir -p /etc2; busybox ln -s /escape/{dir} /etc2/deep; busybox ln -s /proc/self/root /magic; \
         busybox ln -s /proc/1/cwd/../../../proc/self/root /magic2"
    );
    for (name, state) in [("live", "running"), ("dead", "exited")] {
        if state == "running" {
            running(&e, name, &[]);
            e.ok(&["exec", name, "sh", "-c", &setup]);
        } else {
            e.ok(&["run", "--name", name, "localhost/demo", "sh", "-c", &setup]);
        }
        let out_dir = e.dir.join(format!("out-{name}"));
        std::fs::create_dir(&out_dir).unwrap();
        // Reading through the links finds nothing of the host's.
        for src in [
            format!("/escape{dir}/host-secret"),
            format!("/up{dir}/host-secret"),
            "/hostdir/host-secret".to_string(),
            "/etc2/deep/host-secret".to_string(),
            "/dangling/.".to_string(),
            // A running container's /proc is its own procfs: /proc/self/root would be berth's
            // root, the host's, were magic links followed.
            format!("/magic{dir}/host-secret"),
            format!("/magic2{dir}/host-secret"),
            format!("/proc/self/root{dir}/host-secret"),
        ] {
            let out = e.berth(&["cp", "-L", &format!("{name}:{src}"), out_dir.join("got").to_str().unwrap()]);
            assert_eq!(out.status.code(), Some(125), "{name}:{src} was copied: {}", stderr(&out));
            assert!(!out_dir.join("got").exists(), "{name}:{src}");
        }
        let out = e.berth(&["cp", "-L", &format!("{name}:/dangling"), out_dir.join("got").to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
        // The links themselves come out as links, not as the trees they point to.
        e.ok(&["cp", &format!("{name}:/escape"), out_dir.to_str().unwrap()]);
        assert_eq!(std::fs::read_link(out_dir.join("escape")).unwrap(), Path::new("/"));
        // Writing through them lands inside the container (or fails), never on the host.
        let payload = e.dir.join("payload");
        std::fs::write(&payload, "from cp\n").unwrap();
        let magic_dest = format!("/magic{dir}/host-target/");
        let proc_dest = format!("/proc/self/root{dir}/host-target/x");
        for dest in
            ["/tmp/target-link/", "/tmp/target-link/x", "/hostdir/host-target/", "/dangling", "/escape/dangling", &magic_dest, &proc_dest]
        {
            let _ = e.berth(&["cp", payload.to_str().unwrap(), &format!("{name}:{dest}")]);
        }
        let _ = e.berth(&["cp", &format!("{}/.", e.dir.join("out-live").display()), &format!("{name}:/hostdir")]);
        assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0, "{name}: a file was written in the host's directory");
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), "host only\n", "{name}: the host's file was overwritten");
        assert!(!e.dir.join("payload").with_file_name("escape").exists());
    }
}

#[test]
fn cp_under_a_racing_container_stays_inside_its_root() {
    let e = Env::new("cp-race");
    let target = e.dir.join("host-target");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(e.dir.join("host-secret"), "host only\n").unwrap();
    let dir = e.dir.to_str().unwrap().to_string();
    running(&e, "racer", &[]);
    // /swap flips between a real directory (with a file) and a symlink to the host's paths.
    let race = format!(
        "busybox mkdir -p {dir}; while true; do busybox mkdir /swap.d 2>/dev/null; echo inside > /swap.d/f; \
         busybox mv /swap.d /swap; busybox mv /swap /swap.d; busybox ln -s {dir} /swap; busybox rm /swap; done"
    );
    e.ok(&["exec", "-d", "racer", "sh", "-c", &race]);
    let payload = e.dir.join("payload");
    std::fs::create_dir(&payload).unwrap();
    std::fs::write(payload.join("p"), "from cp\n").unwrap();
    let out_dir = e.dir.join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut copies = 0;
    while Instant::now() < deadline {
        let _ = e.berth(&["cp", &format!("{}/.", payload.display()), "racer:/swap/"]);
        let _ = e.berth(&["cp", "-L", "racer:/swap/", out_dir.join(format!("o{copies}")).to_str().unwrap()]);
        copies += 1;
    }
    assert!(copies >= 3, "only {copies} rounds");
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0, "cp wrote into the host's directory");
    assert!(!e.dir.join("p").exists(), "cp wrote into the host's directory");
    // Whatever was copied out is the container's, never the host's secret.
    for o in std::fs::read_dir(&out_dir).unwrap() {
        let o = o.unwrap().path();
        assert!(!o.join("host-secret").exists(), "{} holds the host's secret", o.display());
    }
    e.ok(&["rm", "-f", "racer"]);
}

#[test]
fn cp_works_on_a_stopped_container() {
    let e = Env::new("cp-stopped");
    e.ok(&["run", "--name", "done", "localhost/demo", "sh", "-c", "echo result > /result.txt"]);
    assert_eq!(e.inspect("done", "{{.State.Status}}"), "exited");
    let out = e.dir.join("result.txt");
    e.ok(&["cp", "done:/result.txt", out.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "result\n");
    // Copied in while stopped, seen once started.
    let cfg = e.dir.join("config.ini");
    std::fs::write(&cfg, "k=v\n").unwrap();
    e.ok(&["create", "--name", "later", "localhost/demo", "cat", "/config.ini"]);
    e.ok(&["cp", cfg.to_str().unwrap(), "later:/"]);
    let run = e.berth(&["start", "-a", "later"]);
    assert_eq!(String::from_utf8_lossy(&run.stdout), "k=v\n", "{}", stderr(&run));
}

#[test]
fn cp_reaches_the_volumes_of_running_and_stopped_containers_and_refuses_read_only_ones() {
    let e = Env::new("cp-volume");
    running(&e, "vol", &["-v", "data:/data", "-v", "ro:/ro:ro", "--tmpfs", "/scratch"]);
    let f = e.dir.join("file");
    std::fs::write(&f, "into the volume\n").unwrap();
    e.ok(&["cp", f.to_str().unwrap(), "vol:/data/"]);
    assert_eq!(std::fs::read_to_string(e.dir.join("root/volumes/data/_data/file")).unwrap(), "into the volume\n");
    e.ok(&["cp", f.to_str().unwrap(), "vol:/scratch/"]);
    assert_eq!(e.ok(&["exec", "vol", "cat", "/scratch/file"]), "into the volume");
    let out = e.berth(&["cp", f.to_str().unwrap(), "vol:/ro/"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("Read-only file system"), "{}", stderr(&out));
    e.ok(&["exec", "vol", "sh", "-c", "echo made inside > /data/inner"]);
    let got = e.dir.join("inner");
    e.ok(&["cp", "vol:/data/inner", got.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&got).unwrap(), "made inside\n");
    // The kernel's files are not copied.
    assert_eq!(e.berth(&["cp", "vol:/proc/self/status", e.dir.join("st").to_str().unwrap()]).status.code(), Some(125));
    // Stopped: the volumes' sources are used (the tmpfs is gone with the container's run).
    e.ok(&["stop", "-t", "0", "vol"]);
    let again = e.dir.join("again");
    e.ok(&["cp", "vol:/data/inner", again.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&again).unwrap(), "made inside\n");
    e.ok(&["cp", f.to_str().unwrap(), "vol:/data/while-stopped"]);
    assert!(e.dir.join("root/volumes/data/_data/while-stopped").is_file());
    let out = e.berth(&["cp", f.to_str().unwrap(), "vol:/ro/"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("read-only"), "{}", stderr(&out));
    // The engine's /etc/hosts (a file bind) is the one the container saw.
    let hosts = e.dir.join("hosts");
    e.ok(&["cp", "vol:/etc/hosts", hosts.to_str().unwrap()]);
    assert!(std::fs::read_to_string(&hosts).unwrap().contains("localhost"));
}

#[test]
fn cp_fails_with_125_and_a_clear_message_for_missing_paths() {
    let e = Env::new("cp-missing");
    running(&e, "box", &[]);
    let out = e.berth(&["cp", "box:/nope", e.dir.join("x").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("could not find the file /nope in container box"), "{}", stderr(&out));
    let out = e.berth(&["cp", e.dir.join("absent").to_str().unwrap(), "box:/tmp"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("absent"), "{}", stderr(&out));
    let f = e.dir.join("f");
    std::fs::write(&f, "").unwrap();
    let out = e.berth(&["cp", f.to_str().unwrap(), "box:/no/such/dir/f"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    let out = e.berth(&["cp", f.to_str().unwrap(), "ghost:/tmp"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("no such container"), "{}", stderr(&out));
    let out = e.berth(&["cp", "box:/etc/passwd", e.dir.join("missing-dir/x").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert_eq!(e.berth(&["cp", "box:/a", "box:/b"]).status.code(), Some(125));
}
