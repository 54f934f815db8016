//! Trust on receipt: the limits the treaty puts on what a member may ask of
//! the others, checked for every signal whoever relays it.
//!
//! Owns the refusal reasons, the counters, the per-origin rate windows and
//! sequence tracking, and rate-limited logging of refusals (attackers control
//! how often we would log). Signature checks are in `signal`, storage in
//! `store`; this module decides.

use serde::Serialize;
use shield_core::Net;
use shield_core::UnixTime;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::signal::SignalBody;
use crate::treaty::Treaty;

/// How far ahead of our clock a signal's time may be.
pub const MAX_FUTURE_S: i64 = 300;

/// Why a signal (or a peer) was refused. Each has a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Refusal {
    /// The bytes are not a signal (base64, version, postcard, scope/target mismatch).
    Malformed,
    /// The origin is not a member of our treaty.
    NotMember,
    /// The origin's key is revoked by the treaty.
    Revoked,
    /// The signature does not verify with the origin's key.
    BadSignature,
    /// The signal (or the peer) runs a treaty with another digest.
    TreatyMismatch,
    /// Already stored with the same bytes (normal with relays; counted, not logged).
    Duplicate,
    /// Same origin and sequence, different bytes: the origin equivocates or a replay was altered.
    Conflict,
    /// Older than the treaty's max_age: a replay of an old signal.
    Stale,
    /// Time too far in the future.
    Future,
    /// The scenario does not bind the union.
    Unbound,
    /// Type differs from the treaty's policy for the scenario.
    PolicyMismatch,
    /// The target overlaps the union allowlist.
    Allowlisted,
    /// The target is wider than the treaty's range cap.
    TooWide,
    /// The origin exceeded its signals-per-minute cap.
    RateCap,
    /// This member pardoned the target locally.
    Pardoned,
    /// The decision had already expired when it arrived (stored for relay, not enforced).
    Expired,
    /// The target covers an address no signal may ban: a member's endpoint, a
    /// NATS server, link-local, multicast, loopback or unspecified.
    Protected,
    /// More evidence lines or longer lines than an honest member ever signs.
    Evidence,
    /// The union listener is at its connection cap (per source address or in all).
    ConnectionCap,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::NotMember => "not_member",
            Refusal::Revoked => "revoked",
            Refusal::BadSignature => "bad_signature",
            Refusal::TreatyMismatch => "treaty_mismatch",
            Refusal::Duplicate => "duplicate",
            Refusal::Conflict => "conflict",
            Refusal::Stale => "stale",
            Refusal::Future => "future",
            Refusal::Unbound => "unbound_scenario",
            Refusal::PolicyMismatch => "policy_mismatch",
            Refusal::Allowlisted => "allowlisted",
            Refusal::TooWide => "too_wide",
            Refusal::RateCap => "rate_cap",
            Refusal::Pardoned => "pardoned",
            Refusal::Expired => "expired",
            Refusal::Protected => "protected",
            Refusal::Evidence => "evidence_too_long",
            Refusal::ConnectionCap => "connection_cap",
        }
    }
}

/// TrustCounters shown by `status` (and later exported as metrics).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TrustCounters {
    /// Own signals published.
    pub published: u64,
    /// Successful deliveries of signals to peers (push), per peer and signal.
    pub sent: u64,
    /// New authentic signals from peers accepted and forwarded to the daemon.
    pub received: u64,
    /// Other members' signals this member served to peers (relay).
    pub relayed: u64,
    /// Signals held until their quorum is reached.
    pub held_for_quorum: u64,
    /// Treaty amendments or versions from peers refused (forged, stale, replayed, out of order).
    pub amendments_refused: u64,
    /// Refusals by reason.
    pub refused: BTreeMap<&'static str, u64>,
}

impl TrustCounters {
    pub fn refuse(&mut self, r: Refusal) {
        *self.refused.entry(r.as_str()).or_default() += 1;
    }
    pub fn refused(&self, r: Refusal) -> u64 {
        self.refused.get(r.as_str()).copied().unwrap_or(0)
    }
}

/// At most one log line per key per period; the rest are counted and reported
/// with the next line.
#[derive(Debug, Default)]
pub struct RateLog {
    last: HashMap<&'static str, (Instant, u64)>,
}

