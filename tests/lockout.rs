//! No self-lockout: the real daemon, in a network namespace of its own, never
//! bans this host's own addresses, the allowlist, or the peer of an
//! established SSH session to the local sshd port — unless the operator sets
//! `[decisions] allow_ssh_sessions = false`. The "operator" is a real TCP
//! connection to port 22 from a second namespace, so the daemon finds it in
//! the kernel's socket table as it would a real sshd session.

mod common;

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Config, Daemon, Netns, require, ssh_fail, wait_for};

const HOST: &str = "10.77.0.1";
const OPERATOR: &str = "10.77.0.2";
const ATTACKER: &str = "203.0.113.66";
const LISTED: &str = "198.51.100.40";

fn cfg(dir: &std::path::Path, allow_ssh_sessions: bool) -> String {
    Config::new()
        .decisions(&format!(
            "allowlist = [\"{LISTED}/32\"]\nallow_ssh_sessions = {allow_ssh_sessions}"
        ))
        .allow_own_addresses(true)
        .ssh_test_scenario("10m")
        .sshd_files(&format!("{}/auth.log", dir.display()))
        .build()
}

/// A stand-in sshd on port 22 in `host`, and an operator in `client` holding
/// an established connection to it. Both are killed when the namespaces drop.
fn operator_session(host: &Netns, client: &Netns) -> (Child, Child) {
    require("python3", "python3");
    let server = host
        .cmd("python3")
        .args([
            "-c",
            "import socket,time\n\
             s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             s.bind(('0.0.0.0',22)); s.listen(8)\n\
             c=[]\n\
             while True: c.append(s.accept())",
        ])
        .stdin(Stdio::null())
        .spawn()
        .expect("python3 listener");
    std::thread::sleep(Duration::from_millis(300));
    let client_p = client
        .cmd("python3")
        .args([
            "-c",
            &format!(
                "import socket,time\n\
                 for i in range(50):\n\
                 \x20 try:\n\
                 \x20   s=socket.create_connection(('{HOST}',22)); break\n\
                 \x20 except OSError: time.sleep(0.1)\n\
                 time.sleep(600)"
            ),
        ])
        .stdin(Stdio::null())
        .spawn()
        .expect("python3 client");
    // Wait until the kernel shows the session as ESTABLISHED in the host namespace.
    let up = wait_for(Duration::from_secs(10), || {
        let o = host.exec(&["cat", "/proc/net/tcp"]);
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 3 && f[1].ends_with(":0016") && f[3] == "01"
            })
            .then_some(())
    });
    assert!(up.is_some(), "the test SSH session did not come up");
    (server, client_p)
}

fn attack(log: &std::path::Path, ips: &[&str]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    for (n, ip) in ips.iter().enumerate() {
        for i in 0..6 {
            writeln!(f, "{}", ssh_fail(ip, n * 10 + i)).unwrap();
        }
    }
}

fn targets(d: &Daemon) -> Vec<String> {
    d.active()
        .iter()
        .map(|x| x["target"].as_str().unwrap().to_string())
        .collect()
}

fn setup(tag: &str) -> (Netns, Netns) {
    let host = Netns::new(&format!("lk{tag}"));
    let client = Netns::new(&format!("lc{tag}"));
    let pid = std::process::id() % 10000;
    host.link(
        &client,
        &format!("lk{tag}{pid}"),
        &format!("{HOST}/24"),
        &format!("lc{tag}{pid}"),
        &format!("{OPERATOR}/24"),
    );
    (host, client)
}

