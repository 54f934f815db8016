//! Real nginx in front of a page, asking Shield's gate through
//! `auth_request`: a banned client gets 403, a captcha'd one the challenge
//! (401), others the page. nginx runs on a free loopback port and passes the
//! client address in `X-Real-IP`; the gate trusts it because nginx (127.0.0.1)
//! is a trusted proxy. Clients are told apart by source address
//! (127.0.0.2, 127.0.0.3, 127.0.0.4 all work on loopback).

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use common::{ban, decision, now, require};
use shield_core::DecisionType;
use shield_enforce::{ApiConfig, ApiState, Change, DecisionTable, KeyRing, gate_router};

struct Reap(Child);
impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get(from: &str, port: u16) -> (String, String) {
    let o = Command::new("curl")
        .args([
            "-s",
            "--interface",
            from,
            "--max-time",
            "5",
            "-w",
            "\n%{http_code}",
            &format!("http://127.0.0.1:{port}/"),
        ])
        .output()
        .expect("run curl");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", &out));
    (code.to_string(), body.to_string())
}

#[test]
fn nginx_auth_request_blocks_banned_clients() {
    require("nginx", "nginx-light");
    require("curl", "curl");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let table = Arc::new(RwLock::new(DecisionTable::new()));
    let cfg = ApiConfig {
        trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
        ..Default::default()
    };
    let state = ApiState::new(table.clone(), Arc::new(KeyRing::new()), cfg);
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let gate_port = listener.local_addr().unwrap().port();
    let st = state.clone();
    rt.spawn(async move {
        axum::serve(
            listener,
            gate_router(st).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });

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
    location / {{
      auth_request /gate;
      error_page 401 = @shield_challenge;
    }}
    location = /gate {{
      internal;
      proxy_pass http://127.0.0.1:{gate_port}/gate;
      proxy_pass_request_body off;
      proxy_set_header Content-Length \"\";
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Original-URI $request_uri;
    }}
    location @shield_challenge {{
      rewrite ^ /gate/challenge break;
      proxy_pass http://127.0.0.1:{gate_port};
      proxy_set_header X-Real-IP $remote_addr;
    }}
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
