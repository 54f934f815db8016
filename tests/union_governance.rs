//! Issue #23, governance over the union's own transport, with real daemons on
//! loopback: an amendment proposed on one member reaches the others by
//! itself, is signed there, is ratified once a strict majority signed, and
//! every member installs and enforces the new version without a file copied
//! by hand or a restart. The revoked member (its key held by this test) is
//! refused by every member afterwards.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Daemon, free_port, shield, wait_for};
use shield_core::{DecisionType, Net, Scope};
use shield_union::direct::PeerClient;
use shield_union::{Identity, SignalBody, Treaty};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn cli(args: &[&str]) -> String {
    let o = shield().arg("union").args(args).output().unwrap();
    assert!(
        o.status.success(),
        "shield union {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn digest_of(dir: &Path) -> String {
    Treaty::load(dir.join("treaty.toml")).unwrap().digest_hex()
}

fn running_digest(d: &Daemon) -> String {
    d.status()["union"]["treaty_digest"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Members `names` on free loopback ports, each in its own directory under `root` with its
/// key and the same hand-written version-1 treaty (the one time a treaty is installed by
/// hand), which also names `extra` (an identity with no daemon) and binds `ssh-test` to a
/// 1 h ban. Returns the ports, the identities and the directories, in `names`' order.
fn hand_written_union(
    root: &Path,
    names: [&str; 3],
    extra_name: &str,
    extra: &Identity,
) -> (Vec<u16>, Vec<Identity>, Vec<PathBuf>) {
    let ports: Vec<u16> = names.iter().map(|_| free_port()).collect();
    let ids: Vec<Identity> = names
        .iter()
        .map(|_| Identity::generate().unwrap())
        .collect();
    let mut treaty = String::from("name = \"gov\"\n[transport]\nsync_interval = \"200ms\"\n");
    for (i, n) in names.iter().enumerate() {
        treaty.push_str(&format!(
            "[[member]]\nname = \"{n}\"\nkey = \"{}\"\nendpoint = \"127.0.0.1:{}\"\n",
            ids[i].public_string(),
            ports[i]
        ));
    }
    treaty.push_str(&format!(
        "[[member]]\nname = \"{extra_name}\"\nkey = \"{}\"\nendpoint = \"127.0.0.1:1\"\n[[policy]]\nscenario = \"ssh-test\"\ntype = \"ban\"\nduration = \"1h\"\n",
        extra.public_string()
    ));
    let dirs = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let d = root.join(n);
            std::fs::create_dir_all(&d).unwrap();
            ids[i].write(&d.join("member.key"), false).unwrap();
            std::fs::write(d.join("treaty.toml"), &treaty).unwrap();
            d
        })
        .collect();
    (ports, ids, dirs)
}

/// A union member with no source (it enforces what the union sends), on the dry-run layer.
fn bare_member_config(name: &str, port: u16) -> String {
    format!(
        "[store]\npath = \"@DIR@/shield.db\"\n[firewall]\nbackend = \"dry-run\"\n[api]\nlisten = \"\"\nsocket = \"@DIR@/shield.sock\"\n[decisions]\nallow_own_addresses = false\n[union]\nmember = \"{name}\"\nkey = \"@DIR@/member.key\"\ntreaty = \"@DIR@/treaty.toml\"\nlisten = \"127.0.0.1:{port}\"\n"
    )
}

#[test]
fn a_revocation_spreads_is_signed_ratified_and_enforced_by_every_member() {
    let root = tempfile::tempdir().unwrap();
    let names = ["b", "c", "d"];
    let m = Identity::generate().unwrap();
    let (ports, ids, dirs) = hand_written_union(root.path(), names, "m", &m);
    let v1 = digest_of(&dirs[0]);
    let ds: Vec<Daemon> = (0..3)
        .map(|i| Daemon::start(&dirs[i], &bare_member_config(names[i], ports[i])))
        .collect();
    for d in &ds {
        let up = wait_for(Duration::from_secs(20), || {
            (running_digest(d) == v1).then_some(())
        });
        assert!(up.is_some(), "{}", d.log());
    }

    // b proposes to revoke m; nobody copies the amendment anywhere.
    let key = |i: usize| dirs[i].join("member.key").to_str().unwrap().to_string();
    let t = |i: usize| dirs[i].join("treaty.toml").to_str().unwrap().to_string();
    let out = cli(&[
        "propose",
        "--treaty",
        &t(0),
        "--member",
        "b",
        "--key",
        &key(0),
        "--revoke",
        "m",
    ]);
    let id = out.split_whitespace().nth(5).unwrap().to_string();
    // It reaches c over the transport; c signs it there.
    let arrived = wait_for(Duration::from_secs(20), || {
        let p = cli(&["pending", "--treaty", &t(1)]);
        p.contains(&id).then_some(())
    });
    assert!(
        arrived.is_some(),
        "the amendment never reached c:\n{}",
        ds[1].log()
    );
    // A minority (b alone, 1 of the 3 voters) has not ratified anything.
    assert_eq!(digest_of(&dirs[2]), v1);
    cli(&[
        "sign",
        &id,
        "--treaty",
        &t(1),
        "--member",
        "c",
        "--key",
        &key(1),
    ]);
    let signed = Instant::now();
    let mut v2 = String::new();
    for (i, d) in ds.iter().enumerate() {
        let got = wait_for(Duration::from_secs(20), || {
            let r = running_digest(d);
            (r != v1 && !r.is_empty()).then_some(r)
        });
        let got =
            got.unwrap_or_else(|| panic!("{} never installed version 2:\n{}", names[i], d.log()));
        if v2.is_empty() {
            v2 = got.clone();
        }
        assert_eq!(got, v2, "members ended on different versions");
    }
    println!(
        "last signature → every member enforcing version 2: {:?}",
        signed.elapsed()
    );
    for dir in &dirs {
        let h = cli(&[
            "history",
            "--treaty",
            dir.join("treaty.toml").to_str().unwrap(),
            "--genesis",
            &v1,
        ]);
        assert!(h.contains("verified") && h.contains("v2"), "{h}");
    }
    // m is refused by every member now; its key no longer opens a connection.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let target: Net = "203.0.113.51/32".parse().unwrap();
    let env = SignalBody {
        origin: "m".into(),
        seq: 1,
        time: now(),
        scope: Scope::of(&target),
        target,
        kind: DecisionType::Ban,
        duration_s: 3600,
        scenario: "ssh-test".into(),
        evidence: vec![],
        treaty: Treaty::load(dirs[0].join("treaty.toml")).unwrap().digest(),
    }
    .sign(&m);
    for (i, n) in names.iter().enumerate() {
        let c =
            PeerClient::new(&m, n, &ids[i].public(), &format!("127.0.0.1:{}", ports[i])).unwrap();
        assert!(
            rt.block_on(c.push(std::slice::from_ref(&env))).is_err(),
            "{n} still hears m"
        );
    }
    for d in &ds {
        assert!(!d.active().iter().any(|x| x["target"] == "203.0.113.51/32"));
    }
}

fn member_config(name: &str, port: u16) -> String {
    format!(
        r#"
[store]
path = "@DIR@/shield.db"
[engine]
no_default_scenarios = true
[firewall]
backend = "dry-run"
[api]
listen = ""
socket = "@DIR@/shield.sock"
[decisions]
allow_own_addresses = false
[decisions.escalation]
enabled = false
[union]
member = "{name}"
key = "@DIR@/member.key"
treaty = "@DIR@/treaty.toml"
listen = "127.0.0.1:{port}"
[[source]]
name = "sshd"
paths = ["@DIR@/auth.log"]
packs = ["sshd"]
[[scenario]]
name = "ssh-test"
rules = ["sshd-failed-password"]
capacity = 3
leak = "1h"
duration = "1h"
"#
    )
}

/// A union made with the CLI as a user would: each of `names` gets a directory under `root`
/// (key from `shield union keygen`, an empty auth.log), the first runs `union init`, the next
/// `founders - 1` run `union join`, and the resulting version-1 treaty (sync every 200 ms) is
/// installed by hand on the `founders`. Returns the ports and directories in `names`' order.
fn founded_by_cli(root: &Path, names: [&str; 3], founders: usize) -> (Vec<u16>, Vec<PathBuf>) {
    let ports: Vec<u16> = names.iter().map(|_| free_port()).collect();
    let dirs: Vec<PathBuf> = names
        .iter()
        .map(|n| {
            let d = root.join(n);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("auth.log"), "").unwrap();
            cli(&["keygen", "--out", d.join("member.key").to_str().unwrap()]);
            d
        })
        .collect();
    let key = |i: usize| dirs[i].join("member.key").to_str().unwrap().to_string();
    let t = |i: usize| dirs[i].join("treaty.toml").to_str().unwrap().to_string();
    cli(&[
        "init",
        "--union",
        "gov",
        "--member",
        names[0],
        "--key",
        &key(0),
        "--endpoint",
        &format!("127.0.0.1:{}", ports[0]),
        "--bind",
        "ssh-test=ban:1h",
        "--out",
        &t(0),
    ]);
    for i in 1..founders {
        cli(&[
            "join",
            "--treaty",
            &t(0),
            "--member",
            names[i],
            "--key",
            &key(i),
            "--endpoint",
            &format!("127.0.0.1:{}", ports[i]),
        ]);
    }
    let text = std::fs::read_to_string(t(0))
        .unwrap()
        .replace("sync_interval = \"2s\"", "sync_interval = \"200ms\"");
    for i in 0..founders {
        std::fs::write(t(i), &text).unwrap();
    }
    (ports, dirs)
}

