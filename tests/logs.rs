//! The daemon's own logs where they go: a redirected file gets no colour
//! escapes, and a stderr that is the journal (`JOURNAL_STREAM` names its
//! device and inode) gets one `<priority>` prefix per line.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::{config, shield, wait_for};

fn source(dir: &Path) -> String {
    std::fs::write(dir.join("auth.log"), "").unwrap();
    format!(
        "[[source]]\nname = \"sshd\"\npaths = [\"{}/auth.log\"]\npacks = [\"sshd\"]\n",
        dir.display()
    )
}

/// `shield run` with stderr into `dir/daemon.log`, `JOURNAL_STREAM` as given;
/// returns once the control socket answers.
fn start(dir: &Path, journal_stream: Option<&str>) -> Child {
    let cfg = dir.join("shield.toml");
    std::fs::write(
        &cfg,
        config(&source(dir), "").replace("@DIR@", dir.to_str().unwrap()),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("daemon.log")).unwrap();
    let mut cmd = shield();
    cmd.env_remove("JOURNAL_STREAM").env_remove("NO_COLOR");
    if let Some(js) = journal_stream {
        cmd.env("JOURNAL_STREAM", js);
    }
    let child = cmd
        .args(["--config", cfg.to_str().unwrap(), "run"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let sock = dir.join("shield.sock");
    assert!(
        wait_for(Duration::from_secs(20), || {
            std::os::unix::net::UnixStream::connect(&sock).ok()
        })
        .is_some(),
        "daemon did not come up"
    );
    child
}

/// A refused reload (an error of several lines), then SIGTERM; the log.
fn refused_reload_then_stop(dir: &Path, mut child: Child) -> String {
    std::fs::write(dir.join("shield.toml"), "[api\nbroken").unwrap();
    let pid = child.id().to_string();
    common::run_ok(&["kill", "-HUP", &pid]);
    let log = dir.join("daemon.log");
    let refused = wait_for(Duration::from_secs(10), || {
        let s = std::fs::read_to_string(&log).ok()?;
        s.contains("reload refused").then_some(())
    });
    common::run_ok(&["kill", "-TERM", &pid]);
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(refused.is_some(), "no refused reload in the log:\n{text}");
    text
}

#[test]
fn a_log_redirected_to_a_file_has_no_colour_escapes() {
    let dir = tempfile::tempdir().unwrap();
    let child = start(dir.path(), None);
    let log = refused_reload_then_stop(dir.path(), child);
    assert!(log.contains("shield is running"), "{log}");
    assert!(
        !log.contains('\x1b'),
        "escape sequences in a redirected log:\n{log}"
    );
    assert!(!log.starts_with('<'), "no journal prefixes off the journal");
}

#[test]
fn a_stderr_that_is_the_journal_gets_a_priority_on_every_line() {
    let dir = tempfile::tempdir().unwrap();
    // The file stands in for journald's stream: JOURNAL_STREAM names it.
    std::fs::write(dir.path().join("daemon.log"), "").unwrap();
    let m = std::fs::metadata(dir.path().join("daemon.log")).unwrap();
    let js = format!("{}:{}", m.dev(), m.ino());
    let child = start(dir.path(), Some(&js));
    let log = refused_reload_then_stop(dir.path(), child);
    assert!(!log.contains('\x1b'), "{log}");
    for line in log.lines() {
        assert!(
            line.starts_with("<3>") || line.starts_with("<4>") || line.starts_with("<6>"),
            "line without a priority: {line:?}\n{log}"
        );
    }
    assert!(
        log.lines()
            .any(|l| l.starts_with("<6>") && l.contains("shield is running")),
        "{log}"
    );
    let errors = log.lines().filter(|l| l.starts_with("<3>")).count();
    assert!(
        errors >= 2,
        "the refused reload's lines are all errors:\n{log}"
    );
}

#[test]
fn a_journal_stream_that_is_not_stderr_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    // Inherited from a parent whose stderr was the journal: ours is a file.
    let child = start(dir.path(), Some("1:1"));
    let log = refused_reload_then_stop(dir.path(), child);
    assert!(
        !log.lines().any(|l| l.starts_with('<')),
        "journal prefixes on a stderr that is not the journal:\n{log}"
    );
}
