//! Backtesting: run files through the same engines the daemon runs, on log
//! time, and report what would have been decided.
//!
//! A pipeline of large blocks of whole lines, per file: a reader thread reads,
//! splits and checks UTF-8 ([`LineReader`]); matcher threads run the rules of
//! every engine ([`Matcher`]) over blocks and attach the hits; the calling
//! thread puts the blocks back in log order, runs the scenarios
//! ([`Scenarios`]) over the hits and decides. The detections are exactly those
//! of [`Engine::feed`] on one thread:
//!
//! - When every engine's rules read one line at a time ([`Matcher::fork`]),
//!   each matcher thread has its own copy and blocks are matched in parallel,
//!   each from the file's clock (its mtime, see [`file_clock`]). What the
//!   clock decides (the year of a syslog stamp, the time of a line without
//!   one) would differ only if it moved, and it only moves past a line stamped
//!   later than the file's mtime, so the guess is right for logs written
//!   before they were last modified. The calling thread checks it for every
//!   block and matches a block again, in order, from the true clock when it
//!   was wrong.
//! - Rules that carry state from line to line (a fail2ban filter's
//!   multi-line failure ids and its last date template) split their work
//!   ([`shield_core::SplitMatcher::scanner`]): matcher threads do what each
//!   line decides alone and leave a record for the lines a rule may take,
//!   and the calling thread settles those records in order with the
//!   engine's own rules. What a scan depends on besides the line (its
//!   [`Carry`]) is checked for every block like the clock, and a block
//!   scanned from the wrong one is matched again in order.
//! - Otherwise one matcher thread takes the blocks in order and carries the
//!   clock, as one thread would.
//!
//! Decisions are taken with the daemon's policy ([`Decider`]) on an in-memory
//! [`Ledger`] ([`MemoryLedger`]) instead of an SQLite store: replay keeps nothing, and
//! the store's statements cost more than the rules on alert-heavy logs. This
//! module does not tail, enforce or persist.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

use serde::Serialize;
use shield_core::Net;
use shield_core::{Alert, Carry, Decision, DecisionType, UnixTime};
use shield_detect::{Engine, Matched, Matcher, Scenarios};
use shield_sources::LineReader;

use crate::decide::{Decider, Ledger, Outcome};
use crate::state::MAX_LINE;

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

