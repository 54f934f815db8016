//! The application gate: a forward-auth endpoint for nginx `auth_request`,
//! Traefik ForwardAuth and Caddy `forward_auth`.
//!
//! `GET /gate` (or any path under `/gate/`, any method) answers from the
//! in-memory [`DecisionTable`](crate::DecisionTable) only:
//! - 200 when nothing applies;
//! - 403 for `ban`;
//! - 429 for `throttle` once the address's token bucket is empty;
//! - 401 with a small HTML page for `captcha`, unless the request carries a
//!   valid pass cookie. The page solves a SHA-256 proof of work in the browser
//!   and posts it to `POST /gate/challenge`, which sets the cookie (an HMAC
//!   over address and expiry with a key made at start). No third party.
//!
//! The client is the TCP peer, or, only when the peer is a trusted proxy, what
//! the one configured header says ([`ClientHeader`]; `X-Real-IP` by default).
//! A trusted proxy's header that names no single address is refused with 403.
//!
//! nginx wiring: `auth_request /gate;` with `location = /gate { internal;
//! proxy_pass http://127.0.0.1:PORT/gate; proxy_set_header X-Real-IP $remote_addr; }`,
//! plus `error_page 401 = @shield_challenge;` proxying to `/gate/challenge`
//! and a `location = /gate/challenge` that proxies POSTs there. The tested
//! snippets for nginx, Traefik and Caddy are in `docs/gate.md`.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use shield_core::{Addr, DecisionType};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::api::ApiState;
use crate::auth::{ct_eq, hex};
use crate::client::{Ambiguous, client_ip, peer_of};

const COOKIE: &str = "shield_pass";
/// How long a challenge stays solvable, in seconds.
const CHALLENGE_TTL_S: i64 = 300;

fn mac(key: &[u8; 32], parts: &[&[u8]]) -> String {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        m.update(p);
        m.update(b"|");
    }
    hex(&m.finalize().into_bytes())
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// `<expiry>.<mac>` bound to `ip` and a purpose.
fn token(key: &[u8; 32], purpose: &[u8], ip: IpAddr, expires: i64) -> String {
    format!(
        "{expires}.{}",
        mac(
            key,
            &[purpose, &ip_bytes(ip), expires.to_string().as_bytes()]
        )
    )
}

fn token_valid(key: &[u8; 32], purpose: &[u8], ip: IpAddr, tok: &str, now: i64) -> bool {
    let Some((exp, sig)) = tok.split_once('.') else {
        return false;
    };
    let Ok(expires) = exp.parse::<i64>() else {
        return false;
    };
    if expires <= now {
        return false;
    }
    let want = mac(key, &[purpose, &ip_bytes(ip), exp.as_bytes()]);
    ct_eq(want.as_bytes(), sig.as_bytes())
}

fn leading_zero_bits(h: &[u8]) -> u32 {
    let mut n = 0;
    for b in h {
        if *b == 0 {
            n += 8;
        } else {
            return n + b.leading_zeros();
        }
    }
    n
}

/// Does `nonce` solve `challenge` at `difficulty` bits?
pub(crate) fn pow_ok(challenge: &str, nonce: &str, difficulty: u8) -> bool {
    if nonce.is_empty() || nonce.len() > 20 || !nonce.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let h = Sha256::digest(format!("{challenge}:{nonce}").as_bytes());
    leading_zero_bits(&h) >= u32::from(difficulty)
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn no_peer() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "the gate was served without connection info; serve it with into_make_service_with_connect_info::<SocketAddr>()",
    )
        .into_response()
}

/// Why a gate request has no client address.
enum NoClient {
    NoPeer,
    Ambiguous,
}

impl IntoResponse for NoClient {
    fn into_response(self) -> Response {
        match self {
            NoClient::NoPeer => no_peer(),
            NoClient::Ambiguous => (
                StatusCode::FORBIDDEN,
                "the client-address header from the proxy is repeated or not an address; have the proxy overwrite it (nginx: proxy_set_header X-Real-IP $remote_addr)\n",
            )
                .into_response(),
        }
    }
}

/// The client of a gate request. An ambiguous header counts as a ban answer.
fn client_of(state: &ApiState, req: &Request) -> Result<IpAddr, NoClient> {
    let Some(peer) = peer_of(req.extensions()) else {
        return Err(NoClient::NoPeer);
    };
    let cfg = &state.inner.cfg;
    client_ip(
        peer,
        req.headers(),
        &cfg.client_header,
        &cfg.trusted_proxies,
    )
    .map_err(|Ambiguous| {
        state
            .inner
            .counters
            .gate_ban
            .fetch_add(1, Ordering::Relaxed);
        NoClient::Ambiguous
    })
}

