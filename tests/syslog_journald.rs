//! Syslog and journald into the detection pipeline.
//!
//! - syslog: a daemon with `[[source]] type = "syslog"` listens on one
//!   loopback port for UDP and TCP; sshd failures from one address arrive as
//!   RFC 3164 datagrams over UDP, from another as RFC 5424 messages over TCP
//!   (RFC 6587 octet counting). Each address must be banned, and a third
//!   address sending fewer failures than the threshold must not be.
//! - journald: where a journal runs (`/run/systemd/journal/socket` and a
//!   working `journalctl`), entries written with `systemd-cat -t sshd` must
//!   produce a ban through a `type = "journald"` source. Where none runs (CI
//!   containers), `journalctl -o json` output (a fixture) goes through the
//!   daemon's parser and the resulting lines must make `shield replay` ban
//!   the attacker: the same code path minus the journalctl process.

mod common;

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::path::Path;
use std::time::Duration;

use common::*;

fn syslog_config(port: u16) -> String {
    config(
        &format!(
            r#"
[[source]]
name = "syslog"
type = "syslog"
listen = "127.0.0.1:{port}"
packs = ["sshd"]
"#
        ),
        "",
    )
}

fn failure(ip: &str, n: usize) -> String {
    format!("Failed password for root from {ip} port {} ssh2", 40000 + n)
}

fn active_targets(d: &Daemon) -> Vec<String> {
    d.active()
        .iter()
        .map(|x| x["target"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn syslog_over_udp_and_tcp_bans() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let d = Daemon::start(dir.path(), &syslog_config(port));
    // Readers (and so the listener) start right after the control socket.
    let mut tcp = wait_for(Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", port)).ok()
    })
    .unwrap_or_else(|| panic!("the syslog listener did not come up:\n{}", d.log()));

    // RFC 3164 over UDP, one message per datagram.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let ts = jiff::Timestamp::now()
        .strftime("%b %e %H:%M:%S")
        .to_string();
    for n in 0..12 {
        let m = format!(
            "<38>{ts} web1 sshd[{}]: {}",
            1000 + n,
            failure("192.0.2.10", n)
        );
        udp.send_to(m.as_bytes(), ("127.0.0.1", port)).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    // RFC 5424 over TCP with octet counting.
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    for n in 0..12 {
        let m = format!(
            "<38>1 {now} web2 sshd 2{n:03} - - {}",
            failure("198.51.100.20", n)
        );
        write!(tcp, "{} {m}", m.len()).unwrap();
    }
    // Newline framing on a second connection; below the threshold.
    let mut tcp2 = TcpStream::connect(("127.0.0.1", port)).unwrap();
    for n in 0..2 {
        writeln!(
            tcp2,
            "<38>{ts} web3 sshd[77]: {}",
            failure("203.0.113.30", n)
        )
        .unwrap();
    }
    tcp.flush().unwrap();
    tcp2.flush().unwrap();

    let got = wait_for(Duration::from_secs(20), || {
        let t = active_targets(&d);
        (t.iter().any(|x| x.starts_with("192.0.2.10/"))
            && t.iter().any(|x| x.starts_with("198.51.100.20/")))
        .then_some(t)
    })
    .unwrap_or_else(|| {
        panic!(
            "no ban from syslog: {:?}\nstatus {}\n{}",
            active_targets(&d),
            d.status(),
            d.log()
        )
    });
    assert!(
        !got.iter().any(|x| x.starts_with("203.0.113.30/")),
        "two failures must not ban: {got:?}"
    );
    let st = d.status();
    let src = st["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "syslog")
        .unwrap()
        .clone();
    assert_eq!(src["kind"], "syslog");
    // Lines are counted when the reader flushes its batch (every 250 ms).
    let lines = wait_for(Duration::from_secs(5), || {
        let n = d.lines("syslog");
        (n == 26).then_some(n)
    });
    assert_eq!(lines, Some(26), "every message is one line: {}", d.status());
    assert!(
        src["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == format!("udp://127.0.0.1:{port}").as_str()),
        "{src}"
    );
}

#[test]
fn syslog_listen_port_in_use_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let cfg = dir.path().join("shield.toml");
    std::fs::write(
        &cfg,
        syslog_config(port).replace("@DIR@", dir.path().to_str().unwrap()),
    )
    .unwrap();
    let out = shield()
        .args(["--config", cfg.to_str().unwrap(), "run"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("source `syslog`") && err.contains("listen"),
        "{err}"
    );
}

fn journal_runs() -> bool {
    Path::new("/run/systemd/journal/socket").exists()
        && std::process::Command::new("journalctl")
            .args(["-n", "1", "-q"])
            .output()
            .is_ok_and(|o| o.status.success())
}

#[test]
fn journald_entries_ban() {
    if journal_runs() {
        require("systemd-cat", "systemd");
        let dir = tempfile::tempdir().unwrap();
        let d = Daemon::start(
            dir.path(),
            &config(
                r#"
[[source]]
name = "journal"
type = "journald"
journal_match = ["SYSLOG_IDENTIFIER=sshd"]
packs = ["sshd"]
"#,
                "",
            ),
        );
        std::thread::sleep(Duration::from_secs(1));
        let mut child = std::process::Command::new("systemd-cat")
            .args(["-t", "sshd"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        for n in 0..12 {
            writeln!(stdin, "{}", failure("192.0.2.77", n)).unwrap();
        }
        drop(stdin);
        child.wait().unwrap();
        let ok = wait_for(Duration::from_secs(20), || {
            active_targets(&d)
                .iter()
                .any(|x| x.starts_with("192.0.2.77/"))
                .then_some(())
        });
        assert!(ok.is_some(), "no ban from the journal:\n{}", d.log());
        return;
    }
    // No journal here: the parser on `journalctl -o json --all` output.
    let t0 = jiff::Timestamp::now().as_microsecond();
    let mut fixture = String::new();
    for n in 0..12 {
        fixture.push_str(
            &serde_json::json!({
                "__CURSOR": format!("s=abc;i={n:x};b=def;m={n:x};t={:x};x=1", t0),
                "__REALTIME_TIMESTAMP": (t0 + n as i64 * 1000).to_string(),
                "_HOSTNAME": "web1",
                "SYSLOG_IDENTIFIER": "sshd",
                "_PID": "4242",
                "MESSAGE": failure("192.0.2.77", n),
            })
            .to_string(),
        );
        fixture.push('\n');
    }
    // A binary MESSAGE (journald sends non-UTF-8 data as a byte array) and a
    // line without a message are handled, not fatal.
    fixture.push_str(
        r#"{"__CURSOR":"s=x","__REALTIME_TIMESTAMP":"1","MESSAGE":[70,97,105,108,101,100]}"#,
    );
    fixture.push('\n');
    fixture.push_str(r#"{"__CURSOR":"s=y","__REALTIME_TIMESTAMP":"1"}"#);
    fixture.push('\n');
    let entries: Vec<_> = fixture
        .lines()
        .filter_map(shield_daemon::journald::parse_entry)
        .collect();
    assert_eq!(entries.len(), 13, "12 entries and the binary one");
    assert_eq!(entries[12].message, "Failed");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("journal.log");
    let lines: String = entries.iter().map(|e| e.to_line() + "\n").collect();
    std::fs::write(&log, lines).unwrap();
    let out = ok(&["replay", "--format", "json", log.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let banned: Vec<&str> = v["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["value"].as_str())
        .collect();
    assert!(
        banned.iter().any(|b| b.starts_with("192.0.2.77")),
        "journald lines did not ban: {v}"
    );
}
