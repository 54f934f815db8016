//! Scenarios (CrowdSec's leaky buckets) in time-machine mode: event timestamps drive the token
//! bucket (`leaky`: capacity + leakspeed, `capacity: -1` never fills), `trigger`, `counter`,
//! `conditional` and `bayesian`, with `groupby` partitions, `distinct`, `cancel_on`,
//! `overflow_filter`, `blackhole`, `cache_size`, `scope` and `labels`. An overflowing bucket
//! yields an overflow event carrying CrowdSec's alert (sources, events' meta, counts). Runs
//! synchronously: the caller pours events in log order and gets overflows back.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

use serde_json::Value as Json;
use shield_expr::{Object, Value};

use crate::config::ScenarioConfig;
use crate::data::Exprs;
use crate::event::{Alert, AlertEvent, Event, Kind, Overflow, Source};
use crate::gotime::GoTime;
use crate::host::EvtView;
use crate::parser::{eval, eval_changed};

/// A scenario that failed to load, with what to fix.
#[derive(Debug, thiserror::Error)]
#[error("scenario '{name}': {message}")]
pub struct ScenarioError {
    pub name: String,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BucketKind {
    Leaky,
    Trigger,
    Counter,
    Conditional,
    Bayesian,
}

#[derive(Debug)]
struct BayesCond {
    prog: shield_expr::Program,
    evil: f32,
    benign: f32,
    guillotine: bool,
}

/// A compiled scenario (CrowdSec's `BucketFactory`).
#[derive(Debug)]
pub struct Scenario {
    pub name: String,
    kind: BucketKind,
    capacity: i64,
    leakspeed: i64,
    /// Lifetime of an idle bucket (`(capacity+1)*leakspeed`, `duration`, or `leakspeed`).
    duration: i64,
    filter: shield_expr::Program,
    /// The filter's leading `evt.Meta.log_type in [..]`-like test, checked without running it.
    gate: Option<crate::host::Gate>,
    groupby: Option<shield_expr::Program>,
    distinct: Option<shield_expr::Program>,
    cancel_on: Option<shield_expr::Program>,
    overflow_filter: Option<shield_expr::Program>,
    blackhole: Option<i64>,
    condition: Option<shield_expr::Program>,
    bayes_prior: f32,
    bayes_threshold: f32,
    bayes: Vec<BayesCond>,
    scope: String,
    scope_expr: Option<shield_expr::Program>,
    labels: Json,
    remediation: bool,
    reprocess: bool,
    queue_size: usize,
    /// Whether an expression reads this scenario's queued events (condition, bayesian
    /// conditions, overflow_filter, scope expression); otherwise its queue holds compact
    /// copies that keep only what an alert is built from (see [`compact`]).
    full_events: bool,
    hash: String,
    version: String,
}

fn serr(name: &str, message: impl Into<String>) -> ScenarioError {
    ScenarioError {
        name: name.to_owned(),
        message: message.into(),
    }
}

impl Scenario {
    /// Compiles a scenario spec. `hash`/`version` identify the hub item.
    pub fn compile(
        c: &ScenarioConfig,
        exprs: &Exprs,
        hash: &str,
        version: &str,
    ) -> Result<Scenario, ScenarioError> {
        let name = c.name.as_str();
        if name.is_empty() {
            return Err(serr("?", "a scenario needs a name"));
        }
        let kind = match c.kind.as_str() {
            "leaky" => BucketKind::Leaky,
            "trigger" => BucketKind::Trigger,
            "counter" => BucketKind::Counter,
            "conditional" => BucketKind::Conditional,
            "bayesian" => BucketKind::Bayesian,
            other => {
                return Err(serr(
                    name,
                    format!(
                        "unknown bucket type {other:?} (leaky, trigger, counter, conditional or bayesian)"
                    ),
                ));
            }
        };
        let dur = |s: &str, what: &str| -> Result<i64, ScenarioError> {
            if s.is_empty() {
                return Ok(0);
            }
            shield_expr::parse_go_duration(s).map_err(|_| {
                serr(
                    name,
                    format!("invalid {what} {s:?} (a Go duration such as 10s or 1m)"),
                )
            })
        };
        let leakspeed = dur(&c.leakspeed, "leakspeed")?;
        let duration_cfg = dur(&c.duration, "duration")?;
        let compile =
            |src: &str, what: &str| -> Result<Option<shield_expr::Program>, ScenarioError> {
                if src.is_empty() {
                    return Ok(None);
                }
                exprs
                    .compile(src)
                    .map(Some)
                    .map_err(|e| serr(name, format!("{what} {src:?}: {e}")))
            };
        let filter = compile(&c.filter, "filter")?.ok_or_else(|| serr(name, "missing filter"))?;
        match kind {
            BucketKind::Leaky if c.capacity <= 0 || leakspeed <= 0 => {
                return Err(serr(
                    name,
                    "a leaky bucket needs capacity > 0 and a leakspeed",
                ));
            }
            BucketKind::Trigger if c.capacity != 0 => {
                return Err(serr(name, "a trigger's capacity must be 0"));
            }
            BucketKind::Counter if c.capacity != -1 || duration_cfg <= 0 => {
                return Err(serr(name, "a counter needs capacity -1 and a duration"));
            }
            BucketKind::Conditional if c.condition.is_empty() || leakspeed <= 0 => {
                return Err(serr(
                    name,
                    "a conditional bucket needs a condition and a leakspeed",
                ));
            }
            BucketKind::Bayesian if c.bayesian_conditions.is_empty() || c.capacity != -1 => {
                return Err(serr(
                    name,
                    "a bayesian bucket needs bayesian_conditions and capacity -1",
                ));
            }
            _ => {}
        }
        let condition = if c.condition.is_empty() {
            None
        } else {
            Some(
                exprs
                    .compile_condition(&c.condition)
                    .map_err(|e| serr(name, format!("condition {:?}: {e}", c.condition)))?,
            )
        };
        let mut bayes = Vec::new();
        for b in &c.bayesian_conditions {
            bayes.push(BayesCond {
                prog: exprs.compile_condition(&b.condition).map_err(|e| {
                    serr(name, format!("bayesian condition {:?}: {e}", b.condition))
                })?,
                evil: b.prob_given_evil,
                benign: b.prob_given_benign,
                guillotine: b.guillotine,
            });
        }
        let overflow_filter = if c.overflow_filter.is_empty() {
            None
        } else {
            Some(
                exprs
                    .compile_overflow_filter(&c.overflow_filter)
                    .map_err(|e| serr(name, format!("overflow_filter: {e}")))?,
            )
        };
        let blackhole = if c.blackhole.is_empty() {
            None
        } else {
            Some(dur(&c.blackhole, "blackhole")?)
        };
        let mut scope = match c.scope.kind.to_ascii_lowercase().as_str() {
            "" | "ip" => "Ip".to_owned(),
            "range" => "Range".to_owned(),
            _ => c.scope.kind.clone(),
        };
        if c.scope.kind.is_empty() {
            scope = "Ip".into();
        }
        if scope == "Ip" && !c.scope.expression.is_empty() {
            return Err(serr(name, "scope Ip takes no expression"));
        }
        if scope != "Ip" && scope != "Range" && c.scope.expression.is_empty() {
            return Err(serr(
                name,
                "a scope other than Ip or Range needs an expression",
            ));
        }
        let scope_expr = compile(&c.scope.expression, "scope expression")?;
        let mut duration = 0;
        if c.capacity > 0 && leakspeed != 0 {
            duration = (c.capacity + 1) * leakspeed;
        }
        if duration_cfg != 0 {
            duration = duration_cfg;
        }
        if matches!(kind, BucketKind::Conditional | BucketKind::Bayesian) {
            duration = leakspeed;
        }
        let mut queue_size = if c.capacity < 0 {
            usize::MAX
        } else {
            c.capacity as usize
        };
        if c.cache_size > 0 && (c.cache_size <= c.capacity || c.capacity == -1) {
            queue_size = c.cache_size as usize;
        }
        let labels = c.labels.clone().map(Json::Object).unwrap_or(Json::Null);
        let remediation = labels.get("remediation").and_then(Json::as_bool) == Some(true);
        let full_events = condition.is_some()
            || !bayes.is_empty()
            || overflow_filter.is_some()
            || scope_expr.is_some();
        Ok(Scenario {
            name: name.to_owned(),
            kind,
            capacity: c.capacity,
            leakspeed,
            duration,
            gate: crate::host::Gate::of(&filter),
            filter,
            groupby: compile(&c.groupby, "groupby")?,
            distinct: compile(&c.distinct, "distinct")?,
            cancel_on: compile(&c.cancel_on, "cancel_on")?,
            overflow_filter,
            blackhole,
            condition,
            bayes_prior: c.bayesian_prior,
            bayes_threshold: c.bayesian_threshold,
            bayes,
            scope,
            scope_expr,
            labels,
            remediation,
            reprocess: c.reprocess,
            queue_size,
            full_events,
            hash: hash.to_owned(),
            version: version.to_owned(),
        })
    }
}

/// x/time/rate's token bucket, driven by event time.
#[derive(Debug)]
struct Limiter {
    per_sec: f64,
    burst: f64,
    tokens: f64,
    last: Option<jiff::Timestamp>,
}

impl Limiter {
    fn allow(&mut self, t: jiff::Timestamp) -> bool {
        let last = match self.last {
            None => {
                self.tokens = self.burst;
                t
            }
            Some(l) if t < l => t,
            Some(l) => l,
        };
        let elapsed_ns = t.as_nanosecond() - last.as_nanosecond();
        let delta = (elapsed_ns as f64 / 1e9) * self.per_sec;
        let mut tokens = self.tokens + delta;
        if tokens > self.burst {
            tokens = self.burst;
        }
        tokens -= 1.0;
        // Token counts are sums of float increments; an event landing exactly on the leak
        // boundary must not lose to rounding (CrowdSec's own GC compares with 1e-9 slack too).
        if tokens < -1e-9 {
            return false;
        }
        self.last = Some(t);
        self.tokens = tokens;
        true
    }
}

#[derive(Debug)]
struct Bucket {
    /// The poured events, shared between the buckets one line was poured into.
    queue: VecDeque<Arc<Event>>,
    limiter: Option<Limiter>,
    first_ts: Option<GoTime>,
    last_ts: Option<GoTime>,
    ovflw_ts: Option<GoTime>,
    total: i64,
    seen: HashSet<String>,
    guillotine: Vec<bool>,
}

impl Bucket {
    fn new(s: &Scenario) -> Bucket {
        let limiter = (s.capacity > 0 && s.kind != BucketKind::Counter).then(|| Limiter {
            per_sec: if s.leakspeed > 0 {
                1e9 / s.leakspeed as f64
            } else {
                f64::INFINITY
            },
            burst: s.capacity as f64,
            tokens: 0.0,
            last: None,
        });
        Bucket {
            queue: VecDeque::new(),
            limiter,
            first_ts: None,
            last_ts: None,
            ovflw_ts: None,
            total: 0,
            seen: HashSet::new(),
            guillotine: vec![false; s.bayes.len()],
        }
    }

