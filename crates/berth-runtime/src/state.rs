//! The runtime root (`/run/berth-runtime/<id>/`): one directory per container holding
//! `state.json`, a copy of the config, the exec fifo, and the lock that serializes
//! operations on that id.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};

/// The file the init blocks on until `start`.
pub const EXEC_FIFO: &str = "exec.fifo";
const STATE_FILE: &str = "state.json";
const CONFIG_FILE: &str = "config.json";

/// Runtime status, as the OCI state reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Being created.
    Creating,
    /// Created, the user process not started yet.
    Created,
    /// The user process runs.
    Running,
    /// Frozen by the cgroup freezer.
    Paused,
    /// The user process has exited.
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        };
        f.write_str(s)
    }
}

/// What the runtime records about a container (`state.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// The container id.
    pub id: String,
    /// Host pid of the container's init.
    pub pid: i32,
    /// Start time of the init (field 22 of /proc/pid/stat), to detect pid reuse.
    pub pid_start_time: u64,
    /// Absolute bundle path.
    pub bundle: PathBuf,
    /// Absolute rootfs path.
    pub rootfs: PathBuf,
    /// RFC 3339 creation time.
    pub created: String,
    /// User who created the container.
    pub owner: String,
    /// The config's annotations.
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// cgroup paths of the container, per controller ("" for the v2 unified tree).
    #[serde(default)]
    pub cgroup_paths: HashMap<String, PathBuf>,
    /// The config has poststart hooks (so `start` must wait for the exec and read it).
    #[serde(default)]
    pub has_poststart: bool,
    /// The config has poststop hooks (so `delete` must read it).
    #[serde(default)]
    pub has_poststop: bool,
}

/// One container's directory under the runtime root, locked for the life of this value.
pub struct StateDir {
    dir: PathBuf,
    // Held for the flock; released when dropped.
    _lock: File,
}

/// Validate a container id the way runc does: no path separators, no `.`/`..`.
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id.chars().all(|c| c.is_ascii_alphanumeric() || "_-+.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidId(id.to_string()))
    }
}

fn flock(file: &File, what: &Path) -> Result<()> {
    loop {
        // SAFETY: flock on an fd we own; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err).with_context(|| format!("lock {}", what.display()));
        }
    }
}

