//! The evaluator: walks a compiled [`Node`] tree against the variables' values, with expr's
//! run-time semantics for every operator (see the crate docs). Scopes for `let` and predicate
//! elements live in frames on the Rust stack, so evaluation allocates only when the
//! expression itself builds something (a list literal, a new string).
//!
//! Owns: operators, member access, method dispatch for built-in kinds (time, duration),
//! closure builtins. Does not own: the builtin and helper functions' bodies (`builtins`,
//! `helpers`).

use std::cmp::Ordering;
use std::rc::Rc;

use crate::EvalError;
use crate::builtins::{self, ClosureOp};
use crate::compile::{BinOp, Const, Node, PointerKind};
use crate::ops::{compare, equal};
use crate::value::{List, Map, Str, Time, Value};

/// Why evaluation of a node stopped early.
pub(crate) enum Fail {
    /// Boxed so a `Result<Value, Fail>` stays small on the hot path.
    Err(Box<EvalError>),
    /// An optional link (`a?.b`) met nil: the enclosing chain is nil.
    NilChain,
}

impl From<EvalError> for Fail {
    fn from(e: EvalError) -> Self {
        Fail::Err(Box::new(e))
    }
}

type R<'a> = Result<Value<'a>, Fail>;

/// One `let` binding or one predicate iteration.
pub(crate) struct Frame<'f, 'a> {
    parent: Option<&'f Frame<'f, 'a>>,
    value: Value<'a>,
    index: usize,
    acc: Value<'a>,
}

impl<'f, 'a> Frame<'f, 'a> {
    fn up(&self, n: usize) -> &Frame<'f, 'a> {
        let mut f = self;
        for _ in 0..n {
            match f.parent {
                Some(p) => f = p,
                None => break,
            }
        }
        f
    }
}

pub(crate) struct Ctx<'v, 'a> {
    pub(crate) vars: &'v [Value<'a>],
}

impl<'a> Const {
    pub(crate) fn value(&'a self) -> Value<'a> {
        match self {
            Const::Nil => Value::Nil,
            Const::Bool(b) => Value::Bool(*b),
            Const::Int(i) => Value::Int(*i),
            Const::Float(f) => Value::Float(*f),
            Const::Str(s) => Value::Str(Str::Ref(s)),
        }
    }
}

fn type_err(op: &'static str, l: &Value<'_>, r: &Value<'_>) -> Fail {
    Fail::from(EvalError::Operator {
        op,
        left: l.type_name().to_string(),
        right: r.type_name().to_string(),
    })
}

fn want_bool(v: &Value<'_>, context: &'static str) -> Result<bool, Fail> {
    match v {
        Value::Bool(b) => Ok(*b),
        other => Err(Fail::from(EvalError::NotBool {
            context,
            got: other.type_name().to_string(),
        })),
    }
}

