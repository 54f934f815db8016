//! The daemon's shared vocabulary, a leaf of the crate's module graph: the
//! messages the decision thread takes ([`Msg`]), the per-source status, the
//! counters, the bouncer keys and the handles the async edge holds
//! ([`Shared`]). It runs nothing; the decision thread is `worker`, the readers
//! `readers`, the servers `server`/`api`, and `run` wires them together.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;
use shield_core::{Alert, Checkpoint, Clock, Decision, UnixTime};
use shield_enforce::DecisionTable;

use crate::decide::{Decider, Outcome};
use crate::store::{Store, StoreError};

/// Longest line a source delivers; longer ones are skipped and counted.
pub const MAX_LINE: usize = 64 * 1024;

/// What the decision thread is asked to do.
pub enum Msg {
    /// Alerts from a pipeline, with the checkpoint after the lines that raised them.
    Batch {
        pipeline: String,
        alerts: Vec<Alert>,
        /// File positions after these lines, (path, checkpoint), saved
        /// under `pipeline`.
        checkpoints: Vec<(String, Checkpoint)>,
        lines: u64,
        matched: u64,
        /// A journald cursor to save with the batch: (key, cursor).
        cursor: Option<(String, String)>,
    },
    /// A decision from an operator or the union.
    Admit {
        decision: Decision,
        reply: Option<tokio::sync::oneshot::Sender<Result<Outcome, StoreError>>>,
    },
    /// End decisions now (see `worker::end_decisions`).
    Delete {
        which: Which,
        reply: tokio::sync::oneshot::Sender<Result<Vec<Decision>, StoreError>>,
    },
    /// New decision policy after a reload.
    Policy(Decider),
    /// A new firewall layer after a reload: the decision thread fills it
    /// with the store's decisions, then swaps it in (tearing the old one down
    /// when `teardown_old`, i.e. it lives elsewhere), so no ban lapses. On
    /// error the old layer stays.
    Firewall {
        layer: Box<dyn shield_enforce::Firewall>,
        teardown_old: bool,
        reply: mpsc::Sender<Result<(), crate::error::RunError>>,
    },
    /// Every saved checkpoint, read after the batches queued before this
    /// message are committed (a reload asks once its readers have stopped).
    Checkpoints(mpsc::Sender<Result<Vec<crate::store::FilePosition>, StoreError>>),
    /// Add (with its key's hash) or delete a bouncer; answers whether a row
    /// changed. Bouncers go through the one writer like everything else.
    Bouncer {
        name: String,
        key_hash: Option<String>,
        reply: tokio::sync::oneshot::Sender<Result<bool, StoreError>>,
    },
    /// A blocklist's whole contents, to diff against its decisions (`crate::lists::refresh`).
    List {
        update: crate::lists::ListUpdate,
        reply: tokio::sync::oneshot::Sender<Result<crate::lists::ListDiff, StoreError>>,
    },
    /// When bouncers last pulled, batched by [`KeyAuth::take_pulls`].
    LastPull(Vec<(String, UnixTime)>),
    /// Flush and stop.
    Stop,
}

/// Which decisions an operator ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Which {
    /// The decision with this store id.
    Id(i64),
    /// Every decision in force on this address or range.
    Target(shield_core::Net),
}

/// Per-source facts for `shield status` and the dashboard.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct SourceStatus {
    pub name: String,
    pub kind: String,
    pub lines: u64,
    pub matched: u64,
    pub alerts: u64,
    pub invalid_utf8: u64,
    pub last_line_at: Option<UnixTime>,
    /// Hits per rule of this source's engine (rules with at least one hit).
    #[serde(default)]
    pub rules: BTreeMap<String, u64>,
    /// Tracked keys evicted because `[engine] max_keys` was reached.
    #[serde(default)]
    pub keys_evicted: u64,
    /// Seconds between a line being written and being read, now (see `lag`).
    #[serde(default)]
    pub lag_seconds: f64,
    /// The highest `lag_seconds` since the source started.
    #[serde(default)]
    pub lag_peak_seconds: f64,
    /// Bytes written to the source's files and not read yet.
    #[serde(default)]
    pub bytes_behind: u64,
    pub files: Vec<String>,
    pub error: Option<String>,
}

/// Counters shared by every part of the daemon.
#[derive(Default, Debug)]
pub struct Counters {
    /// Wall time of the decision thread's last loop (it loops at least every 0.5 s).
    pub heartbeat: std::sync::atomic::AtomicI64,
    pub decisions_new: AtomicU64,
    pub decisions_extended: AtomicU64,
    pub allowlisted: AtomicU64,
    pub firewall_errors: AtomicU64,
    pub store_errors: AtomicU64,
    /// Prometheus counters and latency histograms (`GET /metrics`).
    pub metrics: crate::metrics::Metrics,
    /// What the HTTP edge refused.
    pub edge: EdgeCounters,
    /// Notification channels and exec actions fed with new decisions (a
    /// no-op without `[[notify]]`, `[[action]]` or `[webhook]`).
    pub notify: crate::notify::Notifier,
    /// Each `[[list]]`'s state (`shield status`, `/metrics`).
    pub lists: crate::lists::ListBoard,
}

