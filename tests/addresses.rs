//! Issue 19, item 1: an IPv4 address written as IPv6 (`::ffff:a.b.c.d`,
//! `::a.b.c.d`) is the IPv4 address at every entry point. Before, the
//! allowlist, own-address and SSH-session checks compared the raw IPv6 form
//! while the firewall and bouncer API applied the IPv4 one: with
//! `allowlist = ["10.0.0.0/8"]`, `decisions add ::ffff:10.1.2.3` put 10.1.2.3
//! into `ban4`, `::ffff:127.0.0.1` banned loopback, `::ffff:0.0.0.0/96` became
//! `0.0.0.0/0` in `ban4net` and `/v1/decisions`, and `decisions delete
//! 10.1.2.3` answered 404. The real daemon runs here in a network namespace
//! of its own with its nftables layer, so the kernel sets are checked too.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{Config, Daemon, Netns, require, ssh_fail, wait_for};

const PORT: u16 = 18019;

fn cfg(dir: &std::path::Path) -> String {
    Config::new()
        .firewall("nftables")
        .listen(&format!("127.0.0.1:{PORT}"))
        .decisions(r#"allowlist = ["10.0.0.0/8"]"#)
        .allow_own_addresses(true)
        .no_escalation()
        .ssh_test_scenario("10m")
        .sshd_files(&format!("{}/auth.log", dir.display()))
        .build()
}

/// Elements of an nftables set of the daemon's table, as nft prints them.
fn set(ns: &Netns, name: &str) -> String {
    ns.ok(&["nft", "list", "set", "inet", "shield", name])
}

fn targets(d: &Daemon) -> Vec<String> {
    d.active()
        .iter()
        .map(|x| x["target"].as_str().unwrap().to_string())
        .collect()
}

fn refused(d: &Daemon, target: &str) -> String {
    let out = d.cli(&["decisions", "add", target]);
    assert!(
        !out.status.success(),
        "`decisions add {target}` was accepted: {}\nactive: {:?}",
        String::from_utf8_lossy(&out.stdout),
        targets(d)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn accepted(d: &Daemon, args: &[&str]) {
    let out = d.cli(args);
    assert!(
        out.status.success(),
        "`{args:?}` failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
}

#[test]
fn ipv4_written_as_ipv6_meets_the_same_checks_and_deletes_by_either_form() {
    require("nft", "nftables");
    require("curl", "curl");
    let ns = Netns::new("addr");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("auth.log");
    std::fs::write(&log, "").unwrap();
    let d = Daemon::start_in(Some(&ns.name), dir.path(), &cfg(dir.path()));
    let out = d.cli(&["bouncers", "add", "fw"]);
    assert!(out.status.success());
    let key = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let v1 = |query: &str| -> String {
        ns.ok(&[
            "curl",
            "-sf",
            "-H",
            &format!("X-Api-Key: {key}"),
            &format!("http://127.0.0.1:{PORT}/v1/decisions{query}"),
        ])
    };

    // The allowlist, loopback and the /0 caps hold for every form.
    refused(&d, "10.1.2.3");
    for t in [
        "::ffff:10.1.2.3",
        "::FFFF:a01:203",
        "0:0:0:0:0:ffff:10.1.2.3/128",
        "::10.1.2.3",
        "::ffff:127.0.0.1",
        "::127.0.0.1",
        "::ffff:0.0.0.0/96",
        "::ffff:10.0.0.0/104",
    ] {
        refused(&d, t);
    }
    // Forms that do not name one address are refused with what to write.
    assert!(refused(&d, "fe80::1%lo").contains("zone id"));
    assert!(refused(&d, "010.1.2.3").contains("leading zero"));
    assert!(refused(&d, "::ffff:10.0.0.0/8").contains("10.0.0.0/8"));
    assert!(targets(&d).is_empty(), "{:?}", targets(&d));

    // An address outside the allowlist is banned as the IPv4 address it is.
    accepted(&d, &["decisions", "add", "::ffff:198.51.100.7"]);
    accepted(&d, &["decisions", "add", "198.51.100.8"]);
    let mut t = targets(&d);
    t.sort();
    assert_eq!(t, ["198.51.100.7/32", "198.51.100.8/32"]);
    let in_kernel = wait_for(Duration::from_secs(10), || {
        let s = set(&ns, "ban4");
        (s.contains("198.51.100.7") && s.contains("198.51.100.8")).then_some(())
    });
    assert!(in_kernel.is_some(), "ban4: {}", set(&ns, "ban4"));
    // The bouncer API answers for every form and lists only canonical values.
    assert!(v1("?ip=::ffff:198.51.100.7").contains("\"198.51.100.7\""));
    assert!(v1("?ip=::198.51.100.8").contains("\"198.51.100.8\""));
    let all = v1("");
    assert!(
        !all.contains("::ffff") && !all.contains("0.0.0.0/0"),
        "{all}"
    );

    // Deleted by the other form: both were 404 before.
    accepted(&d, &["decisions", "delete", "198.51.100.7"]);
    accepted(&d, &["decisions", "delete", "::ffff:198.51.100.8"]);
    assert!(targets(&d).is_empty(), "{:?}", targets(&d));
    let gone = wait_for(Duration::from_secs(10), || {
        let s = set(&ns, "ban4");
        (!s.contains("198.51.100.7") && !s.contains("198.51.100.8")).then_some(())
    });
    assert!(gone.is_some(), "ban4: {}", set(&ns, "ban4"));

    // Log lines: sshd on a dual-stack socket may write either form.
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    let ips = [
        "::ffff:10.9.9.9",
        "::ffff:127.0.0.1",
        "::ffff:198.51.100.21",
        "::198.51.100.22",
    ];
    for (n, ip) in ips.iter().enumerate() {
        for i in 0..6 {
            writeln!(f, "{}", ssh_fail(ip, n * 10 + i)).unwrap();
        }
    }
    drop(f);
    let banned = wait_for(Duration::from_secs(15), || {
        let t = targets(&d);
        (t.contains(&"198.51.100.21/32".to_string()) && t.contains(&"198.51.100.22/32".to_string()))
            .then_some(())
    });
    assert!(banned.is_some(), "{:?}\n{}", targets(&d), d.log());
    let allowlisted = wait_for(Duration::from_secs(10), || {
        (d.status()["counters"]["allowlisted"].as_u64().unwrap_or(0) >= 2).then_some(())
    });
    assert!(allowlisted.is_some(), "{}", d.status()["counters"]);
    let mut t = targets(&d);
    t.sort();
    assert_eq!(t, ["198.51.100.21/32", "198.51.100.22/32"]);

    let ban4 = set(&ns, "ban4");
    for never in ["10.1.2.3", "10.9.9.9", "127.0.0.1"] {
        assert!(!ban4.contains(never), "{never} in ban4: {ban4}");
    }
    let nets = set(&ns, "ban4net");
    assert!(!nets.contains("0.0.0.0"), "ban4net: {nets}");
    assert!(!set(&ns, "ban6").contains("::ffff"));
}
