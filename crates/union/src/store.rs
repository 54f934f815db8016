//! The union's persistent state in the daemon's SQLite file (WAL), in its own
//! tables prefixed `union_` and on its own connection: every authentic signal
//! per (origin, seq) with the verdict this member reached on it, and the local
//! pardons. Knows SQL; knows nothing about trust or transport.

use rusqlite::{Connection, OptionalExtension, params};
use shield_core::Net;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::signal::Envelope;

/// A database problem; the message names the file.
#[derive(Debug, thiserror::Error)]
#[error(
    "union store {path}: {source} (check that the directory exists and is writable, and that no other program holds the file)"
)]
pub struct StoreError {
    pub path: PathBuf,
    #[source]
    pub source: rusqlite::Error,
}

/// Result of storing a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    New,
    /// The same (origin, seq) with the same bytes was already stored.
    Duplicate,
    /// The same (origin, seq) with different bytes: the origin signed two things under one number.
    Conflict,
}

/// One stored signal row, as served to peers.
pub struct Row {
    pub origin: String,
    pub seq: u64,
    pub env: Envelope,
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS union_signals (
    origin   TEXT    NOT NULL,
    seq      INTEGER NOT NULL,
    time     INTEGER NOT NULL,
    target   TEXT    NOT NULL,
    scenario TEXT    NOT NULL,
    verdict  TEXT    NOT NULL,
    payload  TEXT    NOT NULL,
    sig      TEXT    NOT NULL,
    received INTEGER NOT NULL,
    PRIMARY KEY (origin, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS union_signals_target ON union_signals (target, scenario, time);
CREATE TABLE IF NOT EXISTS union_floor (
    origin TEXT PRIMARY KEY,
    seq    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS union_pardons (
    target  TEXT PRIMARY KEY,
    created INTEGER NOT NULL
);
";

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let e = |source| StoreError {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open(path).map_err(e)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(e)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(e)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(e)?;
        conn.execute_batch(SCHEMA).map_err(e)?;
        Ok(Store {
            conn,
            path: path.to_owned(),
        })
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError {
            path: self.path.clone(),
            source,
        }
    }

    /// Start a batch: the inserts of one push or pull commit together.
    pub fn begin(&self) -> Result<(), StoreError> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| self.err(e))
    }

    /// Commit the open transaction; if that fails, roll it back (nothing of it is kept).
    pub fn commit(&self) -> Result<(), StoreError> {
        self.conn.execute_batch("COMMIT").map_err(|e| {
            let _ = self.conn.execute_batch("ROLLBACK");
            self.err(e)
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub fn insert(
        &self,
        origin: &str,
        seq: u64,
        time: i64,
        target: &Net,
        scenario: &str,
        verdict: &str,
        env: &Envelope,
        received: i64,
    ) -> Result<Inserted, StoreError> {
        let existing: Option<String> = self
            .conn
            .query_row(
                "SELECT payload FROM union_signals WHERE origin = ?1 AND seq = ?2",
                params![origin, seq as i64],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        if let Some(p) = existing {
            return Ok(if p == env.payload {
                Inserted::Duplicate
            } else {
                Inserted::Conflict
            });
        }
        self.conn
            .execute(
                "INSERT INTO union_signals (origin, seq, time, target, scenario, verdict, payload, sig, received)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![origin, seq as i64, time, target.to_string(), scenario, verdict, env.payload, env.sig, received],
            )
            .map_err(|e| self.err(e))?;
        Ok(Inserted::New)
    }

    /// (origin, verdict, count, newest time) for the offline status.
    pub fn verdict_counts(&self) -> Result<Vec<(String, String, u64, i64)>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT origin, verdict, COUNT(*), MAX(time) FROM union_signals GROUP BY origin, verdict ORDER BY origin, verdict")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64, r.get(3)?))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Every stored (origin, seq), for rebuilding the per-origin high-water marks.
    pub fn all_seqs(&self) -> Result<BTreeMap<String, Vec<u64>>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT origin, seq FROM union_signals ORDER BY origin, seq")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(|e| self.err(e))?;
        let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for r in rows {
            let (o, s) = r.map_err(|e| self.err(e))?;
            out.entry(o).or_default().push(s as u64);
        }
        Ok(out)
    }

    /// Per origin, the sequence up to which signals were pruned (all held before).
    pub fn floors(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT origin, seq FROM union_floor")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Forget signals older than `cutoff`, but only a contiguous prefix per origin
    /// up to `contig[origin]`, and remember that prefix as the origin's floor so
    /// anti-entropy never asks for it again. Returns the rows deleted.
    pub fn prune(&self, cutoff: i64, contig: &BTreeMap<String, u64>) -> Result<usize, StoreError> {
        let tx = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        let mut n = 0;
        for (origin, &c) in contig {
            // The first seq (≤ contig) that is still young bounds the prefix.
            let first_young: Option<i64> = tx
                .query_row(
                    "SELECT MIN(seq) FROM union_signals WHERE origin = ?1 AND seq <= ?2 AND time >= ?3",
                    params![origin, c as i64, cutoff],
                    |r| r.get(0),
                )
                .map_err(|e| self.err(e))?;
            let upto = match first_young {
                Some(s) => s - 1,
                None => c as i64,
            };
            if upto <= 0 {
                continue;
            }
            n += tx
                .execute(
                    "DELETE FROM union_signals WHERE origin = ?1 AND seq <= ?2",
                    params![origin, upto],
                )
                .map_err(|e| self.err(e))?;
            tx.execute(
                "INSERT INTO union_floor (origin, seq) VALUES (?1, ?2)
                 ON CONFLICT(origin) DO UPDATE SET seq = MAX(seq, excluded.seq)",
                params![origin, upto],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(n)
    }

    /// Latest signal time per origin.
    pub fn last_times(&self) -> Result<BTreeMap<String, i64>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT origin, MAX(time) FROM union_signals GROUP BY origin")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Signals with seq above `have[origin]` (0 when absent), at most `limit` in all.
    pub fn since(
        &self,
        have: &BTreeMap<String, u64>,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError> {
        let origins: Vec<String> = {
            let mut st = self
                .conn
                .prepare("SELECT DISTINCT origin FROM union_signals")
                .map_err(|e| self.err(e))?;
            let rows = st.query_map([], |r| r.get(0)).map_err(|e| self.err(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.err(e))?
        };
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT seq, payload, sig FROM union_signals WHERE origin = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for o in origins {
            if out.len() >= limit {
                break;
            }
            let from = have.get(&o).copied().unwrap_or(0) as i64;
            let left = (limit - out.len()) as i64;
            let rows = st
                .query_map(params![o, from, left], |r| {
                    Ok(Row {
                        origin: o.clone(),
                        seq: r.get::<_, i64>(0)? as u64,
                        env: Envelope {
                            payload: r.get(1)?,
                            sig: r.get(2)?,
                        },
                    })
                })
                .map_err(|e| self.err(e))?;
            for r in rows {
                out.push(r.map_err(|e| self.err(e))?);
            }
        }
        Ok(out)
    }

    /// Distinct origins that reported `target` for `scenario` since `since`
    /// (signals accepted or held for quorum).
    pub fn reporters(&self, target: &Net, scenario: &str, since: i64) -> Result<u32, StoreError> {
        self.conn
            .query_row(
                "SELECT COUNT(DISTINCT origin) FROM union_signals
                 WHERE target = ?1 AND scenario = ?2 AND time >= ?3 AND verdict IN ('accepted', 'quorum_pending', 'own')",
                params![target.to_string(), scenario, since],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u32)
            .map_err(|e| self.err(e))
    }

    pub fn add_pardon(&self, target: &Net, now: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO union_pardons (target, created) VALUES (?1, ?2)",
                params![target.to_string(), now],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn pardons(&self) -> Result<Vec<Net>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT target FROM union_pardons")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for r in rows {
            // A row we cannot parse was not written by us; skip it rather than fail start.
            if let Ok(n) = r.map_err(|e| self.err(e))?.parse() {
                out.push(n);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_dedup_conflict_since_and_reporters() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db.sqlite")).unwrap();
        let t: Net = "203.0.113.7/32".parse().unwrap();
        let e1 = Envelope {
            payload: "p1".into(),
            sig: "s".into(),
        };
        let e2 = Envelope {
            payload: "p2".into(),
            sig: "s".into(),
        };
        assert_eq!(
            s.insert("a", 1, 10, &t, "x", "accepted", &e1, 10).unwrap(),
            Inserted::New
        );
        assert_eq!(
            s.insert("a", 1, 10, &t, "x", "accepted", &e1, 10).unwrap(),
            Inserted::Duplicate
        );
        assert_eq!(
            s.insert("a", 1, 10, &t, "x", "accepted", &e2, 10).unwrap(),
            Inserted::Conflict
        );
        s.insert("a", 2, 11, &t, "x", "accepted", &e2, 11).unwrap();
        s.insert("b", 1, 12, &t, "x", "quorum_pending", &e2, 12)
            .unwrap();
        let have = BTreeMap::from([("a".to_string(), 1)]);
        let rows = s.since(&have, 10).unwrap();
        let got: Vec<_> = rows.iter().map(|r| (r.origin.as_str(), r.seq)).collect();
        assert_eq!(got, vec![("a", 2), ("b", 1)]);
        assert_eq!(s.since(&BTreeMap::new(), 1).unwrap().len(), 1);
        assert_eq!(s.reporters(&t, "x", 0).unwrap(), 2);
        assert_eq!(s.reporters(&t, "x", 12).unwrap(), 1);
        // Prune what is older than 12 (a, 1..=2 at 10 and 11), only below contig.
        let contig = BTreeMap::from([("a".to_string(), 2), ("b".to_string(), 1)]);
        assert_eq!(s.prune(12, &contig).unwrap(), 2);
        assert_eq!(s.floors().unwrap(), BTreeMap::from([("a".to_string(), 2)]));
        assert_eq!(s.since(&BTreeMap::new(), 10).unwrap().len(), 1);
        s.add_pardon(&t, 5).unwrap();
        assert_eq!(s.pardons().unwrap(), vec![t]);
    }
}
