//! Networking through the built `berth` binary: real containers, namespaces and packets on
//! test-owned networks (own root, bridge names and subnets per test, so that tests run in
//! parallel) and the host's loopback.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_berth");

/// A private root with a busybox image; removes its containers, networks, bridges and
/// nftables table on drop, even when the test failed.
struct Env {
    dir: PathBuf,
    tag: String,
    bridges: Vec<String>,
    children: Vec<Child>,
}

impl Env {
    fn new(name: &str) -> Env {
        let dir = std::env::temp_dir().join(format!("berth-net-it-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let tag = format!("{}{}", name.chars().filter(char::is_ascii_alphanumeric).take(4).collect::<String>(), std::process::id() % 10000);
        let e = Env { dir, tag, bridges: Vec::new(), children: Vec::new() };
        let tar = e.dir.join("rootfs.tar");
        rootfs_tar(&tar);
        let out = e.berth(&["import", tar.to_str().unwrap(), "localhost/bb:latest"]);
        assert!(out.status.success(), "import: {}", String::from_utf8_lossy(&out.stderr));
        e
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--root").arg(self.dir.join("root")).arg("--runroot").arg(self.dir.join("run")).args(args).stdin(Stdio::null());
        c
    }

    fn berth(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.berth(args);
        assert!(out.status.success(), "berth {args:?}: {}\n{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A network with a bridge and subnet of its own: 10.<pid-derived>.<n>.0/24.
    fn network(&mut self, n: u8, extra: &[&str]) -> (String, String) {
        let name = format!("net{n}-{}", self.tag);
        let bridge = format!("bt{}x{n}", self.tag);
        let subnet = format!("10.{}.{n}.0/24", std::process::id() % 180 + 20);
        let mut args = vec!["network", "create", "--subnet", &subnet, "--interface-name", &bridge];
        args.extend_from_slice(extra);
        args.push(&name);
        self.ok(&args);
        self.bridges.push(bridge);
        (name, subnet)
    }

    /// `berth run --rm` of a long-running container, in the background.
    fn spawn(&mut self, args: &[&str]) {
        let child = self.cmd(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        self.children.push(child);
    }

    /// Wait until `sh -c script` in a fresh container on `network` succeeds; its output.
    fn retry_run(&self, network: &str, script: &str) -> String {
        let t = Instant::now();
        loop {
            let out = self.berth(&["run", "--rm", "--network", network, "localhost/bb", "sh", "-c", script]);
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "{script}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The init pid of a running container.
    fn pid_of(&self, name: &str) -> i32 {
        let t = Instant::now();
        loop {
            let out = self.berth(&["inspect", "-f", "{{.State.Status}} {{.State.Pid}}", name]);
            let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if let Some(pid) = text.strip_prefix("running ").and_then(|p| p.parse::<i32>().ok()).filter(|p| *p > 0) {
                return pid;
            }
            assert!(t.elapsed() < Duration::from_secs(20), "container {name} did not start: {text}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn table(&self) -> String {
        berth_net::nft::table_for(&self.dir.join("root"))
    }

    /// Assert nothing of this root is left on the host.
    fn assert_clean(&self) {
        assert_eq!(self.ok(&["ps", "-a", "-q"]), "", "containers left");
        // Idle bridges and the table go a second after the last container (see
        // engine/network.rs, retire_bridges).
        let t = Instant::now();
        loop {
            let tables = String::from_utf8_lossy(&Command::new("nft").args(["list", "tables"]).output().unwrap().stdout).into_owned();
            if !tables.lines().any(|l| l.trim() == format!("table inet {}", self.table())) {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(10), "the nftables table is left: {tables}");
            std::thread::sleep(Duration::from_millis(100));
        }
        let (default_bridge, _) = berth_net::default_network_of(&self.dir.join("root"));
        for b in self.bridges.iter().chain([&default_bridge]) {
            let t = Instant::now();
            while Path::new(&format!("/sys/class/net/{b}")).exists() {
                assert!(t.elapsed() < Duration::from_secs(10), "bridge {b} is left");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let links = String::from_utf8_lossy(&Command::new("ip").args(["-o", "link"]).output().unwrap().stdout).into_owned();
        assert!(!links.contains(&format!("bt{}x", self.tag)), "{links}");
        for n in self.ok(&["network", "ls", "-q"]).lines() {
            let v: serde_json::Value = serde_json::from_str(&self.ok(&["network", "inspect", n])).unwrap();
            assert_eq!(v[0]["containers"].as_object().map(|o| o.len()), Some(0), "network {n} still has endpoints");
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let out = self.berth(&["ps", "-a", "-q"]);
        for id in String::from_utf8_lossy(&out.stdout).lines() {
            let _ = self.berth(&["rm", "-f", id]);
        }
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = self.berth(&["network", "prune", "-f"]);
        let _ = Command::new("nft").args(["delete", "table", "inet", &self.table()]).stderr(Stdio::null()).status();
        for b in self.bridges.iter().cloned().chain([berth_net::default_network_of(&self.dir.join("root")).0]) {
            let _ = Command::new("ip").args(["link", "del", &b]).stderr(Stdio::null()).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rootfs_tar(path: &Path) {
    let f = std::fs::File::create(path).unwrap();
    let mut b = tar::Builder::new(f);
    b.append_path_with_name("/bin/busybox", "bin/busybox").expect("/bin/busybox (busybox-static) is required");
    for applet in ["sh", "cat", "echo", "httpd", "wget", "ip", "sleep", "mkdir", "hostname", "true", "timeout", "readlink", "grep"] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox").unwrap();
    }
    for (p, text) in
        [("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"), ("etc/group", "root:x:0:\n"), ("www/index.html", "hello from httpd\n")]
    {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(text.len() as u64);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, p, text.as_bytes()).unwrap();
    }
    b.finish().unwrap();
}

/// GET / on 127.0.0.1:port, retried while the server starts.
fn http_get_loopback(port: u16) -> String {
    let t = Instant::now();
    loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut c = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))?;
            c.set_read_timeout(Some(Duration::from_secs(5)))?;
            c.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
            let mut body = String::new();
            c.read_to_string(&mut body)?;
            Ok(body)
        })();
        match attempt {
            Ok(b) if b.contains("200 OK") => return b,
            other => assert!(t.elapsed() < Duration::from_secs(20), "127.0.0.1:{port}: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A host port free right now, chosen from the pid so that parallel tests differ.
fn free_port(salt: u16) -> u16 {
    let base = 30000 + (std::process::id() % 3000) as u16 * 10 + salt;
    (base..base + 2000).find(|p| TcpListener::bind(("0.0.0.0", *p)).is_ok()).unwrap()
}

#[test]
fn two_containers_on_a_user_network_reach_each_other_by_name() {
    let mut e = Env::new("names");
    let (net, _) = e.network(1, &[]);
    let web = format!("web-{}", e.tag);
    e.spawn(&["run", "--rm", "--name", &web, "--network", &net, "localhost/bb", "httpd", "-f", "-p", "80", "-h", "/www"]);
    let body = e.retry_run(&net, &format!("wget -q -O - http://{web}/"));
    assert_eq!(body, "hello from httpd\n");
    // The client's hosts file listed the server under its name.
    let hosts = e.retry_run(&net, "cat /etc/hosts");
    assert!(hosts.lines().any(|l| l.split_whitespace().nth(1) == Some(web.as_str())), "{hosts}");
    e.ok(&["rm", "-f", &web]);
    e.assert_clean();
}

#[test]
fn a_published_port_is_reachable_on_the_hosts_loopback_and_listed_by_port() {
    let mut e = Env::new("publish");
    let (net, _) = e.network(2, &[]);
    let port = free_port(1);
    fn _subnet_gw(e: &Env, net: &str) -> String {
        let v: serde_json::Value = serde_json::from_str(&e.ok(&["network", "inspect", net])).unwrap();
        v[0]["subnets"][0]["gateway"].as_str().unwrap().to_string()
    }
    let srv = format!("pub-{}", e.tag);
    e.spawn(&[
        "run",
        "--rm",
        "--name",
        &srv,
        "--network",
        &net,
        "-p",
        &format!("{port}:80"),
        "-p",
        "8081",
        "localhost/bb",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
    ]);
    let body = http_get_loopback(port);
    assert!(body.ends_with("hello from httpd\n"), "{body}");
    // Hairpin: another container of the network through the gateway's (a host) address.
    let gateway = _subnet_gw(&e, &net);
    let body = e.retry_run(&net, &format!("wget -q -O - http://{gateway}:{port}/"));
    assert_eq!(body, "hello from httpd\n");
    let ports = e.ok(&["port", &srv]);
    assert!(ports.contains(&format!("80/tcp -> 0.0.0.0:{port}")), "{ports}");
    let random = ports.lines().find(|l| l.starts_with("8081/tcp -> 0.0.0.0:")).unwrap_or_else(|| panic!("{ports}"));
    assert_ne!(random.rsplit(':').next(), Some("0"), "-p 8081 got no host port: {ports}");
    assert_eq!(e.ok(&["port", &srv, "80"]).trim(), format!("0.0.0.0:{port}"));
    e.ok(&["rm", "-f", &srv]);
    assert!(
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)).is_err(),
        "the port still forwards after rm"
    );
    e.assert_clean();
}

#[test]
fn a_host_port_in_use_fails_clearly_and_creates_nothing() {
    let mut e = Env::new("inuse");
    let (net, _) = e.network(3, &[]);
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let out = e.berth(&["run", "--rm", "--network", &net, "-p", &format!("{port}:80"), "localhost/bb", "true"]);
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("host port 0.0.0.0:{port}/tcp is already in use")), "{err}");
    // Without --rm either: refused before anything exists.
    let out = e.berth(&["run", "--network", &net, "-p", &format!("{port}:80"), "localhost/bb", "true"]);
    assert_eq!(out.status.code(), Some(125));
    e.assert_clean();
    assert_eq!(std::fs::read_dir(e.dir.join("root/containers")).unwrap().count(), 0);
}

#[test]
fn thirty_parallel_containers_get_distinct_addresses_and_leave_nothing() {
    let mut e = Env::new("thirty");
    let (net, subnet) = e.network(4, &[]);
    let prefix = subnet.trim_end_matches("0/24").to_string();
    let threads: Vec<_> = (0..30)
        .map(|_| {
            let cmd = e.cmd(&["run", "--rm", "--network", &net, "localhost/bb", "sh", "-c", "ip -o -4 addr show eth0; sleep 8"]);
            std::thread::spawn(move || {
                let mut cmd = cmd;
                cmd.output().unwrap()
            })
        })
        .collect();
    let mut ips = Vec::new();
    for t in threads {
        let out = t.join().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let ip = text.split_whitespace().find(|w| w.starts_with(&prefix)).unwrap_or_else(|| panic!("no address: {text}")).to_string();
        ips.push(ip);
    }
    let mut unique = ips.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 30, "duplicate addresses: {ips:?}");
    e.assert_clean();
    let links = String::from_utf8_lossy(&Command::new("ip").args(["-o", "link"]).output().unwrap().stdout).into_owned();
    let tag = e.tag.clone();
    assert!(!links.contains(&format!("bt{tag}x4")), "{links}");
}

#[test]
fn network_none_has_only_loopback_and_container_mode_shares_a_namespace() {
    let mut e = Env::new("modes");
    let out = e.ok(&["run", "--rm", "--network", "none", "localhost/bb", "ip", "-o", "link"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains(": lo:"), "{out}");
    let refused = e.berth(&["run", "--rm", "--network", "none", "-p", "80", "localhost/bb", "true"]);
    assert_eq!(refused.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("need a bridge network"), "{}", String::from_utf8_lossy(&refused.stderr));
    let (net, _) = e.network(5, &[]);
    let link = e.ok(&["run", "--rm", "--network", &net, "localhost/bb", "ip", "-o", "link", "show", "eth0"]);
    assert!(link.contains(&format!(" mtu {} ", berth_net::networks::host_default_mtu())), "{link}");
    let holder = format!("holder-{}", e.tag);
    e.spawn(&["run", "--rm", "--name", &holder, "--network", &net, "localhost/bb", "sleep", "60"]);
    let pid = e.pid_of(&holder);
    let want = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap().to_string_lossy().into_owned();
    let out = e.ok(&[
        "run",
        "--rm",
        "--network",
        &format!("container:{holder}"),
        "localhost/bb",
        "sh",
        "-c",
        "readlink /proc/self/ns/net; cat /etc/hosts",
    ]);
    assert!(out.starts_with(&want), "joined {out}, want {want}");
    assert!(
        out.lines().any(|l| l.starts_with("10.") && l.ends_with(&format!(" {holder}"))),
        "the holder's hosts file is not shared: {out}"
    );
    let ns_out = e.ok(&["run", "--rm", "--network", &format!("ns:/proc/{pid}/ns/net"), "localhost/bb", "readlink", "/proc/self/ns/net"]);
    assert_eq!(ns_out.trim(), want);
    e.ok(&["rm", "-f", &holder]);
    e.assert_clean();
}

#[test]
fn hosts_and_resolv_conf_follow_hostname_add_host_and_dns() {
    let mut e = Env::new("etc");
    let (net, _) = e.network(6, &[]);
    let out = e.ok(&[
        "run",
        "--rm",
        "--network",
        &net,
        "--hostname",
        "box",
        "--add-host",
        "db.local:10.9.9.9",
        "--dns",
        "192.0.2.53",
        "localhost/bb",
        "sh",
        "-c",
        "cat /etc/hosts /etc/resolv.conf; hostname",
    ]);
    assert!(out.contains("10.9.9.9\tdb.local\n"), "{out}");
    assert!(out.lines().any(|l| l.ends_with("\tbox berth_") || (l.contains("\tbox ") && l.starts_with("10."))), "{out}");
    assert!(out.contains("nameserver 192.0.2.53\n") && out.matches("nameserver").count() == 1, "{out}");
    assert!(out.ends_with("box\n"));
    e.assert_clean();
}

#[test]
fn network_commands_create_inspect_connect_disconnect_and_prune() {
    let mut e = Env::new("cmds");
    let (a, subnet_a) = e.network(7, &["--internal"]);
    let (b, subnet_b) = e.network(8, &[]);
    let ls = e.ok(&["network", "ls"]);
    assert!(ls.contains(&a) && ls.contains(&b) && ls.contains("bridge"), "{ls}");
    let v: serde_json::Value = serde_json::from_str(&e.ok(&["network", "inspect", &a])).unwrap();
    assert_eq!(v[0]["internal"], true);
    assert_eq!(v[0]["subnets"][0]["subnet"], subnet_a.as_str());
    let dup = e.berth(&["network", "create", "--subnet", &subnet_a, "other"]);
    assert_eq!(dup.status.code(), Some(125), "an overlapping subnet was accepted");
    let c = format!("conn-{}", e.tag);
    e.spawn(&["run", "--rm", "--name", &c, "--network", &a, "--ip", &subnet_a.replace("0/24", "42"), "localhost/bb", "sleep", "60"]);
    let pid = e.pid_of(&c);
    let addrs = || {
        String::from_utf8_lossy(
            &Command::new("nsenter").args(["-t", &pid.to_string(), "-n", "ip", "-o", "-4", "addr"]).output().unwrap().stdout,
        )
        .into_owned()
    };
    let t = Instant::now();
    while !addrs().contains(&subnet_a.replace("0/24", "42/24")) {
        assert!(t.elapsed() < Duration::from_secs(10), "--ip not applied: {}", addrs());
        std::thread::sleep(Duration::from_millis(100));
    }
    let used = e.berth(&["network", "rm", &a]);
    assert_eq!(used.status.code(), Some(125), "a network in use was removed");
    e.ok(&["network", "connect", &b, &c]);
    assert!(addrs().contains(&subnet_b.replace("0/24", "2/24")), "{}", addrs());
    e.ok(&["network", "disconnect", &b, &c]);
    assert!(!addrs().contains(&subnet_b.replace("0/24", "")), "{}", addrs());
    e.ok(&["rm", "-f", &c]);
    let pruned = e.ok(&["network", "prune", "-f"]);
    assert!(pruned.contains(&a) && pruned.contains(&b), "{pruned}");
    assert_eq!(e.ok(&["network", "ls", "-q"]).trim(), "bridge");
    e.assert_clean();
}

#[test]
fn addresses_of_a_killed_berth_are_reconciled_by_the_next_command() {
    let mut e = Env::new("crash");
    let (net, _) = e.network(9, &[]);
    let name = format!("crash-{}", e.tag);
    e.spawn(&["run", "--rm", "--name", &name, "--network", &net, "-p", &format!("{}:80", free_port(3)), "localhost/bb", "sleep", "60"]);
    let pid = e.pid_of(&name);
    // SIGKILL the foreground berth, then the container: nobody detaches it.
    for c in &mut e.children {
        let _ = c.kill();
        let _ = c.wait();
    }
    // SAFETY: kill with a pid and a signal.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(300));
    let v: serde_json::Value = serde_json::from_str(&e.ok(&["network", "inspect", &net])).unwrap();
    assert_eq!(v[0]["containers"].as_object().map(|o| o.len()), Some(0), "not reconciled: {v}");
    e.ok(&["rm", "-f", &name]);
    e.assert_clean();
}

#[test]
fn an_internal_network_reaches_no_other_network_while_a_normal_one_does() {
    let mut e = Env::new("internal");
    let (inner, _) = e.network(10, &["--internal"]);
    let (outer, _) = e.network(11, &[]);
    let (other, _) = e.network(12, &[]);
    let srv = format!("out-{}", e.tag);
    e.spawn(&["run", "--rm", "--name", &srv, "--network", &outer, "localhost/bb", "httpd", "-f", "-p", "80", "-h", "/www"]);
    let pid = e.pid_of(&srv);
    let ip = String::from_utf8_lossy(
        &Command::new("nsenter").args(["-t", &pid.to_string(), "-n", "ip", "-o", "-4", "addr", "show", "eth0"]).output().unwrap().stdout,
    )
    .split_whitespace()
    .find(|w| w.starts_with("10."))
    .and_then(|w| w.split('/').next())
    .map(String::from)
    .expect("the server's address");
    // From another (normal) network: forwarded through the host, masqueraded.
    // (`; exit $?`: the shell forks, so that timeout does not signal a pid 1, which ignores it.)
    assert_eq!(e.retry_run(&other, &format!("timeout 5 wget -q -O - http://{ip}/; exit $?")), "hello from httpd\n");
    // From the internal network: dropped in forward.
    let out = e.berth(&[
        "run",
        "--rm",
        "--network",
        &inner,
        "localhost/bb",
        "sh",
        "-c",
        &format!("timeout 3 wget -q -O - http://{ip}/; exit $?"),
    ]);
    assert!(!out.status.success(), "an internal network reached {ip}: {}", String::from_utf8_lossy(&out.stdout));
    e.ok(&["rm", "-f", &srv]);
    e.assert_clean();
}
