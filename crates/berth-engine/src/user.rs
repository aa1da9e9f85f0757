//! `User` of the image or `--user`, resolved through the container's own /etc/passwd and
//! /etc/group (read inside the root with RESOLVE_IN_ROOT, never by joining paths).

use std::io::Read;
use std::os::fd::AsFd;
use std::path::Path;

use berth_runtime::rootfs::safe_path;
use nix::fcntl::OFlag;

use crate::error::{Error, Result};

/// The ids a process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    /// uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
    /// Supplementary groups from /etc/group.
    pub additional_gids: Vec<u32>,
    /// Home directory (for HOME).
    pub home: String,
}

fn read_in_root(rootfs: &Path, file: &str) -> String {
    let Ok(root) = safe_path::open_root(rootfs) else { return String::new() };
    let Ok(fd) = safe_path::open_in_root(root.as_fd(), Path::new(file), OFlag::O_RDONLY) else {
        return String::new();
    };
    let mut text = String::new();
    let _ = std::fs::File::from(fd).take(4 << 20).read_to_string(&mut text);
    text
}

/// Resolve `spec` ("", "name", "uid", "name:group", "uid:gid", …) in the root filesystem.
pub fn resolve(rootfs: &Path, spec: &str) -> Result<ResolvedUser> {
    let passwd = read_in_root(rootfs, "/etc/passwd");
    let group = read_in_root(rootfs, "/etc/group");
    resolve_in(&passwd, &group, spec)
}

fn resolve_in(passwd: &str, group: &str, spec: &str) -> Result<ResolvedUser> {
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = if user.is_empty() { "0" } else { user };
    let entries = passwd.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 7).then(|| (f[0], f[2].parse::<u32>().ok(), f[3].parse::<u32>().ok(), f[5]))
    });
    let mut found = None;
    for (name, uid, gid, home) in entries {
        if name == user || uid.map(|u| u.to_string()) == Some(user.to_string()) {
            found = Some((name.to_string(), uid, gid, home.to_string()));
            break;
        }
    }
    let (name, uid, mut gid, home) = match (found, user.parse::<u32>()) {
        (Some((n, Some(u), g, h)), _) => (n, u, g.unwrap_or(0), h),
        (_, Ok(u)) => (String::new(), u, u, "/".to_string()),
        _ => return Err(Error::Invalid(format!("unable to find user {user}: no matching entries in passwd file"))),
    };
    let groups: Vec<(&str, u32, Vec<&str>)> = group
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 4).then(|| (f[0], f[2].parse::<u32>().ok(), f[3].split(',').filter(|m| !m.is_empty()).collect()))
        })
        .filter_map(|(n, g, m)| g.map(|g| (n, g, m)))
        .collect();
    if let Some(g) = grp {
        gid = match groups.iter().find(|(n, id, _)| *n == g || id.to_string() == g) {
            Some((_, id, _)) => *id,
            None => g.parse().map_err(|_| Error::Invalid(format!("unable to find group {g}: no matching entries in group file")))?,
        };
    }
    let additional_gids = if name.is_empty() {
        Vec::new()
    } else {
        groups.iter().filter(|(_, id, members)| *id != gid && members.contains(&name.as_str())).map(|(_, id, _)| *id).collect()
    };
    Ok(ResolvedUser { uid, gid, additional_gids, home })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1001:web:/srv/web:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwebgrp:x:1001:\nextra:x:2000:web,other\n";

    #[test]
    fn names_and_ids_resolve_through_passwd_and_group() {
        let r = resolve_in(PASSWD, GROUP, "").unwrap();
        assert_eq!((r.uid, r.gid, r.home.as_str()), (0, 0, "/root"));
        let r = resolve_in(PASSWD, GROUP, "web").unwrap();
        assert_eq!((r.uid, r.gid, r.additional_gids.clone(), r.home.as_str()), (1000, 1001, vec![2000], "/srv/web"));
        let r = resolve_in(PASSWD, GROUP, "1000:extra").unwrap();
        assert_eq!((r.uid, r.gid), (1000, 2000));
        let r = resolve_in(PASSWD, GROUP, "4242:4343").unwrap();
        assert_eq!((r.uid, r.gid), (4242, 4343));
        assert!(resolve_in(PASSWD, GROUP, "nobody").is_err());
        assert!(resolve_in(PASSWD, GROUP, "web:nogroup").is_err());
    }
}
