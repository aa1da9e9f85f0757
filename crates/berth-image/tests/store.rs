//! The content store: an OCI layout that skopeo/umoci read, safe under concurrent writers.

mod layer_support;

use std::process::Command;
use std::sync::Arc;

use berth_image::reference::Reference;
use berth_image::store::digest::sha256_bytes;
use berth_image::store::{MediaType, Store};
use berth_image::unpack::import::{import_rootfs, ImportOptions};
use berth_image::unpack::{PathPolicy, Snapshots, UnpackOptions};
use berth_image::Error;
use layer_support::{tree, Layer};

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().map(|o| o.status.success()).unwrap_or(false)
}

fn rootfs_tar() -> Vec<u8> {
    Layer::new()
        .dir("bin/", 0o755)
        .file_full("bin/hello", b"#!/bin/sh\necho hello\n", 0o755, 0, 0, 1_600_000_000)
        .dir("etc/", 0o755)
        .file("etc/os-release", b"ID=berth-test\n")
        .symlink("etc/link", "os-release")
        .tar()
}

#[test]
fn imported_image_is_readable_by_skopeo_and_unpacks_to_the_same_diff_id() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("layout")).unwrap();
    let name = Reference::parse("localhost/berth-test:1").unwrap();
    let opts = ImportOptions { cmd: vec!["/bin/hello".into()], created: Some(1_700_000_000), ..Default::default() };
    let tar = rootfs_tar();
    let img = import_rootfs(&store, &tar[..], &name, &opts).unwrap();
    assert_eq!(img.diff_id, sha256_bytes(&tar));
    assert_eq!(store.resolve(&name).unwrap().digest(), img.manifest.digest());

    let config: serde_json::Value = serde_json::from_slice(&store.read_blob(&img.config.digest).unwrap()).unwrap();
    assert_eq!(config["rootfs"]["diff_ids"][0], img.diff_id.to_string());
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], berth_image::unpack::import::host_architecture());
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    assert_eq!(config["config"]["Cmd"][0], "/bin/hello");

    // The layer blob unpacks to the diff_id the config names.
    let snaps = Snapshots::open(tmp.path().join("snapshots")).unwrap();
    let blob = store.open_blob(&img.layer.digest).unwrap();
    let opts = UnpackOptions {
        expected_digest: Some(img.layer.digest.clone()),
        expected_size: Some(img.layer.size),
        expected_diff_id: Some(img.diff_id.clone()),
        policy: PathPolicy::Strict,
        same_owner: false,
    };
    let layer = snaps.unpack(blob, None, &opts).unwrap();
    assert_eq!(std::fs::read(layer.path.join("etc/os-release")).unwrap(), b"ID=berth-test\n");

    if !have("skopeo") {
        eprintln!("skipped the skopeo half: skopeo is not installed (scripts/setup installs it)");
        return;
    }
    let target = format!("oci:{}:{}", store.root().display(), name);
    let out = Command::new("skopeo").args(["inspect", &target]).output().unwrap();
    assert!(out.status.success(), "skopeo inspect {target}: {}", String::from_utf8_lossy(&out.stderr));
    let inspected: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(inspected["Digest"], img.manifest.digest().to_string());
    assert_eq!(inspected["Layers"][0], img.layer.digest.to_string());
    let out = Command::new("skopeo").args(["inspect", "--config", &target]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    if have("umoci") {
        let bundle = tmp.path().join("bundle");
        let image = format!("{}:{}", store.root().display(), name);
        let out = Command::new("umoci").args(["unpack", "--image", &image]).arg(&bundle).output().unwrap();
        assert!(out.status.success(), "umoci unpack {image}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(std::fs::read(bundle.join("rootfs/etc/os-release")).unwrap(), b"ID=berth-test\n");
    }
}

#[test]
fn tampered_blob_is_rejected_and_nothing_becomes_visible() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let content = vec![42u8; 100_000];
    let digest = sha256_bytes(&content);
    let mut tampered = content.clone();
    tampered[54_321] ^= 1;
    let before = tree(tmp.path());
    let err = store.put_blob(&tampered[..], Some(&digest), Some(content.len() as u64)).unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert!(!store.has_blob(&digest));
    assert_eq!(tree(tmp.path()), before);
    store.put_blob(&content[..], Some(&digest), Some(content.len() as u64)).unwrap();
    assert!(store.has_blob(&digest));
}

