//! The running daemon: one reader thread per pipeline (tail → rules →
//! scenarios), one decision thread that owns the store's writer and the
//! firewall, and an async edge (gate, bouncer API, control socket, union,
//! signals).
//!
//! Durability: a reader never saves its own checkpoint. It hands its alerts
//! *and* the checkpoint after the lines that produced them to the decision
//! thread, which commits both in one SQLite transaction. A crash before the
//! commit re-reads those lines on restart and decides them then; a crash after
//! it resumes after them. No line is lost or decided twice.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use shield_core::{Alert, Checkpoint, Decision, UnixTime};
use shield_enforce::{Change, DecisionTable, Firewall};
use shield_sources::{FileSpec, Tailer};

use crate::config::{self, Backend};
use crate::decide::{Decider, Outcome};
use crate::plan::{Input, Pipeline, Plan};
use crate::store::Store;

/// Wall-clock Unix seconds.
pub use shield_core::wall_now as now;

/// Longest line a source delivers; longer ones are skipped and counted.
pub const MAX_LINE: usize = 64 * 1024;

/// What the decision thread is asked to do.
pub enum Msg {
    /// Alerts from a pipeline, with the checkpoint after the lines that raised them.
    Batch {
        pipeline: String,
        alerts: Vec<Alert>,
        checkpoints: Vec<(String, Checkpoint)>,
        lines: u64,
        matched: u64,
        /// A journald cursor to save with the batch: (key, cursor).
        cursor: Option<(String, String)>,
    },
    /// A decision from an operator or the union.
    Admit {
        decision: Decision,
        reply: Option<tokio::sync::oneshot::Sender<Result<Outcome, String>>>,
    },
    /// End decisions now: by id, or every active one on a target.
    Delete {
        id: Option<i64>,
        target: Option<shield_core::Net>,
        reply: tokio::sync::oneshot::Sender<Result<Vec<Decision>, String>>,
    },
    /// New decision policy after a reload.
    Policy(Decider),
    /// Every saved checkpoint, read after the batches queued before this
    /// message are committed (a reload asks once its readers have stopped).
    Checkpoints(mpsc::Sender<anyhow::Result<Vec<(String, Checkpoint)>>>),
    /// Add (with its key's hash) or delete a bouncer; answers whether a row
    /// changed. Bouncers go through the one writer like everything else.
    Bouncer {
        name: String,
        key_hash: Option<String>,
        reply: tokio::sync::oneshot::Sender<Result<bool, String>>,
    },
    /// When bouncers last pulled, batched by [`KeyAuth::take_pulls`].
    LastPull(Vec<(String, UnixTime)>),
    /// Flush and stop.
    Stop,
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
    /// Webhook notifications on decisions (a no-op without `[webhook]`).
    pub webhook: crate::webhook::Notifier,
}

/// Bouncer API keys, hashed, mirrored in memory from the store.
#[derive(Default)]
pub struct KeyAuth {
    // RwLock: written only when a bouncer is added/removed, read per API request.
    by_hash: RwLock<HashMap<String, String>>,
    // Mutex: held only to record one pull or to take them all; written to the
    // store in batches, not once per poll.
    pulls: Mutex<HashMap<String, UnixTime>>,
}

