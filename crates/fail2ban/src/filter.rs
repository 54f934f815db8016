//! A loaded fail2ban filter and its line pipeline (filter.py's `processLine`
//! and `findFailure`): cut the date out, keep the last `maxlines` lines,
//! ignoreregex, prefregex (with `<F-CONTENT>`), the first matching failregex,
//! multi-line failure ids (`<F-MLFID>`, `<F-MLFFORGET>`, `<F-MLFGAINED>`).
//!
//! It owns matching; reading the INI files is `ini.rs`, tags `tags.rs`,
//! regex translation `shield_pyre`, dates `date.rs`.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use crate::dns::UseDns;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use jiff::tz::TimeZone;
use shield_core::{Carry, Hit, LineMatcher, RuleInfo, SplitMatcher, UnixTime};

use crate::LoadError;
use crate::date::Detector;
use crate::ini::{Config, layered};
use crate::tags::{resolve_regex_tags, substitute_recursive};
use shield_pyre::{Locs, Re};

/// A filter named as a jail names it: `sshd`, `sshd[mode=aggressive]`,
/// `/path/to/x.conf[mode=ddos, publickey=any]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterRef {
    pub name_or_path: String,
    /// The `mode` argument, if given (also present in [`FilterRef::args`]).
    pub mode: Option<String>,
    /// Every `key=value` argument, keys lower-cased, in order.
    pub args: Vec<(String, String)>,
}

impl FilterRef {
    /// A reference without arguments.
    pub fn named(name: &str) -> FilterRef {
        FilterRef {
            name_or_path: name.to_string(),
            mode: None,
            args: Vec::new(),
        }
    }
}

impl FromStr for FilterRef {
    type Err = LoadError;
    fn from_str(s: &str) -> Result<FilterRef, LoadError> {
        let s = s.trim();
        let bad = |why: &str| LoadError::Value {
            what: format!("filter reference {s:?}"),
            reason: why.to_string(),
        };
        let (name, args) = match s.find('[') {
            None => (s, ""),
            Some(p) => {
                let inner = s[p + 1..]
                    .strip_suffix(']')
                    .ok_or_else(|| bad("`[` without a closing `]`"))?;
                (s[..p].trim(), inner)
            }
        };
        if name.is_empty() {
            return Err(bad("empty filter name"));
        }
        let mut out = Vec::new();
        for part in split_args(args) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| bad("arguments must look like key=value"))?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|x| x.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
                .unwrap_or(v);
            out.push((k.trim().to_lowercase(), v.to_string()));
        }
        let mode = out
            .iter()
            .find(|(k, _)| k == "mode")
            .map(|(_, v)| v.clone());
        Ok(FilterRef {
            name_or_path: name.to_string(),
            mode,
            args: out,
        })
    }
}

fn split_args(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut quote: Option<char> = None;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, ',') => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// One compiled failregex (a copy shares the compiled automata).
#[derive(Debug, Clone)]
struct Rx {
    re: Re,
    /// Group names by index (None for unnamed groups).
    names: Vec<Option<String>>,
    /// The names' keys in the filter's [`Names`], by group index.
    keys: Vec<Option<Key>>,
    /// Python-flavoured source after tag resolution (for messages).
    source: String,
    /// The Rust pattern it was translated to.
    translated: String,
}

impl Rx {
    fn compile(py: &str, multiline: bool, use_dns: bool) -> Result<Rx, String> {
        let resolved = resolve_regex_tags(py, use_dns);
        // fail2ban rewrites `((?i)X)` into `(?i:X)`; Rust accepts both forms.
        let (re, translated) = Re::compile(&resolved, multiline)?;
        let names = re.capture_names();
        Ok(Rx {
            re,
            names,
            keys: Vec::new(),
            source: resolved,
            translated,
        })
    }
    fn has_group(&self, n: &str) -> bool {
        self.names.iter().any(|x| x.as_deref() == Some(n))
    }
    /// Gives each named group its key in `names`.
    fn intern(&mut self, names: &mut Names) {
        self.keys = self
            .names
            .iter()
            .map(|n| n.as_deref().map(|n| names.intern(n)))
            .collect();
    }
}

/// A group name's index in its filter's [`Names`].
type Key = u32;

/// The names fail2ban's own logic reads, at fixed keys.
mod key {
    use super::Key;
    pub(super) const NOFAIL: Key = 0;
    pub(super) const MLFGAINED: Key = 1;
    pub(super) const MLFFORGET: Key = 2;
    pub(super) const MLFPENDING: Key = 3;
    pub(super) const IP4: Key = 4;
    pub(super) const IP6: Key = 5;
    pub(super) const DNS: Key = 6;
    pub(super) const FID: Key = 7;
    pub(super) const USER: Key = 8;
    pub(super) const MLFID: Key = 9;
    pub(super) const CONTENT: Key = 10;
    /// Their names, by key.
    pub(super) const FIXED: [&str; 11] = [
        "nofail",
        "mlfgained",
        "mlfforget",
        "mlfpending",
        "ip4",
        "ip6",
        "dns",
        "fid",
        "user",
        "mlfid",
        "content",
    ];
    /// Keys below this are not a hit's fields.
    pub(super) const FIELDS_FROM: Key = DNS + 1;
}

/// The group names of a filter's patterns, interned: a failure's dict is
/// keyed by index, so setting and reading a value compares integers.
#[derive(Debug)]
struct Names {
    names: Vec<Box<str>>,
    /// For an `alt_X` name (`<F-ALT_X>`): the key of X, which its value
    /// fills when X is empty.
    alt: Vec<Option<Key>>,
}

impl Names {
    fn new() -> Names {
        Names {
            names: key::FIXED.iter().map(|&n| n.into()).collect(),
            alt: vec![None; key::FIXED.len()],
        }
    }

    fn intern(&mut self, n: &str) -> Key {
        if let Some(i) = self.names.iter().position(|x| &**x == n) {
            return i as Key;
        }
        let k = self.names.len() as Key;
        self.names.push(n.into());
        self.alt.push(None);
        if let Some(base) = n.strip_prefix("alt_") {
            let base = base
                .trim_end_matches(|c: char| c.is_ascii_digit())
                .trim_end_matches('_');
            let target = self.intern(&crate::tags::map_tag_to_opt(base));
            self.alt[k as usize] = Some(target);
        }
        k
    }

    fn name(&self, k: Key) -> &str {
        &self.names[k as usize]
    }
}

/// What a line matched, with the host as text (an address or, with
/// `usedns`, a name), for callers that need more than a [`Hit`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Detail {
    /// Index of the failregex that matched.
    pub rule: usize,
    /// ip4, else ip6, else dns, else the failure id (`<F-ID>`).
    pub host: String,
    pub time: Option<UnixTime>,
    pub nofail: bool,
    /// Named groups with values (`user`, `mlfid`, ...), fail2ban's names.
    pub fields: Vec<(String, String)>,
}

/// A DNS name as fail2ban's `<HOST>` takes it (letters, digits, `-`, `_`,
/// `.`, with a dot), not a failure id.
fn is_host_name(h: &str) -> bool {
    h.contains('.')
        && h.len() <= 253
        && h.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'))
}

/// A fail2ban filter ready to match lines.
pub struct Filter {
    name: String,
    files: Vec<PathBuf>,
    rules: Vec<RuleInfo>,
    prefregex: Option<Rx>,
    failregex: Vec<Rx>,
    ignoreregex: Vec<Rx>,
    /// The group names of `prefregex` and `failregex`.
    names: std::sync::Arc<Names>,
    /// One-pass prefilter: which failregexes can match at all.
    prefilter: Option<Prefilter>,
    /// Reused result slots of the prefilter, one per failregex.
    hits: Vec<bool>,
    maxlines: usize,
    journalmatch: Option<String>,
    /// What a host matched as a name becomes ([`crate::dns`]).
    usedns: UseDns,
    dates: Detector,
    tz: TimeZone,
    /// Added to the process clock; only tests move it.
    clock_skew: Duration,
    /// A copy that scans lines for the original to settle
    /// ([`SplitMatcher::scanner`]), and whether a line it scanned needed
    /// state it did not have.
    scanning: bool,
    scan_tainted: bool,
    st: State,
}

/// What a filter keeps from line to line and reuses per line: fresh in a
/// new filter and in a scanning copy.
#[derive(Default)]
struct State {
    /// Reused result slots of the prefilter, one per pattern of its set.
    raw_hits: Vec<bool>,
    lines: VecDeque<String>,
    buf: String,
    /// The prefregex's `<F-CONTENT>` of the current line, reused.
    content: String,
    locs: Locs,
    last_time: Option<UnixTime>,
    /// fail2ban's `Utils.Cache(maxCount=100, maxTime=5*60)`: id → (failure,
    /// expiry). The expiry is set when an id is first cached, on the process
    /// clock as fail2ban does (`time.time()`), not on log time.
    mlfid_cache: HashMap<String, (FailMap, Instant), IdHash>,
    mlfid_order: VecDeque<String>,
    /// The process clock as last read for the id cache, and how many more
    /// look-ups may use it (see [`Filter::clock`]).
    clock: Option<(Instant, u8)>,
    /// The buffers of forgotten ids, for the next new ones: most sessions
    /// end with a forget, so without them every new id would allocate.
    spare_ids: Vec<String>,
    spare_fails: Vec<FailMap>,
    /// Reused per line: the prefregex's groups, the failure, its mlfid.
    pre_locs: Locs,
    fail: FailMap,
    /// `fail`'s `<F-*>` alternatives, copied before they fill their groups.
    alts: Vec<(Key, String)>,
    mlfid: String,
    /// The last failure, but for its host and fields: they are in `fail`
    /// (the host under `host_key`) until [`Filter::detail`] copies them.
    out: Detail,
    host_key: Key,
    memo: GroupMemo,
}

/// The groups of recent failregex matches, by failregex and text. A group
/// search's result depends on its text alone, and attacks repeat lines (the
/// same user from the same address, attempt after attempt), so a candidate
/// content often equals one seen a few lines before. A repeat then costs a
/// hash and a compare instead of the backtracking search.
#[derive(Default)]
struct GroupMemo {
    /// Direct-mapped by hash.
    slots: Vec<MemoSlot>,
}

/// The failregex plus one (0: an empty slot), its text, its groups.
type MemoSlot = (usize, String, Vec<Option<(usize, usize)>>);

