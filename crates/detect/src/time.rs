//! Log timestamps: hand-written fast paths for the stamps Shield's rule packs
//! meet, plus a per-matcher cache of the date part (consecutive lines share it).
//!
//! Formats:
//! - syslog `Mmm dd hh:mm:ss` (BSD, RFC 3164): no year, so the year comes from
//!   `now`; a stamp more than a day ahead of `now` belongs to the previous year
//!   (New Year rollover while replaying or tailing).
//! - ISO 8601 / RFC 3339 / RFC 5424 `2024-03-01T00:00:00.123456+01:00`, `Z`,
//!   `+0100`, or no zone; a space may replace the `T`.
//! - common log format `10/Oct/2000:13:55:36 -0700` (the part inside `[...]`).
//! - nginx error log `2024/03/01 00:00:00`.
//!
//! A stamp without a zone is read as **UTC** (syslog and nginx error stamps have
//! none; configure the services to log in UTC, or ISO stamps with an offset,
//! if the host runs in another zone). Fractions of seconds are dropped.
//!
//! This module owns parsing only; it does not pick which stamp a line carries
//! (the rule packs do) and does no I/O.

use crate::UnixTime;

const DAY: i64 = 86_400;

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The (year, month, day) of a day number since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The year (UTC) that `t` falls in.
pub fn year_of(t: UnixTime) -> i64 {
    civil_from_days(t.div_euclid(DAY)).0
}

/// `t` as RFC 3339 in UTC, e.g. `2024-03-01T00:00:00Z`.
pub fn to_rfc3339(t: UnixTime) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(DAY));
    let s = t.rem_euclid(DAY);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

#[inline]
fn d2(b: &[u8], i: usize) -> Option<u32> {
    let (a, c) = (*b.get(i)?, *b.get(i + 1)?);
    if a.is_ascii_digit() && c.is_ascii_digit() {
        Some((a - b'0') as u32 * 10 + (c - b'0') as u32)
    } else {
        None
    }
}

#[inline]
fn d4(b: &[u8], i: usize) -> Option<i64> {
    Some(d2(b, i)? as i64 * 100 + d2(b, i + 2)? as i64)
}

/// `hh:mm:ss` at `i` (separators `:`), as seconds into the day.
#[inline]
fn hms(b: &[u8], i: usize) -> Option<i64> {
    if b.get(i + 2) != Some(&b':') || b.get(i + 5) != Some(&b':') {
        return None;
    }
    let (h, m, s) = (d2(b, i)?, d2(b, i + 3)?, d2(b, i + 6)?);
    // 60 allows a leap second.
    if h > 23 || m > 59 || s > 60 {
        return None;
    }
    Some((h * 3600 + m * 60 + s) as i64)
}

pub use shield_core::stamp::month_abbr;

fn valid_date(y: i64, m: u32, d: u32) -> bool {
    (1..=12).contains(&m) && (1..=31).contains(&d) && (1..=9999).contains(&y)
}

/// A zone offset at `i`: `Z`, `+hh:mm`, `+hhmm`, `+hh`; returns (seconds east, length).
fn zone(b: &[u8], i: usize) -> Option<(i64, usize)> {
    match b.get(i)? {
        b'Z' | b'z' => Some((0, 1)),
        c @ (b'+' | b'-') => {
            let sign = if *c == b'-' { -1 } else { 1 };
            let h = d2(b, i + 1)? as i64;
            let (m, len) = if b.get(i + 3) == Some(&b':') {
                (d2(b, i + 4)? as i64, 6)
            } else if let Some(m) = d2(b, i + 3) {
                (m as i64, 5)
            } else {
                (0, 3)
            };
            if h > 23 || m > 59 {
                return None;
            }
            Some((sign * (h * 3600 + m * 60), len))
        }
        _ => None,
    }
}

/// Parses a syslog stamp `Mmm dd hh:mm:ss` (day space- or zero-padded) at the
/// start of `s`. The year is `now`'s, or the one before when the stamp would
/// be more than a day in the future. Returns the time and the bytes consumed.
pub fn parse_syslog(s: &str, now: UnixTime) -> Option<(UnixTime, usize)> {
    let b = s.as_bytes();
    let m = month_abbr(b)?;
    if b.get(3) != Some(&b' ') {
        return None;
    }
    let d = match (b.get(4)?, b.get(5)?) {
        (b' ', c) if c.is_ascii_digit() => (c - b'0') as u32,
        _ => d2(b, 4)?,
    };
    if b.get(6) != Some(&b' ') || !(1..=31).contains(&d) {
        return None;
    }
    let secs = hms(b, 7)?;
    Some((syslog_time(now, m, d, secs), 15))
}

