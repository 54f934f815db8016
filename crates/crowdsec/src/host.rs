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
struct SourcesView<'e>(&'e std::collections::BTreeMap<String, Source>);

impl Object for SourcesView<'_> {
    fn type_name(&self) -> &str {
        "map[string]models.Source"
    }
    fn field(&self, name: &str) -> Option<Value<'_>> {
        Some(match self.0.get(name) {
            Some(s) => Value::Shared(Rc::new(SourceView(s))),
            None => Value::Nil,
        })
    }
    fn to_value(&self) -> Option<Value<'_>> {
        Some(Value::map(
            self.0
                .iter()
                .map(|(k, s)| {
                    let v: Value<'_> = Value::Shared(Rc::new(SourceView(s)));
                    (Str::Ref(k.as_str()), v)
                })
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
struct AlertView<'e>(&'e Alert);

impl Object for AlertView<'_> {
    fn type_name(&self) -> &str {
        "*models.Alert"
    }
    fn field(&self, name: &str) -> Option<Value<'_>> {
        let a = self.0;
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
            "Source" => Value::Shared(Rc::new(SourceView(&a.source))),
            "Events" => Value::list(
                a.events
                    .iter()
                    .map(|e| Value::Shared(Rc::new(AlertEventView(e))))
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
        let a = self.0;
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
struct OverflowView<'e>(&'e Overflow);

impl Object for OverflowView<'_> {
    fn type_name(&self) -> &str {
        "types.RuntimeAlert"
    }
    fn field(&self, name: &str) -> Option<Value<'_>> {
        let o = self.0;
        Some(match name {
            "Mapkey" | "MapKey" => Value::str(&o.mapkey),
            "Whitelisted" => Value::Bool(o.whitelisted),
            "Reprocess" => Value::Bool(o.reprocess),
            "Sources" => Value::Shared(Rc::new(SourcesView(&o.sources))),
            "Alert" => match o.alerts.first() {
                Some(a) => Value::Shared(Rc::new(AlertView(a))),
                None => Value::Nil,
            },
            "APIAlerts" => Value::list(
                o.alerts
                    .iter()
                    .map(|a| Value::Shared(Rc::new(AlertView(a))))
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
            self.0.sources.keys().map(|k| Value::str(k)).collect(),
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
            overflow: OverflowView(&evt.overflow),
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