impl GroupMemo {
    const SLOTS: usize = 256;

    fn slot(idx: usize, hay: &str) -> usize {
        use std::hash::BuildHasher;
        let h = foldhash::fast::FixedState::with_seed(0).hash_one((idx, hay));
        h as usize % Self::SLOTS
    }

    fn get(&self, idx: usize, hay: &str) -> Option<&[Option<(usize, usize)>]> {
        let (i, text, spans) = self.slots.get(Self::slot(idx, hay))?;
        (*i == idx + 1 && text == hay).then_some(spans.as_slice())
    }

    fn put(&mut self, idx: usize, hay: &str, spans: &[Option<(usize, usize)>]) {
        if self.slots.is_empty() {
            self.slots.resize_with(Self::SLOTS, Default::default);
        }
        let (i, text, s) = &mut self.slots[Self::slot(idx, hay)];
        *i = idx + 1;
        text.clear();
        text.push_str(hay);
        s.clear();
        s.extend_from_slice(spans);
    }
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("name", &self.name)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

/// fail2ban's per-failure dict: group values that are not None, in
/// insertion order. Entries past `len` are dead but keep their buffers, so
/// refilling the map for the next line allocates nothing.
#[derive(Debug, Default)]
struct FailMap {
    vals: Vec<(Key, String)>,
    len: usize,
    users: Vec<String>,
    n_users: usize,
}

impl FailMap {
    fn live(&self) -> &[(Key, String)] {
        &self.vals[..self.len]
    }
    fn clear(&mut self) {
        self.len = 0;
        self.n_users = 0;
    }
    fn get(&self, k: Key) -> Option<&str> {
        self.live()
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.as_str())
    }
    /// Python truthiness: present and non-empty.
    fn truthy(&self, k: Key) -> bool {
        self.get(k).is_some_and(|v| !v.is_empty())
    }
    fn set(&mut self, k: Key, v: &str) {
        if let Some(s) = self.vals[..self.len].iter_mut().find(|(n, _)| *n == k) {
            s.1.clear();
            s.1.push_str(v);
        } else {
            self.push(k, v);
        }
    }
    /// Appends an entry whose key is not live.
    fn push(&mut self, k: Key, v: &str) {
        if let Some(e) = self.vals.get_mut(self.len) {
            e.0 = k;
            e.1.clear();
            e.1.push_str(v);
        } else {
            self.vals.push((k, v.to_string()));
        }
        self.len += 1;
    }
    /// Sets `dst` to the value of `src` (which must be live).
    fn set_from(&mut self, dst: Key, src: Key) {
        let Some(i) = self.live().iter().position(|(n, _)| *n == src) else {
            return;
        };
        let v = std::mem::take(&mut self.vals[i].1);
        self.set(dst, &v);
        self.vals[i].1 = v;
    }
    /// Removes `k` (order kept); whether its value was truthy.
    fn take(&mut self, k: Key) -> bool {
        let Some(i) = self.live().iter().position(|(n, _)| *n == k) else {
            return false;
        };
        let truthy = !self.vals[i].1.is_empty();
        self.vals[i..self.len].rotate_left(1);
        self.len -= 1;
        truthy
    }
    fn users(&self) -> &[String] {
        &self.users[..self.n_users]
    }
    fn push_user(&mut self, u: &str) {
        if let Some(x) = self.users.get_mut(self.n_users) {
            x.clear();
            x.push_str(u);
        } else {
            self.users.push(u.to_string());
        }
        self.n_users += 1;
    }
    /// Becomes a copy of `o`, reusing its own buffers.
    fn copy_from(&mut self, o: &FailMap) {
        self.clear();
        for (k, v) in o.live() {
            self.push(*k, v);
        }
        for u in o.users() {
            self.push_user(u);
        }
    }
    /// Records the `user` value; the number of distinct users seen.
    fn add_user(&mut self) -> usize {
        if let Some(i) = self.live().iter().position(|(n, _)| *n == key::USER) {
            let u = std::mem::take(&mut self.vals[i].1);
            if !self.users().contains(&u) {
                self.push_user(&u);
            }
            self.vals[i].1 = u;
        }
        self.n_users
    }
}

/// The mlfid cache's hasher: foldhash, as the engine's own maps use. The
/// cache is hashed three or four times a line, so a slower hasher (std's
/// SipHash) would be a visible share of a line's work. It is seeded per process, and the cache never holds more
/// than [`MLFID_MAX`] ids, so ids an attacker writes into log lines cannot
/// make lookups cost more than that many comparisons.
type IdHash = foldhash::fast::RandomState;

/// fail2ban's mlfid cache: at most this many connection ids…
const MLFID_MAX: usize = 100;
/// …each kept this long after it was first cached (`maxTime=5*60`).
const MLFID_TTL: Duration = Duration::from_secs(5 * 60);
/// Forgotten ids whose buffers are kept for new ones.
const SPARE: usize = 16;

const OPTS: [&str; 7] = [
    "usedns",
    "prefregex",
    "ignoreregex",
    "failregex",
    "maxlines",
    "datepattern",
    "journalmatch",
];

impl Filter {
    /// Loads a filter by name (from `filter_dir`, usually `/etc/fail2ban/filter.d`)
    /// or by path, with its includes, `.local` overlays and arguments.
    pub fn load(r: &FilterRef, filter_dir: &Path) -> Result<Filter, LoadError> {
        let as_path = Path::new(&r.name_or_path);
        let (dir, name) = if r.name_or_path.contains('/') || r.name_or_path.ends_with(".conf") {
            let dir = as_path.parent().unwrap_or(Path::new(".")).to_path_buf();
            let stem = as_path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("filter")
                .to_string();
            (dir, stem)
        } else {
            (filter_dir.to_path_buf(), r.name_or_path.clone())
        };
        let main = dir.join(format!("{name}.conf"));
        if !main.is_file() && !dir.join(format!("{name}.local")).is_file() {
            return Err(LoadError::NotFound {
                name: name.clone(),
                dir,
            });
        }
        let cfg = Config::read(&layered(&dir, &name))?;
        Self::from_config(&name, &cfg, &r.args)
    }