pub(crate) fn eval<'a>(node: &'a Node, ctx: &Ctx<'_, 'a>, frame: Option<&Frame<'_, 'a>>) -> R<'a> {
    match node {
        Node::Const(c) => Ok(c.value()),
        Node::Var(i) => Ok(ctx.vars.get(*i).cloned().unwrap_or(Value::Nil)),
        Node::Path { slot, names } => {
            let mut v = ctx.vars.get(*slot).cloned().unwrap_or(Value::Nil);
            for n in names.iter() {
                v = field(v, n)?;
            }
            Ok(v)
        }
        Node::Local(up) => Ok(frame.map(|f| f.up(*up).value.clone()).unwrap_or(Value::Nil)),
        Node::Pointer { up, what } => {
            let Some(f) = frame.map(|f| f.up(*up)) else {
                return Ok(Value::Nil);
            };
            Ok(match what {
                PointerKind::Elem => f.value.clone(),
                PointerKind::Index => Value::Int(f.index as i64),
                PointerKind::Acc => f.acc.clone(),
            })
        }
        Node::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for n in items {
                out.push(eval(n, ctx, frame)?);
            }
            Ok(Value::list(out))
        }
        Node::ConstStrings(v) => Ok(Value::List(List::Strings(v))),
        Node::Map(pairs) => {
            let mut out: Vec<(Str<'a>, Value<'a>)> = Vec::with_capacity(pairs.len());
            for (k, v) in pairs {
                let key = match eval(k, ctx, frame)? {
                    Value::Str(s) => s,
                    other => Str::from(other.to_string()),
                };
                let val = eval(v, ctx, frame)?;
                match out.iter_mut().find(|(k, _)| k.as_str() == key.as_str()) {
                    Some(slot) => slot.1 = val,
                    None => out.push((key, val)),
                }
            }
            Ok(Value::map(out))
        }
        Node::Field {
            obj,
            name,
            optional,
        } => {
            let base = eval(obj, ctx, frame)?;
            if *optional && base.is_nil() {
                return Err(Fail::NilChain);
            }
            Ok(field(base, name)?)
        }
        Node::Index {
            obj,
            index,
            optional,
        } => {
            let base = eval(obj, ctx, frame)?;
            if *optional && base.is_nil() {
                return Err(Fail::NilChain);
            }
            let idx = eval(index, ctx, frame)?;
            Ok(index_value(base, &idx)?)
        }
        Node::Slice { obj, from, to } => {
            let base = eval(obj, ctx, frame)?;
            let from = match from {
                Some(n) => Some(eval(n, ctx, frame)?),
                None => None,
            };
            let to = match to {
                Some(n) => Some(eval(n, ctx, frame)?),
                None => None,
            };
            Ok(slice(base, from, to)?)
        }
        Node::Method {
            obj,
            name,
            args,
            optional,
        } => {
            let base = eval(obj, ctx, frame)?;
            if *optional && base.is_nil() {
                return Err(Fail::NilChain);
            }
            with_args(args, ctx, frame, |a| {
                method(base, name, a).map_err(Fail::from)
            })
        }
        Node::Call { func, args, .. } => {
            with_args(args, ctx, frame, |a| func.call(a).map_err(Fail::from))
        }
        Node::Builtin { b, args } => with_args(args, ctx, frame, |a| {
            builtins::call(*b, a).map_err(Fail::from)
        }),
        Node::Closure {
            op,
            list,
            body,
            extra,
        } => closure(*op, list, body, extra.as_deref(), ctx, frame),
        Node::Not(e) => Ok(Value::Bool(!want_bool(&eval(e, ctx, frame)?, "not")?)),
        Node::Neg(e) => match eval(e, ctx, frame)? {
            Value::Int(i) => Ok(Value::Int(i.wrapping_neg())),
            Value::Float(f) => Ok(Value::Float(-f)),
            Value::Duration(d) => Ok(Value::Duration(d.wrapping_neg())),
            other => Err(type_err("-", &other, &Value::Nil)),
        },
        Node::Plus(e) => match eval(e, ctx, frame)? {
            v @ (Value::Int(_) | Value::Float(_) | Value::Duration(_)) => Ok(v),
            other => Err(type_err("+", &other, &Value::Nil)),
        },
        Node::And(items) => {
            for n in items {
                if !want_bool(&eval(n, ctx, frame)?, "and")? {
                    return Ok(Value::Bool(false));
                }
            }
            Ok(Value::Bool(true))
        }
        Node::Or(items) => {
            for n in items {
                if want_bool(&eval(n, ctx, frame)?, "or")? {
                    return Ok(Value::Bool(true));
                }
            }
            Ok(Value::Bool(false))
        }
        Node::Coalesce(l, r) => {
            // expr's `??` also yields the right side when the left is an optional chain that
            // stopped on nil.
            let left = match eval(l, ctx, frame) {
                Ok(v) => v,
                Err(Fail::NilChain) => Value::Nil,
                Err(e) => return Err(e),
            };
            if left.is_nil() {
                eval(r, ctx, frame)
            } else {
                Ok(left)
            }
        }
        Node::Cond(c, t, e) => {
            if want_bool(&eval(c, ctx, frame)?, "the condition of ?:")? {
                eval(t, ctx, frame)
            } else {
                eval(e, ctx, frame)
            }
        }
        Node::EqConst { left, c, negate } => {
            let v = eval(left, ctx, frame)?;
            Ok(Value::Bool(equal_const(&v, c) != *negate))
        }
        Node::InConsts { left, items, set } => {
            let v = eval(left, ctx, frame)?;
            if let (Some(set), Value::Str(s)) = (set, &v) {
                return Ok(Value::Bool(set.contains(s.as_str())));
            }
            Ok(Value::Bool(items.iter().any(|c| equal_const(&v, c))))
        }
        Node::AnyStrings {
            op,
            list,
            body,
            x_left,
            set,
        } => {
            let (Node::ConstStrings(items), Node::Binary { left, right, .. }) = (&**list, &**body)
            else {
                return closure(*op, list, body, None, ctx, frame);
            };
            if items.is_empty() {
                return closure(*op, list, body, None, ctx, frame);
            }
            let x = eval(if *x_left { left } else { right }, ctx, frame)?;
            match &x {
                Value::Str(s) => {
                    let hit = set.is_match(s.as_str());
                    Ok(Value::Bool(if *op == ClosureOp::Any { hit } else { !hit }))
                }
                _ => closure(*op, list, body, None, ctx, frame),
            }
        }
        Node::MatchesConst { left, re } => match eval(left, ctx, frame)? {
            Value::Str(s) => Ok(Value::Bool(re.is_match(&s))),
            other => Err(type_err("matches", &other, &Value::str(""))),
        },
        Node::Binary { op, left, right } => {
            let l = eval(left, ctx, frame)?;
            let r = eval(right, ctx, frame)?;
            Ok(binary(*op, l, r)?)
        }
        Node::Let { value, body } => {
            let v = eval(value, ctx, frame)?;
            let f = Frame {
                parent: frame,
                value: v,
                index: 0,
                acc: Value::Nil,
            };
            eval(body, ctx, Some(&f))
        }
        Node::Chain(inner) => match eval(inner, ctx, frame) {
            Err(Fail::NilChain) => Ok(Value::Nil),
            other => other,
        },
    }
}

