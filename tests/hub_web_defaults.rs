//! Shield's own web packs on defaults (no CrowdSec installed) decide every
//! attacker that CrowdSec's HTTP scenarios catch in the hub's own test logs
//! (read from /work/shared/data/real/crowdsec-hub-tests at run time; skipped
//! with a message when absent): a known CVE path, admin-interface probing,
//! WordPress plugin scans, sensitive files, bad user agents, HTTP basic-auth
//! brute force. The expected attackers are the addresses `scenario.assert`
//! names; 127.0.0.1, which Shield never bans, is rewritten to 198.51.100.1.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::ok;

const HUB: &str = "/work/shared/data/real/crowdsec-hub-tests";
const LOOPBACK_AS: &str = "198.51.100.1";

/// The addresses `scenario.assert` expects in overflows.
fn asserted(dir: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(dir.join("scenario.assert")).unwrap();
    text.lines()
        .filter(|l| l.contains("Overflow.GetSources()") && l.contains(" in results["))
        .filter_map(|l| l.split('"').nth(1))
        .map(|ip| if ip == "127.0.0.1" { LOOPBACK_AS } else { ip }.to_string())
        .collect()
}

fn decided(test: &str) -> Option<(BTreeSet<String>, BTreeSet<String>)> {
    let dir = Path::new(HUB).join(test);
    if !dir.exists() {
        eprintln!("skipped: {} is absent", dir.display());
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    let log = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "log"))
        .unwrap();
    let text = std::fs::read_to_string(&log)
        .unwrap()
        .replace("127.0.0.1", LOOPBACK_AS);
    let copy = tmp.path().join("access.log");
    std::fs::write(&copy, text).unwrap();
    let cfg = tmp.path().join("shield.toml");
    std::fs::write(
        &cfg,
        "[[source]]\nname = \"web\"\npaths = [\"/dev/null\"]\npacks = [\"nginx-access\", \"nginx-error\"]\n",
    )
    .unwrap();
    let out = ok(&[
        "replay",
        "--config",
        cfg.to_str().unwrap(),
        "--format",
        "json",
        copy.to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let got = v["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["value"].as_str().unwrap().to_string())
        .collect();
    Some((asserted(&dir), got))
}

#[test]
fn web_defaults_decide_every_attacker_of_crowdsecs_http_hub_tests() {
    let tests = [
        "http-cve-probing",
        "http-admin-interface-probing",
        "http-wordpress-scan",
        "nginx-http-sensitive-files",
        "nginx-bad-user-agent",
        "nginx-http-generic-bf",
    ];
    let (mut want, mut missed) = (0, Vec::new());
    for t in tests {
        let Some((expected, got)) = decided(t) else {
            return;
        };
        assert!(
            !expected.is_empty(),
            "{t}: scenario.assert names no attacker"
        );
        want += expected.len();
        missed.extend(expected.difference(&got).map(|a| format!("{t}: {a}")));
    }
    eprintln!(
        "{} of {want} asserted attackers decided",
        want - missed.len()
    );
    assert!(missed.is_empty(), "not decided on defaults: {missed:?}");
}
