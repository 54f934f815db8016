//! Real nginx in front of a page, asking Shield's gate through
//! `auth_request`, wired with the nginx block of `docs/gate.md` as users copy
//! it: a banned client gets 403 whatever `X-Forwarded-For` / `X-Real-IP` it
//! sends, a captcha'd one the challenge (401), others the page. The gate runs
//! in the daemon's own accept loop (`serve_tcp`) with its default config:
//! `X-Real-IP` believed from loopback only. Clients are told apart by source
//! address (127.0.0.2, 127.0.0.3, 127.0.0.4 all work on loopback).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Gate, Reap, ban, curl_from, decision, free_port, gate_doc_block, now, require};
use shield_core::DecisionType;
use shield_enforce::Change;

fn get(from: &str, port: u16) -> (String, String) {
    get_with(from, port, &[])
}

fn get_with(from: &str, port: u16, headers: &[&str]) -> (String, String) {
    curl_from(from, &format!("http://127.0.0.1:{port}/"), headers)
}

#[test]
fn nginx_auth_request_blocks_banned_clients() {
    require("nginx", "nginx-light");
    require("curl", "curl");
    // The defaults: trusted proxies = loopback, client_header = X-Real-IP.
    let Gate {
        rt: _rt,
        table,
        state,
        port: gate_port,
        limiter: _,
    } = Gate::serve();

    let dir = tempfile::tempdir().unwrap();
    // nginx workers run as `nobody`: they must be able to read the page.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let d = dir.path().display();
    std::fs::create_dir(dir.path().join("www")).unwrap();
    std::fs::write(dir.path().join("www/index.html"), "the page\n").unwrap();
    let port = free_port();
    let locations =
        gate_doc_block("nginx").replace("127.0.0.1:8087", &format!("127.0.0.1:{gate_port}"));
    assert!(locations.contains("proxy_set_header X-Real-IP $remote_addr;"));
    let conf = format!(
        "worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
  access_log {d}/access.log;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{port};
    root {d}/www;
{locations}
  }}
}}
"
    );
    let conf_path = dir.path().join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let _nginx = Reap(
        Command::new("nginx")
            .arg("-c")
            .arg(&conf_path)
            .args(["-p", &d.to_string(), "-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, body) = get("127.0.0.3", port);
        if code == "200" {
            break;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
            let check = Command::new("nginx")
                .arg("-t")
                .arg("-c")
                .arg(&conf_path)
                .args(["-p", &d.to_string()])
                .output()
                .unwrap();
            let check = String::from_utf8_lossy(&check.stderr);
            panic!(
                "nginx on port {port} never served the page (last: {code} {body}); nginx -t: {check}\nerror.log:\n{log}"
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    let t = now();
    table.write().unwrap().apply(&[
        Change::Add(ban(1, "127.0.0.2", t + 600)),
        Change::Add(decision(2, "127.0.0.4", DecisionType::Captcha, t + 600)),
    ]);
    let (code, _) = get("127.0.0.2", port);
    assert_eq!(code, "403", "banned client");
    // Issue 19, item 4: the banned client names someone else in every header
    // it can send; auth_request forwards them all to the gate.
    for spoof in [
        &["X-Forwarded-For: 1.2.3.4"][..],
        &["X-Real-IP: 127.0.0.3"],
        &["X-Forwarded-For: 127.0.0.3", "X-Real-IP: 127.0.0.3"],
        &["X-Real-IP: 127.0.0.3", "X-Real-IP: 1.2.3.4"],
        &["X-Forwarded-For: 1.2.3.4, 127.0.0.3"],
        &["Forwarded: for=1.2.3.4"],
    ] {
        let (code, body) = get_with("127.0.0.2", port, spoof);
        assert_eq!(
            code, "403",
            "banned client sending {spoof:?} passed: {body}"
        );
    }
    // An unbanned client claiming a banned address is still itself.
    let (code, _) = get_with(
        "127.0.0.3",
        port,
        &["X-Real-IP: 127.0.0.2", "X-Forwarded-For: 127.0.0.2"],
    );
    assert_eq!(
        code, "200",
        "unbanned client with a banned address in its headers"
    );
    let (code, body) = get("127.0.0.3", port);
    assert_eq!(
        (code.as_str(), body.as_str()),
        ("200", "the page\n"),
        "other client"
    );
    let (code, body) = get("127.0.0.4", port);
    assert_eq!(code, "401", "captcha'd client gets the challenge");
    assert!(
        body.contains("crypto.subtle.digest"),
        "challenge page served through nginx: {body}"
    );

    // Unban: the next request passes, no reload of anything.
    table
        .write()
        .unwrap()
        .apply(&[Change::Remove(ban(1, "127.0.0.2", t + 600))]);
    assert_eq!(get("127.0.0.2", port).0, "200");
    let s = state.stats();
    assert!(
        s.gate_ban >= 1 && s.gate_allow >= 2 && s.gate_captcha >= 1,
        "{s:?}"
    );
}
