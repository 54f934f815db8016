//! The nftables backend against the real kernel, inside throwaway network
//! namespaces (never the host's ruleset): elements and timeouts, reconcile,
//! re-bans, nested ranges, a 1000-element batch, and real traffic between two
//! namespaces that is dropped while banned and flows again once the kernel
//! timeout expires. Needs root and the `nftables`, `iproute2`, `curl` and
//! `python3` packages.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Netns, ban, decision, now, require};
use shield_core::DecisionType;
use shield_enforce::{Change, Firewall, NftOptions, nftables};

fn fw(ns: &Netns) -> Box<dyn Firewall> {
    fw_over(ns, true)
}

/// `netlink`: element changes over the netlink socket (the default) or one
/// `nft -f -` per batch (the fallback); both must leave the same kernel state.
fn fw_over(ns: &Netns, netlink: bool) -> Box<dyn Firewall> {
    require("nft", "nftables");
    nftables(NftOptions {
        netns: Some(ns.name.clone()),
        netlink,
        ..Default::default()
    })
    .expect("nftables backend")
}

/// `element text → timeout seconds` of one set, read back with `nft -j`.
fn set_elements(ns: &Netns, set: &str) -> BTreeMap<String, u64> {
    let out = ns.ok(&["nft", "-j", "list", "set", "inet", "shield", set]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("nft -j prints JSON");
    let mut m = BTreeMap::new();
    for item in v["nftables"].as_array().unwrap() {
        let Some(elems) = item["set"]["elem"].as_array() else {
            continue;
        };
        for e in elems {
            let e = &e["elem"];
            let val = match &e["val"] {
                serde_json::Value::String(s) => s.clone(),
                p => format!(
                    "{}/{}",
                    p["prefix"]["addr"].as_str().unwrap(),
                    p["prefix"]["len"]
                ),
            };
            m.insert(
                val,
                e["timeout"].as_u64().expect("every element has a timeout"),
            );
        }
    }
    m
}

fn assert_timeout(m: &BTreeMap<String, u64>, key: &str, want: u64) {
    let got = *m
        .get(key)
        .unwrap_or_else(|| panic!("{key} missing from {m:?}"));
    assert!(
        got.abs_diff(want) <= 2,
        "{key}: timeout {got}, want about {want}"
    );
}

#[test]
fn reconcile_apply_and_timeouts_in_namespace() {
    reconcile_apply_and_timeouts(true);
}

#[test]
fn reconcile_apply_and_timeouts_over_the_nft_cli() {
    reconcile_apply_and_timeouts(false);
}

fn reconcile_apply_and_timeouts(netlink: bool) {
    let ns = Netns::new(if netlink { "nft" } else { "nftc" });
    let mut fw = fw_over(&ns, netlink);
    let t = now();
    fw.reconcile(
        &[
            ban(1, "192.0.2.1", t + 100),
            ban(2, "198.51.100.0/24", t + 200),
            ban(3, "2001:db8::7", t + 300),
            ban(4, "192.0.2.4", t - 5), // expired: stays out
            decision(5, "192.0.2.5", DecisionType::Captcha, t + 100), // gate only
        ],
        t,
    )
    .unwrap();
    let b4 = set_elements(&ns, "ban4");
    assert_eq!(b4.len(), 1, "{b4:?}");
    assert_timeout(&b4, "192.0.2.1", 100);
    assert_timeout(&set_elements(&ns, "ban4net"), "198.51.100.0/24", 200);
    assert_timeout(&set_elements(&ns, "ban6"), "2001:db8::7", 300);
    let rules = ns.ok(&["nft", "list", "chain", "inet", "shield", "input"]);
    assert!(
        rules.contains("priority filter - 10") || rules.contains("priority -10"),
        "{rules}"
    );
    assert!(
        rules.contains("ip saddr @ban4 counter packets 0 bytes 0 drop"),
        "{rules}"
    );

    // One batch: a new ban, a re-ban that extends (timeout refreshed), an unban
    // of a range, an unban of something never banned, and a captcha (ignored).
    fw.apply(
        &[
            Change::Add(ban(6, "192.0.2.6", t + 50)),
            Change::Add(ban(1, "192.0.2.1", t + 900)),
            Change::Remove(ban(2, "198.51.100.0/24", t + 200)),
            Change::Remove(ban(7, "192.0.2.77", t + 200)),
            Change::Add(decision(8, "192.0.2.8", DecisionType::Throttle, t + 50)),
        ],
        t,
    )
    .unwrap();
    let b4 = set_elements(&ns, "ban4");
    assert_eq!(b4.keys().collect::<Vec<_>>(), ["192.0.2.1", "192.0.2.6"]);
    assert_timeout(&b4, "192.0.2.1", 900);
    assert_timeout(&b4, "192.0.2.6", 50);
    assert!(set_elements(&ns, "ban4net").is_empty());
    // Adding the same ban twice and removing it twice never fails a batch.
    fw.apply(
        &[
            Change::Add(ban(6, "192.0.2.6", t + 60)),
            Change::Add(ban(6, "192.0.2.6", t + 70)),
        ],
        t,
    )
    .unwrap();
    fw.apply(
        &[
            Change::Remove(ban(6, "192.0.2.6", 0)),
            Change::Remove(ban(6, "192.0.2.6", 0)),
        ],
        t,
    )
    .unwrap();
    assert!(!set_elements(&ns, "ban4").contains_key("192.0.2.6"));

    // Reconcile makes the kernel match exactly: stale elements go.
    fw.reconcile(&[ban(9, "203.0.113.9", t + 30)], t).unwrap();
    assert_eq!(
        set_elements(&ns, "ban4").keys().collect::<Vec<_>>(),
        ["203.0.113.9"]
    );
    assert!(set_elements(&ns, "ban6").is_empty());
    assert_eq!(fw.failures(), 0);

    fw.teardown().unwrap();
    let tables = ns.ok(&["nft", "list", "tables"]);
    assert!(!tables.contains("shield"), "{tables}");
    // Teardown twice is fine.
    fw.teardown().unwrap();
}

#[test]
fn nested_ranges_never_conflict() {
    let ns = Netns::new("nftr");
    let mut fw = fw(&ns);
    let t = now();
    fw.reconcile(&[], t).unwrap();
    fw.apply(&[Change::Add(ban(1, "10.1.0.0/16", t + 500))], t)
        .unwrap();
    // A covering range replaces the /16 in the kernel (interval sets refuse overlaps)...
    fw.apply(
        &[
            Change::Add(ban(2, "10.0.0.0/8", t + 100)),
            Change::Add(ban(3, "10.2.3.0/24", t + 100)),
        ],
        t,
    )
    .unwrap();
    assert_eq!(
        set_elements(&ns, "ban4net").keys().collect::<Vec<_>>(),
        ["10.0.0.0/8"]
    );
    // ...and when it goes, the /16 it shadowed comes back with its own timeout.
    fw.apply(&[Change::Remove(ban(2, "10.0.0.0/8", t + 100))], t)
        .unwrap();
    let r = set_elements(&ns, "ban4net");
    assert_eq!(r.keys().collect::<Vec<_>>(), ["10.1.0.0/16", "10.2.3.0/24"]);
    assert_timeout(&r, "10.1.0.0/16", 500);
    // Addresses inside a banned range live in the address set without conflict.
    fw.apply(&[Change::Add(ban(4, "10.1.2.3", t + 100))], t)
        .unwrap();
    assert!(set_elements(&ns, "ban4").contains_key("10.1.2.3"));
    assert_eq!(fw.failures(), 0);
}

#[test]
fn thousand_elements_in_one_batch() {
    let ns = Netns::new("nftk");
    let mut fw = fw(&ns);
    let t = now();
    fw.reconcile(&[], t).unwrap();
    let batch: Vec<Change> = (0..1000u32)
        .map(|i| {
            Change::Add(ban(
                i as i64 + 1,
                &format!("100.64.{}.{}", i / 250, i % 250 + 1),
                t + 600 + i as i64,
            ))
        })
        .collect();
    let start = Instant::now();
    fw.apply(&batch, t).unwrap();
    let took = start.elapsed();
    let b4 = set_elements(&ns, "ban4");
    assert_eq!(b4.len(), 1000);
    assert_timeout(&b4, "100.64.0.1", 600);
    assert_timeout(&b4, "100.64.3.250", 1599);
    eprintln!("1000 bans in one apply batch: {took:?}");
    assert!(
        took < Duration::from_secs(5),
        "1000-element batch took {took:?}"
    );
}

/// Kills and reaps a child process when dropped.
struct Reap(Child);
impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_code(cli: &Netns, url: &str) -> String {
    let o = cli.exec(&[
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--connect-timeout",
        "1",
        "--max-time",
        "2",
        url,
    ]);
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn real_traffic_is_dropped_while_banned_and_flows_after_expiry() {
    require("curl", "curl");
    require("python3", "python3");
    let srv = Netns::new("srv");
    let cli = Netns::new("cli");
    let pid = std::process::id() % 100_000;
    let (vs, vc) = (format!("shs{pid}"), format!("shc{pid}"));
    common::run_ok(&[
        "ip", "link", "add", &vs, "netns", &srv.name, "type", "veth", "peer", "name", &vc, "netns",
        &cli.name,
    ]);
    srv.ok(&["ip", "addr", "add", "10.231.0.1/24", "dev", &vs]);
    srv.ok(&["ip", "link", "set", &vs, "up"]);
    cli.ok(&["ip", "addr", "add", "10.231.0.2/24", "dev", &vc]);
    cli.ok(&["ip", "link", "set", &vc, "up"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "hello\n").unwrap();
    let _server = Reap(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &srv.name,
                "python3",
                "-m",
                "http.server",
                "8080",
                "--bind",
                "10.231.0.1",
            ])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start python3 http.server"),
    );
    let url = "http://10.231.0.1:8080/";
    let deadline = Instant::now() + Duration::from_secs(10);
    while http_code(&cli, url) != "200" {
        assert!(
            Instant::now() < deadline,
            "the test web server in {} never answered",
            srv.name
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let mut fw = fw(&srv);
    let t = now();
    fw.reconcile(&[], t).unwrap();
    assert_eq!(http_code(&cli, url), "200", "reachable before the ban");
    fw.apply(&[Change::Add(ban(1, "10.231.0.2", t + 3))], t)
        .unwrap();
    let banned_at = Instant::now();
    assert_eq!(
        http_code(&cli, url),
        "000",
        "the banned client must time out"
    );
    let counters = srv.ok(&["nft", "list", "chain", "inet", "shield", "input"]);
    assert!(
        !counters.contains("ip saddr @ban4 counter packets 0 "),
        "drop rule counted nothing: {counters}"
    );
    // The kernel forgets the element after its timeout, with no unban from us.
    let deadline = banned_at + Duration::from_secs(8);
    loop {
        if http_code(&cli, url) == "200" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still blocked 8 s after a 3 s ban"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        banned_at.elapsed() >= Duration::from_secs(2),
        "unblocked too early: {:?}",
        banned_at.elapsed()
    );
}

#[test]
fn a_refused_element_does_not_block_the_rest_of_its_batch() {
    let ns = Netns::new("nftf");
    let mut fw = fw(&ns);
    let t = now();
    fw.reconcile(&[], t).unwrap();
    // Someone else put an overlapping range into our interval set behind our back.
    ns.ok(&[
        "nft",
        "add",
        "element",
        "inet",
        "shield",
        "ban4net",
        "{ 10.9.0.0/16 timeout 600s }",
    ]);
    let err = fw
        .apply(
            &[
                Change::Add(ban(1, "10.9.1.0/24", t + 60)),
                Change::Add(ban(2, "192.0.2.10", t + 60)),
                Change::Add(ban(3, "2001:db8::10", t + 60)),
            ],
            t,
        )
        .expect_err("the overlapping range must be reported");
    assert!(err.to_string().contains("1 of 3"), "{err}");
    assert_eq!(fw.failures(), 1);
    assert!(
        set_elements(&ns, "ban4").contains_key("192.0.2.10"),
        "the rest of the batch still landed"
    );
    assert!(set_elements(&ns, "ban6").contains_key("2001:db8::10"));
    // Reconcile repairs everything in one go.
    fw.reconcile(
        &[ban(1, "10.9.1.0/24", t + 60), ban(2, "192.0.2.10", t + 60)],
        t,
    )
    .unwrap();
    assert_eq!(
        set_elements(&ns, "ban4net").keys().collect::<Vec<_>>(),
        ["10.9.1.0/24"]
    );
}
