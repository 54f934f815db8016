//! The in-memory view of active decisions that the gate and the bouncer API
//! read. Exact addresses live in a seeded hash map, ranges in one prefix trie
//! per family, so a lookup is one hash probe plus a walk down at most 32/128
//! trie levels, and never touches the database.
//!
//! It also keeps what the bouncer stream needs to answer "what changed since
//! your last pull": every entry remembers the table version at which it was
//! added, and removals leave a bounded log of tombstones.
//!
//! It does not decide anything (the daemon does) and it does not expire
//! entries by itself in the background: expired entries are ignored by every
//! read and dropped by [`DecisionTable::purge_expired`].

use std::collections::VecDeque;

use foldhash::quality::RandomState;
use hashbrown::HashMap;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;
use shield_core::{Addr, Decision, DecisionType, Net, UnixTime};

use crate::Change;

/// How many removals are remembered for bouncers that pull deltas. A bouncer
/// that stays away longer than it takes to remove this many decisions misses
/// some deletions (its kernel timeouts still expire them).
const MAX_TOMBSTONES: usize = 100_000;

/// One decision and the table version at which it was (re)added.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) decision: Decision,
    pub(crate) version: u64,
}

/// Active decisions, by exact address and by range. See the module docs.
#[derive(Debug)]
pub struct DecisionTable {
    /// Attacker-chosen keys: a seeded hasher with full avalanche (foldhash quality), never FxHash.
    exact: HashMap<Addr, Vec<Entry>, RandomState>,
    ranges4: PrefixMap<Ipv4Net, Vec<Entry>>,
    ranges6: PrefixMap<Ipv6Net, Vec<Entry>>,
    len: usize,
    version: u64,
    tombstones: VecDeque<(u64, Decision)>,
    /// Version of the newest tombstone dropped for lack of room (0 = none lost).
    lost_upto: u64,
}

impl Default for DecisionTable {
    fn default() -> Self {
        Self::new()
    }
}

/// Precedence when several decisions cover one address: ban, then captcha, then throttle.
fn rank(t: DecisionType) -> u8 {
    match t {
        DecisionType::Ban => 0,
        DecisionType::Captcha => 1,
        DecisionType::Throttle => 2,
    }
}

/// Same decision? By store id when both have one, else by target and type.
fn same(a: &Decision, b: &Decision) -> bool {
    if a.id != 0 && b.id != 0 {
        a.id == b.id
    } else {
        a.kind == b.kind && a.target == b.target
    }
}

fn better<'a>(best: Option<&'a Decision>, d: &'a Decision) -> Option<&'a Decision> {
    match best {
        None => Some(d),
        Some(b) => {
            if (rank(d.kind), std::cmp::Reverse(d.expires))
                < (rank(b.kind), std::cmp::Reverse(b.expires))
            {
                Some(d)
            } else {
                Some(b)
            }
        }
    }
}

impl DecisionTable {
    pub fn new() -> Self {
        DecisionTable {
            exact: HashMap::with_hasher(RandomState::default()),
            ranges4: PrefixMap::new(),
            ranges6: PrefixMap::new(),
            len: 0,
            version: 0,
            tombstones: VecDeque::new(),
            lost_upto: 0,
        }
    }

    /// Apply one batch. Adding a decision that is already present (same id,
    /// or same target and type when ids are 0) replaces it: that is how a
    /// ban is extended. Removing an absent decision is a no-op.
    pub fn apply(&mut self, batch: &[Change]) {
        for change in batch {
            self.version += 1;
            match change {
                Change::Add(d) => self.add(d.clone()),
                Change::Remove(d) => self.remove(d),
            }
        }
    }

    fn slot(&mut self, net: Net, create: bool) -> Option<&mut Vec<Entry>> {
        match net.get() {
            _ if net.is_host() => {
                if create {
                    Some(self.exact.entry(net.first()).or_default())
                } else {
                    self.exact.get_mut(&net.first())
                }
            }
            IpNet::V4(n) => {
                if create {
                    Some(self.ranges4.entry(n).or_default())
                } else {
                    self.ranges4.get_mut(&n)
                }
            }
            IpNet::V6(n) => {
                if create {
                    Some(self.ranges6.entry(n).or_default())
                } else {
                    self.ranges6.get_mut(&n)
                }
            }
        }
    }

    fn drop_slot_if_empty(&mut self, net: Net) {
        match net.get() {
            _ if net.is_host() => {
                if self.exact.get(&net.first()).is_some_and(Vec::is_empty) {
                    self.exact.remove(&net.first());
                }
            }
            IpNet::V4(n) => {
                if self.ranges4.get(&n).is_some_and(Vec::is_empty) {
                    self.ranges4.remove(&n);
                }
            }
            IpNet::V6(n) => {
                if self.ranges6.get(&n).is_some_and(Vec::is_empty) {
                    self.ranges6.remove(&n);
                }
            }
        }
    }

