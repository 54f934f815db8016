//! The parser dump as `parser.assert` lines read it: the dump's JSON lent as a tree of objects
//! built once per test, so that the event's string maps (`Parsed`, `Meta`, `Enriched`) answer
//! "" for a missing key, as Go maps of strings do, however deep the access.

use serde_json::Value as Json;
use shield_expr::{Object, Str, Value};

/// One JSON object or array of the dump, with views of its containers built ahead.
pub(crate) struct DumpNode<'a> {
    v: &'a Json,
    strmap: bool,
    kids: Vec<(&'a str, DumpNode<'a>)>,
    items: Vec<DumpNode<'a>>,
}

impl<'a> DumpNode<'a> {
    /// The tree over `v`.
    pub(crate) fn new(v: &'a Json, strmap: bool) -> Self {
        let mut n = DumpNode {
            v,
            strmap,
            kids: Vec::new(),
            items: Vec::new(),
        };
        match v {
            Json::Object(m) => {
                for (k, c) in m {
                    if c.is_object() || c.is_array() {
                        let sm = matches!(k.as_str(), "Parsed" | "Meta" | "Enriched");
                        n.kids.push((k.as_str(), DumpNode::new(c, sm)));
                    }
                }
            }
            Json::Array(a) => n.items = a.iter().map(|c| DumpNode::new(c, false)).collect(),
            _ => {}
        }
        n
    }

    fn child(&self, name: &str) -> Option<Value<'_>> {
        let Json::Object(m) = self.v else { return None };
        Some(match m.get(name) {
            Some(c) if c.is_object() || c.is_array() => {
                match self.kids.iter().find(|(k, _)| *k == name) {
                    Some((_, n)) => Value::Object(n),
                    None => Value::Nil,
                }
            }
            Some(c) => Value::from_json(c),
            None if self.strmap => Value::str(""),
            None => Value::Nil,
        })
    }
}

impl Object for DumpNode<'_> {
    fn type_name(&self) -> &str {
        match self.v {
            Json::Array(_) => "[]dumps.ParserResult",
            _ if self.strmap => "map[string]string",
            _ => "map[string]interface {}",
        }
    }
    fn field(&self, name: &str) -> Option<Value<'_>> {
        self.child(name)
    }
    fn index(&self, key: &Value<'_>) -> Option<Value<'_>> {
        match (self.v, key) {
            (Json::Array(a), Value::Int(i)) => {
                let len = a.len() as i64;
                let j = if *i < 0 { *i + len } else { *i };
                let j = usize::try_from(j).ok()?;
                match a.get(j)? {
                    c if c.is_object() || c.is_array() => {
                        self.items.get(j).map(|n| Value::Object(n as &dyn Object))
                    }
                    c => Some(Value::from_json(c)),
                }
            }
            (_, k) => k.as_str().and_then(|k| self.child(k)),
        }
    }
    fn to_value(&self) -> Option<Value<'_>> {
        Some(match self.v {
            Json::Array(_) => Value::list(
                (0..self.items.len().max(match self.v {
                    Json::Array(a) => a.len(),
                    _ => 0,
                }))
                    .filter_map(|i| self.index(&Value::Int(i as i64)))
                    .collect(),
            ),
            Json::Object(m) => Value::map(
                m.keys()
                    .filter_map(|k| self.child(k).map(|v| (Str::Ref(k.as_str()), v)))
                    .collect(),
            ),
            other => Value::from_json(other),
        })
    }
}
