//! Syslog and journald into the detection pipeline.
//!
//! - syslog: a daemon with `[[source]] type = "syslog"` listens on one
//!   loopback port for UDP and TCP; sshd failures from one address arrive as
//!   RFC 3164 datagrams over UDP, from another as RFC 5424 messages over TCP
//!   (RFC 6587 octet counting). Each address must be banned, and a third
//!   address sending fewer failures than the threshold must not be.
//! - journald: a real journal directory written by systemd-journal-remote,
//!   followed by the daemon's own journald loop (see the test's comment).

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

/// systemd's own writer of journal files from export format.
fn journal_remote() -> &'static str {
    let found = [
        "/lib/systemd/systemd-journal-remote",
        "/usr/lib/systemd/systemd-journal-remote",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists());
    found.expect(
        "systemd-journal-remote is missing: install the Debian package `systemd-journal-remote` (run .ci/install-deps as root)",
    )
}

/// Writes `file` in journal format with systemd-journal-remote: five failed
/// passwords (one connection each) from `ip` per program in `idents`, at the
/// current time; `seq` keeps entries of later files after earlier ones.
fn write_journal(file: &Path, ip: &str, idents: &[&str], seq: &mut u64) {
    let now = jiff::Timestamp::now().as_microsecond();
    let mut export = String::new();
    for ident in idents {
        for n in 0..5 {
            *seq += 1;
            export.push_str(&format!(
                "__REALTIME_TIMESTAMP={}\n__MONOTONIC_TIMESTAMP={}\n_BOOT_ID=0123456789abcdef0123456789abcdef\n_HOSTNAME=web1\nSYSLOG_IDENTIFIER={ident}\n_COMM={ident}\n_PID={}\nMESSAGE={}\n\n",
                now + *seq as i64,
                *seq,
                1000 + *seq,
                failure(ip, n)
            ));
        }
    }
    let src = file.with_extension("export");
    std::fs::write(&src, export).unwrap();
    let out = std::process::Command::new(journal_remote())
        .arg("-o")
        .arg(file)
        .arg(&src)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The daemon's own journald loop on a real journal (a directory of journal
/// files written by systemd's tools, read with `journalctl --directory`):
/// it starts at the journal's end (`-n 0`: failures already there are not
/// read), bans what arrives from `sshd`, `sshd-session` (OpenSSH >= 9.8,
/// Debian 13) and `sshd-auth` (OpenSSH 10) through the built-in sshd
/// matches, saves the cursor, and after a restart resumes after it
/// (`--after-cursor`): entries written while it was down are read, none twice.
#[test]
fn journald_source_follows_a_real_journal_and_resumes_at_its_cursor() {
    require("journalctl", "systemd");
    let dir = tempfile::tempdir().unwrap();
    let jdir = dir.path().join("journal");
    std::fs::create_dir(&jdir).unwrap();
    let mut seq = 0;
    let everyone = ["sshd", "sshd-session", "sshd-auth"];
    write_journal(&jdir.join("0.journal"), "192.0.2.70", &["sshd"], &mut seq);
    let matches = shield_daemon::journald::SSHD_MATCHES
        .iter()
        .map(|m| format!("{m:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let cfg = config(
        &format!(
            r#"
[[source]]
name = "journal"
type = "journald"
journal_directory = "@DIR@/journal"
journal_match = [{matches}]
packs = ["sshd"]
"#
        ),
        "",
    );
    let mut d = Daemon::start(dir.path(), &cfg);
    std::thread::sleep(Duration::from_secs(2));
    let ips = ["192.0.2.71", "192.0.2.72", "192.0.2.73"];
    for (ip, ident) in ips.iter().zip(everyone) {
        write_journal(&jdir.join(format!("{ip}.journal")), ip, &[ident], &mut seq);
    }
    let ok = wait_for(Duration::from_secs(20), || {
        let t = active_targets(&d);
        ips.iter()
            .all(|ip| t.iter().any(|x| x.starts_with(&format!("{ip}/"))))
            .then_some(())
    });
    assert!(
        ok.is_some(),
        "no ban from every sshd program: {:?}\n{}",
        active_targets(&d),
        d.log()
    );
    assert!(
        !active_targets(&d)
            .iter()
            .any(|x| x.starts_with("192.0.2.70/")),
        "read entries from before the start"
    );
    assert_eq!(
        d.lines("journal"),
        15,
        "the 15 entries written after the start"
    );
    d.stop();
    // Written while the daemon is down: read after the restart, from the cursor.
    write_journal(
        &jdir.join("late.journal"),
        "192.0.2.74",
        &["sshd-session"],
        &mut seq,
    );
    d.restart();
    let ok = wait_for(Duration::from_secs(20), || {
        active_targets(&d)
            .iter()
            .any(|x| x.starts_with("192.0.2.74/"))
            .then_some(())
    });
    assert!(
        ok.is_some(),
        "entries written while down were not read:\n{}",
        d.log()
    );
    assert_eq!(
        d.lines("journal"),
        5,
        "only the 5 new entries after the restart"
    );
}

/// A fail2ban jail with `backend = "systemd"` runs from the journal through
/// its filter's own `journalmatch` (fail2ban's sshd filter:
/// `_SYSTEMD_UNIT=sshd.service + _COMM=sshd`), and its own `ignoreip`
/// spares an address for this jail only.
#[test]
fn fail2ban_jail_on_the_journal_with_its_own_ignoreip() {
    require("journalctl", "systemd");
    require("fail2ban-regex", "fail2ban");
    let dir = tempfile::tempdir().unwrap();
    let jdir = dir.path().join("journal");
    std::fs::create_dir(&jdir).unwrap();
    let cfg = config(
        "",
        r#"
[[jail]]
name = "sshd-journal"
filter = "sshd"
backend = "systemd"
journal_directory = "@DIR@/journal"
ignoreip = ["192.0.2.80/31"]
maxretry = 5
"#,
    );
    let mut seq = 0;
    // journalctl refuses to follow an empty journal: one entry before the start.
    write_journal(&jdir.join("0.journal"), "192.0.2.79", &["sshd"], &mut seq);
    let d = Daemon::start(dir.path(), &cfg);
    std::thread::sleep(Duration::from_secs(2));
    for ip in ["192.0.2.81", "192.0.2.82"] {
        write_journal(&jdir.join(format!("{ip}.journal")), ip, &["sshd"], &mut seq);
    }
    let ok = wait_for(Duration::from_secs(20), || {
        active_targets(&d)
            .iter()
            .any(|x| x.starts_with("192.0.2.82/"))
            .then_some(())
    });
    assert!(
        ok.is_some(),
        "the jail did not ban from the journal:\n{}",
        d.log()
    );
    assert_eq!(d.lines("sshd-journal"), 10, "{}", d.log());
    assert!(
        !active_targets(&d)
            .iter()
            .any(|x| x.starts_with("192.0.2.81/")),
        "the jail's ignoreip was not honoured"
    );
}
