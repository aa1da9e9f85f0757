//! Volumes: directories the engine owns at `<root>/volumes/<name>/_data`, recorded in the
//! `volumes` table, mounted into containers by name (`-v NAME:/path`) or made anonymous for
//! one container (`-v /path`, the image's `Volumes`). Which container mounts which volume is
//! in `container_volumes`, so `volume rm` refuses a volume in use and `rm -v` finds a
//! container's anonymous volumes. A new (empty) volume gets a copy of what the image has at
//! the mount point, as docker does.
//!
//! Also the resolution of every mount request of a container into mounts of the spec.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_runtime::rootfs::safe_path;
use nix::fcntl::OFlag;
use rusqlite::{params, OptionalExtension};
use serde_json::{json, Value};

use crate::error::{Error, IoContext, Result};
use crate::mount_request::{valid_volume_name, MountRequest};
use crate::run::Engine;

/// A volume as `volume ls`/`inspect` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    /// Its name (64 hex characters for anonymous volumes).
    pub name: String,
    /// RFC 3339 creation time.
    pub created: String,
    /// Made for one container (`-v /path`, image `Volumes`), not named by the user.
    pub anonymous: bool,
    /// `volume create --label`.
    pub labels: BTreeMap<String, String>,
    /// The directory containers see.
    pub mountpoint: PathBuf,
    /// Ids of the existing containers that mount it.
    pub containers: Vec<String>,
}

impl Engine {
    fn volumes_dir(&self) -> PathBuf {
        self.root.join("volumes")
    }

    /// The data directory of volume `name`.
    pub fn volume_path(&self, name: &str) -> PathBuf {
        self.volumes_dir().join(name).join("_data")
    }

    /// Create a volume (a random name when `name` is None). An existing volume of that name is
    /// kept as it is (docker's `volume create` is idempotent). Returns the name and whether it
    /// is new.
    pub fn create_volume(&self, name: Option<&str>, labels: &BTreeMap<String, String>) -> Result<String> {
        Ok(self.ensure_volume(name, labels, false)?.0)
    }

    fn ensure_volume(&self, name: Option<&str>, labels: &BTreeMap<String, String>, anonymous: bool) -> Result<(String, bool)> {
        let name = match name {
            Some(n) if valid_volume_name(n) => n.to_string(),
            Some(n) => return Err(Error::Invalid(format!("invalid volume name {n:?}: [a-zA-Z0-9][a-zA-Z0-9_.-]* is allowed"))),
            None => crate::run::new_id()?,
        };
        let data = self.volume_path(&name);
        std::fs::create_dir_all(&data).io_context(|| format!("create volume {name} at {}", data.display()))?;
        let labels_json = serde_json::to_string(labels).map_err(|e| Error::Invalid(format!("volume labels: {e}")))?;
        let inserted = self.db.conn().execute(
            "INSERT OR IGNORE INTO volumes (name, created, anonymous, labels) VALUES (?1, ?2, ?3, ?4)",
            params![name, berth_runtime::time::now_rfc3339(), anonymous, labels_json],
        )?;
        Ok((name, inserted > 0))
    }

    /// One volume.
    pub fn inspect_volume(&self, name: &str) -> Result<VolumeInfo> {
        let row = self
            .db
            .conn()
            .query_row("SELECT name, created, anonymous, labels FROM volumes WHERE name = ?1", params![name], volume_row)
            .optional()?;
        let (name, created, anonymous, labels) = row.ok_or_else(|| Error::Invalid(format!("no such volume: {name}")))?;
        self.volume_info(name, created, anonymous, &labels)
    }

    /// Every volume, by name.
    pub fn volumes(&self) -> Result<Vec<VolumeInfo>> {
        let mut stmt = self.db.conn().prepare("SELECT name, created, anonymous, labels FROM volumes ORDER BY name")?;
        let rows: Vec<(String, String, bool, String)> = stmt.query_map([], volume_row)?.collect::<rusqlite::Result<_>>()?;
        rows.into_iter().map(|(n, c, a, l)| self.volume_info(n, c, a, &l)).collect()
    }

    fn volume_info(&self, name: String, created: String, anonymous: bool, labels: &str) -> Result<VolumeInfo> {
        Ok(VolumeInfo {
            mountpoint: self.volume_path(&name),
            containers: self.volume_users(&name)?,
            labels: serde_json::from_str(labels).unwrap_or_default(),
            name,
            created,
            anonymous,
        })
    }

