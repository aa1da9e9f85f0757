//! `--device HOST[:CTR][:PERMS]`: the host's device node recreated in the container (same
//! type, numbers, mode and owner) and a device-cgroup rule allowing it.

use serde_json::{json, Value};

use crate::error::{Error, Result};

/// A device the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRequest {
    /// The host path.
    pub host: String,
    /// The container path (the host path when not given).
    pub container: String,
    /// cgroup access: some of `rwm`.
    pub permissions: String,
}

fn is_permissions(s: &str) -> bool {
    !s.is_empty() && s.len() <= 3 && s.chars().all(|c| "rwm".contains(c))
}

/// Parse `/dev/fuse`, `/dev/null:/dev/mynull`, `/dev/null:rw`, `/dev/null:/dev/n:r`.
pub fn parse(value: &str) -> Result<DeviceRequest> {
    let parts: Vec<&str> = value.split(':').collect();
    let (host, container, permissions) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, p] if is_permissions(p) => (*h, *h, *p),
        [h, c] => (*h, *c, "rwm"),
        [h, c, p] => (*h, *c, *p),
        _ => return Err(Error::Invalid(format!("--device {value:?}: expected HOST[:CONTAINER][:PERMISSIONS]"))),
    };
    if !host.starts_with('/') || !container.starts_with('/') {
        return Err(Error::Invalid(format!("--device {value:?}: device paths must be absolute")));
    }
    if !is_permissions(permissions) {
        return Err(Error::Invalid(format!("--device {value:?}: permissions {permissions:?} must be a combination of r, w and m")));
    }
    Ok(DeviceRequest { host: host.into(), container: container.into(), permissions: permissions.into() })
}

/// The spec's `linux.devices` entry and `linux.resources.devices` rule for a request, from
/// the host's node (symlinks followed, as docker does).
pub fn resolve(req: &DeviceRequest) -> Result<(Value, Value)> {
    let st = nix::sys::stat::stat(req.host.as_str())
        .map_err(|e| Error::Invalid(format!("--device {}: {}", req.host, std::io::Error::from(e))))?;
    let typ = match st.st_mode & libc::S_IFMT {
        libc::S_IFCHR => "c",
        libc::S_IFBLK => "b",
        _ => return Err(Error::Invalid(format!("--device {}: not a character or block device", req.host))),
    };
    let (major, minor) = (libc::major(st.st_rdev) as i64, libc::minor(st.st_rdev) as i64);
    let node = json!({
        "path": req.container, "type": typ, "major": major, "minor": minor,
        "fileMode": st.st_mode & 0o777, "uid": st.st_uid, "gid": st.st_gid,
    });
    let rule = json!({"allow": true, "type": typ, "major": major, "minor": minor, "access": req.permissions});
    Ok((node, rule))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_flags_take_optional_container_path_and_permissions() {
        let d = parse("/dev/null:/dev/mynull").unwrap();
        assert_eq!((d.container.as_str(), d.permissions.as_str()), ("/dev/mynull", "rwm"));
        assert_eq!(parse("/dev/null:r").unwrap().container, "/dev/null");
        assert_eq!(parse("/dev/null:/dev/n:rw").unwrap().permissions, "rw");
        for bad in ["dev/null", "/dev/null:/dev/n:x", "/a:/b:r:w"] {
            assert!(parse(bad).unwrap_err().to_string().starts_with("--device "), "{bad}");
        }
    }

    #[test]
    fn a_host_device_becomes_a_node_and_a_cgroup_rule() {
        let (node, rule) = resolve(&parse("/dev/null:/dev/mynull:rw").unwrap()).unwrap();
        assert_eq!((node["type"].as_str(), node["major"].as_i64(), node["minor"].as_i64()), (Some("c"), Some(1), Some(3)));
        assert_eq!(node["path"], "/dev/mynull");
        assert_eq!(rule, json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}));
        assert!(resolve(&parse("/etc/passwd").unwrap()).unwrap_err().to_string().contains("not a character or block device"));
        assert!(resolve(&parse("/dev/no-such-device").unwrap()).unwrap_err().to_string().starts_with("--device /dev/no-such-device:"));
    }
}
