//! Notification channels (`[[notify]]`, `[webhook]`) and exec actions
//! (`[[action]]`): every new decision is offered to each configured sink with
//! a non-blocking `try_send` ([`Notifier::send`], called by the decision
//! thread), and one tokio task per sink gathers them into a batch, sends one
//! message per batch window, retries a failed one with doubling backoff, and
//! counts what it sent, failed and dropped ([`SinkStats`], read by `/metrics`
//! and `shield status`). A full queue drops the decision for that sink and
//! counts it: a slow or dead endpoint never slows the decision path.
//!
//! The message templates are `format`; the HTTPS sender is `http`, email
//! `smtp`, the actions' runner `exec`. Which
//! decisions exist is not decided here (that is `decide`/`worker`).

mod exec;
pub mod format;
mod http;
mod smtp;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shield_core::{Clock, Decision, UnixTime};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::config::{ActionConfig, Loaded, NotifyConfig, NotifyKind, WebhookConfig};
use crate::config::{ConfigError, NotifyKind as Kind};

pub use format::Batch;

/// What can go wrong delivering one batch.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    /// No answer: connection refused, TLS refused, DNS.
    #[error("{0}; check that the endpoint is up and its URL and CA are right")]
    Transport(String),
    /// The endpoint answered with an error status.
    #[error("the endpoint answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    /// The attempt took longer than the channel's `timeout`.
    #[error("no answer within {0:?}; raise `timeout` or check the endpoint")]
    Timeout(Duration),
    /// The SMTP session failed or the server refused the mail.
    #[error("{message}")]
    Smtp { message: String, permanent: bool },
    /// An action's program could not be started.
    #[error("cannot run {0}; check the path and its permissions")]
    Spawn(String),
    /// An action's program ended with an error.
    #[error("the action ended with {status}: {stderr}")]
    Exit { status: String, stderr: String },
}

impl DeliverError {
    /// Whether another attempt can help (a 4xx other than 408/429 will not).
    fn retryable(&self) -> bool {
        match self {
            DeliverError::Status { status, .. } => {
                *status >= 500 || *status == 408 || *status == 429
            }
            DeliverError::Smtp { permanent, .. } => !permanent,
            // Running an action again could repeat what it did: never retried.
            DeliverError::Spawn(_) | DeliverError::Exit { .. } => false,
            _ => true,
        }
    }
}

/// How a sink delivers a batch.
#[derive(Clone, Debug)]
pub enum Target {
    /// An HTTP(S) POST in one of the kinds' templates.
    Http(http::HttpTarget),
    /// One mail over SMTP with STARTTLS.
    Email(smtp::EmailTarget),
    /// A program run with the batch on stdin.
    Exec(exec::ExecTarget),
}

/// A validated channel or action, ready to start.
#[derive(Clone, Debug)]
pub struct SinkPlan {
    pub name: String,
    pub kind: Kind,
    pub target: Target,
    /// One message per window.
    pub batch: Duration,
    /// Decisions held at most (queue and pending batch each).
    pub queue: usize,
    pub retries: u32,
    pub backoff: Duration,
    /// Deliveries in flight at most.
    pub concurrency: usize,
    /// The origins this sink takes ([`Origins`]).
    pub origins: Origins,
}

/// A set of decision origins (`local`, `manual`, `union`, `list`), checked
/// per decision without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origins(u8);

