//! shield-union: hosts that trust each other form a union under a treaty; a
//! decision raised by any member reaches every member, signed by its origin,
//! checked on receipt against the treaty's limits.
//!
//! Owns the treaty, member identities, signals, trust on receipt, the
//! `union_` tables of the daemon's SQLite file, and the transports (direct
//! HTTPS, or NATS JetStream (`nats`) when the treaty's `[transport] kind =
//! "nats"`, both behind [`transport::Transport`]). It does
//! not enforce anything: trusted decisions leave on the `inbound` channel the
//! daemon passes to [`UnionHandle::start`], with `Origin::Union(member)`.
//!
//! Storage per signal (issue #23): an accepted signal is stored whole (it is
//! relayed); an authentic signal refused by policy is stored as a tombstone —
//! its number, verdict and a hash, no payload — so anti-entropy stops asking
//! for it; a signal refused for its rate (counted by arrival) or a future
//! time is not stored at all and is fetched again later. Pruning forgets every
//! row older than `max_age`, past sequence gaps too.
//!
//! Known limits:
//! - Only the origin pushes; relays serve pulls, so a member cut off from the
//!   origin but not from a relay learns a signal within one `sync_interval`.
//! - A member that lost its database restarts its sequence at 1 until it pulls
//!   its own history back from a peer (first sync at start); signals it signs
//!   before that are refused by peers as `conflict`.

pub mod cli;
pub mod direct;
pub mod drill;
pub mod history;
pub mod identity;
pub mod nats;
pub mod signal;
pub mod store;
pub mod transport;
pub mod treaty;
pub mod trust;

use serde::Serialize;
use shield_core::Clock;
use shield_core::Net;
use shield_core::{Decision, Origin, UnixTime};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};

pub use identity::{Identity, KeyError};
pub use signal::{Envelope, SignalBody};
pub use store::StoreError;
pub use transport::{Health, PeerStatus};
pub use treaty::{Treaty, TreatyError};
pub use trust::{Refusal, TrustCounters};

use store::{Inserted, SignalStore};
use transport::{BoxFuture, Have, Held, Sink, Transport};
use trust::{Protected, RateLog, RateWindow, SeqTracker};

/// Where this member's union state and identity live.
#[derive(Debug, Clone)]
pub struct UnionConfig {
    /// This member's name in the treaty.
    pub name: String,
    pub key_path: PathBuf,
    pub treaty_path: PathBuf,
    /// Address of the union listener (HTTPS, mTLS).
    pub listen: SocketAddr,
    /// SQLite file shared with the daemon's store (WAL); the union uses its own
    /// connection and tables prefixed `union_`.
    pub db_path: PathBuf,
}

/// Why the union cannot start or act.
#[derive(Debug, thiserror::Error)]
pub enum UnionError {
    #[error(transparent)]
    Treaty(#[from] TreatyError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Transport(#[from] direct::DirectError),
    #[error(transparent)]
    Nats(#[from] nats::NatsError),
    /// The configured name is not in the treaty.
    #[error(
        "member `{name}` is not in treaty {treaty}; add a [[member]] for it (see `shield union join`) or fix `name`"
    )]
    NotMember { name: String, treaty: PathBuf },
    /// The key file does not hold the key the treaty lists for this member.
    #[error(
        "key {key} does not match the key the treaty lists for member `{name}`; use the right key file or update the treaty"
    )]
    WrongKey { name: String, key: PathBuf },
    /// The loopback drill could not set itself up (temp dir, ports).
    #[error("drill: {0}")]
    Drill(String),
    /// The treaty revokes this member's own key.
    #[error(
        "the treaty revokes the key of member `{0}`; generate a new key and have the treaty updated"
    )]
    SelfRevoked(String),
}

