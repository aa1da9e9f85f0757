//! `berth pull` under hostile conditions: a full disk (the root on a small tmpfs) and a SIGKILL
//! in the middle of a transfer (slowed down by a throttling proxy), each followed by a pull
//! that succeeds and a store with no corrupt blob, no partial snapshot and no leftovers.

#[path = "../../berth-image/tests/registry_support/mod.rs"]
mod registry_support;
mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use registry_support::{random_bytes, registry_available, RegistryOptions, RegistryProcess};
use support::*;

/// Whether this test can mount (tmpfs needs CAP_SYS_ADMIN); says why not.
fn can_mount() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("SKIP: mounting a tmpfs needs root");
    }
    root
}

/// A tmpfs mounted on a directory, unmounted when dropped (also when the test panics).
struct TmpfsMount {
    target: PathBuf,
}

impl TmpfsMount {
    fn new(target: &Path, size: &str) -> TmpfsMount {
        std::fs::create_dir_all(target).unwrap();
        let status = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(target).status().unwrap();
        assert!(status.success(), "mount tmpfs on {}", target.display());
        TmpfsMount { target: target.to_path_buf() }
    }

    /// Change the size, keeping the content.
    fn resize(&self, size: &str) {
        let status = Command::new("mount").args(["-o", &format!("remount,size={size}")]).arg(&self.target).status().unwrap();
        assert!(status.success(), "remount {} with size={size}", self.target.display());
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let ok = Command::new("umount").arg(&self.target).status().is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.target).status();
        }
    }
}

/// A `berth` child process, killed and reaped when dropped.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A TCP proxy that forwards registry answers at `rate` bytes/s for all connections together
/// (0: unthrottled), counting the bytes it forwarded. Stops accepting when dropped.
struct ThrottlingProxy {
    host: String,
    rate: Arc<AtomicU64>,
    forwarded: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl ThrottlingProxy {
    fn start(upstream: &str, rate: u64) -> ThrottlingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let rate = Arc::new(AtomicU64::new(rate));
        let forwarded = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (rate_t, forwarded_t, stop_t, upstream) = (rate.clone(), forwarded.clone(), stop.clone(), upstream.to_string());
        std::thread::spawn(move || {
            // The budget is shared: `sent` bytes may have gone by `started + sent / rate`.
            let budget = Arc::new(std::sync::Mutex::new((Instant::now(), 0u64)));
            for client in listener.incoming() {
                if stop_t.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&upstream) else { continue };
                let (mut client_read, mut server_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut server_read, mut client_write) = (server, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut client_read, &mut server_write);
                    let _ = server_write.shutdown(Shutdown::Write);
                });
                let (rate, forwarded, budget) = (rate_t.clone(), forwarded_t.clone(), budget.clone());
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match server_read.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let wait = {
                            let mut b = budget.lock().unwrap();
                            let r = rate.load(Ordering::Relaxed);
                            if r == 0 {
                                *b = (Instant::now(), 0);
                                Duration::ZERO
                            } else {
                                b.1 += n as u64;
                                (b.0 + Duration::from_secs_f64(b.1 as f64 / r as f64)).saturating_duration_since(Instant::now())
                            }
                        };
                        std::thread::sleep(wait);
                        if client_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        forwarded.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    let _ = client_write.shutdown(Shutdown::Both);
                });
            }
        });
        ThrottlingProxy { host, rate, forwarded, stop }
    }

    fn unthrottle(&self) {
        self.rate.store(0, Ordering::Relaxed);
    }

    fn forwarded(&self) -> u64 {
        self.forwarded.load(Ordering::Relaxed)
    }
}

impl Drop for ThrottlingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag and its listener closes.
        let _ = TcpStream::connect(&self.host);
    }
}

