//! Helpers for the `berth` binary tests: a private root and environment per test, generated
//! multi-layer images (real gzip tar layers, one with a whiteout) pushed with the library's
//! registry client, a request-counting proxy, and overlay mounts of the pulled snapshots.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use berth_image::registry::{PushOptions, RegistryClient, RegistryConfig};
use sha2::{Digest as _, Sha256};

/// A private root, auth dirs and registries config for one test.
pub struct Berth {
    /// Keeps everything alive.
    pub dir: tempfile::TempDir,
}

impl Berth {
    /// A fresh root whose registries config makes every 127.0.0.1 registry plain HTTP.
    pub fn new() -> Berth {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("run")).unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        std::fs::write(dir.path().join("registries.toml"), "insecure-registries = [\"127.0.0.1\"]\n").unwrap();
        Berth { dir }
    }

    /// The storage root.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// The containers auth file `login` writes.
    pub fn auth_file(&self) -> PathBuf {
        self.dir.path().join("run/containers/auth.json")
    }

    /// A `berth` command with this test's root, config and environment.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
        cmd.arg("--root").arg(self.root()).arg("--registries-conf").arg(self.dir.path().join("registries.toml"));
        cmd.args(args);
        cmd.env("XDG_RUNTIME_DIR", self.dir.path().join("run"))
            .env("HOME", self.dir.path().join("home"))
            .env_remove("REGISTRY_AUTH_FILE")
            .stdin(std::process::Stdio::null());
        cmd
    }

    /// Run and return the output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Run, assert success, return stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "berth {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Snapshot directory names under `<root>/layers` (complete ones only).
    pub fn snapshots(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.root().join("layers"))
            .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| !n.starts_with('.')).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Blob names under `<root>/blobs/sha256` (complete ones only).
    pub fn blobs(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.root().join("blobs/sha256"))
            .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| !n.starts_with('.')).collect())
            .unwrap_or_default();
        v.sort();
        v
    }
}

/// `sha256:<hex>` of bytes.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// One generated layer: its tar, the gzip blob, and digests.
#[derive(Clone)]
pub struct GenLayer {
    /// gzip bytes (the blob).
    pub blob: Vec<u8>,
    /// `sha256:` of the blob.
    pub digest: String,
    /// `sha256:` of the tar.
    pub diff_id: String,
}

/// A tar of `(path, contents)` regular files; a `None` content is a whiteout entry `.wh.<name>`.
pub fn layer(files: &[(&str, Option<&[u8]>)]) -> GenLayer {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let (name, data): (String, &[u8]) = match data {
            Some(d) => (path.to_string(), d),
            None => {
                let p = Path::new(path);
                let parent = p.parent().map(|d| d.to_string_lossy().into_owned()).unwrap_or_default();
                let base = p.file_name().unwrap().to_string_lossy();
                let wh = if parent.is_empty() { format!(".wh.{base}") } else { format!("{parent}/.wh.{base}") };
                (wh, &[])
            }
        };
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, &name, data).unwrap();
    }
    let tar = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let blob = gz.finish().unwrap();
    GenLayer { digest: sha256(&blob), diff_id: sha256(&tar), blob }
}

/// An image: layers, config and manifest bytes.
#[derive(Clone)]
pub struct GenImage {
    /// Bottom first.
    pub layers: Vec<GenLayer>,
    /// Config JSON.
    pub config: Vec<u8>,
    /// Manifest JSON.
    pub manifest: Vec<u8>,
}

impl GenImage {
    /// An image of `layers` for `arch`, with `Cmd` and a history entry per layer.
    pub fn new(layers: Vec<GenLayer>, arch: &str) -> GenImage {
        let config = serde_json::json!({
            "created": "2024-01-02T03:04:05Z", "architecture": arch, "os": "linux",
            "config": {"Cmd": ["/bin/sh", "-c", "echo hi"], "Env": ["PATH=/usr/bin:/bin"], "WorkingDir": "/srv"},
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()},
            "history": layers.iter().enumerate().map(|(i, _)| serde_json::json!({"created": "2024-01-02T03:04:05Z", "created_by": format!("step {i}")})).collect::<Vec<_>>(),
        });
        let config = serde_json::to_vec(&config).unwrap();
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
            "layers": layers.iter().map(|l| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": l.digest, "size": l.blob.len()})).collect::<Vec<_>>(),
        });
        GenImage { manifest: serde_json::to_vec(&manifest).unwrap(), config, layers }
    }

    /// The config digest (the image id).
    pub fn id(&self) -> String {
        sha256(&self.config)
    }

    /// The manifest digest.
    pub fn digest(&self) -> String {
        sha256(&self.manifest)
    }

    /// Push blobs and the manifest (under `reference`, a tag or digest) with the library client.
    pub fn push(&self, client: &RegistryClient, repo: &str, reference: &str) {
        for (digest, bytes) in self.layers.iter().map(|l| (&l.digest, &l.blob)).chain([(&sha256(&self.config), &self.config)]) {
            client.push_blob(repo, digest, bytes.len() as u64, &mut bytes.as_slice(), &PushOptions::default()).unwrap();
        }
        client.put_manifest(repo, reference, "application/vnd.oci.image.manifest.v1+json", &self.manifest).unwrap();
    }
}