impl ReplayDecision {
    fn of(d: Decision) -> Self {
        ReplayDecision {
            scope: d.scope.as_str(),
            value: d.value(),
            kind: d.kind.as_str(),
            duration_s: d.duration_s(),
            scenario: d.scenario,
        }
    }
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

/// The decisions and offence counts of one replay, in memory: the daemon's
/// policy ([`Decider`]) runs on it as on the SQLite store, without SQL.
/// Decisions that ended are kept, as the store keeps them: the files of one
/// replay may go back in time.
#[derive(Default)]
struct MemoryLedger {
    /// target → (offences, last offence).
    offences: HashMap<Net, (u32, UnixTime)>,
    /// target → decisions taken on it, oldest (lowest id) first.
    decisions: HashMap<Net, Vec<Decision>>,
    /// id → (target, index in its list), for [`Ledger::set_expiry`].
    ids: Vec<(Net, usize)>,
}

impl Ledger for MemoryLedger {
    type Error = std::convert::Infallible;
    fn bump_offence(
        &mut self,
        target: &Net,
        now: UnixTime,
        forget_s: u64,
    ) -> Result<u32, Self::Error> {
        let off = self.offences.entry(*target).or_insert((0, now));
        let n = if off.0 > 0 && now - off.1 <= forget_s as i64 {
            off.0 + 1
        } else {
            1
        };
        *off = (n, now);
        Ok(n)
    }
    fn active(
        &mut self,
        target: &Net,
        kind: DecisionType,
        now: UnixTime,
    ) -> Result<Option<Decision>, Self::Error> {
        Ok(self.decisions.get(target).and_then(|ds| {
            ds.iter()
                .find(|d| d.expires > now && d.kind == kind)
                .cloned()
        }))
    }
    fn set_expiry(&mut self, id: i64, expires: UnixTime) -> Result<(), Self::Error> {
        if let Some((target, i)) = usize::try_from(id - 1).ok().and_then(|i| self.ids.get(i))
            && let Some(d) = self.decisions.get_mut(target).and_then(|ds| ds.get_mut(*i))
        {
            d.expires = expires;
        }
        Ok(())
    }
    fn insert(&mut self, d: &Decision) -> Result<Decision, Self::Error> {
        let taken = self.decisions.entry(d.target).or_default();
        self.ids.push((d.target, taken.len()));
        let d = Decision {
            id: self.ids.len() as i64,
            ..d.clone()
        };
        taken.push(d.clone());
        Ok(d)
    }
}

/// Whole lines, each ending in `\n`, handed from the reader thread through a
/// matcher thread to the calling thread, then back to the reader for reuse.
#[derive(Default)]
struct Block {
    /// Position in the file, from 0: blocks may come back out of order.
    seq: u64,
    text: String,
    /// Lines in `text` that were not UTF-8 (replaced lossily).
    invalid_utf8: u64,
    /// Bytes read from the file so far.
    bytes_read: u64,
    /// Filled by a matcher thread: what the rules matched or may match,
    /// by line then engine.
    found: Vec<BlockHit>,
    /// The records of the lines scanning copies left to settle.
    rec: Vec<u32>,
    /// Filled by a matcher thread: lines in `text`.
    lines: u64,
    /// The clock the block was matched from, and the clock after its last
    /// line.
    clock_in: UnixTime,
    clock_out: UnixTime,
    /// Per engine: the carry its rules matched the block from, and the one
    /// after its last line (see [`Carry`]).
    carry_in: Vec<Carry>,
    carry_out: Vec<Option<Carry>>,
}

/// A line some rule of one engine matched, or may match.
struct BlockHit {
    engine: u32,
    /// The line (without `\n`) in [`Block::text`].
    start: u32,
    end: u32,
    m: Matched,
    /// [`NO_REC`], or the line's record in [`Block::rec`]: the engine's own
    /// rules then settle what it matched.
    rec: u32,
}

const NO_REC: u32 = u32::MAX;

/// What the reader and matcher threads send on towards the calling thread.
enum BlockMsg {
    Lines(Block),
    /// End of the file (after block `seq - 1`): lines skipped as over-long,
    /// bytes read in all.
    End {
        seq: u64,
        skipped_long: u64,
        bytes_read: u64,
    },
    Err(std::io::Error),
}

/// How much text a block carries: large enough that handing it over is
/// rare, small enough that every thread stays busy and memory stays flat.
const BLOCK: usize = 128 * 1024;
/// Blocks in flight per matcher thread. The calling thread takes blocks in
/// order, so a matcher descheduled in the middle of one holds it up; the
/// other matchers go on only as far as the pool lets them. Eight per matcher
/// (1 MiB of text each) lets them work through such a pause instead of
/// idling, so the cores stay busy.
const BLOCKS_PER_MATCHER: usize = 8;
/// Most matcher threads when the rules can be copied: one per available
/// core up to this many (more than the cores a replay usually gets buys
/// nothing).
const MAX_MATCHERS: usize = 4;

/// The reader thread: splits `reader` into lines and sends them in numbered
/// blocks, reusing the blocks the calling thread sends back; at most `pool`
/// blocks exist at once.
fn read_blocks(
    reader: Box<dyn Read + Send>,
    tx: mpsc::SyncSender<BlockMsg>,
    recycle: mpsc::Receiver<Block>,
    pool: usize,
) {
    let mut lr = LineReader::new(reader, MAX_LINE);
    let mut made = 0;
    let mut seq = 0;
    loop {
        let mut b = match recycle.try_recv() {
            Ok(b) => b,
            Err(_) if made < pool => {
                made += 1;
                Block {
                    text: String::with_capacity(BLOCK + MAX_LINE + 1),
                    ..Block::default()
                }
            }
            // Waits for the calling thread; if it has gone, the send fails.
            Err(_) => recycle.recv().unwrap_or_default(),
        };
        b.text.clear();
        b.found.clear();
        b.rec.clear();
        let (invalid, end) = match lr.next_block(&mut b.text, BLOCK) {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(BlockMsg::Err(e));
                return;
            }
        };
        if !b.text.is_empty() {
            b.seq = seq;
            seq += 1;
            b.invalid_utf8 = invalid;
            b.bytes_read = lr.bytes_read();
            if tx.send(BlockMsg::Lines(b)).is_err() {
                return;
            }
        }
        if end {
            let _ = tx.send(BlockMsg::End {
                seq,
                skipped_long: lr.skipped_long(),
                bytes_read: lr.bytes_read(),
            });
            return;
        }
    }
}