/// What `shield union status` shows, and the daemon's dashboard.
#[derive(Debug, Clone, Serialize)]
pub struct UnionStatus {
    pub union: String,
    pub member: String,
    pub treaty_digest: String,
    pub listen: Option<SocketAddr>,
    pub members: Vec<MemberStatus>,
    pub counters: TrustCounters,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemberStatus {
    pub name: String,
    pub endpoint: String,
    pub health: Health,
    pub last_error: Option<String>,
    /// Seconds since the newest signal held from this origin.
    pub last_signal_age_s: Option<i64>,
    /// Highest contiguous sequence held from this origin.
    pub signals: u64,
}

/// Mutable union state. Behind one std Mutex: every access is short, does SQL
/// on a local file and never awaits while holding it.
struct State {
    store: SignalStore,
    seqs: BTreeMap<String, SeqTracker>,
    rate: BTreeMap<String, RateWindow>,
    /// Pardons in force, re-read from the store at every batch so that
    /// `shield union pardon` on a running member applies at once.
    pardons: Vec<(Net, Option<i64>)>,
    last_time: BTreeMap<String, i64>,
    counters: TrustCounters,
    log: RateLog,
    /// (target, scenario) whose quorum was reached → when the decision it
    /// produced ends; a new report after that counts again.
    quorum_done: HashMap<(Net, String), i64>,
    mismatched_peers: BTreeMap<String, Vec<String>>,
    /// While a batch transaction is open: each origin's tracker as it was
    /// before the batch touched it, to restore if the commit fails.
    batch_undo: Option<BTreeMap<String, Option<SeqTracker>>>,
}

struct Member {
    me: String,
    id: Identity,
    treaty: Treaty,
    /// Targets no signal may ban (member endpoints, NATS hosts, special ranges).
    protected: Protected,
    /// The treaty file; its history and amendments live beside it.
    treaty_path: PathBuf,
    /// Digests of the earlier versions in this treaty's history: a signal
    /// signed under one of them (before an amendment) is still judged, under
    /// the current treaty's rules and keys.
    past: Vec<[u8; 32]>,
    /// Serializes this member's writes of the treaty files (peers' answers
    /// arrive on several tasks); held during file I/O, never with `state`.
    gov: Mutex<()>,
    state: Mutex<State>,
    inbound: Inbound,
    /// The time every judgement, pardon and prune reads (the daemon's clock).
    clock: Clock,
}

/// Where a member hands the trusted decisions of its peers.
#[derive(Clone)]
pub enum Inbound {
    /// An async channel (tests and tools collect decisions on it).
    Channel(mpsc::Sender<Decision>),
    /// A function called with each decision, false once nobody takes them
    /// any more: the daemon sends it straight to its decision thread, one
    /// channel instead of this one and a second behind it.
    Call(Arc<dyn Fn(Decision) -> bool + Send + Sync>),
}

impl Inbound {
    /// `f` called with each trusted decision.
    pub fn call(f: impl Fn(Decision) -> bool + Send + Sync + 'static) -> Self {
        Inbound::Call(Arc::new(f))
    }

    /// Hands `d` on; false when the other side is gone.
    async fn send(&self, d: Decision) -> bool {
        match self {
            Inbound::Channel(tx) => tx.send(d).await.is_ok(),
            Inbound::Call(f) => f(d),
        }
    }
}

impl From<mpsc::Sender<Decision>> for Inbound {
    fn from(tx: mpsc::Sender<Decision>) -> Self {
        Inbound::Channel(tx)
    }
}

impl Member {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn refuse(&self, st: &mut State, r: Refusal, via: &str, detail: &str) {
        st.counters.refuse(r);
        if matches!(r, Refusal::Duplicate | Refusal::Expired) {
            return;
        }
        if let Some(suppressed) = st.log.allow(r.as_str()) {
            tracing::warn!(
                reason = r.as_str(),
                via,
                suppressed,
                "union signal refused: {detail}"
            );
        }
    }

