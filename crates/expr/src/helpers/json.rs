//! CrowdSec's JSON helpers: `JsonExtract` (dotted path, raw text as buger/jsonparser returns
//! it), `JsonExtractUnescape`, `JsonExtractSlice`, `JsonExtractObject`, `ToJsonString`,
//! `UnmarshalJSON` (writes into a host map), and Go's `encoding/json` text output.
//!
//! Owns: path walking over raw JSON text and Go-compatible JSON writing. Does not own: where
//! `UnmarshalJSON` stores its result (the host's [`crate::Object::set`]).

use std::collections::HashMap;

use serde_json::value::RawValue;

use super::arg_str;
use crate::builtins::json_to_value;
use crate::format::rfc3339_nano;
use crate::value::Value;
use crate::{Arity, Compiler, EvalError};

pub(super) fn register(c: &mut Compiler) {
    c.register_fn("JsonExtract", Arity::exact(2), |a| {
        let blob = arg_str("JsonExtract", a, 0)?;
        let path = arg_str("JsonExtract", a, 1)?;
        Ok(raw_string(extract_raw(blob, &split_path(path))))
    });
    c.register_fn("JsonExtractLib", Arity::at_least(1), |a| {
        let blob = arg_str("JsonExtractLib", a, 0)?;
        let mut keys = Vec::new();
        for i in 1..a.len() {
            keys.push(arg_str("JsonExtractLib", a, i)?.to_string());
        }
        Ok(raw_string(extract_raw(blob, &keys)))
    });
    c.register_fn("JsonExtractUnescape", Arity::at_least(2), |a| {
        let blob = arg_str("JsonExtractUnescape", a, 0)?;
        // CrowdSec passes only the first key on (its type switch sees a single string).
        let key = arg_str("JsonExtractUnescape", a, 1)?;
        let v = match extract_raw(blob, &[key.as_str()]) {
            Some(raw) if raw.get().starts_with('"') => {
                serde_json::from_str::<String>(raw.get()).unwrap_or_default()
            }
            _ => String::new(),
        };
        Ok(Value::string(v))
    });
    c.register_fn("JsonExtractSlice", Arity::exact(2), |a| {
        let blob = arg_str("JsonExtractSlice", a, 0)?;
        let path = arg_str("JsonExtractSlice", a, 1)?;
        Ok(match extract_raw(blob, &split_path(path)) {
            Some(raw) if raw.get().starts_with('[') => {
                match serde_json::from_str::<serde_json::Value>(raw.get()) {
                    Ok(j) => json_to_value(&j),
                    Err(_) => Value::Nil,
                }
            }
            _ => Value::Nil,
        })
    });
    c.register_fn("JsonExtractObject", Arity::exact(2), |a| {
        let blob = arg_str("JsonExtractObject", a, 0)?;
        let path = arg_str("JsonExtractObject", a, 1)?;
        Ok(match extract_raw(blob, &split_path(path)) {
            Some(raw) if raw.get().starts_with('{') => {
                match serde_json::from_str::<serde_json::Value>(raw.get()) {
                    Ok(j) => json_to_value(&j),
                    Err(_) => Value::Nil,
                }
            }
            _ => Value::Nil,
        })
    });
    c.register_fn("ToJsonString", Arity::exact(1), |a| {
        Ok(Value::string(go_json(&a[0], false)))
    });
    c.register_fn("UnmarshalJSON", Arity::exact(3), |a| {
        let blob = arg_str("UnmarshalJSON", a, 0)?;
        let key = arg_str("UnmarshalJSON", a, 2)?;
        let j: serde_json::Value = serde_json::from_str(blob)
            .map_err(|e| EvalError::function("UnmarshalJSON", e.to_string()))?;
        let target = a[1].as_object().ok_or_else(|| {
            EvalError::function(
                "UnmarshalJSON",
                format!("target must be a writable map, got {}", a[1].type_name()),
            )
        })?;
        target.set(key, &json_to_value(&j))?;
        Ok(Value::Nil)
    });
}

/// CrowdSec's path split: `[` becomes `.[` (unless the path starts with `[`), then split on
/// `.`: `a.b[0].c` → `a`, `b`, `[0]`, `c`.
fn split_path(path: &str) -> Vec<String> {
    let t = if path.starts_with('[') {
        path.to_string()
    } else {
        path.replace('[', ".[")
    };
    t.split('.').map(String::from).collect()
}

/// The raw JSON text at `path` (jsonparser semantics: object keys, `[n]` array indexes).
fn extract_raw<'j, S: AsRef<str>>(blob: &'j str, path: &[S]) -> Option<&'j RawValue> {
    let mut cur: &'j RawValue = serde_json::from_str(blob).ok()?;
    for seg in path {
        let seg = seg.as_ref();
        let text = cur.get();
        if let Some(idx) = seg.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            let i: usize = idx.parse().ok()?;
            let items: Vec<&'j RawValue> = serde_json::from_str(text).ok()?;
            cur = *items.get(i)?;
        } else {
            if !text.starts_with('{') {
                return None;
            }
            let map: HashMap<String, &'j RawValue> = serde_json::from_str(text).ok()?;
            cur = *map.get(seg)?;
        }
    }
    Some(cur)
}

