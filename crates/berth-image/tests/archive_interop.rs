//! Archives against real peers: skopeo reads what berth saves, berth loads what skopeo writes,
//! umoci unpacks berth's OCI layouts like berth does; tampered archives change nothing.

mod layer_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_image::archive::{self, tar_index::TarIndex, LoadedImage};
use berth_image::reference::Reference;
use berth_image::store::Store;
use berth_image::transport::Transport;
use berth_image::unpack::import::{import_rootfs, ImportOptions};
use berth_image::unpack::{PathPolicy, Snapshots, UnpackOptions};
use berth_image::Error;
use layer_support::{tree, Layer};

fn have(tool: &str) -> bool {
    let ok = Command::new(tool).arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    if !ok {
        eprintln!("skipped: {tool} is not installed (scripts/setup installs it)");
    }
    ok
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

/// A store holding `localhost/berth-test:1`, a one-layer image imported from a small rootfs.
fn store_with_image(dir: &Path) -> (Store, Reference) {
    let store = Store::open(dir.join("store")).unwrap();
    let name = Reference::parse("localhost/berth-test:1").unwrap();
    let tar = Layer::new()
        .dir("bin/", 0o755)
        .file_full("bin/hello", b"#!/bin/sh\necho hello\n", 0o755, 0, 0, 1_600_000_000)
        .dir("etc/", 0o755)
        .file("etc/os-release", b"ID=berth-test\n")
        .symlink("etc/link", "os-release")
        .tar();
    let opts = ImportOptions { cmd: vec!["/bin/hello".into()], created: Some(1_700_000_000), ..Default::default() };
    import_rootfs(&store, &tar[..], &name, &opts).unwrap();
    (store, name)
}

/// Unpack every layer of a loaded image; returns the top snapshot.
fn unpack(store: &Store, image: &LoadedImage, snapshots: &Path) -> PathBuf {
    let snaps = Snapshots::open(snapshots).unwrap();
    let config = json(&store.read_blob(&image.config).unwrap());
    let mut parent = None;
    let mut top = PathBuf::new();
    for (layer, diff_id) in image.layers.iter().zip(config["rootfs"]["diff_ids"].as_array().unwrap()) {
        let opts = UnpackOptions {
            expected_digest: Some(layer.digest().clone()),
            expected_size: Some(layer.size()),
            expected_diff_id: Some(diff_id.as_str().unwrap().parse().unwrap()),
            policy: PathPolicy::Strict,
            same_owner: false,
        };
        let done = snaps.unpack(store.open_blob(layer.digest()).unwrap(), parent.as_ref(), &opts).unwrap();
        parent = Some(done.chain_id);
        top = done.path;
    }
    top
}

fn t(s: &str) -> Transport {
    Transport::parse(s).unwrap()
}

#[test]
fn saved_oci_and_docker_archives_are_readable_by_skopeo() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, name) = store_with_image(tmp.path());
    let oci = tmp.path().join("img-oci.tar");
    let docker = tmp.path().join("img-docker.tar");
    archive::save(&store, std::slice::from_ref(&name), &t(&format!("oci-archive:{}", oci.display()))).unwrap();
    archive::save(&store, std::slice::from_ref(&name), &t(&format!("docker-archive:{}", docker.display()))).unwrap();
    let manifest = store.resolve(&name).unwrap();
    let stored = json(&store.read_blob(manifest.digest()).unwrap());
    if !have("skopeo") {
        return;
    }
    let inspected = json(&run(Command::new("skopeo").arg("inspect").arg(format!("oci-archive:{}", oci.display()))));
    assert_eq!(inspected["Digest"], manifest.digest().to_string(), "an OCI manifest is saved byte for byte");
    assert_eq!(inspected["Layers"][0], stored["layers"][0]["digest"]);
    let config = json(&run(Command::new("skopeo").args(["inspect", "--config"]).arg(format!("docker-archive:{}", docker.display()))));
    assert_eq!(config["config"]["Cmd"][0], "/bin/hello");
    let inspected = json(&run(Command::new("skopeo").arg("inspect").arg(format!("docker-archive:{}", docker.display()))));
    let diff_id = &config["rootfs"]["diff_ids"][0];
    assert_eq!(&inspected["Layers"][0], diff_id, "docker-archive layers are the uncompressed tars");
    assert_eq!(inspected["RepoTags"].as_array().map(Vec::len), Some(0), "{inspected}");
    // docker's current layout is also an OCI layout: skopeo reads it as oci-archive too.
    run(Command::new("skopeo").arg("inspect").arg(format!("oci-archive:{}", docker.display())));
    let raw = json(&run(Command::new("tar").arg("-xOf").arg(&docker).arg("manifest.json")));
    assert_eq!(raw[0]["RepoTags"][0], "localhost/berth-test:1");
}

