//! Parsing a mount's fstab-style `options` into mount(2) flags, propagation changes,
//! recursive mount attributes (mount_setattr), runc's extensions and the data string.

use crate::error::{Error, Result};

/// `MS_NOSYMFOLLOW` (Linux 5.10), spelled out because not every binding has it.
const MS_NOSYMFOLLOW: u64 = 0x100;

/// The parsed options of one mount.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// mount(2) flags to set.
    pub flags: u64,
    /// mount(2) flags the options explicitly clear (`rw`, `suid`, `dev`, `exec`, `atime`…).
    pub cleared: u64,
    /// Propagation changes in the order given, each `MS_SHARED|MS_SLAVE|MS_PRIVATE|MS_UNBINDABLE`
    /// possibly with `MS_REC`.
    pub propagation: Vec<u64>,
    /// `MOUNT_ATTR_*` set recursively (`rro`, `rnosuid`, …).
    pub rec_attr_set: u64,
    /// `MOUNT_ATTR_*` cleared recursively (`rrw`, `rsuid`, …).
    pub rec_attr_clr: u64,
    /// Filesystem-specific options, passed as mount(2) data.
    pub data: Vec<String>,
    /// `tmpcopyup`: copy the destination's content into the new tmpfs.
    pub tmpcopyup: bool,
    /// `idmap` / `ridmap` was asked for.
    pub idmap: bool,
}

/// (name, clears?, flag) of runc's mount flag table.
/// Every option name the parser understands (what `features` reports as mountOptions).
pub fn known_options() -> Vec<&'static str> {
    let mut names: Vec<&'static str> =
        FLAGS.iter().map(|f| f.0).chain(PROPAGATION.iter().map(|p| p.0)).chain(REC_ATTRS.iter().map(|r| r.0)).collect();
    names.push("tmpcopyup");
    names.sort_unstable();
    names.dedup();
    names
}

const FLAGS: &[(&str, bool, u64)] = &[
    ("acl", false, libc::MS_POSIXACL),
    ("async", true, libc::MS_SYNCHRONOUS),
    ("atime", true, libc::MS_NOATIME),
    ("bind", false, libc::MS_BIND),
    ("defaults", false, 0),
    ("dev", true, libc::MS_NODEV),
    ("diratime", true, libc::MS_NODIRATIME),
    ("dirsync", false, libc::MS_DIRSYNC),
    ("exec", true, libc::MS_NOEXEC),
    ("iversion", false, libc::MS_I_VERSION),
    ("lazytime", false, libc::MS_LAZYTIME),
    ("loud", true, libc::MS_SILENT),
    ("mand", false, libc::MS_MANDLOCK),
    ("noacl", true, libc::MS_POSIXACL),
    ("noatime", false, libc::MS_NOATIME),
    ("nodev", false, libc::MS_NODEV),
    ("nodiratime", false, libc::MS_NODIRATIME),
    ("noexec", false, libc::MS_NOEXEC),
    ("noiversion", true, libc::MS_I_VERSION),
    ("nolazytime", true, libc::MS_LAZYTIME),
    ("nomand", true, libc::MS_MANDLOCK),
    ("norelatime", true, libc::MS_RELATIME),
    ("nostrictatime", true, libc::MS_STRICTATIME),
    ("nosuid", false, libc::MS_NOSUID),
    ("nosymfollow", false, MS_NOSYMFOLLOW),
    ("rbind", false, libc::MS_BIND | libc::MS_REC),
    ("relatime", false, libc::MS_RELATIME),
    ("remount", false, libc::MS_REMOUNT),
    ("ro", false, libc::MS_RDONLY),
    ("rw", true, libc::MS_RDONLY),
    ("silent", false, libc::MS_SILENT),
    ("strictatime", false, libc::MS_STRICTATIME),
    ("suid", true, libc::MS_NOSUID),
    ("symfollow", true, MS_NOSYMFOLLOW),
    ("sync", false, libc::MS_SYNCHRONOUS),
];

/// (name, flag) of the propagation options.
const PROPAGATION: &[(&str, u64)] = &[
    ("private", libc::MS_PRIVATE),
    ("rprivate", libc::MS_PRIVATE | libc::MS_REC),
    ("shared", libc::MS_SHARED),
    ("rshared", libc::MS_SHARED | libc::MS_REC),
    ("slave", libc::MS_SLAVE),
    ("rslave", libc::MS_SLAVE | libc::MS_REC),
    ("unbindable", libc::MS_UNBINDABLE),
    ("runbindable", libc::MS_UNBINDABLE | libc::MS_REC),
];

