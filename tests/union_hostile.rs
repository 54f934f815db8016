//! Issue #23 item 7 with a real daemon: a member's own key (held by this
//! test) drives shield-union's client against `shield run`'s union listener.
//! After `shield decisions delete`, the next signal for the same target must
//! not ban it again: the daemon pardons the target in the union.

mod common;

use std::time::Duration;

use common::{Daemon, free_port, wait_for};
use shield_core::{DecisionType, Net, Scope};
use shield_union::direct::PeerClient;
use shield_union::{Identity, SignalBody, Treaty};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn has_union_ban(d: &Daemon, ip: &str) -> bool {
    d.active()
        .iter()
        .any(|x| x["target"] == format!("{ip}/32").as_str() && x["origin"] == "union:m")
}

#[test]
fn a_local_delete_sticks_against_the_next_union_signal() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("b");
    std::fs::create_dir_all(&dir).unwrap();
    let (m, b) = (Identity::generate().unwrap(), Identity::generate().unwrap());
    b.write(&dir.join("member.key"), false).unwrap();
    let port = free_port();
    let treaty = format!(
        r#"name = "u"
[[member]]
name = "b"
key = "{}"
endpoint = "127.0.0.1:{port}"
[[member]]
name = "m"
key = "{}"
endpoint = "127.0.0.1:1"
[[policy]]
scenario = "ssh-test"
type = "ban"
duration = "1h"
"#,
        b.public_string(),
        m.public_string()
    );
    std::fs::write(dir.join("treaty.toml"), &treaty).unwrap();
    let digest = Treaty::parse(&treaty, &dir.join("treaty.toml"))
        .unwrap()
        .digest();
    let config = format!(
        r#"
[store]
path = "@DIR@/shield.db"
[firewall]
backend = "dry-run"
[api]
listen = ""
socket = "@DIR@/shield.sock"
[decisions]
allow_own_addresses = false
[union]
member = "b"
key = "@DIR@/member.key"
treaty = "@DIR@/treaty.toml"
listen = "127.0.0.1:{port}"
"#
    );
    let d = Daemon::start(&dir, &config);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = PeerClient::new(&m, "b", &b.public(), &format!("127.0.0.1:{port}")).unwrap();
    let push = |seq: u64| {
        let target: Net = "203.0.113.31/32".parse().unwrap();
        let env = SignalBody {
            origin: "m".into(),
            seq,
            time: now(),
            scope: Scope::of(&target),
            target,
            kind: DecisionType::Ban,
            duration_s: 3600,
            scenario: "ssh-test".into(),
            evidence: vec![],
            treaty: digest,
        }
        .sign(&m);
        let r = wait_for(Duration::from_secs(20), || {
            rt.block_on(client.push(std::slice::from_ref(&env))).ok()
        });
        assert!(
            r.is_some(),
            "b's union listener never took the push:\n{}",
            d.log()
        );
    };
    push(1);
    let banned = wait_for(Duration::from_secs(20), || {
        has_union_ban(&d, "203.0.113.31").then_some(())
    });
    assert!(
        banned.is_some(),
        "the first signal was not enforced:\n{}",
        d.log()
    );
    let out = d.cli(&["decisions", "delete", "203.0.113.31"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!has_union_ban(&d, "203.0.113.31"));
    // The daemon hands the pardon to the union task; the next signal is judged after it.
    let pardoned = wait_for(Duration::from_secs(10), || {
        d.log().contains("deleted locally").then_some(())
    });
    assert!(
        pardoned.is_some(),
        "the daemon did not pardon the target:\n{}",
        d.log()
    );
    push(2);
    // The push returned once b judged the signal; its status (refreshed every
    // second) says how. Refused as pardoned, it produced no decision at all.
    let judged = wait_for(Duration::from_secs(10), || {
        let s = d.status();
        (s["union"]["counters"]["refused"]["pardoned"].as_u64() == Some(1)).then_some(())
    });
    assert!(
        judged.is_some(),
        "the second signal was not refused as pardoned:\n{}",
        d.log()
    );
    assert!(
        !has_union_ban(&d, "203.0.113.31"),
        "the next union signal re-banned a target the operator deleted:\n{}",
        d.log()
    );
}
