//! expr's own builtin functions (`len`, `int`, `upper`, `split`, `duration`, `toJSON` ...),
//! the closure builtins' names (`any`, `filter`, `map` ...; their loop lives in `eval`), and
//! the methods of Go's `time.Time` and `time.Duration` that hub expressions call
//! (`evt.Time.Hour()`, `.Weekday().String()`, `d.Seconds()`).
//!
//! Owns: these functions' semantics, after expr's `builtin/` package and Go's `time`.
//! Does not own: CrowdSec's helpers (`helpers`).

use crate::format::{go_duration, rfc3339_nano};
use crate::ops::{compare, equal, go_lower, go_upper, list_of, sub};
use crate::value::{Object, Str, Time, Value};
use crate::{Arity, EvalError};

/// Builtins taking a predicate (`{ ... }`) as second argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClosureOp {
    All,
    Any,
    None,
    One,
    Filter,
    Map,
    Count,
    Sum,
    Find,
    FindIndex,
    FindLast,
    FindLastIndex,
    GroupBy,
    SortBy,
    Reduce,
}

impl ClosureOp {
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "all" => ClosureOp::All,
            "any" => ClosureOp::Any,
            "none" => ClosureOp::None,
            "one" => ClosureOp::One,
            "filter" => ClosureOp::Filter,
            "map" => ClosureOp::Map,
            "count" => ClosureOp::Count,
            "sum" => ClosureOp::Sum,
            "find" => ClosureOp::Find,
            "findIndex" => ClosureOp::FindIndex,
            "findLast" => ClosureOp::FindLast,
            "findLastIndex" => ClosureOp::FindLastIndex,
            "groupBy" => ClosureOp::GroupBy,
            "sortBy" => ClosureOp::SortBy,
            "reduce" => ClosureOp::Reduce,
            _ => return None,
        })
    }

    /// (fewest, most) arguments.
    pub(crate) fn arity(self) -> (usize, usize) {
        match self {
            ClosureOp::Count | ClosureOp::Sum => (1, 2),
            ClosureOp::SortBy | ClosureOp::Reduce => (2, 3),
            _ => (2, 2),
        }
    }
}

macro_rules! builtins {
    ($($variant:ident $name:literal $arity:expr;)*) => {
        /// expr's plain builtin functions.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum Builtin { $($variant,)* }

        impl Builtin {
            pub(crate) fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($name => Some(Builtin::$variant),)*
                    _ => None,
                }
            }

            pub(crate) fn name(self) -> &'static str {
                match self { $(Builtin::$variant => $name,)* }
            }

            pub(crate) fn arity(self) -> Arity {
                match self { $(Builtin::$variant => $arity,)* }
            }
        }
    };
}

builtins! {
    Len "len" Arity::exact(1);
    Type "type" Arity::exact(1);
    Abs "abs" Arity::exact(1);
    Ceil "ceil" Arity::exact(1);
    Floor "floor" Arity::exact(1);
    Round "round" Arity::exact(1);
    Int "int" Arity::exact(1);
    Float "float" Arity::exact(1);
    String "string" Arity::exact(1);
    Trim "trim" Arity::range(1, 2);
    TrimPrefix "trimPrefix" Arity::range(1, 2);
    TrimSuffix "trimSuffix" Arity::range(1, 2);
    Upper "upper" Arity::exact(1);
    Lower "lower" Arity::exact(1);
    Split "split" Arity::range(2, 3);
    SplitAfter "splitAfter" Arity::range(2, 3);
    Replace "replace" Arity::exact(3);
    Repeat "repeat" Arity::exact(2);
    Join "join" Arity::range(1, 2);
    IndexOf "indexOf" Arity::exact(2);
    LastIndexOf "lastIndexOf" Arity::exact(2);
    HasPrefix "hasPrefix" Arity::exact(2);
    HasSuffix "hasSuffix" Arity::exact(2);
    Max "max" Arity::at_least(1);
    Min "min" Arity::at_least(1);
    Mean "mean" Arity::at_least(1);
    Median "median" Arity::at_least(1);
    ToJson "toJSON" Arity::exact(1);
    FromJson "fromJSON" Arity::exact(1);
    ToBase64 "toBase64" Arity::exact(1);
    FromBase64 "fromBase64" Arity::exact(1);
    Now "now" Arity::exact(0);
    Duration "duration" Arity::exact(1);
    Date "date" Arity::range(1, 3);
    First "first" Arity::exact(1);
    Last "last" Arity::exact(1);
    Get "get" Arity::exact(2);
    Keys "keys" Arity::exact(1);
    Values "values" Arity::exact(1);
    Concat "concat" Arity::at_least(1);
    Flatten "flatten" Arity::exact(1);
    Uniq "uniq" Arity::exact(1);
    Reverse "reverse" Arity::exact(1);
    Sort "sort" Arity::range(1, 2);
}

