//! Lexer and Pratt parser: expression text → syntax tree ([`Ast`]), with byte offsets for
//! errors. Follows expr's grammar (operator precedences from expr's `parser/operator`):
//! `|` 0, `or`/`||` 10, `and`/`&&` 15, comparisons/`in`/`matches`/`contains`/`startsWith`/
//! `endsWith` 20, `..` 25, `+ -` 30, `* / %` 60, unary `not`/`!` 50, unary `- +` 90,
//! `** ^` 100 (right), `??` 500; `?:` below everything; `let x = e; body`.
//!
//! Owns: tokens, string/number literal decoding (Go escapes), the tree. Does not own: name
//! resolution or evaluation (`compile`, `eval`).

use crate::error::{CompileError, CompileErrorKind};

/// A syntax tree node with the byte offset it starts at.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Ast {
    pub(crate) pos: usize,
    pub(crate) kind: AstKind,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AstKind {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Ident(String),
    /// `#` (name ""), `#index`, `#acc`; `.field` inside a predicate is `Member(Pointer(""))`.
    Pointer(String),
    Array(Vec<Ast>),
    Map(Vec<(Ast, Ast)>),
    /// `obj.name`, `obj?.name`, `obj[expr]`, `obj?.[expr]`.
    Member {
        obj: Box<Ast>,
        prop: Box<Ast>,
        optional: bool,
    },
    Slice {
        obj: Box<Ast>,
        from: Option<Box<Ast>>,
        to: Option<Box<Ast>>,
    },
    /// `name(args)` (function or builtin).
    Call {
        name: String,
        args: Vec<Ast>,
    },
    /// `obj.name(args)`.
    Method {
        obj: Box<Ast>,
        name: String,
        args: Vec<Ast>,
        optional: bool,
    },
    Unary {
        op: &'static str,
        expr: Box<Ast>,
    },
    Binary {
        op: &'static str,
        left: Box<Ast>,
        right: Box<Ast>,
    },
    Cond {
        cond: Box<Ast>,
        then: Box<Ast>,
        other: Box<Ast>,
    },
    /// `{ body }` or a bare predicate argument of a closure builtin.
    Predicate(Box<Ast>),
    Let {
        name: String,
        value: Box<Ast>,
        body: Box<Ast>,
    },
    /// `a?.b...`: the whole chain is nil when an optional link meets nil.
    Chain(Box<Ast>),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Int(i64),
    Float(f64),
    Str(String),
    Ident(String),
    /// Operators and brackets, and the word operators (`and`, `not`, `in` ...).
    Op(&'static str),
    Eof,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    pos: usize,
}

const WORD_OPS: &[&str] = &[
    "and",
    "or",
    "not",
    "in",
    "matches",
    "contains",
    "startsWith",
    "endsWith",
    "let",
];

/// Punctuation, longest first.
const PUNCT: &[&str] = &[
    "?.", "??", "...", "..", "==", "!=", "<=", ">=", "&&", "||", "**", "::", "(", ")", "[", "]",
    "{", "}", ",", ".", ":", "?", "<", ">", "+", "-", "*", "/", "%", "^", "!", "|", "#", ";", "=",
];

fn err(source: &str, pos: usize, kind: CompileErrorKind) -> CompileError {
    let pos = pos.min(source.len());
    let before = &source[..pos];
    let line = before.matches('\n').count() as u32 + 1;
    let col_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = source[col_start..pos].chars().count() as u32 + 1;
    CompileError {
        line,
        column,
        offset: pos,
        kind,
    }
}

pub(crate) fn error_at(source: &str, pos: usize, kind: CompileErrorKind) -> CompileError {
    err(source, pos, kind)
}

fn lex(src: &str) -> Result<Vec<Token>, CompileError> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        // Comments: `// ...` to end of line, `/* ... */`.
        if c == b'/' && bytes.get(i + 1) == Some(&b'/') {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c == b'/' && bytes.get(i + 1) == Some(&b'*') {
            match src[i + 2..].find("*/") {
                Some(end) => i = i + 2 + end + 2,
                None => {
                    return Err(err(
                        src,
                        i,
                        CompileErrorKind::Literal("unclosed comment /* ... */".into()),
                    ));
                }
            }
            continue;
        }
        let start = i;
        if c.is_ascii_digit()
            || (c == b'.'
                && bytes.get(i + 1).is_some_and(|b| b.is_ascii_digit())
                && !prev_is_value(&out))
        {
            let (tok, end) = lex_number(src, i)?;
            out.push(Token { tok, pos: start });
            i = end;
            continue;
        }
        if c == b'"' || c == b'\'' {
            let (s, end) = lex_string(src, i)?;
            out.push(Token {
                tok: Tok::Str(s),
                pos: start,
            });
            i = end;
            continue;
        }
        if c == b'`' {
            match src[i + 1..].find('`') {
                Some(end) => {
                    let raw = src[i + 1..i + 1 + end].replace("\r\n", "\n");
                    out.push(Token {
                        tok: Tok::Str(raw),
                        pos: start,
                    });
                    i = i + 1 + end + 1;
                }
                None => {
                    return Err(err(
                        src,
                        i,
                        CompileErrorKind::Literal("unclosed raw string `...`".into()),
                    ));
                }
            }
            continue;
        }
        let ch = src[i..].chars().next().unwrap_or('\0');
        if ch == '_' || ch == '$' || ch.is_alphabetic() {
            let mut end = i;
            for (off, ch) in src[i..].char_indices() {
                if ch == '_' || ch == '$' || ch.is_alphanumeric() {
                    end = i + off + ch.len_utf8();
                } else {
                    break;
                }
            }
            let word = &src[i..end];
            let tok = match WORD_OPS.iter().find(|w| **w == word) {
                Some(w) => Tok::Op(w),
                None => Tok::Ident(word.to_string()),
            };
            out.push(Token { tok, pos: start });
            i = end;
            continue;
        }
        match PUNCT.iter().find(|p| src[i..].starts_with(**p)) {
            Some(p) => {
                out.push(Token {
                    tok: Tok::Op(p),
                    pos: start,
                });
                i += p.len();
            }
            None => {
                return Err(err(
                    src,
                    i,
                    CompileErrorKind::Syntax {
                        expected: "an expression".into(),
                        found: format!("{ch:?}"),
                    },
                ));
            }
        }
    }
    out.push(Token {
        tok: Tok::Eof,
        pos: src.len(),
    });
    Ok(out)
}

