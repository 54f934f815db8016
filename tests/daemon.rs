//! The real daemon on real files: live tailing across rotation, restart from
//! the checkpoint, the allowlist, escalation, and the CLI talking to it.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{Daemon, config, ssh_fail, wait_for};

const SCEN: &str = r#"
[engine]
no_default_scenarios = true

[[scenario]]
name = "ssh-test"
rules = ["sshd*"]
capacity = 4
leak = "1h"
decision = "ban"
duration = "10m"
"#;

fn sshd_source(dir: &std::path::Path) -> String {
    format!(
        "[[source]]\nname = \"sshd\"\npaths = [\"{}/auth.log*\"]\npacks = [\"sshd\"]\nfrom_start = true\n{SCEN}",
        dir.display()
    )
}

fn append(path: &std::path::Path, lines: &[String]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
    f.flush().unwrap();
}

fn noise(n: usize, from: usize) -> Vec<String> {
    (from..from + n)
        .map(|i| format!("Mar  1 10:00:00 myhost CRON[{i}]: (root) CMD (line {i})"))
        .collect()
}

#[test]
fn live_tail_across_rename_and_copytruncate_loses_no_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("auth.log");
    std::fs::write(&log, "").unwrap();
    let d = Daemon::start(dir.path(), &config(&sshd_source(dir.path()), ""));
    let mut total = 0;
    for round in 0..3 {
        append(&log, &noise(500, total));
        total += 500;
        // rename rotation, then a new file
        std::fs::rename(&log, dir.path().join(format!("auth.log.{round}"))).unwrap();
        append(
            &dir.path().join(format!("auth.log.{round}")),
            &noise(100, total),
        );
        total += 100;
        append(&log, &noise(300, total));
        total += 300;
    }
    // copytruncate: wait until read, copy, truncate, continue writing.
    let seen = wait_for(Duration::from_secs(20), || {
        (d.lines("sshd") == total as u64).then_some(())
    });
    assert!(
        seen.is_some(),
        "read {} of {total} lines:\n{}",
        d.lines("sshd"),
        d.log()
    );
    std::fs::copy(&log, dir.path().join("auth.log.ct")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&log)
        .unwrap();
    // The copy is a new file matching the glob: its lines are read too (a real
    // logrotate names it outside the glob, e.g. auth.log.1 with a non-matching glob).
    let copied = 300u64;
    append(&log, &noise(200, total));
    total += 200;
    let want = total as u64 + copied;
    let seen = wait_for(Duration::from_secs(20), || {
        (d.lines("sshd") == want).then_some(())
    });
    assert!(
        seen.is_some(),
        "read {} of {want} lines:\n{}",
        d.lines("sshd"),
        d.log()
    );
    // And an attack after all that is still seen.
    append(
        &log,
        &(0..6)
            .map(|i| ssh_fail("203.0.113.50", i))
            .collect::<Vec<_>>(),
    );
    let banned = wait_for(Duration::from_secs(10), || {
        d.active()
            .iter()
            .any(|x| x["target"] == "203.0.113.50/32")
            .then_some(())
    });
    assert!(banned.is_some(), "{}", d.log());
}

#[test]
fn restart_resumes_from_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("auth.log");
    append(&log, &noise(1000, 0));
    let mut d = Daemon::start(dir.path(), &config(&sshd_source(dir.path()), ""));
    assert!(
        wait_for(Duration::from_secs(20), || (d.lines("sshd") == 1000)
            .then_some(()))
        .is_some(),
        "{}",
        d.log()
    );
    d.stop();
    // Written while stopped, including a rotation.
    append(&log, &noise(250, 1000));
    std::fs::rename(&log, dir.path().join("auth.log.1")).unwrap();
    append(&log, &noise(250, 1250));
    d.restart();
    // Lines counted in the store across both runs: exactly 1500, none twice.
    let want = 1500u64;
    let counted = wait_for(Duration::from_secs(20), || {
        (stored_lines(&d) == want).then_some(())
    });
    assert!(
        counted.is_some(),
        "store counted {} lines, want {want}:\n{}",
        stored_lines(&d),
        d.log()
    );
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(stored_lines(&d), want, "lines were read twice");
}

