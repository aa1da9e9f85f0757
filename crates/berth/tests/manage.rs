//! `rmi`, `tag` + `push`, `login`/`logout`, and bad input through the `berth` binary.

#[path = "../../berth-image/tests/registry_support/mod.rs"]
mod registry_support;
mod support;

use std::io::Write;
use std::process::Stdio;

use registry_support::{registry_available, respond, FakeServer, RegistryOptions, RegistryProcess};
use support::*;

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn rmi_removes_the_tag_and_collects_blobs_and_snapshots() {
    if !registry_available() {
        return;
    }
    let registry = RegistryProcess::start(RegistryOptions::default());
    let image = three_layer_image(host_arch());
    image.push(&client(&registry.host), "app", "v1");
    let berth = Berth::new();
    let name = format!("{}/app:v1", registry.host);
    berth.ok(&["pull", "-q", &name]);
    berth.ok(&["tag", &name, "local/copy:1"]);
    assert_eq!(berth.ok(&["images", "-q"]).lines().count(), 1, "two names, one image id");
    let out = berth.run(&["rmi", &image.id()[7..19]]);
    assert_eq!(out.status.code(), Some(125), "an id with two names needs -f");
    assert!(stderr_of(&out).contains("several names"), "{}", stderr_of(&out));
    let out = berth.ok(&["rmi", "local/copy:1"]);
    assert!(out.contains("Untagged: local/copy:1") && !out.contains("Deleted"), "{out}");
    assert_eq!(berth.blobs().len(), 5, "still named: nothing collected");
    let out = berth.ok(&["rmi", &name]);
    assert!(out.contains("Deleted: "), "{out}");
    assert_eq!(berth.ok(&["images", "-q"]), "");
    assert!(berth.blobs().is_empty(), "{:?}", berth.blobs());
    assert!(berth.snapshots().is_empty(), "{:?}", berth.snapshots());
    let out = berth.run(&["rmi", &name]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr_of(&out).contains("not found"), "{}", stderr_of(&out));
    assert!(berth.ok(&["image", "prune"]).contains("Total reclaimed space"));
}

#[test]
fn tag_and_push_to_another_repository_mounts_the_blobs() {
    if !registry_available() {
        return;
    }
    let registry = RegistryProcess::start(RegistryOptions::default());
    let image = three_layer_image(host_arch());
    image.push(&client(&registry.host), "app", "v1");
    let proxy = CountingProxy::start(&registry.host);
    let berth = Berth::new();
    let source = format!("{}/app:v1", proxy.host);
    let dest = format!("{}/team/other:v2", proxy.host);
    berth.ok(&["pull", "-q", &source]);
    berth.ok(&["tag", &source, &dest]);
    let out = berth.ok(&["push", &dest]);
    assert_eq!(out.trim(), image.digest());
    let requests = proxy.requests();
    assert!(
        !requests.iter().any(|r| r.starts_with("PATCH") || (r.starts_with("PUT") && r.contains("/blobs/"))),
        "blobs were mounted, not uploaded: {requests:?}"
    );
    assert!(requests.iter().any(|r| r == "PUT /v2/team/other/manifests/v2"), "{requests:?}");
    let fresh = Berth::new();
    assert_eq!(fresh.ok(&["pull", "-q", &dest]).trim(), image.id().trim_start_matches("sha256:"));

    // Another registry (the same one, reached by another name) cannot mount: everything is uploaded.
    let third = format!("{}/third:v3", registry.host);
    let out = berth.run(&["push", &source, &third]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(stderr_of(&out).matches(" done").count(), 4, "{}", stderr_of(&out));
}

#[test]
fn login_stores_verified_credentials_used_by_pull_and_logout_removes_them() {
    if !registry_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, format!("alice:{}\n", bcrypt::hash("s3cret", 4).unwrap())).unwrap();
    let auth = format!("  htpasswd:\n    realm: berth-test\n    path: {}\n", htpasswd.display());
    let registry = RegistryProcess::start(RegistryOptions { auth_yaml: Some(auth), ..Default::default() });
    let image = three_layer_image(host_arch());
    let config = berth_image::registry::RegistryConfig { insecure: vec![registry.host.clone()], ..Default::default() };
    let authed = berth_image::registry::RegistryClient::new(
        &registry.host,
        &config,
        Some(berth_image::registry::Credentials::new("alice", "s3cret")),
    )
    .unwrap();
    image.push(&authed, "private", "v1");

    let berth = Berth::new();
    let name = format!("{}/private:v1", registry.host);
    let out = berth.run(&["pull", &name]);
    assert_eq!(out.status.code(), Some(125), "anonymous pull is refused");
    let out = berth.run(&["login", "-u", "alice", "-p", "wrong", &registry.host]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr_of(&out).contains("login to") && stderr_of(&out).contains("access denied"), "{}", stderr_of(&out));
    assert!(!berth.auth_file().exists(), "nothing written for refused credentials");

    let mut child = berth
        .cmd(&["login", "-u", "alice", "--password-stdin", &registry.host])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let stored: serde_json::Value = serde_json::from_slice(&std::fs::read(berth.auth_file()).unwrap()).unwrap();
    assert!(stored["auths"][&registry.host]["auth"].is_string(), "{stored}");
    assert_eq!(berth.ok(&["pull", "-q", &name]).trim(), image.id().trim_start_matches("sha256:"));

    assert!(berth.ok(&["logout", &registry.host]).contains("Removed"));
    let stored: serde_json::Value = serde_json::from_slice(&std::fs::read(berth.auth_file()).unwrap()).unwrap();
    assert!(stored["auths"].as_object().unwrap().is_empty(), "{stored}");
    let out = berth.run(&["logout", &registry.host]);
    assert_eq!(out.status.code(), Some(125));
    let out = berth.run(&["pull", &format!("{}/private:v2", registry.host)]);
    assert_eq!(out.status.code(), Some(125), "credentials are gone");
}