    /// Verify, store and judge signals; returns the decisions to enforce and
    /// whether every signal that should be stored was (false: the carrier must
    /// deliver them again).
    fn judge(&self, envs: Vec<Envelope>, via: &str, now: UnixTime) -> (Vec<Decision>, bool) {
        let mut st = self.lock();
        match st.store.pardons(now) {
            Ok(p) => st.pardons = p,
            Err(e) => {
                if let Some(s) = st.log.allow("pardons") {
                    tracing::warn!(
                        suppressed = s,
                        "cannot read union pardons (the last ones read still apply): {e}"
                    );
                }
            }
        }
        // One transaction per batch; without it each insert commits on its own.
        let batched = envs.len() > 1;
        if batched && let Err(e) = st.store.begin() {
            // The database is locked or broken: judging each signal would wait out
            // the busy timeout once per signal. Take nothing; it comes again.
            if let Some(s) = st.log.allow("store") {
                tracing::error!(
                    suppressed = s,
                    "cannot store union signals (they will be fetched again): {e}"
                );
            }
            return (Vec::new(), false);
        }
        // If the commit fails, the batch's rows are gone: forget that we saw them,
        // so a redelivery (NATS) or anti-entropy (direct) brings them again.
        st.batch_undo = batched.then(BTreeMap::new);
        let (out, mut stored) = self.judge_locked(&mut st, envs, via, now);
        let undo = st.batch_undo.take();
        if batched && let Err(e) = st.store.commit() {
            tracing::error!("cannot commit union signals (they will be fetched again): {e}");
            for (origin, before) in undo.into_iter().flatten() {
                match before {
                    Some(t) => st.seqs.insert(origin, t),
                    None => st.seqs.remove(&origin),
                };
            }
            stored = false;
        }
        (out, stored)
    }

