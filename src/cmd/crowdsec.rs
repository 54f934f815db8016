//! `shield replay --crowdsec CFG_DIR --log-type T FILE...`: a CrowdSec installation's parsers,
//! scenarios and postoverflows over log files in time-machine mode, with CrowdSec's default
//! profiles turning overflows into decisions (ban 4h on Ip or Range scope when the scenario
//! has `remediation: true`). Prints the same report as `shield replay`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use shield_daemon::replay::{ReplayDecision, ReplayReport};

use super::replay::CrowdsecArgs;

/// CrowdSec's default profiles: `ban` for 4 hours.
const BAN_SECONDS: u64 = 4 * 3600;

pub fn replay(
    dir: &std::path::Path,
    a: &CrowdsecArgs,
    files: &[PathBuf],
) -> anyhow::Result<ReplayReport> {
    let log_type = a.log_type.clone().context(
        "--crowdsec needs --log-type (the acquis.yaml labels.type of these logs, e.g. nginx)",
    )?;
    let mut engine =
        shield_crowdsec::hub::Engine::load_installation(dir, a.crowdsec_data.as_deref())
            .with_context(|| format!("loading CrowdSec configuration {}", dir.display()))?;
    for m in &engine.missing_data {
        tracing::warn!("data file missing: {m}");
    }
    let labels = Arc::new(BTreeMap::from([("type".to_owned(), log_type)]));
    let started = std::time::Instant::now();
    let mut rep = ReplayReport::default();
    let mut seen: BTreeSet<(&'static str, String)> = BTreeSet::new();
    for f in files {
        // The same opening (plain, gzip by magic, `-` for stdin) and the same
        // line bound as `shield replay`: an over-long line is skipped and
        // counted, never held whole.
        let reader = shield_sources::open(f).with_context(|| format!("opening {}", f.display()))?;
        let mut lines = shield_sources::LineReader::new(reader, shield_daemon::state::MAX_LINE);
        let src = f.to_string_lossy().into_owned();
        while let Some(line) = lines.next_line() {
            let line = line.with_context(|| format!("reading {}", f.display()))?;
            let Ok(text) = std::str::from_utf8(line) else {
                rep.invalid_utf8 += 1;
                continue;
            };
            if text.is_empty() {
                continue;
            }
            rep.lines += 1;
            let evt = shield_crowdsec::event::Event::from_line(text, &src, labels.clone());
            for ov in engine.process(evt, None) {
                let Some(alert) = ov.overflow.alerts.first() else {
                    continue;
                };
                if ov.overflow.whitelisted {
                    rep.allowlisted += 1;
                    continue;
                }
                rep.alerts += 1;
                *rep.scenarios.entry(alert.scenario.clone()).or_default() += 1;
                if !alert.remediation {
                    continue;
                }
                for a in &ov.overflow.alerts {
                    // The value came out of a log line: only its canonical
                    // form (IPv4 written as IPv6 is IPv4) is decided on.
                    let v = a.source.value.as_str();
                    let (scope, value) = match a.source.scope.as_str() {
                        "Ip" => match v.parse::<shield_core::Addr>() {
                            Ok(addr) => ("ip", addr.to_string()),
                            Err(_) => continue,
                        },
                        "Range" => match v.parse::<shield_core::Net>() {
                            Ok(net) => ("range", net.to_string()),
                            Err(_) => continue,
                        },
                        _ => continue,
                    };
                    if seen.insert((scope, value.clone())) {
                        rep.decisions.push(ReplayDecision {
                            scope,
                            value,
                            kind: "ban",
                            scenario: a.scenario.clone(),
                            duration_s: BAN_SECONDS,
                        });
                    }
                }
            }
        }
        rep.skipped_long += lines.skipped_long();
    }
    rep.matched = engine.parsed;
    rep.elapsed_s = started.elapsed().as_secs_f64();
    rep.lines_per_s = if rep.elapsed_s > 0.0 {
        rep.lines as f64 / rep.elapsed_s
    } else {
        0.0
    };
    Ok(rep)
}
