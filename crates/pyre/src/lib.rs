//! Python `re` patterns (as fail2ban writes them) translated for Rust: the
//! `regex` crate (linear time) whenever the pattern allows, `fancy-regex`
//! (backtracking, with a limit) only for lookaround, backreferences and
//! conditionals, and for those only when `rewrite.rs` cannot turn them into
//! linear patterns with checks.
//!
//! Python semantics kept: `$` also matches before a final `\n` (fail2ban's
//! buffers end with one), an unescaped `[` inside a class is a literal, `{,n}`
//! means `{0,n}`, a `{` that is not a quantifier is a literal, `\Z` is `\z`,
//! `(?P=name)` back-references, escaped non-letters are literals.
//!
//! On ASCII text a pattern runs as its ASCII twin (Unicode off: the same
//! results there, a far smaller automaton). Groups of a pattern anchored at
//! the start come from [`bt::Prog`], match spans from a lazy DFA searched
//! with the engine's own cache; every automaton is compiled on first use and
//! shared by the engine's clones (one per matcher thread).
//!
//! A crate of its own because it is one: nothing here knows of fail2ban's
//! files, tags or dates (`shield-fail2ban` uses [`Re`] and [`Locs`]).

use std::cell::RefCell;
use std::sync::{Arc, OnceLock};

use regex_automata::nfa::thompson::{self, backtrack};
use regex_automata::util::primitives::NonMaxUsize;
use regex_automata::{Anchored, Input};

mod bt;
mod rewrite;

/// A translated pattern and whether it needs the backtracking engine.
#[derive(Debug, Clone)]
pub struct Translated {
    pub pattern: String,
    pub fancy: bool,
}

fn is_quantifier(s: &[u8]) -> Option<(usize, String)> {
    // s starts at '{'; accepts {n} {n,} {n,m} {,m}
    let mut i = 1;
    let mut a = String::new();
    while i < s.len() && s[i].is_ascii_digit() {
        a.push(s[i] as char);
        i += 1;
    }
    if i < s.len() && s[i] == b'}' {
        return if a.is_empty() {
            None
        } else {
            Some((i + 1, format!("{{{a}}}")))
        };
    }
    if i >= s.len() || s[i] != b',' {
        return None;
    }
    i += 1;
    let mut b = String::new();
    while i < s.len() && s[i].is_ascii_digit() {
        b.push(s[i] as char);
        i += 1;
    }
    if i < s.len() && s[i] == b'}' {
        if a.is_empty() && b.is_empty() {
            return None; // Python treats `{,}` as a literal
        }
        let a = if a.is_empty() { "0".to_string() } else { a };
        return Some((i + 1, format!("{{{a},{b}}}")));
    }
    None
}

fn push_literal(out: &mut String, c: char) {
    let mut buf = [0u8; 4];
    out.push_str(&regex::escape(c.encode_utf8(&mut buf)));
}

