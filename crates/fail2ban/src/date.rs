//! fail2ban's date detection: `datepattern` values (strftime-like `%Y %m %d`
//! ... with fail2ban's `%Ex*` exact forms, `{^LN-BEG}`, `{UNB}`, `{DATE}`,
//! `{NONE}`, `EPOCH`, `LEPOCH`, `TAI64N`) and the 17 default templates, each
//! turned into one anchored search plus a native field parser.
//!
//! The word-boundary lookaheads fail2ban wraps around templates are checked
//! natively after the match, and `(?P=_sep)` separators are compared after the
//! match, so every default template runs on the linear `regex` engine.
//! It owns finding and parsing the date; cutting it out of the line is
//! `filter.rs`'s job.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;

use shield_core::UnixTime;
use shield_pyre::{Locs, Re};

/// fail2ban's `DEFAULT_TEMPLATES`, in order (datedetector.py).
const DEFAULT_TEMPLATES: [&str; 17] = [
    r"%ExY(?P<_sep>[-/.])%m(?P=_sep)%d(?:T|  ?)%H:%M:%S(?:[.,]%f)?(?:\s*%z)?",
    r"(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?",
    r"(?:%a )?%b %d %ExY %k:%M:%S(?:\.%f)?",
    r"%d(?P<_sep>[-/])%m(?P=_sep)(?:%ExY|%Exy) %k:%M:%S",
    r"%d(?P<_sep>[-/])%b(?P=_sep)%ExY[ :]?%H:%M:%S(?:\.%f)?(?: %z)?",
    r"%m/%d/%ExY:%H:%M:%S",
    r"%m-%d-%ExY %k:%M:%S(?:\.%f)?",
    r"EPOCH",
    r"{^LN-BEG}%H:%M:%S",
    r"^<%m/%d/%Exy@%H:%M:%S>",
    r"%Exy%Exm%Exd  ?%H:%M:%S",
    r"%b %d, %ExY %I:%M:%S %p",
    r"^%b-%d-%Exy %k:%M:%S",
    r"%ExY%Exm%Exd(?:T|  ?)%ExH%ExM%ExS(?:[.,]%f)?(?:\s*%z)?",
    r"(?:%Z )?(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?",
    r"(?:%z )?(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?",
    r"TAI64N",
];

fn directive(key: &str, year_re: &str) -> Option<String> {
    Some(
        match key {
            "a" => r"(?P<a>mon|tue|wed|thu|fri|sat|sun)".into(),
            "A" => r"(?P<A>monday|tuesday|wednesday|thursday|friday|saturday|sunday)".into(),
            "b" => r"(?P<b>jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)".into(),
            "B" => r"(?P<B>january|february|march|april|may|june|july|august|september|october|november|december)".into(),
            "p" => r"(?P<p>am|pm)".into(),
            "I" => r"(?P<I>1[0-2]|0[1-9]|[1-9])".into(),
            "y" => r"(?P<y>\d\d)".into(),
            "f" => r"(?P<f>[0-9]{1,6})".into(),
            "j" => r"(?P<j>36[0-6]|3[0-5]\d|[1-2]\d\d|0[1-9]\d|00[1-9]|[1-9]\d|0[1-9]|[1-9])".into(),
            "k" => r" ?(?P<H>[0-2]?\d)".into(),
            "l" => r" ?(?P<I>1?\d)".into(),
            "Z" => r"(?P<Z>Z|[A-Z]{3,5})".into(),
            "z" => r"(?P<z>Z|UTC|GMT|[+-][01]\d(?::?\d{2})?)".into(),
            "ExZ" => r"(?P<Z>[A-Z](?:[A-Z]{2,4})?)".into(),
            "Exz" => r"(?P<z>(?:[A-Z](?:[A-Z]{2,4})?)?[+-][01]\d(?::?\d{2})?|[A-Z](?:[A-Z]{2,4})?)".into(),
            "d" => r"(?P<d>[1-2]\d|[0 ]?[1-9]|3[0-1])".into(),
            "m" => r"(?P<m>0?[1-9]|1[0-2])".into(),
            "Y" => r"(?P<Y>\d{4})".into(),
            "H" => r"(?P<H>[0-1]?\d|2[0-3])".into(),
            "M" => r"(?P<M>[0-5]?\d)".into(),
            "S" => r"(?P<S>[0-5]?\d|6[0-1])".into(),
            "Exd" => r"(?P<d>[1-2]\d|0[1-9]|3[0-1])".into(),
            "Exm" => r"(?P<m>0[1-9]|1[0-2])".into(),
            "ExH" => r"(?P<H>[0-1]\d|2[0-3])".into(),
            "Exk" => r" ?(?P<H>[0-1]?\d|2[0-3])".into(),
            "Exl" => r" ?(?P<I>1[0-2]|\d)".into(),
            "ExM" => r"(?P<M>[0-5]\d)".into(),
            "ExS" => r"(?P<S>[0-5]\d|6[0-1])".into(),
            "ExY" => format!("(?P<Y>{year_re})"),
            "Exy" => r"(?P<y>\d{2})".into(),
            "U" => r"(?P<U>5[0-3]|[0-4]\d|\d)".into(),
            "W" => r"(?P<W>5[0-3]|[0-4]\d|\d)".into(),
            "w" => r"(?P<w>[0-6])".into(),
            _ => return None,
        },
    )
}

/// fail2ban's `%ExY`: years from 2000 to three years past the wall clock's.
fn year_re() -> String {
    let wall = TimeZone::UTC.to_datetime(jiff::Timestamp::now()).year() as i32 + 3;
    let decade = (wall / 10) % 10;
    let century = wall / 100;
    if century == 20 {
        format!("20[0-{decade}]\\d")
    } else {
        format!("(?:20\\d|{century}[0-{decade}])\\d")
    }
}

