//! `berth pull` against a real `docker-registry` on loopback, one registry and one root per test.

#[path = "../../berth-image/tests/registry_support/mod.rs"]
mod registry_support;
mod support;

use registry_support::{registry_available, RegistryOptions, RegistryProcess};
use support::*;

fn snapshot_paths(berth: &Berth, inspect: &serde_json::Value) -> Vec<std::path::PathBuf> {
    inspect[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| berth.root().join("layers").join(l["ChainID"].as_str().unwrap().trim_start_matches("sha256:")))
        .collect()
}

#[test]
fn pull_lists_the_image_and_its_snapshots_overlay_mount_to_the_layered_tree() {
    if !registry_available() {
        return;
    }
    let registry = RegistryProcess::start(RegistryOptions::default());
    let image = three_layer_image(host_arch());
    image.push(&client(&registry.host), "app/web", "1.0");
    let berth = Berth::new();
    let name = format!("{}/app/web:1.0", registry.host);
    let out = berth.ok(&["pull", &name]);
    assert_eq!(out.trim(), image.id().trim_start_matches("sha256:"));

    let listing = berth.ok(&["images"]);
    let header = listing.lines().next().unwrap();
    assert!(header.starts_with("REPOSITORY") && header.contains("IMAGE ID") && header.ends_with("SIZE"), "{listing}");
    let row = listing.lines().nth(1).unwrap();
    assert!(row.contains(&format!("{}/app/web", registry.host)) && row.contains("1.0") && row.contains(&image.id()[7..19]), "{listing}");
    let json: serde_json::Value = serde_json::from_str(&berth.ok(&["images", "--format", "json"])).unwrap();
    assert_eq!(json[0]["Id"], image.id().trim_start_matches("sha256:"));
    assert!(berth.ok(&["images", "--digests"]).contains(&image.digest()));

    let inspect: serde_json::Value = serde_json::from_str(&berth.ok(&["image", "inspect", &name])).unwrap();
    assert_eq!(inspect[0]["Config"]["Cmd"], serde_json::json!(["/bin/sh", "-c", "echo hi"]));
    assert_eq!(inspect[0]["Config"]["WorkingDir"], "/srv");
    assert_eq!(inspect[0]["RootFS"]["diff_ids"].as_array().unwrap().len(), 3);
    assert_eq!(inspect[0]["History"].as_array().unwrap().len(), 3);
    let history = berth.ok(&["history", &name]);
    assert!(history.contains("step 2") && history.lines().count() == 4, "{history}");

    let lower = snapshot_paths(&berth, &inspect);
    assert_eq!(berth.snapshots().len(), 3);
    assert!(lower.iter().all(|p| p.is_dir()));
    let mount = OverlayMount::new(&lower);
    let read = |p: &str| std::fs::read_to_string(mount.target.join(p)).unwrap();
    assert_eq!(read("etc/keep"), "kept");
    assert_eq!(read("one/a"), "overwritten by three");
    assert_eq!(read("two/b"), "layer two");
    assert_eq!(read("three/c"), host_arch());
    assert!(!mount.target.join("etc/gone").exists(), "the whiteout of layer 2 hides etc/gone");
}

#[test]
fn pull_by_digest_and_platform_selection_from_an_index() {
    if !registry_available() {
        return;
    }
    let registry = RegistryProcess::start(RegistryOptions::default());
    let c = client(&registry.host);
    let amd = three_layer_image("amd64");
    let arm = three_layer_image("arm64");
    amd.push(&c, "multi", &amd.digest());
    arm.push(&c, "multi", &arm.digest());
    let platform = |img: &GenImage, arch: &str| {
        serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": img.digest(),
            "size": img.manifest.len(), "platform": {"os": "linux", "architecture": arch}})
    };
    let index = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [platform(&amd, "amd64"), platform(&arm, "arm64")]}))
    .unwrap();
    c.put_manifest("multi", "latest", "application/vnd.oci.image.index.v1+json", &index).unwrap();

    let berth = Berth::new();
    let out = berth.ok(&["pull", "-q", "--platform", "linux/arm64", &format!("{}/multi", registry.host)]);
    assert_eq!(out.trim(), arm.id().trim_start_matches("sha256:"), "-q prints only the image id");
    let inspect: serde_json::Value = serde_json::from_str(&berth.ok(&["image", "inspect", &format!("{}/multi", registry.host)])).unwrap();
    assert_eq!(inspect[0]["Architecture"], "arm64");
    assert_eq!(inspect[0]["RepoDigests"][0], format!("{}/multi@{}", registry.host, sha256(&index)));
    let mount = OverlayMount::new(&snapshot_paths(&berth, &inspect));
    assert_eq!(std::fs::read_to_string(mount.target.join("three/c")).unwrap(), "arm64");
    drop(mount);

    let by_digest = format!("{}/multi@{}", registry.host, amd.digest());
    let out = berth.ok(&["pull", "-q", &by_digest]);
    assert_eq!(out.trim(), amd.id().trim_start_matches("sha256:"));
    let listing = berth.ok(&["images"]);
    assert!(listing.contains("<none>") && listing.contains(&amd.id()[7..19]), "{listing}");

    let err = berth.run(&["pull", "--platform", "linux/s390x", &format!("{}/multi", registry.host)]);
    assert_eq!(err.status.code(), Some(125));
    let stderr = String::from_utf8_lossy(&err.stderr);
    assert!(stderr.contains("linux/s390x") && stderr.contains("linux/amd64, linux/arm64"), "{stderr}");
}

#[test]
fn pulling_twice_downloads_nothing_the_second_time() {
    if !registry_available() {
        return;
    }
    let registry = RegistryProcess::start(RegistryOptions::default());
    let image = three_layer_image(host_arch());
    image.push(&client(&registry.host), "app", "v1");
    let proxy = CountingProxy::start(&registry.host);
    let berth = Berth::new();
    let name = format!("{}/app:v1", proxy.host);
    berth.ok(&["pull", &name]);
    assert_eq!(proxy.all_blob_gets(), 4, "3 layers and the config: {:?}", proxy.requests());
    let out = berth.run(&["pull", &name]);
    assert!(out.status.success());
    assert_eq!(proxy.all_blob_gets(), 4, "nothing more: {:?}", proxy.requests());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("skipped: already exists").count(), 3, "{stderr}");
}

#[test]
fn two_concurrent_pull_processes_both_succeed_and_fetch_each_blob_once() {
    if !registry_available() {
        return;
    }
    let registry = RegistryProcess::start(RegistryOptions::default());
    let big = |seed: u8| -> Vec<u8> { (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed).collect() };
    let (b1, b2, b3) = (big(1), big(2), big(3));
    let image =
        GenImage::new(vec![layer(&[("big/1", Some(&b1))]), layer(&[("big/2", Some(&b2))]), layer(&[("big/3", Some(&b3))])], host_arch());
    image.push(&client(&registry.host), "race", "v1");
    let proxy = CountingProxy::start(&registry.host);
    let berth = Berth::new();
    let name = format!("{}/race:v1", proxy.host);
    let spawn =
        || berth.cmd(&["pull", "-q", &name]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let children = [spawn(), spawn()];
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    for l in &image.layers {
        assert_eq!(proxy.blob_gets(&l.digest), 1, "{:?}", proxy.requests());
    }
    assert_eq!(proxy.blob_gets(&image.id()), 1);
    assert_eq!(berth.snapshots().len(), 3);
    assert_eq!(berth.ok(&["images", "-q"]).lines().count(), 1);
}
