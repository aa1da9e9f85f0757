//! Layer unpacking: round trips, whiteouts on a real overlayfs, compression, hostile layers.

mod layer_support;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use berth_image::store::digest::sha256_bytes;
use berth_image::unpack::{chain_id, Compression, PathPolicy, Snapshots, UnpackOptions};
use berth_image::Error;
use layer_support::{gzip, lgetxattr, tree, zstd, Layer};
use tar::EntryType;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn unpack(snaps: &Snapshots, bytes: &[u8], policy: PathPolicy) -> berth_image::Result<berth_image::unpack::UnpackedLayer> {
    let opts = UnpackOptions { policy, same_owner: is_root(), ..Default::default() };
    snaps.unpack(bytes, None, &opts)
}

#[test]
fn files_dirs_links_devices_fifos_xattrs_modes_and_mtimes_round_trip() {
    if !is_root() {
        eprintln!("skipped: needs root for devices, ownership and trusted xattrs");
        return;
    }
    let long = format!("deep/{}/file", "n".repeat(120));
    let tar = Layer::new()
        .dir("./", 0o755)
        .dir("etc/", 0o711)
        .file_full("etc/secret", b"s3cret", 0o4750, 1234, 5678, 1_234_567_890)
        .symlink("etc/link", "secret")
        .symlink("abs", "/etc/secret")
        .hardlink("etc/hard", "etc/secret")
        .node(EntryType::Char, "dev/null", 0o666, 1, 3)
        .node(EntryType::Block, "dev/loop9", 0o660, 7, 9)
        .node(EntryType::Fifo, "run/fifo", 0o600, 0, 0)
        .file_with_pax("xattr", b"x", &[("SCHILY.xattr.user.berth", b"yes"), ("mtime", b"1500000000.25")])
        .long_file(&long, b"long")
        .tar();
    let tmp = tempfile::tempdir().unwrap();
    let snaps = Snapshots::open(tmp.path().join("snapshots")).unwrap();
    let layer = unpack(&snaps, &tar, PathPolicy::Strict).unwrap();
    assert_eq!(layer.diff_id, sha256_bytes(&tar));
    assert_eq!(layer.chain_id, layer.diff_id);
    assert_eq!(layer.compression, Compression::None);
    let root = &layer.path;
    assert_eq!(root, &snaps.path(&layer.chain_id).unwrap());

    let m = std::fs::symlink_metadata(root.join("etc")).unwrap();
    assert!(m.is_dir());
    assert_eq!(m.permissions().mode() & 0o7777, 0o711);
    assert_eq!(m.mtime(), 1_600_000_000, "directory mtime set after its children");

    let m = std::fs::symlink_metadata(root.join("etc/secret")).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o4750);
    assert_eq!((m.uid(), m.gid()), (1234, 5678));
    assert_eq!(m.mtime(), 1_234_567_890);
    assert_eq!(m.nlink(), 2);
    assert_eq!(std::fs::read(root.join("etc/secret")).unwrap(), b"s3cret");
    assert_eq!(std::fs::symlink_metadata(root.join("etc/hard")).unwrap().ino(), m.ino());

    assert_eq!(std::fs::read_link(root.join("etc/link")).unwrap(), Path::new("secret"));
    assert_eq!(std::fs::read_link(root.join("abs")).unwrap(), Path::new("/etc/secret"));

    let m = std::fs::symlink_metadata(root.join("dev/null")).unwrap();
    assert!(m.file_type().is_char_device());
    assert_eq!(m.rdev(), libc::makedev(1, 3));
    assert_eq!(m.permissions().mode() & 0o7777, 0o666);
    let m = std::fs::symlink_metadata(root.join("dev/loop9")).unwrap();
    assert!(m.file_type().is_block_device());
    assert_eq!(m.rdev(), libc::makedev(7, 9));
    assert!(std::fs::symlink_metadata(root.join("run/fifo")).unwrap().file_type().is_fifo());

    assert_eq!(lgetxattr(&root.join("xattr"), "user.berth").as_deref(), Some(&b"yes"[..]));
    let m = std::fs::symlink_metadata(root.join("xattr")).unwrap();
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_500_000_000, 250_000_000));

    assert_eq!(std::fs::read(root.join(&long)).unwrap(), b"long");
    // Only the snapshot itself is left in the snapshot directory.
    assert_eq!(std::fs::read_dir(tmp.path().join("snapshots")).unwrap().count(), 1);
}

fn whiteout_layers() -> (Vec<u8>, Vec<u8>) {
    let lower = Layer::new().file("keep", b"keep").file("gone", b"gone").dir("dir/", 0o755).file("dir/old", b"old").tar();
    let upper = Layer::new().file(".wh.gone", b"").file("dir/.wh..wh..opq", b"").file("dir/new", b"new").tar();
    (lower, upper)
}