    fn from_config(
        name: &str,
        cfg: &Config,
        args: &[(String, String)],
    ) -> Result<Filter, LoadError> {
        let files = cfg.files.clone();
        let p_opts: Vec<(String, String)> = args.to_vec();
        // [Definition] options, interpolated with the jail's arguments as vars.
        let mut combined: Vec<(String, String)> = Vec::new();
        for o in OPTS {
            if let Some(v) = cfg.get("Definition", o, &p_opts)? {
                combined.push((o.to_string(), v));
            }
        }
        // [Init] and the arguments, which win.
        let mut init: Vec<(String, String)> = p_opts.clone();
        if cfg.has_section("Init") {
            for o in cfg.options("Init") {
                let v = cfg.get("Init", &o, &[])?.unwrap_or_default();
                if !o.starts_with("known/") {
                    set_kv(&mut init, &format!("known/{o}"), &v);
                }
                if !init.iter().any(|(k, _)| *k == o) {
                    init.push((o.clone(), v));
                }
            }
        }
        for (k, v) in init {
            set_kv(&mut combined, &k, &v);
        }
        let mut err: Option<LoadError> = None;
        let mut extra = |tag: &str| -> Option<String> {
            match cfg.get_ex("Definition", tag, &p_opts) {
                Ok(v) => v,
                Err(e) => {
                    err.get_or_insert(e);
                    None
                }
            }
        };
        substitute_recursive(&mut combined, &mut extra).map_err(|reason| LoadError::Tags {
            files: files.clone(),
            reason,
        })?;
        if let Some(e) = err {
            return Err(e);
        }
        let get = |k: &str| {
            combined
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        };
        let maxlines = match get("maxlines") {
            None => 1,
            Some(v) => v.trim().parse::<usize>().map_err(|_| LoadError::Value {
                what: format!("{files:?} maxlines"),
                reason: format!("{v:?} is not a whole number"),
            })?,
        }
        .max(1);
        let use_dns = !matches!(get("usedns").map(str::trim), Some("no"));
        let multiline = maxlines > 1;
        let rx = |opt: &str, index: usize, py: &str| {
            Rx::compile(py, multiline, use_dns).map_err(|reason| LoadError::Regex {
                files: files.clone(),
                option: opt.to_string(),
                index,
                regex: py.to_string(),
                reason,
            })
        };
        let list = |v: Option<&str>| -> Vec<String> {
            v.map(|v| {
                v.split('\n')
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
        };
        let fails = list(get("failregex"));
        let datepattern = get("datepattern").filter(|v| !v.trim().is_empty());
        // Compiling is most of a load, on two cores: first the failregexes
        // (the second half on another core), then the prefilter automaton
        // of all of them while the other core compiles the ignoreregexes
        // and the date templates. Errors are still reported in the order
        // below.
        let half = fails.len() / 2;
        let (pref, early, late) = std::thread::scope(|s| {
            let other = s.spawn(|| {
                (half..fails.len())
                    .map(|i| rx("failregex", i, &fails[i]))
                    .collect::<Vec<_>>()
            });
            let pref = get("prefregex")
                .filter(|v| !v.trim().is_empty())
                .map(|p| rx("prefregex", 0, p));
            let early: Vec<_> = (0..half).map(|i| rx("failregex", i, &fails[i])).collect();
            let late = other
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e));
            (pref, early, late)
        });
        let mut prefregex = pref.transpose()?;
        let mut failregex = Vec::new();
        for (i, r) in early.into_iter().chain(late).enumerate() {
            let r = r?;
            let ids = ["fid", "ip4", "ip6", "dns", "mlfid"];
            let ok = ids
                .iter()
                .any(|g| r.has_group(g) || prefregex.as_ref().is_some_and(|p| p.has_group(g)));
            if !ok {
                return Err(LoadError::NoFailureId {
                    files: files.clone(),
                    index: i,
                });
            }
            failregex.push(r);
        }
        let (ignores, dates, prefilter) = std::thread::scope(|s| {
            let other = s.spawn(|| {
                let ignores: Vec<_> = list(get("ignoreregex"))
                    .iter()
                    .enumerate()
                    .map(|(i, p)| rx("ignoreregex", i, p))
                    .collect();
                (ignores, Detector::new(datepattern))
            });
            let prefilter = Prefilter::build(prefregex.as_ref(), &failregex, multiline);
            let (ignores, dates) = other
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e));
            (ignores, dates, prefilter)
        });
        let ignoreregex = ignores.into_iter().collect::<Result<Vec<_>, _>>()?;
        let dates = dates.map_err(|reason| LoadError::DatePattern {
            files: files.clone(),
            reason,
        })?;
        let mut names = Names::new();
        for r in prefregex.iter_mut().chain(&mut failregex) {
            r.intern(&mut names);
        }
        let n_fail = failregex.len();
        let rules = (0..failregex.len())
            .map(|i| RuleInfo {
                name: format!("{name}#{i}"),
                service: name.to_string(),
            })
            .collect();
        Ok(Filter {
            name: name.to_string(),
            files,
            rules,
            prefregex,
            failregex,
            ignoreregex,
            names: std::sync::Arc::new(names),
            hits: vec![false; n_fail],
            prefilter,
            maxlines,
            usedns: UseDns::parse(get("usedns")),
            journalmatch: get("journalmatch")
                .map(str::to_string)
                .filter(|s| !s.trim().is_empty()),
            dates,
            tz: TimeZone::system(),
            clock_skew: Duration::ZERO,
            scanning: false,
            scan_tainted: false,
            st: State::default(),
        })
    }

    /// The filter's `usedns` (`warn` when not set, as in fail2ban).
    pub fn usedns(&self) -> UseDns {
        self.usedns
    }

    /// The `journalmatch` value (for the journald source), if any.
    pub fn journalmatch(&self) -> Option<&str> {
        self.journalmatch.as_deref()
    }
    /// Lines matched together (fail2ban's `maxlines`, at least 1).
    pub fn maxlines(&self) -> usize {
        self.maxlines
    }
    /// The filter's name (file stem).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The files read, in order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
    /// The failregexes after tag resolution (Python-flavoured), for `explain`.
    pub fn failregex_sources(&self) -> Vec<&str> {
        self.failregex.iter().map(|r| r.source.as_str()).collect()
    }
    /// How many failregexes need the backtracking engine.
    pub fn backtracking_count(&self) -> usize {
        self.failregex.iter().filter(|r| r.re.is_fancy()).count()
    }
    /// The time zone for dates without one (default: the system's, like fail2ban).
    pub fn set_timezone(&mut self, tz: TimeZone) {
        self.tz = tz;
        self.dates.forget();
    }

    /// Matches one line and returns the full result (host as text, all fields).
    /// `now` infers missing years. Multi-line state is kept between calls.
    pub fn match_detail(&mut self, line: &str, now: UnixTime) -> Option<&Detail> {
        if self.process(line, now) {
            Some(self.detail())
        } else {
            None
        }
    }

    /// Like [`Filter::match_detail`] for a line whose time is already known
    /// (a journald entry): no date is searched for or cut out.
    pub fn match_detail_at(&mut self, line: &str, time: Option<UnixTime>) -> Option<&Detail> {
        if self.process_parts("", line, time) {
            Some(self.detail())
        } else {
            None
        }
    }

    fn process(&mut self, line: &str, now: UnixTime) -> bool {
        // 1. the date, cut out of the line
        let (cut, time, _) = self.cut_date(line, now);
        self.process_parts(&line[..cut.0], &line[cut.1..], time)
    }

    /// The date of `line`: its span ((0, 0) when there is none) and the
    /// line's time, and whether that is the time of the line before (an
    /// empty date). The last time moves to the line's.
    fn cut_date(&mut self, line: &str, now: UnixTime) -> ((usize, usize), Option<UnixTime>, bool) {
        let (cut, time, before) = match self.dates.detect(line, now, &self.tz) {
            Some(f) if f.start < f.end => ((f.start, f.end), f.time, false),
            Some(f) => ((f.start, f.end), self.st.last_time, true),
            None => ((0, 0), None, false),
        };
        if time.is_some() {
            self.st.last_time = time;
        }
        (cut, time, before)
    }

    fn process_parts(&mut self, pre: &str, post: &str, time: Option<UnixTime>) -> bool {
        // one line at a time: the id cache reads the clock afresh
        self.st.clock = None;
        // 2. the buffer
        self.st.buf.clear();
        if self.maxlines > 1 {
            let mut l = String::with_capacity(pre.len() + post.len());
            l.push_str(pre);
            l.push_str(post);
            self.st.lines.push_back(l);
            while self.st.lines.len() > self.maxlines {
                self.st.lines.pop_front();
            }
            for l in &self.st.lines {
                self.st.buf.push_str(l);
                self.st.buf.push('\n');
            }
        } else {
            join_line(&mut self.st.buf, pre, post);
        }
        let buf = std::mem::take(&mut self.st.buf);
        let r = self.find_failure(&buf, time);
        self.st.buf = buf;
        r
    }

    fn ignored(&mut self, hay: &str) -> bool {
        self.ignoreregex.iter().any(|r| r.re.is_match(hay))
    }

    fn find_failure(&mut self, buf: &str, time: Option<UnixTime>) -> bool {
        let Some((idx, content)) = self.match_buf(buf) else {
            return false;
        };
        self.failure(buf, idx, content, time)
    }

    /// The regex work of a line's buffer, which depends on nothing but the
    /// buffer (and, with `maxlines` above 1, the buffered lines): the
    /// failregex that matched, with its groups in `self.st.locs`, the
    /// prefregex's in `self.st.pre_locs`, and the span of the prefregex's
    /// content in `buf` (then `self.st.content` holds it, with a newline).
    fn match_buf(&mut self, buf: &str) -> Option<(usize, Option<(usize, usize)>)> {
        if !self.ignoreregex.is_empty()
            && self.ignoreregex.len() + 2 < self.failregex.len()
            && self.ignored(buf)
        {
            return None;
        }
        // One pass over the whole line first: most lines stop here.
        if let Some(pf) = self.prefilter.as_ref().filter(|p| p.on_buffer)
            && !pf.run(buf, &mut self.st.raw_hits, &mut self.hits)
        {
            return None;
        }
        let mut content = None;
        if let Some(p) = &self.prefregex {
            if !p.re.captures(buf, &mut self.st.pre_locs) {
                return None;
            }
            content = p
                .keys
                .iter()
                .zip(&self.st.pre_locs.spans)
                .find_map(|(k, sp)| sp.filter(|_| *k == Some(key::CONTENT)))
                .filter(|(s, e)| s < e);
        }
        let mut c = std::mem::take(&mut self.st.content);
        c.clear();
        if let Some((s, e)) = content {
            c.push_str(&buf[s..e]);
            if self.maxlines > 1 {
                self.st.lines.clear();
                self.st.lines.push_back(c.clone());
            }
            c.push('\n');
        }
        let hay: &str = if content.is_some() { &c } else { buf };
        let r = self.match_failregex(hay, buf);
        self.st.content = c;
        r.map(|idx| (idx, content))
    }

    /// The failregex loop over `hay` (the content, or the whole buffer
    /// `buf`): the first that matches, unless an ignoreregex does too.
    fn match_failregex(&mut self, hay: &str, buf: &str) -> Option<usize> {
        if let Some(pf) = self.prefilter.as_ref().filter(|p| !p.on_buffer)
            && !pf.run(hay, &mut self.st.raw_hits, &mut self.hits)
        {
            return None;
        }
        let mut idx = 0;
        while idx < self.failregex.len() {
            if self.prefilter.is_some() && !self.hits[idx] {
                idx += 1;
                continue;
            }
            if !self.failregex_captures(idx, hay) {
                // the prefilter named only the first candidate: now all
                if let Some(pf) = self.prefilter.as_ref().filter(|p| p.partial.get()) {
                    let text = if pf.on_buffer { buf } else { hay };
                    pf.run_all(text, &mut self.st.raw_hits, &mut self.hits);
                    continue;
                }
                idx += 1;
                continue;
            }
            if self.maxlines > 1 {
                self.drop_matched_lines(hay);
            }
            // the failregex matched; ignoreregex wins
            if !self.ignoreregex.is_empty() && self.ignored(hay) {
                return None;
            }
            return Some(idx);
        }
        None
    }

    /// After failregex `idx` matched `buf` (see [`Filter::match_buf`]): the
    /// failure's dict from the groups, then [`Filter::finish`].
    fn failure(
        &mut self,
        buf: &str,
        idx: usize,
        content: Option<(usize, usize)>,
        time: Option<UnixTime>,
    ) -> bool {
        let mut fail = std::mem::take(&mut self.st.fail);
        fail.clear();
        if let Some(p) = &self.prefregex {
            for (k, sp) in p.keys.iter().zip(&self.st.pre_locs.spans) {
                if let (Some(k), Some((s, e))) = (k, sp)
                    && *k != key::CONTENT
                {
                    fail.set(*k, &buf[*s..*e]);
                }
            }
        }
        let hay: &str = if content.is_some() {
            &self.st.content
        } else {
            buf
        };
        for (k, sp) in self.failregex[idx].keys.iter().zip(&self.st.locs.spans) {
            if let (Some(k), Some((s, e))) = (k, sp) {
                fail.set(*k, &hay[*s..*e]);
            }
        }
        // F-ALT_X fill X when empty, in order, with the values they had
        // before any of them did
        let alt = &self.names.alt;
        if fail.live().iter().any(|(k, _)| alt[*k as usize].is_some()) {
            let mut alts = std::mem::take(&mut self.st.alts);
            alts.clear();
            for (k, v) in fail.live() {
                if let Some(t) = alt[*k as usize] {
                    alts.push((t, v.clone()));
                }
            }
            for (t, v) in &alts {
                if !fail.truthy(*t) && !v.is_empty() {
                    fail.set(*t, v);
                }
            }
            self.st.alts = alts;
        }
        let mut mlfid = std::mem::take(&mut self.st.mlfid);
        mlfid.clear();
        let has_mlfid = match fail.get(key::MLFID) {
            Some(id) => {
                mlfid.push_str(id);
                true
            }
            None => false,
        };
        let r = self.finish(idx, has_mlfid.then_some(mlfid.as_str()), &mut fail, time);
        self.st.mlfid = mlfid;
        self.st.fail = fail;
        r
    }

    /// After a failregex matched: multi-line merging, then the result.
    fn finish(
        &mut self,
        idx: usize,
        mlfid: Option<&str>,
        fail: &mut FailMap,
        time: Option<UnixTime>,
    ) -> bool {
        if let Some(id) = mlfid {
            self.merge_failure(id, fail);
        }
        // nofail: no host is looked for; ip4, else ip6, else dns, else fid
        // (kept as a key: no copy yet)
        let host_key = if mlfid.is_some() && fail.truthy(key::NOFAIL) {
            None
        } else {
            let k = [key::IP4, key::IP6, key::DNS, key::FID]
                .into_iter()
                .find(|k| fail.get(*k).is_some());
            if k.is_none() && mlfid.is_some() {
                fail.set(key::MLFPENDING, "1");
            }
            k
        };
        // every merge is stored back (`merge_failure` counts on it)
        if let Some(id) = mlfid {
            self.store_mlfid(id, fail);
        }
        let Some(host_key) = host_key else {
            return false;
        };
        self.st.out.rule = idx;
        self.st.out.time = time;
        self.st.out.nofail = fail.truthy(key::NOFAIL);
        self.st.host_key = host_key;
        true
    }

    /// The last failure's [`Detail`], its host and fields copied out of
    /// the failure's dict.
    fn detail(&mut self) -> &Detail {
        let (fail, out) = (&self.st.fail, &mut self.st.out);
        out.host.clear();
        out.host.push_str(fail.get(self.st.host_key).unwrap_or(""));
        out.fields.clear();
        out.fields.extend(
            fail.live()
                .iter()
                .map(|(k, v)| (self.names.name(*k).to_string(), v.clone())),
        );
        out
    }

    /// The [`Hit`] of the last failure. A host matched as a name takes the
    /// name's address once [`crate::dns`] has it, with `usedns = yes` only
    /// (never waited for here); otherwise the match yields no hit, as does
    /// an `<F-ID>` that is no address.
    fn hit(&self) -> Option<Hit<'_>> {
        let (d, fail) = (&self.st.out, &self.st.fail);
        let host = fail.get(self.st.host_key).unwrap_or("");
        // `trim_start_matches` with a `&str` sets up a substring search on
        // every call: a prefix needs none
        let mut host = host;
        while let Some(h) = host.strip_prefix("::ffff:") {
            host = h;
        }
        let host: IpAddr = match host.parse() {
            Ok(a) => a,
            Err(_) if self.usedns == UseDns::Yes && is_host_name(host) => crate::dns::lookup(host)?,
            Err(_) => {
                if self.usedns == UseDns::Warn && is_host_name(host) {
                    crate::dns::skip_name();
                }
                return None;
            }
        };
        let mut hit = Hit::new(d.rule as u32, host, d.time);
        hit.nofail = d.nofail;
        for (k, v) in fail.live() {
            if *k >= key::FIELDS_FROM {
                hit.push_field(self.names.name(*k), v);
            }
        }
        Some(hit)
    }

    /// A copy for a scanning thread: the same compiled patterns, its own
    /// scratch space, no multi-line state.
    fn scanner_copy(&self) -> Filter {
        Filter {
            name: self.name.clone(),
            files: self.files.clone(),
            rules: self.rules.clone(),
            prefregex: self.prefregex.clone(),
            failregex: self.failregex.clone(),
            ignoreregex: self.ignoreregex.clone(),
            names: self.names.clone(),
            prefilter: self.prefilter.clone(),
            hits: self.hits.clone(),
            maxlines: self.maxlines,
            usedns: self.usedns,
            journalmatch: self.journalmatch.clone(),
            dates: self.dates.clone(),
            tz: self.tz.clone(),
            clock_skew: self.clock_skew,
            scanning: true,
            scan_tainted: false,
            st: State::default(),
        }
    }

    /// [`Filter::process`] up to the regex work ([`Filter::match_buf`]), on a
    /// scanning copy (`maxlines` 1): when a failregex matched, `rec` gets
    /// what [`Filter::settle_line`] needs to finish the line as `process`
    /// would, and the line's time is returned.
    fn scan_line(
        &mut self,
        line: &str,
        now: UnixTime,
        rec: &mut Vec<u32>,
    ) -> Option<Option<UnixTime>> {
        debug_assert!(self.scanning && self.maxlines == 1);
        let (cut, time, before) = self.cut_date(line, now);
        // the time of the line before may be in a block this copy did not
        // see
        self.scan_tainted |= before && time.is_none();
        let mut buf = std::mem::take(&mut self.st.buf);
        join_line(&mut buf, &line[..cut.0], &line[cut.1..]);
        let found = self.match_buf(&buf);
        self.st.buf = buf;
        let (idx, content) = found?;
        let span = |sp: Option<(usize, usize)>| match sp {
            Some((s, e)) => [s as u32, e as u32],
            None => [u32::MAX; 2],
        };
        let t = time.unwrap_or(0);
        rec.extend([cut.0 as u32, cut.1 as u32, time.is_some() as u32]);
        rec.extend([t as u32, (t >> 32) as u32, idx as u32]);
        rec.extend(span(content));
        for locs in [&self.st.pre_locs, &self.st.locs] {
            rec.push(locs.spans.len() as u32);
            rec.extend(locs.spans.iter().flat_map(|sp| span(*sp)));
        }
        Some(time)
    }

    /// On the original: the rest of [`Filter::process`] for a line a
    /// scanning copy wrote `rec` for ([`Filter::scan_line`]).
    fn settle_line(&mut self, line: &str, rec: &[u32]) -> bool {
        let mut r = rec.iter().map(|&w| w as usize);
        let mut next = || r.next().unwrap_or(0);
        let cut = (next(), next());
        let has_time = next() == 1;
        let t = next() as i64 | ((next() as i64) << 32);
        let time = has_time.then_some(t);
        let idx = next();
        let span = |s: usize, e: usize| (s != u32::MAX as usize).then_some((s, e));
        let content = span(next(), next());
        for pre in [true, false] {
            let n = next();
            let locs = if pre {
                &mut self.st.pre_locs
            } else {
                &mut self.st.locs
            };
            locs.spans.clear();
            for _ in 0..n {
                locs.spans.push(span(next(), next()));
            }
        }
        let mut buf = std::mem::take(&mut self.st.buf);
        join_line(&mut buf, &line[..cut.0], &line[cut.1..]);
        self.st.content.clear();
        if let Some((s, e)) = content {
            self.st.content.push_str(&buf[s..e]);
            self.st.content.push('\n');
        }
        let r = self.failure(&buf, idx, content, time);
        self.st.buf = buf;
        r
    }

    /// Failregex `idx`'s groups on `hay` into `self.st.locs`, from the
    /// memo when it holds them.
    fn failregex_captures(&mut self, idx: usize, hay: &str) -> bool {
        if let Some(spans) = self.st.memo.get(idx, hay) {
            self.st.locs.spans.clear();
            self.st.locs.spans.extend_from_slice(spans);
            #[cfg(debug_assertions)]
            {
                let mut want = Locs::default();
                assert!(self.failregex[idx].re.captures_hinted(hay, &mut want, None));
                assert_eq!(self.st.locs.spans, want.spans, "memo on {hay:?}");
            }
            return true;
        }
        let ways = self
            .prefilter
            .as_ref()
            .and_then(|p| p.ways(idx, &self.st.raw_hits));
        if !self.failregex[idx]
            .re
            .captures_hinted(hay, &mut self.st.locs, ways)
        {
            return false;
        }
        self.st.memo.put(idx, hay, &self.st.locs.spans);
        true
    }

    /// Removes the buffered lines a multi-line match covered.
    fn drop_matched_lines(&mut self, hay: &str) {
        let Some(Some((s, e))) = self.st.locs.spans.first().copied() else {
            return;
        };
        // bytes, not str slices: `e - 1` may fall inside a multi-byte char
        let b = hay.as_bytes();
        let first = memchr::memchr_iter(b'\n', &b[..s.min(b.len())]).count();
        let end = e.saturating_sub(1).min(b.len());
        let line_end = memchr::memchr(b'\n', &b[end..])
            .map(|p| end + p + 1)
            .unwrap_or(b.len());
        let last = memchr::memchr_iter(b'\n', &b[..line_end]).count();
        let mut i = 0;
        self.st.lines.retain(|_| {
            let keep = i < first || i >= last;
            i += 1;
            keep
        });
    }

    fn store_mlfid(&mut self, id: &str, fail: &FailMap) {
        if let Some((e, _)) = self.st.mlfid_cache.get_mut(id) {
            e.copy_from(fail);
        }
    }

    /// Drop `mlfid` from the cache and from the eviction order (fail2ban's
    /// cache is an OrderedDict: a removed id leaves the order too; a stale id
    /// there would make a later eviction skip, or evict a newer entry).
    fn forget_mlfid(&mut self, mlfid: &str) {
        if let Some((k, (v, _))) = self.st.mlfid_cache.remove_entry(mlfid)
            && self.st.spare_fails.len() < SPARE
        {
            self.st.spare_ids.push(k);
            self.st.spare_fails.push(v);
        }
        // ids are unique in the order, and mostly forgotten soon after
        // they came: the search starts from the newest
        if let Some(i) = self.st.mlfid_order.iter().rposition(|k| k == mlfid)
            && let Some(k) = self.st.mlfid_order.remove(i)
            && self.st.spare_ids.len() < 2 * SPARE
        {
            self.st.spare_ids.push(k);
        }
    }

    #[cfg(test)]
    fn advance_clock(&mut self, d: Duration) {
        self.clock_skew += d;
    }

    /// The process clock for the id cache's 5-minute expiry. A line
    /// matched on its own reads it afresh; lines a replay settles in order
    /// ([`SplitMatcher::settle`]) read it once every 64 look-ups, which are
    /// microseconds apart: reading it costs as much as the rest of a
    /// look-up.
    fn clock(&mut self) -> Instant {
        match &mut self.st.clock {
            Some((t, n)) if *n > 0 => {
                *n -= 1;
                *t
            }
            c => {
                let t = Instant::now();
                *c = Some((t, 63));
                t
            }
        }
    }

    /// filter.py's `_mergeFailure`, in place: `fail` becomes the merged
    /// dict, and the cache entry is written back after the caller's changes
    /// (Python shares one dict between both).
    fn merge_failure(&mut self, mlfid: &str, fail: &mut FailMap) {
        let mut nf = 0u8;
        if fail.truthy(key::MLFGAINED) {
            nf |= 8 | 1;
            if !fail.truthy(key::NOFAIL) {
                fail.set_from(key::NOFAIL, key::MLFGAINED);
            }
        } else if fail.truthy(key::NOFAIL) {
            nf |= 1;
        }
        if fail.take(key::MLFFORGET) {
            nf |= 2;
        }
        let mut users = 0;
        let now = self.clock() + self.clock_skew;
        // The cache entry's value is written back by `store_mlfid`, which
        // the caller always runs next: what it holds until then is never
        // read, so it is swapped, not copied, and a new one starts empty.
        let mut forget = false;
        let found = match self.st.mlfid_cache.get_mut(mlfid) {
            // Cache.get: an expired entry is removed and reads as absent.
            Some((_, expires)) if *expires <= now => {
                forget = true;
                false
            }
            None => false,
            Some((cached, _)) => {
                Self::merge_cached(cached, fail, &mut nf);
                users = fail.n_users;
                forget = nf & 2 != 0;
                true
            }
        };
        if forget {
            self.forget_mlfid(mlfid);
        }
        if !found && nf & 2 == 0 {
            users = fail.add_user();
            // Evicting the oldest id hands its buffers to the new one, so a
            // full cache takes a new id without allocating.
            // Cache.set when full: drop from the front, expired entries and
            // then the first live one.
            let mut recycled: Option<(String, String, FailMap)> = None;
            if self.st.mlfid_cache.len() >= MLFID_MAX {
                while let Some(old) = self.st.mlfid_order.pop_front() {
                    let Some((k, (v, expires))) = self.st.mlfid_cache.remove_entry(&old) else {
                        continue;
                    };
                    recycled = Some((old, k, v));
                    if expires > now {
                        break;
                    }
                }
            }
            let (mut order_key, mut key, mut val) = recycled.unwrap_or_else(|| {
                (
                    self.st.spare_ids.pop().unwrap_or_default(),
                    self.st.spare_ids.pop().unwrap_or_default(),
                    self.st.spare_fails.pop().unwrap_or_default(),
                )
            });
            order_key.clear();
            order_key.push_str(mlfid);
            key.clear();
            key.push_str(mlfid);
            val.clear();
            self.st.mlfid_order.push_back(order_key);
            self.st.mlfid_cache.insert(key, (val, now + MLFID_TTL));
        }
        if fail.take(key::MLFPENDING) || users > 1 {
            fail.take(key::NOFAIL);
            fail.take(key::MLFGAINED);
        }
    }

    /// [`Filter::merge_failure`] with a cached entry: `fail` becomes the
    /// merged dict, `cached` what `fail` was.
    fn merge_cached(cached: &mut FailMap, fail: &mut FailMap, nf: &mut u8) {
        if let Some(u) = fail.get(key::USER)
            && !cached.users().iter().any(|x| x == u)
        {
            cached.push_user(u);
        }
        if cached.take(key::NOFAIL) {
            *nf |= 4;
        }
        if cached.take(key::MLFGAINED) {
            *nf |= 4;
        }
        if *nf & 8 != 0 {
            cached.take(key::MLFPENDING);
        }
        for (k, v) in fail.live() {
            cached.set(*k, v);
        }
        std::mem::swap(cached, fail);
    }
}

