//! The event as expressions see it: `evt` and everything under it (`evt.Meta.x`,
//! `evt.Line.Labels.type`, `evt.Overflow.Alert.Source.IP`, `evt.GetMeta(k)` ...) lent to
//! `shield-expr` through its `Object` trait. Reads borrow the event; writes made during an
//! evaluation (`evt.SetMeta`, `ParseKV(.., evt.Unmarshaled, ..)`) go to overlays that
//! [`EvtView::changes`] hands back for the caller to apply once the evaluation is over.

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::Value as Json;
use shield_expr::{EvalError, Object, Str, Time, Value};

use crate::event::{Alert, AlertEvent, Event, Kind, Overflow, Source, StrMap};
use crate::gotime::GoTime;

fn go_time(t: Option<GoTime>) -> Value<'static> {
    match t {
        Some(t) => Value::Time(Time {
            ts: t.ts,
            offset: t.offset,
        }),
        None => Value::Time(Time::zero()),
    }
}

/// Text of a value written into a `map[string]string`.
fn text(v: &Value<'_>) -> String {
    match v {
        Value::Str(s) => s.as_str().to_owned(),
        Value::Nil => String::new(),
        other => other.to_string(),
    }
}

/// A `map[string]string` of the event, with the writes of the current evaluation on top.
pub struct StrMapView<'e> {
    map: &'e StrMap,
    overlay: RefCell<Vec<(String, Rc<str>)>>,
}

impl<'e> StrMapView<'e> {
    fn new(map: &'e StrMap) -> Self {
        StrMapView {
            map,
            overlay: RefCell::new(Vec::new()),
        }
    }

    fn get(&self, key: &str) -> Value<'_> {
        if let Some((_, v)) = self.overlay.borrow().iter().rev().find(|(k, _)| k == key) {
            return Value::Str(Str::Rc(v.clone()));
        }
        match self.map.get(key) {
            Some(v) => Value::str(v),
            None => Value::str(""),
        }
    }

    fn put(&self, key: &str, value: String) {
        self.overlay
            .borrow_mut()
            .push((key.to_owned(), Rc::from(value)));
    }

    fn take(self) -> Vec<(String, String)> {
        self.overlay
            .into_inner()
            .into_iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect()
    }
}

impl Object for StrMapView<'_> {
    fn type_name(&self) -> &str {
        "map[string]string"
    }
    fn field(&self, name: &str) -> Option<Value<'_>> {
        Some(self.get(name))
    }
    fn set(&self, key: &str, value: &Value<'_>) -> Result<(), EvalError> {
        self.put(key, text(value));
        Ok(())
    }
    fn has_key(&self, key: &str) -> Option<bool> {
        Some(self.map.contains_key(key) || self.overlay.borrow().iter().any(|(k, _)| k == key))
    }
    fn to_value(&self) -> Option<Value<'_>> {
        let overlay = self.overlay.borrow();
        let mut v: Vec<(Str<'_>, Value<'_>)> = Vec::with_capacity(self.map.len() + overlay.len());
        for (k, val) in self.map {
            if !overlay.iter().any(|(ok, _)| ok == k) {
                v.push((Str::Ref(k.as_str()), Value::str(val)));
            }
        }
        for (k, val) in overlay.iter() {
            v.push((Str::from(k.clone()), Value::Str(Str::Rc(val.clone()))));
        }
        Some(Value::map(v))
    }
}

/// JSON owned by an `Rc` (a value written into `evt.Unmarshaled` during this evaluation).
struct RcJson(Rc<Json>);

impl Object for RcJson {
    fn type_name(&self) -> &str {
        "map[string]interface {}"
    }
    fn field(&self, name: &str) -> Option<Value<'_>> {
        match &*self.0 {
            Json::Object(m) => Some(m.get(name).map(Value::from_json).unwrap_or(Value::Nil)),
            _ => None,
        }
    }
    fn to_value(&self) -> Option<Value<'_>> {
        Some(Value::from_json(&self.0))
    }
}

/// `evt.Unmarshaled` (`map[string]interface{}`).
pub struct JsonView<'e> {
    map: &'e serde_json::Map<String, Json>,
    overlay: RefCell<Vec<(String, Rc<Json>)>>,
}

