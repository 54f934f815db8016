//! Grok patterns as CrowdSec's grokky library handles them: a library of named RE2 patterns
//! (grokky's base set, then the patterns directory, then each node's `pattern_syntax`),
//! `%{NAME}` / `%{NAME:field}` expanded recursively with each expansion wrapped in a group,
//! and the field → group-number table computed the way grokky computes it (including its
//! quirks: only `%{…:field}` names are fields, a later field of the same name wins, a pattern
//! without any `%{}` yields no field). The expanded text is translated from Go's RE2 dialect to
//! the `regex` crate's (ASCII `\d\w\s\b`, group names dropped, literal `{`) and compiled once.
//! Owns nothing about events; `parser` applies a [`Grok`] to a string.

use std::collections::HashMap;
use std::path::Path;

/// A grok pattern that names a missing pattern or does not compile.
#[derive(Debug, thiserror::Error)]
pub enum GrokError {
    /// `%{NAME}` where no pattern NAME was loaded.
    #[error(
        "the '{0}' pattern doesn't exist (load the CrowdSec patterns directory, or define it in pattern_syntax)"
    )]
    Missing(String),
    /// The expansion is not a valid regular expression.
    #[error("pattern {pattern:?} does not compile: {message}")]
    Regex { pattern: String, message: String },
    /// A pattern refers to itself through its expansions.
    #[error("pattern '{0}' refers to itself")]
    Recursive(String),
    /// An empty pattern.
    #[error("an empty pattern")]
    Empty,
}

/// A named-pattern library (grokky's `Host`).
#[derive(Debug, Clone, Default)]
pub struct Library {
    patterns: HashMap<String, String>,
    /// Expansions already computed: name → (expanded text, group count, field table).
    cache: HashMap<String, Expanded>,
}

#[derive(Debug, Clone)]
struct Expanded {
    text: String,
    groups: usize,
    fields: Vec<(String, usize)>,
}

/// A compiled grok pattern: a regex plus which group holds each field.
#[derive(Debug, Clone)]
pub struct Grok {
    regex: regex::Regex,
    fields: Vec<(String, usize)>,
    source: String,
}

impl Library {
    /// grokky's base patterns only.
    pub fn base() -> Library {
        let mut l = Library::default();
        for (name, pat) in crate::grok_base::BASE {
            l.patterns.insert((*name).to_owned(), (*pat).to_owned());
        }
        l
    }

