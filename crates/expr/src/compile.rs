//! Name resolution and lowering: syntax tree → [`Node`] tree that `eval` walks. Resolves every
//! identifier (variable slot, `let` binding, `#` of which predicate) and every function
//! (expr builtin or registered helper, arity checked), compiles constant regexes, and turns
//! `x in [constants]` into a constant-set test. Owns nothing at run time.

use std::collections::HashSet;
use std::sync::Arc;

use regex::Regex;

use crate::builtins::{Builtin, ClosureOp};
use crate::error::{CompileError, CompileErrorKind};
use crate::parse::{Ast, AstKind, error_at};
use crate::{Compiler, Function};

/// A constant of the program (kept out of [`crate::Value`] so a program stays `Send + Sync`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Const {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Box<str>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Range,
    In,
    Contains,
    StartsWith,
    EndsWith,
    Matches,
}

impl BinOp {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::Pow => "**",
            BinOp::Range => "..",
            BinOp::In => "in",
            BinOp::Contains => "contains",
            BinOp::StartsWith => "startsWith",
            BinOp::EndsWith => "endsWith",
            BinOp::Matches => "matches",
        }
    }
}

/// The lowered program tree.
pub(crate) enum Node {
    Const(Const),
    Var(usize),
    /// `var.a.b.c`: a variable then constant field names (the shape of most hub reads,
    /// `evt.Meta.log_type`), walked in a loop.
    Path {
        slot: usize,
        names: Box<[Box<str>]>,
    },
    /// A `let` binding, `up` frames above the current one.
    Local(usize),
    /// `#` (element), `#index`, `#acc` of the predicate `up` frames above.
    Pointer {
        up: usize,
        what: PointerKind,
    },
    Array(Vec<Node>),
    /// An array literal of strings only: read as a borrowed [`crate::List::Strings`], no
    /// allocation per evaluation.
    ConstStrings(Vec<String>),
    Map(Vec<(Node, Node)>),
    /// `obj.name` with a constant name.
    Field {
        obj: Box<Node>,
        name: Box<str>,
        optional: bool,
    },
    /// `obj[expr]`.
    Index {
        obj: Box<Node>,
        index: Box<Node>,
        optional: bool,
    },
    Slice {
        obj: Box<Node>,
        from: Option<Box<Node>>,
        to: Option<Box<Node>>,
    },
    Method {
        obj: Box<Node>,
        name: Box<str>,
        args: Vec<Node>,
        optional: bool,
    },
    Call {
        func: Arc<dyn Function>,
        args: Vec<Node>,
        /// Registered as pure ([`crate::Compiler::pure`]).
        pure: bool,
    },
    Builtin {
        b: Builtin,
        args: Vec<Node>,
    },
    Closure {
        op: ClosureOp,
        list: Box<Node>,
        body: Box<Node>,
        extra: Option<Box<Node>>,
    },
    Not(Box<Node>),
    Neg(Box<Node>),
    Plus(Box<Node>),
    Binary {
        op: BinOp,
        left: Box<Node>,
        right: Box<Node>,
    },
    /// `a && b && ...`, flattened so long hub chains (976 `||` in one sigma rule) do not
    /// recurse once per operand.
    And(Vec<Node>),
    Or(Vec<Node>),
    Coalesce(Box<Node>, Box<Node>),
    Cond(Box<Node>, Box<Node>, Box<Node>),
    /// `x in [c1, c2, ...]` with constant elements.
    /// `x == constant` / `x != constant`.
    EqConst {
        left: Box<Node>,
        c: Const,
        negate: bool,
    },
    InConsts {
        left: Box<Node>,
        items: Box<[Const]>,
        /// The same items as a hash set when they are many strings (`x in File('..')`).
        set: Option<HashSet<Box<str>>>,
    },
    /// `any(LIST, {X op #})` / `none(..)` over a constant string list, `op` one of
    /// `contains`, `startsWith`, `endsWith`, `==` (`#` possibly under a pure call such as
    /// `Upper(#)`, applied to the list at compile time): `X` is evaluated once and tested
    /// against every element at once. `list` and `body` are the closure as written; it runs
    /// instead when `X` is not a string (so errors and conversions stay the generic ones).
    AnyStrings {
        op: ClosureOp,
        list: Box<Node>,
        body: Box<Node>,
        /// `X` is the left operand of the body (else the right, for `# == X`).
        x_left: bool,
        set: StrSet,
    },
    /// `x matches 'constant'`, compiled once.
    MatchesConst {
        left: Box<Node>,
        re: Regex,
    },
    Let {
        value: Box<Node>,
        body: Box<Node>,
    },
    Chain(Box<Node>),
}

