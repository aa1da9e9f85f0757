//! What `-v/--volume`, `--mount` and `--tmpfs` ask for, parsed with docker's rules. Turning a
//! request into a mount of the spec (creating volumes, checking sources) is `volumes.rs`'s.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// A mount the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountRequest {
    /// A host path bound into the container.
    Bind {
        /// Absolute host path.
        source: PathBuf,
        /// Absolute container path.
        target: String,
        /// `ro`.
        readonly: bool,
        /// `-v` creates a missing source directory; `--mount` refuses it (docker's rules).
        create_source: bool,
        /// Propagation (`rprivate` unless given).
        propagation: String,
    },
    /// A named volume, or an anonymous one (`name: None`) made for this container.
    Volume {
        /// The volume's name.
        name: Option<String>,
        /// Absolute container path.
        target: String,
        /// `ro`.
        readonly: bool,
        /// `nocopy`: do not copy the image's content at the target into a new volume.
        nocopy: bool,
    },
    /// A tmpfs.
    Tmpfs {
        /// Absolute container path.
        target: String,
        /// Mount options (docker's defaults first, the user's after: later wins).
        options: Vec<String>,
    },
}

impl MountRequest {
    /// The container path.
    pub fn target(&self) -> &str {
        match self {
            MountRequest::Bind { target, .. } | MountRequest::Volume { target, .. } | MountRequest::Tmpfs { target, .. } => target,
        }
    }
}

const PROPAGATIONS: &[&str] = &["shared", "slave", "private", "rshared", "rslave", "rprivate"];

/// Whether `name` is a valid volume name (docker's `[a-zA-Z0-9][a-zA-Z0-9_.-]+`).
pub fn valid_volume_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric()) && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

fn check_target(flag: &str, value: &str, target: &str) -> Result<String> {
    if !target.starts_with('/') {
        return Err(Error::Invalid(format!("{flag} {value:?}: the container path {target:?} must be absolute")));
    }
    let clean = clean_path(target);
    if clean == "/" {
        return Err(Error::Invalid(format!("{flag} {value:?}: cannot mount over the container's root")));
    }
    Ok(clean)
}

/// `/a//b/./c/` → `/a/b/c` (lexically; `..` is left to the runtime, which resolves in the root).
fn clean_path(p: &str) -> String {
    let parts: Vec<&str> = p.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    format!("/{}", parts.join("/"))
}

/// `-v HOST:CTR[:opts]`, `-v NAME:CTR[:opts]` or `-v CTR` (an anonymous volume). A host
/// path is absolute or starts with `./` or `../`.
pub fn parse_volume(value: &str) -> Result<MountRequest> {
    const FLAG: &str = "--volume";
    let parts: Vec<&str> = value.split(':').collect();
    let (source, target, opts) = match parts.as_slice() {
        [t] => (None, *t, ""),
        [s, t] => (Some(*s), *t, ""),
        [s, t, o] => (Some(*s), *t, *o),
        _ => return Err(Error::Invalid(format!("{FLAG} {value:?}: expected [SOURCE:]CONTAINER-PATH[:OPTIONS]"))),
    };
    let target = check_target(FLAG, value, target)?;
    let (mut readonly, mut nocopy, mut propagation) = (false, false, None);
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => readonly = true,
            "rw" => readonly = false,
            // SELinux relabelling: nothing to do where SELinux is absent (the runtime ignores labels there too).
            "z" | "Z" => {}
            "nocopy" => nocopy = true,
            p if PROPAGATIONS.contains(&p) => propagation = Some(p.to_string()),
            other => {
                return Err(Error::Invalid(format!("{FLAG} {value:?}: unknown option {other:?} (ro, rw, z, Z, nocopy, or a propagation)")))
            }
        }
    }
    match source {
        None => Ok(MountRequest::Volume { name: None, target, readonly, nocopy }),
        Some(s) if s.starts_with('/') || is_relative_path(s) => {
            let source = if is_relative_path(s) {
                let cwd = std::env::current_dir().map_err(|e| Error::Invalid(format!("{FLAG} {value:?}: the current directory: {e}")))?;
                cwd.join(s)
            } else {
                PathBuf::from(s)
            };
            if nocopy {
                return Err(Error::Invalid(format!("{FLAG} {value:?}: nocopy applies to volumes, not to bind mounts")));
            }
            Ok(MountRequest::Bind {
                source: PathBuf::from(clean_path(&source.to_string_lossy())),
                target,
                readonly,
                create_source: true,
                propagation: propagation.unwrap_or_else(|| "rprivate".into()),
            })
        }
        Some(s) if valid_volume_name(s) => {
            if propagation.is_some() {
                return Err(Error::Invalid(format!("{FLAG} {value:?}: propagation applies to bind mounts, not to volumes")));
            }
            Ok(MountRequest::Volume { name: Some(s.to_string()), target, readonly, nocopy })
        }
        Some(s) => Err(Error::Invalid(format!(
            "{FLAG} {value:?}: {s:?} is neither a host path (absolute, or ./relative) nor a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)"
        ))),
    }
}

