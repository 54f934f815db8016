//! Backtesting: run files through the same engines the daemon runs, on log
//! time, and report what would have been decided.
//!
//! Two threads per file: a reader thread reads, splits and checks UTF-8
//! ([`LineReader`]) and hands whole lines over in large blocks; the calling
//! thread runs the engines over them in log order, so the detections are the
//! same as with one thread. Decisions are taken with the daemon's policy
//! ([`Decider`]) on an in-memory ledger ([`Ledger`]) instead of an SQLite store:
//! replay keeps nothing, and the store's statements cost more than the rules
//! on alert-heavy logs. This module does not tail, enforce or persist.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use ipnet::IpNet;
use serde::Serialize;
use shield_core::{Alert, DecisionType, Scope, UnixTime};
use shield_detect::Engine;
use shield_sources::LineReader;

use crate::decide::Decider;
use crate::run::MAX_LINE;

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

/// What became of an alert in the ledger (the replay view of
/// [`crate::decide::Outcome`]).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    New(ReplayDecision),
    Allowlisted,
    /// Covered by or extending a decision already taken.
    Merged,
}

/// The decisions and offence counts of one replay, in memory: the same rules
/// as [`Decider::on_alert`] on a [`crate::store::Store`] (allowlist, escalation
/// by offences within `forget`, a decision of the same type on the same target
/// is covered or extended), without SQL. `tests::ledger_agrees_with_the_store`
/// keeps the two in step.
#[derive(Default)]
struct Ledger {
    /// target → (offences, last offence).
    offences: HashMap<IpNet, (i64, UnixTime)>,
    /// target → decisions taken on it, oldest first: (type, expires).
    decisions: HashMap<IpNet, Vec<(DecisionType, UnixTime)>>,
}

impl Ledger {
    fn on_alert(&mut self, decider: &Decider, alert: &Alert, now: UnixTime) -> Verdict {
        if decider.protected(&alert.target).is_some() {
            return Verdict::Allowlisted;
        }
        let forget = decider.escalation.forget.as_secs() as i64;
        let off = self.offences.entry(alert.target).or_insert((0, now));
        let n = if off.0 > 0 && now - off.1 <= forget {
            off.0 + 1
        } else {
            1
        };
        *off = (n, now);
        let duration = decider.escalated(alert.duration_s, n as u32);
        let expires = now + duration as i64;
        let taken = self.decisions.entry(alert.target).or_default();
        if let Some(old) = taken
            .iter_mut()
            .find(|(kind, exp)| *exp > now && *kind == alert.kind)
        {
            old.1 = old.1.max(expires);
            return Verdict::Merged;
        }
        taken.push((alert.kind, expires));
        let scope = Scope::of(&alert.target);
        Verdict::New(ReplayDecision {
            scope: scope.as_str(),
            value: match scope {
                Scope::Ip => alert.target.addr().to_string(),
                Scope::Range => alert.target.to_string(),
            },
            kind: alert.kind.as_str(),
            scenario: alert.scenario.clone(),
            duration_s: duration,
        })
    }
}

/// Whole lines, each ending in `\n`, handed from the reader thread.
struct Block {
    text: String,
    /// Lines in `text` that were not UTF-8 (replaced lossily).
    invalid_utf8: u64,
    /// Bytes read from the file so far.
    bytes_read: u64,
}

enum Msg {
    Lines(Block),
    /// End of the file: lines skipped as over-long, bytes read in all.
    End {
        skipped_long: u64,
        bytes_read: u64,
    },
    Err(std::io::Error),
}

/// How much text a block carries: large enough that handing it over is
/// rare, small enough that both threads stay busy and memory stays flat.
const BLOCK: usize = 256 * 1024;
/// Blocks in flight (sent and not yet returned for reuse).
const IN_FLIGHT: usize = 4;

/// The reader thread: splits `reader` into lines and sends them in blocks,
/// reusing the buffers the consumer sends back.
fn read_blocks(
    reader: Box<dyn Read + Send>,
    tx: mpsc::SyncSender<Msg>,
    recycle: mpsc::Receiver<String>,
) {
    let mut lr = LineReader::new(reader, MAX_LINE);
    let mut spare = 0;
    let fresh = |spare: &mut usize| -> String {
        if let Ok(s) = recycle.try_recv() {
            return s;
        }
        if *spare < IN_FLIGHT + 1 {
            *spare += 1;
            return String::with_capacity(BLOCK + MAX_LINE + 1);
        }
        recycle
            .recv()
            .unwrap_or_else(|_| String::with_capacity(BLOCK))
    };
    let mut text = fresh(&mut spare);
    let mut invalid = 0u64;
    loop {
        match lr.next_line() {
            Some(Ok(bytes)) => {
                match std::str::from_utf8(bytes) {
                    Ok(s) => text.push_str(s),
                    Err(_) => {
                        invalid += 1;
                        text.push_str(&String::from_utf8_lossy(bytes));
                    }
                }
                text.push('\n');
                if text.len() >= BLOCK {
                    let b = Block {
                        text: std::mem::replace(&mut text, fresh(&mut spare)),
                        invalid_utf8: std::mem::take(&mut invalid),
                        bytes_read: lr.bytes_read(),
                    };
                    if tx.send(Msg::Lines(b)).is_err() {
                        return;
                    }
                }
            }
            Some(Err(e)) => {
                let _ = tx.send(Msg::Err(e));
                return;
            }
            None => break,
        }
    }
    if !text.is_empty() {
        let b = Block {
            text,
            invalid_utf8: invalid,
            bytes_read: lr.bytes_read(),
        };
        if tx.send(Msg::Lines(b)).is_err() {
            return;
        }
    }
    let _ = tx.send(Msg::End {
        skipped_long: lr.skipped_long(),
        bytes_read: lr.bytes_read(),
    });
}

