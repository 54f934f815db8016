//! The treaty: the shared policy every member of a union runs (members and
//! their keys, binding scenarios with decision type and duration, the union
//! allowlist, caps, quorum, revoked keys, transport).
//!
//! Owns parsing and validating the TOML file, the canonical form and its
//! digest (sha256 over a postcard encoding of the canonical form, so
//! whitespace, comments and ordering in the TOML do not matter), and the
//! human-readable diff between two treaties. It does not touch the network.

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use shield_core::Net;
use shield_core::{Allowlist, DecisionType};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::identity::{parse_public, public_to_string};

/// Why a treaty file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TreatyError {
    #[error("cannot read treaty {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("treaty {path} is not valid TOML for a treaty: {source}")]
    Toml {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    /// A value parses but breaks a rule; the message says which and how to fix it.
    #[error("treaty {path}: {msg}")]
    Invalid { path: PathBuf, msg: String },
}

/// The file form (what operators write).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreatyFile {
    /// The union's name.
    pub name: String,
    #[serde(default, rename = "member")]
    pub members: Vec<MemberFile>,
    #[serde(default, rename = "policy")]
    pub policies: Vec<PolicyFile>,
    /// Networks no member may ever ban through the union.
    #[serde(default)]
    pub allowlist: Vec<Net>,
    /// Keys (`ed25519:<base64>`) that are refused whoever presents them.
    #[serde(default)]
    pub revoked: Vec<String>,
    #[serde(default)]
    pub limits: LimitsFile,
    #[serde(default)]
    pub transport: TransportFile,
    #[serde(default, skip_serializing_if = "GovernanceFile::is_default")]
    pub governance: GovernanceFile,
}

/// `[governance]`: classes of amendment ratified without a full vote (see
/// docs/governance.md, "Auto-approval"). The policy of the version being
/// amended applies, so an amendment cannot loosen the rule it is judged by.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GovernanceFile {
    /// A member may rotate its own key with its own signature alone (the
    /// amendment changes that key and nothing else).
    pub rotate_own_key: bool,
    /// Signatures of full members that add one member by invitation (0: off).
    /// At least 2, and at least every policy's quorum, so inviting gives a
    /// group nothing it could not already do with signals.
    pub invite: u32,
    /// Most members on probation at once (default 4).
    pub max_invited: Option<u32>,
    /// Members added by invitation and not yet confirmed by a full vote: they
    /// send and receive signals, but do not vote and do not invite.
    pub invited: Vec<String>,
}

impl GovernanceFile {
    pub fn is_default(&self) -> bool {
        *self == GovernanceFile::default()
    }

    /// Most members on probation at once.
    pub fn max_invited(&self) -> u32 {
        self.max_invited.unwrap_or(4)
    }

