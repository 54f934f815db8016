//! Rewrites a translated pattern that would need the backtracking engine into
//! one the linear engine runs, plus exact checks after the match, when its
//! only backtracking features are group conditionals and lookaheads.
//!
//! * A conditional `(?(<g>)A|B)` depends only on which groups the path so far
//!   went through. The pattern is expanded into an ordered alternation, one
//!   branch per set of such groups (the rest of the pattern is copied into
//!   each), so every conditional is decided where it stands. Branches keep
//!   the backtracking engine's order, and the `regex` crate reports the
//!   first path in that order (leftmost-first), so the match and its groups
//!   are the same. Copies of a named group get the suffix [`DUP`].
//! * A lookahead `(?!X)` / `(?=X)` becomes an empty group named
//!   [`LOOK`]`K`, and `(?:(?!X).)*` becomes `(?P<LOOKK>.*)`: the pattern
//!   without the lookahead matches a superset. After a match,
//!   [`Check::holds`] tests `X` at the recorded place. When the checks hold,
//!   the first path of the relaxed pattern is also the first path of the
//!   original one; when one fails, the caller falls back to fancy-regex.
//!
//! It does not handle lookbehinds, back-references, atomic groups, inline
//! flags after the start, or lookaheads/conditional groups inside a repeat:
//! those patterns stay on fancy-regex. It owns no matching; `pyre.rs` does.

/// Suffix (plus a number) of the copies of a named group.
pub(crate) const DUP: &str = "__shdup";
/// Name prefix (plus the check index) of the groups that record where a
/// lookahead stood.
pub(crate) const LOOK: &str = "__shlook";

/// Largest rewritten pattern accepted (the expansion copies the tail of the
/// pattern once per set of groups).
const MAX_LEN: usize = 32 * 1024;

#[derive(Debug, Clone)]
enum Node {
    /// One atom as written: a literal, an escape, a class, `.`, `^`, `$`.
    Text(String),
    Group {
        open: Open,
        alts: Vec<Vec<Node>>,
    },
    /// `(?(<name>)yes|no)`
    Cond {
        name: String,
        yes: Vec<Node>,
        no: Vec<Node>,
    },
    /// A lookahead (lookbehinds and the rest make the parse fail).
    Look {
        negative: bool,
        alts: Vec<Vec<Node>>,
    },
    Repeat {
        inner: Box<Node>,
        quant: String,
    },
}

#[derive(Debug, Clone)]
enum Open {
    /// `(?:` or `(?flags:`, as written.
    NonCap(String),
    Named(String),
    Unnamed,
}