    fn judge_locked(
        &self,
        st: &mut State,
        envs: Vec<Envelope>,
        via: &str,
        now: UnixTime,
    ) -> (Vec<Decision>, bool) {
        let mut out = Vec::new();
        let mut stored = true;
        for env in envs {
            let d = match env.decode() {
                Ok(d) => d,
                Err(e) => {
                    self.refuse(st, Refusal::Malformed, via, &e.to_string());
                    continue;
                }
            };
            let b = &d.body;
            let Some(m) = self.treaty.member(&b.origin) else {
                self.refuse(
                    st,
                    Refusal::NotMember,
                    via,
                    &format!("origin `{}` is not in the treaty", b.origin),
                );
                continue;
            };
            if self.treaty.is_revoked(&m.key) {
                self.refuse(
                    st,
                    Refusal::Revoked,
                    via,
                    &format!("origin `{}` has a revoked key", b.origin),
                );
                continue;
            }
            // The current key, or the previous one inside a rotation's
            // overlap window (judged at arrival).
            let previous_ok = m.previous.is_some_and(|(k, until)| {
                now < until && !self.treaty.is_revoked(&k) && d.verify(&k)
            });
            if !previous_ok && !d.verify(&m.key) {
                self.refuse(
                    st,
                    Refusal::BadSignature,
                    via,
                    &format!(
                        "signal {}#{} does not verify with `{}`'s key (nor with a previous key inside its rotation window)",
                        b.origin, b.seq, b.origin
                    ),
                );
                continue;
            }
            if b.treaty != self.treaty.digest() && !self.past.contains(&b.treaty) {
                self.refuse(st, Refusal::TreatyMismatch, via, &format!(
                    "signal {}#{} was made under treaty {}, ours is {}; the treaties must be made identical",
                    b.origin, b.seq, treaty::hex(&b.treaty[..6]), treaty::hex(&self.treaty.digest()[..6])));
                continue;
            }
            if b.seq == 0 {
                self.refuse(st, Refusal::Malformed, via, "sequence 0");
                continue;
            }
            if st.seqs.get(&b.origin).is_some_and(|s| s.contains(b.seq)) {
                // Seen before: only look (a pruned number is not stored again).
                match st.store.existing(&b.origin, b.seq, &env) {
                    Ok(Some(Inserted::Conflict)) => self.refuse(
                        st,
                        Refusal::Conflict,
                        via,
                        &format!(
                            "{}#{} was already received with different content",
                            b.origin, b.seq
                        ),
                    ),
                    _ => self.refuse(st, Refusal::Duplicate, via, ""),
                }
                continue;
            }
            // Our own signals coming back (e.g. after we lost our database): adopt the numbers.
            let own = b.origin == self.me;
            let policy = self.treaty.policy(&b.scenario);
            // The treaty, not the sender, bounds how long a decision lasts.
            let duration_s = match policy {
                Some(p) => b
                    .duration_s
                    .clamp(p.duration.as_secs(), p.max_duration.as_secs()),
                None => b.duration_s,
            };
            let verdict: Result<(), Refusal> = if own {
                Err(Refusal::Duplicate)
            } else if trust::evidence_too_long(b) {
                Err(Refusal::Evidence)
            } else {
                trust::check_policy(&self.treaty, &self.protected, b, now).and_then(|()| {
                    if trust::pardoned(&st.pardons, &b.target) {
                        Err(Refusal::Pardoned)
                    } else if b.time.saturating_add(duration_s as i64) <= now {
                        Err(Refusal::Expired)
                    } else {
                        Ok(())
                    }
                })
            };
            let verdict = verdict.and_then(|()| {
                let cap = m.max_signals_per_minute;
                if st.rate.entry(b.origin.clone()).or_default().admit(cap, now) {
                    Ok(())
                } else {
                    Err(Refusal::RateCap)
                }
            });
            let quorum = policy.map(|p| p.quorum).unwrap_or(1);
            let label = match (&verdict, own) {
                (_, true) => "own",
                (Ok(()), _) if quorum > 1 => "quorum_pending",
                (Ok(()), _) => "accepted",
                (Err(r), _) => r.as_str(),
            };
            // Over the rate cap or ahead of our clock: neither stored nor marked
            // seen, so anti-entropy brings it again when it may pass.
            let retry_later = matches!(verdict, Err(Refusal::RateCap | Refusal::Future));
            let inserted = if retry_later {
                Ok(Inserted::New)
            } else if own || verdict.is_ok() {
                st.store.insert(
                    &b.origin,
                    b.seq,
                    b.time,
                    &b.target,
                    &b.scenario,
                    label,
                    &env,
                    now,
                )
            } else {
                st.store.insert_tombstone(
                    &b.origin,
                    b.seq,
                    b.time,
                    &b.target,
                    &b.scenario,
                    label,
                    &env,
                    now,
                )
            };
            match inserted {
                Ok(Inserted::New) => {}
                Ok(_) => {
                    self.refuse(st, Refusal::Duplicate, via, "");
                    continue;
                }
                Err(e) => {
                    // Not stored: do not mark it seen, so anti-entropy fetches it again.
                    if let Some(s) = st.log.allow("store") {
                        tracing::error!(suppressed = s, "cannot store union signal: {e}");
                    }
                    stored = false;
                    continue;
                }
            }
            if !retry_later {
                if let Some(undo) = &mut st.batch_undo
                    && !undo.contains_key(&b.origin)
                {
                    undo.insert(b.origin.clone(), st.seqs.get(&b.origin).cloned());
                }
                st.seqs.entry(b.origin.clone()).or_default().insert(b.seq);
                let lt = st.last_time.entry(b.origin.clone()).or_insert(b.time);
                *lt = (*lt).max(b.time.min(now + trust::MAX_FUTURE_S));
            }
            if own {
                continue;
            }
            if let Err(r) = verdict {
                self.refuse(
                    st,
                    r,
                    via,
                    &format!(
                        "{}#{} {} {} ({})",
                        b.origin,
                        b.seq,
                        b.scenario,
                        b.target,
                        r.as_str()
                    ),
                );
                continue;
            }
            let dec = Decision {
                id: 0,
                scope: b.scope,
                target: b.target,
                kind: b.kind,
                scenario: b.scenario.clone(),
                origin: Origin::Union(b.origin.clone()),
                created: b.time,
                expires: b.time + duration_s as i64,
            };
            if quorum > 1 {
                let since = now - policy.map(|p| p.max_duration.as_secs() as i64).unwrap_or(0);
                let n = st
                    .store
                    .reporters(&b.target, &b.scenario, since)
                    .unwrap_or(0);
                let key = (b.target, b.scenario.clone());
                let done = st.quorum_done.get(&key).is_some_and(|&until| until > now);
                if n < quorum || done {
                    st.counters.held_for_quorum += 1;
                    continue;
                }
                st.quorum_done.insert(key, dec.expires);
            }
            st.counters.received += 1;
            out.push(dec);
        }
        (out, stored)
    }

