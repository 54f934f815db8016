//! Scenarios: detectors over hits, keyed by source address (IPv6 grouped by a
//! prefix), and the [`Engine`] that runs a [`LineMatcher`] and the scenarios
//! over each line.
//!
//! Two bucket kinds:
//! - `leaky` (CrowdSec's model): each event adds 1 to a level that leaks one
//!   event per `leak`; the bucket overflows when the level would exceed
//!   `capacity` (so capacity 5 fires on the 6th quick event);
//! - `window` (fail2ban's `maxretry`/`findtime`): fires when `capacity` events
//!   fall within `leak`.
//!
//! Options: `distinct` counts only new values of a field (a small ring of
//! value hashes per bucket, no allocation once warm); `quiet` ignores a key for
//! a while after it fired.
//!
//! State is bounded: at most `max_keys` tracked keys. An address whose first
//! hit cannot decide anything alone is tracked as one compact *first hit*
//! (64 bytes for all the scenarios it feeds, [`First`]); its second hit
//! replays the first into full buckets, one per scenario, which give the same
//! counts as if they had existed all along. When the table is full, the
//! oldest first hit goes first (a single hit, long ago, is what is least
//! likely to grow into a decision); only when no first hit is left does the
//! least recently used bucket go. Every eviction is counted. Evidence lines
//! live once in a bounded [`evidence`] log, buckets hold references. Both
//! tables are slabs indexed by a `HashTable<u32>` (the key is stored once);
//! keys are attacker controlled, so the hasher is randomly seeded (foldhash).
//!
//! The clock is the line's own time (or `now` for lines without one): nothing
//! here reads the system clock. This module does not decide anything (ban
//! lengths, allowlist): it raises [`Alert`]s and the daemon decides.

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::time::Duration;

use hashbrown::HashTable;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use shield_core::{
    Addr, Alert, Carry, DecisionType, Hit, LineMatcher, MAX_FIELDS, Net, RuleInfo, Scope,
    SplitMatcher, UnixTime, key_for,
};

use crate::rules::{NativeMatcher, line_time};
use crate::time::{StampCache, to_rfc3339};
use evidence::EvidenceLog;

/// How a scenario counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BucketKind {
    /// Leaky bucket: overflows when the level would exceed `capacity`.
    #[default]
    Leaky,
    /// Sliding window: fires when `capacity` events fall within `leak`.
    Window,
}

fn default_ban() -> DecisionType {
    DecisionType::Ban
}

fn default_ip() -> Scope {
    Scope::Ip
}

/// One scenario, as written in the config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioSpec {
    pub name: String,
    /// Rule names; a trailing `*` matches a prefix (`sshd-*`).
    pub rules: Vec<String>,
    #[serde(default)]
    pub kind: BucketKind,
    /// Leaky: overflows when the level would exceed it. Window: fires at this many events.
    pub capacity: u32,
    /// Leaky: time to leak one event. Window: the window (fail2ban's findtime).
    #[serde(with = "humantime_serde")]
    pub leak: Duration,
    /// Count only new values of this field (`user`, `path`, ...).
    #[serde(default)]
    pub distinct: Option<String>,
    /// After firing, ignore the key for this long.
    #[serde(default, with = "humantime_serde")]
    pub quiet: Duration,
    #[serde(default = "default_ban")]
    pub decision: DecisionType,
    /// `range`: the alert's target is the key widened to /24 (IPv4) or /64 (IPv6).
    #[serde(default = "default_ip")]
    pub scope: Scope,
    /// Base decision duration; `0s`: the scenario raises alerts (stored, with
    /// their evidence) but decides nothing, like CrowdSec's `remediation: false`.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// IPv6 grouping prefix (default: [`EngineOptions::default_v6_prefix`]).
    #[serde(default)]
    pub v6_prefix: Option<u8>,
    /// Networks this scenario never counts (a fail2ban jail's own `ignoreip`;
    /// `[decisions] allowlist` is the global one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<IpNet>,
}

/// Why scenarios cannot be built. Every message names the scenario.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// A rule pattern that names no rule of the matcher.
    #[error("scenario `{scenario}`: no rule is named `{pattern}`; known rules: {known}")]
    NoRule {
        scenario: String,
        pattern: String,
        known: String,
    },
    /// A parameter out of range.
    #[error("scenario `{scenario}`: {problem}")]
    BadParam { scenario: String, problem: String },
    /// Two scenarios with one name.
    #[error("scenario `{scenario}` is defined twice; give each scenario a unique name")]
    Duplicate { scenario: String },
}

/// Limits of the engine.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Most buckets tracked over all scenarios; the coldest is evicted beyond.
    pub max_keys: usize,
    /// Lines of evidence kept per bucket (each truncated to 256 bytes; at most 8).
    pub evidence_lines: usize,
    /// IPv6 grouping for scenarios that do not set `v6_prefix`.
    pub default_v6_prefix: u8,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            max_keys: 1_000_000,
            evidence_lines: 3,
            default_v6_prefix: 64,
        }
    }
}

/// Hits of one rule.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RuleCount {
    pub name: String,
    pub hits: u64,
}

/// Alerts of one scenario.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ScenarioCount {
    pub name: String,
    pub alerts: u64,
}

/// Counters of an engine (cheap to read; updated per line without allocating).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    /// Lines fed.
    pub lines: u64,
    /// Lines some rule matched (including not-a-failure matches).
    pub matched: u64,
    /// Matched lines that are not failures (fail2ban's NOFAIL): they feed no scenario.
    pub nofail: u64,
    /// Hits per rule, indexed like [`Engine::rules`].
    pub rules: Vec<RuleCount>,
    /// Alerts per scenario, in the order given.
    pub scenarios: Vec<ScenarioCount>,
    /// Keys tracked now: buckets, plus first hits (one per address for all its scenarios).
    pub keys_tracked: usize,
    /// Keys (first hits, then buckets) evicted because `max_keys` was reached.
    pub keys_evicted: u64,
}

/// What `explain` makes of one line (the JSON of `shield explain`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explain {
    pub matched: bool,
    pub rule: Option<String>,
    pub host: Option<String>,
    /// RFC 3339, UTC.
    pub time: Option<String>,
    pub fields: BTreeMap<String, String>,
}

/// Most evidence lines per bucket.
const EVIDENCE_MAX: usize = 8;
const DISTINCT_MAX: usize = 64;
const WINDOW_MAX: u32 = 10_000;
/// True if the rule-name pattern `pat` (exact, or a prefix ending in `*`, as a scenario's
/// `rules` and a config's rule lists write it) names `rule`.
pub fn rule_matches(pat: &str, rule: &str) -> bool {
    match pat.strip_suffix('*') {
        Some(prefix) => rule.starts_with(prefix),
        None => pat == rule,
    }
}

const NIL: u32 = u32::MAX;

struct Scen {
    name: String,
    kind: BucketKind,
    capacity: u32,
    leak_s: f64,
    window_s: i64,
    /// Index of the counted field in [`Matcher::distinct`].
    distinct: Option<u16>,
    quiet_s: i64,
    decision: DecisionType,
    scope: Scope,
    duration_s: u64,
    v6_prefix: u8,
    ignore: Vec<IpNet>,
}

