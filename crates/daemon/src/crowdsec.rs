//! CrowdSec content in the daemon: the `[crowdsec]` table (a CrowdSec installation, or a hub
//! checkout with collections), loaded once per plan and shared by every source that names a
//! CrowdSec `log_type`. Such a source's lines go through CrowdSec's parsers, scenarios and
//! postoverflows; each overflow becomes a Shield alert through the same scenario and decision
//! stage as Shield's own rules, with CrowdSec's default profile: `ban` (4 h unless `[crowdsec]
//! ban` says otherwise) on the overflow's Ip or Range when the scenario has `remediation: true`;
//! a scenario with `remediation: false` raises its alert (stored, listed by `shield alerts list`)
//! and decides nothing.
//!
//! The seam is [`LineMatcher`]: a line that overflows a CrowdSec scenario is a hit of the rule
//! named after that scenario, and each such rule feeds a one-event scenario of the same name.
//! A line CrowdSec parsed that overflowed nothing is a `nofail` hit (counted as matched).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shield_core::{
    Addr, DecisionType, Hit, LineMatcher, Net, RuleInfo, Scope, SplitMatcher, UnixTime,
};
use shield_crowdsec::event::Event;
use shield_crowdsec::hub::HubEngine;
use shield_crowdsec::setup::{Content, Problem, ScenarioInfo};
use shield_detect::{BucketKind, ScenarioSpec};
use toml::Spanned;

use crate::config::{ConfigError, CrowdsecConfig, Loaded, SourceConfig};

/// The loaded content, shared by every CrowdSec source of a plan (CrowdSec's buckets are
/// global: two sources of one log type fill the same buckets).
pub struct Shared {
    engine: Mutex<HubEngine>,
    /// Scenarios that loaded, deduplicated by name, in load order.
    pub scenarios: Vec<ScenarioInfo>,
    /// Items that did not load (reported by `shield check` and at start, then skipped).
    pub problems: Vec<Problem>,
    /// Data files named by items that could not be read.
    pub missing_data: Vec<String>,
    pub ban: Duration,
}

/// The CrowdSec side of one pipeline.
#[derive(Clone)]
pub struct CrowdsecPipe {
    pub log_type: String,
    pub shared: Arc<Shared>,
}

impl std::fmt::Debug for CrowdsecPipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrowdsecPipe")
            .field("log_type", &self.log_type)
            .field("scenarios", &self.shared.scenarios.len())
            .finish()
    }
}

/// Loads `[crowdsec]` if the config has one. Errors (nothing loadable) go to `errs`; broken
/// items are kept in [`Shared::problems`].
pub fn prepare(
    l: &Loaded,
    table: Option<&Spanned<CrowdsecConfig>>,
    errs: &mut Vec<ConfigError>,
) -> Option<Arc<Shared>> {
    let t = table?;
    let span = t.span();
    if !l
        .config
        .sources
        .iter()
        .any(|s| s.get_ref().log_type.is_some())
    {
        tracing::warn!(
            "[crowdsec] is set but no [[source]] names a log_type: no line goes through CrowdSec's content (add log_type = \"nginx\" or another acquis.yaml labels.type to a source)"
        );
    }
    let c = t.get_ref();
    let content = match (&c.config_dir, &c.hub) {
        (Some(dir), None) => Content::Installation {
            config_dir: dir.clone(),
            data_dir: c.data_dir.clone(),
        },
        (None, Some(hub)) => {
            let beside = |name: &str| {
                hub.parent()
                    .map(|p| p.join(name))
                    .unwrap_or_else(|| PathBuf::from(name))
            };
            Content::Hub {
                hub: hub.clone(),
                patterns: c.patterns.clone().unwrap_or_else(|| beside("patterns")),
                data: c.data.clone().unwrap_or_else(|| beside("data")),
                collections: c.collections.clone(),
                parsers: c.parsers.clone(),
                scenarios: c.scenarios.clone(),
                postoverflows: c.postoverflows.clone(),
            }
        }
        _ => {
            errs.push(l.error_at(
                span,
                "[crowdsec] needs either config_dir or hub",
                Some("config_dir = \"/etc/crowdsec\" runs what that installation runs; hub = \"/path/to/hub\" with collections = [\"crowdsecurity/nginx\"] runs a hub checkout".into()),
            ));
            return None;
        }
    };
    if c.ban.is_zero() {
        errs.push(l.error_at(span.clone(), "[crowdsec] ban must be longer than 0s", None));
    }
    match shield_crowdsec::setup::load(&content) {
        Ok(loaded) => {
            for p in &loaded.problems {
                tracing::warn!("CrowdSec: {p}");
            }
            for m in &loaded.engine.missing_data {
                tracing::warn!("CrowdSec: data file missing: {m}");
            }
            tracing::debug!(
                scenarios = loaded.scenarios.len(),
                skipped = loaded.problems.len(),
                "CrowdSec content loaded"
            );
            let mut seen = std::collections::HashSet::new();
            let scenarios = loaded
                .scenarios
                .into_iter()
                .filter(|s| seen.insert(s.name.clone()))
                .collect();
            Some(Arc::new(Shared {
                missing_data: loaded.engine.missing_data.clone(),
                engine: Mutex::new(loaded.engine),
                scenarios,
                problems: loaded.problems,
                ban: c.ban,
            }))
        }
        Err(e) => {
            errs.push(l.error_at(
                span,
                format!("[crowdsec]: {e}"),
                Some("point config_dir at a CrowdSec configuration directory, or hub/patterns/data at a hub checkout".into()),
            ));
            None
        }
    }
}

