//! The decision stage: turns alerts (and manual or union decisions) into
//! decisions in force. The allowlist is checked here, once, for every origin;
//! repeat offenders get longer bans here; a target already covered by a
//! decision at least as long is not decided twice.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use shield_core::{Alert, Allowlist, Decision, Origin, Scope, UnixTime};

use crate::config::Escalation;
use crate::store::{Store, StoreError};

/// What became of a proposed decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new decision, stored.
    New(Decision),
    /// An existing decision on the same target now lasts longer (stored).
    Extended(Decision),
    /// Already covered by an active decision at least as long.
    Covered(i64),
    /// The target touches the allowlist: nothing is decided.
    Allowlisted(IpNet),
}

/// Decision policy: allowlist and escalation.
#[derive(Clone, Debug)]
pub struct Decider {
    pub allowlist: Allowlist,
    pub escalation: Escalation,
}

impl Decider {
    pub fn new(allowlist: Allowlist, escalation: Escalation) -> Self {
        Decider {
            allowlist,
            escalation,
        }
    }

    /// The ban length for the `n`th offence (n ≥ 1) of a scenario whose base is `base_s`.
    pub fn escalated(&self, base_s: u64, n: u32) -> u64 {
        if !self.escalation.enabled || n <= 1 {
            return base_s;
        }
        let max = self.escalation.max.as_secs().max(base_s);
        let mult = self.escalation.factor.max(1.0).powi((n - 1).min(64) as i32);
        let d = (base_s as f64 * mult).min(max as f64);
        d as u64
    }

    /// Decides on a local alert: allowlist, escalation (offences are counted
    /// in the store, so they survive restarts), then [`Decider::admit`].
    pub fn on_alert(
        &self,
        store: &Store,
        alert: &Alert,
        now: UnixTime,
    ) -> Result<Outcome, StoreError> {
        if let Some(net) = self.allowlist.overlaps(&alert.target) {
            return Ok(Outcome::Allowlisted(net));
        }
        let n = store.bump_offence(&alert.target, now, self.escalation.forget.as_secs())?;
        let duration = self.escalated(alert.duration_s, n);
        let d = Decision {
            id: 0,
            scope: Scope::of(&alert.target),
            target: alert.target,
            kind: alert.kind,
            scenario: alert.scenario.clone(),
            origin: Origin::Local,
            created: now,
            expires: now + duration as i64,
        };
        self.admit(store, d, now)
    }

    /// Admits a decision from any origin: refused if it touches the
    /// allowlist; merged with an active decision of the same type on the same target.
    pub fn admit(&self, store: &Store, d: Decision, now: UnixTime) -> Result<Outcome, StoreError> {
        if let Some(net) = self.allowlist.overlaps(&d.target) {
            return Ok(Outcome::Allowlisted(net));
        }
        for old in store.active_for(&d.target, now)? {
            if old.kind != d.kind {
                continue;
            }
            if old.expires >= d.expires {
                return Ok(Outcome::Covered(old.id));
            }
            store.set_expiry(old.id, d.expires)?;
            return Ok(Outcome::Extended(Decision {
                expires: d.expires,
                ..old
            }));
        }
        Ok(Outcome::New(store.insert_decision(&d)?))
    }
}

/// Parses an address or network as a decision target: `203.0.113.7` or `203.0.113.0/24`.
pub fn parse_target(s: &str) -> Result<IpNet, String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(shield_core::host_net(ip));
    }
    s.parse::<IpNet>()
        .map(|n| n.trunc())
        .map_err(|_| format!("`{s}` is neither an IP address nor a CIDR network (e.g. 203.0.113.7 or 198.51.100.0/24)"))
}

/// Parses a human duration such as `90s`, `4h` or `7d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration ({e}); write e.g. 90s, 10m, 4h, 7d"))
}

