//! CrowdSec's `ParseKV(line, evt.Unmarshaled, "prefix")` and `ParseKVLax(...)`: parse
//! `key=value key2="quoted value"` text into a `map[string]string` stored under `prefix` in a
//! host map (merged with what is already there). Owns the two parsers; the host owns storage.

use std::sync::OnceLock;

use regex::Regex;

use super::arg_str;
use crate::value::{Str, Value};
use crate::{Arity, Compiler, EvalError, Object};

fn kv_pattern() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        crate::re::go_regex(r#"(?P<key>[^=\s]+)=(?:"(?P<quoted_value>[^"\\]*(?:\\.[^"\\]*)*)"|(?P<value>[^=\s]+)|\s*)"#)
            .unwrap_or_else(|e| unreachable!("constant regex: {e}"))
    })
}

fn key_start() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"([a-zA-Z_][a-zA-Z0-9_.-]*)=")
            .unwrap_or_else(|e| unreachable!("constant regex: {e}"))
    })
}

pub(super) fn register(c: &mut Compiler) {
    c.register_fn("ParseKV", Arity::exact(3), |a| {
        let line = arg_str("ParseKV", a, 0)?;
        let prefix = arg_str("ParseKV", a, 2)?;
        let target = target("ParseKV", &a[1])?;
        let pairs = parse_kv(line);
        if pairs.is_empty() {
            return Err(EvalError::function(
                "ParseKV",
                "invalid input format: no key=value pair in the text",
            ));
        }
        store("ParseKV", target, prefix, pairs)?;
        Ok(Value::Nil)
    });
    c.register_fn("ParseKVLax", Arity::exact(3), |a| {
        let line = arg_str("ParseKVLax", a, 0)?;
        let prefix = arg_str("ParseKVLax", a, 2)?;
        let target = target("ParseKVLax", &a[1])?;
        let pairs = parse_kv_lax(line);
        if pairs.is_empty() {
            return Err(EvalError::function(
                "ParseKVLax",
                "invalid input format: no key=value pair in the text",
            ));
        }
        store("ParseKVLax", target, prefix, pairs)?;
        Ok(Value::Nil)
    });
}

fn target<'v>(name: &str, v: &'v Value<'_>) -> Result<&'v dyn Object, EvalError> {
    v.as_object().ok_or_else(|| {
        EvalError::function(
            name,
            format!("target must be a writable map, got {}", v.type_name()),
        )
    })
}

/// Merge `pairs` into the string map at `target[prefix]`, creating it if absent.
fn store(
    name: &str,
    target: &dyn Object,
    prefix: &str,
    pairs: Vec<(String, String)>,
) -> Result<(), EvalError> {
    let mut merged: Vec<(Str<'static>, Value<'static>)> = Vec::new();
    match target.field(prefix) {
        None | Some(Value::Nil) => {}
        Some(Value::Map(m)) => {
            for (k, v) in m.entries() {
                match v {
                    Value::Str(s) => {
                        merged.push((Str::from(k.to_string()), Value::string(s.to_string())))
                    }
                    _ => {
                        return Err(EvalError::function(
                            name,
                            "target is not a map[string]string",
                        ));
                    }
                }
            }
        }
        Some(_) => {
            return Err(EvalError::function(
                name,
                "target is not a map[string]string",
            ));
        }
    }
    for (k, v) in pairs {
        match merged.iter_mut().find(|(mk, _)| mk.as_str() == k) {
            Some(slot) => slot.1 = Value::string(v),
            None => merged.push((Str::from(k), Value::string(v))),
        }
    }
    target.set(prefix, &Value::map(merged))
}

/// CrowdSec's regex-based `key=value` / `key="quoted"` parse (quoted values kept as written).
pub(crate) fn parse_kv(line: &str) -> Vec<(String, String)> {
    kv_pattern()
        .captures_iter(line)
        .map(|c| {
            let key = c.name("key").map_or("", |m| m.as_str()).to_string();
            let value = c
                .name("quoted_value")
                .filter(|m| !m.as_str().is_empty())
                .or_else(|| c.name("value").filter(|m| !m.as_str().is_empty()))
                .map_or("", |m| m.as_str())
                .to_string();
            (key, value)
        })
        .collect()
}

/// CrowdSec's lax parse: a value runs until the next `key=` that is not inside quotes.
pub(crate) fn parse_kv_lax(line: &str) -> Vec<(String, String)> {
    let starts: Vec<(usize, usize, &str)> = key_start()
        .captures_iter(line)
        .filter_map(|c| {
            let full = c.get(0)?;
            let key = c.get(1)?;
            (!inside_quotes(line, full.start())).then_some((full.start(), full.end(), key.as_str()))
        })
        .collect();
    let mut out = Vec::with_capacity(starts.len());
    for (i, (_, value_start, key)) in starts.iter().enumerate() {
        let value_end = starts.get(i + 1).map_or(line.len(), |n| n.0);
        let raw = line[*value_start..value_end].trim();
        out.push((key.to_string(), lax_value(raw)));
    }
    out
}

fn lax_value(s: &str) -> String {
    if !s.starts_with('"') {
        return s.to_string();
    }
    if s.len() >= 2 && s.ends_with('"') {
        return s[1..s.len() - 1]
            .replace("\\\\", "\\")
            .replace("\\\"", "\"");
    }
    s[1..].to_string()
}

fn inside_quotes(s: &str, pos: usize) -> bool {
    let b = s.as_bytes();
    let mut inq = false;
    for i in 0..=pos.min(b.len().saturating_sub(1)) {
        if b[i] != b'"' {
            continue;
        }
        let mut backslashes = 0;
        let mut j = i;
        while j > 0 && b[j - 1] == b'\\' {
            backslashes += 1;
            j -= 1;
        }
        if backslashes % 2 == 0 {
            inq = !inq;
        }
    }
    inq
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn strict_kv_like_crowdsec() {
        assert_eq!(
            parse_kv(r#"type=SYSCALL msg=audit(1.2:3): arch=c000003e comm="a b" exe= x"#),
            pairs(&[
                ("type", "SYSCALL"),
                ("msg", "audit(1.2:3):"),
                ("arch", "c000003e"),
                ("comm", "a b"),
                ("exe", "")
            ])
        );
        assert_eq!(
            parse_kv(r#"k="a \"q\" b""#),
            pairs(&[("k", r#"a \"q\" b"#)])
        );
        assert!(parse_kv("no pairs here").is_empty());
    }

    #[test]
    fn lax_kv_like_crowdsec() {
        assert_eq!(
            parse_kv_lax(r#"act=blocked msg=multi word value src=1.2.3.4 note="x=y" end"#),
            pairs(&[
                ("act", "blocked"),
                ("msg", "multi word value"),
                ("src", "1.2.3.4"),
                ("note", "x=y\" end")
            ])
        );
        assert_eq!(
            parse_kv_lax(r#"a="q \"x\"" b=2"#),
            pairs(&[("a", "q \"x\""), ("b", "2")])
        );
    }
}
