//! Hostile clients against a running daemon's TCP listener (gate, bouncer API
//! `/v1/...` and control API `/api/...` behind a token): oversized bodies,
//! malformed JSON, wrong keys, odd bytes and paths in every parameter, and
//! slowloris clients. Each is refused with a 4xx (or its connection closed),
//! counted in `shield status`, and the daemon keeps serving everyone else.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Config, Daemon, free_port, wait_for};

const TOKEN: &str = "t0ken-for-the-hostile-test-0123456789";

fn start() -> (tempfile::TempDir, Daemon, u16, String) {
    start_with("")
}

/// A daemon with the TCP listener on a free port; `api` adds keys to `[api]`.
fn start_with(api: &str) -> (tempfile::TempDir, Daemon, u16, String) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::write(dir.path().join("auth.log"), "").unwrap();
    let cfg = Config::new()
        .listen(&format!("127.0.0.1:{port}"))
        .api(&format!("token = \"{TOKEN}\"\n{api}"))
        .source("[[source]]\nname = \"sshd\"\npaths = [\"@DIR@/auth.log\"]\npacks = [\"sshd\"]")
        .build();
    let d = Daemon::start(dir.path(), &cfg);
    let out = d.cli(&["bouncers", "add", "fw"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(key.len(), 64);
    (dir, d, port, key)
}

/// Sends `raw` (a whole HTTP/1.1 request) and returns (status, body).
fn http(port: u16, raw: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // The server may answer (413) and close before the whole body is sent.
    let _ = s.write_all(raw);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

fn get(port: u16, path: &str, headers: &str) -> (u16, String) {
    http(
        port,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n").as_bytes(),
    )
}

fn send(port: u16, method: &str, path: &str, headers: &str, body: &[u8]) -> (u16, String) {
    let mut r = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{headers}\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    http(port, &r)
}

fn bearer() -> String {
    format!("Authorization: Bearer {TOKEN}\r\n")
}

fn refused(d: &Daemon) -> u64 {
    d.status()["counters"]["api_refused"].as_u64().unwrap()
}

#[test]
fn bad_requests_are_refused_with_4xx_and_counted() {
    let (_dir, d, port, key) = start();
    let apikey = format!("X-Api-Key: {key}\r\n");
    // A decision that must survive everything below.
    let (st, body) = send(
        port,
        "POST",
        "/api/decisions",
        &bearer(),
        br#"{"target":"203.0.113.5","duration":"1h"}"#,
    );
    assert_eq!(st, 201, "{body}");
    let before = refused(&d);

    let big = vec![b'a'; 2 * 1024 * 1024];
    let mut cases: Vec<(&str, (u16, String))> = vec![
        // Oversized bodies.
        (
            "big control body",
            send(port, "POST", "/api/decisions", &bearer(), &big),
        ),
        (
            "big usage-metrics body",
            send(port, "POST", "/v1/usage-metrics", &apikey, &big),
        ),
        // Malformed JSON and wrong shapes.
        (
            "truncated json",
            send(port, "POST", "/api/decisions", &bearer(), br#"{"target":"#),
        ),
        (
            "not json",
            send(port, "POST", "/api/decisions", &bearer(), b"\x00\xff\xfe"),
        ),
        (
            "unknown field",
            send(
                port,
                "POST",
                "/api/decisions",
                &bearer(),
                br#"{"target":"1.2.3.4","x":1}"#,
            ),
        ),
        (
            "wrong type",
            send(
                port,
                "POST",
                "/api/decisions",
                &bearer(),
                br#"{"target":5}"#,
            ),
        ),
        (
            "deep nesting",
            send(
                port,
                "POST",
                "/api/decisions",
                &bearer(),
                "[".repeat(100_000).as_bytes(),
            ),
        ),
        (
            "path as target",
            send(
                port,
                "POST",
                "/api/decisions",
                &bearer(),
                br#"{"target":"../../etc/passwd"}"#,
            ),
        ),
        (
            "control char reason",
            send(
                port,
                "POST",
                "/api/decisions",
                &bearer(),
                b"{\"target\":\"203.0.113.9\",\"reason\":\"a\\u001b[2Jb\"}",
            ),
        ),
        (
            "huge duration",
            send(
                port,
                "POST",
                "/api/decisions",
                &bearer(),
                br#"{"target":"203.0.113.9","duration":"99999999999999999999y"}"#,
            ),
        ),
        (
            "overflowing duration",
            send(
                port,
                "POST",
                "/api/decisions",
                &bearer(),
                br#"{"target":"203.0.113.9","duration":"300000000000y"}"#,
            ),
        ),
        (
            "bad type",
            send(
                port,
                "POST",
                "/api/decisions",
                &bearer(),
                br#"{"target":"203.0.113.9","type":"nuke"}"#,
            ),
        ),
        (
            "bad bouncer name",
            send(
                port,
                "POST",
                "/api/bouncers",
                &bearer(),
                br#"{"name":"../../root"}"#,
            ),
        ),
        // Wrong credentials.
        ("no token", get(port, "/api/decisions", "")),
        (
            "wrong token",
            get(
                port,
                "/api/decisions",
                "Authorization: Bearer t0ken-for-the-hostile-test-0123456780\r\n",
            ),
        ),
        (
            "short token",
            get(port, "/api/decisions", "Authorization: Bearer t\r\n"),
        ),
        (
            "basic auth",
            get(port, "/api/decisions", "Authorization: Basic dDp0\r\n"),
        ),
        ("no api key", get(port, "/v1/decisions", "")),
        (
            "wrong api key",
            get(
                port,
                "/v1/decisions",
                &format!("X-Api-Key: {}\r\n", "0".repeat(64)),
            ),
        ),
        (
            "long api key",
            get(
                port,
                "/v1/decisions",
                &format!("X-Api-Key: {}\r\n", "k".repeat(8000)),
            ),
        ),
        // Paths and odd bytes in every parameter.
        (
            "ip traversal",
            get(port, "/v1/decisions?ip=../../etc/passwd", &apikey),
        ),
        ("ip nul", get(port, "/v1/decisions?ip=%00", &apikey)),
        (
            "range garbage",
            get(port, "/v1/decisions?range=1.2.3.4/99", &apikey),
        ),
        (
            "header injection",
            get(port, "/v1/decisions?ip=1.2.3.4%0d%0aX-Evil:%201", &apikey),
        ),
        ("bad percent", get(port, "/v1/decisions?ip=%zz", &apikey)),
        (
            "stream startup",
            get(port, "/v1/decisions/stream?startup=maybe", &apikey),
        ),
        (
            "delete target path",
            get(port, "/api/decisions?limit=-1", &bearer()),
        ),
        (
            "alerts limit",
            get(port, "/api/alerts?limit=1e9", &bearer()),
        ),
        (
            "unknown query",
            get(port, "/api/decisions?file=/etc/shadow", &bearer()),
        ),
        ("dotdot path", get(port, "/../../etc/passwd", "")),
        (
            "encoded dotdot",
            get(port, "/v1/%2e%2e/%2e%2e/etc/passwd", &apikey),
        ),
        (
            "bouncer path param",
            send(
                port,
                "DELETE",
                "/api/bouncers/..%2F..%2Fetc%2Fpasswd",
                &bearer(),
                b"",
            ),
        ),
    ];
    cases.push((
        "delete target traversal",
        send(
            port,
            "DELETE",
            "/api/decisions?target=../../x",
            &bearer(),
            b"",
        ),
    ));
    let mut n4xx = 0;
    for (what, (st, body)) in &cases {
        assert!(
            (400..500).contains(st),
            "{what}: expected a 4xx, got {st}: {body}"
        );
        n4xx += 1;
    }
    // Each says what is wrong in a JSON message (where the router produced it).
    let (_, body) = &cases[0].1;
    assert!(!body.is_empty());
    // Counted: every refusal above shows up.
    let after = refused(&d);
    assert!(
        after - before >= n4xx,
        "api_refused grew by {} for {n4xx} refused requests",
        after - before
    );
    // Nothing else was disturbed: the decision is there, the right key works.
    let (st, body) = get(port, "/v1/decisions?ip=203.0.113.5", &apikey);
    assert_eq!(st, 200);
    assert!(body.contains("203.0.113.5"), "{body}");
    assert_eq!(d.active().len(), 1, "{:?}", d.active());
    assert!(
        d.log().lines().all(|l| !l.contains("panicked")),
        "{}",
        d.log()
    );
}

#[test]
fn slow_clients_are_timed_out_and_others_are_served() {
    let (_dir, d, port, key) = start();
    // 40 slowloris connections: a request head that never ends, one header a second.
    let mut slow: Vec<TcpStream> = (0..40)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(b"GET /v1/decisions HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            s
        })
        .collect();
    // Plus connections that send nothing at all.
    let idle: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let start = Instant::now();
    let mut served = 0;
    let mut closed_at = None;
    while start.elapsed() < Duration::from_secs(20) {
        // Everyone else is served promptly meanwhile.
        let t = Instant::now();
        let (st, _) = get(port, "/v1/decisions", &format!("X-Api-Key: {key}\r\n"));
        assert_eq!(st, 200);
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "a normal client waited {:?}",
            t.elapsed()
        );
        served += 1;
        // Trickle one more header line on each slow connection; the server must close them.
        let mut open = 0;
        for s in &mut slow {
            if s.write_all(b"X-Slow: 1\r\n").is_ok() {
                open += 1;
            }
        }
        if open == 0 {
            closed_at = Some(start.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let closed_at = closed_at.unwrap_or_else(|| panic!("slow clients still connected after 20s"));
    assert!(
        closed_at >= Duration::from_secs(3),
        "closed too early: {closed_at:?}"
    );
    // The silent ones are closed too: a read sees EOF or a reset.
    for mut s in idle {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut b = [0u8; 64];
        match s.read(&mut b) {
            Ok(0) | Err(_) => {}
            Ok(n) => {
                // An error response (e.g. 408) before closing is fine too.
                assert!(String::from_utf8_lossy(&b[..n]).starts_with("HTTP/1.1 4"));
            }
        }
    }
    assert!(served > 3);
    let errs = wait_for(Duration::from_secs(5), || {
        let n = d.status()["counters"]["api_conn_errors"].as_u64().unwrap();
        (n >= 40).then_some(n)
    });
    assert!(
        errs.is_some(),
        "timed-out connections should be counted: {}",
        d.status()["counters"]
    );
}

/// A request whose head arrived but whose body never completes is answered
/// 408 by the edge's request deadline (`api::REQUEST_TIMEOUT`, 15 s), not
/// held open, and counted as a timeout. The listener's header deadline does
/// not apply here: the head is whole.
#[test]
fn a_body_that_never_completes_is_answered_408_after_the_request_deadline() {
    let (_dir, d, port, _key) = start();
    assert_eq!(d.status()["counters"]["api_timeouts"], 0);
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(
        format!(
            "POST /api/decisions HTTP/1.1\r\nHost: x\r\n{}Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{{\"target\":",
            bearer()
        )
        .as_bytes(),
    )
    .unwrap();
    // Long enough for the 15 s deadline; a server that waits for the body
    // forever fails here.
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).expect("no answer within 60s");
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("not complete within 15s"), "{text}");
    assert_eq!(d.status()["counters"]["api_timeouts"], 1);
    assert!(d.active().is_empty(), "half a body decided something");
}

/// The TCP listener holds at most `[api] max_connections` (1024 by default)
/// at once: 1,100 connections that each hold half a request head (the
/// header deadline is set long so nothing else closes them) leave exactly
/// 1,024 open, the oldest ones closed to make room; a real request is still
/// answered.
#[test]
fn the_listener_holds_at_most_1024_connections() {
    // One client address holds them all: lift the per-address limit.
    let (_dir, d, port, key) =
        start_with("max_connections_per_peer = 5000\nheader_timeout = \"10m\"");
    let held: Vec<TcpStream> = (0..1100)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            // Refused or evicted already: that is the listener's business.
            let _ = s.write_all(b"GET /v1/decisions HTTP/1.1\r\nHost: x\r\n");
            s
        })
        .collect();
    let counters = || d.status()["counters"].clone();
    let made_room = wait_for(Duration::from_secs(30), || {
        let c = counters();
        let n = c["api_conn_evicted"].as_u64()? + c["api_conn_rejected"].as_u64()?;
        (n >= 76).then_some(c)
    })
    .unwrap_or_else(|| panic!("1,100 connections and none closed: {}", counters()));
    assert_eq!(made_room["api_conn_open"], 1024, "{made_room}");
    assert_eq!(
        made_room["api_conn_evicted"].as_u64().unwrap()
            + made_room["api_conn_rejected"].as_u64().unwrap(),
        76,
        "{made_room}"
    );
    let (st, _) = get(port, "/v1/decisions", &format!("X-Api-Key: {key}\r\n"));
    assert_eq!(st, 200);
    assert!(counters()["api_conn_open"].as_u64().unwrap() <= 1024);
    drop(held);
}

/// Issue 19, item 8: nothing limited guesses of `[api] token` or bouncer keys.
#[test]
fn wrong_tokens_and_keys_share_a_budget_per_address() {
    let (_dir, d, port, key) = start();
    assert_eq!(get(port, "/api/decisions", &bearer()).0, 200);
    for i in 0..10 {
        let wrong = format!("Authorization: Bearer {TOKEN}{i}\r\n");
        assert_eq!(get(port, "/api/decisions", &wrong).0, 401, "guess {i}");
    }
    // Now refused before the token is looked at, even the right one, with Retry-After.
    let raw = format!(
        "GET /api/decisions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{}\r\n",
        bearer()
    );
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 429"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("retry-after: 60"),
        "{text}"
    );
    // The bouncer keys share the budget: a key guesser cannot switch doors.
    assert_eq!(
        get(port, "/v1/decisions", &format!("X-Api-Key: {key}\r\n")).0,
        429
    );
    // The gate asks for no secret and is not affected.
    assert_eq!(get(port, "/gate", "").0, 200);
    // The socket (root only) is not rate limited.
    assert!(d.cli(&["decisions", "list"]).status.success());
}
