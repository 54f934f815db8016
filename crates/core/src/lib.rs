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

pub use allowlist::{AllowFeeds, Allowlist};
pub use decision::{Alert, Decision, DecisionType, Origin, ParseError, Scope};
pub use hit::{Carry, Hit, LineMatcher, MAX_FIELDS, RuleInfo, SplitMatcher};
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

/// The daemon's time: wall-clock Unix seconds for decisions and expiry, and a
/// monotonic [`Instant`](std::time::Instant) for intervals and latencies.
/// Cheap to clone; every clone reads the same time.
///
/// [`Clock::system`] (the default) reads the system clocks. [`Clock::manual`]
/// starts at a given Unix time and moves only when [`Clock::advance`] is
/// called, on both readings at once, so a test can step past an expiry
/// without sleeping.
#[derive(Clone, Default)]
pub struct Clock {
    manual: Option<std::sync::Arc<ManualTime>>,
}

struct ManualTime {
    wall: std::sync::atomic::AtomicI64,
    base: std::time::Instant,
    /// Nanoseconds advanced since `base`.
    advanced: std::sync::atomic::AtomicU64,
}

impl Clock {
    /// The system's wall and monotonic clocks.
    pub fn system() -> Self {
        Clock { manual: None }
    }

    /// A clock that reads `start` until it is advanced.
    pub fn manual(start: UnixTime) -> Self {
        Clock {
            manual: Some(std::sync::Arc::new(ManualTime {
                wall: std::sync::atomic::AtomicI64::new(start),
                base: std::time::Instant::now(),
                advanced: std::sync::atomic::AtomicU64::new(0),
            })),
        }
    }

    /// Wall-clock Unix seconds.
    pub fn now(&self) -> UnixTime {
        match &self.manual {
            None => wall_now(),
            Some(m) => m.wall.load(std::sync::atomic::Ordering::SeqCst),
        }
    }

    /// The monotonic clock, for intervals and latencies.
    pub fn instant(&self) -> std::time::Instant {
        match &self.manual {
            None => std::time::Instant::now(),
            Some(m) => {
                let n = m.advanced.load(std::sync::atomic::Ordering::SeqCst);
                m.base + std::time::Duration::from_nanos(n)
            }
        }
    }

    /// Time since `earlier` (a reading of [`Clock::instant`]).
    pub fn elapsed(&self, earlier: std::time::Instant) -> std::time::Duration {
        self.instant().saturating_duration_since(earlier)
    }

    /// Moves a manual clock forward by `d` (whole seconds on the wall reading).
    ///
    /// # Panics
    /// On the system clock, which nobody can move: build the clock with
    /// [`Clock::manual`] where a test needs to step time.
    pub fn advance(&self, d: std::time::Duration) {
        let m = self
            .manual
            .as_ref()
            .expect("Clock::advance on the system clock; use Clock::manual to step time");
        use std::sync::atomic::Ordering::SeqCst;
        m.advanced.fetch_add(d.as_nanos() as u64, SeqCst);
        m.wall.fetch_add(d.as_secs() as i64, SeqCst);
    }

    /// Whether this clock is moved by hand ([`Clock::manual`]).
    pub fn is_manual(&self) -> bool {
        self.manual.is_some()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.manual {
            None => f.write_str("Clock::system"),
            Some(_) => write!(f, "Clock::manual(at {})", self.now()),
        }
    }
}

/// Byte comparison whose time depends only on the lengths, never on where the
/// inputs differ (tokens, key hashes, gate signatures).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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

#[cfg(test)]
mod clock_tests {
    use super::Clock;
    use std::time::Duration;

    /// A manual clock moves only when advanced, both readings together, and
    /// every clone sees the move.
    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let c = Clock::manual(1_000);
        let other = c.clone();
        let i0 = c.instant();
        assert_eq!(c.now(), 1_000);
        c.advance(Duration::from_secs(90));
        assert_eq!(other.now(), 1_090);
        assert_eq!(other.elapsed(i0), Duration::from_secs(90));
    }

    #[test]
    #[should_panic(expected = "use Clock::manual")]
    fn the_system_clock_cannot_be_advanced() {
        Clock::system().advance(Duration::from_secs(1));
    }
}
