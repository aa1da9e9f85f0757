//! The engine's state: an embedded SQLite database with schema migrations.
//!
//! One writer at a time is SQLite's own rule; every change is one transaction, and the
//! busy timeout lets concurrent `berth` invocations wait for each other instead of failing.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::Result;

/// Migrations in order; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &["CREATE TABLE containers (
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
     );"];

/// A container as the engine records it.
#[derive(Debug, Clone, PartialEq, Eq)]
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
            "INSERT INTO containers (id, name, image, created, state, exit_code, auto_remove, image_id, chain) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![c.id, c.name, c.image, c.created, c.state, c.exit_code, c.auto_remove, c.image_id, c.chain],
        );
        match r {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                Err(crate::Error::NameInUse(c.name.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Set a container's state (and exit code).
    pub fn set_state(&self, id: &str, state: &str, exit_code: Option<i32>) -> Result<()> {
        self.conn.execute("UPDATE containers SET state = ?2, exit_code = ?3 WHERE id = ?1", params![id, state, exit_code])?;
        Ok(())
    }

    /// Find a container by id, id prefix (unique) or name.
    pub fn find(&self, key: &str) -> Result<Option<ContainerRow>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, name, image, created, state, exit_code, auto_remove, image_id, chain FROM containers
             WHERE name = ?1 OR id = ?1 OR id LIKE ?1 || '%' LIMIT 2",
        )?;
        let rows: Vec<ContainerRow> = stmt.query_map(params![key], row)?.collect::<rusqlite::Result<_>>()?;
        Ok(match rows.len() {
            1 => rows.into_iter().next(),
            _ => rows.into_iter().find(|r| r.name == key || r.id == key),
        })
    }

    /// Every container, oldest first.
    pub fn list(&self) -> Result<Vec<ContainerRow>> {
        let mut stmt =
            self.conn.prepare("SELECT id, name, image, created, state, exit_code, auto_remove, image_id, chain FROM containers ORDER BY created")?;
        let rows = stmt.query_map([], row)?.collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Forget a container.
    pub fn remove(&self, id: &str) -> Result<bool> {
        Ok(self.conn.execute("DELETE FROM containers WHERE id = ?1", params![id])? > 0)
    }

    /// Whether a name is in use.
    pub fn name_taken(&self, name: &str) -> Result<bool> {
        Ok(self
            .conn
            .query_row("SELECT 1 FROM containers WHERE name = ?1", params![name], |_| Ok(()))
            .optional()?
            .is_some())
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
        db.set_state("abc123", "exited", Some(3)).unwrap();
        assert_eq!(db.find("web").unwrap().unwrap().exit_code, Some(3));
        // Reopening migrates nothing twice.
        drop(db);
        let db = Db::open(&dir.path().join("berth.db")).unwrap();
        assert_eq!(db.list().unwrap().len(), 1);
        assert!(db.remove("abc123").unwrap());
    }
}