fn challenge_page(state: &ApiState, ip: IpAddr, now: i64) -> Response {
    let inner = &state.inner;
    let c = token(&inner.cookie_key, b"challenge", ip, now + CHALLENGE_TTL_S);
    let page = CHALLENGE_HTML
        .replace("{{CHALLENGE}}", &c)
        .replace("{{BITS}}", &inner.cfg.captcha_difficulty.to_string());
    let mut r = (StatusCode::UNAUTHORIZED, page).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn gate(State(state): State<ApiState>, req: Request) -> Response {
    let ip = match client_of(&state, &req) {
        Ok(ip) => ip,
        Err(r) => return r.into_response(),
    };
    let inner = &state.inner;
    let now = state.inner.cfg.clock.now();
    let kind = state.table().lookup(Addr::new(ip), now).map(|d| d.kind);
    let c = &inner.counters;
    match kind {
        None => {
            c.gate_allow.fetch_add(1, Ordering::Relaxed);
            StatusCode::OK.into_response()
        }
        Some(DecisionType::Ban) => {
            c.gate_ban.fetch_add(1, Ordering::Relaxed);
            (StatusCode::FORBIDDEN, "forbidden\n").into_response()
        }
        Some(DecisionType::Throttle) => {
            let ok = {
                let mut b = inner.buckets.lock().unwrap_or_else(|e| e.into_inner());
                b.take(
                    ip,
                    inner.cfg.throttle_rate,
                    inner.cfg.throttle_burst,
                    Instant::now(),
                )
            };
            if ok {
                c.gate_allow.fetch_add(1, Ordering::Relaxed);
                StatusCode::OK.into_response()
            } else {
                c.gate_throttle.fetch_add(1, Ordering::Relaxed);
                let mut r = (StatusCode::TOO_MANY_REQUESTS, "slow down\n").into_response();
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                r
            }
        }
        Some(DecisionType::Captcha) => {
            if cookie_value(req.headers(), COOKIE)
                .is_some_and(|t| token_valid(&inner.cookie_key, b"pass", ip, t, now))
            {
                c.gate_allow.fetch_add(1, Ordering::Relaxed);
                return StatusCode::OK.into_response();
            }
            c.gate_captcha.fetch_add(1, Ordering::Relaxed);
            challenge_page(&state, ip, now)
        }
    }
}

async fn challenge_get(State(state): State<ApiState>, req: Request) -> Response {
    let ip = match client_of(&state, &req) {
        Ok(ip) => ip,
        Err(r) => return r.into_response(),
    };
    challenge_page(&state, ip, state.inner.cfg.clock.now())
}

/// `c=<challenge>&n=<nonce>`; both are plain ASCII (digits, hex, dot), so no decoding is needed.
fn parse_form(body: &[u8]) -> Option<(String, String)> {
    let s = std::str::from_utf8(body).ok()?;
    let (mut c, mut n) = (None, None);
    for kv in s.trim().split('&') {
        match kv.split_once('=') {
            Some(("c", v)) => c = Some(v.to_string()),
            Some(("n", v)) => n = Some(v.to_string()),
            _ => {}
        }
    }
    Some((c?, n?))
}

async fn challenge_post(State(state): State<ApiState>, req: Request) -> Response {
    let ip = match client_of(&state, &req) {
        Ok(ip) => ip,
        Err(r) => return r.into_response(),
    };
    let inner = &state.inner;
    let Ok(body) = axum::body::to_bytes(req.into_body(), 4096).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "form too large\n").into_response();
    };
    let now = state.inner.cfg.clock.now();
    let Some((c, n)) = parse_form(&body) else {
        return (StatusCode::BAD_REQUEST, "expected form fields c and n\n").into_response();
    };
    if !token_valid(&inner.cookie_key, b"challenge", ip, &c, now) {
        return (
            StatusCode::FORBIDDEN,
            "challenge expired or not yours; reload the page\n",
        )
            .into_response();
    }
    if !pow_ok(&c, &n, inner.cfg.captcha_difficulty) {
        return (StatusCode::FORBIDDEN, "wrong answer; reload the page\n").into_response();
    }
    let pass_s = inner.cfg.captcha_pass_s.min(30 * 86400) as i64;
    let tok = token(&inner.cookie_key, b"pass", ip, now + pass_s);
    let secure = if inner.cfg.cookie_secure {
        "; Secure"
    } else {
        ""
    };
    let cookie =
        format!("{COOKIE}={tok}; Max-Age={pass_s}; Path=/; HttpOnly; SameSite=Lax{secure}");
    let mut r = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// The gate: `/gate` and anything under `/gate/` (any method) answer 200/403/429/401;
