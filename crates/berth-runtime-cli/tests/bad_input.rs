//! Bad input through the built binary: each mistake gives one clear error on stderr, a
//! non-zero exit, and leaves nothing behind (no state directory, cgroup, process or mount).

mod common;
use common::mounts::*;
use common::*;
use serde_json::json;

/// `create` `bundle` as `id`, expecting a failure whose stderr contains `needle`; then
/// check that nothing is left. Returns stderr.
#[track_caller]
fn create_fails(s: &Scratch, bundle: &str, id: &str, needle: &str) -> String {
    let out = s.rt(&["create", "--bundle", bundle, id]);
    let err = stderr(&out);
    assert!(!out.status.success(), "create succeeded: {}", stdout(&out));
    assert!(err.contains(needle), "stderr lacks {needle:?}: {err}");
    assert_eq!(err.lines().count(), 1, "more than one error line: {err}");
    if !id.is_empty() && !id.contains('/') && id != ".." {
        assert_nothing_left(s, id);
    }
    err
}

/// A busybox bundle edited by `f`, created as a fresh id, expected to fail with `needle`.
#[track_caller]
fn config_fails(name: &str, needle: &str, f: impl FnOnce(&mut serde_json::Value)) -> String {
    let s = Scratch::new(name);
    let mut b = s.bundle("b", &["true"]);
    b.edit(f);
    let id = s.id("c");
    create_fails(&s, b.p(), &id, needle)
}

#[test]
fn a_missing_bundle_is_reported() {
    let s = Scratch::new("no-bundle");
    let id = s.id("c");
    let missing = s.dir.join("nowhere");
    create_fails(&s, missing.to_str().unwrap(), &id, "cannot open bundle directory");
}

#[test]
fn a_bundle_without_config_json_is_reported() {
    let s = Scratch::new("no-config");
    let b = s.bundle("b", &["true"]);
    std::fs::remove_file(b.path.join("config.json")).unwrap();
    let id = s.id("c");
    let err = create_fails(&s, b.p(), &id, "config.json");
    assert!(err.contains("cannot read"), "{err}");
}

#[test]
fn malformed_json_is_reported() {
    let s = Scratch::new("bad-json");
    let b = s.bundle("b", &["true"]);
    std::fs::write(b.path.join("config.json"), "{\"ociVersion\": \"1.2.0\", ").unwrap();
    let id = s.id("c");
    create_fails(&s, b.p(), &id, "malformed config");
}

#[test]
fn an_unsupported_oci_version_is_reported() {
    config_fails("oci-2", "unsupported ociVersion \"2.0.0\"", |c| c["ociVersion"] = json!("2.0.0"));
}

