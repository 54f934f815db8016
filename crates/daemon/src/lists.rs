//! Blocklists and allowlist feeds: `[[list]]` entries read from a file or an
//! HTTPS URL, refreshed on an interval off the decision path.
//!
//! - [`parse`] is the one loader for every list format (blocklists, allowlist
//!   files, `shield decisions import`).
//! - [`ListPlan`] is a checked `[[list]]`; [`start`] runs one task per list
//!   that fetches (with `If-None-Match`/`If-Modified-Since`), parses on a
//!   blocking thread, and hands the whole list to the decision thread as one
//!   [`ListUpdate`]. A list named in `[decisions] allowlist_lists` updates
//!   the allowlist's feed instead ([`shield_core::AllowFeeds`]).
//! - [`refresh`] runs on the decision thread: it diffs the list against its
//!   decisions in the store (origin `lists:NAME`), admits the new entries
//!   through the same [`Decider`] as every decision (allowlist, merge),
//!   renews the kept ones before they lapse and ends the dropped ones, all in
//!   one transaction whose changes reach the firewall as one batch.
//! - A list that cannot be fetched or read keeps its previous contents; why
//!   is in the log, in [`ListStatus`] (`shield status`) and in `/metrics`.
//!
//! It does not decide what a list means beyond "ban (or allow) these":
//! durations, merging and the allowlist are the decision stage's.

pub mod parse;
pub mod task;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shield_core::{Decision, DecisionType, Net, Origin, UnixTime};
use shield_enforce::Change;

use crate::decide::{Decider, Outcome};
use crate::store::{Store, StoreError};
use parse::{Caps, Entry, Format};

/// Largest list body accepted (FireHOL level 1–3 together is about 10 MB).
pub const MAX_BODY: usize = 64 << 20;

/// Most entries one list may hold (a feed gone wrong must not fill the store).
pub const MAX_ENTRIES: usize = 2_000_000;

/// Where a list comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListSource {
    File(PathBuf),
    Url(String),
}

impl std::fmt::Display for ListSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListSource::File(p) => write!(f, "{}", p.display()),
            ListSource::Url(u) => f.write_str(u),
        }
    }
}

/// A checked `[[list]]`.
#[derive(Clone, Debug)]
pub struct ListPlan {
    pub name: String,
    pub source: ListSource,
    pub refresh: Duration,
    pub duration: Duration,
    pub format: Format,
    pub caps: Caps,
    pub kind: DecisionType,
    /// PEM of the only CAs trusted for the URL (read at plan time).
    pub ca_pem: Option<Vec<u8>>,
    /// Named in `[decisions] allowlist_lists`: its entries are allowed, not banned.
    pub allow: bool,
}

/// Whether `name` may name a list (it becomes part of an origin and a metric label).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Checks one `[[list]]`; the error says what to change.
pub fn plan_list(c: &crate::config::ListConfig, allow: bool) -> Result<ListPlan, String> {
    if !valid_name(&c.name) {
        return Err(format!(
            "list name `{}` must be 1-64 letters, digits, `-`, `_` or `.`",
            c.name
        ));
    }
    let source = match (&c.file, &c.url) {
        (Some(f), None) if f.is_absolute() => ListSource::File(f.clone()),
        (Some(f), None) => {
            return Err(format!(
                "list `{}`: file `{}` is relative; write an absolute path",
                c.name,
                f.display()
            ));
        }
        (None, Some(u)) => {
            let ok = u.starts_with("https://")
                || ["http://127.", "http://[::1]", "http://localhost"]
                    .iter()
                    .any(|p| u.starts_with(p));
            if !ok || reqwest::Url::parse(u).is_err() {
                return Err(format!(
                    "list `{}`: url `{u}` must be an https:// URL (plain http only to loopback)",
                    c.name
                ));
            }
            ListSource::Url(u.clone())
        }
        _ => {
            return Err(format!(
                "list `{}` needs exactly one of `file` and `url`",
                c.name
            ));
        }
    };
    if c.refresh < Duration::from_secs(1) {
        return Err(format!("list `{}`: refresh must be at least 1s", c.name));
    }
    if c.duration <= c.refresh {
        return Err(format!(
            "list `{}`: duration ({}) must be longer than refresh ({}), or entries lapse between refreshes",
            c.name,
            humantime::format_duration(c.duration),
            humantime::format_duration(c.refresh)
        ));
    }
    let kind: DecisionType = c
        .kind
        .parse()
        .map_err(|e| format!("list `{}`: {e}", c.name))?;
    let d = Caps::default();
    let caps = Caps {
        min_prefix_v4: c.min_prefix_v4.unwrap_or(d.min_prefix_v4),
        min_prefix_v6: c.min_prefix_v6.unwrap_or(d.min_prefix_v6),
    };
    if caps.min_prefix_v4 > 32 || caps.min_prefix_v6 > 128 {
        return Err(format!(
            "list `{}`: min_prefix_v4 must be at most 32 and min_prefix_v6 at most 128",
            c.name
        ));
    }
    let ca_pem = match &c.ca_file {
        None => None,
        Some(p) => {
            let pem = std::fs::read(p).map_err(|e| {
                format!(
                    "list `{}`: cannot read ca_file {}: {e}",
                    c.name,
                    p.display()
                )
            })?;
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                format!(
                    "list `{}`: ca_file {} is not a PEM certificate: {e}",
                    c.name,
                    p.display()
                )
            })?;
            Some(pem)
        }
    };
    Ok(ListPlan {
        name: c.name.clone(),
        source,
        refresh: c.refresh,
        duration: c.duration,
        format: c.format,
        caps,
        kind,
        ca_pem,
        allow,
    })
}