fn bad(b: Builtin, msg: impl Into<String>) -> EvalError {
    EvalError::function(b.name(), msg)
}

fn want_str<'v, 'a>(b: Builtin, v: &'v Value<'a>) -> Result<&'v Str<'a>, EvalError> {
    match v {
        Value::Str(s) => Ok(s),
        other => Err(bad(
            b,
            format!("expected string, got {}", other.type_name()),
        )),
    }
}

/// expr's `len`: runes of a string, elements of a list or map.
pub(crate) fn len_of(v: &Value<'_>) -> Option<usize> {
    match v {
        Value::Str(s) => Some(s.chars().count()),
        Value::List(l) => Some(l.len()),
        Value::Map(m) => Some(m.len()),
        Value::Object(o) => o.to_value().and_then(|v| len_of(&v)),
        Value::Shared(o) => o.to_value().and_then(|v| len_of(&v)),
        _ => None,
    }
}

pub(crate) fn call<'a>(b: Builtin, args: &[Value<'a>]) -> Result<Value<'a>, EvalError> {
    let a0 = args.first().cloned().unwrap_or(Value::Nil);
    Ok(match b {
        Builtin::Len => match len_of(&a0) {
            Some(n) => Value::Int(n as i64),
            None => {
                return Err(bad(
                    b,
                    format!("invalid argument for len (type {})", a0.type_name()),
                ));
            }
        },
        Builtin::Type => Value::str(match &a0 {
            Value::Nil => "nil",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::List(_) => "array",
            Value::Map(_) => "map",
            Value::Time(_) => "time.Time",
            Value::Duration(_) => "time.Duration",
            Value::Object(_) | Value::Shared(_) => "struct",
        }),
        Builtin::Abs => match a0 {
            Value::Int(i) => Value::Int(i.wrapping_abs()),
            Value::Float(f) => Value::Float(f.abs()),
            other => {
                return Err(bad(
                    b,
                    format!("invalid argument (type {})", other.type_name()),
                ));
            }
        },
        Builtin::Ceil | Builtin::Floor | Builtin::Round => match a0 {
            Value::Int(i) => Value::Float(i as f64),
            Value::Float(f) => Value::Float(match b {
                Builtin::Ceil => f.ceil(),
                Builtin::Floor => f.floor(),
                _ => f.round(),
            }),
            other => {
                return Err(bad(
                    b,
                    format!("invalid argument (type {})", other.type_name()),
                ));
            }
        },
        Builtin::Int => to_int(&a0).map_err(|m| bad(b, m))?,
        Builtin::Float => to_float(&a0).map_err(|m| bad(b, m))?,
        Builtin::String => match a0 {
            Value::Str(s) => Value::Str(s),
            other => Value::string(other.to_string()),
        },
        Builtin::Trim | Builtin::TrimPrefix | Builtin::TrimSuffix => {
            let s = want_str(b, &a0)?;
            let cut = args.get(1).map(|c| want_str(b, c)).transpose()?;
            let out = match (b, cut) {
                (Builtin::Trim, None) => s.trim(),
                (Builtin::Trim, Some(c)) => s.trim_matches(|ch| c.contains(ch)),
                (Builtin::TrimPrefix, None) => s.trim_start(),
                (Builtin::TrimPrefix, Some(c)) => s.strip_prefix(c.as_str()).unwrap_or(s),
                (_, None) => s.trim_end(),
                (_, Some(c)) => s.strip_suffix(c.as_str()).unwrap_or(s),
            };
            sub(s, out)
        }
        Builtin::Upper => Value::string(go_upper(want_str(b, &a0)?)),
        Builtin::Lower => Value::string(go_lower(want_str(b, &a0)?)),
        Builtin::Split | Builtin::SplitAfter => {
            let s = want_str(b, &a0)?;
            let sep = want_str(b, &args[1])?;
            let n = match args.get(2) {
                Some(Value::Int(n)) => *n,
                Some(other) => {
                    return Err(bad(b, format!("expected int, got {}", other.type_name())));
                }
                None => -1,
            };
            Value::list(go_split(s, sep, n, b == Builtin::SplitAfter))
        }
        Builtin::Replace => {
            let s = want_str(b, &a0)?;
            let old = want_str(b, &args[1])?;
            let new = want_str(b, &args[2])?;
            Value::string(s.replace(old.as_str(), new))
        }
        Builtin::Repeat => {
            let s = want_str(b, &a0)?;
            match args[1] {
                Value::Int(n)
                    if (0..=1_000_000).contains(&n)
                        && s.len().saturating_mul(n as usize) <= 64 << 20 =>
                {
                    Value::string(s.repeat(n as usize))
                }
                _ => return Err(bad(b, "count must be a small non-negative int")),
            }
        }
        Builtin::Join => {
            let Some(l) = list_of(&a0) else {
                return Err(bad(b, "expected a list"));
            };
            let sep = match args.get(1) {
                Some(v) => want_str(b, v)?.to_string(),
                None => String::new(),
            };
            let mut out = String::new();
            for (i, e) in l.iter().enumerate() {
                if i > 0 {
                    out.push_str(&sep);
                }
                match e {
                    Value::Str(s) => out.push_str(&s),
                    other => {
                        return Err(bad(
                            b,
                            format!("expected strings, got {}", other.type_name()),
                        ));
                    }
                }
            }
            Value::string(out)
        }
        Builtin::IndexOf | Builtin::LastIndexOf => {
            let s = want_str(b, &a0)?;
            let needle = want_str(b, &args[1])?;
            let byte = if b == Builtin::IndexOf {
                s.find(needle.as_str())
            } else {
                s.rfind(needle.as_str())
            };
            // expr returns the index in runes.
            Value::Int(byte.map_or(-1, |i| s[..i].chars().count() as i64))
        }
        Builtin::HasPrefix => {
            Value::Bool(want_str(b, &a0)?.starts_with(want_str(b, &args[1])?.as_str()))
        }
        Builtin::HasSuffix => {
            Value::Bool(want_str(b, &a0)?.ends_with(want_str(b, &args[1])?.as_str()))
        }
        Builtin::Max | Builtin::Min => {
            let items = numbers(b, args)?;
            let mut best: Option<Value<'a>> = None;
            for v in items {
                best = Some(match best {
                    None => v,
                    Some(cur) => {
                        let o =
                            compare(&v, &cur).ok_or_else(|| bad(b, "arguments must be numbers"))?;
                        let better = if b == Builtin::Max {
                            o.is_gt()
                        } else {
                            o.is_lt()
                        };
                        if better { v } else { cur }
                    }
                });
            }
            best.unwrap_or(Value::Nil)
        }
        Builtin::Mean | Builtin::Median => {
            let mut xs: Vec<f64> = Vec::new();
            for v in numbers(b, args)? {
                match v {
                    Value::Int(i) => xs.push(i as f64),
                    Value::Float(f) => xs.push(f),
                    other => {
                        return Err(bad(
                            b,
                            format!("expected numbers, got {}", other.type_name()),
                        ));
                    }
                }
            }
            if xs.is_empty() {
                return Ok(Value::Float(0.0));
            }
            if b == Builtin::Mean {
                Value::Float(xs.iter().sum::<f64>() / xs.len() as f64)
            } else {
                xs.sort_by(|a, b| a.total_cmp(b));
                let n = xs.len();
                Value::Float(if n % 2 == 1 {
                    xs[n / 2]
                } else {
                    (xs[n / 2 - 1] + xs[n / 2]) / 2.0
                })
            }
        }
        Builtin::ToJson => Value::string(crate::helpers::go_json(&a0, true)),
        Builtin::FromJson => {
            let s = want_str(b, &a0)?;
            let j: serde_json::Value =
                serde_json::from_str(s).map_err(|e| bad(b, e.to_string()))?;
            json_to_value(&j)
        }
        Builtin::ToBase64 => Value::string(base64_encode(want_str(b, &a0)?.as_bytes())),
        Builtin::FromBase64 => {
            let bytes =
                base64_decode(want_str(b, &a0)?).ok_or_else(|| bad(b, "illegal base64 data"))?;
            Value::string(String::from_utf8_lossy(&bytes).into_owned())
        }
        Builtin::Now => Value::Time(Time::utc(jiff::Timestamp::now())),
        Builtin::Duration => {
            let s = want_str(b, &a0)?;
            Value::Duration(parse_go_duration(s).map_err(|m| bad(b, m))?)
        }
        Builtin::Date => {
            let s = want_str(b, &a0)?;
            let t = match args.get(1) {
                Some(layout) => crate::helpers::time::parse_go_layout(s, want_str(b, layout)?),
                None => crate::helpers::time::parse_any(s),
            };
            Value::Time(
                t.ok_or_else(|| bad(b, format!("cannot parse {:?} as a date", s.as_str())))?,
            )
        }
        Builtin::First | Builtin::Last => match list_of(&a0) {
            Some(l) if !l.is_empty() => {
                let i = if b == Builtin::First { 0 } else { l.len() - 1 };
                l.get(i).unwrap_or(Value::Nil)
            }
            _ => Value::Nil,
        },
        Builtin::Get => {
            let key = &args[1];
            match &a0 {
                Value::List(l) => match key {
                    Value::Int(i) => {
                        let j = if *i < 0 { *i + l.len() as i64 } else { *i };
                        if j >= 0 {
                            l.get(j as usize).unwrap_or(Value::Nil)
                        } else {
                            Value::Nil
                        }
                    }
                    _ => Value::Nil,
                },
                Value::Map(m) => key.as_str().and_then(|k| m.get(k)).unwrap_or(Value::Nil),
                Value::Object(o) => o.index(key).unwrap_or(Value::Nil),
                _ => Value::Nil,
            }
        }
        Builtin::Keys | Builtin::Values => {
            let m = match &a0 {
                Value::Map(m) => m.clone(),
                Value::Object(o) => match o.to_value() {
                    Some(Value::Map(m)) => m,
                    _ => return Err(bad(b, "expected a map")),
                },
                _ => return Err(bad(b, "expected a map")),
            };
            Value::list(
                m.entries()
                    .into_iter()
                    .map(|(k, v)| if b == Builtin::Keys { Value::Str(k) } else { v })
                    .collect(),
            )
        }
        Builtin::Concat => {
            let mut out = Vec::new();
            for a in args {
                let Some(l) = list_of(a) else {
                    return Err(bad(b, "expected lists"));
                };
                out.extend(l.iter());
            }
            Value::list(out)
        }
        Builtin::Flatten => {
            fn flat<'a>(v: Value<'a>, out: &mut Vec<Value<'a>>) {
                match list_of(&v) {
                    Some(l) => l.iter().for_each(|e| flat(e, out)),
                    None => out.push(v),
                }
            }
            let mut out = Vec::new();
            flat(a0, &mut out);
            Value::list(out)
        }
        Builtin::Uniq => {
            let Some(l) = list_of(&a0) else {
                return Err(bad(b, "expected a list"));
            };
            let mut out: Vec<Value<'a>> = Vec::new();
            for e in l.iter() {
                if !out.iter().any(|o| equal(o, &e)) {
                    out.push(e);
                }
            }
            Value::list(out)
        }
        Builtin::Reverse => {
            let Some(l) = list_of(&a0) else {
                return Err(bad(b, "expected a list"));
            };
            let mut v: Vec<_> = l.iter().collect();
            v.reverse();
            Value::list(v)
        }
        Builtin::Sort => {
            let Some(l) = list_of(&a0) else {
                return Err(bad(b, "expected a list"));
            };
            let desc = args.get(1).and_then(|v| v.as_str()) == Some("desc");
            let mut v: Vec<_> = l.iter().collect();
            let mut ok = true;
            v.sort_by(|x, y| {
                let o = compare(x, y).unwrap_or_else(|| {
                    ok = false;
                    std::cmp::Ordering::Equal
                });
                if desc { o.reverse() } else { o }
            });
            if !ok {
                return Err(bad(b, "elements are not comparable"));
            }
            Value::list(v)
        }
    })
}

