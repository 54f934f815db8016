//! The iptables + ipset backend against the real kernel, inside a throwaway
//! network namespace: sets with timeouts, the DROP rules, idempotent batches,
//! reconcile by swap, and teardown. Needs root and the `ipset`, `iptables`
//! and `iproute2` packages.

mod common;

use common::{Netns, ban, now, require};
use shield_enforce::{Change, IpsetOptions, ipset};

/// `member → timeout` from `ipset list NAME` inside the namespace.
fn members(ns: &Netns, set: &str) -> Vec<(String, u64)> {
    let out = ns.ok(&["ipset", "list", set]);
    let mut v: Vec<(String, u64)> = out
        .split("Members:")
        .nth(1)
        .unwrap_or("")
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let m = it.next()?.to_string();
            let t = it.skip_while(|w| *w != "timeout").nth(1)?.parse().ok()?;
            Some((m, t))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn ipset_backend_in_namespace() {
    require("ipset", "ipset");
    require("iptables", "iptables");
    let ns = Netns::new("ipset");
    let mut fw = ipset(IpsetOptions {
        netns: Some(ns.name.clone()),
        ..Default::default()
    })
    .unwrap();
    let t = now();
    fw.reconcile(
        &[
            ban(1, "192.0.2.1", t + 100),
            ban(2, "198.51.100.0/24", t + 200),
            ban(3, "192.0.2.3", t - 1),
        ],
        t,
    )
    .unwrap();
    let m = members(&ns, "shield4");
    assert_eq!(
        m.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(),
        ["192.0.2.1", "198.51.100.0/24"]
    );
    assert!(
        m[0].1.abs_diff(100) <= 2 && m[1].1.abs_diff(200) <= 2,
        "{m:?}"
    );
    let rules = ns.ok(&["iptables", "-S", "INPUT"]);
    assert!(rules.contains("--match-set shield4 src -j DROP"), "{rules}");
    let rules6 = ns.ok(&["ip6tables", "-S", "INPUT"]);
    assert!(
        rules6.contains("--match-set shield6 src -j DROP"),
        "{rules6}"
    );

    // Re-ban refreshes the timeout, unbanning twice is fine, v6 goes to shield6.
    fw.apply(
        &[
            Change::Add(ban(1, "192.0.2.1", t + 900)),
            Change::Remove(ban(2, "198.51.100.0/24", 0)),
            Change::Remove(ban(2, "198.51.100.0/24", 0)),
            Change::Add(ban(4, "2001:db8::4", t + 50)),
        ],
        t,
    )
    .unwrap();
    let m = members(&ns, "shield4");
    assert_eq!(m.len(), 1);
    assert!(m[0].1.abs_diff(900) <= 2, "{m:?}");
    assert_eq!(members(&ns, "shield6")[0].0, "2001:db8::4");

    // A second reconcile swaps in exactly the new list and does not duplicate rules.
    fw.reconcile(&[ban(5, "203.0.113.5", t + 60)], t).unwrap();
    assert_eq!(
        members(&ns, "shield4")
            .iter()
            .map(|x| x.0.as_str())
            .collect::<Vec<_>>(),
        ["203.0.113.5"]
    );
    assert!(members(&ns, "shield6").is_empty());
    let rules = ns.ok(&["iptables", "-S", "INPUT"]);
    assert_eq!(rules.matches("shield4").count(), 1, "{rules}");

    fw.teardown().unwrap();
    assert!(!ns.ok(&["iptables", "-S", "INPUT"]).contains("shield4"));
    assert!(
        !ns.exec(&["ipset", "list", "shield4"]).status.success(),
        "set destroyed"
    );
}
