//! `GET /metrics` after a known replay: a generated sshd log with 5
//! attackers (5000 lines) is read from its start by a running daemon, and the
//! Prometheus exposition must carry the exact line count, one local ban per
//! attacker, the active bans on the layer and the latency histograms.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

fn scrape(port: u16) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    (head.to_string(), body.to_string())
}

/// Sum of every sample of `name` whose labels contain all of `labels`.
fn sum(body: &str, name: &str, labels: &[&str]) -> f64 {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, lab) = match series.split_once('{') {
                Some((n, rest)) => (n, rest),
                None => (series, ""),
            };
            (n == name && labels.iter().all(|x| lab.contains(x)))
                .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

#[test]
fn metrics_after_a_known_replay() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("auth.log");
    ok(&[
        "gen-log",
        "sshd",
        "--lines",
        "5000",
        "--attackers",
        "5",
        "--out",
        log.to_str().unwrap(),
    ]);
    let port = free_port();
    // A webhook receiver: counts POSTs and keeps their bodies.
    let hook = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_port = hook.local_addr().unwrap().port();
    let (hook_tx, hook_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for conn in hook.incoming() {
            let Ok(mut c) = conn else { break };
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = c.read(&mut buf) {
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
                let t = String::from_utf8_lossy(&req).to_string();
                if let Some((head, body)) = t.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if body.len() >= len {
                        break;
                    }
                }
            }
            let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            let _ = hook_tx.send(String::from_utf8_lossy(&req).to_string());
        }
    });
    let cfg = format!(
        r#"
[store]
path = "@DIR@/shield.db"
[firewall]
backend = "dry-run"
[api]
listen = "127.0.0.1:{port}"
socket = "@DIR@/shield.sock"
[decisions]
allow_own_addresses = false
[[source]]
name = "sshd"
paths = ["{}"]
packs = ["sshd"]
from_start = true
[webhook]
url = "http://127.0.0.1:{hook_port}/hook"
min_interval = "1h"
burst = 2
"#,
        log.display()
    );
    let d = Daemon::start(dir.path(), &cfg);
    wait_for(Duration::from_secs(30), || {
        (d.lines("sshd") == 5000 && d.active().len() == 5).then_some(())
    })
    .unwrap_or_else(|| panic!("replay did not finish:\n{}", d.log()));
    let (head, body) = scrape(port);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    assert!(body.trim_end().ends_with("# EOF"), "{body}");

    let src = ["source=\"sshd\"", "kind=\"file\""];
    assert_eq!(
        sum(&body, "shield_source_lines_total", &src),
        5000.0,
        "{body}"
    );
    let matched = sum(&body, "shield_source_matched_total", &src);
    assert!(
        matched > 0.0 && matched < 5000.0,
        "matched {matched}\n{body}"
    );
    // Per-rule hits add up to the lines matched, and the main sshd rule is among them.
    assert_eq!(
        sum(&body, "shield_rule_hits_total", &["source=\"sshd\""]),
        matched,
        "{body}"
    );
    assert!(
        sum(
            &body,
            "shield_rule_hits_total",
            &["rule=\"sshd-failed-password\""]
        ) > 0.0,
        "{body}"
    );
    assert_eq!(sum(&body, "shield_keys_evicted_total", &src), 0.0, "{body}");
    assert_eq!(
        sum(
            &body,
            "shield_decisions_total",
            &["origin=\"local\"", "type=\"ban\"", "outcome=\"new\""]
        ),
        sum(
            &body,
            "shield_daemon_events_total",
            &["event=\"decisions_new\""]
        ),
        "{body}"
    );
    assert!(sum(&body, "shield_decisions_total", &["outcome=\"new\""]) >= 5.0);
    assert_eq!(
        sum(&body, "shield_decisions_total", &["outcome=\"extended\""]),
        sum(
            &body,
            "shield_daemon_events_total",
            &["event=\"decisions_extended\""]
        ),
    );
    let alerts = sum(&body, "shield_alerts_total", &[]);
    assert!(alerts >= 5.0, "{body}");
    assert_eq!(sum(&body, "shield_source_alerts_total", &src), alerts);
    assert_eq!(
        sum(
            &body,
            "shield_active_decisions",
            &["layer=\"dry-run\"", "type=\"ban\""]
        ),
        5.0,
        "{body}"
    );
    assert!(
        sum(&body, "shield_batch_commit_seconds_count", &[]) >= 1.0,
        "{body}"
    );
    assert!(
        sum(&body, "shield_firewall_apply_seconds_count", &[]) >= 1.0,
        "{body}"
    );
    assert!(body.contains("# TYPE shield_batch_commit_seconds histogram"));
    assert!(body.contains("shield_source_last_line_timestamp_seconds{"));
    // The listener counts its connections; the scrape itself is one of them, open.
    assert!(
        sum(
            &body,
            "shield_api_connections_total",
            &["outcome=\"accepted\""]
        ) >= 1.0,
        "{body}"
    );
    assert!(
        sum(&body, "shield_api_connections_open", &[]) >= 1.0,
        "{body}"
    );

    // Webhook: the first two new decisions are POSTed as JSON, the rest are
    // dropped by the token bucket (burst 2, then one per hour) and counted.
    let first = hook_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(first.starts_with("POST /hook HTTP/1.1"), "{first}");
    assert!(first.contains("\"event\":\"decision\""), "{first}");
    let _second = hook_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(hook_rx.recv_timeout(Duration::from_millis(500)).is_err());
    let (_, body) = scrape(port);
    let new = sum(
        &body,
        "shield_daemon_events_total",
        &["event=\"decisions_new\""],
    );
    assert_eq!(
        sum(
            &body,
            "shield_webhook_notifications_total",
            &["outcome=\"sent\""]
        ),
        2.0,
        "{body}"
    );
    assert_eq!(
        sum(
            &body,
            "shield_webhook_notifications_total",
            &["outcome=\"dropped\""]
        ),
        new - 2.0,
        "{body}"
    );

    // A manual ban shows up under its own origin.
    let out = d.cli(&["decisions", "add", "198.51.100.7", "--duration", "1h"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, body) = scrape(port);
    assert_eq!(
        sum(&body, "shield_decisions_total", &["origin=\"manual\""]),
        1.0,
        "{body}"
    );
    assert_eq!(sum(&body, "shield_active_decisions", &[]), 6.0);
}
