//! Rootless mode (runc's): what changes when the runtime runs without root — the default
//! state root, the checks a config must pass, and when cgroups can be used.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, LinuxResources, Spec};
use serde_json::Value;

use crate::error::{Error, Result};

/// The state root of a privileged runtime.
pub const SYSTEM_ROOT: &str = "/run/berth-runtime";

/// Whether rootless mode is on for a `--rootless` value: `true`, `false`, or `auto` / none
/// (on when not root or already inside a user namespace, like runc).
pub fn resolve(flag: Option<&str>) -> Result<bool> {
    match flag.unwrap_or("auto") {
        "true" => Ok(true),
        "false" => Ok(false),
        "auto" => Ok(unprivileged() || in_user_namespace()),
        other => Err(Error::InvalidConfig(format!("--rootless {other:?}: expected true, false or auto"))),
    }
}

/// Whether the effective uid is not 0.
pub fn unprivileged() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() != 0 }
}

/// Whether this process runs inside a user namespace (its uid map is not the identity map
/// of the whole id range).
pub fn in_user_namespace() -> bool {
    match std::fs::read_to_string("/proc/self/uid_map") {
        Ok(map) => map.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"],
        Err(_) => false,
    }
}

/// The default `--root`: [`SYSTEM_ROOT`] as root, `$XDG_RUNTIME_DIR/berth-runtime` otherwise
/// (runc uses `$XDG_RUNTIME_DIR/runc`).
pub fn default_root() -> Result<PathBuf> {
    if !unprivileged() {
        return Ok(PathBuf::from(SYSTEM_ROOT));
    }
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => Ok(dir.join("berth-runtime")),
        Some(dir) => Err(Error::InvalidConfig(format!(
            "XDG_RUNTIME_DIR {:?} is not an absolute path: give --root for the container state",
            dir.display()
        ))),
        None => Err(Error::InvalidConfig(format!(
            "not running as root and XDG_RUNTIME_DIR is not set: give --root for the container state \
             (a non-root user cannot write {SYSTEM_ROOT})"
        ))),
    }
}

/// Refuse a config that an unprivileged caller cannot run: without a user namespace, no
/// mount or namespace could be set up.
pub fn validate(spec: &Spec) -> Result<()> {
    if !unprivileged() {
        return Ok(());
    }
    let linux = spec.linux().as_ref();
    let has_userns = linux.and_then(|l| l.namespaces().as_ref()).is_some_and(|ns| ns.iter().any(|n| n.typ() == LinuxNamespaceType::User));
    if !has_userns {
        return Err(Error::InvalidConfig(
            "rootless container requires a user namespace in linux.namespaces (see `spec --rootless`)".into(),
        ));
    }
    Ok(())
}

/// Whether a cgroup directory is delegated to us: it, or its parent if it does not exist
/// yet, is writable by the effective user.
pub fn delegated(dir: &Path) -> bool {
    if dir.exists() {
        return writable(dir);
    }
    dir.parent().is_some_and(|p| p.exists() && writable(p))
}

fn writable(p: &Path) -> bool {
    let Ok(c) = CString::new(p.as_os_str().as_bytes()) else { return false };
    // SAFETY: faccessat reads the NUL-terminated path only.
    unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), libc::W_OK, libc::AT_EACCESS) == 0 }
}

/// The resource settings that need a cgroup, by their JSON names — everything but the
/// device rules, which rootless mode drops as runc does.
pub fn requested_limits(r: &LinuxResources) -> Vec<String> {
    let Ok(Value::Object(fields)) = serde_json::to_value(r) else { return Vec::new() };
    fields.into_iter().filter(|(k, v)| k != "devices" && asks_for_something(v)).map(|(k, _)| k).collect()
}

fn asks_for_something(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Object(m) => m.values().any(asks_for_something),
        Value::Array(a) => !a.is_empty(),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rootless_flag_values_are_checked() {
        assert!(resolve(Some("true")).unwrap());
        assert!(!resolve(Some("false")).unwrap());
        assert!(resolve(Some("maybe")).is_err());
    }

    #[test]
    fn only_non_device_resources_count_as_limits() {
        let devices_only: LinuxResources = serde_json::from_str(r#"{"devices":[{"allow":false,"access":"rwm"}],"memory":{}}"#).unwrap();
        assert!(requested_limits(&devices_only).is_empty());
        let memory: LinuxResources = serde_json::from_str(r#"{"memory":{"limit":1048576}}"#).unwrap();
        assert_eq!(requested_limits(&memory), ["memory"]);
    }

    #[test]
    fn a_missing_cgroup_under_a_missing_parent_is_not_delegated() {
        assert!(!delegated(Path::new("/nonexistent-berth/a/b")));
    }
}