impl RateLog {
    /// Returns `Some(suppressed_since_last)` if a line may be written now.
    pub fn allow(&mut self, key: &'static str) -> Option<u64> {
        let now = Instant::now();
        let e = self
            .last
            .entry(key)
            .or_insert((now - Duration::from_secs(3600), 0));
        if now.duration_since(e.0) >= Duration::from_secs(5) {
            let s = e.1;
            *e = (now, 0);
            Some(s)
        } else {
            e.1 += 1;
            None
        }
    }
}

/// The sequence numbers seen from one origin: everything up to `contig`, plus a
/// sparse set above it. `contig` is what we ask peers to send after.
#[derive(Debug, Default, Clone)]
pub struct SeqTracker {
    pub contig: u64,
    above: BTreeSet<u64>,
    pub max: u64,
}

impl SeqTracker {
    /// A tracker that holds everything up to `floor` (pruned prefix).
    pub fn from_floor(floor: u64) -> SeqTracker {
        SeqTracker {
            contig: floor,
            above: BTreeSet::new(),
            max: floor,
        }
    }
    pub fn contains(&self, seq: u64) -> bool {
        seq <= self.contig || self.above.contains(&seq)
    }
    pub fn insert(&mut self, seq: u64) {
        self.max = self.max.max(seq);
        if seq <= self.contig {
            return;
        }
        self.above.insert(seq);
        while self.above.remove(&(self.contig + 1)) {
            self.contig += 1;
        }
    }

    /// Everything up to `floor` was pruned: treat it as held.
    pub fn raise_floor(&mut self, floor: u64) {
        if floor <= self.contig {
            return;
        }
        self.contig = floor;
        self.max = self.max.max(floor);
        self.above = self.above.split_off(&(floor + 1));
        while self.above.remove(&(self.contig + 1)) {
            self.contig += 1;
        }
    }

    /// The first `max` inclusive ranges held above `contig`.
    pub fn ranges_above(&self, max: usize) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for &s in &self.above {
            match out.last_mut() {
                Some((_, e)) if *e + 1 == s => *e = s,
                _ => {
                    if out.len() == max {
                        break;
                    }
                    out.push((s, s));
                }
            }
        }
        out
    }
}

/// Signals admitted per origin by **arrival** time on this member, for the
/// per-minute cap. The sender's timestamps are not trusted here: 3,500 signals
/// back-dated one second apart, pushed at once, are 3,500 arrivals in one
/// minute, not one per second.
#[derive(Debug, Default)]
pub struct RateWindow {
    arrivals: BTreeMap<i64, u32>,
}

impl RateWindow {
    /// Count one arrival at `now` if fewer than `cap` arrived in the last minute.
    pub fn admit(&mut self, cap: u32, now: i64) -> bool {
        self.arrivals = self.arrivals.split_off(&(now - 59));
        let n: u32 = self.arrivals.values().sum();
        if n >= cap {
            return false;
        }
        *self.arrivals.entry(now).or_default() += 1;
        true
    }
}

