//! Canonical addresses: [`Addr`] (one host) and [`Net`] (a network), the only
//! address types a check (allowlist, own addresses, SSH sessions, prefix caps,
//! the store, the firewall) ever sees, plus the key a scenario counts by.
//!
//! Their only constructors canonicalise, so one address has one value however
//! it was written or received:
//!
//! - IPv4-mapped IPv6 (`::ffff:a.b.c.d`) and IPv4-compatible IPv6
//!   (`::a.b.c.d`, except `::` and `::1`) are the IPv4 address they carry;
//! - an IPv6 network of prefix 96 or more inside `::ffff:0:0/96` (or inside
//!   `::/96` without `::` and `::1`) is the IPv4 network of prefix − 96, so
//!   `::ffff:0.0.0.0/96` is `0.0.0.0/0` and meets the caps any `/0` meets;
//! - host bits of a network are cleared.
//!
//! Text is read strictly ([`Net::from_str`], [`Addr::from_str`]): zone ids,
//! brackets, leading zeros in a dotted quad or a prefix, blanks, and an
//! IPv4-in-IPv6 address with a prefix under /96 are refused with a message
//! saying what to write instead. This module does not decide what is allowed;
//! it only makes sure every check compares like with like.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Deref;
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

/// Why a text is not an address or network. Every message says what to write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    /// Nothing, or only blanks, around the address.
    #[error("`{0}` is not an address: remove the blanks around it")]
    Blank(String),
    /// Longer than any written address or network can be.
    #[error("`{0}…` is too long to be an address or network")]
    TooLong(String),
    /// A zone id (`fe80::1%eth0`): zones name a local link, not a host to decide on.
    #[error("`{0}` carries a zone id (`%…`); write the address without it")]
    Zone(String),
    /// `[::1]`: brackets belong to URLs.
    #[error("`{0}` is in brackets; write the address alone, e.g. 2001:db8::1")]
    Brackets(String),
    /// A dotted quad with a leading zero (`010.0.0.1`), which some tools read as octal.
    #[error(
        "`{0}` has a leading zero in a dotted quad, which some tools read as octal; write each number without leading zeros"
    )]
    LeadingZero(String),
    /// Not an IPv4 or IPv6 address at all.
    #[error(
        "`{0}` is neither an IP address nor a CIDR network (e.g. 203.0.113.7, 198.51.100.0/24, 2001:db8::/48)"
    )]
    NotAnAddress(String),
    /// A prefix that is not a decimal number within the family's range.
    #[error("`{text}` has prefix `/{prefix}`; give a number from 0 to {max} without leading zeros")]
    BadPrefix {
        text: String,
        prefix: String,
        max: u8,
    },
    /// `::ffff:10.0.0.0/8`: an IPv4 address written as IPv6 with a prefix
    /// under /96 names an IPv6 network that is almost surely not what was meant.
    #[error(
        "`{text}` writes the IPv4 address {v4} as IPv6 with a prefix under /96; write {v4} with an IPv4 prefix (e.g. {v4}/{hint}), or the IPv6 network in hex"
    )]
    MappedShortPrefix {
        text: String,
        v4: Ipv4Addr,
        hint: u8,
    },
    /// A prefix where a single address is expected.
    #[error("`{0}` is a network; give a single address here")]
    NotAHost(String),
    /// A binary (signed) value that is not in canonical form.
    #[error("`{0}` is not in canonical form (expected {1}); the sender must canonicalise it")]
    NotCanonical(String, String),
}

/// The longest text accepted: a full IPv6 address with an embedded IPv4 and a prefix is 49.
const MAX_TEXT: usize = 64;

/// IPv4 carried in `a` if it is IPv4-mapped, or IPv4-compatible other than `::` and `::1`.
fn embedded_v4(a: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = a.to_ipv4_mapped() {
        return Some(v4);
    }
    let v = u128::from(a);
    (v >> 32 == 0 && v > 1).then(|| Ipv4Addr::from(v as u32))
}

/// One host address in canonical form (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Addr(IpAddr);