    fn publish(
        &self,
        transport: &dyn Transport,
        d: &Decision,
        evidence: &[String],
    ) -> Result<bool, UnionError> {
        if !self.treaty.binds(&d.scenario) || !matches!(d.origin, Origin::Local) {
            return Ok(false);
        }
        let now = self.clock.now();
        let mut st = self.lock();
        if self.treaty.allowlist().overlaps(&d.target).is_some()
            || d.target.prefix_len() < self.treaty.min_prefix_for(&d.target)
            || self.protected.hit(&d.target).is_some()
            || trust::pardoned(&st.pardons, &d.target)
        {
            return Ok(false);
        }
        let cap = self
            .treaty
            .member(&self.me)
            .map(|m| m.max_signals_per_minute)
            .unwrap_or(0);
        if !st.rate.entry(self.me.clone()).or_default().admit(cap, now) {
            if let Some(s) = st.log.allow("own_rate") {
                tracing::warn!(
                    suppressed = s,
                    "not publishing {}: this member is over its own signal rate cap ({cap}/min)",
                    d.target
                );
            }
            return Ok(false);
        }
        let seq = st.seqs.get(&self.me).map(|s| s.max).unwrap_or(0) + 1;
        // The treaty decides what the union does: its type, and a duration
        // between the policy's and its max (local escalation may lengthen it).
        let (kind, duration_s) = match self.treaty.policy(&d.scenario) {
            Some(p) => (
                p.kind,
                d.duration_s()
                    .clamp(p.duration.as_secs(), p.max_duration.as_secs()),
            ),
            None => (d.kind, d.duration_s()),
        };
        let target = d.target;
        let body = SignalBody {
            origin: self.me.clone(),
            seq,
            time: d.created,
            scope: shield_core::Scope::of(&target),
            target,
            kind,
            duration_s,
            scenario: d.scenario.clone(),
            evidence: signal::summarize_evidence(evidence),
            treaty: self.treaty.digest(),
        };
        let env = body.sign(&self.id);
        st.store.insert(
            &self.me,
            seq,
            body.time,
            &body.target,
            &body.scenario,
            "own",
            &env,
            now,
        )?;
        st.seqs.entry(self.me.clone()).or_default().insert(seq);
        st.last_time.insert(self.me.clone(), body.time);
        st.counters.published += 1;
        drop(st);
        transport.push(env);
        Ok(true)
    }
}

struct SinkImpl(Arc<Member>);

impl Sink for SinkImpl {
    fn receive(&self, envs: Vec<Envelope>, via: &str) -> BoxFuture<'_, bool> {
        let (decisions, stored) = self.0.judge(envs, via, self.0.clock.now());
        Box::pin(async move {
            for d in decisions {
                if !self.0.inbound.send(d).await {
                    tracing::debug!("union inbound channel closed; decision dropped");
                }
            }
            stored
        })
    }

    fn have(&self) -> (Have, Held) {
        let st = self.0.lock();
        let have = st.seqs.iter().map(|(o, s)| (o.clone(), s.contig)).collect();
        let held = st
            .seqs
            .iter()
            .filter_map(|(o, s)| {
                let r = s.ranges_above(store::MAX_HELD_RANGES);
                (!r.is_empty()).then(|| (o.clone(), r))
            })
            .collect();
        (have, held)
    }

    fn serve(&self, have: &Have, held: &Held, limit: usize, to: &str) -> Vec<Envelope> {
        let mut st = self.0.lock();
        if st.mismatched_peers.contains_key(to) {
            return Vec::new();
        }
        match st.store.since(have, held, limit) {
            Ok(rows) => {
                let relayed = rows
                    .iter()
                    .filter(|r| r.origin != self.0.me && r.origin != to)
                    .count();
                st.counters.relayed += relayed as u64;
                rows.into_iter().map(|r| r.env).collect()
            }
            Err(e) => {
                tracing::error!("cannot read union signals to serve {to}: {e}");
                Vec::new()
            }
        }
    }

    fn check_treaty(&self, peer: &str, theirs: &treaty::Canonical) -> Result<(), Vec<String>> {
        let mine = self.0.treaty.canonical();
        let diff = treaty::Canonical::diff(mine, theirs);
        let mut st = self.0.lock();
        if diff.is_empty() {
            st.mismatched_peers.remove(peer);
            return Ok(());
        }
        if st
            .mismatched_peers
            .insert(peer.to_string(), diff.clone())
            .is_none()
        {
            tracing::error!(
                peer,
                "peer runs a different treaty; its signals are refused: {}",
                diff.join("; ")
            );
        }
        st.counters.refuse(Refusal::TreatyMismatch);
        Err(diff)
    }

