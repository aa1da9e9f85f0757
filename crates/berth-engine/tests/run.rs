//! The engine end to end: an image imported offline from Debian's busybox-static, then
//! containers created and run from it through the in-process runtime.

use std::path::{Path, PathBuf};

use berth_engine::{ContainerOptions, Engine};
use berth_image::reference::Reference;
use berth_image::unpack::import::{import_rootfs, ImportOptions};

/// A busybox rootfs tarball: /bin/busybox, applet links, /etc/passwd and /etc/group, /tmp.
fn header() -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h
}

fn busybox_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let dir = |b: &mut tar::Builder<Vec<u8>>, p: &str, mode: u32| {
        let mut h = header();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(mode);
        h.set_size(0);
        b.append_data(&mut h, p, std::io::empty()).unwrap();
    };
    for (d, m) in [("bin", 0o755), ("etc", 0o755), ("tmp", 0o1777), ("proc", 0o755), ("sys", 0o755), ("dev", 0o755), ("home/user", 0o755)] {
        dir(&mut b, d, m);
    }
    let bb = std::fs::read("/bin/busybox").expect("/bin/busybox (busybox-static) is required");
    let mut h = header();
    h.set_mode(0o755);
    h.set_size(bb.len() as u64);
    b.append_data(&mut h, "bin/busybox", &bb[..]).unwrap();
    for applet in ["sh", "id", "echo", "cat", "pwd", "env", "hostname", "true", "ls"] {
        let mut h = header();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox").unwrap();
    }
    for (p, text) in [
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n"),
        ("etc/group", "root:x:0:\nuser:x:1000:\nstaff:x:50:user\n"),
    ] {
        let mut h = header();
        h.set_mode(0o644);
        h.set_size(text.len() as u64);
        b.append_data(&mut h, p, text.as_bytes()).unwrap();
    }
    b.into_inner().unwrap()
}

struct Fixture {
    dir: PathBuf,
    engine: Engine,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let dir = std::env::temp_dir().join(format!("berth-engine-it-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let engine = Engine::open(&dir.join("root"), &dir.join("run")).unwrap();
        let opts = ImportOptions {
            cmd: vec!["sh".into()],
            env: vec!["FROM_IMAGE=yes".into()],
            working_dir: Some("/tmp".into()),
            ..Default::default()
        };
        let name = Reference::parse("localhost/demo:latest").unwrap();
        import_rootfs(engine.store(), &busybox_tar()[..], &name, &opts).unwrap();
        Fixture { dir, engine }
    }

    fn upper(&self, id: &str) -> PathBuf {
        self.dir.join("root/containers").join(id).join("upper")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for c in self.engine.containers().unwrap_or_default() {
            let _ = self.engine.remove(&c.id, true, false);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn mounted(path: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().any(|l| l.split(' ').nth(4) == path.to_str())
}

#[test]
fn run_applies_the_image_config_and_the_users_flags() {
    let f = Fixture::new("config");
    let opts = ContainerOptions {
        command: vec![
            "sh".into(),
            "-c".into(),
            "id -u > uid; id -G > groups; pwd > cwd; echo $FROM_IMAGE $FOO > env; hostname > host; exit 3".into(),
        ],
        env: vec!["FOO=bar".into()],
        user: Some("user".into()),
        hostname: Some("box".into()),
        ..Default::default()
    };
    let id = f.engine.create("localhost/demo", Some("c1"), &opts, &berth_engine::ContainerSettings::default(), false).unwrap();
    let rootfs = f.dir.join("root/containers").join(&id).join("bundle/rootfs");
    assert!(mounted(&rootfs), "the overlay is not mounted");
    assert_eq!(f.engine.run_foreground(&id).unwrap(), 3);
    let read = |name: &str| std::fs::read_to_string(f.upper(&id).join("tmp").join(name)).unwrap();
    assert_eq!(read("uid"), "1000\n");
    assert_eq!(read("groups"), "1000 50\n");
    assert_eq!(read("cwd"), "/tmp\n");
    assert_eq!(read("env"), "yes bar\n");
    assert_eq!(read("host"), "box\n");
    let row = f.engine.containers().unwrap().into_iter().find(|c| c.id == id).unwrap();
    assert_eq!((row.state.as_str(), row.exit_code), ("exited", Some(3)));
    // The name is taken while the container exists.
    assert!(matches!(
        f.engine.create("localhost/demo", Some("c1"), &opts, &berth_engine::ContainerSettings::default(), false),
        Err(berth_engine::Error::NameInUse(_))
    ));
    f.engine.remove(&id, false, false).unwrap();
    assert!(!mounted(&rootfs));
    assert!(!f.dir.join("root/containers").join(&id).exists());
}

#[test]
fn run_with_rm_leaves_nothing_and_default_security_applies() {
    let f = Fixture::new("rm");
    // Default seccomp denies unshare of namespaces; docker's caps exclude SYS_ADMIN.
    let opts = ContainerOptions {
        command: vec![
            "sh".into(),
            "-c".into(),
            "grep -q '^CapEff:.*a80425fb' /proc/self/status || exit 10; grep -q 'Seccomp:.*2' /proc/self/status || exit 11; exit 0".into(),
        ],
        ..Default::default()
    };
    let id = f.engine.create("localhost/demo", None, &opts, &berth_engine::ContainerSettings::default(), true).unwrap();
    assert_eq!(f.engine.run_foreground(&id).unwrap(), 0);
    assert!(f.engine.containers().unwrap().is_empty());
    assert!(!f.dir.join("root/containers").join(&id).exists());
}

#[test]
fn an_unknown_image_or_user_is_a_clear_error_and_leaves_nothing() {
    let f = Fixture::new("bad");
    let err = f
        .engine
        .create("localhost/nope", None, &ContainerOptions::default(), &berth_engine::ContainerSettings::default(), false)
        .unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    let opts = ContainerOptions { user: Some("ghost".into()), command: vec!["true".into()], ..Default::default() };
    let err = f.engine.create("localhost/demo", None, &opts, &berth_engine::ContainerSettings::default(), false).unwrap_err();
    assert!(err.to_string().contains("unable to find user ghost"), "{err}");
    assert!(f.engine.containers().unwrap().is_empty());
    assert_eq!(std::fs::read_dir(f.dir.join("root/containers")).unwrap().count(), 0);
}