#[test]
fn an_unknown_namespace_type_is_reported() {
    let err = config_fails("ns-unknown", "malformed config", |c| {
        c["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "bogus"}));
    });
    assert!(err.contains("bogus"), "the error does not name the type: {err}");
}

#[test]
fn a_duplicate_namespace_is_reported() {
    config_fails("ns-dup", "namespace net listed twice", |c| {
        c["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "network"}));
    });
}

#[test]
fn a_missing_rootfs_directory_is_reported() {
    config_fails("no-rootfs", "root filesystem", |c| c["root"]["path"] = json!("does-not-exist"));
}

#[test]
fn a_rootfs_that_is_a_file_is_reported() {
    let s = Scratch::new("rootfs-file");
    let mut b = s.bundle("b", &["true"]);
    std::fs::write(b.path.join("afile"), "x").unwrap();
    b.edit(|c| c["root"]["path"] = json!("afile"));
    let id = s.id("c");
    create_fails(&s, b.p(), &id, "root filesystem is not a directory");
}

#[test]
fn a_relative_mount_destination_is_reported() {
    let err = config_fails("rel-dest", "must be an absolute path", |c| {
        c["mounts"].as_array_mut().unwrap().push(json!({"destination": "data", "type": "tmpfs", "source": "tmpfs"}));
    });
    assert!(err.contains("mount data"), "the error does not name the mount: {err}");
}

#[test]
fn a_mount_destination_through_an_absolute_symlink_stays_inside_the_root() {
    let s = Scratch::new("dest-symlink");
    // The host directory the symlink names: nothing may be mounted or created there.
    let host = s.dir.join("host-target");
    std::fs::create_dir_all(&host).unwrap();
    let mut b = s.bundle("b", &["sh", "-c", "echo inside > /escape/file && grep ' tmpfs ' /proc/self/mountinfo | grep -c host-target"]);
    std::os::unix::fs::symlink(&host, b.rootfs().join("escape")).unwrap();
    b.edit(|c| {
        c["mounts"].as_array_mut().unwrap().push(json!({"destination": "/escape", "type": "tmpfs", "source": "tmpfs"}));
    });
    let out = ok(&s.run(&b, "c"));
    assert_eq!(out.trim(), "1", "the tmpfs is not at the symlink's target inside the root: {out}");
    assert_eq!(std::fs::read_dir(&host).unwrap().count(), 0, "something was written on the host path");
    assert!(!host_has_mount_under(&host));
    // The target was created inside the root, under the same absolute path.
    let inside = b.rootfs().join(host.strip_prefix("/").unwrap());
    assert!(inside.is_dir(), "{} was not created inside the root", inside.display());
}

#[test]
fn an_id_with_a_slash_is_refused() {
    let s = Scratch::new("id-slash");
    let b = s.bundle("b", &["true"]);
    create_fails(&s, b.p(), "a/b", "invalid container id \"a/b\"");
    assert!(!s.root.join("a").exists());
}

#[test]
fn an_id_of_dot_dot_is_refused() {
    let s = Scratch::new("id-dotdot");
    let b = s.bundle("b", &["true"]);
    create_fails(&s, b.p(), "..", "invalid container id \"..\"");
    assert!(s.dir.join("b/config.json").exists());
}

#[test]
fn an_empty_id_is_refused() {
    let s = Scratch::new("id-empty");
    let b = s.bundle("b", &["true"]);
    create_fails(&s, b.p(), "", "invalid container id \"\"");
}

#[test]
fn empty_process_args_are_reported() {
    config_fails("args-empty", "process.args must not be empty", |c| c["process"]["args"] = json!([]));
}

#[test]
fn a_relative_cwd_is_reported() {
    config_fails("cwd-rel", "process.cwd \"tmp\" must be an absolute path", |c| c["process"]["cwd"] = json!("tmp"));
}

#[test]
fn uid_mappings_without_a_user_namespace_are_reported() {
    config_fails("maps-no-userns", "there is no user namespace", |c| {
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
    });
}

#[test]
fn an_invalid_rlimit_type_is_reported() {
    let err = config_fails("rlimit", "RLIMIT_BOGUS", |c| {
        c["process"]["rlimits"] = json!([{"type": "RLIMIT_BOGUS", "hard": 1, "soft": 1}]);
    });
    assert!(err.contains("malformed config") || err.contains("rlimit"), "{err}");
}

#[test]
fn log_format_json_writes_the_error_as_a_json_line() {
    let s = Scratch::new("log-json");
    let mut b = s.bundle("b", &["true"]);
    b.edit(|c| c["ociVersion"] = json!("2.0.0"));
    let id = s.id("c");
    let log = s.dir.join("log.json");
    let out = s.rt(&["--log-format", "json", "--log", log.to_str().unwrap(), "create", "--bundle", b.p(), &id]);
    assert!(!out.status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(v["level"], "error", "{v}");
    assert!(v["msg"].as_str().unwrap().contains("unsupported ociVersion"), "{v}");
    assert!(v["time"].is_string(), "{v}");
    assert_nothing_left(&s, &id);
}

#[test]
fn operations_on_an_unknown_id_say_it_does_not_exist() {
    let s = Scratch::new("unknown");
    let id = s.id("ghost");
    for args in [vec!["start", &id], vec!["kill", &id, "KILL"], vec!["delete", &id], vec!["state", &id]] {
        let out = s.rt(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = stderr(&out);
        assert!(err.contains(&format!("container \"{id}\" does not exist")), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert!(!s.root.join(&id).exists());
}

#[test]
fn kill_with_an_invalid_signal_is_refused_and_sends_nothing() {
    let s = Scratch::new("bad-signal");
    let b = s.bundle("b", &["sleep", "300"]);
    let id = s.id("c");
    ok(&s.rt(&["create", "--bundle", b.p(), &id]));
    for sig in ["SIGBOGUS", "999", "KILLX"] {
        let out = s.rt(&["kill", &id, sig]);
        assert!(!out.status.success(), "kill {sig} succeeded");
        let err = stderr(&out);
        assert!(err.contains(&format!("signal \"{sig}\"")), "{sig}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert_eq!(s.state(&id)["status"], "created");
}
