//! `--security-opt seccomp=FILE` takes docker's profile format as well as the OCI one: docker's
//! `archMap`, and rules conditional on capabilities or architectures (`includes`/`excludes`),
//! are resolved here for this host and the container's capability set.

use serde_json::{json, Value};

/// docker's (Go's) name of this host's architecture and libseccomp's.
fn host_arch() -> (&'static str, &'static str) {
    match std::env::consts::ARCH {
        "x86_64" => ("amd64", "SCMP_ARCH_X86_64"),
        "aarch64" => ("arm64", "SCMP_ARCH_AARCH64"),
        "x86" => ("386", "SCMP_ARCH_X86"),
        "arm" => ("arm", "SCMP_ARCH_ARM"),
        "powerpc64" => ("ppc64le", "SCMP_ARCH_PPC64LE"),
        "s390x" => ("s390x", "SCMP_ARCH_S390X"),
        "riscv64" => ("riscv64", "SCMP_ARCH_RISCV64"),
        other => (other, ""),
    }
}

fn strings(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

/// Whether a docker rule applies to a container with `caps` on this host.
fn applies(rule: &Value, caps: &[String], arch: &str) -> bool {
    let has_cap = |c: &str| caps.iter().any(|x| x == c);
    if let Some(inc) = rule.get("includes") {
        if !strings(inc.get("caps")).iter().all(|c| has_cap(c)) {
            return false;
        }
        let arches = strings(inc.get("arches"));
        if !arches.is_empty() && !arches.contains(&arch) {
            return false;
        }
    }
    if let Some(exc) = rule.get("excludes") {
        if strings(exc.get("caps")).iter().any(|c| has_cap(c)) || strings(exc.get("arches")).contains(&arch) {
            return false;
        }
    }
    true
}

/// The OCI `linux.seccomp` for a profile in docker's or OCI's format.
pub fn for_container(profile: &Value, caps: &[String]) -> Value {
    let mut p = profile.clone();
    let (go_arch, scmp_arch) = host_arch();
    let Some(obj) = p.as_object_mut() else { return p };
    if let Some(map) = obj.remove("archMap") {
        if !obj.contains_key("architectures") {
            let entry = map.as_array().into_iter().flatten().find(|e| e.get("architecture").and_then(Value::as_str) == Some(scmp_arch));
            if let Some(e) = entry {
                let mut arches = vec![scmp_arch.to_string()];
                arches.extend(strings(e.get("subArchitectures")).into_iter().map(String::from));
                obj.insert("architectures".into(), json!(arches));
            }
        }
    }
    if let Some(rules) = obj.get_mut("syscalls").and_then(Value::as_array_mut) {
        rules.retain(|r| applies(r, caps, go_arch));
        for r in rules.iter_mut().filter_map(Value::as_object_mut) {
            if let Some(name) = r.remove("name") {
                r.entry("names").or_insert_with(|| json!([name]));
            }
            r.remove("includes");
            r.remove("excludes");
            r.remove("comment");
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_profiles_are_resolved_for_this_host_and_the_capabilities() {
        let (_, scmp) = host_arch();
        let docker = json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "archMap": [{"architecture": scmp, "subArchitectures": ["SUB"]}, {"architecture": "SCMP_ARCH_OTHER"}],
            "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ALLOW", "comment": "always"},
                {"name": "mount", "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_SYS_PTRACE"]}},
                {"names": ["arch_only"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["no-such-arch"]}}
            ]
        });
        let oci = for_container(&docker, &["CAP_CHOWN".to_string()]);
        assert_eq!(oci["architectures"], json!([scmp, "SUB"]));
        assert!(oci.get("archMap").is_none());
        let names: Vec<&Value> = oci["syscalls"].as_array().unwrap().iter().map(|r| &r["names"][0]).collect();
        assert_eq!(names, [&json!("read"), &json!("ptrace")]);
        assert!(oci["syscalls"][0].get("comment").is_none());
        let admin = for_container(&docker, &["CAP_SYS_ADMIN".to_string(), "CAP_SYS_PTRACE".to_string()]);
        let names: Vec<&Value> = admin["syscalls"].as_array().unwrap().iter().map(|r| &r["names"][0]).collect();
        assert_eq!(names, [&json!("read"), &json!("mount")]);
        // An OCI profile is unchanged.
        let plain =
            json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["X"], "syscalls": [{"names": ["a"], "action": "SCMP_ACT_ERRNO"}]});
        assert_eq!(for_container(&plain, &[]), plain);
    }
}