/// A `RegexSet` with one linear pattern per failregex (a relaxed superset
/// for backtracking ones), or one per anchored way of a rewritten failregex
/// (see `Rewritten::ways`), so one pass also says which ways can match and
/// the others are never searched. When the prefregex has `<F-CONTENT>`, each
/// pattern is the prefregex's head joined to the failregex, so the set runs
/// once on the whole line before any capture is taken.
///
/// The sets are built on first use: the ASCII one when a line's first
/// pattern ([`Prefilter::first`]) does not settle it or there is no such
/// automaton, the Unicode one (far larger to compile) on the first line
/// with non-ASCII bytes. Without a set a line passes: the failregexes decide.
struct Prefilter {
    pats: Vec<String>,
    /// Shared by a filter's scanning copies (see [`Filter::scanner_copy`]).
    set: std::sync::Arc<std::sync::OnceLock<Option<regex::RegexSet>>>,
    /// For lines of ASCII text when every pattern is ASCII; built on first
    /// use (with [`Prefilter::first`], only a line its first pattern does
    /// not settle needs it) and shared by copies.
    ascii: std::sync::Arc<std::sync::OnceLock<Option<regex::bytes::RegexSet>>>,
    all_ascii: bool,
    /// The ASCII patterns as one leftmost-first automaton, when each is
    /// anchored at the start: one pass then finds the first pattern that
    /// matches (the failregexes are tried in order, so the ones before it
    /// cannot), and the sets run only when its failregex does not match
    /// after all. Shared by copies; each copy has its own cache.
    first: Option<std::sync::Arc<regex_automata::hybrid::dfa::DFA>>,
    first_cache: std::cell::RefCell<Option<regex_automata::hybrid::dfa::Cache>>,
    /// The last run found only the first pattern (`raw` holds it alone).
    partial: std::cell::Cell<bool>,
    /// True: run on the buffer before the prefregex; false: on the content.
    on_buffer: bool,
    /// For each failregex, its patterns in the set (`first..end`); more
    /// than one when they are its ways, in order.
    spans: Vec<(usize, usize)>,
    /// Whether the failregex's patterns are its ways.
    by_way: Vec<bool>,
    /// ASCII lines counted and passed since the last choice (see `tally`).
    tally: std::cell::Cell<(u32, u32)>,
    probe_first: std::cell::Cell<bool>,
}