    fn add(&mut self, limit: usize, e: Arc<Event>) {
        while self.queue.len() > limit {
            self.queue.pop_front();
        }
        self.queue.push_back(e);
    }
}

/// `queue` in conditions: `queue.Queue` is the bucket's events.
struct QueueView<'e> {
    views: Vec<EvtView<'e>>,
}

impl Object for QueueView<'_> {
    fn type_name(&self) -> &str {
        "*types.Queue"
    }
    fn field(&self, name: &str) -> Option<Value<'_>> {
        match name {
            "Queue" => Some(Value::list(
                self.views
                    .iter()
                    .map(|v| Value::Object(v as &dyn Object))
                    .collect(),
            )),
            "L" => Some(Value::Int(self.views.len() as i64)),
            _ => None,
        }
    }
}

/// Evaluates `p` over `evt` without keeping what the expression writes (CrowdSec hands these
/// expressions a copy of the event).
fn eval_ro<T>(
    p: &shield_expr::Program,
    evt: &Event,
    f: impl FnOnce(Result<Value<'_>, String>) -> T,
) -> T {
    let view = EvtView::new(evt);
    let r = p.run(&[Value::Object(&view)]).map_err(|e| e.to_string());
    f(r)
}

fn run_condition(
    p: &shield_expr::Program,
    evt: &Event,
    queue: &VecDeque<Arc<Event>>,
) -> Option<bool> {
    let ev = EvtView::new(evt);
    let q = QueueView {
        views: queue.iter().map(|e| EvtView::new(e)).collect(),
    };
    p.run(&[Value::Object(&ev), Value::Object(&q), Value::Nil])
        .ok()
        .and_then(|v| v.as_bool())
}

/// The live buckets of a set of scenarios.
#[derive(Debug, Default)]
pub struct Buckets {
    pub scenarios: Vec<Scenario>,
    live: HashMap<(usize, String), Bucket>,
    blackholes: Vec<Vec<(String, jiff::Timestamp)>>,
    /// For each scenario, the first scenario whose groupby has the same text (most share
    /// `evt.Meta.source_ip`): one evaluation per event serves them all. Only groupbys that
    /// call no function are shared, so the same text on an unchanged event gives the same key.
    groupby_of: Vec<Option<usize>>,
    /// Group keys computed for the event being poured, by [`Buckets::groupby_of`] slot.
    groups: Vec<Option<String>>,
}

fn event_time(e: &Event) -> Option<GoTime> {
    if e.marshaled_time.is_empty() {
        return None;
    }
    GoTime::unmarshal(&e.marshaled_time)
}

impl Buckets {
    /// Buckets for these scenarios (none live yet).
    pub fn new(scenarios: Vec<Scenario>) -> Buckets {
        let n = scenarios.len();
        let groupby_of = scenarios
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let g = s.groupby.as_ref()?.source().trim();
                if g.contains('(') {
                    return Some(i);
                }
                scenarios
                    .iter()
                    .position(|o| o.groupby.as_ref().is_some_and(|og| og.source().trim() == g))
            })
            .collect();
        Buckets {
            scenarios,
            live: HashMap::new(),
            blackholes: vec![Vec::new(); n],
            groupby_of,
            groups: vec![None; n],
        }
    }

    /// Number of live buckets.
    pub fn live(&self) -> usize {
        self.live.len()
    }

    /// `PourItemToHolders`: pour `evt` into every scenario whose filter matches; returns the
    /// overflows this caused, in scenario order.
    pub fn pour(&mut self, evt: &mut Event) -> Vec<Event> {
        let mut groups = std::mem::take(&mut self.groups);
        groups.iter_mut().for_each(|g| *g = None);
        let out = self.pour_with(evt, &mut groups);
        self.groups = groups;
        out
    }

    fn pour_with(&mut self, evt: &mut Event, groups: &mut [Option<String>]) -> Vec<Event> {
        let mut out = Vec::new();
        // One copy of the event for every bucket it goes into (one compact, one full), made
        // when the first needs it and made again only if an expression wrote into the event
        // since.
        let mut shared: [Option<Arc<Event>>; 2] = [None, None];
        for i in 0..self.scenarios.len() {
            let s = &self.scenarios[i];
            if s.gate.as_ref().is_some_and(|g| !g.admits(evt)) {
                continue;
            }
            let (r, changed) = eval_changed(&s.filter, evt, |r| r.map(|v| v.as_bool()));
            if changed {
                shared = [None, None];
                groups.iter_mut().for_each(|g| *g = None);
            }
            match r {
                Ok(Some(true)) => {}
                Ok(_) => continue,
                Err(_) => return out,
            }
            let group = match &s.groupby {
                None => String::new(),
                Some(g) => {
                    let slot = self.groupby_of[i].unwrap_or(i);
                    if let Some(k) = groups.get(slot).and_then(Option::as_ref) {
                        k.clone()
                    } else {
                        let (r, changed) =
                            eval_changed(g, evt, |r| r.map(|v| v.as_str().map(str::to_owned)));
                        if changed {
                            shared = [None, None];
                            groups.iter_mut().for_each(|g| *g = None);
                        }
                        match r {
                            Ok(Some(k)) => {
                                if !changed && let Some(c) = groups.get_mut(slot) {
                                    *c = Some(k.clone());
                                }
                                k
                            }
                            Ok(None) => continue,
                            Err(_) => return out,
                        }
                    }
                }
            };
            let key = (i, group);
            if let Some(b) = self.live.get(&key)
                && b.first_ts.is_some()
                && let (Some(d), Some(last)) = (event_time(evt), b.last_ts)
                && d.ts.as_nanosecond() > last.ts.as_nanosecond() + s.duration as i128
            {
                self.live.remove(&key);
            }
            if !self.live.contains_key(&key) {
                self.live.insert(key.clone(), Bucket::new(s));
            }
            if let Some(ov) = self.pour_one(i, &key, evt, &mut shared) {
                out.push(ov);
            }
        }
        out
    }

    fn pour_one(
        &mut self,
        i: usize,
        key: &(usize, String),
        evt: &Event,
        shared: &mut [Option<Arc<Event>>; 2],
    ) -> Option<Event> {
        let s = &self.scenarios[i];
        let full = s.full_events;
        let mut copy = || {
            shared[usize::from(full)]
                .get_or_insert_with(|| Arc::new(if full { evt.clone() } else { compact(evt) }))
                .clone()
        };
        let b = self.live.get_mut(key)?;
        let mut pending = false;
        let mut killed = false;
        'end: {
            // OnBucketPour, in processor order: type, distinct, cancel_on.
            if s.kind == BucketKind::Trigger {
                let ts = event_time(evt);
                b.first_ts = ts;
                b.last_ts = ts;
                b.ovflw_ts = ts;
                b.total = 1;
                b.add(s.queue_size, copy());
                pending = true;
                break 'end;
            }
            if let Some(d) = &s.distinct {
                let el = eval_ro(d, evt, |r| match r {
                    Ok(Value::Str(x)) => Some(x.as_str().to_owned()),
                    Ok(_) => Some(String::new()),
                    Err(_) => None,
                });
                if let Some(el) = el
                    && !b.seen.insert(el)
                {
                    break 'end;
                }
            }
            if let Some(c) = &s.cancel_on
                && eval_ro(c, evt, |r| matches!(r, Ok(Value::Bool(true))))
            {
                killed = true;
                break 'end;
            }
            // TimeMachinePour.
            if let Some(d) = event_time(evt) {
                b.total += 1;
                if b.first_ts.is_none() {
                    b.first_ts = Some(d);
                }
                b.last_ts = Some(d);
                let allowed = match &mut b.limiter {
                    Some(l) => l.allow(d.ts),
                    None => true,
                };
                b.add(s.queue_size, copy());
                if !(allowed || s.kind == BucketKind::Conditional) {
                    b.ovflw_ts = Some(d);
                    pending = true;
                }
            }
            // AfterBucketPour: condition, bayesian.
            if let Some(c) = &s.condition
                && run_condition(c, evt, &b.queue) == Some(true)
            {
                b.ovflw_ts = b.last_ts;
                pending = true;
                break 'end;
            }
            if s.kind == BucketKind::Bayesian || (!s.bayes.is_empty() && s.bayes_threshold != 0.0) {
                let mut post = s.bayes_prior;
                for (ci, c) in s.bayes.iter().enumerate() {
                    let upd = |p: f32, e: f32, n: f32| {
                        let num = e * p;
                        num / (num + n * (1.0 - p))
                    };
                    if c.guillotine && b.guillotine[ci] {
                        post = upd(post, c.evil, c.benign);
                        continue;
                    }
                    match run_condition(&c.prog, evt, &b.queue) {
                        Some(true) => {
                            post = upd(post, c.evil, c.benign);
                            b.guillotine[ci] = true;
                        }
                        Some(false) => post = upd(post, 1.0 - c.evil, 1.0 - c.benign),
                        None => {}
                    }
                }
                if post > s.bayes_threshold {
                    b.ovflw_ts = b.last_ts;
                    pending = true;
                }
            }
        }
        if killed {
            self.live.remove(key);
            return None;
        }
        if !pending {
            return None;
        }
        let b = self.live.remove(key)?;
        self.overflow(i, key, b)
    }

    fn overflow(&mut self, i: usize, key: &(usize, String), b: Bucket) -> Option<Event> {
        let s = &self.scenarios[i];
        let mapkey = format!("{}\u{0}{}", s.name, key.1);
        let ovflw = b
            .ovflw_ts
            .unwrap_or(GoTime::utc(jiff::Timestamp::UNIX_EPOCH));
        let alert = self.new_alert(s, &b, &mapkey)?;
        if let Some(f) = &s.overflow_filter {
            let q = QueueView {
                views: b.queue.iter().map(|e| EvtView::new(e)).collect(),
            };
            if f.run(&[Value::Object(&q), Value::Nil, Value::Nil])
                .ok()
                .and_then(|v| v.as_bool())
                == Some(false)
            {
                return None;
            }
        }
        if let Some(bh) = s.blackhole {
            let keys = &mut self.blackholes[i];
            let blackholed = keys.iter().any(|(k, exp)| *k == mapkey && *exp > ovflw.ts);
            keys.retain(|(_, exp)| *exp > ovflw.ts);
            if blackholed {
                return None;
            }
            let exp = ovflw
                .ts
                .checked_add(jiff::SignedDuration::from_nanos(bh))
                .unwrap_or(ovflw.ts);
            keys.push((mapkey.clone(), exp));
        }
        Some(Event {
            kind: Kind::Overflow,
            overflow: alert,
            marshaled_time: ovflw.marshal(),
            ..Event::default()
        })
    }

    fn new_alert(&self, s: &Scenario, b: &Bucket, mapkey: &str) -> Option<Overflow> {
        let mut sources: std::collections::BTreeMap<String, Source> = Default::default();
        let mut scope_seen: Option<String> = None;
        for e in &b.queue {
            for (k, src) in sources_of(s, e)? {
                if let Some(sc) = &scope_seen {
                    if *sc != src.scope {
                        return None;
                    }
                } else {
                    scope_seen = Some(src.scope.clone());
                }
                sources.insert(k, src);
            }
        }
        let first = b
            .first_ts
            .map(|t| t.marshal())
            .unwrap_or_else(|| "0001-01-01T00:00:00Z".into());
        let stop = b
            .ovflw_ts
            .map(|t| t.marshal())
            .unwrap_or_else(|| "0001-01-01T00:00:00Z".into());
        let events: Vec<AlertEvent> = b
            .queue
            .iter()
            .map(|e| {
                let mut meta: Vec<(String, String)> =
                    e.meta.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                meta.sort();
                let timestamp = if !e.marshaled_time.is_empty() {
                    e.marshaled_time.clone()
                } else {
                    e.time.map(|t| t.marshal()).unwrap_or_default()
                };
                AlertEvent { timestamp, meta }
            })
            .collect();
        let source_str = match sources.len() {
            0 => "UNKNOWN".to_owned(),
            1 => sources.keys().next().cloned().unwrap_or_default(),
            n => format!("{n} sources"),
        };
        let base = Alert {
            scenario: s.name.clone(),
            scenario_hash: s.hash.clone(),
            scenario_version: s.version.clone(),
            capacity: s.capacity,
            events_count: b.total,
            leakspeed: shield_expr::go_duration(s.leakspeed),
            message: format!(
                "{} {} performed '{}' ({} events over {})",
                scope_seen.clone().unwrap_or_default(),
                source_str,
                s.name,
                b.total,
                shield_expr::go_duration(match (b.ovflw_ts, b.first_ts) {
                    (Some(o), Some(f)) => (o.ts.as_nanosecond() - f.ts.as_nanosecond()) as i64,
                    _ => 0,
                })
            ),
            start_at: first,
            stop_at: stop,
            simulated: false,
            remediation: s.remediation,
            events,
            source: Source::default(),
            labels: s.labels.clone(),
        };
        let alerts: Vec<Alert> = sources
            .values()
            .map(|src| Alert {
                source: src.clone(),
                ..base.clone()
            })
            .collect();
        if alerts.is_empty() {
            return None;
        }
        Some(Overflow {
            mapkey: mapkey.to_owned(),
            whitelisted: false,
            reprocess: s.reprocess,
            sources,
            alerts,
        })
    }
}