/// Evaluate call arguments into a stack array (no allocation for up to four arguments).
fn with_args<'a>(
    args: &'a [Node],
    ctx: &Ctx<'_, 'a>,
    frame: Option<&Frame<'_, 'a>>,
    f: impl FnOnce(&[Value<'a>]) -> R<'a>,
) -> R<'a> {
    match args {
        [] => f(&[]),
        [a] => {
            let a = eval(a, ctx, frame)?;
            f(&[a])
        }
        [a, b] => {
            let a = eval(a, ctx, frame)?;
            let b = eval(b, ctx, frame)?;
            f(&[a, b])
        }
        [a, b, c] => {
            let a = eval(a, ctx, frame)?;
            let b = eval(b, ctx, frame)?;
            let c = eval(c, ctx, frame)?;
            f(&[a, b, c])
        }
        [a, b, c, d] => {
            let a = eval(a, ctx, frame)?;
            let b = eval(b, ctx, frame)?;
            let c = eval(c, ctx, frame)?;
            let d = eval(d, ctx, frame)?;
            f(&[a, b, c, d])
        }
        more => {
            let mut v = Vec::with_capacity(more.len());
            for n in more {
                v.push(eval(n, ctx, frame)?);
            }
            f(&v)
        }
    }
}

/// The elements a closure builtin iterates over.
fn elements<'a>(v: &Value<'a>) -> Result<Option<List<'a>>, EvalError> {
    Ok(match v {
        Value::List(l) => Some(l.clone()),
        Value::Nil => None,
        Value::Map(m) => Some(List::from(
            m.entries().into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
        )),
        Value::Object(o) => match o.to_value() {
            Some(inner) => return elements(&inner),
            None => {
                return Err(EvalError::function(
                    "iterate",
                    format!("cannot iterate over {}", o.type_name()),
                ));
            }
        },
        Value::Shared(o) => match o.to_value() {
            Some(inner) => return elements(&inner.into_owned()),
            None => {
                return Err(EvalError::function(
                    "iterate",
                    format!("cannot iterate over {}", o.type_name()),
                ));
            }
        },
        other => {
            return Err(EvalError::function(
                "iterate",
                format!("cannot iterate over {}", other.type_name()),
            ));
        }
    })
}

