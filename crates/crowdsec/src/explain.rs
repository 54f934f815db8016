//! `shield explain --crowdsec`: what CrowdSec content makes of each line, like `cscli explain`
//! (`pkg/dumps/parser_dump.go`): per stage, each parser node's result and how it changed the
//! event (`+created ~updated -deleted` fields), whether the line made it through the parsers,
//! the scenarios whose filter took it, and the overflows it caused. Buckets fill as in a replay,
//! so an overflow shows on the line that causes it.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value as Json, json};

use crate::event::Event;
use crate::hub::HubEngine;
use crate::parser::{Dump, eval};
use crate::setup::Loaded;

/// One parser node on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeResult {
    pub name: String,
    pub success: bool,
    pub created: usize,
    pub updated: usize,
    pub deleted: usize,
    pub whitelisted: bool,
}

/// What the content made of one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineExplain {
    pub line: String,
    /// Stages in order, each with the nodes that ran on the line, in load order.
    pub stages: Vec<(String, Vec<NodeResult>)>,
    /// The line went through every stage (it reached the buckets).
    pub parsed: bool,
    /// The whitelist reason when a whitelist took the line.
    pub whitelisted: Option<String>,
    /// Scenarios whose filter took the line, sorted.
    pub scenarios: Vec<String>,
    /// Scenarios that overflowed on this line (after postoverflows; whitelisted ones marked).
    pub overflows: Vec<String>,
}

/// An engine with its scenario filters, fed lines one at a time.
pub struct Explainer {
    engine: HubEngine,
    filters: Vec<(String, shield_expr::Program)>,
    labels: Arc<BTreeMap<String, String>>,
}

impl Explainer {
    /// `log_type` is what acquis.yaml's `labels.type` would give these lines.
    pub fn new(loaded: Loaded, log_type: &str) -> Explainer {
        Explainer {
            engine: loaded.engine,
            filters: loaded.filters,
            labels: Arc::new(BTreeMap::from([("type".to_owned(), log_type.to_owned())])),
        }
    }

    pub fn explain(&mut self, line: &str, src: &str) -> LineExplain {
        let mut evt = Event::from_line(line, src, self.labels.clone());
        let mut dump = Dump::new();
        // Changes are counted from the event as acquired (cscli diffs from an empty event).
        let mut prev = evt.dump();
        let e = &mut self.engine;
        let ok = e
            .parsers
            .parse(&mut evt, &e.stash, false, Some(&mut dump))
            .is_ok();
        let mut stages = Vec::new();
        for stage in &e.parsers.stages {
            let Some(ran) = dump.stages.get(stage) else {
                continue;
            };
            let mut nodes = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for n in e.parsers.nodes.iter().filter(|n| &n.stage == stage) {
                if !seen.insert(n.name.as_str()) {
                    continue;
                }
                let Some(entry) = ran.get(&n.name).and_then(|v| v.last()) else {
                    continue;
                };
                let mut r = NodeResult {
                    name: n.name.clone(),
                    success: entry.success,
                    created: 0,
                    updated: 0,
                    deleted: 0,
                    whitelisted: false,
                };
                if entry.success {
                    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
                    flatten("", &prev, &mut a);
                    flatten("", &entry.evt, &mut b);
                    for (k, v) in &b {
                        match a.get(k) {
                            None => r.created += 1,
                            Some(old) if old != v => {
                                r.updated += 1;
                                if k == "Whitelisted" && v == "true" {
                                    r.whitelisted = true;
                                }
                            }
                            _ => {}
                        }
                    }
                    r.deleted = a.keys().filter(|k| !b.contains_key(*k)).count();
                    prev = entry.evt.clone();
                }
                nodes.push(r);
            }
            stages.push((stage.clone(), nodes));
        }
        let parsed = ok && evt.process && !evt.whitelisted;
        let whitelisted = evt.whitelisted.then(|| evt.whitelist_reason.clone());
        let mut scenarios = Vec::new();
        let mut overflows = Vec::new();
        if parsed {
            for (name, f) in &self.filters {
                if eval(
                    f,
                    &mut evt,
                    |r| matches!(r, Ok(v) if v.as_bool() == Some(true)),
                ) {
                    scenarios.push(name.clone());
                }
            }
            scenarios.sort();
            scenarios.dedup();
            e.parsed += 1;
            for mut ov in e.buckets.pour(&mut evt) {
                if e.postoverflows
                    .parse(&mut ov, &e.stash, false, None)
                    .is_err()
                {
                    continue;
                }
                let name = ov
                    .overflow
                    .alerts
                    .first()
                    .map(|a| a.scenario.clone())
                    .unwrap_or_default();
                overflows.push(if ov.overflow.whitelisted {
                    format!("{name} [whitelisted]")
                } else {
                    name
                });
            }
        }
        LineExplain {
            line: line.to_owned(),
            stages,
            parsed,
            whitelisted,
            scenarios,
            overflows,
        }
    }
}