/// True when the previous token ends a value, so a following `.5` is member access, not a number.
fn prev_is_value(out: &[Token]) -> bool {
    matches!(
        out.last().map(|t| &t.tok),
        Some(Tok::Ident(_) | Tok::Int(_) | Tok::Float(_) | Tok::Str(_) | Tok::Op(")" | "]" | "}"))
    )
}

fn lex_number(src: &str, start: usize) -> Result<(Tok, usize), CompileError> {
    let b = src.as_bytes();
    let mut i = start;
    let lower = |i: usize| b.get(i).map(|c| c.to_ascii_lowercase());
    if b[i] == b'0' && matches!(lower(i + 1), Some(b'x' | b'o' | b'b')) {
        let radix = match lower(i + 1) {
            Some(b'x') => 16,
            Some(b'o') => 8,
            _ => 2,
        };
        i += 2;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
            i += 1;
        }
        let digits: String = src[start + 2..i].chars().filter(|c| *c != '_').collect();
        return i64::from_str_radix(&digits, radix)
            .map(|v| (Tok::Int(v), i))
            .map_err(|e| {
                err(
                    src,
                    start,
                    CompileErrorKind::Literal(format!("invalid integer {:?}: {e}", &src[start..i])),
                )
            });
    }
    let mut is_float = false;
    while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
        i += 1;
    }
    // A fraction, but not the range operator `1..3` nor a method on a number.
    if i < b.len() && b[i] == b'.' && b.get(i + 1).is_some_and(|c| c.is_ascii_digit()) {
        is_float = true;
        i += 1;
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
            i += 1;
        }
    } else if i < b.len()
        && b[i] == b'.'
        && !matches!(b.get(i + 1), Some(b'.'))
        && !b
            .get(i + 1)
            .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
    {
        // `1.` is a float in Go.
        is_float = true;
        i += 1;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            is_float = true;
            i = j;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
        }
    }
    let text: String = src[start..i].chars().filter(|c| *c != '_').collect();
    if is_float {
        text.parse::<f64>()
            .map(|v| (Tok::Float(v), i))
            .map_err(|e| {
                err(
                    src,
                    start,
                    CompileErrorKind::Literal(format!("invalid float {text:?}: {e}")),
                )
            })
    } else {
        text.parse::<i64>().map(|v| (Tok::Int(v), i)).map_err(|e| {
            err(
                src,
                start,
                CompileErrorKind::Literal(format!("invalid integer {text:?}: {e}")),
            )
        })
    }
}

