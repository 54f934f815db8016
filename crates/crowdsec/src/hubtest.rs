//! CrowdSec's hub tests (`.tests/NAME/config.yaml`, the log, `parser.assert`,
//! `scenario.assert`) run the way `cscli hubtest run` runs them: the listed items loaded, the
//! log replayed in time-machine mode with `type` = `log_type` (and the test's labels), the
//! parser dump and the overflows collected, and each assertion line evaluated with
//! `shield-expr` against them. Owns the runner and the JSON line per test.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Value as Json, json};
use shield_expr::{Arity, Compiler, Value};

use crate::event::{Event, Kind};
use crate::hub::{Hub, HubEngine, Selection};
use crate::parser::Dump;

/// Counts of assertion lines that held and did not.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tally {
    pub passed: usize,
    pub failed: usize,
}

/// Assertion lines that did not hold, with what the expression gave.
pub type Failures = Vec<String>;

/// The outcome of one hub test.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: String,
    pub skipped: Option<String>,
    pub error: Option<String>,
    pub parser_assert: Option<Tally>,
    pub scenario_assert: Option<Tally>,
    pub overflows: Vec<Event>,
    pub dump: Dump,
    pub lines: usize,
    /// The first assertion lines that failed (file: line => result).
    pub failures: Failures,
}

impl Outcome {
    /// True when every assertion that was evaluated held and nothing failed to run.
    pub fn passed(&self) -> bool {
        self.skipped.is_none()
            && self.error.is_none()
            && self.parser_assert.is_none_or(|t| t.failed == 0)
            && self.scenario_assert.is_none_or(|t| t.failed == 0)
    }

    /// The JSON line `shield hubtest --format json` prints.
    pub fn to_json(&self) -> Json {
        let tally = |t: Option<Tally>| match t {
            Some(t) => json!({"passed": t.passed, "failed": t.failed}),
            None => Json::Null,
        };
        let results: Vec<Json> = self.overflows.iter().filter_map(overflow_json).collect();
        json!({
            "test": self.name,
            "skipped": self.skipped,
            "error": self.error,
            "parser_assert": tally(self.parser_assert),
            "scenario_assert": tally(self.scenario_assert),
            "results": results,
            "parser_results": self.dump.to_json(),
        })
    }
}

fn overflow_json(e: &Event) -> Option<Json> {
    let a = e.overflow.alerts.first()?;
    let sources: serde_json::Map<String, Json> = e
        .overflow
        .sources
        .iter()
        .map(|(k, s)| (k.clone(), s.to_json()))
        .collect();
    let events: Vec<Json> = a
        .events
        .iter()
        .map(|ev| {
            let meta: BTreeMap<&str, &str> = ev
                .meta
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            json!({"meta": meta, "timestamp": ev.timestamp})
        })
        .collect();
    Some(json!({
        "scenario": a.scenario,
        "remediation": a.remediation,
        "events_count": a.events_count,
        "whitelisted": e.overflow.whitelisted,
        "start_at": a.start_at,
        "stop_at": a.stop_at,
        "sources": sources,
        "events": events,
    }))
}

/// Lines of an assertion file that are assertions (non-empty).
fn assert_lines(path: &Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(path).ok()?;
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    Some(lines)
}

fn assert_compiler() -> Compiler {
    let mut c = Compiler::new();
    c.register_fn("basename", Arity::exact(1), |args| {
        let s = args.first().and_then(Value::as_str).unwrap_or("");
        Ok(Value::string(s.rsplit('/').next().unwrap_or("").to_owned()))
    });
    c.var("results");
    c
}

/// Evaluates assertion lines with `results` bound to `results`.
fn run_asserts(file: &str, lines: &[String], results: &Value<'_>, fails: &mut Failures) -> Tally {
    let c = assert_compiler();
    let mut t = Tally::default();
    for l in lines {
        let got = match c.compile(l) {
            Ok(p) => match p.run(std::slice::from_ref(results)) {
                Ok(v) => format!("{v:?}"),
                Err(e) => format!("error: {e}"),
            },
            Err(e) => format!("does not compile: {e}"),
        };
        if got == "true" {
            t.passed += 1;
        } else {
            t.failed += 1;
            if fails.len() < 20 {
                fails.push(format!("{file}: {l} => {got}"));
            }
        }
    }
    t
}

