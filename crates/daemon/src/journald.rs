//! The journald source: follows `journalctl -o json -f` (no libsystemd), turns
//! each entry into a syslog-style line with an RFC 3339 stamp, and persists the
//! journal cursor with the decisions of the lines before it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use shield_detect::Engine;

use crate::run::{Msg, SourceStatus, now};

/// One journal entry, as much as Shield needs of it.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    pub cursor: String,
    pub realtime_us: i64,
    pub host: String,
    pub ident: String,
    pub pid: Option<String>,
    pub message: String,
}

/// A field may be a string, an array of byte values (non-UTF-8 data), or an
/// array of those (a repeated field; the first is taken).
fn field(v: &Value, k: &str) -> Option<String> {
    match v.get(k)? {
        Value::String(s) => Some(s.clone()),
        Value::Array(a) if a.iter().all(Value::is_number) => {
            let b: Vec<u8> = a
                .iter()
                .filter_map(|x| x.as_u64())
                .map(|x| x as u8)
                .collect();
            Some(String::from_utf8_lossy(&b).into_owned())
        }
        Value::Array(a) => a.first().and_then(|x| match x {
            Value::String(s) => Some(s.clone()),
            _ => None,
        }),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Parses one line of `journalctl -o json`. `None` for anything that is not an entry with a message.
pub fn parse_entry(line: &str) -> Option<Entry> {
    let v: Value = serde_json::from_str(line).ok()?;
    Some(Entry {
        cursor: field(&v, "__CURSOR")?,
        realtime_us: field(&v, "__REALTIME_TIMESTAMP")?.parse().ok()?,
        host: field(&v, "_HOSTNAME").unwrap_or_else(|| "localhost".into()),
        ident: field(&v, "SYSLOG_IDENTIFIER")
            .or_else(|| field(&v, "_COMM"))
            .unwrap_or_default(),
        pid: field(&v, "_PID").or_else(|| field(&v, "SYSLOG_PID")),
        message: field(&v, "MESSAGE")?,
    })
}

impl Entry {
    /// The entry as a syslog-style line the rule packs read:
    /// `2024-03-01T10:00:00.123456+00:00 host sshd[123]: message`.
    pub fn to_line(&self) -> String {
        let secs = self.realtime_us.div_euclid(1_000_000);
        let micros = self.realtime_us.rem_euclid(1_000_000);
        let ts = jiff::Timestamp::from_second(secs)
            .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S").to_string())
            .unwrap_or_else(|_| "1970-01-01T00:00:00".into());
        let msg = self.message.replace('\n', " ");
        match &self.pid {
            Some(p) => format!(
                "{ts}.{micros:06}+00:00 {} {}[{p}]: {msg}",
                self.host, self.ident
            ),
            None => format!("{ts}.{micros:06}+00:00 {} {}: {msg}", self.host, self.ident),
        }
    }
}

/// Starts following the journal for one pipeline.
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    name: String,
    matches: Vec<String>,
    mut engine: Engine,
    tx: mpsc::Sender<Msg>,
    stop: Arc<AtomicBool>,
    sources: Arc<Mutex<BTreeMap<String, SourceStatus>>>,
    cursor_key: String,
    cursor: Option<String>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(format!("src-{name}")).spawn(move || {
        let mut cursor = cursor;
        while !stop.load(Ordering::Relaxed) {
            let mut cmd = Command::new("journalctl");
            // --all: without it journalctl sends long fields as null.
            cmd.args(["-o", "json", "-f", "--all", "--no-pager"]);
            match &cursor {
                Some(c) => cmd.arg(format!("--after-cursor={c}")),
                None => cmd.args(["-n", "0"]),
            };
            cmd.args(&matches).stdout(Stdio::piped()).stderr(Stdio::null());
            let mut child = match cmd.spawn() {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(source = %name, error = %e, "cannot run journalctl; retrying in 10 s");
                    set_error(&sources, &name, format!("cannot run journalctl: {e}"));
                    sleep_unless(&stop, Duration::from_secs(10));
                    continue;
                }
            };
            let Some(out) = child.stdout.take() else { continue };
            let pid = child.id();
            let child = Arc::new(Mutex::new(child));
            // Kills journalctl when asked to stop, so the blocked read returns.
            let watcher = {
                let (stop, child) = (stop.clone(), child.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(200));
                        if let Ok(Some(_)) = child.lock().map(|mut c| c.try_wait().ok().flatten()) {
                            return;
                        }
                    }
                    let _ = child.lock().map(|mut c| c.kill());
                })
            };
            let mut alerts = Vec::new();
            let (mut lines, mut matched) = (0u64, 0u64);
            let mut last_send = Instant::now();
            for raw in BufReader::new(out).lines() {
                let Ok(raw) = raw else { break };
                let Some(e) = parse_entry(&raw) else { continue };
                let t = now();
                let before = engine.stats().matched;
                engine.feed(&e.to_line(), t, &mut |a| alerts.push(a));
                lines += 1;
                matched += engine.stats().matched - before;
                cursor = Some(e.cursor);
                if !alerts.is_empty() || lines >= 1000 || last_send.elapsed() > Duration::from_secs(1) {
                    if let Ok(mut s) = sources.lock()
                        && let Some(st) = s.get_mut(&name) {
                            st.lines += lines;
                            st.matched += matched;
                            st.last_line_at = Some(t);
                        }
                    let _ = tx.send(Msg::Batch {
                        pipeline: name.clone(),
                        alerts: std::mem::take(&mut alerts),
                        checkpoints: vec![],
                        lines,
                        matched,
                        cursor: cursor.clone().map(|c| (cursor_key.clone(), c)),
                    });
                    lines = 0;
                    matched = 0;
                    last_send = Instant::now();
                }
            }
            let _ = child.lock().map(|mut c| c.kill());
            let _ = watcher.join();
            tracing::debug!(pid, "journalctl ended");
            if !stop.load(Ordering::Relaxed) {
                sleep_unless(&stop, Duration::from_secs(2));
            }
        }
    })
}

fn set_error(sources: &Mutex<BTreeMap<String, SourceStatus>>, name: &str, e: String) {
    if let Ok(mut s) = sources.lock()
        && let Some(st) = s.get_mut(name)
    {
        st.error = Some(e);
    }
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
    fn parses_journalctl_json() {
        let line = r#"{"__CURSOR":"s=abc;i=1","__REALTIME_TIMESTAMP":"1709287200123456","_HOSTNAME":"web1","SYSLOG_IDENTIFIER":"sshd","_PID":"4242","MESSAGE":"Failed password for root from 203.0.113.7 port 50000 ssh2"}"#;
        let e = parse_entry(line).unwrap();
        assert_eq!(
            e.to_line(),
            "2024-03-01T10:00:00.123456+00:00 web1 sshd[4242]: Failed password for root from 203.0.113.7 port 50000 ssh2"
        );
        // Non-UTF-8 message as a byte array; repeated field as an array.
        let line = r#"{"__CURSOR":"c","__REALTIME_TIMESTAMP":"0","SYSLOG_IDENTIFIER":["sshd","x"],"MESSAGE":[104,105,255]}"#;
        let e = parse_entry(line).unwrap();
        assert_eq!(e.ident, "sshd");
        assert_eq!(e.message, "hi\u{fffd}");
        assert!(parse_entry("not json").is_none());
        assert!(parse_entry(r#"{"__CURSOR":"c"}"#).is_none());
    }
}
