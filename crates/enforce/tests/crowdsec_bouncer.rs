//! The real `crowdsec-firewall-bouncer` from Debian, pointed at Shield's
//! bouncer API, puts Shield's bans into its own nftables set and takes them
//! out when Shield unbans.
//!
//! Everything runs inside a fresh network namespace so the bouncer's nftables
//! changes never reach the host: the test re-runs its own binary there
//! (`ip netns exec NS <this test binary>`), and that copy serves the API on
//! the namespace's loopback and starts the bouncer beside it.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use common::{Netns, ban, now, require};
use shield_enforce::{
    ApiConfig, ApiState, Change, DecisionTable, KeyRing, bouncer_router, generate_api_key,
};

const INSIDE: &str = "SHIELD_TEST_INSIDE_NETNS";

#[test]
fn crowdsec_firewall_bouncer_follows_shield() {
    if std::env::var_os(INSIDE).is_some() {
        inside_namespace();
        return;
    }
    require("crowdsec-firewall-bouncer", "crowdsec-firewall-bouncer");
    require("nft", "nftables");
    let ns = Netns::new("csfw");
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .arg(&exe)
        .args([
            "--exact",
            "crowdsec_firewall_bouncer_follows_shield",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(INSIDE, "1")
        .output()
        .expect("re-run the test binary inside the namespace");
    assert!(
        out.status.success(),
        "the bouncer test inside {} failed:\n--- stdout\n{}\n--- stderr\n{}",
        ns.name,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The copy ran this very test, not zero tests (a rename would filter it out).
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("test result: ok. 1 passed"),
        "the copy inside {} did not run this test:\n{stdout}",
        ns.name
    );
}

fn ruleset() -> String {
    let o = Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .expect("nft list ruleset");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Poll until `cond(ruleset)` holds; on timeout, fail with the bouncer's log and the ruleset.
fn wait_for(what: &str, log: &std::path::Path, cond: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rs = ruleset();
        if cond(&rs) {
            return;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(log).unwrap_or_else(|e| format!("(no log: {e})"));
            panic!(
                "timed out after 30 s waiting until {what}\n--- ruleset\n{rs}\n--- bouncer log\n{log}"
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn inside_namespace() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let key = generate_api_key();
    let mut ring = KeyRing::new();
    ring.insert_key("firewall", &key);
    let table = Arc::new(RwLock::new(DecisionTable::new()));
    let state = ApiState::new(table.clone(), Arc::new(ring), ApiConfig::default());
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    rt.spawn(async move {
        let app = bouncer_router(state).into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, app).await.unwrap();
    });

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let cfg = format!(
        "mode: nftables
pid_dir: {d}/
update_frequency: 1s
daemonize: false
log_mode: file
log_dir: {d}/
log_level: debug
api_url: http://127.0.0.1:{port}/
api_key: {key}
insecure_skip_verify: false
disable_ipv6: false
deny_action: DROP
deny_log: false
supported_decisions_types:
  - ban
blacklists_ipv4: crowdsec-blacklists
blacklists_ipv6: crowdsec6-blacklists
nftables:
  ipv4:
    enabled: true
    set-only: false
    table: crowdsec
    chain: crowdsec-chain
  ipv6:
    enabled: true
    set-only: false
    table: crowdsec6
    chain: crowdsec6-chain
prometheus:
  enabled: false
  listen_addr: 127.0.0.1
  listen_port: 60601
"
    );
    let cfg_path = dir.path().join("bouncer.yaml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let log = dir.path().join("crowdsec-firewall-bouncer.log");
    let mut bouncer = Command::new("crowdsec-firewall-bouncer")
        .arg("-c")
        .arg(&cfg_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start crowdsec-firewall-bouncer");
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(&mut bouncer);

    wait_for("the bouncer created its crowdsec table", &log, |rs| {
        rs.contains("table ip crowdsec")
    });
    let t = now();
    let (v4, v6) = (
        ban(41, "192.0.2.55", t + 3600),
        ban(42, "2001:db8::55", t + 3600),
    );
    table
        .write()
        .unwrap()
        .apply(&[Change::Add(v4.clone()), Change::Add(v6.clone())]);
    wait_for(
        "192.0.2.55 and 2001:db8::55 are in the bouncer's sets",
        &log,
        |rs| rs.contains("192.0.2.55") && rs.contains("2001:db8::55"),
    );
    let rs = ruleset();
    assert!(
        rs.contains("crowdsec-blacklists"),
        "the bouncer's own set holds the ban:\n{rs}"
    );

    table.write().unwrap().apply(&[Change::Remove(v4)]);
    wait_for("192.0.2.55 left the bouncer's set", &log, |rs| {
        !rs.contains("192.0.2.55")
    });
    assert!(
        ruleset().contains("2001:db8::55"),
        "only the unbanned address left"
    );
}
