//! CrowdSec's pure expression helpers (`pkg/exprhelpers` in CrowdSec's source): string, JSON,
//! XML, IP, URL, key-value, time and number helpers that need no files and no engine state.
//!
//! Owns: their semantics and their registration ([`register`]). Does not own: helpers that
//! read data files or engine state (`File`, `RegexpInFile`, `GetFromStash`, `LookupFile`,
//! GeoIP, LAPI decisions): the CrowdSec engine registers those, and may override any helper
//! registered here by registering the same name again.
//!
//! Like CrowdSec, helpers that cannot parse their input mostly return the zero value (`""`,
//! `false`) rather than fail; those whose Go version returns an error (`ParseKV`,
//! `UnmarshalJSON`, `Distance`, `B64Decode`, `MedianInterval`) fail the evaluation.

mod json;
mod kv;
mod net;
mod sprintf;
pub mod time;
mod xml;

use crate::ops::{list_of, sub};
use crate::value::{Str, Value};
use crate::{Arity, Compiler, EvalError};

pub(crate) use json::go_json;
pub(crate) use sprintf::sprintf;

/// Argument `i` as a string, or the error expr gives when a Go `string` parameter gets
/// something else.
pub(crate) fn arg_str<'v, 'a>(
    name: &str,
    args: &'v [Value<'a>],
    i: usize,
) -> Result<&'v Str<'a>, EvalError> {
    match args.get(i) {
        Some(Value::Str(s)) => Ok(s),
        Some(other) => Err(EvalError::function(
            name,
            format!(
                "argument {} must be a string, got {}",
                i + 1,
                other.type_name()
            ),
        )),
        None => Err(EvalError::function(
            name,
            format!("missing argument {}", i + 1),
        )),
    }
}

