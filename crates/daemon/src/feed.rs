//! [`Feed`], the one path every reader loop (file, stdin, syslog, journald)
//! sends its lines through: the pipeline's engine, the source's counts and
//! status, and the [`Msg::Batch`] that hands alerts with the position
//! [`After`] them to the decision thread. A leaf below `readers` (which
//! starts the loops) and `journald`/`syslog` (which run theirs).

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use shield_core::{Alert, Checkpoint, UnixTime};
use shield_detect::Engine;

use crate::state::{Msg, SourceStatus};

/// Where a reader stands after a batch, saved with it.
#[derive(Default)]
pub(crate) struct After {
    /// File positions, (path, checkpoint), saved under the pipeline's name
    /// (file readers).
    pub checkpoints: Vec<(String, Checkpoint)>,
    /// The files followed, for the status (file readers).
    pub files: Option<Vec<String>>,
    /// A journald cursor: (store key, cursor).
    pub cursor: Option<(String, String)>,
}

/// A reader's engine and what it read since its last batch: every reader
/// loop (file, stdin, syslog, journald) feeds its lines through one, so they
/// count, report and hand batches to the decision thread the same way.
pub(crate) struct Feed {
    pub(crate) name: String,
    engine: Engine,
    tx: mpsc::Sender<Msg>,
    sources: Arc<Mutex<BTreeMap<String, SourceStatus>>>,
    alerts: Vec<Alert>,
    lines: u64,
    matched: u64,
    bad: u64,
}

impl Feed {
    pub(crate) fn new(
        name: String,
        engine: Engine,
        tx: mpsc::Sender<Msg>,
        sources: Arc<Mutex<BTreeMap<String, SourceStatus>>>,
    ) -> Self {
        Feed {
            name,
            engine,
            tx,
            sources,
            alerts: Vec::new(),
            lines: 0,
            matched: 0,
            bad: 0,
        }
    }

    /// Feeds one line at time `t` (the clock, or the entry's own time);
    /// invalid UTF-8 is counted and fed lossily.
    pub(crate) fn line(&mut self, bytes: &[u8], t: UnixTime) {
        self.lines += 1;
        let before = self.engine.stats().matched;
        let alerts = &mut self.alerts;
        match std::str::from_utf8(bytes) {
            Ok(l) => {
                self.engine.feed(l, t, &mut |a| alerts.push(a));
            }
            Err(_) => {
                self.bad += 1;
                let l = String::from_utf8_lossy(bytes);
                self.engine.feed(&l, t, &mut |a| alerts.push(a));
            }
        }
        self.matched += self.engine.stats().matched - before;
    }

    /// Publishes how far behind the source is (see `lag`).
    pub(crate) fn lag(&self, b: crate::lag::Behind) {
        crate::lag::publish(&self.sources, &self.name, b);
    }

    /// Lines fed since the last batch.
    pub(crate) fn pending(&self) -> u64 {
        self.lines
    }

    pub(crate) fn has_alerts(&self) -> bool {
        !self.alerts.is_empty()
    }

    /// Shows `error` in the source's status (`None` clears it).
    pub(crate) fn set_error(&self, error: Option<String>) {
        let mut s = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(st) = s.get_mut(&self.name) {
            st.error = error;
        }
    }

    /// Runs `f` on the source's status (a listener's addresses, ...).
    pub(crate) fn status(&self, f: impl FnOnce(&mut SourceStatus)) {
        let mut s = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(st) = s.get_mut(&self.name) {
            f(st);
        }
    }

    /// Adds the counts to the source's status (last line at `t`, the followed
    /// files when the reader has files) and sends them, the alerts and the
    /// position `after` them as one batch. False when the decision thread is
    /// gone.
    pub(crate) fn flush(&mut self, t: UnixTime, after: After) -> bool {
        let stats = self.engine.stats();
        if let Ok(mut s) = self.sources.lock()
            && let Some(st) = s.get_mut(&self.name)
        {
            st.lines += self.lines;
            st.matched += self.matched;
            st.invalid_utf8 += self.bad;
            if self.lines > 0 {
                st.last_line_at = Some(t);
            }
            if let Some(f) = after.files {
                st.files = f;
            }
            st.keys_evicted = stats.keys_evicted;
            for r in stats.rules.iter().filter(|r| r.hits > 0) {
                st.rules.insert(r.name.clone(), r.hits);
            }
        }
        let batch = Msg::Batch {
            pipeline: self.name.clone(),
            alerts: std::mem::take(&mut self.alerts),
            checkpoints: after.checkpoints,
            lines: self.lines,
            matched: self.matched,
            cursor: after.cursor,
        };
        (self.lines, self.matched, self.bad) = (0, 0, 0);
        self.tx.send(batch).is_ok()
    }
}