fn syslog_time(now: UnixTime, m: u32, d: u32, secs: i64) -> UnixTime {
    let y = year_of(now);
    let t = days_from_civil(y, m, d) * DAY + secs;
    if t > now + DAY {
        days_from_civil(y - 1, m, d) * DAY + secs
    } else {
        t
    }
}

/// Parses ISO 8601 / RFC 3339 (`T` or space between date and time, optional
/// fraction, optional zone: none means UTC) at the start of `s`.
pub fn parse_iso8601(s: &str) -> Option<(UnixTime, usize)> {
    let b = s.as_bytes();
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let (y, m, d) = (d4(b, 0)?, d2(b, 5)?, d2(b, 8)?);
    if !valid_date(y, m, d) || !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let secs = hms(b, 11)?;
    let mut i = 19;
    if matches!(b.get(i), Some(b'.' | b',')) {
        i += 1;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
    }
    let mut t = days_from_civil(y, m, d) * DAY + secs;
    if let Some((off, len)) = zone(b, i) {
        t -= off;
        i += len;
    }
    Some((t, i))
}

/// Parses the common log format stamp `10/Oct/2000:13:55:36 -0700` (without
/// the brackets) at the start of `s`. A missing zone means UTC.
pub fn parse_clf(s: &str) -> Option<(UnixTime, usize)> {
    let b = s.as_bytes();
    if !clf_shape(b) {
        return None;
    }
    clf_time(b, clf_day(b)?)
}

/// Bytes of a CLF stamp [`parse_clf`] can look at: date, time of day and a
/// `+hh:mm` zone (`10/Oct/2000:13:55:36 -07:00`).
const CLF_KEY: usize = 27;

/// The separators of a CLF stamp are where they belong.
fn clf_shape(b: &[u8]) -> bool {
    b.get(2) == Some(&b'/') && b.get(6) == Some(&b'/') && b.get(11) == Some(&b':')
}

/// The start of the day of a CLF stamp (`10/Oct/2000`).
fn clf_day(b: &[u8]) -> Option<i64> {
    let (d, m, y) = (d2(b, 0)?, month_abbr(&b[3..])?, d4(b, 7)?);
    valid_date(y, m, d).then(|| days_from_civil(y, m, d) * DAY)
}

/// The time of a CLF stamp on `day`: time of day and optional zone.
fn clf_time(b: &[u8], day: i64) -> Option<(UnixTime, usize)> {
    let mut t = day + hms(b, 12)?;
    let mut i = 20;
    if b.get(i) == Some(&b' ') {
        if let Some((off, len)) = zone(b, i + 1) {
            t -= off;
            i += 1 + len;
        }
    }
    Some((t, i))
}

/// Parses the nginx error log stamp `2024/03/01 00:00:00` (UTC) at the start of `s`.
pub fn parse_nginx_error(s: &str) -> Option<(UnixTime, usize)> {
    let b = s.as_bytes();
    if b.get(4) != Some(&b'/') || b.get(7) != Some(&b'/') || b.get(10) != Some(&b' ') {
        return None;
    }
    let (y, m, d) = (d4(b, 0)?, d2(b, 5)?, d2(b, 8)?);
    if !valid_date(y, m, d) {
        return None;
    }
    Some((days_from_civil(y, m, d) * DAY + hms(b, 11)?, 19))
}

/// Which stamp a line starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StampKind {
    Syslog,
    Iso8601,
    NginxError,
}

/// Remembers the last stamps read, so the next line with the same date, or
/// the same whole stamp, costs a comparison.
///
/// Owned by one matcher; it never allocates.
#[derive(Clone, Debug, Default)]
pub struct StampCache {
    /// Date part (`Mar  1`, `2024-03-01`, `01/Mar/2024`) → day start, salted
    /// with the year a syslog date was read in.
    day: Memo<12, i64>,
    /// Whole syslog stamp (`Mar  1 00:00:00`) → (day start, second of the
    /// day) before the rollover check, salted with the year: consecutive
    /// lines often share the second.
    syslog: Memo<15, (i64, i64)>,
    /// The first [`CLF_KEY`] bytes of a CLF stamp (fewer if the text was
    /// shorter) → what [`parse_clf`] reads.
    clf: Memo<CLF_KEY, (UnixTime, usize)>,
    /// The year of the clock, valid for clocks in `years.0..years.1`.
    years: (i64, i64),
    year: i64,
}