    /// Whether `member` is on probation (added by invitation, not confirmed).
    pub fn on_probation(&self, member: &str) -> bool {
        self.invited.iter().any(|n| n == member)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberFile {
    pub name: String,
    /// `ed25519:<base64>` as printed by `shield union keygen`.
    pub key: String,
    /// `host:port` of the member's union listener.
    pub endpoint: String,
    /// Override of `limits.max_signals_per_minute` for this member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_signals_per_minute: Option<u32>,
    /// After a key rotation with an overlap window: the member's previous
    /// key, still valid (signals and connections) until `previous_key_until`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_key: Option<String>,
    /// Unix time (seconds) at which `previous_key` stops being valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_key_until: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// A scenario name whose decisions bind every member.
    pub scenario: String,
    #[serde(rename = "type", default = "default_type")]
    pub kind: String,
    /// e.g. `4h`.
    pub duration: String,
    /// Longest duration a member may send for this scenario (repeat offenders); default = duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duration: Option<String>,
    /// Distinct members that must report an address before the decision is enforced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<u32>,
}

fn default_type() -> String {
    "ban".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsFile {
    /// Signals a member may originate per minute (by signal time).
    pub max_signals_per_minute: u32,
    /// Widest IPv4 range a signal may cover: 24 refuses anything wider than a /24.
    pub min_prefix_v4: u8,
    /// Widest IPv6 range a signal may cover.
    pub min_prefix_v6: u8,
    /// Signals older than this are refused as stale.
    pub max_age: String,
    /// Quorum for scenarios that do not set their own (1 = none).
    pub quorum: u32,
}

impl Default for LimitsFile {
    fn default() -> Self {
        LimitsFile {
            max_signals_per_minute: 120,
            min_prefix_v4: 24,
            min_prefix_v6: 48,
            max_age: "24h".into(),
            quorum: 1,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransportFile {
    /// `direct` (HTTPS between members, the default) or `nats` (JetStream).
    pub kind: String,
    /// Anti-entropy period, e.g. `2s`.
    pub sync_interval: String,
    /// `nats` only: server URL(s), comma-separated, e.g. `nats://10.0.0.5:4222`
    /// (`tls://` to require TLS).
    pub url: Option<String>,
    /// `nats` only: token auth. `token_env` names an environment variable
    /// holding it instead, so the shared treaty need not carry the secret.
    pub token: Option<String>,
    pub token_env: Option<String>,
    /// `nats` only: user/password auth (`password_env` as for `token_env`).
    /// `{member}` in `user`, `password_env` and `password_file` is replaced by
    /// the member's name, so one shared treaty gives every member its own NATS
    /// user (see docs/nats.md, "Per-member users").
    pub user: Option<String>,
    pub password: Option<String>,
    pub password_env: Option<String>,
    /// `nats` only: a file holding the password (trailing newline ignored).
    pub password_file: Option<PathBuf>,
    /// `nats` only: PEM file of the CA that signed the NATS servers' certificates.
    pub ca_file: Option<PathBuf>,
    /// `nats` only: replicas of the union's stream when Shield creates it
    /// (default 1; 3 on a 3-node JetStream cluster). An existing stream is
    /// used as it is.
    pub replicas: Option<usize>,
}

impl Default for TransportFile {
    fn default() -> Self {
        TransportFile {
            kind: "direct".into(),
            sync_interval: "2s".into(),
            url: None,
            token: None,
            token_env: None,
            user: None,
            password: None,
            password_env: None,
            password_file: None,
            ca_file: None,
            replicas: None,
        }
    }
}

/// One member as the treaty knows it.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub key: VerifyingKey,
    pub endpoint: String,
    pub max_signals_per_minute: u32,
    /// The key before a rotation and the unix time it stops being valid.
    pub previous: Option<(VerifyingKey, i64)>,
}

impl Member {
    /// Whether `key` is this member's at unix time `now`: its key, or its
    /// previous key inside the rotation's overlap window.
    pub fn has_key_at(&self, key: &VerifyingKey, now: i64) -> bool {
        self.key == *key
            || self
                .previous
                .is_some_and(|(k, until)| k == *key && now < until)
    }

    /// Its keys: the current one, and the previous one while a rotation
    /// window is (or was) declared.
    pub fn keys(&self) -> impl Iterator<Item = &VerifyingKey> {
        std::iter::once(&self.key).chain(self.previous.as_ref().map(|(k, _)| k))
    }
}

/// A binding scenario's policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub kind: DecisionType,
    pub duration: Duration,
    pub max_duration: Duration,
    pub quorum: u32,
}

/// A parsed and validated treaty.
#[derive(Debug, Clone)]
pub struct Treaty {
    pub name: String,
    members: BTreeMap<String, Member>,
    policies: BTreeMap<String, Policy>,
    allowlist: Allowlist,
    revoked: Vec<VerifyingKey>,
    pub min_prefix_v4: u8,
    pub min_prefix_v6: u8,
    pub max_age: Duration,
    pub sync_interval: Duration,
    pub transport: String,
    /// `[transport]` as written, for the NATS settings (url, credentials, TLS).
    pub transport_file: TransportFile,
    /// `[governance]` as written (auto-approval classes, members on probation).
    pub governance: GovernanceFile,
    canonical: Canonical,
    digest: [u8; 32],
}

/// The canonical form: everything that must agree between members, in a fixed
/// order, with durations in seconds. Endpoints are addressing, not policy, and
/// are left out (a member may move without a new treaty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Canonical {
    pub name: String,
    /// (name, key, signals per minute), sorted by name.
    pub members: Vec<(String, String, u32)>,
    /// (scenario, type, duration s, max duration s, quorum), sorted by scenario.
    pub policies: Vec<(String, String, u64, u64, u32)>,
    pub allowlist: Vec<String>,
    pub revoked: Vec<String>,
    pub min_prefix_v4: u8,
    pub min_prefix_v6: u8,
    pub max_age_s: u64,
    pub transport: String,
    /// (rotate_own_key, invite, max_invited, invited members); absent when the
    /// treaty has no `[governance]`, so older treaties keep their digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub governance: Option<(bool, u32, u32, Vec<String>)>,
    /// (member, previous key, valid until) of rotations with an overlap
    /// window, sorted by member; absent when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rotations: Vec<(String, String, i64)>,
}

fn dur(path: &Path, what: &str, s: &str) -> Result<Duration, TreatyError> {
    humantime::parse_duration(s).map_err(|e| TreatyError::Invalid {
        path: path.to_owned(),
        msg: format!("{what} `{s}` is not a duration ({e}); write e.g. `4h`, `30m`, `2s`"),
    })
}

impl Treaty {
    /// Read, parse and validate a treaty file.
    pub fn load(path: impl AsRef<Path>) -> Result<Treaty, TreatyError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| TreatyError::Io {
            path: path.to_owned(),
            source,
        })?;
        Treaty::parse(&text, path)
    }

    /// Parse and validate treaty text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Treaty, TreatyError> {
        let file: TreatyFile = toml::from_str(text).map_err(|e| TreatyError::Toml {
            path: path.to_owned(),
            source: Box::new(e),
        })?;
        Treaty::from_file(file, path)
    }

