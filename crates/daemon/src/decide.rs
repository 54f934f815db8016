//! The decision stage: turns alerts (and manual or union decisions) into
//! decisions in force. The allowlist is checked here, once, for every origin;
//! repeat offenders get longer bans here; a target already covered by a
//! decision at least as long is not decided twice. The peers of established
//! SSH sessions to this host (the operator's own connection) are protected
//! here too, from a view of the kernel's socket table refreshed as it ages.
//!
//! The policy ([`Decider`]) is written once, against a narrow [`Ledger`]:
//! the daemon's SQLite [`Store`] is one, replay's in-memory map
//! ([`crate::replay`]) the other. Where the decisions are kept is the
//! ledger's business; what is decided is this module's.

use std::net::IpAddr;
use std::time::Duration;

use shield_core::{Addr, Alert, Allowlist, Decision, DecisionType, Net, Origin, Scope, UnixTime};

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
    Allowlisted(Net),
    /// The alert's scenario decides nothing (`duration = "0s"`, CrowdSec's
    /// `remediation: false`): the alert is kept, no offence is counted.
    /// Only [`Decider::on_alert`] answers this.
    AlertOnly,
}

/// Where the decision policy keeps what it decided: offence counts and
/// decisions. The SQLite [`Store`] is the daemon's; replay keeps its own in
/// memory. Every method reads or writes exactly what its name says; the
/// policy in [`Decider`] decides.
pub trait Ledger {
    type Error;
    /// Counts an offence by `target` at `now`: one more than the last count
    /// if the last offence is at most `forget_s` before `now`, else 1.
    /// Returns the new count.
    fn bump_offence(
        &mut self,
        target: &Net,
        now: UnixTime,
        forget_s: u64,
    ) -> Result<u32, Self::Error>;
    /// The oldest decision of type `kind` on exactly `target` that is still
    /// in force at `now` (expires after it), if any.
    fn active(
        &mut self,
        target: &Net,
        kind: DecisionType,
        now: UnixTime,
    ) -> Result<Option<Decision>, Self::Error>;
    /// Moves the end of decision `id` to `expires`.
    fn set_expiry(&mut self, id: i64, expires: UnixTime) -> Result<(), Self::Error>;
    /// Records a new decision; returns it with its id.
    fn insert(&mut self, d: &Decision) -> Result<Decision, Self::Error>;
}

/// The daemon's ledger: the store, inside the caller's transaction.
impl Ledger for &Store {
    type Error = StoreError;
    fn bump_offence(
        &mut self,
        target: &Net,
        now: UnixTime,
        forget_s: u64,
    ) -> Result<u32, StoreError> {
        Store::bump_offence(self, target, now, forget_s)
    }
    fn active(
        &mut self,
        target: &Net,
        kind: DecisionType,
        now: UnixTime,
    ) -> Result<Option<Decision>, StoreError> {
        Ok(self
            .active_for(target, now)?
            .into_iter()
            .find(|d| d.kind == kind))
    }
    fn set_expiry(&mut self, id: i64, expires: UnixTime) -> Result<(), StoreError> {
        Store::set_expiry(self, id, expires)
    }
    fn insert(&mut self, d: &Decision) -> Result<Decision, StoreError> {
        self.insert_decision(d)
    }
}

impl<L: Ledger + ?Sized> Ledger for &mut L {
    type Error = L::Error;
    fn bump_offence(
        &mut self,
        target: &Net,
        now: UnixTime,
        forget_s: u64,
    ) -> Result<u32, L::Error> {
        (**self).bump_offence(target, now, forget_s)
    }
    fn active(
        &mut self,
        target: &Net,
        kind: DecisionType,
        now: UnixTime,
    ) -> Result<Option<Decision>, L::Error> {
        (**self).active(target, kind, now)
    }
    fn set_expiry(&mut self, id: i64, expires: UnixTime) -> Result<(), L::Error> {
        (**self).set_expiry(id, expires)
    }
    fn insert(&mut self, d: &Decision) -> Result<Decision, L::Error> {
        (**self).insert(d)
    }
}

