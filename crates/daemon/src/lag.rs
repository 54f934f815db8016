//! How far each source is behind its input: the lag between a line being
//! written and being read, and for files the bytes not read yet. It owns the
//! measurement ([`FileLag`] for followed files), the published figures
//! ([`publish`] into [`SourceStatus`]) and the rate-limited warning
//! ([`LagWarn`]); the readers call it once per pass, `/metrics` and
//! `shield status` show what it published. It reads no lines itself.
//!
//! Lag is real time (the system clock), not the daemon's injectable clock:
//! it compares file modification times and reading times, which a test clock
//! does not move. For a file, the oldest unread byte was written at or before
//! two instants we know: the first pass that saw the file longer than the
//! read offset, and the file's mtime (the last write, after every unread
//! byte). The lag is now minus the earlier of the two, so a backlog found at
//! start-up shows its age and a burst arriving while Shield runs shows how
//! long it has waited. Both are lower bounds: Shield never reports less
//! behind than it is by more than one pass.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use shield_core::Checkpoint;

use crate::state::SourceStatus;

/// A source whose lag stays above this is logged as behind (at most once a
/// minute while it stays behind).
pub const WARN_AFTER: Duration = Duration::from_secs(5);

/// How often the warning repeats while a source stays behind.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Size observations kept per file: enough for minutes of passes; when full,
/// later growth is not recorded and the lag stays a lower bound.
const MAX_SEEN: usize = 4096;

/// How far behind a source is now.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Behind {
    /// Age of the oldest line not read yet, in seconds (0 when caught up).
    pub seconds: f64,
    /// Bytes written and not read yet (files only).
    pub bytes: u64,
}

/// The size history of one followed file.
#[derive(Debug, Default)]
struct Track {
    id: (u64, u64),
    /// (size, when first seen at that size), sizes increasing.
    seen: VecDeque<(u64, SystemTime)>,
}

/// Measures the lag of a file reader from its checkpoints (the offset of
/// the first unread byte per followed path) and the files' metadata.
#[derive(Debug, Default)]
pub struct FileLag {
    files: HashMap<String, Track>,
}

impl FileLag {
    /// Stats every followed file and returns how far behind the reader is at
    /// `now`: bytes summed over the files, seconds of the furthest behind.
    /// Call it once per pass, before reading.
    pub fn observe(&mut self, checkpoints: &[(String, Checkpoint)], now: SystemTime) -> Behind {
        self.files
            .retain(|k, _| checkpoints.iter().any(|(c, _)| c == k));
        let mut out = Behind::default();
        for (path, cp) in checkpoints {
            let Ok(meta) = std::fs::metadata(path) else {
                continue;
            };
            let id = (meta.dev(), meta.ino());
            let size = meta.len();
            let track = self.files.entry(path.clone()).or_default();
            let truncated = track.seen.back().is_some_and(|&(s, _)| size < s);
            if track.id != id || truncated {
                *track = Track {
                    id,
                    seen: VecDeque::new(),
                };
            }
            if track.seen.back().is_none_or(|&(s, _)| size > s) && track.seen.len() < MAX_SEEN {
                track.seen.push_back((size, now));
            }
            // The reader still drains a rotated file: everything at the path is unread.
            let same = (cp.dev, cp.ino) == id;
            let offset = if same { cp.offset } else { 0 };
            while track.seen.front().is_some_and(|&(s, _)| s <= offset) {
                track.seen.pop_front();
            }
            let unread = size.saturating_sub(offset);
            if unread == 0 {
                continue;
            }
            out.bytes += unread;
            let first = track.seen.front().map_or(now, |&(_, t)| t);
            let oldest = meta.modified().map_or(first, |m| m.min(first));
            let secs = now.duration_since(oldest).unwrap_or_default().as_secs_f64();
            out.seconds = out.seconds.max(secs);
        }
        out
    }
}

/// Logs a source that stays behind (at once when its lag passes
/// [`WARN_AFTER`], then at most once a minute) and when it caught up.
#[derive(Debug, Default)]
pub struct LagWarn {
    warned: Option<Instant>,
}

impl LagWarn {
    pub fn update(&mut self, source: &str, b: Behind) {
        if b.seconds > WARN_AFTER.as_secs_f64() {
            if self.warned.is_none_or(|w| w.elapsed() >= WARN_EVERY) {
                tracing::warn!(
                    source,
                    lag_s = format_args!("{:.1}", b.seconds),
                    bytes_behind = b.bytes,
                    "source is behind its input: lines are read {:.1} s after they were written; \
                     nothing is dropped, decisions come late. Check `shield status` and the CPU \
                     of the host, or split the source",
                    b.seconds
                );
                self.warned = Some(Instant::now());
            }
        } else if self.warned.is_some() && b.seconds < 1.0 {
            tracing::info!(source, "source caught up with its input");
            self.warned = None;
        }
    }
}

/// Records `b` as source `name`'s lag (and its peak) in the shared status.
pub fn publish(sources: &Mutex<BTreeMap<String, SourceStatus>>, name: &str, b: Behind) {
    // Lock held to write three numbers, once per reader pass.
    if let Ok(mut s) = sources.lock()
        && let Some(st) = s.get_mut(name)
    {
        st.lag_seconds = b.seconds;
        st.bytes_behind = b.bytes;
        st.lag_peak_seconds = st.lag_peak_seconds.max(b.seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn cp(path: &std::path::Path, offset: u64) -> (String, Checkpoint) {
        let m = std::fs::metadata(path).unwrap();
        (
            path.to_string_lossy().into_owned(),
            Checkpoint {
                dev: m.dev(),
                ino: m.ino(),
                offset,
                fingerprint: 0,
            },
        )
    }

    /// Bytes behind are size minus offset; the age of the unread data is
    /// the earlier of the first pass that saw it and the file's mtime; a
    /// reader at the end of the file is 0 behind.
    #[test]
    fn lag_is_the_age_of_the_oldest_unread_data_and_zero_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        let mut f = std::fs::File::create(&p).unwrap();
        f.write_all(&[b'x'; 100]).unwrap();
        // Written an hour ago as far as the mtime says.
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        f.set_modified(hour_ago).unwrap();
        let mut lag = FileLag::default();
        let now = SystemTime::now();
        let b = lag.observe(&[cp(&p, 40)], now);
        assert_eq!(b.bytes, 60);
        assert!(b.seconds >= 3599.0, "{b:?}");
        assert_eq!(lag.observe(&[cp(&p, 100)], now), Behind::default());

        // Data appended now: its age is counted from the first pass that saw it.
        f.write_all(&[b'y'; 50]).unwrap();
        let t0 = SystemTime::now();
        assert_eq!(lag.observe(&[cp(&p, 100)], t0).bytes, 50);
        let b = lag.observe(&[cp(&p, 120)], t0 + Duration::from_secs(3));
        assert_eq!(b.bytes, 30);
        assert!((2.9..60.0).contains(&b.seconds), "{b:?}");
        assert_eq!(
            lag.observe(&[cp(&p, 150)], t0 + Duration::from_secs(4)),
            Behind::default()
        );
    }

    /// A reader still draining a rotated file counts the whole new file as unread.
    #[test]
    fn a_rotated_file_is_unread_until_the_reader_reaches_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        std::fs::write(&p, [b'x'; 10]).unwrap();
        let old = cp(&p, 10);
        std::fs::rename(&p, dir.path().join("a.log.1")).unwrap();
        std::fs::write(&p, [b'z'; 70]).unwrap();
        let b = FileLag::default().observe(&[old], SystemTime::now());
        assert_eq!(b.bytes, 70);
    }
}