/// The numbers of `max(1, 2)` / `max([1, 2])`.
fn numbers<'a>(b: Builtin, args: &[Value<'a>]) -> Result<Vec<Value<'a>>, EvalError> {
    let mut out = Vec::new();
    for a in args {
        match list_of(a) {
            Some(l) => out.extend(l.iter()),
            None => match a {
                Value::Int(_) | Value::Float(_) | Value::Duration(_) => out.push(a.clone()),
                other => {
                    return Err(bad(
                        b,
                        format!("expected numbers, got {}", other.type_name()),
                    ));
                }
            },
        }
    }
    Ok(out)
}

/// expr's `int(x)`.
pub(crate) fn to_int<'a>(v: &Value<'_>) -> Result<Value<'a>, String> {
    Ok(Value::Int(match v {
        Value::Int(i) => *i,
        Value::Float(f) => *f as i64,
        Value::Duration(d) => *d,
        Value::Str(s) => s
            .trim()
            .parse::<i64>()
            .map_err(|_| format!("invalid operation: int({:?})", s.as_str()))?,
        Value::Bool(_) | Value::Nil => {
            return Err(format!("invalid operation: int({})", v.type_name()));
        }
        Value::Object(o) => {
            return o
                .to_value()
                .map(|v| to_int(&v))
                .unwrap_or_else(|| Err(format!("invalid operation: int({})", o.type_name())));
        }
        other => return Err(format!("invalid operation: int({})", other.type_name())),
    }))
}

