//! Parser nodes and stages, run the way CrowdSec's `pkg/parser` runs them: a node's filter,
//! whitelist, grok (on `apply_on` or an `expression`), stash, child nodes, statics, and
//! `onsuccess: next_stage`; stages in name order, an event leaving a stage only through a
//! successful node. Also the built-in enrichers statics call with `method:` (`ParseDate`,
//! `UnmarshalJSON`; the GeoIP ones need a database this build does not read). The same code
//! runs postoverflows on overflow events. Owns compiled nodes; loading files is `hub`'s job.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use serde_json::Value as Json;
use shield_expr::{Program, Value};

use crate::config::{NodeConfig, StaticConfig};
use crate::data::Exprs;
use crate::event::{Event, Kind};
use crate::gotime::{self, GoTime};
use crate::grok::{Grok, Library};
use crate::host::EvtView;

/// A node that failed to compile, with what to fix.
#[derive(Debug, thiserror::Error)]
#[error("node '{node}': {message}")]
pub struct NodeError {
    pub node: String,
    pub message: String,
}

fn err(node: &str, message: impl Into<String>) -> NodeError {
    NodeError {
        node: node.to_owned(),
        message: message.into(),
    }
}

/// Runs `p` over `evt`, applying any write the expression made (`evt.SetMeta`, `ParseKV` ...).
/// Returns the result converted by `f` while the view is alive.
pub(crate) fn eval<T>(
    p: &Program,
    evt: &mut Event,
    f: impl FnOnce(Result<Value<'_>, String>) -> T,
) -> T {
    eval_changed(p, evt, f).0
}

/// [`eval`], also telling whether the expression wrote into the event.
pub(crate) fn eval_changed<T>(
    p: &Program,
    evt: &mut Event,
    f: impl FnOnce(Result<Value<'_>, String>) -> T,
) -> (T, bool) {
    let view = EvtView::new(evt);
    let out = {
        let r = p.run(&[Value::Object(&view)]).map_err(|e| e.to_string());
        f(r)
    };
    let changes = view.changes();
    let changed = !changes.is_empty();
    if changed {
        changes.apply(evt);
    }
    (out, changed)
}

/// What an expression gives for a string target (`RuntimeStatic.Apply`'s conversions).
enum Out {
    Text(String),
    Skip,
    Fail,
}

fn to_text(r: Result<Value<'_>, String>) -> Out {
    match r {
        Err(_) => Out::Skip,
        Ok(Value::Str(s)) => Out::Text(s.as_str().to_owned()),
        Ok(Value::Int(i)) => Out::Text(i.to_string()),
        Ok(Value::Float(f)) => Out::Text(format!("{f:.6}")),
        Ok(Value::Nil) | Ok(Value::Map(_)) | Ok(Value::List(_)) => Out::Skip,
        Ok(_) => Out::Fail,
    }
}

#[derive(Debug)]
enum Target {
    Method(String),
    Parsed(String),
    Meta(String),
    Enriched(String),
    ByName(String),
}

#[derive(Debug)]
struct RtStatic {
    target: Target,
    value: String,
    expr: Option<Program>,
}

impl RtStatic {
    fn compile(s: &StaticConfig, exprs: &Exprs, node: &str) -> Result<RtStatic, NodeError> {
        let target = if !s.method.is_empty() {
            if s.value.is_empty() && s.expression.is_empty() {
                return Err(err(node, "a static with `method` needs an `expression`"));
            }
            Target::Method(s.method.clone())
        } else if !s.parsed.is_empty() {
            Target::Parsed(s.parsed.clone())
        } else if !s.meta.is_empty() {
            Target::Meta(s.meta.clone())
        } else if !s.enriched.is_empty() {
            Target::Enriched(s.enriched.clone())
        } else if !s.target.is_empty() {
            Target::ByName(s.target.clone())
        } else {
            return Err(err(
                node,
                "a static needs one of meta, parsed, enriched, target or method",
            ));
        };
        if s.method.is_empty() && s.value.is_empty() && s.expression.is_empty() {
            return Err(err(node, "a static needs `value` or `expression`"));
        }
        let expr = if s.expression.is_empty() {
            None
        } else {
            Some(
                exprs
                    .compile(&s.expression)
                    .map_err(|e| err(node, format!("static expression {:?}: {e}", s.expression)))?,
            )
        };
        Ok(RtStatic {
            target,
            value: s.value.clone(),
            expr,
        })
    }

    /// Returns false on the one failure CrowdSec treats as an error (a bool from an expression).
    fn apply(&self, evt: &mut Event, geoip: bool) -> bool {
        let mut value = String::new();
        if !self.value.is_empty() {
            value = self.value.clone();
        } else if let Some(p) = &self.expr {
            match eval(p, evt, to_text) {
                Out::Text(t) => value = t,
                Out::Skip => {}
                Out::Fail => return false,
            }
        }
        if value.is_empty() && !matches!(&self.target, Target::Method(m) if m == "ParseDate") {
            return true;
        }
        match &self.target {
            Target::Method(m) => {
                for (k, v) in enrich(m, &value, evt, geoip) {
                    evt.enriched.insert(k, v);
                }
            }
            Target::Parsed(k) => {
                evt.parsed.insert(k.clone(), value);
            }
            Target::Meta(k) => {
                evt.meta.insert(k.clone(), value);
            }
            Target::Enriched(k) => {
                evt.enriched.insert(k.clone(), value);
            }
            Target::ByName(t) => set_target_by_name(t, value, evt),
        }
        true
    }
}

/// CrowdSec's `SetTargetByName` over the string fields and maps of the event.
fn set_target_by_name(target: &str, value: String, evt: &mut Event) {
    let t = target.strip_prefix("evt.").unwrap_or(target);
    let (head, rest) = match t.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (t, None),
    };
    // A map takes the next component as its key (the rest, if any, is ignored as in Go).
    let key = |r: Option<&str>| r.map(|r| r.split('.').next().unwrap_or("").to_owned());
    match (head, rest) {
        ("StrTime", None) => evt.str_time = value,
        ("StrTimeFormat", None) => evt.str_time_format = value,
        ("MarshaledTime", None) => evt.marshaled_time = value,
        ("Stage", None) => evt.stage = value,
        ("WhitelistReason", None) => evt.whitelist_reason = value,
        ("Meta", Some(_)) => {
            evt.meta.insert(key(rest).unwrap_or_default(), value);
        }
        ("Parsed", Some(_)) => {
            evt.parsed.insert(key(rest).unwrap_or_default(), value);
        }
        ("Enriched", Some(_)) => {
            evt.enriched.insert(key(rest).unwrap_or_default(), value);
        }
        ("Unmarshaled", Some(_)) => {
            evt.unmarshaled
                .insert(key(rest).unwrap_or_default(), Json::String(value));
        }
        ("Overflow", Some(r)) if r.starts_with("Alert.Source.") => {
            set_alert_source(evt, &r["Alert.Source.".len()..], value)
        }
        ("Line", Some("Raw")) => evt.line.raw = value,
        ("Line", Some("Src")) => evt.line.src = value,
        ("Line", Some("Module")) => evt.line.module = value,
        ("Line", Some(r)) if r.starts_with("Labels.") => {
            let mut labels = (*evt.line.labels).clone();
            labels.insert(r["Labels.".len()..].to_owned(), value);
            evt.line.labels = Arc::new(labels);
        }
        _ => {}
    }
}

/// `evt.Overflow.Alert.Source.X = v`. `Value` and `Scope` are pointers in CrowdSec's
/// `models.Source`, shared by the alert and the `Sources` map entry, so both change.
fn set_alert_source(evt: &mut Event, field: &str, value: String) {
    let Some(alert) = evt.overflow.alerts.first_mut() else {
        return;
    };
    // Alerts are made one per source, in key order: the first alert is the first key's.
    let key = evt
        .overflow
        .sources
        .keys()
        .next()
        .cloned()
        .unwrap_or_default();
    let src = &mut alert.source;
    match field {
        "Value" => src.value = value.clone(),
        "Scope" => src.scope = value.clone(),
        "IP" => src.ip = value,
        "Range" => src.range = value,
        "AsNumber" => src.as_number = value,
        "AsName" => src.as_name = value,
        "Cn" => src.cn = value,
        _ => return,
    }
    if matches!(field, "Value" | "Scope")
        && let Some(shared) = evt.overflow.sources.get_mut(&key)
    {
        if field == "Value" {
            shared.value = alert.source.value.clone();
        } else {
            shared.scope = alert.source.scope.clone();
        }
    }
}

/// The enrichers statics name with `method:` (`Loadplugin`'s list).
fn enrich(method: &str, value: &str, evt: &mut Event, _geoip: bool) -> Vec<(String, String)> {
    match method {
        "ParseDate" => parse_date(value, evt),
        "UnmarshalJSON" => {
            if let Ok(Json::Object(m)) = serde_json::from_str::<Json>(&evt.line.raw) {
                for (k, v) in m {
                    evt.unmarshaled.insert(k, v);
                }
            }
            Vec::new()
        }
        // GeoIpCity, GeoIpASN, IpToRange need MaxMind databases; reverse_dns is off.
        _ => Vec::new(),
    }
}

/// The layouts `GenDateParse` tries, in order.
const DATE_LAYOUTS: &[&str] = &[
    "2006-01-02T15:04:05Z07:00",
    "02/Jan/2006:15:04:05 -0700",
    "Mon Jan 2 15:04:05 2006",
    "02-Jan-2006 15:04:05 europe/paris",
    "01/02/2006 15:04:05",
    "2006-01-02 15:04:05.999999999 -0700 MST",
    "Jan  2 15:04:05",
    "Mon Jan 02 15:04:05.000000 2006",
    "2006-01-02T15:04:05Z07:00",
    "2006/01/02",
    "2006/01/02 15:04",
    "2006-01-02",
    "2006-01-02 15:04",
    "2006/01/02 15:04:05",
    "2006-01-02 15:04:05",
    "2006-01-02T15:04:05",
];

fn now_year() -> i16 {
    jiff::tz::Offset::UTC
        .to_datetime(jiff::Timestamp::now())
        .year()
}

/// `parseDateWithFormat`: parse, then give a year-less date the current year.
fn parse_with(layout: &str, s: &str) -> Option<GoTime> {
    let t = gotime::parse_layout(layout, s, 0)?;
    let dt = t.offset.to_datetime(t.ts);
    if dt.year() == 0 {
        let fixed = gotime::parse_layout(layout, s, now_year())?;
        return Some(fixed);
    }
    // Go: a zero time (year 1, Jan 1, 00:00:00 UTC) counts as a failure.
    if dt.year() == 1
        && dt.month() == 1
        && dt.day() == 1
        && dt.hour() == 0
        && dt.minute() == 0
        && dt.second() == 0
        && dt.subsec_nanosecond() == 0
    {
        return None;
    }
    Some(t)
}

/// The `ParseDate` enricher.
fn parse_date(s: &str, evt: &mut Event) -> Vec<(String, String)> {
    let mut found: Option<GoTime> = None;
    let mut text = String::new();
    if !s.is_empty() {
        if !evt.str_time_format.is_empty() {
            found = parse_with(&evt.str_time_format.clone(), s);
        }
        if found.is_none() {
            found = DATE_LAYOUTS.iter().find_map(|l| parse_with(l, s));
        }
        if let Some(t) = found {
            text = t.marshal();
        } else {
            // ParseUnixTime: integer seconds (a fraction is cut), shown as RFC 3339.
            let head = s.split('.').next().unwrap_or("");
            if let Ok(i) = head.parse::<i64>()
                && i > 0
                && let Ok(ts) = jiff::Timestamp::from_second(i)
            {
                let t = GoTime::utc(ts);
                text = t.marshal();
                found = Some(t);
            }
        }
    }
    match found {
        Some(t) => {
            if evt.time_machine {
                evt.time = Some(t);
            }
        }
        None => {
            text = GoTime::utc(jiff::Timestamp::now()).marshal();
        }
    }
    vec![("MarshaledTime".to_owned(), text)]
}

#[derive(Debug)]
enum GrokInput {
    LineRaw,
    Parsed(String),
    Expr(Program),
}

#[derive(Debug)]
struct RtGrok {
    grok: Grok,
    input: GrokInput,
    statics: Vec<RtStatic>,
}

#[derive(Debug)]
struct RtStash {
    name: String,
    key: Program,
    value: Program,
}

#[derive(Debug, Default)]
struct RtWhitelist {
    reason: String,
    ips: Vec<IpAddr>,
    cidrs: Vec<IpNet>,
    exprs: Vec<Program>,
}

/// A compiled parser node.
#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub stage: String,
    next_stage: bool,
    filter: Option<Program>,
    /// The filter's leading `evt.Parsed.program == '..'`-like test, checked without running it.
    gate: Option<crate::host::Gate>,
    grok: Option<RtGrok>,
    statics: Vec<RtStatic>,
    stashes: Vec<RtStash>,
    whitelist: RtWhitelist,
    children: Vec<Node>,
}