    fn add(&mut self, d: Decision) {
        let version = self.version;
        let net = d.target;
        let slot = self
            .slot(net, true)
            .expect("create=true always yields a slot");
        if let Some(e) = slot.iter_mut().find(|e| same(&e.decision, &d)) {
            e.decision = d;
            e.version = version;
        } else {
            slot.push(Entry {
                decision: d,
                version,
            });
            self.len += 1;
        }
    }

    fn remove(&mut self, d: &Decision) {
        let net = d.target;
        let Some(slot) = self.slot(net, false) else {
            return;
        };
        let before = slot.len();
        let mut removed = Vec::new();
        slot.retain(|e| {
            if same(&e.decision, d) {
                removed.push(e.decision.clone());
                false
            } else {
                true
            }
        });
        self.len -= before - slot.len();
        self.drop_slot_if_empty(net);
        for r in removed {
            self.push_tombstone(r);
        }
    }

    fn push_tombstone(&mut self, d: Decision) {
        if self.tombstones.len() >= MAX_TOMBSTONES
            && let Some((v, _)) = self.tombstones.pop_front()
        {
            self.lost_upto = v;
        }
        self.tombstones.push_back((self.version, d));
    }

    /// The decision that applies to `ip` now: ban before captcha before
    /// throttle, then the one that lasts longest. Exact entries and every
    /// range containing `ip` are considered.
    pub fn lookup(&self, ip: Addr, now: UnixTime) -> Option<&Decision> {
        let mut best = None;
        self.for_each_covering(ip, now, |d| best = better(best, d));
        best
    }

    /// Every active decision whose target contains `ip` (exact or range).
    pub fn matching(&self, ip: Addr, now: UnixTime) -> Vec<&Decision> {
        let mut out = Vec::new();
        self.for_each_covering(ip, now, |d| out.push(d));
        out
    }

    fn for_each_covering<'a>(&'a self, ip: Addr, now: UnixTime, mut f: impl FnMut(&'a Decision)) {
        if let Some(v) = self.exact.get(&ip) {
            v.iter()
                .map(|e| &e.decision)
                .filter(|d| d.is_active(now))
                .for_each(&mut f);
        }
        self.for_each_range_covering(shield_core::host_net(ip), now, f);
    }