struct Parser<'a> {
    c: &'a [char],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self, s: &str) -> bool {
        s.chars()
            .enumerate()
            .all(|(k, ch)| self.c.get(self.i + k) == Some(&ch))
    }

    fn alts(&mut self) -> Option<Vec<Vec<Node>>> {
        let mut alts = vec![Vec::new()];
        while self.i < self.c.len() {
            match self.c[self.i] {
                ')' => return Some(alts),
                '|' => {
                    self.i += 1;
                    alts.push(Vec::new());
                }
                _ => {
                    let atom = self.atom()?;
                    let node = self.quantified(atom)?;
                    alts.last_mut()?.push(node);
                }
            }
        }
        Some(alts)
    }

    fn close(&mut self) -> Option<()> {
        if self.c.get(self.i) == Some(&')') {
            self.i += 1;
            Some(())
        } else {
            None
        }
    }

    fn name_until(&mut self, end: char) -> Option<String> {
        let start = self.i;
        while self.i < self.c.len() && self.c[self.i] != end {
            self.i += 1;
        }
        let name: String = self.c.get(start..self.i)?.iter().collect();
        self.i += 1;
        (!name.is_empty()).then_some(name)
    }

    fn atom(&mut self) -> Option<Node> {
        let c = self.c[self.i];
        match c {
            '\\' => {
                let e = *self.c.get(self.i + 1)?;
                if e.is_ascii_digit() {
                    return None; // a back-reference
                }
                self.i += 2;
                Some(Node::Text(format!("\\{e}")))
            }
            '[' => {
                let start = self.i;
                self.i += 1;
                if self.c.get(self.i) == Some(&'^') {
                    self.i += 1;
                }
                if self.c.get(self.i) == Some(&']') {
                    self.i += 1;
                }
                while self.i < self.c.len() && self.c[self.i] != ']' {
                    if self.c[self.i] == '\\' {
                        self.i += 1;
                    } else if self.c[self.i] == '[' {
                        return None; // nested classes: not produced by pyre
                    }
                    self.i += 1;
                }
                self.i += 1;
                Some(Node::Text(self.c.get(start..self.i)?.iter().collect()))
            }
            '(' => self.group(),
            '*' | '+' | '?' => None,
            _ => {
                self.i += 1;
                Some(Node::Text(c.to_string()))
            }
        }
    }

    fn group(&mut self) -> Option<Node> {
        if self.peek("(?P<") || (self.peek("(?<") && !self.peek("(?<=") && !self.peek("(?<!")) {
            self.i += if self.peek("(?P<") { 4 } else { 3 };
            let name = self.name_until('>')?;
            let alts = self.alts()?;
            self.close()?;
            return Some(Node::Group {
                open: Open::Named(name),
                alts,
            });
        }
        if self.peek("(?=") || self.peek("(?!") {
            let negative = self.c[self.i + 2] == '!';
            self.i += 3;
            let alts = self.alts()?;
            self.close()?;
            return Some(Node::Look { negative, alts });
        }
        if self.peek("(?(<") {
            self.i += 4;
            let name = self.name_until('>')?;
            self.close()?;
            let mut alts = self.alts()?;
            self.close()?;
            if alts.len() > 2 {
                return None;
            }
            let no = if alts.len() == 2 {
                alts.pop()?
            } else {
                Vec::new()
            };
            let yes = alts.pop()?;
            return Some(Node::Cond { name, yes, no });
        }
        if self.peek("(?") {
            // `(?:` or `(?flags:`; bare flags, lookbehinds, atomic groups,
            // back-references and other conditionals are not handled.
            let mut j = self.i + 2;
            while j < self.c.len() && (self.c[j].is_ascii_alphabetic() || self.c[j] == '-') {
                j += 1;
            }
            if self.c.get(j) != Some(&':') {
                return None;
            }
            let open: String = self.c[self.i..=j].iter().collect();
            self.i = j + 1;
            let alts = self.alts()?;
            self.close()?;
            return Some(Node::Group {
                open: Open::NonCap(open),
                alts,
            });
        }
        self.i += 1;
        let alts = self.alts()?;
        self.close()?;
        Some(Node::Group {
            open: Open::Unnamed,
            alts,
        })
    }

    fn quantified(&mut self, atom: Node) -> Option<Node> {
        let mut node = atom;
        loop {
            let start = self.i;
            match self.c.get(self.i) {
                Some('*' | '+' | '?') => self.i += 1,
                Some('{') => {
                    let mut j = self.i + 1;
                    while j < self.c.len() && (self.c[j].is_ascii_digit() || self.c[j] == ',') {
                        j += 1;
                    }
                    if j == self.i + 1 || self.c.get(j) != Some(&'}') {
                        return Some(node); // a literal brace (pyre escapes those)
                    }
                    self.i = j + 1;
                }
                _ => return Some(node),
            }
            match self.c.get(self.i) {
                Some('?') => self.i += 1,
                Some('+') => return None, // possessive
                _ => {}
            }
            let quant: String = self.c[start..self.i].iter().collect();
            node = Node::Repeat {
                inner: Box::new(node),
                quant,
            };
        }
    }
}

fn parse(p: &str) -> Option<Vec<Vec<Node>>> {
    let chars: Vec<char> = p.chars().collect();
    let mut ps = Parser { c: &chars, i: 0 };
    let alts = ps.alts()?;
    (ps.i == chars.len()).then_some(alts)
}

fn render(n: &Node, out: &mut String) {
    match n {
        Node::Text(t) => out.push_str(t),
        Node::Group { open, alts } => {
            match open {
                Open::NonCap(o) => out.push_str(o),
                Open::Named(name) => {
                    out.push_str("(?P<");
                    out.push_str(name);
                    out.push('>');
                }
                Open::Unnamed => out.push('('),
            }
            render_alts(alts, out);
            out.push(')');
        }
        Node::Cond { name, yes, no } => {
            out.push_str("(?(<");
            out.push_str(name);
            out.push_str(">)");
            render_seq(yes, out);
            out.push('|');
            render_seq(no, out);
            out.push(')');
        }
        Node::Look { negative, alts } => {
            out.push_str(if *negative { "(?!" } else { "(?=" });
            render_alts(alts, out);
            out.push(')');
        }
        Node::Repeat { inner, quant } => {
            render(inner, out);
            out.push_str(quant);
        }
    }
}

fn render_seq(seq: &[Node], out: &mut String) {
    for n in seq {
        render(n, out);
    }
}

fn render_alts(alts: &[Vec<Node>], out: &mut String) {
    for (i, a) in alts.iter().enumerate() {
        if i > 0 {
            out.push('|');
        }
        render_seq(a, out);
    }
}

/// At most one iteration: a capture inside it is set at most once.
fn at_most_once(quant: &str) -> bool {
    let q = quant.trim_end_matches('?');
    q.is_empty() || q == "?" || q == "{0,1}" || q == "{1}" || q == "{1,1}" || q == "{0}"
}

// ---- pass 1: conditionals -------------------------------------------------

/// Sets of "this group has matched" bits, one bit per conditional's group.
type State = u32;

struct Expand<'a> {
    tracked: &'a [String],
}