/// Decision policy: allowlist, SSH-session protection and escalation.
#[derive(Clone, Debug)]
pub struct Decider {
    pub allowlist: Allowlist,
    pub escalation: Escalation,
    /// When set, peers of established SSH sessions are never decided on.
    pub ssh_sessions: Option<SshSessions>,
}

impl Decider {
    pub fn new(allowlist: Allowlist, escalation: Escalation) -> Self {
        Decider {
            allowlist,
            escalation,
            ssh_sessions: None,
        }
    }

    /// Also protect the peers of established SSH sessions (`[decisions] allow_ssh_sessions`).
    pub fn with_ssh_sessions(mut self, s: SshSessions) -> Self {
        self.ssh_sessions = Some(s);
        self
    }

    /// The allowlist entry or SSH session that `target` touches, if any.
    pub(crate) fn protected(&self, target: &Net) -> Option<Net> {
        if let Some(net) = self.allowlist.overlaps(target) {
            return Some(net);
        }
        self.ssh_sessions.as_ref()?.protecting(target)
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
    /// in the ledger, so with the store they survive restarts), then
    /// [`Decider::admit`].
    pub fn on_alert<L: Ledger>(
        &self,
        mut ledger: L,
        alert: &Alert,
        now: UnixTime,
    ) -> Result<Outcome, L::Error> {
        if let Some(net) = self.protected(&alert.target) {
            return Ok(Outcome::Allowlisted(net));
        }
        if alert.duration_s == 0 {
            return Ok(Outcome::AlertOnly);
        }
        let n = ledger.bump_offence(&alert.target, now, self.escalation.forget.as_secs())?;
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
        self.admit(ledger, d, now)
    }

    /// Admits a decision from any origin: refused if it touches the
    /// allowlist; merged with an active decision of the same type on the same target.
    pub fn admit<L: Ledger>(
        &self,
        mut ledger: L,
        d: Decision,
        now: UnixTime,
    ) -> Result<Outcome, L::Error> {
        if let Some(net) = self.protected(&d.target) {
            return Ok(Outcome::Allowlisted(net));
        }
        if let Some(old) = ledger.active(&d.target, d.kind, now)? {
            if old.expires >= d.expires {
                return Ok(Outcome::Covered(old.id));
            }
            ledger.set_expiry(old.id, d.expires)?;
            return Ok(Outcome::Extended(Decision {
                expires: d.expires,
                ..old
            }));
        }
        Ok(Outcome::New(ledger.insert(&d)?))
    }
}

/// Parses an address or network, canonical (see [`shield_core::Net`]):
/// `203.0.113.7`, `203.0.113.0/24`, `::ffff:203.0.113.7` (= `203.0.113.7`).
/// Used for decision targets, the allowlist and trusted proxies alike.
pub fn parse_target(s: &str) -> Result<Net, String> {
    s.parse::<Net>().map_err(|e| e.to_string())
}

/// Parses a human duration such as `90s`, `4h` or `7d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration ({e}); write e.g. 90s, 10m, 4h, 7d"))
}

