//! `GET /metrics` after a known replay: a generated sshd log with 5
//! attackers (5000 lines) is read from its start by a running daemon, and the
//! Prometheus exposition must carry the exact line count, one local ban per
//! attacker, the active bans on the layer and the latency histograms.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;

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
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(str::to_string)
                        })
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if body.len() >= len {
                        break;
                    }
                }
            }
            let _ =
                c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
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
min_interval = "300ms"
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
        metric_sum(&body, "shield_source_lines_total", &src),
        5000.0,
        "{body}"
    );
    let matched = metric_sum(&body, "shield_source_matched_total", &src);
    assert!(
        matched > 0.0 && matched < 5000.0,
        "matched {matched}\n{body}"
    );
    // Per-rule hits add up to the lines matched, and the main sshd rule is among them.
    assert_eq!(
        metric_sum(&body, "shield_rule_hits_total", &["source=\"sshd\""]),
        matched,
        "{body}"
    );
    assert!(
        metric_sum(
            &body,
            "shield_rule_hits_total",
            &["rule=\"sshd-failed-password\""]
        ) > 0.0,
        "{body}"
    );
    assert_eq!(
        metric_sum(&body, "shield_keys_evicted_total", &src),
        0.0,
        "{body}"
    );
    assert_eq!(
        metric_sum(
            &body,
            "shield_decisions_total",
            &["origin=\"local\"", "type=\"ban\"", "outcome=\"new\""]
        ),
        metric_sum(
            &body,
            "shield_daemon_events_total",
            &["event=\"decisions_new\""]
        ),
        "{body}"
    );
    assert!(metric_sum(&body, "shield_decisions_total", &["outcome=\"new\""]) >= 5.0);
    assert_eq!(
        metric_sum(&body, "shield_decisions_total", &["outcome=\"extended\""]),
        metric_sum(
            &body,
            "shield_daemon_events_total",
            &["event=\"decisions_extended\""]
        ),
    );
    let alerts = metric_sum(&body, "shield_alerts_total", &[]);
    assert!(alerts >= 5.0, "{body}");
    assert_eq!(
        metric_sum(&body, "shield_source_alerts_total", &src),
        alerts
    );
    assert_eq!(
        metric_sum(
            &body,
            "shield_active_decisions",
            &["layer=\"dry-run\"", "type=\"ban\""]
        ),
        5.0,
        "{body}"
    );
    assert!(
        metric_sum(&body, "shield_batch_commit_seconds_count", &[]) >= 1.0,
        "{body}"
    );
    assert!(
        metric_sum(&body, "shield_firewall_apply_seconds_count", &[]) >= 1.0,
        "{body}"
    );
    assert!(body.contains("# TYPE shield_batch_commit_seconds histogram"));
    assert!(body.contains("shield_source_last_line_timestamp_seconds{"));
    // The listener counts its connections; the scrape itself is one of them, open.
    assert!(
        metric_sum(
            &body,
            "shield_api_connections_total",
            &["outcome=\"accepted\""]
        ) >= 1.0,
        "{body}"
    );
    assert!(
        metric_sum(&body, "shield_api_connections_open", &[]) >= 1.0,
        "{body}"
    );

    // Webhook: new decisions are POSTed as JSON batches, one per 300 ms
    // window at most, together carrying every new decision.
    let first = hook_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(first.starts_with("POST /hook HTTP/1.1"), "{first}");
    assert!(first.contains("\"event\":\"decisions\""), "{first}");
    let (_, body) = scrape(port);
    let new = metric_sum(
        &body,
        "shield_daemon_events_total",
        &["event=\"decisions_new\""],
    );
    let mut posts = vec![first];
    let carried = |posts: &[String]| -> u64 {
        posts
            .iter()
            .map(|p| {
                let json = &p[p.find("\r\n\r\n").unwrap() + 4..];
                let v: serde_json::Value = serde_json::from_str(json).unwrap();
                v["count"].as_u64().unwrap()
            })
            .sum()
    };
    while carried(&posts) < new as u64 {
        posts.push(hook_rx.recv_timeout(Duration::from_secs(10)).unwrap());
    }
    assert_eq!(carried(&posts), new as u64);
    let hook = ["channel=\"webhook\"", "kind=\"json\""];
    wait_for(Duration::from_secs(10), || {
        let (_, body) = scrape(port);
        (metric_sum(
            &body,
            "shield_notify_decisions_total",
            &[hook[0], "outcome=\"delivered\""],
        ) == new)
            .then_some(())
    })
    .expect("the webhook channel counts what it delivered");
    let (_, body) = scrape(port);
    assert_eq!(
        metric_sum(
            &body,
            "shield_notify_messages_total",
            &[hook[0], hook[1], "outcome=\"sent\""]
        ),
        posts.len() as f64,
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
        metric_sum(&body, "shield_decisions_total", &["origin=\"manual\""]),
        1.0,
        "{body}"
    );
    assert_eq!(metric_sum(&body, "shield_active_decisions", &[]), 6.0);
}
