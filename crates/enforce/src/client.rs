//! Who a request comes from: the TCP peer ([`peer_of`]), the one header a
//! trusted proxy sets ([`ClientHeader`], [`client_ip`]), and the per-address
//! token buckets `throttle` spends ([`Buckets`]). A leaf: the gate and the
//! bouncer API both read it, it reads neither.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use axum::extract::ConnectInfo;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{HeaderMap, HeaderName};
use hashbrown::HashMap;
use shield_core::{Addr, Net};

/// Which request header names the client when the TCP peer is a trusted proxy.
///
/// Exactly one header is believed, never a fallback chain: a client can add any
/// header it likes to what the proxy forwards (nginx's `auth_request` passes the
/// client's own headers along), so the gate must read the one the proxy sets and
/// nothing else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientHeader {
    /// Believe no header: the client is always the TCP peer.
    None,
    /// A header holding one address, which the proxy overwrites (`X-Real-IP` with
    /// nginx's `proxy_set_header X-Real-IP $remote_addr`). Missing: the client is
    /// the proxy itself; present more than once or not an address: refused.
    Single(HeaderName),
    /// `X-Forwarded-For`: the right-most entry that is not a trusted proxy (the
    /// last hop our own proxies saw); entries further left are the client's word.
    ForwardedFor,
}

impl Default for ClientHeader {
    fn default() -> Self {
        ClientHeader::Single(HeaderName::from_static("x-real-ip"))
    }
}

impl std::str::FromStr for ClientHeader {
    type Err = String;

    /// `X-Real-IP` (or any header name), `X-Forwarded-For`, or `none`/empty.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() || s.eq_ignore_ascii_case("none") {
            return Ok(ClientHeader::None);
        }
        if s.eq_ignore_ascii_case("x-forwarded-for") {
            return Ok(ClientHeader::ForwardedFor);
        }
        if s.eq_ignore_ascii_case("forwarded") {
            return Err("the `Forwarded` header is not supported; have the proxy set X-Real-IP (nginx: proxy_set_header X-Real-IP $remote_addr) and use client_header = \"X-Real-IP\"".into());
        }
        HeaderName::from_bytes(s.as_bytes())
            .map(ClientHeader::Single)
            .map_err(|_| format!("`{s}` is not an HTTP header name; use e.g. \"X-Real-IP\""))
    }
}

/// A trusted proxy sent a client-address header that names no single address
/// (repeated, not an address, not text). The request is refused rather than
/// attributed to the proxy, which is never banned.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Ambiguous;

/// The address a request comes from: the TCP peer, unless the peer is a trusted
/// proxy and `header` is configured, then what that one header says (see
/// [`ClientHeader`]). Always in canonical form (IPv4-mapped IPv6 → IPv4).
pub(crate) fn client_ip(
    peer: IpAddr,
    headers: &HeaderMap,
    header: &ClientHeader,
    trusted: &[Net],
) -> Result<IpAddr, Ambiguous> {
    let peer = Addr::new(peer).ip();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.has(Addr::new(*ip)));
    if !is_trusted(&peer) {
        return Ok(peer);
    }
    match header {
        ClientHeader::None => Ok(peer),
        ClientHeader::Single(name) => {
            let mut values = headers.get_all(name).iter();
            let Some(v) = values.next() else {
                return Ok(peer);
            };
            if values.next().is_some() {
                return Err(Ambiguous);
            }
            v.to_str()
                .ok()
                .and_then(|s| parse_hop(s.trim()))
                .ok_or(Ambiguous)
        }
        ClientHeader::ForwardedFor => {
            let mut hops: Vec<&str> = Vec::new();
            for v in headers.get_all("x-forwarded-for") {
                let s = v.to_str().map_err(|_| Ambiguous)?;
                hops.extend(s.split(',').map(str::trim).filter(|h| !h.is_empty()));
            }
            let mut last_trusted = peer;
            for hop in hops.iter().rev() {
                let Some(ip) = parse_hop(hop) else {
                    // Garbage left of the hops our proxies wrote: the last trusted one is all we know.
                    return Ok(last_trusted);
                };
                if !is_trusted(&ip) {
                    return Ok(ip);
                }
                last_trusted = ip;
            }
            Ok(last_trusted)
        }
    }
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:443`.
fn parse_hop(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            s.strip_prefix('[')
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|r| r.parse().ok())
        })
        .map(|ip: IpAddr| Addr::new(ip).ip())
}

/// Per-address token buckets for `throttle`, bounded in memory.
pub(crate) struct Buckets {
    map: HashMap<IpAddr, (f64, Instant), foldhash::fast::RandomState>,
    max: usize,
}

impl Buckets {
    pub(crate) fn new(max: usize) -> Self {
        Buckets {
            map: HashMap::with_hasher(Default::default()),
            max: max.max(1),
        }
    }

    /// Take one token for `ip`; false when its bucket is empty.
    pub(crate) fn take(&mut self, ip: IpAddr, rate: f64, burst: f64, now: Instant) -> bool {
        if self.map.len() >= self.max && !self.map.contains_key(&ip) {
            // Full: forget buckets that have refilled (they carry no state), and if
            // that frees nothing, start over rather than grow without bound.
            self.map.retain(|_, (tokens, t)| {
                *tokens + now.duration_since(*t).as_secs_f64() * rate < burst
            });
            if self.map.len() >= self.max {
                self.map.clear();
            }
        }
        let (tokens, last) = self.map.entry(ip).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

/// The TCP peer, from `into_make_service_with_connect_info` (or `MockConnectInfo` in tests).
pub(crate) fn peer_of(ext: &axum::http::Extensions) -> Option<IpAddr> {
    ext.get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .or_else(|| ext.get::<MockConnectInfo<SocketAddr>>().map(|c| c.0.ip()))
}