/// The networks of an allowlist file (`[decisions] allowlist_files`), read
/// at plan time with the one loader; bad lines make the whole file an error
/// (an allowlist half read would ban what it should protect).
pub fn allowlist_file(path: &std::path::Path) -> Result<Vec<Net>, String> {
    if !path.is_absolute() {
        return Err(format!(
            "allowlist file `{}` is relative; write an absolute path",
            path.display()
        ));
    }
    let body = std::fs::read(path)
        .map_err(|e| format!("cannot read allowlist file {}: {e}", path.display()))?;
    let caps = Caps {
        min_prefix_v4: 0,
        min_prefix_v6: 0,
    };
    let p = parse::parse(&body, Format::Auto, caps)
        .map_err(|e| format!("allowlist file {}: {e}", path.display()))?;
    if p.bad > 0 {
        return Err(format!(
            "allowlist file {}: {}",
            path.display(),
            p.summary().unwrap_or_default()
        ));
    }
    Ok(p.entries.into_iter().map(|e| e.target).collect())
}

/// One decision in `cscli decisions import`'s words (also what
/// `shield decisions export` writes, so the two round-trip).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CsDecision {
    pub value: String,
    /// Time left, as a Go duration (`3h59m58s`).
    pub duration: String,
    pub reason: String,
    /// `Ip` or `Range`, as CrowdSec writes them.
    pub scope: String,
    #[serde(rename = "type")]
    pub kind: String,
}

impl CsDecision {
    /// `d` as CrowdSec would import it at `now` (its remaining time as duration).
    pub fn of(d: &Decision, now: UnixTime) -> CsDecision {
        CsDecision {
            value: d.value(),
            duration: shield_enforce::format_go_duration(d.remaining_s(now) as i64),
            reason: d.scenario.clone(),
            scope: match d.scope {
                shield_core::Scope::Ip => "Ip".into(),
                shield_core::Scope::Range => "Range".into(),
            },
            kind: d.kind.as_str().into(),
        }
    }
}

/// Active decisions in `cscli decisions import` CSV (header
/// `value,duration,reason,scope,type`; RFC 4180 quoting).
pub fn export_csv(ds: &[Decision], now: UnixTime) -> String {
    fn field(s: &str) -> String {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\"").replace(['\n', '\r'], " "))
        } else {
            s.to_string()
        }
    }
    let mut out = String::from("value,duration,reason,scope,type\n");
    for d in ds.iter().filter(|d| d.is_active(now)) {
        let c = CsDecision::of(d, now);
        out.push_str(&format!(
            "{},{},{},{},{}\n",
            field(&c.value),
            c.duration,
            field(&c.reason),
            c.scope,
            c.kind
        ));
    }
    out
}

/// Active decisions in `cscli decisions import` JSON (an array of objects).
pub fn export_json(ds: &[Decision], now: UnixTime) -> String {
    let v: Vec<CsDecision> = ds
        .iter()
        .filter(|d| d.is_active(now))
        .map(|d| CsDecision::of(d, now))
        .collect();
    serde_json::to_string_pretty(&v).unwrap_or_else(|_| "[]".into())
}