fn closure<'a>(
    op: ClosureOp,
    list: &'a Node,
    body: &'a Node,
    extra: Option<&'a Node>,
    ctx: &Ctx<'_, 'a>,
    frame: Option<&Frame<'_, 'a>>,
) -> R<'a> {
    let lv = eval(list, ctx, frame)?;
    let items = elements(&lv)?;
    let n = items.as_ref().map_or(0, |l| l.len());
    let item = |i: usize| items.as_ref().and_then(|l| l.get(i)).unwrap_or(Value::Nil);
    let run = |i: usize, acc: Value<'a>| -> R<'a> {
        let f = Frame {
            parent: frame,
            value: item(i),
            index: i,
            acc,
        };
        eval(body, ctx, Some(&f))
    };
    let test = |i: usize| -> Result<bool, Fail> { want_bool(&run(i, Value::Nil)?, "a predicate") };
    match op {
        ClosureOp::All => {
            for i in 0..n {
                if !test(i)? {
                    return Ok(Value::Bool(false));
                }
            }
            Ok(Value::Bool(true))
        }
        ClosureOp::Any => {
            for i in 0..n {
                if test(i)? {
                    return Ok(Value::Bool(true));
                }
            }
            Ok(Value::Bool(false))
        }
        ClosureOp::None => {
            for i in 0..n {
                if test(i)? {
                    return Ok(Value::Bool(false));
                }
            }
            Ok(Value::Bool(true))
        }
        ClosureOp::One => {
            let mut count = 0;
            for i in 0..n {
                if test(i)? {
                    count += 1;
                    if count > 1 {
                        return Ok(Value::Bool(false));
                    }
                }
            }
            Ok(Value::Bool(count == 1))
        }
        ClosureOp::Count => {
            let mut count = 0;
            for i in 0..n {
                if test(i)? {
                    count += 1;
                }
            }
            Ok(Value::Int(count))
        }
        ClosureOp::Filter => {
            let mut out = Vec::new();
            for i in 0..n {
                if test(i)? {
                    out.push(item(i));
                }
            }
            Ok(Value::list(out))
        }
        ClosureOp::Map => {
            let mut out = Vec::with_capacity(n);
            for i in 0..n {
                out.push(run(i, Value::Nil)?);
            }
            Ok(Value::list(out))
        }
        ClosureOp::Sum => {
            let mut acc = Value::Int(0);
            for i in 0..n {
                acc = binary(BinOp::Add, acc, run(i, Value::Nil)?)?;
            }
            Ok(acc)
        }
        ClosureOp::Find | ClosureOp::FindIndex => {
            for i in 0..n {
                if test(i)? {
                    return Ok(if op == ClosureOp::Find {
                        item(i)
                    } else {
                        Value::Int(i as i64)
                    });
                }
            }
            Ok(if op == ClosureOp::Find {
                Value::Nil
            } else {
                Value::Int(-1)
            })
        }
        ClosureOp::FindLast | ClosureOp::FindLastIndex => {
            for i in (0..n).rev() {
                if test(i)? {
                    return Ok(if op == ClosureOp::FindLast {
                        item(i)
                    } else {
                        Value::Int(i as i64)
                    });
                }
            }
            Ok(if op == ClosureOp::FindLast {
                Value::Nil
            } else {
                Value::Int(-1)
            })
        }
        ClosureOp::GroupBy => {
            let mut groups: Vec<(Str<'a>, Vec<Value<'a>>)> = Vec::new();
            for i in 0..n {
                let key = run(i, Value::Nil)?;
                let key = match key {
                    Value::Str(s) => s,
                    other => Str::from(other.to_string()),
                };
                match groups.iter_mut().find(|(k, _)| k.as_str() == key.as_str()) {
                    Some(g) => g.1.push(item(i)),
                    None => groups.push((key, vec![item(i)])),
                }
            }
            Ok(Value::map(
                groups
                    .into_iter()
                    .map(|(k, v)| (k, Value::list(v)))
                    .collect(),
            ))
        }
        ClosureOp::SortBy => {
            let mut keyed = Vec::with_capacity(n);
            for i in 0..n {
                keyed.push((run(i, Value::Nil)?, item(i)));
            }
            let desc = match extra {
                Some(e) => eval(e, ctx, frame)?.as_str() == Some("desc"),
                None => false,
            };
            let mut failed = None;
            keyed.sort_by(|a, b| match compare(&a.0, &b.0) {
                Some(o) => {
                    if desc {
                        o.reverse()
                    } else {
                        o
                    }
                }
                None => {
                    failed = Some(type_err("sortBy", &a.0, &b.0));
                    Ordering::Equal
                }
            });
            if let Some(e) = failed {
                return Err(e);
            }
            Ok(Value::list(keyed.into_iter().map(|(_, v)| v).collect()))
        }
        ClosureOp::Reduce => {
            let (mut acc, start) = match extra {
                Some(e) => (eval(e, ctx, frame)?, 0),
                None => {
                    if n == 0 {
                        return Err(Fail::from(EvalError::function(
                            "reduce",
                            "reduce of empty list with no initial value",
                        )));
                    }
                    (item(0), 1)
                }
            };
            for i in start..n {
                acc = run(i, acc)?;
            }
            Ok(acc)
        }
    }
}