    fn delivered(&self, n: usize) {
        self.0.lock().counters.sent += n as u64;
    }

    fn gov_version(&self) -> u64 {
        history::History::load_or_genesis(&self.0.treaty_path)
            .map(|h| h.current().version)
            .unwrap_or(1)
    }

    fn gov_answer(&self, since: u64) -> history::Gov {
        history::gov_answer(&self.0.treaty_path, since)
    }

    fn gov_absorb(&self, from: &str, gov: history::Gov) {
        let r = {
            let _one_writer = self.0.gov.lock().unwrap_or_else(|p| p.into_inner());
            history::absorb(&self.0.treaty_path, &gov)
        };
        let mut st = self.0.lock();
        match r {
            Ok(a) => {
                st.counters.amendments_refused += a.refused as u64;
                if a.merged > 0 {
                    tracing::info!(peer = from, merged = a.merged, "treaty amendments received");
                }
                if let Some(v) = a.installed {
                    tracing::info!(
                        peer = from,
                        version = v,
                        "treaty version {v} ratified and installed; the member applies it now"
                    );
                }
            }
            Err(e) => {
                if let Some(s) = st.log.allow("gov") {
                    tracing::warn!(
                        suppressed = s,
                        peer = from,
                        "cannot take treaty amendments: {e}"
                    );
                }
            }
        }
    }
}

/// Every minute (and at start), forget signals older than the treaty's
/// max_age — past sequence gaps too —: they would be refused as stale anyway.
async fn prune_loop(engine: Arc<Member>, mut shutdown: watch::Receiver<bool>) {
    loop {
        {
            let mut st = engine.lock();
            let now = engine.clock.now();
            let cutoff = now - engine.treaty.max_age.as_secs() as i64;
            match st.store.prune(cutoff) {
                Ok((n, floors)) => {
                    for (o, f) in floors {
                        st.seqs.entry(o).or_default().raise_floor(f);
                    }
                    if n > 0 {
                        tracing::debug!(rows = n, "pruned old union signals");
                    }
                }
                Err(e) => {
                    if let Some(s) = st.log.allow("prune") {
                        tracing::warn!(suppressed = s, "cannot prune union signals: {e}");
                    }
                }
            }
            // A quorum mark only matters while the decision it produced lasts.
            st.quorum_done.retain(|_, until| *until > now);
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => {}
        }
    }
}

/// The digests of the versions before the current one, when the history
/// beside the treaty file ends at it and verifies from its own genesis.
fn past_digests(treaty_path: &std::path::Path, t: &Treaty) -> Vec<[u8; 32]> {
    let Ok(h) = history::History::load_or_genesis(treaty_path) else {
        return Vec::new();
    };
    if h.current().digest != t.digest_hex() || h.verify(&h.versions[0].digest).is_err() {
        return Vec::new();
    }
    h.versions[..h.versions.len() - 1]
        .iter()
        .filter_map(|a| {
            let b: Vec<u8> = (0..a.digest.len())
                .step_by(2)
                .filter_map(|i| u8::from_str_radix(a.digest.get(i..i + 2)?, 16).ok())
                .collect();
            b.try_into().ok()
        })
        .collect()
}

/// The protected set, with the treaty's host names resolved (a name that does
/// not resolve protects nothing more and is logged).
async fn protected_targets(t: &Treaty) -> Protected {
    let mut p = Protected::from_treaty(t);
    for h in trust::endpoint_hosts(t) {
        if h.parse::<std::net::IpAddr>().is_ok() {
            continue;
        }
        let r = tokio::time::timeout(
            std::time::Duration::from_secs(3),
            tokio::net::lookup_host((h.as_str(), 0)),
        )
        .await;
        match r {
            Ok(Ok(addrs)) => addrs.for_each(|a| p.add_ip(a.ip(), "union endpoint")),
            _ => {
                tracing::warn!(host = %h, "cannot resolve a union endpoint; signals naming its address are not refused as `protected`")
            }
        }
    }
    p
}