/// A copy shares the compiled sets and starts its own tally.
impl Clone for Prefilter {
    fn clone(&self) -> Prefilter {
        Prefilter {
            pats: self.pats.clone(),
            set: self.set.clone(),
            ascii: self.ascii.clone(),
            all_ascii: self.all_ascii,
            first: self.first.clone(),
            first_cache: Default::default(),
            partial: Default::default(),
            on_buffer: self.on_buffer,
            spans: self.spans.clone(),
            by_way: self.by_way.clone(),
            tally: Default::default(),
            probe_first: Default::default(),
        }
    }
}

impl Prefilter {
    fn build(pref: Option<&Rx>, fails: &[Rx], multiline: bool) -> Option<Prefilter> {
        use shield_pyre::relax;
        if fails.is_empty() {
            return None;
        }
        let head = match pref {
            Some(p) if !multiline => match p.translated.find("(?P<content>") {
                Some(i) => Some(relax(&p.translated[..i])?),
                None => None,
            },
            _ => None,
        };
        let on_buffer = head.is_some() || pref.is_none();
        let join = |p: &str| -> String {
            let Some(body) = relax(p) else {
                return String::new();
            };
            match &head {
                None => body,
                Some(h) => match body.strip_prefix('^') {
                    Some(b) => format!("{h}(?:{b})"),
                    None => format!("{h}.*?(?:{body})"),
                },
            }
        };
        let mut pats = Vec::new();
        let mut spans = Vec::new();
        let mut by_way = Vec::new();
        for f in fails {
            let first = pats.len();
            let ways = f.re.ways();
            // a way that cannot be relaxed would match everything: then
            // the whole pattern stands for its ways
            let use_ways = !ways.is_empty() && ways.iter().all(|w| relax(w).is_some());
            if use_ways {
                pats.extend(ways.iter().map(|w| join(w)));
            } else {
                pats.push(join(&f.translated));
            }
            spans.push((first, pats.len()));
            by_way.push(use_ways);
        }
        // An address is never spaced: the automaton need not tell an IPv4
        // from an IPv6 one or a name, which multiplies its states. A line
        // this lets through that the failregexes refuse goes to the sets.
        let hosts: Vec<String> = crate::tags::host_patterns()
            .iter()
            .filter_map(|h| relax(h))
            .collect();
        let any_host = |p: &str| {
            hosts
                .iter()
                .fold(p.to_string(), |p, h| p.replace(h.as_str(), r"(?:\S+)"))
        };
        for p in &mut pats {
            *p = any_host(p);
        }
        let all_ascii = pats.iter().all(|p| p.is_ascii());
        let first = if all_ascii && pats.iter().all(|p| starts_with_caret(p)) {
            // the head as the patterns have it: with hosts replaced
            let head = head.as_deref().map(any_host);
            first_automaton(&pats, head.as_deref()).map(std::sync::Arc::new)
        } else {
            None
        };
        Some(Prefilter {
            pats,
            set: Default::default(),
            ascii: Default::default(),
            all_ascii,
            first,
            first_cache: Default::default(),
            partial: Default::default(),
            on_buffer,
            spans,
            by_way,
            tally: Default::default(),
            probe_first: Default::default(),
        })
    }

    /// Which patterns match `hay`: `raw` gets one slot per pattern, `hits`
    /// one per failregex (any of its patterns matched). On ASCII text with
    /// [`Prefilter::first`], only the first pattern that matches is set
    /// ([`Prefilter::partial`]); [`Prefilter::run_all`] then gives the rest.
    fn run(&self, hay: &str, raw: &mut Vec<bool>, hits: &mut [bool]) -> bool {
        self.partial.set(false);
        if let Some(f) = &self.first
            && shield_pyre::is_ascii(hay)
        {
            use regex_automata::{Anchored, Input};
            let mut cache = self.first_cache.borrow_mut();
            let cache = cache.get_or_insert_with(|| f.create_cache());
            let input = Input::new(hay.as_bytes()).anchored(Anchored::Yes);
            // the automaton never gives up (no minimum clear count)
            let found = f
                .try_search_fwd(cache, &input)
                .ok()
                .flatten()
                .map(|m| m.pattern().as_usize());
            #[cfg(debug_assertions)]
            if let Some(a) = self.ascii() {
                let mut all = vec![false; self.pats.len()];
                a.matches_read_at(&mut all, hay.as_bytes(), 0);
                assert_eq!(
                    found,
                    all.iter().position(|x| *x),
                    "first pattern on {hay:?}"
                );
            }
            let Some(i) = found else {
                return false;
            };
            raw.clear();
            raw.resize(self.pats.len(), false);
            raw[i] = true;
            for (h, &(a, b)) in hits.iter_mut().zip(&self.spans) {
                *h = (a..b).contains(&i);
            }
            self.partial.set(true);
            return true;
        }
        self.run_all(hay, raw, hits)
    }

