//! OCI device cgroup rules → the state a v1 devices cgroup would end up in.
//!
//! This is runc's devices emulator: the rules are replayed in order against a default
//! policy and a set of exceptions, exactly as the v1 kernel does with `devices.allow` and
//! `devices.deny`, so that the same config means the same thing on v1 and v2.
//!
//! - A rule of type `a` resets everything: `allow` → allow-all with no exceptions,
//!   deny → deny-all with no exceptions. Its major, minor and access are ignored (the
//!   kernel ignores them too).
//! - Any other rule whose action differs from the default adds its access to the exception
//!   for exactly that (type, major, minor); one whose action equals the default removes its
//!   access from that exact exception.
//! - Removing access that a *wider* exception (same type with a wildcard major and/or
//!   minor) grants is an error: v1 would silently keep the wider exception, and runc refuses
//!   to give such a false sense of security ("cannot punch a hole in a wildcard rule").
//!
//! The outcome is "the last matching rule wins" for every config v1 can express. An empty
//! list leaves a deny-all policy, like runc (callers skip empty lists, see `set`).

use std::collections::BTreeMap;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::error::{Error, Result};

/// The device types a device cgroup distinguishes (the order is runc's: block before char).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DeviceKind {
    /// `b`: a block device.
    Block,
    /// `c` (and `u`, an unbuffered character device): a character device.
    Char,
}

/// A set of device accesses, with the kernel's `BPF_DEVCG_ACC_*` bit values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Access(u8);

impl Access {
    /// `m`: mknod.
    pub const MKNOD: Access = Access(1);
    /// `r`: open for reading.
    pub const READ: Access = Access(2);
    /// `w`: open for writing.
    pub const WRITE: Access = Access(4);
    /// `rwm`: everything.
    pub const ALL: Access = Access(7);

    /// Parses a subset of "rwm"; empty means "rwm", as berth's v1 path writes it.
    pub fn parse(s: &str) -> Option<Access> {
        if s.is_empty() {
            return Some(Access::ALL);
        }
        s.chars().try_fold(Access::default(), |acc, c| match c {
            'r' => Some(acc.union(Access::READ)),
            'w' => Some(acc.union(Access::WRITE)),
            'm' => Some(acc.union(Access::MKNOD)),
            _ => None,
        })
    }

    /// The kernel bit mask.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// Whether no access is in the set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Accesses in either set.
    pub fn union(self, other: Access) -> Access {
        Access(self.0 | other.0)
    }

    /// Accesses in `self` but not in `other`.
    pub fn difference(self, other: Access) -> Access {
        Access(self.0 & !other.0)
    }

    /// Accesses in both sets.
    pub fn intersection(self, other: Access) -> Access {
        Access(self.0 & other.0)
    }
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (bit, c) in [(Access::READ, 'r'), (Access::WRITE, 'w'), (Access::MKNOD, 'm')] {
            if !self.intersection(bit).is_empty() {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// Which devices an exception covers; `None` is the `*` wildcard. Sorted like runc:
/// by major, then minor (wildcards first), then type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceMatch {
    /// The major number, or any.
    pub major: Option<u32>,
    /// The minor number, or any.
    pub minor: Option<u32>,
    /// Block or character device.
    pub kind: DeviceKind,
}

impl std::fmt::Display for DeviceMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let num = |n: Option<u32>| n.map_or_else(|| "*".to_string(), |n| n.to_string());
        let t = match self.kind {
            DeviceKind::Block => 'b',
            DeviceKind::Char => 'c',
        };
        write!(f, "{t} {}:{}", num(self.major), num(self.minor))
    }
}

/// One validated OCI rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// Type `a`: reset to allow-all (`true`) or deny-all (`false`).
    Reset(bool),
    /// A rule about some devices.
    Devices { allow: bool, matches: DeviceMatch, access: Access },
}

/// The effective device policy: a default action and exceptions to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePolicy {
    /// What happens to a device no exception matches.
    pub default_allow: bool,
    /// Devices → the accesses for which the opposite of the default applies.
    pub exceptions: BTreeMap<DeviceMatch, Access>,
}

impl DevicePolicy {
    /// Replays `rules` in order, starting from deny-all (as runc does on v2).
    pub fn from_rules(rules: &[LinuxDeviceCgroup]) -> Result<DevicePolicy> {
        let mut policy = DevicePolicy { default_allow: false, exceptions: BTreeMap::new() };
        for (i, r) in rules.iter().enumerate() {
            policy.apply(i, parse_rule(i, r)?)?;
        }
        Ok(policy)
    }

    fn apply(&mut self, index: usize, rule: Rule) -> Result<()> {
        let (allow, matches, access) = match rule {
            Rule::Reset(allow) => {
                *self = DevicePolicy { default_allow: allow, exceptions: BTreeMap::new() };
                return Ok(());
            }
            Rule::Devices { allow, matches, access } => (allow, matches, access),
        };
        if allow != self.default_allow {
            let entry = self.exceptions.entry(matches).or_default();
            *entry = entry.union(access);
            return Ok(());
        }
        // The rule agrees with the default: it can only take access out of an exception.
        let wider = [
            DeviceMatch { major: None, ..matches },
            DeviceMatch { minor: None, ..matches },
            DeviceMatch { major: None, minor: None, ..matches },
        ];
        for w in wider.iter().filter(|w| **w != matches) {
            let held = self.exceptions.get(w).copied().unwrap_or_default();
            if !held.intersection(access).is_empty() {
                return Err(rule_error(
                    index,
                    format!("{matches} {access}"),
                    format!("cannot punch a hole in the earlier wildcard rule \"{w} {held}\" (the v1 devices cgroup would ignore it)"),
                ));
            }
        }
        if let Some(held) = self.exceptions.get_mut(&matches) {
            *held = held.difference(access);
            if held.is_empty() {
                self.exceptions.remove(&matches);
            }
        }
        Ok(())
    }
}

