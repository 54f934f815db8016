//! The parser dump as `parser.assert` lines read it: JSON wrapped so that the event's string
//! maps (`Parsed`, `Meta`, `Enriched`) answer "" for a missing key, as Go maps of strings do.

use std::rc::Rc;

use serde_json::Value as Json;
use shield_expr::{Object, Value};

struct DumpView<'a> {
    v: &'a Json,
    strmap: bool,
}

fn wrap<'a>(v: &'a Json, strmap: bool) -> Value<'a> {
    match v {
        Json::Object(_) | Json::Array(_) => Value::Shared(Rc::new(DumpView { v, strmap })),
        other => Value::from_json(other),
    }
}

impl Object for DumpView<'_> {
    fn type_name(&self) -> &str {
        match self.v {
            Json::Array(_) => "[]dumps.ParserResult",
            _ if self.strmap => "map[string]string",
            _ => "map[string]interface {}",
        }
    }
    fn field(&self, name: &str) -> Option<Value<'_>> {
        match self.v {
            Json::Object(m) => Some(match m.get(name) {
                Some(c) => wrap(c, matches!(name, "Parsed" | "Meta" | "Enriched")),
                None if self.strmap => Value::str(""),
                None => Value::Nil,
            }),
            _ => None,
        }
    }
    fn index(&self, key: &Value<'_>) -> Option<Value<'_>> {
        match (self.v, key) {
            (Json::Array(a), Value::Int(i)) => {
                a.get(usize::try_from(*i).ok()?).map(|c| wrap(c, false))
            }
            (_, k) => k.as_str().and_then(|k| self.field(k)),
        }
    }
    fn to_value(&self) -> Option<Value<'_>> {
        Some(Value::from_json(self.v))
    }
}

/// `results` for `parser.assert`, over the dump's JSON.
pub(crate) fn results_value(dump: &Json) -> Value<'_> {
    wrap(dump, false)
}
