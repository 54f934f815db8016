//! CrowdSec's event (`pipeline.Event`): a log line on its way through the parser stages, or an
//! overflow (a `RuntimeAlert` with its `models.Alert`s) on its way to the postoverflows. Owns
//! the data and its JSON dump (the shape `cscli hubtest` asserts on); the expression view of an
//! event lives in `host`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::{Map, Value as Json, json};

use crate::gotime::GoTime;

/// A `map[string]string` of the event.
/// Seeded foldhash: the values are attacker-controlled, the keys are field names.
pub type StrMap = HashMap<String, String, foldhash::fast::RandomState>;

/// Log or overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kind {
    #[default]
    Log,
    Overflow,
}

/// The acquired line (`pipeline.Line`).
#[derive(Debug, Clone, Default)]
pub struct Line {
    pub raw: String,
    pub src: String,
    pub module: String,
    pub labels: Arc<BTreeMap<String, String>>,
    pub time: Option<GoTime>,
}

/// `models.Source`.
#[derive(Debug, Clone, Default)]
pub struct Source {
    pub scope: String,
    pub value: String,
    pub ip: String,
    pub range: String,
    pub as_number: String,
    pub as_name: String,
    pub cn: String,
    pub latitude: f32,
    pub longitude: f32,
}

/// One event of an alert (`models.Event`): its timestamp and sorted meta.
#[derive(Debug, Clone, Default)]
pub struct AlertEvent {
    pub timestamp: String,
    pub meta: Vec<(String, String)>,
}

/// `models.Alert` (the parts the hub and its tests read).
#[derive(Debug, Clone, Default)]
pub struct Alert {
    pub scenario: String,
    pub scenario_hash: String,
    pub scenario_version: String,
    pub capacity: i64,
    pub events_count: i64,
    pub leakspeed: String,
    pub message: String,
    pub start_at: String,
    pub stop_at: String,
    pub simulated: bool,
    pub remediation: bool,
    pub events: Vec<AlertEvent>,
    pub source: Source,
    pub labels: Json,
}

/// `pipeline.RuntimeAlert`: what an overflowing bucket emits.
#[derive(Debug, Clone, Default)]
pub struct Overflow {
    pub mapkey: String,
    pub whitelisted: bool,
    pub reprocess: bool,
    /// Sources by value, in key order (a Go map; ranges over it are unordered anyway).
    pub sources: BTreeMap<String, Source>,
    /// One alert per source (`APIAlerts`); `Alert` is the first.
    pub alerts: Vec<Alert>,
}

/// `pipeline.Event`.
#[derive(Debug, Clone, Default)]
pub struct Event {
    pub kind: Kind,
    pub time_machine: bool,
    pub whitelisted: bool,
    pub whitelist_reason: String,
    pub stage: String,
    pub line: Line,
    pub parsed: StrMap,
    pub enriched: StrMap,
    pub unmarshaled: Map<String, Json>,
    pub overflow: Overflow,
    pub time: Option<GoTime>,
    pub str_time: String,
    pub str_time_format: String,
    pub marshaled_time: String,
    pub process: bool,
    pub meta: StrMap,
}

impl Event {
    /// A log line read from a file in time-machine mode (what the file datasource makes).
    pub fn from_line(raw: &str, src: &str, labels: Arc<BTreeMap<String, String>>) -> Event {
        Event {
            kind: Kind::Log,
            time_machine: true,
            process: true,
            line: Line {
                raw: raw.to_owned(),
                src: src.to_owned(),
                module: "file".to_owned(),
                labels,
                time: None,
            },
            ..Event::default()
        }
    }

    /// `GetMeta(key)`: the event's meta for a log, the first alert event's meta for an overflow.
    pub fn get_meta(&self, key: &str) -> &str {
        match self.kind {
            Kind::Log => self.meta.get(key).map(String::as_str).unwrap_or(""),
            Kind::Overflow => {
                for a in &self.overflow.alerts {
                    for e in &a.events {
                        for (k, v) in &e.meta {
                            if k == key && !v.is_empty() {
                                return v;
                            }
                        }
                    }
                }
                ""
            }
        }
    }

    /// `GetType()`.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Log => "log",
            Kind::Overflow => "overflow",
        }
    }

    /// The addresses `ParseIPSources()` returns: `Meta.source_ip` of a log, the sources of an
    /// overflow.
    pub fn ip_sources(&self) -> Vec<std::net::IpAddr> {
        match self.kind {
            Kind::Log => self
                .meta
                .get("source_ip")
                .and_then(|s| s.parse().ok())
                .into_iter()
                .collect(),
            Kind::Overflow => self
                .overflow
                .sources
                .keys()
                .filter_map(|k| k.parse().ok())
                .collect(),
        }
    }

    /// The parser-dump view of the event (`Evt` of a `parser_results` entry).
    pub fn dump(&self) -> Json {
        fn sorted(m: &StrMap) -> Json {
            let b: BTreeMap<&String, &String> = m.iter().collect();
            json!(b)
        }
        json!({
            "Parsed": sorted(&self.parsed),
            "Meta": sorted(&self.meta),
            "Enriched": sorted(&self.enriched),
            "Unmarshaled": Json::Object(self.unmarshaled.clone()),
            "Whitelisted": self.whitelisted,
            "WhitelistReason": self.whitelist_reason,
            "StrTime": self.str_time,
            "MarshaledTime": self.marshaled_time,
            "Stage": self.stage,
        })
    }
}

impl Source {
    /// JSON of a source as the hub test output carries it.
    pub fn to_json(&self) -> Json {
        json!({"ip": self.ip, "range": self.range, "scope": self.scope, "value": self.value,
               "as_number": self.as_number, "as_name": self.as_name, "cn": self.cn})
    }
}
