//! What Shield writes is private: the store holds evidence lines copied from
//! root-only logs and bouncer key hashes, so the state directory is 0700 and
//! the database, its WAL and SHM and the control socket are 0600, whatever
//! the caller's umask — and a store an older version left 0644 is tightened.
//! `shield explain` never holds an over-long line in memory.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{Daemon, config, shield, ssh_fail, wait_for};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn store_wal_shm_state_dir_and_socket_are_private() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("auth.log"), "").unwrap();
    // The store's directory does not exist yet: Shield creates it.
    let cfg = config(
        r#"[[source]]
name = "sshd"
paths = ["@DIR@/auth.log"]
packs = ["sshd"]"#,
        "",
    )
    .replace("@DIR@/shield.db", "@DIR@/state/shield.db");
    let mut d = Daemon::start(dir.path(), &cfg);
    // A decision, so the WAL and SHM files exist and hold evidence.
    std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("auth.log"))
        .unwrap()
        .write_all(
            (0..12)
                .map(|i| ssh_fail("203.0.113.50", i) + "\n")
                .collect::<String>()
                .as_bytes(),
        )
        .unwrap();
    let banned = wait_for(Duration::from_secs(20), || {
        (!d.active().is_empty()).then_some(())
    });
    assert!(banned.is_some(), "no decision:\n{}", d.log());
    let state = dir.path().join("state");
    for (p, want) in [
        (state.clone(), 0o700),
        (state.join("shield.db"), 0o600),
        (state.join("shield.db-wal"), 0o600),
        (state.join("shield.db-shm"), 0o600),
        (dir.path().join("shield.sock"), 0o600),
    ] {
        assert_eq!(mode(&p), want, "{} is {:o}", p.display(), mode(&p));
    }

    // An older version left the store world-readable: tightened on start.
    d.stop();
    for f in ["shield.db", "shield.db-wal", "shield.db-shm"] {
        let p = state.join(f);
        if p.exists() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    d.restart();
    assert_eq!(d.active().len(), 1, "the decision survived the restart");
    for f in ["shield.db", "shield.db-wal", "shield.db-shm"] {
        let p = state.join(f);
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{} is {:o}", p.display(), mode(&p));
        }
    }
}

#[test]
fn explain_skips_an_over_long_line_and_goes_on() {
    let mut child = shield()
        .args(["explain", "--format", "json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        // 16 MiB without a newline, then a real failure line.
        let chunk = vec![b'A'; 1 << 20];
        for _ in 0..16 {
            stdin.write_all(&chunk).unwrap();
        }
        stdin
            .write_all(
                b"\nMar  1 10:00:00 h sshd[1]: Failed password for root from 203.0.113.7 port 22 ssh2\n",
            )
            .unwrap();
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "only the real line is explained: {stdout}");
    assert!(lines[0].contains("203.0.113.7"), "{stdout}");
    assert!(
        stderr.contains("skipped 1 line(s) longer than"),
        "the skip is reported: {stderr}"
    );
}