impl Expand<'_> {
    fn bit(&self, name: &str) -> Option<State> {
        self.tracked.iter().position(|t| t == name).map(|i| 1 << i)
    }

    /// True when `n` neither sets a tracked group nor holds a conditional.
    fn pure(&self, n: &Node) -> bool {
        match n {
            Node::Text(_) => true,
            Node::Cond { .. } => false,
            Node::Group { open, alts } => {
                !matches!(open, Open::Named(name) if self.bit(name).is_some())
                    && alts.iter().flatten().all(|x| self.pure(x))
            }
            Node::Look { alts, .. } => alts.iter().flatten().all(|x| self.pure(x)),
            Node::Repeat { inner, .. } => self.pure(inner),
        }
    }

    /// The ways `n` can match from state `s`, in the backtracking engine's
    /// order, each with the state it leaves; adjacent ways with the same
    /// state are merged.
    fn node(&self, n: &Node, s: State) -> Option<Vec<(String, State)>> {
        if self.pure(n) {
            let mut t = String::new();
            render(n, &mut t);
            return Some(vec![(t, s)]);
        }
        match n {
            Node::Text(_) => None, // pure, handled above
            Node::Cond { name, yes, no } => {
                let set = self.bit(name).is_some_and(|b| s & b != 0);
                self.seq(if set { yes } else { no }, s)
            }
            Node::Group { open, alts } => {
                let mut out = Vec::new();
                for a in alts {
                    out.extend(self.seq(a, s)?);
                }
                let (pre, bit) = match open {
                    Open::NonCap(o) => (o.clone(), 0),
                    Open::Named(name) => (format!("(?P<{name}>"), self.bit(name).unwrap_or(0)),
                    Open::Unnamed => ("(".to_string(), 0),
                };
                let wrapped = out
                    .into_iter()
                    .map(|(f, st)| (format!("{pre}{f})"), st | bit))
                    .collect();
                Some(merge(wrapped))
            }
            Node::Repeat { inner, quant } => {
                // only `X?` / `X??`: the same as `(?:X|)` / `(?:|X)`
                let lazy = match quant.as_str() {
                    "?" => false,
                    "??" => true,
                    _ => return None,
                };
                let mut with = self.node(inner, s)?;
                let without = vec![(String::new(), s)];
                let out = if lazy {
                    let mut w = without;
                    w.append(&mut with);
                    w
                } else {
                    with.extend(without);
                    with
                };
                Some(merge(out))
            }
            Node::Look { .. } => None,
        }
    }

    fn seq(&self, seq: &[Node], s: State) -> Option<Vec<(String, State)>> {
        let mut cur = vec![(String::new(), s)];
        for n in seq {
            let mut next = Vec::new();
            for (f, st) in &cur {
                for (g, st2) in self.node(n, *st)? {
                    next.push((format!("{f}{g}"), st2));
                }
            }
            cur = merge(next);
            if cur.len() > 64 || cur.iter().map(|(f, _)| f.len()).sum::<usize>() > MAX_LEN {
                return None;
            }
        }
        Some(cur)
    }
}

/// Joins adjacent ways that leave the same state (order kept).
fn merge(v: Vec<(String, State)>) -> Vec<(String, State)> {
    let mut out: Vec<(Vec<String>, State)> = Vec::new();
    for (f, st) in v {
        match out.last_mut() {
            Some((fs, s)) if *s == st => fs.push(f),
            _ => out.push((vec![f], st)),
        }
    }
    out.into_iter()
        .map(|(fs, st)| {
            if fs.len() == 1 {
                (fs.into_iter().next().unwrap_or_default(), st)
            } else {
                (format!("(?:{})", fs.join("|")), st)
            }
        })
        .collect()
}

fn collect_conds(n: &Node, out: &mut Vec<String>) {
    match n {
        Node::Text(_) => {}
        Node::Cond { name, yes, no } => {
            if !out.contains(name) {
                out.push(name.clone());
            }
            yes.iter().chain(no).for_each(|x| collect_conds(x, out));
        }
        Node::Group { alts, .. } | Node::Look { alts, .. } => {
            alts.iter().flatten().for_each(|x| collect_conds(x, out))
        }
        Node::Repeat { inner, .. } => collect_conds(inner, out),
    }
}

/// The pattern with every conditional decided, or None.
fn expand_conditionals(alts: &[Vec<Node>]) -> Option<String> {
    let mut tracked = Vec::new();
    alts.iter()
        .flatten()
        .for_each(|n| collect_conds(n, &mut tracked));
    if tracked.len() > 8 {
        return None;
    }
    let ex = Expand { tracked: &tracked };
    let mut ways = Vec::new();
    for a in alts {
        ways.extend(ex.seq(a, 0)?);
    }
    let ways: Vec<String> = ways.into_iter().map(|(f, _)| f).collect();
    Some(ways.join("|"))
}

// ---- pass 2: lookaheads ---------------------------------------------------

/// A lookahead taken out of the pattern, tested after the match.
#[derive(Debug)]
pub(crate) struct Check {
    /// `X` of `(?!X)` / `(?=X)`, compiled with the flags around it.
    look: regex::Regex,
    negative: bool,
    /// True for `(?:(?!X).)*`: no `X` may start anywhere in the group's
    /// span; false: `X` is tested where the (empty) group stands.
    span: bool,
}