    /// Ids of existing containers that mount `name` (links of removed containers do not count).
    fn volume_users(&self, name: &str) -> Result<Vec<String>> {
        let mut stmt = self.db.conn().prepare(
            "SELECT cv.container_id FROM container_volumes cv JOIN containers c ON c.id = cv.container_id
             WHERE cv.volume = ?1 ORDER BY cv.container_id",
        )?;
        let ids = stmt.query_map(params![name], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        Ok(ids)
    }

    /// Remove a volume. One in use is refused unless `force`, which removes the containers
    /// using it first (podman's `volume rm -f`).
    pub fn remove_volume(&self, name: &str, force: bool) -> Result<()> {
        let info = self.inspect_volume(name)?;
        if !info.containers.is_empty() {
            if !force {
                let ids: Vec<&str> = info.containers.iter().map(|c| c.get(..12).unwrap_or(c)).collect();
                return Err(Error::Invalid(format!(
                    "volume {name} is in use by container(s) {}: remove them first or use --force",
                    ids.join(", ")
                )));
            }
            for c in &info.containers {
                self.remove(c, true, false)?;
            }
        }
        self.delete_volume(name)
    }

    fn delete_volume(&self, name: &str) -> Result<()> {
        let dir = self.volumes_dir().join(name);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).io_context(|| format!("remove volume {name} at {}", dir.display())),
        }
        let conn = self.db.conn();
        conn.execute("DELETE FROM container_volumes WHERE volume = ?1", params![name])?;
        conn.execute("DELETE FROM volumes WHERE name = ?1", params![name])?;
        Ok(())
    }

    /// Remove the volumes no container uses: anonymous ones only, unless `all`. Returns their
    /// names. Links of containers that no longer exist are forgotten on the way.
    pub fn prune_volumes(&self, all: bool) -> Result<Vec<String>> {
        self.db.conn().execute("DELETE FROM container_volumes WHERE container_id NOT IN (SELECT id FROM containers)", [])?;
        let mut removed = Vec::new();
        for v in self.volumes()? {
            if v.containers.is_empty() && (all || v.anonymous) {
                self.delete_volume(&v.name)?;
                removed.push(v.name);
            }
        }
        Ok(removed)
    }

    /// Remove the anonymous volumes made for container `container_id` that no other container
    /// uses (`rm -v`, `run --rm`). Call it after or before removing the container; returns
    /// the names removed.
    pub fn remove_anonymous_volumes(&self, container_id: &str) -> Result<Vec<String>> {
        let names: Vec<String> = {
            let mut stmt = self.db.conn().prepare(
                "SELECT v.name FROM volumes v JOIN container_volumes cv ON cv.volume = v.name
                 WHERE cv.container_id = ?1 AND v.anonymous = 1",
            )?;
            let names = stmt.query_map(params![container_id], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
            names
        };
        let mut removed = Vec::new();
        for name in names {
            if self.volume_users(&name)?.iter().all(|c| c == container_id) {
                self.delete_volume(&name)?;
                removed.push(name);
            }
        }
        self.db.conn().execute("DELETE FROM container_volumes WHERE container_id = ?1", params![container_id])?;
        Ok(removed)
    }

    /// The names of the volumes container `container_id` mounts (for `inspect`'s Mounts).
    pub fn volumes_of(&self, container_id: &str) -> Result<Vec<String>> {
        let mut stmt = self.db.conn().prepare("SELECT volume FROM container_volumes WHERE container_id = ?1 ORDER BY volume")?;
        let names = stmt.query_map(params![container_id], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        Ok(names)
    }

    fn link_volume(&self, container_id: &str, name: &str) -> Result<()> {
        self.db
            .conn()
            .execute("INSERT OR IGNORE INTO container_volumes (container_id, volume) VALUES (?1, ?2)", params![container_id, name])?;
        Ok(())
    }

    /// The spec mounts of a container: the user's requests, then an anonymous volume for each
    /// of the image's `Volumes` no request covers. Creates volumes (copying the image's content
    /// into new empty ones) and bind sources `-v` may create; records which volumes the
    /// container uses. Parents are mounted before their children.
    pub(crate) fn prepare_mounts(
        &self,
        container_id: &str,
        rootfs: &Path,
        image_config: &Value,
        requests: &[MountRequest],
    ) -> Result<Vec<Value>> {
        let mut requests = requests.to_vec();
        for (i, r) in requests.iter().enumerate() {
            if requests[..i].iter().any(|p| p.target() == r.target()) {
                return Err(Error::Invalid(format!("duplicate mount point: {}", r.target())));
            }
        }
        let image_volumes = image_config.get("config").and_then(|c| c.get("Volumes")).and_then(Value::as_object);
        for path in image_volumes.into_iter().flat_map(|m| m.keys()) {
            let Ok(MountRequest::Volume { target, .. }) = crate::mount_request::parse_volume(path) else {
                tracing::warn!("image volume {path:?} ignored: not an absolute path");
                continue;
            };
            if !requests.iter().any(|r| r.target() == target) {
                requests.push(MountRequest::Volume { name: None, target, readonly: false, nocopy: false });
            }
        }
        requests.sort_by_key(|r| r.target().split('/').filter(|c| !c.is_empty()).count());
        let mut mounts = Vec::with_capacity(requests.len());
        for r in &requests {
            mounts.push(match r {
                MountRequest::Bind { source, target, readonly, create_source, propagation } => {
                    bind_source(source, *create_source)?;
                    json!({"destination": target, "type": "bind", "source": source,
                           "options": ["rbind", propagation, if *readonly { "ro" } else { "rw" }]})
                }
                MountRequest::Volume { name, target, readonly, nocopy } => {
                    let (name, _) = self.ensure_volume(name.as_deref(), &BTreeMap::new(), name.is_none())?;
                    self.link_volume(container_id, &name)?;
                    let data = self.volume_path(&name);
                    if !nocopy {
                        // Two containers starting on one new volume: one copies, the other then finds it full.
                        let _lock = lock_dir(&self.volumes_dir().join(&name))?;
                        if dir_is_empty(&data)? {
                            copy_up(rootfs, target, &data)
                                .map_err(|e| Error::Invalid(format!("volume {name}: copy the image's {target}: {e}")))?;
                        }
                    }
                    json!({"destination": target, "type": "bind", "source": data,
                           "options": ["rbind", "rprivate", if *readonly { "ro" } else { "rw" }]})
                }
                MountRequest::Tmpfs { target, options } => {
                    json!({"destination": target, "type": "tmpfs", "source": "tmpfs", "options": options})
                }
            });
        }
        Ok(mounts)
    }
}

type VolumeRow = (String, String, bool, String);

fn volume_row(r: &rusqlite::Row) -> rusqlite::Result<VolumeRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

/// A bind source must exist (`--mount`, docker's rule); `-v` creates a missing directory.
fn bind_source(source: &Path, create: bool) -> Result<()> {
    match std::fs::metadata(source) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            std::fs::create_dir_all(source).io_context(|| format!("--volume: create the bind source {}", source.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(Error::Invalid(format!("--mount: bind source path does not exist: {}", source.display())))
        }
        Err(e) => Err(Error::Invalid(format!("bind source {}: {e}", source.display()))),
    }
}

/// An exclusive flock on a directory, held until the returned file is dropped.
fn lock_dir(dir: &Path) -> Result<std::fs::File> {
    let f = std::fs::File::open(dir).io_context(|| format!("open {}", dir.display()))?;
    loop {
        // SAFETY: flock on an fd we own; no memory is passed.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(f);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e).io_context(|| format!("lock {}", dir.display()));
        }
    }
}