/// A quoted string with Go's escapes (`\n \t \\ \' \" \xHH \uHHHH \UHHHHHHHH \ooo`).
fn lex_string(src: &str, start: usize) -> Result<(String, usize), CompileError> {
    let quote = src.as_bytes()[start] as char;
    let mut out = String::new();
    let mut chars = src[start + 1..].char_indices().peekable();
    let bad = |at: usize, msg: &str| {
        err(
            src,
            start + 1 + at,
            CompileErrorKind::Literal(msg.to_string()),
        )
    };
    while let Some((at, c)) = chars.next() {
        if c == quote {
            return Ok((out, start + 1 + at + 1));
        }
        if c == '\r' {
            // expr normalizes \r\n and \r to \n.
            if chars.peek().map(|p| p.1) == Some('\n') {
                chars.next();
            }
            out.push('\n');
            continue;
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some((_, e)) = chars.next() else {
            return Err(bad(at, "string ends with a lone backslash"));
        };
        match e {
            'a' => out.push('\x07'),
            'b' => out.push('\x08'),
            'f' => out.push('\x0c'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'v' => out.push('\x0b'),
            '\\' => out.push('\\'),
            '\'' => out.push('\''),
            '"' => out.push('"'),
            '`' => out.push('`'),
            '?' => out.push('?'),
            'x' | 'X' | 'u' | 'U' => {
                let n = match e {
                    'x' | 'X' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let mut v: u32 = 0;
                for _ in 0..n {
                    let Some((_, h)) = chars.next() else {
                        return Err(bad(at, "short hexadecimal escape"));
                    };
                    let Some(d) = h.to_digit(16) else {
                        return Err(bad(at, "invalid hexadecimal escape"));
                    };
                    v = v << 4 | d;
                }
                // expr decodes \xHH as the rune U+00HH, as it does \u00HH.
                match char::from_u32(v) {
                    Some(ch) => out.push(ch),
                    None => return Err(bad(at, "escape is not a valid Unicode code point")),
                }
            }
            '0'..='3' => {
                let mut v = e as u32 - '0' as u32;
                for _ in 0..2 {
                    match chars.next() {
                        Some((_, d @ '0'..='7')) => v = v * 8 + (d as u32 - '0' as u32),
                        _ => {
                            return Err(bad(
                                at,
                                "octal escape needs three digits \\[0-3][0-7][0-7]",
                            ));
                        }
                    }
                }
                out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
            }
            other => {
                return Err(bad(
                    at,
                    &format!("unknown escape \\{other} (write \\\\ for a backslash)"),
                ));
            }
        }
    }
    Err(err(
        src,
        start,
        CompileErrorKind::Literal(format!("unclosed string: no closing {quote}")),
    ))
}

fn binary_prec(op: &str) -> Option<(u8, bool)> {
    // (precedence, right-associative)
    Some(match op {
        "|" => (0, false),
        "or" | "||" => (10, false),
        "and" | "&&" => (15, false),
        "==" | "!=" | "<" | ">" | "<=" | ">=" | "in" | "matches" | "contains" | "startsWith"
        | "endsWith" => (20, false),
        ".." => (25, false),
        "+" | "-" => (30, false),
        "*" | "/" | "%" => (60, false),
        "**" | "^" => (100, true),
        "??" => (200, false),
        _ => return None,
    })
}

fn negatable(op: &str) -> bool {
    matches!(
        op,
        "in" | "matches" | "contains" | "startsWith" | "endsWith"
    )
}

/// Builtins whose second argument is a predicate (`{ ... }` or a bare expression using `#`).
pub(crate) fn is_predicate_builtin(name: &str) -> bool {
    matches!(
        name,
        "all"
            | "none"
            | "any"
            | "one"
            | "filter"
            | "map"
            | "count"
            | "sum"
            | "find"
            | "findIndex"
            | "findLast"
            | "findLastIndex"
            | "groupBy"
            | "sortBy"
            | "reduce"
    )
}

struct Parser<'s> {
    src: &'s str,
    toks: Vec<Token>,
    i: usize,
    /// Predicate nesting depth: `#` and `.field` are allowed only inside one.
    depth: usize,
    /// Recursion depth, bounded so that hostile input cannot overflow the stack.
    nest: usize,
}

const MAX_NEST: usize = 200;

/// Parse a whole expression.
pub(crate) fn parse(src: &str) -> Result<Ast, CompileError> {
    let toks = lex(src)?;
    let mut p = Parser {
        src,
        toks,
        i: 0,
        depth: 0,
        nest: 0,
    };
    let ast = p.expression(0)?;
    if p.peek() != &Tok::Eof {
        return Err(p.unexpected("an operator or the end of the expression"));
    }
    check_depth(src, &ast)?;
    Ok(ast)
}

/// Deepest tree the compiler and evaluator accept (they recurse once per level). A chain of
/// one logical operator (`a || b || c ...`) counts as one level: it is evaluated as a loop.
const MAX_DEPTH: u32 = 256;

fn check_depth(src: &str, ast: &Ast) -> Result<(), CompileError> {
    fn logical(op: &str) -> Option<bool> {
        match op {
            "and" | "&&" => Some(true),
            "or" | "||" => Some(false),
            _ => None,
        }
    }
    let mut stack = vec![(ast, 1u32)];
    while let Some((a, d)) = stack.pop() {
        if d > MAX_DEPTH {
            return Err(err(
                src,
                a.pos,
                CompileErrorKind::Syntax {
                    expected: format!("at most {MAX_DEPTH} levels of nesting"),
                    found: "an expression nested deeper".into(),
                },
            ));
        }
        match &a.kind {
            AstKind::Nil
            | AstKind::Bool(_)
            | AstKind::Int(_)
            | AstKind::Float(_)
            | AstKind::Str(_)
            | AstKind::Ident(_)
            | AstKind::Pointer(_) => {}
            AstKind::Array(items) => stack.extend(items.iter().map(|i| (i, d + 1))),
            AstKind::Map(pairs) => {
                for (k, v) in pairs {
                    stack.push((k, d + 1));
                    stack.push((v, d + 1));
                }
            }
            AstKind::Member { obj, prop, .. } => {
                stack.push((obj, d + 1));
                stack.push((prop, d + 1));
            }
            AstKind::Slice { obj, from, to } => {
                stack.push((obj, d + 1));
                stack.extend(from.iter().chain(to.iter()).map(|x| (&**x, d + 1)));
            }
            AstKind::Call { args, .. } => stack.extend(args.iter().map(|x| (x, d + 1))),
            AstKind::Method { obj, args, .. } => {
                stack.push((obj, d + 1));
                stack.extend(args.iter().map(|x| (x, d + 1)));
            }
            AstKind::Unary { expr, .. } => stack.push((expr, d + 1)),
            AstKind::Binary { op, left, right } => {
                let same = match (&left.kind, logical(op)) {
                    (AstKind::Binary { op: lop, .. }, Some(kind)) => logical(lop) == Some(kind),
                    _ => false,
                };
                stack.push((left, if same { d } else { d + 1 }));
                stack.push((right, d + 1));
            }
            AstKind::Cond { cond, then, other } => {
                stack.push((cond, d + 1));
                stack.push((then, d + 1));
                stack.push((other, d + 1));
            }
            AstKind::Predicate(b) | AstKind::Chain(b) => stack.push((b, d + 1)),
            AstKind::Let { value, body, .. } => {
                stack.push((value, d + 1));
                stack.push((body, d + 1));
            }
        }
    }
    Ok(())
}

impl<'s> Parser<'s> {
    fn peek(&self) -> &Tok {
        &self.toks[self.i].tok
    }

    fn pos(&self) -> usize {
        self.toks[self.i].pos
    }

    fn bump(&mut self) -> Token {
        let t = self.toks[self.i].clone();
        if self.i + 1 < self.toks.len() {
            self.i += 1;
        }
        t
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek(), Tok::Op(o) if *o == op)
    }

    fn describe(tok: &Tok) -> String {
        match tok {
            Tok::Int(i) => format!("number {i}"),
            Tok::Float(f) => format!("number {f}"),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Ident(s) => format!("name {s:?}"),
            Tok::Op(o) => format!("{o:?}"),
            Tok::Eof => "end of expression".into(),
        }
    }

    fn unexpected(&self, expected: &str) -> CompileError {
        err(
            self.src,
            self.pos(),
            CompileErrorKind::Syntax {
                expected: expected.to_string(),
                found: Self::describe(self.peek()),
            },
        )
    }

    fn expect(&mut self, op: &str) -> Result<(), CompileError> {
        if self.is_op(op) {
            self.bump();
            Ok(())
        } else {
            Err(self.unexpected(&format!("{op:?}")))
        }
    }

    fn enter(&mut self) -> Result<(), CompileError> {
        self.nest += 1;
        if self.nest > MAX_NEST {
            return Err(err(
                self.src,
                self.pos(),
                CompileErrorKind::Syntax {
                    expected: "less nesting".into(),
                    found: "an expression nested too deeply".into(),
                },
            ));
        }
        Ok(())
    }

    fn expression(&mut self, prec: u8) -> Result<Ast, CompileError> {
        self.enter()?;
        let r = self.expression_inner(prec);
        self.nest -= 1;
        r
    }

    fn expression_inner(&mut self, prec: u8) -> Result<Ast, CompileError> {
        if prec == 0 && self.is_op("let") {
            return self.let_decl();
        }
        if prec == 0 && matches!(self.peek(), Tok::Ident(w) if w == "if") {
            return self.if_else();
        }
        let mut left = self.primary()?;
        let mut prev_coalesce = false;
        while let Tok::Op(op) = *self.peek() {
            let op_pos = self.pos();
            let mut negate = false;
            let mut op = op;
            if op == "not" {
                // `not in`, `not contains`, ...
                let next = self.toks.get(self.i + 1).map(|t| &t.tok);
                match next {
                    Some(Tok::Op(o)) if negatable(o) => {
                        if binary_prec(o).is_some_and(|(p, _)| p >= prec) {
                            negate = true;
                            op = o;
                        } else {
                            break;
                        }
                    }
                    _ => return Err(self.unexpected("an operator (\"not\" here must be followed by in, contains, matches, startsWith or endsWith)")),
                }
            }
            let Some((p, right_assoc)) = binary_prec(op) else {
                break;
            };
            if p < prec {
                break;
            }
            if negate {
                self.bump();
            }
            self.bump();
            if op == "|" {
                // Pipe: `x | f(a)` is `f(x, a)`.
                let save = self.i;
                let t = self.bump();
                let Tok::Ident(name) = t.tok else {
                    self.i = save;
                    return Err(self.unexpected("a function name after |"));
                };
                left = self.call(name, t.pos, vec![left])?;
                left = self.postfix(left)?;
                continue;
            }
            if prev_coalesce && op != "??" {
                return Err(err(
                    self.src,
                    op_pos,
                    CompileErrorKind::Syntax {
                        expected: "parentheses around the ?? expression".into(),
                        found: format!("{op:?} mixed with ??"),
                    },
                ));
            }
            let right = self.expression(if right_assoc { p } else { p + 1 })?;
            left = Ast {
                pos: op_pos,
                kind: AstKind::Binary {
                    op,
                    left: Box::new(left),
                    right: Box::new(right),
                },
            };
            if negate {
                left = Ast {
                    pos: op_pos,
                    kind: AstKind::Unary {
                        op: "not",
                        expr: Box::new(left),
                    },
                };
            }
            prev_coalesce = op == "??";
        }
        if prec == 0 {
            left = self.conditional(left)?;
        }
        Ok(left)
    }

    fn let_decl(&mut self) -> Result<Ast, CompileError> {
        let pos = self.pos();
        self.expect("let")?;
        let save = self.i;
        let name = match self.bump().tok {
            Tok::Ident(n) => n,
            _ => {
                self.i = save;
                return Err(self.unexpected("a variable name after let"));
            }
        };
        self.expect("=")?;
        let value = self.expression(0)?;
        self.expect(";")?;
        let body = self.expression(0)?;
        Ok(Ast {
            pos,
            kind: AstKind::Let {
                name,
                value: Box::new(value),
                body: Box::new(body),
            },
        })
    }

    /// `if cond { a } else { b }` (and `else if ...`), expr's statement form of `?:`.
    fn if_else(&mut self) -> Result<Ast, CompileError> {
        let pos = self.pos();
        self.bump();
        let cond = self.expression(0)?;
        self.expect("{")?;
        let then = self.expression(0)?;
        self.expect("}")?;
        if !matches!(self.peek(), Tok::Ident(w) if w == "else") {
            return Err(self.unexpected("else"));
        }
        self.bump();
        let other = if matches!(self.peek(), Tok::Ident(w) if w == "if") {
            self.if_else()?
        } else {
            self.expect("{")?;
            let e = self.expression(0)?;
            self.expect("}")?;
            e
        };
        Ok(Ast {
            pos,
            kind: AstKind::Cond {
                cond: Box::new(cond),
                then: Box::new(then),
                other: Box::new(other),
            },
        })
    }

    fn conditional(&mut self, mut node: Ast) -> Result<Ast, CompileError> {
        while self.is_op("?") {
            let pos = self.pos();
            self.bump();
            let (then, other) = if self.is_op(":") {
                // `a ?: b` is `a ? a : b`.
                self.bump();
                (node.clone(), self.expression(0)?)
            } else {
                let t = self.expression(0)?;
                self.expect(":")?;
                (t, self.expression(0)?)
            };
            node = Ast {
                pos,
                kind: AstKind::Cond {
                    cond: Box::new(node),
                    then: Box::new(then),
                    other: Box::new(other),
                },
            };
        }
        Ok(node)
    }

    fn primary(&mut self) -> Result<Ast, CompileError> {
        let pos = self.pos();
        if let Tok::Op(op) = *self.peek() {
            let unary = match op {
                "not" | "!" => Some(50),
                "-" | "+" => Some(90),
                _ => None,
            };
            if let Some(p) = unary {
                self.bump();
                let expr = self.expression(p)?;
                let op = if op == "!" { "not" } else { op };
                let node = Ast {
                    pos,
                    kind: AstKind::Unary {
                        op,
                        expr: Box::new(expr),
                    },
                };
                return self.postfix(node);
            }
            if op == "(" {
                self.bump();
                let e = self.expression(0)?;
                self.expect(")")?;
                return self.postfix(e);
            }
            if op == "#" || op == "." {
                if self.depth == 0 {
                    return Err(err(
                        self.src,
                        pos,
                        CompileErrorKind::OutsidePredicate(op.to_string()),
                    ));
                }
                let mut name = String::new();
                if op == "#" {
                    self.bump();
                    if let Tok::Ident(n) = self.peek() {
                        name = n.clone();
                        self.bump();
                    }
                }
                // `.field` stays on the `.` token: postfix reads it as member access of `#`.
                let node = Ast {
                    pos,
                    kind: AstKind::Pointer(name),
                };
                return self.postfix(node);
            }
        }
        self.secondary()
    }

    fn secondary(&mut self) -> Result<Ast, CompileError> {
        let save = self.i;
        let t = self.bump();
        let pos = t.pos;
        let node = match t.tok {
            Tok::Ident(name) => match name.as_str() {
                "true" => {
                    return Ok(Ast {
                        pos,
                        kind: AstKind::Bool(true),
                    });
                }
                "false" => {
                    return Ok(Ast {
                        pos,
                        kind: AstKind::Bool(false),
                    });
                }
                "nil" => {
                    return Ok(Ast {
                        pos,
                        kind: AstKind::Nil,
                    });
                }
                _ => {
                    if self.is_op("(") {
                        self.call(name, pos, Vec::new())?
                    } else {
                        Ast {
                            pos,
                            kind: AstKind::Ident(name),
                        }
                    }
                }
            },
            Tok::Int(i) => {
                return Ok(Ast {
                    pos,
                    kind: AstKind::Int(i),
                });
            }
            Tok::Float(f) => {
                return Ok(Ast {
                    pos,
                    kind: AstKind::Float(f),
                });
            }
            Tok::Str(s) => Ast {
                pos,
                kind: AstKind::Str(s),
            },
            Tok::Op("[") => {
                let mut items = Vec::new();
                while !self.is_op("]") {
                    if !items.is_empty() {
                        self.expect(",")?;
                        if self.is_op("]") {
                            break;
                        }
                    }
                    items.push(self.expression(0)?);
                }
                self.expect("]")?;
                Ast {
                    pos,
                    kind: AstKind::Array(items),
                }
            }
            Tok::Op("{") => {
                let mut pairs = Vec::new();
                while !self.is_op("}") {
                    if !pairs.is_empty() {
                        self.expect(",")?;
                        if self.is_op("}") {
                            break;
                        }
                    }
                    let kpos = self.pos();
                    let key = match self.peek().clone() {
                        Tok::Ident(s) | Tok::Str(s) => {
                            self.bump();
                            Ast {
                                pos: kpos,
                                kind: AstKind::Str(s),
                            }
                        }
                        Tok::Int(i) => {
                            self.bump();
                            Ast {
                                pos: kpos,
                                kind: AstKind::Str(i.to_string()),
                            }
                        }
                        Tok::Op(w) if WORD_OPS.contains(&w) => {
                            self.bump();
                            Ast {
                                pos: kpos,
                                kind: AstKind::Str(w.to_string()),
                            }
                        }
                        Tok::Op("(") => self.expression(0)?,
                        _ => {
                            return Err(self.unexpected(
                                "a map key (a name, a quoted string, a number or (expression))",
                            ));
                        }
                    };
                    self.expect(":")?;
                    let value = self.expression(0)?;
                    pairs.push((key, value));
                }
                self.expect("}")?;
                Ast {
                    pos,
                    kind: AstKind::Map(pairs),
                }
            }
            _ => {
                self.i = save;
                return Err(self.unexpected("an expression"));
            }
        };
        self.postfix(node)
    }

    fn call(&mut self, name: String, pos: usize, mut args: Vec<Ast>) -> Result<Ast, CompileError> {
        self.expect("(")?;
        let predicate = is_predicate_builtin(&name);
        let first = args.len();
        while !self.is_op(")") {
            if args.len() > first {
                self.expect(",")?;
                if self.is_op(")") {
                    break;
                }
            }
            // The second argument of a closure builtin is a predicate (its third, for
            // sortBy/reduce, is a plain expression again).
            if predicate && args.len() == 1 {
                args.push(self.predicate()?);
            } else {
                args.push(self.expression(0)?);
            }
        }
        self.expect(")")?;
        Ok(Ast {
            pos,
            kind: AstKind::Call { name, args },
        })
    }

    fn predicate(&mut self) -> Result<Ast, CompileError> {
        let pos = self.pos();
        let braces = self.is_op("{");
        if braces {
            self.bump();
        }
        self.depth += 1;
        let body = self.expression(0);
        self.depth -= 1;
        let body = body?;
        if braces {
            self.expect("}")?;
        }
        Ok(Ast {
            pos,
            kind: AstKind::Predicate(Box::new(body)),
        })
    }

    fn postfix(&mut self, mut node: Ast) -> Result<Ast, CompileError> {
        let mut chain = false;
        loop {
            let pos = self.pos();
            if self.is_op(".") || self.is_op("?.") {
                let optional = self.is_op("?.");
                self.bump();
                if optional && self.is_op("[") {
                    chain = true;
                    node = self.index(node, true)?;
                    continue;
                }
                let ppos = self.pos();
                let save = self.i;
                let name = match self.bump().tok {
                    Tok::Ident(n) => n,
                    Tok::Op(w) if WORD_OPS.contains(&w) => w.to_string(),
                    _ => {
                        self.i = save;
                        return Err(self.unexpected("a field or method name after ."));
                    }
                };
                chain |= optional;
                if self.is_op("(") {
                    self.bump();
                    let mut args = Vec::new();
                    while !self.is_op(")") {
                        if !args.is_empty() {
                            self.expect(",")?;
                            if self.is_op(")") {
                                break;
                            }
                        }
                        args.push(self.expression(0)?);
                    }
                    self.expect(")")?;
                    node = Ast {
                        pos: ppos,
                        kind: AstKind::Method {
                            obj: Box::new(node),
                            name,
                            args,
                            optional,
                        },
                    };
                } else {
                    let prop = Ast {
                        pos: ppos,
                        kind: AstKind::Str(name),
                    };
                    node = Ast {
                        pos: ppos,
                        kind: AstKind::Member {
                            obj: Box::new(node),
                            prop: Box::new(prop),
                            optional,
                        },
                    };
                }
                let _ = pos;
            } else if self.is_op("[") {
                node = self.index(node, false)?;
            } else {
                break;
            }
        }
        if chain {
            let pos = node.pos;
            node = Ast {
                pos,
                kind: AstKind::Chain(Box::new(node)),
            };
        }
        Ok(node)
    }

    fn index(&mut self, node: Ast, optional: bool) -> Result<Ast, CompileError> {
        let pos = self.pos();
        self.expect("[")?;
        // `[prop]`, or a slice `[from:to]` where either bound may be left out.
        let from = if self.is_op(":") {
            None
        } else {
            Some(self.expression(0)?)
        };
        match from {
            Some(prop) if !self.is_op(":") => {
                self.expect("]")?;
                Ok(Ast {
                    pos,
                    kind: AstKind::Member {
                        obj: Box::new(node),
                        prop: Box::new(prop),
                        optional,
                    },
                })
            }
            from => {
                self.expect(":")?;
                let to = if self.is_op("]") {
                    None
                } else {
                    Some(Box::new(self.expression(0)?))
                };
                self.expect("]")?;
                Ok(Ast {
                    pos,
                    kind: AstKind::Slice {
                        obj: Box::new(node),
                        from: from.map(Box::new),
                        to,
                    },
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Ast {
        parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn show(a: &Ast) -> String {
        match &a.kind {
            AstKind::Nil => "nil".into(),
            AstKind::Bool(b) => b.to_string(),
            AstKind::Int(i) => i.to_string(),
            AstKind::Float(f) => format!("{f:?}"),
            AstKind::Str(s) => format!("{s:?}"),
            AstKind::Ident(s) => s.clone(),
            AstKind::Pointer(s) => format!("#{s}"),
            AstKind::Array(v) => format!("[{}]", v.iter().map(show).collect::<Vec<_>>().join(", ")),
            AstKind::Map(v) => {
                format!(
                    "{{{}}}",
                    v.iter()
                        .map(|(k, v)| format!("{}: {}", show(k), show(v)))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
            AstKind::Member {
                obj,
                prop,
                optional,
            } => {
                format!(
                    "{}{}[{}]",
                    show(obj),
                    if *optional { "?" } else { "" },
                    show(prop)
                )
            }
            AstKind::Slice { obj, from, to } => format!(
                "{}[{}:{}]",
                show(obj),
                from.as_ref().map(|f| show(f)).unwrap_or_default(),
                to.as_ref().map(|f| show(f)).unwrap_or_default()
            ),
            AstKind::Call { name, args } => format!(
                "{name}({})",
                args.iter().map(show).collect::<Vec<_>>().join(", ")
            ),
            AstKind::Method {
                obj, name, args, ..
            } => {
                format!(
                    "{}.{name}({})",
                    show(obj),
                    args.iter().map(show).collect::<Vec<_>>().join(", ")
                )
            }
            AstKind::Unary { op, expr } => format!("({op} {})", show(expr)),
            AstKind::Binary { op, left, right } => format!("({} {op} {})", show(left), show(right)),
            AstKind::Cond { cond, then, other } => {
                format!("({} ? {} : {})", show(cond), show(then), show(other))
            }
            AstKind::Predicate(b) => format!("{{{}}}", show(b)),
            AstKind::Let { name, value, body } => {
                format!("(let {name} = {}; {})", show(value), show(body))
            }
            AstKind::Chain(b) => format!("chain({})", show(b)),
        }
    }

    #[test]
    fn precedence_follows_expr() {
        assert_eq!(show(&p("1 + 2 * 3")), "(1 + (2 * 3))");
        assert_eq!(show(&p("a or b and c")), "(a or (b and c))");
        assert_eq!(
            show(&p("a == 1 && b in [1, 2]")),
            "((a == 1) && (b in [1, 2]))"
        );
        assert_eq!(show(&p("2 ** 3 ** 2")), "(2 ** (3 ** 2))");
        // expr parses the operand of unary minus at precedence 90, so `**` (100) binds first.
        assert_eq!(show(&p("-a ** 2")), "(- (a ** 2))");
        // expr: `not` binds tighter than comparisons (precedence 50 > 20).
        assert_eq!(show(&p("not a == b")), "((not a) == b)");
        assert_eq!(show(&p("a ?? b ?? c")), "((a ?? b) ?? c)");
        assert_eq!(show(&p("a ? b : c ? d : e")), "(a ? b : (c ? d : e))");
    }

    #[test]
    fn negated_operators() {
        assert_eq!(show(&p("a not in ['x']")), "(not (a in [\"x\"]))");
        assert_eq!(
            show(&p("Lower(x) not startsWith 'a' && y")),
            "((not (Lower(x) startsWith \"a\")) && y)"
        );
    }

    #[test]
    fn members_methods_slices_and_chains() {
        assert_eq!(show(&p("evt.Meta.log_type")), "evt[\"Meta\"][\"log_type\"]");
        assert_eq!(show(&p("evt.GetMeta('x')")), "evt.GetMeta(\"x\")");
        assert_eq!(show(&p("q.Queue[-4:]")), "q[\"Queue\"][(- 4):]");
        assert_eq!(show(&p("a[1:2]")), "a[1:2]");
        assert_eq!(show(&p("a[:2]")), "a[:2]");
        assert_eq!(show(&p("a[:]")), "a[:]");
        assert_eq!(show(&p("a?.b.c")), "chain(a?[\"b\"][\"c\"])");
        assert_eq!(show(&p("r[\"s00\"][0].Evt")), "r[\"s00\"][0][\"Evt\"]");
    }

    #[test]
    fn predicates_and_pointers() {
        assert_eq!(show(&p("any(l, {# > 1})")), "any(l, {(# > 1)})");
        assert_eq!(show(&p("map(q, {#.Time})")), "map(q, {#[\"Time\"]})");
        assert_eq!(
            show(&p("any(q, {.Meta.exe == 'x'})")),
            "any(q, {(#[\"Meta\"][\"exe\"] == \"x\")})"
        );
        assert_eq!(show(&p("filter(l, # > 1)")), "filter(l, {(# > 1)})");
        assert!(matches!(
            parse("# + 1").unwrap_err().kind,
            CompileErrorKind::OutsidePredicate(_)
        ));
    }

    #[test]
    fn let_pipes_and_literals() {
        assert_eq!(show(&p("let x = 1; x + 1")), "(let x = 1; (x + 1))");
        assert_eq!(
            show(&p("if a { let b = 1; b } else if c { 2 } else { 3 }")),
            "(a ? (let b = 1; b) : (c ? 2 : 3))"
        );
        assert_eq!(show(&p("a | upper()")), "upper(a)");
        assert_eq!(
            show(&p("{a: 1, 'b c': [nil, true]}")),
            "{\"a\": 1, \"b c\": [nil, true]}"
        );
        assert_eq!(show(&p(r#""a\"b\n" + 'c\'d'"#)), r#"("a\"b\n" + "c'd")"#);
        assert_eq!(
            show(&p("0x1F + 1_000 + 1.5e3 + .5")),
            "(((31 + 1000) + 1500.0) + 0.5)"
        );
        assert_eq!(show(&p("`raw\\n`")), "\"raw\\\\n\"");
        assert_eq!(show(&p("'\\u00e9\\x41\\101'")), "\"éAA\"");
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = parse("a ==\n  (b").unwrap_err();
        assert_eq!((e.line, e.column), (2, 5));
        assert!(e.to_string().contains("expected \")\""), "{e}");
        // Nothing at all, or an operator with nothing after it (the fuzzer's first finds).
        let e = parse("").unwrap_err();
        assert_eq!((e.line, e.column), (1, 1));
        assert!(e.to_string().contains("found end of expression"), "{e}");
        let e = parse("a.").unwrap_err();
        assert_eq!((e.line, e.column), (1, 3));
        assert!(parse("let").is_err() && parse("x |").is_err() && parse("(").is_err());
        let e = parse("a b").unwrap_err();
        assert_eq!((e.line, e.column), (1, 3));
        let e = parse("'abc").unwrap_err();
        assert!(e.to_string().contains("unclosed string"), "{e}");
        let e = parse("'a\\qb'").unwrap_err();
        assert!(e.to_string().contains("unknown escape"), "{e}");
        assert!(parse(&"(".repeat(10_000)).is_err());
        // Chains built by loops (members, arithmetic) are bounded too; logical chains are not.
        assert!(parse(&format!("a{}", ".b".repeat(1000))).is_err());
        assert!(parse(&vec!["1"; 1000].join(" + ")).is_err());
        assert!(parse(&vec!["a"; 5000].join(" || ")).is_ok());
    }
}