/// What compiling nodes needs: the expression environment and the grok library (which
/// `pattern_syntax` extends, for the nodes loaded after it, as in CrowdSec).
pub struct Compile<'a> {
    pub exprs: &'a Exprs,
    pub groks: &'a mut Library,
}

impl Node {
    /// Compiles a node of `stage` (top-level nodes default to `onsuccess: continue`).
    pub fn compile(cfg: &NodeConfig, stage: &str, cx: &mut Compile<'_>) -> Result<Node, NodeError> {
        let name = cfg.name.as_str();
        if !matches!(cfg.onsuccess.as_str(), "" | "continue" | "next_stage") {
            return Err(err(
                name,
                format!(
                    "onsuccess {:?} is not continue or next_stage",
                    cfg.onsuccess
                ),
            ));
        }
        let filter = if cfg.filter.is_empty() {
            None
        } else {
            Some(
                cx.exprs
                    .compile(&cfg.filter)
                    .map_err(|e| err(name, format!("filter {:?}: {e}", cfg.filter)))?,
            )
        };
        if let Some(ps) = &cfg.pattern_syntax {
            for (k, v) in &ps.0 {
                cx.groks.add(k, v);
            }
        }
        let mut valid = false;
        let g = &cfg.grok;
        let grok = if !g.name.is_empty() || !g.pattern.is_empty() || !g.expression.is_empty() {
            let compiled = if !g.name.is_empty() {
                cx.groks.get(&g.name)
            } else if !g.pattern.is_empty() {
                cx.groks.compile(&g.pattern)
            } else {
                return Err(err(name, "grok needs 'pattern' or 'name'"));
            }
            .map_err(|e| err(name, e.to_string()))?;
            let input =
                if !g.apply_on.is_empty() {
                    if g.apply_on == "Line.Raw" {
                        GrokInput::LineRaw
                    } else {
                        GrokInput::Parsed(g.apply_on.clone())
                    }
                } else if !g.expression.is_empty() {
                    GrokInput::Expr(cx.exprs.compile(&g.expression).map_err(|e| {
                        err(name, format!("grok expression {:?}: {e}", g.expression))
                    })?)
                } else {
                    return Err(err(name, "grok requires 'expression' or 'apply_on'"));
                };
            let statics = g
                .statics
                .iter()
                .map(|s| RtStatic::compile(s, cx.exprs, name))
                .collect::<Result<_, _>>()?;
            valid = true;
            Some(RtGrok {
                grok: compiled,
                input,
                statics,
            })
        } else {
            None
        };
        let mut stashes = Vec::new();
        for s in &cfg.stash {
            if s.name.is_empty() || s.key.is_empty() || s.value.is_empty() || s.ttl.is_empty() {
                return Err(err(name, "a stash needs name, key, value and ttl"));
            }
            stashes.push(RtStash {
                name: s.name.clone(),
                key: cx
                    .exprs
                    .compile(&s.key)
                    .map_err(|e| err(name, format!("stash key: {e}")))?,
                value: cx
                    .exprs
                    .compile(&s.value)
                    .map_err(|e| err(name, format!("stash value: {e}")))?,
            });
        }
        let mut children = Vec::new();
        for c in &cfg.nodes {
            let mut c = c.clone();
            if c.name.is_empty() {
                c.name = format!("child-{name}");
            }
            children.push(Node::compile(&c, stage, cx)?);
            valid = true;
        }
        let statics: Vec<RtStatic> = cfg
            .statics
            .iter()
            .map(|s| RtStatic::compile(s, cx.exprs, name))
            .collect::<Result<_, _>>()?;
        valid |= !statics.is_empty();
        let mut whitelist = RtWhitelist {
            reason: cfg.whitelist.reason.clone(),
            ..RtWhitelist::default()
        };
        for ip in &cfg.whitelist.ip {
            whitelist.ips.push(
                ip.parse()
                    .map_err(|_| err(name, format!("whitelist ip {ip:?} is not an address")))?,
            );
        }
        for c in &cfg.whitelist.cidr {
            whitelist.cidrs.push(
                c.parse()
                    .map_err(|_| err(name, format!("whitelist cidr {c:?} is not a prefix")))?,
            );
        }
        for e in &cfg.whitelist.expression {
            whitelist.exprs.push(
                cx.exprs
                    .compile(e)
                    .map_err(|x| err(name, format!("whitelist expression {e:?}: {x}")))?,
            );
        }
        valid |=
            !whitelist.ips.is_empty() || !whitelist.cidrs.is_empty() || !whitelist.exprs.is_empty();
        if !valid {
            return Err(err(
                name,
                "node is empty (no grok, nodes, statics or whitelist)",
            ));
        }
        Ok(Node {
            name: name.to_owned(),
            stage: stage.to_owned(),
            next_stage: cfg.onsuccess == "next_stage",
            gate: filter.as_ref().and_then(crate::host::Gate::of),
            filter,
            grok,
            statics,
            stashes,
            whitelist,
            children,
        })
    }

