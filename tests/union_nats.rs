//! Issue #6 with real daemons: three `shield run` members whose treaty carries
//! the union over a real `nats-server` with JetStream (Debian package
//! `nats-server`). A ban at A reaches B and C; C, stopped while A is attacked
//! again, comes back and gets every signal it missed from the stream, even
//! with A gone.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Daemon, NatsServer, free_port, shield, ssh_fail, wait_for};

fn union_cli(args: &[&std::ffi::OsStr]) {
    let o = shield().arg("union").args(args).output().unwrap();
    assert!(
        o.status.success(),
        "shield union {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn config(dir: &Path, name: &str, treaty: &Path) -> String {
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
key = "{}"
treaty = "{}"
listen = "127.0.0.1:{}"
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
        dir.join("member.key").display(),
        treaty.display(),
        free_port()
    )
}

fn attack(log: &Path, ip: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(log).unwrap();
    for i in 0..5 {
        writeln!(f, "{}", ssh_fail(ip, i)).unwrap();
    }
}

fn has(d: &Daemon, ip: &str) -> bool {
    d.active()
        .iter()
        .any(|x| x["target"] == format!("{ip}/32").as_str() && x["origin"] == "union:a")
}

#[test]
fn daemons_share_bans_over_nats_and_a_returning_member_gets_what_it_missed() {
    let nats = NatsServer::start();
    let url = nats.url.clone();
    let root = tempfile::tempdir().unwrap();
    let treaty = root.path().join("treaty.toml");
    let names = ["a", "b", "c"];
    let dirs: Vec<PathBuf> = names
        .iter()
        .map(|n| {
            let d = root.path().join(n);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("auth.log"), "").unwrap();
            union_cli(&[
                "keygen".as_ref(),
                "--out".as_ref(),
                d.join("member.key").as_os_str(),
            ]);
            d
        })
        .collect();
    union_cli(&[
        "init".as_ref(),
        "--union".as_ref(),
        "natsunion".as_ref(),
        "--member".as_ref(),
        "a".as_ref(),
        "--key".as_ref(),
        dirs[0].join("member.key").as_os_str(),
        "--endpoint".as_ref(),
        "127.0.0.1:1".as_ref(),
        "--bind".as_ref(),
        "ssh-test=ban:1h".as_ref(),
        "--out".as_ref(),
        treaty.as_os_str(),
    ]);
    for (i, n) in names.iter().enumerate().skip(1) {
        union_cli(&[
            "join".as_ref(),
            "--treaty".as_ref(),
            treaty.as_os_str(),
            "--member".as_ref(),
            n.as_ref(),
            "--key".as_ref(),
            dirs[i].join("member.key").as_os_str(),
            "--endpoint".as_ref(),
            "127.0.0.1:1".as_ref(),
        ]);
    }
    let text = std::fs::read_to_string(&treaty).unwrap();
    assert!(text.contains("kind = \"direct\""), "{text}");
    std::fs::write(
        &treaty,
        text.replace(
            "kind = \"direct\"",
            &format!("kind = \"nats\"\nurl = \"{url}\""),
        ),
    )
    .unwrap();

    let mut ds: Vec<Daemon> = (0..3)
        .map(|i| Daemon::start(&dirs[i], &config(&dirs[i], names[i], &treaty)))
        .collect();

    attack(&dirs[0].join("auth.log"), "203.0.113.61");
    for (i, d) in ds.iter().enumerate().skip(1) {
        let ok = wait_for(Duration::from_secs(30), || {
            has(d, "203.0.113.61").then_some(())
        });
        assert!(
            ok.is_some(),
            "member {} never got A's ban over NATS:\n{}",
            names[i],
            d.log()
        );
    }

    ds[2].stop();
    let more = ["203.0.113.62", "203.0.113.63", "203.0.113.64"];
    for ip in more {
        attack(&dirs[0].join("auth.log"), ip);
    }
    for ip in more {
        let ok = wait_for(Duration::from_secs(30), || has(&ds[1], ip).then_some(()));
        assert!(ok.is_some(), "B never got {ip}:\n{}", ds[1].log());
    }
    ds[0].stop();
    ds[2].restart();
    for ip in more {
        let ok = wait_for(Duration::from_secs(30), || has(&ds[2], ip).then_some(()));
        assert!(
            ok.is_some(),
            "C did not get {ip} after coming back:\n{}",
            ds[2].log()
        );
    }
}
