//! The journald source: runs `journalctl -o json --all -f` (no libsystemd, as
//! Vector does), parses one JSON object per line and yields entries with their
//! unit, identifier, message bytes and time. The `__CURSOR` of the last entry
//! handed out is the checkpoint: pass it back to [`Journal::spawn`] after a
//! restart and journalctl resumes just after it (`--after-cursor`), so no entry
//! is read twice or skipped.
//!
//! journalctl's JSON has quirks this module absorbs: a field that is not
//! valid UTF-8 comes as an array of byte values; a field repeated in one entry
//! comes as an array of values (the first one is taken); `--all` keeps long
//! fields instead of `null`. It does not decide what a message means.

use std::ffi::OsString;
use std::io::BufReader;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::{LineReader, SourceError};

/// What to read from the journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalSpec {
    /// journalctl matches, e.g. `_SYSTEMD_UNIT=ssh.service` (entries matching
    /// any of them; journalctl ORs matches on different values of a field).
    pub matches: Vec<String>,
    /// The program to run; default `journalctl`.
    pub journalctl: PathBuf,
    /// Extra arguments (e.g. `--directory=/var/log/journal/…`, `--merge`).
    pub extra_args: Vec<String>,
}

impl Default for JournalSpec {
    fn default() -> Self {
        Self {
            matches: Vec::new(),
            journalctl: PathBuf::from("journalctl"),
            extra_args: Vec::new(),
        }
    }
}

/// One journal entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalEntry {
    /// `_SYSTEMD_UNIT`, if any (e.g. `ssh.service`).
    pub unit: Option<String>,
    /// `SYSLOG_IDENTIFIER`, else `_COMM` (e.g. `sshd`).
    pub identifier: Option<String>,
    /// `_PID`, if any.
    pub pid: Option<u32>,
    /// `MESSAGE`, as bytes (it need not be UTF-8).
    pub message: Vec<u8>,
    /// `__REALTIME_TIMESTAMP`: microseconds since the Unix epoch.
    pub realtime_us: i64,
    /// `__CURSOR`: where to resume after this entry.
    pub cursor: String,
}

impl JournalEntry {
    /// The unit if known, else the identifier, else `""`: the name rules are
    /// selected by.
    pub fn source_name(&self) -> &str {
        self.unit
            .as_deref()
            .or(self.identifier.as_deref())
            .unwrap_or("")
    }

    /// Unix seconds of the entry.
    pub fn unix_time(&self) -> i64 {
        self.realtime_us.div_euclid(1_000_000)
    }
}

/// Why one line of journalctl output was not an entry. Such a line is counted
/// and skipped, never fatal.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JournalParseError {
    #[error("journalctl printed something that is not a JSON object: {0}")]
    NotJson(String),
    #[error("journal entry has no {0} field")]
    Missing(&'static str),
    #[error("journal entry field {0} has an unexpected form")]
    BadField(&'static str),
}

/// The bytes of a journal field value: a string, an array of byte numbers, or
/// (for a field repeated in one entry) an array of those, of which the first
/// is taken.
fn field_bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::String(s) => Some(s.as_bytes().to_vec()),
        Value::Array(items) if items.iter().all(Value::is_number) => items
            .iter()
            .map(|n| n.as_u64().and_then(|b| u8::try_from(b).ok()))
            .collect(),
        Value::Array(items) => items.first().and_then(field_bytes),
        _ => None,
    }
}