/// A running union member.
pub struct UnionHandle {
    engine: Arc<Member>,
    transport: Arc<dyn Transport>,
    /// The direct transport, when the treaty uses it (listener, TLS refusal counters).
    direct: Option<Arc<direct::Direct>>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    listen: Option<SocketAddr>,
}

impl UnionHandle {
    /// Loads and checks what [`start`](Self::start) needs before it binds
    /// anything: the treaty parses, the member is in it and not revoked, and
    /// the key file holds that member's key. `shield check` runs this too.
    pub fn check(cfg: &UnionConfig) -> Result<(Treaty, Identity), UnionError> {
        let treaty = Treaty::load(&cfg.treaty_path)?;
        let id = Identity::load(&cfg.key_path)?;
        let Some(me) = treaty.member(&cfg.name) else {
            return Err(UnionError::NotMember {
                name: cfg.name.clone(),
                treaty: cfg.treaty_path.clone(),
            });
        };
        // After a rotation with an overlap window the old key file still
        // runs the member until the window ends.
        if !me.has_key_at(&id.public(), shield_core::wall_now()) {
            return Err(UnionError::WrongKey {
                name: cfg.name.clone(),
                key: cfg.key_path.clone(),
            });
        }
        if treaty.is_revoked(&id.public()) {
            return Err(UnionError::SelfRevoked(cfg.name.clone()));
        }
        Ok((treaty, id))
    }

    /// Starts the transport (listener + peer connections + periodic anti-entropy)
    /// on the system clock. Trusted decisions from peers are handed to
    /// `inbound` with `Origin::Union(member)`.
    pub async fn start(
        cfg: UnionConfig,
        inbound: impl Into<Inbound>,
    ) -> Result<UnionHandle, UnionError> {
        Self::start_with_clock(cfg, inbound, Clock::system()).await
    }

    /// [`UnionHandle::start`] reading the time from `clock`: signals are
    /// judged, pardons dated and old signals pruned at its time.
    pub async fn start_with_clock(
        cfg: UnionConfig,
        inbound: impl Into<Inbound>,
        clock: Clock,
    ) -> Result<UnionHandle, UnionError> {
        let inbound = inbound.into();
        let (treaty, id) = Self::check(&cfg)?;
        let store = SignalStore::open(&cfg.db_path)?;
        let mut seqs: BTreeMap<String, SeqTracker> = BTreeMap::new();
        for (o, floor) in store.floors()? {
            seqs.insert(o, SeqTracker::from_floor(floor));
        }
        for (o, list) in store.all_seqs()? {
            let t = seqs.entry(o).or_default();
            list.into_iter().for_each(|s| t.insert(s));
        }
        let state = State {
            pardons: store.pardons(clock.now())?,
            last_time: store.last_times()?,
            store,
            seqs,
            rate: BTreeMap::new(),
            counters: TrustCounters::default(),
            log: RateLog::default(),
            quorum_done: HashMap::new(),
            mismatched_peers: BTreeMap::new(),
            batch_undo: None,
        };
        let (transport, direct): (Arc<dyn Transport>, _) = if treaty.transport == "nats" {
            (Arc::new(nats::Nats::new(&cfg.name, &treaty)?), None)
        } else {
            let d = Arc::new(direct::Direct::bind(&cfg.name, &id, &treaty, cfg.listen).await?);
            (d.clone(), Some(d))
        };
        let listen = direct.as_ref().and_then(|d| d.local_addr());
        let protected = protected_targets(&treaty).await;
        let engine = Arc::new(Member {
            me: cfg.name.clone(),
            id,
            protected,
            treaty_path: cfg.treaty_path.clone(),
            gov: Mutex::new(()),
            past: past_digests(&cfg.treaty_path, &treaty),
            treaty,
            state: Mutex::new(state),
            inbound,
            clock,
        });
        let (tx, rx) = watch::channel(false);
        let sink: Arc<dyn Sink> = Arc::new(SinkImpl(engine.clone()));
        let task = tokio::spawn({
            let run = transport.clone().run(sink, rx.clone());
            let pruner = prune_loop(engine.clone(), rx);
            async move {
                tokio::join!(run, pruner);
            }
        });
        tracing::info!(member = %cfg.name, union = %engine.treaty.name, digest = %engine.treaty.digest_hex(), ?listen, "union started");
        Ok(UnionHandle {
            engine,
            transport,
            direct,
            shutdown: tx,
            task,
            listen,
        })
    }