/// Runs the hub test in `dir` against `hub`.
pub fn run_test(hub: &Hub, dir: &Path) -> Outcome {
    run_test_with(hub, dir, true)
}

/// [`run_test`], optionally without keeping the parser dump (then `parser.assert` is not
/// evaluated).
pub fn run_test_with(hub: &Hub, dir: &Path, keep_dump: bool) -> Outcome {
    let name = dir
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut out = Outcome {
        name,
        skipped: None,
        error: None,
        parser_assert: None,
        scenario_assert: None,
        overflows: Vec::new(),
        dump: Dump::new(),
        lines: 0,
        failures: Vec::new(),
    };
    let cfg = match crate::config::load_test_config(&dir.join("config.yaml")) {
        Ok(c) => c,
        Err(e) => {
            out.error = Some(e.to_string());
            return out;
        }
    };
    if cfg.log_file.is_empty() {
        out.skipped = Some("no log_file (appsec/nuclei tests need a running WAF)".into());
        return out;
    }
    let sel = Selection {
        parsers: cfg.parsers.clone(),
        scenarios: cfg.scenarios.clone(),
        postoverflows: cfg.postoverflows.clone(),
        override_statics: cfg.override_statics.clone(),
    };
    let mut engine = match HubEngine::load(hub, &sel, &[dir]) {
        Ok(e) => e,
        Err(e) => {
            out.error = Some(format!("{e:#}"));
            return out;
        }
    };
    if engine.needs_geoip {
        out.skipped =
            Some("needs GeoIP database (GeoLite2 mmdb files are not redistributable)".into());
        return out;
    }
    let log = match std::fs::read(dir.join(&cfg.log_file)) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => {
            out.error = Some(format!("{}: {e}", dir.join(&cfg.log_file).display()));
            return out;
        }
    };
    let mut labels: BTreeMap<String, String> = cfg.labels.clone().unwrap_or_default();
    labels.insert("type".into(), cfg.log_type.clone());
    let labels = Arc::new(labels);
    for raw in log.split('\n') {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.is_empty() {
            continue;
        }
        out.lines += 1;
        let evt = Event::from_line(raw, &cfg.log_file, labels.clone());
        let ovs = engine.process(evt, keep_dump.then_some(&mut out.dump));
        out.overflows.extend(ovs);
    }
    // cscli hubtest sorts the bucket dump by scenario name + sources, descending.
    let order_key = |e: &Event| {
        let scen = e
            .overflow
            .alerts
            .first()
            .map(|a| a.scenario.as_str())
            .unwrap_or("");
        let srcs: Vec<&str> = e.overflow.sources.keys().map(String::as_str).collect();
        format!("{scen}{}", srcs.join("@"))
    };
    out.overflows
        .sort_by_key(|e| std::cmp::Reverse(order_key(e)));
    if !cfg.ignore_parsers
        && keep_dump
        && let Some(lines) = assert_lines(&dir.join("parser.assert"))
        && !lines.is_empty()
    {
        let j = out.dump.to_json();
        let tree = crate::assertview::DumpNode::new(&j, false);
        out.parser_assert = Some(run_asserts(
            "parser.assert",
            &lines,
            &Value::Object(&tree),
            &mut out.failures,
        ));
    }
    if cfg.scenarios.iter().any(|s| !s.is_empty())
        && let Some(lines) = assert_lines(&dir.join("scenario.assert"))
        && !lines.is_empty()
    {
        let ovs: Vec<&Event> = out
            .overflows
            .iter()
            .filter(|e| e.kind == Kind::Overflow && !e.overflow.alerts.is_empty())
            .collect();
        let views: Vec<crate::host::EvtView<'_>> =
            ovs.iter().map(|e| crate::host::EvtView::new(e)).collect();
        let list = Value::list(
            views
                .iter()
                .map(|v| Value::Object(v as &dyn shield_expr::Object))
                .collect(),
        );
        out.scenario_assert = Some(run_asserts(
            "scenario.assert",
            &lines,
            &list,
            &mut out.failures,
        ));
    }
    out
}

/// The test directories under `tests_dir`, by name (or only those named).
pub fn list_tests(tests_dir: &Path, only: &[String]) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(tests_dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.join("config.yaml").is_file())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    if !only.is_empty() {
        v.retain(|p| {
            p.file_name()
                .map(|n| only.iter().any(|o| o.as_str() == n.to_string_lossy()))
                .unwrap_or(false)
        });
    }
    v
}