    pub fn from_file(f: TreatyFile, path: &Path) -> Result<Treaty, TreatyError> {
        let bad = |msg: String| TreatyError::Invalid {
            path: path.to_owned(),
            msg,
        };
        if f.name.trim().is_empty() {
            return Err(bad("`name` (the union's name) must not be empty".into()));
        }
        let mut members = BTreeMap::new();
        for m in &f.members {
            if m.name.is_empty() || m.name.contains(|c: char| c.is_whitespace() || c == ':') {
                return Err(bad(format!(
                    "member name `{}` must be non-empty, without spaces or `:`",
                    m.name
                )));
            }
            let key = parse_public(&m.key).map_err(|e| bad(format!("member `{}`: {e}", m.name)))?;
            if members.values().any(|o: &Member| o.key == key) {
                return Err(bad(format!(
                    "member `{}` reuses another member's key",
                    m.name
                )));
            }
            let previous = match (&m.previous_key, m.previous_key_until) {
                (None, None) => None,
                (Some(k), Some(until)) => {
                    let pk = parse_public(k)
                        .map_err(|e| bad(format!("member `{}` previous_key: {e}", m.name)))?;
                    if pk == key {
                        return Err(bad(format!(
                            "member `{}`: previous_key is its current key",
                            m.name
                        )));
                    }
                    Some((pk, until))
                }
                _ => {
                    return Err(bad(format!(
                        "member `{}`: give previous_key and previous_key_until together (a rotation's overlap window)",
                        m.name
                    )));
                }
            };
            if members.values().any(|o: &Member| {
                o.keys()
                    .any(|k| *k == key || previous.is_some_and(|(p, _)| p == *k))
            }) {
                return Err(bad(format!(
                    "member `{}` reuses another member's key",
                    m.name
                )));
            }
            let m2 = Member {
                name: m.name.clone(),
                key,
                endpoint: m.endpoint.clone(),
                max_signals_per_minute: m
                    .max_signals_per_minute
                    .unwrap_or(f.limits.max_signals_per_minute),
                previous,
            };
            if members.insert(m.name.clone(), m2).is_some() {
                return Err(bad(format!("member `{}` is listed twice", m.name)));
            }
        }
        let mut policies = BTreeMap::new();
        for p in &f.policies {
            let kind: DecisionType = p
                .kind
                .parse()
                .map_err(|e| bad(format!("policy for `{}`: {e}", p.scenario)))?;
            let duration = dur(path, "policy duration", &p.duration)?;
            if duration.is_zero() {
                return Err(bad(format!(
                    "policy for `{}`: duration must be > 0",
                    p.scenario
                )));
            }
            let max_duration = match &p.max_duration {
                Some(s) => dur(path, "policy max_duration", s)?,
                None => duration,
            };
            if max_duration < duration {
                return Err(bad(format!(
                    "policy for `{}`: max_duration must be at least duration",
                    p.scenario
                )));
            }
            let quorum = p.quorum.unwrap_or(f.limits.quorum).max(1);
            let pol = Policy {
                kind,
                duration,
                max_duration,
                quorum,
            };
            if policies.insert(p.scenario.clone(), pol).is_some() {
                return Err(bad(format!(
                    "policy for scenario `{}` is listed twice",
                    p.scenario
                )));
            }
        }
        if f.limits.min_prefix_v4 > 32 || f.limits.min_prefix_v6 > 128 {
            return Err(bad(
                "limits.min_prefix_v4 must be ≤ 32 and min_prefix_v6 ≤ 128".into(),
            ));
        }
        let mut revoked = Vec::new();
        for r in &f.revoked {
            revoked.push(parse_public(r).map_err(|e| bad(format!("revoked: {e}")))?);
        }
        match f.transport.kind.as_str() {
            "direct" => {}
            "nats" => {
                if f.transport
                    .url
                    .as_deref()
                    .is_none_or(|u| u.trim().is_empty())
                {
                    return Err(bad(
                        "transport `nats` needs `url`, e.g. url = \"nats://127.0.0.1:4222\"".into(),
                    ));
                }
            }
            other => {
                return Err(bad(format!(
                    "transport `{other}` is unknown; use `direct` or `nats`"
                )));
            }
        }
        let sync_interval = dur(path, "transport.sync_interval", &f.transport.sync_interval)?;
        if sync_interval < Duration::from_millis(50) {
            return Err(bad("transport.sync_interval must be at least 50ms".into()));
        }
        let max_age = dur(path, "limits.max_age", &f.limits.max_age)?;
        let g = &f.governance;
        if g.invite == 1 {
            return Err(bad(
                "governance.invite must be 0 (off) or at least 2: one member alone may not add members".into(),
            ));
        }
        if let Some(q) = policies.values().map(|p| p.quorum).max()
            && g.invite > 0
            && g.invite < q
        {
            return Err(bad(format!(
                "governance.invite ({}) must be at least the largest signal quorum ({q}): invited members would let fewer members meet it",
                g.invite
            )));
        }
        for n in &g.invited {
            if !members.contains_key(n) {
                return Err(bad(format!(
                    "governance.invited names `{n}`, which is not a member"
                )));
            }
        }
        let allowlist = Allowlist::new(f.allowlist.clone());

        let mut rev_s: Vec<String> = revoked.iter().map(public_to_string).collect();
        rev_s.sort();
        rev_s.dedup();
        let canonical = Canonical {
            name: f.name.clone(),
            members: members
                .values()
                .map(|m| {
                    (
                        m.name.clone(),
                        public_to_string(&m.key),
                        m.max_signals_per_minute,
                    )
                })
                .collect(),
            policies: policies
                .iter()
                .map(|(s, p)| {
                    (
                        s.clone(),
                        p.kind.as_str().to_string(),
                        p.duration.as_secs(),
                        p.max_duration.as_secs(),
                        p.quorum,
                    )
                })
                .collect(),
            allowlist: allowlist.nets().iter().map(|n| n.to_string()).collect(),
            revoked: rev_s,
            min_prefix_v4: f.limits.min_prefix_v4,
            min_prefix_v6: f.limits.min_prefix_v6,
            max_age_s: max_age.as_secs(),
            transport: f.transport.kind.clone(),
            governance: (!g.is_default()).then(|| {
                let mut inv = g.invited.clone();
                inv.sort();
                inv.dedup();
                (g.rotate_own_key, g.invite, g.max_invited(), inv)
            }),
            rotations: members
                .values()
                .filter_map(|m| {
                    m.previous
                        .map(|(k, until)| (m.name.clone(), public_to_string(&k), until))
                })
                .collect(),
        };
        let digest = canonical.digest();
        Ok(Treaty {
            name: f.name,
            members,
            policies,
            allowlist,
            revoked,
            min_prefix_v4: f.limits.min_prefix_v4,
            min_prefix_v6: f.limits.min_prefix_v6,
            max_age,
            sync_interval,
            transport: f.transport.kind.clone(),
            transport_file: f.transport,
            governance: f.governance,
            canonical,
            digest,
        })
    }

