//! What a container sees of its namespaces, through the built binary: new namespaces differ
//! from the host's, joined ones are the very namespace joined, user and time namespaces
//! carry their mappings and offsets.

mod common;
use common::*;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

use serde_json::json;

/// `readlink /proc/self/ns/<kind>` for each kind, printed as `kind=link` lines.
const PRINT_NS: &str = "for n in pid net ipc uts mnt cgroup user time; do echo $n=$(readlink /proc/self/ns/$n); done";

fn parse_ns(out: &str) -> BTreeMap<String, String> {
    out.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn host_ns(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}")).unwrap().to_string_lossy().into_owned()
}

/// The `net:[inode]` link of a namespace file (a bind-mounted netns or a /proc ns link).
fn ns_link_of_file(path: &str) -> String {
    format!("net:[{}]", std::fs::metadata(path).unwrap().ino())
}

/// A named network namespace (`ip netns add`), deleted on drop.
struct NetNs {
    name: String,
}

impl NetNs {
    fn new(test: &str) -> NetNs {
        let name = format!("berth-it-{}-{test}", std::process::id());
        let _ = Command::new("ip").args(["netns", "delete", &name]).status();
        let st = Command::new("ip").args(["netns", "add", &name]).status().unwrap();
        assert!(st.success(), "ip netns add {name}");
        NetNs { name }
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "delete", &self.name]).status();
    }
}

#[test]
fn new_namespaces_differ_from_the_hosts_and_unrequested_ones_are_shared() {
    let s = Scratch::new("ns-differ");
    let b = s.bundle("b", &["sh", "-c", PRINT_NS]);
    let out = s.run(&b, "c");
    let seen = parse_ns(&ok(&out));
    for kind in ["pid", "net", "ipc", "uts", "mnt", "cgroup"] {
        let inside = seen.get(kind).unwrap_or_else(|| panic!("no {kind} line in {seen:?}"));
        assert!(inside.starts_with(&format!("{kind}:[")), "{kind}: {inside}");
        assert_ne!(inside, &host_ns(kind), "{kind} namespace is the host's");
    }
    // The default spec asks for no user or time namespace: those stay the host's.
    for kind in ["user", "time"] {
        assert_eq!(seen[kind], host_ns(kind), "{kind} namespace must be the host's");
    }
}

#[test]
fn the_container_process_is_pid_1_of_its_namespace() {
    let s = Scratch::new("ns-pid1");
    let b = s.bundle("b", &["sh", "-c", "echo $$; cat /proc/1/comm; true"]);
    let out = ok(&s.run(&b, "c"));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1", "{out}");
    assert_eq!(lines[1], "sh", "pid 1 must be the configured process: {out}");
}

#[test]
fn hostname_and_domainname_are_the_configured_ones() {
    let s = Scratch::new("ns-uts");
    let mut b = s.bundle("b", &["sh", "-c", "hostname; cat /proc/sys/kernel/domainname"]);
    b.edit(|c| {
        c["hostname"] = json!("box-one");
        c["domainname"] = json!("example.test");
    });
    let out = ok(&s.run(&b, "c"));
    assert_eq!(out, "box-one\nexample.test\n");
    // The host's names are untouched.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_ne!(host.trim(), "box-one");
}

#[test]
fn a_new_network_namespace_has_only_the_loopback_interface() {
    let s = Scratch::new("ns-lo");
    // /proc/net/dev: two header lines, then one line per interface.
    let b = s.bundle("b", &["sh", "-c", "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"]);
    let out = ok(&s.run(&b, "c"));
    assert_eq!(out, "lo\n");
}

#[test]
fn joining_a_network_namespace_by_path_enters_that_namespace() {
    let s = Scratch::new("ns-join-path");
    let netns = NetNs::new("join-path");
    // A veth pair only that namespace has.
    let st =
        Command::new("ip").args(["-n", &netns.name, "link", "add", "berthv0", "type", "veth", "peer", "name", "berthv1"]).status().unwrap();
    assert!(st.success());
    let mut b = s.bundle("b", &["sh", "-c", "readlink /proc/self/ns/net; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort"]);
    let path = netns.path();
    b.edit(|c| {
        for ns in c["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == "network" {
                ns["path"] = json!(path);
            }
        }
    });
    let out = ok(&s.run(&b, "c"));
    let mut lines = out.lines();
    assert_eq!(lines.next().unwrap(), ns_link_of_file(&path));
    assert_eq!(lines.collect::<Vec<_>>(), ["berthv0", "berthv1", "lo"], "{out}");
}