/// A tracked key: a scenario and an address grouped by its prefix
/// ([`GROUP`] as `scen` for a first hit, which serves every scenario).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    addr: [u64; 2],
    scen: u16,
    v6: bool,
    plen: u8,
}

/// The `scen` of a first hit's key.
const GROUP: u16 = u16::MAX;

impl Key {
    fn addr(&self) -> u128 {
        (u128::from(self.addr[0]) << 64) | u128::from(self.addr[1])
    }

    fn net(&self) -> IpNet {
        if self.v6 {
            IpNet::V6(Ipv6Net::new(self.addr().into(), self.plen).expect("prefix from key_for"))
        } else {
            IpNet::V4(
                Ipv4Net::new((self.addr() as u32).into(), self.plen).expect("prefix from key_for"),
            )
        }
    }

    fn with_scen(self, scen: u16) -> Key {
        Key { scen, ..self }
    }
}

/// One scenario's state for one key.
struct Bucket {
    level: f64,
    last: UnixTime,
    first_seen: UnixTime,
    quiet_until: UnixTime,
    key: Key,
    prev: u32,
    next: u32,
    events: u32,
    /// Hashes of distinct values seen (a ring when full; allocated for
    /// scenarios with `distinct` only).
    seen: Vec<u64>,
    /// Window kind: times of the last `capacity` events (a ring).
    times: Vec<UnixTime>,
    times_next: u16,
    seen_next: u8,
    /// Evidence ring: references into the [`EvidenceLog`].
    ev_next: u8,
    ev_len: u8,
    ev: [u32; EVIDENCE_MAX],
    /// What the latest connections have counted already.
    conns: ConnCredit,
}

/// An address's first hit, kept for all the scenarios it feeds until a
/// second hit (which replays it into buckets) or its eviction. Only hits
/// that decide nothing alone are kept this way.
struct First {
    key: Key,
    rule: u16,
    /// The distinct field the counting scenarios read (`NO_FIELD`: none) and
    /// its value's hash.
    field: u16,
    hash: u64,
    time: UnixTime,
    /// Bit `i`: scenario `by_rule[rule][i]` counted the hit.
    mask: u32,
    conn: u32,
    /// Evidence reference.
    ev: u32,
    prev: u32,
    next: u32,
    weight: u16,
    once: bool,
}

const NO_FIELD: u16 = u16::MAX;

/// Per bucket, the last few connections (sshd process ids) and what each
/// has counted, so a connection counts as many attempts as it has attempt
/// lines (`Failed password`, a `message repeated N times` of it = N) and at
/// least one when it has only lines that sum it up (`Invalid user`,
/// `Disconnected from authenticating user ... [preauth]`, `maximum
/// authentication attempts exceeded`): `Invalid user x` followed by `Failed
/// password for invalid user x` is one attempt, not two. The same summing-up
/// line again in one connection (which sshd never writes, but hand-made and
/// relayed logs do) counts as another attempt. Fixed size, no allocation; a
/// connection pushed out of the ring counts afresh.
#[derive(Clone, Copy, Default)]
struct ConnCredit {
    slots: [ConnSlot; CONN_SLOTS],
    next: u8,
}

#[derive(Clone, Copy, Default)]
struct ConnSlot {
    /// The connection (0: a free slot; a line of connection 0 never gets one).
    conn: u32,
    /// Attempts counted so far (saturating).
    attempts: u16,
    /// The rule of the first summing-up line (+1, saturating; 0: none).
    once_rule: u16,
}

const CONN_SLOTS: usize = 8;

impl ConnCredit {
    /// How much a line of connection `conn` adds: an attempt line adds
    /// `w` attempts, a summing-up line (`once`) adds nothing; the total of a
    /// connection is max(attempts, 1). Returns the increase of that total.
    fn weight(&mut self, conn: u32, rule: u32, once: bool, w: u32) -> u32 {
        // A slot found has counted a line of its connection: its total is
        // at least 1. (Lines of connection 0 never come here.)
        let (i, counted) = match self.slots.iter().position(|s| s.conn == conn) {
            Some(i) => (i, true),
            None => {
                let i = self.next as usize;
                self.next = ((i + 1) % CONN_SLOTS) as u8;
                self.slots[i] = ConnSlot {
                    conn,
                    ..ConnSlot::default()
                };
                (i, false)
            }
        };
        let s = &mut self.slots[i];
        let attempts = u32::from(s.attempts);
        let before = attempts.max(u32::from(counted));
        let key = u16::try_from(rule.saturating_add(1)).unwrap_or(u16::MAX);
        let attempts = if !once {
            attempts.saturating_add(w)
        } else if s.once_rule == key {
            // The same summary again: another attempt.
            attempts.max(1).saturating_add(w)
        } else {
            if s.once_rule == 0 {
                s.once_rule = key;
            }
            attempts
        };
        s.attempts = u16::try_from(attempts).unwrap_or(u16::MAX);
        attempts.max(1) - before
    }
}

impl Bucket {
    fn reset(&mut self) {
        self.level = 0.0;
        self.events = 0;
        self.seen.clear();
        self.seen_next = 0;
        self.times.clear();
        self.times_next = 0;
        self.ev_len = 0;
        self.ev_next = 0;
        self.conns = ConnCredit::default();
    }
}

/// What scenarios read of one failure hit, owned and `Send`: the rules stage
/// ([`Matcher`]) can run on another thread than the scenarios ([`Scenarios`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Event {
    rule: u32,
    host: Addr,
    /// The hit's time, or the clock for a line without one.
    time: UnixTime,
    /// The `repeat` field, 1 to 1000.
    weight: u32,
    /// The connection the line belongs to (0: unknown) and whether the line
    /// sums it up rather than recording attempts (see [`ConnCredit`]).
    conn: u32,
    once: bool,
    /// Index in [`Matcher::distinct`] and hash of the value of each counted
    /// field the hit carries: at most one per field of the hit. (Two arrays
    /// rather than pairs: no padding, this is copied for every hit.)
    distinct_field: [u16; MAX_FIELDS],
    distinct_hash: [u64; MAX_FIELDS],
    n_distinct: u8,
}

impl Event {
    /// The event of a failure hit: its `repeat` field (the weight, 1 when
    /// absent or not a number) and the counted fields it carries, as
    /// (index in [`Matcher::distinct`], value).
    fn new<'v>(
        rule: u32,
        host: Addr,
        time: UnixTime,
        repeat: Option<&str>,
        counted: impl Iterator<Item = (u16, &'v str)>,
        hasher: &foldhash::fast::RandomState,
    ) -> Event {
        let mut ev = Event {
            rule,
            host,
            time,
            weight: repeat
                .and_then(|r| r.parse::<u32>().ok())
                .unwrap_or(1)
                .clamp(1, 1000),
            conn: 0,
            once: false,
            distinct_field: [0; MAX_FIELDS],
            distinct_hash: [0; MAX_FIELDS],
            n_distinct: 0,
        };
        // Distinct names find distinct fields, so this never overflows.
        for (f, v) in counted {
            let n = ev.n_distinct as usize;
            if n < MAX_FIELDS {
                ev.distinct_field[n] = f;
                ev.distinct_hash[n] = hasher.hash_one(v);
                ev.n_distinct += 1;
            }
        }
        ev
    }

