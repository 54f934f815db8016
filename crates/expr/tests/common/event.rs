//! A minimal CrowdSec-like event for tests and benchmarks: `evt.Meta` / `evt.Parsed` are
//! `map[string]string` views (foldhash) whose reads borrow (no allocation), `evt.Line.Raw` a string,
//! `evt.GetMeta(k)` a method.

use std::collections::HashMap;

use shield_expr::{EvalError, Object, Value};

/// `map[string]string` with a seeded fast hasher, as the engine keeps `Meta` and `Parsed`.
#[derive(Default)]
pub struct StrMap(pub HashMap<String, String, foldhash::fast::RandomState>);

impl Object for StrMap {
    fn type_name(&self) -> &str {
        "map[string]string"
    }
    fn field(&self, name: &str) -> Option<Value<'_>> {
        Some(Value::str(self.0.get(name).map_or("", String::as_str)))
    }
}

#[derive(Default)]
pub struct Line {
    pub raw: String,
}

impl Object for Line {
    fn type_name(&self) -> &str {
        "types.Line"
    }
    fn field(&self, name: &str) -> Option<Value<'_>> {
        match name {
            "Raw" => Some(Value::str(&self.raw)),
            _ => None,
        }
    }
}

#[derive(Default)]
pub struct Event {
    pub meta: StrMap,
    pub parsed: StrMap,
    pub line: Line,
}

impl Object for Event {
    fn type_name(&self) -> &str {
        "types.Event"
    }
    fn field(&self, name: &str) -> Option<Value<'_>> {
        match name {
            "Meta" => Some(Value::Object(&self.meta)),
            "Parsed" => Some(Value::Object(&self.parsed)),
            "Line" => Some(Value::Object(&self.line)),
            _ => None,
        }
    }
    fn call<'s>(
        &'s self,
        method: &str,
        args: &[Value<'s>],
    ) -> Option<Result<Value<'s>, EvalError>> {
        match method {
            "GetMeta" => Some(Ok(args
                .first()
                .and_then(|k| k.as_str())
                .map_or(Value::str(""), |k| {
                    Value::str(self.meta.0.get(k).map_or("", String::as_str))
                }))),
            _ => None,
        }
    }
}

/// An nginx access-log event as CrowdSec's nginx parser leaves it.
pub fn nginx_event(path: &str) -> Event {
    let mut e = Event::default();
    for (k, v) in [
        ("service", "http"),
        ("log_type", "http_access-log"),
        ("source_ip", "192.0.2.7"),
        ("http_status", "404"),
        ("http_verb", "GET"),
        ("http_path", path),
        ("http_user_agent", "Mozilla/5.0"),
    ] {
        e.meta.0.insert(k.into(), v.into());
    }
    e.parsed.0.insert("request".into(), path.into());
    e.parsed.0.insert("verb".into(), "GET".into());
    e.line.raw = format!(
        "192.0.2.7 - - [04/Jan/2020:08:41:43 +0000] \"GET {path} HTTP/1.1\" 404 153 \"-\" \"Mozilla/5.0\""
    );
    e
}

/// The typical hub filter the benchmark and the allocation test measure.
pub const HTTP_FILTER: &str = r#"evt.Meta.log_type in ['http_access-log', 'http_error-log'] && evt.Meta.http_path matches '\\.(php|asp|aspx|jsp)$'"#;
