//! `berth import`, `save`, `load` end to end, with skopeo reading what berth saves.

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn berth(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth")).arg("--root").arg(root).args(args).output().unwrap()
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A rootfs tarball with /bin/busybox and a /bin/sh symlink, or `None` (printed) without busybox.
fn busybox_rootfs(dir: &Path) -> Option<std::path::PathBuf> {
    if !Path::new("/bin/busybox").is_file() {
        eprintln!("skipped: /bin/busybox is missing (busybox-static, installed by scripts/setup)");
        return None;
    }
    let mut b = tar::Builder::new(Vec::new());
    b.append_path_with_name("/bin/busybox", "bin/busybox").unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_mode(0o777);
    h.set_size(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    b.append_link(&mut h, "bin/sh", "busybox").unwrap();
    let path = dir.join("rootfs.tar");
    std::fs::write(&path, b.into_inner().unwrap()).unwrap();
    Some(path)
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn import_of_a_busybox_rootfs_creates_an_image_whose_snapshot_has_busybox() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(rootfs) = busybox_rootfs(tmp.path()) else { return };
    let root = tmp.path().join("root");
    let id = ok(berth(&root, &["import", rootfs.to_str().unwrap(), "localhost/bb:1"]));
    assert_eq!(id.trim().len(), 64, "prints the image id: {id}");
    // One layer: its chain id is its diff_id, the digest of the tarball.
    let chain = sha256_hex(&std::fs::read(&rootfs).unwrap());
    let snapshot = root.join("layers").join(chain);
    assert_eq!(std::fs::read(snapshot.join("bin/busybox")).unwrap(), std::fs::read("/bin/busybox").unwrap());
    assert_eq!(std::fs::read_link(snapshot.join("bin/sh")).unwrap(), Path::new("busybox"));
    let images = ok(berth(&root, &["images"]));
    assert!(images.contains("localhost/bb") && images.contains(&id.trim()[..12]), "{images}");
}

#[test]
fn saved_archives_load_into_another_store_by_file_and_by_stdin() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(rootfs) = busybox_rootfs(tmp.path()) else { return };
    let root = tmp.path().join("root");
    let id = ok(berth(&root, &["import", rootfs.to_str().unwrap(), "localhost/bb:1"]));
    let docker = tmp.path().join("bb-docker.tar");
    let oci = tmp.path().join("bb-oci.tar");
    ok(berth(&root, &["save", "-o", docker.to_str().unwrap(), "localhost/bb:1"]));
    ok(berth(&root, &["save", "--format", "oci-archive", "-o", oci.to_str().unwrap(), &id.trim()[..12]]));

    let other = tmp.path().join("other");
    let out = ok(berth(&other, &["load", "-i", docker.to_str().unwrap()]));
    assert_eq!(out, "Loaded image: localhost/bb:1\n");
    let stdin_root = tmp.path().join("stdin");
    let child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("--root")
        .arg(&stdin_root)
        .arg("load")
        .stdin(std::fs::File::open(&oci).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(ok(child), "Loaded image: localhost/bb:1\n");
    for r in [&other, &stdin_root] {
        let images = ok(berth(r, &["images", "-q"]));
        assert!(images.contains(&id.trim()[..12]), "the config (image id) survives the round trip: {images}");
    }

    let oci_dir = tmp.path().join("layout");
    ok(berth(&root, &["save", "--format", "oci-dir", "-o", oci_dir.to_str().unwrap(), "localhost/bb:1"]));
    assert!(oci_dir.join("index.json").is_file());

    if Command::new("skopeo").arg("--version").output().map(|o| o.status.success()).unwrap_or(false) {
        for target in [format!("docker-archive:{}", docker.display()), format!("oci-archive:{}", oci.display())] {
            let out = Command::new("skopeo").args(["inspect", &target]).output().unwrap();
            assert!(out.status.success(), "skopeo inspect {target}: {}", String::from_utf8_lossy(&out.stderr));
        }
    } else {
        eprintln!("skipped the skopeo half: skopeo is not installed (scripts/setup installs it)");
    }
}

#[test]
fn a_tampered_archive_fails_with_the_member_named_and_nothing_loaded() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(rootfs) = busybox_rootfs(tmp.path()) else { return };
    let root = tmp.path().join("root");
    ok(berth(&root, &["import", rootfs.to_str().unwrap(), "localhost/bb:1"]));
    let archive = tmp.path().join("bb.tar");
    ok(berth(&root, &["save", "-o", archive.to_str().unwrap(), "localhost/bb:1"]));
    let mut bytes = std::fs::read(&archive).unwrap();
    let elf = bytes.windows(4).position(|w| w == b"\x7fELF").unwrap();
    bytes[elf + 5000] ^= 1;
    std::fs::write(&archive, bytes).unwrap();
    let other = tmp.path().join("other");
    let out = berth(&other, &["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("digest mismatch") && err.contains("bb.tar"), "{err}");
    assert_eq!(ok(berth(&other, &["images", "-q"])).trim(), "");
}
