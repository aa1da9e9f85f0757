//! The engine's state: an embedded SQLite database with schema migrations.
//!
//! One writer at a time is SQLite's own rule; every change is one transaction, and the
//! busy timeout lets concurrent `berth` invocations wait for each other instead of failing.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::Result;

/// Migrations in order; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE containers (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        image TEXT NOT NULL,
        created TEXT NOT NULL,
        state TEXT NOT NULL,
        exit_code INTEGER,
        auto_remove INTEGER NOT NULL DEFAULT 0
    );",
    // The image id and snapshot chain a container uses, so that rmi and prune spare them.
    "ALTER TABLE containers ADD COLUMN image_id TEXT NOT NULL DEFAULT '';
     ALTER TABLE containers ADD COLUMN chain TEXT NOT NULL DEFAULT '';",
    // The container's life: its settings (JSON), init and monitor, times, restarts.
    "ALTER TABLE containers ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
     ALTER TABLE containers ADD COLUMN pid INTEGER;
     ALTER TABLE containers ADD COLUMN monitor_pid INTEGER;
     ALTER TABLE containers ADD COLUMN monitor_start INTEGER;
     ALTER TABLE containers ADD COLUMN started TEXT;
     ALTER TABLE containers ADD COLUMN finished TEXT;
     ALTER TABLE containers ADD COLUMN restart_count INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE containers ADD COLUMN stop_requested INTEGER NOT NULL DEFAULT 0;",
    // Volumes (named and anonymous) and which containers mount them (volumes.rs).
    "CREATE TABLE volumes (
        name TEXT PRIMARY KEY,
        created TEXT NOT NULL,
        anonymous INTEGER NOT NULL DEFAULT 0,
        labels TEXT NOT NULL DEFAULT '{}'
     );
     CREATE TABLE container_volumes (
        container_id TEXT NOT NULL,
        volume TEXT NOT NULL,
        PRIMARY KEY (container_id, volume)
     );",
];

/// The columns of a [`ContainerRow`], in the order `row` reads them.
const COLUMNS: &str = "id, name, image, created, state, exit_code, auto_remove, image_id, chain, settings, pid, \
    monitor_pid, monitor_start, started, finished, restart_count, stop_requested";

/// A container as the engine records it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerRow {
    /// 64 hex characters.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// The image reference it was created from.
    pub image: String,
    /// RFC 3339 creation time.
    pub created: String,
    /// created, running, exited.
    pub state: String,
    /// Exit code once exited.
    pub exit_code: Option<i32>,
    /// `--rm`.
    pub auto_remove: bool,
    /// The image id (config digest).
    pub image_id: String,
    /// The snapshot chain ids (bottom first), space-separated.
    pub chain: String,
    /// The container's settings (`ContainerSettings` as JSON).
    pub settings: String,
    /// The init's pid while it runs.
    pub pid: Option<i32>,
    /// The monitor's pid while it lives.
    pub monitor_pid: Option<i32>,
    /// The monitor's start time (clock ticks since boot), against pid reuse.
    pub monitor_start: Option<i64>,
    /// RFC 3339 time of the last start.
    pub started: Option<String>,
    /// RFC 3339 time of the last exit.
    pub finished: Option<String>,
    /// How many times the restart policy restarted it.
    pub restart_count: i64,
    /// A user asked it to stop: the restart policy must not bring it back.
    pub stop_requested: bool,
}

/// The state database.
pub struct Db {
    conn: Connection,
}

