//! Rules: Shield's built-in rule packs and user rules from the config, behind
//! one [`LineMatcher`]: [`NativeMatcher`].
//!
//! How a line is matched (one pass, captures only on hits, no allocation):
//! 1. the stamp at the start of the line is parsed through a date cache
//!    ([`crate::time::StampCache`]) and picks the family: syslog-style (BSD or
//!    ISO stamp, RFC 5424, or a bare `prog[pid]: msg` from journald), nginx
//!    error log, or a combined access log (the line starts with an address);
//! 2. syslog lines are routed by program name (`sshd`, `postfix/*`, `dovecot`)
//!    to that pack's rules; each rule names the literal its message starts
//!    with, so only rules whose literal matches run their regex (captures are
//!    read into reused [`regex::CaptureLocations`]);
//! 3. access and nginx-error lines are parsed by hand and classified with
//!    case-insensitive Aho-Corasick automatons (sensitive paths, bad agents);
//! 4. a line no built-in rule takes goes to the user rules: one [`RegexSet`]
//!    scan, then captures for the first rule that matched.
//!
//! The regex engine is the `regex` crate's (linear time), so a 64 KiB line
//! cannot make matching blow up. This module does not count events: that is
//! [`crate::scenario`].

mod http;
mod mail;
mod nginx_error;
#[doc(hidden)]
pub mod samples;
mod sshd;

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use regex::{CaptureLocations, Regex, RegexBuilder, RegexSet};
use shield_core::{Addr, Hit, LineMatcher, MAX_FIELDS, RuleInfo, SplitMatcher, UnixTime};

use crate::time::{StampCache, StampKind};

/// Every built-in rule pack, in the order their rules are numbered.
pub fn pack_names() -> &'static [&'static str] {
    &[
        "sshd",
        "nginx-access",
        "apache-access",
        "nginx-error",
        "postfix",
        "dovecot",
    ]
}

/// A user rule from the config: a regex over the whole line with named groups.
/// `host` is required (the address to blame); every other named group (user,
/// path, status, ...) becomes a field of the hit. A stamp at the start of the
/// line (syslog, ISO 8601, nginx error) is used as the line's time.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub name: String,
    pub service: String,
    pub regex: String,
}

/// A user rule checked and compiled: built once when the config is planned
/// and handed to every matcher that uses it (copies share the compiled
/// program), so a rule's regex is not compiled again when its engine starts.
#[derive(Clone, Debug)]
pub struct CustomRule {
    spec: RuleSpec,
    re: Regex,
}

impl CustomRule {
    /// Checks `spec` (a name and a service, a regex that compiles, a `host`
    /// group, at most `MAX_FIELDS - 1` other named groups) and compiles it.
    pub fn new(spec: RuleSpec) -> Result<Self, RuleError> {
        if spec.name.trim().is_empty() {
            return Err(RuleError::Empty { what: "name" });
        }
        if spec.service.trim().is_empty() {
            return Err(RuleError::Empty { what: "service" });
        }
        let re = RegexBuilder::new(&spec.regex)
            .build()
            .map_err(|e| RuleError::BadRegex {
                rule: spec.name.clone(),
                error: e.to_string(),
            })?;
        if !re.capture_names().any(|n| n == Some("host")) {
            return Err(RuleError::NoHostGroup { rule: spec.name });
        }
        let extra = re
            .capture_names()
            .flatten()
            .filter(|n| *n != "host")
            .count();
        if extra > MAX_FIELDS - 1 {
            return Err(RuleError::TooManyFields {
                rule: spec.name,
                count: extra,
                max: MAX_FIELDS - 1,
            });
        }
        Ok(CustomRule { spec, re })
    }

    /// The rule as written.
    pub fn spec(&self) -> &RuleSpec {
        &self.spec
    }
}

/// Every name in `packs` is a built-in pack.
fn check_packs(packs: &[&str]) -> Result<(), RuleError> {
    match packs.iter().find(|p| !pack_names().contains(p)) {
        Some(p) => Err(RuleError::UnknownPack {
            name: (*p).to_string(),
            known: pack_names().join(", "),
        }),
        None => Ok(()),
    }
}

/// Why a rule set cannot be built. Every message names the rule or pack.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// A pack name that is not built in.
    #[error("unknown rule pack `{name}`; the built-in packs are: {known}")]
    UnknownPack { name: String, known: String },
    /// A user rule's regex does not compile.
    #[error(
        "rule `{rule}`: the regex does not compile: {error}; fix the pattern (Rust `regex` syntax: no look-around or back-references)"
    )]
    BadRegex { rule: String, error: String },
    /// A user rule without a `(?P<host>...)` group.
    #[error(
        "rule `{rule}`: the regex has no `host` group; add one, e.g. `from (?P<host>[0-9a-fA-F:.]+)`"
    )]
    NoHostGroup { rule: String },
    /// A user rule with more named groups than a hit can carry.
    #[error(
        "rule `{rule}`: {count} named groups besides `host`, at most {max} are kept; remove or unname (`(?:...)`) the extra groups"
    )]
    TooManyFields {
        rule: String,
        count: usize,
        max: usize,
    },
    /// Two rules with one name.
    #[error("rule `{rule}` is defined twice; give each rule a unique name")]
    Duplicate { rule: String },
    /// A user rule with an empty name or service.
    #[error("a rule has an empty {what}; every rule needs a `name` and a `service`")]
    Empty { what: &'static str },
}

/// When a matched line is not a failure (fail2ban's `<F-NOFAIL>`).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Nofail {
    Never,
    Always,
    /// When the named capture group equals the value.
    IfGroup(&'static str, &'static str),
}

/// A built-in regex rule: its name, the literals its message may start with
/// (empty: always tried) and the pattern (anchored by the author).
pub(crate) struct RegexDef {
    pub name: &'static str,
    pub starts: &'static [&'static str],
    pub pattern: &'static str,
    pub nofail: Nofail,
    /// A hand-written parser equivalent to `pattern` for the hottest rules
    /// (tests check both agree); the regex is the specification.
    pub fast: Option<FastFn>,
    /// When not empty, the message must also contain one of these literals.
    pub also: &'static [&'static str],
    /// The message must contain none of these (forms where the client's
    /// text on both sides of the host leaves more than one reading).
    pub unless: &'static [&'static str],
}

/// A hand-written parser: the host and up to 3 named fields, as offsets into the message.
pub(crate) type FastFn = fn(&str) -> Option<Caps>;

/// What a [`FastFn`] found.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Caps {
    pub host: (usize, usize),
    /// (index in [`STATIC_NAMES`], start, end).
    pub fields: [(u8, usize, usize); 3],
    pub n: usize,
}

impl Caps {
    pub(crate) fn new(host: (usize, usize)) -> Self {
        Caps {
            host,
            fields: [(0, 0, 0); 3],
            n: 0,
        }
    }

    pub(crate) fn field(mut self, name: u8, s: usize, e: usize) -> Self {
        if self.n < 3 {
            self.fields[self.n] = (name, s, e);
            self.n += 1;
        }
        self
    }
}

