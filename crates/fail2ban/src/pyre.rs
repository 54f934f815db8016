//! Python `re` patterns (as fail2ban writes them) translated for Rust: the
//! `regex` crate (linear time) whenever the pattern allows, `fancy-regex`
//! (backtracking, with a limit) only for lookaround, backreferences and
//! conditionals.
//!
//! Python semantics kept: `$` also matches before a final `\n` (fail2ban's
//! buffers end with one), an unescaped `[` inside a class is a literal, `{,n}`
//! means `{0,n}`, a `{` that is not a quantifier is a literal, `\Z` is `\z`,
//! `(?P=name)` back-references, escaped non-letters are literals.

/// A translated pattern and whether it needs the backtracking engine.
#[derive(Debug, Clone)]
pub(crate) struct Translated {
    pub(crate) pattern: String,
    pub(crate) fancy: bool,
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
pub(crate) fn translate(py: &str, multiline: bool) -> Translated {
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

/// A compiled translated pattern.
#[derive(Debug)]
pub(crate) enum Re {
    /// The linear engine, with its own reusable capture slots, and the same
    /// pattern compiled without Unicode for ASCII haystacks (identical results
    /// there, and a far smaller automaton).
    Fast(
        regex::Regex,
        std::cell::RefCell<regex::CaptureLocations>,
        Option<Ascii>,
    ),
    Fancy(fancy_regex::Regex),
}

/// Lazy-DFA cache per pattern: large enough that varied input does not make
/// the engine give up the DFA for the much slower PikeVM.
const DFA_CACHE: usize = 16 << 20;

/// Backtracking steps allowed per match before fancy-regex gives up on a line.
pub(crate) const BACKTRACK_LIMIT: usize = 1_000_000;

impl Re {
    pub(crate) fn compile(py: &str, multiline: bool) -> Result<(Re, String), String> {
        let t = translate(py, multiline);
        if !t.fancy {
            match regex::RegexBuilder::new(&t.pattern)
                .dfa_size_limit(DFA_CACHE)
                .build()
            {
                Ok(r) => {
                    let cl = std::cell::RefCell::new(r.capture_locations());
                    let ascii = ascii_twin(&t.pattern);
                    return Ok((Re::Fast(r, cl, ascii), t.pattern));
                }
                Err(_) => { /* fall back to fancy-regex below (e.g. features regex lacks) */ }
            }
        }
        let f = fancy_regex::RegexBuilder::new(&t.pattern)
            .backtrack_limit(BACKTRACK_LIMIT)
            .build()
            .map_err(|e| format!("{e}"))?;
        Ok((Re::Fancy(f), t.pattern))
    }

    pub(crate) fn capture_names(&self) -> Vec<Option<String>> {
        match self {
            Re::Fast(r, _, _) => r.capture_names().map(|n| n.map(str::to_string)).collect(),
            Re::Fancy(r) => r.capture_names().map(|n| n.map(str::to_string)).collect(),
        }
    }

    pub(crate) fn is_fancy(&self) -> bool {
        matches!(self, Re::Fancy(_))
    }

    /// Searches `hay`; fills `slots[i]` with the span of group `i`. A fancy
    /// pattern that exceeds its backtrack limit counts as no match.
    pub(crate) fn captures(&self, hay: &str, locs: &mut Locs) -> bool {
        match self {
            Re::Fast(_, _, Some(a)) if hay.is_ascii() => {
                let cl = &mut *a.locs.borrow_mut();
                if a.re.captures_read(cl, hay.as_bytes()).is_none() {
                    return false;
                }
                locs.spans.clear();
                for g in 0..cl.len() {
                    locs.spans.push(cl.get(g));
                }
                true
            }
            Re::Fast(r, cl, _) => {
                let cl = &mut *cl.borrow_mut();
                if r.captures_read(cl, hay).is_none() {
                    return false;
                }
                locs.spans.clear();
                for g in 0..cl.len() {
                    locs.spans.push(cl.get(g));
                }
                true
            }
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

    pub(crate) fn is_match(&self, hay: &str) -> bool {
        match self {
            Re::Fast(_, _, Some(a)) if hay.is_ascii() => a.re.is_match(hay.as_bytes()),
            Re::Fast(r, _, _) => r.is_match(hay),
            Re::Fancy(r) => r.is_match(hay).unwrap_or(false),
        }
    }
}

/// An ASCII-only compilation of a pattern, used when the haystack is ASCII.
#[derive(Debug)]
pub(crate) struct Ascii {
    pub(crate) re: regex::bytes::Regex,
    locs: std::cell::RefCell<regex::bytes::CaptureLocations>,
}

/// Compiles `pattern` with Unicode off. On ASCII input `\w \d \s \b .`
/// and case folding then agree with the Unicode pattern.
pub(crate) fn ascii_twin(pattern: &str) -> Option<Ascii> {
    if !pattern.is_ascii() {
        return None;
    }
    let re = regex::bytes::RegexBuilder::new(pattern)
        .unicode(false)
        .build()
        .ok()?;
    let locs = std::cell::RefCell::new(re.capture_locations());
    Some(Ascii { re, locs })
}

/// The group spans of the last successful [`Re::captures`].
#[derive(Debug, Default)]
pub(crate) struct Locs {
    pub(crate) spans: Vec<Option<(usize, usize)>>,
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn fancy_features_compile() {
        for p in [
            r"(?P<s>[-/])a(?P=s)",
            r"a(?=b)",
            r"(?:(?P<x>x)|y)(?(x)a|b)",
            r"(?<!x)y",
        ] {
            let (r, _) = Re::compile(p, false).unwrap_or_else(|e| panic!("{p}: {e}"));
            assert!(r.is_fancy());
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
pub(crate) fn relax(p: &str) -> Option<String> {
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