    fn distinct(&self, field: u16) -> Option<u64> {
        let n = self.n_distinct as usize;
        let i = self.distinct_field[..n].iter().position(|f| *f == field)?;
        Some(self.distinct_hash[i])
    }
}

/// What the rules made of one line.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Matched {
    /// The line's own time, if it has one.
    pub time: Option<UnixTime>,
    /// The rule that matched, if one did.
    pub rule: Option<u32>,
    /// The match is not a failure (fail2ban's NOFAIL).
    pub nofail: bool,
    /// What the scenarios take, for a failure hit.
    pub event: Option<Event>,
}

/// The rules stage of an [`Engine`]: a line in, a [`Matched`] out. It keeps
/// no counters and touches no scenario, so it can run ahead of the
/// [`Scenarios`] on its own thread; the results are the same as long as the
/// lines and clocks it is given are.
pub struct Matcher {
    matcher: EngineRules,
    stamps: StampCache,
    hasher: foldhash::fast::RandomState,
    /// Field names some scenario counts distinct values of.
    distinct: Vec<String>,
    /// Per rule: indexes in `distinct` its scenarios count.
    need: Vec<Vec<u16>>,
    /// A copy that scans lines for the original to settle
    /// ([`SplitMatcher::scanner`]).
    scanning: bool,
    /// A scanned line's time would have differed had the original found
    /// no hit there (see [`Matcher::scan_line`]).
    tainted: bool,
}

/// The rules an [`Engine`] is built from: Shield's own, which the engine
/// calls directly (their findings become events without a [`Hit`] in
/// between), or any other matcher through [`LineMatcher`] and, for replay on
/// several threads, [`SplitMatcher`].
pub enum Rules {
    Native(Box<NativeMatcher>),
    Other(Box<dyn SplitMatcher>),
}

impl Rules {
    /// The rules' names and services, indexed by [`Hit::rule`].
    pub fn rules(&self) -> &[RuleInfo] {
        match self {
            Rules::Native(m) => m.rules(),
            Rules::Other(m) => m.rules(),
        }
    }
}

impl From<NativeMatcher> for Rules {
    fn from(m: NativeMatcher) -> Self {
        Rules::Native(Box::new(m))
    }
}

impl From<Box<NativeMatcher>> for Rules {
    fn from(m: Box<NativeMatcher>) -> Self {
        Rules::Native(m)
    }
}

impl From<Box<dyn SplitMatcher>> for Rules {
    fn from(m: Box<dyn SplitMatcher>) -> Self {
        Rules::Other(m)
    }
}

/// An engine's rules, ready to run: [`Rules`] with what the engine reads
/// from Shield's own rules' findings.
enum EngineRules {
    Native {
        rules: Box<NativeMatcher>,
        plan: NativePlan,
    },
    Other(Box<dyn SplitMatcher>),
}

impl EngineRules {
    fn as_dyn(&self) -> &dyn SplitMatcher {
        match self {
            EngineRules::Native { rules, .. } => &**rules,
            EngineRules::Other(m) => &**m,
        }
    }

    fn as_dyn_mut(&mut self) -> &mut dyn SplitMatcher {
        match self {
            EngineRules::Native { rules, .. } => &mut **rules,
            EngineRules::Other(m) => &mut **m,
        }
    }
}

/// How a [`NativeMatcher`]'s findings become an [`Event`]: the field ids
/// [`event`] would look up by name.
#[derive(Clone)]
struct NativePlan {
    repeat: u16,
    /// Per rule: (index in [`Matcher::distinct`], field id) of each counted
    /// field some rule of the matcher reports, in the order of `need`.
    need: Vec<Vec<(u16, u16)>>,
}

/// The scenarios stage of an [`Engine`] and its counters.
pub struct Scenarios {
    scens: Vec<Scen>,
    by_rule: Vec<Vec<u16>>,
    hasher: foldhash::fast::RandomState,
    /// Buckets: a slab, its index by key, and a least-recently-used list.
    index: HashTable<u32>,
    slab: Vec<Bucket>,
    head: u32,
    tail: u32,
    /// First hits: a slab (`first_free` chains the free slots through
    /// `next`), its index by key, and a list from newest to oldest.
    first_index: HashTable<u32>,
    firsts: Vec<First>,
    first_head: u32,
    first_tail: u32,
    first_free: u32,
    /// Bucket slots freed by eviction, chained through `next`.
    free: u32,
    log: EvidenceLog,
    opts: EngineOptions,
    stats: Stats,
}

/// Rules plus scenarios: feed it lines, get alerts.
pub struct Engine {
    m: Matcher,
    st: Scenarios,
}