impl StateDir {
    /// Make the directory of a new container; fails with `AlreadyExists` if the id is taken.
    pub fn create(root: &Path, id: &str) -> Result<Self> {
        validate_id(id)?;
        std::fs::create_dir_all(root).with_context(|| format!("create runtime root {}", root.display()))?;
        let dir = root.join(id);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(Error::AlreadyExists(id.to_string())),
            Err(e) => return Err(e).with_context(|| format!("create {}", dir.display())),
        }
        let lock = File::open(&dir).with_context(|| format!("open {}", dir.display()))?;
        flock(&lock, &dir)?;
        Ok(StateDir { dir, _lock: lock })
    }

    /// Open and lock the directory of an existing container.
    pub fn open(root: &Path, id: &str) -> Result<Self> {
        validate_id(id)?;
        let dir = root.join(id);
        let lock = match File::open(&dir) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::NotFound(id.to_string())),
            Err(e) => return Err(e).with_context(|| format!("open {}", dir.display())),
        };
        flock(&lock, &dir)?;
        // A concurrent delete may have removed it while we waited for the lock.
        if !dir.join(STATE_FILE).exists() {
            return Err(Error::NotFound(id.to_string()));
        }
        Ok(StateDir { dir, _lock: lock })
    }

    /// Lock the directory of a container whose `create` died before recording it (state.json
    /// absent, directory still there). `None` if there is no such directory.
    pub fn open_abandoned(root: &Path, id: &str) -> Result<Option<Self>> {
        validate_id(id)?;
        let dir = root.join(id);
        let lock = match File::open(&dir) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("open {}", dir.display())),
        };
        // A live create holds this lock until it has written state.json.
        flock(&lock, &dir)?;
        if !dir.exists() || dir.join(STATE_FILE).exists() {
            return Ok(None);
        }
        Ok(Some(StateDir { dir, _lock: lock }))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Path of the exec fifo.
    pub fn fifo_path(&self) -> PathBuf {
        self.dir.join(EXEC_FIFO)
    }

    /// Read `state.json`.
    pub fn load(&self) -> Result<ContainerRecord> {
        let p = self.dir.join(STATE_FILE);
        let text = std::fs::read(&p).with_context(|| format!("read {}", p.display()))?;
        serde_json::from_slice(&text).map_err(|e| Error::Init(format!("corrupt state file {}: {e}", p.display())))
    }

    /// Write `state.json` atomically.
    pub fn save(&self, record: &ContainerRecord) -> Result<()> {
        let bytes = serde_json::to_vec(record).map_err(|e| Error::Init(format!("serialize state: {e}")))?;
        write_atomic(&self.dir.join(STATE_FILE), &bytes)
    }

    /// Keep a copy of the config the container was created with.
    pub fn save_config(&self, spec: &oci_spec::runtime::Spec) -> Result<()> {
        let bytes = serde_json::to_vec(spec).map_err(|e| Error::Init(format!("serialize config: {e}")))?;
        self.save_config_bytes(&bytes)
    }

    /// Keep a copy of the config the container was created with, as read.
    pub fn save_config_bytes(&self, bytes: &[u8]) -> Result<()> {
        write_atomic(&self.dir.join(CONFIG_FILE), bytes)
    }

    /// The config the container was created with.
    pub fn load_config(&self) -> Result<oci_spec::runtime::Spec> {
        let p = self.dir.join(CONFIG_FILE);
        let text = std::fs::read(&p).with_context(|| format!("read {}", p.display()))?;
        crate::spec::parse_config(&text, &p)
    }

    /// Remove the directory and everything in it.
    pub fn remove(self) -> Result<()> {
        std::fs::remove_dir_all(&self.dir).with_context(|| format!("remove {}", self.dir.display()))
    }
}

/// Write `bytes` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    f.write_all(bytes).with_context(|| format!("write {}", tmp.display()))?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| format!("rename {}", path.display()))
}

/// Start time of a process (clock ticks since boot), or None if it does not exist.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // `rest` starts at field 3; start time is field 22.
    fields.nth(22 - 4)?.parse().ok()
}

/// The status of a recorded container, derived from its init process and exec fifo.
pub fn derive_status(dir: &StateDir, record: &ContainerRecord) -> Status {
    match process_start_time(record.pid) {
        Some(t) if t == record.pid_start_time => {
            if berth_cgroups::is_frozen(&record.cgroup_paths) {
                Status::Paused
            } else if dir.fifo_path().exists() {
                Status::Created
            } else {
                Status::Running
            }
        }
        _ => Status::Stopped,
    }
}

/// Ids of every container under the runtime root.
pub fn list_ids(root: &Path) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
        Err(e) => return Err(e).with_context(|| format!("read {}", root.display())),
    };
    for entry in entries.flatten() {
        if entry.path().join(STATE_FILE).exists() {
            if let Some(name) = entry.file_name().to_str() {
                ids.push(name.to_string());
            }
        }
    }
    ids.sort();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_with_separators_or_dots_are_rejected() {
        for bad in ["", ".", "..", "a/b", "../x", "a b", "a\0b"] {
            assert!(validate_id(bad).is_err(), "{bad:?} should be rejected");
        }
        for good in ["abc", "a-b_c.d+e", "0123"] {
            assert!(validate_id(good).is_ok(), "{good:?} should be accepted");
        }
    }

    #[test]
    fn own_process_has_a_start_time() {
        assert!(process_start_time(std::process::id() as i32).is_some());
        assert!(process_start_time(i32::MAX).is_none());
    }

    #[test]
    fn second_create_of_same_id_fails() {
        let root = tempfile::tempdir().unwrap();
        let _a = StateDir::create(root.path(), "x").unwrap();
        assert!(matches!(StateDir::create(root.path(), "x"), Err(Error::AlreadyExists(_))));
    }
}