    fn has_whitelist(&self) -> bool {
        !self.whitelist.ips.is_empty()
            || !self.whitelist.cidrs.is_empty()
            || !self.whitelist.exprs.is_empty()
    }

    fn check_whitelist(&self, evt: &mut Event, stash: &crate::data::Stash) -> bool {
        let _ = stash;
        let w = &self.whitelist;
        if !w.ips.is_empty() || !w.cidrs.is_empty() {
            for src in evt.ip_sources() {
                if w.ips.contains(&src) || w.cidrs.iter().any(|c| c.contains(&src)) {
                    return true;
                }
            }
        }
        for p in &w.exprs {
            match eval(p, evt, |r| r.map(|v| v.as_bool())) {
                Ok(Some(true)) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }

    /// `Node.process`: true when the node succeeded.
    pub fn process(&self, evt: &mut Event, cx: &RunCx<'_>) -> Result<bool, NodeError> {
        if self.gate.as_ref().is_some_and(|g| !g.admits(evt)) {
            return Ok(false);
        }
        if let Some(f) = &self.filter {
            let ok = eval(f, evt, |r| matches!(r, Ok(Value::Bool(true))));
            if !ok {
                return Ok(false);
            }
        }
        let mut is_wl = false;
        if self.has_whitelist() {
            is_wl = self.check_whitelist(evt, cx.stash);
            if is_wl && !evt.whitelisted {
                evt.whitelisted = true;
                evt.whitelist_reason = self.whitelist.reason.clone();
                if evt.kind == Kind::Overflow {
                    evt.overflow.whitelisted = true;
                }
            }
        }
        let mut state = true;
        let mut grok_ok = false;
        if let Some(g) = &self.grok {
            // Grok::parse reports fields only on a match, so they go straight into Parsed.
            fn set(parsed: &mut crate::event::StrMap, k: &str, v: &str) {
                match parsed.get_mut(k) {
                    Some(old) => {
                        old.clear();
                        old.push_str(v);
                    }
                    None => {
                        parsed.insert(k.to_owned(), v.to_owned());
                    }
                }
            }
            // None: no input (missing field, failing expression): the grok fails.
            let n = match &g.input {
                GrokInput::LineRaw => {
                    let parsed = &mut evt.parsed;
                    Some(g.grok.parse(&evt.line.raw, |k, v| set(parsed, k, v)))
                }
                GrokInput::Parsed(f) => evt.parsed.get(f).cloned().map(|s| {
                    let parsed = &mut evt.parsed;
                    g.grok.parse(&s, |k, v| set(parsed, k, v))
                }),
                GrokInput::Expr(p) => eval(p, evt, |r| match r {
                    Ok(Value::Str(s)) => Some(s.as_str().to_owned()),
                    Ok(Value::Int(i)) => Some(i.to_string()),
                    Ok(Value::Float(f)) => Some(format!("{f:.6}")),
                    Ok(_) => Some(String::new()),
                    Err(_) => None,
                })
                .map(|s| {
                    let parsed = &mut evt.parsed;
                    g.grok.parse(&s, |k, v| set(parsed, k, v))
                }),
            };
            if n.unwrap_or(0) == 0 {
                state = false;
            } else {
                grok_ok = true;
                for st in &g.statics {
                    if !st.apply(evt, cx.geoip) {
                        return Err(err(&self.name, "a static expression returned a bool"));
                    }
                }
            }
        }
        if grok_ok || self.grok.is_none() {
            for s in &self.stashes {
                let value = eval(&s.value, evt, |r| match r {
                    Ok(Value::Str(x)) => Some(x.as_str().to_owned()),
                    _ => None,
                });
                let key = eval(&s.key, evt, |r| match r {
                    Ok(Value::Str(x)) => Some(x.as_str().to_owned()),
                    _ => None,
                });
                if let (Some(k), Some(v)) = (key, value) {
                    cx.stash.set(&s.name, &k, &v);
                }
            }
        }
        for c in &self.children {
            let ret = c.process(evt, cx)?;
            if ret {
                state = true;
                if self.next_stage {
                    break;
                }
            } else if !grok_ok {
                state = false;
            }
        }
        if !state {
            return Ok(false);
        }
        if !self.statics.is_empty() && (is_wl || !self.has_whitelist()) {
            for st in &self.statics {
                if !st.apply(evt, cx.geoip) {
                    return Err(err(&self.name, "a static expression returned a bool"));
                }
            }
        }
        if self.next_stage
            && let Some(i) = cx.stages.iter().position(|s| *s == evt.stage)
            && i + 1 < cx.stages.len()
        {
            evt.stage = cx.stages[i + 1].clone();
        }
        Ok(true)
    }
}

/// What running nodes needs besides the event.
pub struct RunCx<'a> {
    pub stages: &'a [String],
    pub stash: &'a crate::data::Stash,
    pub geoip: bool,
}

/// One entry of the parser dump: a node's result on one event.
#[derive(Debug, Clone)]
pub struct DumpEntry {
    pub success: bool,
    pub evt: Json,
}

/// The parser dump (`parser_results`): stage → node name → one entry per event it saw.
#[derive(Debug, Clone, Default)]
pub struct Dump {
    pub stages: BTreeMap<String, BTreeMap<String, Vec<DumpEntry>>>,
}

impl Dump {
    /// A dump with the `success` stage CrowdSec's collector always has.
    pub fn new() -> Dump {
        let mut d = Dump::default();
        d.stages
            .entry("success".into())
            .or_default()
            .insert(String::new(), Vec::new());
        d
    }