/// `.`, `./x`, `../x`: a host path relative to the current directory (as podman and docker's
/// CLI read them), not a volume name.
fn is_relative_path(s: &str) -> bool {
    s == "." || s == ".." || s.starts_with("./") || s.starts_with("../")
}

fn bool_value(flag: &str, value: &str, key: &str, v: Option<&str>) -> Result<bool> {
    match v {
        None | Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(other) => Err(Error::Invalid(format!("{flag} {value:?}: {key}={other:?} is not a boolean"))),
    }
}

/// `--mount type=bind|volume|tmpfs,source=…,target=…,readonly,…` (docker's keys).
pub fn parse_mount(value: &str, parse_size: &dyn Fn(&str) -> Option<i64>) -> Result<MountRequest> {
    const FLAG: &str = "--mount";
    let (mut typ, mut source, mut target) = ("volume".to_string(), None, None);
    let (mut readonly, mut nocopy, mut propagation) = (false, false, None);
    let mut tmpfs_opts: Vec<String> = Vec::new();
    for field in value.split(',').filter(|f| !f.is_empty()) {
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (field.trim(), None),
        };
        let need = |v: Option<&str>| {
            v.filter(|v| !v.is_empty()).map(String::from).ok_or_else(|| Error::Invalid(format!("{FLAG} {value:?}: {k} needs a value")))
        };
        match k.to_ascii_lowercase().as_str() {
            "type" => typ = need(v)?,
            "source" | "src" => source = Some(need(v)?),
            "target" | "destination" | "dst" => target = Some(need(v)?),
            "readonly" | "ro" => readonly = bool_value(FLAG, value, k, v)?,
            "volume-nocopy" => nocopy = bool_value(FLAG, value, k, v)?,
            "bind-propagation" => {
                let p = need(v)?;
                if !PROPAGATIONS.contains(&p.as_str()) {
                    return Err(Error::Invalid(format!("{FLAG} {value:?}: unknown bind-propagation {p:?}")));
                }
                propagation = Some(p);
            }
            "tmpfs-size" => {
                let s = need(v)?;
                let bytes = parse_size(&s).ok_or_else(|| Error::Invalid(format!("{FLAG} {value:?}: invalid tmpfs-size {s:?}")))?;
                tmpfs_opts.push(format!("size={bytes}"));
            }
            "tmpfs-mode" => {
                let m = need(v)?;
                u32::from_str_radix(&m, 8)
                    .map_err(|_| Error::Invalid(format!("{FLAG} {value:?}: tmpfs-mode {m:?} is not an octal mode")))?;
                tmpfs_opts.push(format!("mode={m}"));
            }
            "consistency" => {}
            other => return Err(Error::Invalid(format!("{FLAG} {value:?}: unknown key {other:?}"))),
        }
    }
    let target = target.ok_or_else(|| Error::Invalid(format!("{FLAG} {value:?}: target is required")))?;
    let target = check_target(FLAG, value, &target)?;
    let only = |what: &str, ok: bool| {
        if ok {
            Ok(())
        } else {
            Err(Error::Invalid(format!("{FLAG} {value:?}: {what} does not apply to type={typ}")))
        }
    };
    only("bind-propagation", propagation.is_none() || typ == "bind")?;
    only("volume-nocopy", !nocopy || typ == "volume")?;
    only("tmpfs-size/tmpfs-mode", tmpfs_opts.is_empty() || typ == "tmpfs")?;
    match typ.as_str() {
        "bind" => {
            let s = source.ok_or_else(|| Error::Invalid(format!("{FLAG} {value:?}: a bind mount needs source=")))?;
            if !s.starts_with('/') {
                return Err(Error::Invalid(format!("{FLAG} {value:?}: the bind source {s:?} must be an absolute path")));
            }
            Ok(MountRequest::Bind {
                source: PathBuf::from(clean_path(&s)),
                target,
                readonly,
                create_source: false,
                propagation: propagation.unwrap_or_else(|| "rprivate".into()),
            })
        }
        "volume" => {
            if let Some(s) = &source {
                if !valid_volume_name(s) {
                    return Err(Error::Invalid(format!("{FLAG} {value:?}: invalid volume name {s:?}")));
                }
            }
            Ok(MountRequest::Volume { name: source, target, readonly, nocopy })
        }
        "tmpfs" => {
            if source.is_some() {
                return Err(Error::Invalid(format!("{FLAG} {value:?}: a tmpfs takes no source")));
            }
            let mut options = tmpfs_defaults();
            if readonly {
                options.push("ro".into());
            }
            options.extend(tmpfs_opts);
            Ok(MountRequest::Tmpfs { target, options })
        }
        other => Err(Error::Invalid(format!("{FLAG} {value:?}: unknown type {other:?} (bind, volume or tmpfs)"))),
    }
}