/// A rule's regex, compiled the first time a line needs it: a replay of an
/// nginx log never needs the mail rules, and rules with a hand-written
/// parser need theirs only in tests. Copies (one per matcher thread) share
/// the compiled program and keep their own search caches and capture buffer.
#[derive(Clone)]
struct LazyRegex {
    pattern: &'static str,
    shared: Arc<OnceLock<Regex>>,
    local: Option<(Regex, CaptureLocations)>,
}

impl LazyRegex {
    /// A built-in pattern, not compiled yet.
    fn new(pattern: &'static str) -> Self {
        LazyRegex {
            pattern,
            shared: Arc::default(),
            local: None,
        }
    }

    /// A regex compiled already (user rules: checked when the config loads).
    fn compiled(re: Regex) -> Self {
        LazyRegex {
            pattern: "",
            shared: Arc::new(OnceLock::from(re)),
            local: None,
        }
    }

    /// Searches `hay`; the capture buffer, filled on a match.
    fn captures(&mut self, hay: &str) -> Option<&CaptureLocations> {
        let (re, locs) = self.local.get_or_insert_with(|| {
            let re = self.shared.get_or_init(|| {
                Regex::new(self.pattern).expect("built-in pattern compiles (covered by tests)")
            });
            (re.clone(), re.capture_locations())
        });
        re.captures_read(locs, hay)?;
        Some(locs)
    }
}

/// The capture names of a built-in pattern by group index (0: the whole
/// match), as [`Regex::capture_names`] gives them, read from the text
/// without compiling it: escapes, classes (nested ones too), `(?:`, `(?P<n>`
/// and `(?<n>`. A test checks every built-in pattern against its regex.
fn capture_names(p: &str) -> Vec<Option<&str>> {
    let b = p.as_bytes();
    let mut out = vec![None];
    let (mut i, mut class) = (0, 0usize);
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'[' => {
                if class == 0 {
                    // A `]` first in a class is a literal.
                    if b.get(i + 1) == Some(&b'^') {
                        i += 1;
                    }
                    if b.get(i + 1) == Some(&b']') {
                        i += 1;
                    }
                }
                class += 1;
            }
            b']' if class > 0 => class -= 1,
            b'(' if class == 0 => {
                let rest = &p[i + 1..];
                let named = rest.strip_prefix("?P<").or_else(|| rest.strip_prefix("?<"));
                match named {
                    Some(n) => out.push(n.split('>').next()),
                    None if rest.starts_with('?') => {}
                    None => out.push(None),
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// A regex rule with its reusable capture buffer.
#[derive(Clone)]
struct RxRule {
    idx: u32,
    starts: Vec<Prefix>,
    re: LazyRegex,
    host: usize,
    fields: Vec<(u16, usize)>,
    nofail_group: Option<(usize, &'static str)>,
    nofail_if: Option<(&'static str, &'static str)>,
    always_nofail: bool,
    fast: Option<FastFn>,
    /// Field ids of the names a fast parser reports.
    /// Per name of [`STATIC_NAMES`]: its field id, if the rule's regex has
    /// that group.
    fast_ids: [Option<u16>; STATIC_NAMES.len()],
    also: &'static [&'static str],
    unless: &'static [&'static str],
    /// The line sums up its connection rather than recording one attempt
    /// (see [`Found::conn`]).
    once: bool,
}

/// What a rule found, as offsets into the line, so the matcher can try several
/// rule families before borrowing itself for the [`Hit`].
#[derive(Clone, Copy)]
pub(crate) struct Found {
    rule: u32,
    host: Addr,
    nofail: bool,
    /// The connection the line belongs to (sshd's process id; 0: unknown),
    /// so a scenario counts a connection's lines as its attempts, not once
    /// per line (see [`crate::scenario`]).
    conn: u32,
    /// With `conn`: the line sums up the connection (`Invalid user`,
    /// `Disconnected from authenticating user`, ...) rather than recording
    /// one password attempt (`Failed password`).
    once: bool,
    fields: [(u16, u32, u32); MAX_FIELDS],
    n: u8,
}

impl Found {
    /// A finding on `host`, canonicalised (IPv4-mapped IPv6 is the IPv4 address).
    pub(crate) fn new(rule: u32, host: IpAddr) -> Self {
        Found {
            rule,
            host: Addr::new(host),
            nofail: false,
            conn: 0,
            once: false,
            fields: [(0, 0, 0); MAX_FIELDS],
            n: 0,
        }
    }

    pub(crate) fn rule(&self) -> u32 {
        self.rule
    }

    /// The connection id and whether the line sums the connection up.
    pub(crate) fn conn(&self) -> (u32, bool) {
        (self.conn, self.once)
    }

    pub(crate) fn host(&self) -> Addr {
        self.host
    }

    pub(crate) fn nofail(&self) -> bool {
        self.nofail
    }

    /// The first field named `name` (an id of [`NativeMatcher::field_id`])
    /// whose offsets cut `line` at character boundaries: what
    /// [`Hit::field`] gives for the hit [`NativeMatcher`] builds.
    pub(crate) fn value<'l>(&self, line: &'l str, name: u16) -> Option<&'l str> {
        self.fields[..self.n as usize]
            .iter()
            .find_map(|&(n, s, e)| {
                if n == name {
                    line.get(s as usize..e as usize)
                } else {
                    None
                }
            })
    }

    pub(crate) fn push(&mut self, name: u16, start: usize, end: usize) {
        if (self.n as usize) < MAX_FIELDS {
            self.fields[self.n as usize] = (name, start as u32, end as u32);
            self.n += 1;
        }
    }
}

/// Field names fast parsers may report.
const STATIC_NAMES: &[&str] = &["user", "method", "what", "reason"];
/// Indexes in [`STATIC_NAMES`], for [`Caps::field`].
pub(crate) const USER: u8 = 0;
pub(crate) const METHOD: u8 = 1;
pub(crate) const WHAT: u8 = 2;
pub(crate) const REASON: u8 = 3;

/// Interned field names: hits borrow them from the matcher.
#[derive(Clone, Default)]
pub(crate) struct Names(Vec<Box<str>>);

impl Names {
    /// The id of `name`, interned now if it is new.
    pub(crate) fn id(&mut self, name: &str) -> u16 {
        if let Some(i) = self.get(name) {
            return i;
        }
        self.0.push(name.into());
        (self.0.len() - 1) as u16
    }

    /// The id of `name`, if it is interned.
    fn get(&self, name: &str) -> Option<u16> {
        self.0.iter().position(|n| &**n == name).map(|i| i as u16)
    }
}

/// Byte offset of `sub` inside `line` (`sub` must be a subslice of `line`).
#[inline]
fn offset_in(line: &str, sub: &str) -> usize {
    sub.as_ptr() as usize - line.as_ptr() as usize
}

/// The regex rules of one program, with their first-byte dispatch table.
#[derive(Clone)]
struct Group {
    rules: Vec<RxRule>,
    masks: Box<[u64; 256]>,
}

impl Group {
    fn new(rules: Vec<RxRule>) -> Self {
        let masks = first_byte_masks(&rules);
        Group { rules, masks }
    }
}