impl Object for JsonView<'_> {
    fn type_name(&self) -> &str {
        "map[string]interface {}"
    }
    fn field(&self, name: &str) -> Option<Value<'_>> {
        if let Some((_, v)) = self.overlay.borrow().iter().rev().find(|(k, _)| k == name) {
            return Some(match &**v {
                Json::Object(_) => Value::Shared(Rc::new(RcJson(v.clone()))),
                Json::Array(_) => Value::Shared(Rc::new(RcJson(v.clone()))),
                Json::String(s) => Value::string(s.clone()),
                Json::Bool(b) => Value::Bool(*b),
                Json::Number(n) => match n.as_i64() {
                    Some(i) => Value::Int(i),
                    None => Value::Float(n.as_f64().unwrap_or(0.0)),
                },
                Json::Null => Value::Nil,
            });
        }
        Some(
            self.map
                .get(name)
                .map(Value::from_json)
                .unwrap_or(Value::Nil),
        )
    }
    fn set(&self, key: &str, value: &Value<'_>) -> Result<(), EvalError> {
        self.overlay
            .borrow_mut()
            .push((key.to_owned(), Rc::new(value.to_json())));
        Ok(())
    }
    fn to_value(&self) -> Option<Value<'_>> {
        if self.overlay.borrow().is_empty() {
            return Some(Value::Map(shield_expr::Map::Json(self.map)));
        }
        let mut m = self.map.clone();
        for (k, v) in self.overlay.borrow().iter() {
            m.insert(k.clone(), (**v).clone());
        }
        let entries: Vec<(Str<'_>, Value<'_>)> = m
            .into_iter()
            .map(|(k, v)| (Str::from(k), json_owned(v)))
            .collect();
        Some(Value::map(entries))
    }
}

/// A JSON value as an owned expression value.
fn json_owned(v: Json) -> Value<'static> {
    match v {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Bool(b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(0.0)),
        },
        Json::String(s) => Value::string(s),
        other => Value::Shared(Rc::new(RcJson(Rc::new(other)))),
    }
}

/// `evt.Line.Labels`.
struct LabelsView<'e>(&'e std::collections::BTreeMap<String, String>);

impl Object for LabelsView<'_> {
    fn type_name(&self) -> &str {
        "map[string]string"
    }
    fn has_key(&self, key: &str) -> Option<bool> {
        Some(self.0.contains_key(key))
    }
    fn field(&self, name: &str) -> Option<Value<'_>> {
        Some(
            self.0
                .get(name)
                .map(|s| Value::str(s))
                .unwrap_or(Value::str("")),
        )
    }
    fn to_value(&self) -> Option<Value<'_>> {
        Some(Value::map(
            self.0
                .iter()
                .map(|(k, v)| (Str::Ref(k.as_str()), Value::str(v)))
                .collect(),
        ))
    }
}

/// `evt.Line`.
struct LineView<'e> {
    evt: &'e Event,
    labels: LabelsView<'e>,
}

impl Object for LineView<'_> {
    fn type_name(&self) -> &str {
        "types.Line"
    }
    fn field(&self, name: &str) -> Option<Value<'_>> {
        let l = &self.evt.line;
        Some(match name {
            "Raw" => Value::str(&l.raw),
            "Src" => Value::str(&l.src),
            "Module" => Value::str(&l.module),
            "Labels" => Value::Object(&self.labels),
            "Time" => go_time(l.time),
            "Process" => Value::Bool(true),
            _ => return None,
        })
    }
}

/// `models.Source`.
struct SourceView<'e>(&'e Source);

impl Object for SourceView<'_> {
    fn type_name(&self) -> &str {
        "*models.Source"
    }
    fn field(&self, name: &str) -> Option<Value<'_>> {
        let s = self.0;
        Some(match name {
            "IP" => Value::str(&s.ip),
            "Range" => Value::str(&s.range),
            "Scope" => Value::str(&s.scope),
            "Value" => Value::str(&s.value),
            "AsNumber" => Value::str(&s.as_number),
            "AsName" => Value::str(&s.as_name),
            "Cn" => Value::str(&s.cn),
            "Latitude" => Value::Float(s.latitude as f64),
            "Longitude" => Value::Float(s.longitude as f64),
            _ => return None,
        })
    }
    fn call<'s>(
        &'s self,
        method: &str,
        _args: &[Value<'s>],
    ) -> Option<Result<Value<'s>, EvalError>> {
        Some(Ok(match method {
            "GetScope" => Value::str(&self.0.scope),
            "GetValue" => Value::str(&self.0.value),
            _ => return None,
        }))
    }
}

/// `evt.Overflow.Sources` (`map[string]models.Source`).
struct SourcesView<'e>(Vec<(&'e str, SourceView<'e>)>);