/// docker's options of a tmpfs: noexec, nosuid, nodev (an `exec` given later wins).
fn tmpfs_defaults() -> Vec<String> {
    vec!["rw".into(), "noexec".into(), "nosuid".into(), "nodev".into()]
}

/// `--tmpfs CTR[:opts]` (opts are tmpfs mount options, e.g. `size=64m,mode=1777,exec`).
pub fn parse_tmpfs(value: &str) -> Result<MountRequest> {
    const FLAG: &str = "--tmpfs";
    let (target, opts) = value.split_once(':').unwrap_or((value, ""));
    let target = check_target(FLAG, value, target)?;
    let mut options = tmpfs_defaults();
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        if o.contains(char::is_whitespace) {
            return Err(Error::Invalid(format!("{FLAG} {value:?}: invalid option {o:?}")));
        }
        options.push(o.to_string());
    }
    Ok(MountRequest::Tmpfs { target, options })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(s: &str) -> Option<i64> {
        s.strip_suffix('m').and_then(|n| n.parse::<i64>().ok()).map(|n| n << 20).or_else(|| s.parse().ok())
    }

    #[test]
    fn volume_flags_tell_binds_named_and_anonymous_volumes_apart() {
        assert_eq!(
            parse_volume("/srv/data:/data:ro,Z").unwrap(),
            MountRequest::Bind {
                source: "/srv/data".into(),
                target: "/data".into(),
                readonly: true,
                create_source: true,
                propagation: "rprivate".into()
            }
        );
        assert_eq!(
            parse_volume("cache:/var/cache/").unwrap(),
            MountRequest::Volume { name: Some("cache".into()), target: "/var/cache".into(), readonly: false, nocopy: false }
        );
        assert_eq!(
            parse_volume("/scratch").unwrap(),
            MountRequest::Volume { name: None, target: "/scratch".into(), readonly: false, nocopy: false }
        );
        assert!(matches!(parse_volume("/a:/b:rshared").unwrap(), MountRequest::Bind { propagation, .. } if propagation == "rshared"));
    }

    #[test]
    fn bad_volume_flags_are_one_line_errors_naming_the_flag() {
        let cwd = std::env::current_dir().unwrap();
        assert!(matches!(parse_volume("./sub:/d").unwrap(), MountRequest::Bind { source, .. } if source == cwd.join("sub")));
        for bad in ["rel/path:/data", "/a:data", "/a:/", "/a:/b:bogus", "a:b:c:d", "-x:/data", "/a:/b:nocopy"] {
            let err = parse_volume(bad).unwrap_err().to_string();
            assert!(err.starts_with("--volume ") && !err.contains('\n'), "{bad}: {err}");
        }
    }

    #[test]
    fn mount_flags_follow_dockers_keys() {
        assert_eq!(
            parse_mount("type=bind,source=/etc,target=/host-etc,readonly", &size).unwrap(),
            MountRequest::Bind {
                source: "/etc".into(),
                target: "/host-etc".into(),
                readonly: true,
                create_source: false,
                propagation: "rprivate".into()
            }
        );
        assert_eq!(
            parse_mount("src=vol1,dst=/v,volume-nocopy", &size).unwrap(),
            MountRequest::Volume { name: Some("vol1".into()), target: "/v".into(), readonly: false, nocopy: true }
        );
        assert_eq!(
            parse_mount("type=tmpfs,target=/t,tmpfs-size=64m,tmpfs-mode=1770", &size).unwrap(),
            MountRequest::Tmpfs {
                target: "/t".into(),
                options: vec![
                    "rw".into(),
                    "noexec".into(),
                    "nosuid".into(),
                    "nodev".into(),
                    format!("size={}", 64 << 20),
                    "mode=1770".into()
                ]
            }
        );
        for bad in [
            "type=bind,target=/x",
            "type=nfs,target=/x",
            "source=v",
            "type=tmpfs,target=/t,tmpfs-mode=99",
            "type=bind,src=/a,dst=/b,colour=red",
            "type=volume,target=/t,tmpfs-size=1m",
            "type=bind,src=/a,dst=/b,readonly=maybe",
        ] {
            let err = parse_mount(bad, &size).unwrap_err().to_string();
            assert!(err.starts_with("--mount ") && !err.contains('\n'), "{bad}: {err}");
        }
    }

    #[test]
    fn tmpfs_flags_keep_dockers_defaults_before_the_users_options() {
        assert_eq!(
            parse_tmpfs("/run:size=1m,exec").unwrap(),
            MountRequest::Tmpfs {
                target: "/run".into(),
                options: vec!["rw".into(), "noexec".into(), "nosuid".into(), "nodev".into(), "size=1m".into(), "exec".into()]
            }
        );
        assert!(parse_tmpfs("run").unwrap_err().to_string().starts_with("--tmpfs "));
    }
}