/// expr's `float(x)`.
pub(crate) fn to_float<'a>(v: &Value<'_>) -> Result<Value<'a>, String> {
    Ok(Value::Float(match v {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        Value::Duration(d) => *d as f64,
        Value::Str(s) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("invalid operation: float({:?})", s.as_str()))?,
        other => return Err(format!("invalid operation: float({})", other.type_name())),
    }))
}

/// Go's `strings.SplitN` / `SplitAfterN` (n < 0: all).
fn go_split<'a>(s: &Str<'a>, sep: &str, n: i64, after: bool) -> Vec<Value<'a>> {
    if n == 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    if sep.is_empty() {
        // Split into UTF-8 characters.
        let chars: Vec<(usize, char)> = s.char_indices().collect();
        for (k, (i, c)) in chars.iter().enumerate() {
            if n > 0 && k as i64 == n - 1 {
                out.push(sub(s, &s[*i..]));
                return out;
            }
            out.push(sub(s, &s[*i..*i + c.len_utf8()]));
        }
        return out;
    }
    let mut rest: &str = s;
    while n < 0 || (out.len() as i64) < n - 1 {
        match rest.find(sep) {
            Some(i) => {
                let end = if after { i + sep.len() } else { i };
                out.push(sub(s, &rest[..end]));
                rest = &rest[i + sep.len()..];
            }
            None => break,
        }
    }
    out.push(sub(s, rest));
    out
}