impl Origins {
    const NAMES: [&'static str; 4] = ["local", "manual", "union", "list"];

    /// Parses origin names; an unknown one is named in the error.
    pub fn parse(names: &[String]) -> Result<Origins, PlanError> {
        let mut bits = 0;
        for n in names {
            let Some(i) = Self::NAMES.iter().position(|k| k == n) else {
                return Err((
                    format!("`origins`: unknown origin `{n}`"),
                    Some("use local, manual, union or list".into()),
                ));
            };
            bits |= 1 << i;
        }
        Ok(Origins(bits))
    }

    fn takes(self, o: &shield_core::Origin) -> bool {
        let i = match o {
            shield_core::Origin::Local => 0,
            shield_core::Origin::Manual => 1,
            shield_core::Origin::Union(_) => 2,
            shield_core::Origin::List(_) => 3,
        };
        self.0 & (1 << i) != 0
    }
}

/// Counters of one sink, shared by its task (writer) and the status readers.
#[derive(Debug, Default)]
pub struct SinkStats {
    pub name: String,
    pub kind: Option<Kind>,
    /// Messages (batches) delivered.
    pub sent: AtomicU64,
    /// Messages given up (after the retries).
    pub failed: AtomicU64,
    /// Attempts that failed and were tried again.
    pub retried: AtomicU64,
    /// Decisions carried by delivered messages.
    pub delivered: AtomicU64,
    /// Decisions dropped: the queue or the pending batch was full.
    pub dropped: AtomicU64,
    /// Mutex: written once per failed attempt, read per status request.
    last_error: Mutex<Option<(UnixTime, String)>>,
    /// Exec actions: runs by exit status (`0`, `1`, …, `timeout`, `signal`, `spawn`).
    /// Mutex: written once per run, read per status request.
    exits: Mutex<BTreeMap<String, u64>>,
}

impl SinkStats {
    fn new(name: &str, kind: Kind) -> Self {
        SinkStats {
            name: name.to_string(),
            kind: Some(kind),
            ..Default::default()
        }
    }

    fn set_error(&self, t: UnixTime, e: &str) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some((t, e.to_string()));
    }

    /// Counts one run of an exec action by its exit status.
    pub fn count_exit(&self, status: &str) {
        *self
            .exits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(status.to_string())
            .or_default() += 1;
    }

    /// A copy for `shield status`.
    pub fn snapshot(&self) -> SinkStatus {
        let last = self
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        SinkStatus {
            name: self.name.clone(),
            kind: self.kind.map(|k| k.to_string()).unwrap_or_default(),
            sent: self.sent.load(Relaxed),
            failed: self.failed.load(Relaxed),
            retried: self.retried.load(Relaxed),
            delivered: self.delivered.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            last_error_at: last.as_ref().map(|l| l.0),
            last_error: last.map(|l| l.1),
            exits: self.exits.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }
}

/// One sink's counters as `shield status` shows them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SinkStatus {
    pub name: String,
    pub kind: String,
    pub sent: u64,
    pub failed: u64,
    pub retried: u64,
    pub delivered: u64,
    pub dropped: u64,
    pub last_error: Option<String>,
    pub last_error_at: Option<UnixTime>,
    #[serde(default)]
    pub exits: BTreeMap<String, u64>,
}

struct Handle {
    tx: mpsc::Sender<Arc<Decision>>,
    stats: Arc<SinkStats>,
    origins: Origins,
}

/// The decision thread's end of the sinks. Empty (a no-op) until [`apply`]
/// installs some.
#[derive(Default)]
pub struct Notifier {
    /// RwLock: written at start and reload, read once per new decision.
    sinks: RwLock<Vec<Handle>>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.status()).finish()
    }
}

impl Notifier {
    /// Offers a new decision to every sink; never blocks. A sink whose queue
    /// is full drops it and counts the drop.
    pub fn send(&self, d: &Decision) {
        let sinks = self.sinks.read().unwrap_or_else(|p| p.into_inner());
        if !sinks.iter().any(|h| h.origins.takes(&d.origin)) {
            return;
        }
        let d = Arc::new(d.clone());
        for h in sinks.iter().filter(|h| h.origins.takes(&d.origin)) {
            if h.tx.try_send(d.clone()).is_err() {
                h.stats.dropped.fetch_add(1, Relaxed);
            }
        }
    }

    /// Every sink's counters.
    pub fn stats(&self) -> Vec<Arc<SinkStats>> {
        self.sinks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|h| h.stats.clone())
            .collect()
    }

    /// Every sink's counters, copied for `shield status`.
    pub fn status(&self) -> Vec<SinkStatus> {
        self.stats().iter().map(|s| s.snapshot()).collect()
    }
}

