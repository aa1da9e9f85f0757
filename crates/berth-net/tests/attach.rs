//! Attach and detach against real network namespaces (a `sleep` in a new netns stands for a
//! container), real packets over the bridge and through the published port's DNAT.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_net::{AttachRequest, NetworkSpec, Networks, PortMapping};

/// A process in its own network namespace, killed on drop.
struct Netns(Child);

impl Netns {
    fn new() -> Netns {
        let child = Command::new("unshare").args(["--net", "sleep", "120"]).spawn().expect("unshare");
        // Wait for unshare to have exec'd sleep inside its namespace.
        let me = std::fs::read_link("/proc/self/ns/net").unwrap();
        let t = Instant::now();
        while std::fs::read_link(format!("/proc/{}/ns/net", child.id())).map(|l| l == me).unwrap_or(true) {
            assert!(t.elapsed() < Duration::from_secs(5), "unshare did not make a namespace");
            std::thread::sleep(Duration::from_millis(5));
        }
        Netns(child)
    }
    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.0.id()))
    }
    fn sh(&self, cmd: &str) -> std::process::Output {
        Command::new("nsenter").args(["-t", &self.0.id().to_string(), "-n", "sh", "-c", cmd]).output().unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A root and network unique to this test; removes what it made even on failure.
struct Scratch {
    dir: tempfile::TempDir,
    bridge: String,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Ok(mut n) = Networks::open(self.dir.path()) {
            let ids: Vec<String> = n
                .list()
                .unwrap_or_default()
                .iter()
                .flat_map(|net| n.inspect(&net.name).map(|(_, e)| e).unwrap_or_default())
                .map(|e| e.container)
                .collect();
            for id in ids {
                let _ = n.detach(&id, None, false);
            }
        }
        let _ = Command::new("ip").args(["link", "del", &self.bridge]).stderr(Stdio::null()).status();
        let _ = berth_net::nft::delete(&berth_net::nft::table_for(self.dir.path()));
    }
}

/// A server process, killed on drop (even when an assertion fails).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn octet(salt: u32) -> u32 {
    (std::process::id() + salt) % 180 + 20
}

fn request(id: &str, ns: &Netns, network: &str, hosts: PathBuf, ports: Vec<PortMapping>) -> AttachRequest {
    AttachRequest {
        container: id.repeat(64 / id.len()),
        name: id.to_string(),
        hostname: id.to_string(),
        netns: ns.path(),
        network: network.to_string(),
        ip: None,
        ports,
        hosts_file: hosts,
        extra_hosts: vec![],
    }
}