impl KeyAuth {
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
            .insert(name.clone(), now());
        Some(name)
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
    pub union: Arc<Mutex<Option<serde_json::Value>>>,
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

/// Builds the firewall layer the plan chose.
pub fn build_firewall(plan: &Plan) -> anyhow::Result<Box<dyn Firewall>> {
    let f = &plan.firewall;
    Ok(match f.backend {
        Backend::Nftables | Backend::Auto => shield_enforce::nftables(shield_enforce::NftOptions {
            table: f.table.clone(),
            forward: f.forward,
            priority: f.priority,
            netns: f.netns.clone(),
            netlink: f.netlink,
        })
        .context(
            "starting the nftables layer (is the `nftables` package installed and are we root?)",
        )?,
        Backend::Ipset => shield_enforce::ipset(shield_enforce::IpsetOptions::default())
            .context("starting the ipset layer")?,
        Backend::DryRun => shield_enforce::dry_run(),
        Backend::None => shield_enforce::dry_run(),
    })
}

/// The decision thread: sole writer of the store, sole driver of the firewall.
pub struct DecisionWorker {
    pub store: Store,
    pub decider: Decider,
    pub firewall: Box<dyn Firewall>,
    pub table: Arc<RwLock<DecisionTable>>,
    pub counters: Arc<Counters>,
    pub sources: Arc<Mutex<BTreeMap<String, SourceStatus>>>,
    /// Local decisions go here to be signed and shared with the union, and
    /// deleted ones to be pardoned there.
    pub publish: Option<tokio::sync::mpsc::UnboundedSender<crate::union::ToUnion>>,
    pub keep: Duration,
    pub forget: Duration,
}

impl DecisionWorker {
    fn apply(&mut self, changes: &[Change], now: UnixTime) {
        if changes.is_empty() {
            return;
        }
        self.table
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .apply(changes);
        let started = Instant::now();
        let res = self.firewall.apply(changes, now);
        self.counters
            .metrics
            .firewall_apply
            .observe(crate::metrics::secs(started.elapsed()));
        if let Err(e) = res {
            self.counters
                .firewall_errors
                .fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, layer = self.firewall.name(), "firewall batch failed; the store keeps the decisions and the next start reconciles");
        }
    }

    /// Reconciles the layers with the store (at start).
    pub fn reconcile(&mut self, now: UnixTime) -> anyhow::Result<usize> {
        let active = self.store.active_decisions(now)?;
        let adds: Vec<Change> = active.iter().cloned().map(Change::Add).collect();
        self.table
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .apply(&adds);
        self.firewall.reconcile(&active, now).with_context(|| {
            format!(
                "reconciling the {} layer with the store",
                self.firewall.name()
            )
        })?;
        Ok(active.len())
    }

    fn on_batch(
        &mut self,
        pipeline: &str,
        alerts: Vec<Alert>,
        cps: Vec<(String, Checkpoint)>,
        cursor: Option<(String, String)>,
        lines: u64,
        matched: u64,
        now: UnixTime,
    ) {
        let decider = &self.decider;
        let mut changes = Vec::new();
        let mut to_publish = Vec::new();
        let mut allowlisted = 0u64;
        let started = Instant::now();
        let res = self.store.atomically(|s| {
            for a in &alerts {
                let out = decider.on_alert(s, a, now)?;
                let id = match out {
                    Outcome::New(d) => {
                        to_publish.push((d.clone(), a.evidence.clone()));
                        let id = d.id;
                        changes.push(Change::Add(d));
                        Some(id)
                    }
                    Outcome::Extended(d) => {
                        let id = d.id;
                        changes.push(Change::Add(d));
                        Some(id)
                    }
                    Outcome::Covered(id) => Some(id),
                    Outcome::Allowlisted(net) => {
                        allowlisted += 1;
                        tracing::info!(target = %a.target, allowlisted_by = %net, scenario = %a.scenario, "alert on an allowlisted address: no decision");
                        None
                    }
                };
                s.insert_alert(a, id)?;
            }
            s.save_checkpoints(&cps, now)?;
            if let Some((k, c)) = &cursor {
                s.set_meta(k, c)?;
            }
            s.add_counter(&format!("lines:{pipeline}"), lines)?;
            s.add_counter(&format!("matched:{pipeline}"), matched)?;
            Ok(())
        });
        if let Err(e) = res {
            // Nothing was committed: neither the decisions nor the checkpoint,
            // so the lines are read again after a restart.
            self.counters.store_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "store commit failed; these lines will be decided again after restart");
            return;
        }
        let m = &self.counters.metrics;
        m.batch_commit
            .observe(crate::metrics::secs(started.elapsed()));
        for a in &alerts {
            m.alert(&a.scenario);
        }
        self.counters
            .allowlisted
            .fetch_add(allowlisted, Ordering::Relaxed);
        let (mut new, mut ext) = (0, 0);
        for c in &changes {
            if let Change::Add(d) = c {
                if to_publish.iter().any(|(p, _)| p.id == d.id) {
                    m.decision(d, "new");
                    new += 1;
                    self.counters.webhook.notify(d, m);
                } else {
                    m.decision(d, "extended");
                    ext += 1
                }
                tracing::info!(target = %d.target, r#type = %d.kind, scenario = %d.scenario, duration_s = d.duration_s(), "decision");
            }
        }
        self.counters
            .decisions_new
            .fetch_add(new, Ordering::Relaxed);
        self.counters
            .decisions_extended
            .fetch_add(ext, Ordering::Relaxed);
        self.apply(&changes, now);
        if let Some(p) = &self.publish {
            for (d, evidence) in to_publish {
                let _ = p.send(crate::union::ToUnion::Publish(d, evidence));
            }
        }
        if let Ok(mut s) = self.sources.lock()
            && let Some(st) = s.get_mut(pipeline)
        {
            st.alerts += alerts.len() as u64;
        }
    }