/// Starts one task per sink of `plans` and routes new decisions to them,
/// replacing the sinks running before (which send what they hold, then
/// stop). A sink keeps its counters across a reload when its name and kind
/// stay. Call from within the tokio runtime.
pub fn apply(plans: &[SinkPlan], notifier: &Notifier, clock: &Clock) {
    let host = hostname();
    let mut sinks = notifier.sinks.write().unwrap_or_else(|p| p.into_inner());
    let old: Vec<Handle> = std::mem::take(&mut *sinks);
    for p in plans {
        let stats = old
            .iter()
            .find(|h| h.stats.name == p.name && h.stats.kind == Some(p.kind))
            .map(|h| h.stats.clone())
            .unwrap_or_else(|| Arc::new(SinkStats::new(&p.name, p.kind)));
        let (tx, rx) = mpsc::channel(p.queue.max(1));
        tokio::spawn(collect(
            p.clone(),
            rx,
            stats.clone(),
            host.clone(),
            clock.clone(),
        ));
        sinks.push(Handle {
            tx,
            stats,
            origins: p.origins,
        });
    }
    // `old` drops here: its tasks see their queue close, flush and stop.
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// One sink's task: gathers decisions for a window, then hands the batch to
/// a delivery (at most `concurrency` in flight; meanwhile the next batch
/// keeps growing up to `queue`).
async fn collect(
    plan: SinkPlan,
    mut rx: mpsc::Receiver<Arc<Decision>>,
    stats: Arc<SinkStats>,
    host: String,
    clock: Clock,
) {
    let sender = match Sender::build(&plan, &host) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            stats.set_error(clock.now(), &e);
            tracing::error!(channel = %plan.name, error = %e, "notification channel cannot start; its decisions are dropped");
            return;
        }
    };
    let mut pending: Vec<Arc<Decision>> = Vec::new();
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut due = false;
    let mut open = true;
    let mut inflight = JoinSet::new();
    loop {
        if due && !pending.is_empty() && inflight.len() < plan.concurrency.max(1) {
            let batch = Arc::new(Batch::new(&host, std::mem::take(&mut pending)));
            inflight.spawn(deliver(
                sender.clone(),
                batch,
                plan.clone(),
                stats.clone(),
                clock.clone(),
            ));
            due = false;
            deadline = None;
        }
        tokio::select! {
            m = rx.recv(), if open => match m {
                Some(d) => {
                    if pending.len() >= plan.queue.max(1) {
                        stats.dropped.fetch_add(1, Relaxed);
                    } else {
                        if pending.is_empty() && !due {
                            deadline = Some(tokio::time::Instant::now() + plan.batch);
                        }
                        pending.push(d);
                    }
                }
                None => {
                    open = false;
                    due = true;
                }
            },
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() && !due => {
                due = true;
            }
            Some(_) = inflight.join_next(), if !inflight.is_empty() => {}
            else => break,
        }
        if !open && pending.is_empty() && inflight.is_empty() {
            break;
        }
    }
}