/// A constant set of strings tested all at once.
pub(crate) enum StrSet {
    /// `x == element`.
    Eq(HashSet<Box<str>>),
    /// `x contains` / `startsWith` / `endsWith` an element: the escaped elements as one
    /// alternation (the regex crate runs it as a literal automaton); `x matches` an element:
    /// the patterns as one alternation.
    Re(Regex),
}

impl StrSet {
    pub(crate) fn is_match(&self, x: &str) -> bool {
        match self {
            StrSet::Eq(set) => set.contains(x),
            StrSet::Re(re) => re.is_match(x),
        }
    }

    fn new(op: BinOp, items: &[String]) -> Option<StrSet> {
        if op == BinOp::Eq {
            return Some(StrSet::Eq(
                items.iter().map(|s| s.as_str().into()).collect(),
            ));
        }
        if op == BinOp::Matches {
            // Each element a pattern of its own (in its own group, so its flags stay there);
            // any that does not compile leaves the closure to report it when it gets there.
            let mut alt = Vec::with_capacity(items.len());
            for p in items {
                crate::re::go_regex(p).ok()?;
                alt.push(format!("(?:{})", crate::re::go_to_rust(p)));
            }
            return regex::RegexBuilder::new(&alt.join("|"))
                .size_limit(32 << 20)
                .build()
                .ok()
                .map(StrSet::Re);
        }
        let alt = items
            .iter()
            .map(|s| regex::escape(s))
            .collect::<Vec<_>>()
            .join("|");
        let pattern = match op {
            BinOp::Contains => format!("(?:{alt})"),
            BinOp::StartsWith => format!(r"\A(?:{alt})"),
            BinOp::EndsWith => format!(r"(?:{alt})\z"),
            _ => return None,
        };
        regex::RegexBuilder::new(&pattern)
            .size_limit(32 << 20)
            .build()
            .ok()
            .map(StrSet::Re)
    }
}

/// Many constant strings behind `in` are looked up in a hash set rather than one by one.
const IN_SET_MIN: usize = 16;