#[test]
fn whiteouts_become_overlay_devices_and_opaque_xattrs() {
    if !is_root() {
        eprintln!("skipped: whiteout devices and trusted xattrs need root");
        return;
    }
    let (lower, upper) = whiteout_layers();
    let tmp = tempfile::tempdir().unwrap();
    let snaps = Snapshots::open(tmp.path()).unwrap();
    let l0 = unpack(&snaps, &lower, PathPolicy::Strict).unwrap();
    let opts = UnpackOptions::default();
    let l1 = snaps.unpack(&upper[..], Some(&l0.chain_id), &opts).unwrap();
    assert_eq!(Some(l1.chain_id.clone()), chain_id(&[l0.diff_id.clone(), l1.diff_id.clone()]));
    let m = std::fs::symlink_metadata(l1.path.join("gone")).unwrap();
    assert!(m.file_type().is_char_device());
    assert_eq!(m.rdev(), 0);
    assert!(!l1.path.join(".wh.gone").exists());
    assert_eq!(lgetxattr(&l1.path.join("dir"), "trusted.overlay.opaque").as_deref(), Some(&b"y"[..]));
    assert!(!l1.path.join("dir/.wh..wh..opq").exists());
}

#[test]
fn overlayfs_of_two_snapshots_hides_whited_out_files() {
    if !is_root() {
        eprintln!("skipped: mounting overlayfs needs root");
        return;
    }
    let (lower, upper) = whiteout_layers();
    let tmp = tempfile::tempdir().unwrap();
    let snaps = Snapshots::open(tmp.path().join("s")).unwrap();
    let l0 = unpack(&snaps, &lower, PathPolicy::Strict).unwrap();
    let l1 = snaps.unpack(&upper[..], Some(&l0.chain_id), &UnpackOptions::default()).unwrap();
    let merged = tmp.path().join("merged");
    std::fs::create_dir(&merged).unwrap();
    let opts = format!("lowerdir={}:{}", l1.path.display(), l0.path.display());
    let script = format!("mount -t overlay overlay -o {opts} {m} && ls -A {m} {m}/dir; umount {m}", m = merged.display());
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", &script]);
    // SAFETY: only async-signal-safe syscalls run between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let root = c"/";
            if libc::mount(std::ptr::null(), root.as_ptr(), std::ptr::null(), libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "overlay mount failed: {}", String::from_utf8_lossy(&out.stderr));
    let listed: Vec<&str> = stdout.lines().filter(|l| !l.is_empty() && !l.ends_with(':')).collect();
    assert_eq!(listed, vec!["dir", "keep", "new"], "merged view: {stdout}");
}

#[test]
fn gzip_zstd_and_plain_give_the_same_diff_id() {
    let tar = Layer::new().dir("a/", 0o755).file("a/b", &vec![7u8; 300_000]).file("c", b"c").tar();
    let diff_id = sha256_bytes(&tar);
    for (bytes, kind) in [(tar.clone(), Compression::None), (gzip(&tar), Compression::Gzip), (zstd(&tar), Compression::Zstd)] {
        let tmp = tempfile::tempdir().unwrap();
        let snaps = Snapshots::open(tmp.path()).unwrap();
        let opts = UnpackOptions { same_owner: false, ..Default::default() };
        let l = snaps.unpack(&bytes[..], None, &opts).unwrap();
        assert_eq!(l.compression, kind);
        assert_eq!(l.diff_id, diff_id, "{kind:?}");
        assert_eq!(l.digest, sha256_bytes(&bytes), "{kind:?}");
        assert_eq!(l.size, bytes.len() as u64);
        assert_eq!(std::fs::read(l.path.join("a/b")).unwrap().len(), 300_000);
    }
}

#[test]
fn a_layer_whose_digest_does_not_match_leaves_no_snapshot() {
    let tar = gzip(&Layer::new().file("f", b"data").tar());
    let mut tampered = tar.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0xff; // the gzip trailer's size field: still decodes, wrong digest
    let tmp = tempfile::tempdir().unwrap();
    let snaps = Snapshots::open(tmp.path()).unwrap();
    let opts = UnpackOptions { expected_digest: Some(sha256_bytes(&tar)), same_owner: false, ..Default::default() };
    let err = snaps.unpack(&tampered[..], None, &opts).unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. } | Error::Io { .. }), "{err}");
    let truncated = &tar[..tar.len() / 2];
    assert!(snaps.unpack(truncated, None, &UnpackOptions { same_owner: false, ..Default::default() }).is_err());
    assert!(tree(tmp.path()).is_empty(), "left behind: {:?}", tree(tmp.path()));
}