#[test]
fn joining_another_containers_network_namespace_through_proc_shares_it() {
    let s = Scratch::new("ns-join-proc");
    let a = s.bundle("a", &["sleep", "300"]);
    let id_a = s.id("a");
    ok(&s.rt(&["run", "--detach", "--bundle", a.p(), &id_a]));
    let pid = s.state(&id_a)["pid"].as_i64().unwrap();
    let path = format!("/proc/{pid}/ns/net");
    let expected = std::fs::read_link(&path).unwrap().to_string_lossy().into_owned();
    assert_ne!(expected, host_ns("net"));

    let mut b = s.bundle("b", &["readlink", "/proc/self/ns/net"]);
    b.edit(|c| {
        for ns in c["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == "network" {
                ns["path"] = json!(path);
            }
        }
    });
    let out = ok(&s.run(&b, "b"));
    assert_eq!(out.trim(), expected);
}

fn chown_tree(path: &std::path::Path, uid: u32, gid: u32) {
    let st = Command::new("chown").args(["-R", "-h", &format!("{uid}:{gid}")]).arg(path).status().unwrap();
    assert!(st.success(), "chown -R {}", path.display());
}

#[test]
fn a_user_namespace_maps_container_root_to_the_configured_host_ids() {
    let s = Scratch::new("ns-user");
    let mut b = s.bundle("b", &["sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g; touch /tmp/made-inside"]);
    b.edit(|c| {
        c["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    });
    // As rootless setups do: the rootfs belongs to the mapped root.
    chown_tree(&b.rootfs(), 100000, 100000);
    let out = ok(&s.run(&b, "c"));
    let lines: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert_eq!(lines[0], ["0", "100000", "65536"], "uid_map: {out}");
    assert_eq!(lines[1], ["0", "100000", "65536"], "gid_map: {out}");
    assert_eq!(lines[2], ["0"], "id -u: {out}");
    assert_eq!(lines[3], ["0"], "id -g: {out}");
    let made = std::fs::metadata(b.rootfs().join("tmp/made-inside")).unwrap();
    assert_eq!((made.uid(), made.gid()), (100000, 100000));
}

#[test]
fn a_user_namespace_is_a_new_one_not_the_hosts() {
    let s = Scratch::new("ns-user-new");
    let mut b = s.bundle("b", &["readlink", "/proc/self/ns/user"]);
    b.edit(|c| {
        c["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 1000}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 1000}]);
    });
    chown_tree(&b.rootfs(), 200000, 200000);
    let out = ok(&s.run(&b, "c"));
    assert!(out.starts_with("user:["), "{out}");
    assert_ne!(out.trim(), host_ns("user"));
}

fn host_uptime() -> f64 {
    let s = std::fs::read_to_string("/proc/uptime").unwrap();
    s.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn a_time_namespace_applies_the_configured_offsets() {
    const DAYS_10: i64 = 10 * 86400;
    let s = Scratch::new("ns-time");
    let mut b = s.bundle("b", &["sh", "-c", "readlink /proc/self/ns/time; cat /proc/self/timens_offsets; cat /proc/uptime"]);
    b.edit(|c| {
        c["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "time"}));
        c["linux"]["timeOffsets"] = json!({
            "monotonic": {"secs": 2 * DAYS_10, "nanosecs": 0},
            "boottime": {"secs": DAYS_10, "nanosecs": 500},
        });
    });
    let before = host_uptime();
    let out = ok(&s.run(&b, "c"));
    let after = host_uptime();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[0].starts_with("time:["), "{out}");
    assert_ne!(lines[0], host_ns("time"), "time namespace is the host's");
    let offsets: BTreeMap<&str, (i64, i64)> = lines[1..3]
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0], (f[1].parse().unwrap(), f[2].parse().unwrap()))
        })
        .collect();
    assert_eq!(offsets["monotonic"], (2 * DAYS_10, 0), "{out}");
    assert_eq!(offsets["boottime"], (DAYS_10, 500), "{out}");
    // /proc/uptime follows the boottime clock.
    let uptime: f64 = lines[3].split_whitespace().next().unwrap().parse().unwrap();
    let offset = DAYS_10 as f64;
    assert!(
        uptime >= before + offset - 0.5 && uptime <= after + offset + 0.5,
        "uptime inside {uptime}, host {before}..{after}, offset {offset}"
    );
}