    /// sha256 of the canonical form; carried in every signal.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }

    pub fn digest_hex(&self) -> String {
        hex(&self.digest)
    }

    pub fn canonical(&self) -> &Canonical {
        &self.canonical
    }

    /// Whether decisions of `scenario` bind every member.
    pub fn binds(&self, scenario: &str) -> bool {
        self.policies.contains_key(scenario)
    }

    /// The decision type and duration the union applies for `scenario`.
    pub fn policy_for(&self, scenario: &str) -> Option<(DecisionType, Duration)> {
        self.policies.get(scenario).map(|p| (p.kind, p.duration))
    }

    pub fn policy(&self, scenario: &str) -> Option<&Policy> {
        self.policies.get(scenario)
    }

    /// The longest `max_duration` of any binding policy (zero without policies).
    pub fn longest_duration(&self) -> Duration {
        self.policies
            .values()
            .map(|p| p.max_duration)
            .max()
            .unwrap_or_default()
    }

    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.get(name)
    }

    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    pub fn member_by_key(&self, key: &VerifyingKey) -> Option<&Member> {
        self.members.values().find(|m| &m.key == key)
    }

    pub fn allowlist(&self) -> &Allowlist {
        &self.allowlist
    }

    pub fn is_revoked(&self, key: &VerifyingKey) -> bool {
        self.revoked.contains(key)
    }

    /// The narrowest prefix a signal may carry for the target's family.
    pub fn min_prefix_for(&self, net: &Net) -> u8 {
        match net.get() {
            ipnet::IpNet::V4(_) => self.min_prefix_v4,
            ipnet::IpNet::V6(_) => self.min_prefix_v6,
        }
    }
}