/// Unpack a hostile layer and check: HostileLayer, nothing outside, no snapshot left.
fn assert_hostile(name: &str, tar: &[u8], policy: PathPolicy) {
    let tmp = tempfile::tempdir().unwrap();
    let sentinel = tmp.path().join("sentinel");
    std::fs::create_dir_all(sentinel.join("etc")).unwrap();
    std::fs::write(sentinel.join("etc/passwd"), b"root").unwrap();
    let snap_root = sentinel.join("a/b/snapshots");
    let snaps = Snapshots::open(&snap_root).unwrap();
    let before = tree(tmp.path());
    let host_passwd = std::fs::read("/etc/passwd").ok();
    let err = unpack(&snaps, tar, policy).expect_err(name);
    assert!(matches!(err, Error::HostileLayer { .. }), "{name}: expected HostileLayer, got {err}");
    assert_eq!(tree(tmp.path()), before, "{name}: something was written");
    assert_eq!(std::fs::read(sentinel.join("etc/passwd")).unwrap(), b"root");
    assert_eq!(std::fs::read("/etc/passwd").ok(), host_passwd);
    assert!(!Path::new("/x").exists() && !Path::new("/outside").exists());
}

#[test]
fn hostile_layers_are_rejected_and_leave_nothing() {
    use PathPolicy::{Docker, Strict};
    let dotdot = Layer::new().file("../../etc/passwd", b"pwned").tar();
    let nested_dotdot = Layer::new().dir("a/", 0o755).file("a/../../../etc/passwd", b"pwned").tar();
    let absolute = Layer::new().file("/etc/passwd", b"pwned").tar();
    let symlink_root = Layer::new().symlink("evil", "/").file("evil/etc/x", b"pwned").tar();
    let symlink_up = Layer::new().symlink("evil", "../../..").file("evil/etc/x", b"pwned").tar();
    let hardlink_out = Layer::new().hardlink("link", "../../outside").tar();
    let hardlink_via_symlink = Layer::new().symlink("evil", "/etc").hardlink("link", "evil/passwd").tar();
    let whiteout_dotdot = Layer::new().file(".wh...", b"").tar();
    let nested_whiteout_dotdot = Layer::new().dir("d/", 0o755).file("d/.wh...", b"").tar();
    let cases: &[(&str, &[u8], &[PathPolicy])] = &[
        ("../../etc/passwd", &dotdot, &[Strict, Docker]),
        ("a/../../../etc/passwd", &nested_dotdot, &[Strict, Docker]),
        ("/etc/passwd absolute", &absolute, &[Strict]),
        ("evil -> / then evil/etc/x", &symlink_root, &[Strict]),
        ("evil -> ../../.. then evil/etc/x", &symlink_up, &[Strict]),
        ("hardlink to ../../outside", &hardlink_out, &[Strict, Docker]),
        ("hardlink through evil -> /etc", &hardlink_via_symlink, &[Strict]),
        (".wh...", &whiteout_dotdot, &[Strict, Docker]),
        ("d/.wh...", &nested_whiteout_dotdot, &[Strict, Docker]),
    ];
    for (name, tar, policies) in cases {
        for policy in *policies {
            assert_hostile(&format!("{name} ({policy:?})"), tar, *policy);
        }
    }
}

#[test]
fn docker_policy_keeps_absolute_and_symlinked_writes_inside() {
    let cases = [
        Layer::new().file("/etc/passwd", b"inside").tar(),
        Layer::new().symlink("evil", "/").file("evil/etc/passwd", b"inside").tar(),
        Layer::new().symlink("evil", "../../..").file("evil/etc/passwd", b"inside").tar(),
    ];
    for tar in cases {
        let tmp = tempfile::tempdir().unwrap();
        let snaps = Snapshots::open(tmp.path().join("snapshots")).unwrap();
        let l = unpack(&snaps, &tar, PathPolicy::Docker).unwrap();
        assert_eq!(std::fs::read(l.path.join("etc/passwd")).unwrap(), b"inside");
        assert_eq!(tree(tmp.path()).iter().filter(|p| !p.starts_with("snapshots")).count(), 0);
    }
}

#[test]
fn a_later_entry_replaces_an_earlier_one_without_following_it() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    std::fs::write(&outside, b"untouched").unwrap();
    let snaps = Snapshots::open(tmp.path().join("s")).unwrap();
    // A symlink to an outside file, then a regular file of the same name: the link is replaced.
    let tar = Layer::new().symlink("f", outside.to_str().unwrap()).file("f", b"new").tar();
    let l = unpack(&snaps, &tar, PathPolicy::Strict).unwrap();
    assert_eq!(std::fs::read(&outside).unwrap(), b"untouched");
    assert_eq!(std::fs::read(l.path.join("f")).unwrap(), b"new");
    assert!(std::fs::symlink_metadata(l.path.join("f")).unwrap().is_file());
}