fn rule_error(index: usize, value: String, reason: String) -> Error {
    Error::InvalidValue { file: format!("linux.resources.devices[{index}]"), value, reason }
}

/// Validates one OCI rule; a missing type is `a`, a missing or negative number is `*`.
fn parse_rule(index: usize, r: &LinuxDeviceCgroup) -> Result<Rule> {
    let kind = match r.typ().unwrap_or_default() {
        LinuxDeviceType::A => return Ok(Rule::Reset(r.allow())),
        LinuxDeviceType::B => DeviceKind::Block,
        // Unbuffered character devices are character devices for the cgroup.
        LinuxDeviceType::C | LinuxDeviceType::U => DeviceKind::Char,
        LinuxDeviceType::P => {
            return Err(rule_error(
                index,
                "type p".into(),
                "a FIFO is not a device the device cgroup controls (type must be a, b, c or u)".into(),
            ))
        }
    };
    let number = |what: &str, n: Option<i64>| -> Result<Option<u32>> {
        match n {
            None => Ok(None),
            Some(n) if n < 0 => Ok(None),
            Some(n) => {
                u32::try_from(n).map(Some).map_err(|_| rule_error(index, format!("{what} {n}"), format!("{what} must fit in 32 bits")))
            }
        }
    };
    let major = number("major", r.major())?;
    let minor = number("minor", r.minor())?;
    let text = r.access().as_deref().unwrap_or("");
    let access = Access::parse(text).ok_or_else(|| rule_error(index, text.to_string(), "access must be made of r, w and m".into()))?;
    Ok(Rule::Devices { allow: r.allow(), matches: DeviceMatch { major, minor, kind }, access })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(json: &str) -> Vec<LinuxDeviceCgroup> {
        serde_json::from_str(json).expect("test JSON")
    }

    fn char_dev(major: u32, minor: u32) -> DeviceMatch {
        DeviceMatch { major: Some(major), minor: Some(minor), kind: DeviceKind::Char }
    }

    #[test]
    fn deny_all_then_allows_keeps_only_the_allows() {
        let p = DevicePolicy::from_rules(&rules(
            r#"[{"allow": false, "access": "rwm"},
                {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"},
                {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "m"},
                {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "r"}]"#,
        ))
        .unwrap();
        assert!(!p.default_allow);
        assert_eq!(p.exceptions.len(), 2);
        assert_eq!(p.exceptions[&char_dev(1, 3)], Access::ALL);
        assert_eq!(p.exceptions[&char_dev(1, 5)], Access::READ);
    }

    #[test]
    fn a_later_deny_takes_access_back_from_an_exact_exception() {
        let p = DevicePolicy::from_rules(&rules(
            r#"[{"allow": false},
                {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                {"allow": false, "type": "c", "major": 1, "minor": 3, "access": "w"},
                {"allow": true, "type": "c", "major": 1, "minor": 9, "access": "r"},
                {"allow": false, "type": "c", "major": 1, "minor": 9, "access": "r"}]"#,
        ))
        .unwrap();
        assert_eq!(p.exceptions.len(), 1);
        assert_eq!(p.exceptions[&char_dev(1, 3)].to_string(), "rm");
    }

    #[test]
    fn a_type_a_rule_resets_whatever_came_before() {
        let p = DevicePolicy::from_rules(&rules(
            r#"[{"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                {"allow": true, "type": "a", "major": 7, "access": "r"},
                {"allow": false, "type": "b", "major": 8, "access": "w"}]"#,
        ))
        .unwrap();
        assert!(p.default_allow);
        let only: Vec<_> = p.exceptions.iter().map(|(m, a)| format!("{m} {a}")).collect();
        assert_eq!(only, ["b 8:* w"]);
    }

    #[test]
    fn punching_a_hole_in_a_wildcard_is_refused() {
        let err = DevicePolicy::from_rules(&rules(
            r#"[{"allow": false},
                {"allow": true, "type": "c", "major": 136, "access": "rwm"},
                {"allow": false, "type": "c", "major": 136, "minor": 2, "access": "r"}]"#,
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("devices[2]") && err.contains("c 136:*"), "{err}");
    }

    #[test]
    fn invalid_type_access_and_numbers_are_named() {
        let err = DevicePolicy::from_rules(&rules(r#"[{"allow": true, "type": "p"}]"#)).unwrap_err();
        assert!(err.to_string().contains("devices[0]") && err.to_string().contains("FIFO"), "{err}");
        let err = DevicePolicy::from_rules(&rules(r#"[{"allow": false}, {"allow": true, "type": "c", "access": "rx"}]"#)).unwrap_err();
        assert!(err.to_string().contains("devices[1]") && err.to_string().contains("\"rx\""), "{err}");
        let err = DevicePolicy::from_rules(&rules(r#"[{"allow": true, "type": "b", "major": 4294967296}]"#)).unwrap_err();
        assert!(err.to_string().contains("major 4294967296"), "{err}");
    }

    #[test]
    fn missing_and_negative_numbers_are_wildcards() {
        let p = DevicePolicy::from_rules(&rules(r#"[{"allow": true, "type": "u", "major": -1, "minor": 4}]"#)).unwrap();
        let m = DeviceMatch { major: None, minor: Some(4), kind: DeviceKind::Char };
        assert_eq!(p.exceptions[&m], Access::ALL);
    }
}
