//! The store: SQLite in WAL mode, the one place where what Shield knows
//! survives a restart — decisions, alerts with their evidence, source
//! checkpoints, offence counts and bouncer keys.
//!
//! The daemon has exactly one writer (the decision thread owns a `Store`);
//! the CLI and API readers open their own connections, which WAL allows
//! concurrently. Time is always passed in; nothing here reads the clock.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, Row, params};
use shield_core::Net;
use shield_core::{Alert, Checkpoint, Decision, DecisionType, Origin, Scope, UnixTime};

/// Errors from the store. Each says which file and what to try.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the state directory {dir}: {source} (create it, or set [store] path)")]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the store {path}: {source} (check permissions, or set [store] path)")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "cannot create the store {path} private (0600): {source} (check the directory's owner, or set [store] path)"
    )]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("store {path}: {source}")]
    Sql {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "store {path} holds a row Shield cannot read ({what}); it was written by another version?"
    )]
    Corrupt { path: PathBuf, what: String },
}

/// 3: targets rewritten in canonical form (see [`Store::canonical_targets`]).
const SCHEMA_VERSION: i64 = 4;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY,
    scope TEXT NOT NULL,
    target TEXT NOT NULL,
    type TEXT NOT NULL,
    scenario TEXT NOT NULL,
    origin TEXT NOT NULL,
    created INTEGER NOT NULL,
    expires INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS decisions_expires ON decisions(expires);
CREATE INDEX IF NOT EXISTS decisions_target ON decisions(target);
CREATE INDEX IF NOT EXISTS decisions_created ON decisions(created);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    scenario TEXT NOT NULL,
    target TEXT NOT NULL,
    time INTEGER NOT NULL,
    first_seen INTEGER NOT NULL,
    events INTEGER NOT NULL,
    evidence TEXT NOT NULL,
    decision_id INTEGER
);
CREATE INDEX IF NOT EXISTS alerts_time ON alerts(time);
CREATE TABLE IF NOT EXISTS checkpoints (
    pipeline TEXT NOT NULL,
    path TEXT NOT NULL,
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    fingerprint INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    PRIMARY KEY (pipeline, path)
);
CREATE TABLE IF NOT EXISTS offences (
    target TEXT PRIMARY KEY,
    count INTEGER NOT NULL,
    last INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS bouncers (
    name TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL UNIQUE,
    created INTEGER NOT NULL,
    last_pull INTEGER
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"#;

/// Where a file reader was: its pipeline, the file and the checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilePosition {
    pub pipeline: String,
    pub path: String,
    pub checkpoint: Checkpoint,
}

/// One connection to the store.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

/// A stored alert, as listed by `shield alerts list`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct StoredAlert {
    pub id: i64,
    pub scenario: String,
    pub target: String,
    pub time: UnixTime,
    pub first_seen: UnixTime,
    pub events: u32,
    pub evidence: Vec<String>,
    pub decision_id: Option<i64>,
}

/// A registered bouncer (its key is only stored hashed).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Bouncer {
    pub name: String,
    pub key_hash: String,
    pub created: UnixTime,
    pub last_pull: Option<UnixTime>,
}