#[test]
fn concurrent_put_blob_of_the_same_content_leaves_one_valid_blob() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(tmp.path()).unwrap());
    let content: Arc<Vec<u8>> = Arc::new((0..4_000_000u32).map(|i| (i * 7 % 251) as u8).collect());
    let digest = sha256_bytes(&content);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (store, content) = (store.clone(), content.clone());
            // Without an expected digest each writer hashes and renames: the last rename wins.
            std::thread::spawn(move || store.put_blob(&content[..], None, Some(content.len() as u64)).unwrap())
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap().digest, digest);
    }
    assert_eq!(sha256_bytes(&std::fs::read(store.blob_path(&digest).unwrap()).unwrap()), digest);
    let blobs = tree(&tmp.path().join("blobs/sha256"));
    assert_eq!(blobs, vec![digest.digest().to_string()], "no temp files left");
}

/// Run by `concurrent_put_blob_from_two_processes` in child processes.
#[test]
#[ignore = "helper run by another test in a child process"]
fn child_process_writes_blob_and_tags() {
    let Ok(dir) = std::env::var("BERTH_IMAGE_TEST_STORE") else { return };
    let who = std::env::var("BERTH_IMAGE_TEST_WHO").unwrap_or_default();
    let store = Store::open(&dir).unwrap();
    let content: Vec<u8> = (0..2_000_000u32).map(|i| (i % 253) as u8).collect();
    for i in 0..20 {
        store.put_blob(&content[..], Some(&sha256_bytes(&content)), Some(content.len() as u64)).unwrap();
        let m = store.put_bytes(format!("{{\"schemaVersion\":2,\"who\":\"{who}\",\"i\":{i}}}").as_bytes()).unwrap();
        store.tag(&Reference::parse(&format!("p{who}/img:{i}")).unwrap(), &m.descriptor(MediaType::ImageManifest)).unwrap();
    }
}

#[test]
fn concurrent_put_blob_and_tag_from_two_processes() {
    let tmp = tempfile::tempdir().unwrap();
    Store::open(tmp.path()).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut procs: Vec<_> = ["a", "b"]
        .iter()
        .map(|who| {
            Command::new(&exe)
                .args(["--ignored", "--exact", "child_process_writes_blob_and_tags", "--test-threads=1"])
                .env("BERTH_IMAGE_TEST_STORE", tmp.path())
                .env("BERTH_IMAGE_TEST_WHO", who)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for p in &mut procs {
        assert!(p.wait().unwrap().success());
    }
    let store = Store::open(tmp.path()).unwrap();
    let content: Vec<u8> = (0..2_000_000u32).map(|i| (i % 253) as u8).collect();
    let digest = sha256_bytes(&content);
    assert_eq!(sha256_bytes(&std::fs::read(store.blob_path(&digest).unwrap()).unwrap()), digest);
    // Every tag of both processes survived the concurrent index updates.
    assert_eq!(store.list().unwrap().len(), 40);
    assert!(tree(&tmp.path().join("blobs/sha256")).iter().all(|n| !n.starts_with('.')));
}

#[test]
fn concurrent_tags_from_threads_all_land_in_the_index() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(tmp.path()).unwrap());
    let m = store.put_bytes(b"{\"schemaVersion\":2}").unwrap().descriptor(MediaType::ImageManifest);
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let (store, m) = (store.clone(), m.clone());
            std::thread::spawn(move || store.tag(&Reference::parse(&format!("t/x:{i}")).unwrap(), &m).unwrap())
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(store.list().unwrap().len(), 16);
}

#[test]
fn gc_keeps_an_imported_image_and_removes_it_once_untagged() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let name = Reference::parse("keep").unwrap();
    let img = import_rootfs(&store, &rootfs_tar()[..], &name, &ImportOptions::default()).unwrap();
    let orphan = store.put_bytes(b"orphan").unwrap();
    let report = store.gc().unwrap();
    assert_eq!(report.removed, vec![orphan.digest]);
    assert!(store.has_blob(&img.layer.digest) && store.has_blob(&img.config.digest));
    store.untag(&name).unwrap();
    assert_eq!(store.gc().unwrap().removed.len(), 3);
    assert!(tree(&tmp.path().join("blobs/sha256")).is_empty());
}
