//! Shield's vocabulary: the types every stage shares (lines, alerts, decisions,
//! scopes, origins, canonical addresses, the allowlist) and the seam traits between stages.
//!
//! This crate does no I/O and knows nothing about regexes, SQLite, nftables or
//! HTTP. Time is always a plain `i64` of Unix seconds passed in by the caller
//! (log time in replay, wall time in the daemon), so every stage is testable
//! without sleeping.

mod allowlist;
mod decision;
mod hit;
mod net;
pub mod stamp;

pub use allowlist::Allowlist;
pub use decision::{Alert, Decision, DecisionType, Origin, ParseError, Scope};
pub use hit::{Carry, Hit, LineMatcher, MAX_FIELDS, RuleInfo};
pub use net::{Addr, AddrError, Net, host_net, key_for};

/// Unix time in seconds. Log time during replay, wall time when live.
pub type UnixTime = i64;

/// Wall-clock Unix seconds (0 for a clock set before 1970). The one reading of
/// the system clock that the daemon, layers and union share; the hot path
/// takes its time as a parameter instead.
pub fn wall_now() -> UnixTime {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Byte comparison whose time depends only on the lengths, never on where the
/// inputs differ (tokens, key hashes, gate signatures).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Where a stored read position is kept: sources persist their offsets through
/// this seam so a restart neither re-reads nor skips a line.
pub trait CheckpointStore: Send {
    /// The saved position for `key` (a file fingerprint, a journald cursor...).
    fn load(&self, key: &str) -> Option<Checkpoint>;
    /// Save `cp` under `key`. Implementations must make this durable before
    /// returning, or at least before the decisions of the lines it covers.
    fn save(&mut self, key: &str, cp: &Checkpoint);
}

/// A saved read position in a followed file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// Device and inode of the file when the position was taken.
    pub dev: u64,
    pub ino: u64,
    /// Byte offset of the first unread byte.
    pub offset: u64,
    /// Hash of the file's first bytes (up to 256), so a reused inode is noticed.
    pub fingerprint: u64,
}
