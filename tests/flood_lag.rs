//! Lag reporting under a flood (issue 26): a daemon tailing a file is
//! frozen (SIGSTOP, a reader deliberately outrun) while a burst larger than
//! one read pass is appended; once it runs again, `/metrics` and
//! `shield status` must show that it fell behind (peak lag at least the time
//! it was frozen, a warning in its log), then return to 0 lag and 0 bytes
//! behind, with every line counted exactly once and the attacker hidden at
//! the end of the burst decided.

mod common;

use std::io::{BufWriter, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::*;

/// Noise lines in the burst: ~27 MB, more than one 16 MB read pass, so the
/// reader is still behind after its first pass.
const BURST: u64 = 300_000;
/// How long the daemon is frozen after the burst was written.
const FROZEN: Duration = Duration::from_secs(6);

fn scrape(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf
}

/// The value of `name{...source="sshd"...}` in a scrape.
fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains("source=\"sshd\""))
        .find_map(|l| l.rsplit_once(' ')?.1.parse().ok())
}

fn source(d: &Daemon) -> serde_json::Value {
    d.status()["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "sshd")
        .cloned()
        .expect("the sshd source is in the status")
}

fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success(), "kill {sig} {pid}");
}

#[test]
fn a_reader_outrun_by_a_burst_reports_its_lag_then_catches_up_counting_every_line_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("auth.log");
    std::fs::write(&log, "").unwrap();
    let port = free_port();
    let cfg = Config::new()
        .listen(&format!("127.0.0.1:{port}"))
        .ssh_test_scenario("1h")
        .sshd_files(log.to_str().unwrap())
        .build();
    let d = Daemon::start(dir.path(), &cfg);
    let stamp = "Dec  7 23:00:00 myhost";
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    for i in 0..10 {
        writeln!(f, "{stamp} CRON[{i}]: (root) CMD (true)").unwrap();
    }
    assert!(
        wait_for(Duration::from_secs(20), || (d.lines("sshd") == 10)
            .then_some(()))
        .is_some(),
        "the first lines were not read:\n{}",
        d.log()
    );
    let s = source(&d);
    assert_eq!(s["lag_seconds"].as_f64(), Some(0.0), "{s}");
    assert_eq!(s["bytes_behind"].as_u64(), Some(0), "{s}");

    let pid = d.child.as_ref().unwrap().id();
    signal(pid, "-STOP");
    {
        let mut w = BufWriter::with_capacity(1 << 20, &mut f);
        for i in 0..BURST {
            writeln!(
                w,
                "{stamp} sshd[{}]: Connection closed by 10.{}.{}.{} port 22 [preauth]",
                i % 65_536,
                (i >> 16) & 255,
                (i >> 8) & 255,
                i & 255
            )
            .unwrap();
        }
        for _ in 0..5 {
            writeln!(
                w,
                "{stamp} sshd[9]: Failed password for root from 203.0.113.9 port 22 ssh2"
            )
            .unwrap();
        }
        w.flush().unwrap();
    }
    assert!(std::fs::metadata(&log).unwrap().len() > 16 << 20);
    std::thread::sleep(FROZEN);
    signal(pid, "-CONT");

    let total = 10 + BURST + 5;
    let caught_up = wait_for(Duration::from_secs(180), || {
        let s = source(&d);
        (s["lines"].as_u64() == Some(total)
            && s["lag_seconds"].as_f64() == Some(0.0)
            && s["bytes_behind"].as_u64() == Some(0))
        .then_some(s)
    });
    let s = caught_up.unwrap_or_else(|| panic!("did not catch up: {}\n{}", source(&d), d.log()));
    let peak = s["lag_peak_seconds"].as_f64().unwrap();
    assert!(
        peak >= FROZEN.as_secs_f64() - 0.5,
        "the peak lag shows the time the burst waited: {s}"
    );
    assert!(
        d.log().contains("source is behind its input"),
        "a source behind more than 5 s is logged:\n{}",
        d.log()
    );
    assert!(d.log().contains("source caught up with its input"));

    let body = scrape(port);
    assert_eq!(
        metric(&body, "shield_source_lag_seconds"),
        Some(0.0),
        "{body}"
    );
    assert_eq!(metric(&body, "shield_source_bytes_behind"), Some(0.0));
    assert!(metric(&body, "shield_source_lag_peak_seconds").is_some_and(|p| p >= peak));
    assert_eq!(
        metric(&body, "shield_source_lines_total"),
        Some(total as f64)
    );

    let text = String::from_utf8(d.cli(&["status"]).stdout).unwrap();
    assert!(text.contains(&format!("peak {peak:.1}s")), "{text}");

    // Every line once: nothing more is counted later.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(d.lines("sshd"), total);
    assert!(
        d.active().iter().any(|x| x["target"] == "203.0.113.9/32"),
        "the attacker at the end of the burst is decided: {:?}",
        d.active()
    );
}