/// Creates the store's directory 0700 and its file 0600 before SQLite opens
/// it, and tightens a database, WAL or SHM file an older version left wider.
fn make_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| StoreError::Dir {
                dir: dir.to_path_buf(),
                source,
            })?;
    }
    let file_err = |source: std::io::Error| StoreError::File {
        path: path.to_path_buf(),
        source,
    };
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(file_err)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let p = std::path::PathBuf::from(p);
        if let Ok(m) = std::fs::metadata(&p)
            && m.permissions().mode() & 0o077 != 0
        {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
                .map_err(file_err)?;
        }
    }
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the store at `path`, in WAL mode.
    ///
    /// The store holds evidence lines copied from root-only logs and bouncer
    /// key hashes: a directory it creates is 0700, and the database is made
    /// 0600 before SQLite opens it (SQLite gives its `-wal` and `-shm` files
    /// the database file's mode). A store left 0644 by an older version is
    /// tightened on open.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        // SQLite's in-memory database (tests, replay) has no file to protect.
        if path != Path::new(":memory:") {
            make_private(path)?;
        }
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let store = Store {
            conn,
            path: path.to_path_buf(),
        };
        store.init()?;
        Ok(store)
    }

    fn sql(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sql {
            path: self.path.clone(),
            source,
        }
    }

    fn init(&self) -> Result<(), StoreError> {
        // WAL: readers never block the writer. synchronous=NORMAL: a committed
        // transaction survives a crash of the process (SIGKILL); only a power
        // loss can roll back the last few commits.
        self.conn
            .execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000; \
                 PRAGMA foreign_keys=ON;",
            )
            .map_err(|e| StoreError::Open {
                path: self.path.clone(),
                source: e,
            })?;
        let v: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.sql(e))?;
        if v < SCHEMA_VERSION {
            // Before version 4 a checkpoint's key was `pipeline<TAB>path` in
            // one column: set aside, copied into the two columns below.
            let keyed = v > 0 && self.has_column("checkpoints", "key")?;
            if keyed {
                self.conn
                    .execute_batch("ALTER TABLE checkpoints RENAME TO checkpoints_keyed")
                    .map_err(|e| self.sql(e))?;
            }
            self.conn.execute_batch(SCHEMA).map_err(|e| self.sql(e))?;
            if keyed {
                self.conn
                    .execute_batch(
                        "BEGIN; \
                         INSERT OR IGNORE INTO checkpoints \
                         (pipeline, path, dev, ino, offset, fingerprint, updated) \
                         SELECT substr(key, 1, instr(key, char(9)) - 1), \
                         substr(key, instr(key, char(9)) + 1), dev, ino, offset, fingerprint, updated \
                         FROM checkpoints_keyed WHERE instr(key, char(9)) > 0; \
                         DROP TABLE checkpoints_keyed; COMMIT;",
                    )
                    .map_err(|e| self.sql(e))?;
            }
            if v > 0 {
                self.canonical_targets()?;
            }
            self.conn
                .execute_batch(&format!("PRAGMA user_version={SCHEMA_VERSION}"))
                .map_err(|e| self.sql(e))?;
        }
        Ok(())
    }

    /// Whether `table` has a column named `column`.
    fn has_column(&self, table: &str, column: &str) -> Result<bool, StoreError> {
        let mut st = self
            .conn
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .map_err(|e| self.sql(e))?;
        let names = st
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| self.sql(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.sql(e))?;
        Ok(names.iter().any(|n| n == column))
    }

    /// Rewrites every stored target in canonical form ([`shield_core::Net`]):
    /// stores written before it kept `::ffff:10.1.2.3/128` as such, which a
    /// lookup or a delete by `10.1.2.3` would miss. Only IPv6 text can be
    /// non-canonical; rows that do not parse are left for `read_decision`
    /// to report.
    fn canonical_targets(&self) -> Result<(), StoreError> {
        for table in ["decisions", "alerts", "offences"] {
            let key = if table == "offences" { "target" } else { "id" };
            let rows: Vec<(rusqlite::types::Value, String)> = {
                let mut st = self
                    .conn
                    .prepare(&format!(
                        "SELECT {key}, target FROM {table} WHERE instr(target, ':') > 0"
                    ))
                    .map_err(|e| self.sql(e))?;
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(|e| self.sql(e))?
                    .collect::<Result<_, _>>()
                    .map_err(|e| self.sql(e))?
            };
            for (k, t) in rows {
                let Ok(n) = t.parse::<Net>() else { continue };
                let c = n.to_string();
                if c != t {
                    // An offence row under both forms keeps the canonical one.
                    self.conn
                        .execute(
                            &format!("UPDATE OR IGNORE {table} SET target=?1 WHERE {key}=?2"),
                            params![c, k],
                        )
                        .map_err(|e| self.sql(e))?;
                    if table == "offences" {
                        self.conn
                            .execute("DELETE FROM offences WHERE target=?1", [&t])
                            .map_err(|e| self.sql(e))?;
                    }
                }
            }
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in one transaction: everything or nothing reaches the file.
    pub fn atomically<T>(
        &mut self,
        f: impl FnOnce(&Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| self.sql(e))?;
        match f(self) {
            Ok(v) => {
                self.conn.execute_batch("COMMIT").map_err(|e| self.sql(e))?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    // ---- decisions ----

    /// Inserts a decision and returns it with its row id.
    pub fn insert_decision(&self, d: &Decision) -> Result<Decision, StoreError> {
        // Cached: a blocklist inserts hundreds of thousands in one transaction.
        self.conn
            .prepare_cached(
                "INSERT INTO decisions (scope, target, type, scenario, origin, created, expires) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    d.scope.as_str(),
                    d.target.to_string(),
                    d.kind.as_str(),
                    d.scenario,
                    d.origin.to_string(),
                    d.created,
                    d.expires
                ])
            })
            .map_err(|e| self.sql(e))?;
        let mut out = d.clone();
        out.id = self.conn.last_insert_rowid();
        Ok(out)
    }

    /// Changes when a decision ends (a longer ban replaces a shorter one).
    pub fn set_expiry(&self, id: i64, expires: UnixTime) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("UPDATE decisions SET expires=?2 WHERE id=?1")
            .and_then(|mut st| st.execute(params![id, expires]))
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// Ends a decision now (kept for history until pruned). Returns the decision as it was.
    pub fn delete_decision(&self, id: i64, now: UnixTime) -> Result<Option<Decision>, StoreError> {
        let d = self.decision(id)?;
        if d.as_ref().is_some_and(|d| d.is_active(now)) {
            self.conn
                .execute(
                    "UPDATE decisions SET expires=MIN(expires, ?2), deleted=1 WHERE id=?1",
                    params![id, now],
                )
                .map_err(|e| self.sql(e))?;
        }
        Ok(d)
    }

    pub fn decision(&self, id: i64) -> Result<Option<Decision>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {DCOLS} FROM decisions WHERE id=?1"),
                [id],
                read_decision,
            )
            .optional()
            .map_err(|e| self.sql(e))?
            .transpose()
            .map_err(|what| StoreError::Corrupt {
                path: self.path.clone(),
                what,
            })
    }

    /// Decisions in force at `now`, oldest first.
    pub fn active_decisions(&self, now: UnixTime) -> Result<Vec<Decision>, StoreError> {
        self.query_decisions(
            &format!("SELECT {DCOLS} FROM decisions WHERE expires > ?1 ORDER BY id"),
            params![now],
        )
    }

    /// Decisions of `origin` in force at `now` (a list's current contents).
    pub fn active_by_origin(
        &self,
        origin: &shield_core::Origin,
        now: UnixTime,
    ) -> Result<Vec<Decision>, StoreError> {
        self.query_decisions(
            &format!("SELECT {DCOLS} FROM decisions WHERE origin=?1 AND expires > ?2 ORDER BY id"),
            params![origin.to_string(), now],
        )
    }

    /// Decisions that ended in `(after, upto]` (for sweeping them out of the layers).
    pub fn ended_between(
        &self,
        after: UnixTime,
        upto: UnixTime,
    ) -> Result<Vec<Decision>, StoreError> {
        self.query_decisions(
            &format!(
                "SELECT {DCOLS} FROM decisions WHERE expires > ?1 AND expires <= ?2 ORDER BY id"
            ),
            params![after, upto],
        )
    }

    /// Active decisions on exactly `target`.
    pub fn active_for(&self, target: &Net, now: UnixTime) -> Result<Vec<Decision>, StoreError> {
        self.query_decisions(
            &format!("SELECT {DCOLS} FROM decisions WHERE target=?1 AND expires > ?2 ORDER BY id"),
            params![target.to_string(), now],
        )
    }

    /// The most recent decisions, active or not (for listings).
    pub fn recent_decisions(&self, limit: usize) -> Result<Vec<Decision>, StoreError> {
        self.query_decisions(
            &format!("SELECT {DCOLS} FROM decisions ORDER BY id DESC LIMIT ?1"),
            params![limit as i64],
        )
    }

    fn query_decisions(
        &self,
        sql: &str,
        p: impl rusqlite::Params,
    ) -> Result<Vec<Decision>, StoreError> {
        let mut st = self.conn.prepare_cached(sql).map_err(|e| self.sql(e))?;
        let rows = st.query_map(p, read_decision).map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        for r in rows {
            let d = r
                .map_err(|e| self.sql(e))?
                .map_err(|what| StoreError::Corrupt {
                    path: self.path.clone(),
                    what,
                })?;
            out.push(d);
        }
        Ok(out)
    }

    // ---- offences (escalation memory) ----

    /// Records one more offence by `target` and returns how many it has now.
    /// Offences older than `forget_s` are forgotten first.
    pub fn bump_offence(
        &self,
        target: &Net,
        now: UnixTime,
        forget_s: u64,
    ) -> Result<u32, StoreError> {
        let key = target.to_string();
        let prev: Option<(i64, i64)> = self
            .conn
            .query_row(
                "SELECT count, last FROM offences WHERE target=?1",
                [&key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.sql(e))?;
        let count = match prev {
            Some((c, last)) if now - last <= forget_s as i64 => c + 1,
            _ => 1,
        };
        self.conn
            .execute(
                "INSERT INTO offences (target, count, last) VALUES (?1, ?2, ?3) \
                 ON CONFLICT(target) DO UPDATE SET count=?2, last=?3",
                params![key, count, now],
            )
            .map_err(|e| self.sql(e))?;
        Ok(count as u32)
    }

    pub fn offences(&self, target: &Net) -> Result<u32, StoreError> {
        let c: Option<i64> = self
            .conn
            .query_row(
                "SELECT count FROM offences WHERE target=?1",
                [target.to_string()],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.sql(e))?;
        Ok(c.unwrap_or(0) as u32)
    }

    // ---- alerts ----

    pub fn insert_alert(&self, a: &Alert, decision_id: Option<i64>) -> Result<i64, StoreError> {
        let evidence = serde_json::to_string(&a.evidence).unwrap_or_else(|_| "[]".into());
        self.conn
            .execute(
                "INSERT INTO alerts (scenario, target, time, first_seen, events, evidence, decision_id) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    a.scenario,
                    a.target.to_string(),
                    a.time,
                    a.first_seen,
                    a.events,
                    evidence,
                    decision_id
                ],
            )
            .map_err(|e| self.sql(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// `(key, count)` rows of a GROUP BY query.
    fn counts<K: rusqlite::types::FromSql>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<(K, u64)>, StoreError> {
        let mut st = self.conn.prepare_cached(sql).map_err(|e| self.sql(e))?;
        let rows = st
            .query_map(params, |r| {
                Ok((r.get::<_, K>(0)?, r.get::<_, i64>(1)? as u64))
            })
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.sql(e))
    }

    /// Alerts (by alert time) and decisions (by creation) per bucket of `width`
    /// seconds in `[from, from + width * n)`: two indexed GROUP BY queries.
    pub fn timeline(
        &self,
        from: i64,
        width: i64,
        n: usize,
    ) -> Result<(Vec<u64>, Vec<u64>), StoreError> {
        let params = [from, width.max(1), from + width * n as i64];
        let buckets = |sql: &str| -> Result<Vec<u64>, StoreError> {
            let mut v = vec![0u64; n];
            for (b, c) in self.counts::<i64>(sql, params)? {
                if let Some(slot) = usize::try_from(b).ok().and_then(|b| v.get_mut(b)) {
                    *slot = c;
                }
            }
            Ok(v)
        };
        Ok((
            buckets(
                "SELECT (time - ?1) / ?2, COUNT(*) FROM alerts WHERE time >= ?1 AND time < ?3 GROUP BY 1",
            )?,
            buckets(
                "SELECT (created - ?1) / ?2, COUNT(*) FROM decisions WHERE created >= ?1 AND created < ?3 GROUP BY 1",
            )?,
        ))
    }

    /// Alert counts per target and per scenario over every alert kept.
    #[allow(clippy::type_complexity)]
    pub fn alert_counts(&self) -> Result<(Vec<(String, u64)>, Vec<(String, u64)>), StoreError> {
        Ok((
            self.counts("SELECT target, COUNT(*) FROM alerts GROUP BY target", [])?,
            self.counts(
                "SELECT scenario, COUNT(*) FROM alerts GROUP BY scenario",
                [],
            )?,
        ))
    }

    pub fn recent_alerts(&self, limit: usize) -> Result<Vec<StoredAlert>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT id, scenario, target, time, first_seen, events, evidence, decision_id \
                 FROM alerts ORDER BY id DESC LIMIT ?1",
            )
            .map_err(|e| self.sql(e))?;
        let rows = st
            .query_map([limit as i64], |r| {
                let ev: String = r.get(6)?;
                Ok(StoredAlert {
                    id: r.get(0)?,
                    scenario: r.get(1)?,
                    target: r.get(2)?,
                    time: r.get(3)?,
                    first_seen: r.get(4)?,
                    events: r.get(5)?,
                    evidence: serde_json::from_str(&ev).unwrap_or_default(),
                    decision_id: r.get(7)?,
                })
            })
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.sql(e))
    }

    // ---- checkpoints ----

    /// Saves the positions `cps` (path, checkpoint) of `pipeline`'s files.
    pub fn save_checkpoints(
        &self,
        pipeline: &str,
        cps: &[(String, Checkpoint)],
        now: UnixTime,
    ) -> Result<(), StoreError> {
        let mut st = self
            .conn
            .prepare_cached(
                "INSERT INTO checkpoints (pipeline, path, dev, ino, offset, fingerprint, updated) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(pipeline, path) DO UPDATE SET \
                 dev=?3, ino=?4, offset=?5, fingerprint=?6, updated=?7",
            )
            .map_err(|e| self.sql(e))?;
        for (path, c) in cps {
            st.execute(params![
                pipeline,
                path,
                c.dev as i64,
                c.ino as i64,
                c.offset as i64,
                c.fingerprint as i64,
                now
            ])
            .map_err(|e| self.sql(e))?;
        }
        Ok(())
    }

    /// Every saved file position, of every pipeline.
    pub fn load_checkpoints(&self) -> Result<Vec<FilePosition>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT pipeline, path, dev, ino, offset, fingerprint FROM checkpoints")
            .map_err(|e| self.sql(e))?;
        let rows = st
            .query_map([], |r| {
                Ok(FilePosition {
                    pipeline: r.get(0)?,
                    path: r.get(1)?,
                    checkpoint: Checkpoint {
                        dev: r.get::<_, i64>(2)? as u64,
                        ino: r.get::<_, i64>(3)? as u64,
                        offset: r.get::<_, i64>(4)? as u64,
                        fingerprint: r.get::<_, i64>(5)? as u64,
                    },
                })
            })
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.sql(e))
    }

    // ---- small named values (journald cursors, ...) ----

    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value=?2",
                params![key, value],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key=?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.sql(e))
    }

    // ---- counters (kept with the checkpoints, so counts survive a crash exactly) ----

    pub fn add_counter(&self, name: &str, by: u64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO counters (name, value) VALUES (?1, ?2) \
                 ON CONFLICT(name) DO UPDATE SET value = value + ?2",
                params![name, by as i64],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    pub fn counters(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT name, value FROM counters ORDER BY name")
            .map_err(|e| self.sql(e))?;
        let rows = st
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.sql(e))
    }

    // ---- bouncers ----

    pub fn add_bouncer(
        &self,
        name: &str,
        key_hash: &str,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute(
                "INSERT OR IGNORE INTO bouncers (name, key_hash, created) VALUES (?1, ?2, ?3)",
                params![name, key_hash, now],
            )
            .map_err(|e| self.sql(e))?;
        Ok(n == 1)
    }

    pub fn delete_bouncer(&self, name: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute("DELETE FROM bouncers WHERE name=?1", [name])
            .map_err(|e| self.sql(e))?;
        Ok(n == 1)
    }

    /// Records a bouncer's pull at `at` (never moves it back).
    pub fn set_last_pull(&self, name: &str, at: UnixTime) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE bouncers SET last_pull = max(coalesce(last_pull, 0), ?2) WHERE name = ?1",
                params![name, at],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    pub fn bouncers(&self) -> Result<Vec<Bouncer>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT name, key_hash, created, last_pull FROM bouncers ORDER BY name")
            .map_err(|e| self.sql(e))?;
        let rows = st
            .query_map([], |r| {
                Ok(Bouncer {
                    name: r.get(0)?,
                    key_hash: r.get(1)?,
                    created: r.get(2)?,
                    last_pull: r.get(3)?,
                })
            })
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.sql(e))
    }

    // ---- housekeeping ----

    /// Deletes decisions that ended more than `keep_s` ago, alerts older than
    /// `keep_s`, and offences not renewed within `forget_s`. Returns rows deleted.
    pub fn prune(&self, now: UnixTime, keep_s: u64, forget_s: u64) -> Result<usize, StoreError> {
        let cut = now - keep_s as i64;
        let mut n = 0;
        n += self
            .conn
            .execute("DELETE FROM decisions WHERE expires < ?1", [cut])
            .map_err(|e| self.sql(e))?;
        n += self
            .conn
            .execute("DELETE FROM alerts WHERE time < ?1", [cut])
            .map_err(|e| self.sql(e))?;
        n += self
            .conn
            .execute(
                "DELETE FROM offences WHERE last < ?1",
                [now - forget_s as i64],
            )
            .map_err(|e| self.sql(e))?;
        Ok(n)
    }
}

