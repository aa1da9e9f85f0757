//! The registry client against fake servers, for what a real registry will not do on demand:
//! tampered content, redirects to another host, connections cut midway, 5xx answers.

mod registry_support;

use std::io::Write;
use std::time::Duration;

use berth_image::registry::{sha256_digest, Credentials, RegistryClient, RegistryConfig, RetryPolicy};
use berth_image::Error;
use registry_support::*;

fn client_for(host: &str, credentials: Option<Credentials>) -> RegistryClient {
    let config = RegistryConfig { insecure: vec![host.to_string()], ..Default::default() };
    let retry = RetryPolicy { attempts: 4, initial_backoff: Duration::from_millis(10), max_backoff: Duration::from_millis(50) };
    RegistryClient::new(host, &config, credentials).unwrap().with_retry(retry)
}

#[test]
fn tampered_blob_is_a_digest_mismatch() {
    let good = random_bytes(1, 10_000);
    let digest = sha256_digest(&good);
    let mut bad = good.clone();
    bad[5000] ^= 1;
    let server = FakeServer::start(Box::new(move |_, _, stream| respond(stream, "200 OK", &[], &bad)));
    let client = client_for(&server.host, None);
    let err = client.fetch_blob("a/b", &digest, Some(good.len() as u64), &mut Vec::new()).unwrap_err();
    match &err {
        Error::DigestMismatch { what, expected, .. } => {
            assert_eq!(expected, &digest);
            assert!(what.contains(&server.host) && what.contains("a/b"), "{what}");
        }
        other => panic!("expected a digest mismatch, got {other}"),
    }
}

#[test]
fn tampered_manifest_pulled_by_digest_is_refused() {
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#;
    let digest = sha256_digest(b"something else");
    let server = FakeServer::start(Box::new(move |_, _, stream| {
        respond(stream, "200 OK", &[("Content-Type", "application/vnd.oci.image.manifest.v1+json".into())], manifest)
    }));
    let client = client_for(&server.host, None);
    let err = client.get_manifest("a/b", &digest).unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    // By tag it is accepted, and its digest is computed.
    let fetched = client.get_manifest("a/b", "v1").unwrap();
    assert_eq!(fetched.digest, sha256_digest(manifest));
    assert_eq!(server.requests()[0].header("accept").unwrap_or("").matches("application/vnd").count(), 4);
}

#[test]
fn unknown_manifest_media_type_is_an_error() {
    let server = FakeServer::start(Box::new(|_, _, stream| {
        let headers = [("Content-Type", "application/vnd.docker.distribution.manifest.v1+prettyjws".to_string())];
        respond(stream, "200 OK", &headers, b"{}")
    }));
    let err = client_for(&server.host, None).get_manifest("a/b", "old").unwrap_err().to_string();
    assert!(err.contains("unsupported media type") && err.contains("a/b"), "{err}");
}

#[test]
fn redirect_to_another_host_does_not_carry_authorization() {
    let blob = random_bytes(2, 5000);
    let digest = sha256_digest(&blob);
    let storage_blob = blob.clone();
    let storage = FakeServer::start(Box::new(move |_, _, stream| respond(stream, "200 OK", &[], &storage_blob)));
    let location = format!("http://{}/storage/object?sig=1", storage.host);
    let registry = FakeServer::start(Box::new(move |request, _, stream| {
        if request.header("authorization").is_none() {
            respond(stream, "401 Unauthorized", &[("WWW-Authenticate", "Basic realm=\"fake\"".into())], b"");
        } else {
            respond(stream, "307 Temporary Redirect", &[("Location", location.clone())], b"");
        }
    }));
    let client = client_for(&registry.host, Some(Credentials::new("u", "p")));
    let info = client.fetch_blob("a/b", &digest, Some(blob.len() as u64), &mut Vec::new()).unwrap();
    assert_eq!(info.size, blob.len() as u64);
    let at_registry = registry.requests();
    assert!(at_registry.last().unwrap().header("authorization").unwrap().starts_with("Basic "));
    let at_storage = storage.requests();
    assert_eq!(at_storage.len(), 1);
    assert_eq!(at_storage[0].target, "/storage/object?sig=1");
    assert!(at_storage[0].header("authorization").is_none(), "{:?}", at_storage[0].headers);
}

#[test]
fn redirect_to_a_non_http_scheme_is_refused() {
    let registry =
        FakeServer::start(Box::new(|_, _, stream| respond(stream, "302 Found", &[("Location", "ftp://elsewhere/x".into())], b"")));
    let client = client_for(&registry.host, None);
    let err = client.fetch_blob("a/b", &sha256_digest(b"x"), None, &mut Vec::new()).unwrap_err().to_string();
    assert!(err.contains("unsupported scheme"), "{err}");
}