    /// Takes a reloaded `[decisions]` policy, with its offence horizon.
    fn set_policy(&mut self, d: Decider) {
        self.forget = d.escalation.forget;
        self.decider = d;
    }

    /// Runs until `Msg::Stop` or every sender is gone.
    pub fn run(mut self, rx: mpsc::Receiver<Msg>) {
        let mut swept = now();
        let mut pruned = Instant::now();
        loop {
            let msg = rx.recv_timeout(Duration::from_millis(500));
            let t = now();
            self.counters.heartbeat.store(t, Ordering::Relaxed);
            match msg {
                Ok(Msg::Batch {
                    pipeline,
                    alerts,
                    checkpoints,
                    lines,
                    matched,
                    cursor,
                }) => self.on_batch(&pipeline, alerts, checkpoints, cursor, lines, matched, t),
                Ok(Msg::Admit { decision, reply }) => {
                    let res = self
                        .store
                        .atomically(|s| self.decider.admit(s, decision, t));
                    let res = res.map_err(|e| e.to_string());
                    match &res {
                        Ok(Outcome::New(d)) | Ok(Outcome::Extended(d)) => {
                            self.counters.decisions_new.fetch_add(1, Ordering::Relaxed);
                            let how = if matches!(res, Ok(Outcome::New(_))) {
                                "new"
                            } else {
                                "extended"
                            };
                            self.counters.metrics.decision(d, how);
                            self.counters.webhook.notify(d, &self.counters.metrics);
                            let c = [Change::Add(d.clone())];
                            self.apply(&c, t);
                        }
                        Ok(Outcome::Allowlisted(_)) => {
                            self.counters.allowlisted.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                    if let Some(r) = reply {
                        let _ = r.send(res);
                    }
                }
                Ok(Msg::Delete { id, target, reply }) => {
                    let res = self.store.atomically(|s| {
                        let mut out = Vec::new();
                        let ids: Vec<i64> = match (id, target) {
                            (Some(id), _) => vec![id],
                            (None, Some(net)) => {
                                s.active_for(&net, t)?.iter().map(|d| d.id).collect()
                            }
                            (None, None) => vec![],
                        };
                        for id in ids {
                            if let Some(d) = s.delete_decision(id, t)?
                                && d.is_active(t)
                            {
                                out.push(d);
                            }
                        }
                        Ok(out)
                    });
                    if let Ok(ds) = &res {
                        let c: Vec<Change> = ds.iter().cloned().map(Change::Remove).collect();
                        self.apply(&c, t);
                        // An operator's delete sticks: the union ignores the target for a while.
                        if let Some(p) = &self.publish {
                            for d in ds {
                                let _ = p.send(crate::union::ToUnion::Pardon(d.target, d.expires));
                            }
                        }
                    }
                    let _ = reply.send(res.map_err(|e| e.to_string()));
                }
                Ok(Msg::Policy(d)) => self.set_policy(d),
                Ok(Msg::Bouncer {
                    name,
                    key_hash,
                    reply,
                }) => {
                    let res = match &key_hash {
                        Some(h) => self.store.add_bouncer(&name, h, t),
                        None => self.store.delete_bouncer(&name),
                    };
                    let _ = reply.send(res.map_err(|e| e.to_string()));
                }
                Ok(Msg::LastPull(pulls)) => {
                    let res = self.store.atomically(|s| {
                        pulls
                            .iter()
                            .try_for_each(|(name, at)| s.set_last_pull(name, *at))
                    });
                    if let Err(e) = res {
                        tracing::warn!(error = %e, "recording the bouncers' last pulls failed");
                    }
                }
                Ok(Msg::Checkpoints(reply)) => {
                    let _ = reply.send(self.store.load_checkpoints().map_err(Into::into));
                }
                Ok(Msg::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            // Sweep decisions that ended out of the in-memory table (the
            // kernel expires its own elements by their timeouts).
            if t > swept {
                if let Ok(ended) = self.store.ended_between(swept, t) {
                    let c: Vec<Change> = ended.into_iter().map(Change::Remove).collect();
                    let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
                    if !c.is_empty() {
                        table.apply(&c);
                    }
                    table.purge_expired(t);
                }
                swept = t;
            }
            if pruned.elapsed() > Duration::from_secs(3600) {
                pruned = Instant::now();
                match self
                    .store
                    .prune(t, self.keep.as_secs(), self.forget.as_secs())
                {
                    Ok(n) if n > 0 => tracing::info!(rows = n, "pruned old rows from the store"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "pruning the store failed"),
                }
            }
        }
    }
}

/// A running reader thread.
pub struct Reader {
    pub stop: Arc<AtomicBool>,
    /// `None` for readers that block in a read nobody can interrupt (stdin):
    /// they are left to end with the process instead of being joined.
    pub handle: Option<JoinHandle<()>>,
    /// The pipeline's name.
    pub name: String,
}

impl Reader {
    /// A stdin reader cannot be stopped and started again (the stopped one
    /// would still hold stdin's lock until one more line came): reloads keep it.
    fn is_stdin(&self) -> bool {
        self.handle.is_none()
    }
}

/// Starts the reader thread of one pipeline.
pub fn start_reader(
    pipe: Pipeline,
    plan: &Plan,
    saved: &[(String, Checkpoint)],
    tx: mpsc::Sender<Msg>,
    sources: Arc<Mutex<BTreeMap<String, SourceStatus>>>,
) -> anyhow::Result<Reader> {
    let mut engine = pipe
        .engine(plan.engine)
        .map_err(|e| anyhow::anyhow!("pipeline `{}`: {e}", pipe.name))?;
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let name = pipe.name.clone();
    let prefix = format!("{name}\t");
    let mine: Vec<(String, Checkpoint)> = saved
        .iter()
        .filter_map(|(k, c)| k.strip_prefix(&prefix).map(|k| (k.to_string(), c.clone())))
        .collect();
    {
        let mut s = sources.lock().unwrap_or_else(|p| p.into_inner());
        s.insert(
            name.clone(),
            SourceStatus {
                name: name.clone(),
                kind: kind_name(&pipe.input).into(),
                ..Default::default()
            },
        );
    }
    let handle = match pipe.input.clone() {
        Input::File { globs, from_start } => {
            let mut tailer = Tailer::new(
                FileSpec {
                    globs,
                    from_start,
                    max_line: MAX_LINE,
                },
                mine,
            )
            .with_context(|| format!("source `{name}`"))?;
            // Record where every followed file starts right away: a file rotated
            // before its first line, followed by a crash, is then still known.
            let first: Vec<(String, Checkpoint)> = tailer
                .checkpoints()
                .into_iter()
                .map(|(k, c)| (format!("{prefix}{k}"), c))
                .collect();
            if !first.is_empty() {
                let _ = tx.send(Msg::Batch {
                    pipeline: name.clone(),
                    alerts: Vec::new(),
                    checkpoints: first,
                    lines: 0,
                    matched: 0,
                    cursor: None,
                });
            }
            std::thread::Builder::new()
                .name(format!("src-{name}"))
                .spawn(move || {
                    let mut alerts = Vec::new();
                    while !stop2.load(Ordering::Relaxed) {
                        let t = now();
                        let (mut lines, mut matched, mut bad) = (0u64, 0u64, 0u64);
                        let res = tailer.read_available(&mut |_path, bytes| {
                            lines += 1;
                            let before = engine.stats().matched;
                            match std::str::from_utf8(bytes) {
                                Ok(l) => {
                                    engine.feed(l, t, &mut |a| alerts.push(a));
                                }
                                Err(_) => {
                                    bad += 1;
                                    let l = String::from_utf8_lossy(bytes);
                                    engine.feed(&l, t, &mut |a| alerts.push(a));
                                }
                            }
                            matched += engine.stats().matched - before;
                        });
                        if let Err(e) = &res {
                            tracing::warn!(source = %name, error = %e, "reading failed; retrying");
                        }
                        if lines > 0 {
                            let cps: Vec<(String, Checkpoint)> = tailer
                                .checkpoints()
                                .into_iter()
                                .map(|(k, c)| (format!("{prefix}{k}"), c))
                                .collect();
                            update_status(
                                &sources,
                                &name,
                                lines,
                                matched,
                                bad,
                                t,
                                &tailer,
                                engine.stats(),
                            );
                            if tx
                                .send(Msg::Batch {
                                    pipeline: name.clone(),
                                    alerts: std::mem::take(&mut alerts),
                                    checkpoints: cps,
                                    lines,
                                    matched,
                                    cursor: None,
                                })
                                .is_err()
                            {
                                break;
                            }
                        }
                        // A backlog larger than one pass is read on at once.
                        if !res.as_ref().is_ok_and(|r| r.more) {
                            tailer.wait(Duration::from_millis(250));
                        }
                    }
                })?
        }
        Input::Stdin => std::thread::Builder::new()
            .name(format!("src-{name}"))
            .spawn(move || {
                let mut r = shield_sources::LineReader::new(std::io::stdin().lock(), MAX_LINE);
                let mut alerts = Vec::new();
                let (mut lines, mut matched, mut bad) = (0u64, 0u64, 0u64);
                while let Some(Ok(bytes)) = r.next_line() {
                    if stop2.load(Ordering::Relaxed) {
                        break;
                    }
                    let t = now();
                    lines += 1;
                    let before = engine.stats().matched;
                    match std::str::from_utf8(bytes) {
                        Ok(l) => {
                            engine.feed(l, t, &mut |a| alerts.push(a));
                        }
                        Err(_) => {
                            bad += 1;
                            let l = String::from_utf8_lossy(bytes);
                            engine.feed(&l, t, &mut |a| alerts.push(a));
                        }
                    }
                    matched += engine.stats().matched - before;
                    // Report every line like the file reader does: at once
                    // when an alert fired, else when the next read would block
                    // (or after a long run), so the counts are never left behind.
                    if alerts.is_empty() && r.has_buffered_line() && lines < 4096 {
                        continue;
                    }
                    if let Ok(mut s) = sources.lock()
                        && let Some(st) = s.get_mut(&name)
                    {
                        st.lines += lines;
                        st.matched += matched;
                        st.invalid_utf8 += bad;
                        st.last_line_at = Some(t);
                        st.keys_evicted = engine.stats().keys_evicted;
                        for rule in engine.stats().rules.iter().filter(|r| r.hits > 0) {
                            st.rules.insert(rule.name.clone(), rule.hits);
                        }
                    }
                    let batch = Msg::Batch {
                        pipeline: name.clone(),
                        alerts: std::mem::take(&mut alerts),
                        checkpoints: vec![],
                        lines,
                        matched,
                        cursor: None,
                    };
                    (lines, matched, bad) = (0, 0, 0);
                    if tx.send(batch).is_err() {
                        break;
                    }
                }
            })?,
        Input::Journald { matches, directory } => {
            let key = format!("{prefix}journald");
            let cursor = Store::open(&plan.store_path)
                .ok()
                .and_then(|s| s.meta(&key).ok().flatten());
            let spec = shield_sources::journald::JournalSpec {
                matches,
                extra_args: directory
                    .map(|d| vec![format!("--directory={d}")])
                    .unwrap_or_default(),
                ..Default::default()
            };
            crate::journald::spawn(name, spec, engine, tx, stop2, sources, key, cursor)?
        }
        Input::Syslog { udp, tcp } => {
            crate::syslog::spawn(name, udp, tcp, engine, tx, stop2, sources)?
        }
    };
    let handle = (!matches!(pipe.input, Input::Stdin)).then_some(handle);
    Ok(Reader {
        stop,
        handle,
        name: pipe.name,
    })
}

fn kind_name(i: &Input) -> &'static str {
    match i {
        Input::File { .. } => "file",
        Input::Journald { .. } => "journald",
        Input::Stdin => "stdin",
        Input::Syslog { .. } => "syslog",
    }
}

fn update_status(
    sources: &Mutex<BTreeMap<String, SourceStatus>>,
    name: &str,
    lines: u64,
    matched: u64,
    bad: u64,
    t: UnixTime,
    tailer: &Tailer,
    stats: &shield_detect::Stats,
) {
    if let Ok(mut s) = sources.lock()
        && let Some(st) = s.get_mut(name)
    {
        st.lines += lines;
        st.matched += matched;
        st.invalid_utf8 += bad;
        st.last_line_at = Some(t);
        st.files = tailer.checkpoints().into_iter().map(|(k, _)| k).collect();
        st.keys_evicted = stats.keys_evicted;
        for r in stats.rules.iter().filter(|r| r.hits > 0) {
            st.rules.insert(r.name.clone(), r.hits);
        }
    }
}

/// Runs the daemon until SIGTERM/SIGINT. SIGHUP re-plans the config and
/// restarts the readers and the decision policy with it; `[api]`,
/// `[firewall]`, `[store]`, `[union]` and `[webhook]` need a restart.
pub fn run(config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let loaded = config::load(config_path.as_deref())?;
    let plan = crate::plan::plan(&loaded)?;
    if loaded.path.is_none() {
        tracing::info!("no config file: guarding sshd on built-in defaults");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("shield-io")
        .build()?;
    rt.block_on(run_async(plan, config_path))
}

async fn run_async(plan: Plan, config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let store = Store::open(&plan.store_path)?;
    let reader_store = Store::open(&plan.store_path)?;
    let mut saved = store.load_checkpoints()?;
    let auth = Arc::new(KeyAuth::default());
    auth.load(&store);
    let table = Arc::new(RwLock::new(DecisionTable::new()));
    let counters = Arc::new(Counters::default());
    counters.heartbeat.store(now(), Ordering::Relaxed);
    let sources = Arc::new(Mutex::new(BTreeMap::new()));
    let firewall = build_firewall(&plan)?;
    let fw_name = firewall.name().to_string();
    let (tx, rx) = mpsc::channel::<Msg>();

    // The union, when configured.
    let union_status = Arc::new(Mutex::new(None));
    let (publish_tx, union_task) =
        crate::union::start(&plan, tx.clone(), union_status.clone()).await?;

    let mut worker = DecisionWorker {
        store,
        decider: plan.decider.clone(),
        firewall,
        table: table.clone(),
        counters: counters.clone(),
        sources: sources.clone(),
        publish: publish_tx,
        keep: plan.keep,
        forget: plan.decider.escalation.forget,
    };
    let n = worker.reconcile(now())?;
    tracing::info!(active = n, layer = %fw_name, "layers reconciled with the store");
    let decision_thread = std::thread::Builder::new()
        .name("decide".into())
        .spawn(move || worker.run(rx))?;

    let shared = Shared {
        tx: tx.clone(),
        table: table.clone(),
        reader: Arc::new(Mutex::new(reader_store)),
        sources: sources.clone(),
        counters,
        auth,
        started: now(),
        config_file: plan.config_file.clone(),
        firewall: fw_name,
        union: union_status,
    };
    // Signal handlers before the sockets: once the control socket answers,
    // a SIGHUP reloads instead of killing the process (the default action).
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let servers = crate::api::serve(&plan, shared.clone()).await?;
    let bound_socket = plan.api.socket.clone();
    // Bouncers' last pulls reach the store once a minute, not once per poll.
    let pulls_task = {
        let (auth, tx) = (shared.auth.clone(), tx.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                let p = auth.take_pulls();
                if !p.is_empty() && tx.send(Msg::LastPull(p)).is_err() {
                    break;
                }
            }
        })
    };
    let webhook_task = plan.webhook.clone().and_then(|w| {
        crate::webhook::start(w, &shared.counters.webhook, shared.counters.metrics.clone())
    });

    let mut readers = Vec::new();
    for p in plan.pipelines.clone() {
        readers.push(start_reader(p, &plan, &saved, tx.clone(), sources.clone())?);
    }
    tracing::info!(pipelines = readers.len(), config = %plan.config_file, "shield is running");
    let beat = shared.counters.clone();
    crate::notify::ready(move || now() - beat.heartbeat.load(Ordering::Relaxed) < 30);

    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                match config::load(config_path.as_deref()).map_err(anyhow::Error::from).and_then(|l| crate::plan::plan(&l).map_err(anyhow::Error::from)) {
                    Err(e) => tracing::error!("reload refused, still running the previous config:\n{e:#}"),
                    Ok(new) => {
                        let load = || {
                            let (rtx, rrx) = mpsc::channel();
                            tx.send(Msg::Checkpoints(rtx)).map_err(|_| anyhow::anyhow!("the decision thread has stopped"))?;
                            rrx.recv_timeout(Duration::from_secs(30)).map_err(|_| anyhow::anyhow!("the decision thread did not answer within 30 s"))?
                        };
                        restart_readers(&mut readers, &new, load, &mut saved, &tx, &sources);
                        let _ = tx.send(Msg::Policy(new.decider.clone()));
                        tracing::info!(pipelines = readers.len(), "config reloaded (api, firewall and union settings apply at the next start)");
                    }
                }
            }
        }
    }
    tracing::info!("stopping");
    stop_readers(&mut readers);
    pulls_task.abort();
    let _ = tx.send(Msg::LastPull(shared.auth.take_pulls()));
    let _ = tx.send(Msg::Stop);
    let _ = tokio::task::spawn_blocking(move || decision_thread.join()).await;
    servers.abort();
    if let Some(t) = webhook_task {
        t.abort();
    }
    if let Some(t) = union_task {
        t.abort();
    }
    // The socket bound at start, not a reloaded config's (`[api]` is not reloaded).
    let _ = std::fs::remove_file(&bound_socket);
    Ok(())
}