impl Object for SourcesView<'_> {
    fn type_name(&self) -> &str {
        "map[string]models.Source"
    }
    fn field(&self, name: &str) -> Option<Value<'_>> {
        Some(match self.0.iter().find(|(k, _)| *k == name) {
            Some((_, s)) => Value::Object(s),
            None => Value::Nil,
        })
    }
    fn to_value(&self) -> Option<Value<'_>> {
        Some(Value::map(
            self.0
                .iter()
                .map(|(k, s)| (Str::Ref(k), Value::Object(s as &dyn Object)))
                .collect(),
        ))
    }
}

/// One `models.Event` of an alert.
struct AlertEventView<'e>(&'e AlertEvent);

impl Object for AlertEventView<'_> {
    fn type_name(&self) -> &str {
        "*models.Event"
    }
    fn field(&self, name: &str) -> Option<Value<'_>> {
        Some(match name {
            "Timestamp" => Value::str(&self.0.timestamp),
            "Meta" => Value::list(
                self.0
                    .meta
                    .iter()
                    .map(|(k, v)| {
                        Value::map(vec![
                            (Str::Ref("Key"), Value::str(k)),
                            (Str::Ref("Value"), Value::str(v)),
                        ])
                    })
                    .collect(),
            ),
            _ => return None,
        })
    }
    fn call<'s>(
        &'s self,
        method: &str,
        args: &[Value<'s>],
    ) -> Option<Result<Value<'s>, EvalError>> {
        if method != "GetMeta" {
            return None;
        }
        let key = args.first().and_then(Value::as_str).unwrap_or("");
        let v = self
            .0
            .meta
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str());
        Some(Ok(Value::str(v.unwrap_or(""))))
    }
}

/// `models.Alert`.
struct AlertView<'e> {
    a: &'e Alert,
    source: SourceView<'e>,
    events: Vec<AlertEventView<'e>>,
}

impl<'e> AlertView<'e> {
    fn new(a: &'e Alert) -> Self {
        AlertView {
            a,
            source: SourceView(&a.source),
            events: a.events.iter().map(AlertEventView).collect(),
        }
    }
}

impl Object for AlertView<'_> {
    fn type_name(&self) -> &str {
        "*models.Alert"
    }
    fn field(&self, name: &str) -> Option<Value<'_>> {
        let a = self.a;
        Some(match name {
            "Scenario" => Value::str(&a.scenario),
            "ScenarioHash" => Value::str(&a.scenario_hash),
            "ScenarioVersion" => Value::str(&a.scenario_version),
            "Capacity" => Value::Int(a.capacity),
            "EventsCount" => Value::Int(a.events_count),
            "Leakspeed" => Value::str(&a.leakspeed),
            "Message" => Value::str(&a.message),
            "StartAt" => Value::str(&a.start_at),
            "StopAt" => Value::str(&a.stop_at),
            "Simulated" => Value::Bool(a.simulated),
            "Remediation" => Value::Bool(a.remediation),
            "Source" => Value::Object(&self.source),
            "Events" => Value::list(
                self.events
                    .iter()
                    .map(|e| Value::Object(e as &dyn Object))
                    .collect(),
            ),
            "Labels" => Value::from_json(&a.labels),
            "Kind" => Value::str("crowdsec"),
            _ => return None,
        })
    }
    fn call<'s>(
        &'s self,
        method: &str,
        _args: &[Value<'s>],
    ) -> Option<Result<Value<'s>, EvalError>> {
        let a = self.a;
        Some(Ok(match method {
            "GetScenario" => Value::str(&a.scenario),
            "GetScope" => Value::str(&a.source.scope),
            "GetValue" => Value::str(&a.source.value),
            "GetEventsCount" => Value::Int(a.events_count),
            _ => return None,
        }))
    }
}

/// `evt.Overflow` (`RuntimeAlert`).
struct OverflowView<'e> {
    o: &'e Overflow,
    alerts: Vec<AlertView<'e>>,
    sources: SourcesView<'e>,
}

impl<'e> OverflowView<'e> {
    fn new(o: &'e Overflow) -> Self {
        OverflowView {
            o,
            alerts: o.alerts.iter().map(AlertView::new).collect(),
            sources: SourcesView(
                o.sources
                    .iter()
                    .map(|(k, s)| (k.as_str(), SourceView(s)))
                    .collect(),
            ),
        }
    }
}