/// Serves `blob`, cutting the first response after `cut` bytes; honours `Range` when `ranges`.
fn cutting_server(blob: Vec<u8>, cut: usize, ranges: bool) -> FakeServer {
    FakeServer::start(Box::new(move |request, index, stream| {
        let range_start =
            request.header("range").and_then(|r| r.strip_prefix("bytes=")).and_then(|r| r.trim_end_matches('-').parse::<usize>().ok());
        match (index, range_start) {
            (0, _) => {
                let head = format!("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {}\r\n\r\n", blob.len());
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&blob[..cut]);
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
            (_, Some(start)) if ranges && start < blob.len() => {
                let range = format!("bytes {start}-{}/{}", blob.len() - 1, blob.len());
                respond(stream, "206 Partial Content", &[("Content-Range", range)], &blob[start..]);
            }
            _ => respond(stream, "200 OK", &[], &blob),
        }
    }))
}

#[test]
fn interrupted_download_resumes_with_range() {
    let blob = random_bytes(3, 300_000);
    let digest = sha256_digest(&blob);
    let server = cutting_server(blob.clone(), 120_000, true);
    let client = client_for(&server.host, None);
    let mut out = Vec::new();
    let info = client.fetch_blob("a/b", &digest, Some(blob.len() as u64), &mut out).unwrap();
    assert_eq!(out, blob);
    assert_eq!(info.resumptions, 1);
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].header("range"), Some("bytes=120000-"));
}

#[test]
fn resume_against_a_server_that_ignores_range_still_yields_the_exact_blob() {
    let blob = random_bytes(4, 200_000);
    let digest = sha256_digest(&blob);
    let server = cutting_server(blob.clone(), 77_777, false);
    let mut out = Vec::new();
    let info = client_for(&server.host, None).fetch_blob("a/b", &digest, Some(blob.len() as u64), &mut out).unwrap();
    assert_eq!(out, blob);
    assert_eq!(info.resumptions, 1);
}

#[test]
fn server_errors_are_retried_with_back_off_then_reported() {
    let blob = random_bytes(5, 1000);
    let digest = sha256_digest(&blob);
    let served = blob.clone();
    let flaky = FakeServer::start(Box::new(move |_, index, stream| {
        if index < 2 {
            respond(stream, "503 Service Unavailable", &[], b"busy");
        } else {
            respond(stream, "200 OK", &[], &served);
        }
    }));
    let mut out = Vec::new();
    client_for(&flaky.host, None).fetch_blob("a/b", &digest, None, &mut out).unwrap();
    assert_eq!(out, blob);
    assert_eq!(flaky.requests().len(), 3);

    let down = FakeServer::start(Box::new(|_, _, stream| respond(stream, "502 Bad Gateway", &[], b"")));
    let err = client_for(&down.host, None).get_manifest("a/b", "v1").unwrap_err().to_string();
    assert!(err.contains("502") && err.contains(&down.host) && err.contains("a/b"), "{err}");
    assert_eq!(down.requests().len(), 4);
}

#[test]
fn connection_refused_is_retried_then_named() {
    let port = free_port();
    let host = format!("127.0.0.1:{port}");
    let err = client_for(&host, None).ping().unwrap_err().to_string();
    assert!(err.contains(&host), "{err}");
}

#[test]
fn token_flow_against_a_fake_registry_sends_service_and_scope() {
    let tokens =
        FakeServer::start(Box::new(|_, _, stream| respond(stream, "200 OK", &[], br#"{"access_token":"tok-1","expires_in":120}"#)));
    let realm = format!("http://{}/auth", tokens.host);
    let registry = FakeServer::start(Box::new(move |request, _, stream| {
        if request.header("authorization") == Some("Bearer tok-1") {
            respond(
                stream,
                "200 OK",
                &[("Content-Type", "application/vnd.oci.image.index.v1+json".into())],
                br#"{"schemaVersion":2,"manifests":[]}"#,
            );
        } else {
            let challenge = format!(r#"Bearer realm="{realm}",service="fake.registry",scope="repository:a/b:pull""#);
            respond(stream, "401 Unauthorized", &[("WWW-Authenticate", challenge)], b"");
        }
    }));
    let client = client_for(&registry.host, None);
    client.get_manifest("a/b", "v1").unwrap();
    client.get_manifest("a/b", "v2").unwrap();
    let asked = tokens.requests();
    assert_eq!(asked.len(), 1, "the token is cached");
    assert_eq!(asked[0].target, "/auth?service=fake.registry&scope=repository%3Aa%2Fb%3Apull");
    assert!(asked[0].header("authorization").is_none(), "anonymous token request");
    assert_eq!(registry.requests().len(), 3);
}
