//! Loading and validating a bundle's config.json.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{Error, Result};

pub use crate::spec_template::{default_spec, features};

/// The major version of the runtime spec berth-runtime implements.
pub const OCI_VERSION: &str = "1.2.0";

/// A validated config together with the bundle it came from.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Absolute path of the bundle directory.
    pub path: PathBuf,
    /// The parsed config.
    pub spec: Spec,
    /// Absolute, canonical host path of the root filesystem.
    pub rootfs: PathBuf,
    /// config.json as read (kept verbatim in the container's state directory).
    pub raw: Vec<u8>,
}

impl Bundle {
    /// Read `<bundle>/config.json`, parse and validate it.
    pub fn load(bundle: &Path) -> Result<Self> {
        let bundle_err = |message: String| Error::Bundle { path: bundle.to_path_buf(), message };
        let path = std::fs::canonicalize(bundle).map_err(|e| bundle_err(format!("cannot open bundle directory: {e}")))?;
        let config = path.join("config.json");
        let text = std::fs::read(&config).map_err(|e| Error::Bundle { path: config.clone(), message: format!("cannot read: {e}") })?;
        let spec = parse_config(&text, &config)?;
        let rootfs = resolve_rootfs(&path, &spec)?;
        validate(&spec)?;
        Ok(Bundle { path, spec, rootfs, raw: text })
    }
}

/// Parse a config.json. Like runc, capability names this build does not know are dropped
/// with a warning instead of failing (that slower path is only taken when needed).
pub fn parse_config(text: &[u8], path: &Path) -> Result<Spec> {
    let malformed = |e: serde_json::Error| Error::Bundle { path: path.to_path_buf(), message: format!("malformed config: {e}") };
    let first = match serde_json::from_slice::<Spec>(text) {
        Ok(spec) => return Ok(spec),
        Err(e) => e,
    };
    let mut raw: serde_json::Value = serde_json::from_slice(text).map_err(malformed)?;
    if crate::process::capabilities::strip_unknown_names(&mut raw).is_empty() {
        return Err(malformed(first));
    }
    serde_json::from_value(raw).map_err(malformed)
}

fn resolve_rootfs(bundle: &Path, spec: &Spec) -> Result<PathBuf> {
    let root = spec.root().as_ref().ok_or_else(|| Error::InvalidConfig("root is required".into()))?;
    let p = root.path();
    let joined = if p.is_absolute() { p.clone() } else { bundle.join(p) };
    let canon =
        std::fs::canonicalize(&joined).map_err(|e| Error::Bundle { path: joined.clone(), message: format!("root filesystem: {e}") })?;
    if !canon.is_dir() {
        return Err(Error::Bundle { path: joined, message: "root filesystem is not a directory".into() });
    }
    Ok(canon)
}

/// Check what can be checked before anything is created.
pub fn validate(spec: &Spec) -> Result<()> {
    check_version(spec.version())?;
    let process = spec.process().as_ref();
    if let Some(p) = process {
        if p.args().as_ref().is_none_or(|a| a.is_empty()) {
            return Err(Error::InvalidConfig("process.args must not be empty".into()));
        }
        if !p.cwd().is_absolute() {
            return Err(Error::InvalidConfig(format!("process.cwd {:?} must be an absolute path", p.cwd())));
        }
    } else {
        return Err(Error::InvalidConfig("process is required".into()));
    }
    let Some(linux) = spec.linux().as_ref() else {
        return Ok(());
    };
    let mut seen = Vec::new();
    for ns in linux.namespaces().iter().flatten() {
        if seen.contains(&ns.typ()) {
            return Err(Error::InvalidConfig(format!("namespace {} listed twice", ns.typ())));
        }
        seen.push(ns.typ());
        if let Some(path) = ns.path() {
            if !path.is_absolute() {
                return Err(Error::InvalidConfig(format!("namespace {} path {path:?} must be absolute", ns.typ())));
            }
        }
    }
    let has_userns = seen.contains(&LinuxNamespaceType::User);
    let has_maps =
        linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty()) || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if has_maps && !has_userns {
        return Err(Error::InvalidConfig("uidMappings/gidMappings are set but there is no user namespace".into()));
    }
    if spec.hostname().as_ref().is_some_and(|h| !h.is_empty()) && !seen.contains(&LinuxNamespaceType::Uts) {
        return Err(Error::InvalidConfig("hostname requires a new uts namespace".into()));
    }
    if linux.time_offsets().as_ref().is_some_and(|o| !o.is_empty()) && !seen.contains(&LinuxNamespaceType::Time) {
        return Err(Error::InvalidConfig("timeOffsets require a time namespace".into()));
    }
    Ok(())
}

fn check_version(v: &str) -> Result<()> {
    let major = v.split('.').next().and_then(|m| m.parse::<u32>().ok());
    match major {
        Some(1) => Ok(()),
        _ => Err(Error::InvalidConfig(format!("unsupported ociVersion {v:?}: berth-runtime implements runtime-spec 1.x"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_check_accepts_1x_and_rejects_others() {
        assert!(check_version("1.0.2").is_ok());
        assert!(check_version("1.2.0").is_ok());
        assert!(check_version("2.0.0").is_err());
        assert!(check_version("").is_err());
        assert!(check_version("banana").is_err());
    }
}
