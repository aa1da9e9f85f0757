//! `process.capabilities`: the five capability sets.
//!
//! Like runc, a capability the running kernel does not know is logged with a warning and
//! ignored rather than failing the container; so is a name no Linux version defines, when
//! the spec loader strips it with [`strip_unknown_names`] before typed parsing (the typed
//! `oci_spec` parser itself rejects unknown names).

use std::collections::HashSet;

use caps::{CapSet, Capability as KernelCap};
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

use crate::error::{Error, Result};

/// The capability for a config name: "CAP_SYS_ADMIN", "cap_sys_admin" or "SYS_ADMIN".
pub fn parse_name(name: &str) -> Option<KernelCap> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    format!("CAP_{bare}").parse().ok()
}

/// The kernel capability for an `oci_spec` capability.
pub fn to_kernel(cap: Capability) -> Option<KernelCap> {
    parse_name(&cap.to_string())
}

/// Remove, from a raw config's `process.capabilities`, names that the typed parser would
/// reject, and return them (runc warns and ignores such names; call before parsing).
pub fn strip_unknown_names(config: &mut serde_json::Value) -> Vec<String> {
    let mut removed = Vec::new();
    let Some(sets) = config.pointer_mut("/process/capabilities").and_then(|v| v.as_object_mut()) else {
        return removed;
    };
    for (set, list) in sets.iter_mut() {
        let Some(items) = list.as_array_mut() else {
            continue;
        };
        items.retain(|item| {
            let known = serde_json::from_value::<Capability>(item.clone()).is_ok();
            if !known {
                let name = item.as_str().map_or_else(|| item.to_string(), str::to_string);
                tracing::warn!(capability = %name, set = %set, "ignoring unknown capability");
                removed.push(name);
            }
            known
        });
    }
    removed
}

/// The five sets resolved to kernel capabilities the running kernel supports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapabilitySets {
    /// Capabilities that may ever be gained.
    pub bounding: HashSet<KernelCap>,
    /// Capabilities checked by the kernel.
    pub effective: HashSet<KernelCap>,
    /// Capabilities preserved across execve for programs with file capabilities.
    pub inheritable: HashSet<KernelCap>,
    /// The limiting superset of effective.
    pub permitted: HashSet<KernelCap>,
    /// Capabilities kept across execve of unprivileged programs.
    pub ambient: HashSet<KernelCap>,
}

impl CapabilitySets {
    /// Resolve the config; a missing object means empty sets (like runc).
    pub fn from_config(config: Option<&LinuxCapabilities>) -> Self {
        let supported = caps::runtime::thread_all_supported();
        let resolve = |set: &str, caps: Option<&Capabilities>| -> HashSet<KernelCap> {
            let mut out = HashSet::new();
            for cap in caps.into_iter().flatten() {
                match to_kernel(*cap) {
                    Some(k) if supported.contains(&k) => {
                        out.insert(k);
                    }
                    _ => {
                        tracing::warn!(capability = %cap, set, "ignoring capability unknown to the running kernel")
                    }
                }
            }
            out
        };
        let Some(c) = config else {
            return Self::default();
        };
        CapabilitySets {
            bounding: resolve("bounding", c.bounding().as_ref()),
            effective: resolve("effective", c.effective().as_ref()),
            inheritable: resolve("inheritable", c.inheritable().as_ref()),
            permitted: resolve("permitted", c.permitted().as_ref()),
            ambient: resolve("ambient", c.ambient().as_ref()),
        }
    }