/// A reload's reader swap: stops the running readers (a stdin reader is
/// kept: it cannot be restarted), reads the checkpoints they left with `load`
/// and starts `new`'s pipelines from them. When the checkpoints cannot be
/// read, the error is logged and the readers start from `saved`, the last
/// ones read (lines since then may be decided twice, none is skipped): a
/// failed reload never leaves the daemon without readers. `saved` is
/// updated on success.
fn restart_readers(
    readers: &mut Vec<Reader>,
    new: &Plan,
    load: impl FnOnce() -> anyhow::Result<Vec<(String, Checkpoint)>>,
    saved: &mut Vec<(String, Checkpoint)>,
    tx: &mpsc::Sender<Msg>,
    sources: &Arc<Mutex<BTreeMap<String, SourceStatus>>>,
) {
    let (kept, stopping): (Vec<Reader>, Vec<Reader>) =
        readers.drain(..).partition(Reader::is_stdin);
    let mut stopping = stopping;
    stop_readers(&mut stopping);
    *readers = kept;
    match load() {
        Ok(cps) => *saved = cps,
        Err(e) => tracing::error!(
            "reload: reading the checkpoints failed, restarting the readers from the last ones read (some lines may be read twice); check the store:\n{e:#}"
        ),
    }
    {
        let mut s = sources.lock().unwrap_or_else(|p| p.into_inner());
        s.retain(|name, _| readers.iter().any(|r| &r.name == name));
    }
    for p in new.pipelines.iter().cloned() {
        if matches!(p.input, Input::Stdin) && readers.iter().any(Reader::is_stdin) {
            tracing::warn!(source = %p.name, "the stdin source keeps its running reader; its changes apply at the next start");
            continue;
        }
        match start_reader(p, new, saved, tx.clone(), sources.clone()) {
            Ok(r) => readers.push(r),
            Err(e) => tracing::error!("{e:#}"),
        }
    }
}

