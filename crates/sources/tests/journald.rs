//! The journald source over fixture JSON (this machine has journalctl but no
//! running journald) and over a stand-in journalctl script.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use shield_sources::journald::{
    Journal, JournalParseError, JournalSpec, journalctl_args, parse_entry,
};

const FIXTURE: &str = include_str!("fixtures/journal.json");

#[test]
fn parses_string_byte_array_repeated_and_null_messages() {
    let lines: Vec<&str> = FIXTURE.lines().collect();
    let e = parse_entry(lines[0].as_bytes()).unwrap();
    assert_eq!(e.unit.as_deref(), Some("ssh.service"));
    assert_eq!(e.identifier.as_deref(), Some("sshd"));
    assert_eq!(e.pid, Some(4242));
    assert_eq!(e.source_name(), "ssh.service");
    assert_eq!(
        e.message,
        b"Failed password for invalid user admin from 203.0.113.7 port 52814 ssh2"
    );
    assert_eq!(e.unix_time(), 1_701_602_521);
    assert!(e.cursor.starts_with("s=739ad463"));

    // Non-UTF-8 MESSAGE arrives as an array of bytes and stays bytes.
    let e = parse_entry(lines[1].as_bytes()).unwrap();
    assert_eq!(e.message, b"Invalid user \xff\xfe from 198.51.100.9");
    assert_eq!(e.realtime_us, 1_701_602_522_000_001);
    assert_eq!(e.source_name(), "sshd");

    // A repeated field: the first value.
    let e = parse_entry(lines[2].as_bytes()).unwrap();
    assert_eq!(e.message, b"first value");
    assert_eq!(e.unit.as_deref(), Some("a.service"));
    assert_eq!(e.identifier.as_deref(), Some("kernel-thing"));

    assert!(matches!(
        parse_entry(lines[3].as_bytes()),
        Err(JournalParseError::NotJson(_))
    ));
    assert_eq!(parse_entry(lines[4].as_bytes()).unwrap().message, b"");
    assert_eq!(
        parse_entry(lines[5].as_bytes()),
        Err(JournalParseError::Missing("__CURSOR"))
    );
}

#[test]
fn arguments_resume_after_the_cursor_or_start_at_the_end() {
    let spec = JournalSpec {
        matches: vec!["_SYSTEMD_UNIT=ssh.service".into()],
        ..JournalSpec::default()
    };
    let a: Vec<String> = journalctl_args(&spec, Some("s=abc;i=1"))
        .into_iter()
        .map(|s| s.into_string().unwrap())
        .collect();
    assert!(a.contains(&"--after-cursor=s=abc;i=1".to_string()), "{a:?}");
    assert!(a.contains(&"--follow".to_string()) && a.contains(&"json".to_string()));
    assert_eq!(
        a.last().map(String::as_str),
        Some("_SYSTEMD_UNIT=ssh.service")
    );
    let a: Vec<String> = journalctl_args(&spec, None)
        .into_iter()
        .map(|s| s.into_string().unwrap())
        .collect();
    assert!(
        a.contains(&"--lines=0".to_string()) && !a.iter().any(|x| x.starts_with("--after-cursor"))
    );
}

#[test]
fn a_running_journalctl_stand_in_yields_entries_and_the_last_cursor() {
    // A script in journalctl's place prints the fixture and exits, and records
    // its arguments so the cursor hand-over is checked too.
    let d = tempfile::tempdir().unwrap();
    let fixture = d.path().join("journal.json");
    std::fs::write(&fixture, FIXTURE).unwrap();
    let args_file = d.path().join("args");
    let script = d.path().join("journalctl");
    let mut f = std::fs::File::create(&script).unwrap();
    writeln!(
        f,
        "#!/bin/sh\necho \"$@\" > '{}'\ncat '{}'",
        args_file.display(),
        fixture.display()
    )
    .unwrap();
    drop(f);
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let spec = JournalSpec {
        journalctl: script,
        ..JournalSpec::default()
    };
    let mut j = Journal::spawn(&spec, Some("s=prev")).unwrap();
    assert_eq!(j.cursor(), Some("s=prev"));
    let mut messages = Vec::new();
    while let Some(e) = j.next_entry() {
        messages.push(e.unwrap().message);
    }
    assert_eq!(messages.len(), 4);
    assert_eq!(j.counts(), (4, 2));
    assert!(j.cursor().unwrap().contains("i=4ecea"));
    let args = std::fs::read_to_string(&args_file).unwrap();
    assert!(args.contains("--after-cursor=s=prev"), "{args}");
}

#[test]
fn missing_journalctl_is_a_clear_error() {
    let spec = JournalSpec {
        journalctl: "/nonexistent/journalctl".into(),
        ..JournalSpec::default()
    };
    let e = Journal::spawn(&spec, None).unwrap_err();
    assert!(e.to_string().contains("journalctl"), "{e}");
}

#[test]
fn stopper_ends_a_blocked_follow() {
    // A stand-in that prints one entry and then blocks like `--follow`.
    let d = tempfile::tempdir().unwrap();
    let script = d.path().join("journalctl");
    let first = FIXTURE.lines().next().unwrap();
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho '{first}'\nexec sleep 60\n"),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let spec = JournalSpec {
        journalctl: script,
        ..JournalSpec::default()
    };
    let mut j = Journal::spawn(&spec, None).unwrap();
    assert!(j.next_entry().unwrap().is_ok());
    let stopper = j.stopper();
    let t = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(50));
        stopper.stop();
    });
    let started = std::time::Instant::now();
    assert!(j.next_entry().is_none());
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    t.join().unwrap();
}