fn equal_const(a: &Value<'_>, c: &Const) -> bool {
    match (a, c) {
        (Value::Str(s), Const::Str(t)) => s.as_str() == &**t,
        (Value::Str(_), _) => false,
        _ => equal(a, &c.value()),
    }
}

fn as_f64(v: &Value<'_>) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    }
}

pub(crate) fn binary<'a>(op: BinOp, l: Value<'a>, r: Value<'a>) -> Result<Value<'a>, Fail> {
    use Value::*;
    Ok(match op {
        BinOp::Eq => Bool(equal(&l, &r)),
        BinOp::Ne => Bool(!equal(&l, &r)),
        BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
            let Some(o) = compare(&l, &r) else {
                // NaN compares false, other mismatches are errors.
                if as_f64(&l).is_some() && as_f64(&r).is_some() {
                    return Ok(Bool(false));
                }
                return Err(type_err(op.symbol(), &l, &r));
            };
            Bool(match op {
                BinOp::Lt => o == Ordering::Less,
                BinOp::Le => o != Ordering::Greater,
                BinOp::Gt => o == Ordering::Greater,
                _ => o != Ordering::Less,
            })
        }
        BinOp::Add => match (&l, &r) {
            (Int(x), Int(y)) => Int(x.wrapping_add(*y)),
            (Str(x), Str(y)) => {
                let mut s = String::with_capacity(x.len() + y.len());
                s.push_str(x);
                s.push_str(y);
                Value::string(s)
            }
            (List(x), List(y)) => Value::list(x.iter().chain(y.iter()).collect()),
            (Time(t), Duration(d)) | (Duration(d), Time(t)) => Time(add_duration(t, *d)),
            (Duration(x), Duration(y)) => Duration(x.wrapping_add(*y)),
            _ => match (as_f64(&l), as_f64(&r)) {
                (Some(x), Some(y)) => Float(x + y),
                _ => return Err(type_err("+", &l, &r)),
            },
        },
        BinOp::Sub => match (&l, &r) {
            (Int(x), Int(y)) => Int(x.wrapping_sub(*y)),
            (Time(a), Time(b)) => {
                let d = a.ts.as_nanosecond() - b.ts.as_nanosecond();
                Duration(d.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
            }
            (Time(t), Duration(d)) => Time(add_duration(t, d.wrapping_neg())),
            (Duration(x), Duration(y)) => Duration(x.wrapping_sub(*y)),
            _ => match (as_f64(&l), as_f64(&r)) {
                (Some(x), Some(y)) => Float(x - y),
                _ => return Err(type_err("-", &l, &r)),
            },
        },
        BinOp::Mul => match (&l, &r) {
            (Int(x), Int(y)) => Int(x.wrapping_mul(*y)),
            (Duration(d), Int(i)) | (Int(i), Duration(d)) => Duration(d.wrapping_mul(*i)),
            _ => match (as_f64(&l), as_f64(&r)) {
                (Some(x), Some(y)) => Float(x * y),
                _ => return Err(type_err("*", &l, &r)),
            },
        },
        BinOp::Div => match (as_f64(&l), as_f64(&r)) {
            // expr's `/` always divides as float64 (1/2 == 0.5, 1/0 == +Inf).
            (Some(x), Some(y)) => Float(x / y),
            _ => return Err(type_err("/", &l, &r)),
        },
        BinOp::Mod => match (&l, &r) {
            (Int(_), Int(0)) => return Err(Fail::from(EvalError::DivideByZero)),
            (Int(x), Int(y)) => Int(x.wrapping_rem(*y)),
            _ => return Err(type_err("%", &l, &r)),
        },
        BinOp::Pow => match (as_f64(&l), as_f64(&r)) {
            (Some(x), Some(y)) => Float(x.powf(y)),
            _ => return Err(type_err("**", &l, &r)),
        },
        BinOp::Range => match (&l, &r) {
            (Int(a), Int(b)) => {
                if b.saturating_sub(*a) > 1_000_000 {
                    return Err(Fail::from(EvalError::function("..", "range too large")));
                }
                Value::list((*a..=*b).map(Int).collect())
            }
            _ => return Err(type_err("..", &l, &r)),
        },
        BinOp::In => Bool(contains_value(&r, &l)?),
        BinOp::Contains | BinOp::StartsWith | BinOp::EndsWith => match (&l, &r) {
            (Str(a), Str(b)) => Bool(match op {
                BinOp::Contains => a.contains(b.as_str()),
                BinOp::StartsWith => a.starts_with(b.as_str()),
                _ => a.ends_with(b.as_str()),
            }),
            _ => return Err(type_err(op.symbol(), &l, &r)),
        },
        BinOp::Matches => match (&l, &r) {
            (Str(a), Str(p)) => {
                let re = crate::re::go_regex(p).map_err(|e| {
                    Fail::from(EvalError::Regex {
                        pattern: p.to_string(),
                        message: e.to_string(),
                    })
                })?;
                Bool(re.is_match(a))
            }
            _ => return Err(type_err("matches", &l, &r)),
        },
    })
}