fn nft_has(table: &str) -> bool {
    let out = Command::new("nft").args(["list", "tables"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().any(|l| l.trim() == format!("table inet {table}"))
}

#[test]
fn attached_namespaces_reach_each_other_and_a_published_port_from_loopback_then_leave_nothing() {
    let n = octet(1);
    let s = Scratch { dir: tempfile::tempdir().unwrap(), bridge: format!("bnt{n}a{}", std::process::id() % 1000) };
    let mut nets = Networks::open(s.dir.path()).unwrap();
    let net = nets
        .create(&NetworkSpec {
            name: "t1".into(),
            subnet: Some(format!("10.{n}.7.0/24").parse().unwrap()),
            bridge: Some(s.bridge.clone()),
            ..Default::default()
        })
        .unwrap();
    let (a, b) = (Netns::new(), Netns::new());
    let (ha, hb) = (s.dir.path().join("hosts-a"), s.dir.path().join("hosts-b"));
    std::fs::write(&ha, "").unwrap();
    std::fs::write(&hb, "").unwrap();
    let port = 20000 + (std::process::id() % 20000) as u16;
    let at_a = nets.attach(&request("a", &a, "t1", ha.clone(), PortMapping::parse(&format!("127.0.0.1:{port}:8080")).unwrap())).unwrap();
    let at_b = nets.attach(&request("b", &b, "t1", hb.clone(), vec![])).unwrap();
    assert_ne!(at_a.endpoint.ip, at_b.endpoint.ip);
    let addrs = String::from_utf8_lossy(&a.sh("ip -o addr show eth0").stdout).into_owned();
    assert!(addrs.contains(&format!("{}/24", at_a.endpoint.ip)), "{addrs}");
    let route = String::from_utf8_lossy(&a.sh("ip route show default").stdout).into_owned();
    assert!(route.contains(&format!("via {}", net.gateway)), "{route}");
    // b is listed in a's hosts file and the other way round.
    assert!(std::fs::read_to_string(&ha).unwrap().contains(&format!("{}\tb", at_b.endpoint.ip)));
    assert!(std::fs::read_to_string(&hb).unwrap().contains(&format!("{}\ta", at_a.endpoint.ip)));

    // A server in a; b and the host's loopback (through the DNAT) reach it.
    let www = s.dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "hello from a\n").unwrap();
    let _server = Server(
        Command::new("nsenter")
            .args(["-t", &a.0.id().to_string(), "-n", "busybox", "httpd", "-f", "-p", "8080", "-h", www.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(200));
    // (busybox 1.35's wget -T crashes; timeout bounds it instead.)
    let out = b.sh(&format!("busybox timeout 5 busybox wget -q -O - http://{}:8080/", at_a.endpoint.ip));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from a\n", "{}", String::from_utf8_lossy(&out.stderr));
    assert!(nft_has(&berth_net::nft::table_for(s.dir.path())), "no nftables table while containers are attached");
    let mut conn = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(5)).expect("the published port");
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut body = String::new();
    conn.read_to_string(&mut body).unwrap();
    assert!(body.ends_with("hello from a\n"), "{body}");

    assert!(nets.detach(&at_a.endpoint.container, None, false).unwrap().is_empty(), "b is still on the network");
    assert!(!std::fs::read_to_string(&hb).unwrap().contains("\ta\n"), "a is still in b's hosts");
    assert_eq!(nets.detach(&at_b.endpoint.container, None, false).unwrap(), vec![s.bridge.clone()]);
    assert!(nets.detach(&at_b.endpoint.container, None, false).unwrap().is_empty());
    assert_eq!(nets.reap_idle_bridges(Duration::ZERO).unwrap(), (vec![s.bridge.clone()], vec![]));
    assert!(
        Command::new("ip").args(["link", "show", &s.bridge]).stderr(Stdio::null()).output().unwrap().stdout.is_empty(),
        "the bridge outlived its containers"
    );
    assert!(Command::new("ip")
        .args(["link", "show", &at_a.endpoint.host_ifname])
        .stderr(Stdio::null())
        .output()
        .unwrap()
        .stdout
        .is_empty());
    assert!(nets.endpoints_of(&at_a.endpoint.container).unwrap().is_empty());
    assert!(!nft_has(&berth_net::nft::table_for(s.dir.path())), "the nftables table outlived the containers");
}

#[test]
fn a_gone_container_is_released_by_reconcile() {
    let n = octet(2);
    let s = Scratch { dir: tempfile::tempdir().unwrap(), bridge: format!("bnt{n}b{}", std::process::id() % 1000) };
    let mut nets = Networks::open(s.dir.path()).unwrap();
    nets.create(&NetworkSpec {
        name: "t2".into(),
        subnet: Some(format!("10.{n}.8.0/24").parse().unwrap()),
        bridge: Some(s.bridge.clone()),
        ..Default::default()
    })
    .unwrap();
    let a = Netns::new();
    let h = s.dir.path().join("hosts");
    std::fs::write(&h, "").unwrap();
    let at = nets.attach(&request("c", &a, "t2", h, vec![])).unwrap();
    drop(a);
    let released = nets.reconcile(&|_| false).unwrap();
    assert_eq!(released, vec![at.endpoint.container.clone()]);
    assert!(nets.inspect("t2").unwrap().1.is_empty());
    nets.sync_host().unwrap();
    assert!(Command::new("ip").args(["link", "show", &s.bridge]).stderr(Stdio::null()).output().unwrap().stdout.is_empty());
}