impl Engine {
    /// Resolves each scenario's rules against the matcher and checks its
    /// parameters. A scenario naming no existing rule is an error naming it.
    pub fn new(
        matcher: impl Into<Rules>,
        scenarios: &[ScenarioSpec],
        opts: EngineOptions,
    ) -> Result<Self, ScenarioError> {
        let matcher: Rules = matcher.into();
        let rules = matcher.rules();
        let mut by_rule = vec![Vec::new(); rules.len()];
        let mut scens = Vec::with_capacity(scenarios.len());
        let mut distinct: Vec<String> = Vec::new();
        if scenarios.len() >= u16::MAX as usize {
            return Err(ScenarioError::BadParam {
                scenario: scenarios[0].name.clone(),
                problem: "too many scenarios (at most 65534)".into(),
            });
        }
        for (si, s) in scenarios.iter().enumerate() {
            let bad = |problem: String| ScenarioError::BadParam {
                scenario: s.name.clone(),
                problem,
            };
            if scens.iter().any(|x: &Scen| x.name == s.name) {
                return Err(ScenarioError::Duplicate {
                    scenario: s.name.clone(),
                });
            }
            if s.rules.is_empty() {
                return Err(bad("`rules` is empty; list the rule names it counts".into()));
            }
            if s.leak.is_zero() {
                return Err(bad("`leak` must be longer than 0s, e.g. \"10s\"".into()));
            }
            if s.kind == BucketKind::Window && !(1..=WINDOW_MAX).contains(&s.capacity) {
                return Err(bad(format!(
                    "a window needs a `capacity` from 1 to {WINDOW_MAX}"
                )));
            }
            let v6_prefix = s.v6_prefix.unwrap_or(opts.default_v6_prefix);
            if v6_prefix > 128 {
                return Err(bad(format!("`v6_prefix` {v6_prefix} is over 128")));
            }
            for pat in &s.rules {
                let mut any = false;
                for (ri, r) in rules.iter().enumerate() {
                    if rule_matches(pat, &r.name) {
                        any = true;
                        if !by_rule[ri].contains(&(si as u16)) {
                            by_rule[ri].push(si as u16);
                        }
                    }
                }
                if !any {
                    let known = rules
                        .iter()
                        .map(|r| r.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ");
                    return Err(ScenarioError::NoRule {
                        scenario: s.name.clone(),
                        pattern: pat.clone(),
                        known: if known.is_empty() {
                            "(none)".into()
                        } else {
                            known
                        },
                    });
                }
            }
            scens.push(Scen {
                name: s.name.clone(),
                kind: s.kind,
                capacity: s.capacity,
                leak_s: s.leak.as_secs_f64(),
                window_s: s.leak.as_secs().max(1) as i64,
                distinct: s
                    .distinct
                    .as_ref()
                    .map(|f| match distinct.iter().position(|d| d == f) {
                        Some(i) => i as u16,
                        None => {
                            distinct.push(f.clone());
                            (distinct.len() - 1) as u16
                        }
                    }),
                quiet_s: s.quiet.as_secs() as i64,
                decision: s.decision,
                scope: s.scope,
                duration_s: s.duration.as_secs(),
                v6_prefix,
                ignore: s.ignore.clone(),
            });
        }
        let stats = Stats {
            rules: rules
                .iter()
                .map(|r| RuleCount {
                    name: r.name.clone(),
                    hits: 0,
                })
                .collect(),
            scenarios: scens
                .iter()
                .map(|s| ScenarioCount {
                    name: s.name.clone(),
                    alerts: 0,
                })
                .collect(),
            ..Stats::default()
        };
        let opts = EngineOptions {
            max_keys: opts.max_keys.max(1),
            evidence_lines: opts.evidence_lines.min(EVIDENCE_MAX),
            ..opts
        };
        let need: Vec<Vec<u16>> = by_rule
            .iter()
            .map(|ss| {
                let mut n: Vec<u16> = Vec::new();
                for &si in ss {
                    if let Some(f) = scens[si as usize].distinct {
                        if !n.contains(&f) {
                            n.push(f);
                        }
                    }
                }
                n
            })
            .collect();
        let matcher = match matcher {
            Rules::Native(rules) => {
                let plan = NativePlan {
                    repeat: rules.repeat_id(),
                    need: need
                        .iter()
                        .map(|fs| {
                            fs.iter()
                                .filter_map(|&d| Some((d, rules.field_id(&distinct[d as usize])?)))
                                .collect()
                        })
                        .collect(),
                };
                EngineRules::Native { rules, plan }
            }
            Rules::Other(m) => EngineRules::Other(m),
        };
        Ok(Engine {
            m: Matcher {
                matcher,
                stamps: StampCache::default(),
                hasher: foldhash::fast::RandomState::default(),
                distinct,
                need,
                scanning: false,
                tainted: false,
            },
            st: Scenarios {
                scens,
                by_rule,
                hasher: foldhash::fast::RandomState::default(),
                index: HashTable::new(),
                slab: Vec::new(),
                head: NIL,
                tail: NIL,
                first_index: HashTable::new(),
                firsts: Vec::new(),
                first_head: NIL,
                first_tail: NIL,
                first_free: NIL,
                free: NIL,
                log: EvidenceLog::default(),
                opts,
                stats,
            },
        })
    }

    /// The two stages, to run on two threads: each line goes through
    /// [`Matcher::match_line`], then in the same order through
    /// [`Scenarios::apply`] (what [`Engine::feed`] does on one thread).
    pub fn stages(&mut self) -> (&mut Matcher, &mut Scenarios) {
        (&mut self.m, &mut self.st)
    }

    /// One line (no newline). `now`: the clock (log time in replay, wall time
    /// live); used for lines without a stamp and for the year of syslog stamps.
    /// Returns the line's own time if it had one. Calls `on_alert` for each
    /// scenario that overflows.
    pub fn feed(
        &mut self,
        line: &str,
        now: UnixTime,
        on_alert: &mut dyn FnMut(Alert),
    ) -> Option<UnixTime> {
        let m = self.m.match_line(line, now);
        self.st.apply(&m, line, on_alert);
        m.time
    }

    /// What the rules make of `line`; no scenario state or counter is touched.
    pub fn explain(&mut self, line: &str, now: UnixTime) -> Explain {
        match self.m.matcher.as_dyn_mut().match_line(line, now) {
            Some(h) => {
                let (rule, host, time) = (h.rule as usize, h.host.to_string(), h.time);
                let mut fields: BTreeMap<String, String> = h
                    .fields()
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                if h.nofail {
                    fields.insert("nofail".into(), "true".into());
                }
                let rule = self
                    .m
                    .matcher
                    .as_dyn()
                    .rules()
                    .get(rule)
                    .map(|r| r.name.clone());
                Explain {
                    matched: true,
                    rule,
                    host: Some(host),
                    time: time.map(to_rfc3339),
                    fields,
                }
            }
            None => Explain {
                matched: false,
                rule: None,
                host: None,
                time: self.m.line_time(line, now).map(to_rfc3339),
                fields: BTreeMap::new(),
            },
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.st.stats
    }

    pub fn rules(&self) -> &[RuleInfo] {
        self.m.matcher.as_dyn().rules()
    }
}

impl Matcher {
    /// An independent copy for another thread (see [`SplitMatcher::fork`]),
    /// with the same hash keys, so distinct values count alike whichever copy
    /// matched them. Rules that carry state from line to line give a
    /// scanning copy instead ([`SplitMatcher::scanner`]): its lines are
    /// matched with [`Matcher::scan_line`] and settled by the original.
    pub fn fork(&self) -> Option<Matcher> {
        let (matcher, scanning) = match &self.matcher {
            EngineRules::Native { rules, plan } => (
                EngineRules::Native {
                    rules: rules.clone(),
                    plan: plan.clone(),
                },
                false,
            ),
            EngineRules::Other(m) => match m.fork() {
                Some(f) => (EngineRules::Other(f), false),
                None => (EngineRules::Other(m.scanner()?), true),
            },
        };
        Some(Matcher {
            matcher,
            stamps: StampCache::default(),
            hasher: self.hasher.clone(),
            distinct: self.distinct.clone(),
            need: self.need.clone(),
            scanning,
            tainted: false,
        })
    }

    /// [`Matcher::match_line`], on any copy: on a scanning one, a line some
    /// rule may take gets a record in `rec` for [`Matcher::settle`], and
    /// its index is returned beside a [`Matched`] with no rule yet.
    pub fn scan_line(
        &mut self,
        line: &str,
        now: UnixTime,
        rec: &mut Vec<u32>,
    ) -> (Matched, Option<u32>) {
        if !self.scanning {
            return (self.match_line(line, now), None);
        }
        let at = rec.len();
        rec.extend([now as u32, (now >> 32) as u32]);
        let Some(time) = self.matcher.as_dyn_mut().scan(line, now, rec) else {
            rec.truncate(at);
            return (unmatched(None, &mut self.stamps, line, now), None);
        };
        // The original settles the line to a hit with this time, or to no
        // hit with the time the engine reads itself: when those differ, the
        // clock after this line is not known here.
        if time != line_time(&mut self.stamps, line, now) {
            self.tainted = true;
        }
        let m = Matched {
            time,
            ..Matched::default()
        };
        (m, Some(at as u32))
    }

    /// On the original: what the rules make of `line`, which a scanning copy
    /// gave record `at` of `rec`. Lines must be settled in order.
    pub fn settle(&mut self, line: &str, rec: &[u32], at: u32) -> Matched {
        let at = at as usize;
        let now = (rec[at] as i64) | ((rec[at + 1] as i64) << 32);
        let matcher = self.matcher.as_dyn_mut();
        match matcher.settle(line, &rec[at + 2..]) {
            Some(hit) => matched(&hit, &self.hasher, &self.distinct, &self.need, now),
            None => unmatched(None, &mut self.stamps, line, now),
        }
    }

    /// See [`SplitMatcher::carry`]: `None` also when a scanned line's time
    /// was not known for sure.
    pub fn carry(&self) -> Option<Carry> {
        if self.tainted {
            return None;
        }
        self.matcher.as_dyn().carry()
    }

    /// See [`SplitMatcher::set_carry`].
    pub fn set_carry(&mut self, carry: Carry) {
        self.tainted = false;
        self.matcher.as_dyn_mut().set_carry(carry);
    }

    /// One line (no newline) through the rules; `now` as for [`Engine::feed`].
    pub fn match_line(&mut self, line: &str, now: UnixTime) -> Matched {
        if matches!(self.matcher, EngineRules::Native { .. }) {
            let m = self.match_native(line, now);
            debug_assert_eq!(m, self.match_any(line, now), "{line}");
            return m;
        }
        self.match_any(line, now)
    }

    /// [`Matcher::match_line`] for Shield's own rules: the event is read
    /// from the rules' findings by field id, as [`event`] reads it from the
    /// [`Hit`] by name.
    fn match_native(&mut self, line: &str, now: UnixTime) -> Matched {
        let Matcher {
            matcher: EngineRules::Native { rules: n, plan },
            stamps,
            hasher,
            ..
        } = self
        else {
            unreachable!("called for native rules only");
        };
        let (found, time) = n.find(line, now);
        let Some(f) = found else {
            return unmatched(n.unmatched_stamp(), stamps, line, now);
        };
        let mut m = Matched {
            time,
            rule: Some(f.rule()),
            nofail: f.nofail(),
            event: None,
        };
        if !f.nofail() {
            let need = plan.need.get(f.rule() as usize).map_or(&[][..], |n| &n[..]);
            let mut ev = Event::new(
                f.rule(),
                f.host(),
                time.unwrap_or(now),
                f.value(line, plan.repeat),
                need.iter()
                    .filter_map(|&(d, id)| Some((d, f.value(line, id)?))),
                hasher,
            );
            (ev.conn, ev.once) = f.conn();
            m.event = Some(ev);
        }
        m
    }

    /// [`Matcher::match_line`] through [`LineMatcher::match_line`].
    fn match_any(&mut self, line: &str, now: UnixTime) -> Matched {
        let matcher = self.matcher.as_dyn_mut();
        match matcher.match_line(line, now) {
            Some(hit) => matched(&hit, &self.hasher, &self.distinct, &self.need, now),
            None => unmatched(matcher.unmatched_stamp(), &mut self.stamps, line, now),
        }
    }

    fn line_time(&mut self, line: &str, now: UnixTime) -> Option<UnixTime> {
        line_time(&mut self.stamps, line, now)
    }
}

/// A line no rule took: its time is the stamp the rules read on it
/// (`stamp`, see [`LineMatcher::unmatched_stamp`]), else read here.
fn unmatched(
    stamp: Option<UnixTime>,
    stamps: &mut StampCache,
    line: &str,
    now: UnixTime,
) -> Matched {
    debug_assert!(
        stamp.is_none() || stamp == line_time(stamps, line, now),
        "{line}"
    );
    Matched {
        time: stamp.or_else(|| line_time(stamps, line, now)),
        ..Matched::default()
    }
}

/// What a rule's [`Hit`] makes: its event, unless the hit is no failure.
fn matched(
    hit: &Hit<'_>,
    hasher: &foldhash::fast::RandomState,
    distinct: &[String],
    need: &[Vec<u16>],
    now: UnixTime,
) -> Matched {
    Matched {
        time: hit.time,
        rule: Some(hit.rule),
        nofail: hit.nofail,
        event: (!hit.nofail).then(|| event(hit, hasher, distinct, need, now)),
    }
}

fn event(
    hit: &Hit<'_>,
    hasher: &foldhash::fast::RandomState,
    distinct: &[String],
    need: &[Vec<u16>],
    now: UnixTime,
) -> Event {
    let need = need.get(hit.rule as usize).map_or(&[][..], |n| &n[..]);
    let mut ev = Event::new(
        hit.rule,
        hit.host,
        hit.time.unwrap_or(now),
        hit.field("repeat"),
        need.iter()
            .filter_map(|&f| Some((f, hit.field(&distinct[f as usize])?))),
        hasher,
    );
    (ev.conn, ev.once) = (hit.conn, hit.once);
    ev
}

impl Scenarios {
    /// Counts what the rules made of `line` and runs the scenarios over it;
    /// lines must come in the order they were matched in.
    pub fn apply(&mut self, m: &Matched, line: &str, on_alert: &mut dyn FnMut(Alert)) {
        self.stats.lines += 1;
        self.count(m);
        if let Some(ev) = &m.event {
            self.on_event(ev, line, on_alert);
        }
    }

    /// Counts `n` lines no rule matched, in one step.
    pub fn unmatched(&mut self, n: u64) {
        self.stats.lines += n;
    }

    fn count(&mut self, m: &Matched) {
        let Some(rule) = m.rule else { return };
        self.stats.matched += 1;
        if let Some(r) = self.stats.rules.get_mut(rule as usize) {
            r.hits += 1;
        }
        if m.nofail {
            self.stats.nofail += 1;
        }
    }

    fn on_event(&mut self, ev: &Event, line: &str, on_alert: &mut dyn FnMut(Alert)) {
        let Some(scens) = self.by_rule.get(ev.rule as usize) else {
            return;
        };
        let n = scens.len();
        // The scenarios that count the hit: whether they share one key (one
        // IPv6 grouping) and read at most one distinct field, and whether
        // the hit would decide something on its own.
        let mut mask = 0u32;
        let mut shared: Option<Key> = None;
        let mut compact = ev.rule < u32::from(u16::MAX) && n <= 32;
        let (mut field, mut hash) = (NO_FIELD, 0);
        for i in 0..n {
            let s = &self.scens[self.by_rule[ev.rule as usize][i] as usize];
            let Some(d) = counts(s, ev) else { continue };
            mask |= 1u32.checked_shl(i as u32).unwrap_or(0);
            let k = make_key(GROUP, ev.host, s.v6_prefix);
            match shared {
                None => shared = Some(k),
                Some(x) if x != k => compact = false,
                Some(_) => {}
            }
            if let (Some(f), Some(h)) = (s.distinct, d) {
                if field == NO_FIELD {
                    (field, hash) = (f, h);
                } else if field != f {
                    compact = false;
                }
            }
            compact &= !fires_alone(s, ev);
        }
        let Some(group) = shared else { return };
        // A first hit of this address (under any grouping the scenarios use)
        // becomes buckets before this hit counts.
        let mut had_first = false;
        for i in 0..n {
            let s = &self.scens[self.by_rule[ev.rule as usize][i] as usize];
            if i > 0
                && s.v6_prefix == self.scens[self.by_rule[ev.rule as usize][0] as usize].v6_prefix
            {
                continue;
            }
            had_first |= self.take_first(make_key(GROUP, ev.host, s.v6_prefix));
        }
        if compact && !had_first && !self.has_bucket(group, ev.rule, mask) {
            self.push_first(group, ev, mask, field, hash, line);
            return;
        }
        let mut ev_ref = None;
        for i in 0..n {
            let si = self.by_rule[ev.rule as usize][i];
            let s = &self.scens[si as usize];
            let Some(distinct) = counts(s, ev) else {
                continue;
            };
            let key = make_key(si, ev.host, s.v6_prefix);
            let slot = self.slot(key);
            let log = &mut self.log;
            let step = Step {
                time: ev.time,
                rule: ev.rule,
                weight: ev.weight,
                conn: ev.conn,
                once: ev.once,
                distinct,
                ev: *ev_ref.get_or_insert_with(|| log.push(line)),
            };
            if let Some(alert) = self.event(si as usize, slot, &step) {
                self.stats.scenarios[si as usize].alerts += 1;
                on_alert(alert);
            }
        }
    }

    /// Whether a scenario of `mask` (bits over `by_rule[rule]`) has a bucket
    /// for `group`.
    fn has_bucket(&self, group: Key, rule: u32, mask: u32) -> bool {
        let scens = &self.by_rule[rule as usize];
        (0..scens.len().min(32))
            .filter(|i| mask & (1 << i) != 0)
            .any(|i| {
                let key = group.with_scen(scens[i]);
                let h = self.hasher.hash_one(key);
                self.index
                    .find(h, |&j| self.slab[j as usize].key == key)
                    .is_some()
            })
    }

    /// Tracks `ev` as the first hit of `group`.
    fn push_first(&mut self, group: Key, ev: &Event, mask: u32, field: u16, hash: u64, line: &str) {
        if self.tracked() >= self.opts.max_keys {
            self.evict();
        }
        let f = First {
            key: group,
            rule: ev.rule as u16,
            field,
            hash,
            time: ev.time,
            mask,
            conn: ev.conn,
            ev: self.log.push(line),
            prev: NIL,
            next: self.first_head,
            weight: ev.weight.min(u32::from(u16::MAX)) as u16,
            once: ev.once,
        };
        let i = if self.first_free != NIL {
            let i = self.first_free;
            self.first_free = self.firsts[i as usize].next;
            self.firsts[i as usize] = f;
            i
        } else {
            grow(&mut self.firsts, self.opts.max_keys);
            self.firsts.push(f);
            (self.firsts.len() - 1) as u32
        };
        if self.first_head != NIL {
            self.firsts[self.first_head as usize].prev = i;
        } else {
            self.first_tail = i;
        }
        self.first_head = i;
        let h = self.hasher.hash_one(group);
        let (firsts, hasher) = (&self.firsts, &self.hasher);
        self.first_index
            .insert_unique(h, i, |&j| hasher.hash_one(firsts[j as usize].key));
        self.stats.keys_tracked = self.tracked();
    }

    /// If `group` has a first hit: forgets it and replays it into buckets.
    fn take_first(&mut self, group: Key) -> bool {
        let h = self.hasher.hash_one(group);
        let firsts = &self.firsts;
        let Ok(e) = self
            .first_index
            .find_entry(h, |&j| firsts[j as usize].key == group)
        else {
            return false;
        };
        let (i, _) = e.remove();
        self.free_first(i);
        let f = &self.firsts[i as usize];
        let (rule, mask, field, hash) = (f.rule, f.mask, f.field, f.hash);
        let step = Step {
            time: f.time,
            rule: u32::from(f.rule),
            weight: u32::from(f.weight),
            conn: f.conn,
            once: f.once,
            distinct: None,
            ev: f.ev,
        };
        for b in 0..self.by_rule[rule as usize].len().min(32) {
            if mask & (1 << b) == 0 {
                continue;
            }
            let si = self.by_rule[rule as usize][b];
            let distinct = (self.scens[si as usize].distinct == Some(field)).then_some(hash);
            let slot = self.slot(group.with_scen(si));
            let fired = self.event(si as usize, slot, &Step { distinct, ..step });
            debug_assert!(
                fired.is_none(),
                "a first hit is kept only if it decides nothing"
            );
        }
        true
    }

    fn tracked(&self) -> usize {
        self.index.len() + self.first_index.len()
    }

    /// Makes room for one key: the oldest first hit goes, else the least
    /// recently used bucket.
    fn evict(&mut self) {
        self.stats.keys_evicted += 1;
        if self.first_tail != NIL {
            let i = self.first_tail;
            let h = self.hasher.hash_one(self.firsts[i as usize].key);
            if let Ok(e) = self.first_index.find_entry(h, |&j| j == i) {
                e.remove();
            }
            self.free_first(i);
        } else if self.tail != NIL {
            let i = self.tail;
            self.unlink(i);
            let h = self.hasher.hash_one(self.slab[i as usize].key);
            if let Ok(e) = self.index.find_entry(h, |&j| j == i) {
                e.remove();
            }
            self.slab[i as usize].next = self.free;
            self.free = i;
        }
        self.stats.keys_tracked = self.tracked();
    }

    /// Unlinks first hit `i` and puts its slot on the free list (its fields
    /// stay readable until the slot is reused).
    fn free_first(&mut self, i: u32) {
        let (p, n) = (self.firsts[i as usize].prev, self.firsts[i as usize].next);
        if p == NIL {
            self.first_head = n
        } else {
            self.firsts[p as usize].next = n
        }
        if n == NIL {
            self.first_tail = p
        } else {
            self.firsts[n as usize].prev = p
        }
        self.firsts[i as usize].next = self.first_free;
        self.first_free = i;
    }

    /// The bucket for `key`, created (evicting if the table is full) if
    /// needed, and moved to the front of the LRU list.
    fn slot(&mut self, key: Key) -> u32 {
        let h = self.hasher.hash_one(key);
        let slab = &self.slab;
        if let Some(&i) = self.index.find(h, |&j| slab[j as usize].key == key) {
            self.unlink(i);
            self.push_front(i);
            return i;
        }
        if self.tracked() >= self.opts.max_keys {
            self.evict();
        }
        let s = &self.scens[key.scen as usize];
        let seen_cap = if s.distinct.is_some() { seen_cap(s) } else { 0 };
        let times_cap = if s.kind == BucketKind::Window {
            s.capacity as usize
        } else {
            0
        };
        let fresh = Bucket {
            level: 0.0,
            last: 0,
            first_seen: 0,
            quiet_until: i64::MIN,
            key,
            prev: NIL,
            next: NIL,
            events: 0,
            seen: Vec::new(),
            times: Vec::new(),
            times_next: 0,
            seen_next: 0,
            ev_next: 0,
            ev_len: 0,
            ev: [0; EVIDENCE_MAX],
            conns: ConnCredit::default(),
        };
        let i = if self.free != NIL {
            let i = self.free;
            self.free = self.slab[i as usize].next;
            let b = &mut self.slab[i as usize];
            // Keep the rings' memory when it fits this scenario.
            let (mut seen, mut times) = (std::mem::take(&mut b.seen), std::mem::take(&mut b.times));
            seen.clear();
            times.clear();
            if seen.capacity() != seen_cap {
                seen = Vec::with_capacity(seen_cap);
            }
            if times.capacity() != times_cap {
                times = Vec::with_capacity(times_cap);
            }
            *b = Bucket {
                seen,
                times,
                ..fresh
            };
            i
        } else {
            grow(&mut self.slab, self.opts.max_keys);
            self.slab.push(Bucket {
                seen: Vec::with_capacity(seen_cap),
                times: Vec::with_capacity(times_cap),
                ..fresh
            });
            (self.slab.len() - 1) as u32
        };
        let (slab, hasher) = (&self.slab, &self.hasher);
        self.index
            .insert_unique(h, i, |&j| hasher.hash_one(slab[j as usize].key));
        self.push_front(i);
        self.stats.keys_tracked = self.tracked();
        i
    }

    fn unlink(&mut self, i: u32) {
        let (p, n) = (self.slab[i as usize].prev, self.slab[i as usize].next);
        if p == NIL {
            self.head = n
        } else {
            self.slab[p as usize].next = n
        }
        if n == NIL {
            self.tail = p
        } else {
            self.slab[n as usize].prev = p
        }
    }

    fn push_front(&mut self, i: u32) {
        let h = self.head;
        {
            let b = &mut self.slab[i as usize];
            b.prev = NIL;
            b.next = h;
        }
        if h != NIL {
            self.slab[h as usize].prev = i;
        } else {
            self.tail = i;
        }
        self.head = i;
    }

    fn event(&mut self, si: usize, slot: u32, ev: &Step) -> Option<Alert> {
        let t = ev.time;
        let s = &self.scens[si];
        let evidence_lines = self.opts.evidence_lines;
        let b = &mut self.slab[slot as usize];
        if t < b.quiet_until {
            return None;
        }
        // Age the bucket.
        match s.kind {
            BucketKind::Leaky => {
                if b.events > 0 {
                    let dt = (t - b.last).max(0) as f64;
                    b.level = (b.level - dt / s.leak_s).max(0.0);
                    if b.level <= 0.0 {
                        b.reset();
                    }
                }
            }
            BucketKind::Window => {
                if b.events > 0 && t - b.last > s.window_s {
                    b.reset();
                }
            }
        }
        let weight = if ev.conn == 0 {
            ev.weight
        } else {
            match b.conns.weight(ev.conn, ev.rule, ev.once, ev.weight) {
                0 => return None,
                w => w,
            }
        };
        if let Some(h) = ev.distinct {
            if b.seen.contains(&h) {
                return None;
            }
            let cap = seen_cap(s);
            if b.seen.len() < cap {
                b.seen.push(h);
            } else {
                b.seen[b.seen_next as usize] = h;
                b.seen_next = ((b.seen_next as usize + 1) % cap) as u8;
            }
        }
        if b.events == 0 {
            b.first_seen = t;
        }
        b.last = b.last.max(t);
        b.events = b.events.saturating_add(weight);
        if evidence_lines > 0 {
            b.ev[b.ev_next as usize] = ev.ev;
            b.ev_next = ((b.ev_next as usize + 1) % evidence_lines) as u8;
            b.ev_len = (b.ev_len as usize + 1).min(evidence_lines) as u8;
        }
        let fire = match s.kind {
            BucketKind::Leaky => {
                b.level += weight as f64;
                b.level > s.capacity as f64
            }
            BucketKind::Window => {
                let cap = s.capacity as usize;
                for _ in 0..weight.min(s.capacity) {
                    if b.times.len() < cap {
                        b.times.push(t);
                    } else {
                        b.times[b.times_next as usize] = t;
                        b.times_next = ((b.times_next as usize + 1) % cap) as u16;
                    }
                }
                // With a full ring, `times_next` points at the oldest.
                if b.times.len() >= cap {
                    let oldest = b.times[b.times_next as usize % cap];
                    if t - oldest <= s.window_s {
                        b.first_seen = oldest;
                        true
                    } else {
                        false
                    }
                } else {
                    false
                }
            }
        };
        if !fire {
            return None;
        }
        let n = evidence_lines;
        let (len, next) = (b.ev_len as usize, b.ev_next as usize);
        let evidence = (0..len)
            .filter_map(|k| self.log.get(b.ev[(next + n - len + k) % n]))
            .collect();
        let alert = Alert {
            scenario: s.name.clone(),
            target: target(b.key.net(), s.scope),
            time: t,
            first_seen: b.first_seen,
            events: b.events,
            evidence,
            kind: s.decision,
            duration_s: s.duration_s,
        };
        b.reset();
        b.quiet_until = t.saturating_add(s.quiet_s);
        Some(alert)
    }
}

/// One hit as a bucket counts it (from an [`Event`] or a replayed [`First`]).
#[derive(Clone, Copy)]
struct Step {
    time: UnixTime,
    rule: u32,
    weight: u32,
    conn: u32,
    once: bool,
    distinct: Option<u64>,
    /// Evidence reference of the line.
    ev: u32,
}

/// Whether scenario `s` counts `ev`, and the distinct value it reads.
fn counts(s: &Scen, ev: &Event) -> Option<Option<u64>> {
    if !s.ignore.is_empty() && s.ignore.iter().any(|n| n.contains(&ev.host.ip())) {
        return None;
    }
    match s.distinct {
        // A hit without the field cannot add a new value.
        Some(f) => ev.distinct(f).map(Some),
        None => Some(None),
    }
}

/// Whether `ev` alone fires a fresh bucket of `s` (then it is not kept as a
/// first hit: it has to decide now).
fn fires_alone(s: &Scen, ev: &Event) -> bool {
    // A new connection's first line counts its weight, a summing-up one 1.
    let w = if ev.conn != 0 && ev.once {
        1
    } else {
        ev.weight
    };
    match s.kind {
        BucketKind::Leaky => w as f64 > s.capacity as f64,
        BucketKind::Window => w >= s.capacity,
    }
}

/// Makes room for one more in a full slab: by half its length (at least
/// 1024, at most up to `max`), not by doubling, since the slabs are most of
/// the engine's memory in a flood.
fn grow<T>(v: &mut Vec<T>, max: usize) {
    if v.len() == v.capacity() {
        let room = max.saturating_sub(v.len()).max(1);
        v.reserve_exact((v.len() / 2).max(1024).min(room));
    }
}

fn seen_cap(s: &Scen) -> usize {
    (s.capacity as usize + 1).clamp(4, DISTINCT_MAX)
}

fn make_key(si: u16, ip: Addr, v6_prefix: u8) -> Key {
    match key_for(ip, v6_prefix).get() {
        IpNet::V4(n) => Key {
            scen: si,
            v6: false,
            plen: n.prefix_len(),
            addr: [0, u64::from(u32::from(n.addr()))],
        },
        IpNet::V6(n) => Key {
            scen: si,
            v6: true,
            plen: n.prefix_len(),
            addr: {
                let a = u128::from(n.addr());
                [(a >> 64) as u64, a as u64]
            },
        },
    }
}

/// The alert target: the key itself, or for `range` scope the key widened to
/// /24 (IPv4) or /64 (IPv6) (never narrowed).
fn target(key: IpNet, scope: Scope) -> Net {
    Net::new(match (scope, key) {
        (Scope::Ip, k) => k,
        (Scope::Range, IpNet::V4(n)) => IpNet::V4(
            Ipv4Net::new(n.addr(), n.prefix_len().min(24))
                .expect("<= 32")
                .trunc(),
        ),
        (Scope::Range, IpNet::V6(n)) => IpNet::V6(
            Ipv6Net::new(n.addr(), n.prefix_len().min(64))
                .expect("<= 128")
                .trunc(),
        ),
    })
}

/// `s` cut to at most `max` bytes on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut i = max;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    &s[..i]
}

fn spec(
    name: &str,
    rules: &[&str],
    kind: BucketKind,
    capacity: u32,
    leak: u64,
    distinct: Option<&str>,
    quiet: u64,
    decision: DecisionType,
    duration: u64,
) -> ScenarioSpec {
    ScenarioSpec {
        name: name.into(),
        rules: rules.iter().map(|r| r.to_string()).collect(),
        kind,
        capacity,
        leak: Duration::from_secs(leak),
        distinct: distinct.map(str::to_string),
        quiet: Duration::from_secs(quiet),
        decision,
        scope: Scope::Ip,
        duration: Duration::from_secs(duration),
        v6_prefix: None,
        ignore: Vec::new(),
    }
}

const SSHD_FAILURES: &[&str] = &[
    "sshd-failed-password",
    "sshd-failed-invalid-user",
    "sshd-auth-failure",
    "sshd-user-unknown",
    "sshd-root-login-refused",
    "sshd-invalid-user",
    "sshd-user-not-allowed",
    "sshd-refused-connect",
    "sshd-disconnect-auth-fail",
    "sshd-max-auth-attempts",
    "sshd-too-many-auth",
    "sshd-preauth-user-close",
    "sshd-pam-old-failure",
];

/// Sensible default scenarios for the given packs (unknown names are ignored).
pub fn default_scenarios(packs: &[&str]) -> Vec<ScenarioSpec> {
    use BucketKind::{Leaky, Window};
    use DecisionType::{Ban, Throttle};
    const H: u64 = 3600;
    let mut out = Vec::new();
    let has = |p: &str| packs.contains(&p);
    if has("sshd") {
        // Guessing: 5 failures within 10 minutes (fail2ban's default jail),
        // so a burst bans at its 5th attempt and a paced one (a few attempts,
        // a pause, a few more) is caught too.
        out.push(spec(
            "sshd-bruteforce",
            SSHD_FAILURES,
            Window,
            5,
            600,
            None,
            60,
            Ban,
            4 * H,
        ));
        // Many user names from one address.
        out.push(spec(
            "sshd-user-enum",
            &[
                "sshd-invalid-user",
                "sshd-failed-invalid-user",
                "sshd-user-unknown",
                "sshd-user-not-allowed",
            ],
            Leaky,
            5,
            60,
            Some("user"),
            60,
            Ban,
            4 * H,
        ));
        // Low and slow: 15 failures within an hour.
        out.push(spec(
            "sshd-slow-bruteforce",
            SSHD_FAILURES,
            Window,
            15,
            H,
            None,
            300,
            Ban,
            24 * H,
        ));
        // PAM failures of other services with a remote host (fail2ban's
        // `pam-generic`), as fail2ban's default jail counts them.
        out.push(spec(
            "pam-bruteforce",
            &["pam-auth-failure"],
            Window,
            5,
            600,
            None,
            60,
            Ban,
            4 * H,
        ));
        // Scanners that never authenticate (fail2ban's aggressive mode).
        out.push(spec(
            "sshd-preauth-scanner",
            &[
                "sshd-no-ident",
                "sshd-bad-protocol",
                "sshd-banner-invalid",
                "sshd-negotiate",
            ],
            Leaky,
            5,
            60,
            None,
            60,
            Ban,
            H,
        ));
        // Bare `Connection closed by ADDR [preauth]` is what a TCP health check
        // leaves too: only a sustained flood (over ~1 per 2 s) counts.
        out.push(spec(
            "sshd-preauth-flood",
            &["sshd-preauth-close"],
            Leaky,
            30,
            2,
            None,
            60,
            Ban,
            H,
        ));
    }
    if has("nginx-access") || has("apache-access") {
        out.push(spec(
            "http-sensitive-probe",
            &["http-sensitive-path"],
            Leaky,
            4,
            60,
            Some("path"),
            60,
            Ban,
            4 * H,
        ));
        // One request for a known exploit's path is enough (CrowdSec's
        // http-cve-probing).
        out.push(spec(
            "http-cve-probe",
            &["http-cve-probe"],
            Leaky,
            0,
            60,
            None,
            60,
            Ban,
            4 * H,
        ));
        // Three admin interfaces that are not there.
        out.push(spec(
            "http-admin-probe",
            &["http-admin-probe"],
            Leaky,
            2,
            60,
            Some("path"),
            60,
            Ban,
            4 * H,
        ));
        // Four WordPress plugin or theme files that are not there.
        out.push(spec(
            "http-wordpress-scan",
            &["http-wordpress-scan"],
            Leaky,
            3,
            60,
            Some("path"),
            60,
            Ban,
            4 * H,
        ));
        out.push(spec(
            "http-4xx-burst",
            &[
                "http-4xx",
                "http-sensitive-path",
                "http-admin-probe",
                "http-wordpress-scan",
            ],
            Leaky,
            20,
            5,
            Some("path"),
            60,
            Ban,
            H,
        ));
        out.push(spec(
            "http-login-bruteforce",
            &["http-login-fail"],
            Leaky,
            5,
            30,
            None,
            60,
            Ban,
            H,
        ));
        out.push(spec(
            "http-bad-user-agent",
            &["http-bad-user-agent"],
            Leaky,
            1,
            60,
            None,
            60,
            Ban,
            24 * H,
        ));
    }
    if has("nginx-error") {
        out.push(spec(
            "http-basic-auth-bruteforce",
            &["nginx-auth-fail"],
            Leaky,
            5,
            30,
            None,
            60,
            Ban,
            H,
        ));
        out.push(spec(
            "http-rate-limited",
            &["nginx-limit-req", "nginx-limit-conn"],
            Leaky,
            30,
            2,
            None,
            60,
            Throttle,
            600,
        ));
    }
    if has("postfix") {
        out.push(spec(
            "postfix-sasl-bruteforce",
            &["postfix-sasl-fail"],
            Leaky,
            5,
            60,
            None,
            60,
            Ban,
            4 * H,
        ));
    }
    if has("dovecot") {
        out.push(spec(
            "dovecot-bruteforce",
            &["dovecot-*"],
            Leaky,
            5,
            60,
            None,
            60,
            Ban,
            4 * H,
        ));
    }
    out
}

mod evidence;
#[cfg(test)]
mod tests;