    fn for_each_range_covering<'a>(
        &'a self,
        net: Net,
        now: UnixTime,
        mut f: impl FnMut(&'a Decision),
    ) {
        let mut visit = |v: &'a Vec<Entry>| {
            v.iter()
                .map(|e| &e.decision)
                .filter(|d| d.is_active(now))
                .for_each(&mut f);
        };
        match net.get() {
            IpNet::V4(n) => {
                if self.ranges4.is_empty() {
                    return;
                }
                self.ranges4.cover(&n).for_each(|(_, v)| visit(v));
            }
            IpNet::V6(n) => {
                if self.ranges6.is_empty() {
                    return;
                }
                self.ranges6.cover(&n).for_each(|(_, v)| visit(v));
            }
        }
    }

    /// Active decisions whose target contains `net` (equal or wider).
    pub fn containing(&self, net: Net, now: UnixTime) -> Vec<&Decision> {
        let mut out = Vec::new();
        if net.is_host() {
            self.for_each_covering(net.first(), now, |d| out.push(d));
        } else {
            self.for_each_range_covering(net, now, |d| out.push(d));
        }
        out
    }

    /// Active decisions whose target lies inside `net` (equal or narrower).
    /// Exact addresses are found by a scan of the exact map: O(n), meant for
    /// operators' queries, not for the per-request path.
    pub fn within(&self, net: Net, now: UnixTime) -> Vec<&Decision> {
        self.active(now).filter(|d| net.covers(&d.target)).collect()
    }

    /// Every active decision, in no particular order.
    pub fn active(&self, now: UnixTime) -> impl Iterator<Item = &Decision> {
        self.entries()
            .map(|e| &e.decision)
            .filter(move |d| d.is_active(now))
    }

    pub(crate) fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.exact
            .values()
            .flatten()
            .chain(self.ranges4.values().flatten())
            .chain(self.ranges6.values().flatten())
    }

    /// Number of decisions held, expired ones included until purged.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Drop entries that expired at or before `now`; they become tombstones
    /// so bouncers pulling deltas are told. Returns how many were dropped.
    pub fn purge_expired(&mut self, now: UnixTime) -> usize {
        let expired: Vec<Decision> = self
            .entries()
            .map(|e| &e.decision)
            .filter(|d| !d.is_active(now))
            .cloned()
            .collect();
        let n = expired.len();
        if n > 0 {
            let batch: Vec<Change> = expired.into_iter().map(Change::Remove).collect();
            self.apply(&batch);
        }
        n
    }

    /// The current version: bumped once per change applied.
    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    /// Removed decisions with a version newer than `since`, and whether some
    /// removals after `since` were forgotten (the log is bounded).
    pub(crate) fn removed_since(&self, since: u64) -> (impl Iterator<Item = &Decision>, bool) {
        let start = self.tombstones.partition_point(|(v, _)| *v <= since);
        (
            self.tombstones.range(start..).map(|(_, d)| d),
            self.lost_upto > since,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shield_core::{Origin, Scope};

    fn dec(id: i64, target: &str, kind: DecisionType, expires: UnixTime) -> Decision {
        let target: Net = target.parse().unwrap();
        Decision {
            id,
            scope: Scope::of(&target),
            target,
            kind,
            scenario: "test".into(),
            origin: Origin::Local,
            created: 0,
            expires,
        }
    }

    fn ip(s: &str) -> Addr {
        s.parse().unwrap()
    }

    #[test]
    fn range_contains_address_and_exact_is_exact() {
        let mut t = DecisionTable::new();
        t.apply(&[
            Change::Add(dec(1, "203.0.113.0/24", DecisionType::Ban, 100)),
            Change::Add(dec(2, "198.51.100.7", DecisionType::Ban, 100)),
            Change::Add(dec(3, "2001:db8::/32", DecisionType::Captcha, 100)),
        ]);
        assert_eq!(t.lookup(ip("203.0.113.99"), 10).map(|d| d.id), Some(1));
        assert_eq!(t.lookup(ip("203.0.114.1"), 10), None);
        assert_eq!(t.lookup(ip("198.51.100.7"), 10).map(|d| d.id), Some(2));
        assert_eq!(t.lookup(ip("198.51.100.8"), 10), None);
        assert_eq!(t.lookup(ip("2001:db8:1::5"), 10).map(|d| d.id), Some(3));
        // IPv4-mapped IPv6 is the IPv4 address.
        assert_eq!(
            t.lookup(ip("::ffff:198.51.100.7"), 10).map(|d| d.id),
            Some(2)
        );
        assert_eq!(t.len(), 3);
        assert_eq!(t.within("198.51.100.0/24".parse().unwrap(), 10).len(), 1);
        assert_eq!(
            t.containing("203.0.113.128/25".parse().unwrap(), 10).len(),
            1
        );
        assert!(t.containing("203.0.0.0/16".parse().unwrap(), 10).is_empty());
    }

    #[test]
    fn precedence_ban_then_captcha_then_throttle() {
        let mut t = DecisionTable::new();
        t.apply(&[
            Change::Add(dec(1, "10.0.0.0/8", DecisionType::Throttle, 100)),
            Change::Add(dec(2, "10.1.0.0/16", DecisionType::Captcha, 100)),
        ]);
        assert_eq!(
            t.lookup(ip("10.1.2.3"), 0).map(|d| d.kind),
            Some(DecisionType::Captcha)
        );
        assert_eq!(
            t.lookup(ip("10.2.2.3"), 0).map(|d| d.kind),
            Some(DecisionType::Throttle)
        );
        t.apply(&[Change::Add(dec(3, "10.1.2.3", DecisionType::Ban, 100))]);
        assert_eq!(
            t.lookup(ip("10.1.2.3"), 0).map(|d| d.kind),
            Some(DecisionType::Ban)
        );
        assert_eq!(t.matching(ip("10.1.2.3"), 0).len(), 3);
    }

    #[test]
    fn expiry_remove_and_extension() {
        let mut t = DecisionTable::new();
        t.apply(&[Change::Add(dec(1, "192.0.2.1", DecisionType::Ban, 50))]);
        assert!(t.lookup(ip("192.0.2.1"), 49).is_some());
        assert!(
            t.lookup(ip("192.0.2.1"), 50).is_none(),
            "expired at `expires`"
        );
        // Re-adding the same id extends it rather than duplicating it.
        t.apply(&[Change::Add(dec(1, "192.0.2.1", DecisionType::Ban, 500))]);
        assert_eq!(t.len(), 1);
        assert!(t.lookup(ip("192.0.2.1"), 100).is_some());
        t.apply(&[Change::Remove(dec(1, "192.0.2.1", DecisionType::Ban, 500))]);
        assert!(t.lookup(ip("192.0.2.1"), 100).is_none());
        assert_eq!(t.len(), 0);
        // Removing again is harmless.
        t.apply(&[Change::Remove(dec(1, "192.0.2.1", DecisionType::Ban, 500))]);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn purge_turns_expired_into_tombstones() {
        let mut t = DecisionTable::new();
        t.apply(&[
            Change::Add(dec(1, "192.0.2.1", DecisionType::Ban, 50)),
            Change::Add(dec(2, "192.0.2.0/28", DecisionType::Ban, 500)),
        ]);
        let v = t.version();
        assert_eq!(t.purge_expired(60), 1);
        assert_eq!(t.len(), 1);
        let (gone, lost) = t.removed_since(v);
        assert!(!lost);
        assert_eq!(gone.map(|d| d.id).collect::<Vec<_>>(), vec![1]);
        assert_eq!(t.active(60).count(), 1);
    }
}