    /// Base patterns plus every pattern file of `dir` (files whose name has no dot, in name
    /// order, as CrowdSec's `NewUnixParserCtx` reads them).
    pub fn load_dir(dir: &Path) -> Result<Library, crate::Error> {
        let mut l = Library::base();
        let rd = std::fs::read_dir(dir).map_err(|e| crate::Error::Io {
            path: dir.to_owned(),
            source: e,
        })?;
        let mut files: Vec<_> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().map(|t| !t.is_dir()).unwrap_or(false))
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| !n.contains('.'))
            })
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).map_err(|e| crate::Error::Io {
                path: f.clone(),
                source: e,
            })?;
            for line in text.lines() {
                if let Some((name, pat)) = pattern_line(line) {
                    l.add(name, pat);
                }
            }
        }
        Ok(l)
    }

    /// Adds a pattern; like grokky, an existing name keeps its first definition (returns false).
    pub fn add(&mut self, name: &str, pattern: &str) -> bool {
        if name.is_empty() || pattern.is_empty() || self.patterns.contains_key(name) {
            return false;
        }
        self.patterns.insert(name.to_owned(), pattern.to_owned());
        true
    }

    /// Whether a pattern of this name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.patterns.contains_key(name)
    }

    /// Names of all patterns.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.patterns.keys().map(String::as_str)
    }

    /// Compiles the pattern called `name` (grok `name:`).
    pub fn get(&mut self, name: &str) -> Result<Grok, GrokError> {
        let e = self.expand_name(name, &mut Vec::new())?;
        Grok::new(&e.text, e.fields)
    }

    /// Compiles an inline grok pattern (grok `pattern:`).
    pub fn compile(&mut self, pattern: &str) -> Result<Grok, GrokError> {
        if pattern.is_empty() {
            return Err(GrokError::Empty);
        }
        let e = self.expand(pattern, &mut Vec::new())?;
        Grok::new(&e.text, e.fields)
    }

    fn expand_name(&mut self, name: &str, stack: &mut Vec<String>) -> Result<Expanded, GrokError> {
        if let Some(e) = self.cache.get(name) {
            return Ok(e.clone());
        }
        if stack.iter().any(|s| s == name) {
            return Err(GrokError::Recursive(name.to_owned()));
        }
        let Some(pat) = self.patterns.get(name).cloned() else {
            return Err(GrokError::Missing(name.to_owned()));
        };
        stack.push(name.to_owned());
        let e = self.expand(&pat, stack);
        stack.pop();
        let e = e?;
        self.cache.insert(name.to_owned(), e.clone());
        Ok(e)
    }

    /// grokky's `compileExternal`: expand one level, recursing into named patterns.
    fn expand(&mut self, pattern: &str, stack: &mut Vec<String>) -> Result<Expanded, GrokError> {
        let refs = find_refs(pattern);
        for r in &refs {
            if !self.patterns.contains_key(r.name) {
                return Err(GrokError::Missing(r.name.to_owned()));
            }
        }
        if refs.is_empty() {
            return Ok(Expanded {
                text: pattern.to_owned(),
                groups: count_groups(pattern),
                fields: Vec::new(),
            });
        }
        let sems: Vec<&str> = refs.iter().map(|r| r.sem).collect();
        let mut fields: Vec<(String, usize)> = Vec::new();
        let set = |fields: &mut Vec<(String, usize)>, k: &str, v: usize| {
            if let Some(f) = fields.iter_mut().find(|f| f.0 == k) {
                f.1 = v;
            } else {
                fields.push((k.to_owned(), v));
            }
        };
        let mut order = 1usize;
        let mut text = String::with_capacity(pattern.len() * 4);
        let mut last = 0;
        for r in &refs {
            let lit = &pattern[last..r.start];
            order = order.saturating_add_signed(cap_count(lit));
            let sub = self.expand_name(r.name, stack)?;
            if !r.sem.is_empty() {
                set(&mut fields, r.sem, order);
            }
            text.push_str(lit);
            text.push('(');
            text.push_str(&sub.text);
            text.push(')');
            for (k, v) in &sub.fields {
                if !sems.contains(&k.as_str()) {
                    set(&mut fields, k, order + v);
                }
            }
            order += sub.groups + 1;
            last = r.end;
        }
        text.push_str(&pattern[last..]);
        let groups = count_groups(&text);
        Ok(Expanded {
            text,
            groups,
            fields,
        })
    }
}

/// A `NAME pattern` line of a patterns file (grokky: `^(\w+)\s+(.+)$`).
fn pattern_line(line: &str) -> Option<(&str, &str)> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(line.len());
    if name_end == 0 {
        return None;
    }
    let rest = &line[name_end..];
    let trimmed = rest.trim_start_matches([' ', '\t', '\x0b', '\x0c', '\r', '\n']);
    if trimmed.len() == rest.len() || trimmed.is_empty() {
        return None;
    }
    Some((&line[..name_end], trimmed))
}

struct Ref<'a> {
    start: usize,
    end: usize,
    name: &'a str,
    sem: &'a str,
}

/// Occurrences of `%{NAME}` / `%{NAME:sem}` (grokky: `\%\{(\w+)(\:(\w+))?}`).
fn find_refs(p: &str) -> Vec<Ref<'_>> {
    let b = p.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut out = Vec::new();
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == b'%' && b[i + 1] == b'{' {
            let ns = i + 2;
            let mut j = ns;
            while j < b.len() && word(b[j]) {
                j += 1;
            }
            if j > ns && j < b.len() {
                if b[j] == b'}' {
                    out.push(Ref {
                        start: i,
                        end: j + 1,
                        name: &p[ns..j],
                        sem: "",
                    });
                    i = j + 1;
                    continue;
                }
                if b[j] == b':' {
                    let ss = j + 1;
                    let mut k = ss;
                    while k < b.len() && word(b[k]) {
                        k += 1;
                    }
                    if k > ss && k < b.len() && b[k] == b'}' {
                        out.push(Ref {
                            start: i,
                            end: k + 1,
                            name: &p[ns..j],
                            sem: &p[ss..k],
                        });
                        i = k + 1;
                        continue;
                    }
                }
            }
        }
        i += 1;
    }
    out
}