/// The CrowdSec side of the pipeline of a source with `log_type`.
pub fn pipe(
    l: &Loaded,
    s: &SourceConfig,
    span: std::ops::Range<usize>,
    shared: Option<&Arc<Shared>>,
) -> Result<CrowdsecPipe, ConfigError> {
    let log_type = s
        .log_type
        .as_ref()
        .map(|t| t.get_ref().clone())
        .unwrap_or_default();
    let Some(shared) = shared else {
        return Err(l.error_at(
            span,
            format!(
                "source `{}` names CrowdSec log_type `{log_type}` but there is no [crowdsec] table",
                s.name
            ),
            Some(
                "add [crowdsec] with config_dir = \"/etc/crowdsec\" (or hub + collections)".into(),
            ),
        ));
    };
    if log_type.is_empty() {
        return Err(l.error_at(
            span,
            format!("source `{}`: log_type is empty", s.name),
            Some("use acquis.yaml's labels.type, e.g. log_type = \"nginx\"".into()),
        ));
    }
    if !s.packs.is_empty() || !s.rules.is_empty() {
        return Err(l.error_at(
            span,
            format!(
                "source `{}` has both a CrowdSec log_type and Shield packs/rules",
                s.name
            ),
            Some("give each its own [[source]] (the same paths may be read by both)".into()),
        ));
    }
    Ok(CrowdsecPipe {
        log_type,
        shared: shared.clone(),
    })
}

impl CrowdsecPipe {
    /// One Shield scenario per CrowdSec scenario: every overflow is an alert; one with
    /// `remediation: false` decides nothing (duration 0s: an alert only).
    pub fn scenarios(&self) -> Vec<ScenarioSpec> {
        self.shared
            .scenarios
            .iter()
            .map(|s| {
                let range = s.scope.eq_ignore_ascii_case("range");
                ScenarioSpec {
                    name: s.name.clone(),
                    rules: vec![s.name.clone()],
                    kind: BucketKind::Window,
                    capacity: 1,
                    leak: Duration::from_secs(1),
                    distinct: None,
                    quiet: Duration::ZERO,
                    decision: DecisionType::Ban,
                    scope: if range { Scope::Range } else { Scope::Ip },
                    duration: if s.remediation {
                        self.shared.ban
                    } else {
                        Duration::ZERO
                    },
                    v6_prefix: Some(if range { 64 } else { 128 }),
                    ignore: Vec::new(),
                }
            })
            .collect()
    }

    /// The matcher a reader thread runs.
    pub fn matcher(&self) -> CrowdsecMatcher {
        let mut rules = vec![RuleInfo {
            name: format!("crowdsec-parsed-{}", self.log_type),
            service: self.log_type.clone(),
        }];
        let mut by_name = HashMap::new();
        for s in &self.shared.scenarios {
            by_name.insert(s.name.clone(), (rules.len() as u32, s.remediation));
            rules.push(RuleInfo {
                name: s.name.clone(),
                service: self.log_type.clone(),
            });
        }
        CrowdsecMatcher {
            shared: self.shared.clone(),
            labels: Arc::new(std::collections::BTreeMap::from([(
                "type".to_owned(),
                self.log_type.clone(),
            )])),
            rules,
            by_name,
        }
    }
}

/// Lines through the shared CrowdSec engine; overflows as hits.
pub struct CrowdsecMatcher {
    shared: Arc<Shared>,
    labels: Arc<std::collections::BTreeMap<String, String>>,
    rules: Vec<RuleInfo>,
    /// Scenario name → (rule index, remediation).
    by_name: HashMap<String, (u32, bool)>,
}