fn add_duration(t: &Time, d: i64) -> Time {
    let ts =
        t.ts.checked_add(jiff::SignedDuration::from_nanos(d))
            .unwrap_or(t.ts);
    Time {
        ts,
        offset: t.offset,
    }
}

/// `needle in haystack`: list element (by `==`), map key, object field.
fn contains_value(hay: &Value<'_>, needle: &Value<'_>) -> Result<bool, Fail> {
    match hay {
        Value::List(l) => Ok(l.iter().any(|e| equal(&e, needle))),
        Value::Map(m) => match needle {
            Value::Str(k) => Ok(m.get(k).is_some()),
            _ => Ok(false),
        },
        Value::Nil => Ok(false),
        Value::Object(o) => {
            if let Value::Str(k) = needle
                && let Some(has) = o.has_key(k)
            {
                return Ok(has);
            }
            match o.to_value() {
                Some(v) => contains_value(&v, needle),
                None => match needle {
                    Value::Str(k) => Ok(o.field(k).is_some_and(|v| !v.is_nil())),
                    _ => Err(type_err("in", needle, hay)),
                },
            }
        }
        Value::Shared(o) => match o.to_value() {
            Some(v) => contains_value(&v.into_owned(), needle),
            None => Err(type_err("in", needle, hay)),
        },
        _ => Err(type_err("in", needle, hay)),
    }
}