/// Every path under `dir` (relative, sorted) with its size and a hash of its content.
fn tree(dir: &Path) -> Vec<(String, u64, String)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
            if meta.is_dir() {
                todo.push(e.path());
                out.push((rel + "/", 0, String::new()));
            } else {
                let hash = if meta.is_file() { sha256(&std::fs::read(e.path()).unwrap()) } else { String::new() };
                out.push((rel, meta.len(), hash));
            }
        }
    }
    out.sort();
    out
}

/// Names in `dir` starting with `prefix`.
fn leftovers(dir: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with(prefix)).collect())
        .unwrap_or_default()
}

/// A layer of one big incompressible file plus `small` little files, all under `dir/`.
fn big_layer(seed: u64, dir: &str, big: usize, small: usize) -> (GenLayer, Vec<(String, Vec<u8>)>) {
    let mut files = vec![(format!("{dir}/big"), random_bytes(seed, big))];
    files.extend((0..small).map(|i| (format!("{dir}/small/{i}"), random_bytes(seed * 1000 + i as u64, 100 + i % 700))));
    let entries: Vec<(&str, Option<&[u8]>)> = files.iter().map(|(n, d)| (n.as_str(), Some(d.as_slice()))).collect();
    (layer(&entries), files)
}

/// The snapshot directories of a pulled image (bottom first), from `image inspect`.
fn snapshot_dirs(berth: &Berth, name: &str) -> Vec<PathBuf> {
    let inspect: serde_json::Value = serde_json::from_str(&berth.ok(&["image", "inspect", name])).unwrap();
    inspect[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| berth.root().join("layers").join(l["ChainID"].as_str().unwrap().trim_start_matches("sha256:")))
        .collect()
}

/// Every visible blob re-hashes to its name.
fn assert_blobs_verify(berth: &Berth) {
    for name in berth.blobs() {
        let bytes = std::fs::read(berth.root().join("blobs/sha256").join(&name)).unwrap();
        assert_eq!(sha256(&bytes), format!("sha256:{name}"), "blob {name} is corrupt");
    }
}

#[test]
fn pull_onto_a_full_disk_fails_with_enospc_and_leaves_the_store_as_it_was() {
    if !registry_available() || !can_mount() {
        return;
    }
    let registry = RegistryProcess::start(RegistryOptions::default());
    let small = three_layer_image(host_arch());
    small.push(&client(&registry.host), "small", "v1");
    // 3 × 4 MiB of random data: 12 MiB of blobs plus 12 MiB unpacked, on an 8 MiB tmpfs.
    let layers: Vec<_> = (0..3).map(|i| big_layer(40 + i, &format!("l{i}"), 4 << 20, 50)).collect();
    let image = GenImage::new(layers.iter().map(|(l, _)| l.clone()).collect(), host_arch());
    image.push(&client(&registry.host), "big", "v1");

    let berth = Berth::new();
    let disk = TmpfsMount::new(&berth.root(), "8m");
    berth.ok(&["pull", "-q", &format!("{}/small:v1", registry.host)]);
    let before = tree(&berth.root());
    let index_before = std::fs::read(berth.root().join("index.json")).unwrap();

    let name = format!("{}/big:v1", registry.host);
    let out = berth.run(&["pull", "-q", &name]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("No space left on device"), "ENOSPC is named: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one message: {stderr}");
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));

    assert_eq!(std::fs::read(berth.root().join("index.json")).unwrap(), index_before, "index.json unchanged");
    // Lock files of the blobs that were not stored are the only additions; prune takes them.
    let is_lock = |p: &str| p.starts_with("locks/") && p.ends_with(".lock");
    let after: Vec<_> = tree(&berth.root()).into_iter().filter(|(p, _, _)| !is_lock(p)).collect();
    let before_no_locks: Vec<_> = before.iter().filter(|(p, _, _)| !is_lock(p)).cloned().collect();
    assert_eq!(after, before_no_locks, "no new blob, snapshot or temp file");
    berth.ok(&["image", "prune"]);
    assert_eq!(tree(&berth.root()), before, "after prune the store is exactly as before");

    disk.resize("128m");
    let out = berth.ok(&["pull", "-q", &name]);
    assert_eq!(out.trim(), image.id().trim_start_matches("sha256:"));
    assert_blobs_verify(&berth);
    for ((_, files), dir) in layers.iter().zip(snapshot_dirs(&berth, &name)) {
        for (path, data) in files {
            assert!(std::fs::read(dir.join(path)).unwrap() == *data, "{path} in {}", dir.display());
        }
    }
    assert_eq!(berth.ok(&["images", "-q"]).lines().count(), 2);
}