/// What one list looks like now, for `shield status`, the API and `/metrics`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ListStatus {
    pub name: String,
    pub source: String,
    /// `block` or `allow`.
    pub role: String,
    /// Entries of the last list read.
    pub entries: u64,
    /// Of the last refresh: decisions added, ended, kept.
    pub added: u64,
    pub removed: u64,
    pub unchanged: u64,
    /// Of the last refresh: entries the allowlist protected, entries already covered.
    pub allowlisted: u64,
    pub covered: u64,
    /// Of the last refresh: milliseconds in the store and in the firewall batch.
    pub store_ms: u64,
    pub apply_ms: u64,
    /// Of the last list read: unreadable lines and refused entries.
    pub bad_lines: u64,
    pub refused: u64,
    pub refreshes: u64,
    pub not_modified: u64,
    pub failures: u64,
    pub last_success: Option<UnixTime>,
    pub last_attempt: Option<UnixTime>,
    /// Why the last attempt failed (the previous contents are kept), or the
    /// problems of the last list read.
    pub error: Option<String>,
}

/// Every list's status, by name. Mutex: held to update or copy one small map.
pub type ListBoard = Arc<Mutex<BTreeMap<String, ListStatus>>>;

/// Copies the board (for status and metrics).
pub fn snapshot(board: &ListBoard) -> Vec<ListStatus> {
    board
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .cloned()
        .collect()
}

/// Adds each list's state to a `/metrics` registry: entries, refreshes,
/// failures, and the time of the last success and of the last attempt.
pub fn register_metrics(reg: &mut prometheus_client::registry::Registry, board: &ListBoard) {
    use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge};
    let entries = Family::<crate::metrics::Labels, Gauge<i64>>::default();
    let outcome = Family::<crate::metrics::Labels, Counter>::default();
    let ok_at = Family::<crate::metrics::Labels, Gauge<i64>>::default();
    let failing = Family::<crate::metrics::Labels, Gauge<i64>>::default();
    for s in snapshot(board) {
        let l = vec![("list".to_string(), s.name.clone())];
        entries.get_or_create(&l).set(s.entries as i64);
        for (what, n) in [
            ("refreshed", s.refreshes),
            ("not_modified", s.not_modified),
            ("failed", s.failures),
        ] {
            let mut lo = l.clone();
            lo.push(("outcome".to_string(), what.to_string()));
            outcome.get_or_create(&lo).inc_by(n);
        }
        if let Some(t) = s.last_success {
            ok_at.get_or_create(&l).set(t);
        }
        let failed_last = s.last_attempt.is_some() && s.last_attempt != s.last_success;
        failing.get_or_create(&l).set(failed_last as i64);
    }
    reg.register(
        "list_entries",
        "Entries of each list's last successful read",
        entries,
    );
    reg.register(
        "list_refreshes",
        "List refreshes by outcome (refreshed, not_modified, failed)",
        outcome,
    );
    reg.register(
        "list_last_success_timestamp_seconds",
        "Unix time of each list's last successful refresh",
        ok_at,
    );
    reg.register(
        "list_failing",
        "1 when a list's last refresh failed (its previous contents stay in force)",
        failing,
    );
}

/// A whole list, for the decision thread.
#[derive(Debug)]
pub struct ListUpdate {
    pub name: String,
    pub entries: Vec<Entry>,
    pub kind: DecisionType,
    /// Default ban length of an entry, seconds.
    pub duration_s: u64,
}

/// What a refresh did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListDiff {
    pub added: u64,
    pub removed: u64,
    pub unchanged: u64,
    pub allowlisted: u64,
    pub covered: u64,
    /// Time the decision thread spent on the store transaction, and on the
    /// one firewall batch (milliseconds).
    pub store_ms: u64,
    pub apply_ms: u64,
}

