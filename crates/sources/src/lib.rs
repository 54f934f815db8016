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
pub use lines::LineReader;
pub use replay::open;
pub use tail::{DEFAULT_MAX_LINE, FileSpec, FileStats, ReadStats, TailStats, Tailer};