/// This host's own addresses (never banned): loopback, plus every local
/// address the kernel lists in `/proc/net/fib_trie` and `/proc/net/if_inet6`.
pub fn own_addresses() -> Vec<Net> {
    let mut out: Vec<Net> = vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
    if let Ok(t) = std::fs::read_to_string("/proc/net/fib_trie") {
        // Lines look like "|-- 192.0.2.10" followed by "/32 host LOCAL".
        let mut last: Option<IpAddr> = None;
        for line in t.lines() {
            let l = line.trim_start_matches([' ', '|', '+', '-', '`']);
            if let Ok(ip) = l.trim().parse::<IpAddr>() {
                last = Some(ip);
            } else if l.contains("host LOCAL")
                && let Some(ip) = last
            {
                out.push(shield_core::host_net(ip));
            }
        }
    }
    if let Ok(t) = std::fs::read_to_string("/proc/net/if_inet6") {
        for line in t.lines() {
            let hex = line.split_whitespace().next().unwrap_or("");
            if hex.len() == 32
                && let Ok(v) = u128::from_str_radix(hex, 16)
            {
                out.push(shield_core::host_net(IpAddr::V6(v.into())));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The peers of the operator's SSH sessions: every remote address with an
/// ESTABLISHED TCP connection to a local sshd port (from `/proc/net/tcp` and
/// `/proc/net/tcp6` of the daemon's network namespace), plus the client of
/// `$SSH_CONNECTION` when the daemon was started from an SSH session. The
/// socket table is re-read when the last view is older than [`SSH_REFRESH`],
/// and only when a decision is being made, so idle hosts do no work.
#[derive(Clone, Debug)]
pub struct SshSessions {
    ports: Vec<u16>,
    from_env: Option<Addr>,
    // Locked only to swap a small vector; never held across I/O of another lock.
    cache: std::sync::Arc<std::sync::Mutex<(Option<std::time::Instant>, Vec<Addr>)>>,
}

/// How old the view of the SSH sessions may be before it is read again.
pub const SSH_REFRESH: Duration = Duration::from_secs(2);

impl SshSessions {
    /// Sessions to the local sshd on `ports`.
    pub fn new(ports: Vec<u16>) -> Self {
        let from_env = std::env::var("SSH_CONNECTION")
            .ok()
            .and_then(|v| v.split_whitespace().next()?.parse().ok());
        SshSessions {
            ports,
            from_env,
            cache: Default::default(),
        }
    }

    /// The current session peers (refreshed if the view is older than [`SSH_REFRESH`]).
    pub fn current(&self) -> Vec<Addr> {
        let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if c.0.is_none_or(|t| t.elapsed() >= SSH_REFRESH) {
            let mut peers = Vec::new();
            for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
                if let Ok(t) = std::fs::read_to_string(f) {
                    peers.extend(ssh_peers(&t, &self.ports));
                }
            }
            peers.extend(self.from_env);
            peers.sort();
            peers.dedup();
            *c = (Some(std::time::Instant::now()), peers);
        }
        c.1.clone()
    }

    /// The session peer (as a host network) that `target` contains, if any.
    pub fn protecting(&self, target: &Net) -> Option<Net> {
        self.current()
            .into_iter()
            .find(|ip| target.has(*ip))
            .map(Net::host)
    }
}

/// The ports the local sshd listens on: `Port` lines of `/etc/ssh/sshd_config`, or 22.
pub fn sshd_ports() -> Vec<u16> {
    let mut ports: Vec<u16> = std::fs::read_to_string("/etc/ssh/sshd_config")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            w.next()
                .filter(|k| k.eq_ignore_ascii_case("port"))
                .and_then(|_| w.next()?.parse().ok())
        })
        .collect();
    if !ports.contains(&22) {
        ports.push(22);
    }
    ports
}

/// Remote addresses of ESTABLISHED sockets whose local port is in `ports`,
/// from the text of `/proc/net/tcp` or `/proc/net/tcp6`. Lines that do not
/// parse are skipped.
pub fn ssh_peers(table: &str, ports: &[u16]) -> Vec<Addr> {
    fn addr(s: &str) -> Option<(Addr, u16)> {
        let (ip, port) = s.split_once(':')?;
        let port = u16::from_str_radix(port, 16).ok()?;
        // The kernel prints each 32-bit word of the address as a native-endian integer.
        let mut bytes = Vec::with_capacity(16);
        for i in (0..ip.len()).step_by(8) {
            let w = u32::from_str_radix(ip.get(i..i + 8)?, 16).ok()?;
            bytes.extend_from_slice(&w.to_ne_bytes());
        }
        // Canonical: a tcp6 socket's ::ffff:a.b.c.d peer is a.b.c.d.
        let ip = match bytes.len() {
            4 => IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?),
            16 => IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?),
            _ => return None,
        };
        Some((Addr::new(ip), port))
    }
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().take(4).collect();
            if f.len() < 4 || f[3] != "01" {
                return None;
            }
            let (_, lport) = addr(f[1])?;
            let (rip, _) = addr(f[2])?;
            ports.contains(&lport).then_some(rip)
        })
        .collect()
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
    fn a_scenario_without_remediation_decides_nothing_and_counts_no_offence() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let d = Decider::new(Allowlist::default(), Escalation::default());
        let quiet = alert("203.0.113.7/32", 0);
        for t in [1000, 2000, 3000] {
            assert_eq!(d.on_alert(&store, &quiet, t).unwrap(), Outcome::AlertOnly);
        }
        assert!(store.active_decisions(3000).unwrap().is_empty());
        // The alerts-only scenario counted no offence: the first real ban is not escalated.
        let Outcome::New(ban) = d
            .on_alert(&store, &alert("203.0.113.7/32", 600), 4000)
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(ban.duration_s(), 600);
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
        let esc = Escalation {
            enabled: false,
            ..Escalation::default()
        };
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
    fn ssh_peers_from_the_socket_table() {
        // Captured from a little-endian host: 10.0.0.5:22 <- 198.51.100.7:51000
        // ESTABLISHED, a LISTEN socket on 22, and an ESTABLISHED one on port 80.
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
   1: 0500000A:0016 076433C6:C738 01 00000000:00000000 02:00000000 00000000     0        0 2 1
   2: 0500000A:0050 086433C6:C739 01 00000000:00000000 02:00000000 00000000     0        0 3 1
   3: garbage
";
        if cfg!(target_endian = "little") {
            let got = ssh_peers(v4, &[22]);
            assert_eq!(got, vec!["198.51.100.7".parse::<Addr>().unwrap()]);
            // ::ffff:203.0.113.9 on tcp6 is reported as the IPv4 address.
            let v6 = "hdr
   0: 00000000000000000000000001000000:0016 0000000000000000FFFF0000097100CB:D431 01 0 0 0 0 0 0 0
";
            assert_eq!(
                ssh_peers(v6, &[22]),
                vec!["203.0.113.9".parse::<Addr>().unwrap()]
            );
            assert!(ssh_peers(v4, &[2222]).is_empty());
        }
    }

    #[test]
    fn ssh_session_peer_is_protected_like_the_allowlist() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let s = SshSessions::new(vec![22]);
        *s.cache.lock().unwrap() = (
            Some(std::time::Instant::now()),
            vec!["198.51.100.7".parse().unwrap()],
        );
        let d = Decider::new(Allowlist::default(), Escalation::default()).with_ssh_sessions(s);
        assert_eq!(
            d.on_alert(&store, &alert("198.51.100.0/24", 60), 0)
                .unwrap(),
            Outcome::Allowlisted("198.51.100.7/32".parse().unwrap())
        );
        assert!(matches!(
            d.on_alert(&store, &alert("203.0.113.1/32", 60), 0).unwrap(),
            Outcome::New(_)
        ));
        // Issue 19: the session peer in an IPv6 spelling is the same peer.
        for t in [
            "::ffff:198.51.100.7",
            "::198.51.100.7",
            "::ffff:198.51.100.0/120",
        ] {
            assert!(
                matches!(
                    d.on_alert(&store, &alert(t, 60), 0).unwrap(),
                    Outcome::Allowlisted(_)
                ),
                "{t}"
            );
        }
    }

    #[test]
    fn ipv4_in_an_ipv6_spelling_meets_the_allowlist() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let mut allow = vec!["10.0.0.0/8".parse().unwrap()];
        allow.extend(own_addresses());
        let d = Decider::new(Allowlist::new(allow), Escalation::default());
        for t in [
            "::ffff:10.1.2.3",
            "::10.1.2.3",
            "::ffff:a01:203/128",
            "::ffff:127.0.0.1",
            "::ffff:0.0.0.0/96",
        ] {
            let target = parse_target(t).unwrap();
            let m = Decision {
                id: 0,
                scope: Scope::of(&target),
                target,
                kind: shield_core::DecisionType::Ban,
                scenario: "manual".into(),
                origin: Origin::Manual,
                created: 0,
                expires: 100,
            };
            assert!(
                matches!(d.admit(&store, m, 0).unwrap(), Outcome::Allowlisted(_)),
                "{t} -> {target} was admitted"
            );
        }
        assert!(store.active_decisions(0).unwrap().is_empty());
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
        assert!(own.iter().any(|n| n.has("127.0.0.1".parse().unwrap())));
    }
}