/// The copy of an event a bucket keeps when no expression reads its queue: what
/// [`Buckets::new_alert`] and [`sources_of`] read (kind, meta, enriched, times, the overflow of
/// an overflow event) and nothing else: no line, no parsed fields, no unmarshaled JSON,
/// which are most of a log event's bytes.
fn compact(e: &Event) -> Event {
    Event {
        kind: e.kind,
        time_machine: e.time_machine,
        whitelisted: e.whitelisted,
        meta: e.meta.clone(),
        enriched: e.enriched.clone(),
        overflow: e.overflow.clone(),
        time: e.time,
        marshaled_time: e.marshaled_time.clone(),
        ..Event::default()
    }
}

/// `SourceFromEvent`: the sources one queued event contributes; `None` aborts the alert.
fn sources_of(s: &Scenario, e: &Event) -> Option<Vec<(String, Source)>> {
    if e.kind == Kind::Overflow {
        let mut out = Vec::new();
        for (k, v) in &e.overflow.sources {
            if v.scope == s.scope {
                out.push((k.clone(), v.clone()));
                continue;
            }
            if s.scope != "Range" || v.scope != "Ip" {
                continue;
            }
            let mut src = v.clone();
            src.scope = s.scope.clone();
            src.value = v.range.clone();
            if let Some(p) = &s.scope_expr {
                let mut ec = e.clone();
                src.value = eval(p, &mut ec, |r| match r {
                    Ok(Value::Str(x)) => x.as_str().to_owned(),
                    _ => String::new(),
                });
            }
            if src.value.is_empty() {
                continue;
            }
            out.push((src.value.clone(), src));
        }
        return Some(out);
    }
    match s.scope.as_str() {
        "Ip" | "Range" => {
            let ip = e.meta.get("source_ip")?;
            ip.parse::<IpAddr>().ok()?;
            let mut src = Source {
                ip: ip.clone(),
                scope: s.scope.clone(),
                ..Source::default()
            };
            if let Some(v) = e
                .enriched
                .get("ASNumber")
                .or_else(|| e.enriched.get("ASNNumber"))
            {
                src.as_number = v.clone();
            }
            if let Some(v) = e.enriched.get("IsoCode") {
                src.cn = v.clone();
            }
            if let Some(v) = e.enriched.get("ASNOrg") {
                src.as_name = v.clone();
            }
            if let Some(v) = e.enriched.get("Latitude") {
                src.latitude = v.parse().unwrap_or(0.0);
            }
            if let Some(v) = e.enriched.get("Longitude") {
                src.longitude = v.parse().unwrap_or(0.0);
            }
            if let Some(v) = e.meta.get("SourceRange")
                && !v.is_empty()
            {
                let net: ipnet::IpNet = v.parse().ok()?;
                src.range = net.trunc().to_string();
            }
            if s.scope == "Ip" {
                src.value = src.ip.clone();
            } else {
                src.value = src.range.clone();
                if let Some(p) = &s.scope_expr {
                    let mut ec = e.clone();
                    src.value = eval(p, &mut ec, |r| match r {
                        Ok(Value::Str(x)) => x.as_str().to_owned(),
                        _ => String::new(),
                    });
                }
            }
            Some(vec![(src.value.clone(), src)])
        }
        _ => {
            let p = s.scope_expr.as_ref()?;
            let mut ec = e.clone();
            let value = eval(p, &mut ec, |r| match r {
                Ok(Value::Str(x)) => x.as_str().to_owned(),
                _ => String::new(),
            });
            Some(vec![(
                value.clone(),
                Source {
                    scope: s.scope.clone(),
                    value,
                    ..Source::default()
                },
            )])
        }
    }
}
