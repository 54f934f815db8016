//! Issue #5's proof with real daemons: three `shield` members, each in its own
//! network namespace with its own nftables, joined by a bridge. An attack seen
//! in A's log is dropped at B and C too; a member that was down catches up
//! from whoever is up.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Daemon, Netns, require, run, shield, ssh_fail, wait_for};

/// A bridge in `hub` with each namespace plugged in at 10.77.0.<n>/24.
fn plug(hub: &Netns, ns: &Netns, n: u8) {
    let hv = format!("v{n}-{}", std::process::id() % 10000);
    let o = run(&[
        "ip", "link", "add", &hv, "netns", &hub.name, "type", "veth", "peer", "name", "eth0",
        "netns", &ns.name,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    hub.ok(&["ip", "link", "set", &hv, "master", "br0"]);
    hub.ok(&["ip", "link", "set", &hv, "up"]);
    ns.ok(&[
        "ip",
        "addr",
        "add",
        &format!("10.77.0.{n}/24"),
        "dev",
        "eth0",
    ]);
    ns.ok(&["ip", "link", "set", "eth0", "up"]);
}

fn union_cli(args: &[&str]) -> String {
    let o = shield().arg("union").args(args).output().unwrap();
    assert!(
        o.status.success(),
        "shield union {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn member_config(dir: &Path, name: &str, ip: &str, treaty: &Path) -> String {
    format!(
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

[decisions.escalation]
enabled = false

[union]
member = "{name}"
key = "{key}"
treaty = "{treaty}"
listen = "{ip}:7443"

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
"#,
        key = dir.join("member.key").display(),
        treaty = treaty.display(),
    )
}

fn in_set(ns: &Netns, ip: &str) -> bool {
    ns.exec(&["nft", "list", "set", "inet", "shield", "ban4"])
        .stdout
        .windows(ip.len())
        .any(|w| w == ip.as_bytes())
}

fn reachable(from: &Netns, ip: &str) -> bool {
    from.exec(&[
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "--max-time",
        "2",
        &format!("http://{ip}:8080/"),
    ])
    .status
    .success()
}

fn attack(log: &Path, ip: &str) {
    let lines: Vec<String> = (0..5).map(|i| ssh_fail(ip, i)).collect();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(log)
        .unwrap();
    use std::io::Write;
    writeln!(f, "{}", lines.join("\n")).unwrap();
}

#[test]
fn attack_on_one_member_is_dropped_by_all_and_a_returning_member_catches_up() {
    require("nft", "nftables");
    require("curl", "curl");
    require("python3", "python3");
    let hub = Netns::new("hub");
    hub.ok(&["ip", "link", "add", "br0", "type", "bridge"]);
    hub.ok(&["ip", "link", "set", "br0", "up"]);
    let names = ["a", "b", "c"];
    let nss: Vec<Netns> = names.iter().map(|n| Netns::new(&format!("u{n}"))).collect();
    let atk = Netns::new("uatk");
    for (i, ns) in nss.iter().enumerate() {
        plug(&hub, ns, i as u8 + 1);
    }
    plug(&hub, &atk, 100);

    // Keys and one treaty binding the scenario.
    let root = tempfile::tempdir().unwrap();
    let treaty = root.path().join("treaty.toml");
    let dirs: Vec<_> = names
        .iter()
        .map(|n| {
            let d = root.path().join(n);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("auth.log"), "").unwrap();
            union_cli(&["keygen", "--out", d.join("member.key").to_str().unwrap()]);
            d
        })
        .collect();
    union_cli(&[
        "init",
        "--union",
        "test",
        "--member",
        "a",
        "--key",
        dirs[0].join("member.key").to_str().unwrap(),
        "--endpoint",
        "10.77.0.1:7443",
        "--bind",
        "ssh-test=ban:1h",
        "--out",
        treaty.to_str().unwrap(),
    ]);
    for (i, n) in names.iter().enumerate().skip(1) {
        union_cli(&[
            "join",
            "--treaty",
            treaty.to_str().unwrap(),
            "--member",
            n,
            "--key",
            dirs[i].join("member.key").to_str().unwrap(),
            "--endpoint",
            &format!("10.77.0.{}:7443", i + 1),
        ]);
    }

    // A web server in each member namespace, to see real packets dropped.
    let mut servers = Vec::new();
    for (i, ns) in nss.iter().enumerate() {
        let ip = format!("10.77.0.{}", i + 1);
        servers.push(
            ns.cmd("python3")
                .args([
                    "-m",
                    "http.server",
                    "8080",
                    "--bind",
                    &ip,
                    "--directory",
                    "/",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
    }
    for i in 0..3 {
        let ip = format!("10.77.0.{}", i + 1);
        assert!(
            wait_for(Duration::from_secs(10), || reachable(&atk, &ip)
                .then_some(()))
            .is_some(),
            "member {ip} not reachable before any ban"
        );
    }

    let mut ds: Vec<Daemon> = (0..3)
        .map(|i| {
            let cfg = member_config(&dirs[i], names[i], &format!("10.77.0.{}", i + 1), &treaty);
            Daemon::start_in(Some(&nss[i].name), &dirs[i], &cfg)
        })
        .collect();

    // 1. Attack A: the attacker is dropped at A, B and C.
    let t0 = Instant::now();
    attack(&dirs[0].join("auth.log"), "10.77.0.100");
    let mut at = Vec::new();
    for (i, ns) in nss.iter().enumerate() {
        let ok = wait_for(Duration::from_secs(30), || {
            in_set(ns, "10.77.0.100").then_some(t0.elapsed())
        });
        assert!(
            ok.is_some(),
            "member {} never banned the attacker:\n{}",
            names[i],
            ds[i].log()
        );
        at.push(ok.unwrap());
    }
    eprintln!(
        "line appended at A -> kernel set: A {:?}, B {:?}, C {:?}",
        at[0], at[1], at[2]
    );
    for (i, name) in names.iter().enumerate() {
        assert!(
            !reachable(&atk, &format!("10.77.0.{}", i + 1)),
            "attacker still reaches member {name}"
        );
    }
    let b = ds[1].active();
    assert!(
        b.iter()
            .any(|d| d["target"] == "10.77.0.100/32" && d["origin"] == "union:a"),
        "{b:?}"
    );

    // 2. C stops; A is attacked from several addresses; A stops; C restarts and gets all from B.
    ds[2].stop();
    let more: Vec<String> = (1..=4).map(|k| format!("198.51.100.{k}")).collect();
    for ip in &more {
        attack(&dirs[0].join("auth.log"), ip);
    }
    for ip in &more {
        let seen = wait_for(Duration::from_secs(30), || {
            in_set(&nss[1], ip).then_some(())
        });
        assert!(seen.is_some(), "B never got {ip}:\n{}", ds[1].log());
    }
    ds[0].stop();
    ds[2].restart();
    for ip in &more {
        let seen = wait_for(Duration::from_secs(30), || {
            in_set(&nss[2], ip).then_some(())
        });
        assert!(
            seen.is_some(),
            "C did not catch up on {ip} from B:\n{}",
            ds[2].log()
        );
    }
    let c = ds[2].active();
    for ip in &more {
        assert!(
            c.iter()
                .any(|d| d["target"] == format!("{ip}/32").as_str() && d["origin"] == "union:a"),
            "C lacks {ip}: {c:?}"
        );
    }
    for mut s in servers {
        let _ = s.kill();
        let _ = s.wait();
    }
}