/// Leaves of a dumped event as `path → value text`.
fn flatten(prefix: &str, v: &Json, out: &mut BTreeMap<String, String>) {
    match v {
        Json::Object(m) => {
            for (k, x) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&p, x, out);
            }
        }
        Json::Null => {}
        Json::String(s) if s.is_empty() => {}
        Json::String(s) => {
            out.insert(prefix.to_owned(), s.clone());
        }
        other => {
            out.insert(prefix.to_owned(), other.to_string());
        }
    }
}

impl LineExplain {
    /// `cscli explain`'s tree (failed parsers shown too, as with its `-v`).
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut o = String::new();
        let _ = writeln!(o, "line: {}", self.line);
        for (stage, nodes) in &self.stages {
            let _ = writeln!(o, "\t├ {stage}");
            for (i, n) in nodes.iter().enumerate() {
                let sep = if i + 1 == nodes.len() { "└" } else { "├" };
                if n.success {
                    let mut parts = Vec::new();
                    if n.created > 0 {
                        parts.push(format!("+{}", n.created));
                    }
                    if n.updated > 0 {
                        parts.push(format!("~{}", n.updated));
                    }
                    if n.deleted > 0 {
                        parts.push(format!("-{}", n.deleted));
                    }
                    if n.whitelisted {
                        parts.push("[whitelisted]".into());
                    }
                    let summary = if parts.is_empty() {
                        "unchanged".to_owned()
                    } else {
                        parts.join(" ")
                    };
                    let _ = writeln!(o, "\t|\t{sep} 🟢 {} ({summary})", n.name);
                } else {
                    let _ = writeln!(o, "\t|\t{sep} 🔴 {}", n.name);
                }
            }
        }
        let sep = if self.scenarios.is_empty() {
            "└"
        } else {
            "├"
        };
        if self.parsed {
            let _ = writeln!(o, "\t{sep}-------- parser success 🟢");
        } else if let Some(r) = &self.whitelisted {
            let _ = writeln!(
                o,
                "\t{sep}-------- parser success, ignored by whitelist ({r}) 🟢"
            );
        } else {
            let _ = writeln!(o, "\t{sep}-------- parser failure 🔴");
        }
        if !self.scenarios.is_empty() {
            let _ = writeln!(o, "\t├ Scenarios");
            for (i, s) in self.scenarios.iter().enumerate() {
                let sep = if i + 1 == self.scenarios.len() {
                    "└"
                } else {
                    "├"
                };
                let _ = writeln!(o, "\t\t{sep} 🟢 {s}");
            }
        }
        for s in &self.overflows {
            let _ = writeln!(o, "\t  overflow: {s}");
        }
        o
    }

    /// One JSON object per line.
    pub fn to_json(&self) -> Json {
        json!({
            "line": self.line,
            "stages": self.stages.iter().map(|(s, nodes)| json!({
                "stage": s,
                "parsers": nodes.iter().map(|n| json!({
                    "name": n.name, "success": n.success, "created": n.created,
                    "updated": n.updated, "deleted": n.deleted, "whitelisted": n.whitelisted,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "parsed": self.parsed,
            "whitelisted": self.whitelisted,
            "scenarios": self.scenarios,
            "overflows": self.overflows,
        })
    }
}