fn field_string(v: Option<&Value>) -> Option<String> {
    v.and_then(field_bytes)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Parses one line of `journalctl -o json` output.
pub fn parse_entry(line: &[u8]) -> Result<JournalEntry, JournalParseError> {
    let v: Value =
        serde_json::from_slice(line).map_err(|e| JournalParseError::NotJson(e.to_string()))?;
    let Value::Object(map) = v else {
        return Err(JournalParseError::NotJson("not an object".into()));
    };
    let cursor = field_string(map.get("__CURSOR")).ok_or(JournalParseError::Missing("__CURSOR"))?;
    let realtime_us = field_string(map.get("__REALTIME_TIMESTAMP"))
        .ok_or(JournalParseError::Missing("__REALTIME_TIMESTAMP"))?
        .parse::<i64>()
        .map_err(|_| JournalParseError::BadField("__REALTIME_TIMESTAMP"))?;
    let message = match map.get("MESSAGE") {
        None | Some(Value::Null) => Vec::new(),
        Some(m) => field_bytes(m).ok_or(JournalParseError::BadField("MESSAGE"))?,
    };
    Ok(JournalEntry {
        unit: field_string(map.get("_SYSTEMD_UNIT")),
        identifier: field_string(map.get("SYSLOG_IDENTIFIER"))
            .or_else(|| field_string(map.get("_COMM"))),
        pid: field_string(map.get("_PID")).and_then(|p| p.parse().ok()),
        message,
        realtime_us,
        cursor,
    })
}

/// The arguments journalctl is run with.
pub fn journalctl_args(spec: &JournalSpec, after_cursor: Option<&str>) -> Vec<OsString> {
    let mut a: Vec<OsString> = ["-o", "json", "--all", "--follow", "--no-pager", "--quiet"]
        .iter()
        .map(OsString::from)
        .collect();
    match after_cursor {
        Some(c) => a.push(format!("--after-cursor={c}").into()),
        // No checkpoint: start at the end, as a new file is read from its end.
        None => a.push("--lines=0".into()),
    }
    a.extend(spec.extra_args.iter().map(OsString::from));
    a.extend(spec.matches.iter().map(OsString::from));
    a
}

/// A running `journalctl` and the entries it prints.
pub struct Journal {
    child: Arc<Mutex<Child>>,
    lines: LineReader<BufReader<ChildStdout>>,
    cursor: Option<String>,
    entries: u64,
    bad: u64,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("cursor", &self.cursor)
            .field("entries", &self.entries)
            .finish_non_exhaustive()
    }
}

/// Journal entries can be large (core dumps are not in MESSAGE, but stack
/// traces are); JSON lines longer than this are skipped and counted.
const MAX_JSON_LINE: usize = 1024 * 1024;

impl Journal {
    /// Starts journalctl, resuming after `after_cursor` (a cursor from
    /// [`Journal::cursor`]) or at the journal's end.
    pub fn spawn(spec: &JournalSpec, after_cursor: Option<&str>) -> Result<Self, SourceError> {
        let mut child = Command::new(&spec.journalctl)
            .args(journalctl_args(spec, after_cursor))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|source| SourceError::Journalctl { source })?;
        let Some(out) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(SourceError::Journalctl {
                source: std::io::Error::other("no stdout pipe"),
            });
        };
        Ok(Self {
            child: Arc::new(Mutex::new(child)),
            lines: LineReader::new(BufReader::with_capacity(64 * 1024, out), MAX_JSON_LINE),
            cursor: after_cursor.map(str::to_owned),
            entries: 0,
            bad: 0,
        })
    }

    /// Blocks for the next entry; `None` when journalctl exited (restart it
    /// from [`Journal::cursor`]). Unparsable lines are logged, counted and skipped.
    pub fn next_entry(&mut self) -> Option<Result<JournalEntry, SourceError>> {
        loop {
            let line = match self.lines.next_line()? {
                Ok(l) => l,
                Err(source) => {
                    return Some(Err(SourceError::Io {
                        what: "reading journalctl output".into(),
                        source,
                    }));
                }
            };
            if line.is_empty() {
                continue;
            }
            match parse_entry(line) {
                Ok(e) => {
                    self.cursor = Some(e.cursor.clone());
                    self.entries += 1;
                    return Some(Ok(e));
                }
                Err(e) => {
                    self.bad += 1;
                    if self.bad.is_power_of_two() {
                        tracing::warn!(error = %e, count = self.bad, "skipping journalctl output that is not an entry");
                    }
                }
            }
        }
    }

    /// Whether another line of journalctl output is already buffered, so
    /// [`Journal::next_entry`] would not block for it: a reader reports what
    /// it read before it blocks.
    pub fn has_buffered_entry(&self) -> bool {
        self.lines.has_buffered_line()
    }

    /// The cursor of the last entry handed out (or the one it was started
    /// after): the checkpoint to store with the decisions of that entry.
    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }

    /// Entries handed out, and lines skipped (unparsable or over 1 MiB).
    pub fn counts(&self) -> (u64, u64) {
        (self.entries, self.bad + self.lines.skipped_long())
    }
}

/// Stops a [`Journal`] from another thread: kills journalctl, so a
/// [`Journal::next_entry`] blocked on it returns `None`.
#[derive(Clone, Debug)]
pub struct JournalStopper(Arc<Mutex<Child>>);

impl JournalStopper {
    pub fn stop(&self) {
        // A poisoned lock only means another thread panicked while killing:
        // the child is still there to kill.
        let mut c = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = c.kill();
    }
}

impl Journal {
    /// A handle that stops this journal from another thread.
    pub fn stopper(&self) -> JournalStopper {
        JournalStopper(self.child.clone())
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // journalctl --follow never exits by itself.
        let mut c = self
            .child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = c.kill();
        let _ = c.wait();
    }
}