/// The three-layer test image: files in every layer, and layer 2 whites out `etc/gone`.
pub fn three_layer_image(arch: &str) -> GenImage {
    GenImage::new(
        vec![
            layer(&[("etc/keep", Some(b"kept")), ("etc/gone", Some(b"doomed")), ("one/a", Some(b"layer one"))]),
            layer(&[("two/b", Some(b"layer two")), ("etc/gone", None)]),
            layer(&[("three/c", Some(arch.as_bytes())), ("one/a", Some(b"overwritten by three"))]),
        ],
        arch,
    )
}

/// A client for a plain-HTTP loopback registry.
pub fn client(host: &str) -> RegistryClient {
    RegistryClient::new(host, &RegistryConfig { insecure: vec![host.to_string()], ..Default::default() }, None).unwrap()
}

/// The host's architecture in OCI spelling.
pub fn host_arch() -> &'static str {
    berth_image::unpack::import::host_architecture()
}

/// A TCP proxy in front of a registry that records every request line (`GET /v2/…`).
pub struct CountingProxy {
    /// `127.0.0.1:<port>`
    pub host: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl CountingProxy {
    /// Proxy to `upstream`.
    pub fn start(upstream: &str) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (seen_thread, upstream) = (seen.clone(), upstream.to_string());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&upstream) else { continue };
                let seen = seen_thread.clone();
                let (mut client_read, mut server_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut server_read, mut client_write) = (server, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut server_read, &mut client_write);
                    let _ = client_write.shutdown(std::net::Shutdown::Both);
                });
                std::thread::spawn(move || forward_requests(&mut client_read, &mut server_write, &seen));
            }
        });
        CountingProxy { host, seen }
    }

    /// Request lines seen so far (`METHOD PATH`).
    pub fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    /// How many GETs of blob `digest` were seen.
    pub fn blob_gets(&self, digest: &str) -> usize {
        self.requests().iter().filter(|r| r.starts_with("GET ") && r.contains("/blobs/") && r.ends_with(digest)).count()
    }

    /// How many blob GETs were seen in all.
    pub fn all_blob_gets(&self) -> usize {
        self.requests().iter().filter(|r| r.starts_with("GET ") && r.contains("/blobs/sha256:")).count()
    }
}

/// Copy client → server, noting each request's line (bodies skipped by Content-Length).
fn forward_requests(from: &mut TcpStream, to: &mut TcpStream, seen: &Mutex<Vec<String>>) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    let mut skip: usize = 0;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        pending.extend_from_slice(&buf[..n]);
        loop {
            if skip > 0 {
                let k = skip.min(pending.len());
                pending.drain(..k);
                skip -= k;
                if skip > 0 {
                    break;
                }
            }
            let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else { break };
            let head = String::from_utf8_lossy(&pending[..end]).into_owned();
            pending.drain(..end + 4);
            let mut lines = head.lines();
            let line = lines.next().unwrap_or("");
            let mut parts = line.split_whitespace();
            let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            seen.lock().unwrap().push(format!("{method} {}", target.split('?').next().unwrap_or(target)));
            skip = lines
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0);
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// An overlay mount of snapshots (bottom first) on a temp dir; unmounted on drop.
pub struct OverlayMount {
    /// The merged tree.
    pub target: PathBuf,
    _dir: tempfile::TempDir,
}

impl OverlayMount {
    /// Mount `lower` (bottom first) read-only.
    pub fn new(lower: &[PathBuf]) -> OverlayMount {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("merged");
        std::fs::create_dir(&target).unwrap();
        let lowerdir = lower.iter().rev().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":");
        let status =
            Command::new("mount").args(["-t", "overlay", "overlay", "-o", &format!("lowerdir={lowerdir}")]).arg(&target).status().unwrap();
        assert!(status.success(), "overlay mount of {lowerdir} failed");
        OverlayMount { target, _dir: dir }
    }
}

impl Drop for OverlayMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.target).status();
    }
}