/// `GET /gate/challenge` serves the challenge page, `POST /gate/challenge` checks it.
/// Serve with `into_make_service_with_connect_info::<SocketAddr>()`.
pub fn gate_router(state: ApiState) -> Router {
    let cfg = &state.inner.cfg;
    let timeout = cfg.request_timeout;
    Router::new()
        .route("/gate", any(gate))
        .route("/gate/challenge", get(challenge_get).post(challenge_post))
        .route("/gate/{*rest}", any(gate))
        .layer(RequestBodyLimitLayer::new(4096))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .with_state(state)
}

const CHALLENGE_HTML: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>One moment</title></head>
<body style="font-family:sans-serif;max-width:32em;margin:4em auto">
<h1>Checking your browser</h1>
<p id="s">This takes a second or two. JavaScript is needed.</p>
<script>
(async () => {
  const c = "{{CHALLENGE}}", bits = {{BITS}}, enc = new TextEncoder();
  const ok = (h) => { let n = 0; for (const b of new Uint8Array(h)) { if (b === 0) { n += 8; continue; } n += Math.clz32(b) - 24; break; } return n >= bits; };
  for (let n = 0; ; n++) {
    const h = await crypto.subtle.digest("SHA-256", enc.encode(c + ":" + n));
    if (ok(h)) {
      const r = await fetch("/gate/challenge", { method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/x-www-form-urlencoded" }, body: "c=" + c + "&n=" + n });
      if (r.ok) { location.reload(); } else { document.getElementById("s").textContent = "Failed: " + (await r.text()); }
      return;
    }
  }
})();
</script></body></html>
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{Buckets, ClientHeader};
    use shield_core::Net;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_the_configured_header_from_trusted_peers() {
        let trusted: Vec<Net> = vec![
            "127.0.0.1/32".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ];
        let real = ClientHeader::default();
        let xff = ClientHeader::ForwardedFor;
        let c = |peer: &str, hs: &[(&str, &str)], how: &ClientHeader| {
            client_ip(ip(peer), &h(hs), how, &trusted)
        };
        // Issue 19, item 4: nginx's auth_request forwards the client's own
        // X-Forwarded-For beside the X-Real-IP nginx sets; only X-Real-IP counts.
        let spoof = [("x-forwarded-for", "1.2.3.4"), ("x-real-ip", "192.0.2.66")];
        assert_eq!(c("127.0.0.1", &spoof, &real), Ok(ip("192.0.2.66")));
        assert_eq!(
            c("127.0.0.1", &[("x-forwarded-for", "1.2.3.4")], &real),
            Ok(ip("127.0.0.1"))
        );
        // Untrusted peer: headers are ignored whatever the setting.
        for how in [&real, &xff, &ClientHeader::None] {
            assert_eq!(c("192.0.2.50", &spoof, how), Ok(ip("192.0.2.50")));
        }
        assert_eq!(
            c("127.0.0.1", &spoof, &ClientHeader::None),
            Ok(ip("127.0.0.1"))
        );
        // A repeated or unreadable single header is refused, never read as the proxy.
        let twice = [("x-real-ip", "192.0.2.66"), ("x-real-ip", "203.0.113.1")];
        assert_eq!(c("127.0.0.1", &twice, &real), Err(Ambiguous));
        assert_eq!(
            c("127.0.0.1", &[("x-real-ip", "192.0.2.66, 1.2.3.4")], &real),
            Err(Ambiguous)
        );
        assert_eq!(
            c("127.0.0.1", &[("x-real-ip", "nobody")], &real),
            Err(Ambiguous)
        );
        // Canonical forms: mapped peer and mapped header value, ports, brackets.
        assert_eq!(
            c(
                "::ffff:127.0.0.1",
                &[("x-real-ip", "::ffff:192.0.2.7")],
                &real
            ),
            Ok(ip("192.0.2.7"))
        );
        assert_eq!(
            c("127.0.0.1", &[("x-real-ip", "[2001:db8::1]:443")], &real),
            Ok(ip("2001:db8::1"))
        );
        assert_eq!(c("::ffff:192.0.2.9", &[], &real), Ok(ip("192.0.2.9")));
        // Another header name, if the proxy sets that one.
        let custom: ClientHeader = "CF-Connecting-IP".parse().unwrap();
        assert_eq!(
            c(
                "127.0.0.1",
                &[("cf-connecting-ip", "192.0.2.8"), ("x-real-ip", "1.1.1.1")],
                &custom
            ),
            Ok(ip("192.0.2.8"))
        );

        // X-Forwarded-For when configured: right-most untrusted hop, not the spoofable left-most.
        let hops = [("x-forwarded-for", "203.0.113.9, 198.51.100.4, 10.1.1.1")];
        assert_eq!(c("127.0.0.1", &hops, &xff), Ok(ip("198.51.100.4")));
        // X-Real-IP is not read then.
        assert_eq!(
            c(
                "127.0.0.1",
                &[
                    ("x-forwarded-for", "198.51.100.4"),
                    ("x-real-ip", "1.1.1.1")
                ],
                &xff
            ),
            Ok(ip("198.51.100.4"))
        );
        // Several XFF headers are one list.
        let two = [
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-for", "10.2.2.2"),
        ];
        assert_eq!(c("10.0.0.1", &two, &xff), Ok(ip("203.0.113.9")));
        // All hops trusted: the left-most.
        assert_eq!(
            c(
                "127.0.0.1",
                &[("x-forwarded-for", "10.3.3.3, 10.2.2.2")],
                &xff
            ),
            Ok(ip("10.3.3.3"))
        );
        // Garbage left of a real hop does not matter; garbage as the last hop leaves the peer.
        assert_eq!(
            c(
                "127.0.0.1",
                &[("x-forwarded-for", "not-an-ip, 198.51.100.4")],
                &xff
            ),
            Ok(ip("198.51.100.4"))
        );
        assert_eq!(
            c(
                "127.0.0.1",
                &[("x-forwarded-for", "198.51.100.4, bogus")],
                &xff
            ),
            Ok(ip("127.0.0.1"))
        );
        assert_eq!(
            c("127.0.0.1", &[("x-forwarded-for", "192.0.2.7:5555")], &xff),
            Ok(ip("192.0.2.7"))
        );
        assert_eq!(c("127.0.0.1", &[], &xff), Ok(ip("127.0.0.1")));
    }

    #[test]
    fn client_header_names_parse() {
        assert_eq!("X-Real-IP".parse(), Ok(ClientHeader::default()));
        assert_eq!("x-forwarded-for".parse(), Ok(ClientHeader::ForwardedFor));
        assert_eq!("none".parse(), Ok(ClientHeader::None));
        assert_eq!("".parse(), Ok(ClientHeader::None));
        assert!("Forwarded".parse::<ClientHeader>().is_err());
        assert!("X Real".parse::<ClientHeader>().is_err());
    }

    #[test]
    fn token_bucket_limits_and_stays_bounded() {
        let mut b = Buckets::new(3);
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        let took = (0..10).filter(|_| b.take(a, 1.0, 5.0, t0)).count();
        assert_eq!(took, 5, "burst of 5");
        assert!(
            b.take(a, 1.0, 5.0, t0 + std::time::Duration::from_millis(1100)),
            "one token per second"
        );
        assert!(!b.take(a, 1.0, 5.0, t0 + std::time::Duration::from_millis(1200)));
        for i in 0..100u8 {
            b.take(IpAddr::from([198, 51, 100, i]), 1.0, 5.0, t0);
        }
        assert!(b.len() <= 3);
    }

    #[test]
    fn tokens_bind_address_purpose_and_time() {
        let key = [7u8; 32];
        let t = token(&key, b"pass", ip("192.0.2.1"), 1000);
        assert!(token_valid(&key, b"pass", ip("192.0.2.1"), &t, 999));
        assert!(
            !token_valid(&key, b"pass", ip("192.0.2.1"), &t, 1000),
            "expired"
        );
        assert!(
            !token_valid(&key, b"pass", ip("192.0.2.2"), &t, 999),
            "other address"
        );
        assert!(
            !token_valid(&key, b"challenge", ip("192.0.2.1"), &t, 999),
            "other purpose"
        );
        assert!(
            !token_valid(&[8u8; 32], b"pass", ip("192.0.2.1"), &t, 999),
            "other key"
        );
        let forged = t.replacen("1000", "9999", 1);
        assert!(!token_valid(&key, b"pass", ip("192.0.2.1"), &forged, 999));
        assert!(!token_valid(&key, b"pass", ip("192.0.2.1"), "garbage", 0));
    }

    #[test]
    fn proof_of_work_checks() {
        let c = "123.abc";
        let n = (0u64..).find(|n| pow_ok(c, &n.to_string(), 8)).unwrap();
        assert!(pow_ok(c, &n.to_string(), 8));
        assert!(!pow_ok(c, "", 0));
        assert!(!pow_ok(c, "12a", 0));
        assert_eq!(leading_zero_bits(&[0, 0x10]), 11);
        assert_eq!(
            parse_form(b"c=1.ab&n=42"),
            Some(("1.ab".into(), "42".into()))
        );
        assert_eq!(parse_form(b"c=1.ab"), None);
    }
}