fn attack(log: &Path, ip: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(log).unwrap();
    for i in 0..5 {
        writeln!(f, "{}", common::ssh_fail(ip, i)).unwrap();
    }
}

fn has(d: &Daemon, ip: &str, origin: &str) -> bool {
    d.active()
        .iter()
        .any(|x| x["target"] == format!("{ip}/32").as_str() && x["origin"] == origin)
}

/// A new host joins with `join --via` an invitation once the members ratified
/// its admission: it receives the treaty and history over the transport,
/// verifies them from the genesis digest, and enforces the union's bans —
/// the one made before its admission (signed under version 1) and a new one.
#[test]
fn a_new_member_joins_via_an_invitation_without_copying_files() {
    let root = tempfile::tempdir().unwrap();
    let names = ["b", "c", "e"];
    // Version 1 is installed by hand on the founding members b and c, as today.
    let (ports, dirs) = founded_by_cli(root.path(), names, 2);
    let key = |i: usize| dirs[i].join("member.key").to_str().unwrap().to_string();
    let t = |i: usize| dirs[i].join("treaty.toml").to_str().unwrap().to_string();
    let genesis = digest_of(&dirs[0]);
    let mut ds: Vec<Daemon> = (0..2)
        .map(|i| Daemon::start(&dirs[i], &member_config(names[i], ports[i])))
        .collect();
    attack(&dirs[0].join("auth.log"), "203.0.113.71");
    let ok = wait_for(Duration::from_secs(20), || {
        has(&ds[1], "203.0.113.71", "union:b").then_some(())
    });
    assert!(ok.is_some(), "{}", ds[1].log());

    // Before admission the new host is refused.
    let inv = cli(&["invite", "--treaty", &t(0), "--member", "b"]);
    let o = shield()
        .args([
            "union",
            "join",
            "--treaty",
            &t(2),
            "--member",
            "e",
            "--key",
            &key(2),
            "--via",
            inv.trim(),
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("until the union ratified"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    let e_pub = Identity::load(&dirs[2].join("member.key"))
        .unwrap()
        .public_string();
    let out = cli(&[
        "propose",
        "--treaty",
        &t(0),
        "--member",
        "b",
        "--key",
        &key(0),
        "--add",
        "e",
        "--public-key",
        &e_pub,
        "--endpoint",
        &format!("127.0.0.1:{}", ports[2]),
    ]);
    let id = out.split_whitespace().nth(5).unwrap().to_string();
    let arrived = wait_for(Duration::from_secs(20), || {
        cli(&["pending", "--treaty", &t(1)])
            .contains(&id)
            .then_some(())
    });
    assert!(arrived.is_some(), "{}", ds[1].log());
    cli(&[
        "sign",
        &id,
        "--treaty",
        &t(1),
        "--member",
        "c",
        "--key",
        &key(1),
    ]);
    for d in &ds {
        let v2 = wait_for(Duration::from_secs(20), || {
            let r = running_digest(d);
            (r != genesis && !r.is_empty()).then_some(())
        });
        assert!(v2.is_some(), "{}", d.log());
    }
    // The new host: an invitation, no file copied.
    let out = cli(&[
        "join",
        "--treaty",
        &t(2),
        "--member",
        "e",
        "--key",
        &key(2),
        "--via",
        inv.trim(),
    ]);
    assert!(out.contains("version 2") && out.contains(&genesis), "{out}");
    assert_eq!(digest_of(&dirs[2]), digest_of(&dirs[0]));
    ds.push(Daemon::start(&dirs[2], &member_config("e", ports[2])));
    // The ban made under version 1 reaches e by anti-entropy, and a new one by push.
    let old = wait_for(Duration::from_secs(20), || {
        has(&ds[2], "203.0.113.71", "union:b").then_some(())
    });
    assert!(
        old.is_some(),
        "e never got the earlier ban:\n{}",
        ds[2].log()
    );
    attack(&dirs[1].join("auth.log"), "203.0.113.72");
    for i in [0, 2] {
        let ok = wait_for(Duration::from_secs(20), || {
            has(&ds[i], "203.0.113.72", "union:c").then_some(())
        });
        assert!(
            ok.is_some(),
            "{} never got c's ban:\n{}",
            names[i],
            ds[i].log()
        );
    }
}

/// A member offline through two amendments catches the chain up when it
/// returns (versions 2 and 3 from a peer, each verified) and runs the current
/// version, without anything copied.
#[test]
fn a_member_offline_through_two_amendments_catches_up() {
    let root = tempfile::tempdir().unwrap();
    let names = ["b", "c", "d"];
    let x = Identity::generate().unwrap();
    let (ports, _ids, dirs) = hand_written_union(root.path(), names, "x", &x);
    let key = |i: usize| dirs[i].join("member.key").to_str().unwrap().to_string();
    let t = |i: usize| dirs[i].join("treaty.toml").to_str().unwrap().to_string();
    let cfg = |i: usize| bare_member_config(names[i], ports[i]);
    let v1 = digest_of(&dirs[0]);
    let ds: Vec<Daemon> = (0..2).map(|i| Daemon::start(&dirs[i], &cfg(i))).collect();
    // d stays down through two amendments: revoke x, then add y.
    let y = Identity::generate().unwrap().public_string();
    let steps: [&[&str]; 2] = [
        &["--revoke", "x"],
        &[
            "--add",
            "y",
            "--public-key",
            &y,
            "--endpoint",
            "127.0.0.1:3",
        ],
    ];
    let mut digest = v1.clone();
    let (t0, k0) = (t(0), key(0));
    for step in steps {
        let mut args = vec!["propose", "--treaty", &t0, "--member", "b", "--key", &k0];
        args.extend_from_slice(step);
        let out = cli(&args);
        let id = out.split_whitespace().nth(5).unwrap().to_string();
        let arrived = wait_for(Duration::from_secs(20), || {
            cli(&["pending", "--treaty", &t(1)])
                .contains(&id)
                .then_some(())
        });
        assert!(arrived.is_some(), "{}", ds[1].log());
        cli(&[
            "sign",
            &id,
            "--treaty",
            &t(1),
            "--member",
            "c",
            "--key",
            &key(1),
        ]);
        let next = wait_for(Duration::from_secs(20), || {
            let r = running_digest(&ds[0]);
            (r != digest && r == running_digest(&ds[1])).then_some(r)
        });
        digest = next.unwrap_or_else(|| panic!("step {step:?} not installed:\n{}", ds[0].log()));
    }
    assert_eq!(digest_of(&dirs[2]), v1, "d was down: still on version 1");
    let d = Daemon::start(&dirs[2], &cfg(2));
    let caught = wait_for(Duration::from_secs(20), || {
        (running_digest(&d) == digest).then_some(())
    });
    assert!(caught.is_some(), "d never caught up:\n{}", d.log());
    let h = cli(&["history", "--treaty", &t(2), "--genesis", &v1]);
    assert!(h.contains("verified") && h.contains("v3"), "{h}");
}

/// A member rotates its own key: it proposes the new key (the old one is
/// revoked from that version on), another member signs, and once the new key
/// file is installed the member's signals flow again under the new key.
#[test]
fn a_key_rotation_keeps_the_members_signals_flowing() {
    let root = tempfile::tempdir().unwrap();
    let names = ["b", "c", "d"];
    let (ports, dirs) = founded_by_cli(root.path(), names, 3);
    let key = |i: usize| dirs[i].join("member.key").to_str().unwrap().to_string();
    let t = |i: usize| dirs[i].join("treaty.toml").to_str().unwrap().to_string();
    let v1 = digest_of(&dirs[0]);
    let ds: Vec<Daemon> = (0..3)
        .map(|i| Daemon::start(&dirs[i], &member_config(names[i], ports[i])))
        .collect();
    attack(&dirs[2].join("auth.log"), "203.0.113.81");
    for d in &ds[..2] {
        let ok = wait_for(Duration::from_secs(20), || {
            has(d, "203.0.113.81", "union:d").then_some(())
        });
        assert!(ok.is_some(), "{}", d.log());
    }
    // d makes a new key and proposes it, signed with its current key.
    let new_key = dirs[2].join("new.key");
    let new_pub = cli(&["keygen", "--out", new_key.to_str().unwrap()]);
    let out = cli(&[
        "propose",
        "--treaty",
        &t(2),
        "--member",
        "d",
        "--key",
        &key(2),
        "--rotate-key",
        "--public-key",
        new_pub.trim(),
    ]);
    let id = out.split_whitespace().nth(5).unwrap().to_string();
    let arrived = wait_for(Duration::from_secs(20), || {
        cli(&["pending", "--treaty", &t(0)])
            .contains(&id)
            .then_some(())
    });
    assert!(arrived.is_some(), "{}", ds[0].log());
    cli(&[
        "sign",
        &id,
        "--treaty",
        &t(0),
        "--member",
        "b",
        "--key",
        &key(0),
    ]);
    for d in &ds[..2] {
        let v2 = wait_for(Duration::from_secs(20), || {
            let r = running_digest(d);
            (r != v1 && !r.is_empty()).then_some(())
        });
        assert!(v2.is_some(), "{}", d.log());
    }
    // d installs its new key; its union restarts on version 2 by itself.
    let installed = wait_for(Duration::from_secs(20), || {
        (digest_of(&dirs[2]) != v1).then_some(())
    });
    assert!(installed.is_some(), "{}", ds[2].log());
    std::fs::rename(&new_key, dirs[2].join("member.key")).unwrap();
    let v2 = digest_of(&dirs[0]);
    let up = wait_for(Duration::from_secs(20), || {
        (running_digest(&ds[2]) == v2).then_some(())
    });
    assert!(
        up.is_some(),
        "d never ran version 2 with its new key:\n{}",
        ds[2].log()
    );
    attack(&dirs[2].join("auth.log"), "203.0.113.82");
    for i in 0..2 {
        let ok = wait_for(Duration::from_secs(20), || {
            has(&ds[i], "203.0.113.82", "union:d").then_some(())
        });
        assert!(
            ok.is_some(),
            "{} never got d's ban after the rotation:\n{}",
            names[i],
            ds[i].log()
        );
    }
}

/// Members killed (SIGKILL, real processes) in the middle of an amendment:
/// `d` is killed with the amendment pending and its own competing proposal
/// unsigned, `c` right after signing (before or after its daemon spread the
/// signature). Whatever was on disk when they died, every member ends on the
/// same version 2 — the amendment completes once `c` is back — and `d`'s
/// proposal for the same version is void everywhere.
#[test]
fn members_killed_during_an_amendment_end_on_the_same_treaty() {
    let root = tempfile::tempdir().unwrap();
    let names = ["b", "c", "d"];
    let m = Identity::generate().unwrap();
    let (ports, _ids, dirs) = hand_written_union(root.path(), names, "m", &m);
    let v1 = digest_of(&dirs[0]);
    let mut ds: Vec<Daemon> = (0..3)
        .map(|i| Daemon::start(&dirs[i], &bare_member_config(names[i], ports[i])))
        .collect();
    for d in &ds {
        let up = wait_for(Duration::from_secs(20), || {
            (running_digest(d) == v1).then_some(())
        });
        assert!(up.is_some(), "{}", d.log());
    }
    let key = |i: usize| dirs[i].join("member.key").to_str().unwrap().to_string();
    let t = |i: usize| dirs[i].join("treaty.toml").to_str().unwrap().to_string();
    let propose = |i: usize, revoke: &str| {
        let out = cli(&[
            "propose",
            "--treaty",
            &t(i),
            "--member",
            names[i],
            "--key",
            &key(i),
            "--revoke",
            revoke,
        ]);
        out.split_whitespace().nth(5).unwrap().to_string()
    };
    let id = propose(0, "m");
    let rival = propose(2, "b");
    for i in 0..3 {
        let arrived = wait_for(Duration::from_secs(20), || {
            let p = cli(&["pending", "--treaty", &t(i)]);
            (p.contains(&id) && p.contains(&rival)).then_some(())
        });
        assert!(
            arrived.is_some(),
            "{} lacks a proposal:\n{}",
            names[i],
            ds[i].log()
        );
    }
    ds[2].kill();
    cli(&[
        "sign",
        &id,
        "--treaty",
        &t(1),
        "--member",
        "c",
        "--key",
        &key(1),
    ]);
    ds[1].kill();
    // Only b runs. Whatever it knows, it never installs anything but `id`.
    std::thread::sleep(Duration::from_millis(500));
    let b_now = digest_of(&dirs[0]);
    assert!(b_now == v1 || running_digest(&ds[0]) == b_now);

    ds[1].restart();
    ds[2].restart();
    let mut v2 = String::new();
    for (i, d) in ds.iter().enumerate() {
        let got = wait_for(Duration::from_secs(30), || {
            let r = running_digest(d);
            (r != v1 && !r.is_empty()).then_some(r)
        });
        let got =
            got.unwrap_or_else(|| panic!("{} never installed version 2:\n{}", names[i], d.log()));
        if v2.is_empty() {
            v2 = got.clone();
        }
        assert_eq!(got, v2, "members ended on different treaties");
    }
    for i in 0..3 {
        assert_eq!(digest_of(&dirs[i]), v2, "{}'s treaty file", names[i]);
        let h = cli(&["history", "--treaty", &t(i), "--genesis", &v1]);
        assert!(h.contains("verified") && h.contains("v2"), "{h}");
        let now_t = Treaty::load(dirs[i].join("treaty.toml")).unwrap();
        assert!(now_t.member("m").is_none(), "the ratified version is b's");
        assert!(
            now_t.member("b").is_some(),
            "d's rival proposal was installed"
        );
        let p = cli(&["pending", "--treaty", &t(i)]);
        assert!(
            !p.contains(&rival),
            "d's void proposal is still pending on {}: {p}",
            names[i]
        );
    }
}