    fn add(&mut self, stage: &str, node: &str, evt: &Event, success: bool) {
        self.stages
            .entry(stage.to_owned())
            .or_default()
            .entry(node.to_owned())
            .or_default()
            .push(DumpEntry {
                success,
                evt: evt.dump(),
            });
    }

    /// As JSON: `{stage: {parser: [{"Success": .., "Evt": {..}}]}}`.
    pub fn to_json(&self) -> Json {
        let mut out = serde_json::Map::new();
        for (stage, parsers) in &self.stages {
            let mut ps = serde_json::Map::new();
            for (name, entries) in parsers {
                ps.insert(
                    name.clone(),
                    Json::Array(
                        entries
                            .iter()
                            .map(|e| serde_json::json!({"Success": e.success, "Evt": e.evt}))
                            .collect(),
                    ),
                );
            }
            out.insert(stage.clone(), Json::Object(ps));
        }
        Json::Object(out)
    }
}

/// Compiled nodes of every stage, in load order, and the sorted stage names.
#[derive(Debug, Default)]
pub struct Stages {
    pub nodes: Vec<Node>,
    pub stages: Vec<String>,
}

impl Stages {
    /// From nodes in load order.
    pub fn new(nodes: Vec<Node>) -> Stages {
        let mut stages: Vec<String> = nodes.iter().map(|n| n.stage.clone()).collect();
        stages.sort();
        stages.dedup();
        Stages { nodes, stages }
    }