/// Addresses no signal may ban, whatever the treaty's allowlist says: every
/// member's endpoint and every NATS server host (banning them cuts members off
/// from each other), and the special-purpose ranges a firewall must never drop
/// (unspecified, loopback, link-local — neighbour discovery —, multicast,
/// broadcast). A target that overlaps any of them is refused as `protected`.
#[derive(Debug, Clone)]
pub struct Protected {
    nets: Vec<(Net, &'static str)>,
}

/// The special-purpose ranges, with the reason shown in refusals.
const RESERVED: &[(&str, &str)] = &[
    ("0.0.0.0/8", "unspecified"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("224.0.0.0/4", "multicast"),
    ("255.255.255.255/32", "broadcast"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("fe80::/10", "link-local"),
    ("ff00::/8", "multicast"),
];

impl Default for Protected {
    fn default() -> Protected {
        Protected {
            nets: RESERVED
                .iter()
                .filter_map(|(n, why)| Some((n.parse().ok()?, *why)))
                .collect(),
        }
    }
}

impl Protected {
    /// The reserved ranges plus the IP literals among the treaty's member
    /// endpoints and NATS URLs. Host names are added by [`Protected::add_host`]
    /// once resolved (the union resolves them at start).
    pub fn from_treaty(t: &Treaty) -> Protected {
        let mut p = Protected::default();
        for h in endpoint_hosts(t) {
            if let Ok(ip) = h.parse::<std::net::IpAddr>() {
                p.add_ip(ip, "union endpoint");
            }
        }
        p
    }

    pub fn add_ip(&mut self, ip: std::net::IpAddr, why: &'static str) {
        let n = Net::host(shield_core::Addr::new(ip));
        if !self.nets.iter().any(|(x, _)| *x == n) {
            self.nets.push((n, why));
        }
    }

    /// Why `target` may not be banned, if it may not.
    pub fn hit(&self, target: &Net) -> Option<&'static str> {
        self.nets
            .iter()
            .find(|(n, _)| n.overlaps(target))
            .map(|(_, w)| *w)
    }
}

/// The hosts (names or IP literals, without port) of every member endpoint and
/// every server in the treaty's NATS `url` list.
pub fn endpoint_hosts(t: &Treaty) -> Vec<String> {
    let mut out: Vec<String> = t.members().map(|m| host_of(&m.endpoint)).collect();
    if let Some(urls) = &t.transport_file.url {
        for u in urls.split(',') {
            let u = u.trim();
            let u = u.split_once("://").map_or(u, |(_, r)| r);
            let u = u.rsplit_once('@').map_or(u, |(_, r)| r);
            let u = u.split('/').next().unwrap_or(u);
            if !u.is_empty() {
                out.push(host_of(u));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// `host` of `host:port`, `[v6]:port`, `v6` or `host`.
fn host_of(ep: &str) -> String {
    if let Ok(sa) = ep.parse::<std::net::SocketAddr>() {
        return sa.ip().to_string();
    }
    if ep.parse::<std::net::IpAddr>().is_ok() {
        return ep.to_string();
    }
    let h = ep.rsplit_once(':').map_or(ep, |(h, _)| h);
    h.trim_start_matches('[').trim_end_matches(']').to_string()
}

/// True if the signal carries more evidence than [`signal::summarize_evidence`]
/// ever produces: honest members never sign such a signal, and storing it is
/// what a flood of large signals would cost.
///
/// [`signal::summarize_evidence`]: crate::signal::summarize_evidence
pub fn evidence_too_long(b: &SignalBody) -> bool {
    b.evidence.len() > crate::signal::MAX_EVIDENCE_LINES
        || b.evidence
            .iter()
            .any(|l| l.chars().count() > crate::signal::MAX_EVIDENCE_CHARS)
}

/// The treaty checks on a signal whose signature and membership already passed.
/// Does not count rates (that needs state) or consult pardons.
pub fn check_policy(
    t: &Treaty,
    protected: &Protected,
    b: &SignalBody,
    now: UnixTime,
) -> Result<(), Refusal> {
    // The target is canonical (a signed payload with a non-canonical one does
    // not decode); the scope must still agree with it.
    if shield_core::Scope::of(&b.target) != b.scope {
        return Err(Refusal::Malformed);
    }
    if b.time > now + MAX_FUTURE_S {
        return Err(Refusal::Future);
    }
    if b.time < now - t.max_age.as_secs() as i64 {
        return Err(Refusal::Stale);
    }
    let Some(p) = t.policy(&b.scenario) else {
        return Err(Refusal::Unbound);
    };
    if p.kind != b.kind {
        return Err(Refusal::PolicyMismatch);
    }
    if t.allowlist().overlaps(&b.target).is_some() {
        return Err(Refusal::Allowlisted);
    }
    if b.target.prefix_len() < t.min_prefix_for(&b.target) {
        return Err(Refusal::TooWide);
    }
    if protected.hit(&b.target).is_some() {
        return Err(Refusal::Protected);
    }
    Ok(())
}

/// True if `target` overlaps a pardoned network (the list holds only pardons in force).
pub fn pardoned(pardons: &[(Net, Option<i64>)], target: &Net) -> bool {
    pardons.iter().any(|(p, _)| p.overlaps(target))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use shield_core::{DecisionType, Scope};
    use std::path::Path;

    fn treaty() -> Treaty {
        let a = Identity::from_seed([1; 32]);
        let text = crate::treaty::tests::sample(&[("a", &a, 1)], "");
        Treaty::parse(&text, Path::new("t")).unwrap()
    }

    fn body(target: &str) -> SignalBody {
        let target: Net = target.parse().unwrap();
        SignalBody {
            origin: "a".into(),
            seq: 1,
            time: 1000,
            scope: Scope::of(&target),
            target,
            kind: DecisionType::Ban,
            duration_s: 3600,
            scenario: "sshd-bruteforce".into(),
            evidence: vec![],
            treaty: [0; 32],
        }
    }

    #[test]
    fn policy_refusals() {
        let t = treaty();
        let p = Protected::from_treaty(&t);
        let check_policy = |t: &Treaty, b: &SignalBody, now| check_policy(t, &p, b, now);
        assert_eq!(check_policy(&t, &body("203.0.113.7/32"), 1000), Ok(()));
        assert_eq!(
            check_policy(&t, &body("192.0.2.9/32"), 1000),
            Err(Refusal::Allowlisted)
        );
        assert_eq!(
            check_policy(&t, &body("10.0.0.0/8"), 1000),
            Err(Refusal::TooWide)
        );
        assert_eq!(check_policy(&t, &body("198.51.100.0/24"), 1000), Ok(()));
        assert_eq!(
            check_policy(&t, &body("2001:db8::/32"), 1000),
            Err(Refusal::TooWide)
        );
        assert_eq!(
            check_policy(&t, &body("203.0.113.7/32"), 1000 + 90_000),
            Err(Refusal::Stale)
        );
        assert_eq!(
            check_policy(&t, &body("203.0.113.7/32"), 500),
            Err(Refusal::Future)
        );
        let mut b = body("203.0.113.7/32");
        b.scenario = "other".into();
        assert_eq!(check_policy(&t, &b, 1000), Err(Refusal::Unbound));
        let mut b = body("203.0.113.7/32");
        b.kind = DecisionType::Captcha;
        assert_eq!(check_policy(&t, &b, 1000), Err(Refusal::PolicyMismatch));
        let mut b = body("203.0.113.7/32");
        b.scope = Scope::Range;
        assert_eq!(check_policy(&t, &b, 1000), Err(Refusal::Malformed));
    }

    #[test]
    fn rate_window_caps_per_minute_by_arrival() {
        let mut w = RateWindow::default();
        for _ in 0..10 {
            assert!(w.admit(10, 1000));
        }
        assert!(!w.admit(10, 1030));
        // A minute after the first arrivals the window has room again.
        assert!(w.admit(10, 1060));
    }

    #[test]
    fn protected_targets() {
        let a = Identity::from_seed([1; 32]);
        let text = crate::treaty::tests::sample(&[("a", &a, 1)], "")
            .replace("127.0.0.1:1", "10.79.0.3:7000")
            + "\n[transport]\nurl = \"nats://u:p@10.79.0.9:4222, tls://[2001:db8::4]:4222\"\n";
        let t = Treaty::parse(&text, Path::new("t")).unwrap();
        let p = Protected::from_treaty(&t);
        for (target, why) in [
            ("10.79.0.3/32", "union endpoint"),
            ("10.79.0.0/24", "union endpoint"),
            ("10.79.0.9/32", "union endpoint"),
            ("2001:db8::4/128", "union endpoint"),
            ("fe80::9/128", "link-local"),
            ("169.254.1.1/32", "link-local"),
            ("ff02::1/128", "multicast"),
            ("224.0.0.5/32", "multicast"),
            ("0.0.0.0/32", "unspecified"),
            ("::/128", "unspecified"),
            ("127.0.0.1/32", "loopback"),
        ] {
            assert_eq!(p.hit(&target.parse().unwrap()), Some(why), "{target}");
        }
        assert_eq!(p.hit(&"10.79.1.3/32".parse().unwrap()), None);
        assert_eq!(p.hit(&"2001:db8::5/128".parse().unwrap()), None);
    }

    #[test]
    fn seq_tracker_contiguity() {
        let mut s = SeqTracker::default();
        s.insert(1);
        s.insert(3);
        assert_eq!(s.contig, 1);
        assert!(s.contains(3) && !s.contains(2));
        s.insert(2);
        assert_eq!((s.contig, s.max), (3, 3));
        for x in [10, 11, 12, 20, 30, 31] {
            s.insert(x);
        }
        assert_eq!(s.ranges_above(8), vec![(10, 12), (20, 20), (30, 31)]);
        assert_eq!(s.ranges_above(2), vec![(10, 12), (20, 20)]);
        s.raise_floor(19);
        assert_eq!((s.contig, s.ranges_above(8)), (20, vec![(30, 31)]));
    }

    #[test]
    fn rate_log_suppresses() {
        let mut l = RateLog::default();
        assert_eq!(l.allow("x"), Some(0));
        assert_eq!(l.allow("x"), None);
        assert_eq!(l.allow("y"), Some(0));
    }
}
