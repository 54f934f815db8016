//! Issue #4's end-to-end proof, as root with real components: a server
//! namespace runs real nginx and the real `shield` daemon with its nftables
//! layer; an attacker namespace probes nginx; Shield sees it in nginx's
//! access log and bans it in the kernel; the attacker's connections then time
//! out while another client still gets pages; when the ban's kernel timeout
//! runs out, the attacker gets through again.

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, WebLab, curl, wait_for};

#[test]
fn attacker_dropped_in_kernel_while_others_served_until_ban_expires() {
    let dir = tempfile::tempdir().unwrap();
    let lab = WebLab::start(["srv", "atk", "cli"], 231, dir.path());
    let (srv, atk, cli) = (&lab.srv, &lab.atk, &lab.cli);
    assert!(
        curl(atk, "http://10.231.1.1/"),
        "attacker reaches nginx before any ban"
    );

    let access = dir.path().join("access.log");
    let config = format!(
        r#"
[store]
path = "@DIR@/shield.db"

[engine]
no_default_scenarios = true

[firewall]
backend = "nftables"

[api]
listen = ""
socket = "@DIR@/shield.sock"

[decisions]
allow_own_addresses = true

[decisions.escalation]
enabled = false

[[source]]
name = "nginx"
paths = ["{}"]
packs = ["nginx-access"]

[[scenario]]
name = "http-probing"
rules = ["http-sensitive-path"]
capacity = 3
leak = "1m"
duration = "6s"
"#,
        access.display()
    );
    let d = Daemon::start_in(Some(&srv.name), dir.path(), &config);
    // The layer created its table in the server namespace (and only there).
    let table = srv.ok(&["nft", "list", "table", "inet", "shield"]);
    assert!(table.contains("ban4"), "{table}");

    // The attack: probes for sensitive paths.
    for p in [
        "/.env",
        "/.git/config",
        "/wp-login.php",
        "/phpmyadmin/",
        "/.aws/credentials",
    ] {
        curl(atk, &format!("http://10.231.1.1{p}"));
    }
    let banned_at = Instant::now();
    let in_set = wait_for(Duration::from_secs(10), || {
        let s = srv.ok(&["nft", "list", "set", "inet", "shield", "ban4"]);
        s.contains("10.231.1.2").then_some(s)
    });
    assert!(
        in_set.is_some(),
        "attacker not in the kernel set:\n{}",
        d.log()
    );
    assert!(d.active().iter().any(|x| x["target"] == "10.231.1.2/32"));

    // Dropped: the attacker's connection times out; the other client is served.
    assert!(
        !curl(atk, "http://10.231.1.1/"),
        "attacker still served after the ban"
    );
    assert!(
        curl(cli, "http://10.231.2.1/"),
        "innocent client must still be served"
    );

    // When the 6 s ban runs out in the kernel, the attacker gets through again.
    let back = wait_for(Duration::from_secs(20), || {
        curl(atk, "http://10.231.1.1/").then_some(())
    });
    assert!(
        back.is_some(),
        "attacker still blocked after the ban expired"
    );
    assert!(
        banned_at.elapsed() >= Duration::from_secs(4),
        "ban lifted too early"
    );
    assert!(d.active().is_empty());
    drop(d);
    // The test's namespaces (and their rules) are removed by Drop.
}
