//! CrowdSec's IP and URL helpers: `IpInRange`, `IpToRange`, `IsIP`, `IsIPV4`, `IsIPV6`,
//! `PathUnescape`, `QueryUnescape`, `PathEscape`, `QueryEscape`, `ParseUri`, `ParseQuery`,
//! `ExtractQueryParam`, with Go's `net` and `net/url` semantics. Owns nothing else.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::arg_str;
use crate::value::{Str, Value};
use crate::{Arity, Compiler};

pub(super) fn register(c: &mut Compiler) {
    c.register_fn("IpInRange", Arity::exact(2), |a| {
        let ip = arg_str("IpInRange", a, 0)?;
        let range = arg_str("IpInRange", a, 1)?;
        Ok(Value::Bool(ip_in_range(ip, range)))
    });
    c.register_fn("IpToRange", Arity::exact(2), |a| {
        let ip = arg_str("IpToRange", a, 0)?;
        let cidr = arg_str("IpToRange", a, 1)?;
        Ok(Value::string(ip_to_range(ip, cidr).unwrap_or_default()))
    });
    c.register_fn("IsIP", Arity::exact(1), |a| {
        Ok(Value::Bool(go_parse_ip(arg_str("IsIP", a, 0)?).is_some()))
    });
    c.register_fn("IsIPV4", Arity::exact(1), |a| {
        Ok(Value::Bool(
            go_parse_ip(arg_str("IsIPV4", a, 0)?).is_some_and(|ip| to4(ip).is_some()),
        ))
    });
    c.register_fn("IsIPV6", Arity::exact(1), |a| {
        Ok(Value::Bool(
            go_parse_ip(arg_str("IsIPV6", a, 0)?).is_some_and(|ip| to4(ip).is_none()),
        ))
    });
    c.register_fn("PathUnescape", Arity::exact(1), |a| {
        let s = arg_str("PathUnescape", a, 0)?;
        // CrowdSec returns the input unchanged when it is not valid escaping.
        Ok(match unescape(s, false) {
            Some(u) if u != **s => Value::string(u),
            _ => Value::Str(s.clone()),
        })
    });
    c.register_fn("QueryUnescape", Arity::exact(1), |a| {
        let s = arg_str("QueryUnescape", a, 0)?;
        Ok(match unescape(s, true) {
            Some(u) if u != **s => Value::string(u),
            _ => Value::Str(s.clone()),
        })
    });
    c.register_fn("PathEscape", Arity::exact(1), |a| {
        Ok(Value::string(escape(arg_str("PathEscape", a, 0)?, false)))
    });
    c.register_fn("QueryEscape", Arity::exact(1), |a| {
        Ok(Value::string(escape(arg_str("QueryEscape", a, 0)?, true)))
    });
    c.register_fn("ParseUri", Arity::exact(1), |a| {
        let uri = arg_str("ParseUri", a, 0)?;
        let raw_query = uri
            .split_once('?')
            .map(|(_, q)| q.split('#').next().unwrap_or(""))
            .unwrap_or("");
        Ok(query_map(raw_query))
    });
    c.register_fn("ParseQuery", Arity::exact(1), |a| {
        Ok(query_map(arg_str("ParseQuery", a, 0)?))
    });
    c.register_fn("ExtractQueryParam", Arity::exact(2), |a| {
        let uri = arg_str("ExtractQueryParam", a, 0)?;
        let param = arg_str("ExtractQueryParam", a, 1)?;
        let raw_query = uri
            .split_once('?')
            .map(|(_, q)| q.split('#').next().unwrap_or(""))
            .unwrap_or("");
        let mut out = Vec::new();
        for (k, v) in parse_query(raw_query) {
            if k == **param {
                out.push(Value::string(v));
            }
        }
        Ok(Value::list(out))
    });
}

/// Go's `net.ParseIP`: dotted IPv4 (no leading zeros) or IPv6 (no zone).
pub(crate) fn go_parse_ip(s: &str) -> Option<IpAddr> {
    if s.contains('%') {
        return None;
    }
    s.parse::<IpAddr>().ok()
}

/// Go's `IP.To4()`: IPv4, or an IPv4-mapped IPv6 address, as IPv4.
fn to4(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) => v6.to_ipv4_mapped(),
    }
}

/// Go's `net.ParseCIDR` + `IPNet.Contains`.
fn ip_in_range(ip: &str, range: &str) -> bool {
    let Some(ip) = go_parse_ip(ip) else {
        return false;
    };
    let Some((net, len)) = range.split_once('/') else {
        return false;
    };
    let Some(net) = go_parse_ip(net) else {
        return false;
    };
    let Ok(len) = len.parse::<u32>() else {
        return false;
    };
    if len.to_string() != range.split_once('/').map(|x| x.1).unwrap_or("") {
        return false;
    }
    match net {
        IpAddr::V4(n) => {
            if len > 32 {
                return false;
            }
            let Some(i) = to4(ip) else { return false };
            mask32(u32::from(i), len) == mask32(u32::from(n), len)
        }
        IpAddr::V6(n) => {
            if len > 128 {
                return false;
            }
            // Go keeps a v4-mapped network in 16 bytes; a plain IPv4 address becomes mapped.
            let i = match ip {
                IpAddr::V6(v6) => v6,
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            };
            mask128(u128::from(i), len) == mask128(u128::from(n), len)
        }
    }
}