/// Lines of `sshd` counted in the store (committed with the checkpoints, so across runs).
fn stored_lines(d: &Daemon) -> u64 {
    d.status()["store_counters"]["lines:sshd"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn allowlisted_address_is_never_banned_and_others_are() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("auth.log");
    std::fs::write(&log, "").unwrap();
    let d = Daemon::start(
        dir.path(),
        &config(
            &sshd_source(dir.path()),
            "allowlist = [\"198.51.100.0/24\"]",
        ),
    );
    let mut lines: Vec<String> = (0..10).map(|i| ssh_fail("198.51.100.20", i)).collect();
    lines.extend((0..10).map(|i| ssh_fail("203.0.113.9", i)));
    append(&log, &lines);
    let banned = wait_for(Duration::from_secs(10), || {
        d.active()
            .iter()
            .any(|x| x["target"] == "203.0.113.9/32")
            .then_some(())
    });
    assert!(banned.is_some(), "{}", d.log());
    assert!(
        !d.active()
            .iter()
            .any(|x| x["target"].as_str().unwrap().starts_with("198.51.100."))
    );
    // A manual ban of the allowlisted address is refused too.
    let out = d.cli(&["decisions", "add", "198.51.100.20"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("allowlist"));
    // The alert is still recorded, with its evidence.
    let alerts = d.json(&["alerts", "list", "--format", "json"]);
    let a = alerts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["target"] == "198.51.100.20/32")
        .expect("alert kept");
    assert!(a["decision_id"].is_null());
    assert!(!a["evidence"].as_array().unwrap().is_empty());
}

#[test]
fn repeat_offender_gets_a_longer_ban_remembered_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("auth.log");
    std::fs::write(&log, "").unwrap();
    let mut d = Daemon::start(dir.path(), &config(&sshd_source(dir.path()), ""));
    let ban_of = |d: &Daemon| {
        wait_for(Duration::from_secs(10), || {
            d.active()
                .into_iter()
                .find(|x| x["target"] == "203.0.113.77/32")
        })
    };
    append(
        &log,
        &(0..6)
            .map(|i| ssh_fail("203.0.113.77", i))
            .collect::<Vec<_>>(),
    );
    let first = ban_of(&d).unwrap_or_else(|| panic!("{}", d.log()));
    let len =
        |x: &serde_json::Value| x["expires"].as_i64().unwrap() - x["created"].as_i64().unwrap();
    assert_eq!(len(&first), 600);
    // Pardon it, restart (offences live in the store), attack again.
    let out = d.cli(&["decisions", "delete", "203.0.113.77"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(d.active().is_empty());
    d.stop();
    d.restart();
    append(
        &log,
        &(10..16)
            .map(|i| ssh_fail("203.0.113.77", i))
            .collect::<Vec<_>>(),
    );
    let second = ban_of(&d).unwrap_or_else(|| panic!("{}", d.log()));
    assert_eq!(len(&second), 1200, "second offence should double the ban");
}

#[test]
fn manual_decisions_through_the_running_daemon() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("auth.log"), "").unwrap();
    let d = Daemon::start(dir.path(), &config(&sshd_source(dir.path()), ""));
    let out = d.cli(&[
        "decisions",
        "add",
        "198.18.0.0/15",
        "--type",
        "captcha",
        "--duration",
        "1h",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = d.active();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["scope"], "range");
    assert_eq!(v[0]["type"], "captcha");
    assert_eq!(v[0]["origin"], "manual");
    let bad = d.cli(&["decisions", "add", "not-an-ip"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("neither an IP address nor a CIDR"));
    let st = d.status();
    assert_eq!(st["active_decisions"], 1);
    assert!(
        d.cli(&["decisions", "delete", "--id", &v[0]["id"].to_string()])
            .status
            .success()
    );
    assert!(d.active().is_empty());
}

#[test]
fn sigterm_stops_the_daemon_even_while_stdin_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, mut child) = start_on_stdin(dir.path(), std::process::Stdio::null());
    // Lines on stdin are decided too.
    let mut stdin = child.stdin.take().unwrap();
    for i in 0..10 {
        writeln!(stdin, "{}", ssh_fail("203.0.113.99", i)).unwrap();
    }
    stdin.flush().unwrap();
    let out = || {
        common::shield()
            .args([
                "--config",
                cfg.to_str().unwrap(),
                "decisions",
                "list",
                "--format",
                "json",
            ])
            .output()
            .unwrap()
    };
    let banned = wait_for(Duration::from_secs(10), || {
        String::from_utf8_lossy(&out().stdout)
            .contains("203.0.113.99")
            .then_some(())
    });
    assert!(banned.is_some());
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let exited = wait_for(Duration::from_secs(10), || child.try_wait().unwrap());
    drop(stdin);
    assert!(
        exited.is_some_and(|s| s.success()),
        "daemon did not exit cleanly on SIGTERM with stdin open"
    );
}