/// Replaces `%X` directives by their regexes, `%%` by `%`.
fn expand_directives(pattern: &str, year_re: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = pattern;
    while let Some(p) = rest.find('%') {
        out.push_str(&rest[..p]);
        let t = &rest[p + 1..];
        if let Some(t2) = t.strip_prefix('%') {
            out.push('%');
            rest = t2;
            continue;
        }
        let key_len = if t.starts_with("Ex") { 3 } else { 1 };
        let key: String = t.chars().take(key_len).collect();
        match directive(&key, year_re) {
            Some(r) => {
                out.push_str(&r);
                rest = &t[key.len()..];
            }
            None => {
                return Err(format!(
                    "unknown date directive `%{key}` (write `%%` for a literal percent)"
                ));
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Pattern,
    Epoch { long: bool, grp: usize },
    Tai64n,
}

/// One compiled date template (a clone shares its automata).
#[derive(Debug, Clone)]
pub(crate) struct Template {
    /// The `datepattern` line it came from (for messages and `Debug`).
    #[allow(dead_code)]
    pub(crate) name: String,
    re: Re,
    kind: Kind,
    word_begin: bool,
    word_end: bool,
    line_anchored: bool,
    /// Group index of the date text (1, or 2 for `{EPOCH}` patterns).
    date_grp: usize,
    /// (group index, field) of the strptime fields present.
    fields: Vec<(usize, char)>,
    /// Pairs of groups that must hold the same text (`(?P=_sep)`).
    same: Vec<(usize, usize)>,
}

fn starts_no_word_bound(r: &str) -> bool {
    // RE_NO_WRD_BOUND_BEG = ^\(*(?:\(\?\w+\))?(?:\^|\(*\*\*|\((?:\?:)?\^)
    let t = r.trim_start_matches('(');
    let t = if t.starts_with('?') {
        // a flags group like (?iu) was at the front
        match r.find(')') {
            Some(p) if r[..p].starts_with("(?") && r[2..p].chars().all(|c| c.is_alphanumeric()) => {
                &r[p + 1..]
            }
            _ => r,
        }
    } else {
        r
    };
    let t2 = t.trim_start_matches('(');
    t2.starts_with('^') || t2.starts_with("**") || t2.starts_with("?:^")
}

fn ends_no_word_bound(r: &str) -> bool {
    // RE_NO_WRD_BOUND_END = (?<!\\)(?:\$\)?|\\b|\\s|\*\*\)*)$
    let t = r.trim_end_matches(')');
    let unesc = |s: &str, suf: &str| s.ends_with(suf) && !s[..s.len() - suf.len()].ends_with('\\');
    unesc(r, "$") || unesc(r, "$)") || r.ends_with(r"\b") || r.ends_with(r"\s") || t.ends_with("**")
}

fn has_plain_group(r: &str) -> bool {
    // RE_GROUPED = (?<!(?:\(\?))(?<!\\)\((?!\?)
    let b = r.as_bytes();
    (0..b.len())
        .any(|i| b[i] == b'(' && b.get(i + 1) != Some(&b'?') && (i == 0 || b[i - 1] != b'\\'))
}

/// `(?P<name>X)…(?P=name)` → `(?P<name>X)…(?P<name__same>X)`, checked after the match.
fn split_backrefs(r: &str) -> (String, Vec<(String, String)>) {
    let mut out = r.to_string();
    let mut pairs = Vec::new();
    while let Some(p) = out.find("(?P=") {
        let Some(e) = out[p..].find(')') else { break };
        let name = out[p + 4..p + e].to_string();
        let open = format!("(?P<{name}>");
        let Some(gs) = out.find(&open) else { break };
        // balanced body of the named group
        let mut depth = 0;
        let mut body_end = None;
        let bytes = out.as_bytes();
        let mut i = gs;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => i += 1,
                b'(' => depth += 1,
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        body_end = Some(i);
                        break;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        let Some(be) = body_end else { break };
        let body = out[gs + open.len()..be].to_string();
        let twin = format!("{name}__same{}", pairs.len());
        out.replace_range(p..p + e + 1, &format!("(?P<{twin}>{body})"));
        pairs.push((name, twin));
    }
    (out, pairs)
}

impl Template {
    /// Builds a template from one `datepattern` line (already `%%`-unescaped by the INI layer).
    pub(crate) fn new(pattern: &str, year_re: &str) -> Result<Template, String> {
        let key = if pattern.contains('%') {
            pattern.to_string()
        } else {
            pattern.to_uppercase()
        };
        let key_s = key.as_str();
        if key.contains("EPOCH") {
            let long = key.contains("LEPOCH");
            let epoch_re = if long {
                r"\d{10,11}(?:\d{3}(?:\.\d{1,6}|\d{3})?)?"
            } else {
                r"\d{10,11}\b(?:\.\d{3,6})?"
            };
            if let Some(p) = find_ci(pattern, "{EPOCH}").or_else(|| find_ci(pattern, "{LEPOCH}")) {
                let tag_len = if long { 8 } else { 7 };
                let regex = format!(
                    "({}({}){})",
                    &pattern[..p],
                    epoch_re,
                    &pattern[p + tag_len..]
                );
                return Self::from_regex(
                    pattern,
                    &regex,
                    true,
                    true,
                    Kind::Epoch { long, grp: 2 },
                    2,
                );
            }
            let begin_only = !(key_s == "EPOCH" || key_s == "LEPOCH");
            let regex = if !begin_only {
                r"((?:^|(?P<square>(?<=^\[))|(?P<selinux>(?<=\baudit\()))%s)(?:(?(selinux)(?=:\d+\)))|(?(square)(?=\])))".to_string()
                    .replace("%s", epoch_re)
            } else {
                format!(r"((?P<square>(?<=^\[))?{epoch_re})(?(square)(?=\]))")
            };
            let mut t = Self::build(
                pattern,
                &regex,
                if begin_only { Begin::Start } else { Begin::No },
                true,
                Kind::Epoch { long, grp: 1 },
            )?;
            t.line_anchored = true;
            return Ok(t);
        }
        if matches!(key_s, "TAI64N" | "{^LN-BEG}TAI64N" | "^TAI64N") {
            let b = if key_s == "TAI64N" {
                Begin::No
            } else {
                Begin::Start
            };
            return Self::build(pattern, "@[0-9a-f]{24}", b, true, Kind::Tai64n);
        }
        if key_s == "{NONE}" {
            return Self::build(pattern, "^", Begin::No, false, Kind::Pattern);
        }
        let mut p = pattern;
        let mut word_begin = true;
        let mut word_end = true;
        let mut start = false;
        if let Some(r) = p.strip_prefix("{UNB}") {
            p = r;
            word_begin = false;
            word_end = false;
        }
        if word_begin && let Some(r) = p.strip_prefix("{^LN-BEG}") {
            p = r;
            start = true;
        }
        let mut regex = expand_directives(p, year_re)?;
        let alpha = ["%a", "%A", "%b", "%B", "%p", "%c"]
            .iter()
            .any(|d| p.contains(d));
        if alpha {
            regex = format!("(?iu){regex}");
        }
        let begin = if !word_begin {
            Begin::No
        } else if start {
            Begin::Start
        } else {
            Begin::Word
        };
        Self::build(pattern, &regex, begin, word_end, Kind::Pattern)
    }

    fn from_regex(
        name: &str,
        regex: &str,
        wb: bool,
        we: bool,
        kind: Kind,
        grp: usize,
    ) -> Result<Template, String> {
        let mut t = Self::build(
            name,
            regex,
            if wb { Begin::Word } else { Begin::No },
            we,
            kind,
        )?;
        t.date_grp = grp;
        Ok(t)
    }

    /// DateTemplate.setRegex: global flags, boundaries, the date group.
    fn build(
        name: &str,
        regex: &str,
        begin: Begin,
        word_end: bool,
        kind: Kind,
    ) -> Result<Template, String> {
        let mut regex = regex.trim().to_string();
        let mut gflags = String::new();
        if regex.starts_with("(?")
            && let Some(e) = regex.find(')')
            && regex[2..e].chars().all(|c| c.is_ascii_lowercase())
            && e > 2
        {
            gflags = regex[..=e].to_string();
            regex = regex[e + 1..].to_string();
        }
        let bound_begin = begin != Begin::No && !starts_no_word_bound(&regex);
        let bound_end = word_end && !ends_no_word_bound(&regex);
        if !has_plain_group(&regex) {
            // RE_GROUP: ^((?:\(\?\w+\))?\^?(?:\(\?\w+\))?)(.*?)(\$?)$ -> \1(\2)\3
            let (pre, body) = if let Some(b) = regex.strip_prefix('^') {
                ("^", b)
            } else {
                ("", regex.as_str())
            };
            let (body, post) = if body.ends_with('$') && !body.ends_with("\\$") {
                (&body[..body.len() - 1], "$")
            } else {
                (body, "")
            };
            regex = format!("{pre}({body}){post}");
        }
        let mut line_anchored = false;
        if bound_begin && begin == Begin::Start {
            regex = format!(r"^(?:\W{{0,2}})?{regex}");
            line_anchored = true;
        }
        if regex.starts_with('^') || regex.starts_with("(^") || regex.starts_with("(?:^") {
            line_anchored = true;
        }
        let unesc_end = regex.ends_with('$') && !regex.ends_with("\\$") && !regex.ends_with("|$");
        if unesc_end {
            line_anchored = true;
        }
        regex = regex.replace("**", "");
        let (regex, pairs) = split_backrefs(&format!("{gflags}{regex}"));
        let (re, _) = Re::compile(&regex, false)
            .map_err(|e| format!("date pattern `{name}` does not compile: {e}"))?;
        let names = re.capture_names();
        let mut fields = Vec::new();
        for (i, n) in names.iter().enumerate() {
            if let Some(n) = n
                && n.len() == 1
            {
                fields.push((i, n.chars().next().unwrap_or('?')));
            }
        }
        let idx = |n: &str| names.iter().position(|x| x.as_deref() == Some(n));
        let same = pairs
            .iter()
            .filter_map(|(a, b)| Some((idx(a)?, idx(b)?)))
            .collect();
        Ok(Template {
            name: name.to_string(),
            re,
            kind,
            word_begin: bound_begin && begin == Begin::Word,
            word_end: bound_end,
            line_anchored,
            date_grp: 1,
            fields,
            same,
        })
    }

    /// Finds the template in `line`: the span of the date text, or None.
    fn find(&self, line: &str, locs: &mut Locs) -> Option<(usize, usize)> {
        let mut from = 0;
        loop {
            if from > line.len() {
                return None;
            }
            let hay = &line[from..];
            if !self.re.captures(hay, locs) {
                return None;
            }
            let (ms, me) = locs.spans[0]?;
            let (ms, me) = (ms + from, me + from);
            let ok_begin = !self.word_begin || boundary_ok(line, ms);
            let ok_end = !self.word_end || boundary_ok(line, me);
            let ok_same = self.same.iter().all(|&(a, b)| {
                let g = |i: usize| {
                    locs.spans
                        .get(i)
                        .copied()
                        .flatten()
                        .map(|(s, e)| &hay[s..e])
                };
                g(a) == g(b)
            });
            if ok_begin && ok_end && ok_same {
                let (ds, de) = locs.spans.get(self.date_grp).copied().flatten()?;
                // shift spans to line coordinates
                for s in locs.spans.iter_mut().flatten() {
                    s.0 += from;
                    s.1 += from;
                }
                return Some((ds + from, de + from));
            }
            if self.line_anchored && from == 0 && !self.word_begin {
                // anchored at the line start: no other place to look
                if line.is_empty() {
                    return None;
                }
            }
            // retry one character further
            let next = line[ms..]
                .chars()
                .next()
                .map(|c| ms + c.len_utf8())
                .unwrap_or(line.len() + 1);
            if next <= from {
                return None;
            }
            from = next;
            if !matches!(self.re, Re::Fast(..)) {
                // fancy patterns see the cut string without context; give up after one retry round
            }
        }
    }

    /// The time of the matched date (spans in `locs`, line coordinates).
    fn time(&self, line: &str, locs: &Locs, now: UnixTime, tz: &TimeZone) -> Option<UnixTime> {
        let g = |i: usize| {
            locs.spans
                .get(i)
                .copied()
                .flatten()
                .map(|(s, e)| &line[s..e])
        };
        match self.kind {
            Kind::Tai64n => {
                let v = g(self.date_grp)?;
                i64::from_str_radix(v.get(2..17)?, 16).ok()
            }
            Kind::Epoch { long, grp } => {
                let v = g(grp.max(self.date_grp))?;
                let v = v.trim_start_matches('[');
                let f: f64 = v.parse().ok()?;
                let f = if long && v.len() >= 13 {
                    if v.len() >= 16 && !v.contains('.') {
                        f / 1_000_000.0
                    } else {
                        f / 1000.0
                    }
                } else {
                    f
                };
                Some(f as i64)
            }
            Kind::Pattern => {
                let mut p = Parsed::default();
                for &(i, c) in &self.fields {
                    if let Some(v) = g(i) {
                        p.set(c, v);
                    }
                }
                p.to_unix(now, tz)
            }
        }
    }
}

/// The name fail2ban gives the anchored syslog default template.
const SYSLOG_ANCHORED: &str = r"{^LN-BEG}(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?";

/// Native parse of the commonest syslog date, `Mon dd HH:MM:SS` at the very
/// start of the line, exactly where the anchored default template would
/// match it. Anything less plain (a day name, fractions, a year, odd
/// spacing) returns None and goes through the regex templates.
fn syslog_prefix(b: &[u8]) -> Option<(usize, i8, i8, i8, i8, i8)> {
    if b.len() < 15 || !b[0].is_ascii_alphabetic() || b[3] != b' ' {
        return None;
    }
    let month = shield_core::stamp::month_abbr(b)? as i8;
    debug_assert_eq!(
        MONTHS[month as usize - 1].as_bytes(),
        b[..3].to_ascii_lowercase()
    );
    let d = |c: u8| c.is_ascii_digit().then(|| (c - b'0') as i8);
    let day = match (b[4], b[5]) {
        (b' ', c) => d(c).filter(|&x| x >= 1)?,
        (a, c) => {
            let v = d(a)? * 10 + d(c)?;
            if !(1..=31).contains(&v) {
                return None;
            }
            v
        }
    };
    if b[6] != b' ' || b[9] != b':' || b[12] != b':' {
        return None;
    }
    let two = |i: usize| Some(d(b[i])? * 10 + d(b[i + 1])?);
    let (h, m, s) = (two(7)?, two(10)?, two(13)?);
    if h > 23 || m > 59 || s > 59 {
        return None;
    }
    syslog_end_ok(b).then_some((SYSLOG_LEN, month, day, h, m, s))
}

/// The length of `Mon dd HH:MM:SS`.
const SYSLOG_LEN: usize = 15;

/// Whether what follows a syslog stamp at the start of `b` leaves it plain:
/// no fraction, year or word glued to it.
fn syslog_end_ok(b: &[u8]) -> bool {
    let end = SYSLOG_LEN;
    match b.get(end) {
        None => true,
        Some(b'.') => false,
        Some(b' ') if b.len() >= end + 5 && b[end + 1..end + 5].iter().all(u8::is_ascii_digit) => {
            false
        }
        Some(&c) => !(c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80),
    }
}

fn find_ci(hay: &str, needle: &str) -> Option<usize> {
    hay.to_ascii_uppercase().find(needle)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Begin {
    No,
    Word,
    Start,
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `(?=^|\b|\W)` and `(?=\b|\W|$)` are both false only between two word chars.
fn boundary_ok(line: &str, pos: usize) -> bool {
    let prev = line[..pos].chars().next_back();
    let next = line[pos..].chars().next();
    !matches!((prev, next), (Some(a), Some(b)) if is_word(a) && is_word(b))
}

#[derive(Default, Debug)]
struct Parsed {
    year: Option<i32>,
    month: Option<i8>,
    day: Option<i8>,
    hour: i8,
    minute: i8,
    second: i8,
    hour12: Option<i8>,
    pm: Option<bool>,
    tz_min: Option<i32>,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

impl Parsed {
    fn set(&mut self, c: char, v: &str) {
        let num = || v.trim().parse::<i32>().ok();
        match c {
            'Y' => self.year = num(),
            'y' => self.year = num().map(|y| if y <= 2000 { y + 2000 } else { y }),
            'm' => self.month = num().map(|m| m as i8),
            'b' | 'B' => {
                let l = v.get(..3).map(str::to_ascii_lowercase);
                self.month = l
                    .and_then(|l| MONTHS.iter().position(|m| *m == l))
                    .map(|i| i as i8 + 1);
            }
            'd' => self.day = num().map(|d| d as i8),
            'H' => self.hour = num().unwrap_or(0) as i8,
            'I' => self.hour12 = num().map(|h| h as i8),
            'p' => self.pm = Some(v.eq_ignore_ascii_case("pm")),
            'M' => self.minute = num().unwrap_or(0) as i8,
            'S' => self.second = num().unwrap_or(0).min(59) as i8,
            'z' | 'Z' => self.tz_min = zone_offset(v),
            _ => {}
        }
    }

    fn to_unix(&self, now: UnixTime, tz: &TimeZone) -> Option<UnixTime> {
        let now_ts = jiff::Timestamp::from_second(now).ok()?;
        let now_local = tz.to_datetime(now_ts);
        let mut hour = self.hour;
        if let Some(h) = self.hour12 {
            hour = h;
            match self.pm {
                Some(true) if h != 12 => hour = h + 12,
                Some(false) | None if h == 12 => hour = 0,
                _ => {}
            }
        }
        let assume_year = self.year.is_none();
        let year = self.year.unwrap_or(now_local.year() as i32) as i16;
        let assume_today = self.month.is_none() && self.day.is_none();
        let (month, day) = if assume_today {
            (now_local.month(), now_local.day())
        } else {
            (self.month?, self.day?)
        };
        let mut dt = DateTime::new(year, month, day, hour, self.minute, self.second, 0).ok()?;
        // Python compares the naive result with "now" in the same frame:
        // local for zone-less dates, UTC after applying an explicit offset.
        let (cmp_dt, now_cmp) = match self.tz_min {
            Some(off) => (
                dt.checked_sub(jiff::SignedDuration::from_secs(off as i64 * 60))
                    .ok()?,
                TimeZone::UTC.to_datetime(now_ts),
            ),
            None => (dt, now_local),
        };
        if assume_today && cmp_dt > now_cmp {
            dt = dt.checked_sub(jiff::SignedDuration::from_hours(24)).ok()?;
        }
        if assume_year
            && cmp_dt
                > now_cmp
                    .checked_add(jiff::SignedDuration::from_hours(24))
                    .ok()?
        {
            dt = DateTime::new(
                year.checked_sub(1)?,
                month,
                day,
                hour,
                self.minute,
                self.second,
                0,
            )
            .ok()?;
        }
        let ts = match self.tz_min {
            Some(off) => {
                let utc = dt
                    .checked_sub(jiff::SignedDuration::from_secs(off as i64 * 60))
                    .ok()?;
                TimeZone::UTC.to_timestamp(utc).ok()?
            }
            None => tz.to_timestamp(dt).ok()?,
        };
        Some(ts.as_second())
    }
}

/// fail2ban's `zone2offset` for `Z`, `UTC`, `GMT`, `+hh[[:]mm]` and common
/// abbreviations (fixed offsets, no DST switching, as fail2ban does), in minutes.
fn zone_offset(z: &str) -> Option<i32> {
    let z = z.trim();
    if matches!(z, "Z" | "UTC" | "GMT") {
        return Some(0);
    }
    let split = z.find(['+', '-']).unwrap_or(z.len());
    let (abbr, off) = z.split_at(split);
    let base = if abbr.is_empty() {
        0
    } else {
        abbr_offset(abbr)?
    };
    if off.is_empty() {
        return Some(base);
    }
    let sign = if off.starts_with('-') { -1 } else { 1 };
    let digits: String = off[1..].chars().filter(|c| c.is_ascii_digit()).collect();
    let h: i32 = digits.get(..2)?.parse().ok()?;
    let m: i32 = digits.get(2..4).and_then(|s| s.parse().ok()).unwrap_or(0);
    if digits.len() <= 2 {
        return Some(base + sign * h * 60);
    }
    Some(base + sign * (h * 60 + m))
}

fn abbr_offset(a: &str) -> Option<i32> {
    const T: &[(f32, &str)] = &[
        (-12.0, "Y"),
        (-11.0, "X NUT SST"),
        (-10.0, "W CKT HAST HST TAHT TKT"),
        (-9.0, "V AKST GAMT GIT HADT HNY"),
        (-8.0, "U AKDT CIST HAY HNP PST PT"),
        (-7.0, "T HAP HNR MST PDT"),
        (-6.0, "S CST EAST GALT HAR HNC MDT"),
        (-5.0, "R CDT COT EASST ECT EST ET HAC HNE PET"),
        (-4.0, "Q AST BOT CLT COST EDT FKT GYT HAE HNA PYT"),
        (
            -3.0,
            "P ADT ART BRT CLST FKST GFT HAA PMST PYST SRT UYT WGT",
        ),
        (-2.0, "O BRST FNT PMDT UYST WGST"),
        (-1.0, "N AZOT CVT EGT"),
        (0.0, "Z EGST GMT UTC WET WT"),
        (1.0, "A CET DFT WAT WEDT WEST"),
        (2.0, "B CAT CEDT CEST EET SAST WAST"),
        (3.0, "C EAT EEDT EEST IDT MSK"),
        (4.0, "D AMT AZT GET GST KUYT MSD MUT RET SAMT SCT"),
        (
            5.0,
            "E AMST AQTT AZST HMT MAWT MVT PKT TFT TJT TMT UZT YEKT",
        ),
        (6.0, "F ALMT BIOT BTT IOT KGT NOVT OMST YEKST"),
        (7.0, "G CXT DAVT HOVT ICT KRAT NOVST OMSST THA WIB"),
        (
            8.0,
            "H ACT AWST BDT BNT CAST HKT IRKT KRAST MYT PHT SGT ULAT WITA WST",
        ),
        (9.0, "I AWDT IRKST JST KST PWT TLT WDT WIT YAKT"),
        (10.0, "K AEST ChST PGT VLAT YAKST YAPT"),
        (11.0, "L AEDT LHDT MAGT NCT PONT SBT VLAST VUT"),
        (
            12.0,
            "M ANAST ANAT FJT GILT MAGST MHT NZST PETST PETT TVT WFT",
        ),
        (13.0, "FJST NZDT"),
        (11.5, "NFT"),
        (10.5, "ACDT LHST"),
        (9.5, "ACST"),
        (6.5, "CCT MMT"),
        (5.75, "NPT"),
        (5.5, "SLT"),
        (4.5, "AFT IRDT"),
        (3.5, "IRST"),
        (-2.5, "HAT NDT"),
        (-3.5, "HNT NST NT"),
        (-4.5, "HLV VET"),
        (-9.5, "MART MIT"),
    ];
    T.iter()
        .find(|(_, names)| names.split(' ').any(|n| n == a))
        .map(|(h, _)| (h * 60.0) as i32)
}

/// A list of templates tried in order, like fail2ban's `DateDetector`.
#[derive(Debug)]
pub(crate) struct Detector {
    templates: Vec<Template>,
    locs: Locs,
    /// Index of the template that matched last (tried first next time).
    last: Option<usize>,
    /// Index of the anchored syslog template (`{^LN-BEG}(?:%a )?%b %d
    /// %k:%M:%S...`) when the list is fail2ban's defaults, so plain syslog
    /// dates are parsed natively instead of by regex.
    syslog_fast: Option<usize>,
    /// Last syslog date text, the minute of `now` it was computed for, its time.
    cache: (String, i64, Option<UnixTime>),
    /// The last time a strptime template computed: (template, `now`, the
    /// text of its fields, the time). A date's time depends on nothing else,
    /// and consecutive lines mostly share their second.
    fields_cache: (usize, UnixTime, Vec<u8>, Option<UnixTime>),
}

/// A clone shares every compiled template and starts with empty caches;
/// the template that matched last (semantic state: it is tried first) is
/// kept.
impl Clone for Detector {
    fn clone(&self) -> Detector {
        Detector {
            templates: self.templates.clone(),
            locs: Locs::default(),
            last: self.last,
            syslog_fast: self.syslog_fast,
            cache: (String::new(), i64::MIN, None),
            fields_cache: (usize::MAX, 0, Vec::new(), None),
        }
    }
}

/// The date found in a line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DateSpan {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) time: Option<UnixTime>,
}

impl Detector {
    /// Builds the detector from a `datepattern` value (one template per line),
    /// or the defaults when `None`.
    pub(crate) fn new(datepattern: Option<&str>) -> Result<Detector, String> {
        let yr = year_re();
        let mut templates = Vec::new();
        match datepattern {
            None => add_defaults(&mut templates, &yr, None, None)?,
            Some(dp) => {
                for line in dp.split('\n').map(str::trim).filter(|l| !l.is_empty()) {
                    let key = if line.contains('%') {
                        line.to_string()
                    } else {
                        line.to_uppercase()
                    };
                    if key == "{^LN-BEG}" {
                        add_defaults(&mut templates, &yr, Some(true), None)?;
                    } else if key == "{DEFAULT}" {
                        add_defaults(&mut templates, &yr, None, None)?;
                    } else if key.contains("{DATE}") {
                        add_defaults(&mut templates, &yr, None, Some(line))?;
                    } else {
                        templates.push(Template::new(line, &yr)?);
                    }
                }
            }
        }
        let only_defaults = match datepattern {
            None => true,
            Some(dp) => {
                let k = dp.trim().to_uppercase();
                k == "{^LN-BEG}" || k == "{DEFAULT}"
            }
        };
        let syslog_fast = if only_defaults {
            templates.iter().position(|t| t.name == SYSLOG_ANCHORED)
        } else {
            None
        };
        Ok(Detector {
            templates,
            locs: Locs::default(),
            last: None,
            syslog_fast,
            cache: (String::new(), i64::MIN, None),
            fields_cache: (usize::MAX, 0, Vec::new(), None),
        })
    }

    /// The template that matched last, which the next line tries first:
    /// 0 for none, else its index plus one.
    pub(crate) fn last_key(&self) -> u64 {
        self.last.map_or(0, |i| i as u64 + 1)
    }

    /// Takes on a [`Detector::last_key`] (of a copy with the same templates).
    pub(crate) fn set_last_key(&mut self, key: u64) {
        self.last = (key as usize)
            .checked_sub(1)
            .filter(|i| *i < self.templates.len());
    }

    /// Forgets cached times (the time zone changed).
    pub(crate) fn forget(&mut self) {
        self.cache.1 = i64::MIN;
        self.fields_cache.0 = usize::MAX;
    }

    /// `templates[i].time(..)` for the spans in `self.locs`, from the cache
    /// when the fields and `now` are those of the last call.
    fn time(&mut self, i: usize, line: &str, now: UnixTime, tz: &TimeZone) -> Option<UnixTime> {
        let t = &self.templates[i];
        if t.kind != Kind::Pattern {
            return t.time(line, &self.locs, now, tz);
        }
        // the key: each field's letter, text length and text (`-`: absent),
        // in order; the lengths keep it unambiguous
        let mut key = std::mem::take(&mut self.fields_cache.2);
        let same = self.fields_cache.0 == i && self.fields_cache.1 == now;
        let old_len = key.len();
        for &(g, c) in &t.fields {
            key.push(c as u8);
            match self.locs.spans.get(g).copied().flatten() {
                Some((s, e)) => {
                    key.push(b'=');
                    key.extend_from_slice(&(e - s).to_le_bytes());
                    key.extend_from_slice(&line.as_bytes()[s..e]);
                }
                None => key.push(b'-'),
            }
        }
        let time = if same && key[..old_len] == key[old_len..] {
            debug_assert_eq!(
                self.fields_cache.3,
                t.time(line, &self.locs, now, tz),
                "{line}"
            );
            self.fields_cache.3
        } else {
            let time = t.time(line, &self.locs, now, tz);
            self.fields_cache = (i, now, Vec::new(), time);
            time
        };
        key.drain(..old_len);
        self.fields_cache.2 = key;
        time
    }

    /// The time of a plain syslog stamp at the start of `line` (see
    /// [`syslog_prefix`]); `None` when it has none. The last stamp's time is
    /// cached for the minute of `now`: most lines carry the stamp of the
    /// line before, and then need no parse.
    fn syslog_time(
        &mut self,
        line: &str,
        now: UnixTime,
        tz: &TimeZone,
    ) -> Option<Option<UnixTime>> {
        let b = line.as_bytes();
        let minute = now.div_euclid(60);
        let c = &mut self.cache;
        if c.1 == minute && b.get(..SYSLOG_LEN) == Some(c.0.as_bytes()) && syslog_end_ok(b) {
            debug_assert!(syslog_prefix(b).is_some());
            return Some(c.2);
        }
        let (end, month, day, h, m, sec) = syslog_prefix(b)?;
        let p = Parsed {
            month: Some(month),
            day: Some(day),
            hour: h,
            minute: m,
            second: sec,
            ..Parsed::default()
        };
        c.0.clear();
        c.0.push_str(&line[..end]);
        c.1 = minute;
        c.2 = p.to_unix(now, tz);
        Some(c.2)
    }

    /// Finds the date in `line` (fail2ban's `matchTime` + `getTime`).
    pub(crate) fn detect(&mut self, line: &str, now: UnixTime, tz: &TimeZone) -> Option<DateSpan> {
        if let Some(i) = self.syslog_fast
            && let Some(time) = self.syslog_time(line, now, tz)
        {
            self.last = Some(i);
            return Some(DateSpan {
                start: 0,
                end: SYSLOG_LEN,
                time,
            });
        }
        // The last template wins again when it matches at the same kind of place.
        if let Some(i) = self.last {
            let t = &self.templates[i];
            if t.line_anchored
                && let Some((s, e)) = t.find(line, &mut self.locs)
            {
                let time = self.time(i, line, now, tz);
                return Some(DateSpan {
                    start: s,
                    end: e,
                    time,
                });
            }
        }
        // Otherwise: the first anchored template or the first match at the
        // line's start wins; else the leftmost match.
        let mut best: Option<(usize, usize, usize)> = None;
        for (i, t) in self.templates.iter().enumerate() {
            if let Some((s, e)) = t.find(line, &mut self.locs) {
                let ms = self.locs.spans[0].map(|x| x.0).unwrap_or(s);
                if t.line_anchored || ms <= 1 {
                    best = Some((i, s, e));
                    break;
                }
                if best.is_none_or(|(_, bs, _)| s < bs) {
                    best = Some((i, s, e));
                }
            }
        }
        let (i, s, e) = best?;
        let t = &self.templates[i];
        // re-run to refresh spans for the chosen template
        t.find(line, &mut self.locs)?;
        let time = self.time(i, line, now, tz);
        self.last = Some(i);
        Some(DateSpan {
            start: s,
            end: e,
            time,
        })
    }
}

/// fail2ban's default template set: anchored variants (weight 100) first, then
/// the defaults. `anchored_only`: `{^LN-BEG}`; `pre`: a `{DATE}` wrapper.
fn add_defaults(
    out: &mut Vec<Template>,
    yr: &str,
    anchored_only: Option<bool>,
    pre: Option<&str>,
) -> Result<(), String> {
    if let Some(pre) = pre {
        for d in DEFAULT_TEMPLATES {
            let inner = d.trim_start_matches("{^LN-BEG}");
            let p = replace_ci(pre, "{DATE}", inner);
            if let Ok(t) = Template::new(&p, yr) {
                out.push(t);
            }
        }
        return Ok(());
    }
    let mut anchored = Vec::new();
    let mut plain = Vec::new();
    for d in DEFAULT_TEMPLATES {
        let t = Template::new(d, yr)?;
        if !d.starts_with("{^LN-BEG}")
            && !d.starts_with('^')
            && !matches!(t.kind, Kind::Epoch { .. })
            || d == "EPOCH"
        {
            anchored.push(Template::new(&format!("{{^LN-BEG}}{d}"), yr)?);
        }
        plain.push(t);
    }
    out.extend(anchored);
    if anchored_only == Some(true) {
        out.extend(plain.into_iter().filter(|t| t.line_anchored));
    } else {
        out.extend(plain);
    }
    Ok(())
}

fn replace_ci(hay: &str, needle: &str, with: &str) -> String {
    match find_ci(hay, needle) {
        Some(p) => format!("{}{}{}", &hay[..p], with, &hay[p + needle.len()..]),
        None => hay.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc() -> TimeZone {
        TimeZone::UTC
    }
    // 2005-08-14T10:00:00Z, fail2ban's TEST_NOW
    const NOW: i64 = 1_124_013_600;

    #[test]
    fn syslog_default() {
        let mut d = Detector::new(Some("{^LN-BEG}")).unwrap();
        let f = d
            .detect("Aug 14 11:59:59 host sshd[1]: x", NOW, &utc())
            .unwrap();
        assert_eq!((f.start, f.end), (0, 15));
        assert_eq!(f.time, Some(1_124_020_799));
        // a future date (more than a day) means last year
        let f = d.detect("Dec 31 23:59:59 host x", NOW, &utc()).unwrap();
        assert_eq!(f.time, Some(1_104_537_599));
    }

    /// A clone finds the same dates on another thread.
    #[test]
    fn clone_detects_on_another_thread() {
        let mut d = Detector::new(None).unwrap();
        let line = "x 2005/08/14 10:00:00 y";
        let want = d.detect(line, NOW, &utc()).unwrap();
        let mut c = d.clone();
        let got = std::thread::spawn(move || c.detect(line, NOW, &utc()).unwrap())
            .join()
            .unwrap();
        assert_eq!(
            (got.start, got.end, got.time),
            (want.start, want.end, want.time)
        );
    }

    #[test]
    fn iso_with_offset_and_separator_check() {
        let mut d = Detector::new(None).unwrap();
        let f = d
            .detect("2005-08-14T12:00:00+02:00 x", NOW, &utc())
            .unwrap();
        assert_eq!(f.time, Some(NOW));
        let f = d.detect("x 2005/08/14 10:00:00 y", NOW, &utc()).unwrap();
        assert_eq!(f.time, Some(NOW));
        assert_eq!(f.start, 2);
    }

    /// The time of a strptime template is cached on its fields' text and
    /// `now`: a change of either (or of the time zone) computes it again.
    #[test]
    fn field_cache_keys_on_fields_and_now() {
        let mut d = Detector::new(Some(r"^[^\[]*\[({DATE})")).unwrap();
        let mut t = |line: &str, now: i64, tz: &TimeZone| d.detect(line, now, tz).unwrap().time;
        let a = "1.2.3.4 - [14/Aug/2005:10:00:00 +0000] x";
        assert_eq!(t(a, NOW, &utc()), Some(NOW));
        // another prefix, the same date: the cached time
        assert_eq!(
            t("5.6.7.8 - - [14/Aug/2005:10:00:00 +0000] y", NOW, &utc()),
            Some(NOW)
        );
        // one field differs
        assert_eq!(
            t("5.6.7.8 - [14/Aug/2005:10:00:01 +0000] y", NOW, &utc()),
            Some(NOW + 1)
        );
        assert_eq!(
            t("5.6.7.8 - [14/Aug/2005:10:00:01 +0100] y", NOW, &utc()),
            Some(NOW + 1 - 3600)
        );
        // no year: `now` decides it (a date more than a day ahead is last year's)
        let b = "x [14/Aug 10:00:00] y";
        let mut d = Detector::new(Some(r"^[^\[]*\[(%d/%b %H:%M:%S)")).unwrap();
        assert_eq!(d.detect(b, NOW, &utc()).unwrap().time, Some(NOW));
        let two_days = 2 * 86_400;
        let a_year_before = Some(1_092_477_600); // 2004-08-14T10:00:00Z
        assert_eq!(
            d.detect(b, NOW - two_days, &utc()).unwrap().time,
            a_year_before
        );
        // the same fields and `now` in another zone, after `forget`
        assert_eq!(d.detect(b, NOW, &utc()).unwrap().time, Some(NOW));
        let cet = TimeZone::fixed(jiff::tz::offset(1));
        d.forget();
        assert_eq!(d.detect(b, NOW, &cet).unwrap().time, Some(NOW - 3600));
    }

    #[test]
    fn custom_patterns() {
        let mut d =
            Detector::new(Some("^%%d/%%b/%%Y:%%H:%%M:%%S".replace("%%", "%").as_str())).unwrap();
        let f = d.detect("14/Aug/2005:10:00:00 rest", NOW, &utc()).unwrap();
        assert_eq!(f.time, Some(NOW));
        let mut d = Detector::new(Some("{^LN-BEG}TAI64N")).unwrap();
        let f = d
            .detect("@400000004300e9b01e8480a4 x", NOW, &utc())
            .unwrap();
        assert_eq!(f.time, Some(0x4300e9b0));
        let mut d = Detector::new(Some("EPOCH")).unwrap();
        assert_eq!(
            d.detect("1124013600 x", NOW, &utc()).unwrap().time,
            Some(NOW)
        );
    }

    #[test]
    fn syslog_fast_path_rejects_garbage() {
        for l in [
            "Nov 29 0!:00:00 x",
            "Nov 2\u{1}x04:00:00 x",
            "Nov 29 04:00:00.123 x",
            "Xyz 29 04:00:00 x",
            "Nov 29 24:00:00",
        ] {
            assert!(syslog_prefix(l.as_bytes()).is_none(), "{l}");
        }
        assert_eq!(
            syslog_prefix(b"Nov  5 04:05:06 x"),
            Some((15, 11, 5, 4, 5, 6))
        );
    }

    /// A line with the stamp of the line before takes it from the cache
    /// only when the stamp is plain there too: a fraction or a year after
    /// it sends the line to the templates, which read them.
    #[test]
    fn repeated_stamp_is_read_as_a_new_one() {
        let mut d = Detector::new(None).unwrap();
        let fresh = || Detector::new(None).unwrap();
        for l in [
            "Nov 29 04:00:00 host x",
            "Nov 29 04:00:00 host y",
            "Nov 29 04:00:00.250 host x",
            "Nov 29 04:00:00 2024 host x",
            "Nov 29 04:00:00",
            "Nov 29 04:00:01 host x",
        ] {
            let got = d.detect(l, NOW, &utc()).map(|f| (f.start, f.end, f.time));
            let want = fresh()
                .detect(l, NOW, &utc())
                .map(|f| (f.start, f.end, f.time));
            assert_eq!(got, want, "{l}");
        }
        assert_eq!(
            d.detect("Nov 29 04:00:00.250 x", NOW, &utc()).unwrap().end,
            19
        );
    }

    #[test]
    fn zones() {
        assert_eq!(zone_offset("CEST"), Some(120));
        assert_eq!(zone_offset("-0430"), Some(-270));
        assert_eq!(zone_offset("UTC"), Some(0));
    }
}
