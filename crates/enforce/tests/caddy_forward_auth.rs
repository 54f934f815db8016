//! Real Caddy in front of a page, asking Shield's gate through
//! `forward_auth`, wired with the Caddyfile block of `docs/gate.md`: a banned
//! client gets 403 whatever `X-Forwarded-For` / `X-Real-IP` it sends, a
//! captcha'd one the challenge page (401), others the page. The gate runs in
//! the daemon's accept loop with its default config (`X-Real-IP` from loopback).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Gate, Reap, ban, curl_from, decision, free_port, gate_doc_block, now, require};
use shield_core::DecisionType;
use shield_enforce::Change;

#[test]
fn caddy_forward_auth_blocks_banned_clients() {
    require("caddy", "caddy");
    require("curl", "curl");
    // The defaults: trusted proxies = loopback, client_header = X-Real-IP.
    let Gate {
        rt: _rt,
        table,
        state: _,
        limiter: _,
        port: gate_port,
    } = Gate::serve();

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    std::fs::create_dir(dir.path().join("www")).unwrap();
    std::fs::write(dir.path().join("www/index.html"), "the page\n").unwrap();
    let port = free_port();
    let site = gate_doc_block("caddyfile")
        .replace("127.0.0.1:8087", &format!("127.0.0.1:{gate_port}"))
        .replace("example.com", &format!("http://127.0.0.1:{port}"))
        .replace("/srv/www", &format!("{d}/www"));
    assert!(site.contains("header_up X-Real-IP {remote_host}"));
    let conf = format!("{{\n\tadmin off\n\tstorage file_system {d}/data\n}}\n{site}");
    let conf_path = dir.path().join("Caddyfile");
    std::fs::write(&conf_path, conf).unwrap();
    let _caddy = Reap(
        Command::new("caddy")
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&conf_path)
            .env("HOME", &d)
            .env("XDG_DATA_HOME", format!("{d}/data"))
            .env("XDG_CONFIG_HOME", format!("{d}/config"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("caddy.log")).unwrap())
            .spawn()
            .expect("start caddy"),
    );
    let url = format!("http://127.0.0.1:{port}/");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (code, body) = curl_from("127.0.0.3", &url, &[]);
        if code == "200" {
            assert_eq!(body, "the page\n");
            break;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.path().join("caddy.log")).unwrap_or_default();
            panic!("caddy on port {port} never served the page (last: {code} {body}):\n{log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    let t = now();
    table.write().unwrap().apply(&[
        Change::Add(ban(1, "127.0.0.2", t + 600)),
        Change::Add(decision(2, "127.0.0.4", DecisionType::Captcha, t + 600)),
    ]);
    for spoof in [
        &[][..],
        &["X-Forwarded-For: 1.2.3.4"],
        &["X-Real-IP: 127.0.0.3"],
        &["X-Forwarded-For: 127.0.0.3", "X-Real-IP: 127.0.0.3"],
        &["X-Real-IP: 127.0.0.3", "X-Real-IP: 1.2.3.4"],
    ] {
        let (code, body) = curl_from("127.0.0.2", &url, spoof);
        assert_eq!(
            code, "403",
            "banned client sending {spoof:?} passed: {body}"
        );
    }
    let (code, body) = curl_from("127.0.0.3", &url, &["X-Real-IP: 127.0.0.2"]);
    assert_eq!(
        (code.as_str(), body.as_str()),
        ("200", "the page\n"),
        "other client"
    );
    let (code, body) = curl_from("127.0.0.4", &url, &[]);
    assert_eq!(code, "401", "captcha'd client gets the challenge");
    assert!(body.contains("crypto.subtle.digest"), "{body}");
    // The challenge endpoint is reachable for the captcha'd client (wrong answer: 403 from the gate).
    let o = Command::new("curl")
        .args([
            "-s",
            "--interface",
            "127.0.0.4",
            "--max-time",
            "5",
            "-w",
            "%{http_code}",
            "-o",
            "/dev/null",
        ])
        .args(["-d", "c=1.x&n=1", &format!("{url}gate/challenge")])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "403",
        "POST /gate/challenge reaches the gate"
    );

    table
        .write()
        .unwrap()
        .apply(&[Change::Remove(ban(1, "127.0.0.2", t + 600))]);
    assert_eq!(curl_from("127.0.0.2", &url, &[]).0, "200");
}