/// The stdin reader counts every line it reads (issue 22: it reported
/// `lines: 1, matched: 1` only when an alert fired, and nothing else).
#[test]
fn stdin_source_counts_every_line_not_only_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, mut child) = start_on_stdin(dir.path(), std::process::Stdio::null());
    // Three lines no rule matches and two failures: too few for an alert.
    let mut stdin = child.stdin.take().unwrap();
    for l in ["hello", "nothing to see", "\u{e9}t\u{e9}"] {
        writeln!(stdin, "{l}").unwrap();
    }
    writeln!(stdin, "{}", ssh_fail("203.0.113.98", 0)).unwrap();
    writeln!(stdin, "{}", ssh_fail("203.0.113.98", 1)).unwrap();
    stdin.flush().unwrap();
    let status = || {
        let out = common::shield()
            .args([
                "--config",
                cfg.to_str().unwrap(),
                "status",
                "--format",
                "json",
            ])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["sources"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == "in").cloned())
    };
    let counted = wait_for(Duration::from_secs(10), || {
        status().filter(|s| s["lines"] == 5)
    });
    let _ = child.kill();
    let _ = child.wait();
    let s = counted.unwrap_or_else(|| panic!("stdin lines not counted: {:?}", status()));
    assert_eq!(s["matched"], 2, "{s}");
    assert_eq!(s["alerts"], 0, "{s}");
}

/// SIGHUP with a stdin source: the running stdin reader is kept (a second
/// one used to start while the first still held stdin, losing a line), and
/// the socket removed at exit is the one bound at start, not a reloaded
/// config's path (issue 22).
#[test]
fn reload_keeps_the_stdin_reader_and_exit_removes_the_bound_socket() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("daemon.log");
    let (cfg, mut child) = start_on_stdin(dir.path(), std::fs::File::create(&log).unwrap().into());
    let text = std::fs::read_to_string(&cfg).unwrap();
    let sock = dir.path().join("shield.sock");
    let reloads = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("config reloaded")
            .count()
    };
    let pid = child.id().to_string();
    let hup = |n: usize| {
        let _ = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status();
        let done = wait_for(Duration::from_secs(10), || (reloads() >= n).then_some(()));
        assert!(
            done.is_some(),
            "no reload:\n{}",
            std::fs::read_to_string(&log).unwrap()
        );
    };
    hup(1);
    let mut stdin = child.stdin.take().unwrap();
    for i in 0..3 {
        writeln!(stdin, "line {i}").unwrap();
    }
    stdin.flush().unwrap();
    let lines = || {
        let out = common::shield()
            .args([
                "--config",
                cfg.to_str().unwrap(),
                "status",
                "--format",
                "json",
            ])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["sources"].as_array().and_then(|a| {
            a.iter()
                .find(|s| s["name"] == "in")
                .and_then(|s| s["lines"].as_u64())
        })
    };
    let counted = wait_for(Duration::from_secs(10), || lines().filter(|&n| n == 3));
    assert!(
        counted.is_some(),
        "after a reload stdin lines were lost: {:?}",
        lines()
    );

    // A reload that names another socket: `[api]` is not reloaded, so the
    // bound socket stays in use and is the one removed at exit.
    std::fs::write(&cfg, text.replace("shield.sock", "other.sock")).unwrap();
    hup(2);
    assert!(sock.exists());
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let exited = wait_for(Duration::from_secs(10), || child.try_wait().unwrap());
    drop(stdin);
    assert!(
        exited.is_some_and(|s| s.success()),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert!(!sock.exists(), "the bound socket was left behind at exit");
}