/// `base.name`.
#[inline]
pub(crate) fn field<'a>(base: Value<'a>, name: &str) -> Result<Value<'a>, EvalError> {
    match base {
        Value::Object(o) => o.field(name).ok_or_else(|| EvalError::NoField {
            type_name: o.type_name().to_string(),
            field: name.to_string(),
        }),
        Value::Shared(o) => match o.field(name) {
            Some(v) => Ok(v.into_owned()),
            None => Err(EvalError::NoField {
                type_name: o.type_name().to_string(),
                field: name.to_string(),
            }),
        },
        Value::Map(m) => Ok(m.get(name).unwrap_or(Value::Nil)),
        other => Err(EvalError::NoField {
            type_name: other.type_name().to_string(),
            field: name.to_string(),
        }),
    }
}

fn list_index(len: usize, i: i64) -> Result<usize, EvalError> {
    let j = if i < 0 { i + len as i64 } else { i };
    if j < 0 || j >= len as i64 {
        return Err(EvalError::IndexOutOfRange { index: i, len });
    }
    Ok(j as usize)
}

fn int_of(v: &Value<'_>) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::Float(f) if f.fract() == 0.0 => Some(*f as i64),
        _ => None,
    }
}

/// `base[idx]`.
pub(crate) fn index_value<'a>(base: Value<'a>, idx: &Value<'_>) -> Result<Value<'a>, EvalError> {
    match base {
        Value::List(l) => {
            let Some(i) = int_of(idx) else {
                return Err(EvalError::Operator {
                    op: "[]",
                    left: "slice".into(),
                    right: idx.type_name().to_string(),
                });
            };
            let j = list_index(l.len(), i)?;
            Ok(l.get(j).unwrap_or(Value::Nil))
        }
        Value::Map(m) => match idx {
            Value::Str(k) => Ok(m.get(k).unwrap_or(Value::Nil)),
            other => Ok(m.get(&other.to_string()).unwrap_or(Value::Nil)),
        },
        Value::Str(s) => {
            let Some(i) = int_of(idx) else {
                return Err(EvalError::Operator {
                    op: "[]",
                    left: "string".into(),
                    right: idx.type_name().to_string(),
                });
            };
            let chars: Vec<char> = s.chars().collect();
            let j = list_index(chars.len(), i)?;
            Ok(Value::string(chars[j].to_string()))
        }
        Value::Object(o) => {
            if let Some(i) = int_of(idx)
                && let Some(inner) = o.to_value()
                && matches!(inner, Value::List(_))
            {
                return index_value(inner, &Value::Int(i));
            }
            o.index(idx).ok_or_else(|| EvalError::NoField {
                type_name: o.type_name().to_string(),
                field: idx.to_string(),
            })
        }
        Value::Shared(o) => match o.index(idx) {
            Some(v) => Ok(v.into_owned()),
            None => Err(EvalError::NoField {
                type_name: o.type_name().to_string(),
                field: idx.to_string(),
            }),
        },
        other => Err(EvalError::NoField {
            type_name: other.type_name().to_string(),
            field: idx.to_string(),
        }),
    }
}