/// grokky's `capCount`, heuristic and all: `(` count minus `(?flags:`, minus anything matching
/// `\(?[imsU\-]+\)`, minus `\(`.
fn cap_count(s: &str) -> isize {
    let b = s.as_bytes();
    let left = b.iter().filter(|&&c| c == b'(').count() as isize;
    let escaped = s.matches("\\(").count() as isize;
    let flag = |c: u8| matches!(c, b'i' | b'm' | b's' | b'U' | b'-');
    // `\(\?[imsU\-]*\:`
    let mut noncap_left = 0isize;
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == b'(' && b[i + 1] == b'?' {
            let mut j = i + 2;
            while j < b.len() && flag(b[j]) {
                j += 1;
            }
            if j < b.len() && b[j] == b':' {
                noncap_left += 1;
                i = j + 1;
                continue;
            }
        }
        i += 1;
    }
    // `\(?[imsU\-]+\)`: leftmost-first, non-overlapping; the `(` is optional.
    let mut noncap_both = 0isize;
    let mut i = 0;
    while i < b.len() {
        let mut j = i;
        if b[j] == b'(' {
            j += 1;
        }
        let fs = j;
        while j < b.len() && flag(b[j]) {
            j += 1;
        }
        if j > fs && j < b.len() && b[j] == b')' {
            noncap_both += 1;
            i = j + 1;
            continue;
        }
        i += 1;
    }
    left - noncap_left - noncap_both - escaped
}

