//! Alerts (a scenario overflowed) and decisions (what is done about it).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use crate::UnixTime;
use crate::net::Net;

/// A value in a config, a CLI argument or an API body that is not one of the accepted words.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{what} `{got}` is not valid; expected {expected}")]
pub struct ParseError {
    pub what: &'static str,
    pub got: String,
    pub expected: &'static str,
}

/// What a decision covers: one address or a whole network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Ip,
    Range,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ip => "ip",
            Scope::Range => "range",
        }
    }

    /// The scope a network implies: a single host is `ip`, anything wider `range`.
    pub fn of(net: &Net) -> Scope {
        if net.is_host() {
            Scope::Ip
        } else {
            Scope::Range
        }
    }
}

impl FromStr for Scope {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "ip" => Ok(Scope::Ip),
            "range" => Ok(Scope::Range),
            _ => Err(ParseError {
                what: "scope",
                got: s.into(),
                expected: "`ip` or `range`",
            }),
        }
    }
}

/// The remedy a decision applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum DecisionType {
    /// Drop everything from the target (firewall) / answer 403 (gate).
    Ban,
    /// Slow the target down: the gate answers 429.
    Throttle,
    /// Ask the target to prove it is a person: the gate answers a challenge.
    Captcha,
}

impl DecisionType {
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionType::Ban => "ban",
            DecisionType::Throttle => "throttle",
            DecisionType::Captcha => "captcha",
        }
    }
}

impl fmt::Display for DecisionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DecisionType {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "ban" => Ok(DecisionType::Ban),
            "throttle" => Ok(DecisionType::Throttle),
            "captcha" => Ok(DecisionType::Captcha),
            _ => Err(ParseError {
                what: "decision type",
                got: s.into(),
                expected: "`ban`, `throttle` or `captcha`",
            }),
        }
    }
}

/// Who raised a decision. Written as `local`, `manual`, `union:<member>`, `lists:<name>`
/// (`list:<name>`, the older spelling, is read as the same origin).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// A scenario on this host.
    Local,
    /// An operator, through the CLI or the API.
    Manual,
    /// A signal from a union member.
    Union(String),
    /// An imported blocklist.
    List(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Local => f.write_str("local"),
            Origin::Manual => f.write_str("manual"),
            Origin::Union(m) => write!(f, "union:{m}"),
            Origin::List(l) => write!(f, "lists:{l}"),
        }
    }
}

impl FromStr for Origin {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseError {
            what: "origin",
            got: s.into(),
            expected: "`local`, `manual`, `union:<member>` or `lists:<name>`",
        };
        match s {
            "local" => Ok(Origin::Local),
            "manual" => Ok(Origin::Manual),
            _ => match s.split_once(':') {
                Some(("union", m)) if !m.is_empty() => Ok(Origin::Union(m.into())),
                Some(("lists" | "list", l)) if !l.is_empty() => Ok(Origin::List(l.into())),
                _ => Err(bad()),
            },
        }
    }
}

impl Serialize for Origin {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Origin {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A scenario overflowed for a key: the evidence and what the scenario asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// Scenario name, e.g. `sshd-bruteforce`.
    pub scenario: String,
    /// The key the scenario counted by (an address, or an IPv6 /64).
    pub target: Net,
    /// Log time of the event that overflowed the bucket.
    pub time: UnixTime,
    /// Log time of the first event in the bucket.
    pub first_seen: UnixTime,
    /// How many events were in the bucket.
    pub events: u32,
    /// A few of the triggering lines, each truncated.
    pub evidence: Vec<String>,
    /// What the scenario asks for.
    pub kind: DecisionType,
    /// Base duration in seconds, before escalation; 0: an alert only, nothing is
    /// decided (a scenario with `duration = "0s"`, CrowdSec's `remediation: false`).
    pub duration_s: u64,
}

/// A decision in force (or that was): the target, the remedy, its lifetime and origin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Store row id; 0 before the decision is stored.
    pub id: i64,
    pub scope: Scope,
    pub target: Net,
    #[serde(rename = "type")]
    pub kind: DecisionType,
    /// Scenario that raised it (or a reason for manual decisions).
    pub scenario: String,
    pub origin: Origin,
    pub created: UnixTime,
    pub expires: UnixTime,
}

impl Decision {
    pub fn duration_s(&self) -> u64 {
        (self.expires - self.created).max(0) as u64
    }

    pub fn remaining_s(&self, now: UnixTime) -> u64 {
        (self.expires - now).max(0) as u64
    }

    pub fn is_active(&self, now: UnixTime) -> bool {
        self.expires > now
    }

    /// The target as written in APIs: a bare address for `ip` scope, CIDR for `range`.
    pub fn value(&self) -> String {
        match self.scope {
            Scope::Ip => self.target.addr().to_string(),
            Scope::Range => self.target.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_round_trip() {
        for s in ["local", "manual", "union:berlin", "lists:spamhaus"] {
            let o: Origin = s.parse().unwrap();
            assert_eq!(o.to_string(), s);
            let j = serde_json::to_string(&o).unwrap();
            assert_eq!(serde_json::from_str::<Origin>(&j).unwrap(), o);
        }
        assert_eq!(
            "list:spamhaus".parse::<Origin>().unwrap(),
            Origin::List("spamhaus".into())
        );
        assert!("union:".parse::<Origin>().is_err());
        assert!("remote".parse::<Origin>().is_err());
    }

    #[test]
    fn value_by_scope() {
        let d = Decision {
            id: 0,
            scope: Scope::Ip,
            target: "203.0.113.7/32".parse().unwrap(),
            kind: DecisionType::Ban,
            scenario: "x".into(),
            origin: Origin::Local,
            created: 100,
            expires: 160,
        };
        assert_eq!(d.value(), "203.0.113.7");
        assert_eq!(d.duration_s(), 60);
        assert_eq!(Scope::of(&"10.0.0.0/8".parse().unwrap()), Scope::Range);
    }
}