    /// [`Prefilter::run`] with every pattern that matches.
    fn run_all(&self, hay: &str, raw: &mut Vec<bool>, hits: &mut [bool]) -> bool {
        self.partial.set(false);
        raw.clear();
        raw.resize(self.pats.len(), false);
        let ascii = if shield_pyre::is_ascii(hay) {
            self.ascii()
        } else {
            None
        };
        let any = match ascii {
            Some(a) => {
                let b = hay.as_bytes();
                if self.probe_first.get() && !a.is_match(b) {
                    debug_assert!(!a.matches_read_at(&mut vec![false; a.len()], b, 0));
                    self.tally(false);
                    return false;
                }
                a.matches_read_at(raw, b, 0)
            }
            _ => match self.unicode() {
                Some(set) => set.matches_read_at(raw, hay, 0),
                None => {
                    raw.fill(true);
                    true
                }
            },
        };
        self.tally(any);
        if !any {
            // the caller stops here: `hits` is not read
            return false;
        }
        for (h, &(a, b)) in hits.iter_mut().zip(&self.spans) {
            *h = raw[a..b].iter().any(|x| *x);
        }
        true
    }

    /// Counts an ASCII line's outcome; every 256 lines, picks whether the
    /// next ones try the set's plain automaton first. `is_match` answers a
    /// line that matches nothing without the pattern set `matches_read_at`
    /// allocates, but is a second pass on lines that do match: worth it
    /// when most lines are rejected (an access log), not under a flood of
    /// failures. Either way the answers are the same.
    fn tally(&self, passed: bool) {
        let (seen, hits) = self.tally.get();
        let (seen, hits) = (seen + 1, hits + u32::from(passed));
        if seen == 256 {
            self.probe_first.set(hits * 2 < seen);
            self.tally.set((0, 0));
        } else {
            self.tally.set((seen, hits));
        }
    }

    fn ascii(&self) -> Option<&regex::bytes::RegexSet> {
        if !self.all_ascii {
            return None;
        }
        self.ascii
            .get_or_init(|| {
                regex::bytes::RegexSetBuilder::new(&self.pats)
                    .unicode(false)
                    .dfa_size_limit(64 << 20)
                    .size_limit(64 << 20)
                    .build()
                    .ok()
            })
            .as_ref()
    }

    fn unicode(&self) -> Option<&regex::RegexSet> {
        self.set
            .get_or_init(|| {
                regex::RegexSetBuilder::new(&self.pats)
                    .dfa_size_limit(64 << 20)
                    .size_limit(64 << 20)
                    .build()
                    .ok()
            })
            .as_ref()
    }

    /// Which ways of failregex `idx` can match, when the set ran them.
    fn ways<'a>(&self, idx: usize, raw: &'a [bool]) -> Option<&'a [bool]> {
        let (a, b) = self.spans[idx];
        self.by_way[idx].then(|| &raw[a..b])
    }
}

/// A one-line buffer: the line's text before and after its date, and a
/// newline.
fn join_line(buf: &mut String, pre: &str, post: &str) {
    buf.clear();
    buf.push_str(pre);
    buf.push_str(post);
    buf.push('\n');
}

/// `pats` as one leftmost-first forward automaton that reports only where
/// a match ends and which pattern it is (see [`Prefilter::first`]). When
/// every pattern begins with `head` (the prefregex's part before the
/// content), the head is parsed once and joined to each pattern's rest:
/// parsing is most of the build, and the head most of each pattern. That
/// join means what the pattern's text means when the head stands alone:
/// it parses alone, has no top-level alternation (the rest would join its
/// last branch) and sets no flags at its top level (they would reach into
/// the rest).
fn first_automaton(
    pats: &[String],
    head: Option<&str>,
) -> Option<regex_automata::hybrid::dfa::DFA> {
    use regex_automata::{hybrid::dfa::DFA, nfa::thompson, util::syntax};
    use regex_syntax::ast::Ast;
    let syn = syntax::Config::new().unicode(false).utf8(false);
    let parse = |p: &str| syntax::parse_with(p, &syn).ok();
    // the head's syntax tree, read once: whether it joins, then its HIR
    // (translated as `parse` would: the same defaults, bytes, no Unicode)
    let head_hir = |h: &str| {
        let ast = regex_syntax::ast::parse::Parser::new().parse(h).ok()?;
        let joins = match &ast {
            Ast::Concat(c) => !c.asts.iter().any(|a| matches!(a, Ast::Flags(_))),
            Ast::Alternation(_) | Ast::Flags(_) => false,
            _ => true,
        };
        if !joins {
            return None;
        }
        regex_syntax::hir::translate::TranslatorBuilder::new()
            .unicode(false)
            .utf8(false)
            .build()
            .translate(h, &ast)
            .ok()
    };
    let head = head.filter(|h| pats.iter().all(|p| p.starts_with(h)));
    let head_hir = head.and_then(head_hir);
    let hirs = pats
        .iter()
        .map(|p| match (head, &head_hir) {
            (Some(h), Some(hh)) => {
                let hir = regex_syntax::hir::Hir::concat(vec![hh.clone(), parse(&p[h.len()..])?]);
                // as the whole text parses, but for the groups' numbers
                // (the automaton has no groups): `Display` shows no numbers
                debug_assert_eq!(
                    Some(hir.to_string()),
                    parse(p).map(|w| w.to_string()),
                    "{p:?}"
                );
                Some(hir)
            }
            _ => parse(p),
        })
        .collect::<Option<Vec<_>>>()?;
    let nfa = thompson::Compiler::new()
        .configure(
            thompson::Config::new()
                .utf8(false)
                .nfa_size_limit(Some(64 << 20))
                .which_captures(thompson::WhichCaptures::None),
        )
        .build_many_from_hir(&hirs)
        .ok()?;
    DFA::builder()
        .configure(
            DFA::config()
                .match_kind(regex_automata::MatchKind::LeftmostFirst)
                .cache_capacity(64 << 20)
                .skip_cache_capacity_check(true)
                .minimum_cache_clear_count(None),
        )
        .build_from_nfa(nfa)
        .ok()
        // every match of every pattern starts at the start
        .filter(|d| d.get_nfa().is_always_start_anchored())
}

/// Whether `p` starts with `^`, after flags that leave it the start of
/// the text: a quick test, before the automaton says for sure.
fn starts_with_caret(p: &str) -> bool {
    let rest = match p.strip_prefix("(?") {
        Some(r) => match r.split_once(')') {
            Some((flags, rest)) if flags.bytes().all(|b| b.is_ascii_alphabetic() && b != b'm') => {
                rest
            }
            _ => return false,
        },
        None => p,
    };
    rest.starts_with('^')
}

fn set_kv(v: &mut Vec<(String, String)>, k: &str, val: &str) {
    if let Some(s) = v.iter_mut().find(|(n, _)| n == k) {
        s.1 = val.to_string();
    } else {
        v.push((k.to_string(), val.to_string()));
    }
}

impl LineMatcher for Filter {
    fn rules(&self) -> &[RuleInfo] {
        &self.rules
    }

    fn match_line<'a>(&'a mut self, line: &'a str, now: UnixTime) -> Option<Hit<'a>> {
        if !self.process(line, now) {
            return None;
        }
        self.hit()
    }
}

impl SplitMatcher for Filter {
    /// With `maxlines` 1 a line's regex work depends on the line and the
    /// date template that matched last (the [`Carry`]); the multi-line
    /// failure ids are settled in order.
    fn scanner(&self) -> Option<Box<dyn SplitMatcher>> {
        (self.maxlines == 1).then(|| Box::new(self.scanner_copy()) as Box<dyn SplitMatcher>)
    }

    fn scan(&mut self, line: &str, now: UnixTime, rec: &mut Vec<u32>) -> Option<Option<UnixTime>> {
        self.scan_line(line, now, rec)
    }

    fn settle<'a>(&'a mut self, line: &'a str, rec: &[u32]) -> Option<Hit<'a>> {
        if !self.settle_line(line, rec) {
            return None;
        }
        self.hit()
    }

    fn carry(&self) -> Option<Carry> {
        (!self.scan_tainted).then(|| Carry {
            key: self.dates.last_key(),
            last_time: self.st.last_time,
        })
    }