fn slice<'a>(
    base: Value<'a>,
    from: Option<Value<'a>>,
    to: Option<Value<'a>>,
) -> Result<Value<'a>, EvalError> {
    let bound = |v: Option<Value<'a>>, len: usize, default: usize| -> Result<usize, EvalError> {
        match v {
            None => Ok(default),
            Some(v) => {
                let Some(i) = int_of(&v) else {
                    return Err(EvalError::Operator {
                        op: "[:]",
                        left: "slice".into(),
                        right: v.type_name().to_string(),
                    });
                };
                // expr clamps slice bounds and counts negative ones from the end.
                let j = if i < 0 { i + len as i64 } else { i };
                Ok(j.clamp(0, len as i64) as usize)
            }
        }
    };
    match base {
        Value::List(l) => {
            let len = l.len();
            let a = bound(from, len, 0)?;
            let b = bound(to, len, len)?.max(a);
            Ok(Value::list((a..b).filter_map(|i| l.get(i)).collect()))
        }
        Value::Str(s) => {
            let len = s.len();
            let a = bound(from, len, 0)?;
            let b = bound(to, len, len)?.max(a);
            match s {
                Str::Ref(r) => Ok(Value::str(r.get(a..b).unwrap_or(""))),
                Str::Rc(r) => Ok(Value::string(r.get(a..b).unwrap_or("").to_string())),
            }
        }
        Value::Object(o) => match o.to_value() {
            Some(inner) => slice(inner, from, to),
            None => Err(EvalError::Operator {
                op: "[:]",
                left: o.type_name().to_string(),
                right: String::new(),
            }),
        },
        other => Err(EvalError::Operator {
            op: "[:]",
            left: other.type_name().to_string(),
            right: String::new(),
        }),
    }
}

/// `base.Name(args)`: host objects dispatch themselves; time and duration have Go's methods.
fn method<'a>(base: Value<'a>, name: &str, args: &[Value<'a>]) -> Result<Value<'a>, EvalError> {
    match base {
        Value::Object(o) => match o.call(name, args) {
            Some(r) => r,
            None => Err(EvalError::NoMethod {
                type_name: o.type_name().to_string(),
                method: name.to_string(),
            }),
        },
        Value::Shared(o) => match o.call(name, args) {
            Some(r) => r.map(Value::into_owned),
            None => Err(EvalError::NoMethod {
                type_name: o.type_name().to_string(),
                method: name.to_string(),
            }),
        },
        Value::Time(t) => builtins::time_method(&t, name, args),
        Value::Duration(d) => builtins::duration_method(d, name),
        other => Err(EvalError::NoMethod {
            type_name: other.type_name().to_string(),
            method: name.to_string(),
        }),
    }
}

impl Value<'_> {
    /// A copy that borrows nothing (strings and lists copied, objects turned into their
    /// [`Object::to_value`] view, else nil).
    pub fn into_owned(self) -> Value<'static> {
        match self {
            Value::Nil => Value::Nil,
            Value::Bool(b) => Value::Bool(b),
            Value::Int(i) => Value::Int(i),
            Value::Float(f) => Value::Float(f),
            Value::Str(Str::Ref(s)) => Value::Str(Str::Rc(Rc::from(s))),
            Value::Str(Str::Rc(s)) => Value::Str(Str::Rc(s)),
            Value::List(l) => Value::list(l.iter().map(Value::into_owned).collect()),
            Value::Map(m) => Value::Map(Map::from(
                m.entries()
                    .into_iter()
                    .map(|(k, v)| (Str::Rc(Rc::from(k.as_str())), v.into_owned()))
                    .collect::<Vec<_>>(),
            )),
            Value::Time(t) => Value::Time(t),
            Value::Duration(d) => Value::Duration(d),
            Value::Object(o) => o.to_value().map(Value::into_owned).unwrap_or(Value::Nil),
            Value::Shared(o) => o.to_value().map(Value::into_owned).unwrap_or(Value::Nil),
        }
    }
}