/// The real number of capturing groups of an RE2 pattern.
fn count_groups(p: &str) -> usize {
    let b = p.as_bytes();
    let mut n = 0;
    let mut i = 0;
    let mut class = false;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                if b.get(i + 1) == Some(&b'Q') {
                    match p[i + 2..].find("\\E") {
                        Some(e) => i = i + 2 + e + 2,
                        None => return n,
                    }
                    continue;
                }
                i += 2;
                continue;
            }
            b'[' if !class => {
                class = true;
                i += 1;
                if b.get(i) == Some(&b'^') {
                    i += 1;
                }
                if b.get(i) == Some(&b']') {
                    i += 1;
                }
                continue;
            }
            b'[' if class && b.get(i + 1) == Some(&b':') => {
                if let Some(e) = p[i..].find(":]") {
                    i += e + 2;
                    continue;
                }
            }
            b']' if class => class = false,
            b'(' if !class => {
                let named = b.get(i + 2) == Some(&b'P') && b.get(i + 3) == Some(&b'<')
                    || b.get(i + 2) == Some(&b'<');
                if b.get(i + 1) != Some(&b'?') || named {
                    n += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    n
}

/// Go RE2 text → `regex` crate text with the same groups in the same order.
pub fn translate(p: &str) -> String {
    let b = p.as_bytes();
    let mut out = String::with_capacity(p.len() + 16);
    let mut i = 0;
    let mut class = false;
    while i < b.len() {
        let c = b[i];
        if c == b'\\' && i + 1 < b.len() {
            let n = b[i + 1];
            let rep: Option<&str> = match (n, class) {
                (b'd', false) => Some("[0-9]"),
                (b'd', true) => Some("0-9"),
                (b'D', _) => Some("[^0-9]"),
                (b'w', false) => Some("[0-9A-Za-z_]"),
                (b'w', true) => Some("0-9A-Za-z_"),
                (b'W', _) => Some("[^0-9A-Za-z_]"),
                (b's', false) => Some("[\\t\\n\\f\\r ]"),
                (b's', true) => Some("\\t\\n\\f\\r "),
                (b'S', _) => Some("[^\\t\\n\\f\\r ]"),
                (b'b', false) => Some("(?-u:\\b)"),
                (b'B', false) => Some("(?-u:\\B)"),
                _ => None,
            };
            if let Some(r) = rep {
                out.push_str(r);
                i += 2;
                continue;
            }
            if n == b'Q' {
                let end = p[i + 2..].find("\\E").map(|e| i + 2 + e).unwrap_or(b.len());
                for ch in p[i + 2..end].chars() {
                    push_literal(&mut out, ch);
                }
                i = (end + 2).min(b.len());
                continue;
            }
            if n.is_ascii() && !n.is_ascii_alphanumeric() {
                push_literal(&mut out, n as char);
                i += 2;
                continue;
            }
            // A multi-byte char after `\` or a letter escape: copy both as they are.
            let ch_len = p[i + 1..].chars().next().map(char::len_utf8).unwrap_or(1);
            out.push_str(&p[i..i + 1 + ch_len]);
            i += 1 + ch_len;
            continue;
        }
        if class {
            if c == b'['
                && b.get(i + 1) == Some(&b':')
                && let Some(e) = p[i..].find(":]")
            {
                out.push_str(&p[i..i + e + 2]);
                i += e + 2;
                continue;
            }
            if c == b'[' {
                out.push_str("\\[");
                i += 1;
                continue;
            }
            if c == b']' {
                class = false;
            }
            if c == b'&' || c == b'~' || c == b'-' && b.get(i + 1) == Some(&b'-') {
                // Set operators in the `regex` crate's classes, plain characters in RE2.
                push_literal(&mut out, c as char);
                i += 1;
                continue;
            }
            let ch_len = p[i..].chars().next().map(char::len_utf8).unwrap_or(1);
            out.push_str(&p[i..i + ch_len]);
            i += ch_len;
            continue;
        }
        match c {
            b'[' => {
                class = true;
                out.push('[');
                i += 1;
                if b.get(i) == Some(&b'^') {
                    out.push('^');
                    i += 1;
                }
                if b.get(i) == Some(&b']') {
                    out.push_str("\\]");
                    i += 1;
                }
                continue;
            }
            b'(' if b.get(i + 1) == Some(&b'?') => {
                // Drop group names: grokky numbers groups, and `regex` refuses duplicates.
                let rest = &p[i + 2..];
                let name_start = if rest.starts_with("P<") {
                    Some(i + 4)
                } else if rest.starts_with('<')
                    && !rest.starts_with("<=")
                    && !rest.starts_with("<!")
                {
                    Some(i + 3)
                } else {
                    None
                };
                if let Some(s) = name_start
                    && let Some(e) = p[s..].find('>')
                {
                    out.push('(');
                    i = s + e + 1;
                    continue;
                }
                out.push('(');
                i += 1;
                continue;
            }
            b'{' => {
                // RE2 reads `{` as a literal unless it starts `{n}`, `{n,}` or `{n,m}`.
                let rest = &p[i + 1..];
                let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
                let mut ok = digits > 0;
                let mut j = digits;
                if ok && rest.as_bytes().get(j) == Some(&b',') {
                    j += 1;
                    j += rest[j..].bytes().take_while(u8::is_ascii_digit).count();
                }
                ok = ok && rest.as_bytes().get(j) == Some(&b'}');
                if ok {
                    out.push_str(&p[i..i + 1 + j + 1]);
                    i += j + 2;
                } else {
                    out.push_str("\\{");
                    i += 1;
                }
                continue;
            }
            b'}' => {
                out.push_str("\\}");
                i += 1;
                continue;
            }
            _ => {}
        }
        let ch_len = p[i..].chars().next().map(char::len_utf8).unwrap_or(1);
        out.push_str(&p[i..i + ch_len]);
        i += ch_len;
    }
    out
}

/// Turns every capturing group no field reads into a non-capturing one, so the regex engine
/// tracks only the groups that yield fields (grok patterns such as IPORHOST carry dozens of
/// groups nobody reads). Returns the rewritten text and old group number → new group number;
/// None when the text does not parse (the caller then compiles it as it is and reports).
/// Group positions come from `regex-syntax`'s own parser, so the rewrite cannot misread an
/// escaped or bracketed parenthesis.
fn prune_groups(
    translated: &str,
    fields: &[(String, usize)],
) -> Option<(String, Vec<Option<usize>>)> {
    use regex_syntax::ast::{self, Ast, GroupKind};
    struct Groups(Vec<(u32, usize)>);
    impl ast::Visitor for Groups {
        type Output = Vec<(u32, usize)>;
        type Err = ();
        fn finish(self) -> Result<Self::Output, ()> {
            Ok(self.0)
        }
        fn visit_pre(&mut self, a: &Ast) -> Result<(), ()> {
            if let Ast::Group(g) = a
                && let GroupKind::CaptureIndex(i) = g.kind
            {
                self.0.push((i, g.span.start.offset));
            }
            Ok(())
        }
    }
    let parsed = ast::parse::Parser::new().parse(translated).ok()?;
    let mut groups = ast::visit(&parsed, Groups(Vec::new())).ok()?;
    groups.sort_unstable();
    let wanted = |i: usize| fields.iter().any(|f| f.1 == i);
    let mut renumber: Vec<Option<usize>> = vec![Some(0)];
    let mut drop_at: Vec<usize> = Vec::new();
    let mut next = 1;
    for (i, (index, offset)) in groups.iter().enumerate() {
        // Capture indexes run 1..=n in order; anything else means a misread: leave it alone.
        if *index as usize != i + 1 || translated.as_bytes().get(*offset) != Some(&b'(') {
            return None;
        }
        if wanted(i + 1) {
            renumber.push(Some(next));
            next += 1;
        } else {
            renumber.push(None);
            drop_at.push(*offset);
        }
    }
    drop_at.sort_unstable();
    let mut out = String::with_capacity(translated.len() + 2 * drop_at.len());
    let mut last = 0;
    for at in drop_at {
        out.push_str(&translated[last..=at]);
        out.push_str("?:");
        last = at + 1;
    }
    out.push_str(&translated[last..]);
    Some((out, renumber))
}

fn push_literal(out: &mut String, ch: char) {
    if ch.is_ascii_alphanumeric() || !ch.is_ascii() {
        out.push(ch);
    } else {
        use std::fmt::Write;
        let _ = write!(out, "\\x{:02X}", ch as u32);
    }
}

impl Grok {
    fn new(text: &str, fields: Vec<(String, usize)>) -> Result<Grok, GrokError> {
        let mut translated = translate(text);
        let mut fields = fields;
        if let Some((pruned, renumber)) = prune_groups(&translated, &fields) {
            translated = pruned;
            for f in &mut fields {
                // A field pointing past the last group (grokky's count can) stays absent.
                f.1 = renumber.get(f.1).copied().flatten().unwrap_or(usize::MAX);
            }
        }
        let regex = regex::RegexBuilder::new(&translated)
            .size_limit(64 << 20)
            .dfa_size_limit(16 << 20)
            .build()
            .map_err(|e| GrokError::Regex {
                pattern: text.chars().take(200).collect(),
                message: e.to_string(),
            })?;
        Ok(Grok {
            regex,
            fields,
            source: text.to_owned(),
        })
    }

    /// The expanded RE2 text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the pattern yields any field at all (grokky: one without `%{…:x}` never does).
    pub fn has_fields(&self) -> bool {
        !self.fields.is_empty()
    }

    /// Matches `input`; on a match calls `out(field, value)` for every field (a group that did
    /// not take part gives ""), and returns the number of fields. 0 means the grok failed.
    pub fn parse(&self, input: &str, mut out: impl FnMut(&str, &str)) -> usize {
        if self.fields.is_empty() {
            return 0;
        }
        let Some(caps) = self.regex.captures(input) else {
            return 0;
        };
        for (name, idx) in &self.fields {
            out(name, caps.get(*idx).map(|m| m.as_str()).unwrap_or(""));
        }
        self.fields.len()
    }

    /// Field → value on a match, as a map (for tests and tools).
    pub fn parse_map(&self, input: &str) -> HashMap<String, String> {
        let mut m = HashMap::new();
        self.parse(input, |k, v| {
            m.insert(k.to_owned(), v.to_owned());
        });
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_nesting_follow_grokky() {
        let mut l = Library::base();
        let g = l.compile(r"^%{IP:ip} (?P<x>\d+) %{WORD:w}$").unwrap();
        let m = g.parse_map("1.2.3.4 12 hello");
        assert_eq!(m.get("ip").map(String::as_str), Some("1.2.3.4"));
        assert_eq!(m.get("w").map(String::as_str), Some("hello"));
        // A native named group is not a field in grokky.
        assert!(!m.contains_key("x"));
        // No %{} at all: never any field, so the grok fails even on a match.
        let plain = l.compile(r"^(?P<x>\d+)$").unwrap();
        assert_eq!(plain.parse("12", |_, _| {}), 0);
    }

    #[test]
    fn later_field_of_the_same_name_wins_even_when_empty() {
        let mut l = Library::base();
        let g = l.compile(r"^(?:%{INT:v}|%{WORD:v})$").unwrap();
        // The INT branch matched, but grokky maps `v` to the last group: empty.
        assert_eq!(g.parse_map("12").get("v").map(String::as_str), Some(""));
        assert_eq!(g.parse_map("ab").get("v").map(String::as_str), Some("ab"));
    }

    #[test]
    fn sub_pattern_fields_propagate_unless_named_here() {
        let mut l = Library::base();
        assert!(l.add("PAIR", "%{WORD:k}=%{INT:v}"));
        assert!(!l.add("PAIR", "x"));
        let g = l.compile("^%{PAIR} %{INT:v}$").unwrap();
        let m = g.parse_map("a=1 2");
        assert_eq!(m.get("k").map(String::as_str), Some("a"));
        assert_eq!(m.get("v").map(String::as_str), Some("2"));
    }

    #[test]
    fn go_syntax_translates() {
        let mut l = Library::base();
        let g = l.compile(r"^%{WORD:a}\<x\> {foo} \w{2}$").unwrap();
        assert!(g.regex.is_match("ab<x> {foo} cd"));
        // ASCII classes, as in Go.
        let d = l.compile(r"^%{DATA:d}\d$").unwrap();
        assert!(!d.regex.is_match("x\u{0663}"));
        assert!(matches!(l.compile("%{NOPE:x}"), Err(GrokError::Missing(_))));
    }

    #[test]
    fn unread_groups_stop_capturing_and_fields_keep_their_values() {
        let mut l = Library::base();
        let g = l
            .compile(r"^(%{IPORHOST:host} )?%{IP:ip} (x|y)[)] %{WORD:w}(\(z\))?$")
            .unwrap();
        // Only the three field groups are left capturing (plus group 0).
        assert_eq!(g.regex.captures_len(), 4);
        let m = g.parse_map("example.org 2001:db8::1 y) abc(z)");
        assert_eq!(m.get("host").map(String::as_str), Some("example.org"));
        assert_eq!(m.get("ip").map(String::as_str), Some("2001:db8::1"));
        assert_eq!(m.get("w").map(String::as_str), Some("abc"));
        let m = g.parse_map("10.0.0.1 x) q");
        assert_eq!(m.get("host").map(String::as_str), Some(""));
        assert_eq!(m.get("ip").map(String::as_str), Some("10.0.0.1"));
        // A field whose group number lies past the last group reads as "".
        let (_, renumber) = prune_groups("(a)(b)", &[("f".into(), 2)]).unwrap();
        assert_eq!(renumber, vec![Some(0), None, Some(1)]);
    }

    #[test]
    fn cap_count_keeps_grokky_quirks() {
        assert_eq!(cap_count("(a)(?:b)"), 1);
        assert_eq!(cap_count(r"\(a"), 0);
        // `s)` matches grokky's flag regex even though it is not a flag group.
        assert_eq!(cap_count("(as)"), 0);
    }
}