impl Addr {
    /// The canonical form of `ip`.
    pub fn new(ip: IpAddr) -> Addr {
        match ip {
            IpAddr::V6(a) => match embedded_v4(a) {
                Some(v4) => Addr(IpAddr::V4(v4)),
                None => Addr(ip),
            },
            IpAddr::V4(_) => Addr(ip),
        }
    }

    /// The address as a std value (always canonical).
    pub fn ip(self) -> IpAddr {
        self.0
    }
}

impl From<IpAddr> for Addr {
    fn from(ip: IpAddr) -> Addr {
        Addr::new(ip)
    }
}

impl From<Ipv4Addr> for Addr {
    fn from(ip: Ipv4Addr) -> Addr {
        Addr(IpAddr::V4(ip))
    }
}

impl From<Ipv6Addr> for Addr {
    fn from(ip: Ipv6Addr) -> Addr {
        Addr::new(IpAddr::V6(ip))
    }
}

impl From<Addr> for IpAddr {
    fn from(a: Addr) -> IpAddr {
        a.0
    }
}

impl Deref for Addr {
    type Target = IpAddr;
    fn deref(&self) -> &IpAddr {
        &self.0
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Reads the address part of `s` (no prefix), with the refusals of the module docs.
fn parse_ip(text: &str, s: &str) -> Result<IpAddr, AddrError> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(ip);
    }
    let e = text.to_string();
    Err(if s.contains('%') {
        AddrError::Zone(e)
    } else if s.starts_with('[') || s.ends_with(']') {
        AddrError::Brackets(e)
    } else if s
        .rsplit(':')
        .next()
        .is_some_and(|q| q.contains('.') && q.split('.').any(|o| o.len() > 1 && o.starts_with('0')))
    {
        AddrError::LeadingZero(e)
    } else {
        AddrError::NotAnAddress(e)
    })
}

fn check_text(s: &str) -> Result<(), AddrError> {
    if s.len() > MAX_TEXT {
        let mut end = MAX_TEXT.min(s.len());
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        return Err(AddrError::TooLong(s[..end].into()));
    }
    if s.is_empty() || s.trim() != s {
        return Err(AddrError::Blank(s.into()));
    }
    Ok(())
}

impl FromStr for Addr {
    type Err = AddrError;
    /// A single address: `203.0.113.7`, `2001:DB8::1`, `::ffff:203.0.113.7`...
    fn from_str(s: &str) -> Result<Addr, AddrError> {
        check_text(s)?;
        if s.contains('/') {
            return Err(AddrError::NotAHost(s.into()));
        }
        parse_ip(s, s).map(Addr::new)
    }
}

impl Serialize for Addr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Addr {
    /// Text (JSON, TOML) is read like [`Addr::from_str`]; a binary value
    /// (a signed payload) must already be canonical, so that what was signed
    /// is what is acted on.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Addr, D::Error> {
        if d.is_human_readable() {
            let s = std::borrow::Cow::<str>::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            let ip = IpAddr::deserialize(d)?;
            let a = Addr::new(ip);
            if a.0 != ip {
                return Err(serde::de::Error::custom(AddrError::NotCanonical(
                    ip.to_string(),
                    a.to_string(),
                )));
            }
            Ok(a)
        }
    }
}

/// A network in canonical form (see the module docs): a decision target, an
/// allowlist entry, a scenario key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Net(IpNet);

impl Net {
    /// The canonical form of `net`.
    pub fn new(net: IpNet) -> Net {
        match net {
            IpNet::V4(n) => Net(IpNet::V4(n.trunc())),
            IpNet::V6(n) => {
                let n = n.trunc();
                let p = n.prefix_len();
                if p >= 96
                    && let Some(v4) = embedded_v4(n.network())
                {
                    let v4 = Ipv4Net::new(v4, p - 96).expect("prefix 96..=128 leaves 0..=32");
                    return Net(IpNet::V4(v4.trunc()));
                }
                Net(IpNet::V6(n))
            }
        }
    }