fn mask32(v: u32, len: u32) -> u32 {
    if len == 0 {
        0
    } else {
        v & (u32::MAX << (32 - len))
    }
}

fn mask128(v: u128, len: u32) -> u128 {
    if len == 0 {
        0
    } else {
        v & (u128::MAX << (128 - len))
    }
}

/// Go's `netip.ParseAddr(ip).Prefix(mask).String()`.
fn ip_to_range(ip: &str, cidr: &str) -> Option<String> {
    let mask: u32 = cidr.strip_prefix('/').unwrap_or(cidr).parse().ok()?;
    if ip.contains('%') {
        return None;
    }
    match ip.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => {
            if mask > 32 {
                return None;
            }
            Some(format!(
                "{}/{mask}",
                Ipv4Addr::from(mask32(u32::from(v4), mask))
            ))
        }
        IpAddr::V6(v6) => {
            if mask > 128 {
                return None;
            }
            let masked = Ipv6Addr::from(mask128(u128::from(v6), mask));
            Some(format!("{masked}/{mask}"))
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Go's `url.PathUnescape` / `url.QueryUnescape` (`+` is a space in queries); `None` on a bad
/// `%` escape.
pub(crate) fn unescape(s: &str, query: bool) -> Option<String> {
    let b = s.as_bytes();
    if !(b.contains(&b'%') || query && b.contains(&b'+')) {
        return Some(s.to_string());
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let h = hex(*b.get(i + 1)?)?;
                let l = hex(*b.get(i + 2)?)?;
                out.push(h << 4 | l);
                i += 3;
            }
            b'+' if query => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Go's `url.PathEscape` / `url.QueryEscape`.
fn escape(s: &str, query: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        let keep = c.is_ascii_alphanumeric()
            || matches!(c, b'-' | b'_' | b'.' | b'~')
            || (!query && matches!(c, b'$' | b'&' | b'+' | b':' | b'=' | b'@'));
        if keep {
            out.push(c as char);
        } else if query && c == b' ' {
            out.push('+');
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

/// Go's `url.ParseQuery` pairs (bad pairs are skipped).
fn parse_query(q: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for part in q.split('&') {
        if part.is_empty() || part.contains(';') {
            continue;
        }
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        if let (Some(k), Some(v)) = (unescape(k, true), unescape(v, true)) {
            out.push((k, v));
        }
    }
    out
}

/// `map[string][]string` of a query string.
fn query_map(q: &str) -> Value<'static> {
    let mut groups: Vec<(String, Vec<Value<'static>>)> = Vec::new();
    for (k, v) in parse_query(q) {
        match groups.iter_mut().find(|(g, _)| *g == k) {
            Some(g) => g.1.push(Value::string(v)),
            None => groups.push((k, vec![Value::string(v)])),
        }
    }
    Value::map(
        groups
            .into_iter()
            .map(|(k, v)| (Str::from(k), Value::list(v)))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_helpers_follow_go_net() {
        assert!(ip_in_range("1.2.3.4", "1.2.3.0/24"));
        assert!(!ip_in_range("1.2.4.4", "1.2.3.0/24"));
        assert!(ip_in_range("::ffff:1.2.3.4", "1.2.3.0/24"));
        assert!(ip_in_range("2001:db8::1", "2001:db8::/32"));
        assert!(!ip_in_range("1.2.3.4", "2001:db8::/32"));
        assert!(!ip_in_range("nope", "1.2.3.0/24"));
        assert!(!ip_in_range("1.2.3.4", "1.2.3.0"));
        assert!(ip_in_range("1.2.3.4", "0.0.0.0/0"));
        assert_eq!(ip_to_range("1.2.3.4", "/24").as_deref(), Some("1.2.3.0/24"));
        assert_eq!(
            ip_to_range("2001:db8:1:2:3::1", "/64").as_deref(),
            Some("2001:db8:1:2::/64")
        );
        assert_eq!(ip_to_range("1.2.3.4", "/33"), None);
        assert_eq!(go_parse_ip("01.2.3.4"), None);
        assert!(go_parse_ip("fe80::1").is_some());
    }

    #[test]
    fn url_escaping_follows_go() {
        assert_eq!(unescape("/a%20b+c", false).as_deref(), Some("/a b+c"));
        assert_eq!(unescape("a%20b+c", true).as_deref(), Some("a b c"));
        assert_eq!(unescape("bad%zz", false), None);
        assert_eq!(escape("a b/c?d", false), "a%20b%2Fc%3Fd");
        assert_eq!(escape("a b/c=d", true), "a+b%2Fc%3Dd");
        assert_eq!(
            parse_query("a=1&b=x+y&a=2"),
            [
                ("a".into(), "1".into()),
                ("b".into(), "x y".into()),
                ("a".into(), "2".into())
            ]
        );
    }
}