/// (name, clears?, attribute) of the recursive attributes, as runc spells them.
const REC_ATTRS: &[(&str, bool, u64)] = &[
    ("rro", false, libc::MOUNT_ATTR_RDONLY),
    ("rrw", true, libc::MOUNT_ATTR_RDONLY),
    ("rnosuid", false, libc::MOUNT_ATTR_NOSUID),
    ("rsuid", true, libc::MOUNT_ATTR_NOSUID),
    ("rnodev", false, libc::MOUNT_ATTR_NODEV),
    ("rdev", true, libc::MOUNT_ATTR_NODEV),
    ("rnoexec", false, libc::MOUNT_ATTR_NOEXEC),
    ("rexec", true, libc::MOUNT_ATTR_NOEXEC),
    ("rnodiratime", false, libc::MOUNT_ATTR_NODIRATIME),
    ("rdiratime", true, libc::MOUNT_ATTR_NODIRATIME),
    ("rnosymfollow", false, libc::MOUNT_ATTR_NOSYMFOLLOW),
    ("rsymfollow", true, libc::MOUNT_ATTR_NOSYMFOLLOW),
];

/// Parse a propagation name (`rootfsPropagation` or a mount option).
pub fn propagation_flag(name: &str) -> Option<u64> {
    PROPAGATION.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

impl MountOptions {
    /// Parse a mount's options; unknown ones become data, `idmap` is recorded.
    pub fn parse(options: &[String]) -> Result<MountOptions> {
        let mut o = MountOptions::default();
        for opt in options {
            let opt = opt.as_str();
            if let Some((_, clear, flag)) = FLAGS.iter().find(|(n, _, _)| *n == opt) {
                if *clear {
                    o.flags &= !flag;
                    o.cleared |= flag;
                } else {
                    o.flags |= flag;
                    o.cleared &= !flag;
                }
            } else if let Some(p) = propagation_flag(opt) {
                o.propagation.push(p);
            } else if let Some((_, clear, attr)) = REC_ATTRS.iter().find(|(n, _, _)| *n == opt) {
                if *clear {
                    o.rec_attr_clr |= attr;
                    o.rec_attr_set &= !attr;
                } else {
                    o.rec_attr_set |= attr;
                    o.rec_attr_clr &= !attr;
                }
            } else if let Some(atime) = rec_atime(opt) {
                // The atime attributes are one field: clear it whole, then set the choice.
                o.rec_attr_clr |= libc::MOUNT_ATTR__ATIME;
                o.rec_attr_set = (o.rec_attr_set & !libc::MOUNT_ATTR__ATIME) | atime;
            } else {
                match opt {
                    "tmpcopyup" => o.tmpcopyup = true,
                    "idmap" | "ridmap" => o.idmap = true,
                    "" => return Err(Error::InvalidConfig("empty mount option".into())),
                    _ => o.data.push(opt.to_string()),
                }
            }
        }
        Ok(o)
    }

    /// `bind` or `rbind` was given.
    pub fn is_bind(&self) -> bool {
        self.flags & libc::MS_BIND != 0
    }

    /// `rbind` was given.
    pub fn is_recursive_bind(&self) -> bool {
        self.is_bind() && self.flags & libc::MS_REC != 0
    }

    /// The data string for mount(2).
    pub fn data_string(&self) -> String {
        self.data.join(",")
    }

    /// The flags for mount(2) creating a new (non-bind) mount.
    pub fn mount_flags(&self) -> u64 {
        self.flags & !(libc::MS_BIND | libc::MS_REC)
    }

    /// The per-mount attributes (set, clear) of a bind mount, for mount_setattr on its top
    /// mount: superblock flags such as `sync` cannot change through a bind and are ignored.
    pub fn bind_attrs(&self) -> (u64, u64) {
        let mut set = 0;
        let mut clr = 0;
        for (flag, attr) in [
            (libc::MS_RDONLY, libc::MOUNT_ATTR_RDONLY),
            (libc::MS_NOSUID, libc::MOUNT_ATTR_NOSUID),
            (libc::MS_NODEV, libc::MOUNT_ATTR_NODEV),
            (libc::MS_NOEXEC, libc::MOUNT_ATTR_NOEXEC),
            (libc::MS_NODIRATIME, libc::MOUNT_ATTR_NODIRATIME),
            (MS_NOSYMFOLLOW, libc::MOUNT_ATTR_NOSYMFOLLOW),
        ] {
            if self.flags & flag != 0 {
                set |= attr;
            } else if self.cleared & flag != 0 {
                clr |= attr;
            }
        }
        let atime_flags = libc::MS_NOATIME | libc::MS_STRICTATIME | libc::MS_RELATIME;
        if (self.flags | self.cleared) & atime_flags != 0 {
            clr |= libc::MOUNT_ATTR__ATIME;
            set |= if self.flags & libc::MS_NOATIME != 0 {
                libc::MOUNT_ATTR_NOATIME
            } else if self.flags & libc::MS_STRICTATIME != 0 {
                libc::MOUNT_ATTR_STRICTATIME
            } else {
                libc::MOUNT_ATTR_RELATIME
            };
        }
        (set, clr)
    }
}

fn rec_atime(opt: &str) -> Option<u64> {
    match opt {
        "rnoatime" => Some(libc::MOUNT_ATTR_NOATIME),
        "rstrictatime" => Some(libc::MOUNT_ATTR_STRICTATIME),
        "rrelatime" | "ratime" | "rnorelatime" | "rnostrictatime" => Some(libc::MOUNT_ATTR_RELATIME),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(opts: &[&str]) -> MountOptions {
        MountOptions::parse(&opts.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn flags_are_set_and_cleared_in_order() {
        let o = parse(&["ro", "nosuid", "nodev", "noexec", "rw", "relatime"]);
        assert_eq!(o.flags, libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RELATIME);
        assert_eq!(o.cleared, libc::MS_RDONLY);
        let o = parse(&["suid", "nosuid", "sync", "async", "dirsync", "mand", "strictatime", "remount"]);
        assert_eq!(o.flags, libc::MS_NOSUID | libc::MS_DIRSYNC | libc::MS_MANDLOCK | libc::MS_STRICTATIME | libc::MS_REMOUNT);
        assert_eq!(o.cleared, libc::MS_SYNCHRONOUS);
    }

    #[test]
    fn bind_and_rbind_are_recognised() {
        assert!(parse(&["bind"]).is_bind());
        assert!(!parse(&["bind"]).is_recursive_bind());
        assert!(parse(&["rbind", "ro"]).is_recursive_bind());
        assert_eq!(parse(&["rbind", "ro"]).mount_flags(), libc::MS_RDONLY);
        assert!(!parse(&["nosuid"]).is_bind());
    }

    #[test]
    fn propagation_options_are_kept_in_order() {
        let o = parse(&["rbind", "rslave", "private", "shared", "runbindable"]);
        assert_eq!(
            o.propagation,
            vec![libc::MS_SLAVE | libc::MS_REC, libc::MS_PRIVATE, libc::MS_SHARED, libc::MS_UNBINDABLE | libc::MS_REC]
        );
        assert_eq!(propagation_flag("rprivate"), Some(libc::MS_PRIVATE | libc::MS_REC));
        assert_eq!(propagation_flag("bogus"), None);
    }

    #[test]
    fn recursive_attributes_map_to_mount_setattr() {
        let o = parse(&["rro", "rnosuid", "rnodev", "rnoexec", "rnoatime"]);
        let want =
            libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV | libc::MOUNT_ATTR_NOEXEC | libc::MOUNT_ATTR_NOATIME;
        assert_eq!(o.rec_attr_set, want);
        assert_eq!(o.rec_attr_clr, libc::MOUNT_ATTR__ATIME);
        let o = parse(&["rro", "rrw", "rsuid"]);
        assert_eq!(o.rec_attr_set, 0);
        assert_eq!(o.rec_attr_clr, libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOSUID);
        assert_eq!(o.flags, 0);
        assert!(o.data.is_empty());
    }

    #[test]
    fn unknown_options_become_the_data_string() {
        let o = parse(&["nosuid", "mode=755", "size=65536k", "newinstance", "ptmxmode=0666", "gid=5"]);
        assert_eq!(o.data_string(), "mode=755,size=65536k,newinstance,ptmxmode=0666,gid=5");
        assert_eq!(o.flags, libc::MS_NOSUID);
    }

    #[test]
    fn extensions_are_recorded_not_passed_as_data() {
        let o = parse(&["tmpcopyup", "idmap"]);
        assert!(o.tmpcopyup && o.idmap);
        assert!(o.data.is_empty());
        assert!(parse(&["ridmap"]).idmap);
        assert!(MountOptions::parse(&["".to_string()]).is_err());
    }

    #[test]
    fn bind_attrs_translate_flags_for_the_top_mount() {
        let (set, clr) = parse(&["bind", "ro", "nosuid", "exec", "noatime", "sync"]).bind_attrs();
        assert_eq!(set, libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NOATIME);
        assert_eq!(clr, libc::MOUNT_ATTR_NOEXEC | libc::MOUNT_ATTR__ATIME);
        assert_eq!(parse(&["rbind"]).bind_attrs(), (0, 0));
    }
}
