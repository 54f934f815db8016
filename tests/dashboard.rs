//! The web dashboard in a real browser: a daemon replays a generated attack
//! log, Debian's headless chromium (driven by playwright-core, see
//! `tests/browser/dashboard.mjs`) signs in with the API token, sees the bans
//! and the timeline chart, and pardons an address through the page. The test
//! then checks the address is gone from the store (`shield decisions list`)
//! and from the enforcement layer: the daemon runs the dry-run firewall, so
//! the layer checked is the in-memory decision table every layer is fed
//! from, read through the CrowdSec bouncer API (`/v1/decisions?ip=`).
//! The screenshot is kept as `target/dashboard.png`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

const TOKEN: &str = "dashboard-test-token-0123456789";

/// GET `path` on loopback with extra headers; returns (status, body).
pub fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// `tests/browser` with playwright-core installed (npm ci when missing).
fn browser_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if !dir.join("node_modules/playwright-core").exists() {
        let st = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .status();
        assert!(
            st.is_ok_and(|s| s.success()),
            "installing playwright-core into tests/browser failed: install the Debian package `npm` and run `npm install --prefix tests/browser` (network needed once)"
        );
    }
    dir
}

#[test]
fn dashboard_pardon_in_headless_chromium() {
    require("node", "nodejs");
    require("npm", "npm");
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "/usr/bin/chromium is missing: install the Debian package `chromium` (run .ci/install-deps as root)"
    );
    let browser = browser_dir();

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("auth.log");
    let truth = dir.path().join("truth.txt");
    ok(&[
        "gen-log",
        "sshd",
        "--lines",
        "5000",
        "--attackers",
        "5",
        "--out",
        log.to_str().unwrap(),
        "--truth",
        truth.to_str().unwrap(),
    ]);
    let attackers: Vec<String> = std::fs::read_to_string(&truth)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(attackers.len(), 5);

    let port = free_port();
    let cfg = Config::new()
        .listen(&format!("127.0.0.1:{port}"))
        .api(&format!("token = \"{TOKEN}\""))
        .sshd_files(&log.display().to_string())
        .build();
    let d = Daemon::start(dir.path(), &cfg);
    let banned = wait_for(Duration::from_secs(30), || {
        let a = d.active();
        (a.len() >= 5).then_some(a)
    })
    .unwrap_or_else(|| panic!("the replay did not ban 5 attackers:\n{}", d.log()));
    let mut banned: Vec<String> = banned
        .iter()
        .map(|x| {
            x["target"]
                .as_str()
                .unwrap()
                .trim_end_matches("/32")
                .to_string()
        })
        .collect();
    banned.sort();
    let mut want = attackers.clone();
    want.sort();
    assert_eq!(banned, want, "bans are exactly the generated attackers");

    let out = d.cli(&["bouncers", "add", "dash"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let layer_has = |ip: &str| {
        let (st, body) = get(
            port,
            &format!("/v1/decisions?ip={ip}"),
            &[("X-Api-Key", &key)],
        );
        assert_eq!(st, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v.as_array().is_some_and(|a| !a.is_empty())
    };
    for a in &attackers {
        assert!(layer_has(a), "{a} should be in the layer before the pardon");
    }

    // The data routes refuse requests without the token.
    assert_eq!(get(port, "/api/timeline", &[]).0, 401);

    let shot = dir.path().join("dashboard.png");
    let profile = dir.path().join("chromium-profile");
    let out = Command::new("node")
        .current_dir(&browser)
        .arg("dashboard.mjs")
        .arg(format!("http://127.0.0.1:{port}"))
        .arg(TOKEN)
        .arg(&shot)
        .arg(&profile)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser script failed:\n{stdout}\n{}\ndaemon log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {stdout}"));

    // Keep the screenshot as an artifact: target/dashboard.png.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("dashboard.png");
    std::fs::copy(&shot, &target).expect("copy the screenshot to target/");

    assert_eq!(v["wrong_token_refused"], true);
    let mut shown: Vec<String> = v["bans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    shown.sort();
    assert_eq!(shown, want, "the page lists every ban");
    assert!(
        v["chart_points"].as_u64().unwrap() >= 1,
        "the chart shows the decisions: {v}"
    );
    assert_eq!(v["search_shows"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["sources"][0], "sshd");
    assert_eq!(v["errors"].as_array().unwrap().len(), 0, "page errors: {v}");
    let victim = v["pardoned"].as_str().unwrap().to_string();
    assert!(attackers.contains(&victim));
    assert_eq!(v["after"].as_array().unwrap().len(), 4, "{v}");

    // Gone from the store...
    let active: Vec<String> = d
        .active()
        .iter()
        .map(|x| x["target"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(active.len(), 4, "{active:?}");
    assert!(!active.iter().any(|t| t.starts_with(&format!("{victim}/"))));
    // ...and from the layer, while the others are still there.
    assert!(!layer_has(&victim), "{victim} is still in the layer");
    for a in attackers.iter().filter(|a| **a != victim) {
        assert!(layer_has(a), "{a} was dropped from the layer too");
    }
}

#[test]
fn dashboard_is_disabled_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = format!(
        r#"
[store]
path = "@DIR@/shield.db"
[firewall]
backend = "dry-run"
[api]
listen = "127.0.0.1:{port}"
socket = "@DIR@/shield.sock"
[[source]]
name = "stdin"
type = "stdin"
packs = ["sshd"]
"#
    );
    let d = Daemon::start(dir.path(), &cfg);
    let out = d.cli(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("dashboard: disabled (no [api] token"),
        "shield status should say why the dashboard is off: {text}"
    );
    let (st, body) = get(port, "/ui/", &[]);
    assert_eq!(st, 503);
    assert!(body.contains("token"), "{body}");
    assert_eq!(
        get(port, "/api/overview", &[]).0,
        404,
        "no data routes without a token"
    );
}