const DCOLS: &str = "id, scope, target, type, scenario, origin, created, expires";

fn read_decision(r: &Row<'_>) -> rusqlite::Result<Result<Decision, String>> {
    let scope: String = r.get(1)?;
    let target: String = r.get(2)?;
    let kind: String = r.get(3)?;
    let origin: String = r.get(5)?;
    let parsed = (|| -> Result<Decision, String> {
        Ok(Decision {
            id: r.get(0).map_err(|e| e.to_string())?,
            scope: scope.parse::<Scope>().map_err(|e| e.to_string())?,
            target: target
                .parse::<Net>()
                .map_err(|e| format!("target {target}: {e}"))?,
            kind: kind.parse::<DecisionType>().map_err(|e| e.to_string())?,
            scenario: r.get(4).map_err(|e| e.to_string())?,
            origin: origin.parse::<Origin>().map_err(|e| e.to_string())?,
            created: r.get(6).map_err(|e| e.to_string())?,
            expires: r.get(7).map_err(|e| e.to_string())?,
        })
    })();
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(target: &str, created: i64, expires: i64) -> Decision {
        let target: Net = target.parse().unwrap();
        Decision {
            id: 0,
            scope: Scope::of(&target),
            target,
            kind: DecisionType::Ban,
            scenario: "t".into(),
            origin: Origin::Local,
            created,
            expires,
        }
    }

    /// Issue 22: checkpoints were saved under `pipeline<TAB>path` and the
    /// prefix stripped again at start; they are stored by (pipeline, path)
    /// now, and a store written before keeps its positions.
    #[test]
    fn checkpoints_are_kept_by_pipeline_and_path_and_old_keys_migrate() {
        let cp = |offset| Checkpoint {
            dev: 1,
            ino: 2,
            offset,
            fingerprint: 3,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shield.db");
        {
            // A version-3 store: one key column holding both.
            let s = Store::open(&path).unwrap();
            s.conn
                .execute_batch(
                    "DROP TABLE checkpoints;
                     CREATE TABLE checkpoints (key TEXT PRIMARY KEY, dev INTEGER NOT NULL, \
                     ino INTEGER NOT NULL, offset INTEGER NOT NULL, fingerprint INTEGER NOT NULL, \
                     updated INTEGER NOT NULL);
                     INSERT INTO checkpoints VALUES ('auth	/var/log/auth.log', 1, 2, 40, 3, 100);
                     INSERT INTO checkpoints VALUES ('web	/var/log/a	b.log', 1, 2, 7, 3, 100);
                     PRAGMA user_version=3;",
                )
                .unwrap();
        }
        let s = Store::open(&path).unwrap();
        let mut got = s.load_checkpoints().unwrap();
        got.sort_by(|a, b| a.pipeline.cmp(&b.pipeline));
        let pos = |pipeline: &str, path: &str, offset| FilePosition {
            pipeline: pipeline.into(),
            path: path.into(),
            checkpoint: cp(offset),
        };
        assert_eq!(
            got,
            vec![
                pos("auth", "/var/log/auth.log", 40),
                pos("web", "/var/log/a	b.log", 7)
            ]
        );
        // Saved and read back as they are: no prefix on either side, and
        // one path read by two pipelines keeps two positions.
        s.save_checkpoints("auth", &[("/var/log/auth.log".into(), cp(90))], 200)
            .unwrap();
        s.save_checkpoints("other", &[("/var/log/auth.log".into(), cp(5))], 200)
            .unwrap();
        let mut got = s.load_checkpoints().unwrap();
        got.sort_by(|a, b| a.pipeline.cmp(&b.pipeline));
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], pos("auth", "/var/log/auth.log", 90));
        assert_eq!(got[1], pos("other", "/var/log/auth.log", 5));
    }

    #[test]
    fn mapped_targets_of_an_older_store_are_rewritten_canonical() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shield.db");
        {
            // What a store before canonical addresses could hold.
            let s = Store::open(&path).unwrap();
            s.conn
                .execute_batch(
                    "INSERT INTO decisions (scope, target, type, scenario, origin, created, expires) \
                     VALUES ('ip', '::ffff:10.1.2.3/128', 'ban', 'manual', 'manual', 100, 900);
                     INSERT INTO offences (target, count, last) VALUES ('::ffff:10.1.2.3/128', 3, 100);
                     INSERT INTO offences (target, count, last) VALUES ('2001:db8::/64', 1, 100);
                     PRAGMA user_version=2;",
                )
                .unwrap();
        }
        let s = Store::open(&path).unwrap();
        let t: Net = "10.1.2.3".parse().unwrap();
        let found = s.active_for(&t, 200).unwrap();
        assert_eq!(found.len(), 1, "a delete by 10.1.2.3 must find it");
        assert_eq!(found[0].target.to_string(), "10.1.2.3/32");
        assert_eq!(s.offences(&t).unwrap(), 3);
        assert_eq!(s.offences(&"2001:db8::/64".parse().unwrap()).unwrap(), 1);
    }

    #[test]
    fn decisions_round_trip_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("x/shield.db")).unwrap();
        let a = s
            .atomically(|s| s.insert_decision(&dec("203.0.113.7/32", 100, 200)))
            .unwrap();
        s.insert_decision(&dec("198.51.100.0/24", 100, 150))
            .unwrap();
        assert_eq!(s.active_decisions(120).unwrap().len(), 2);
        assert_eq!(s.active_decisions(160).unwrap().len(), 1);
        s.delete_decision(a.id, 130).unwrap();
        assert_eq!(s.active_decisions(131).unwrap().len(), 1);
        assert_eq!(s.decision(a.id).unwrap().unwrap().expires, 130);
        assert_eq!(s.prune(10_000, 100, 100).unwrap(), 2);
    }

    #[test]
    fn timeline_buckets_and_alert_counts_in_sql() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        let alert = |target: &str, scenario: &str, time: i64| Alert {
            scenario: scenario.into(),
            target: target.parse().unwrap(),
            time,
            first_seen: time,
            events: 5,
            evidence: vec![],
            kind: DecisionType::Ban,
            duration_s: 60,
        };
        // Buckets of 60 s from 1000: [1000, 1060) [1060, 1120) …, 3 of them.
        for (t, at) in [
            ("192.0.2.1/32", 1000),
            ("192.0.2.1/32", 1059),
            ("192.0.2.2/32", 1060),
            ("192.0.2.3/32", 999),
            ("198.51.100.1/32", 1180),
        ] {
            s.insert_alert(&alert(t, if at < 1060 { "a" } else { "b" }, at), None)
                .unwrap();
        }
        s.insert_decision(&dec("192.0.2.1/32", 1130, 2000)).unwrap();
        let (a, d) = s.timeline(1000, 60, 3).unwrap();
        assert_eq!(a, [2, 1, 0]);
        assert_eq!(d, [0, 0, 1]);
        let (mut targets, mut scen) = s.alert_counts().unwrap();
        targets.sort();
        scen.sort();
        assert_eq!(targets[0], ("192.0.2.1/32".to_string(), 2));
        assert_eq!(targets.len(), 4);
        assert_eq!(scen, [("a".to_string(), 3), ("b".to_string(), 2)]);
    }

    #[test]
    fn offences_count_and_forget() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        let t: Net = "192.0.2.1/32".parse().unwrap();
        assert_eq!(s.bump_offence(&t, 100, 1000).unwrap(), 1);
        assert_eq!(s.bump_offence(&t, 200, 1000).unwrap(), 2);
        assert_eq!(s.bump_offence(&t, 5000, 1000).unwrap(), 1);
    }

    #[test]
    fn failed_transaction_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("s.db")).unwrap();
        let r: Result<(), StoreError> = s.atomically(|s| {
            s.insert_decision(&dec("192.0.2.1/32", 1, 2))?;
            Err(StoreError::Corrupt {
                path: "x".into(),
                what: "test".into(),
            })
        });
        assert!(r.is_err());
        assert!(s.recent_decisions(10).unwrap().is_empty());
    }
}