/// Delivers one batch, retrying with doubling backoff, and counts the outcome.
async fn deliver(
    sender: Arc<Sender>,
    batch: Arc<Batch>,
    plan: SinkPlan,
    stats: Arc<SinkStats>,
    clock: Clock,
) {
    let mut wait = plan.backoff;
    for attempt in 0..=plan.retries {
        match sender.send(&batch, &stats).await {
            Ok(()) => {
                stats.sent.fetch_add(1, Relaxed);
                stats
                    .delivered
                    .fetch_add(batch.decisions.len() as u64, Relaxed);
                return;
            }
            Err(e) => {
                let msg = e.to_string();
                stats.set_error(clock.now(), &msg);
                if attempt < plan.retries && e.retryable() {
                    stats.retried.fetch_add(1, Relaxed);
                    tracing::debug!(channel = %plan.name, error = %msg, retry_in = ?wait, "notification failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(300));
                } else {
                    stats.failed.fetch_add(1, Relaxed);
                    // One line per batch window at most: the batching bounds this log.
                    tracing::warn!(channel = %plan.name, kind = %plan.kind, error = %msg, decisions = batch.decisions.len(), "notification not delivered");
                    return;
                }
            }
        }
    }
}

/// A started sink's means of delivery (an HTTP client, …).
enum Sender {
    Http(http::HttpSender),
    Email(smtp::EmailSender),
    Exec(exec::ExecTarget),
}

impl Sender {
    fn build(plan: &SinkPlan, host: &str) -> Result<Sender, String> {
        match &plan.target {
            Target::Http(t) => Ok(Sender::Http(http::HttpSender::build(t)?)),
            Target::Email(t) => Ok(Sender::Email(smtp::EmailSender::build(t, host)?)),
            Target::Exec(t) => Ok(Sender::Exec(t.clone())),
        }
    }

    async fn send(&self, batch: &Batch, stats: &SinkStats) -> Result<(), DeliverError> {
        match self {
            Sender::Http(h) => h.send(batch).await,
            Sender::Email(m) => m.send(batch).await,
            Sender::Exec(x) => x.run(batch, stats).await,
        }
    }
}

/// Validates `[[notify]]`, `[[action]]` and `[webhook]` into sink plans;
/// problems are pushed to `errs`, located at the entry.
pub fn plan(
    l: &Loaded,
    notify: &[toml::Spanned<NotifyConfig>],
    actions: &[toml::Spanned<ActionConfig>],
    webhook: Option<&WebhookConfig>,
    errs: &mut Vec<ConfigError>,
) -> Vec<SinkPlan> {
    let mut out = Vec::new();
    let mut names = std::collections::HashSet::new();
    if let Some(w) = webhook {
        let c = NotifyConfig {
            name: "webhook".into(),
            kind: NotifyKind::Json,
            url: Some(w.url.clone()),
            token: None,
            chat_id: None,
            topic: None,
            ca_file: None,
            smtp: None,
            from: None,
            to: Vec::new(),
            username: None,
            password: None,
            batch: w.min_interval,
            retries: 3,
            backoff: Duration::from_secs(2),
            timeout: Duration::from_secs(10),
            queue: 10_000,
            origins: ["local", "manual", "union"].map(String::from).to_vec(),
        };
        match plan_channel(&c) {
            Ok(p) => {
                names.insert(p.name.clone());
                out.push(p);
            }
            Err((msg, hint)) => errs.push(l.error_at(0..0, format!("[webhook] {msg}"), hint)),
        }
    }
    for n in notify {
        let span = n.span();
        let c = n.get_ref();
        if !names.insert(c.name.clone()) {
            errs.push(l.error_at(
                span,
                format!("[[notify]] name `{}` is used twice", c.name),
                Some("give each channel and action its own name".into()),
            ));
            continue;
        }
        match plan_channel(c) {
            Ok(p) => out.push(p),
            Err((msg, hint)) => errs.push(l.error_at(
                span,
                format!("[[notify]] `{}` ({}): {msg}", c.name, c.kind),
                hint,
            )),
        }
    }
    for a in actions {
        let span = a.span();
        let c = a.get_ref();
        if !names.insert(c.name.clone()) {
            errs.push(l.error_at(
                span,
                format!("[[action]] name `{}` is used twice", c.name),
                Some("give each channel and action its own name".into()),
            ));
            continue;
        }
        match plan_action(c) {
            Ok(p) => out.push(p),
            Err((msg, hint)) => {
                errs.push(l.error_at(span, format!("[[action]] `{}`: {msg}", c.name), hint))
            }
        }
    }
    out
}

type PlanError = (String, Option<String>);

fn plan_channel(c: &NotifyConfig) -> Result<SinkPlan, PlanError> {
    if c.name.is_empty() || c.name.chars().any(|ch| ch.is_control() || ch == '"') {
        return Err((
            "`name` must be non-empty printable text without quotes".into(),
            None,
        ));
    }
    let target = match c.kind {
        NotifyKind::Exec => unreachable!("not deserialized"),
        NotifyKind::Email => Target::Email(smtp::EmailTarget::plan(c)?),
        _ => Target::Http(http::HttpTarget::plan(c)?),
    };
    Ok(SinkPlan {
        name: c.name.clone(),
        kind: c.kind,
        target,
        batch: c.batch,
        queue: c.queue.max(1),
        retries: c.retries,
        backoff: c.backoff,
        concurrency: 1,
        origins: Origins::parse(&c.origins)?,
    })
}

fn plan_action(c: &ActionConfig) -> Result<SinkPlan, PlanError> {
    if c.name.is_empty() || c.name.chars().any(|ch| ch.is_control() || ch == '"') {
        return Err((
            "`name` must be non-empty printable text without quotes".into(),
            None,
        ));
    }
    Ok(SinkPlan {
        name: c.name.clone(),
        kind: Kind::Exec,
        target: Target::Exec(exec::ExecTarget::plan(c)?),
        batch: c.batch,
        queue: c.queue.max(1),
        retries: 0,
        backoff: Duration::ZERO,
        concurrency: c.concurrency,
        origins: Origins::parse(&c.origins)?,
    })
}

/// One line of `shield status` for a sink.
pub fn describe(s: &SinkStatus) -> String {
    let mut line = format!(
        "notify {:<16} {:<8} sent {:>6} failed {:>4} retried {:>4} decisions {:>8} dropped {:>6}",
        s.name, s.kind, s.sent, s.failed, s.retried, s.delivered, s.dropped
    );
    if !s.exits.is_empty() {
        let e: Vec<String> = s.exits.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        line.push_str(&format!(" exits {}", e.join(",")));
    }
    if let Some(e) = &s.last_error {
        line.push_str(&format!(" last error: {e}"));
    }
    line
}

/// Registers every sink's counters in a `/metrics` registry.
pub fn register_metrics(notifier: &Notifier, reg: &mut prometheus_client::registry::Registry) {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    type L = crate::metrics::Labels;
    let messages = Family::<L, Counter>::default();
    let decisions = Family::<L, Counter>::default();
    let last_error = Family::<L, Gauge>::default();
    let exits = Family::<L, Counter>::default();
    for s in notifier.stats() {
        let st = s.snapshot();
        let base = |k: &str, v: &str| {
            vec![
                ("channel".to_string(), st.name.clone()),
                ("kind".to_string(), st.kind.clone()),
                (k.to_string(), v.to_string()),
            ]
        };
        for (o, n) in [
            ("sent", st.sent),
            ("failed", st.failed),
            ("retried", st.retried),
        ] {
            messages.get_or_create(&base("outcome", o)).inc_by(n);
        }
        for (o, n) in [("delivered", st.delivered), ("dropped", st.dropped)] {
            decisions.get_or_create(&base("outcome", o)).inc_by(n);
        }
        if let (Some(t), Some(e)) = (st.last_error_at, &st.last_error) {
            last_error.get_or_create(&base("error", e)).set(t);
        }
        for (code, n) in &st.exits {
            exits
                .get_or_create(&vec![
                    ("action".to_string(), st.name.clone()),
                    ("status".to_string(), code.clone()),
                ])
                .inc_by(*n);
        }
    }
    reg.register(
        "notify_messages",
        "Notification messages (one per batch) by channel and outcome: sent, failed (after the retries), retried",
        messages,
    );
    reg.register(
        "notify_decisions",
        "Decisions by channel: delivered in a message, or dropped because its queue was full",
        decisions,
    );
    reg.register(
        "notify_last_error_timestamp_seconds",
        "When each channel last failed, with the error",
        last_error,
    );
    reg.register(
        "action_runs",
        "Exec action runs by exit status (a number, timeout, signal, spawn)",
        exits,
    );
}

#[cfg(test)]
mod tests;
