//! A CrowdSec expression (the text of a hub file's `filter`, or an assert line) through the
//! compiler, then, if it compiles, through the evaluator against a small event. Neither may
//! panic on any input.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shield_expr::{Compiler, Object, Value};

struct Meta;

impl Object for Meta {
    fn type_name(&self) -> &str {
        "map[string]string"
    }
    fn field(&self, name: &str) -> Option<Value<'_>> {
        Some(Value::str(match name {
            "log_type" => "http_access-log",
            "http_path" => "/wp-login.php?a=%20b",
            "source_ip" => "192.0.2.1",
            _ => "",
        }))
    }
}

struct Event {
    meta: Meta,
    json: serde_json::Value,
}

impl Object for Event {
    fn type_name(&self) -> &str {
        "types.Event"
    }
    fn field(&self, name: &str) -> Option<Value<'_>> {
        match name {
            "Meta" => Some(Value::Object(&self.meta)),
            "Unmarshaled" => Some(Value::from_json(&self.json)),
            _ => None,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // Hub expressions are a few KB at most; larger inputs only slow the search down.
    if data.len() > 4096 {
        return;
    }
    let Ok(src) = std::str::from_utf8(data) else { return };
    let mut c = Compiler::new();
    c.var("evt");
    let Ok(program) = c.compile(src) else { return };
    let evt = Event { meta: Meta, json: serde_json::json!({"a": {"b": [1, "x", null]}}) };
    let _ = program.run(&[Value::Object(&evt)]).map(|v| v.to_string());
});