/// Translates a Python pattern. `multiline` is fail2ban's `re.MULTILINE`
/// (set when `maxlines > 1`).
pub fn translate(py: &str, multiline: bool) -> Translated {
    let mut out = String::with_capacity(py.len() + 16);
    let mut fancy = false;
    let chars: Vec<char> = py.chars().collect();
    let bytes_at =
        |i: usize| -> Vec<u8> { chars[i..].iter().take(24).collect::<String>().into_bytes() };
    let mut i = 0;
    let n = chars.len();
    while i < n {
        let c = chars[i];
        match c {
            '\\' if i + 1 < n => {
                let e = chars[i + 1];
                i += 2;
                match e {
                    'Z' => out.push_str(r"\z"),
                    '1'..='9' => {
                        fancy = true;
                        out.push('\\');
                        out.push(e);
                    }
                    c if c.is_ascii_alphanumeric() => {
                        out.push('\\');
                        out.push(c);
                    }
                    c => push_literal(&mut out, c),
                }
            }
            '[' => {
                i = translate_class(&chars, i, &mut out);
            }
            '(' if i + 1 < n && chars[i + 1] == '?' => {
                let rest: String = chars[i..].iter().take(5).collect();
                let lookaround = ["(?=", "(?!", "(?<=", "(?<!"]
                    .iter()
                    .any(|p| rest.starts_with(p));
                let backref_or_cond = rest.starts_with("(?P=") || rest.starts_with("(?(");
                if rest.starts_with("(?(") {
                    // Python's `(?(name)yes|no)` tests whether group `name`
                    // matched; fancy-regex reads a bare name there as a
                    // pattern, so spell it `(?(<name>)`.
                    let name: String = chars[i + 3..]
                        .iter()
                        .take_while(|c| c.is_alphanumeric() || **c == '_')
                        .collect();
                    let close = i + 3 + name.chars().count();
                    if !name.is_empty()
                        && !name.chars().all(|c| c.is_ascii_digit())
                        && chars.get(close) == Some(&')')
                    {
                        fancy = true;
                        out.push_str("(?(<");
                        out.push_str(&name);
                        out.push_str(">)");
                        i = close + 1;
                        continue;
                    }
                }
                if lookaround || backref_or_cond {
                    fancy = true;
                } else if rest.starts_with("(?#") {
                    // comment group: drop it
                    while i < n && chars[i] != ')' {
                        i += 1;
                    }
                    i += 1;
                    continue;
                }
                out.push('(');
                i += 1;
            }
            '{' => {
                if let Some((len, q)) = is_quantifier(&bytes_at(i)) {
                    out.push_str(&q);
                    i += len;
                } else {
                    out.push_str(r"\{");
                    i += 1;
                }
            }
            '}' => {
                out.push_str(r"\}");
                i += 1;
            }
            '$' => {
                out.push_str(if multiline { "(?m:$)" } else { r"(?:\n?\z)" });
                i += 1;
            }
            '^' if multiline => {
                out.push_str("(?m:^)");
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Translated {
        pattern: out,
        fancy,
    }
}

/// Copies a character class starting at `chars[start] == '['`, returns the
/// index after its closing `]`.
fn translate_class(chars: &[char], start: usize, out: &mut String) -> usize {
    let n = chars.len();
    let mut i = start + 1;
    out.push('[');
    if i < n && chars[i] == '^' {
        out.push('^');
        i += 1;
    }
    if i < n && chars[i] == ']' {
        out.push_str(r"\]");
        i += 1;
    }
    while i < n {
        let c = chars[i];
        match c {
            ']' => {
                out.push(']');
                return i + 1;
            }
            '\\' if i + 1 < n => {
                let e = chars[i + 1];
                if e.is_ascii_alphanumeric() {
                    out.push('\\');
                    out.push(if e == 'Z' { 'z' } else { e });
                } else {
                    push_literal(out, e);
                }
                i += 2;
            }
            '[' | '&' | '~' => {
                out.push('\\');
                out.push(c);
                i += 1;
            }
            '-' if i + 1 < n && chars[i + 1] == '-' => {
                out.push_str(r"\-");
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    // unterminated: let the engine report it
    i
}

/// A compiled translated pattern. A clone shares every compiled automaton
/// and has its own scratch state (capture slots, memos).
#[derive(Debug, Clone)]
pub enum Re {
    /// The linear engine.
    Fast(Box<Lin>),
    /// A pattern rewritten for the linear engine (conditionals expanded,
    /// lookaheads checked after the match), with the backtracking engine
    /// for the lines where a check fails. See `rewrite.rs`.
    Checked(Box<Checked>),
    Fancy(fancy_regex::Regex),
}

/// The linear engine, and the same pattern without its trailing `.*$` for
/// single-line haystacks (see `rewrite::trim_tail`): the backtracker that
/// finds the groups then stops where the tail starts.
#[derive(Debug, Clone)]
pub struct Lin {
    full: CompiledPattern,
    tail: Option<(CompiledPattern, Vec<usize>)>,
    /// For `^(?P<g>M)E(?P<content>.+)$` (a prefregex): `(?:E)\z`, and
    /// whether the tail was `.+` (see `rewrite::Trimmed::head_split`).
    split: Option<(CompiledPattern, bool)>,
    /// When `E` matches empty and each of its other matches ends with one
    /// of these: text ending with none of them needs no search for `E`.
    split_ends: Option<Vec<Vec<u8>>>,
}

/// See [`Lin::split_ends`]: for `(?:E)\z`, the last bytes of `E`'s
/// non-empty matches, when they are few and `E` matches empty.
fn split_ends(pattern: &str) -> Option<Vec<Vec<u8>>> {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    // Unicode on: its case variants include the ASCII twin's
    let hir = regex_syntax::Parser::new().parse(pattern).ok()?;
    let seq = Extractor::new().kind(ExtractKind::Suffix).extract(&hir);
    let lits = seq.literals()?;
    // an inexact empty literal says nothing of how a match ends
    if lits
        .iter()
        .any(|l| l.as_bytes().is_empty() && !l.is_exact())
        || !lits.iter().any(|l| l.as_bytes().is_empty())
    {
        return None;
    }
    Some(
        lits.iter()
            .filter(|l| !l.as_bytes().is_empty())
            .map(|l| l.as_bytes().to_vec())
            .collect(),
    )
}

/// One compiled pattern (its [`Core`], shared with clones) with its own
/// reusable capture slots.
#[derive(Debug)]
struct CompiledPattern {
    core: Arc<Core>,
    scratch: RefCell<Scratch>,
}

/// A clone shares every compiled automaton (and whatever is compiled lazily
/// later) and starts with fresh scratch state: one clone per matcher thread.
impl Clone for CompiledPattern {
    fn clone(&self) -> CompiledPattern {
        CompiledPattern {
            core: Arc::clone(&self.core),
            scratch: Default::default(),
        }
    }
}

/// The compiled parts of a pattern: the pattern, and the same pattern
/// compiled without Unicode for ASCII haystacks (identical results there,
/// and a far smaller automaton). Shared by clones; the automata are built
/// on first need (once for all clones), so a pattern only some lines reach,
/// or the Unicode one when every line is ASCII, costs a parse at load.
#[derive(Debug)]
struct Core {
    pattern: Box<str>,
    /// The groups' names, group 0 first (None: unnamed).
    names: Box<[Option<Box<str>>]>,
    /// The Unicode automaton. `None` inside: it did not compile (the parse
    /// at load succeeded, so only a size limit can refuse it).
    uni: OnceLock<Option<regex::Regex>>,
    /// The ASCII twin, `None` inside when the pattern has none.
    ascii: OnceLock<Option<Ascii>>,
    /// Built on the first group search: see [`Split`].
    split: OnceLock<Option<Box<Split>>>,
}

/// The mutable state of searches with one [`Core`]: capture slots, and the
/// split's. One per engine clone.
#[derive(Debug, Default)]
struct Scratch {
    locs: Option<regex::CaptureLocations>,
    ascii: Option<regex::bytes::CaptureLocations>,
    /// The ASCII twin's backtracker cache and slots (the fallback's).
    bt: Option<(backtrack::Cache, Vec<Option<NonMaxUsize>>)>,
    /// [`bt::Prog`]'s cache.
    prog: bt::Cache,
    /// [`Ascii::spans`]'s cache.
    spans: Option<regex_automata::meta::Cache>,
    /// Group searches on ASCII text, and how many of them failed (halved
    /// now and then, to follow the input): see [`Core::captures_at`].
    tries: u32,
    fails: u32,
    split: Option<Box<SplitScratch>>,
}

/// A pattern `^A L B` cut at a literal `L` of its top-level sequence
/// (`rewrite::lit_split`). Every match holds `L` right after `A`; when `L`
/// occurs once in the haystack, at `p`, every match's `A` ends at `p`. The
/// backtracking engine's first path is then its first path of `A` ending
/// at `p` (`^(?:A)\z` on the text before `p`: `A` has no assertions that
/// could see the cut), followed by its first path of `L B` from `p` (no
/// back-references or conditionals tie the two). Two short group searches
/// instead of one that backtracks over the whole line.
#[derive(Debug)]
struct Split {
    head: Core,
    lit: memchr::memmem::Finder<'static>,
    /// `L` starts at the first occurrence of its first byte (`A` cannot
    /// hold it), however often `L` occurs: `LitSplit::first`.
    first: bool,
    rest: Core,
}

/// A [`Split`]'s mutable state.
#[derive(Debug, Default)]
struct SplitScratch {
    head: Scratch,
    rest: Scratch,
    /// The groups of the head and of the rest.
    a: Locs,
    r: Locs,
    /// `first` cuts only (date-template heads): see [`RestMemo`].
    memo: RestMemo,
}

/// The last groups of a split's `^L B` half, for lines that repeat its
/// match: `^[^\[]*\[(date)` sees the same date on every line of a second.
/// An anchored search's groups depend only on the text up to its match end
/// and the byte after it (look-arounds see no further), so when the
/// automaton ends the new match at the same place and those bytes are the
/// same, so are the groups: one automaton pass instead of the backtracker.
/// A memo that seldom hits turns itself off.
#[derive(Debug, Default)]
struct RestMemo {
    /// The text up to the match end and the byte after it, if any.
    text: Vec<u8>,
    end: usize,
    spans: Vec<Option<(usize, usize)>>,
    valid: bool,
    tries: u64,
    hits: u64,
    off: bool,
}

impl Split {
    fn new(full: &Core) -> Option<Box<Split>> {
        let ls = rewrite::lit_split(full.as_str())?;
        let head = Core::new(&ls.head)?;
        // `^L B` on the text from `p`: `L` is a literal, so nothing in `B`
        // looks left of `p`
        let rest = Core::new(&ls.rest)?;
        // the same groups in the same order
        let names = head
            .capture_names()
            .skip(1)
            .chain(rest.capture_names().skip(1));
        if !names.eq(full.capture_names().skip(1)) {
            return None;
        }
        Some(Box::new(Split {
            head,
            lit: memchr::memmem::Finder::new(ls.lit.as_bytes()).into_owned(),
            first: ls.first,
            rest,
        }))
    }

    /// `rest`'s groups on `hay`, from the memo when it holds them.
    fn rest_captures(&self, s: &mut Scratch, m: &mut RestMemo, hay: &str, r: &mut Locs) -> bool {
        if !self.first || m.off {
            return self.rest.captures(s, hay, r);
        }
        let Some((_, end)) = self.rest.find(s, hay) else {
            return false;
        };
        let b = hay.as_bytes();
        let key = &b[..(end + 1).min(b.len())];
        m.tries += 1;
        if m.valid && m.end == end && m.text == key {
            m.hits += 1;
            r.spans.clear();
            r.spans.extend_from_slice(&m.spans);
            #[cfg(debug_assertions)]
            {
                let mut want = Locs::default();
                assert!(self.rest.captures(s, hay, &mut want), "memo on {hay:?}");
                assert_eq!(r.spans, want.spans, "memo on {hay:?}");
            }
            return true;
        }
        if m.tries >= 256 && m.hits * 2 < m.tries {
            m.off = true;
        }
        if !self.rest.captures(s, hay, r) {
            return false;
        }
        m.text.clear();
        m.text.extend_from_slice(key);
        m.end = end;
        m.spans.clear();
        m.spans.extend_from_slice(&r.spans);
        m.valid = true;
        true
    }

    /// The groups, or None when `L` occurs more than once (unless `first`).
    fn captures(&self, sc: &mut SplitScratch, hay: &str, locs: &mut Locs) -> Option<bool> {
        let b = hay.as_bytes();
        let p = if self.first {
            let lit = self.lit.needle();
            let Some(p) = memchr::memchr(lit[0], b) else {
                return Some(false);
            };
            if !b[p..].starts_with(lit) {
                return Some(false);
            }
            p
        } else {
            let Some(p) = self.lit.find(b) else {
                return Some(false);
            };
            if self.lit.find(&b[p + 1..]).is_some() {
                return None;
            }
            p
        };
        // the head's automaton, then the rest's groups, then the head's: a
        // line that fails mostly fails in an automaton
        let (head, rest) = (&hay[..p], &hay[p..]);
        let SplitScratch {
            head: hs,
            rest: rs,
            a,
            r,
            memo,
        } = sc;
        // a head without groups has nothing to capture once it matched
        let grouped = self.head.captures_len() > 1;
        if !self.head.is_match(hs, head)
            || !self.rest_captures(rs, memo, rest, r)
            || (grouped && !self.head.captures(hs, head, a))
        {
            return Some(false);
        }
        if !grouped {
            a.spans.clear();
            a.spans.push(Some((0, p)));
        }
        let Some(Some((_, end))) = r.spans.first().copied() else {
            return Some(false);
        };
        locs.spans.clear();
        locs.spans.push(Some((0, p + end)));
        locs.spans.extend_from_slice(&a.spans[1..]);
        let shift = |s: &Option<(usize, usize)>| s.map(|(x, y)| (p + x, p + y));
        locs.spans.extend(r.spans[1..].iter().map(shift));
        Some(true)
    }
}

impl CompiledPattern {
    fn new(pattern: &str) -> Option<CompiledPattern> {
        Some(CompiledPattern {
            core: Arc::new(Core::new(pattern)?),
            scratch: Default::default(),
        })
    }

    fn core(&self) -> &Core {
        &self.core
    }

    fn captures(&self, hay: &str, locs: &mut Locs) -> bool {
        self.core
            .captures(&mut self.scratch.borrow_mut(), hay, locs)
    }

    fn is_match(&self, hay: &str) -> bool {
        self.core.is_match(&mut self.scratch.borrow_mut(), hay)
    }

    fn find(&self, hay: &str) -> Option<(usize, usize)> {
        self.core.find(&mut self.scratch.borrow_mut(), hay)
    }
}

/// The automaton a search on a haystack runs: the ASCII twin on ASCII text.
enum Pick<'a> {
    Ascii(&'a Ascii),
    Uni(&'a regex::Regex),
    /// The automaton did not compile: nothing matches.
    Nothing,
}

impl Core {
    /// Checks that `pattern` parses (as `regex::Regex` would) and reads its
    /// group names; compiles nothing.
    fn new(pattern: &str) -> Option<Core> {
        Some(Core {
            pattern: pattern.into(),
            names: parse_names(pattern)?.into(),
            uni: OnceLock::new(),
            ascii: OnceLock::new(),
            split: OnceLock::new(),
        })
    }

    fn as_str(&self) -> &str {
        &self.pattern
    }

    fn capture_names(&self) -> impl Iterator<Item = Option<&str>> {
        self.names.iter().map(|n| n.as_deref())
    }

    fn captures_len(&self) -> usize {
        self.names.len()
    }

    /// The Unicode automaton, compiled on first use. The parse succeeded,
    /// so only the size limit can refuse it: lazily compiled patterns get a
    /// generous one (an automaton that big would be slow, not wrong).
    fn uni(&self) -> Option<&regex::Regex> {
        self.uni
            .get_or_init(|| {
                let re = regex::RegexBuilder::new(&self.pattern)
                    .dfa_size_limit(DFA_CACHE)
                    .size_limit(LAZY_NFA_LIMIT)
                    .build()
                    .ok();
                debug_assert!(
                    re.is_some(),
                    "{:?} parsed but does not compile",
                    self.pattern
                );
                #[cfg(debug_assertions)]
                if let Some(re) = &re
                    && !self.names.is_empty()
                {
                    assert!(
                        re.capture_names().eq(self.capture_names()),
                        "group names of {:?}",
                        self.pattern
                    );
                }
                re
            })
            .as_ref()
    }

    fn twin(&self) -> Option<&Ascii> {
        self.ascii
            .get_or_init(|| ascii_twin(&self.pattern))
            .as_ref()
    }

    fn pick(&self, hay: &str) -> Pick<'_> {
        if is_ascii(hay)
            && let Some(a) = self.twin()
        {
            return Pick::Ascii(a);
        }
        match self.uni() {
            Some(re) => Pick::Uni(re),
            None => Pick::Nothing,
        }
    }

    fn captures(&self, s: &mut Scratch, hay: &str, locs: &mut Locs) -> bool {
        if let Some(sp) = self.split.get_or_init(|| Split::new(self)) {
            let ss = s.split.get_or_insert_with(Default::default);
            if let Some(m) = sp.captures(ss, hay, locs) {
                #[cfg(debug_assertions)]
                {
                    let mut want = Locs::default();
                    let full = self.captures_at(s, hay, 0, &mut want);
                    assert_eq!(m, full, "split {:?} on {hay:?}", self.as_str());
                    if m {
                        assert_eq!(
                            locs.spans,
                            want.spans,
                            "split {:?} on {hay:?}",
                            self.as_str()
                        );
                    }
                }
                return m;
            }
        }
        self.captures_at(s, hay, 0, locs)
    }

    /// The groups of the leftmost-first match starting at `start` or later.
    fn captures_at(&self, s: &mut Scratch, hay: &str, start: usize, locs: &mut Locs) -> bool {
        match self.pick(hay) {
            Pick::Ascii(a) => {
                // A search that succeeds costs the backtracker either
                // way, and the automaton pass before it is spared; one
                // that fails costs the automaton pass when it runs first,
                // and a backtracker that tries every path when it does
                // not. Where searches mostly fail, the automaton goes
                // first.
                if s.tries >= 1024 {
                    s.tries /= 2;
                    s.fails /= 2;
                }
                s.tries += 1;
                if start == 0
                    && let Some(bt) = &a.bt
                    && hay.len() <= bt.max_haystack_len()
                    && (s.tries < 64 || s.fails * 8 < s.tries)
                {
                    let found = self.backtrack(a, bt, s, hay, locs);
                    s.fails += u32::from(!found);
                    return found;
                }
                let cl = s.ascii.get_or_insert_with(|| a.re.capture_locations());
                let found = a.re.captures_read_at(cl, hay.as_bytes(), start).is_some();
                #[cfg(debug_assertions)]
                if let Some(re) = self.uni() {
                    let mut u = re.capture_locations();
                    let want = re.captures_read_at(&mut u, hay, start).is_some();
                    assert_eq!(found, want, "ASCII twin of {:?} on {hay:?}", self.as_str());
                    if found {
                        for g in 0..u.len() {
                            assert_eq!(cl.get(g), u.get(g), "ASCII twin, group {g}, {hay:?}");
                        }
                    }
                }
                if !found {
                    s.fails += 1;
                    return false;
                }
                locs.spans.clear();
                locs.spans.extend((0..cl.len()).map(|g| cl.get(g)));
                true
            }
            Pick::Uni(re) => {
                let cl = s.locs.get_or_insert_with(|| re.capture_locations());
                if re.captures_read_at(cl, hay, start).is_none() {
                    return false;
                }
                locs.spans.clear();
                locs.spans.extend((0..cl.len()).map(|g| cl.get(g)));
                true
            }
            Pick::Nothing => false,
        }
    }

    /// The groups of an anchored pattern's match on ASCII `hay`, from a
    /// backtracker alone: `regex` would first run its DFA to find where the
    /// match ends, then `bt` on that span. [`bt::Prog`] when it compiled
    /// and takes `hay` (the same groups, faster), else `bt`.
    fn backtrack(
        &self,
        a: &Ascii,
        bt: &backtrack::BoundedBacktracker,
        s: &mut Scratch,
        hay: &str,
        locs: &mut Locs,
    ) -> bool {
        let prog = a.prog.get_or_init(|| bt::Prog::new(bt.get_nfa()));
        let found = match prog
            .as_ref()
            .and_then(|p| p.search(&mut s.prog, hay.as_bytes()))
        {
            Some(found) => {
                if found {
                    locs.spans.clear();
                    locs.spans.extend(s.prog.spans());
                }
                #[cfg(debug_assertions)]
                {
                    let want = Self::bt_search(bt, s, hay).then(|| {
                        let (_, slots) = s.bt.as_ref().expect("searched");
                        slots.iter().map(|s| s.map(|s| s.get())).collect()
                    });
                    assert_eq!(
                        found.then(|| s.prog.slots().collect::<Vec<_>>()),
                        want,
                        "bt::Prog of {:?} on {hay:?}",
                        self.as_str()
                    );
                }
                found
            }
            None => {
                let found = Self::bt_search(bt, s, hay);
                if found {
                    let (_, slots) = s.bt.as_ref().expect("searched");
                    locs.spans.clear();
                    locs.spans.extend(
                        slots
                            .chunks_exact(2)
                            .map(|p| Some((p[0]?.get(), p[1]?.get()))),
                    );
                }
                found
            }
        };
        #[cfg(debug_assertions)]
        {
            let a = self.twin().expect("a backtracker has a twin");
            let mut cl = a.re.capture_locations();
            let want = a.re.captures_read_at(&mut cl, hay.as_bytes(), 0).is_some();
            assert_eq!(found, want, "backtracker of {:?} on {hay:?}", self.as_str());
            if found {
                let w: Vec<_> = (0..cl.len()).map(|g| cl.get(g)).collect();
                assert_eq!(
                    locs.spans,
                    w,
                    "backtracker of {:?} on {hay:?}",
                    self.as_str()
                );
            }
        }
        found
    }

    /// regex-automata's backtracker, anchored, on `hay` (whose length the
    /// caller checked): whether it matched; its slots are in `s.bt`.
    fn bt_search(bt: &backtrack::BoundedBacktracker, s: &mut Scratch, hay: &str) -> bool {
        let (cache, slots) = s.bt.get_or_insert_with(|| {
            let n = bt.get_nfa().group_info().slot_len();
            (bt.create_cache(), vec![None; n])
        });
        let input = Input::new(hay).anchored(Anchored::Yes);
        let m = bt.try_search_slots(cache, &input, slots);
        debug_assert!(m.is_ok(), "length checked");
        matches!(m, Ok(Some(_)))
    }

    fn is_match(&self, s: &mut Scratch, hay: &str) -> bool {
        match self.pick(hay) {
            Pick::Ascii(a) => {
                let m = match a.spans() {
                    Some(re) => {
                        let cache = s.spans.get_or_insert_with(|| re.create_cache());
                        re.search_half_with(cache, &Input::new(hay)).is_some()
                    }
                    None => a.re.is_match(hay.as_bytes()),
                };
                #[cfg(debug_assertions)]
                if let Some(re) = self.uni() {
                    assert_eq!(m, re.is_match(hay), "ASCII twin on {hay:?}");
                }
                m
            }
            Pick::Uni(re) => re.is_match(hay),
            Pick::Nothing => false,
        }
    }

    /// The span of the leftmost-first match (found by the DFA alone).
    fn find(&self, s: &mut Scratch, hay: &str) -> Option<(usize, usize)> {
        match self.pick(hay) {
            Pick::Ascii(a) => {
                let m = match a.spans() {
                    Some(re) => {
                        let cache = s.spans.get_or_insert_with(|| re.create_cache());
                        re.search_with(cache, &Input::new(hay))
                            .map(|m| (m.start(), m.end()))
                    }
                    None => a.re.find(hay.as_bytes()).map(|m| (m.start(), m.end())),
                };
                #[cfg(debug_assertions)]
                if let Some(re) = self.uni() {
                    let want = re.find(hay).map(|m| (m.start(), m.end()));
                    assert_eq!(m, want, "ASCII twin on {hay:?}");
                }
                m
            }
            Pick::Uni(re) => re.find(hay).map(|m| (m.start(), m.end())),
            Pick::Nothing => None,
        }
    }
}

impl Lin {
    fn new(pattern: &str) -> Option<Lin> {
        let full = CompiledPattern::new(pattern)?;
        let mut split = None;
        let tail = rewrite::trim_tail(pattern).and_then(|t| {
            let e = CompiledPattern::new(&t.pattern)?;
            // same groups, same order
            let same = e.core().capture_names().eq(full.core().capture_names());
            split = t
                .head_split
                .as_deref()
                .and_then(CompiledPattern::new)
                .map(|s| (s, t.plus));
            same.then_some((e, t.groups))
        });
        if tail.is_none() {
            split = None;
        }
        let split_ends = split
            .as_ref()
            .and_then(|(e, _)| split_ends(e.core().as_str()));
        Some(Lin {
            full,
            tail,
            split,
            split_ends,
        })
    }

    /// The groups of `^(?P<g>M)E(?P<content>.+)$` on a single-line `hay`
    /// without the backtracker, when the DFA's match end decides them;
    /// None when it does not (`E` could match text there).
    fn split_captures(
        &self,
        t: &CompiledPattern,
        hay: &str,
        end: usize,
        locs: &mut Locs,
    ) -> Option<bool> {
        let (e, plus) = self.split.as_ref()?;
        let Some((_, m_end)) = t.find(hay) else {
            return Some(false);
        };
        // where the tail starts: before the one character `[^\n]` took
        let y = if *plus {
            m_end - hay[..m_end].chars().next_back().map_or(0, char::len_utf8)
        } else {
            m_end
        };
        // E matched hay[g_end..y] on the first path; if only empty E ends
        // at y, then g ends at y
        let before = &hay[..y];
        let only_empty = (self.split_ends.as_ref())
            .is_some_and(|ends| !ends.iter().any(|x| before.as_bytes().ends_with(x)));
        debug_assert!(!only_empty || e.find(before) == Some((y, y)), "{before:?}");
        if !only_empty && e.find(before)?.0 != y {
            return None;
        }
        locs.spans.clear();
        locs.spans
            .extend([Some((0, hay.len())), Some((0, y)), Some((y, y.max(end)))]);
        Some(true)
    }

    fn core(&self) -> &Core {
        self.full.core()
    }

    /// The end of `hay`'s text when its only `\n` is the last byte.
    fn single_line(hay: &str) -> Option<usize> {
        let b = hay.as_bytes();
        let end = b.len() - usize::from(b.last() == Some(&b'\n'));
        memchr::memchr(b'\n', &b[..end]).is_none().then_some(end)
    }

    fn captures(&self, hay: &str, locs: &mut Locs) -> bool {
        if let Some((t, groups)) = &self.tail
            && let Some(end) = Self::single_line(hay)
        {
            let split = self.split_captures(t, hay, end, locs);
            if split == Some(false) {
                debug_assert!(!self.full.is_match(hay), "split missed {hay:?}");
                return false;
            }
            if split.is_none() && !t.captures(hay, locs) {
                debug_assert!(!self.full.is_match(hay), "trimmed missed {hay:?}");
                return false;
            }
            if let Some(Some(m)) = locs.spans.first_mut() {
                m.1 = hay.len();
            }
            for &g in groups {
                if let Some(Some(sp)) = locs.spans.get_mut(g) {
                    sp.1 = sp.0.max(end);
                }
            }
            #[cfg(debug_assertions)]
            {
                let mut want = Locs::default();
                assert!(self.full.captures(hay, &mut want), "{hay:?}");
                assert_eq!(
                    locs.spans,
                    want.spans,
                    "trimmed {:?} on {hay:?}",
                    t.core().as_str()
                );
            }
            return true;
        }
        self.full.captures(hay, locs)
    }

    fn is_match(&self, hay: &str) -> bool {
        match &self.tail {
            Some((t, _)) if Self::single_line(hay).is_some() => t.is_match(hay),
            _ => self.full.is_match(hay),
        }
    }
}

/// A rewritten pattern: see [`Re::Checked`].
#[derive(Debug)]
pub struct Checked {
    lin: Lin,
    checks: Arc<[rewrite::Check]>,
    /// (group index, check index) of the groups that record lookaheads.
    check_groups: Vec<(usize, usize)>,
    /// The original pattern, for lines where a check fails.
    fallback: fancy_regex::Regex,
    /// For each group of `fallback`, the group of `lin` with its name.
    fallback_map: Vec<Option<usize>>,
    /// The anchored alternatives of `lin` compiled alone, each with the
    /// group of `lin` for each of its groups (see `Rewritten::ways`).
    ways: Vec<(Lin, Vec<Option<usize>>)>,
    /// Reused spans: of a way, and of `is_match`.
    way_locs: RefCell<Locs>,
    scratch: RefCell<Locs>,
}

impl Clone for Checked {
    fn clone(&self) -> Checked {
        Checked {
            lin: self.lin.clone(),
            checks: Arc::clone(&self.checks),
            check_groups: self.check_groups.clone(),
            fallback: self.fallback.clone(),
            fallback_map: self.fallback_map.clone(),
            ways: self.ways.clone(),
            way_locs: Default::default(),
            scratch: Default::default(),
        }
    }
}

impl Checked {
    fn new(rw: rewrite::Rewritten, fallback: fancy_regex::Regex) -> Option<Checked> {
        let lin = Lin::new(&rw.pattern)?;
        let names: Vec<Option<&str>> = lin.core().capture_names().collect();
        let check_groups = names
            .iter()
            .enumerate()
            .filter_map(|(g, n)| Some((g, rewrite::check_index((*n)?)?)))
            .collect();
        let fallback_map = fallback
            .capture_names()
            .enumerate()
            .map(|(i, n)| match n {
                None if i == 0 => Some(0),
                None => None,
                Some(n) => names
                    .iter()
                    .position(|x| x.and_then(rewrite::original_name) == Some(n)),
            })
            .collect();
        let mut ways = Vec::new();
        for w in &rw.ways {
            let Some(wl) = Lin::new(w) else {
                ways.clear();
                break;
            };
            let map = wl
                .core()
                .capture_names()
                .enumerate()
                .map(|(i, n)| match n {
                    None if i == 0 => Some(0),
                    None => None,
                    Some(n) => names.iter().position(|x| *x == Some(n)),
                })
                .collect();
            ways.push((wl, map));
        }
        Some(Checked {
            lin,
            checks: rw.checks.into(),
            check_groups,
            fallback,
            fallback_map,
            ways,
            way_locs: Default::default(),
            scratch: Default::default(),
        })
    }

    fn captures(&self, hay: &str, locs: &mut Locs, ways: Option<&[bool]>) -> bool {
        // The rewritten pattern matches a superset of the original's lines.
        if !self.lin_captures(hay, locs, ways) {
            return false;
        }
        let holds = self.check_groups.iter().all(|&(g, k)| match locs.spans[g] {
            Some((s, e)) => self.checks[k].holds(hay, s, e),
            None => true,
        });
        if !holds {
            return self.fancy_captures(hay, locs).unwrap_or(false);
        }
        #[cfg(debug_assertions)]
        self.cross_check(hay, locs);
        true
    }

    /// `lin`'s captures, from the first anchored way that matches when the
    /// pattern was split. `ways[i]` false says way `i` cannot match `hay`
    /// (a prefilter ran it, widened, on a superset of `hay`'s text): it is
    /// skipped without a search.
    fn lin_captures(&self, hay: &str, locs: &mut Locs, ways: Option<&[bool]>) -> bool {
        if self.ways.is_empty() {
            return self.lin.captures(hay, locs);
        }
        let mut one = self.way_locs.borrow_mut();
        for (i, (w, map)) in self.ways.iter().enumerate() {
            if ways.is_some_and(|m| !m[i]) {
                debug_assert!(!w.is_match(hay), "way {i} skipped but matches {hay:?}");
                continue;
            }
            if w.captures(hay, &mut one) {
                locs.spans.clear();
                locs.spans.resize(self.lin.core().captures_len(), None);
                for (g, span) in one.spans.iter().enumerate() {
                    if let (Some(Some(j)), Some(_)) = (map.get(g), span) {
                        locs.spans[*j] = *span;
                    }
                }
                return true;
            }
        }
        false
    }

    /// The original pattern's result in the rewritten pattern's group
    /// layout; None when fancy-regex gave up (backtrack limit).
    fn fancy_captures(&self, hay: &str, locs: &mut Locs) -> Option<bool> {
        let Some(c) = self.fallback.captures(hay).ok()? else {
            return Some(false);
        };
        locs.spans.clear();
        locs.spans.resize(self.lin.core().captures_len(), None);
        for (i, j) in self.fallback_map.iter().enumerate() {
            if let (Some(j), Some(m)) = (j, c.get(i)) {
                locs.spans[*j] = Some((m.start(), m.end()));
            }
        }
        Some(true)
    }

    /// Debug builds prove every rewritten match against fancy-regex.
    #[cfg(debug_assertions)]
    fn cross_check(&self, hay: &str, locs: &Locs) {
        let mut want = Locs::default();
        if self.fancy_captures(hay, &mut want) != Some(true) {
            // fancy-regex gave up, or (a bug) did not match
            assert!(
                self.fallback.captures(hay).is_err(),
                "rewritten {:?} matched {hay:?}, the original did not",
                self.lin.core().as_str()
            );
            return;
        }
        // named groups that took part (whichever copy), and the match
        let by_name = |l: &Locs| {
            let mut v = vec![(None, l.spans.first().copied().flatten())];
            for (g, n) in self.lin.core().capture_names().enumerate() {
                if let Some(n) = n.and_then(rewrite::original_name)
                    && let Some(sp) = l.spans.get(g).copied().flatten()
                {
                    v.push((Some(n), Some(sp)));
                }
            }
            v.sort();
            v
        };
        assert_eq!(
            by_name(locs),
            by_name(&want),
            "rewritten {:?} and the original differ on {hay:?}",
            self.lin.core().as_str()
        );
    }
}

/// Lazy-DFA cache per pattern: large enough that varied input does not make
/// the engine give up the DFA for the much slower PikeVM.
const DFA_CACHE: usize = 16 << 20;

/// NFA size limit of the automata compiled on first use (the regex crate's
/// default is 10 MiB): their pattern parsed at load, and they must not
/// fail later. Only a pattern of several thousand Unicode classes comes
/// near it.
const LAZY_NFA_LIMIT: usize = 256 << 20;

/// Backtracking steps allowed per match before fancy-regex gives up on a line.
pub const BACKTRACK_LIMIT: usize = 1_000_000;

impl Re {
    pub fn compile(py: &str, multiline: bool) -> Result<(Re, String), String> {
        let t = translate(py, multiline);
        if !t.fancy
            && let Some(lin) = Lin::new(&t.pattern)
        {
            return Ok((Re::Fast(Box::new(lin)), t.pattern));
        }
        // otherwise fancy-regex (also for features `regex` lacks)
        let f = fancy_regex::RegexBuilder::new(&t.pattern)
            .backtrack_limit(BACKTRACK_LIMIT)
            .build()
            .map_err(|e| format!("{e}"))?;
        if t.fancy
            && let Some(rw) = rewrite::rewrite(&t.pattern)
            && let Some(c) = Checked::new(rw, f.clone())
        {
            return Ok((Re::Checked(Box::new(c)), t.pattern));
        }
        Ok((Re::Fancy(f), t.pattern))
    }

    pub fn capture_names(&self) -> Vec<Option<String>> {
        match self {
            Re::Fast(l) => l
                .core()
                .capture_names()
                .map(|n| n.map(str::to_string))
                .collect(),
            Re::Checked(c) => c
                .lin
                .core()
                .capture_names()
                .map(|n| n.and_then(rewrite::original_name).map(str::to_string))
                .collect(),
            Re::Fancy(r) => r.capture_names().map(|n| n.map(str::to_string)).collect(),
        }
    }

    /// True when every line runs on the backtracking engine.
    pub fn is_fancy(&self) -> bool {
        matches!(self, Re::Fancy(_))
    }

    /// Searches `hay`; fills `slots[i]` with the span of group `i`. A fancy
    /// pattern that exceeds its backtrack limit counts as no match.
    pub fn captures(&self, hay: &str, locs: &mut Locs) -> bool {
        self.captures_hinted(hay, locs, None)
    }

    /// The linear alternatives a prefilter can run for this pattern, in
    /// order: the anchored ways of a rewritten pattern (see
    /// `Rewritten::ways`), or empty when it has none.
    pub fn ways(&self) -> Vec<&str> {
        match self {
            Re::Checked(c) => c.ways.iter().map(|(w, _)| w.core().as_str()).collect(),
            _ => Vec::new(),
        }
    }

    /// [`Re::captures`], told which of [`Re::ways`] can match `hay`
    /// (`ways[i]` false: way `i` cannot; one entry per way).
    pub fn captures_hinted(&self, hay: &str, locs: &mut Locs, ways: Option<&[bool]>) -> bool {
        match self {
            Re::Fast(l) => l.captures(hay, locs),
            Re::Checked(c) => c.captures(hay, locs, ways),
            Re::Fancy(r) => match r.captures(hay) {
                Ok(Some(c)) => {
                    locs.spans.clear();
                    for g in 0..c.len() {
                        locs.spans.push(c.get(g).map(|m| (m.start(), m.end())));
                    }
                    true
                }
                _ => false,
            },
        }
    }

    pub fn is_match(&self, hay: &str) -> bool {
        match self {
            Re::Fast(l) => l.is_match(hay),
            Re::Checked(c) => {
                let mut scratch = c.scratch.borrow_mut();
                c.captures(hay, &mut scratch, None)
            }
            Re::Fancy(r) => r.is_match(hay).unwrap_or(false),
        }
    }
}

/// An ASCII-only compilation of a pattern, used when the haystack is ASCII.
#[derive(Debug)]
pub struct Ascii {
    pub re: regex::bytes::Regex,
    /// For a pattern anchored at the start: the backtracker `re` runs
    /// for groups, to run without `re`'s DFA pass first.
    bt: Option<backtrack::BoundedBacktracker>,
    /// `bt`'s NFA compiled for [`bt::Prog`] (on first need; None inside:
    /// it did not compile, `bt` runs).
    prog: OnceLock<Option<bt::Prog>>,
    /// `re` without groups, for match spans (on first need): searched with
    /// the caller's cache, where `re` takes one from a pool shared by the
    /// matcher threads on every search.
    spans: OnceLock<Option<regex_automata::meta::Regex>>,
}

impl Ascii {
    fn spans(&self) -> Option<&regex_automata::meta::Regex> {
        self.spans
            .get_or_init(|| {
                use regex_automata::{meta, util::syntax};
                // as `regex::bytes` configures it
                meta::Regex::builder()
                    .syntax(syntax::Config::new().unicode(false).utf8(false))
                    .configure(
                        meta::Config::new()
                            .utf8_empty(false)
                            .which_captures(thompson::WhichCaptures::Implicit),
                    )
                    .build(self.re.as_str())
                    .ok()
            })
            .as_ref()
    }
}

/// Compiles `pattern` with Unicode off. On ASCII input `\w \d \s \b .`
/// and case folding then agree with the Unicode pattern.
/// A leading flags group that turns Unicode back on (`(?iu)`, as fail2ban's
/// date templates start) loses its `u`: on ASCII input Unicode `\d`, `\w`,
/// `\b` and case folding agree with the ASCII ones, and the Unicode
/// classes and folds would make the automaton many times larger.
/// `s.is_ascii()`, eight bytes at a time with one overlapping read for the
/// tail: the standard one checks up to 31 tail bytes one by one, and every
/// line and group search asks (twice as fast on a 90-byte line).
#[inline]
pub fn is_ascii(s: &str) -> bool {
    let b = s.as_bytes();
    let Some(tail) = b.last_chunk::<8>() else {
        return b.iter().all(|&x| x < 0x80);
    };
    let (words, _) = b.as_chunks::<8>();
    let all = words
        .iter()
        .fold(u64::from_ne_bytes(*tail), |a, w| a | u64::from_ne_bytes(*w));
    all & 0x8080_8080_8080_8080 == 0
}

pub fn ascii_twin(pattern: &str) -> Option<Ascii> {
    let p = ascii_pattern(pattern)?;
    let re = regex::bytes::RegexBuilder::new(&p)
        .unicode(false)
        .build()
        .ok()?;
    // as `regex::bytes` configures its backtracker
    let bt = backtrack::Builder::new()
        .syntax(
            regex_automata::util::syntax::Config::new()
                .unicode(false)
                .utf8(false),
        )
        .thompson(thompson::Config::new().utf8(false))
        .build(&p)
        .ok()
        .filter(|bt| bt.get_nfa().is_always_start_anchored());
    Some(Ascii {
        re,
        bt,
        prog: OnceLock::new(),
        spans: OnceLock::new(),
    })
}

/// The pattern an ASCII twin compiles (see [`ascii_twin`]), None when
/// `pattern` is not ASCII.
fn ascii_pattern(pattern: &str) -> Option<std::borrow::Cow<'_, str>> {
    if !pattern.is_ascii() {
        return None;
    }
    if let Some(rest) = pattern.strip_prefix("(?")
        && let Some(e) = rest.find(')')
        && rest[..e].bytes().all(|b| b.is_ascii_alphabetic())
        && rest[..e].contains('u')
    {
        let stripped = format!("(?{}){}", rest[..e].replace('u', ""), &rest[e + 1..]);
        return Some(match stripped.strip_prefix("(?)") {
            Some(s) => s.to_string().into(),
            None => stripped.into(),
        });
    }
    Some(pattern.into())
}

/// The names of the groups of `pattern` (group 0 first, None for an
/// unnamed group) when `regex::Regex` accepts its syntax. An ASCII pattern
/// is parsed as its ASCII twin, without the Unicode class tables: whatever
/// parses with Unicode off also parses with it on, except sections that
/// turn it off (`(?-u)`, where the Unicode parse refuses what could match
/// invalid UTF-8); what does not parse so (`\pL`) is parsed with Unicode.
fn parse_names(pattern: &str) -> Option<Vec<Option<Box<str>>>> {
    use regex_automata::util::syntax;
    let parsed = match ascii_pattern(pattern) {
        Some(a) if !pattern.contains("-u") => {
            let ascii = syntax::Config::new().unicode(false).utf8(false);
            syntax::parse_with(&a, &ascii).ok()
        }
        _ => None,
    };
    let h = match parsed {
        Some(h) => {
            debug_assert!(syntax::parse(pattern).is_ok(), "{pattern:?}");
            h
        }
        None => syntax::parse(pattern).ok()?,
    };
    let mut names = vec![None];
    hir_names(&h, &mut names);
    Some(names)
}

/// Writes the name of each group of `h` at its index. A group the parser
/// dropped (under `{0}`) keeps its index, unnamed, as in the compiled
/// pattern.
fn hir_names(h: &regex_syntax::hir::Hir, names: &mut Vec<Option<Box<str>>>) {
    use regex_syntax::hir::HirKind;
    match h.kind() {
        HirKind::Capture(c) => {
            let i = c.index as usize;
            if names.len() <= i {
                names.resize(i + 1, None);
            }
            names[i].clone_from(&c.name);
            hir_names(&c.sub, names);
        }
        HirKind::Repetition(r) => hir_names(&r.sub, names),
        HirKind::Concat(v) | HirKind::Alternation(v) => {
            for h in v {
                hir_names(h, names);
            }
        }
        _ => {}
    }
}

/// The group spans of the last successful [`Re::captures`].
#[derive(Debug, Default)]
pub struct Locs {
    pub spans: Vec<Option<(usize, usize)>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ends of a prefregex's optional prefix: its non-empty matches'
    /// last bytes, or None when they are unknown or it cannot match empty.
    #[test]
    fn split_ends_are_the_suffixes_of_non_empty_matches() {
        let mut sshd = split_ends(r"(?:(?:(?:error|fatal): (?:PAM: )?)?)\z").unwrap();
        sshd.sort();
        assert_eq!(
            sshd,
            [
                &b"error: "[..],
                b"error: PAM: ",
                b"fatal: ",
                b"fatal: PAM: "
            ]
        );
        assert_eq!(split_ends(r"(?:a+)?\z"), Some(vec![b"a".to_vec()]));
        assert_eq!(split_ends(r"(?:\w+)?\z"), None);
        assert_eq!(split_ends(r"(?:x)\z"), None);
        assert_eq!(split_ends(r"(?:.*)\z"), None);
    }

    /// The word-wise check agrees with the standard one for every length
    /// up to 40 and every place of one non-ASCII byte.
    #[test]
    fn is_ascii_is_the_standard_ones() {
        for n in 0..=40usize {
            let plain = "a".repeat(n);
            assert_eq!(is_ascii(&plain), plain.is_ascii(), "{n}");
            for i in 0..n.saturating_sub(1) {
                let mut t = "a".repeat(i);
                t.push('é');
                t.push_str(&"a".repeat(n - i - 2));
                assert!(!is_ascii(&t), "{t:?}");
            }
        }
    }

    fn t(p: &str) -> String {
        translate(p, false).pattern
    }

    #[test]
    fn python_forms() {
        assert_eq!(t("a{,3}"), "a{0,3}");
        assert_eq!(t("x{{y}}"), r"x\{\{y\}\}");
        assert_eq!(t("[^[]"), r"[^\[]");
        assert_eq!(t(r"[\>x]"), "[>x]");
        assert_eq!(t(r"a\Z"), r"a\z");
        assert_eq!(t("a$"), r"a(?:\n?\z)");
        assert!(translate("(?P<a>x)(?P=a)", false).fancy);
        assert!(translate("a(?!b)", false).fancy);
        assert!(!translate(r"(?P<h>\d+)\s", false).fancy);
    }

    #[test]
    fn dollar_before_final_newline() {
        let (r, _) = Re::compile("foo$", false).unwrap();
        assert!(r.is_match("foo\n"));
        assert!(r.is_match("foo"));
        assert!(!r.is_match("foo\nbar\n"));
        let (r, _) = Re::compile(r"foo\s+$", false).unwrap();
        assert!(r.is_match("foo\n"));
    }

    #[test]
    fn conditional_tests_the_group() {
        let (r, p) = Re::compile(r"^(?P<a>x)?y(?(a)1|2)$", false).unwrap();
        assert!(p.contains("(?(<a>)"), "{p}");
        assert!(r.is_match("xy1") && r.is_match("y2"));
        assert!(!r.is_match("xy2") && !r.is_match("y1"));
    }

    /// The rewritten engine against fancy-regex on the original pattern,
    /// group by group, including lines where a lookahead check fails and the
    /// line falls back to fancy-regex.
    #[test]
    fn rewritten_patterns_agree_with_backtracking() {
        let pats = [
            // a conditional on an optional group, lookaheads in and after a group
            r"^Bad (?:(?P<soft>key)|\S+) by (?P<inv>bogus )?(?P<user>(?P<plain>\S+)|(?(inv)(?:(?! at ).)*?|[^:]+)) at (?P<ip4>\d+\.\d+\.\d+\.\d+)(?: port \d+)?(?(plain): |(?:(?:(?! at ).)*)$)",
            // a point lookahead, an unanchored pattern
            r"user (?!`)(?P<user>\S+) from (?P<ip4>[\d.]+)(?=\s|$)",
            r"(?P<a>x)?y(?(a)(?P<b>1)|2)z?",
        ];
        let lines = [
            "Bad pass by root at 1.2.3.4 port 22 ssh2",
            "Bad pass by bogus root at 1.2.3.4 port 22: extra",
            "Bad pass by bogus a b at c at 1.2.3.4 port 22 x",
            "Bad key by bogus x at at 1.2.3.4",
            "Bad key by a at 1.2.3.4 tail at 5.6.7.8",
            "Bad pass by root: at 1.2.3.4",
            "Bad pass by r at 1.2.3.4 at 9.9.9.9 port 2",
            "user `x from 1.2.3.4",
            "user bob from 1.2.3.4 ",
            "user bob from 1.2.3.4x user al from 5.6.7.8",
            "xy1z",
            "y2",
            "xy2 y2",
            "",
        ];
        for p in pats {
            let (re, tr) = Re::compile(p, false).unwrap();
            assert!(matches!(re, Re::Checked(_)), "{p}");
            let fancy = fancy_regex::Regex::new(&tr).unwrap();
            let names = re.capture_names();
            for l in lines {
                let hay = format!("{l}\n");
                let mut locs = Locs::default();
                let got = re.captures(&hay, &mut locs);
                let want = fancy.captures(&hay).unwrap();
                assert_eq!(got, want.is_some(), "{p} on {l:?}");
                let Some(want) = want else { continue };
                assert_eq!(locs.spans[0], want.get(0).map(|m| (m.start(), m.end())));
                for n in fancy.capture_names().flatten() {
                    let w = want.name(n).map(|m| (m.start(), m.end()));
                    let g = names
                        .iter()
                        .enumerate()
                        .filter(|(_, x)| x.as_deref() == Some(n))
                        .find_map(|(i, _)| locs.spans[i]);
                    assert_eq!(g, w, "group {n} of {p} on {l:?}");
                }
            }
        }
    }

    /// A prefregex shape: the head group and the content found from the
    /// DFA's match end, or by the backtracker when `E` could match there.
    #[test]
    fn head_and_content_split() {
        let (r, _) =
            Re::compile(r"^(?P<m>\S+ (?:\w+: )?)(?:error: )?(?P<content>.+)$", false).unwrap();
        let Re::Fast(l) = &r else { panic!() };
        assert!(l.split.is_some());
        let spans = |hay: &str| {
            let mut locs = Locs::default();
            r.captures(hay, &mut locs).then(|| locs.spans.clone())
        };
        let s = |a, b| Some((a, b));
        assert_eq!(spans("h x y\n"), Some(vec![s(0, 6), s(0, 2), s(2, 5)]));
        // `error: ` may belong to the head or to E: the first path decides
        assert_eq!(
            spans("h error: x\n"),
            Some(vec![s(0, 11), s(0, 9), s(9, 10)])
        );
        assert_eq!(spans("h é\n"), Some(vec![s(0, 5), s(0, 2), s(2, 4)]));
        assert_eq!(spans("h \n"), None);
        assert_eq!(spans("h\n"), None);
    }

    /// A pattern cut at a literal: the same groups as the whole pattern
    /// (debug builds also compare every split search with the whole one),
    /// the whole pattern when the literal occurs twice.
    /// `e` matches `hay` when the one-regex form `whole` of its pattern
    /// does, with the same groups (left in `locs`); returns whether it did.
    fn agrees(e: &CompiledPattern, whole: &regex::Regex, hay: &str, locs: &mut Locs) -> bool {
        let got = e.captures(hay, locs);
        let want = whole.captures(hay);
        assert_eq!(got, want.is_some(), "{hay:?}");
        if let Some(w) = want {
            let w: Vec<_> = w.iter().map(|m| m.map(|m| (m.start(), m.end()))).collect();
            assert_eq!(locs.spans, w, "{hay:?}");
        }
        got
    }

    #[test]
    fn literal_split_agrees() {
        let p = r"^Failed (?:(?P<k>publickey)|\S+) for (?P<user>[^:]+) from (?P<ip>[\d.]+|\w+)(?: port \d+)?";
        let e = CompiledPattern::new(p).unwrap();
        let whole = regex::Regex::new(p).unwrap();
        for hay in [
            "Failed password for root from 1.2.3.4 port 22 ssh2\n",
            "Failed publickey for a b c from 1.2.3.4\n",
            "Failed publickey for x from y from 1.2.3.4\n",
            "Failed password for root: from 1.2.3.4\n",
            "Failed password for é from 1.2.3.4\n",
            "Failed password for root from \n",
            "Failed password for root\n",
            "xFailed password for root from 1.2.3.4\n",
            "",
        ] {
            let mut locs = Locs::default();
            agrees(&e, &whole, hay, &mut locs);
        }
        let sp = e.core.split.get().unwrap().as_ref().unwrap();
        assert_eq!(
            sp.head.as_str(),
            r"^(?:Failed (?:(?P<k>publickey)|\S+) for (?P<user>[^:]+))\z"
        );
        let mut locs = Locs::default();
        assert_eq!(
            sp.captures(
                &mut SplitScratch::default(),
                "Failed x for a from b from 1.2.3.4",
                &mut locs
            ),
            None
        );
        // a lazy group, or one that cannot run over the literal: no cut
        for p in [
            r"^a (?P<u>.*?) from (?P<h>\S+)",
            r"^a (?P<u>\S+) from (?P<h>\S+)",
        ] {
            assert!(rewrite::lit_split(p).is_none(), "{p}");
        }
    }

    /// `^[^\[]*\[...` (a date template's head) is cut at the first `[`
    /// however many follow, with the pattern's flags on both halves.
    #[test]
    fn first_occurrence_split_agrees() {
        let p = r"(?iu)^[^\[]*\[(?P<d>\d+)(?P<m>[a-z]+)\]";
        let ls = rewrite::lit_split(p).unwrap();
        assert!(ls.first);
        assert_eq!(ls.head, r"(?iu)^(?:[^\[]*)\z");
        assert_eq!(ls.rest, r"(?iu)^\[(?P<d>\d+)(?P<m>[a-z]+)\]");
        let e = CompiledPattern::new(p).unwrap();
        let whole = regex::Regex::new(p).unwrap();
        for hay in [
            "1.2.3.4 - [12Mar] x [13apr] y",
            "1.2.3.4 - [x] [12Mar]",
            "[7jan]",
            "no bracket",
            "a [12Mar [13apr]",
            "é [12Mär]",
        ] {
            let mut locs = Locs::default();
            let got = agrees(&e, &whole, hay, &mut locs);
            // the split decides every line itself, repeated `[` or not
            let sp = e.core.split.get().unwrap().as_ref().unwrap();
            let mut sc = SplitScratch::default();
            assert_eq!(sp.captures(&mut sc, hay, &mut locs), Some(got), "{hay:?}");
        }
        // lines repeating the text after `[`: the memo, checked against the
        // whole pattern (the same date, then a differing byte within or
        // right after the match)
        let p = r"^[^\[]*\[(?P<d>\d+)(?P<f>\.\d+)?(?P<g>\b)?";
        let e = CompiledPattern::new(p).unwrap();
        let whole = regex::Regex::new(p).unwrap();
        let lines = [
            "a [12.5x",
            "bb [12.5x",
            "c [12.7x",
            "d [12.x",
            "ee [12.x",
            "f [12.5",
            "g [12.5",
            "h [12.5 ",
            "i [12.5 ",
            "j [12.5x",
        ];
        for hay in lines {
            let mut locs = Locs::default();
            assert!(agrees(&e, &whole, hay, &mut locs), "{hay:?}");
        }
        let sc = e.scratch.borrow();
        assert_eq!(sc.split.as_ref().unwrap().memo.hits, 4);
        // a head that can hold the literal, a folded letter, flags that
        // change `^`: no first-occurrence cut
        for p in [
            r"^[^\]]*\[(?P<d>\d+)",
            r"(?i)^[^x]*x(?P<d>\d+)",
            r"(?m)^[^\[]*\[(?P<d>\d+)",
        ] {
            assert!(rewrite::lit_split(p).is_none(), "{p}");
        }
    }

    /// An anchored pattern's groups come from the backtracker alone until
    /// most searches fail; then the automaton goes first. Both agree with
    /// the regex crate (debug builds also check every search).
    #[test]
    fn backtracker_direct_and_guarded() {
        let p = r"^a(?P<x>\d+)(?P<y>b|bc)?";
        let e = CompiledPattern::new(p).unwrap();
        let whole = regex::Regex::new(p).unwrap();
        assert!(e.core.twin().unwrap().bt.is_some());
        let mut locs = Locs::default();
        for i in 0..300 {
            let hay = if i % 10 == 0 { "a12bc x" } else { "b12" };
            agrees(&e, &whole, hay, &mut locs);
        }
        let sc = e.scratch.borrow();
        assert!(sc.fails * 8 >= sc.tries, "{} {}", sc.fails, sc.tries);
        // unanchored: no backtracker of its own
        assert!(Core::new("a(b)").unwrap().twin().unwrap().bt.is_none());
    }

    /// Group names read from the parse agree with the compiled pattern's,
    /// and a pattern that does not parse says so.
    #[test]
    fn group_names_from_the_parse() {
        for p in [
            r"^(?P<a>x)(y)(?:z)(?i)(?<b>[(\])]|[^]()][[:alpha:]()])\((?s:c)(?P<c_1>)$",
            r"(?iu)^[^\[]*\[(?P<d>\d+)\]",
            r"[a[(]](x)",
            r"(?x)a # (b)",
            r"(?x)(a) # (b)",
            r"\pL(?P<x>\w)(?P<y>y){0}(?:(?P<z>a)|b)+",
            r"(?P<x>a)(?P<y>b){0}",
        ] {
            let re = regex::Regex::new(p).unwrap();
            let want: Vec<_> = re.capture_names().collect();
            let got = parse_names(p).unwrap();
            assert!(
                got.iter().map(|n| n.as_deref()).eq(want.iter().copied()),
                "{p}"
            );
            let core = Core::new(p).unwrap();
            assert_eq!(core.captures_len(), want.len(), "{p}");
            assert!(core.uni.get().is_none() && core.ascii.get().is_none());
        }
        let core = Core::new(r"(?x)(a) # (b)").unwrap();
        assert_eq!(core.captures_len(), 2);
        assert!(Core::new(r"(a").is_none() && Core::new(r"a(?=b)").is_none());
        assert!(Core::new(r"\pL(?P<x>\w)").is_some());
        // a section without Unicode that could match invalid UTF-8
        assert!(Core::new(r"(?-u:\xFF)").is_none());
    }

    /// Match spans on ASCII text come from the twin's own automaton with
    /// the engine's cache: the same as `regex` gives, leftmost-first.
    #[test]
    fn ascii_spans_are_the_regex_crates() {
        let cases = [
            (r"a|ab", "xab"),
            (r"ab|a", "xab"),
            (r"(?:x)?y+", "zxyyy"),
            (r"\bfoo\b", "a foo b"),
            (r"\bfoo\b", "afoo"),
            (r"o+$", "foo\n"),
            (r"^\d{1,3}\.", "12.3"),
            (r"(?i)JAN|mar", "a Mar"),
            (r"", "abc"),
        ];
        for (p, hay) in cases {
            let e = CompiledPattern::new(p).unwrap();
            let re = regex::Regex::new(p).unwrap();
            let want = re.find(hay).map(|m| (m.start(), m.end()));
            assert_eq!(e.find(hay), want, "{p:?} on {hay:?}");
            assert_eq!(e.is_match(hay), want.is_some(), "{p:?} on {hay:?}");
            assert!(e.core().twin().unwrap().spans.get().is_some(), "{p:?}");
        }
    }

    /// The ASCII twin drops a leading `u` flag (Unicode classes and folds
    /// are many times larger) and keeps the others.
    #[test]
    fn ascii_twin_drops_the_unicode_flag() {
        let a = ascii_twin(r"(?iu)^(?P<b>jan|mar)\d").unwrap();
        assert_eq!(a.re.as_str(), r"(?i)^(?P<b>jan|mar)\d");
        assert!(a.re.is_match(b"MAR1") && !a.re.is_match(b"MAY1"));
        assert_eq!(ascii_twin(r"(?u)\w").unwrap().re.as_str(), r"\w");
        assert_eq!(ascii_twin(r"(?:u)\w").unwrap().re.as_str(), r"(?:u)\w");
    }

    /// Clones share compiled parts (also those compiled lazily) and keep
    /// their own scratch state; all of it can move to another thread.
    #[test]
    fn clones_share_automata() {
        fn send<T: Send>() {}
        fn sync<T: Send + Sync>() {}
        send::<Re>();
        sync::<Core>();
        let p = r"^Failed (?P<m>\S+) for (?P<user>[^:]+) from (?P<ip>[\d.]+)";
        let e = CompiledPattern::new(p).unwrap();
        let c = e.clone();
        assert!(Arc::ptr_eq(&e.core, &c.core));
        let mut locs = Locs::default();
        assert!(c.captures("Failed password for root from 1.2.3.4", &mut locs));
        // the split the clone built is the original's
        assert!(e.core.split.get().unwrap().is_some());
        assert!(e.scratch.borrow().split.is_none());
        let t = std::thread::spawn(move || {
            let mut locs = Locs::default();
            c.captures("Failed x for a from 5.6.7.8", &mut locs)
                .then_some(locs.spans)
        });
        let spans = t.join().unwrap().unwrap();
        assert_eq!(spans[3], Some((20, 27)));
    }

    #[test]
    fn fancy_features_compile() {
        for p in [
            r"(?P<s>[-/])a(?P=s)",
            r"a(?=b)",
            r"(?:(?P<x>x)|y)(?(x)a|b)",
            r"(?<!x)y",
        ] {
            let (r, _) = Re::compile(p, false).unwrap_or_else(|e| panic!("{p}: {e}"));
            assert!(!matches!(r, Re::Fast(_)), "{p}");
        }
    }
}

/// Index just past the `)` closing the group that opens at `p[start] == '('`
/// (escapes and classes skipped), or None.
fn group_end(p: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    while i < p.len() {
        match p[i] {
            b'\\' => i += 1,
            b'[' => {
                // skip a class: `[`, optional `^`, a leading `]` is literal
                i += 1;
                if i < p.len() && p[i] == b'^' {
                    i += 1;
                }
                if i < p.len() && p[i] == b']' {
                    i += 1;
                }
                while i < p.len() && p[i] != b']' {
                    if p[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'(' => depth += 1,
            b')' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// A superset of a translated pattern that the linear engine can run, for
/// prefiltering: lookarounds dropped, back-references widened to `.*?`,
/// conditionals turned into alternations, group names removed. `None` when
/// the pattern cannot be relaxed.
pub fn relax(p: &str) -> Option<String> {
    let b = p.as_bytes();
    let mut out = String::with_capacity(p.len());
    let mut i = 0;
    let mut in_class = false;
    while i < b.len() {
        let c = b[i];
        if c == b'\\' {
            let end = (i + 2).min(b.len());
            let esc = &p[i..end];
            if !in_class && esc.len() == 2 && (b'1'..=b'9').contains(&b[i + 1]) {
                out.push_str("(?s:.*?)");
            } else {
                out.push_str(esc);
            }
            i = end;
            continue;
        }
        if in_class {
            if c == b']' {
                in_class = false;
            }
            out.push(c as char);
            i += 1;
            continue;
        }
        if c == b'[' {
            in_class = true;
            out.push('[');
            i += 1;
            if i < b.len() && b[i] == b'^' {
                out.push('^');
                i += 1;
            }
            if i < b.len() && b[i] == b']' {
                out.push(']');
                i += 1;
            }
            continue;
        }
        let rest = &p[i..];
        if ["(?=", "(?!", "(?<=", "(?<!"]
            .iter()
            .any(|x| rest.starts_with(x))
        {
            i = group_end(b, i)?;
            continue;
        }
        if rest.starts_with("(?P=") {
            i += rest.find(')')? + 1;
            out.push_str("(?s:.*?)");
            continue;
        }
        if rest.starts_with("(?(") {
            i += rest.find(')')? + 1;
            out.push_str("(?:");
            continue;
        }
        if let Some(r) = rest.strip_prefix("(?P<") {
            i += 4 + r.find('>')? + 1;
            out.push_str("(?:");
            continue;
        }
        // multi-byte chars are copied whole
        let ch = rest.chars().next()?;
        out.push(ch);
        i += ch.len_utf8();
    }
    Some(out)
}

#[cfg(test)]
mod relax_tests {
    use super::*;

    #[test]
    fn relaxed_is_linear_and_wider() {
        let r = relax(r"(?P<u>a)(?!b)[(]c(?P=u)(?(u)x|y)").unwrap();
        assert_eq!(r, r"(?:a)[(]c(?s:.*?)(?:x|y)");
        assert!(regex::Regex::new(&r).is_ok());
    }
}