/// No split: CrowdSec's buckets carry state from line to line, so replay
/// runs this matcher on one thread, in order.
impl SplitMatcher for CrowdsecMatcher {}

impl LineMatcher for CrowdsecMatcher {
    fn rules(&self) -> &[RuleInfo] {
        &self.rules
    }

    fn match_line<'a>(&'a mut self, line: &'a str, now: UnixTime) -> Option<Hit<'a>> {
        let mut evt = Event::from_line(line, "", self.labels.clone());
        // As CrowdSec's acquisition stamps a live line with the time it was read: a line whose
        // date no parser reads is counted at arrival (dateparse-enrich overwrites this when it
        // reads one), instead of never filling a bucket.
        if let Ok(t) = jiff::Timestamp::from_second(now) {
            evt.marshaled_time = shield_crowdsec::gotime::GoTime::utc(t).marshal();
        }
        let mut engine = self.shared.engine.lock().unwrap_or_else(|p| p.into_inner());
        let before = engine.parsed;
        let overflows = engine.process(evt, None);
        let parsed = engine.parsed > before;
        drop(engine);
        let mut best: Option<(u32, Addr, bool)> = None;
        for ov in &overflows {
            if ov.overflow.whitelisted {
                continue;
            }
            for a in &ov.overflow.alerts {
                let Some(&(rule, remediation)) = self.by_name.get(&a.scenario) else {
                    continue;
                };
                let target = match a.source.scope.as_str() {
                    "Ip" => a.source.value.parse::<Addr>().ok(),
                    "Range" => a.source.value.parse::<Net>().ok().map(|n| n.first()),
                    _ => None,
                };
                let Some(target) = target else { continue };
                // One hit per line: several overflows of one line blame the same source
                // (CrowdSec groups by it), so the first with remediation decides for all;
                // without any, the first raises its alert only.
                match best {
                    None => best = Some((rule, target, remediation)),
                    Some((_, _, false)) if remediation => best = Some((rule, target, true)),
                    _ => {}
                }
            }
        }
        if let Some((rule, host, _)) = best {
            return Some(Hit::new(rule, host, None));
        }
        if parsed {
            let mut h = Hit::new(0, Addr::from(std::net::Ipv4Addr::UNSPECIFIED), None);
            h.nofail = true;
            return Some(h);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use crate::config::parse;
    use crate::plan::plan;

    fn plan_err(text: &str) -> String {
        let l = parse(text, Some("c.toml".into())).unwrap();
        plan(&l).err().unwrap().to_string()
    }

    #[test]
    fn log_type_needs_a_crowdsec_table_and_no_packs() {
        let e = plan_err("[[source]]\nname = \"web\"\ntype = \"stdin\"\nlog_type = \"nginx\"\n");
        assert!(
            e.contains("c.toml:1:1: source `web` names CrowdSec log_type `nginx` but there is no [crowdsec] table"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("parsers/s01-parse")).unwrap();
        std::fs::create_dir_all(dir.path().join("patterns")).unwrap();
        std::fs::write(
            dir.path().join("parsers/s01-parse/p.yaml"),
            "name: t/p\nfilter: \"1 == 1\"\n",
        )
        .unwrap();
        let table = format!("[crowdsec]\nconfig_dir = \"{}\"\n", dir.path().display());
        let e = plan_err(&format!(
            "{table}\n[[source]]\nname = \"web\"\ntype = \"stdin\"\nlog_type = \"nginx\"\npacks = [\"nginx\"]\n"
        ));
        assert!(
            e.contains("has both a CrowdSec log_type and Shield packs"),
            "{e}"
        );
        let l = parse(
            &format!(
                "{table}\n[[source]]\nname = \"web\"\ntype = \"stdin\"\nlog_type = \"nginx\"\n"
            ),
            None,
        )
        .unwrap();
        let p = plan(&l).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.pipelines.len(), 1);
        assert!(p.crowdsec().is_some());
    }

    #[test]
    fn crowdsec_table_needs_one_origin() {
        let e = plan_err("[crowdsec]\ncollections = [\"crowdsecurity/nginx\"]\n");
        assert!(
            e.contains("c.toml:1:1: [crowdsec] needs either config_dir or hub"),
            "{e}"
        );
        let e = plan_err("[crowdsec]\nconfig_dir = \"/nonexistent/crowdsec\"\n");
        assert!(e.contains("/nonexistent/crowdsec/patterns"), "{e}");
    }
}