    /// Drop every capability outside `bounding` from the bounding set (needs CAP_SETPCAP,
    /// so call it before changing uid).
    pub fn apply_bounding(&self) -> Result<()> {
        // Dropping a capability that is not in the set is a no-op, so there is no need to
        // read the set first (one prctl per capability instead of two).
        for cap in caps::all().difference(&self.bounding) {
            // SAFETY: prctl with integer arguments only.
            let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap.index() as libc::c_ulong, 0, 0, 0) };
            // EINVAL: a capability this kernel does not know; nothing to drop.
            if rc == -1 && nix::errno::Errno::last() != nix::errno::Errno::EINVAL {
                return Err(Error::Sys { context: format!("drop {cap} from the bounding set"), source: nix::errno::Errno::last() });
            }
        }
        Ok(())
    }

    /// Set effective, permitted and inheritable in one capset(2), then raise ambient.
    ///
    /// A failed ambient raise (old kernel, or a capability missing from permitted or
    /// inheritable) is a warning, as in runc.
    pub fn apply_sets(&self) -> Result<()> {
        capset(&self.effective, &self.permitted, &self.inheritable)?;
        // SAFETY: prctl with integer arguments only; clears this thread's ambient set.
        let rc = unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) };
        if rc == -1 && !self.ambient.is_empty() {
            tracing::warn!(error = %nix::errno::Errno::last(), "cannot clear ambient capabilities");
        }
        for cap in &self.ambient {
            if let Err(e) = caps::raise(None, CapSet::Ambient, *cap) {
                tracing::warn!(capability = %cap, error = %e, "cannot raise ambient capability");
            }
        }
        Ok(())
    }
}

fn mask(set: &HashSet<KernelCap>) -> u64 {
    set.iter().fold(0, |m, c| m | c.bitmask())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

fn capset(effective: &HashSet<KernelCap>, permitted: &HashSet<KernelCap>, inheritable: &HashSet<KernelCap>) -> Result<()> {
    let (e, p, i) = (mask(effective), mask(permitted), mask(inheritable));
    let mut hdr = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let data = [
        CapData { effective: e as u32, permitted: p as u32, inheritable: i as u32 },
        CapData { effective: (e >> 32) as u32, permitted: (p >> 32) as u32, inheritable: (i >> 32) as u32 },
    ];
    // SAFETY: capset(2) with a v3 header reads exactly two CapData entries, which `data`
    // holds; the header is writable as the kernel may update its version on EINVAL.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) };
    if rc == -1 {
        return Err(Error::Sys {
            context: format!("capset(effective {e:#x}, permitted {p:#x}, inheritable {i:#x}) (effective must be within permitted)"),
            source: nix::errno::Errno::last(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_names_parse_with_or_without_prefix_and_in_any_case() {
        assert_eq!(parse_name("CAP_SYS_ADMIN"), Some(KernelCap::CAP_SYS_ADMIN));
        assert_eq!(parse_name("net_bind_service"), Some(KernelCap::CAP_NET_BIND_SERVICE));
        assert_eq!(parse_name("cap_bpf"), Some(KernelCap::CAP_BPF));
        assert_eq!(parse_name("CAP_FLY"), None);
    }

    #[test]
    fn every_oci_capability_maps_to_a_kernel_capability() {
        for cap in [Capability::Perfmon, Capability::CheckpointRestore, Capability::AuditRead, Capability::Setpcap] {
            assert!(to_kernel(cap).is_some(), "{cap}");
        }
    }

    #[test]
    fn unknown_capability_names_are_stripped_before_parsing() {
        let mut v = serde_json::json!({"process": {"capabilities": {
            "bounding": ["CAP_KILL", "CAP_FLY"], "effective": ["CAP_WARP", "CAP_CHOWN"]
        }}});
        let mut removed = strip_unknown_names(&mut v);
        removed.sort();
        assert_eq!(removed, vec!["CAP_FLY", "CAP_WARP"]);
        assert_eq!(v["process"]["capabilities"]["bounding"], serde_json::json!(["CAP_KILL"]));
        let parsed: LinuxCapabilities = serde_json::from_value(v["process"]["capabilities"].clone()).unwrap();
        assert_eq!(parsed.effective().as_ref().map(|s| s.len()), Some(1));
    }

    #[test]
    fn missing_capabilities_object_means_empty_sets() {
        assert_eq!(CapabilitySets::from_config(None), CapabilitySets::default());
    }

    #[test]
    fn config_sets_resolve_to_kernel_sets() {
        let c: LinuxCapabilities = serde_json::from_str(r#"{"bounding":["CAP_KILL","CAP_CHOWN"],"ambient":["CAP_KILL"]}"#).unwrap();
        let s = CapabilitySets::from_config(Some(&c));
        assert_eq!(s.bounding.len(), 2);
        assert!(s.ambient.contains(&KernelCap::CAP_KILL));
        assert!(s.effective.is_empty());
    }
}
