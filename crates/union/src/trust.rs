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
        }
    }
}

/// Counters shown by `status` (and later exported as metrics).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counters {
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
    /// Refusals by reason.
    pub refused: BTreeMap<&'static str, u64>,
}

impl Counters {
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
}

/// Signals per origin by signal time, for the per-minute cap.
#[derive(Debug, Default)]
pub struct RateWindow {
    times: BTreeMap<i64, u32>,
}

impl RateWindow {
    /// Count a signal at `t` if fewer than `cap` fall within the minute around it.
    pub fn admit(&mut self, t: i64, cap: u32, now: i64) -> bool {
        let n: u32 = self.times.range(t - 59..=t + 59).map(|(_, c)| *c).sum();
        // Forget what can no longer matter (older than 2 minutes before both now and t).
        let floor = t.min(now) - 120;
        self.times = self.times.split_off(&floor);
        if n >= cap {
            return false;
        }
        *self.times.entry(t).or_default() += 1;
        true
    }
}

/// The treaty checks on a signal whose signature and membership already passed.
/// Does not count rates (that needs state) or consult pardons.
pub fn check_policy(t: &Treaty, b: &SignalBody, now: UnixTime) -> Result<(), Refusal> {
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
    Ok(())
}

/// True if `target` overlaps a pardoned network.
pub fn pardoned(pardons: &[Net], target: &Net) -> bool {
    pardons.iter().any(|p| p.overlaps(target))
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
    fn rate_window_caps_per_minute_by_signal_time() {
        let mut w = RateWindow::default();
        for i in 0..10 {
            assert!(w.admit(1000 + i, 10, 1000));
        }
        assert!(!w.admit(1010, 10, 1000));
        // A minute later the window has room again.
        assert!(w.admit(1070, 10, 1070));
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
    }

    #[test]
    fn rate_log_suppresses() {
        let mut l = RateLog::default();
        assert_eq!(l.allow("x"), Some(0));
        assert_eq!(l.allow("x"), None);
        assert_eq!(l.allow("y"), Some(0));
    }
}
