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

pub struct SignalStore {
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

/// Added after the first release: pardons may end (`until`, NULL = never).
const MIGRATE_PARDON_UNTIL: &str = "ALTER TABLE union_pardons ADD COLUMN until INTEGER";

/// Most held ranges per origin a pull may name; past them a peer may send
/// rows we hold (refused as duplicates), never fewer than we miss.
pub const MAX_HELD_RANGES: usize = 256;

/// A row kept only so anti-entropy knows the signal was seen: no payload, and
/// the signature column holds `h:` + the payload's sha256 so a different
/// payload under the same number is still detected as a conflict.
fn tombstone_sig(payload: &str) -> String {
    use sha2::Digest as _;
    format!(
        "h:{}",
        crate::treaty::hex(&sha2::Sha256::digest(payload.as_bytes()))
    )
}

impl SignalStore {
    pub fn open(path: &Path) -> Result<SignalStore, StoreError> {
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
        let has_until: bool = conn
            .query_row(
                "SELECT COUNT(*) FROM pragma_table_info('union_pardons') WHERE name = 'until'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(e)?
            > 0;
        if !has_until {
            conn.execute_batch(MIGRATE_PARDON_UNTIL).map_err(e)?;
        }
        Ok(SignalStore {
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

    /// What is stored under (origin, seq) compared with `env`, without storing anything.
    pub fn existing(
        &self,
        origin: &str,
        seq: u64,
        env: &Envelope,
    ) -> Result<Option<Inserted>, StoreError> {
        let row: Option<(String, String)> = self
            .conn
            .query_row(
                "SELECT payload, sig FROM union_signals WHERE origin = ?1 AND seq = ?2",
                params![origin, seq as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(row.map(|(p, sig)| {
            let same = if p.is_empty() {
                sig == tombstone_sig(&env.payload)
            } else {
                p == env.payload
            };
            if same {
                Inserted::Duplicate
            } else {
                Inserted::Conflict
            }
        }))
    }

    /// Keep a refused signal's number and verdict, not its content: what
    /// anti-entropy needs to stop asking for it, at a few dozen bytes a row.
    /// Tombstones are never served to peers.
    #[allow(clippy::too_many_arguments)]
    pub fn insert_tombstone(
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
        if let Some(x) = self.existing(origin, seq, env)? {
            return Ok(x);
        }
        let scenario: String = scenario.chars().take(64).collect();
        self.conn
            .execute(
                "INSERT INTO union_signals (origin, seq, time, target, scenario, verdict, payload, sig, received)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, '', ?7, ?8)",
                params![origin, seq as i64, time, target.to_string(), scenario, verdict, tombstone_sig(&env.payload), received],
            )
            .map_err(|e| self.err(e))?;
        Ok(Inserted::New)
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
        if let Some(x) = self.existing(origin, seq, env)? {
            return Ok(x);
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

    /// Forget signals older than `cutoff`: per origin, every row up to the
    /// highest sequence whose signal time is older (rows above a gap too — a
    /// gap no longer holds anything back), and remember that sequence as the
    /// origin's floor so anti-entropy never asks for it again. Honest origins
    /// number their signals in time order, so nothing younger is lost; an
    /// origin that back-dates high numbers only loses its own. Returns the
    /// rows deleted and the new floors.
    pub fn prune(&self, cutoff: i64) -> Result<(usize, BTreeMap<String, u64>), StoreError> {
        let tx = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        let uptos: Vec<(String, i64)> = {
            let mut st = tx
                .prepare(
                    "SELECT origin, MAX(seq) FROM union_signals WHERE time < ?1 GROUP BY origin",
                )
                .map_err(|e| self.err(e))?;
            let rows = st
                .query_map(params![cutoff], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(|e| self.err(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.err(e))?
        };
        let mut n = 0;
        let mut floors = BTreeMap::new();
        for (origin, upto) in uptos {
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
            floors.insert(origin, upto as u64);
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok((n, floors))
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

    /// Signals a peer misses, at most `limit` in all: per origin, those above
    /// `have[origin]` (0 when absent) that fall outside the peer's `held`
    /// ranges — so rows past a gap are served too —, shared fairly: every
    /// origin with something missing gets its share of `limit` before any
    /// origin gets more. Tombstones (refused signals) are never served.
    pub fn since(
        &self,
        have: &BTreeMap<String, u64>,
        held: &BTreeMap<String, Vec<(u64, u64)>>,
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
        // Per origin, the sequence ranges the peer misses (inclusive).
        let gaps: Vec<(String, Vec<(i64, i64)>)> = origins
            .into_iter()
            .map(|o| {
                let mut lo = have.get(&o).copied().unwrap_or(0).saturating_add(1) as i64;
                let mut g = Vec::new();
                let mut ranges: Vec<(u64, u64)> = held
                    .get(&o)
                    .map(|r| r.iter().take(MAX_HELD_RANGES).copied().collect())
                    .unwrap_or_default();
                ranges.sort_unstable();
                for (s, e) in ranges {
                    let (s, e) = (s.min(i64::MAX as u64) as i64, e.min(i64::MAX as u64) as i64);
                    if e < lo || s > e {
                        continue;
                    }
                    if s > lo {
                        g.push((lo, s - 1));
                    }
                    lo = lo.max(e.saturating_add(1));
                }
                g.push((lo, i64::MAX));
                (o, g)
            })
            .collect();
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT seq, payload, sig FROM union_signals
                 WHERE origin = ?1 AND seq BETWEEN ?2 AND ?3 AND payload != '' ORDER BY seq LIMIT ?4",
            )
            .map_err(|e| self.err(e))?;
        let mut fetch = |o: &str, g: &[(i64, i64)], after: i64, max: usize| {
            let mut out: Vec<Row> = Vec::new();
            for &(lo, hi) in g {
                if out.len() >= max {
                    break;
                }
                let lo = lo.max(after.saturating_add(1));
                if lo > hi {
                    continue;
                }
                let rows = st
                    .query_map(params![o, lo, hi, (max - out.len()) as i64], |r| {
                        Ok(Row {
                            origin: o.to_string(),
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
            Ok::<_, StoreError>(out)
        };
        let share = (limit / gaps.len().max(1)).max(1);
        let mut out = Vec::new();
        let mut last = vec![0i64; gaps.len()];
        for (i, (o, g)) in gaps.iter().enumerate() {
            if out.len() >= limit {
                break;
            }
            let rows = fetch(o, g, 0, share.min(limit - out.len()))?;
            last[i] = rows.last().map_or(i64::MAX, |r| r.seq as i64);
            if rows.len() < share {
                last[i] = i64::MAX; // nothing more from this origin
            }
            out.extend(rows);
        }
        for (i, (o, g)) in gaps.iter().enumerate() {
            if out.len() >= limit {
                break;
            }
            if last[i] == i64::MAX {
                continue;
            }
            out.extend(fetch(o, g, last[i], limit - out.len())?);
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

    /// Pardon `target` until `until` (Unix seconds; `None` = until removed). A
    /// pardon that already exists is extended, never shortened.
    pub fn add_pardon(&self, target: &Net, now: i64, until: Option<i64>) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO union_pardons (target, created, until) VALUES (?1, ?2, ?3)
                 ON CONFLICT(target) DO UPDATE SET until = CASE
                   WHEN until IS NULL OR excluded.until IS NULL THEN NULL
                   ELSE MAX(until, excluded.until) END",
                params![target.to_string(), now, until],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Remove a pardon; returns whether there was one.
    pub fn remove_pardon(&self, target: &Net) -> Result<bool, StoreError> {
        self.conn
            .execute(
                "DELETE FROM union_pardons WHERE target = ?1",
                params![target.to_string()],
            )
            .map(|n| n > 0)
            .map_err(|e| self.err(e))
    }

    /// Pardons in force at `now`, with their end (`None` = until removed).
    pub fn pardons(&self, now: i64) -> Result<Vec<(Net, Option<i64>)>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT target, until FROM union_pardons WHERE until IS NULL OR until > ?1",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![now], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for r in rows {
            let (t, until) = r.map_err(|e| self.err(e))?;
            // A row we cannot parse was not written by us; skip it rather than fail start.
            if let Ok(n) = t.parse() {
                out.push((n, until));
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
        let s = SignalStore::open(&dir.path().join("db.sqlite")).unwrap();
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
        let none = BTreeMap::new();
        let rows = s.since(&have, &none, 10).unwrap();
        let got: Vec<_> = rows.iter().map(|r| (r.origin.as_str(), r.seq)).collect();
        assert_eq!(got, vec![("a", 2), ("b", 1)]);
        assert_eq!(s.since(&BTreeMap::new(), &none, 1).unwrap().len(), 1);
        assert_eq!(s.reporters(&t, "x", 0).unwrap(), 2);
        assert_eq!(s.reporters(&t, "x", 12).unwrap(), 1);
        // Prune what is older than 12 (a, 1..=2 at 10 and 11).
        assert_eq!(s.prune(12).unwrap().0, 2);
        assert_eq!(s.floors().unwrap(), BTreeMap::from([("a".to_string(), 2)]));
        assert_eq!(s.since(&BTreeMap::new(), &none, 10).unwrap().len(), 1);
        s.add_pardon(&t, 5, Some(100)).unwrap();
        assert_eq!(s.pardons(50).unwrap(), vec![(t, Some(100))]);
        assert!(s.pardons(100).unwrap().is_empty());
        s.add_pardon(&t, 5, None).unwrap();
        assert_eq!(s.pardons(1000).unwrap(), vec![(t, None)]);
        assert!(s.remove_pardon(&t).unwrap());
        assert!(s.pardons(0).unwrap().is_empty());
    }

    #[test]
    fn since_serves_past_gaps_fairly_and_never_tombstones() {
        let dir = tempfile::tempdir().unwrap();
        let s = SignalStore::open(&dir.path().join("db.sqlite")).unwrap();
        let t: Net = "203.0.113.7/32".parse().unwrap();
        let env = |i: u64| Envelope {
            payload: format!("p{i}"),
            sig: "s".into(),
        };
        // `m` jumped to 1000..1299; `z` sorts after it and has one row.
        for seq in 1000..1300 {
            s.insert("m", seq, 10, &t, "x", "accepted", &env(seq), 10)
                .unwrap();
        }
        s.insert("z", 1, 10, &t, "x", "accepted", &env(1), 10)
            .unwrap();
        s.insert_tombstone("z", 2, 10, &t, "x", "stale", &env(2), 10)
            .unwrap();
        let none = BTreeMap::new();
        let rows = s.since(&BTreeMap::new(), &none, 200).unwrap();
        assert_eq!(rows.len(), 200);
        assert!(
            rows.iter().any(|r| r.origin == "z" && r.seq == 1),
            "z starved"
        );
        assert!(
            !rows.iter().any(|r| r.origin == "z" && r.seq == 2),
            "tombstone served"
        );
        // Holding 1000..=1199 past the gap, the next pull gets 1200.. not the same rows.
        let held = BTreeMap::from([("m".to_string(), vec![(1000, 1199)])]);
        let have = BTreeMap::from([("z".to_string(), 2)]);
        let rows = s.since(&have, &held, 200).unwrap();
        let seqs: Vec<u64> = rows.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (1200..1300).collect::<Vec<_>>());
        // A tombstone still detects a conflicting payload.
        assert_eq!(
            s.existing("z", 2, &env(2)).unwrap(),
            Some(Inserted::Duplicate)
        );
        assert_eq!(
            s.existing("z", 2, &env(3)).unwrap(),
            Some(Inserted::Conflict)
        );
    }
}