/// One matcher thread: takes blocks from the shared queue, runs every
/// engine's rules over each line and passes the block on with its hits. With
/// `in_order` it is the only matcher thread, sees the blocks in order and
/// carries the clock from block to block; otherwise it matches each block
/// from `start`, and its copies from the carry they have, recorded in the
/// block with the one they end with.
fn match_blocks(
    rx: &Mutex<mpsc::Receiver<BlockMsg>>,
    tx: mpsc::Sender<BlockMsg>,
    mut matchers: Vec<&mut Matcher>,
    start: UnixTime,
    in_order: bool,
) {
    let mut clock = start;
    loop {
        // A poisoned lock means another matcher thread panicked; stop too.
        let Ok(msg) = rx.lock().map(|rx| rx.recv()) else {
            return;
        };
        let Ok(msg) = msg else { return };
        let msg = match msg {
            BlockMsg::Lines(mut b) => {
                if !in_order {
                    clock = start;
                }
                b.clock_in = clock;
                b.carry_in.clear();
                b.carry_out.clear();
                if !in_order {
                    for m in matchers.iter_mut() {
                        // after a block the copy could not scan, its state
                        // is unknown: start from the initial one
                        let c = Carry {
                            last_time: None,
                            ..m.carry().unwrap_or_default()
                        };
                        m.set_carry(c);
                        b.carry_in.push(c);
                    }
                }
                b.lines = match_block(&mut matchers, &b.text, &mut clock, &mut b.found, &mut b.rec);
                b.clock_out = clock;
                if !in_order {
                    b.carry_out.extend(matchers.iter().map(|m| m.carry()));
                }
                BlockMsg::Lines(b)
            }
            other => other,
        };
        if tx.send(msg).is_err() {
            return;
        }
    }
}

/// Matches the lines of `text` with every engine's rules, in order, moving
/// `clock` to the latest line time as [`replay`] on one thread does; pushes
/// the hits, and the lines scanning copies left records for (in `rec`), to
/// `found`. Returns the number of lines.
fn match_block(
    matchers: &mut [&mut Matcher],
    text: &str,
    clock: &mut UnixTime,
    found: &mut Vec<BlockHit>,
    rec: &mut Vec<u32>,
) -> u64 {
    let base = text.as_ptr() as usize;
    let mut lines = 0;
    for line in shield_sources::terminated_lines(text) {
        lines += 1;
        let start = line.as_ptr() as usize - base;
        for (i, m) in matchers.iter_mut().enumerate() {
            let (r, at) = m.scan_line(line, *clock, rec);
            if let Some(t) = r.time
                && t > *clock
            {
                *clock = t;
            }
            if r.rule.is_some() || at.is_some() {
                found.push(BlockHit {
                    engine: i as u32,
                    start: start as u32,
                    end: (start + line.len()) as u32,
                    m: r,
                    rec: at.unwrap_or(NO_REC),
                });
            }
        }
    }
    lines
}

/// Year inference for syslog stamps: a log was written before its mtime, so
/// stamps are placed in the year that puts them before it.
fn file_clock(f: &Path) -> UnixTime {
    std::fs::metadata(f)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
        .unwrap_or_else(shield_core::wall_now)
}

/// The calling thread's part: scenarios, decisions (on a [`MemoryLedger`])
/// and the report's counts.
struct Tally<'d> {
    decider: &'d Decider,
    ledger: MemoryLedger,
    rep: ReplayReport,
    alerts: Vec<Alert>,
    /// Per engine: hits in the current block.
    hits_of: Vec<u64>,
}