/// The last key and what it read as. Keys are 1 to `N` bytes; `salt` tells
/// the same bytes read under different clocks apart.
#[derive(Clone, Debug)]
struct Memo<const N: usize, V> {
    key: [u8; N],
    /// 0: nothing remembered yet.
    len: u8,
    salt: i64,
    val: V,
}

impl<const N: usize, V: Default> Default for Memo<N, V> {
    fn default() -> Self {
        Memo {
            key: [0; N],
            len: 0,
            salt: 0,
            val: V::default(),
        }
    }
}

impl<const N: usize, V: Copy> Memo<N, V> {
    /// The value for `k` (at most `N` bytes) and `salt`, remembered or
    /// computed by `f` (a `None` is not remembered). Always inlined: it is
    /// on every line's path, and a call costs more than the comparison.
    #[inline(always)]
    fn get_or(&mut self, k: &[u8], salt: i64, f: impl FnOnce() -> Option<V>) -> Option<V> {
        if !k.is_empty()
            && self.len as usize == k.len()
            && self.salt == salt
            && same(k, &self.key[..k.len()])
        {
            return Some(self.val);
        }
        let v = f()?;
        self.key[..k.len()].copy_from_slice(k);
        self.len = k.len() as u8;
        self.salt = salt;
        self.val = v;
        Some(v)
    }
}

impl StampCache {
    /// Parses whichever of syslog, ISO 8601 or nginx-error stamp starts `s`.
    pub fn parse_line_start(
        &mut self,
        s: &str,
        now: UnixTime,
    ) -> Option<(UnixTime, usize, StampKind)> {
        let b = s.as_bytes();
        let first = *b.first()?;
        if first.is_ascii_digit() {
            if b.get(4) == Some(&b'/') {
                let day = self.day.get_or(b.get(..10)?, 0, || ymd_day(b));
                if day.is_some() && b.get(10) == Some(&b' ') {
                    return Some((day? + hms(b, 11)?, 19, StampKind::NginxError));
                }
                return None;
            }
            // ISO: the cache covers stamps with the same date and no odd zone;
            // the zone varies rarely, so parse it fully after the cached date.
            if b.get(4) == Some(&b'-') && b.get(7) == Some(&b'-') {
                let day = self.day.get_or(b.get(..10)?, 0, || ymd_day(b))?;
                if !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
                    return None;
                }
                let mut t = day + hms(b, 11)?;
                let mut i = 19;
                if matches!(b.get(i), Some(b'.' | b',')) {
                    i += 1;
                    while b.get(i).is_some_and(u8::is_ascii_digit) {
                        i += 1;
                    }
                }
                if let Some((off, len)) = zone(b, i) {
                    t -= off;
                    i += len;
                }
                return Some((t, i, StampKind::Iso8601));
            }
            return None;
        }
        if first.is_ascii_alphabetic() && b.get(3) == Some(&b' ') && b.get(6) == Some(&b' ') {
            let y = self.year_of(now);
            let day = &mut self.day;
            let (day, secs) = self.syslog.get_or(b.get(..15)?, y, || {
                Some((syslog_day(day, b, y)?, hms(b, 7)?))
            })?;
            let mut t = day + secs;
            if t > now + DAY {
                // Rollover: recompute for the previous year (rare: not cached).
                let (_, m, d) = civil_from_days(day.div_euclid(DAY));
                t = days_from_civil(y - 1, m, d) * DAY + secs;
            }
            return Some((t, 15, StampKind::Syslog));
        }
        None
    }

    /// [`year_of`], remembering the span of the last year asked for.
    #[inline]
    fn year_of(&mut self, now: UnixTime) -> i64 {
        if (self.years.0..self.years.1).contains(&now) {
            return self.year;
        }
        let y = year_of(now);
        self.years = (
            days_from_civil(y, 1, 1) * DAY,
            days_from_civil(y + 1, 1, 1) * DAY,
        );
        self.year = y;
        y
    }

    /// [`parse_clf`] through the caches: the same result, but a line with the
    /// previous line's stamp costs a comparison, and one with its date the
    /// time-of-day digits.
    pub fn parse_clf(&mut self, s: &str) -> Option<(UnixTime, usize)> {
        let b = s.as_bytes();
        // What [`parse_clf`] reads depends on the first CLF_KEY bytes only.
        let day = &mut self.day;
        self.clf.get_or(&b[..b.len().min(CLF_KEY)], 0, || {
            if !clf_shape(b) {
                return None;
            }
            // Length 11 is the only date key of that length: no salt needed.
            clf_time(b, day.get_or(&b[..11], 0, || clf_day(b))?)
        })
    }
}