/// Shield's native rule engine: the built-in packs plus user rules.
#[derive(Clone)]
pub struct NativeMatcher {
    infos: Vec<RuleInfo>,
    names: Names,
    stamps: StampCache,
    /// The time of the last line's stamp, when it was read exactly as
    /// [`line_time`] reads it (see [`LineMatcher::unmatched_stamp`]).
    stamp: Option<UnixTime>,
    sshd: Group,
    /// `pam_unix(SERVICE:auth)` failures of services other than sshd;
    /// built with the `sshd` pack.
    pam: Group,
    postfix: Group,
    dovecot: Group,
    http: Option<http::HttpRules>,
    nginx_err: Option<nginx_error::ErrorRules>,
    custom: Vec<RxRule>,
    custom_set: Option<RegexSet>,
    custom_hits: Vec<bool>,
    repeat_name: u16,
    /// Bytes of the lines seen so far (each with its newline).
    seen: u64,
    /// The last line's address and length, and where it started: the same
    /// line matched again (a caller checking itself) is not counted twice.
    /// A next line that happens to share both only makes `seen` run behind,
    /// which keeps more lines inside a guard window, never fewer.
    last_line: (usize, usize, u64),
    /// nginx-error hits are refused before this many bytes: the client may
    /// have written lines up to there (see [`nginx_error`]).
    nginx_guard: u64,
}

