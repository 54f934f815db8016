//! Where Shield's lines come from.
//!
//! This crate owns reading bytes and cutting them into lines: followed files
//! (globs, rename and copytruncate rotation, checkpoints so a restart neither
//! re-reads nor skips a line), batch replay of plain and gzip files or stdin,
//! journald (through `journalctl`) and a syslog listener. It does not parse
//! lines, match rules or store checkpoints: it hands `&[u8]` lines to a
//! callback and reports [`shield_core::Checkpoint`]s for the daemon to persist.
//!
//! Lines are bytes, without the trailing `\n` (and without a trailing `\r`).
//! Nothing here assumes UTF-8: binary garbage passes through unchanged.
//!
//! # Following files
//!
//! ```
//! use std::{path::Path, time::Duration};
//! use shield_sources::{FileSpec, Tailer};
//!
//! # let dir = tempfile::tempdir().unwrap();
//! # let log = dir.path().join("auth.log");
//! # std::fs::write(&log, "").unwrap();
//! let spec = FileSpec { globs: vec![log.display().to_string()], ..FileSpec::default() };
//! let saved = Vec::new(); // from the store: what `checkpoints()` returned last time
//! let mut tailer = Tailer::new(spec, saved)?;
//! # std::fs::write(&log, "Nov  3 14:02:01 web1 sshd[1]: Failed password for root\n").unwrap();
//! let mut n = 0;
//! let stats = tailer.read_available(&mut |_path: &Path, line: &[u8]| {
//!     n += 1; // match rules on `line` here
//! })?;
//! assert_eq!((n, stats.lines), (1, 1));
//! // Store these in the same transaction as the decisions of those lines.
//! let checkpoints = tailer.checkpoints();
//! assert_eq!(checkpoints[0].1.offset, 55); // just after the line
//! if !stats.more {
//!     tailer.wait(Duration::from_millis(10));
//! }
//! # Ok::<(), shield_sources::SourceError>(())
//! ```

mod error;
mod fingerprint;
pub mod journald;
mod lines;
mod replay;
pub mod syslog;
mod tail;
mod watch;

pub use error::SourceError;
pub use fingerprint::{FINGERPRINT_MAX, fingerprint_of};
pub use lines::{LineReader, terminated_lines};
pub use replay::open;
pub use tail::{DEFAULT_MAX_LINE, FileSpec, FileStats, ReadStats, TailStats, Tailer};