impl Object for OverflowView<'_> {
    fn type_name(&self) -> &str {
        "types.RuntimeAlert"
    }
    fn field(&self, name: &str) -> Option<Value<'_>> {
        let o = self.o;
        Some(match name {
            "Mapkey" | "MapKey" => Value::str(&o.mapkey),
            "Whitelisted" => Value::Bool(o.whitelisted),
            "Reprocess" => Value::Bool(o.reprocess),
            "Sources" => Value::Object(&self.sources),
            "Alert" => match self.alerts.first() {
                Some(a) => Value::Object(a),
                None => Value::Nil,
            },
            "APIAlerts" => Value::list(
                self.alerts
                    .iter()
                    .map(|a| Value::Object(a as &dyn Object))
                    .collect(),
            ),
            _ => return None,
        })
    }
    fn call<'s>(
        &'s self,
        method: &str,
        _args: &[Value<'s>],
    ) -> Option<Result<Value<'s>, EvalError>> {
        if method != "GetSources" {
            return None;
        }
        Some(Ok(Value::list(
            self.o.sources.keys().map(|k| Value::str(k)).collect(),
        )))
    }
}

/// `evt`: the event lent to one evaluation.
pub struct EvtView<'e> {
    evt: &'e Event,
    meta: StrMapView<'e>,
    parsed: StrMapView<'e>,
    enriched: StrMapView<'e>,
    unmarshaled: JsonView<'e>,
    line: LineView<'e>,
    overflow: OverflowView<'e>,
}

/// Writes an evaluation made into the event.
#[derive(Debug, Default)]
pub struct Changes {
    pub meta: Vec<(String, String)>,
    pub parsed: Vec<(String, String)>,
    pub enriched: Vec<(String, String)>,
    pub unmarshaled: Vec<(String, Json)>,
}

impl Changes {
    /// True when the evaluation wrote nothing.
    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
            && self.parsed.is_empty()
            && self.enriched.is_empty()
            && self.unmarshaled.is_empty()
    }

    /// Apply to the event.
    pub fn apply(self, evt: &mut Event) {
        for (k, v) in self.meta {
            evt.meta.insert(k, v);
        }
        for (k, v) in self.parsed {
            evt.parsed.insert(k, v);
        }
        for (k, v) in self.enriched {
            evt.enriched.insert(k, v);
        }
        for (k, v) in self.unmarshaled {
            evt.unmarshaled.insert(k, v);
        }
    }
}

impl<'e> EvtView<'e> {
    /// A view of `evt` for one evaluation.
    pub fn new(evt: &'e Event) -> Self {
        EvtView {
            evt,
            meta: StrMapView::new(&evt.meta),
            parsed: StrMapView::new(&evt.parsed),
            enriched: StrMapView::new(&evt.enriched),
            unmarshaled: JsonView {
                map: &evt.unmarshaled,
                overlay: RefCell::new(Vec::new()),
            },
            line: LineView {
                evt,
                labels: LabelsView(&evt.line.labels),
            },
            overflow: OverflowView::new(&evt.overflow),
        }
    }

    /// The writes made through this view.
    pub fn changes(self) -> Changes {
        Changes {
            meta: self.meta.take(),
            parsed: self.parsed.take(),
            enriched: self.enriched.take(),
            unmarshaled: self
                .unmarshaled
                .overlay
                .into_inner()
                .into_iter()
                .map(|(k, v)| (k, Rc::try_unwrap(v).unwrap_or_else(|rc| (*rc).clone())))
                .collect(),
        }
    }
}