/// JSON → an owned value tree (numbers are float64, as Go's encoding/json decodes them).
pub(crate) fn json_to_value(j: &serde_json::Value) -> Value<'static> {
    match j {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => Value::string(s.clone()),
        serde_json::Value::Array(a) => Value::list(a.iter().map(json_to_value).collect()),
        serde_json::Value::Object(m) => Value::map(
            m.iter()
                .map(|(k, v)| (Str::from(k.clone()), json_to_value(v)))
                .collect(),
        ),
    }
}

/// Go's `time.ParseDuration` ("1m30s", "1.5h", "300ms"), in nanoseconds.
pub fn parse_go_duration(s: &str) -> Result<i64, String> {
    let orig = s;
    let (neg, mut s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(format!("invalid duration {orig:?}"));
    }
    let mut total: f64 = 0.0;
    while !s.is_empty() {
        let num_end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        if num_end == 0 {
            return Err(format!("invalid duration {orig:?}"));
        }
        let x: f64 = s[..num_end]
            .parse()
            .map_err(|_| format!("invalid duration {orig:?}"))?;
        s = &s[num_end..];
        let unit_end = s
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(s.len());
        let mult = match &s[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("missing unit in duration {orig:?}")),
            u => return Err(format!("unknown unit {u:?} in duration {orig:?}")),
        };
        total += x * mult;
        s = &s[unit_end..];
    }
    if total > i64::MAX as f64 {
        return Err(format!("invalid duration {orig:?}"));
    }
    let d = total.round() as i64;
    Ok(if neg { -d } else { d })
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = B64.iter().position(|b| *b == c)? as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Go's `time.Weekday` / `time.Month`: an int with a `String()` method.
#[derive(Debug)]
struct Named {
    type_name: &'static str,
    n: i64,
    name: &'static str,
}