impl Check {
    /// Whether the lookahead holds for the recorded span `(s, e)` of `hay`.
    pub(crate) fn holds(&self, hay: &str, s: usize, e: usize) -> bool {
        // The leftmost match at or after `s` starts at `s` exactly when one
        // starts there; context before `s` is seen (for `\b`, `^`).
        let first = self.look.find_at(hay, s).map(|m| m.start());
        if self.span {
            first.is_none_or(|p| p >= e)
        } else {
            (first == Some(s)) != self.negative
        }
    }
}

struct Looks {
    checks: Vec<Check>,
}

impl Looks {
    /// Rewrites `seq` in place. `flags` are the inline-flag groups around
    /// it (outermost first); `repeated` is true inside a repeat that may
    /// run more than once.
    fn seq(&mut self, seq: &mut [Node], flags: &mut Vec<String>, repeated: bool) -> Option<()> {
        for n in seq.iter_mut() {
            self.node(n, flags, repeated)?;
        }
        Some(())
    }

    fn add(
        &mut self,
        alts: &[Vec<Node>],
        negative: bool,
        span: bool,
        flags: &[String],
    ) -> Option<String> {
        let mut x = String::new();
        render_alts(alts, &mut x);
        if x.contains("(?P<") || x.contains("(?<") || x.contains("(?(") {
            return None;
        }
        let mut pat = format!("(?:{x})");
        for f in flags.iter().rev() {
            pat = format!("{f}{pat})");
        }
        let look = regex::Regex::new(&pat).ok()?;
        let k = self.checks.len();
        self.checks.push(Check {
            look,
            negative,
            span,
        });
        Some(format!("{LOOK}{k}"))
    }

    fn node(&mut self, n: &mut Node, flags: &mut Vec<String>, repeated: bool) -> Option<()> {
        match n {
            Node::Text(_) => Some(()),
            Node::Cond { .. } => None,
            Node::Look { negative, alts } => {
                if repeated {
                    return None;
                }
                let name = self.add(alts, *negative, false, flags)?;
                *n = Node::Group {
                    open: Open::Named(name),
                    alts: vec![Vec::new()],
                };
                Some(())
            }
            Node::Group { open, alts } => {
                let pushed = match open {
                    Open::NonCap(o) if o != "(?:" => {
                        flags.push(o.clone());
                        true
                    }
                    _ => false,
                };
                let r = alts
                    .iter_mut()
                    .try_for_each(|a| self.seq(a, flags, repeated));
                if pushed {
                    flags.pop();
                }
                r
            }
            Node::Repeat { inner, quant } => {
                // `(?:(?!X).)*` and its lazy / `+` forms
                if let Node::Group {
                    open: Open::NonCap(o),
                    alts,
                } = inner.as_ref()
                    && o == "(?:"
                    && alts.len() == 1
                    && alts[0].len() == 2
                    && let Node::Look {
                        negative: true,
                        alts: look,
                    } = &alts[0][0]
                    && let Node::Text(one) = &alts[0][1]
                    && one_char(one)
                    && matches!(quant.as_str(), "*" | "*?" | "+" | "+?")
                    && !repeated
                {
                    let name = self.add(look, true, true, flags)?;
                    let body = Node::Repeat {
                        inner: Box::new(Node::Text(one.clone())),
                        quant: quant.clone(),
                    };
                    *n = Node::Group {
                        open: Open::Named(name),
                        alts: vec![vec![body]],
                    };
                    return Some(());
                }
                let rep = repeated || !at_most_once(quant);
                self.node(inner, flags, rep)
            }
        }
    }
}

/// An atom that always consumes exactly one character.
fn one_char(t: &str) -> bool {
    t == "."
        || (t.starts_with('[') && t.ends_with(']'))
        || matches!(t, r"\S" | r"\s" | r"\w" | r"\W" | r"\d" | r"\D")
}