impl Canonical {
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"shield-treaty-v1\0");
        // The carrier is not policy: signals signed under `direct` must stay
        // valid after the union moves to NATS (and back), so the digest is
        // always computed as for `direct`. `diff` still reports the kind.
        let mut c = std::borrow::Cow::Borrowed(self);
        if self.transport != "direct" {
            c.to_mut().transport = "direct".into();
        }
        // postcard of plain strings/ints/tuples is deterministic.
        h.update(postcard::to_stdvec(&*c).unwrap_or_default());
        h.finalize().into()
    }

    /// What differs between `mine` and `theirs`, as sentences addressed to the
    /// peer ("your treaty has member X that mine does not"). Empty if equal.
    pub fn diff(mine: &Canonical, theirs: &Canonical) -> Vec<String> {
        let mut out = Vec::new();
        if mine.name != theirs.name {
            out.push(format!(
                "union name differs: yours is `{}`, mine is `{}`",
                theirs.name, mine.name
            ));
        }
        let mm: BTreeMap<_, _> = mine.members.iter().map(|(n, k, r)| (n, (k, r))).collect();
        let tm: BTreeMap<_, _> = theirs.members.iter().map(|(n, k, r)| (n, (k, r))).collect();
        for (n, (k, r)) in &tm {
            match mm.get(n) {
                None => out.push(format!("your treaty has member `{n}` that mine does not")),
                Some((mk, mr)) => {
                    if mk != k {
                        out.push(format!(
                            "member `{n}` has a different key: yours {k}, mine {mk}"
                        ));
                    }
                    if mr != r {
                        out.push(format!(
                            "signal rate cap for member `{n}` differs: {r}/min vs {mr}/min"
                        ));
                    }
                }
            }
        }
        for n in mm.keys() {
            if !tm.contains_key(n) {
                out.push(format!("my treaty has member `{n}` that yours does not"));
            }
        }
        let mp: BTreeMap<_, _> = mine.policies.iter().map(|p| (&p.0, p)).collect();
        let tp: BTreeMap<_, _> = theirs.policies.iter().map(|p| (&p.0, p)).collect();
        let show = |p: &(String, String, u64, u64, u32)| {
            let mut s = format!(
                "{} {}",
                p.1,
                humantime::format_duration(Duration::from_secs(p.2))
            );
            if p.3 != p.2 {
                s.push_str(&format!(
                    " (max {})",
                    humantime::format_duration(Duration::from_secs(p.3))
                ));
            }
            if p.4 > 1 {
                s.push_str(&format!(" quorum {}", p.4));
            }
            s
        };
        for (s, p) in &tp {
            match mp.get(s) {
                None => out.push(format!(
                    "your treaty binds scenario `{s}` that mine does not"
                )),
                Some(m) if m != p => out.push(format!(
                    "policy for scenario `{s}` differs: yours {} vs mine {}",
                    show(p),
                    show(m)
                )),
                _ => {}
            }
        }
        for s in mp.keys() {
            if !tp.contains_key(s) {
                out.push(format!(
                    "my treaty binds scenario `{s}` that yours does not"
                ));
            }
        }
        if mine.allowlist != theirs.allowlist {
            out.push(format!(
                "allowlist differs: yours [{}], mine [{}]",
                theirs.allowlist.join(", "),
                mine.allowlist.join(", ")
            ));
        }
        if mine.revoked != theirs.revoked {
            out.push(format!(
                "revoked keys differ: yours has {}, mine has {}",
                theirs.revoked.len(),
                mine.revoked.len()
            ));
        }
        if (mine.min_prefix_v4, mine.min_prefix_v6) != (theirs.min_prefix_v4, theirs.min_prefix_v6)
        {
            out.push(format!(
                "range caps differ: yours /{} v4 /{} v6, mine /{} v4 /{} v6",
                theirs.min_prefix_v4, theirs.min_prefix_v6, mine.min_prefix_v4, mine.min_prefix_v6
            ));
        }
        if mine.max_age_s != theirs.max_age_s {
            out.push(format!(
                "max_age differs: yours {}s, mine {}s",
                theirs.max_age_s, mine.max_age_s
            ));
        }
        if mine.transport != theirs.transport {
            out.push(format!(
                "transport differs: yours {}, mine {}",
                theirs.transport, mine.transport
            ));
        }
        if mine.rotations != theirs.rotations {
            out.push(format!(
                "key rotation windows differ: yours {:?}, mine {:?}",
                theirs.rotations, mine.rotations
            ));
        }
        if mine.governance != theirs.governance {
            out.push(format!(
                "governance differs: yours {:?}, mine {:?}",
                theirs.governance, mine.governance
            ));
        }
        if out.is_empty() && mine != theirs {
            out.push("treaties differ in their canonical encoding".into());
        }
        out
    }
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::identity::Identity;

    pub(crate) fn sample(keys: &[(&str, &Identity, u16)], extra: &str) -> String {
        let mut s = String::from("name = \"test-union\"\nallowlist = [\"192.0.2.0/24\"]\n");
        s.push_str(extra);
        for (n, id, port) in keys {
            s.push_str(&format!(
                "\n[[member]]\nname = \"{n}\"\nkey = \"{}\"\nendpoint = \"127.0.0.1:{port}\"\n",
                id.public_string()
            ));
        }
        s.push_str(
            "\n[[policy]]\nscenario = \"sshd-bruteforce\"\ntype = \"ban\"\nduration = \"4h\"\n",
        );
        s
    }

    #[test]
    fn digest_ignores_whitespace_and_order_but_not_policy() {
        let a = Identity::from_seed([1; 32]);
        let b = Identity::from_seed([2; 32]);
        let t1 = sample(&[("a", &a, 1), ("b", &b, 2)], "");
        let t2 = sample(&[("b", &b, 2), ("a", &a, 1)], "\n# a comment\n\n");
        let p = Path::new("t.toml");
        let x = Treaty::parse(&t1, p).unwrap();
        let y = Treaty::parse(&t2, p).unwrap();
        assert_eq!(x.digest(), y.digest());
        assert!(x.binds("sshd-bruteforce") && !x.binds("nginx-probe"));
        assert_eq!(
            x.policy_for("sshd-bruteforce"),
            Some((DecisionType::Ban, Duration::from_secs(14400)))
        );
        let z = Treaty::parse(&t1.replace("\"4h\"", "\"1h\""), p).unwrap();
        assert_ne!(x.digest(), z.digest());
        let d = Canonical::diff(x.canonical(), z.canonical());
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(
            d[0].contains(
                "policy for scenario `sshd-bruteforce` differs: yours ban 1h vs mine ban 4h"
            ),
            "{}",
            d[0]
        );
    }

    #[test]
    fn diff_names_extra_member() {
        let a = Identity::from_seed([1; 32]);
        let b = Identity::from_seed([2; 32]);
        let c = Identity::from_seed([3; 32]);
        let p = Path::new("t.toml");
        let mine = Treaty::parse(&sample(&[("a", &a, 1), ("b", &b, 2)], ""), p).unwrap();
        let theirs =
            Treaty::parse(&sample(&[("a", &a, 1), ("b", &b, 2), ("x", &c, 3)], ""), p).unwrap();
        let d = Canonical::diff(mine.canonical(), theirs.canonical());
        assert_eq!(
            d,
            vec!["your treaty has member `x` that mine does not".to_string()]
        );
    }

    #[test]
    fn invalid_treaties_say_what_to_fix() {
        let a = Identity::from_seed([1; 32]);
        let p = Path::new("t.toml");
        let base = sample(&[("a", &a, 1)], "");
        let e = Treaty::parse(&base.replace("\"4h\"", "\"forever\""), p).unwrap_err();
        assert!(e.to_string().contains("not a duration"), "{e}");
        let e = Treaty::parse(&base.replace("type = \"ban\"", "type = \"nuke\""), p).unwrap_err();
        assert!(e.to_string().contains("decision type `nuke`"), "{e}");
        let e = Treaty::parse(&format!("{base}\nbogus = 1\n"), p).unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        let dup = sample(&[("a", &a, 1), ("a", &Identity::from_seed([9; 32]), 2)], "");
        assert!(
            Treaty::parse(&dup, p)
                .unwrap_err()
                .to_string()
                .contains("listed twice")
        );
        let e = Treaty::parse(&base.replace("name = \"a\"", "name = \"a b\""), p).unwrap_err();
        assert!(e.to_string().contains("without spaces"), "{e}");
    }
}