impl Tally<'_> {
    /// Runs the scenarios over a matched block's hits, in order, settling
    /// the lines scanning copies left records for with `own`, the engines'
    /// own rules.
    fn apply(&mut self, scenarios: &mut [&mut Scenarios], own: &mut [&mut Matcher], b: &Block) {
        self.rep.lines += b.lines;
        self.hits_of.fill(0);
        // the last line some engine matched
        let mut last_matched = None;
        for h in &b.found {
            let line = &b.text[h.start as usize..h.end as usize];
            let e = h.engine as usize;
            let m = match h.rec {
                NO_REC => h.m,
                at => own[e].settle(line, &b.rec, at),
            };
            if m.rule.is_some() && last_matched != Some(h.start) {
                last_matched = Some(h.start);
                self.rep.matched += 1;
            }
            self.hits_of[e] += 1;
            let alerts = &mut self.alerts;
            scenarios[e].apply(&m, line, &mut |a| alerts.push(a));
            self.decide();
        }
        for (sc, n) in scenarios.iter_mut().zip(&self.hits_of) {
            sc.unmatched(b.lines - n);
        }
    }

    fn decide(&mut self) {
        for a in self.alerts.drain(..) {
            self.rep.alerts += 1;
            let Ok(out) = self.decider.on_alert(&mut self.ledger, &a, a.time);
            match out {
                Outcome::New(d) => self.rep.decisions.push(ReplayDecision::of(d)),
                Outcome::Allowlisted(_) => self.rep.allowlisted += 1,
                Outcome::Covered(_) | Outcome::Extended(_) | Outcome::AlertOnly => {}
            }
        }
    }
}

/// Why a replay stopped, naming the file it was reading.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The file could not be opened.
    #[error("replaying {}", .0.display())]
    Open(PathBuf, #[source] shield_sources::SourceError),
    /// Reading the file failed part way.
    #[error("{}: reading failed", .0.display())]
    Read(PathBuf, #[source] std::io::Error),
    /// A replay thread could not be started.
    #[error("{}: starting a replay thread (check the process and memory limits)", .0.display())]
    Thread(PathBuf, #[source] std::io::Error),
    /// A reader or matcher thread ended before the file did (it panicked:
    /// the message above this one says why).
    #[error("{}: a replay thread stopped early; please report it with the log", .0.display())]
    Stopped(PathBuf),
    /// A block came back matched from a clock the calling thread cannot
    /// match again (a bug).
    #[error("{}: replay clock out of step; please report it", .0.display())]
    OutOfStep(PathBuf),
}

/// Replays `files` ("-" is stdin; `.gz` is read transparently) through `engines`.
/// `progress` is called with the bytes read so far, now and then.
pub fn replay(
    engines: &mut [Engine],
    decider: &Decider,
    files: &[PathBuf],
    progress: &mut dyn FnMut(u64),
) -> Result<ReplayReport, ReplayError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_MATCHERS);
    replay_on(engines, decider, files, threads, progress)
}