/// Diffs `u` against its decisions in the store and applies the difference
/// in one transaction (see the module docs). Returns the diff and the
/// changes for the layers (one batch).
pub fn refresh(
    store: &mut Store,
    decider: &Decider,
    u: &ListUpdate,
    now: UnixTime,
) -> Result<(ListDiff, Vec<Change>), StoreError> {
    let origin = Origin::List(u.name.clone());
    store.atomically(|s| {
        let mut current: HashMap<(Net, DecisionType), Decision> = HashMap::new();
        for d in s.active_by_origin(&origin, now)? {
            current.insert((d.target, d.kind), d);
        }
        let mut wanted: HashMap<(Net, DecisionType), &Entry> =
            HashMap::with_capacity(u.entries.len());
        for e in &u.entries {
            wanted.insert((e.target, e.kind_or(u.kind)), e);
        }
        let mut diff = ListDiff::default();
        let mut changes = Vec::new();
        let mut gone: Vec<&Decision> = current
            .iter()
            .filter(|(k, _)| !wanted.contains_key(*k))
            .map(|(_, d)| d)
            .collect();
        gone.sort_by_key(|d| d.id);
        for d in gone {
            if let Some(d) = s.delete_decision(d.id, now)? {
                diff.removed += 1;
                changes.push(Change::Remove(d.clone()));
                // Another origin's decision on the same target stays in force.
                if let Some(other) = s
                    .active_for(&d.target, now)?
                    .into_iter()
                    .filter(|o| o.kind == d.kind)
                    .max_by_key(|o| o.expires)
                {
                    changes.push(Change::Add(other));
                }
            }
        }
        let mut keys: Vec<&(Net, DecisionType)> = wanted.keys().collect();
        keys.sort();
        for key in keys {
            let e = wanted[key];
            let dur = e.duration_s.unwrap_or(u.duration_s) as i64;
            let expires = now + dur;
            if let Some(old) = current.get(key) {
                diff.unchanged += 1;
                // Renewed once half its time is gone, so a kept entry never lapses
                // while a refresh touches few rows.
                if old.expires - now < dur / 2 {
                    s.set_expiry(old.id, expires)?;
                    changes.push(Change::Add(Decision {
                        expires,
                        ..old.clone()
                    }));
                }
                continue;
            }
            let d = Decision {
                id: 0,
                scope: shield_core::Scope::of(&key.0),
                target: key.0,
                kind: key.1,
                scenario: e
                    .reason
                    .clone()
                    .unwrap_or_else(|| format!("lists/{}", u.name)),
                origin: origin.clone(),
                created: now,
                expires,
            };
            match decider.admit(s, d, now)? {
                Outcome::New(d) | Outcome::Extended(d) => {
                    diff.added += 1;
                    changes.push(Change::Add(d));
                }
                Outcome::Covered(_) => diff.covered += 1,
                Outcome::Allowlisted(_) => diff.allowlisted += 1,
                Outcome::AlertOnly => {}
            }
        }
        Ok((diff, changes))
    })
}

impl Entry {
    fn kind_or(&self, default: DecisionType) -> DecisionType {
        if self.kind == DecisionType::Ban {
            default
        } else {
            self.kind
        }
    }
}

