//! The registry client against a real registry (Debian's `docker-registry`), one process per
//! test: no auth, htpasswd basic auth, TLS with a test CA in certs.d, and a bearer-token realm.

mod registry_support;

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;

use berth_image::registry::{
    BlobInfo, BlobPushOutcome, BlobSink, Credentials, Platform, PushOptions, RegistryClient, RegistryConfig, UploadMethod,
};
use berth_image::Error;
use oci_spec::image::Descriptor;
use registry_support::*;

fn insecure(host: &str) -> RegistryConfig {
    RegistryConfig { insecure: vec![host.to_string()], ..Default::default() }
}

/// Push every blob of `images`, their manifests by digest, and `index` under `tag`.
fn push_image(client: &RegistryClient, repo: &str, images: &[&PlatformImage], index: &Blob, tag: &str) {
    for (n, image) in images.iter().enumerate() {
        for (i, blob) in image.layers.iter().chain([&image.config]).enumerate() {
            let method = if (n + i) % 2 == 0 { UploadMethod::Monolithic } else { UploadMethod::Chunked { chunk_size: 64 * 1024 } };
            let options = PushOptions { method, mount_from: None };
            let outcome = client.push_blob(repo, &blob.digest, blob.bytes.len() as u64, &mut blob.bytes.as_slice(), &options).unwrap();
            assert_eq!(outcome, BlobPushOutcome::Uploaded, "{method:?}");
        }
        let digest = client.put_manifest(repo, &image.manifest.digest, &image.manifest.media_type, &image.manifest.bytes).unwrap();
        assert_eq!(digest, image.manifest.digest);
    }
    let digest = client.put_manifest(repo, tag, &index.media_type, &index.bytes).unwrap();
    assert_eq!(digest, index.digest);
}

struct MemorySink(Mutex<HashMap<String, Vec<u8>>>);

impl BlobSink for MemorySink {
    type Writer = Vec<u8>;
    fn begin(&self, _: &Descriptor) -> berth_image::Result<Vec<u8>> {
        Ok(Vec::new())
    }
    fn commit(&self, descriptor: &Descriptor, writer: Vec<u8>, _: &BlobInfo) -> berth_image::Result<()> {
        self.0.lock().unwrap().insert(descriptor.digest().to_string(), writer);
        Ok(())
    }
}

/// Pull `tag` for `platform` and check every byte against `expected`.
fn pull_and_check(client: &RegistryClient, repo: &str, tag: &str, platform: &Platform, expected: &PlatformImage, index: &Blob) {
    let resolved = client.resolve_image(repo, tag, platform).unwrap();
    assert_eq!(resolved.index.as_ref().map(|i| i.digest.as_str()), Some(index.digest.as_str()));
    assert_eq!(resolved.manifest.digest, expected.manifest.digest);
    assert_eq!(resolved.manifest.bytes, expected.manifest.bytes);
    let config = resolved.image_manifest.config();
    let config_bytes = client.get_blob(repo, config.digest().as_ref(), config.size()).unwrap();
    assert_eq!(config_bytes, expected.config.bytes);
    let sink = MemorySink(Mutex::new(HashMap::new()));
    let infos = client.pull_layers_parallel(repo, resolved.image_manifest.layers(), 3, &sink).unwrap();
    assert_eq!(infos.len(), expected.layers.len());
    let got = sink.0.into_inner().unwrap();
    for layer in &expected.layers {
        assert_eq!(got.get(&layer.digest), Some(&layer.bytes), "layer {}", layer.digest);
    }
}