fn dir_is_empty(dir: &Path) -> Result<bool> {
    Ok(std::fs::read_dir(dir).io_context(|| format!("read {}", dir.display()))?.next().is_none())
}

/// Copy what the image has at `target` (resolved inside `rootfs`, never outside it) into the
/// empty volume directory `data`, with owners and modes; the volume's root takes the owner
/// and mode of the image's directory. Nothing when the image has no directory there.
fn copy_up(rootfs: &Path, target: &str, data: &Path) -> std::io::Result<()> {
    let root = safe_path::open_root(rootfs).map_err(std::io::Error::other)?;
    let src = match safe_path::open_in_root_raw(root.as_fd(), Path::new(target), OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC) {
        Ok(fd) => fd,
        Err(nix::Error::ENOENT) | Err(nix::Error::ENOTDIR) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let src_path = PathBuf::from(format!("/proc/self/fd/{}", src.as_raw_fd()));
    let md = std::fs::metadata(&src_path)?;
    copy_dir(&src_path, data)?;
    std::os::unix::fs::chown(data, Some(md.uid()), Some(md.gid()))?;
    std::fs::set_permissions(data, std::fs::Permissions::from_mode(md.mode() & 0o7777))
}

/// Recursive copy that never follows a symlink (they are copied as links).
fn copy_dir(src: &Path, dst: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let (from, to) = (entry.path(), dst.join(entry.file_name()));
        let md = std::fs::symlink_metadata(&from)?;
        let ft = md.file_type();
        if ft.is_dir() {
            std::fs::create_dir(&to)?;
            copy_dir(&from, &to)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
        } else if ft.is_file() {
            std::fs::copy(&from, &to)?;
        } else if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
            let kind = nix::sys::stat::SFlag::from_bits_truncate(md.mode() & libc::S_IFMT);
            nix::sys::stat::mknod(&to, kind, nix::sys::stat::Mode::from_bits_truncate(md.mode() & 0o7777), md.rdev())?;
        } else {
            continue; // sockets mean nothing in a copy
        }
        std::os::unix::fs::lchown(&to, Some(md.uid()), Some(md.gid()))?;
        if !ft.is_symlink() {
            // After chown, which clears set-id bits.
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(md.mode() & 0o7777))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A container row with only the columns every version of the table has (so this test
    /// does not change when the containers table grows).
    fn container(engine: &Engine, id: &str) {
        engine
            .db
            .conn()
            .execute(
                "INSERT INTO containers (id, name, image, created, state) VALUES (?1, ?2, 'demo', '2026-11-28T00:00:00Z', 'exited')",
                params![id, format!("c-{id}")],
            )
            .unwrap();
    }

    #[test]
    fn volumes_in_use_are_refused_and_anonymous_ones_go_with_their_container() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(&dir.path().join("root"), &dir.path().join("run")).unwrap();
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("srv")).unwrap();
        std::fs::write(rootfs.join("srv/seed"), "s").unwrap();
        let image = json!({"config": {"Volumes": {"/cache": {}}}});
        container(&engine, "c1");
        let requests = vec![
            MountRequest::Volume { name: Some("named".into()), target: "/srv".into(), readonly: false, nocopy: false },
            MountRequest::Tmpfs { target: "/srv/tmp".into(), options: vec![] },
        ];
        let mounts = engine.prepare_mounts("c1", &rootfs, &image, &requests).unwrap();
        let dests: Vec<&str> = mounts.iter().map(|m| m["destination"].as_str().unwrap()).collect();
        assert_eq!(dests, ["/srv", "/cache", "/srv/tmp"], "parents first, image volume added");
        assert_eq!(std::fs::read_to_string(engine.volume_path("named").join("seed")).unwrap(), "s");
        let volumes = engine.volumes().unwrap();
        assert_eq!(volumes.len(), 2);
        let anon = volumes.iter().find(|v| v.anonymous).unwrap().name.clone();
        assert_eq!(engine.inspect_volume("named").unwrap().containers, ["c1"]);
        let mut of_c1 = vec![anon.clone(), "named".to_string()];
        of_c1.sort();
        assert_eq!(engine.volumes_of("c1").unwrap(), of_c1);
        let err = engine.remove_volume("named", false).unwrap_err().to_string();
        assert!(err.contains("in use by container(s) c1"), "{err}");
        assert!(engine.prune_volumes(true).unwrap().is_empty());
        // Removing the container (without its volumes) leaves them unused: prune takes them.
        engine.db.remove("c1").unwrap();
        assert!(engine.inspect_volume("named").unwrap().containers.is_empty());
        assert_eq!(engine.prune_volumes(false).unwrap(), [anon.clone()]);
        assert!(!engine.volume_path(&anon).exists());
        engine.remove_volume("named", false).unwrap();
        assert!(engine.volumes().unwrap().is_empty());
        // remove_anonymous_volumes keeps named volumes.
        container(&engine, "c2");
        engine.prepare_mounts("c2", &rootfs, &image, &requests[..1]).unwrap();
        let removed = engine.remove_anonymous_volumes("c2").unwrap();
        assert_eq!(removed.len(), 1);
        assert_eq!(engine.volumes().unwrap().iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["named"]);
    }

    #[test]
    fn duplicate_mount_points_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(&dir.path().join("root"), &dir.path().join("run")).unwrap();
        let t = |target: &str| MountRequest::Tmpfs { target: target.into(), options: vec![] };
        let err = engine.prepare_mounts("c", dir.path(), &json!({}), &[t("/a"), t("/a")]).unwrap_err().to_string();
        assert_eq!(err, "duplicate mount point: /a");
    }

    #[test]
    fn copy_up_copies_files_links_and_modes_but_not_outside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("srv/sub")).unwrap();
        std::fs::write(rootfs.join("srv/a"), "A").unwrap();
        std::fs::set_permissions(rootfs.join("srv/a"), std::fs::Permissions::from_mode(0o640)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", rootfs.join("srv/sub/link")).unwrap();
        std::fs::set_permissions(rootfs.join("srv"), std::fs::Permissions::from_mode(0o750)).unwrap();
        // A symlink escaping the root resolves inside it (to nothing here).
        std::os::unix::fs::symlink("/../../../etc", rootfs.join("escape")).unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        copy_up(&rootfs, "/srv", &data).unwrap();
        assert_eq!(std::fs::read_to_string(data.join("a")).unwrap(), "A");
        assert_eq!(std::fs::metadata(data.join("a")).unwrap().mode() & 0o777, 0o640);
        assert_eq!(std::fs::read_link(data.join("sub/link")).unwrap(), Path::new("/etc/passwd"));
        assert_eq!(std::fs::metadata(&data).unwrap().mode() & 0o777, 0o750);
        let other = dir.path().join("other");
        std::fs::create_dir(&other).unwrap();
        copy_up(&rootfs, "/escape", &other).unwrap();
        assert!(dir_is_empty(&other).unwrap(), "copied the host's /etc");
        copy_up(&rootfs, "/absent", &other).unwrap();
    }
}
