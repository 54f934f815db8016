//! The operations on values that the evaluator, the builtins and CrowdSec's helpers all
//! call: expr's `==` ([`equal`]) and ordering ([`compare`]), list-like access
//! ([`list_of`]), borrowed substrings ([`sub`]) and Go's case mapping and float parsing.
//! A leaf over `value`, so none of those modules has to import another for them.

use std::cmp::Ordering;

use crate::value::{List, Object, Str, Value};

/// expr's `==`: never an error; different kinds are unequal except int/float.
pub(crate) fn equal(a: &Value<'_>, b: &Value<'_>) -> bool {
    match (a, b) {
        (Value::Nil, Value::Nil) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Int(x), Value::Float(y)) | (Value::Float(y), Value::Int(x)) => (*x as f64) == *y,
        (Value::Float(x), Value::Float(y)) => x == y,
        (Value::Str(x), Value::Str(y)) => x.as_str() == y.as_str(),
        (Value::Time(x), Value::Time(y)) => x.ts == y.ts,
        (Value::Duration(x), Value::Duration(y)) => x == y,
        (Value::Duration(x), Value::Int(y)) | (Value::Int(y), Value::Duration(x)) => x == y,
        (Value::List(x), Value::List(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(p, q)| equal(&p, &q))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.entries()
                    .iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| equal(v, &w)))
        }
        (Value::Object(x), Value::Object(y)) => {
            std::ptr::addr_eq(*x as *const dyn Object, *y as *const dyn Object)
                || match (x.to_value(), y.to_value()) {
                    (Some(p), Some(q)) => equal(&p, &q),
                    _ => false,
                }
        }
        (Value::Object(o), other) | (other, Value::Object(o)) => {
            o.to_value().is_some_and(|v| equal(&v, other))
        }
        (Value::Shared(o), other) | (other, Value::Shared(o)) => {
            o.to_value().is_some_and(|v| equal(&v.into_owned(), other))
        }
        _ => false,
    }
}

/// expr's ordering for `<` `<=` `>` `>=`: numbers, strings, times, durations.
pub(crate) fn compare(a: &Value<'_>, b: &Value<'_>) -> Option<Ordering> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Int(x), Value::Float(y)) => (*x as f64).partial_cmp(y),
        (Value::Float(x), Value::Int(y)) => x.partial_cmp(&(*y as f64)),
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(y),
        (Value::Str(x), Value::Str(y)) => Some(x.as_str().cmp(y.as_str())),
        (Value::Time(x), Value::Time(y)) => Some(x.ts.cmp(&y.ts)),
        (Value::Duration(x), Value::Duration(y)) => Some(x.cmp(y)),
        (Value::Duration(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Int(x), Value::Duration(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// A substring of `s`: borrowed when `s` is borrowed, copied otherwise.
pub(crate) fn sub<'a>(s: &Str<'a>, part: &str) -> Value<'a> {
    match s {
        Str::Ref(r) => {
            // `part` lies inside `r`: re-slice `r` so the result keeps lifetime 'a.
            let start = part.as_ptr() as usize - r.as_ptr() as usize;
            Value::str(&r[start..start + part.len()])
        }
        Str::Rc(_) => Value::string(part.to_string()),
    }
}

/// The elements of a list-like value (lists, list-like objects), or `None`.
pub(crate) fn list_of<'a>(v: &Value<'a>) -> Option<List<'a>> {
    match v {
        Value::List(l) => Some(l.clone()),
        Value::Object(o) => match o.to_value() {
            Some(Value::List(l)) => Some(l),
            _ => None,
        },
        _ => None,
    }
}

/// Go's `strings.ToUpper`: simple (one-to-one) case mapping, so `ß` stays `ß`.
pub(crate) fn go_upper(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_uppercase();
    }
    s.chars()
        .map(|c| {
            let mut up = c.to_uppercase();
            match (up.next(), up.next()) {
                (Some(u), None) => u,
                _ => c,
            }
        })
        .collect()
}

/// Go's `strings.ToLower` (simple case mapping).
pub(crate) fn go_lower(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    s.chars()
        .map(|c| {
            let mut low = c.to_lowercase();
            match (low.next(), low.next()) {
                (Some(l), None) => l,
                _ => c,
            }
        })
        .collect()
}

/// Go's `strconv.ParseFloat(s, 64)`: no surrounding spaces, `inf`/`nan` spellings, `_` never.
pub(crate) fn go_parse_float(s: &str) -> Result<f64, std::num::ParseFloatError> {
    s.parse::<f64>()
}