/// jsonparser's value text: strings without their quotes (still escaped), the rest verbatim.
fn raw_string(raw: Option<&RawValue>) -> Value<'static> {
    match raw {
        None => Value::str(""),
        Some(r) => {
            let t = r.get();
            if t.len() >= 2 && t.starts_with('"') {
                Value::string(t[1..t.len() - 1].to_string())
            } else {
                Value::string(t.to_string())
            }
        }
    }
}

/// A value as Go's `encoding/json` writes it (`json.Marshal`, or `MarshalIndent(v, "", "  ")`
/// when `indent`): map keys sorted, floats in Go's shortest form, `<>&` escaped.
pub(crate) fn go_json(v: &Value<'_>, indent: bool) -> String {
    let mut out = String::new();
    write_json(v, indent, 0, &mut out);
    out
}

fn write_json(v: &Value<'_>, indent: bool, depth: usize, out: &mut String) {
    let nl = |out: &mut String, d: usize| {
        if indent {
            out.push('\n');
            out.push_str(&"  ".repeat(d));
        }
    };
    match v {
        Value::Nil => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Duration(d) => out.push_str(&d.to_string()),
        Value::Float(f) => out.push_str(&go_json_float(*f)),
        Value::Str(s) => write_json_str(s, out),
        Value::Time(t) => write_json_str(&rfc3339_nano(t), out),
        Value::List(l) => {
            if l.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, e) in l.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                nl(out, depth + 1);
                write_json(&e, indent, depth + 1, out);
            }
            nl(out, depth);
            out.push(']');
        }
        Value::Map(m) => {
            let mut entries = m.entries();
            if entries.is_empty() {
                out.push_str("{}");
                return;
            }
            entries.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
            out.push('{');
            for (i, (k, e)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                nl(out, depth + 1);
                write_json_str(k, out);
                out.push(':');
                if indent {
                    out.push(' ');
                }
                write_json(e, indent, depth + 1, out);
            }
            nl(out, depth);
            out.push('}');
        }
        Value::Object(o) => match o.to_value() {
            Some(inner) => write_json(&inner, indent, depth, out),
            None => out.push_str("{}"),
        },
        Value::Shared(o) => match o.to_value() {
            Some(inner) => write_json(&inner, indent, depth, out),
            None => out.push_str("{}"),
        },
    }
}

fn write_json_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Go's JSON float: plain decimal for 1e-6 <= |f| < 1e21, else `1e+21` / `1e-7`.
fn go_json_float(f: f64) -> String {
    if !f.is_finite() {
        return "null".into();
    }
    let a = f.abs();
    if a == 0.0 || (1e-6..1e21).contains(&a) {
        format!("{f}")
    } else {
        let s = format!("{f:e}");
        match s.split_once('e') {
            Some((m, e)) => match e.strip_prefix('-') {
                Some(d) => format!("{m}e-{d}"),
                None => format!("{m}e+{e}"),
            },
            None => s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Str;

    #[test]
    fn paths_split_like_crowdsec() {
        assert_eq!(split_path("a.b"), ["a", "b"]);
        assert_eq!(split_path("a.b[0].c"), ["a", "b", "[0]", "c"]);
        assert_eq!(split_path("[1]"), ["[1]"]);
        assert_eq!(split_path("a[0][1]"), ["a", "[0]", "[1]"]);
    }

    #[test]
    fn raw_values_as_jsonparser_returns_them() {
        let blob = r#"{"a": {"b": [10, {"c": "x\"y"}], "n": 1.50, "o": {"k": 1}}}"#;
        let get = |p: &str| format!("{:?}", raw_string(extract_raw(blob, &split_path(p))));
        assert_eq!(get("a.b[0]"), "\"10\"");
        assert_eq!(get("a.b[1].c"), r#""x\\\"y""#);
        assert_eq!(get("a.n"), "\"1.50\"");
        assert_eq!(get("a.o"), r#""{\"k\": 1}""#);
        assert_eq!(get("a.missing"), "\"\"");
        assert_eq!(get("a.b[5]"), "\"\"");
    }

    #[test]
    fn go_json_output() {
        let v = Value::map(vec![
            (Str::from("b"), Value::Float(200.0)),
            (
                Str::from("a"),
                Value::list(vec![Value::str("<x>"), Value::Nil]),
            ),
        ]);
        assert_eq!(
            go_json(&v, false),
            r#"{"a":["\u003cx\u003e",null],"b":200}"#
        );
        assert_eq!(
            go_json(&v, true),
            "{\n  \"a\": [\n    \"\\u003cx\\u003e\",\n    null\n  ],\n  \"b\": 200\n}"
        );
        assert_eq!(go_json_float(1e21), "1e+21");
        assert_eq!(go_json_float(1.5), "1.5");
    }
}
