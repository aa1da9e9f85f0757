//! Command-line surface shared with runc: spec, features, global flags.

mod common;
use common::*;

#[test]
fn spec_writes_runcs_default_config_and_refuses_to_overwrite_it() {
    let s = Scratch::new("cli-spec");
    let dir = s.dir.join("b");
    std::fs::create_dir_all(&dir).unwrap();
    ok(&s.rt(&["spec", "--bundle", dir.to_str().unwrap()]));
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["process"]["args"], serde_json::json!(["sh"]));
    assert_eq!(cfg["root"]["path"], "rootfs");
    let ns: Vec<&str> = cfg["linux"]["namespaces"].as_array().unwrap().iter().map(|n| n["type"].as_str().unwrap()).collect();
    assert_eq!(ns, ["pid", "network", "ipc", "uts", "mount", "cgroup"]);
    let again = s.rt(&["spec", "--bundle", dir.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("exists"), "{}", stderr(&again));
}

#[test]
fn spec_rootless_maps_the_caller_and_drops_the_network_namespace() {
    let s = Scratch::new("cli-spec-rootless");
    let dir = s.dir.join("b");
    std::fs::create_dir_all(&dir).unwrap();
    ok(&s.rt(&["spec", "--rootless", "--bundle", dir.to_str().unwrap()]));
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["linux"]["uidMappings"][0]["containerID"], 0);
    assert_eq!(cfg["linux"]["uidMappings"][0]["size"], 1);
    let ns: Vec<&str> = cfg["linux"]["namespaces"].as_array().unwrap().iter().map(|n| n["type"].as_str().unwrap()).collect();
    assert!(ns.contains(&"user") && !ns.contains(&"network"), "{ns:?}");
    assert!(cfg["linux"].get("resources").is_none());
}

#[test]
fn features_reports_what_is_implemented() {
    let s = Scratch::new("cli-features");
    let f: serde_json::Value = serde_json::from_str(&ok(&s.rt(&["features"]))).unwrap();
    assert!(f["ociVersionMax"].as_str().unwrap().starts_with("1."));
    let hooks: Vec<&str> = f["hooks"].as_array().unwrap().iter().map(|h| h.as_str().unwrap()).collect();
    for h in ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"] {
        assert!(hooks.contains(&h), "{h} missing");
    }
    let ns = f["linux"]["namespaces"].as_array().unwrap();
    assert_eq!(ns.len(), 8);
    assert_eq!(f["linux"]["seccomp"]["enabled"], true);
    assert_eq!(f["linux"]["cgroup"]["systemd"], false);
    // Truthful: no LSM on this host is claimed as applied.
    assert_eq!(f["linux"]["apparmor"]["enabled"], berth_runtime::lsm::apparmor_enabled());
    assert_eq!(f["linux"]["mountExtensions"]["idmap"]["enabled"], false);
    assert!(f["mountOptions"].as_array().unwrap().iter().any(|o| o == "rro"));
}

#[test]
fn systemd_cgroup_is_refused_with_a_clear_error() {
    let s = Scratch::new("cli-systemd");
    let out = s.rt(&["--systemd-cgroup", "list"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--systemd-cgroup is not supported"), "{}", stderr(&out));
}

#[test]
fn errors_go_to_the_log_file_in_runcs_json_shape() {
    let s = Scratch::new("cli-log");
    let log = s.dir.join("log.json");
    let out = s.rt(&["--log", log.to_str().unwrap(), "--log-format", "json", "start", "no-such-id-berth"]);
    assert!(!out.status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(line["level"], "error");
    assert!(line["msg"].as_str().unwrap().contains("does not exist"), "{text}");
    assert!(line["time"].as_str().is_some());
}
