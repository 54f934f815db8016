//! The whole daemon inside the test process, as any user (no root, no
//! namespace): `run` on a plan with the dry-run layer, listeners bound on
//! `127.0.0.1:0` and a socket in a tempdir, a manual clock. Lines appended
//! to a followed file raise a decision that the HTTP API lists; moving the
//! clock past its expiry takes it off; `Control::Stop` ends `run` cleanly.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use shield_core::Clock;
use shield_daemon::run::Control;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "in-process-test-token-9f2c7a41d8e3b605";

fn plan(dir: &std::path::Path) -> shield_daemon::plan::Plan {
    plan_with(dir, "auth.log")
}

/// The plan, following `file` in `dir`.
fn plan_with(dir: &std::path::Path, file: &str) -> shield_daemon::plan::Plan {
    plan_extra(dir, file, "")
}

/// The plan, following `file`, with `extra` config appended.
fn plan_extra(dir: &std::path::Path, file: &str, extra: &str) -> shield_daemon::plan::Plan {
    let text = format!(
        r#"
[store]
path = "{d}/shield.db"

[firewall]
backend = "dry-run"

[api]
listen = "127.0.0.1:0"
socket = "{d}/shield.sock"
token = "{TOKEN}"

[decisions]
allow_own_addresses = false

[engine]
no_default_scenarios = true

[[scenario]]
name = "ssh-test"
rules = ["sshd*"]
capacity = 4
leak = "1h"
decision = "ban"
duration = "10m"

[[source]]
name = "sshd"
paths = ["{d}/{file}"]
packs = ["sshd"]
# The file is empty at start; lines appended before the reader opens it are read too.
from_start = true
{extra}
"#,
        d = dir.display()
    );
    let loaded = shield_daemon::config::parse(&text, None).expect("the config parses");
    shield_daemon::plan::plan(&loaded).expect("the config plans")
}

/// `GET path` with the token; the status code and the body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    get_with(addr, path, "").await
}

/// `GET path` with the token and `headers` (each ending in CRLF).
async fn get_with(addr: SocketAddr, path: &str, headers: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: shield\r\nAuthorization: Bearer {TOKEN}\r\n{headers}Connection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let code = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (code, body.to_string())
}

async fn decisions(addr: SocketAddr) -> Vec<serde_json::Value> {
    let (code, body) = get(addr, "/api/decisions").await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_daemon_in_process_bans_expires_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("auth.log");
    std::fs::write(&log, "").unwrap();
    let plan = plan(dir.path());
    let listeners = shield_daemon::server::bind(&plan).await.unwrap();
    let addr = listeners.api.as_ref().unwrap().local_addr().unwrap();
    assert_ne!(addr.port(), 0);
    let socket = listeners.control_path.clone();
    let clock = Clock::manual(shield_core::wall_now());
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let daemon = tokio::spawn(shield_daemon::run::run(plan, listeners, rx, clock.clone()));

    // The API answers before any line: nothing decided yet.
    assert!(decisions(addr).await.is_empty());

    attack(&log, "203.0.113.7", 6, &clock);

    // Waits for the reader and the decision thread (no timing asserted: the
    // deadline only keeps a broken daemon from hanging the suite).
    let mut banned = Vec::new();
    for _ in 0..200 {
        banned = decisions(addr).await;
        if !banned.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, status) = get(addr, "/api/status").await;
    assert_eq!(
        banned.len(),
        1,
        "one decision on the attacker: {banned:?}; {status}"
    );
    let d = &banned[0];
    assert_eq!(d["target"], "203.0.113.7/32");
    assert_eq!(d["scenario"], "ssh-test");
    // Stamped by the manual clock, for the scenario's 10 minutes.
    assert_eq!(d["created"], clock.now());
    assert_eq!(d["expires"], clock.now() + 600);
    let (code, status) = get(addr, "/api/status").await;
    assert_eq!(code, 200, "{status}");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["active_decisions"], 1, "{status}");
    assert_eq!(status["sources"][0]["lines"], 6, "{status}");
    // The forward-auth gate (nginx auth_request) refuses the attacker, by the same clock.
    let attacker = "X-Real-IP: 203.0.113.7\r\n";
    assert_eq!(get_with(addr, "/gate", attacker).await.0, 403);
    assert_eq!(
        get_with(addr, "/gate", "X-Real-IP: 198.51.100.9\r\n")
            .await
            .0,
        200
    );

    // Past the expiry, without sleeping ten minutes.
    clock.advance(Duration::from_secs(601));
    assert!(
        decisions(addr).await.is_empty(),
        "expired decision still listed"
    );
    let (_, status) = get(addr, "/api/status").await;
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["active_decisions"], 0, "{status}");
    assert_eq!(
        get_with(addr, "/gate", attacker).await.0,
        200,
        "gate after expiry"
    );

    tx.send(Control::Stop).await.unwrap();
    daemon
        .await
        .expect("run did not panic")
        .expect("run ends cleanly");
    assert!(!socket.exists(), "the control socket is removed at stop");
    // The store holds the decision after the stop: the one writer committed it.
    let store = shield_daemon::store::Store::open(&dir.path().join("shield.db")).unwrap();
    assert_eq!(store.recent_decisions(10).unwrap().len(), 1);
}