fn stop_readers(readers: &mut Vec<Reader>) {
    for r in readers.iter() {
        r.stop.store(true, Ordering::Relaxed);
    }
    for r in readers.drain(..) {
        if let Some(h) = r.handle {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_for(dir: &std::path::Path, extra: &str) -> Plan {
        std::fs::write(dir.join("auth.log"), "").unwrap();
        let text = format!(
            "[store]\npath = \"{d}/shield.db\"\n[firewall]\nbackend = \"dry-run\"\n{extra}\n\
             [[source]]\nname = \"auth\"\npaths = [\"{d}/auth.log\"]\npacks = [\"sshd\"]\n",
            d = dir.display()
        );
        let loaded = config::parse(&text, None).expect("config parses");
        crate::plan::plan(&loaded).expect("config plans")
    }

    /// A reload whose checkpoints cannot be read logs it and restarts the
    /// readers from the last checkpoints instead of leaving none running
    /// (issue 22: a `?` there ended the daemon after its readers were stopped).
    #[test]
    fn reload_with_unreadable_checkpoints_still_restarts_the_readers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("auth.log"), "").unwrap();
        let plan = plan_for(dir.path(), "");
        let (tx, rx) = mpsc::channel();
        let sources = Arc::new(Mutex::new(BTreeMap::new()));
        let mut saved = Vec::new();
        let mut readers = vec![
            start_reader(
                plan.pipelines[0].clone(),
                &plan,
                &saved,
                tx.clone(),
                sources.clone(),
            )
            .unwrap(),
        ];
        restart_readers(
            &mut readers,
            &plan,
            || Err(anyhow::anyhow!("disk I/O error")),
            &mut saved,
            &tx,
            &sources,
        );
        assert_eq!(
            readers.len(),
            1,
            "the pipeline runs again after a failed reload"
        );
        assert!(readers[0].handle.as_ref().is_some_and(|h| !h.is_finished()));
        assert!(sources.lock().unwrap().contains_key("auth"));
        stop_readers(&mut readers);
        drop(rx);
    }

    /// The offence horizon used to prune the store follows a reloaded
    /// `[decisions]` policy (it was fixed at start).
    #[test]
    fn reloaded_policy_moves_the_offence_horizon() {
        let dir = tempfile::tempdir().unwrap();
        let old = plan_for(dir.path(), "");
        let new = plan_for(dir.path(), "[decisions.escalation]\nforget = \"3d\"\n");
        assert_ne!(old.decider.escalation.forget, new.decider.escalation.forget);
        let mut w = DecisionWorker {
            store: Store::open(&old.store_path).unwrap(),
            decider: old.decider.clone(),
            firewall: shield_enforce::dry_run(),
            table: Default::default(),
            counters: Default::default(),
            sources: Default::default(),
            publish: None,
            keep: old.keep,
            forget: old.decider.escalation.forget,
        };
        w.set_policy(new.decider.clone());
        assert_eq!(w.forget, new.decider.escalation.forget);
    }
}