/// This host's own addresses (never banned): loopback, plus every local
/// address the kernel lists in `/proc/net/fib_trie` and `/proc/net/if_inet6`.
pub fn own_addresses() -> Vec<IpNet> {
    let mut out: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
    if let Ok(t) = std::fs::read_to_string("/proc/net/fib_trie") {
        // Lines look like "|-- 192.0.2.10" followed by "/32 host LOCAL".
        let mut last: Option<IpAddr> = None;
        for line in t.lines() {
            let l = line.trim_start_matches([' ', '|', '+', '-', '`']);
            if let Ok(ip) = l.trim().parse::<IpAddr>() {
                last = Some(ip);
            } else if l.contains("host LOCAL") {
                if let Some(ip) = last {
                    out.push(shield_core::host_net(ip));
                }
            }
        }
    }
    if let Ok(t) = std::fs::read_to_string("/proc/net/if_inet6") {
        for line in t.lines() {
            let hex = line.split_whitespace().next().unwrap_or("");
            if hex.len() == 32 {
                if let Ok(v) = u128::from_str_radix(hex, 16) {
                    out.push(shield_core::host_net(IpAddr::V6(v.into())));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use shield_core::DecisionType;

    fn alert(target: &str, dur: u64) -> Alert {
        Alert {
            scenario: "sshd-bruteforce".into(),
            target: target.parse().unwrap(),
            time: 0,
            first_seen: 0,
            events: 6,
            evidence: vec![],
            kind: DecisionType::Ban,
            duration_s: dur,
        }
    }

    #[test]
    fn repeat_offender_gets_longer_ban_up_to_cap() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let d = Decider::new(Allowlist::default(), Escalation::default());
        let a = alert("203.0.113.7/32", 600);
        let Outcome::New(first) = d.on_alert(&store, &a, 1000).unwrap() else {
            panic!()
        };
        assert_eq!(first.duration_s(), 600);
        // After the first ban ends, the second offence doubles it.
        let Outcome::New(second) = d.on_alert(&store, &a, 2000).unwrap() else {
            panic!()
        };
        assert_eq!(second.duration_s(), 1200);
        assert_eq!(d.escalated(600, 40), 7 * 86400);
    }

    #[test]
    fn allowlist_wins_for_every_origin() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let d = Decider::new(
            Allowlist::new(vec!["192.0.2.0/24".parse().unwrap()]),
            Escalation::default(),
        );
        assert!(matches!(
            d.on_alert(&store, &alert("192.0.2.9/32", 60), 0).unwrap(),
            Outcome::Allowlisted(_)
        ));
        let wide = Decision {
            id: 0,
            scope: Scope::Range,
            target: "192.0.0.0/16".parse().unwrap(),
            kind: DecisionType::Ban,
            scenario: "x".into(),
            origin: Origin::Union("b".into()),
            created: 0,
            expires: 100,
        };
        assert!(matches!(
            d.admit(&store, wide, 0).unwrap(),
            Outcome::Allowlisted(_)
        ));
        assert!(store.active_decisions(0).unwrap().is_empty());
    }

    #[test]
    fn covered_and_extended() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let mut esc = Escalation::default();
        esc.enabled = false;
        let d = Decider::new(Allowlist::default(), esc);
        let Outcome::New(a) = d
            .on_alert(&store, &alert("203.0.113.7/32", 600), 0)
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(
            d.on_alert(&store, &alert("203.0.113.7/32", 600), 0)
                .unwrap(),
            Outcome::Covered(a.id)
        );
        let Outcome::Extended(e) = d
            .on_alert(&store, &alert("203.0.113.7/32", 600), 300)
            .unwrap()
        else {
            panic!()
        };
        assert_eq!((e.id, e.expires), (a.id, 900));
    }

    #[test]
    fn targets_and_own_addresses() {
        assert_eq!(
            parse_target("203.0.113.7").unwrap().to_string(),
            "203.0.113.7/32"
        );
        assert_eq!(
            parse_target("198.51.100.9/24").unwrap().to_string(),
            "198.51.100.0/24"
        );
        assert!(parse_target("example.com").is_err());
        let own = own_addresses();
        assert!(
            own.iter()
                .any(|n| n.contains(&"127.0.0.1".parse::<IpAddr>().unwrap()))
        );
    }
}