/// Names each copy of a named group after the first `name__shdupN`.
fn rename_duplicates(p: &str) -> String {
    let mut seen: Vec<(String, usize)> = Vec::new();
    let mut out = String::with_capacity(p.len() + 64);
    let mut rest = p;
    let mut in_class = false;
    while let Some(c) = rest.chars().next() {
        if c == '\\' {
            let mut it = rest.char_indices();
            it.next();
            let end = it.nth(1).map(|(i, _)| i).unwrap_or(rest.len());
            out.push_str(&rest[..end]);
            rest = &rest[end..];
            continue;
        }
        if in_class {
            in_class = c != ']';
        } else if c == '[' {
            in_class = true;
            // a leading `]` or `^]` is a literal
            let skip = if rest.starts_with("[^]") {
                3
            } else if rest.starts_with("[]") {
                2
            } else {
                1
            };
            out.push_str(&rest[..skip]);
            rest = &rest[skip..];
            continue;
        } else if let Some(r) = rest.strip_prefix("(?P<")
            && let Some(gt) = r.find('>')
        {
            let name = &r[..gt];
            out.push_str("(?P<");
            out.push_str(name);
            match seen.iter_mut().find(|(n, _)| n == name) {
                Some((_, k)) => {
                    *k += 1;
                    out.push_str(&format!("{DUP}{k}"));
                }
                None => seen.push((name.to_string(), 0)),
            }
            out.push('>');
            rest = &r[gt + 1..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// fail2ban's name for a group of a rewritten pattern: copies map back to
/// the original, check groups to None.
pub(crate) fn original_name(n: &str) -> Option<&str> {
    if n.starts_with(LOOK) {
        return None;
    }
    Some(match n.find(DUP) {
        Some(i) => &n[..i],
        None => n,
    })
}

/// The check index of a group name made by this module.
pub(crate) fn check_index(n: &str) -> Option<usize> {
    let k = n.strip_prefix(LOOK)?;
    let k = k.find(DUP).map(|i| &k[..i]).unwrap_or(k);
    k.parse().ok()
}

/// A pattern for the linear engine and the checks to run after a match.
#[derive(Debug)]
pub(crate) struct Rewritten {
    pub(crate) pattern: String,
    pub(crate) checks: Vec<Check>,
    /// The top-level alternatives of `pattern` when there are several and
    /// each starts with `^`: all matches then start at 0, so the first
    /// alternative that matches is the pattern's match, and each can run
    /// alone on a much smaller automaton.
    pub(crate) ways: Vec<String>,
}

/// Rewrites a translated fancy pattern, or None when it cannot.
pub(crate) fn rewrite(p: &str) -> Option<Rewritten> {
    // Inline flags at the very start apply to the whole pattern; keep them
    // out of the parse.
    let (lead, body) = leading_flags(p);
    let alts = parse(body)?;
    let expanded = expand_conditionals(&alts)?;
    let mut alts = parse(&expanded)?;
    let mut looks = Looks { checks: Vec::new() };
    let mut flags = Vec::new();
    if !lead.is_empty() {
        flags.push(format!("{}:", lead.trim_end_matches(')')));
    }
    for a in alts.iter_mut() {
        looks.seq(a, &mut flags, false)?;
    }
    let mut out = String::from(lead);
    render_alts(&alts, &mut out);
    let pattern = rename_duplicates(&out);
    if pattern.len() > MAX_LEN {
        return None;
    }
    let mut ways = split_top(&pattern);
    if ways.len() < 2 || !lead.is_empty() || !ways.iter().all(|w| w.starts_with('^')) {
        ways.clear();
    }
    Some(Rewritten {
        pattern,
        checks: looks.checks,
        ways,
    })
}

/// The top-level alternatives of `p`.
fn split_top(p: &str) -> Vec<String> {
    let b = p.as_bytes();
    let (mut depth, mut in_class, mut start) = (0usize, false, 0);
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b']' if in_class => in_class = false,
            _ if in_class => {}
            b'[' => {
                in_class = true;
                if b.get(i + 1) == Some(&b'^') {
                    i += 1;
                }
                if b.get(i + 1) == Some(&b']') {
                    i += 1;
                }
            }
            b'(' => depth += 1,
            b')' => depth = depth.saturating_sub(1),
            b'|' if depth == 0 => {
                out.push(p[start..i].to_string());
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(p[start..].to_string());
    out
}

/// A pattern without its trailing `.*$` / `.+$`, for single-line haystacks.
#[derive(Debug)]
pub(crate) struct Trimmed {
    pub(crate) pattern: String,
    /// The capture groups around the removed tail: they end where the
    /// haystack's text ends (before its final `\n`).
    pub(crate) groups: Vec<usize>,
    /// The tail was `.+` (the trimmed pattern ends with one `[^\n]`).
    pub(crate) plus: bool,
    /// For `^(?P<g>M)E` + tail with no other groups: `(?:E)\z`. The tail
    /// starts where the match ends (minus the `[^\n]`), and when `E` only
    /// matches empty there, `g` spans from 0 to that point: no group
    /// search is needed.
    pub(crate) head_split: Option<String>,
}

/// When `p` (without `(?s)`) ends with `.*` / `.+` (lazy or not, maybe in
/// groups) followed by `$` (`(?:\n?\z)`): the same pattern with the tail
/// left empty (`.+` keeps a one-character `[^\n]` test after the groups).
/// On a haystack whose only `\n` is the last byte, such a tail matches from
/// every place (`.+`: every place but the end), so the original's first
/// path is the trimmed pattern's first path followed by the tail: the
/// match ends at the haystack's end and the tail groups at its text's end.
pub(crate) fn trim_tail(p: &str) -> Option<Trimmed> {
    if p.contains("(?s") || !p.ends_with(r"(?:\n?\z)") {
        return None;
    }
    let (lead, body) = leading_flags(p);
    if lead.contains('s') {
        return None;
    }
    let mut alts = parse(body)?;
    let [seq] = alts.as_mut_slice() else {
        return None;
    };
    let dollar = seq.pop()?;
    let mut d = String::new();
    render(&dollar, &mut d);
    if d != r"(?:\n?\z)" {
        return None;
    }
    let mut tail = seq.pop()?;
    let mut groups = Vec::new();
    let mut next = 1 + seq.iter().map(count_groups).sum::<usize>();
    // unwrap single-child groups down to the repeat
    let mut opens = Vec::new();
    loop {
        match tail {
            Node::Group { open, mut alts } if alts.len() == 1 && alts[0].len() == 1 => {
                if !matches!(open, Open::NonCap(ref o) if o != "(?:") {
                    if !matches!(open, Open::NonCap(_)) {
                        groups.push(next);
                        next += 1;
                    }
                    opens.push(open);
                    tail = alts[0].pop()?;
                    continue;
                }
                return None; // flags around the tail
            }
            _ => break,
        }
    }
    let Node::Repeat { inner, quant } = &tail else {
        return None;
    };
    if !matches!(inner.as_ref(), Node::Text(t) if t == ".") {
        return None;
    }
    let plus = match quant.as_str() {
        "*" | "*?" => false,
        "+" | "+?" => true,
        _ => return None,
    };
    let mut out = String::from(lead);
    render_seq(seq, &mut out);
    for o in &opens {
        match o {
            Open::NonCap(o) => out.push_str(o),
            Open::Named(n) => {
                out.push_str("(?P<");
                out.push_str(n);
                out.push('>');
            }
            Open::Unnamed => out.push('('),
        }
    }
    for _ in &opens {
        out.push(')');
    }
    if plus {
        out.push_str(r"[^\n]");
    }
    let head_split = head_split(seq, &groups);
    Some(Trimmed {
        pattern: out,
        groups,
        plus,
        head_split,
    })
}

/// `^A L B` cut at a literal `L` of the top-level sequence: when `L`
/// occurs once in the match, `A` ends where it starts (see `pyre::Split`).
/// With `first`, nothing `A` matches holds `L`'s first character, so `L`
/// starts at that character's first occurrence, however often `L` occurs.
#[derive(Debug)]
pub(crate) struct LitSplit {
    /// `^(?:A)\z`, run on the text before `L` (with the pattern's flags).
    pub(crate) head: String,
    pub(crate) lit: String,
    /// `^L B` (with the pattern's flags), run from where `L` starts.
    pub(crate) rest: String,
    pub(crate) first: bool,
}

/// The ASCII character a top-level atom matches literally, if it is one.
fn literal_char(n: &Node) -> Option<char> {
    let Node::Text(t) = n else { return None };
    let mut cs = t.chars();
    let c = match (cs.next()?, cs.next(), cs.next()) {
        ('\\', Some(e), None) if e.is_ascii_punctuation() => e,
        (c, None, _) if c.is_ascii() && !c.is_ascii_control() && !".^$|()[]{}*+?\\".contains(c) => {
            c
        }
        _ => return None,
    };
    Some(c)
}

/// True when `n` has an assertion (`^ $ \b \B \A \z`, a lookaround), which
/// could see past the end of the text it is run on.
fn has_look(n: &Node) -> bool {
    match n {
        Node::Text(t) => {
            matches!(
                t.as_str(),
                "^" | "$" | "\\b" | "\\B" | "\\A" | "\\z" | "\\Z" | "\\<" | "\\>"
            )
        }
        Node::Group { alts, .. } => alts.iter().flatten().any(has_look),
        Node::Cond { .. } | Node::Look { .. } => true,
        Node::Repeat { inner, .. } => has_look(inner),
    }
}

/// True when `n` ends with a greedy unbounded repeat of `.` or of a negated
/// class that can match `c`: the backtracking engine then runs to the end
/// of the line and comes back one character at a time, trying what follows
/// at each. (A cost estimate only: any split gives the same groups.)
fn ends_greedy_wide(n: &Node, c: char) -> bool {
    match n {
        Node::Group { alts, .. } => alts
            .iter()
            .any(|a| a.last().is_some_and(|l| ends_greedy_wide(l, c))),
        Node::Repeat { inner, quant } => {
            let greedy =
                quant == "*" || quant == "+" || (quant.ends_with(",}") && quant.starts_with('{'));
            let wide = match inner.as_ref() {
                Node::Text(t) if t == "." => c != '\n',
                Node::Text(t) => {
                    t.starts_with("[^")
                        && !t[2..].contains(c)
                        && !(c.is_whitespace() && t.contains("\\s"))
                }
                _ => false,
            };
            greedy && wide
        }
        _ => false,
    }
}

/// See [`LitSplit`]: `p` (no flags) is `^` and one sequence; `A` has no
/// assertions and ends with a greedy repeat that can run over `L`; the
/// longest such top-level literal run (the last of equals) of at least 3
/// characters.
///
/// Failing that, the first top-level literal run (any length) whose first
/// character nothing before it can match: `^[^\[]*\[...`, a date template's
/// head, is cut at the first `[` (`LitSplit::first`).
///
/// A leading flags group is kept on both halves; only `i`, `u` and `s` are
/// accepted, and with `i` only a literal without letters (it is found by
/// exact byte search).
pub(crate) fn lit_split(p: &str) -> Option<LitSplit> {
    let (flags, body) = match p.strip_prefix("(?") {
        Some(r)
            if r.find(')')
                .is_some_and(|e| r[..e].bytes().all(|b| b.is_ascii_alphabetic())) =>
        {
            let e = r.find(')')?;
            if !r[..e].bytes().all(|b| matches!(b, b'i' | b'u' | b's')) {
                return None;
            }
            (&p[..e + 3], &r[e + 1..])
        }
        _ => ("", p),
    };
    let fold = flags.contains('i');
    let alts = parse(body)?;
    let [seq] = alts.as_slice() else { return None };
    if !matches!(seq.first(), Some(Node::Text(t)) if t == "^") {
        return None;
    }
    let mut best: Option<(usize, usize)> = None; // (start, len)
    let mut first_run: Option<(usize, usize)> = None;
    let mut i = 1;
    let mut seen_other = false;
    while i < seq.len() {
        if has_look(&seq[i]) {
            break; // `A` would hold it
        }
        if literal_char(&seq[i]).is_none() {
            seen_other = true;
            i += 1;
            continue;
        }
        let start = i;
        while i < seq.len() && literal_char(&seq[i]).is_some() {
            i += 1;
        }
        let len = i - start;
        let first = literal_char(&seq[start]).unwrap_or('\n');
        let folds = fold
            && seq[start..i]
                .iter()
                .filter_map(literal_char)
                .any(|c| c.is_ascii_alphabetic());
        if seen_other
            && !folds
            && len >= 3
            && ends_greedy_wide(&seq[start - 1], first)
            && best.is_none_or(|(_, l)| len >= l)
        {
            best = Some((start, len));
        }
        if seen_other
            && !folds
            && first_run.is_none()
            && seq[1..start].iter().all(|n| excludes(n, first))
        {
            first_run = Some((start, len));
        }
        seen_other = true;
    }
    let ((start, len), first) = match (best, first_run) {
        (Some(b), _) => (b, false),
        (None, Some(f)) => (f, true),
        (None, None) => return None,
    };
    let lit: String = seq[start..start + len]
        .iter()
        .filter_map(literal_char)
        .collect();
    let mut head = format!("{flags}^(?:");
    render_seq(&seq[1..start], &mut head);
    head.push_str(")\\z");
    let mut rest = format!("{flags}^");
    render_seq(&seq[start..], &mut rest);
    Some(LitSplit {
        head,
        lit,
        rest,
        first,
    })
}

/// Whether nothing node `n` matches holds the ASCII character `c` (not a
/// letter when the pattern folds case): a literal other than `c`, a
/// negated class that names `c`, `\d` for a non-digit, groups and repeats
/// of those. Anything else (or any doubt) is false.
fn excludes(n: &Node, c: char) -> bool {
    match n {
        Node::Text(t) => {
            if let Some(x) = literal_char(n) {
                return x != c && !(x.is_ascii_alphabetic() && x.eq_ignore_ascii_case(&c));
            }
            if t == "\\d" {
                return !c.is_ascii_digit();
            }
            negated_class_names(t, c)
        }
        Node::Group {
            open: Open::Named(_) | Open::Unnamed,
            alts,
        } => alts.iter().flatten().all(|x| excludes(x, c)),
        Node::Group {
            open: Open::NonCap(o),
            alts,
        } if o == "(?:" => alts.iter().flatten().all(|x| excludes(x, c)),
        Node::Repeat { inner, .. } => excludes(inner, c),
        _ => false,
    }
}

/// Whether `t` is a negated class `[^...]` that lists `c` itself (escaped
/// or not). Classes holding nested classes or set operations are doubted.
fn negated_class_names(t: &str, c: char) -> bool {
    let Some(inner) = t.strip_prefix("[^").and_then(|x| x.strip_suffix(']')) else {
        return false;
    };
    if inner.contains("&&") || inner.contains("--") || inner.contains("~~") {
        return false;
    }
    let mut named = false;
    let mut cs = inner.chars();
    while let Some(x) = cs.next() {
        match x {
            '\\' => match cs.next() {
                Some(e) if e.is_ascii_punctuation() => named |= e == c,
                Some('s' | 'S' | 'd' | 'D' | 'w' | 'W') => {}
                _ => return false,
            },
            '[' | ']' => return false,
            x => named |= x == c,
        }
    }
    named
}

/// See [`Trimmed::head_split`]: `seq` is the pattern before the tail.
fn head_split(seq: &[Node], tail_groups: &[usize]) -> Option<String> {
    let [
        Node::Text(caret),
        Node::Group {
            open: Open::Named(_),
            alts,
        },
        rest @ ..,
    ] = seq
    else {
        return None;
    };
    if caret != "^"
        || tail_groups != [2]
        || alts.iter().flatten().map(count_groups).sum::<usize>() != 0
        || rest.iter().map(count_groups).sum::<usize>() != 0
    {
        return None;
    }
    let mut e = String::new();
    render_seq(rest, &mut e);
    // the test runs on the text cut at the tail: nothing in E may look
    // right of it or be a lookaround
    if ["\\b", "\\B", "$", "\\z", "\\A", "^", "(?=", "(?!", "(?<"]
        .iter()
        .any(|x| e.contains(x))
    {
        return None;
    }
    Some(format!("(?:{e})\\z"))
}

fn count_groups(n: &Node) -> usize {
    match n {
        Node::Text(_) => 0,
        Node::Group { open, alts } => {
            usize::from(!matches!(open, Open::NonCap(_)))
                + alts.iter().flatten().map(count_groups).sum::<usize>()
        }
        Node::Cond { yes, no, .. } => yes.iter().chain(no).map(count_groups).sum(),
        Node::Look { alts, .. } => alts.iter().flatten().map(count_groups).sum(),
        Node::Repeat { inner, .. } => count_groups(inner),
    }
}

/// Splits `(?i)` / `(?ms)` at the start of `p` from the rest.
fn leading_flags(p: &str) -> (&str, &str) {
    if let Some(r) = p.strip_prefix("(?") {
        let n = r
            .bytes()
            .take_while(|b| b.is_ascii_alphabetic() || *b == b'-')
            .count();
        if n > 0 && r.as_bytes().get(n) == Some(&b')') {
            return p.split_at(2 + n + 1);
        }
    }
    ("", p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(p: &str) -> String {
        rewrite(p).map(|r| r.pattern).unwrap_or_default()
    }

    #[test]
    fn conditional_becomes_alternation() {
        assert_eq!(rw(r"^(?P<a>x)?y(?(<a>)1|2)$"), r"^(?P<a>x)y1$|^y2$");
        // the group copies are renamed; the conditional on b is decided per way
        assert_eq!(
            rw(r"(?P<a>x)?(?P<b>y|z)(?(<a>)1|2)"),
            r"(?P<a>x)(?P<b>y|z)1|(?P<b__shdup1>y|z)2"
        );
    }

    #[test]
    fn lookaheads_become_checks() {
        let r = rewrite(r"^a (?P<u>(?:(?! from ).)*?) from b(?!c)").unwrap();
        assert_eq!(
            r.pattern,
            r"^a (?P<u>(?P<__shlook0>.*?)) from b(?P<__shlook1>)"
        );
        assert_eq!(r.checks.len(), 2);
        let hay = "a x from from b";
        // `x from` may not be the user: ` from ` starts inside it
        assert!(!r.checks[0].holds(hay, 2, 8));
        assert!(r.checks[0].holds(hay, 2, 3));
        assert!(r.checks[1].holds("bd", 1, 1) && !r.checks[1].holds("bc", 1, 1));
    }

    #[test]
    fn anchored_ways_split() {
        let r = rewrite(r"^(?P<a>x)?y(?(<a>)[|]|\|)$").unwrap();
        assert_eq!(r.ways, [r"^(?P<a>x)y[|]$", r"^y\|$"]);
        assert!(rewrite(r"(?P<a>x)?y(?(<a>)1|2)").unwrap().ways.is_empty());
    }

    #[test]
    fn tails_trim() {
        let t = trim_tail(r"^(a)(?P<b>x|y)? (?P<content>.+)(?:\n?\z)").unwrap();
        assert_eq!(t.pattern, r"^(a)(?P<b>x|y)? (?P<content>)[^\n]");
        assert_eq!(t.groups, [3]);
        let t = trim_tail(r"^(?P<m>\S+ )(?:error: )?(?P<content>.+)(?:\n?\z)").unwrap();
        assert_eq!(t.head_split.as_deref(), Some(r"(?:(?:error: )?)\z"));
        assert!(
            trim_tail(r"^(a)(?P<content>.+)(?:\n?\z)")
                .unwrap()
                .head_split
                .is_none()
        );
        let t = trim_tail(r"^a(?:(?P<l>.*))(?:\n?\z)").unwrap();
        assert_eq!((t.pattern.as_str(), t.groups), (r"^a(?:(?P<l>))", vec![1]));
        assert!(trim_tail(r"^a.*(?:\n?\z)|b").is_none());
        assert!(trim_tail(r"(?s)^a.*(?:\n?\z)").is_none());
        assert!(trim_tail(r"^a\S*(?:\n?\z)").is_none());
    }

    #[test]
    fn unsupported_forms_stay_fancy() {
        for p in [
            r"(?<=a)b",
            r"(?P<a>x)(?P=a)",
            r"(x)\1",
            r"(?:a(?!b))*",
            r"(?:(?P<a>x)|y)*(?(<a>)1|2)",
            r"a(?i)b",
        ] {
            assert!(rewrite(p).is_none(), "{p}");
        }
    }
}