impl Object for EvtView<'_> {
    fn type_name(&self) -> &str {
        "*types.Event"
    }
    fn field(&self, name: &str) -> Option<Value<'_>> {
        let e = self.evt;
        Some(match name {
            "Meta" => Value::Object(&self.meta),
            "Parsed" => Value::Object(&self.parsed),
            "Enriched" => Value::Object(&self.enriched),
            "Unmarshaled" => Value::Object(&self.unmarshaled),
            "Line" => Value::Object(&self.line),
            "Overflow" => Value::Object(&self.overflow),
            "Time" => go_time(e.time),
            "StrTime" => Value::str(&e.str_time),
            "StrTimeFormat" => Value::str(&e.str_time_format),
            "MarshaledTime" => Value::str(&e.marshaled_time),
            "Whitelisted" => Value::Bool(e.whitelisted),
            "WhitelistReason" => Value::str(&e.whitelist_reason),
            "Stage" => Value::str(&e.stage),
            "Process" => Value::Bool(e.process),
            "Type" => Value::Int(if e.kind == Kind::Overflow { 1 } else { 0 }),
            "ExpectMode" => Value::Int(if e.time_machine { 1 } else { 0 }),
            _ => return None,
        })
    }
    fn call<'s>(
        &'s self,
        method: &str,
        args: &[Value<'s>],
    ) -> Option<Result<Value<'s>, EvalError>> {
        let arg = |i: usize| args.get(i).map(text).unwrap_or_default();
        Some(Ok(match method {
            "GetMeta" => {
                let key = arg(0);
                if self.evt.kind == Kind::Log {
                    self.meta.get(&key)
                } else {
                    Value::str(self.evt.get_meta(&key))
                }
            }
            "SetMeta" => {
                self.meta.put(&arg(0), arg(1));
                Value::Bool(true)
            }
            "SetParsed" => {
                self.parsed.put(&arg(0), arg(1));
                Value::Bool(true)
            }
            "GetType" => Value::str(self.evt.type_name()),
            "ParseIPSources" => Value::list(
                self.evt
                    .ip_sources()
                    .into_iter()
                    .map(|ip| Value::string(ip.to_string()))
                    .collect(),
            ),
            _ => return None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Alert, Overflow, Source};

    fn eval_on(evt: &Event, src: &str) -> String {
        let mut c = shield_expr::Compiler::new();
        c.var("evt");
        let p = c.compile(src).unwrap_or_else(|e| panic!("{src}: {e}"));
        let v = EvtView::new(evt);
        match p.run(&[Value::Object(&v)]) {
            Ok(x) => format!("{x:?}"),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn overflow_fields_read_through_the_alert() {
        let src = Source {
            ip: "2001:db8::1".into(),
            scope: "Ip".into(),
            value: "2001:db8::1".into(),
            ..Source::default()
        };
        let evt = Event {
            kind: Kind::Overflow,
            overflow: Overflow {
                sources: [("2001:db8::1".to_owned(), src.clone())]
                    .into_iter()
                    .collect(),
                alerts: vec![Alert {
                    remediation: true,
                    source: src,
                    ..Alert::default()
                }],
                ..Overflow::default()
            },
            ..Event::default()
        };
        assert_eq!(
            eval_on(&evt, "evt.Overflow.Alert.Remediation == true"),
            "true"
        );
        assert_eq!(
            eval_on(&evt, "evt.Overflow.Alert.Source.IP"),
            "\"2001:db8::1\""
        );
        assert_eq!(
            eval_on(&evt, "IsIPV6(evt.Overflow.Alert.Source.IP)"),
            "true"
        );
        assert_eq!(
            eval_on(&evt, "evt.Overflow.Sources['2001:db8::1'].GetScope()"),
            "\"Ip\""
        );
        assert_eq!(eval_on(&evt, "evt.GetType()"), "\"overflow\"");
    }

    #[test]
    fn writes_land_in_the_event_after_the_evaluation() {
        let mut evt = Event::default();
        evt.meta.insert("a".into(), "1".into());
        let mut c = shield_expr::Compiler::new();
        c.var("evt");
        let p = c
            .compile(r#"evt.SetMeta("b", "2") && evt.Meta.b == "2" && evt.Meta.a == "1" && evt.Meta.zz == """#)
            .unwrap();
        let v = EvtView::new(&evt);
        let r = p.run(&[Value::Object(&v)]).map(|x| x.as_bool());
        let ch = v.changes();
        assert_eq!(r, Ok(Some(true)));
        ch.apply(&mut evt);
        assert_eq!(evt.meta.get("b").map(String::as_str), Some("2"));
    }
}

/// The leading test of a filter read straight from the event, without building an
/// [`EvtView`]: `evt.Meta.K in [..]` / `evt.Parsed.K == '..'` / `evt.Enriched.K ..` first in
/// a filter's `&&` chain (see [`shield_expr::Program::leading_string_test`]). When it does
/// not admit an event, running the filter would give `false` and write nothing.
#[derive(Debug)]
pub struct Gate {
    map: GateMap,
    key: String,
    values: std::collections::HashSet<String>,
}

#[derive(Debug, Clone, Copy)]
enum GateMap {
    Meta,
    Parsed,
    Enriched,
}

impl Gate {
    /// The gate of a program compiled over `evt` (slot 0), if it has one.
    pub fn of(p: &shield_expr::Program) -> Option<Gate> {
        let (path, values) = p.leading_string_test(0)?;
        let [map, key] = &path[..] else {
            return None;
        };
        let map = match map.as_str() {
            "Meta" => GateMap::Meta,
            "Parsed" => GateMap::Parsed,
            "Enriched" => GateMap::Enriched,
            _ => return None,
        };
        Some(Gate {
            map,
            key: key.clone(),
            values: values.into_iter().collect(),
        })
    }

    /// Whether the filter could be true for `e`: its value for the key (`""` when absent,
    /// as a `map[string]string` reads) is one of the gate's strings.
    pub fn admits(&self, e: &Event) -> bool {
        let m = match self.map {
            GateMap::Meta => &e.meta,
            GateMap::Parsed => &e.parsed,
            GateMap::Enriched => &e.enriched,
        };
        self.values
            .contains(m.get(&self.key).map_or("", String::as_str))
    }
}
