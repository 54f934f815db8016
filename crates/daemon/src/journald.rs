//! The daemon's journald reader: one pipeline following the journal through
//! [`shield_sources::journald::Journal`] (the one journalctl reader Shield
//! has), feeding each entry to the engine and persisting the journal cursor
//! with the decisions of the entries before it.
//!
//! An entry reaches the rules as its structured fields, not a re-rendered
//! syslog line: the entry's own time is the engine's clock for it (no
//! timestamp is formatted and parsed back) and the rules see only
//! `IDENTIFIER[PID]: MESSAGE`, the form they route by program and connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shield_sources::journald::{Journal, JournalEntry, JournalSpec};

use crate::feed::{After, Feed};
use shield_core::Clock;

/// Defined with the built-in default config (a leaf), used here too.
pub use crate::config::SSHD_MATCHES;

/// What the rules read of `e`, written into `buf` (reused):
/// `IDENTIFIER[PID]: MESSAGE`, newlines in the message as spaces.
pub fn entry_line<'b>(e: &JournalEntry, buf: &'b mut String) -> &'b str {
    use std::fmt::Write;
    buf.clear();
    let ident = e.identifier.as_deref().unwrap_or("-");
    let _ = match e.pid {
        Some(p) => write!(buf, "{ident}[{p}]: "),
        None => write!(buf, "{ident}: "),
    };
    let msg = String::from_utf8_lossy(&e.message);
    buf.extend(msg.chars().map(|c| if c == '\n' { ' ' } else { c }));
    buf
}

/// Starts following the journal for one pipeline, whose entries go through
/// `feed`: `spec` says which entries (matches, `--directory`), `cursor` where
/// to resume (`None`: at the end) and `cursor_key` where the decision thread
/// saves it; `clock` stamps the status (the engine takes each entry's own time).
pub(crate) fn spawn(
    mut feed: Feed,
    spec: JournalSpec,
    stop: Arc<AtomicBool>,
    cursor_key: String,
    cursor: Option<String>,
    clock: Clock,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(format!("src-{}", feed.name)).spawn(move || {
        let mut cursor = cursor;
        let mut buf = String::new();
        while !stop.load(Ordering::Relaxed) {
            let mut journal = match Journal::spawn(&spec, cursor.as_deref()) {
                Ok(j) => j,
                Err(e) => {
                    tracing::error!(source = %feed.name, error = %e, "cannot follow the journal; retrying in 10 s");
                    feed.set_error(Some(e.to_string()));
                    sleep_unless(&stop, Duration::from_secs(10));
                    continue;
                }
            };
            feed.set_error(None);
            // Kills journalctl when asked to stop, so the blocked read returns.
            let done = Arc::new(AtomicBool::new(false));
            let watcher = {
                let (stop, done, stopper) = (stop.clone(), done.clone(), journal.stopper());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) && !done.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    stopper.stop();
                })
            };
            let mut last_send = Instant::now();
            let mut warn = crate::lag::LagWarn::default();
            while let Some(next) = journal.next_entry() {
                let e = match next {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::warn!(source = %feed.name, error = %e, "journal read failed");
                        break;
                    }
                };
                feed.line(entry_line(&e, &mut buf).as_bytes(), e.unix_time());
                cursor = Some(e.cursor);
                // Also before a read that would block: no line waits unreported.
                if feed.has_alerts()
                    || feed.pending() >= 1000
                    || last_send.elapsed() > Duration::from_secs(1)
                    || !journal.has_buffered_entry()
                {
                    // Lag: the entry's own time against now, at each batch.
                    let written = std::time::UNIX_EPOCH + Duration::from_micros(e.realtime_us.max(0) as u64);
                    let seconds = std::time::SystemTime::now()
                        .duration_since(written)
                        .unwrap_or_default()
                        .as_secs_f64();
                    let behind = crate::lag::Behind { seconds, bytes: 0 };
                    feed.lag(behind);
                    warn.update(&feed.name, behind);
                    let after = After {
                        cursor: cursor.clone().map(|c| (cursor_key.clone(), c)),
                        ..After::default()
                    };
                    if !feed.flush(clock.now(), after) {
                        break;
                    }
                    last_send = Instant::now();
                }
            }
            done.store(true, Ordering::Relaxed);
            drop(journal);
            let _ = watcher.join();
            tracing::debug!(source = %feed.name, "journalctl ended");
            if !stop.load(Ordering::Relaxed) {
                sleep_unless(&stop, Duration::from_secs(2));
            }
        }
    })
}

fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_reaches_the_rules_as_program_pid_and_message() {
        let raw = br#"{"__CURSOR":"s=abc;i=1","__REALTIME_TIMESTAMP":"1709287200123456","_HOSTNAME":"web1","SYSLOG_IDENTIFIER":"sshd-session","_PID":"4242","MESSAGE":"Failed password for root\nfrom 203.0.113.7 port 50000 ssh2"}"#;
        let e = shield_sources::journald::parse_entry(raw).unwrap();
        let mut buf = String::new();
        assert_eq!(
            entry_line(&e, &mut buf),
            "sshd-session[4242]: Failed password for root from 203.0.113.7 port 50000 ssh2"
        );
        assert_eq!(e.unix_time(), 1_709_287_200);
    }
}
