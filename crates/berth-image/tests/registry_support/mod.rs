//! Helpers for the registry tests: a real `docker-registry` process per test, a tiny fake
//! HTTP server, and generated images (random layers, config, manifests, a two-platform index).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_image::registry::sha256_digest;

pub mod token_server;

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Whether Debian's `docker-registry` is installed; tests that need it say so and pass when not.
pub fn registry_available() -> bool {
    let found = Command::new("docker-registry").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("SKIP: docker-registry is not installed (scripts/setup installs it)");
    }
    found
}

/// Extra sections of a registry's config.yml.
#[derive(Default)]
pub struct RegistryOptions {
    /// `auth:` section body (indented by the caller with two spaces).
    pub auth_yaml: Option<String>,
    /// (certificate, key) PEM paths for `http.tls`.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// A `docker-registry serve` process on 127.0.0.1, killed when dropped.
pub struct RegistryProcess {
    child: Child,
    /// `127.0.0.1:<port>`
    pub host: String,
    /// Keeps storage and config alive.
    pub dir: tempfile::TempDir,
}

impl RegistryProcess {
    /// Start a registry with `options`, waiting until it accepts connections.
    pub fn start(options: RegistryOptions) -> RegistryProcess {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let storage = dir.path().join("storage");
        std::fs::create_dir(&storage).unwrap();
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: berth-test-secret\n",
            storage.display()
        );
        if let Some((cert, key)) = &options.tls {
            yaml.push_str(&format!("  tls:\n    certificate: {}\n    key: {}\n", cert.display(), key.display()));
        }
        if let Some(auth) = &options.auth_yaml {
            yaml.push_str("auth:\n");
            yaml.push_str(auth);
        }
        let config = dir.path().join("config.yml");
        std::fs::write(&config, yaml).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn docker-registry");
        let process = RegistryProcess { child, host: format!("127.0.0.1:{port}"), dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&process.host).is_err() {
            assert!(Instant::now() < deadline, "registry did not start: {}", process.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        process
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for RegistryProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Deterministic pseudo-random bytes (xorshift), so tests need no RNG crate.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// One generated blob.
#[derive(Clone)]
pub struct Blob {
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// `sha256:…`
    pub digest: String,
    /// Its media type.
    pub media_type: String,
}

impl Blob {
    /// A blob of `bytes`.
    pub fn new(bytes: Vec<u8>, media_type: &str) -> Blob {
        Blob { digest: sha256_digest(&bytes), bytes, media_type: media_type.to_string() }
    }

    /// Its descriptor JSON.
    pub fn descriptor(&self) -> serde_json::Value {
        serde_json::json!({"mediaType": self.media_type, "digest": self.digest, "size": self.bytes.len()})
    }
}

/// One platform's image: layers, config, manifest.
pub struct PlatformImage {
    /// os, architecture, variant
    pub platform: (String, String, Option<String>),
    /// Layer blobs.
    pub layers: Vec<Blob>,
    /// The config blob.
    pub config: Blob,
    /// The manifest document.
    pub manifest: Blob,
}

/// An image for `os/arch[/variant]` with `layer_sizes` random layers.
pub fn platform_image(seed: u64, os: &str, arch: &str, variant: Option<&str>, layer_sizes: &[usize]) -> PlatformImage {
    let layers: Vec<Blob> = layer_sizes
        .iter()
        .enumerate()
        .map(|(i, size)| Blob::new(random_bytes(seed * 100 + i as u64, *size), "application/vnd.oci.image.layer.v1.tar+gzip"))
        .collect();
    let mut config = serde_json::json!({
        "architecture": arch, "os": os,
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>()},
        "config": {"Cmd": ["/bin/sh"]}
    });
    if let Some(v) = variant {
        config["variant"] = v.into();
    }
    let config = Blob::new(serde_json::to_vec(&config).unwrap(), "application/vnd.oci.image.config.v1+json");
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config.descriptor(),
        "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
    });
    let manifest = Blob::new(serde_json::to_vec(&manifest).unwrap(), "application/vnd.oci.image.manifest.v1+json");
    PlatformImage { platform: (os.into(), arch.into(), variant.map(Into::into)), layers, config, manifest }
}

/// An index over `images`.
pub fn index_of(images: &[&PlatformImage]) -> Blob {
    let manifests: Vec<_> = images
        .iter()
        .map(|img| {
            let mut d = img.manifest.descriptor();
            let (os, arch, variant) = &img.platform;
            d["platform"] = serde_json::json!({"os": os, "architecture": arch});
            if let Some(v) = variant {
                d["platform"]["variant"] = v.clone().into();
            }
            d
        })
        .collect();
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests
    });
    Blob::new(serde_json::to_vec(&index).unwrap(), "application/vnd.oci.image.index.v1+json")
}

/// A parsed request seen by a [`FakeServer`].
#[derive(Debug, Clone)]
pub struct SeenRequest {
    /// GET, PUT, …
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl SeenRequest {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == &name.to_ascii_lowercase()).map(|(_, v)| v.as_str())
    }
}

/// Handler of a fake server: writes a whole raw response (or a cut one) to the stream.
pub type Handler = dyn Fn(&SeenRequest, usize, &mut TcpStream) + Send + Sync;

/// A one-thread HTTP/1.1 server on 127.0.0.1 that records requests; one request per connection.
pub struct FakeServer {
    /// `127.0.0.1:<port>`
    pub host: String,
    /// Every request, in order.
    pub seen: Arc<Mutex<Vec<SeenRequest>>>,
}

impl FakeServer {
    /// Start serving with `handler(request, index_of_request, stream)`.
    pub fn start(handler: Box<Handler>) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen_thread = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let Some(request) = read_request(&mut stream) else { continue };
                let index = {
                    let mut seen = seen_thread.lock().unwrap();
                    seen.push(request.clone());
                    seen.len() - 1
                };
                handler(&request, index, &mut stream);
                let _ = stream.flush();
            }
        });
        FakeServer { host, seen }
    }

    /// Requests seen so far.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.seen.lock().unwrap().clone()
    }
}

fn read_request(stream: &mut TcpStream) -> Option<SeenRequest> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let len: usize = headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(SeenRequest { method, target, headers, body })
}

/// Write a complete response with `Connection: close`.
pub fn respond(stream: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) {
    let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

/// Write `certs_dir/<host>/ca.crt`.
pub fn write_ca(certs_dir: &Path, host: &str, ca_pem: &str) {
    let dir = certs_dir.join(host);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca.crt"), ca_pem).unwrap();
}
