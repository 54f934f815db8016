//! `shield drill` end to end (root): three members in namespaces, attacks on
//! the first, every ban enforced in every member's kernel set.

mod common;

use common::{require, shield};

#[test]
fn drill_reports_every_member_enforcing_every_ban() {
    require("nft", "nftables");
    let out = shield()
        .args(["drill", "--members", "3", "--attacks", "3", "--json"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    for m in v["per_member"].as_array().unwrap() {
        assert_eq!(m["enforced"], 3, "{v}");
    }
    assert!(v["p99_ms"].as_f64().unwrap() > 0.0);
    // Nothing is left behind.
    let ns = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&ns.stdout).contains("shdrill-"),
        "namespaces left behind"
    );
}