/// Why a list could not be refreshed (its previous contents stay).
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("cannot read {path}: {source}; check the path and its permissions")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "fetching {url} failed: {source:#}; the server may be down or the CA (ca_file) wrong, the next refresh retries"
    )]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered HTTP {status}; check the URL (the next refresh retries)")]
    Status { url: String, status: u16 },
    #[error("{0} is larger than {MAX_BODY} bytes; is it really a list?")]
    TooLarge(String),
    #[error("{what} has {n} entries, more than the {MAX_ENTRIES} a list may hold; split it")]
    TooMany { what: String, n: usize },
    #[error("{what} is empty; an empty answer is taken as a failure, not as an empty list")]
    Empty { what: String },
    #[error("{0}")]
    Parse(#[from] parse::ParseError),
    #[error(
        "{what}: more unreadable lines than entries ({summary}); is it the right format (`format = ...`)?"
    )]
    Malformed { what: String, summary: String },
    #[error("the decision thread has stopped")]
    Stopped,
    #[error("the store refused the list: {0}")]
    Store(#[from] StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(name: &str, text: &str) -> ListUpdate {
        let p = parse::parse(text.as_bytes(), Format::Auto, Caps::default()).unwrap();
        ListUpdate {
            name: name.into(),
            entries: p.entries,
            kind: DecisionType::Ban,
            duration_s: 86400,
        }
    }

    /// A refresh adds what is new, ends what is gone, leaves the rest alone
    /// (renewing it once half its time is gone), and never lets the allowlist
    /// or another origin's decision be overridden.
    #[test]
    fn refresh_diffs_against_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let plan = crate::readers::tests::plan_for(
            dir.path(),
            "[decisions]\nallowlist = [\"192.0.2.0/24\"]\nallow_own_addresses = false\n",
        );
        let mut store = Store::open(&plan.store_path).unwrap();
        let d = &plan.decider;
        let t = 1_000_000;
        let first = update(
            "fh",
            "203.0.113.1\n203.0.113.2\n198.51.100.0/24\n192.0.2.9\n",
        );
        let (diff, ch) = refresh(&mut store, d, &first, t).unwrap();
        assert_eq!(
            (diff.added, diff.removed, diff.unchanged, diff.allowlisted),
            (3, 0, 0, 1)
        );
        assert_eq!(ch.len(), 3);
        assert!(
            ch.iter()
                .all(|c| c.decision().origin == Origin::List("fh".into()))
        );
        // A manual ban on an entry the list will drop must outlive the list's.
        let manual = Decision {
            id: 0,
            scope: shield_core::Scope::Ip,
            target: "203.0.113.2".parse().unwrap(),
            kind: DecisionType::Ban,
            scenario: "manual".into(),
            origin: Origin::Manual,
            created: t,
            expires: t + 3600,
        };
        store.insert_decision(&manual).unwrap();
        let second = update("fh", "203.0.113.1\n198.51.100.0/24\n203.0.113.3\n");
        let (diff, ch) = refresh(&mut store, d, &second, t + 60).unwrap();
        assert_eq!((diff.added, diff.removed, diff.unchanged), (1, 1, 2));
        let removed: Vec<String> = ch
            .iter()
            .filter_map(|c| match c {
                Change::Remove(d) => Some(d.value()),
                _ => None,
            })
            .collect();
        assert_eq!(removed, ["203.0.113.2"]);
        assert!(
            ch.iter()
                .any(|c| matches!(c, Change::Add(d) if d.origin == Origin::Manual)),
            "the manual ban is put back after the list's is removed: {ch:?}"
        );
        let active: Vec<String> = store
            .active_by_origin(&Origin::List("fh".into()), t + 60)
            .unwrap()
            .iter()
            .map(|d| d.value())
            .collect();
        assert_eq!(active, ["198.51.100.0/24", "203.0.113.1", "203.0.113.3"]);
        // Unchanged and past half their time: renewed, not re-added.
        let (diff, ch) = refresh(&mut store, d, &second, t + 43_230).unwrap();
        assert_eq!((diff.added, diff.removed, diff.unchanged), (0, 0, 3));
        assert_eq!(ch.len(), 2, "the two entries of the first read are renewed");
        assert!(
            ch.iter()
                .all(|c| c.decision().expires == t + 43_230 + 86400)
        );
    }

    /// Export then import gives back the same targets, types, reasons and
    /// (to the second) remaining time, in both formats.
    #[test]
    fn export_reads_back_through_the_loader() {
        let t = 1_000_000;
        let mk = |target: &str, kind, reason: &str, left| Decision {
            id: 0,
            scope: shield_core::Scope::of(&target.parse().unwrap()),
            target: target.parse().unwrap(),
            kind,
            scenario: reason.into(),
            origin: Origin::Local,
            created: t - 10,
            expires: t + left,
        };
        let ds = vec![
            mk("203.0.113.7", DecisionType::Ban, "ssh-bf", 14_399),
            mk(
                "198.51.100.0/24",
                DecisionType::Captcha,
                "a, \"quoted\" reason",
                60,
            ),
            mk("2001:db8::/48", DecisionType::Ban, "x", 86_400 * 3),
            mk("192.0.2.1", DecisionType::Ban, "ended", -5),
        ];
        for text in [export_csv(&ds, t), export_json(&ds, t)] {
            let p = parse::parse(text.as_bytes(), Format::Auto, Caps::default()).unwrap();
            assert_eq!((p.bad, p.refused), (0, 0), "{text}");
            let got: Vec<(String, DecisionType, Option<String>, Option<u64>)> = p
                .entries
                .iter()
                .map(|e| (e.target.to_string(), e.kind, e.reason.clone(), e.duration_s))
                .collect();
            assert_eq!(
                got,
                [
                    (
                        "203.0.113.7/32".into(),
                        DecisionType::Ban,
                        Some("ssh-bf".into()),
                        Some(14_399)
                    ),
                    (
                        "198.51.100.0/24".into(),
                        DecisionType::Captcha,
                        Some("a, \"quoted\" reason".into()),
                        Some(60)
                    ),
                    (
                        "2001:db8::/48".into(),
                        DecisionType::Ban,
                        Some("x".into()),
                        Some(259_200)
                    ),
                ],
                "{text}"
            );
        }
        assert!(export_csv(&ds, t).contains(",Ip,ban\n"));
    }

    #[test]
    fn list_config_is_checked() {
        let c = |extra: &str| -> crate::config::ListConfig {
            toml::from_str(&format!("name = \"x\"\n{extra}")).unwrap()
        };
        assert!(plan_list(&c("url = \"https://lists.example/x.netset\""), false).is_ok());
        for (extra, want) in [
            ("", "exactly one"),
            ("file = \"rel.txt\"", "absolute"),
            ("url = \"http://lists.example/x\"", "https"),
            (
                "url = \"https://a/x\"\nrefresh = \"2d\"",
                "longer than refresh",
            ),
            ("url = \"https://a/x\"\ntype = \"kick\"", "decision type"),
            (
                "url = \"https://a/x\"\nca_file = \"/nonexistent\"",
                "ca_file",
            ),
        ] {
            let e = plan_list(&c(extra), false).unwrap_err();
            assert!(e.contains(want), "{extra}: {e}");
        }
        assert!(!valid_name("a b"));
    }
}