    /// CrowdSec's `parser.Parse`: runs the stages over `evt`; `evt.process` tells whether it
    /// made it through all of them.
    pub fn parse(
        &self,
        evt: &mut Event,
        stash: &crate::data::Stash,
        geoip: bool,
        mut dump: Option<&mut Dump>,
    ) -> Result<(), NodeError> {
        if evt.stage.is_empty()
            && let Some(s) = self.stages.first()
        {
            evt.stage = s.clone();
        }
        evt.process = false;
        if evt.time.is_none() {
            evt.time = Some(GoTime::utc(jiff::Timestamp::now()));
        }
        let cx = RunCx {
            stages: &self.stages,
            stash,
            geoip,
        };
        let pos = |s: &str| {
            self.stages
                .iter()
                .position(|x| x == s)
                .map(|i| i as isize)
                .unwrap_or(-1)
        };
        for (si, stage) in self.stages.iter().enumerate() {
            if pos(&evt.stage) > si as isize {
                continue;
            }
            if evt.stage != *stage {
                return Ok(());
            }
            let mut ok = false;
            for node in &self.nodes {
                if node.stage != evt.stage {
                    continue;
                }
                let ret = node.process(evt, &cx)?;
                if let Some(d) = dump.as_deref_mut() {
                    d.add(stage, &node.name, evt, ret);
                }
                if ret {
                    ok = true;
                }
                if ret && node.next_stage {
                    break;
                }
                if evt.stage != *stage {
                    break;
                }
            }
            if !ok {
                return Ok(());
            }
        }
        evt.process = true;
        Ok(())
    }
}