/// What the TCP edge refused in requests: shown in `shield status` counters.
/// Connection-level refusals are the listener's [`shield_enforce::ListenStats`],
/// read through the limiter the server registers here.
#[derive(Default)]
pub struct EdgeCounters {
    /// Requests answered with a 4xx status (bad input, wrong key, too large, unknown path).
    pub refused: AtomicU64,
    /// Requests cut off by the request timeout (slow body).
    pub timeouts: AtomicU64,
    /// The TCP listener's limiter, once it serves. Mutex: set once at start,
    /// read per status request or scrape for one clone.
    tcp: Mutex<Option<Arc<shield_enforce::Limiter>>>,
}

impl std::fmt::Debug for EdgeCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeCounters")
            .field("refused", &self.refused)
            .field("timeouts", &self.timeouts)
            .field("tcp", &self.tcp_stats())
            .finish()
    }
}

impl EdgeCounters {
    /// Registers the TCP listener's limiter, whose counters [`Self::tcp_stats`] reads.
    pub fn set_tcp_limiter(&self, l: Arc<shield_enforce::Limiter>) {
        *self.tcp.lock().unwrap_or_else(|p| p.into_inner()) = Some(l);
    }

    /// The TCP listener's connection counters (zero when it is off).
    pub fn tcp_stats(&self) -> shield_enforce::ListenStats {
        self.tcp
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|l| l.stats())
            .unwrap_or_default()
    }
}

/// Bouncer API keys, hashed, mirrored in memory from the store.
#[derive(Default)]
pub struct KeyAuth {
    /// Stamps the pulls.
    clock: Clock,
    // RwLock: written only when a bouncer is added/removed, read per API request.
    by_hash: RwLock<HashMap<String, String>>,
    // Mutex: held only to record one pull or to take them all; written to the
    // store in batches, not once per poll.
    pulls: Mutex<HashMap<String, UnixTime>>,
}

impl KeyAuth {
    /// No keys yet; pulls are stamped by `clock`.
    pub fn new(clock: Clock) -> Self {
        KeyAuth {
            clock,
            ..Default::default()
        }
    }

    pub fn load(&self, store: &Store) {
        if let Ok(list) = store.bouncers() {
            let m = list.into_iter().map(|b| (b.key_hash, b.name)).collect();
            *self.by_hash.write().unwrap_or_else(|p| p.into_inner()) = m;
        }
    }

    /// The pulls recorded since the last call: (bouncer, when).
    pub fn take_pulls(&self) -> Vec<(String, UnixTime)> {
        std::mem::take(&mut *self.pulls.lock().unwrap_or_else(|p| p.into_inner()))
            .into_iter()
            .collect()
    }
}

impl shield_enforce::BouncerAuth for KeyAuth {
    fn authenticate(&self, api_key: &str) -> Option<String> {
        let h = shield_enforce::hash_api_key(api_key);
        let name = self
            .by_hash
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&h)
            .cloned()?;
        self.pulls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.clone(), self.clock.now());
        Some(name)
    }
}

/// The running union member, shared by the union task (which publishes
/// through it) and the status readers (API, dashboard, `/metrics`), which ask
/// it for a typed [`shield_union::UnionStatus`] when they need one.
#[derive(Clone, Default)]
pub struct UnionView(Arc<Mutex<Option<shield_union::UnionHandle>>>);

impl UnionView {
    /// A view of `handle`.
    pub fn new(handle: shield_union::UnionHandle) -> Self {
        UnionView(Arc::new(Mutex::new(Some(handle))))
    }

    /// The union's status now; `None` without a union (or after it stopped).
    pub fn status(&self) -> Option<shield_union::UnionStatus> {
        // Mutex: held for one status() or publish() call, never across an await.
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|h| h.status())
    }

    /// Runs `f` on the handle, if the union runs.
    pub fn with<T>(&self, f: impl FnOnce(&shield_union::UnionHandle) -> T) -> Option<T> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(f)
    }

    /// Takes the handle out (to shut it down); later reads see no union.
    pub fn take(&self) -> Option<shield_union::UnionHandle> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Puts a (restarted) handle back.
    pub fn put(&self, h: shield_union::UnionHandle) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(h);
    }
}

/// Handles the async edge uses to reach the rest of the daemon.
#[derive(Clone)]
pub struct Shared {
    pub tx: mpsc::Sender<Msg>,
    pub table: Arc<RwLock<DecisionTable>>,
    /// A reader connection (WAL: never blocks the writer). Mutex: rusqlite
    /// connections are not Sync; requests hold it for one short query.
    pub reader: Arc<Mutex<Store>>,
    pub sources: Arc<Mutex<BTreeMap<String, SourceStatus>>>,
    pub counters: Arc<Counters>,
    pub auth: Arc<KeyAuth>,
    pub started: UnixTime,
    pub config_file: String,
    pub firewall: String,
    /// The union member, when `[union]` is set; its status is read on demand.
    pub union: UnionView,
    /// The daemon's time (the system clock, or a test's manual one).
    pub clock: Clock,
}

impl Shared {
    /// Decisions in force at `t`, from the in-memory table.
    pub fn active_count(&self, t: UnixTime) -> usize {
        self.table
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .active(t)
            .count()
    }

    /// A copy of every source's status (the lock is held only to clone them).
    pub fn source_snapshot(&self) -> Vec<SourceStatus> {
        self.sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
}