/// Appends `n` failed logins from `ip`, stamped at the clock's time.
fn attack(path: &std::path::Path, ip: &str, n: usize, clock: &Clock) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let stamp = jiff::Timestamp::from_second(clock.now())
        .unwrap()
        .strftime("%b %e %H:%M:%S");
    for i in 0..n {
        writeln!(
            f,
            "{stamp} myhost sshd[{}]: Failed password for root from {ip} port {} ssh2",
            1000 + i,
            40000 + i
        )
        .unwrap();
    }
}

async fn wait_for_target(addr: SocketAddr, target: &str) -> Vec<serde_json::Value> {
    let mut v = Vec::new();
    for _ in 0..200 {
        v = decisions(addr).await;
        if v.iter().any(|d| d["target"] == target) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    v
}

/// `Control::Reload` swaps the readers for the new plan's: after a reload
/// that follows another file, lines in the old file raise nothing and lines
/// in the new one raise a decision. The control socket is root's only
/// (0600), and the daemon stops when its control channel closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_follows_the_new_plan_and_a_closed_channel_stops() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (dir.path().join("auth.log"), dir.path().join("other.log"));
    std::fs::write(&old, "").unwrap();
    std::fs::write(&new, "").unwrap();
    let plan = plan_with(dir.path(), "auth.log");
    let listeners = shield_daemon::server::bind(&plan).await.unwrap();
    let addr = listeners.api.as_ref().unwrap().local_addr().unwrap();
    let socket = listeners.control_path.clone();
    assert!(
        !socket.exists(),
        "the socket appears only once the daemon serves"
    );
    let clock = Clock::manual(shield_core::wall_now());
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let daemon = tokio::spawn(shield_daemon::run::run(plan, listeners, rx, clock.clone()));

    attack(&old, "203.0.113.1", 6, &clock);
    assert_eq!(wait_for_target(addr, "203.0.113.1/32").await.len(), 1);
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the control socket is 0600");

    tx.send(Control::Reload(Box::new(plan_with(
        dir.path(),
        "other.log",
    ))))
    .await
    .unwrap();
    // The new plan's reader follows other.log: its attacker is decided ...
    attack(&new, "203.0.113.2", 6, &clock);
    let v = wait_for_target(addr, "203.0.113.2/32").await;
    assert!(v.iter().any(|d| d["target"] == "203.0.113.2/32"), "{v:?}");
    // ... and auth.log is no longer read (its reader was stopped before the
    // new one started, so this attack is in no reader's future).
    attack(&old, "203.0.113.3", 6, &clock);
    attack(&new, "203.0.113.4", 6, &clock);
    let v = wait_for_target(addr, "203.0.113.4/32").await;
    assert!(v.iter().any(|d| d["target"] == "203.0.113.4/32"), "{v:?}");
    assert!(!v.iter().any(|d| d["target"] == "203.0.113.3/32"), "{v:?}");

    drop(tx);
    daemon
        .await
        .unwrap()
        .expect("a closed control channel stops run cleanly");
}

/// The union member's status is read from the running member when asked
/// (typed, not a JSON copy refreshed every second): `/api/status` names the
/// member and `/metrics` carries its counters and health.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn union_status_is_read_from_the_member() {
    use shield_union::cli::{UnionCmd, run_to};
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("auth.log"), "").unwrap();
    let (key, treaty) = (
        dir.path().join("member.key"),
        dir.path().join("treaty.toml"),
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut sink = Vec::new();
    run_to(
        UnionCmd::Keygen {
            out: key.clone(),
            force: false,
        },
        &mut sink,
    )
    .unwrap();
    run_to(
        UnionCmd::Init {
            union: "lab".into(),
            member: "solo".into(),
            key: key.clone(),
            endpoint: format!("127.0.0.1:{port}"),
            binds: vec!["ssh-test=ban:1h".into()],
            out: treaty.clone(),
            force: false,
        },
        &mut sink,
    )
    .unwrap();
    let extra = format!(
        "[union]\nmember = \"solo\"\nkey = \"{}\"\ntreaty = \"{}\"\nlisten = \"127.0.0.1:{port}\"\n",
        key.display(),
        treaty.display()
    );
    let plan = plan_extra(dir.path(), "auth.log", &extra);
    let listeners = shield_daemon::server::bind(&plan).await.unwrap();
    let addr = listeners.api.as_ref().unwrap().local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let daemon = tokio::spawn(shield_daemon::run::run(
        plan,
        listeners,
        rx,
        Clock::manual(shield_core::wall_now()),
    ));

    let (code, status) = get(addr, "/api/status").await;
    assert_eq!(code, 200, "{status}");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["union"]["member"], "solo", "{status}");
    assert_eq!(status["union"]["union"], "lab", "{status}");
    assert!(status["union"]["counters"].is_object(), "{status}");
    let (code, metrics) = get(addr, "/metrics").await;
    assert_eq!(code, 200, "{metrics}");
    assert!(metrics.contains("shield_union_signals_total{"), "{metrics}");

    tx.send(Control::Stop).await.unwrap();
    daemon.await.unwrap().unwrap();
}