impl NativeMatcher {
    /// Builds a matcher from built-in packs (see [`pack_names`]) and user rules.
    /// `nginx-access` and `apache-access` read the same combined format, so
    /// they share one set of `http-*` rules (labelled with the first pack given).
    pub fn new(packs: &[&str], custom: &[RuleSpec]) -> Result<Self, RuleError> {
        check_packs(packs)?;
        let custom = custom
            .iter()
            .map(|s| CustomRule::new(s.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        Self::with_rules(packs, &custom)
    }

    /// Builds a matcher from built-in packs and user rules compiled already.
    pub fn with_rules(packs: &[&str], custom: &[CustomRule]) -> Result<Self, RuleError> {
        check_packs(packs)?;
        let mut m = NativeMatcher {
            infos: Vec::new(),
            names: Names::default(),
            stamps: StampCache::default(),
            stamp: None,
            sshd: Group::new(Vec::new()),
            pam: Group::new(Vec::new()),
            postfix: Group::new(Vec::new()),
            dovecot: Group::new(Vec::new()),
            http: None,
            nginx_err: None,
            custom: Vec::new(),
            custom_set: None,
            custom_hits: Vec::new(),
            repeat_name: 0,
            seen: 0,
            last_line: (0, 0, 0),
            nginx_guard: 0,
        };
        m.repeat_name = m.names.id("repeat");
        let has = |p: &str| packs.contains(&p);
        if has("sshd") {
            m.sshd = Group::new(m.compile_defs(sshd::DEFS, "sshd"));
            m.pam = Group::new(m.compile_defs(sshd::PAM, "pam"));
        }
        if let Some(svc) = packs
            .iter()
            .find(|p| **p == "nginx-access" || **p == "apache-access")
        {
            let base = m.infos.len() as u32;
            for name in http::RULE_NAMES {
                m.push_info(name, svc);
            }
            m.http = Some(http::HttpRules::new(base, &mut m.names));
        }
        if has("nginx-error") {
            let base = m.infos.len() as u32;
            for name in nginx_error::RULE_NAMES {
                m.push_info(name, "nginx-error");
            }
            m.nginx_err = Some(nginx_error::ErrorRules::new(base, &mut m.names));
        }
        if has("postfix") {
            m.postfix = Group::new(m.compile_defs(mail::POSTFIX, "postfix"));
        }
        if has("dovecot") {
            m.dovecot = Group::new(m.compile_defs(mail::DOVECOT, "dovecot"));
        }
        let mut pats = Vec::new();
        for c in custom {
            let (spec, re) = (&c.spec, &c.re);
            if m.infos.iter().any(|r| r.name == spec.name) {
                return Err(RuleError::Duplicate {
                    rule: spec.name.clone(),
                });
            }
            let idx = m.push_info(&spec.name, &spec.service);
            let names: Vec<Option<&str>> = re.capture_names().collect();
            let rule = m
                .rx_rule(
                    idx,
                    &[],
                    &names,
                    LazyRegex::compiled(re.clone()),
                    Nofail::Never,
                )
                .ok_or_else(|| RuleError::NoHostGroup {
                    rule: spec.name.clone(),
                })?;
            pats.push(spec.regex.clone());
            m.custom.push(rule);
        }
        if !pats.is_empty() {
            let set = RegexSet::new(&pats).map_err(|e| RuleError::BadRegex {
                rule: custom
                    .iter()
                    .map(|c| c.spec.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                error: e.to_string(),
            })?;
            m.custom_hits = vec![false; set.len()];
            m.custom_set = Some(set);
        }
        Ok(m)
    }

    /// Every built-in pack, no user rules.
    pub fn all() -> Self {
        Self::new(pack_names(), &[]).expect("built-in packs compile (covered by tests)")
    }

    fn push_info(&mut self, name: &str, service: &str) -> u32 {
        self.infos.push(RuleInfo {
            name: name.to_string(),
            service: service.to_string(),
        });
        (self.infos.len() - 1) as u32
    }

    fn compile_defs(&mut self, defs: &[RegexDef], service: &str) -> Vec<RxRule> {
        let mut out = Vec::with_capacity(defs.len());
        for d in defs {
            let names = capture_names(d.pattern);
            let idx = self.push_info(d.name, service);
            let mut rule = self
                .rx_rule(idx, d.starts, &names, LazyRegex::new(d.pattern), d.nofail)
                .expect("built-in pattern has a host group");
            rule.fast = d.fast;
            rule.also = d.also;
            rule.unless = d.unless;
            rule.once = service == "sshd" && !sshd::PER_ATTEMPT.contains(&d.name);
            for n in names.iter().flatten() {
                if let Some(k) = STATIC_NAMES.iter().position(|s| s == n) {
                    rule.fast_ids[k] = Some(self.names.id(n));
                }
            }
            out.push(rule);
        }
        out
    }

    fn rx_rule(
        &mut self,
        idx: u32,
        starts: &'static [&'static str],
        names: &[Option<&str>],
        re: LazyRegex,
        nofail: Nofail,
    ) -> Option<RxRule> {
        let mut host = None;
        let mut fields = Vec::new();
        let mut nofail_group = None;
        for (i, name) in names.iter().enumerate() {
            let Some(name) = *name else { continue };
            if name == "host" {
                host = Some(i);
            } else {
                fields.push((self.names.id(name), i));
            }
            if let Nofail::IfGroup(g, v) = nofail {
                if g == name {
                    nofail_group = Some((i, v));
                }
            }
        }
        Some(RxRule {
            idx,
            starts: starts.iter().map(|s| Prefix::new(s)).collect(),
            re,
            host: host?,
            fields,
            nofail_group,
            nofail_if: match nofail {
                Nofail::IfGroup(g, v) => Some((g, v)),
                _ => None,
            },
            always_nofail: matches!(nofail, Nofail::Always),
            fast: None,
            fast_ids: [None; STATIC_NAMES.len()],
            also: &[],
            unless: &[],
            once: false,
        })
    }

    /// Finds the built-in or user rule for `line`; the line's time separately.
    /// This is [`LineMatcher::match_line`] without the [`Hit`], and
    /// [`LineMatcher::unmatched_stamp`] holds after it as after `match_line`.
    pub(crate) fn find(&mut self, line: &str, now: UnixTime) -> (Option<Found>, Option<UnixTime>) {
        let b = line.as_bytes();
        self.stamp = None;
        let key = (line.as_ptr() as usize, line.len());
        let start = if (self.last_line.0, self.last_line.1) == key {
            self.last_line.2
        } else {
            let s = self.seen;
            self.seen += line.len() as u64 + 1;
            self.last_line = (key.0, key.1, s);
            s
        };
        let Some(&first) = b.first() else {
            return (None, None);
        };
        let mut time = None;
        let mut found = None;
        if let Some((t, n, kind)) = self.stamps.parse_line_start(line, now) {
            time = Some(t);
            self.stamp = time;
            found = match kind {
                StampKind::NginxError => match &self.nginx_err {
                    Some(r) => match r.find(line, n) {
                        Some(_) if start < self.nginx_guard => None,
                        None if r.may_continue(line, n) => {
                            self.nginx_guard = start + nginx_error::MAX_MESSAGE + 1;
                            None
                        }
                        f => f,
                    },
                    None => None,
                },
                StampKind::Syslog | StampKind::Iso8601 => self.syslog(line, &line[n..], true),
            };
        } else if first == b'<' {
            let (t, f) = self.pri_line(line, now);
            time = t;
            found = f;
        } else if let Some(h) = &mut self.http {
            if first.is_ascii_hexdigit() || first == b':' {
                if let Some((f, t, first)) = h.find(line) {
                    time = t;
                    found = f;
                    if first {
                        self.stamp = t;
                    }
                }
            }
        }
        let any_syslog = !(self.sshd.rules.is_empty()
            && self.postfix.rules.is_empty()
            && self.dovecot.rules.is_empty());
        if found.is_none() && time.is_none() && any_syslog {
            // A bare `prog[pid]: message` (journald, or a syslog without stamps).
            found = self.syslog(line, line, false);
        }
        if found.is_none() && self.custom_set.is_some() {
            found = self.custom(line);
        }
        (found, time)
    }

    /// `<PRI>` lines: RFC 5424 (`<34>1 TS HOST APP PROCID MSGID SD MSG`) or an
    /// RFC 3164 stamp after the priority.
    fn pri_line(&mut self, line: &str, now: UnixTime) -> (Option<UnixTime>, Option<Found>) {
        let Some(close) = line.as_bytes().iter().take(6).position(|&c| c == b'>') else {
            return (None, None);
        };
        let rest = &line[close + 1..];
        if let Some(r5424) = rest.strip_prefix("1 ") {
            let mut it = r5424.splitn(6, ' ');
            let (Some(ts), Some(_host), Some(app), Some(_pid), Some(_msgid), Some(sd_msg)) = (
                it.next(),
                it.next(),
                it.next(),
                it.next(),
                it.next(),
                it.next(),
            ) else {
                return (None, None);
            };
            let time = if ts == "-" {
                None
            } else {
                self.stamps.parse_line_start(ts, now).map(|x| x.0)
            };
            let msg = skip_structured_data(sd_msg);
            let msg = msg.strip_prefix('\u{feff}').unwrap_or(msg);
            return (time, self.dispatch_program(line, app, pid_of(_pid), msg));
        }
        match self.stamps.parse_line_start(rest, now) {
            Some((t, n, _)) => (Some(t), self.syslog(line, &rest[n..], true)),
            None => (None, None),
        }
    }

    /// `rest`: what follows the stamp (`host prog[pid]: msg`), or with no stamp
    /// (`has_host == false`) the whole `prog[pid]: msg`.
    fn syslog(&mut self, line: &str, rest: &str, has_host: bool) -> Option<Found> {
        let rest = rest.trim_start_matches(' ');
        let head = &rest.as_bytes()[..rest.len().min(96)];
        // The first `: ` (usually the first `:`).
        let mut colon = find_byte(b':', head)?;
        while head.get(colon + 1) != Some(&b' ') {
            colon += 1 + find_byte(b':', &head[colon + 1..])?;
        }
        let tag = &rest[..colon];
        let tag = if has_host {
            match rfind_byte(b' ', tag.as_bytes()) {
                Some(sp) => &tag[sp + 1..],
                // No host: the first word is the tag itself.
                None => tag,
            }
        } else if memchr::memchr(b' ', tag.as_bytes()).is_some() {
            return None;
        } else {
            tag
        };
        let (prog, pid) = match memchr::memchr(b'[', tag.as_bytes()) {
            Some(i) => (&tag[..i], &tag[i + 1..]),
            None => (tag, ""),
        };
        self.dispatch_program(line, prog, pid_of(pid), &rest[colon + 2..])
    }

    /// `pid`: the process id of the line's tag (0: none), which for sshd
    /// identifies one connection (see [`Found::conn`]).
    fn dispatch_program(&mut self, line: &str, prog: &str, pid: u32, msg: &str) -> Option<Found> {
        let f = self.dispatch(line, prog, msg)?;
        Some(Found { conn: pid, ..f })
    }

    fn dispatch(&mut self, line: &str, prog: &str, msg: &str) -> Option<Found> {
        let repeat_name = self.repeat_name;
        let (rules, strip) = match prog {
            // `sshd(pam_unix)`: RedHat's old PAM tag.
            "sshd" | "sshd-session" | "sshd-auth" | "sshd(pam_unix)" => (&mut self.sshd, true),
            // PAM failures of other services (fail2ban's `pam-generic`).
            _ if msg.starts_with("pam_unix(") && !self.pam.rules.is_empty() => {
                (&mut self.pam, false)
            }
            p if p.starts_with("postfix") => (&mut self.postfix, false),
            "dovecot" | "imap-login" | "pop3-login" | "auth" | "auth-worker" => {
                (&mut self.dovecot, false)
            }
            _ => return None,
        };
        if rules.rules.is_empty() {
            return None;
        }
        // rsyslog's `message repeated N times: [ msg]`.
        if let Some(r) = msg.strip_prefix("message repeated ") {
            let digits = r.bytes().take_while(u8::is_ascii_digit).count();
            let inner = r[digits..].strip_prefix(" times: [")?;
            let inner = inner.trim_start_matches(' ');
            let inner = inner.trim_end_matches([' ', ']']);
            let mut f = match_rules(
                &mut rules.rules,
                &rules.masks,
                line,
                if strip { strip_sshd(inner) } else { inner },
            )?;
            let s = offset_in(line, r);
            // The count goes first so it survives a full field array.
            if digits > 0 {
                let n = f.n as usize;
                if n == MAX_FIELDS {
                    f.n -= 1;
                }
                f.fields.copy_within(0..f.n as usize, 1);
                f.fields[0] = (repeat_name, s as u32, (s + digits) as u32);
                f.n += 1;
            }
            return Some(f);
        }
        match_rules(
            &mut rules.rules,
            &rules.masks,
            line,
            if strip { strip_sshd(msg) } else { msg },
        )
    }

    fn custom(&mut self, line: &str) -> Option<Found> {
        let set = self.custom_set.as_ref()?;
        for h in self.custom_hits.iter_mut() {
            *h = false;
        }
        if !set.matches_read_at(&mut self.custom_hits, line, 0) {
            return None;
        }
        for (i, rule) in self.custom.iter_mut().enumerate() {
            if self.custom_hits[i] {
                if let Some(f) = run_rule(rule, line, line) {
                    return Some(f);
                }
            }
        }
        None
    }

    fn hit<'a>(&'a self, line: &'a str, f: &Found, time: Option<UnixTime>) -> Hit<'a> {
        let mut h = Hit::new(f.rule, f.host, time);
        h.nofail = f.nofail;
        (h.conn, h.once) = (f.conn, f.once);
        for &(name, s, e) in &f.fields[..f.n as usize] {
            // Offsets come from ASCII delimiters; `get` keeps a parser slip
            // from ever panicking on a line an attacker wrote.
            if let Some(v) = line.get(s as usize..e as usize) {
                h.push_field(&self.names.0[name as usize], v);
            }
        }
        h
    }

    /// The same matcher with every hand-written parser replaced by its regex.
    #[cfg(test)]
    pub(crate) fn regex_only(mut self) -> Self {
        for r in self
            .sshd
            .rules
            .iter_mut()
            .chain(&mut self.postfix.rules)
            .chain(&mut self.dovecot.rules)
        {
            r.fast = None;
        }
        self
    }

    /// The id of a field name some rule reports ([`Found::value`]).
    pub(crate) fn field_id(&self, name: &str) -> Option<u16> {
        self.names.get(name)
    }

    /// The id of the `repeat` field.
    pub(crate) fn repeat_id(&self) -> u16 {
        self.repeat_name
    }

    /// The line's own time, when it carries a stamp this matcher reads.
    pub fn line_time(&mut self, line: &str, now: UnixTime) -> Option<UnixTime> {
        line_time(&mut self.stamps, line, now)
    }
}

/// The time of a line's stamp as the engine reads it for lines no rule took:
/// a syslog, ISO 8601 or nginx-error stamp at the start, else the first
/// common-log-format stamp.
pub(crate) fn line_time(stamps: &mut StampCache, line: &str, now: UnixTime) -> Option<UnixTime> {
    if let Some((t, _, _)) = stamps.parse_line_start(line, now) {
        return Some(t);
    }
    http::clf_time(line, stamps)
}

/// `s` as an address, exactly as `s.parse::<IpAddr>()` reads it, with a fast
/// path for dotted quads (every access line and most hits carry one; the
/// standard parser is general and several times slower).
#[inline]
pub(crate) fn parse_ip(s: &str) -> Option<IpAddr> {
    let b = s.as_bytes();
    // IPv4 first: its reader stops at the first byte that is not a digit or
    // a dot, so IPv6 text costs one step (no search for a `:` first).
    if b.len() <= 15
        && let Some(a) = parse_ipv4(b)
    {
        return Some(IpAddr::V4(a));
    }
    if let Some(a) = parse_ipv6_plain(b) {
        return Some(IpAddr::V6(a));
    }
    s.parse().ok()
}

/// IPv6 text of hex groups and colons only (no embedded IPv4, no zone), as
/// the standard parser reads it: eight groups of 1-4 hex digits, or fewer
/// around one `::` that stands for at least one zero group. `None` for
/// anything else, which the caller hands to the standard parser.
fn parse_ipv6_plain(b: &[u8]) -> Option<std::net::Ipv6Addr> {
    if !(2..=39).contains(&b.len()) {
        return None;
    }
    // One pass: groups in order into `g`; `gap` is where the `::` stands.
    let mut g = [0u16; 8];
    let (mut n, mut gap, mut i) = (0, None, 0);
    if b[0] == b':' {
        if b[1] != b':' {
            return None;
        }
        if b.len() == 2 {
            return Some(std::net::Ipv6Addr::UNSPECIFIED);
        }
        (gap, i) = (Some(0), 2);
    }
    loop {
        let (start, mut v) = (i, 0u16);
        while i < b.len() && i - start < 5 {
            let d = match b[i] {
                c @ b'0'..=b'9' => c - b'0',
                c @ b'a'..=b'f' => c - b'a' + 10,
                c @ b'A'..=b'F' => c - b'A' + 10,
                _ => break,
            };
            v = v << 4 | d as u16;
            i += 1;
        }
        if i == start || i - start > 4 || n == 8 {
            return None;
        }
        g[n] = v;
        n += 1;
        if i == b.len() {
            break;
        }
        if b[i] != b':' || i + 1 == b.len() {
            return None;
        }
        i += 1;
        if b[i] == b':' {
            if gap.is_some() {
                return None;
            }
            gap = Some(n);
            i += 1;
            if i == b.len() {
                break;
            }
        }
    }
    match gap {
        None if n == 8 => Some(g.into()),
        None => None,
        // `::` stands for at least one group.
        Some(_) if n > 7 => None,
        Some(at) => {
            let mut out = [0u16; 8];
            out[..at].copy_from_slice(&g[..at]);
            out[8 - (n - at)..].copy_from_slice(&g[at..n]);
            Some(out.into())
        }
    }
}

/// Four decimal octets of 1-3 digits, at most 255, no leading zero (the
/// standard library's rules).
#[inline]
fn parse_ipv4(b: &[u8]) -> Option<std::net::Ipv4Addr> {
    let digit = |i: usize| {
        b.get(i)
            .filter(|c| c.is_ascii_digit())
            .map(|c| (c - b'0') as u32)
    };
    let mut oct = [0u8; 4];
    let mut i = 0;
    for (k, o) in oct.iter_mut().enumerate() {
        let mut v = digit(i)?;
        i += 1;
        if let Some(d) = digit(i) {
            // No leading zero.
            if v == 0 {
                return None;
            }
            v = v * 10 + d;
            i += 1;
            if let Some(d) = digit(i) {
                v = v * 10 + d;
                i += 1;
            }
        }
        *o = u8::try_from(v).ok()?;
        if k < 3 {
            if b.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
    }
    (i == b.len()).then(|| oct.into())
}

/// `error: `, `fatal: ` and `PAM: ` prefixes sshd puts before some messages.
/// The leading digits of `s` (a syslog tag's `pid]`) as a number, 0 if none.
fn pid_of(s: &str) -> u32 {
    let d = s.bytes().take_while(u8::is_ascii_digit).count();
    s[..d].parse().unwrap_or(0)
}

fn strip_sshd(msg: &str) -> &str {
    let m = msg
        .strip_prefix("error: ")
        .or_else(|| msg.strip_prefix("fatal: "))
        .unwrap_or(msg);
    m.strip_prefix("PAM: ").unwrap_or(m)
}

/// RFC 5424 structured data is `-` or one or more `[...]` elements (with `\]` escapes).
fn skip_structured_data(s: &str) -> &str {
    if let Some(r) = s.strip_prefix("- ") {
        return r;
    }
    if s == "-" {
        return "";
    }
    let b = s.as_bytes();
    let mut i = 0;
    while b.get(i) == Some(&b'[') {
        i += 1;
        while i < b.len() && b[i] != b']' {
            i += if b[i] == b'\\' { 2 } else { 1 };
        }
        i += 1;
    }
    s.get(i..).map(|r| r.trim_start_matches(' ')).unwrap_or("")
}

/// For each first byte of a message, the rules (bits) whose start literal
/// begins with it (rules without start literals are in every entry).
fn first_byte_masks(rules: &[RxRule]) -> Box<[u64; 256]> {
    assert!(rules.len() <= 64, "a rule group holds at most 64 rules");
    let mut m = Box::new([0u64; 256]);
    for (i, r) in rules.iter().enumerate() {
        if r.starts.is_empty() {
            m.iter_mut().for_each(|x| *x |= 1 << i);
        }
        for p in &r.starts {
            if let Some(&c) = p.s.as_bytes().first() {
                m[c as usize] |= 1 << i;
            }
        }
    }
    m
}

/// A literal a message must start with, and its first 8 bytes as a word, so
/// that most mismatches cost one comparison instead of a `memcmp` call.
#[derive(Clone, Copy)]
struct Prefix {
    word: u64,
    mask: u64,
    s: &'static str,
}

impl Prefix {
    fn new(s: &'static str) -> Self {
        // A NUL would let the zero padding of a short message match.
        assert!(!s.contains('\0'), "rule prefix with NUL: {s:?}");
        let n = s.len().min(8);
        Prefix {
            word: head(&s.as_bytes()[..n]),
            mask: if n == 8 { !0 } else { (1u64 << (8 * n)) - 1 },
            s,
        }
    }

    /// Whether `msg` starts with the literal; `head` is [`head`] of `msg`.
    #[inline]
    fn test(&self, head: u64, msg: &str) -> bool {
        head & self.mask == self.word && (self.s.len() <= 8 || msg.starts_with(self.s))
    }
}

/// The bytes of `w` equal to `n`, as the top bit of each byte (exact: no
/// carry crosses a byte).
#[inline]
fn equal_bytes(w: u64, n: u8) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let x = w ^ (0x0101_0101_0101_0101 * u64::from(n));
    !(((x & LOW7) + LOW7) | x | LOW7)
}

/// The first `n` in `b`: `memchr` for the short fields of a line (an
/// address, a method, a syslog tag), eight bytes at a time in a register,
/// without the call and set-up a vector search costs.
#[inline]
pub(crate) fn find_byte(n: u8, b: &[u8]) -> Option<usize> {
    // Cheaper than `equal_bytes`: the lowest flagged byte is the first
    // equal one (a borrow only flags bytes above an equal byte).
    let first = |w: u64| {
        const LO: u64 = 0x0101_0101_0101_0101;
        let x = w ^ (LO * u64::from(n));
        let t = x.wrapping_sub(LO) & !x & (LO << 7);
        (t != 0).then(|| t.trailing_zeros() as usize / 8)
    };
    let mut chunks = b.chunks_exact(8);
    let mut at = 0;
    for c in &mut chunks {
        if let Some(i) = first(u64::from_le_bytes(c.try_into().expect("8 bytes"))) {
            return Some(at + i);
        }
        at += 8;
    }
    let rest = chunks.remainder();
    let mut w = [!n; 8];
    w[..rest.len()].copy_from_slice(rest);
    first(u64::from_le_bytes(w)).map(|i| at + i)
}

/// The last `n` in `b`: `memrchr`, as [`find_byte`] is `memchr`.
#[inline]
pub(crate) fn rfind_byte(n: u8, b: &[u8]) -> Option<usize> {
    let mut chunks = b.rchunks_exact(8);
    let mut end = b.len();
    for c in &mut chunks {
        let m = equal_bytes(u64::from_le_bytes(c.try_into().expect("8 bytes")), n);
        end -= 8;
        if m != 0 {
            return Some(end + 7 - m.leading_zeros() as usize / 8);
        }
    }
    let rest = chunks.remainder();
    let mut w = [!n; 8];
    w[..rest.len()].copy_from_slice(rest);
    let m = equal_bytes(u64::from_le_bytes(w), n);
    (m != 0).then(|| 7 - m.leading_zeros() as usize / 8)
}

/// The first 8 bytes of `b` as a little-endian word, zero-padded.
#[inline]
fn head(b: &[u8]) -> u64 {
    if let Some(w) = b.first_chunk::<8>() {
        return u64::from_le_bytes(*w);
    }
    b.iter()
        .enumerate()
        .fold(0, |w, (i, &c)| w | (c as u64) << (8 * i))
}

fn match_rules(rules: &mut [RxRule], masks: &[u64; 256], line: &str, msg: &str) -> Option<Found> {
    let &c = msg.as_bytes().first()?;
    let mut bits = masks[c as usize];
    let h = head(msg.as_bytes());
    while bits != 0 {
        let rule = &mut rules[bits.trailing_zeros() as usize];
        bits &= bits - 1;
        if !rule.starts.is_empty() && !rule.starts.iter().any(|p| p.test(h, msg)) {
            continue;
        }
        if !rule.also.is_empty() && !rule.also.iter().any(|s| msg.contains(s)) {
            continue;
        }
        if rule.unless.iter().any(|s| msg.contains(s)) {
            continue;
        }
        if let Some(f) = run_rule(rule, line, msg) {
            return Some(f);
        }
    }
    None
}

/// Runs one rule's regex over `hay` (a subslice of `line`); offsets in the
/// result are relative to `line`.
fn run_rule(rule: &mut RxRule, line: &str, hay: &str) -> Option<Found> {
    let base = offset_in(line, hay);
    if let Some(fast) = rule.fast {
        let c = fast(hay)?;
        let host = parse_ip(&hay[c.host.0..c.host.1])?;
        let mut f = Found::new(rule.idx, host);
        f.nofail = rule.always_nofail;
        f.once = rule.once;
        for &(k, s, e) in &c.fields[..c.n] {
            if let Some(id) = rule.fast_ids[k as usize] {
                f.push(id, base + s, base + e);
            }
            if rule
                .nofail_if
                .is_some_and(|(g, v)| g == STATIC_NAMES[k as usize] && &hay[s..e] == v)
            {
                f.nofail = true;
            }
        }
        return Some(f);
    }
    let locs = rule.re.captures(hay)?;
    let (hs, he) = locs.get(rule.host)?;
    let host = parse_ip(&hay[hs..he])?;
    let mut f = Found::new(rule.idx, host);
    f.nofail = rule.always_nofail;
    f.once = rule.once;
    if let Some((g, v)) = rule.nofail_group {
        if locs.get(g).is_some_and(|(s, e)| &hay[s..e] == v) {
            f.nofail = true;
        }
    }
    for &(name, g) in &rule.fields {
        if let Some((s, e)) = locs.get(g) {
            f.push(name, base + s, base + e);
        }
    }
    Some(f)
}

impl LineMatcher for NativeMatcher {
    fn rules(&self) -> &[RuleInfo] {
        &self.infos
    }

    fn match_line<'a>(&'a mut self, line: &'a str, now: UnixTime) -> Option<Hit<'a>> {
        let (found, time) = self.find(line, now);
        let f = found?;
        Some(self.hit(line, &f, time))
    }

    fn unmatched_stamp(&self) -> Option<UnixTime> {
        self.stamp
    }
}

impl SplitMatcher for NativeMatcher {
    /// Every rule reads one line; the matcher's state is caches and scratch,
    /// and the nginx-error guard: a copy starts without one, so a replay
    /// block that begins within 2 KiB after an nginx line the client may
    /// have continued can take a line the daemon, reading in order, refuses
    /// (replay enforces nothing).
    fn fork(&self) -> Option<Box<dyn SplitMatcher>> {
        Some(Box::new(self.clone()))
    }
}

#[cfg(test)]
pub(crate) type Probed = (String, String, Vec<(String, String)>, bool);

/// Test helper: matches `line` with `m` and returns (rule name, host, fields, nofail).
#[cfg(test)]
pub(crate) fn probe(m: &mut NativeMatcher, line: &str) -> Option<Probed> {
    let now = 1_709_251_200 + 86_400;
    let h = m.match_line(line, now)?;
    let fields = h
        .fields()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let (rule, host, nofail) = (h.rule, h.host.to_string(), h.nofail);
    Some((m.rules()[rule as usize].name.clone(), host, fields, nofail))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `find_byte` and `rfind_byte` are `memchr` and `memrchr`, on random
    /// strings of the needle, letters, high bytes, NUL and bytes one off the
    /// needle, of every length to 70.
    #[test]
    fn find_byte_is_memchr() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for n in [b' ', b':', 0x80, 0x00, 0xff] {
            let alphabet = [
                n,
                b'a',
                n.wrapping_sub(1),
                n.wrapping_add(1),
                0xa0,
                0xff,
                0x00,
                0x7f,
            ];
            for len in 0..70 {
                for _ in 0..200 {
                    let s: Vec<u8> = (0..len)
                        .map(|_| {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            // The needle is rare, so most searches run far.
                            let k = (x >> 5) as usize % 40;
                            alphabet[if k < 39 { 1 + k % 7 } else { 0 }]
                        })
                        .collect();
                    assert_eq!(find_byte(n, &s), memchr::memchr(n, &s), "{n} {s:?}");
                    assert_eq!(rfind_byte(n, &s), memchr::memrchr(n, &s), "{n} {s:?}");
                }
            }
        }
    }

    /// `Prefix::test` is `str::starts_with` for short and long literals,
    /// short messages and messages that differ after the first word.
    #[test]
    fn prefix_test_is_starts_with() {
        let lits = ["", "a", "Failed ", "Failed p", "Failed password for ", "é"];
        let msgs = [
            "",
            "a",
            "b",
            "Failed",
            "Failed ",
            "Failed pass",
            "Failed password for root",
            "Failed password fox",
            "Failed publickey",
            "éa",
            "\0\0",
        ];
        for l in lits {
            let p = Prefix::new(l);
            for m in msgs {
                assert_eq!(
                    p.test(head(m.as_bytes()), m),
                    m.starts_with(l),
                    "{l:?} {m:?}"
                );
            }
        }
    }

    /// The names read from a pattern's text are the compiled regex's, for
    /// every built-in pattern and some awkward ones.
    #[test]
    fn capture_names_match_the_regex() {
        let awkward = [
            r"(a)(?:b)(?P<x>c)(?<y>d)",
            r"\((?P<h>[^)]+)\)",
            r"[(](?P<a>x)[^]()](y)[]](z)",
            r"[[:alpha:]()](?P<n>[a-z&&[^x(]])(q)",
            r"(?i)(?P<u>\S+) (?-i:(v))",
        ];
        let builtin = sshd::DEFS.iter().chain(mail::POSTFIX).chain(mail::DOVECOT);
        for p in awkward.into_iter().chain(builtin.map(|d| d.pattern)) {
            let re = Regex::new(p).unwrap();
            assert_eq!(
                capture_names(p),
                re.capture_names().collect::<Vec<_>>(),
                "{p}"
            );
        }
    }

    #[test]
    fn every_pack_compiles_and_names_are_unique() {
        let m = NativeMatcher::all();
        let mut names: Vec<_> = m.rules().iter().map(|r| r.name.clone()).collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n, "duplicate rule names");
        assert!(n >= 20, "{n} rules");
    }