    /// A local decision: if its scenario binds the union, sign it as a signal,
    /// store it, push it. Returns whether it was published (false for scenarios
    /// that do not bind, non-local origins, allowlisted, too wide or pardoned
    /// targets, and when this member is over its own rate cap). The signal
    /// carries the treaty's decision type for the scenario and the decision's
    /// duration clamped to the policy's `duration..=max_duration`.
    pub fn publish(&self, d: &Decision, evidence: &[String]) -> Result<bool, UnionError> {
        self.engine.publish(self.transport.as_ref(), d, evidence)
    }

    /// Ignore `net` in union signals on this member (persisted) until `until`
    /// (Unix seconds; `None` = until `shield union pardon --remove`). The
    /// daemon calls this when an operator deletes a decision, so the next
    /// signal for the same target does not ban it again at once.
    pub fn pardon(&self, net: Net, until: Option<UnixTime>) -> Result<(), UnionError> {
        let now = self.engine.clock.now();
        let mut st = self.engine.lock();
        st.store.add_pardon(&net, now, until)?;
        st.pardons = st.store.pardons(now)?;
        Ok(())
    }

    /// How long a pardon that follows a local delete lasts: the treaty's
    /// longest decision, so no signal still in flight re-bans the target.
    pub fn pardon_span(&self) -> std::time::Duration {
        self.engine.treaty.longest_duration()
    }

    /// The address the union listener is bound to.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listen
    }

    pub fn treaty(&self) -> &Treaty {
        &self.engine.treaty
    }

    pub fn status(&self) -> UnionStatus {
        let now = self.engine.clock.now();
        let peers = self.transport.peers();
        let st = self.engine.lock();
        let mut counters = st.counters.clone();
        let (rev, unk, cap) = self.direct.as_ref().map_or((0, 0, 0), |d| {
            (
                d.refused_revoked.load(Ordering::Relaxed),
                d.refused_unknown.load(Ordering::Relaxed),
                d.refused_conn_cap.load(Ordering::Relaxed),
            )
        });
        if cap > 0 {
            *counters
                .refused
                .entry(Refusal::ConnectionCap.as_str())
                .or_default() += cap;
        }
        if rev > 0 {
            *counters
                .refused
                .entry(Refusal::Revoked.as_str())
                .or_default() += rev;
        }
        if unk > 0 {
            *counters
                .refused
                .entry(Refusal::NotMember.as_str())
                .or_default() += unk;
        }
        let members = self
            .engine
            .treaty
            .members()
            .map(|m| {
                let p = peers.iter().find(|p| p.name == m.name).or_else(|| {
                    // On NATS every other member is reached through the server.
                    (m.name != self.engine.me)
                        .then(|| peers.iter().find(|p| p.name == "nats"))
                        .flatten()
                });
                let mut health = p.map(|p| p.health.clone()).unwrap_or(Health::Local);
                let mut last_error = p.and_then(|p| p.last_error.clone());
                if let Some(d) = st.mismatched_peers.get(&m.name) {
                    health = Health::TreatyMismatch;
                    last_error = Some(d.join("; "));
                }
                MemberStatus {
                    name: m.name.clone(),
                    endpoint: m.endpoint.clone(),
                    health,
                    last_error,
                    last_signal_age_s: st.last_time.get(&m.name).map(|t| (now - t).max(0)),
                    signals: st.seqs.get(&m.name).map(|s| s.contig).unwrap_or(0),
                }
            })
            .collect();
        UnionStatus {
            union: self.engine.treaty.name.clone(),
            member: self.engine.me.clone(),
            treaty_digest: self.engine.treaty.digest_hex(),
            listen: self.listen,
            members,
            counters,
        }
    }

    /// Stop listening and syncing; in-flight requests are dropped (anti-entropy repairs them later).
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}
