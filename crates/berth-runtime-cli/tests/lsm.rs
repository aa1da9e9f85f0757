//! AppArmor and SELinux on a host that has neither (this one): berth does what runc does —
//! an AppArmor profile is refused (the container would otherwise run unconfined without
//! anyone knowing), SELinux labels are ignored. On a host with the LSM they are applied.

mod common;
use common::*;
use serde_json::json;

#[test]
fn an_apparmor_profile_is_refused_where_apparmor_is_off_and_nothing_is_left() {
    if berth_runtime::lsm::apparmor_enabled() {
        eprintln!("skipped: AppArmor is enabled on this host");
        return;
    }
    let s = Scratch::new("lsm-apparmor");
    let mut b = s.bundle("b", &["true"]);
    b.edit(|c| c["process"]["apparmorProfile"] = json!("berth-default"));
    let id = s.id("aa");
    let out = s.rt(&["create", "--bundle", b.p(), &id]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("AppArmor is not enabled"), "{}", stderr(&out));
    assert!(!s.root.join(&id).exists());
    assert!(!std::path::Path::new(&format!("/sys/fs/cgroup/memory/berth/{id}")).exists());
}

#[test]
fn selinux_labels_are_ignored_where_selinux_is_off() {
    if berth_runtime::lsm::selinux_enabled() {
        eprintln!("skipped: SELinux is enabled on this host");
        return;
    }
    let s = Scratch::new("lsm-selinux");
    let mut b = s.bundle("b", &["sh", "-c", "echo ran"]);
    b.edit(|c| {
        c["process"]["selinuxLabel"] = json!("system_u:system_r:container_t:s0:c1,c2");
        c["linux"]["mountLabel"] = json!("system_u:object_r:container_file_t:s0:c1,c2");
    });
    assert_eq!(ok(&s.run(&b, "c")), "ran\n");
}

#[test]
fn exec_with_an_apparmor_profile_is_refused_where_apparmor_is_off() {
    if berth_runtime::lsm::apparmor_enabled() {
        eprintln!("skipped: AppArmor is enabled on this host");
        return;
    }
    let s = Scratch::new("lsm-exec");
    let b = s.bundle("b", &["sleep", "300"]);
    let id = s.id("c");
    ok(&s.rt(&["run", "--detach", "--bundle", b.p(), &id]));
    let out = s.rt(&["exec", "--apparmor", "berth-default", &id, "true"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("AppArmor is not enabled"), "{}", stderr(&out));
    assert_eq!(ok(&s.rt(&["exec", "--process-label", "system_u:system_r:container_t:s0", &id, "echo", "ok"])), "ok\n");
}
