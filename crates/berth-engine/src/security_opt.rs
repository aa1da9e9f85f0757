//! `--security-opt`: seccomp (unconfined or a profile file), no-new-privileges, AppArmor
//! profile, SELinux label parts or `label=disable`.

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};

/// The seccomp choice.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Seccomp {
    /// docker's default profile.
    #[default]
    Default,
    /// No filter.
    Unconfined,
    /// A profile read from a file (OCI `linux.seccomp` JSON).
    Profile(Value),
}

/// What the `--security-opt` flags ask for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SecurityOptions {
    /// seccomp.
    pub seccomp: Seccomp,
    /// `no-new-privileges`.
    pub no_new_privileges: bool,
    /// `apparmor=PROFILE` (`unconfined` means none).
    pub apparmor_profile: Option<String>,
    /// `label=user:…,role:…,type:…,level:…` composed into one SELinux label.
    pub selinux_label: Option<String>,
    /// `label=disable`.
    pub label_disabled: bool,
}

/// Parse every `--security-opt` value (`KEY=VALUE`; docker's older `KEY:VALUE` too).
pub fn parse(values: &[String]) -> Result<SecurityOptions> {
    let mut o = SecurityOptions::default();
    let mut label = [None::<String>, None, None, None]; // user, role, type, level
    for value in values {
        let (k, v) = match value.split_once(['=', ':']) {
            Some((k, v)) => (k, Some(v)),
            None => (value.as_str(), None),
        };
        match (k, v) {
            ("no-new-privileges", None | Some("true")) => o.no_new_privileges = true,
            ("no-new-privileges", Some("false")) => o.no_new_privileges = false,
            ("seccomp", Some("unconfined")) => o.seccomp = Seccomp::Unconfined,
            ("seccomp", Some(file)) if !file.is_empty() => o.seccomp = Seccomp::Profile(read_profile(file)?),
            ("apparmor", Some("unconfined")) => o.apparmor_profile = None,
            ("apparmor", Some(p)) if !p.is_empty() => o.apparmor_profile = Some(p.to_string()),
            ("label", Some("disable")) => o.label_disabled = true,
            ("label", Some(part)) => {
                let (pk, pv) = part.split_once(':').filter(|(_, v)| !v.is_empty()).ok_or_else(|| {
                    Error::Invalid(format!("--security-opt {value:?}: expected label=user:U, role:R, type:T, level:L or disable"))
                })?;
                let slot = match pk {
                    "user" => 0,
                    "role" => 1,
                    "type" => 2,
                    "level" => 3,
                    _ => return Err(Error::Invalid(format!("--security-opt {value:?}: unknown label part {pk:?}"))),
                };
                label[slot] = Some(pv.to_string());
            }
            _ => {
                return Err(Error::Invalid(format!(
                    "--security-opt {value:?}: expected seccomp=unconfined|FILE, no-new-privileges, apparmor=PROFILE or label=…"
                )))
            }
        }
    }
    if label.iter().any(Option::is_some) {
        if o.label_disabled {
            return Err(Error::Invalid("--security-opt label=disable cannot be combined with other label= options".into()));
        }
        // podman's defaults for the parts not given.
        let defaults = ["system_u", "system_r", "container_t", "s0"];
        let parts: Vec<String> = label.iter().zip(defaults).map(|(p, d)| p.clone().unwrap_or_else(|| d.to_string())).collect();
        o.selinux_label = Some(parts.join(":"));
    }
    Ok(o)
}

fn read_profile(file: &str) -> Result<Value> {
    let text = std::fs::read_to_string(Path::new(file)).map_err(|e| Error::Invalid(format!("--security-opt seccomp={file}: {e}")))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| Error::Invalid(format!("--security-opt seccomp={file}: not JSON: {e}")))?;
    if v.get("defaultAction").and_then(Value::as_str).is_none() {
        return Err(Error::Invalid(format!("--security-opt seccomp={file}: the profile has no defaultAction")));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &[&str]) -> Result<SecurityOptions> {
        parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn security_opts_cover_seccomp_nnp_apparmor_and_labels() {
        let o = p(&["seccomp=unconfined", "no-new-privileges", "apparmor=docker-default", "label=type:spc_t"]).unwrap();
        assert_eq!(o.seccomp, Seccomp::Unconfined);
        assert!(o.no_new_privileges);
        assert_eq!(o.apparmor_profile.as_deref(), Some("docker-default"));
        assert_eq!(o.selinux_label.as_deref(), Some("system_u:system_r:spc_t:s0"));
        assert!(p(&["label=disable"]).unwrap().label_disabled);
        assert_eq!(p(&["apparmor=unconfined"]).unwrap().apparmor_profile, None);
        assert_eq!(p(&["seccomp:unconfined"]).unwrap().seccomp, Seccomp::Unconfined);
    }

    #[test]
    fn a_seccomp_profile_file_is_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.json");
        std::fs::write(&f, r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#).unwrap();
        let o = p(&[&format!("seccomp={}", f.display())]).unwrap();
        assert!(matches!(o.seccomp, Seccomp::Profile(v) if v["defaultAction"] == "SCMP_ACT_ALLOW"));
        std::fs::write(&f, "{}").unwrap();
        assert!(p(&[&format!("seccomp={}", f.display())]).unwrap_err().to_string().contains("defaultAction"));
        assert!(p(&["seccomp=/nonexistent.json"]).unwrap_err().to_string().starts_with("--security-opt seccomp=/nonexistent.json:"));
    }

    #[test]
    fn unknown_security_opts_are_refused_naming_the_flag() {
        for bad in ["selinux=on", "label=colour:red", "label=type", "apparmor="] {
            let err = p(&[bad]).unwrap_err().to_string();
            assert!(err.starts_with("--security-opt ") && !err.contains('\n'), "{bad}: {err}");
        }
        assert!(p(&["label=disable", "label=type:x"]).is_err());
    }
}