#[test]
fn a_tampered_blob_fails_clearly_and_leaves_nothing_tagged_or_unpacked() {
    let image = three_layer_image(host_arch());
    let tampered_digest = image.layers[1].digest.clone();
    let served = image.clone();
    let tampered = tampered_digest.clone();
    let server = FakeServer::start(Box::new(move |req, _, stream| {
        let path = req.target.split('?').next().unwrap_or("");
        let blob = |d: &str| path.ends_with(&format!("/blobs/{d}"));
        if path == "/v2/" {
            respond(stream, "200 OK", &[], b"{}");
        } else if path.contains("/manifests/") {
            respond(stream, "200 OK", &[("Content-Type", "application/vnd.oci.image.manifest.v1+json".into())], &served.manifest);
        } else if blob(&sha256(&served.config)) {
            respond(stream, "200 OK", &[], &served.config);
        } else if let Some(l) = served.layers.iter().find(|l| blob(&l.digest)) {
            let mut bytes = l.blob.clone();
            if l.digest == tampered {
                let mid = bytes.len() / 2;
                bytes[mid] ^= 0xff;
            }
            respond(stream, "200 OK", &[], &bytes);
        } else {
            respond(stream, "404 Not Found", &[], b"{}");
        }
    }));
    let berth = Berth::new();
    let out = berth.run(&["pull", "--jobs", "1", &format!("{}/evil:v1", server.host)]);
    assert_eq!(out.status.code(), Some(125));
    let err = stderr_of(&out);
    assert!(err.contains("digest mismatch") && err.contains(&tampered_digest), "{err}");
    assert_eq!(berth.ok(&["images", "-q"]), "");
    let chain_of_tampered = berth.snapshots();
    assert!(chain_of_tampered.len() <= 1, "only the layer before the tampered one may be unpacked: {chain_of_tampered:?}");
    assert!(!berth.blobs().contains(&tampered_digest[7..].to_string()));
}

#[test]
fn bad_input_gives_one_clear_message_exit_125_and_leaves_the_store_unchanged() {
    if !registry_available() {
        return;
    }
    let registry = RegistryProcess::start(RegistryOptions::default());
    let image = three_layer_image(host_arch());
    image.push(&client(&registry.host), "app", "v1");
    let berth = Berth::new();
    berth.ok(&["pull", "-q", &format!("{}/app:v1", registry.host)]);
    let index_before = std::fs::read(berth.root().join("index.json")).unwrap();
    let (blobs, snapshots) = (berth.blobs(), berth.snapshots());
    let unreachable = format!("127.0.0.1:{}/app:v1", registry_support::free_port());
    let cases = [
        ("UPPER/Case::bad", "invalid image reference"),
        (&*format!("{}/nope:v1", registry.host), "MANIFEST_UNKNOWN"),
        (&*unreachable, "127.0.0.1"),
    ];
    for (input, expected) in cases {
        let out = berth.run(&["pull", input]);
        assert_eq!(out.status.code(), Some(125), "{input}");
        let err = stderr_of(&out);
        let lines: Vec<&str> = err.lines().filter(|l| !l.starts_with("Trying to pull")).collect();
        assert_eq!(lines.len(), 1, "one message for {input}: {err}");
        assert!(lines[0].starts_with("Error: ") && lines[0].contains(expected), "{input}: {err}");
    }
    assert_eq!(std::fs::read(berth.root().join("index.json")).unwrap(), index_before);
    assert_eq!((berth.blobs(), berth.snapshots()), (blobs, snapshots));

    let fresh = Berth::new();
    let out = fresh.run(&["pull", "no//such"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(!fresh.root().exists(), "a bad argument touches nothing");
    let out = fresh.run(&["pull", "--platform", "linux", "busybox"]);
    assert!(stderr_of(&out).contains("os/arch"), "{}", stderr_of(&out));
    assert_eq!(fresh.run(&["no-such-command"]).status.code(), Some(125));
}