/// Year inference for syslog stamps: a log was written before its mtime, so
/// stamps are placed in the year that puts them before it.
fn file_clock(f: &Path) -> UnixTime {
    std::fs::metadata(f)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
        .unwrap_or_else(crate::run::now)
}

/// Replays `files` ("-" is stdin; `.gz` is read transparently) through `engines`.
/// `progress` is called with the bytes read so far, now and then.
pub fn replay(
    engines: &mut [Engine],
    decider: &Decider,
    files: &[PathBuf],
    progress: &mut dyn FnMut(u64),
) -> anyhow::Result<ReplayReport> {
    let started = Instant::now();
    let mut ledger = Ledger::default();
    let mut rep = ReplayReport::default();
    let mut alerts = Vec::new();
    let mut bytes_done = 0u64;
    for f in files {
        let reader =
            shield_sources::open(f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
        let mut now = file_clock(f);
        let (tx, rx) = mpsc::sync_channel(IN_FLIGHT);
        let (back, recycle) = mpsc::channel();
        let res: anyhow::Result<()> = std::thread::scope(|s| {
            // Owned here so that leaving early also unblocks a reader waiting
            // for a buffer back.
            let back = back;
            std::thread::Builder::new()
                .name("replay-read".into())
                .spawn_scoped(s, move || read_blocks(reader, tx, recycle))?;
            // Returning early drops `rx`, which ends the reader at its next send.
            for msg in rx {
                let b = match msg {
                    Msg::Lines(b) => b,
                    Msg::End {
                        skipped_long,
                        bytes_read,
                    } => {
                        rep.skipped_long += skipped_long;
                        bytes_done += bytes_read;
                        progress(bytes_done);
                        break;
                    }
                    Msg::Err(e) => anyhow::bail!("{}: {e}", f.display()),
                };
                rep.invalid_utf8 += b.invalid_utf8;
                for text in shield_sources::terminated_lines(&b.text) {
                    rep.lines += 1;
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
                    for a in alerts.drain(..) {
                        rep.alerts += 1;
                        match ledger.on_alert(decider, &a, a.time) {
                            Verdict::New(d) => rep.decisions.push(d),
                            Verdict::Allowlisted => rep.allowlisted += 1,
                            Verdict::Merged => {}
                        }
                    }
                }
                progress(bytes_done + b.bytes_read);
                let mut text = b.text;
                text.clear();
                let _ = back.send(text);
            }
            Ok(())
        });
        res?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Escalation;
    use crate::decide::Outcome;
    use crate::store::Store;
    use shield_core::Allowlist;

    /// The in-memory ledger takes exactly the decisions the SQLite-backed
    /// decider takes, alert for alert (escalation, forgetting, covered and
    /// extended decisions, types, ranges, allowlist, time going backwards).
    #[test]
    fn ledger_agrees_with_the_store() {
        let store = Store::open(Path::new(":memory:")).unwrap();
        let allow = Allowlist::new(vec!["192.0.2.0/28".parse().unwrap()]);
        let esc = Escalation {
            forget: std::time::Duration::from_secs(5000),
            ..Escalation::default()
        };
        let decider = Decider::new(allow, esc);
        let mut ledger = Ledger::default();
        let targets = [
            "203.0.113.7/32",
            "203.0.113.0/24",
            "192.0.2.3/32",
            "2001:db8::/64",
            "198.51.100.1/32",
        ];
        let kinds = [
            DecisionType::Ban,
            DecisionType::Throttle,
            DecisionType::Captcha,
        ];
        // A small deterministic generator (xorshift) for the sequence.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut t = 1_000_000i64;
        let (mut new, mut merged) = (0, 0);
        for _ in 0..5000 {
            // Mostly forward, sometimes back (several files, unordered logs).
            t += next(4_000) as i64 - 500;
            let a = Alert {
                scenario: format!("s{}", next(3)),
                target: targets[next(targets.len() as u64) as usize]
                    .parse()
                    .unwrap(),
                time: t,
                first_seen: t,
                events: 5,
                evidence: vec![],
                kind: kinds[next(3) as usize],
                duration_s: [60, 600, 3600][next(3) as usize],
            };
            let want = match decider.on_alert(&store, &a, t).unwrap() {
                Outcome::New(d) => Verdict::New(ReplayDecision {
                    scope: d.scope.as_str(),
                    value: d.value(),
                    kind: d.kind.as_str(),
                    scenario: d.scenario.clone(),
                    duration_s: d.duration_s(),
                }),
                Outcome::Allowlisted(_) => Verdict::Allowlisted,
                Outcome::Covered(_) | Outcome::Extended(_) => Verdict::Merged,
            };
            let got = ledger.on_alert(&decider, &a, t);
            match &got {
                Verdict::New(_) => new += 1,
                Verdict::Merged => merged += 1,
                Verdict::Allowlisted => {}
            }
            assert_eq!(got, want, "{a:?}");
        }
        assert!(new > 100 && merged > 100, "new {new}, merged {merged}");
    }
}
