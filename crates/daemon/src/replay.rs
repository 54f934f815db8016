//! Backtesting: run files through the same engines the daemon runs, on log
//! time, and report what would have been decided.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;
use shield_detect::Engine;
use shield_sources::LineReader;

use crate::decide::{Decider, Outcome};
use crate::run::MAX_LINE;
use crate::store::Store;

/// One decision replay would take (the stable JSON shape other tools read).
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct ReplayDecision {
    pub scope: &'static str,
    pub value: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub scenario: String,
    pub duration_s: u64,
}

/// What `shield replay --format json` prints.
#[derive(Serialize, Debug, Default)]
pub struct ReplayReport {
    pub lines: u64,
    pub matched: u64,
    pub elapsed_s: f64,
    pub lines_per_s: f64,
    pub decisions: Vec<ReplayDecision>,
    pub alerts: u64,
    pub allowlisted: u64,
    pub skipped_long: u64,
    pub invalid_utf8: u64,
    pub keys_evicted: u64,
    pub rules: BTreeMap<String, u64>,
    pub scenarios: BTreeMap<String, u64>,
}

/// Replays `files` ("-" is stdin; `.gz` is read transparently) through `engines`.
/// `progress` is called with the bytes read so far, now and then.
pub fn replay(
    engines: &mut [Engine],
    decider: &Decider,
    files: &[PathBuf],
    progress: &mut dyn FnMut(u64),
) -> anyhow::Result<ReplayReport> {
    let store = Store::open(std::path::Path::new(":memory:"))?;
    let started = Instant::now();
    let mut rep = ReplayReport::default();
    let mut alerts = Vec::new();
    let mut bytes_done = 0u64;
    for f in files {
        let reader =
            shield_sources::open(f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
        // Year inference for syslog stamps: a log was written before its
        // mtime, so stamps are placed in the year that puts them before it.
        let mut now = std::fs::metadata(f)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64)
            .unwrap_or_else(crate::run::now);
        let mut lr = LineReader::new(reader, MAX_LINE);
        let mut n = 0u64;
        while let Some(line) = lr.next_line() {
            let bytes = line.map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
            rep.lines += 1;
            n += 1;
            let owned;
            let text = match std::str::from_utf8(bytes) {
                Ok(s) => s,
                Err(_) => {
                    rep.invalid_utf8 += 1;
                    owned = String::from_utf8_lossy(bytes).into_owned();
                    &owned
                }
            };
            let mut hit = false;
            for e in engines.iter_mut() {
                let before = e.stats().matched;
                if let Some(t) = e.feed(text, now, &mut |a| alerts.push(a))
                    && t > now
                {
                    now = t;
                }
                hit |= e.stats().matched != before;
            }
            rep.matched += hit as u64;
            if n.is_multiple_of(65536) {
                progress(bytes_done + lr.bytes_read());
            }
            if !alerts.is_empty() {
                for a in alerts.drain(..) {
                    rep.alerts += 1;
                    match decider.on_alert(&store, &a, a.time)? {
                        Outcome::New(d) => rep.decisions.push(ReplayDecision {
                            scope: d.scope.as_str(),
                            value: d.value(),
                            kind: d.kind.as_str(),
                            scenario: d.scenario.clone(),
                            duration_s: d.duration_s(),
                        }),
                        Outcome::Allowlisted(_) => rep.allowlisted += 1,
                        _ => {}
                    }
                }
            }
        }
        rep.skipped_long += lr.skipped_long();
        bytes_done += lr.bytes_read();
        progress(bytes_done);
    }
    for e in engines.iter() {
        let s = e.stats();
        rep.keys_evicted += s.keys_evicted;
        for r in &s.rules {
            *rep.rules.entry(r.name.clone()).or_default() += r.hits;
        }
        for sc in &s.scenarios {
            *rep.scenarios.entry(sc.name.clone()).or_default() += sc.alerts;
        }
    }
    rep.elapsed_s = started.elapsed().as_secs_f64();
    rep.lines_per_s = rep.lines as f64 / rep.elapsed_s.max(1e-9);
    Ok(rep)
}