/// Issue 22: `bouncers.last_pull` was never written. A pull through the
/// bouncer API is recorded (batched, and flushed at stop) and `shield
/// bouncers list` shows it; adding and deleting go through the daemon's writer.
#[test]
fn bouncer_pull_is_recorded_as_last_pull() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let cfg = config(STDIN_SOURCE, "")
        .replace("listen = \"\"", &format!("listen = \"127.0.0.1:{port}\""));
    let mut d = Daemon::start(dir.path(), &cfg);
    let out = d.cli(&["bouncers", "add", "fw1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        !d.cli(&["bouncers", "add", "fw1"]).status.success(),
        "a second add of the same name is refused"
    );
    let list =
        |d: &Daemon| String::from_utf8_lossy(&d.cli(&["bouncers", "list"]).stdout).to_string();
    assert!(list(&d).contains("last pull None"), "{}", list(&d));

    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET /v1/decisions HTTP/1.1\r\nHost: x\r\nX-Api-Key: {key}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    std::io::Read::read_to_string(&mut s, &mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");

    d.stop();
    let listed = list(&d);
    assert!(
        listed.contains("fw1") && listed.contains("last pull Some("),
        "{listed}"
    );

    d.restart();
    assert!(d.cli(&["bouncers", "delete", "fw1"]).status.success());
    assert!(!list(&d).contains("fw1"), "{}", list(&d));
}

/// A source reading the daemon's own stdin with the sshd pack.
const STDIN_SOURCE: &str = "[[source]]\nname = \"in\"\ntype = \"stdin\"\npacks = [\"sshd\"]\n";

/// Starts `shield run` on a config with [`STDIN_SOURCE`] in `dir`, its stdin
/// a pipe and its stderr to `stderr`, and waits for its control socket.
/// Returns the config path and the child.
fn start_on_stdin(
    dir: &std::path::Path,
    stderr: std::process::Stdio,
) -> (std::path::PathBuf, std::process::Child) {
    let cfg = dir.join("shield.toml");
    std::fs::write(
        &cfg,
        config(STDIN_SOURCE, "").replace("@DIR@", dir.to_str().unwrap()),
    )
    .unwrap();
    let child = common::shield()
        .args(["--config", cfg.to_str().unwrap(), "run"])
        .stdin(std::process::Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let sock = dir.join("shield.sock");
    assert!(
        wait_for(Duration::from_secs(20), || {
            std::os::unix::net::UnixStream::connect(&sock).ok()
        })
        .is_some()
    );
    (cfg, child)
}

/// SIGHUP on a config that does not plan is refused by the binary (logged,
/// the previous config keeps running); a valid one then reloads, and the
/// reloaded source raises decisions (issue 22: signals live in the binary and
/// reach the daemon as Control messages).
#[test]
fn sighup_refuses_a_broken_config_and_applies_a_valid_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("auth.log"), "").unwrap();
    let good = config(&sshd_source(dir.path()), "");
    let mut d = Daemon::start(dir.path(), &good);
    let pid = d.child.as_ref().unwrap().id().to_string();
    let hup = || {
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap();
    };
    std::fs::write(&d.config, "[[source]]\nname = 1\n").unwrap();
    hup();
    let refused = wait_for(Duration::from_secs(10), || {
        d.log().contains("reload refused").then_some(())
    });
    assert!(refused.is_some(), "no refusal logged:\n{}", d.log());
    assert!(
        d.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "the daemon exited on a refused reload:\n{}",
        d.log()
    );

    // Now follow other.log instead.
    let other = dir.path().join("other.log");
    std::fs::write(&other, "").unwrap();
    let text = good
        .replace("@DIR@", dir.path().to_str().unwrap())
        .replace("auth.log*", "other.log");
    std::fs::write(&d.config, text).unwrap();
    hup();
    let reloaded = wait_for(Duration::from_secs(10), || {
        d.log().contains("config reloaded").then_some(())
    });
    assert!(reloaded.is_some(), "no reload:\n{}", d.log());
    let lines: Vec<String> = (0..5).map(|i| ssh_fail("198.51.100.44", i)).collect();
    append(&other, &lines);
    let banned = wait_for(Duration::from_secs(10), || {
        let v = d.json(&["decisions", "list", "--format", "json"]);
        v.as_array()
            .filter(|a| a.iter().any(|x| x["target"] == "198.51.100.44/32"))
            .cloned()
    });
    assert!(
        banned.is_some(),
        "the reloaded source did not decide:\n{}",
        d.log()
    );
    d.stop();
}