impl Db {
    /// Open (creating and migrating) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // WAL + NORMAL: a crash can lose the last transaction, never corrupt the database.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // Every berth command is a short-lived process, hence the last connection: without
        // this, each would checkpoint (and fsync) the WAL when it closes. SQLite's
        // auto-checkpoint still bounds the WAL.
        conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
        let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version < MIGRATIONS.len() {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            // Re-read under the write lock: another process may have migrated meanwhile.
            let version: usize = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
            for m in &MIGRATIONS[version.min(MIGRATIONS.len())..] {
                tx.execute_batch(m)?;
            }
            tx.pragma_update(None, "user_version", MIGRATIONS.len())?;
            tx.commit()?;
        }
        Ok(Db { conn })
    }

    /// The connection, for the other tables' modules (volumes.rs).
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Record a new container; fails if the name is taken.
    pub fn insert(&self, c: &ContainerRow) -> Result<()> {
        let r = self.conn.execute(
            &format!(
                "INSERT INTO containers ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
            ),
            params![
                c.id,
                c.name,
                c.image,
                c.created,
                c.state,
                c.exit_code,
                c.auto_remove,
                c.image_id,
                c.chain,
                c.settings,
                c.pid,
                c.monitor_pid,
                c.monitor_start,
                c.started,
                c.finished,
                c.restart_count,
                c.stop_requested
            ],
        );
        match r {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                Err(crate::Error::NameInUse(c.name.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Set a container's state (paused, running after unpause).
    pub fn set_state(&self, id: &str, state: &str) -> Result<()> {
        self.conn.execute("UPDATE containers SET state = ?2 WHERE id = ?1", params![id, state])?;
        Ok(())
    }

    /// The container runs: its init, its monitor, the start time.
    pub fn set_running(&self, id: &str, pid: i32, monitor: Option<(i32, i64)>, started: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE containers SET state = 'running', pid = ?2, monitor_pid = ?3, monitor_start = ?4, started = ?5, exit_code = NULL WHERE id = ?1",
            params![id, pid, monitor.map(|m| m.0), monitor.map(|m| m.1), started],
        )?;
        Ok(())
    }

    /// The container's init exited (with an unknown status when its monitor was lost).
    pub fn set_exited(&self, id: &str, exit_code: Option<i32>, finished: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE containers SET state = 'exited', pid = NULL, exit_code = ?2, finished = ?3 WHERE id = ?1",
            params![id, exit_code, finished],
        )?;
        Ok(())
    }

    /// The monitor is gone (exited, or lost and reconciled).
    pub fn clear_monitor(&self, id: &str) -> Result<()> {
        self.conn.execute("UPDATE containers SET monitor_pid = NULL, monitor_start = NULL WHERE id = ?1", params![id])?;
        Ok(())
    }

    /// Record (or clear) a user's request to stop, which the restart policy obeys.
    pub fn set_stop_requested(&self, id: &str, requested: bool) -> Result<()> {
        self.conn.execute("UPDATE containers SET stop_requested = ?2 WHERE id = ?1", params![id, requested])?;
        Ok(())
    }

    /// One more restart by the policy.
    pub fn count_restart(&self, id: &str) -> Result<()> {
        self.conn.execute("UPDATE containers SET restart_count = restart_count + 1, state = 'restarting' WHERE id = ?1", params![id])?;
        Ok(())
    }

    /// Rename a container; fails if the new name is taken.
    pub fn rename(&self, id: &str, name: &str) -> Result<()> {
        match self.conn.execute("UPDATE containers SET name = ?2 WHERE id = ?1", params![id, name]) {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                Err(crate::Error::NameInUse(name.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Find a container by name, id, or unique id prefix (an ambiguous prefix is an error).
    pub fn find(&self, key: &str) -> Result<Option<ContainerRow>> {
        let mut exact = self.conn.prepare_cached(&format!("SELECT {COLUMNS} FROM containers WHERE name = ?1 OR id = ?1 LIMIT 1"))?;
        if let Some(r) = exact.query_row(params![key], row).optional()? {
            return Ok(Some(r));
        }
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let mut prefix = self.conn.prepare_cached(&format!("SELECT {COLUMNS} FROM containers WHERE id LIKE ?1 || '%' LIMIT 2"))?;
        let rows: Vec<ContainerRow> = prefix.query_map(params![key], row)?.collect::<rusqlite::Result<_>>()?;
        match rows.len() {
            2 => Err(crate::Error::Invalid(format!("{key:?} matches several containers: give more of the id"))),
            _ => Ok(rows.into_iter().next()),
        }
    }

    /// Every container, oldest first.
    pub fn list(&self) -> Result<Vec<ContainerRow>> {
        let mut stmt = self.conn.prepare(&format!("SELECT {COLUMNS} FROM containers ORDER BY created"))?;
        let rows = stmt.query_map([], row)?.collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Forget a container.
    pub fn remove(&self, id: &str) -> Result<bool> {
        Ok(self.conn.execute("DELETE FROM containers WHERE id = ?1", params![id])? > 0)
    }

    /// Whether a name is in use.
    pub fn name_taken(&self, name: &str) -> Result<bool> {
        Ok(self.conn.query_row("SELECT 1 FROM containers WHERE name = ?1", params![name], |_| Ok(())).optional()?.is_some())
    }
}

fn row(r: &rusqlite::Row) -> rusqlite::Result<ContainerRow> {
    Ok(ContainerRow {
        id: r.get(0)?,
        name: r.get(1)?,
        image: r.get(2)?,
        created: r.get(3)?,
        state: r.get(4)?,
        exit_code: r.get(5)?,
        auto_remove: r.get(6)?,
        image_id: r.get(7)?,
        chain: r.get(8)?,
        settings: r.get(9)?,
        pid: r.get(10)?,
        monitor_pid: r.get(11)?,
        monitor_start: r.get(12)?,
        started: r.get(13)?,
        finished: r.get(14)?,
        restart_count: r.get(15)?,
        stop_requested: r.get(16)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(id: &str, name: &str) -> ContainerRow {
        ContainerRow {
            id: id.into(),
            name: name.into(),
            image: "demo".into(),
            created: "2026-11-28T00:00:00Z".into(),
            state: "created".into(),
            exit_code: None,
            auto_remove: false,
            image_id: "sha256:1".into(),
            chain: String::new(),
            ..Default::default()
        }
    }

    #[test]
    fn containers_are_found_by_name_id_and_prefix_and_names_are_unique() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("berth.db")).unwrap();
        db.insert(&sample("abc123", "web")).unwrap();
        assert!(matches!(db.insert(&sample("def456", "web")), Err(crate::Error::NameInUse(_))));
        assert_eq!(db.find("web").unwrap().unwrap().id, "abc123");
        assert_eq!(db.find("abc").unwrap().unwrap().name, "web");
        assert!(db.find("zzz").unwrap().is_none());
        db.set_exited("abc123", Some(3), "2026-11-28T00:00:01Z").unwrap();
        assert_eq!(db.find("web").unwrap().unwrap().exit_code, Some(3));
        // Reopening migrates nothing twice.
        drop(db);
        let db = Db::open(&dir.path().join("berth.db")).unwrap();
        assert_eq!(db.list().unwrap().len(), 1);
        assert!(db.remove("abc123").unwrap());
    }
}