/// `POST path` with the token and a JSON body; the status code and the body.
async fn post(addr: SocketAddr, path: &str, body: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: shield\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let code = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (code, body.to_string())
}

/// An operator's decision that lengthens one in force counts as extended,
/// not new: `/api/status` counts one new and one extended after
/// a 1h ban, the same ban for 2h, and the same for 30m (covered: neither).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_decision_that_lengthens_a_ban_counts_as_extended() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("auth.log"), "").unwrap();
    let plan = plan(dir.path());
    let listeners = shield_daemon::server::bind(&plan).await.unwrap();
    let addr = listeners.api.as_ref().unwrap().local_addr().unwrap();
    let clock = Clock::manual(shield_core::wall_now());
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let daemon = tokio::spawn(shield_daemon::run::run(plan, listeners, rx, clock.clone()));

    let add = |duration: &str| {
        format!(r#"{{"target": "198.51.100.20", "duration": "{duration}", "reason": "op"}}"#)
    };
    let (code, body) = post(addr, "/api/decisions", &add("1h")).await;
    assert_eq!(code, 201, "new: {body}");
    let (code, body) = post(addr, "/api/decisions", &add("2h")).await;
    assert_eq!(code, 201, "extended: {body}");
    let extended: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(extended["expires"], clock.now() + 7200, "{body}");
    let (code, body) = post(addr, "/api/decisions", &add("30m")).await;
    assert_eq!(code, 200, "covered: {body}");

    let (_, status) = get(addr, "/api/status").await;
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["active_decisions"], 1, "{status}");
    assert_eq!(status["counters"]["decisions_new"], 1, "{status}");
    assert_eq!(status["counters"]["decisions_extended"], 1, "{status}");

    tx.send(Control::Stop).await.unwrap();
    daemon
        .await
        .expect("run did not panic")
        .expect("run ends cleanly");
}

/// The syslog reader stamps its lines with the daemon's clock, not the wall
/// nor the sender's stamp: with the manual clock 30 days behind, messages
/// stamped months apart raise a decision created at the clock's time, and
/// the source's last line is at it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_syslog_reader_runs_on_the_injected_clock() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("auth.log"), "").unwrap();
    let extra = r#"
[[source]]
name = "syslog"
type = "syslog"
listen = "127.0.0.1:0"
protocols = ["udp"]
packs = ["sshd"]
"#;
    let plan = plan_extra(dir.path(), "auth.log", extra);
    let listeners = shield_daemon::server::bind(&plan).await.unwrap();
    let addr = listeners.api.as_ref().unwrap().local_addr().unwrap();
    let clock = Clock::manual(shield_core::wall_now() - 30 * 86_400);
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let daemon = tokio::spawn(shield_daemon::run::run(plan, listeners, rx, clock.clone()));

    // The listener's port, as the status names it (`udp://127.0.0.1:PORT`).
    let syslog = |status: &serde_json::Value| {
        status["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "syslog")
            .cloned()
            .unwrap_or_else(|| panic!("no syslog source in {status}"))
    };
    // The readers start once the API answers: wait for the listener.
    let mut status = serde_json::Value::Null;
    for _ in 0..200 {
        let (_, body) = get(addr, "/api/status").await;
        status = serde_json::from_str(&body).unwrap();
        let up = status["sources"].as_array().is_some_and(|v| {
            v.iter()
                .any(|s| s["name"] == "syslog" && s["files"][0].is_string())
        });
        if up {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let to: SocketAddr = syslog(&status)["files"][0]
        .as_str()
        .and_then(|f| f.strip_prefix("udp://"))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no UDP listener in {status}"));
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    // Each message stamped two months after the one before: Shield's rules
    // read the message, not the sender's stamp, so the failures count at the
    // clock's time and ban (at their stamps they span ten months).
    for (i, month) in ["Jan", "Mar", "May", "Jul", "Sep", "Nov"]
        .iter()
        .enumerate()
    {
        let msg = format!(
            "<38>{month}  1 00:00:00 host sshd[7]: Failed password for root from 203.0.113.50 port {} ssh2",
            40000 + i
        );
        sock.send_to(msg.as_bytes(), to).unwrap();
    }

    let banned = wait_for_target(addr, "203.0.113.50/32").await;
    let (_, status) = get(addr, "/api/status").await;
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let d = banned
        .iter()
        .find(|d| d["target"] == "203.0.113.50/32")
        .unwrap_or_else(|| panic!("no ban from syslog: {banned:?}; {status}"));
    assert_eq!(d["created"], clock.now(), "{d}");
    assert_eq!(syslog(&status)["last_line_at"], clock.now(), "{status}");

    tx.send(Control::Stop).await.unwrap();
    daemon
        .await
        .expect("run did not panic")
        .expect("run ends cleanly");
}