#[test]
fn skopeo_copies_load_with_matching_digests_and_unpack() {
    if !have("skopeo") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (store, name) = store_with_image(tmp.path());
    let ours = tmp.path().join("ours");
    archive::save(&store, std::slice::from_ref(&name), &t(&format!("oci:{}:v1", ours.display()))).unwrap();
    let theirs = tmp.path().join("theirs");
    let docker = tmp.path().join("copied.tar");
    run(Command::new("skopeo").arg("copy").arg(format!("oci:{}:v1", ours.display())).arg(format!("oci:{}:copied", theirs.display())));
    run(Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci:{}:v1", ours.display()))
        .arg(format!("docker-archive:{}:localhost/copied:v2", docker.display())));

    // The oci: directory skopeo wrote: same manifest digest in the store, unpacks.
    let fresh = Store::open(tmp.path().join("fresh")).unwrap();
    let loaded = archive::load(&fresh, &t(&format!("oci:{}:copied", theirs.display())), None).unwrap();
    let index = json(&std::fs::read(theirs.join("index.json")).unwrap());
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].manifest.digest().to_string(), index["manifests"][0]["digest"].as_str().unwrap());
    assert_eq!(loaded[0].names[0].to_string(), "localhost/theirs:copied");
    assert_eq!(fresh.resolve(&loaded[0].names[0]).unwrap().digest(), loaded[0].manifest.digest());
    let top = unpack(&fresh, &loaded[0], &tmp.path().join("snaps1"));
    assert_eq!(std::fs::read(top.join("etc/os-release")).unwrap(), b"ID=berth-test\n");

    // The docker-archive skopeo wrote (detected by load_path): layers verified by diff_id.
    let fresh2 = Store::open(tmp.path().join("fresh2")).unwrap();
    let (format, loaded) = archive::load_path(&fresh2, &docker, tmp.path()).unwrap();
    assert_eq!(format, archive::ArchiveFormat::DockerArchive);
    assert_eq!(loaded[0].names[0].to_string(), "localhost/copied:v2");
    let config = json(&fresh2.read_blob(&loaded[0].config).unwrap());
    assert_eq!(loaded[0].layers[0].digest().to_string(), config["rootfs"]["diff_ids"][0].as_str().unwrap());
    let inspected = json(&run(Command::new("skopeo").arg("inspect").arg("--config").arg(format!("docker-archive:{}", docker.display()))));
    assert_eq!(inspected, config, "the config is kept byte for byte");
    let top = unpack(&fresh2, &loaded[0], &tmp.path().join("snaps2"));
    assert_eq!(std::fs::read_link(top.join("etc/link")).unwrap(), Path::new("os-release"));
}

#[test]
fn umoci_unpacks_our_oci_dir_to_the_same_tree_as_our_unpacker() {
    if !have("umoci") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (store, name) = store_with_image(tmp.path());
    let layout = tmp.path().join("layout");
    archive::save(&store, std::slice::from_ref(&name), &t(&format!("oci:{}:v1", layout.display()))).unwrap();
    let bundle = tmp.path().join("bundle");
    run(Command::new("umoci").arg("unpack").arg("--image").arg(format!("{}:v1", layout.display())).arg(&bundle));
    let loaded = archive::load(&store, &t(&format!("oci:{}:v1", layout.display())), Some(&name)).unwrap();
    let ours = unpack(&store, &loaded[0], &tmp.path().join("snaps"));
    let theirs = bundle.join("rootfs");
    assert_eq!(tree(&ours), tree(&theirs));
    for file in ["bin/hello", "etc/os-release"] {
        assert_eq!(std::fs::read(ours.join(file)).unwrap(), std::fs::read(theirs.join(file)).unwrap(), "{file}");
    }
}

