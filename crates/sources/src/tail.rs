//! [`Tailer`]: follows the files matched by a set of globs, across rename and
//! copytruncate rotation, and reports checkpoints so a restart neither
//! re-reads nor skips a line.
//!
//! # Model
//!
//! Each followed *path* (a glob match, or the key of a saved checkpoint that
//! still matches a glob) has a follower holding at most one open file. Every
//! pass ([`Tailer::read_available`]) stats every path and compares its
//! (device, inode) with the open file:
//!
//! * **same file** — read from the last position to the end. If the file is
//!   now shorter than what was read, or its first bytes no longer hash to the
//!   stored fingerprint, it was truncated (copytruncate) or rewritten: start
//!   again from offset 0.
//! * **different file or no file** (rename rotation, deletion) — keep reading
//!   the old descriptor to its end. The old file is retired, and the new file
//!   at the path is read from its start, only once the new file has data (the
//!   writer has switched) or the old one was deleted. Until then a writer that
//!   has not reopened its log yet can still append to the old file and nothing
//!   is lost. Because one path reads one file at a time, lines are delivered in
//!   order per path and one checkpoint per path is enough. If the path
//!   rotated more than once before Shield looked (or while it was stopped),
//!   the generations in between (`x.1` when the finished file is now `x.2`)
//!   are read next, oldest first by their rotated names, before the new file.
//!
//! A file is owned by one follower at a time (by device and inode): with a glob
//! such as `app.log*` that also matches the rotated `app.log.1`, the rotated
//! file is not read twice; the retired position of a file is remembered so a
//! follower that picks it up under its new name continues where it ended.
//!
//! # Where a file is read from
//!
//! * a saved checkpoint whose (dev, ino, fingerprint) matches the file at the
//!   path: its offset;
//! * a checkpoint whose file was rotated while Shield was stopped: the rotated
//!   file is looked for among the siblings in the same directory (`x.1`,
//!   `x-YYYYMMDD`, any name: dev, ino and fingerprint decide), finished from
//!   the checkpoint, then the new file is read from its start;
//! * a checkpoint whose file was truncated or replaced: offset 0;
//! * a path seen for the first time at [`Tailer::new`]: its end, or its start
//!   if [`FileSpec::from_start`] (when the end falls inside a line, the rest of
//!   that line is dropped, not delivered as a fragment);
//! * a path that appears later (created or renamed into place while Shield
//!   runs): its start, since every byte of it was written after Shield started.
//!
//! # Fingerprints
//!
//! See [`crate::fingerprint_of`]: the fingerprint covers the first
//! `min(offset, 256)` bytes, so for a file still shorter than 256 bytes it is
//! recomputed as the offset grows, and it is fixed once 256 bytes were read.
//!
//! # Limits (inherent, documented rather than hidden)
//!
//! * copytruncate: lines written after Shield's last read and before the
//!   truncation are in the copy (`x.1`), not in `x`; Shield reads `x` and so
//!   misses them, as every tailer does. Lines written between logrotate's copy
//!   and its truncate are lost for everyone, Shield included.
//! * A rotated file deleted or compressed before Shield read it to the end
//!   (while Shield was stopped) cannot be finished; Shield logs it and reads the
//!   new file from its start.
//! * A checkpoint taken while Shield sat inside a partial line resumes at the
//!   start of that line; a start-at-end position inside a line (first run,
//!   `from_start = false`) drops the rest of that line, except after a restart
//!   taken before its `\n` arrived, where the fragment is delivered.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{File, Metadata};
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use shield_core::Checkpoint;

use crate::SourceError;
use crate::fingerprint::{FINGERPRINT_MAX, fingerprint_file, fingerprint_of};
use crate::lines::{CHUNK, strip_cr};
use crate::watch::Watcher;

/// Default longest line delivered: 64 KiB.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;

/// At most this many bytes are read from one file in one pass, so a huge
/// backlog in one file does not starve the others; [`ReadStats::more`] says
/// that another pass is due at once.
const PASS_BUDGET: u64 = 16 * 1024 * 1024;

/// Globs are re-scanned at least this often even without an inotify event.
const RESCAN_EVERY: Duration = Duration::from_secs(1);

/// An unreadable file is logged at most once per this interval (it is counted
/// every time).
const ERROR_LOG_EVERY: Duration = Duration::from_secs(60);

/// A deleted file whose path has no new file is finished once it had no new
/// data for this long (a writer may still hold it open and append).
const RETIRE_IDLE: Duration = Duration::from_secs(5);