impl Object for Named {
    fn type_name(&self) -> &str {
        self.type_name
    }
    fn field(&self, _: &str) -> Option<Value<'_>> {
        None
    }
    fn call<'s>(&'s self, method: &str, _: &[Value<'s>]) -> Option<Result<Value<'s>, EvalError>> {
        (method == "String").then(|| Ok(Value::str(self.name)))
    }
    fn to_value(&self) -> Option<Value<'_>> {
        Some(Value::Int(self.n))
    }
}

fn want_args(name: &str, args: &[Value<'_>], n: usize) -> Result<(), EvalError> {
    if args.len() != n {
        return Err(EvalError::function(
            name,
            format!("takes {n} argument(s), {} given", args.len()),
        ));
    }
    Ok(())
}

/// Methods of Go's `time.Time`.
pub(crate) fn time_method<'a>(
    t: &Time,
    name: &str,
    args: &[Value<'a>],
) -> Result<Value<'a>, EvalError> {
    let dt = t.civil();
    let no_args = |v: Value<'a>| -> Result<Value<'a>, EvalError> {
        want_args(name, args, 0)?;
        Ok(v)
    };
    match name {
        "Hour" => no_args(Value::Int(dt.hour() as i64)),
        "Minute" => no_args(Value::Int(dt.minute() as i64)),
        "Second" => no_args(Value::Int(dt.second() as i64)),
        "Nanosecond" => no_args(Value::Int(dt.subsec_nanosecond() as i64)),
        "Day" => no_args(Value::Int(dt.day() as i64)),
        "Year" => no_args(Value::Int(dt.year() as i64)),
        "YearDay" => no_args(Value::Int(dt.day_of_year() as i64)),
        "Month" => {
            let m = dt.month() as i64;
            no_args(Value::Shared(std::rc::Rc::new(Named {
                type_name: "time.Month",
                n: m,
                name: MONTHS[(m as usize).clamp(1, 12) - 1],
            })))
        }
        "Weekday" => {
            let w = dt.weekday().to_sunday_zero_offset() as usize;
            no_args(Value::Shared(std::rc::Rc::new(Named {
                type_name: "time.Weekday",
                n: w as i64,
                name: WEEKDAYS[w],
            })))
        }
        "Unix" => no_args(Value::Int(t.ts.as_second())),
        "UnixMilli" => no_args(Value::Int(t.ts.as_millisecond())),
        "UnixNano" => no_args(Value::Int(t.ts.as_nanosecond() as i64)),
        "IsZero" => no_args(Value::Bool(*t == Time::zero() || t.ts == Time::zero().ts)),
        "UTC" => no_args(Value::Time(Time::utc(t.ts))),
        "Local" => no_args(Value::Time(*t)),
        "String" => no_args(Value::string(Value::Time(*t).to_string())),
        "Sub" | "After" | "Before" | "Equal" => {
            want_args(name, args, 1)?;
            let Value::Time(o) = &args[0] else {
                return Err(EvalError::function(
                    name,
                    format!("expected time.Time, got {}", args[0].type_name()),
                ));
            };
            Ok(match name {
                "Sub" => {
                    let d = t.ts.as_nanosecond() - o.ts.as_nanosecond();
                    Value::Duration(d.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
                }
                "After" => Value::Bool(t.ts > o.ts),
                "Before" => Value::Bool(t.ts < o.ts),
                _ => Value::Bool(t.ts == o.ts),
            })
        }
        "Add" => {
            want_args(name, args, 1)?;
            let d = match &args[0] {
                Value::Duration(d) | Value::Int(d) => *d,
                other => {
                    return Err(EvalError::function(
                        name,
                        format!("expected time.Duration, got {}", other.type_name()),
                    ));
                }
            };
            let ts =
                t.ts.checked_add(jiff::SignedDuration::from_nanos(d))
                    .unwrap_or(t.ts);
            Ok(Value::Time(Time {
                ts,
                offset: t.offset,
            }))
        }
        "Format" => {
            want_args(name, args, 1)?;
            let layout = args[0]
                .as_str()
                .ok_or_else(|| EvalError::function(name, "expected a layout string"))?;
            Ok(Value::string(crate::helpers::time::format_go_layout(
                t, layout,
            )))
        }
        "MarshalText" | "RFC3339" => no_args(Value::string(rfc3339_nano(t))),
        _ => Err(EvalError::NoMethod {
            type_name: "time.Time".into(),
            method: name.to_string(),
        }),
    }
}

/// Methods of Go's `time.Duration`.
pub(crate) fn duration_method<'a>(d: i64, name: &str) -> Result<Value<'a>, EvalError> {
    Ok(match name {
        "Hours" => Value::Float(d as f64 / 3600e9),
        "Minutes" => Value::Float(d as f64 / 60e9),
        "Seconds" => Value::Float(d as f64 / 1e9),
        "Milliseconds" => Value::Int(d / 1_000_000),
        "Microseconds" => Value::Int(d / 1_000),
        "Nanoseconds" => Value::Int(d),
        "Abs" => Value::Duration(d.wrapping_abs()),
        "String" => Value::string(go_duration(d)),
        _ => {
            return Err(EvalError::NoMethod {
                type_name: "time.Duration".into(),
                method: name.to_string(),
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_go_duration("20m"), Ok(20 * 60_000_000_000));
        assert_eq!(parse_go_duration("1h30m"), Ok(5_400_000_000_000));
        assert_eq!(parse_go_duration("1.5s"), Ok(1_500_000_000));
        assert_eq!(parse_go_duration("-300ms"), Ok(-300_000_000));
        assert_eq!(parse_go_duration("0"), Ok(0));
        assert!(parse_go_duration("10").is_err());
        assert!(parse_go_duration("3 days").is_err());
        // Leak speeds and bucket spans as the hub writes them.
        assert_eq!(parse_go_duration("10s"), Ok(10_000_000_000));
        assert_eq!(parse_go_duration("1m30s"), Ok(90_000_000_000));
        assert!(parse_go_duration("x").is_err());
    }

    #[test]
    fn base64_round_trip() {
        for s in ["", "f", "fo", "foo", "foob", "fooba", "foobar"] {
            assert_eq!(
                base64_decode(&base64_encode(s.as_bytes())).unwrap(),
                s.as_bytes()
            );
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
    }
}