/// Flip one byte inside the archive member `member` (found through the tar index).
fn flip_byte_in_member(archive: &Path, member: &str) {
    use std::io::Read;
    let idx = TarIndex::open(archive).unwrap();
    let (mut r, size) = idx.open_member(member).unwrap();
    let mut content = Vec::new();
    r.read_to_end(&mut content).unwrap();
    drop(idx);
    let mut bytes = std::fs::read(archive).unwrap();
    let at = bytes.windows(content.len()).position(|w| w == content).unwrap() + (size as usize) / 2;
    bytes[at] ^= 0x20;
    std::fs::write(archive, bytes).unwrap();
}

#[test]
fn tampered_archives_are_rejected_and_leave_the_store_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, name) = store_with_image(tmp.path());
    let stored = json(&store.read_blob(store.resolve(&name).unwrap().digest()).unwrap());
    let config = json(&store.read_blob(&stored["config"]["digest"].as_str().unwrap().parse().unwrap()).unwrap());
    for (format, layer) in [
        ("docker-archive", config["rootfs"]["diff_ids"][0].as_str().unwrap()),
        ("oci-archive", stored["layers"][0]["digest"].as_str().unwrap()),
    ] {
        let path = tmp.path().join(format!("{format}.tar"));
        archive::save(&store, std::slice::from_ref(&name), &t(&format!("{format}:{}", path.display()))).unwrap();
        flip_byte_in_member(&path, &format!("blobs/sha256/{}", layer.trim_start_matches("sha256:")));
        let target = Store::open(tmp.path().join(format!("target-{format}"))).unwrap();
        let snapshot = |s: &Store| (tree(&s.root().join("blobs")), std::fs::read(s.root().join("index.json")).unwrap());
        let before = snapshot(&target);
        let err = archive::load(&target, &t(&format!("{format}:{}", path.display())), None).unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{format}: {err}");
        let msg = err.to_string();
        assert!(msg.contains(layer.trim_start_matches("sha256:")) || msg.contains(&path.display().to_string()), "{msg}");
        assert_eq!(snapshot(&target), before, "{format}: the store is unchanged (blobs and index)");
        assert!(target.list().unwrap().is_empty());
    }
}

#[test]
fn old_docker_archive_layout_with_symlinked_layers_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = store_with_image(tmp.path());
    // Two layers with the same content, as old `docker save` wrote them: <id>/layer.tar, the
    // second a symlink to the first, and the config as <hex>.json.
    let layer = Layer::new().file("a.txt", b"A\n").tar();
    let diff = berth_image::store::digest::sha256_bytes(&layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": { "type": "layers", "diff_ids": [diff.to_string(), diff.to_string()] },
    }))
    .unwrap();
    let config_hex = berth_image::store::digest::sha256_bytes(&config).digest().to_string();
    let manifest = serde_json::json!([{ "Config": format!("{config_hex}.json"), "RepoTags": ["old:1"], "Layers": ["aaa/layer.tar", "bbb/layer.tar"] }]);
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8], link: Option<&str>| {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(if link.is_some() { 0 } else { data.len() as u64 });
        h.set_entry_type(if link.is_some() { tar::EntryType::Symlink } else { tar::EntryType::Regular });
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        h.set_cksum();
        b.append_data(&mut h, name, if link.is_some() { &b""[..] } else { data }).unwrap();
    };
    add("aaa/layer.tar", &layer, None);
    add("bbb/layer.tar", b"", Some("../aaa/layer.tar"));
    add(&format!("{config_hex}.json"), &config, None);
    add("manifest.json", &serde_json::to_vec(&manifest).unwrap(), None);
    let path = tmp.path().join("old.tar");
    std::fs::write(&path, b.into_inner().unwrap()).unwrap();
    let (_, loaded) = archive::load_path(&store, &path, tmp.path()).unwrap();
    assert_eq!(loaded[0].names[0].to_string(), "docker.io/library/old:1");
    assert_eq!(loaded[0].layers.len(), 2);
    assert_eq!(loaded[0].layers[0].digest(), &diff);
    let top = unpack(&store, &loaded[0], &tmp.path().join("snaps"));
    assert_eq!(std::fs::read(top.join("a.txt")).unwrap(), b"A\n");
}
