//! `--cap-add`/`--cap-drop` over docker's default set (or every capability with
//! `--privileged`), with docker's rules: names with or without `CAP_`, any case, `ALL`.

use std::str::FromStr;

use crate::error::{Error, Result};
use crate::specgen::DEFAULT_CAPS;

/// `sys_admin`, `CAP_SYS_ADMIN`, `Sys_Admin` → `CAP_SYS_ADMIN`; `all` → `ALL`. Unknown names
/// are refused, naming the flag.
pub fn normalize(flag: &str, name: &str) -> Result<String> {
    let upper = name.trim().to_ascii_uppercase();
    if upper == "ALL" {
        return Ok(upper);
    }
    let full = if upper.starts_with("CAP_") { upper } else { format!("CAP_{upper}") };
    caps::Capability::from_str(&full).map_err(|_| Error::Invalid(format!("{flag} {name:?}: unknown capability")))?;
    Ok(full)
}

/// Every capability this host's kernel and the caps crate know.
fn all_caps() -> Vec<String> {
    let mut v: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
    v.sort();
    v
}

/// The container's capability set: the default (or all when privileged), then `--cap-drop`
/// (`ALL` empties it), then `--cap-add` (`ALL` fills it); an add wins over a drop of the
/// same capability, as in docker.
pub fn effective_set(privileged: bool, add: &[String], drop: &[String]) -> Result<Vec<String>> {
    let add = add.iter().map(|c| normalize("--cap-add", c)).collect::<Result<Vec<_>>>()?;
    let drop = drop.iter().map(|c| normalize("--cap-drop", c)).collect::<Result<Vec<_>>>()?;
    let mut set: Vec<String> = if privileged { all_caps() } else { DEFAULT_CAPS.iter().map(|c| c.to_string()).collect() };
    if drop.iter().any(|c| c == "ALL") {
        set.clear();
    } else {
        set.retain(|c| !drop.contains(c));
    }
    if add.iter().any(|c| c == "ALL") {
        set = all_caps();
        set.retain(|c| !drop.contains(c) || add.contains(c));
    } else {
        for c in add {
            if !set.contains(&c) {
                set.push(c);
            }
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_names_are_accepted_with_or_without_prefix_in_any_case() {
        assert_eq!(normalize("--cap-add", "sys_admin").unwrap(), "CAP_SYS_ADMIN");
        assert_eq!(normalize("--cap-add", "Cap_Net_Admin").unwrap(), "CAP_NET_ADMIN");
        assert_eq!(normalize("--cap-drop", "all").unwrap(), "ALL");
        let err = normalize("--cap-add", "CAP_MAKE_COFFEE").unwrap_err().to_string();
        assert_eq!(err, "--cap-add \"CAP_MAKE_COFFEE\": unknown capability");
    }

    #[test]
    fn cap_add_and_drop_change_the_default_set_like_docker() {
        let s = effective_set(false, &["sys_admin".into()], &["NET_RAW".into()]).unwrap();
        assert!(
            s.contains(&"CAP_SYS_ADMIN".to_string()) && !s.contains(&"CAP_NET_RAW".to_string()) && s.contains(&"CAP_CHOWN".to_string())
        );
        assert!(effective_set(false, &[], &["ALL".into()]).unwrap().is_empty());
        assert_eq!(effective_set(false, &["chown".into()], &["all".into()]).unwrap(), ["CAP_CHOWN"]);
        let all = effective_set(false, &["ALL".into()], &["SYS_ADMIN".into()]).unwrap();
        assert!(all.contains(&"CAP_SYS_MODULE".to_string()) && !all.contains(&"CAP_SYS_ADMIN".to_string()));
        let privileged = effective_set(true, &[], &["sys_module".into()]).unwrap();
        assert!(privileged.contains(&"CAP_SYS_ADMIN".to_string()) && !privileged.contains(&"CAP_SYS_MODULE".to_string()));
    }
}