    #[test]
    fn unknown_pack_bad_regex_and_missing_host_are_named() {
        let e = NativeMatcher::new(&["sshd", "ftp"], &[])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("`ftp`") && e.contains("nginx-access"), "{e}");
        let spec = |regex: &str| RuleSpec {
            name: "mine".into(),
            service: "app".into(),
            regex: regex.into(),
        };
        let e = NativeMatcher::new(&[], &[spec("(?P<host>")])
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("rule `mine`") && e.contains("does not compile"),
            "{e}"
        );
        let e = NativeMatcher::new(&[], &[spec("from (?P<ip>\\S+)")])
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("rule `mine`") && e.contains("no `host` group"),
            "{e}"
        );
        let e = NativeMatcher::new(
            &["sshd"],
            &[RuleSpec {
                name: "sshd-invalid-user".into(),
                ..spec("(?P<host>x)")
            }],
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("twice"), "{e}");
    }

    /// A user rule is checked and compiled once (at plan time) and the
    /// compiled rule builds as many matchers as use it; what `CustomRule::new`
    /// refuses, `NativeMatcher::new` refused before.
    #[test]
    fn a_custom_rule_compiled_once_serves_several_matchers() {
        let spec = |regex: &str| RuleSpec {
            name: "r".into(),
            service: "app".into(),
            regex: regex.into(),
        };
        let rule = CustomRule::new(spec(r"denied (?P<host>\S+)")).unwrap();
        for _ in 0..2 {
            let mut m = NativeMatcher::with_rules(&[], std::slice::from_ref(&rule)).unwrap();
            let (name, host, _, _) = probe(&mut m, "denied 192.0.2.1").unwrap();
            assert_eq!((name.as_str(), host.as_str()), ("r", "192.0.2.1"));
        }
        assert!(matches!(
            CustomRule::new(spec(r"denied (\S+)")),
            Err(RuleError::NoHostGroup { .. })
        ));
        assert!(matches!(
            CustomRule::new(spec(r"(?P<host>\S+")),
            Err(RuleError::BadRegex { .. })
        ));
        assert!(matches!(
            NativeMatcher::with_rules(&["ftpd"], &[rule]),
            Err(RuleError::UnknownPack { .. })
        ));
    }

    #[test]
    fn user_rules_capture_fields_and_time() {
        let spec = RuleSpec {
            name: "app-login".into(),
            service: "myapp".into(),
            regex: r"login failed for (?P<user>\w+) from (?P<host>[0-9a-f:.]+)".into(),
        };
        let mut m = NativeMatcher::new(&["sshd"], &[spec]).unwrap();
        let (rule, host, fields, _) = probe(
            &mut m,
            "2024-03-01T10:00:00Z web myapp: login failed for bob from 192.0.2.9",
        )
        .unwrap();
        assert_eq!((rule.as_str(), host.as_str()), ("app-login", "192.0.2.9"));
        assert_eq!(fields, vec![("user".to_string(), "bob".to_string())]);
        let h = m
            .match_line(
                "2024-03-01T10:00:00Z web myapp: login failed for bob from 192.0.2.9",
                0,
            )
            .unwrap();
        assert_eq!(h.time, Some(1_709_287_200));
        // A host that is not an address is no hit.
        assert!(probe(&mut m, "login failed for bob from ::::::").is_none());
        assert!(probe(&mut m, "login ok for bob from 192.0.2.9").is_none());
    }

    #[test]
    fn rfc5424_and_bare_journald_lines() {
        let mut m = NativeMatcher::all();
        let l = "<38>1 2024-03-01T00:00:00.003Z host sshd 1234 - - Invalid user x from 198.51.100.4 port 22";
        assert_eq!(probe(&mut m, l).unwrap().0, "sshd-invalid-user");
        let l = "<38>1 2024-03-01T00:00:00Z host sshd 1234 ID47 [exampleSDID@32473 a=\"x\\]\"] Invalid user x from 198.51.100.4 port 22";
        assert_eq!(probe(&mut m, l).unwrap().1, "198.51.100.4");
        let l = "<38>Mar  1 00:00:00 host sshd[1]: Invalid user x from 198.51.100.4 port 22";
        assert_eq!(probe(&mut m, l).unwrap().0, "sshd-invalid-user");
        let l = "sshd[1]: Invalid user x from 198.51.100.4 port 22";
        assert_eq!(probe(&mut m, l).unwrap().0, "sshd-invalid-user");
        assert!(probe(&mut m, "<<<<<<").is_none());
        assert!(probe(&mut m, "<1>1 ").is_none());
        assert!(probe(&mut m, "").is_none());
    }

    #[test]
    fn message_repeated_carries_the_count() {
        let mut m = NativeMatcher::all();
        let l = "Mar  1 00:00:00 h sshd[9]: message repeated 5 times: [ Failed password for root from 203.0.113.5 port 4242 ssh2]";
        let (rule, host, fields, _) = probe(&mut m, l).unwrap();
        assert_eq!(
            (rule.as_str(), host.as_str()),
            ("sshd-failed-password", "203.0.113.5")
        );
        assert_eq!(fields[0], ("repeat".into(), "5".into()));
        assert!(
            probe(
                &mut m,
                "Mar  1 00:00:00 h sshd[9]: message repeated 5 times: [ hello]"
            )
            .is_none()
        );
    }

    #[test]
    fn parse_ip_reads_what_the_standard_parser_reads() {
        let mut cases: Vec<String> = [
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "1..2.3",
            "",
            ".1.2.3",
            "1.2.3.",
            "01.2.3.4",
            "1.2.3.04",
            "1.2.3.0",
            "10.0.0.1",
            "1.2.3.4 ",
            "1234.1.1.1",
            "999.999.999.999",
            "::1",
            "2001:db8::1",
            "::ffff:1.2.3.4",
            "1.2.3.4%",
            "12345678901234567",
            "1.2.3.4/32",
            "a.b.c.d",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Every dotted quad made of some awkward octets.
        let octs = [
            "0", "00", "1", "9", "10", "99", "100", "199", "255", "256", "300", "0255",
        ];
        for a in octs {
            for b in octs {
                cases.push(format!("{a}.{b}.1.{b}"));
                cases.push(format!("{a}.{b}.{a}"));
            }
        }
        for c in &cases {
            assert_eq!(parse_ip(c), c.parse::<IpAddr>().ok(), "{c:?}");
        }
        // Random digits and dots (and a stray letter now and then).
        let mut x = 0x853c_49e6_748f_ea9bu64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let s: String = (0..(x % 17) as usize)
                .map(|i| b"0123456789...12x"[((x >> (4 * (i % 15))) & 15) as usize] as char)
                .collect();
            assert_eq!(parse_ip(&s), s.parse::<IpAddr>().ok(), "{s:?}");
        }
    }

    /// The IPv6 fast path accepts only what the standard parser accepts, with
    /// the same address: known forms, then random strings over the
    /// characters of IPv6 text (most of them invalid in some corner).
    #[test]
    fn ipv6_fast_path_reads_what_the_standard_parser_reads() {
        let known = [
            "::",
            "::1",
            "1::",
            "1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7::",
            "::2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7:8:9",
            "1:2:3:4:5:6:7",
            "1::2::3",
            ":::",
            "1:::2",
            ":1::2",
            "1::2:",
            "2001:DB8::Ab",
            "fffff::",
            "0000:0000::0001",
            "1:2:3:4:5:6::7:8",
            "::ffff:1.2.3.4",
            "fe80::1%eth0",
            "g::1",
            "1:2:3:4:5:6:7:8:",
        ];
        let mut accepted = 0;
        let mut check = |s: &str| {
            let fast = parse_ipv6_plain(s.as_bytes());
            let std = s.parse::<std::net::Ipv6Addr>().ok();
            if fast.is_some() {
                accepted += 1;
                assert_eq!(fast, std, "{s:?}");
            }
            assert_eq!(parse_ip(s), s.parse::<IpAddr>().ok(), "{s:?}");
        };
        for s in known {
            check(s);
        }
        let alphabet = b"0123456789abcdefABCDEF::::.g%";
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 41) as usize;
            let mut y = x;
            let s: String = (0..len)
                .map(|i| {
                    y = y.rotate_left(7) ^ (i as u64).wrapping_mul(0x2545_f491_4f6c_dd1d);
                    // Hex digits mostly, so that some strings are addresses.
                    let k = (y >> 3) as usize % alphabet.len();
                    let i = if y.is_multiple_of(5) {
                        22 + k % 4
                    } else {
                        k % 22
                    };
                    alphabet[i] as char
                })
                .collect();
            check(&s);
        }
        assert!(
            accepted > 1000,
            "only {accepted} strings took the fast path"
        );
    }

    #[test]
    fn long_and_hostile_lines_are_fine() {
        let mut m = NativeMatcher::all();
        let long = format!(
            "Mar  1 00:00:00 h sshd[9]: Failed password for {} from 203.0.113.5 port 1 ssh2",
            "a".repeat(65_536)
        );
        assert_eq!(probe(&mut m, &long).unwrap().1, "203.0.113.5");
        let junk = "\u{0}\u{1}\u{fffd}".repeat(20_000);
        assert!(probe(&mut m, &junk).is_none());
        for n in 0..40 {
            let s: String = "Mar  1 00:00:00 h sshd[9]: Failed password"
                .chars()
                .take(n)
                .collect();
            let _ = probe(&mut m, &s);
        }
    }
}