fn in_set(items: &[Const]) -> Option<HashSet<Box<str>>> {
    if items.len() < IN_SET_MIN {
        return None;
    }
    items
        .iter()
        .map(|c| match c {
            Const::Str(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

/// A node whose value does not depend on a closure's element or a `let`, and whose
/// evaluation changes nothing: safe to evaluate once instead of once per element.
fn independent(n: &Node) -> bool {
    match n {
        Node::Const(_) | Node::Var(_) | Node::Path { .. } | Node::ConstStrings(_) => true,
        Node::Field { obj, .. } | Node::Chain(obj) => independent(obj),
        Node::Index { obj, index, .. } => independent(obj) && independent(index),
        Node::Call { args, pure, .. } => *pure && args.iter().all(independent),
        Node::Builtin { args, .. } => args.iter().all(independent),
        Node::Coalesce(a, b) => independent(a) && independent(b),
        _ => false,
    }
}

/// `#`, or a pure one-argument call on `#` (`Upper(#)`): the function to apply to each
/// element (None for `#` itself).
fn element_side(n: &Node) -> Option<Option<&dyn Function>> {
    let is_elem = |n: &Node| {
        matches!(
            n,
            Node::Pointer {
                up: 0,
                what: PointerKind::Elem
            }
        )
    };
    match n {
        n if is_elem(n) => Some(None),
        Node::Call {
            func,
            args,
            pure: true,
        } if args.len() == 1 && is_elem(&args[0]) => Some(Some(&**func)),
        _ => None,
    }
}

/// The elements as the body sees them (`Upper(#)` applied), or None when a call fails or
/// gives something other than a string.
fn mapped(items: &[String], f: Option<&dyn Function>) -> Option<Vec<String>> {
    let Some(f) = f else {
        return Some(items.to_vec());
    };
    items
        .iter()
        .map(|s| match f.call(&[crate::Value::Str(crate::Str::Ref(s))]) {
            Ok(crate::Value::Str(out)) => Some(out.as_str().to_owned()),
            _ => None,
        })
        .collect()
}

/// [`Node::AnyStrings`] for `any`/`none` over a constant string list with a body of the
/// shape `X op #`, else the closure as it is.
fn specialise_closure(
    op: ClosureOp,
    list: Box<Node>,
    body: Box<Node>,
    extra: Option<Box<Node>>,
) -> Node {
    let generic = |list, body, extra| Node::Closure {
        op,
        list,
        body,
        extra,
    };
    if !matches!(op, ClosureOp::Any | ClosureOp::None) || extra.is_some() {
        return generic(list, body, extra);
    }
    let Node::ConstStrings(items) = &*list else {
        return generic(list, body, extra);
    };
    let Node::Binary {
        op: bop,
        left,
        right,
    } = &*body
    else {
        return generic(list, body, extra);
    };
    let found = match bop {
        BinOp::Contains | BinOp::StartsWith | BinOp::EndsWith | BinOp::Eq | BinOp::Matches
            if independent(left) =>
        {
            element_side(right).map(|f| (true, f))
        }
        BinOp::Eq if independent(right) => element_side(left).map(|f| (false, f)),
        _ => None,
    };
    let Some((x_left, f)) = found else {
        return generic(list, body, extra);
    };
    let Some(set) = mapped(items, f).and_then(|m| StrSet::new(*bop, &m)) else {
        return generic(list, body, extra);
    };
    Node::AnyStrings {
        op,
        list,
        body,
        x_left,
        set,
    }
}

/// A call to a pure function with constant arguments, made now: its result as a constant
/// node, or None (not all constants, the call fails, or a result that is not a constant).
fn fold_call(func: &dyn Function, args: &[Node]) -> Option<Node> {
    let vals: Vec<crate::Value<'_>> = args
        .iter()
        .map(|a| match a {
            Node::Const(c) => Some(c.value()),
            _ => None,
        })
        .collect::<Option<_>>()?;
    Some(match func.call(&vals).ok()? {
        crate::Value::Nil => Node::Const(Const::Nil),
        crate::Value::Bool(b) => Node::Const(Const::Bool(b)),
        crate::Value::Int(i) => Node::Const(Const::Int(i)),
        crate::Value::Float(f) => Node::Const(Const::Float(f)),
        crate::Value::Str(s) => Node::Const(Const::Str(s.as_str().into())),
        // The same borrowed list `File(..)` gives at run time, owned by the program.
        crate::Value::List(crate::List::Strings(v)) => Node::ConstStrings(v.to_vec()),
        _ => return None,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PointerKind {
    Elem,
    Index,
    Acc,
}

enum Scope {
    Let(String),
    Predicate,
}

pub(crate) struct Lowerer<'c> {
    compiler: &'c Compiler,
    src: &'c str,
    scopes: Vec<Scope>,
}

impl<'c> Lowerer<'c> {
    pub(crate) fn new(compiler: &'c Compiler, src: &'c str) -> Self {
        Lowerer {
            compiler,
            src,
            scopes: Vec::new(),
        }
    }

    fn error(&self, pos: usize, kind: CompileErrorKind) -> CompileError {
        error_at(self.src, pos, kind)
    }

    pub(crate) fn lower(&mut self, ast: &Ast) -> Result<Node, CompileError> {
        Ok(match &ast.kind {
            AstKind::Nil => Node::Const(Const::Nil),
            AstKind::Bool(b) => Node::Const(Const::Bool(*b)),
            AstKind::Int(i) => Node::Const(Const::Int(*i)),
            AstKind::Float(f) => Node::Const(Const::Float(*f)),
            AstKind::Str(s) => Node::Const(Const::Str(s.as_str().into())),
            AstKind::Ident(name) => self.ident(name, ast.pos)?,
            AstKind::Pointer(name) => {
                let what = match name.as_str() {
                    "" => PointerKind::Elem,
                    "index" => PointerKind::Index,
                    "acc" => PointerKind::Acc,
                    other => {
                        return Err(self.error(
                            ast.pos,
                            CompileErrorKind::UnknownIdentifier(format!("#{other}")),
                        ));
                    }
                };
                let up = self.predicate_depth().ok_or_else(|| {
                    self.error(
                        ast.pos,
                        CompileErrorKind::OutsidePredicate(format!("#{name}")),
                    )
                })?;
                Node::Pointer { up, what }
            }
            AstKind::Array(items) => {
                let strings: Option<Vec<String>> = items
                    .iter()
                    .map(|a| match &a.kind {
                        AstKind::Str(s) => Some(s.clone()),
                        _ => None,
                    })
                    .collect();
                match strings {
                    Some(v) if !v.is_empty() => Node::ConstStrings(v),
                    _ => Node::Array(
                        items
                            .iter()
                            .map(|a| self.lower(a))
                            .collect::<Result<_, _>>()?,
                    ),
                }
            }
            AstKind::Map(pairs) => Node::Map(
                pairs
                    .iter()
                    .map(|(k, v)| Ok((self.lower(k)?, self.lower(v)?)))
                    .collect::<Result<_, CompileError>>()?,
            ),
            AstKind::Member {
                obj,
                prop,
                optional,
            } => {
                if let Some(path) = self.path(ast) {
                    return Ok(path);
                }
                let obj = Box::new(self.lower(obj)?);
                match &prop.kind {
                    AstKind::Str(name) => Node::Field {
                        obj,
                        name: name.as_str().into(),
                        optional: *optional,
                    },
                    _ => Node::Index {
                        obj,
                        index: Box::new(self.lower(prop)?),
                        optional: *optional,
                    },
                }
            }
            AstKind::Slice { obj, from, to } => Node::Slice {
                obj: Box::new(self.lower(obj)?),
                from: from
                    .as_ref()
                    .map(|f| self.lower(f).map(Box::new))
                    .transpose()?,
                to: to
                    .as_ref()
                    .map(|f| self.lower(f).map(Box::new))
                    .transpose()?,
            },
            AstKind::Call { name, args } => self.call(name, args, ast.pos)?,
            AstKind::Method {
                obj,
                name,
                args,
                optional,
            } => Node::Method {
                obj: Box::new(self.lower(obj)?),
                name: name.as_str().into(),
                args: args
                    .iter()
                    .map(|a| self.lower(a))
                    .collect::<Result<_, _>>()?,
                optional: *optional,
            },
            AstKind::Unary { op, expr } => {
                let e = Box::new(self.lower(expr)?);
                match *op {
                    "not" => Node::Not(e),
                    "-" => Node::Neg(e),
                    _ => Node::Plus(e),
                }
            }
            AstKind::Binary { op, left, right } => self.binary(op, left, right)?,
            AstKind::Cond { cond, then, other } => Node::Cond(
                Box::new(self.lower(cond)?),
                Box::new(self.lower(then)?),
                Box::new(self.lower(other)?),
            ),
            AstKind::Predicate(body) => {
                // A predicate outside a closure builtin's second argument cannot happen: the
                // parser only makes them there; lower its body as a plain expression.
                self.lower(body)?
            }
            AstKind::Let { name, value, body } => {
                let value = Box::new(self.lower(value)?);
                self.scopes.push(Scope::Let(name.clone()));
                let body = self.lower(body);
                self.scopes.pop();
                Node::Let {
                    value,
                    body: Box::new(body?),
                }
            }
            AstKind::Chain(inner) => Node::Chain(Box::new(self.lower(inner)?)),
        })
    }

    /// `var.a.b` with constant, non-optional names → [`Node::Path`].
    fn path(&self, ast: &Ast) -> Option<Node> {
        let mut names = Vec::new();
        let mut cur = ast;
        while let AstKind::Member {
            obj,
            prop,
            optional: false,
        } = &cur.kind
        {
            let AstKind::Str(name) = &prop.kind else {
                return None;
            };
            names.push(Box::<str>::from(name.as_str()));
            cur = obj;
        }
        let AstKind::Ident(var) = &cur.kind else {
            return None;
        };
        if names.is_empty()
            || self
                .scopes
                .iter()
                .any(|s| matches!(s, Scope::Let(n) if n == var))
        {
            return None;
        }
        let slot = self.compiler.vars.iter().position(|v| v == var)?;
        names.reverse();
        Some(Node::Path {
            slot,
            names: names.into(),
        })
    }

    fn predicate_depth(&self) -> Option<usize> {
        self.scopes
            .iter()
            .rev()
            .position(|s| matches!(s, Scope::Predicate))
    }

    fn ident(&self, name: &str, pos: usize) -> Result<Node, CompileError> {
        for (up, s) in self.scopes.iter().rev().enumerate() {
            if let Scope::Let(n) = s
                && n == name
            {
                return Ok(Node::Local(up));
            }
        }
        if let Some(slot) = self.compiler.vars.iter().position(|v| v == name) {
            return Ok(Node::Var(slot));
        }
        if self.compiler.functions.contains_key(name) || Builtin::from_name(name).is_some() {
            return Err(self.error(
                pos,
                CompileErrorKind::Syntax {
                    expected: format!("a call {name}(...)"),
                    found: format!("function {name:?} used as a value"),
                },
            ));
        }
        Err(self.error(pos, CompileErrorKind::UnknownIdentifier(name.to_string())))
    }

    fn call(&mut self, name: &str, args: &[Ast], pos: usize) -> Result<Node, CompileError> {
        // A registered function overrides an expr builtin of the same name, as expr.Function does.
        if let Some(def) = self.compiler.functions.get(name) {
            if !def.arity.accepts(args.len()) {
                return Err(self.error(
                    pos,
                    CompileErrorKind::Arity {
                        name: name.to_string(),
                        expected: def.arity.to_string(),
                        got: args.len(),
                    },
                ));
            }
            let func = def.func.clone();
            let pure = def.pure;
            let args: Vec<Node> = args
                .iter()
                .map(|a| self.lower(a))
                .collect::<Result<_, _>>()?;
            if pure && let Some(folded) = fold_call(&*func, &args) {
                return Ok(folded);
            }
            return Ok(Node::Call { func, args, pure });
        }
        if let Some(op) = ClosureOp::from_name(name) {
            let (min, max) = op.arity();
            if args.len() < min || args.len() > max {
                let expected = if min == max {
                    min.to_string()
                } else {
                    format!("{min} to {max}")
                };
                return Err(self.error(
                    pos,
                    CompileErrorKind::Arity {
                        name: name.to_string(),
                        expected,
                        got: args.len(),
                    },
                ));
            }
            let list = Box::new(self.lower(&args[0])?);
            let body = match args.get(1) {
                Some(a) => {
                    self.scopes.push(Scope::Predicate);
                    let body = match &a.kind {
                        AstKind::Predicate(b) => self.lower(b),
                        _ => self.lower(a),
                    };
                    self.scopes.pop();
                    Box::new(body?)
                }
                // count(list) / sum(list): the element itself.
                None => Box::new(Node::Pointer {
                    up: 0,
                    what: PointerKind::Elem,
                }),
            };
            let extra = args
                .get(2)
                .map(|a| self.lower(a).map(Box::new))
                .transpose()?;
            return Ok(specialise_closure(op, list, body, extra));
        }
        if let Some(b) = Builtin::from_name(name) {
            let arity = b.arity();
            if !arity.accepts(args.len()) {
                return Err(self.error(
                    pos,
                    CompileErrorKind::Arity {
                        name: name.to_string(),
                        expected: arity.to_string(),
                        got: args.len(),
                    },
                ));
            }
            let args = args
                .iter()
                .map(|a| self.lower(a))
                .collect::<Result<_, _>>()?;
            return Ok(Node::Builtin { b, args });
        }
        Err(self.error(pos, CompileErrorKind::UnknownFunction(name.to_string())))
    }

    fn logic_chain(
        &mut self,
        ops: [&str; 2],
        left: &Ast,
        right: &Ast,
    ) -> Result<Vec<Node>, CompileError> {
        // Walk the left-deep chain iteratively: `((a || b) || c) || d` → [a, b, c, d].
        let mut rights = vec![right];
        let mut cur = left;
        while let AstKind::Binary { op, left, right } = &cur.kind {
            if !ops.contains(op) {
                break;
            }
            rights.push(right);
            cur = left;
        }
        let mut out = Vec::with_capacity(rights.len() + 1);
        out.push(self.lower(cur)?);
        for r in rights.into_iter().rev() {
            out.push(self.lower(r)?);
        }
        Ok(out)
    }

    fn binary(&mut self, op: &str, left: &Ast, right: &Ast) -> Result<Node, CompileError> {
        match op {
            "and" | "&&" => return Ok(Node::And(self.logic_chain(["and", "&&"], left, right)?)),
            "or" | "||" => return Ok(Node::Or(self.logic_chain(["or", "||"], left, right)?)),
            _ => {}
        }
        let l = Box::new(self.lower(left)?);
        let bin = match op {
            "??" => return Ok(Node::Coalesce(l, Box::new(self.lower(right)?))),
            "==" => BinOp::Eq,
            "!=" => BinOp::Ne,
            "<" => BinOp::Lt,
            "<=" => BinOp::Le,
            ">" => BinOp::Gt,
            ">=" => BinOp::Ge,
            "+" => BinOp::Add,
            "-" => BinOp::Sub,
            "*" => BinOp::Mul,
            "/" => BinOp::Div,
            "%" => BinOp::Mod,
            "**" | "^" => BinOp::Pow,
            ".." => BinOp::Range,
            "in" => BinOp::In,
            "contains" => BinOp::Contains,
            "startsWith" => BinOp::StartsWith,
            "endsWith" => BinOp::EndsWith,
            "matches" => BinOp::Matches,
            other => {
                return Err(self.error(
                    right.pos,
                    CompileErrorKind::Syntax {
                        expected: "a binary operator".into(),
                        found: format!("{other:?}"),
                    },
                ));
            }
        };
        let r = self.lower(right)?;
        if matches!(bin, BinOp::Eq | BinOp::Ne)
            && let Node::Const(c) = r
        {
            // `x == 'literal'` (or `Upper('literal')`, folded), the most common hub test:
            // no node for the constant.
            return Ok(Node::EqConst {
                left: l,
                c,
                negate: bin == BinOp::Ne,
            });
        }
        if bin == BinOp::In {
            let consts: Option<Vec<Const>> = match &r {
                Node::ConstStrings(v) => {
                    Some(v.iter().map(|s| Const::Str(s.as_str().into())).collect())
                }
                Node::Array(items) => items
                    .iter()
                    .map(|n| match n {
                        Node::Const(c) => Some(c.clone()),
                        _ => None,
                    })
                    .collect(),
                _ => None,
            };
            if let Some(consts) = consts {
                return Ok(Node::InConsts {
                    left: l,
                    set: in_set(&consts),
                    items: consts.into(),
                });
            }
        }
        if bin == BinOp::Matches
            && !matches!(right.kind, AstKind::Str(_))
            && let Node::Const(Const::Str(pattern)) = &r
            && let Ok(re) = crate::re::go_regex(pattern)
        {
            // A folded pattern (`Upper('..')`): compiled once; one that does not compile
            // is left to fail at run time, as it did before folding.
            return Ok(Node::MatchesConst { left: l, re });
        }
        if bin == BinOp::Matches
            && let AstKind::Str(pattern) = &right.kind
        {
            let re = crate::re::go_regex(pattern).map_err(|e| {
                self.error(
                    right.pos,
                    CompileErrorKind::Regex {
                        pattern: pattern.clone(),
                        message: e.to_string(),
                    },
                )
            })?;
            return Ok(Node::MatchesConst { left: l, re });
        }
        Ok(Node::Binary {
            op: bin,
            left: l,
            right: Box::new(r),
        })
    }
}