/// The day start of a syslog stamp's date (`Mar  1`) in year `y`.
fn syslog_day(memo: &mut Memo<12, i64>, b: &[u8], y: i64) -> Option<i64> {
    memo.get_or(&b[..6], y, || {
        let m = month_abbr(b)?;
        let d = match (b.get(4)?, b.get(5)?) {
            (b' ', c) if c.is_ascii_digit() => (c - b'0') as u32,
            _ => d2(b, 4)?,
        };
        (1..=31)
            .contains(&d)
            .then(|| days_from_civil(y, m, d) * DAY)
    })
}

/// The day start of a `2024-03-01` / `2024/03/01` date.
fn ymd_day(b: &[u8]) -> Option<i64> {
    let (y, m, d) = (d4(b, 0)?, d2(b, 5)?, d2(b, 8)?);
    valid_date(y, m, d).then(|| days_from_civil(y, m, d) * DAY)
}

/// `a == b` for the short keys of [`StampCache`], without a call to `memcmp`:
/// 8-byte words (the last one overlapping) when there are 8 bytes or more.
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        return a.iter().zip(b).all(|(x, y)| x == y);
    }
    let w = |s: &[u8], i: usize| u64::from_ne_bytes(s[i..i + 8].try_into().unwrap_or([0; 8]));
    (0..n - 8).step_by(8).all(|i| w(a, i) == w(b, i)) && w(a, n - 8) == w(b, n - 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2024-03-01T00:00:00Z
    const MAR1_2024: i64 = 1_709_251_200;

    #[test]
    fn civil_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        for z in [-1000, 0, 11_017, 19_783, 20_000, 60_000] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(to_rfc3339(MAR1_2024 + 3661), "2024-03-01T01:01:01Z");
    }

    #[test]
    fn syslog_year_from_now_and_rollover() {
        let now = MAR1_2024 + 12 * 3600;
        assert_eq!(
            parse_syslog("Mar  1 00:00:05 host x", now),
            Some((MAR1_2024 + 5, 15))
        );
        assert_eq!(
            parse_syslog("Mar 01 00:00:05", now),
            Some((MAR1_2024 + 5, 15))
        );
        // Dec 31 seen on Jan 1: last year.
        let jan1_2025 = days_from_civil(2025, 1, 1) * DAY + 60;
        let (t, _) = parse_syslog("Dec 31 23:59:59 h", jan1_2025).unwrap();
        assert_eq!(t, days_from_civil(2024, 12, 31) * DAY + 86_399);
        // Tomorrow (clock skew) stays in this year.
        let (t, _) = parse_syslog("Mar  2 10:00:00", now).unwrap();
        assert_eq!(t, MAR1_2024 + DAY + 36_000);
        assert_eq!(parse_syslog("Foo  1 00:00:00", now), None);
        assert_eq!(parse_syslog("Mar  1 24:00:00", now), None);
        assert_eq!(parse_syslog("Mar 1 00:00:00", now), None);
        assert_eq!(parse_syslog("Mar", now), None);
    }

    #[test]
    fn iso_with_offsets_and_fractions() {
        assert_eq!(parse_iso8601("2024-03-01T00:00:00Z"), Some((MAR1_2024, 20)));
        assert_eq!(
            parse_iso8601("2024-03-01T01:00:00.123456+01:00 h"),
            Some((MAR1_2024, 32))
        );
        assert_eq!(
            parse_iso8601("2024-02-29T19:00:00-0500"),
            Some((MAR1_2024, 24))
        );
        assert_eq!(parse_iso8601("2024-03-01 00:00:00"), Some((MAR1_2024, 19)));
        assert_eq!(parse_iso8601("2024-13-01T00:00:00"), None);
        assert_eq!(parse_iso8601("2024-03-01X00:00:00"), None);
        assert_eq!(parse_iso8601("2024-03-0"), None);
    }

    #[test]
    fn clf_and_nginx_error() {
        assert_eq!(
            parse_clf("10/Oct/2000:13:55:36 -0700]"),
            Some((971_211_336, 26))
        );
        assert_eq!(
            parse_clf("01/Mar/2024:00:00:00 +0000"),
            Some((MAR1_2024, 26))
        );
        assert_eq!(parse_clf("01/Mar/2024:00:00:00"), Some((MAR1_2024, 20)));
        assert_eq!(parse_clf("01/Xyz/2024:00:00:00"), None);
        let mut c = StampCache::default();
        for x in [
            // Empty text first, on a fresh cache.
            "",
            "10/Oct/2000:13:55:36 -0700]",
            "10/Oct/2000:13:55:37 +0100",
            "10/Oct/2000:13:55:37",
            "11/Oct/2000:00:00:00 Z",
            "11/Oct/2000:24:00:00 Z",
            "32/Oct/2000:00:00:00",
            "11/Xyz/2000:00:00:00",
            "11/Oct/2000 00:00:00",
            "11/Oct/20",
            // The whole-stamp cache: texts sharing all but the last byte it
            // reads, or shorter than its key.
            "10/Oct/2000:13:55:37 +01:05]",
            "10/Oct/2000:13:55:37 +01:07]",
            "10/Oct/2000:13:55:37 +01:07",
            "10/Oct/2000:13:55:37 +01:0",
            "10/Oct/2000:13:55:37 +01",
            "10/Oct/2000:13:55:37 +01]",
        ] {
            assert_eq!(c.parse_clf(x), parse_clf(x), "{x}");
            assert_eq!(c.parse_clf(x), parse_clf(x), "{x} (cached)");
        }
        assert_eq!(
            parse_nginx_error("2024/03/01 00:00:09 [error]"),
            Some((MAR1_2024 + 9, 19))
        );
        assert_eq!(parse_nginx_error("2024/03/01T00:00:09"), None);
    }

    #[test]
    fn cache_agrees_with_plain_parsers() {
        let now = MAR1_2024 + 100;
        let mut c = StampCache::default();
        for line in [
            "Mar  1 00:00:05 h sshd[1]: x",
            "Mar  1 00:00:06 h sshd[1]: x",
            "Feb 29 23:59:59 h",
            "2024-03-01T00:00:00.5+01:00 h",
            "2024-03-01T00:00:07Z h",
            "2024/03/01 00:00:09 [error]",
            "2024/03/01 00:00:10 [error]",
            "Dec 31 23:00:00 h",
        ] {
            let got = c.parse_line_start(line, now).map(|(t, n, _)| (t, n));
            let want = parse_syslog(line, now)
                .or_else(|| parse_iso8601(line))
                .or_else(|| parse_nginx_error(line));
            assert_eq!(got, want, "{line}");
        }
        assert!(c.parse_line_start("hello world", now).is_none());
        assert!(c.parse_line_start("", now).is_none());
        assert!(c.parse_line_start("1.2.3.4 - - [", now).is_none());
    }

    /// The whole-stamp cache: the same stamp under another clock (another
    /// year, or past the rollover day), a leap second, stamps that differ
    /// only in their last byte, and broken stamps after a cached one.
    #[test]
    fn stamp_cache_follows_the_clock() {
        let mut c = StampCache::default();
        let stamps = [
            "Mar  1 00:00:05 h",
            "Mar  1 00:00:06 h",
            "Mar  1 00:00:06",
            "Mar  1 00:00:0",
            "Mar  1 00:00:0x h",
            "Dec 31 23:59:60 h",
            "Mar  2 10:00:00 h",
            "Mar 02 10:00:00 h",
            "Jan  1 00:00:00 h",
            "Dec 31 23:59:59 h",
        ];
        let clocks = [
            MAR1_2024 + 100,
            MAR1_2024 - 86_400,
            MAR1_2024 + 366 * 86_400,
            MAR1_2024 + 2 * 86_400,
            days_from_civil(2025, 1, 1) * DAY - 1,
            days_from_civil(2025, 1, 1) * DAY,
            days_from_civil(2024, 1, 1) * DAY - 1,
        ];
        // Each stamp under every clock in turn, then every stamp in turn.
        let pairs = stamps.iter().flat_map(|s| clocks.map(|n| (*s, n)));
        let pairs = pairs.chain(clocks.iter().flat_map(|n| stamps.map(|s| (s, *n))));
        for (s, now) in pairs {
            let got = c.parse_line_start(s, now).map(|(t, n, _)| (t, n));
            assert_eq!(got, parse_syslog(s, now), "{s} at {now}");
        }
    }
}