fn arg_f64(name: &str, args: &[Value<'_>], i: usize) -> Result<f64, EvalError> {
    match args.get(i) {
        Some(Value::Float(f)) => Ok(*f),
        Some(Value::Int(n)) => Ok(*n as f64),
        Some(other) => Err(EvalError::function(
            name,
            format!(
                "argument {} must be a float64, got {}",
                i + 1,
                other.type_name()
            ),
        )),
        None => Err(EvalError::function(
            name,
            format!("missing argument {}", i + 1),
        )),
    }
}

fn arg_int(name: &str, args: &[Value<'_>], i: usize) -> Result<i64, EvalError> {
    match args.get(i) {
        Some(Value::Int(n)) => Ok(*n),
        Some(other) => Err(EvalError::function(
            name,
            format!(
                "argument {} must be an int, got {}",
                i + 1,
                other.type_name()
            ),
        )),
        None => Err(EvalError::function(
            name,
            format!("missing argument {}", i + 1),
        )),
    }
}

/// Register every pure helper into `c` (what [`Compiler::new`] does).
pub fn register(c: &mut Compiler) {
    register_strings(c);
    json::register(c);
    xml::register(c);
    net::register(c);
    kv::register(c);
    time::register(c);
    register_misc(c);
    // String helpers with no state: their calls on constants (`Upper('/remote_agent.php')`)
    // are made once at compile time.
    for name in [
        "Upper",
        "Lower",
        "TrimSpace",
        "Trim",
        "TrimLeft",
        "TrimRight",
        "TrimPrefix",
        "TrimSuffix",
    ] {
        c.pure(name);
    }
}

fn register_strings(c: &mut Compiler) {
    c.register_fn("Upper", Arity::exact(1), |a| {
        Ok(Value::string(crate::ops::go_upper(arg_str("Upper", a, 0)?)))
    });
    c.register_fn("Lower", Arity::exact(1), |a| {
        Ok(Value::string(crate::ops::go_lower(arg_str("Lower", a, 0)?)))
    });
    c.register_fn("TrimSpace", Arity::exact(1), |a| {
        let s = arg_str("TrimSpace", a, 0)?;
        Ok(sub(s, s.trim()))
    });
    c.register_fn("Trim", Arity::exact(2), |a| {
        let s = arg_str("Trim", a, 0)?;
        let cut = arg_str("Trim", a, 1)?;
        Ok(sub(s, s.trim_matches(|ch| cut.contains(ch))))
    });
    c.register_fn("TrimLeft", Arity::exact(2), |a| {
        let s = arg_str("TrimLeft", a, 0)?;
        let cut = arg_str("TrimLeft", a, 1)?;
        Ok(sub(s, s.trim_start_matches(|ch| cut.contains(ch))))
    });
    c.register_fn("TrimRight", Arity::exact(2), |a| {
        let s = arg_str("TrimRight", a, 0)?;
        let cut = arg_str("TrimRight", a, 1)?;
        Ok(sub(s, s.trim_end_matches(|ch| cut.contains(ch))))
    });
    c.register_fn("TrimPrefix", Arity::exact(2), |a| {
        let s = arg_str("TrimPrefix", a, 0)?;
        let p = arg_str("TrimPrefix", a, 1)?;
        Ok(sub(s, s.strip_prefix(p.as_str()).unwrap_or(s)))
    });
    c.register_fn("TrimSuffix", Arity::exact(2), |a| {
        let s = arg_str("TrimSuffix", a, 0)?;
        let p = arg_str("TrimSuffix", a, 1)?;
        Ok(sub(s, s.strip_suffix(p.as_str()).unwrap_or(s)))
    });
    c.register_fn("Split", Arity::exact(2), |a| {
        let s = arg_str("Split", a, 0)?;
        let sep = arg_str("Split", a, 1)?;
        Ok(go_split(s, sep, -1, false))
    });
    c.register_fn("SplitN", Arity::exact(3), |a| {
        let s = arg_str("SplitN", a, 0)?;
        let sep = arg_str("SplitN", a, 1)?;
        Ok(go_split(s, sep, arg_int("SplitN", a, 2)?, false))
    });
    c.register_fn("SplitAfter", Arity::exact(2), |a| {
        let s = arg_str("SplitAfter", a, 0)?;
        let sep = arg_str("SplitAfter", a, 1)?;
        Ok(go_split(s, sep, -1, true))
    });
    c.register_fn("SplitAfterN", Arity::exact(3), |a| {
        let s = arg_str("SplitAfterN", a, 0)?;
        let sep = arg_str("SplitAfterN", a, 1)?;
        Ok(go_split(s, sep, arg_int("SplitAfterN", a, 2)?, true))
    });
    c.register_fn("Fields", Arity::exact(1), |a| {
        let s = arg_str("Fields", a, 0)?;
        Ok(Value::list(
            s.split_whitespace().map(|f| sub(s, f)).collect(),
        ))
    });
    c.register_fn("Index", Arity::exact(2), |a| {
        let s = arg_str("Index", a, 0)?;
        Ok(Value::Int(
            s.find(arg_str("Index", a, 1)?.as_str())
                .map_or(-1, |i| i as i64),
        ))
    });
    c.register_fn("IndexAny", Arity::exact(2), |a| {
        let s = arg_str("IndexAny", a, 0)?;
        let chars = arg_str("IndexAny", a, 1)?;
        Ok(Value::Int(
            s.find(|ch| chars.contains(ch)).map_or(-1, |i| i as i64),
        ))
    });
    c.register_fn("Join", Arity::exact(2), |a| {
        let list = list_of(&a[0])
            .ok_or_else(|| EvalError::function("Join", "argument 1 must be a list of strings"))?;
        let sep = arg_str("Join", a, 1)?;
        let mut out = String::new();
        for (i, e) in list.iter().enumerate() {
            if i > 0 {
                out.push_str(sep);
            }
            match e {
                Value::Str(s) => out.push_str(&s),
                other => {
                    return Err(EvalError::function(
                        "Join",
                        format!("list element is {}, not a string", other.type_name()),
                    ));
                }
            }
        }
        Ok(Value::string(out))
    });
    c.register_fn("Replace", Arity::exact(4), |a| {
        let s = arg_str("Replace", a, 0)?;
        let old = arg_str("Replace", a, 1)?;
        let new = arg_str("Replace", a, 2)?;
        let n = arg_int("Replace", a, 3)?;
        Ok(Value::string(if n < 0 {
            s.replace(old.as_str(), new)
        } else {
            s.replacen(old.as_str(), new, n as usize)
        }))
    });
    c.register_fn("ReplaceAll", Arity::exact(3), |a| {
        let s = arg_str("ReplaceAll", a, 0)?;
        Ok(Value::string(s.replace(
            arg_str("ReplaceAll", a, 1)?.as_str(),
            arg_str("ReplaceAll", a, 2)?,
        )))
    });
    c.register_fn("Sprintf", Arity::at_least(1), |a| {
        let f = arg_str("Sprintf", a, 0)?;
        Ok(Value::string(sprintf(f, &a[1..])))
    });
    c.register_fn("ToString", Arity::exact(1), |a| {
        // CrowdSec: a string stays itself, anything else becomes "".
        Ok(match &a[0] {
            Value::Str(s) => Value::Str(s.clone()),
            _ => Value::str(""),
        })
    });
    c.register_fn("Match", Arity::exact(2), |a| {
        Ok(Value::Bool(glob_match(
            arg_str("Match", a, 0)?.as_bytes(),
            arg_str("Match", a, 1)?.as_bytes(),
        )))
    });
    c.register_fn("B64Decode", Arity::exact(1), |a| {
        let s = arg_str("B64Decode", a, 0)?;
        let bytes = base64_std_decode(s)
            .ok_or_else(|| EvalError::function("B64Decode", "illegal base64 data"))?;
        Ok(Value::string(String::from_utf8_lossy(&bytes).into_owned()))
    });
    // cscli hubtest's assertion environment: filepath.Base.
    c.register_fn("basename", Arity::exact(1), |a| {
        let s = arg_str("basename", a, 0)?;
        Ok(sub(s, go_basename(s)))
    });
}

fn register_misc(c: &mut Compiler) {
    c.register_fn("Atof", Arity::exact(1), |a| {
        // CrowdSec logs a warning and returns 0 when the text is not a float.
        Ok(Value::Float(
            crate::ops::go_parse_float(arg_str("Atof", a, 0)?).unwrap_or(0.0),
        ))
    });
    c.register_fn("FloatApproxEqual", Arity::exact(2), |a| {
        Ok(Value::Bool(
            (arg_f64("FloatApproxEqual", a, 0)? - arg_f64("FloatApproxEqual", a, 1)?).abs() < 1e-6,
        ))
    });
    c.register_fn("Distance", Arity::exact(4), |a| {
        let mut v = [0.0; 4];
        for (i, slot) in v.iter_mut().enumerate() {
            let s = arg_str("Distance", a, i)?;
            *slot = s.parse::<f64>().map_err(|e| {
                EvalError::function(
                    "Distance",
                    format!("coordinate {:?} is not a float: {e}", s.as_str()),
                )
            })?;
        }
        // CrowdSec: either point at 0,0 means "unknown", distance 0.
        if (v[0] == 0.0 && v[1] == 0.0) || (v[2] == 0.0 && v[3] == 0.0) {
            return Ok(Value::Float(0.0));
        }
        Ok(Value::Float(haversine_km(v[0], v[1], v[2], v[3])))
    });
    c.register_fn("Get", Arity::exact(2), |a| {
        let list = list_of(&a[0])
            .ok_or_else(|| EvalError::function("Get", "argument 1 must be a list of strings"))?;
        let i = arg_int("Get", a, 1)?;
        if i < 0 {
            return Err(EvalError::function(
                "Get",
                format!("index out of range [{i}]"),
            ));
        }
        Ok(list.get(i as usize).unwrap_or(Value::str("")))
    });
    c.register_fn("KeyExists", Arity::exact(2), |a| {
        let k = arg_str("KeyExists", a, 0)?;
        Ok(Value::Bool(match &a[1] {
            Value::Map(m) => m.get(k).is_some(),
            Value::Object(o) => match o.has_key(k) {
                Some(has) => has,
                None => match o.to_value() {
                    Some(Value::Map(m)) => m.get(k).is_some(),
                    _ => o.field(k).is_some_and(|v| !v.is_nil()),
                },
            },
            _ => false,
        }))
    });
    c.register_fn("Flatten", Arity::at_least(0), |a| {
        let mut out = Vec::new();
        for v in a {
            flatten_into(v.clone(), &mut out);
        }
        Ok(Value::list(out))
    });
    c.register_fn("Distinct", Arity::exact(1), |a| {
        let list = list_of(&a[0])
            .ok_or_else(|| EvalError::function("Distinct", "argument must be a list"))?;
        Ok(Value::list(distinct(list.iter().collect())))
    });
    c.register_fn("FlattenDistinct", Arity::at_least(0), |a| {
        let mut out = Vec::new();
        for v in a {
            flatten_into(v.clone(), &mut out);
        }
        Ok(Value::list(distinct(out)))
    });
    c.register_fn("LogInfo", Arity::at_least(1), |_| Ok(Value::Bool(true)));
    c.register_fn("Hostname", Arity::exact(0), |_| {
        let h = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        Ok(Value::string(h.trim().to_string()))
    });
    // LAPI decision counters: Shield evaluates without CrowdSec's local API, so these read as
    // "no decisions" (what CrowdSec returns when it has no database client).
    c.register_fn("GetDecisionsCount", Arity::exact(1), |_| Ok(Value::Int(0)));
    c.register_fn("GetDecisionsSinceCount", Arity::exact(2), |_| {
        Ok(Value::Int(0))
    });
    c.register_fn("GetActiveDecisionsCount", Arity::exact(1), |_| {
        Ok(Value::Int(0))
    });
    c.register_fn("GetActiveDecisionsTimeLeft", Arity::exact(1), |_| {
        Ok(Value::Duration(0))
    });
}

fn flatten_into<'a>(v: Value<'a>, out: &mut Vec<Value<'a>>) {
    match list_of(&v) {
        Some(l) => l.iter().for_each(|e| flatten_into(e, out)),
        None => out.push(v),
    }
}

fn distinct(v: Vec<Value<'_>>) -> Vec<Value<'_>> {
    let mut out: Vec<Value<'_>> = Vec::new();
    for e in v {
        if !out.iter().any(|o| crate::ops::equal(o, &e)) {
            out.push(e);
        }
    }
    out
}

/// Go's `strings.SplitN`/`SplitAfterN` with CrowdSec's argument order.
fn go_split<'a>(s: &Str<'a>, sep: &str, n: i64, after: bool) -> Value<'a> {
    if n == 0 {
        return Value::list(Vec::new());
    }
    if sep.is_empty() {
        let mut out = Vec::new();
        let idx: Vec<usize> = s.char_indices().map(|(i, _)| i).collect();
        for (k, &i) in idx.iter().enumerate() {
            if n > 0 && k as i64 == n - 1 {
                out.push(sub(s, &s[i..]));
                break;
            }
            let end = idx.get(k + 1).copied().unwrap_or(s.len());
            out.push(sub(s, &s[i..end]));
        }
        return Value::list(out);
    }
    let mut out = Vec::new();
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
    Value::list(out)
}

/// CrowdSec's `Match`: `*` matches any run of bytes, `?` one byte (iterative, no blow-up).
pub(crate) fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == name[n]) {
            p += 1;
            n += 1;
        } else if let Some((sp, sn)) = star {
            p = sp + 1;
            n = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == b'*')
}

/// Go's `filepath.Base`.
fn go_basename(s: &str) -> &str {
    if s.is_empty() {
        return ".";
    }
    let t = s.trim_end_matches('/');
    if t.is_empty() {
        return "/";
    }
    match t.rfind('/') {
        Some(i) => &t[i + 1..],
        None => t,
    }
}

/// Great-circle distance in km (haversine, Earth radius 6371 km, as CrowdSec's library uses).
fn haversine_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = (lat2 - lat1).to_radians();
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6371.0 * a.sqrt().atan2((1.0 - a).sqrt())
}

/// Go's `base64.StdEncoding.DecodeString` (padding required, no whitespace).
fn base64_std_decode(s: &str) -> Option<Vec<u8>> {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if !s.len().is_multiple_of(4) {
        return None;
    }
    let body = s.trim_end_matches('=');
    if s.len() - body.len() > 2 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in body.bytes() {
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

#[cfg(test)]
mod tests;