    fn set_carry(&mut self, carry: Carry) {
        self.dates.set_last_key(carry.key);
        self.st.last_time = carry.last_time;
        self.scan_tainted = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The memo gives back only what was put for the same failregex and
    /// the same text: 1,000 texts in 256 slots share slots, and one text
    /// under two failregexes keeps both.
    #[test]
    fn group_memo_keeps_failregex_and_text_apart() {
        let mut m = GroupMemo::default();
        let spans = |i: usize| vec![Some((i, i + 1)), None];
        for i in 0..1000 {
            m.put(i % 3, &format!("line {i}\n"), &spans(i));
        }
        let mut kept = 0;
        for i in 0..1000 {
            let text = format!("line {i}\n");
            if let Some(got) = m.get(i % 3, &text) {
                assert_eq!(got, spans(i).as_slice(), "{text:?}");
                kept += 1;
            }
            assert_eq!(m.get(i % 3 + 1, &text), None, "{text:?}");
        }
        assert!((20..=256).contains(&kept), "{kept}");
        m.put(0, "same\n", &spans(1));
        m.put(1, "same\n", &spans(2));
        let both = [m.get(0, "same\n"), m.get(1, "same\n")];
        // in one slot the later put wins; in two both stay
        assert!(both[1] == Some(spans(2).as_slice()));
        assert!(both[0].is_none() || both[0] == Some(spans(1).as_slice()));
    }

    /// Lines whose content repeats (a memo hit) give what a fresh filter
    /// gives them, group for group.
    #[test]
    fn repeated_contents_match_as_fresh_ones() {
        let dir = filter_dir("memo");
        write(
            &dir,
            "memo.conf",
            "[Definition]\nprefregex = ^<F-MLFID>\\s*\\S+ sshd\\[\\d+\\]:</F-MLFID> <F-CONTENT>.+</F-CONTENT>$\n\
             failregex = ^Failed password for <F-USER>\\S+</F-USER> from <HOST>( port \\d+)?\n\
             \x20           ^Invalid user <F-USER>.*?</F-USER> from <HOST>\n",
        );
        let load = || {
            let mut f = Filter::load(&FilterRef::named("memo"), &dir).unwrap();
            f.set_timezone(TimeZone::UTC);
            f
        };
        let mut one = load();
        let mut seen = 0;
        for i in 0..60u32 {
            let what = match i % 4 {
                0 | 1 => format!(
                    "Failed password for u{} from 192.0.2.{} port 22",
                    i % 2,
                    i % 3
                ),
                2 => format!("Invalid user a b{} from 192.0.2.{}", i % 2, i % 5),
                _ => "Something else".to_string(),
            };
            let line = format!(
                "Aug 14 10:00:{:02} host sshd[{}]: {what}",
                i % 60,
                100 + i % 3
            );
            let got = one
                .match_detail(&line, 1_124_013_600)
                .map(|d| format!("{d:?}"));
            let want = load()
                .match_detail(&line, 1_124_013_600)
                .map(|d| format!("{d:?}"));
            assert_eq!(got, want, "{line}");
            seen += usize::from(got.is_some());
        }
        assert_eq!(seen, 45);
        assert!(one.st.memo.slots.iter().filter(|s| s.0 > 0).count() >= 4);
        std::fs::remove_dir_all(&dir).ok();
    }

    /// A host an `<F-ID>` takes as an IPv4-mapped IPv6 address is its
    /// IPv4 address, as fail2ban's `IPAddr` reads it; other ids give no hit.
    #[test]
    fn a_mapped_address_is_its_ipv4_address() {
        let dir = filter_dir("mapped");
        write(
            &dir,
            "mapped.conf",
            "[Definition]\nfailregex = ^\\S+ bad from <F-ID>\\S+</F-ID>$\n",
        );
        let mut f = Filter::load(&FilterRef::named("mapped"), &dir).unwrap();
        let host = |f: &mut Filter, id: &str| {
            let line = format!("x bad from {id}");
            f.match_line(&line, 1_772_323_200)
                .map(|h| h.host.to_string())
        };
        assert_eq!(
            host(&mut f, "::ffff:192.0.2.7").as_deref(),
            Some("192.0.2.7")
        );
        assert_eq!(host(&mut f, "192.0.2.8").as_deref(), Some("192.0.2.8"));
        assert_eq!(host(&mut f, "2001:db8::1").as_deref(), Some("2001:db8::1"));
        assert_eq!(host(&mut f, "ffff:192.0.2.7"), None);
        assert_eq!(host(&mut f, "user42"), None);
        std::fs::remove_dir_all(&dir).ok();
    }

    /// A filter with several faults names the first in file order,
    /// though its regexes compile on two threads: the prefregex, then the
    /// failregexes by index (a missing host included), then the
    /// ignoreregexes, then the dates.
    #[test]
    fn the_first_fault_is_reported() {
        let dir = filter_dir("faults");
        let load_with = |pref: &str, fails: [&str; 4], ignores: [&str; 2], dates: &str| {
            let mut text = format!(
                "[Definition]\nprefregex = {pref}\nfailregex = {}\n",
                fails[0]
            );
            for f in &fails[1..] {
                text.push_str(&format!("            {f}\n"));
            }
            text.push_str(&format!(
                "ignoreregex = {}\n            {}\n",
                ignores[0], ignores[1]
            ));
            text.push_str(&format!("datepattern = {dates}\n"));
            write(&dir, "faults.conf", &text);
            match Filter::load(&FilterRef::named("faults"), &dir) {
                Err(LoadError::Regex { option, index, .. }) => format!("{option} #{index}"),
                Err(LoadError::NoFailureId { index, .. }) => format!("no id #{index}"),
                Err(LoadError::DatePattern { .. }) => "dates".to_string(),
                Err(e) => format!("{e}"),
                Ok(_) => "ok".to_string(),
            }
        };
        let load =
            |pref: &str, fails: [&str; 4], dates: &str| load_with(pref, fails, ["^x", "^y"], dates);
        let ok = "^a <HOST>";
        let bad = "^a (<HOST>";
        let anon = "^a b";
        // `%%`: a `%` in a fail2ban file
        let d = "%%Y-%%m-%%d";
        let bad_d = "(%%Y-%%m";
        assert_eq!(load("", [ok, ok, ok, ok], d), "ok");
        assert_eq!(load("^(x", [bad, ok, ok, bad], bad_d), "prefregex #0");
        assert_eq!(load("", [ok, bad, ok, bad], bad_d), "failregex #1");
        assert_eq!(load("", [ok, ok, anon, bad], bad_d), "no id #2");
        assert_eq!(load("", [ok, ok, ok, bad], bad_d), "failregex #3");
        assert_eq!(
            load_with("", [ok, ok, ok, bad], ["(", "("], bad_d),
            "failregex #3"
        );
        assert_eq!(
            load_with("", [ok, ok, ok, ok], ["^x", "("], bad_d),
            "ignoreregex #1"
        );
        assert_eq!(load("", [ok, ok, ok, ok], bad_d), "dates");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn filter_ref_parses_args() {
        let r: FilterRef = "sshd[mode=aggressive, publickey=\"any\"]".parse().unwrap();
        assert_eq!(r.name_or_path, "sshd");
        assert_eq!(r.mode.as_deref(), Some("aggressive"));
        assert_eq!(r.args[1], ("publickey".to_string(), "any".to_string()));
        assert!("sshd[mode".parse::<FilterRef>().is_err());
        assert!("x[novalue]".parse::<FilterRef>().is_err());
    }

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    /// The directory for a test's filter files, named by `tag` and
    /// the process.
    fn filter_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("shield-f2b-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A scanning copy plus the original settling its records in order
    /// give what the original alone gives, hit for hit, when blocks of
    /// lines are scanned from the carry the lines before them leave: with
    /// failures that take their host from an earlier line's id, ids
    /// forgotten, and the date template changing mid-log. A scan from the
    /// wrong carry is told apart by its key.
    #[test]
    fn scanned_and_settled_lines_match_as_one_filter() {
        let dir = filter_dir("scan");
        write(
            &dir,
            "mini.conf",
            "[Definition]\nprefregex = ^<F-MLFID>\\s*\\S+ sshd\\[\\d+\\]:</F-MLFID> <F-CONTENT>.+</F-CONTENT>$\n\
             failregex = ^<F-NOFAIL>Connection from</F-NOFAIL> <HOST>\n\
             \x20           ^Failed password for <F-USER>\\S+</F-USER> from <HOST>\n\
             \x20           ^Disconnecting: Too many authentication failures\n\
             \x20           ^<F-MLFFORGET>Disconnected</F-MLFFORGET> from <HOST>\n\
             \x20           ^<F-MLFFORGET><F-MLFGAINED>Accepted \\w+</F-MLFGAINED></F-MLFFORGET> for <F-USER>\\S+</F-USER> from <HOST>\n",
        );
        let load = || {
            let mut f = Filter::load(&FilterRef::named("mini"), &dir).unwrap();
            f.set_timezone(TimeZone::UTC);
            f
        };
        let mut lines = Vec::new();
        for i in 0..600u32 {
            let pid = 100 + i % 7;
            let ip = format!("192.0.2.{}", i % 5);
            let date = if (200..260).contains(&i) {
                format!("2005-08-14T10:{:02}:{:02}", i / 60 % 60, i % 60)
            } else {
                format!("Aug 14 10:{:02}:{:02}", i / 60 % 60, i % 60)
            };
            let what = match i % 6 {
                0 => format!("Connection from {ip} port 22"),
                1 | 2 => format!("Failed password for u{} from {ip} port 22", i % 3),
                3 => "Disconnecting: Too many authentication failures".to_string(),
                4 if i % 4 == 0 => format!("Accepted publickey for u1 from {ip}"),
                4 => format!("Disconnected from {ip} port 22"),
                _ => "Something else".to_string(),
            };
            lines.push(format!("{date} host sshd[{pid}]: {what}"));
        }
        let now = 1_124_013_600;
        let show = |h: Option<Hit<'_>>| h.map(|h| format!("{h:?}"));
        let mut alone = load();
        let want: Vec<_> = lines
            .iter()
            .map(|l| show(alone.match_line(l, now)))
            .collect();
        assert!(want.iter().filter(|h| h.is_some()).count() > 200);
        assert!(
            want.iter().flatten().any(|h| h.contains("rule: 2")),
            "a host taken from the id's earlier line"
        );
        for block in [1, 7, 64, 1000] {
            let mut own = load();
            let mut scanner = own.scanner().unwrap();
            let mut got = Vec::new();
            for chunk in lines.chunks(block) {
                let carry = own.carry().unwrap();
                scanner.set_carry(carry);
                let mut rec = Vec::new();
                let mut at = Vec::new();
                for l in chunk {
                    let start = rec.len();
                    at.push(scanner.scan(l, now, &mut rec).map(|_| start));
                }
                let out = scanner.carry().unwrap();
                for (l, a) in chunk.iter().zip(at) {
                    got.push(a.and_then(|a| show(own.settle(l, &rec[a..]))));
                }
                own.set_carry(carry.then(out));
            }
            assert_eq!(got, want, "blocks of {block}");
        }
        // a scan from another template's carry says so by its key
        let own = load();
        let mut scanner = own.scanner().unwrap();
        scanner.set_carry(own.carry().unwrap());
        let mut rec = Vec::new();
        scanner.scan(&lines[0], now, &mut rec);
        assert_ne!(scanner.carry().unwrap().key, own.carry().unwrap().key);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// fail2ban's mlfid cache is an OrderedDict with FIFO eviction: an id
    /// forgotten (`<F-MLFFORGET>`) leaves the order too, so the next
    /// eviction still removes the oldest live id.
    #[test]
    fn mlfid_forget_keeps_eviction_order() {
        let dir = filter_dir("mlf");
        write(
            &dir,
            "mlf.conf",
            "[Definition]\nprefregex = ^<F-MLFID>c\\d+</F-MLFID> <F-CONTENT>.+</F-CONTENT>$\n\
             failregex = ^fail <F-USER>\\S+</F-USER> from <HOST>$\n\
             \x20           ^<F-MLFFORGET><F-MLFGAINED>ok</F-MLFGAINED></F-MLFFORGET> <F-USER>\\S+</F-USER> from <HOST>$\n",
        );
        let mut f = Filter::load(&FilterRef::named("mlf"), &dir).unwrap();
        let now = 1_124_013_600;
        for i in 0..100 {
            let l = format!("c{i} fail u{i} from 192.0.2.1");
            assert!(f.match_detail(&l, now).is_some(), "{l}");
        }
        // a second user on c0: a failure; c0 is forgotten (99 ids left)
        assert!(f.match_detail("c0 ok v from 192.0.2.1", now).is_some());
        f.match_detail("c100 fail u from 192.0.2.1", now).unwrap(); // 100 ids
        f.match_detail("c101 fail u from 192.0.2.1", now).unwrap(); // evicts c1
        // c1 is gone: its login is a plain success, not a second user
        assert!(f.match_detail("c1 ok w from 192.0.2.1", now).is_none());
        // Entries live 5 minutes of process time (fail2ban's maxTime): c2's
        // second user is a failure now, not after the entry expired.
        assert!(f.match_detail("c2 ok x from 192.0.2.1", now).is_some());
        f.advance_clock(Duration::from_secs(301));
        assert!(f.match_detail("c3 ok y from 192.0.2.1", now).is_none());
        // A new id after that gets its own 5 minutes.
        f.match_detail("c200 fail u from 192.0.2.1", now).unwrap();
        assert!(f.match_detail("c200 ok z from 192.0.2.1", now).is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The first-pattern automaton exists only when every pattern is
    /// anchored at the start (the NFA says so, not the text).
    #[test]
    fn prefilter_finds_the_first_pattern_only_when_all_are_anchored() {
        let first = |ps: &[&str]| {
            let fails: Vec<Rx> = ps
                .iter()
                .map(|p| Rx::compile(p, false, false).unwrap())
                .collect();
            Prefilter::build(None, &fails, false)
                .unwrap()
                .first
                .is_some()
        };
        assert!(first(&["^a <HOST>$", "(?i)^b <HOST>"]));
        assert!(!first(&["^a <HOST>$", "b <HOST>"]));
        assert!(!first(&["^a <HOST>$", "(?m)^b <HOST>"]));
        // starts with `^`, but its second branch does not
        assert!(!first(&["^a <HOST>|b <HOST>"]));
    }

    /// The automaton built with the head parsed once answers as the one
    /// built from the patterns' whole text: also for heads it must not
    /// join (a top-level alternation would take in the rest, a top-level
    /// flag would reach into it), which it then parses whole.
    #[test]
    fn a_shared_head_is_joined_only_where_it_means_the_same() {
        use regex_automata::{Anchored, Input};
        let run = |d: &regex_automata::hybrid::dfa::DFA, hay: &str| {
            let mut cache = d.create_cache();
            let input = Input::new(hay).anchored(Anchored::Yes);
            d.try_search_fwd(&mut cache, &input)
                .unwrap()
                .map(|m| (m.pattern().as_usize(), m.offset()))
        };
        let heads = [r"^h\d+ ", r"^a|^b", r"^(?i)x", r"^(?:k)(?i)", r"^(?i:x)"];
        let hays = [
            "h12 yz", "h1 q", "a", "by", "bq", "XY", "xy", "Xq", "kY", "ky", "XQ",
        ];
        for h in heads {
            let pats = [
                format!("{h}(?:y)"),
                format!("{h}(?:q)"),
                format!("{h}.*?(?:z)"),
            ];
            let joined = first_automaton(&pats, Some(h)).unwrap();
            let whole = first_automaton(&pats, None).unwrap();
            for hay in hays {
                assert_eq!(run(&joined, hay), run(&whole, hay), "{h:?} on {hay:?}");
            }
        }
        // the whole text decides: `a` alone matches the first pattern
        let pats = [r"^a|^b(?:y)".to_string()];
        assert_eq!(
            run(&first_automaton(&pats, Some("^a|^b")).unwrap(), "a"),
            Some((0, 1))
        );
    }

    /// A failregex with conditionals is split into ways; the prefilter runs
    /// each way, and only the ways it matched are searched. Lines here match
    /// by each way in turn (and one by none): a wrong way mask loses them,
    /// and so does a prefilter that mishandles non-ASCII lines. Both ways
    /// of running it: the first pattern that matches, then all when its
    /// failregex does not, and the sets alone.
    #[test]
    fn prefilter_picks_the_ways_of_a_conditional_failregex() {
        let dir = filter_dir("ways");
        let conf = "[Definition]\nprefregex = ^<F-MLFID>\\S+ d\\[\\d+\\]:</F-MLFID> <F-CONTENT>.+</F-CONTENT>$\n\
             failregex = ^Accepted \\S+ for <F-USER>\\S+</F-USER> from <HOST>$\n\
             \x20           ^Failed \\S+ for (?P<cond_inv>invalid user )?<F-USER>(?P<cond_user>\\S+)|(?(cond_inv)(?:(?! from ).)*?|[^:]+)</F-USER> from <HOST>(?: port \\d+)?(?(cond_user): |(?:(?:(?! from ).)*)$)\n\
             \x20           ^<F-USER>\\S+</F-USER> said (?!no)\\S+ from <HOST>$\n\
             \x20           ^<F-USER>\\S+</F-USER> said \\S+ from <HOST>$\n";
        write(&dir, "ways.conf", conf);
        for first in [true, false] {
            let name = if first { "first" } else { "sets" };
            let mut f = Filter::load(&FilterRef::named("ways"), &dir).unwrap();
            if !first {
                f.prefilter.as_mut().unwrap().first = None;
            }
            let pf = f.prefilter.as_ref().unwrap();
            assert!(
                pf.by_way[1] && pf.spans[1].1 - pf.spans[1].0 > 1,
                "{:?}",
                pf.spans
            );
            assert_eq!(pf.first.is_some(), first);
            let now = 1_124_013_600;
            // lines that match nothing: the sets then try `is_match` first
            for i in 0..300 {
                assert!(
                    f.match_detail(&format!("h d[{i}]: noise {i}"), now)
                        .is_none()
                );
            }
            assert_eq!(f.prefilter.as_ref().unwrap().probe_first.get(), !first);
            let cases = [
                (
                    "h d[1]: Failed password for invalid user bob from 192.0.2.1 port 22",
                    Some("bob"),
                ),
                (
                    "h d[2]: Failed password for invalid user a b from 192.0.2.2 port 22 x",
                    Some("a b"),
                ),
                (
                    "h d[3]: Failed password for root from 192.0.2.3 port 22",
                    Some("root"),
                ),
                (
                    "h d[4]: Failed password for a b from 192.0.2.4 port 22 x",
                    Some("a b"),
                ),
                ("h d[5]: Failed password for root: from 192.0.2.5", None),
                ("h d[6]: Accepted key for eve from 192.0.2.6", Some("eve")),
                // the first pattern that matches is a wider copy of the
                // third failregex (its lookahead dropped): the fourth wins
                // (below: and the third when its lookahead holds)
                ("h d[10]: bob said nope from 192.0.2.10", Some("bob")),
                ("h d[11]: ann said yes from 192.0.2.11", Some("ann")),
                ("h d[6]: accepted key for eve from 192.0.2.6", None),
                // non-ASCII: the Unicode set, built on first use
                (
                    "h d[7]: Failed password for jérôme from 192.0.2.7 port 22",
                    Some("jérôme"),
                ),
                ("h d[8]: Failed password for é: from 192.0.2.8", None),
            ];
            for (line, user) in cases {
                let got = f.match_detail(line, now).map(|d| {
                    let u = d.fields.iter().find(|(k, _)| k == "user");
                    u.map(|(_, v)| v.clone()).unwrap_or_default()
                });
                assert_eq!(got.as_deref(), user, "{name}: {line}");
            }
            // both of the last two failregexes match: the first of them wins
            for (line, rule) in [
                ("h d[10]: bob said nope from 192.0.2.10", 3),
                ("h d[11]: ann said yes from 192.0.2.11", 2),
            ] {
                assert_eq!(
                    f.match_detail(line, now).map(|d| d.rule),
                    Some(rule),
                    "{name}: {line}"
                );
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn self_contained_filter_with_prefregex_modes_and_ignore() {
        let dir = filter_dir("unit");
        write(
            &dir,
            "base.conf",
            "[DEFAULT]\n_daemon = \\S*\n__prefix = \\s*\\S+ <_daemon>(?:\\[\\d+\\])?:\\s+\n",
        );
        write(
            &dir,
            "demo.conf",
            "[INCLUDES]\nbefore = base.conf\n[Definition]\nprefregex = ^%(__prefix)s<F-CONTENT>.+</F-CONTENT>$\n\
             failregex = <mdre-<mode>>\n            ^bad user <F-USER>\\S+</F-USER> from <HOST>$\n\
             mdre-normal = ^auth fail from <HOST>$\nmdre-extra = ^auth (?:fail|slow) from <HOST>$\n\
             ignoreregex = from 10\\.9\\.\nmode = normal\n",
        );
        write(
            &dir,
            "demo.local",
            "[Definition]\nignoreregex = %(known/ignoreregex)s\n              from 10\\.8\\.\n",
        );
        let mut f = Filter::load(&FilterRef::named("demo"), &dir).unwrap();
        f.set_timezone(TimeZone::UTC);
        let now = 1_124_013_600;
        let h = f
            .match_detail("Aug 14 10:00:00 host app[1]: auth fail from 192.0.2.1", now)
            .unwrap();
        assert_eq!(
            (h.rule, h.host.as_str(), h.time),
            (0, "192.0.2.1", Some(now))
        );
        assert!(
            f.match_detail("Aug 14 10:00:00 host app[1]: auth slow from 192.0.2.1", now)
                .is_none()
        );
        assert!(
            f.match_detail("Aug 14 10:00:00 host app[1]: auth fail from 10.9.0.1", now)
                .is_none()
        );
        assert!(
            f.match_detail("Aug 14 10:00:00 host app[1]: auth fail from 10.8.0.1", now)
                .is_none(),
            ".local overlay"
        );
        let hit = f
            .match_line(
                "Aug 14 10:00:00 host app[1]: bad user root from 2001:db8::1",
                now,
            )
            .unwrap();
        assert_eq!(hit.rule, 1);
        assert_eq!(hit.host.ip(), "2001:db8::1".parse::<IpAddr>().unwrap());
        assert_eq!(hit.field("user"), Some("root"));
        let mut f = Filter::load(&"demo[mode=extra]".parse().unwrap(), &dir).unwrap();
        assert!(
            f.match_detail("Aug 14 10:00:00 host app[1]: auth slow from 192.0.2.1", now)
                .is_some()
        );
        assert_eq!(f.rules()[1].name, "demo#1");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
