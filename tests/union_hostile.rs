//! Issue #23 item 7 with a real daemon: a member's own key (held by this
//! test) drives shield-union's client against `shield run`'s union listener.
//! After `shield decisions delete`, the next signal for the same target must
//! not ban it again: the daemon pardons the target in the union.

mod common;

use std::time::Duration;

use common::{Daemon, free_port, wait_for};
use shield_core::{DecisionType, Net, Scope};
use shield_union::direct::PeerClient;
use shield_union::{Envelope, Identity, SignalBody, Treaty};

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

fn signal(from: &Identity, origin: &str, seq: u64, ip: &str, digest: [u8; 32]) -> Envelope {
    let target: Net = format!("{ip}/32").parse().unwrap();
    SignalBody {
        origin: origin.into(),
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
    .sign(from)
}

/// Governance step 1 with a running member: `b` and `c` ratify the revocation
/// of `m` with `shield union propose/sign/ratify` on b's treaty; b's daemon
/// picks up the new version by itself (no restart) and refuses `m` from then
/// on, while `c`'s signals under the new digest are enforced.
#[test]
fn a_ratified_revocation_applies_to_a_running_member_without_restart() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("b");
    std::fs::create_dir_all(&dir).unwrap();
    let (m, b, c) = (
        Identity::generate().unwrap(),
        Identity::generate().unwrap(),
        Identity::generate().unwrap(),
    );
    b.write(&dir.join("member.key"), false).unwrap();
    c.write(&root.path().join("c.key"), false).unwrap();
    let port = free_port();
    let treaty_path = dir.join("treaty.toml");
    let treaty = format!(
        r#"name = "u"
[[member]]
name = "b"
key = "{}"
endpoint = "127.0.0.1:{port}"
[[member]]
name = "c"
key = "{}"
endpoint = "127.0.0.1:1"
[[member]]
name = "m"
key = "{}"
endpoint = "127.0.0.1:2"
[[policy]]
scenario = "ssh-test"
type = "ban"
duration = "1h"
"#,
        b.public_string(),
        c.public_string(),
        m.public_string()
    );
    std::fs::write(&treaty_path, &treaty).unwrap();
    let digest = Treaty::load(&treaty_path).unwrap().digest();
    let config = format!(
        "[store]\npath = \"@DIR@/shield.db\"\n[firewall]\nbackend = \"dry-run\"\n[api]\nlisten = \"\"\nsocket = \"@DIR@/shield.sock\"\n[decisions]\nallow_own_addresses = false\n[union]\nmember = \"b\"\nkey = \"@DIR@/member.key\"\ntreaty = \"@DIR@/treaty.toml\"\nlisten = \"127.0.0.1:{port}\"\n"
    );
    let d = Daemon::start(&dir, &config);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ep = format!("127.0.0.1:{port}");
    let from_m = PeerClient::new(&m, "b", &b.public(), &ep).unwrap();
    let from_c = PeerClient::new(&c, "b", &b.public(), &ep).unwrap();
    let ok = wait_for(Duration::from_secs(20), || {
        rt.block_on(from_m.push(&[signal(&m, "m", 1, "203.0.113.41", digest)]))
            .ok()
    });
    assert!(ok.is_some(), "{}", d.log());
    let banned = wait_for(Duration::from_secs(20), || {
        d.active()
            .iter()
            .any(|x| x["target"] == "203.0.113.41/32")
            .then_some(())
    });
    assert!(banned.is_some(), "{}", d.log());

    let cli = |args: &[&str]| {
        let o = common::shield().arg("union").args(args).output().unwrap();
        assert!(
            o.status.success(),
            "shield union {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    let t = treaty_path.to_str().unwrap();
    let out = cli(&[
        "propose",
        "--treaty",
        t,
        "--member",
        "b",
        "--key",
        dir.join("member.key").to_str().unwrap(),
        "--revoke",
        "m",
    ]);
    let id = out.split_whitespace().nth(5).unwrap().to_string();
    cli(&[
        "sign",
        &id,
        "--treaty",
        t,
        "--member",
        "c",
        "--key",
        root.path().join("c.key").to_str().unwrap(),
    ]);
    cli(&["ratify", "--treaty", t]);
    let ratified = std::time::Instant::now();
    let new_digest = Treaty::load(&treaty_path).unwrap().digest();
    assert_ne!(new_digest, digest);
    // m is refused from the new version on (its TLS handshake, as revoked).
    let refused = wait_for(Duration::from_secs(10), || {
        rt.block_on(from_m.push(&[signal(&m, "m", 2, "203.0.113.42", new_digest)]))
            .is_err()
            .then_some(())
    });
    assert!(
        refused.is_some(),
        "m still heard after its revocation:\n{}",
        d.log()
    );
    println!("m refused {:?} after ratification", ratified.elapsed());
    // c, under the new digest, is enforced.
    let ok = wait_for(Duration::from_secs(10), || {
        rt.block_on(from_c.push(&[signal(&c, "c", 1, "203.0.113.43", new_digest)]))
            .ok()
    });
    assert!(ok.is_some(), "{}", d.log());
    let banned = wait_for(Duration::from_secs(10), || {
        d.active()
            .iter()
            .any(|x| x["target"] == "203.0.113.43/32" && x["origin"] == "union:c")
            .then_some(())
    });
    assert!(banned.is_some(), "{}", d.log());
    assert!(!d.active().iter().any(|x| x["target"] == "203.0.113.42/32"));
    assert!(
        d.log()
            .contains("union restarted on the new treaty version")
    );
}