#[test]
fn operator_session_own_addresses_and_allowlist_are_never_banned() {
    let (host, client) = setup("a");
    let (mut s, mut c) = operator_session(&host, &client);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("auth.log");
    std::fs::write(&log, "").unwrap();
    let d = Daemon::start_in(Some(&host.name), dir.path(), &cfg(dir.path(), true));
    attack(&log, &[OPERATOR, HOST, "127.0.0.1", LISTED, ATTACKER]);
    let banned = wait_for(Duration::from_secs(15), || {
        targets(&d)
            .contains(&format!("{ATTACKER}/32"))
            .then_some(())
    });
    assert!(banned.is_some(), "attacker not banned:\n{}", d.log());
    // Every other alert is decided by now (one batch, in order); give it a moment anyway.
    let allowlisted = wait_for(Duration::from_secs(10), || {
        (d.status()["counters"]["allowlisted"].as_u64().unwrap_or(0) >= 4).then_some(())
    });
    assert_eq!(
        targets(&d),
        vec![format!("{ATTACKER}/32")],
        "only the attacker may be banned:\n{}",
        d.log()
    );
    assert!(
        allowlisted.is_some(),
        "4 protected alerts should be counted as allowlisted: {}",
        d.status()["counters"]
    );
    // A manual ban of the operator's address is refused with the reason.
    let out = d.cli(&["decisions", "add", OPERATOR]);
    assert!(!out.status.success(), "manual ban of the SSH peer accepted");
    refused_for(&out, &[OPERATOR]);
    // A range covering the operator is refused too.
    let out = d.cli(&["decisions", "add", "10.77.0.0/24"]);
    assert!(!out.status.success(), "range over the SSH peer accepted");
    refused_for(&out, &[OPERATOR, HOST]);
    assert_eq!(targets(&d).len(), 1);
    let _ = (s.kill(), c.kill(), s.wait(), c.wait());
}

#[test]
fn operator_session_is_banned_when_told_to() {
    let (host, client) = setup("b");
    let (mut s, mut c) = operator_session(&host, &client);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("auth.log");
    std::fs::write(&log, "").unwrap();
    let d = Daemon::start_in(Some(&host.name), dir.path(), &cfg(dir.path(), false));
    attack(&log, &[OPERATOR, HOST, ATTACKER]);
    let banned = wait_for(Duration::from_secs(15), || {
        let t = targets(&d);
        (t.contains(&format!("{ATTACKER}/32")) && t.contains(&format!("{OPERATOR}/32")))
            .then_some(())
    });
    assert!(
        banned.is_some(),
        "with allow_ssh_sessions = false the SSH peer is an ordinary address: {:?}\n{}",
        targets(&d),
        d.log()
    );
    // The host's own address stays protected regardless.
    assert!(!targets(&d).contains(&format!("{HOST}/32")));
    let _ = (s.kill(), c.kill(), s.wait(), c.wait());
}

#[test]
fn ssh_connection_env_of_the_daemon_is_protected() {
    // Started from an SSH session (no socket to see in this namespace): $SSH_CONNECTION counts.
    let host = Netns::new("lke");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("auth.log");
    std::fs::write(&log, "").unwrap();
    std::fs::write(
        dir.path().join("shield.toml"),
        cfg(dir.path(), true).replace("@DIR@", dir.path().to_str().unwrap()),
    )
    .unwrap();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &host.name, env!("CARGO_BIN_EXE_shield")])
        .arg("--config")
        .arg(dir.path().join("shield.toml"))
        .arg("run")
        .env("SSH_CONNECTION", "192.0.2.77 51234 10.0.0.1 22")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sock = dir.path().join("shield.sock");
    assert!(
        wait_for(Duration::from_secs(20), || {
            std::os::unix::net::UnixStream::connect(&sock).ok()
        })
        .is_some()
    );
    let out = common::shield()
        .arg("--config")
        .arg(dir.path().join("shield.toml"))
        .args(["decisions", "add", "192.0.2.77"])
        .output()
        .unwrap();
    let _ = (child.kill(), child.wait());
    assert!(
        !out.status.success(),
        "the $SSH_CONNECTION client was banned: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("192.0.2.77") && err.contains("allowlist"),
        "refused for another reason: {err}"
    );
}

/// The refusal names one of the protected addresses, so it was refused for
/// protection and not for some other failure (no daemon, bad syntax...).
fn refused_for(out: &std::process::Output, protected: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        protected.iter().any(|p| err.contains(&format!("({p}/32)"))),
        "refused for another reason than {protected:?}: {err}"
    );
}