/// How many retired files (rotated away and read to their end) are remembered.
const RETIRED_MAX: usize = 4096;

/// What to follow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSpec {
    /// Paths or glob patterns (`/var/log/nginx/*.log`).
    pub globs: Vec<String>,
    /// A file never seen before is read from its start (else from its end).
    pub from_start: bool,
    /// Longer lines are skipped and counted. Default [`DEFAULT_MAX_LINE`].
    pub max_line: usize,
}

impl Default for FileSpec {
    fn default() -> Self {
        Self {
            globs: Vec::new(),
            from_start: false,
            max_line: DEFAULT_MAX_LINE,
        }
    }
}

/// What one [`Tailer::read_available`] call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Lines delivered.
    pub lines: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Lines longer than `max_line` skipped.
    pub skipped_long: u64,
    /// Some file had more data than one pass reads: call again without waiting.
    pub more: bool,
}

/// Counters for one followed path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileStats {
    pub path: PathBuf,
    /// Lines delivered.
    pub lines: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Lines longer than `max_line`, skipped.
    pub skipped_long: u64,
    /// Wall time of the last delivered line.
    pub last_line_at: Option<SystemTime>,
    /// Rename rotations followed (including ones found at start-up).
    pub rotations: u64,
    /// Truncations (copytruncate) or rewrites detected.
    pub truncations: u64,
    /// Failed opens, stats or reads (each retried on the next pass).
    pub errors: u64,
}

/// Counters for the whole tailer; `files` is in the order paths were found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TailStats {
    pub files: Vec<FileStats>,
    pub rotations: u64,
    pub truncations: u64,
    pub errors: u64,
}

/// An open file being read.
#[derive(Debug)]
struct OpenFile {
    file: File,
    /// The name it had when opened (for logs only).
    opened_as: PathBuf,
    dev: u64,
    ino: u64,
    /// First byte after the last delivered (or skipped) line.
    offset: u64,
    /// First byte not read yet: `offset` + held-back partial line.
    read_pos: u64,
    /// The held-back start of a line with no `\n` yet (at most max_line + 1).
    partial: Vec<u8>,
    /// Discarding up to the next `\n` (an over-long line, or the tail of the
    /// line the start position fell into).
    skipping: bool,
    /// Fingerprint of the first `fp_len` = min(offset, 256) bytes.
    fp: u64,
    fp_len: u64,
    /// Size at the last pass, to check the fingerprint only when it changes.
    last_size: u64,
    /// When data was last read (a deleted file is retired once quiet).
    last_data: Instant,
}

impl OpenFile {
    fn new(file: File, opened_as: &Path, meta: &Metadata) -> Self {
        Self {
            file,
            opened_as: opened_as.to_path_buf(),
            dev: meta.dev(),
            ino: meta.ino(),
            offset: 0,
            read_pos: 0,
            partial: Vec::new(),
            skipping: false,
            fp: fingerprint_of(b""),
            fp_len: 0,
            last_size: meta.len(),
            last_data: Instant::now(),
        }
    }

    fn id(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }

    /// Positions at `offset` (a known line boundary).
    fn seek_line(&mut self, offset: u64) -> std::io::Result<()> {
        self.offset = offset;
        self.read_pos = offset;
        self.partial.clear();
        self.skipping = false;
        self.refresh_fp(true)
    }

    /// Positions at the end of the file; if the end is inside a line, the
    /// rest of that line is dropped when it arrives.
    fn seek_end(&mut self, size: u64) -> std::io::Result<()> {
        self.seek_line(size)?;
        if size > 0 {
            let mut last = [0u8; 1];
            let n = self.file.read_at(&mut last, size - 1)?;
            self.skipping = n == 1 && last[0] != b'\n';
        }
        Ok(())
    }

    fn reset_to_start(&mut self) {
        self.offset = 0;
        self.read_pos = 0;
        self.partial.clear();
        self.skipping = false;
        self.fp = fingerprint_of(b"");
        self.fp_len = 0;
    }

    /// Keeps the fingerprint covering min(offset, 256) bytes.
    fn refresh_fp(&mut self, force: bool) -> std::io::Result<()> {
        let want = self.offset.min(FINGERPRINT_MAX);
        if force || want > self.fp_len {
            // None: the file shrank under us; the next pass sees a truncation.
            if let Some(fp) = fingerprint_file(&self.file, want)? {
                self.fp = fp;
                self.fp_len = want;
            }
        }
        Ok(())
    }

    fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            dev: self.dev,
            ino: self.ino,
            offset: self.offset,
            fingerprint: self.fp,
        }
    }
}

#[derive(Debug)]
struct Follower {
    path: PathBuf,
    key: String,
    cur: Option<OpenFile>,
    /// The path existed at start-up but could not be opened: its first
    /// successful open follows the start-up policy (end unless from_start).
    first_open_at_end: bool,
    last_error_log: Option<Instant>,
}

/// Follows files; see the module documentation.
pub struct Tailer {
    spec: FileSpec,
    patterns: Vec<glob::Pattern>,
    followers: Vec<Follower>,
    stats: TailStats,
    /// Files read to their end after rotation: (dev, ino) -> (offset, fingerprint).
    retired: HashMap<(u64, u64), (u64, u64)>,
    retired_order: VecDeque<(u64, u64)>,
    chunk: Vec<u8>,
    watcher: Watcher,
    last_rescan: Instant,
    rescan_due: bool,
    more_pending: bool,
}

impl std::fmt::Debug for Tailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tailer")
            .field("spec", &self.spec)
            .field("followers", &self.followers.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// The checkpoint key of a followed path.
fn key_of(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// The directory a glob's matches live under: its longest prefix without
/// wildcards (watched with inotify).
fn glob_base(pattern: &str) -> PathBuf {
    let mut base = PathBuf::new();
    let comps: Vec<&str> = pattern.split('/').collect();
    for (i, c) in comps.iter().enumerate() {
        if i + 1 == comps.len() || c.contains(['*', '?', '[']) {
            break;
        }
        if c.is_empty() && i == 0 {
            base.push("/");
        } else {
            base.push(c);
        }
    }
    if base.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base
    }
}

/// The place of a rotated file's name in its generation order.
#[derive(Clone, Debug, PartialEq, Eq)]
enum GenKey {
    /// `x.3`: a higher number is older.
    Numbered(u8, u64),
    /// `x-20261129`: a lexically greater suffix is newer (same separator).
    Suffix(u8, Vec<u8>),
}

impl GenKey {
    fn of(base: &[u8], name: &[u8]) -> Option<Self> {
        if name.len() < base.len() + 2 || !name.starts_with(base) {
            return None;
        }
        let sep = name[base.len()];
        if !matches!(sep, b'.' | b'-' | b'_') {
            return None;
        }
        let suffix = &name[base.len() + 1..];
        let compressed = [&b".gz"[..], b".bz2", b".xz", b".zst", b".lz4", b".Z"]
            .iter()
            .any(|ext| suffix.ends_with(ext))
            || matches!(suffix, b"gz" | b"bz2" | b"xz" | b"zst" | b"lz4" | b"Z");
        if compressed {
            return None;
        }
        // `x.1`..`x.99999` count generations; longer digit runs are dates
        // (`x-20261129`, dateext), which sort lexically.
        if sep == b'.' && suffix.len() <= 5 && suffix.iter().all(u8::is_ascii_digit) {
            let n = std::str::from_utf8(suffix).ok()?.parse().ok()?;
            return Some(GenKey::Numbered(sep, n));
        }
        Some(GenKey::Suffix(sep, suffix.to_vec()))
    }

    /// Whether `self` was rotated after `other` (same naming scheme only).
    fn newer_than(&self, other: &Self) -> bool {
        match (self, other) {
            (GenKey::Numbered(s, a), GenKey::Numbered(t, b)) => s == t && a < b,
            (GenKey::Suffix(s, a), GenKey::Suffix(t, b)) => s == t && a > b,
            _ => false,
        }
    }

    /// Oldest first.
    fn age_order(&self, other: &Self) -> std::cmp::Ordering {
        match (self, other) {
            (GenKey::Numbered(_, a), GenKey::Numbered(_, b)) => b.cmp(a),
            (GenKey::Suffix(_, a), GenKey::Suffix(_, b)) => a.cmp(b),
            _ => std::cmp::Ordering::Equal,
        }
    }
}

impl Tailer {
    /// Starts following `spec.globs`. `saved`: checkpoints previously returned
    /// by [`Tailer::checkpoints`], loaded from the store by the daemon.
    pub fn new(spec: FileSpec, saved: Vec<(String, Checkpoint)>) -> Result<Self, SourceError> {
        if spec.globs.is_empty() {
            return Err(SourceError::NoGlobs);
        }
        if spec.max_line == 0 {
            return Err(SourceError::BadMaxLine);
        }
        let patterns = spec
            .globs
            .iter()
            .map(|g| {
                glob::Pattern::new(g).map_err(|source| SourceError::BadGlob {
                    glob: g.clone(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut t = Tailer {
            spec,
            patterns,
            followers: Vec::new(),
            stats: TailStats::default(),
            retired: HashMap::new(),
            retired_order: VecDeque::new(),
            chunk: vec![0; CHUNK],
            watcher: Watcher::new(),
            last_rescan: Instant::now(),
            rescan_due: false,
            more_pending: false,
        };
        let saved: HashMap<String, Checkpoint> = saved.into_iter().collect();
        let mut paths: Vec<PathBuf> = t.scan();
        // A literal path is followed even while it is missing or unreadable,
        // so its errors are counted and its appearance is noticed.
        for g in &t.spec.globs {
            let p = PathBuf::from(g);
            if !g.contains(['*', '?', '[']) && !paths.contains(&p) {
                paths.push(p);
            }
        }
        for key in saved.keys() {
            let p = PathBuf::from(key);
            if t.patterns.iter().any(|pat| pat.matches_path(&p)) && !paths.contains(&p) {
                paths.push(p);
            }
        }
        paths.sort();
        // Saved checkpoints first: a rotated file they finish must be owned
        // by them before a glob match of the same file is considered.
        let (with_cp, without): (Vec<_>, Vec<_>) = paths
            .into_iter()
            .partition(|p| saved.contains_key(&key_of(p)));
        for p in with_cp {
            let cp = &saved[&key_of(&p)];
            t.add_resumed(p, cp);
        }
        for p in without {
            t.add_initial(p);
        }
        t.watch_dirs();
        Ok(t)
    }

    /// Every regular file the globs match now, sorted.
    fn scan(&mut self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for g in &self.spec.globs {
            match glob::glob(g) {
                Ok(paths) => {
                    for p in paths {
                        match p {
                            Ok(p) if p.is_file() => out.push(p),
                            Ok(_) => {}
                            Err(e) => {
                                tracing::debug!(error = %e, "glob could not read a directory")
                            }
                        }
                    }
                }
                // Validated in new(); cannot fail here.
                Err(e) => tracing::debug!(glob = %g, error = %e, "bad glob"),
            }
        }
        out.sort();
        out.dedup();
        out
    }

    fn push_follower(&mut self, path: PathBuf, cur: Option<OpenFile>, first_open_at_end: bool) {
        self.stats.files.push(FileStats {
            path: path.clone(),
            ..FileStats::default()
        });
        self.followers.push(Follower {
            key: key_of(&path),
            path,
            cur,
            first_open_at_end,
            last_error_log: None,
        });
    }

    fn owned(&self, id: (u64, u64)) -> bool {
        self.followers
            .iter()
            .any(|f| f.cur.as_ref().is_some_and(|o| o.id() == id))
    }

    /// A path with a saved checkpoint (start-up).
    fn add_resumed(&mut self, path: PathBuf, cp: &Checkpoint) {
        let idx = self.followers.len();
        self.push_follower(path.clone(), None, false);
        let at_path = std::fs::metadata(&path).ok().filter(|m| m.is_file());
        if let Some(m) = &at_path
            && (m.dev(), m.ino()) == (cp.dev, cp.ino)
        {
            match File::open(&path) {
                Ok(file) => {
                    let mut o = OpenFile::new(file, &path, m);
                    let same = m.len() >= cp.offset
                        && matches!(fingerprint_file(&o.file, cp.offset), Ok(Some(fp)) if fp == cp.fingerprint);
                    let res = if same {
                        o.seek_line(cp.offset)
                    } else {
                        tracing::info!(path = %path.display(), "file was truncated or replaced while Shield was stopped; reading it from its start");
                        self.stats.truncations += 1;
                        self.stats.files[idx].truncations += 1;
                        o.seek_line(0)
                    };
                    match res {
                        Ok(()) => self.followers[idx].cur = Some(o),
                        Err(e) => self.error(idx, "read", &path, &e),
                    }
                }
                Err(e) => self.error(idx, "open", &path, &e),
            }
            return;
        }
        // Rotated (or deleted) while Shield was stopped: finish the old file.
        if let Some(o) = self.find_rotated(&path, cp) {
            tracing::info!(path = %path.display(), rotated = %o.opened_as.display(), offset = cp.offset,
                "file was rotated while Shield was stopped; finishing the rotated file first");
            // Counted as a rotation when the follower switches to the new file.
            self.followers[idx].cur = Some(o);
            return;
        }
        if at_path.is_some() {
            tracing::warn!(path = %path.display(),
                "file changed while Shield was stopped and the old file is gone (deleted or compressed); lines written to it after the checkpoint are lost; reading the new file from its start");
        }
        // Otherwise the next pass opens the file at the path from its start.
    }

    /// Looks in `path`'s directory for the file a checkpoint was taken on.
    fn find_rotated(&self, path: &Path, cp: &Checkpoint) -> Option<OpenFile> {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let entries = std::fs::read_dir(dir).ok()?;
        for e in entries.flatten() {
            let p = e.path();
            if p == path {
                continue;
            }
            let Ok(m) = std::fs::metadata(&p) else {
                continue;
            };
            if !m.is_file() || (m.dev(), m.ino()) != (cp.dev, cp.ino) || m.len() < cp.offset {
                continue;
            }
            if self.owned((cp.dev, cp.ino)) {
                return None;
            }
            let Ok(file) = File::open(&p) else { continue };
            let mut o = OpenFile::new(file, &p, &m);
            if matches!(fingerprint_file(&o.file, cp.offset), Ok(Some(fp)) if fp == cp.fingerprint)
                && o.seek_line(cp.offset).is_ok()
            {
                return Some(o);
            }
        }
        None
    }

    /// A path without a checkpoint found at start-up.
    fn add_initial(&mut self, path: PathBuf) {
        let idx = self.followers.len();
        // A file that does not exist yet will be created while Shield runs:
        // read it from its start when it appears.
        let exists = match std::fs::metadata(&path) {
            Ok(_) => true,
            Err(e) => !matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory),
        };
        self.push_follower(path.clone(), None, exists && !self.spec.from_start);
        self.open_at_path(idx, &path);
    }

    /// Opens the file now at the follower's path, honouring file ownership,
    /// retired positions and the start-up policy. Leaves `cur` None if it
    /// cannot (yet).
    fn open_at_path(&mut self, idx: usize, path: &Path) {
        let m = match std::fs::metadata(path) {
            Ok(m) if m.is_file() => m,
            Ok(_) => return,
            Err(e) if e.kind() == ErrorKind::NotFound => return,
            Err(e) => return self.error(idx, "stat", path, &e),
        };
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return,
            Err(e) => return self.error(idx, "open", path, &e),
        };
        // The opened file is the truth (the path may have changed since stat).
        let m = match file.metadata() {
            Ok(fm) => fm,
            Err(_) => m,
        };
        let id = (m.dev(), m.ino());
        if self.owned(id) {
            // Another path still reads this file (rotated under a name our
            // globs match too); take it over once that one retires it.
            return;
        }
        let mut o = OpenFile::new(file, path, &m);
        let res = if let Some(&(off, fp)) = self.retired.get(&id)
            && matches!(fingerprint_file(&o.file, off), Ok(Some(f)) if f == fp)
        {
            o.seek_line(off)
        } else if self.followers[idx].first_open_at_end {
            o.seek_end(m.len())
        } else {
            o.seek_line(0)
        };
        match res {
            Ok(()) => {
                self.followers[idx].first_open_at_end = false;
                self.followers[idx].cur = Some(o);
            }
            Err(e) => self.error(idx, "read", path, &e),
        }
    }

    fn error(&mut self, idx: usize, what: &str, path: &Path, e: &std::io::Error) {
        self.stats.errors += 1;
        self.stats.files[idx].errors += 1;
        let f = &mut self.followers[idx];
        let now = Instant::now();
        if f.last_error_log
            .is_none_or(|t| now.duration_since(t) >= ERROR_LOG_EVERY)
        {
            f.last_error_log = Some(now);
            tracing::warn!(path = %path.display(), error = %e,
                "cannot {what} log file; will retry (check that it exists and that Shield may read it)");
        }
    }

    fn watch_dirs(&mut self) {
        let mut dirs: HashSet<PathBuf> = self.spec.globs.iter().map(|g| glob_base(g)).collect();
        for f in &self.followers {
            if let Some(d) = f.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                dirs.insert(d.to_path_buf());
            }
        }
        for d in dirs {
            self.watcher.watch_dir(&d);
        }
    }

    fn rescan(&mut self) {
        self.last_rescan = Instant::now();
        self.rescan_due = false;
        for p in self.scan() {
            if !self.followers.iter().any(|f| f.path == p) {
                // Created while Shield runs: read from its start.
                self.push_follower(p, None, false);
            }
        }
        self.watch_dirs();
    }

    /// Reads every complete line available now from every followed file
    /// (rescanning the globs when a directory changed, and at least every
    /// second), calling `on_line(path, line)`. A partial last line (no `\n`
    /// yet) is held back until completed. Per-file errors are logged, counted
    /// in [`Tailer::stats`] and retried on the next call; they are not returned.
    pub fn read_available(
        &mut self,
        on_line: &mut dyn FnMut(&Path, &[u8]),
    ) -> Result<ReadStats, SourceError> {
        let wake = self.watcher.drain();
        if wake.structural || self.rescan_due || self.last_rescan.elapsed() >= RESCAN_EVERY {
            self.rescan();
        }
        let mut rs = ReadStats::default();
        for idx in 0..self.followers.len() {
            self.pass(idx, on_line, &mut rs);
        }
        self.more_pending = rs.more;
        Ok(rs)
    }

    fn pass(&mut self, idx: usize, on_line: &mut dyn FnMut(&Path, &[u8]), rs: &mut ReadStats) {
        let path = self.followers[idx].path.clone();
        let meta = match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => Some(m),
            Ok(_) => None,
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => {
                self.error(idx, "stat", &path, &e);
                return;
            }
        };
        if self.followers[idx].cur.is_none() {
            if meta.is_none() {
                return;
            }
            self.open_at_path(idx, &path);
            if self.followers[idx].cur.is_none() {
                return;
            }
            // Read it below as the same file.
        }
        let same = {
            let o = self.followers[idx].cur.as_ref().map(OpenFile::id);
            match (&meta, o) {
                (Some(m), Some(id)) => (m.dev(), m.ino()) == id,
                _ => false,
            }
        };
        let max_line = self.spec.max_line;
        if same {
            let size = meta.as_ref().map_or(0, Metadata::len);
            let truncated = {
                let Some(o) = self.followers[idx].cur.as_mut() else {
                    return;
                };
                let mut t = size < o.read_pos;
                if !t && size != o.last_size && o.fp_len > 0 {
                    t = !matches!(fingerprint_file(&o.file, o.fp_len), Ok(Some(fp)) if fp == o.fp);
                }
                o.last_size = size;
                if t {
                    o.reset_to_start();
                }
                t
            };
            if truncated {
                tracing::info!(path = %path.display(), "file was truncated (copytruncate rotation); reading it from its start");
                self.stats.truncations += 1;
                self.stats.files[idx].truncations += 1;
            }
            if let Err(e) = self.read_cur(idx, &path, max_line, on_line, rs) {
                self.error(idx, "read", &path, &e);
            }
            return;
        }
        // Rotated away or deleted: drain the old descriptor first, then any
        // newer rotated generation, then the file now at the path.
        let path_id = meta.as_ref().map(|m| (m.dev(), m.ino()));
        let new_has_data = meta.as_ref().is_some_and(|m| m.len() > 0);
        loop {
            let eof = match self.read_cur(idx, &path, max_line, on_line, rs) {
                Ok(eof) => eof,
                Err(e) => {
                    self.error(idx, "read", &path, &e);
                    return;
                }
            };
            if !eof {
                return;
            }
            let Some(o) = self.followers[idx].cur.as_ref() else {
                return;
            };
            let old = o.file.metadata().ok();
            // Deleted and quiet: no writer will append any more. (A writer may
            // keep writing to a deleted file, so deletion alone is not enough.)
            let deleted_idle = old.as_ref().is_some_and(|m| m.nlink() == 0)
                && o.last_data.elapsed() >= RETIRE_IDLE;
            if !(new_has_data || deleted_idle) {
                return;
            }
            let finished = o.id();
            self.retire(idx, &path, on_line, rs);
            if !new_has_data {
                return;
            }
            self.stats.rotations += 1;
            self.stats.files[idx].rotations += 1;
            match self.next_generation(&path, finished, path_id) {
                Some(o) => {
                    tracing::info!(path = %path.display(), rotated = %o.opened_as.display(),
                        "reading a rotated generation that was not read yet");
                    self.followers[idx].cur = Some(o);
                }
                None => {
                    self.open_at_path(idx, &path);
                    if self.followers[idx].cur.is_some()
                        && let Err(e) = self.read_cur(idx, &path, max_line, on_line, rs)
                    {
                        self.error(idx, "read", &path, &e);
                    }
                    return;
                }
            }
        }
    }

    /// After the old file of `path` (`finished`) was read to its end, the
    /// rotated generation that came after it, if it was never read: this
    /// happens when the path rotated more than once before Shield looked, or
    /// while it was stopped. Order comes from the names logrotate gives, not
    /// from timestamps (too coarse, and renames change ctime): `x.2` is older
    /// than `x.1`; `x-20261128` is older than `x-20261129`. A finished file
    /// that is no longer in the directory, or whose name follows no known
    /// scheme, has no known successor: the file at the path comes next.
    fn next_generation(
        &self,
        path: &Path,
        finished: (u64, u64),
        path_id: Option<(u64, u64)>,
    ) -> Option<OpenFile> {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let base = path.file_name()?.as_encoded_bytes().to_vec();
        let mut siblings = Vec::new();
        let mut finished_key = None;
        for e in std::fs::read_dir(dir).ok()?.flatten() {
            let name = e.file_name();
            let Some(key) = GenKey::of(&base, name.as_encoded_bytes()) else {
                continue;
            };
            let Ok(m) = std::fs::metadata(e.path()) else {
                continue;
            };
            if !m.is_file() {
                continue;
            }
            let id = (m.dev(), m.ino());
            if id == finished {
                finished_key = Some(key);
            } else if Some(id) != path_id && !self.retired.contains_key(&id) && !self.owned(id) {
                siblings.push((key, e.path()));
            }
        }
        let finished_key = finished_key?;
        let (_, p) = siblings
            .into_iter()
            .filter(|(k, _)| k.newer_than(&finished_key))
            .min_by(|(a, _), (b, _)| a.age_order(b))?;
        let file = File::open(&p).ok()?;
        let m = file.metadata().ok()?;
        let mut o = OpenFile::new(file, &p, &m);
        o.seek_line(0).ok()?;
        Some(o)
    }

    /// The old file of a rotated path is read to its end: deliver a last line
    /// without `\n` (the file will not grow any more) and remember where it ended.
    fn retire(
        &mut self,
        idx: usize,
        path: &Path,
        on_line: &mut dyn FnMut(&Path, &[u8]),
        rs: &mut ReadStats,
    ) {
        let Some(mut o) = self.followers[idx].cur.take() else {
            return;
        };
        if !o.partial.is_empty() && !o.skipping {
            let n = strip_cr(&o.partial);
            if n > self.spec.max_line {
                rs.skipped_long += 1;
                self.stats.files[idx].skipped_long += 1;
            } else {
                on_line(path, &o.partial[..n]);
                rs.lines += 1;
                self.stats.files[idx].lines += 1;
            }
        }
        o.offset = o.read_pos;
        o.partial.clear();
        let fp = fingerprint_file(&o.file, o.offset)
            .ok()
            .flatten()
            .unwrap_or(o.fp);
        let id = o.id();
        tracing::debug!(path = %path.display(), rotated = %o.opened_as.display(), "finished rotated file");
        if self.retired.insert(id, (o.offset, fp)).is_none() {
            self.retired_order.push_back(id);
            if self.retired_order.len() > RETIRED_MAX
                && let Some(old) = self.retired_order.pop_front()
            {
                self.retired.remove(&old);
            }
        }
    }

    /// Reads the follower's open file from its position; `Ok(true)` at end of file.
    fn read_cur(
        &mut self,
        idx: usize,
        path: &Path,
        max_line: usize,
        on_line: &mut dyn FnMut(&Path, &[u8]),
        rs: &mut ReadStats,
    ) -> std::io::Result<bool> {
        let Some(o) = self.followers[idx].cur.as_mut() else {
            return Ok(true);
        };
        let fs = &mut self.stats.files[idx];
        let before = fs.lines;
        let res = read_lines(o, &mut self.chunk, max_line, path, on_line, fs, rs);
        if fs.lines != before {
            fs.last_line_at = Some(SystemTime::now());
        }
        o.refresh_fp(false)?;
        let eof = res?;
        if !eof {
            rs.more = true;
        }
        Ok(eof)
    }

    /// Blocks until something may have changed (an inotify event in a watched
    /// directory) or `timeout` passes (the stat-poll safety net). Returns at
    /// once when the last pass left data unread.
    pub fn wait(&mut self, timeout: Duration) {
        if self.more_pending {
            return;
        }
        let wake = self.watcher.wait(timeout);
        if wake.structural {
            self.rescan_due = true;
        }
    }

    /// Positions just after the last line delivered, one per followed file,
    /// keyed by the followed path. Store them with the decisions those lines
    /// produced and pass them back to [`Tailer::new`] after a restart.
    pub fn checkpoints(&self) -> Vec<(String, Checkpoint)> {
        self.followers
            .iter()
            .filter_map(|f| f.cur.as_ref().map(|o| (f.key.clone(), o.checkpoint())))
            .collect()
    }

    /// Counters per file and in total.
    pub fn stats(&self) -> &TailStats {
        &self.stats
    }

    /// The specification this tailer follows.
    pub fn spec(&self) -> &FileSpec {
        &self.spec
    }
}

/// Reads `o` from `read_pos` to its end (or [`PASS_BUDGET`] bytes),
/// delivering complete lines. `Ok(true)` when the end of the file was reached.
fn read_lines(
    o: &mut OpenFile,
    chunk: &mut [u8],
    max_line: usize,
    path: &Path,
    on_line: &mut dyn FnMut(&Path, &[u8]),
    fs: &mut FileStats,
    rs: &mut ReadStats,
) -> std::io::Result<bool> {
    let mut used = 0u64;
    loop {
        if used >= PASS_BUDGET {
            return Ok(false);
        }
        let n = match o.file.read_at(chunk, o.read_pos) {
            Ok(0) => return Ok(true),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let base = o.read_pos;
        o.last_data = Instant::now();
        o.read_pos += n as u64;
        used += n as u64;
        fs.bytes += n as u64;
        rs.bytes += n as u64;
        let data = &chunk[..n];
        let mut s = 0;
        for nl in memchr::memchr_iter(b'\n', data) {
            let piece = &data[s..nl];
            s = nl + 1;
            if o.skipping {
                o.skipping = false;
            } else {
                let line: &[u8] = if o.partial.is_empty() {
                    piece
                } else {
                    o.partial.extend_from_slice(piece);
                    &o.partial
                };
                let line = &line[..strip_cr(line)];
                if line.len() > max_line {
                    fs.skipped_long += 1;
                    rs.skipped_long += 1;
                } else {
                    on_line(path, line);
                    fs.lines += 1;
                    rs.lines += 1;
                }
            }
            o.partial.clear();
            o.offset = base + s as u64;
        }
        let rest = &data[s..];
        if !o.skipping && !rest.is_empty() {
            // +1: the line may still end in a '\r' that is not counted.
            if o.partial.len() + rest.len() > max_line + 1 {
                o.skipping = true;
                o.partial.clear();
                fs.skipped_long += 1;
                rs.skipped_long += 1;
            } else {
                o.partial.extend_from_slice(rest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_names_order_oldest_first() {
        let k = |n: &str| GenKey::of(b"app.log", n.as_bytes());
        assert!(k("app.log.1").unwrap().newer_than(&k("app.log.2").unwrap()));
        assert!(
            !k("app.log.10")
                .unwrap()
                .newer_than(&k("app.log.2").unwrap())
        );
        assert!(
            k("app.log-20261129")
                .unwrap()
                .newer_than(&k("app.log-20261128").unwrap())
        );
        assert!(
            !k("app.log-20261129")
                .unwrap()
                .newer_than(&k("app.log.1").unwrap())
        );
        assert_eq!(k("app.log.2.gz"), None);
        assert_eq!(k("app.log"), None);
        assert_eq!(k("app.logger"), None);
        assert_eq!(k("other.log.1"), None);
    }

    #[test]
    fn glob_base_is_the_literal_prefix() {
        assert_eq!(
            glob_base("/var/log/nginx/*.log"),
            PathBuf::from("/var/log/nginx")
        );
        assert_eq!(
            glob_base("/var/log/*/access.log"),
            PathBuf::from("/var/log")
        );
        assert_eq!(glob_base("/var/log/auth.log"), PathBuf::from("/var/log"));
        assert_eq!(glob_base("auth.log"), PathBuf::from("."));
    }

    #[test]
    fn bad_spec_is_refused_with_a_hint() {
        let e = Tailer::new(FileSpec::default(), vec![]).unwrap_err();
        assert!(e.to_string().contains("at least one"), "{e}");
        let spec = FileSpec {
            globs: vec!["/tmp/[".into()],
            ..FileSpec::default()
        };
        let e = Tailer::new(spec, vec![]).unwrap_err();
        assert!(matches!(e, SourceError::BadGlob { .. }), "{e}");
    }
}