    /// The network that is exactly `ip` (a /32 or a /128).
    pub fn host(ip: impl Into<Addr>) -> Net {
        match ip.into().0 {
            IpAddr::V4(a) => Net(IpNet::V4(
                Ipv4Net::new(a, 32).expect("32 is a valid v4 prefix"),
            )),
            IpAddr::V6(a) => Net(IpNet::V6(
                Ipv6Net::new(a, 128).expect("128 is a valid v6 prefix"),
            )),
        }
    }

    /// The network as an `ipnet` value (always canonical).
    pub fn get(self) -> IpNet {
        self.0
    }

    /// The network's first address.
    pub fn first(self) -> Addr {
        Addr(self.0.network())
    }

    /// True for a single host (/32 or /128).
    pub fn is_host(&self) -> bool {
        self.0.prefix_len() == self.0.max_prefix_len()
    }

    /// True if `ip` lies in this network.
    pub fn has(&self, ip: Addr) -> bool {
        self.0.contains(&ip.0)
    }

    /// True if `other` lies wholly inside this network.
    pub fn covers(&self, other: &Net) -> bool {
        self.0.contains(&other.0)
    }

    /// True if the two networks share an address (one contains the other).
    pub fn overlaps(&self, other: &Net) -> bool {
        self.covers(other) || other.covers(self)
    }
}

impl From<IpNet> for Net {
    fn from(n: IpNet) -> Net {
        Net::new(n)
    }
}

impl From<Addr> for Net {
    fn from(a: Addr) -> Net {
        Net::host(a)
    }
}

impl From<Net> for IpNet {
    fn from(n: Net) -> IpNet {
        n.0
    }
}