#[test]
fn push_then_pull_a_two_platform_image_without_auth() {
    if !registry_available() {
        return;
    }
    let registry = RegistryProcess::start(RegistryOptions::default());
    let client = RegistryClient::new(&registry.host, &insecure(&registry.host), None).unwrap();
    client.ping().unwrap();
    let amd = platform_image(1, "linux", "amd64", None, &[300_000, 70_000]);
    let arm = platform_image(2, "linux", "arm64", Some("v8"), &[150_000, 1, 90_000]);
    let index = index_of(&[&amd, &arm]);
    push_image(&client, "berth/test", &[&amd, &arm], &index, "v1");

    // Pushing again skips every blob.
    let layer = &amd.layers[0];
    let again =
        client.push_blob("berth/test", &layer.digest, layer.bytes.len() as u64, &mut layer.bytes.as_slice(), &PushOptions::default());
    assert_eq!(again.unwrap(), BlobPushOutcome::Existed);
    assert_eq!(client.blob_exists("berth/test", &layer.digest).unwrap(), Some(layer.bytes.len() as u64));

    // By tag, for each platform, and by the index's digest.
    pull_and_check(&client, "berth/test", "v1", &Platform::new("linux", "amd64", None), &amd, &index);
    pull_and_check(&client, "berth/test", "v1", &Platform::new("linux", "arm64", None), &arm, &index);
    pull_and_check(&client, "berth/test", &index.digest, &Platform::new("linux", "arm64", Some("v8")), &arm, &index);

    // A manifest by its own digest: no index, verified.
    let by_digest = client.resolve_image("berth/test", &arm.manifest.digest, &Platform::host()).unwrap();
    assert!(by_digest.index.is_none());
    assert_eq!(by_digest.manifest.digest, arm.manifest.digest);

    let err = client.resolve_image("berth/test", "v1", &Platform::new("linux", "s390x", None)).unwrap_err();
    match &err {
        Error::NoMatchingPlatform { available, .. } => assert_eq!(available, &["linux/amd64", "linux/arm64/v8"]),
        other => panic!("expected NoMatchingPlatform, got {other}"),
    }

    // A wrong descriptor size is caught.
    let mut out = Vec::new();
    let err = client.fetch_blob("berth/test", &layer.digest, Some(10), &mut out).unwrap_err();
    assert!(matches!(err, Error::SizeMismatch { .. }), "{err}");

    // Missing things name the registry and repository.
    let err = client.get_manifest("berth/test", "nope").unwrap_err().to_string();
    assert!(err.contains(&registry.host) && err.contains("berth/test") && err.contains("MANIFEST_UNKNOWN"), "{err}");

    // Cross-repository mount.
    let options = PushOptions { method: UploadMethod::Monolithic, mount_from: Some("berth/test".into()) };
    let mounted = client.push_blob("berth/other", &layer.digest, layer.bytes.len() as u64, &mut layer.bytes.as_slice(), &options);
    assert_eq!(mounted.unwrap(), BlobPushOutcome::Mounted);
    let mut out = Vec::new();
    client.fetch_blob("berth/other", &layer.digest, Some(layer.bytes.len() as u64), &mut out).unwrap();
    assert_eq!(out, layer.bytes);
}

fn htpasswd_line(user: &str, password: &str) -> String {
    format!("{user}:{}\n", bcrypt::hash(password, 4).unwrap())
}

#[test]
fn basic_auth_registry_needs_the_right_credentials() {
    if !registry_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, htpasswd_line("alice", "s3cret")).unwrap();
    let auth = format!("  htpasswd:\n    realm: berth-test\n    path: {}\n", htpasswd.display());
    let registry = RegistryProcess::start(RegistryOptions { auth_yaml: Some(auth), ..Default::default() });
    let config = insecure(&registry.host);

    let anonymous = RegistryClient::new(&registry.host, &config, None).unwrap();
    let err = anonymous.ping().unwrap_err().to_string();
    assert!(err.contains("no credentials"), "{err}");
    let wrong = RegistryClient::new(&registry.host, &config, Some(Credentials::new("alice", "nope"))).unwrap();
    let err = wrong.get_manifest("berth/basic", "v1").unwrap_err().to_string();
    assert!(err.contains("access denied") && err.contains(&registry.host) && err.contains("berth/basic"), "{err}");

    let client = RegistryClient::new(&registry.host, &config, Some(Credentials::new("alice", "s3cret"))).unwrap();
    client.ping().unwrap();
    let img = platform_image(3, "linux", "amd64", None, &[50_000]);
    let other = platform_image(4, "linux", "arm", Some("v7"), &[20_000]);
    let index = index_of(&[&img, &other]);
    push_image(&client, "berth/basic", &[&img, &other], &index, "v1");
    pull_and_check(&client, "berth/basic", "v1", &Platform::new("linux", "amd64", None), &img, &index);
}