#[test]
fn sigkill_in_the_middle_of_a_pull_leaves_nothing_that_breaks_the_next_pull() {
    if !registry_available() {
        return;
    }
    let registry = RegistryProcess::start(RegistryOptions::default());
    // About 18 MB through a 2 MB/s proxy: the pull takes ~9 s, the kill comes after ~3 s.
    let layers: Vec<_> = (0..3).map(|i| big_layer(60 + i, &format!("k{i}"), 5 << 20, 300)).collect();
    let image = GenImage::new(layers.iter().map(|(l, _)| l.clone()).collect(), host_arch());
    image.push(&client(&registry.host), "slow", "v1");
    let proxy = ThrottlingProxy::start(&registry.host, 2_000_000);
    let berth = Berth::new();
    let name = format!("{}/slow:v1", proxy.host);
    let (blob_dir, layer_dir) = (berth.root().join("blobs/sha256"), berth.root().join("layers"));

    let kill_mid_pull = || {
        let start = proxy.forwarded();
        let mut child = ChildGuard(berth.cmd(&["pull", "-q", &name]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
        let deadline = Instant::now() + Duration::from_secs(60);
        while proxy.forwarded() < start + 6_000_000 {
            assert!(child.0.try_wait().unwrap().is_none(), "the pull ended before it could be killed");
            assert!(Instant::now() < deadline, "the pull made no progress");
            std::thread::sleep(Duration::from_millis(20));
        }
        child.0.kill().unwrap();
        let status = child.0.wait().unwrap();
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL));
        let left = [leftovers(&blob_dir, ".tmp-"), leftovers(&layer_dir, ".unpack-")].concat();
        assert!(!left.is_empty(), "a killed pull leaves temp entries behind");
        assert!(berth.ok(&["images", "-q"]).is_empty(), "nothing is tagged");
    };

    // `image prune` removes what the killed pull left at once (its locks are free).
    kill_mid_pull();
    berth.ok(&["image", "prune"]);
    assert_eq!(leftovers(&blob_dir, ".tmp-"), Vec::<String>::new());
    assert_eq!(leftovers(&layer_dir, ".unpack-"), Vec::<String>::new());
    assert_blobs_verify(&berth);

    // So does the next pull, which completes what is missing.
    kill_mid_pull();
    proxy.unthrottle();
    let out = berth.ok(&["pull", "-q", &name]);
    assert_eq!(out.trim(), image.id().trim_start_matches("sha256:"));
    assert_eq!(leftovers(&blob_dir, ".tmp-"), Vec::<String>::new());
    assert_eq!(leftovers(&layer_dir, ".unpack-"), Vec::<String>::new());
    assert_blobs_verify(&berth);
    let mut want: Vec<String> = image.layers.iter().map(|l| l.digest[7..].to_string()).collect();
    want.extend([image.id()[7..].to_string(), image.digest()[7..].to_string()]);
    want.sort();
    assert_eq!(berth.blobs(), want, "the layers, the config and the manifest");
    let dirs = snapshot_dirs(&berth, &name);
    assert_eq!(berth.snapshots().len(), 3);
    for ((_, files), dir) in layers.iter().zip(&dirs) {
        let count = tree(dir).iter().filter(|(p, _, _)| !p.ends_with('/')).count();
        assert_eq!(count, files.len(), "{} holds exactly its layer's files", dir.display());
        for (path, data) in files {
            assert!(std::fs::read(dir.join(path)).unwrap() == *data, "{path} in {}", dir.display());
        }
    }
}