impl Deref for Net {
    type Target = IpNet;
    fn deref(&self) -> &IpNet {
        &self.0
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Net {
    type Err = AddrError;
    /// An address (a host network) or a network in CIDR notation, in any of
    /// its textual forms; refused with a message saying what to write otherwise.
    fn from_str(s: &str) -> Result<Net, AddrError> {
        check_text(s)?;
        let Some((a, p)) = s.split_once('/') else {
            return parse_ip(s, s).map(Net::host);
        };
        let ip = parse_ip(s, a)?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let bad = || AddrError::BadPrefix {
            text: s.into(),
            prefix: p.into(),
            max,
        };
        if p.is_empty()
            || p.len() > 3
            || !p.bytes().all(|b| b.is_ascii_digit())
            || (p.len() > 1 && p.starts_with('0'))
        {
            return Err(bad());
        }
        let plen: u8 = p.parse().map_err(|_| bad())?;
        let net = IpNet::new(ip, plen).map_err(|_| bad())?;
        // Dotted IPv4 inside IPv6 text with a short prefix: the writer meant
        // an IPv4 network; refuse rather than ban an unrelated IPv6 range.
        if let IpAddr::V6(v6) = ip
            && plen < 96
            && let Some(v4) = embedded_v4(v6)
            && a.contains('.')
        {
            return Err(AddrError::MappedShortPrefix {
                text: s.into(),
                v4,
                hint: plen.min(32),
            });
        }
        Ok(Net::new(net))
    }
}

impl Serialize for Net {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Net {
    /// Text (JSON, TOML) is read like [`Net::from_str`]; a binary value
    /// (a signed payload) must already be canonical, so that what was signed
    /// is what is acted on.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Net, D::Error> {
        if d.is_human_readable() {
            let s = std::borrow::Cow::<str>::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            let n = IpNet::deserialize(d)?;
            let c = Net::new(n);
            if c.0 != n {
                return Err(serde::de::Error::custom(AddrError::NotCanonical(
                    n.to_string(),
                    c.to_string(),
                )));
            }
            Ok(c)
        }
    }
}

/// The network that is exactly `ip` (a /32 or a /128), canonical.
pub fn host_net(ip: impl Into<Addr>) -> Net {
    Net::host(ip)
}

/// The key an address is tracked under: the address itself for IPv4, and its
/// `/v6_prefix` network for IPv6 (one host usually holds a whole /64).
pub fn key_for(ip: Addr, v6_prefix: u8) -> Net {
    match ip.0 {
        IpAddr::V4(_) => Net::host(ip),
        IpAddr::V6(a) => {
            let p = v6_prefix.min(128);
            // A /96 or longer of a canonical v6 address that is not
            // `::`/`::1` could fall inside ::/96; `new` keeps that canonical.
            Net::new(IpNet::V6(
                Ipv6Net::new(a, p).expect("prefix clamped to 128"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Net {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn v6_grouped_by_prefix() {
        let a: Addr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        assert_eq!(key_for(a, 64).to_string(), "2001:db8:1:2::/64");
        assert_eq!(key_for(a, 128).to_string(), "2001:db8:1:2:3:4:5:6/128");
        let m: Addr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(key_for(m, 64).to_string(), "192.0.2.1/32");
    }

    #[test]
    fn mapped_and_compatible_are_ipv4() {
        for s in [
            "10.1.2.3",
            "10.1.2.3/32",
            "::ffff:10.1.2.3",
            "::FFFF:10.1.2.3",
            "::ffff:a01:203",
            "::ffff:0a01:0203/128",
            "0:0:0:0:0:ffff:10.1.2.3",
            "0000:0000:0000:0000:0000:FFFF:0A01:0203",
            "::10.1.2.3",
            "::a01:203/128",
        ] {
            assert_eq!(net(s).to_string(), "10.1.2.3/32", "{s}");
        }
        assert_eq!(net("::ffff:0.0.0.0/96").to_string(), "0.0.0.0/0");
        assert_eq!(net("::ffff:10.0.0.0/104").to_string(), "10.0.0.0/8");
        assert_eq!(net("::ffff:10.9.9.9/104").to_string(), "10.0.0.0/8");
        // `::` and `::1` stay IPv6, and so do networks holding them.
        assert_eq!(net("::1").to_string(), "::1/128");
        assert_eq!(net("::").to_string(), "::/128");
        assert_eq!(net("::/96").to_string(), "::/96");
        assert_eq!(net("::ffff:0:0/95").to_string(), "::fffe:0:0/95");
        let a: Addr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(a.ip(), IpAddr::from([127, 0, 0, 1]));
        assert_eq!(
            Addr::from("::1".parse::<IpAddr>().unwrap()).to_string(),
            "::1"
        );
    }

    #[test]
    fn strict_text() {
        for (s, want) in [
            ("fe80::1%eth0", "zone id"),
            ("[::1]", "brackets"),
            ("010.1.2.3", "leading zero"),
            ("::ffff:010.1.2.3", "leading zero"),
            (" 10.1.2.3", "blanks"),
            ("10.1.2.3/", "prefix"),
            ("10.1.2.3/033", "prefix"),
            ("10.1.2.3/33", "prefix"),
            ("10.1.2.3/08", "prefix"),
            ("10.1.2.3/+8", "prefix"),
            ("::1/129", "prefix"),
            ("::ffff:10.0.0.0/8", "prefix under /96"),
            ("::10.0.0.1/64", "prefix under /96"),
            ("example.com", "neither"),
            ("", "blanks"),
        ] {
            let e = s.parse::<Net>().unwrap_err().to_string();
            assert!(e.contains(want), "{s:?}: {e}");
        }
        assert!("10.1.2.3/32".parse::<Addr>().is_err());
        assert!(net("10.1.2.3/8") == net("10.0.0.0/8"));
    }

    #[test]
    fn binary_form_must_be_canonical_text_is_canonicalised() {
        let j: Net = serde_json::from_str("\"::ffff:10.1.2.3/128\"").unwrap();
        assert_eq!(j, net("10.1.2.3"));
        assert_eq!(serde_json::to_string(&j).unwrap(), "\"10.1.2.3/32\"");
        let a: Addr = serde_json::from_str("\"::ffff:10.1.2.3\"").unwrap();
        assert_eq!(a.to_string(), "10.1.2.3");
    }
}