/// [`replay`] with up to `threads` matcher threads.
fn replay_on(
    engines: &mut [Engine],
    decider: &Decider,
    files: &[PathBuf],
    threads: usize,
    progress: &mut dyn FnMut(u64),
) -> Result<ReplayReport, ReplayError> {
    let started = Instant::now();
    let mut tally = Tally {
        decider,
        ledger: MemoryLedger::default(),
        rep: ReplayReport::default(),
        alerts: Vec::new(),
        hits_of: vec![0; engines.len()],
    };
    let mut bytes_done = 0u64;
    for f in files {
        let reader = shield_sources::open(f).map_err(|e| ReplayError::Open(f.clone(), e))?;
        let file_clock = file_clock(f);
        let (matchers, mut scenarios): (Vec<&mut Matcher>, Vec<&mut Scenarios>) =
            engines.iter_mut().map(Engine::stages).unzip();
        // Copies of the rules for parallel matching, if every engine has them.
        let mut copies: Vec<Vec<Matcher>> = if threads > 1 {
            (0..threads)
                .map(|_| matchers.iter().map(|m| m.fork()).collect())
                .collect::<Option<_>>()
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let parallel = !copies.is_empty();
        let pool = BLOCKS_PER_MATCHER * copies.len().max(1);
        let (tx, rx) = mpsc::sync_channel(pool);
        // Shared by the matcher threads only: when they have all stopped, the
        // reader's next send fails and it stops too.
        let rx = Arc::new(Mutex::new(rx));
        let (mtx, mrx) = mpsc::channel();
        let (back, recycle) = mpsc::channel();
        // The calling thread keeps the engines' own rules to match a block
        // again when a parallel guess was wrong; without copies, the one
        // matcher thread runs them.
        let mut own: Option<Vec<&mut Matcher>> = None;
        let mut clock = file_clock;
        // what the engines' own rules carry after the last block, in order
        let mut carry: Vec<Carry> = matchers
            .iter()
            .map(|m| m.carry().unwrap_or_default())
            .collect();
        let thread = |e| ReplayError::Thread(f.clone(), e);
        let res: Result<(), ReplayError> = std::thread::scope(|s| {
            // Owned here so that leaving early also unblocks a reader waiting
            // for a block back.
            let back = back;
            std::thread::Builder::new()
                .name("replay-read".into())
                .spawn_scoped(s, move || read_blocks(reader, tx, recycle, pool))
                .map_err(thread)?;
            if parallel {
                for c in copies.iter_mut().map(|c| c.iter_mut().collect::<Vec<_>>()) {
                    let (rx, mtx) = (rx.clone(), mtx.clone());
                    std::thread::Builder::new()
                        .name("replay-match".into())
                        .spawn_scoped(s, move || match_blocks(&rx, mtx, c, file_clock, false))
                        .map_err(thread)?;
                }
                own = Some(matchers);
            } else {
                let (rx, mtx) = (rx.clone(), mtx.clone());
                std::thread::Builder::new()
                    .name("replay-match".into())
                    .spawn_scoped(s, move || {
                        match_blocks(&rx, mtx, matchers, file_clock, true)
                    })
                    .map_err(thread)?;
            }
            drop((rx, mtx));
            // Blocks that came early, by position.
            let mut early: BTreeMap<u64, Block> = BTreeMap::new();
            let mut next = 0u64;
            let mut end: Option<(u64, u64, u64)> = None;
            // Returning early drops `mrx`, which ends the matchers at their
            // next send, and so the reader at its own.
            while end.is_none_or(|(seq, _, _)| next < seq) {
                let mut b = match early.remove(&next) {
                    Some(b) => b,
                    None => match mrx.recv() {
                        Ok(BlockMsg::Lines(b)) if b.seq == next => b,
                        Ok(BlockMsg::Lines(b)) => {
                            early.insert(b.seq, b);
                            continue;
                        }
                        Ok(BlockMsg::End {
                            seq,
                            skipped_long,
                            bytes_read,
                        }) => {
                            end = Some((seq, skipped_long, bytes_read));
                            continue;
                        }
                        Ok(BlockMsg::Err(e)) => return Err(ReplayError::Read(f.clone(), e)),
                        Err(_) => return Err(ReplayError::Stopped(f.clone())),
                    },
                };
                next += 1;
                let same_carry = b.carry_in.iter().zip(&carry).all(|(a, c)| a.key == c.key)
                    && b.carry_out.iter().all(Option::is_some);
                if b.clock_in == clock && same_carry {
                    clock = b.clock_out;
                    for (c, out) in carry.iter_mut().zip(&b.carry_out) {
                        *c = c.then(out.unwrap_or_default());
                    }
                } else {
                    // Matched from a clock the file's earlier lines moved, or
                    // scanned from another carry: match it again in order.
                    let Some(own) = own.as_mut() else {
                        return Err(ReplayError::OutOfStep(f.clone()));
                    };
                    for (m, c) in own.iter_mut().zip(&carry) {
                        m.set_carry(*c);
                    }
                    b.found.clear();
                    b.rec.clear();
                    b.lines = match_block(own, &b.text, &mut clock, &mut b.found, &mut b.rec);
                    for (c, m) in carry.iter_mut().zip(own.iter()) {
                        *c = m.carry().unwrap_or_default();
                    }
                }
                tally.rep.invalid_utf8 += b.invalid_utf8;
                tally.apply(&mut scenarios, own.as_deref_mut().unwrap_or_default(), &b);
                progress(bytes_done + b.bytes_read);
                let _ = back.send(b);
            }
            // the engines' own rules go on from where the file left them
            for (m, c) in own.iter_mut().flatten().zip(&carry) {
                m.set_carry(*c);
            }
            if let Some((_, skipped_long, bytes_read)) = end {
                tally.rep.skipped_long += skipped_long;
                bytes_done += bytes_read;
                progress(bytes_done);
            }
            Ok(())
        });
        res?;
    }
    let mut rep = tally.rep;
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

    /// The policy on the in-memory ledger has exactly the outcomes it has on
    /// the store, alert for alert, ids and expiries included (escalation,
    /// forgetting, covered and extended decisions, types, ranges, allowlist,
    /// time going backwards): the two ledgers keep the same records.
    #[test]
    fn memory_ledger_agrees_with_the_store() {
        let store = Store::open(Path::new(":memory:")).unwrap();
        let allow = Allowlist::new(vec!["192.0.2.0/28".parse().unwrap()]);
        let esc = Escalation {
            forget: std::time::Duration::from_secs(5000),
            ..Escalation::default()
        };
        let decider = Decider::new(allow, esc);
        let mut ledger = MemoryLedger::default();
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
        let (mut new, mut covered, mut extended) = (0, 0, 0);
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
            let want = decider.on_alert(&store, &a, t).unwrap();
            let Ok(got) = decider.on_alert(&mut ledger, &a, t);
            match &got {
                Outcome::New(_) => new += 1,
                Outcome::Covered(_) => covered += 1,
                Outcome::Extended(_) => extended += 1,
                Outcome::Allowlisted(_) | Outcome::AlertOnly => {}
            }
            assert_eq!(got, want, "{a:?}");
        }
        assert!(
            new > 100 && covered > 100 && extended > 100,
            "new {new}, covered {covered}, extended {extended}"
        );
    }

    fn all_packs() -> Engine {
        let packs = shield_detect::pack_names();
        let opts = shield_detect::EngineOptions {
            max_keys: 100_000,
            evidence_lines: 3,
            default_v6_prefix: 64,
        };
        let e = Engine::new(
            Box::new(shield_detect::NativeMatcher::all()),
            &shield_detect::default_scenarios(packs),
            opts,
        );
        e.unwrap()
    }

    /// Blocks matched on several threads give the report one thread gives,
    /// line for line: when the file's clock is right for every block, and
    /// when the log runs past it day by day (a syslog stamp's year then
    /// depends on the clock the lines before it moved, so every block from
    /// the second day on is matched again from the true clock).
    #[test]
    fn parallel_blocks_decide_as_one_thread() {
        let dir = tempfile::tempdir().unwrap();
        let sshd = days(
            shield_detect::r#gen::sshd(15_000, 20, 7).0,
            "Mar  1 ",
            ["Mar  1 ", "Mar  2 ", "Mar  3 "],
        );
        let nginx = days(
            shield_detect::r#gen::nginx(9_000, 20, 7).0,
            "[01/Mar/2026:",
            ["[01/Mar/2026:", "[02/Mar/2026:", "[03/Mar/2026:"],
        );
        for (name, text) in [("sshd.log", &sshd), ("nginx.log", &nginx)] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            as_one_thread(&path, &all_packs);
        }
    }

    /// The generator's logs start on 1 March 2026 at midnight (UTC): the
    /// same log on three days running.
    fn days(lines: Vec<String>, from: &str, to: [&str; 3]) -> String {
        let mut s = String::new();
        for day in to {
            for l in &lines {
                s.push_str(&l.replacen(from, day, 1));
                s.push('\n');
            }
        }
        s
    }

    /// Replays `path` on one thread and on three with the engine `engine`
    /// builds, with the file's mtime after the log, at its start and a month
    /// before it, and asserts the same report.
    fn as_one_thread(path: &Path, engine: &dyn Fn() -> Engine) {
        let mar1 = 1_772_323_200;
        let decider = Decider::new(Allowlist::default(), Escalation::default());
        // more blocks than three matchers' pool: blocks are reused
        let blocks = std::fs::metadata(path).unwrap().len() / BLOCK as u64;
        assert!(blocks > 3 * BLOCKS_PER_MATCHER as u64, "{blocks} blocks");
        for mtime in [mar1 + 10 * 86_400, mar1 + 600, mar1 - 30 * 86_400] {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime as u64);
            std::fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(t)
                .unwrap();
            let run = |threads| {
                let mut e = [engine()];
                let files = [path.to_path_buf()];
                replay_on(&mut e, &decider, &files, threads, &mut |_| {}).unwrap()
            };
            let (one, three) = (run(1), run(3));
            let name = path.display();
            assert!(one.decisions.len() >= 10, "{name}: {:?}", one.decisions);
            let key = |r: &ReplayReport| {
                (
                    (r.lines, r.matched, r.alerts, r.allowlisted),
                    (r.skipped_long, r.invalid_utf8, r.keys_evicted),
                    (r.decisions.clone(), r.rules.clone(), r.scenarios.clone()),
                )
            };
            assert_eq!(key(&one), key(&three), "{name}, mtime {mtime}");
        }
    }

    /// A fail2ban filter's lines are scanned on several threads and settled
    /// in order (its multi-line failure ids carry from line to line): the
    /// report is the one thread's. With a filter of its own whose failures
    /// take their host from an earlier line of the same connection, with
    /// ISO-dated lines mixed in (the date template changes, so blocks are
    /// scanned from the wrong one and matched again), and with Debian's
    /// sshd filter when the fail2ban package is installed.
    #[test]
    fn parallel_scans_settle_as_one_thread() {
        let dir = tempfile::tempdir().unwrap();
        let mut sshd = days(
            shield_detect::r#gen::sshd(15_000, 20, 7).0,
            "Mar  1 ",
            ["Mar  1 ", "Mar  2 ", "Mar  3 "],
        );
        // every 97th line dated the ISO way
        sshd = sshd
            .lines()
            .enumerate()
            .map(|(i, l)| match (i % 97, l.strip_prefix("Mar  2 ")) {
                (0, Some(rest)) => format!("2026-03-02T{}\n", rest),
                _ => format!("{l}\n"),
            })
            .collect();
        let path = dir.path().join("sshd.log");
        std::fs::write(&path, &sshd).unwrap();
        let filter = dir.path().join("mini.conf");
        std::fs::write(
            &filter,
            "[Definition]\n\
             prefregex = ^<F-MLFID>\\s*\\S+ sshd\\[\\d+\\]:</F-MLFID> <F-CONTENT>.+</F-CONTENT>$\n\
             failregex = ^Failed password for <F-USER>\\S+</F-USER> from <HOST>\n\
             \x20           ^Invalid user <F-USER>\\S+</F-USER> from <HOST>\n\
             \x20           ^<F-NOFAIL>Connection closed</F-NOFAIL> by <HOST>\n\
             \x20           ^pam_unix\\(sshd:auth\\): authentication failure\n\
             \x20           ^<F-MLFFORGET><F-MLFGAINED>Accepted \\w+</F-MLFGAINED></F-MLFFORGET> for <F-USER>\\S+</F-USER> from <HOST>\n\
             \x20           ^<F-MLFFORGET>Received disconnect</F-MLFFORGET> from <HOST>\n",
        )
        .unwrap();
        let engine = |f: &str, dir: &Path| {
            let min = std::time::Duration::from_secs(60);
            crate::plan::fail2ban_pipeline(f, dir, 3, 10 * min, 10 * min)
                .engine(crate::plan::EngineSettings {
                    max_keys: 100_000,
                    evidence_lines: 3,
                    v6_prefix: 64,
                })
                .unwrap()
        };
        let mini = filter.to_str().unwrap().to_string();
        as_one_thread(&path, &|| engine(&mini, dir.path()));
        let debian = Path::new("/etc/fail2ban/filter.d");
        if debian.join("sshd.conf").is_file() {
            as_one_thread(&path, &|| engine("sshd", debian));
        } else {
            eprintln!("fail2ban is not installed: Debian's sshd filter not tried");
        }
    }
}
