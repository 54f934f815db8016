//! Name resolution and lowering: syntax tree → [`Node`] tree that `eval` walks. Resolves every
//! identifier (variable slot, `let` binding, `#` of which predicate) and every function
//! (expr builtin or registered helper, arity checked), compiles constant regexes, and turns
//! `x in [constants]` into a constant-set test. Owns nothing at run time.

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
            let args = args
                .iter()
                .map(|a| self.lower(a))
                .collect::<Result<_, _>>()?;
            return Ok(Node::Call { func, args });
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
            return Ok(Node::Closure {
                op,
                list,
                body,
                extra,
            });
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
        if matches!(bin, BinOp::Eq | BinOp::Ne)
            && let Some(c) = const_of(right)
        {
            // `x == 'literal'`, the most common hub test: no node for the constant.
            return Ok(Node::EqConst {
                left: l,
                c,
                negate: bin == BinOp::Ne,
            });
        }
        if bin == BinOp::In
            && let AstKind::Array(items) = &right.kind
            && let Some(consts) = items.iter().map(const_of).collect::<Option<Vec<_>>>()
        {
            return Ok(Node::InConsts {
                left: l,
                items: consts.into(),
            });
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
            right: Box::new(self.lower(right)?),
        })
    }
}

fn const_of(a: &Ast) -> Option<Const> {
    Some(match &a.kind {
        AstKind::Nil => Const::Nil,
        AstKind::Bool(b) => Const::Bool(*b),
        AstKind::Int(i) => Const::Int(*i),
        AstKind::Float(f) => Const::Float(*f),
        AstKind::Str(s) => Const::Str(s.as_str().into()),
        _ => return None,
    })
}