/// A CA and a server certificate for 127.0.0.1 signed by it: (ca pem, cert pem, key pem).
fn test_pki() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "berth test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.subject_alt_names.push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

#[test]
fn tls_registry_is_trusted_through_certs_d() {
    if !registry_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_pki();
    let (cert_path, key_path) = (dir.path().join("server.crt"), dir.path().join("server.key"));
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    let registry = RegistryProcess::start(RegistryOptions { tls: Some((cert_path, key_path)), ..Default::default() });

    let untrusted = RegistryClient::new(&registry.host, &RegistryConfig::default(), None).unwrap();
    let err = untrusted.ping().unwrap_err().to_string();
    assert!(err.contains(&registry.host), "{err}");

    let certs_dir = dir.path().join("certs.d");
    write_ca(&certs_dir, &registry.host, &ca);
    let config = RegistryConfig { certs_dir: Some(certs_dir), ..Default::default() };
    let client = RegistryClient::new(&registry.host, &config, None).unwrap();
    client.ping().unwrap();
    let img = platform_image(5, "linux", "amd64", None, &[40_000, 40_000]);
    let other = platform_image(6, "linux", "arm64", None, &[1_000]);
    let index = index_of(&[&img, &other]);
    push_image(&client, "berth/tls", &[&img, &other], &index, "latest");
    pull_and_check(&client, "berth/tls", "latest", &Platform::new("linux", "amd64", None), &img, &index);
}

#[test]
fn token_realm_grants_scoped_tokens_that_are_cached() {
    if !registry_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tokens = token_server::TokenServer::start("berth-registry", "berth-issuer", Some(("bob", "hunter2")));
    let bundle = dir.path().join("token-ca.pem");
    std::fs::write(&bundle, &tokens.cert_pem).unwrap();
    let auth = format!(
        "  token:\n    realm: http://{}/token\n    service: berth-registry\n    issuer: berth-issuer\n    rootcertbundle: {}\n",
        tokens.host,
        bundle.display()
    );
    let registry = RegistryProcess::start(RegistryOptions { auth_yaml: Some(auth), ..Default::default() });
    let config = insecure(&registry.host);

    let wrong = RegistryClient::new(&registry.host, &config, Some(Credentials::new("bob", "nope"))).unwrap();
    let err = wrong.get_manifest("berth/token", "v1").unwrap_err().to_string();
    assert!(err.contains("token server") && err.contains("401"), "{err}");

    let client = RegistryClient::new(&registry.host, &config, Some(Credentials::new("bob", "hunter2"))).unwrap();
    let img = platform_image(7, "linux", "amd64", None, &[30_000, 30_000, 30_000]);
    let other = platform_image(8, "linux", "ppc64le", None, &[10_000]);
    let index = index_of(&[&img, &other]);
    push_image(&client, "berth/token", &[&img, &other], &index, "v1");
    pull_and_check(&client, "berth/token", "v1", &Platform::new("linux", "amd64", None), &img, &index);

    // One token per scope, reused until it expires (not one per request).
    let scopes = tokens.scopes_requested();
    let push_tokens = scopes.iter().filter(|s| s.as_str() == "repository:berth/token:pull,push").count();
    let pull_tokens = scopes.iter().filter(|s| s.as_str() == "repository:berth/token:pull").count();
    assert_eq!((push_tokens, pull_tokens), (1, 1), "{scopes:?}");

    // Mount from another repository needs pull on the source in the same token.
    let layer = &img.layers[0];
    let options = PushOptions { method: UploadMethod::Monolithic, mount_from: Some("berth/token".into()) };
    let outcome = client.push_blob("berth/copy", &layer.digest, layer.bytes.len() as u64, &mut layer.bytes.as_slice(), &options);
    assert_eq!(outcome.unwrap(), BlobPushOutcome::Mounted);
    let mut out = Vec::new();
    client.fetch_blob("berth/copy", &layer.digest, None, &mut out).unwrap();
    out.flush().unwrap();
    assert_eq!(out, layer.bytes);
}
