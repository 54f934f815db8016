//! Go's time formats as CrowdSec uses them: `time.Parse` with a Go reference layout
//! (`02/Jan/2006:15:04:05 -0700`), `Time.MarshalText` (RFC 3339 with nanoseconds, trailing zeros
//! cut, `Z` for a zero offset), `time.ParseDuration` and `Duration.String`. Owns conversions
//! only; the date enricher (`enrich`) picks the layouts.

use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Time};
use jiff::tz::Offset;

/// An instant with the UTC offset it was written in (Go keeps the location; we keep its offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoTime {
    pub ts: Timestamp,
    pub offset: Offset,
}

impl GoTime {
    /// The instant in UTC.
    pub fn utc(ts: Timestamp) -> GoTime {
        GoTime {
            ts,
            offset: Offset::UTC,
        }
    }

    /// Go's `MarshalText`: `2006-01-02T15:04:05.999999999Z07:00`.
    pub fn marshal(&self) -> String {
        let dt = self.offset.to_datetime(self.ts);
        let mut s = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            dt.year(),
            dt.month(),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second()
        );
        let ns = dt.subsec_nanosecond();
        if ns != 0 {
            let f = format!("{ns:09}");
            s.push('.');
            s.push_str(f.trim_end_matches('0'));
        }
        let secs = self.offset.seconds();
        if secs == 0 {
            s.push('Z');
        } else {
            let sign = if secs < 0 { '-' } else { '+' };
            let a = secs.unsigned_abs();
            s.push_str(&format!("{sign}{:02}:{:02}", a / 3600, (a % 3600) / 60));
        }
        s
    }

    /// Go's `UnmarshalText` (RFC 3339, fractional seconds allowed).
    pub fn unmarshal(s: &str) -> Option<GoTime> {
        parse_layout("2006-01-02T15:04:05Z07:00", s, 0)
    }
}

/// Go's `time.Parse(layout, value)`. A layout without a year gives year 0 unless `default_year`
/// is given (CrowdSec adds the current year to such dates).
pub fn parse_layout(layout: &str, value: &str, default_year: i16) -> Option<GoTime> {
    let mut p = Parts {
        year: default_year,
        month: 1,
        day: 1,
        ..Parts::default()
    };
    let mut v = value;
    let mut l = layout;
    let mut pm_set: Option<bool> = None;
    let mut hour12 = false;
    while !l.is_empty() {
        let (prefix, tok, rest) = next_token(l);
        v = skip_literal(v, prefix)?;
        l = rest;
        let Some(tok) = tok else { break };
        match tok {
            Tok::Year4 => {
                let (n, r) = digits(v, 4, 4)?;
                p.year = n as i16;
                v = r;
            }
            Tok::Year2 => {
                let (n, r) = digits(v, 2, 2)?;
                p.year = if n >= 69 {
                    1900 + n as i16
                } else {
                    2000 + n as i16
                };
                v = r;
            }
            Tok::MonthName => {
                let (m, r) = lookup(v, &MONTHS_SHORT)?;
                p.month = m as i8 + 1;
                v = r;
            }
            Tok::MonthLong => {
                let (m, r) = lookup(v, &MONTHS_LONG)?;
                p.month = m as i8 + 1;
                v = r;
            }
            Tok::Month2 | Tok::Month1 => {
                let (n, r) = digits(v, if tok == Tok::Month2 { 2 } else { 1 }, 2)?;
                if !(1..=12).contains(&n) {
                    return None;
                }
                p.month = n as i8;
                v = r;
            }
            Tok::DayName => {
                let (_, r) = lookup(v, &DAYS_SHORT)?;
                v = r;
            }
            Tok::DayLong => {
                let (_, r) = lookup(v, &DAYS_LONG)?;
                v = r;
            }
            Tok::Day2 | Tok::Day1 | Tok::DayUnder => {
                if tok == Tok::DayUnder && v.starts_with(' ') {
                    v = &v[1..];
                }
                let (n, r) = digits(v, if tok == Tok::Day2 { 2 } else { 1 }, 2)?;
                p.day = n as i8;
                v = r;
            }
            Tok::Hour24 => {
                // Go reads `15` with one or two digits.
                let (n, r) = digits(v, 1, 2)?;
                p.hour = n as i8;
                v = r;
            }
            Tok::Hour12_2 | Tok::Hour12 => {
                let (n, r) = digits(v, if tok == Tok::Hour12_2 { 2 } else { 1 }, 2)?;
                p.hour = n as i8;
                hour12 = true;
                v = r;
            }
            Tok::Minute2 | Tok::Minute1 => {
                let (n, r) = digits(v, if tok == Tok::Minute2 { 2 } else { 1 }, 2)?;
                p.minute = n as i8;
                v = r;
            }
            Tok::Second2 | Tok::Second1 => {
                let (n, r) = digits(v, if tok == Tok::Second2 { 2 } else { 1 }, 2)?;
                p.second = n as i8;
                v = r;
                // Go accepts a fraction the layout does not mention, right after the seconds.
                if !l.starts_with(['.', ','])
                    && (v.starts_with('.') || v.starts_with(','))
                    && v[1..].starts_with(|c: char| c.is_ascii_digit())
                {
                    let (ns, r) = fraction(&v[1..], 1, 9)?;
                    p.nanos = ns;
                    v = r;
                }
            }
            Tok::Frac { digits: n, exact } => {
                if !(v.starts_with('.') || v.starts_with(',')) {
                    if exact {
                        return None;
                    }
                    continue;
                }
                let (ns, r) = if exact {
                    fraction(&v[1..], n, n)?
                } else {
                    fraction(&v[1..], 0, 9)?
                };
                p.nanos = ns;
                v = r;
            }
            Tok::PmUpper | Tok::PmLower => {
                if v.len() < 2 {
                    return None;
                }
                let s = v[..2].to_ascii_uppercase();
                pm_set = Some(match s.as_str() {
                    "PM" => true,
                    "AM" => false,
                    _ => return None,
                });
                v = &v[2..];
            }
            Tok::Zone {
                z,
                colon,
                seconds,
                hours_only,
            } => {
                if z && v.starts_with('Z') {
                    v = &v[1..];
                    p.offset = Some(0);
                    continue;
                }
                let sign = match v.as_bytes().first() {
                    Some(b'+') => 1,
                    Some(b'-') => -1,
                    _ => return None,
                };
                v = &v[1..];
                let (hh, r) = digits(v, 2, 2)?;
                v = r;
                let mut mm = 0;
                let mut ss = 0;
                if !hours_only {
                    if colon {
                        v = v.strip_prefix(':')?;
                    }
                    let (m, r) = digits(v, 2, 2)?;
                    mm = m;
                    v = r;
                    if seconds {
                        if colon {
                            v = v.strip_prefix(':')?;
                        }
                        let (s, r) = digits(v, 2, 2)?;
                        ss = s;
                        v = r;
                    }
                }
                p.offset = Some(sign * (hh * 3600 + mm * 60 + ss));
            }
            Tok::ZoneName => {
                // Go: three or more upper-case letters (or "UTC", "GMT+h"); an unknown
                // abbreviation gets offset 0 unless a numeric offset was also given.
                let n = v.bytes().take_while(u8::is_ascii_uppercase).count();
                if n < 3 && !v.starts_with("UTC") {
                    return None;
                }
                let mut end = n;
                if v[..n].starts_with("GMT") || v[..n].starts_with("UTC") {
                    let rest = &v[n..];
                    if rest.starts_with(['+', '-']) {
                        end += 1 + rest[1..].bytes().take_while(u8::is_ascii_digit).count();
                    }
                }
                v = &v[end..];
            }
        }
    }
    if !v.is_empty() {
        return None;
    }
    if hour12 {
        if p.hour > 12 {
            return None;
        }
        match pm_set {
            Some(true) if p.hour < 12 => p.hour += 12,
            Some(false) if p.hour == 12 => p.hour = 0,
            _ => {}
        }
    }
    let date = Date::new(p.year, p.month, p.day).ok()?;
    let time = Time::new(p.hour, p.minute, p.second, p.nanos).ok()?;
    let dt = DateTime::from_parts(date, time);
    let offset = Offset::from_seconds(p.offset.unwrap_or(0)).ok()?;
    let ts = offset.to_timestamp(dt).ok()?;
    Some(GoTime { ts, offset })
}

#[derive(Default)]
struct Parts {
    year: i16,
    month: i8,
    day: i8,
    hour: i8,
    minute: i8,
    second: i8,
    nanos: i32,
    offset: Option<i32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Year4,
    Year2,
    MonthName,
    MonthLong,
    Month2,
    Month1,
    DayName,
    DayLong,
    Day2,
    Day1,
    DayUnder,
    Hour24,
    Hour12_2,
    Hour12,
    Minute2,
    Minute1,
    Second2,
    Second1,
    Frac {
        digits: usize,
        exact: bool,
    },
    PmUpper,
    PmLower,
    Zone {
        z: bool,
        colon: bool,
        seconds: bool,
        hours_only: bool,
    },
    ZoneName,
}

const MONTHS_SHORT: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const MONTHS_LONG: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS_SHORT: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const DAYS_LONG: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// Go's `nextStdChunk`: the literal before the next layout element, the element, the rest.
fn next_token(l: &str) -> (&str, Option<Tok>, &str) {
    let b = l.as_bytes();
    let table: &[(&str, Tok)] = &[
        ("January", Tok::MonthLong),
        ("Jan", Tok::MonthName),
        ("Monday", Tok::DayLong),
        ("Mon", Tok::DayName),
        ("MST", Tok::ZoneName),
        ("2006", Tok::Year4),
        (
            "-07:00:00",
            Tok::Zone {
                z: false,
                colon: true,
                seconds: true,
                hours_only: false,
            },
        ),
        (
            "-0700",
            Tok::Zone {
                z: false,
                colon: false,
                seconds: false,
                hours_only: false,
            },
        ),
        (
            "-070000",
            Tok::Zone {
                z: false,
                colon: false,
                seconds: true,
                hours_only: false,
            },
        ),
        (
            "-07:00",
            Tok::Zone {
                z: false,
                colon: true,
                seconds: false,
                hours_only: false,
            },
        ),
        (
            "-07",
            Tok::Zone {
                z: false,
                colon: false,
                seconds: false,
                hours_only: true,
            },
        ),
        (
            "Z07:00:00",
            Tok::Zone {
                z: true,
                colon: true,
                seconds: true,
                hours_only: false,
            },
        ),
        (
            "Z070000",
            Tok::Zone {
                z: true,
                colon: false,
                seconds: true,
                hours_only: false,
            },
        ),
        (
            "Z07:00",
            Tok::Zone {
                z: true,
                colon: true,
                seconds: false,
                hours_only: false,
            },
        ),
        (
            "Z0700",
            Tok::Zone {
                z: true,
                colon: false,
                seconds: false,
                hours_only: false,
            },
        ),
        (
            "Z07",
            Tok::Zone {
                z: true,
                colon: false,
                seconds: false,
                hours_only: true,
            },
        ),
        ("01", Tok::Month2),
        ("02", Tok::Day2),
        ("03", Tok::Hour12_2),
        ("04", Tok::Minute2),
        ("05", Tok::Second2),
        ("06", Tok::Year2),
        ("15", Tok::Hour24),
        ("_2", Tok::DayUnder),
        ("PM", Tok::PmUpper),
        ("pm", Tok::PmLower),
    ];
    let mut i = 0;
    while i < b.len() {
        let rest = &l[i..];
        for (pat, tok) in table {
            if let Some(after) = rest.strip_prefix(pat) {
                // Go: "Jan"/"Mon" only when not followed by a lower-case letter ("January").
                if (*pat == "Mon" || *pat == "Jan" || *pat == "MST")
                    && after.starts_with(|c: char| c.is_ascii_lowercase())
                {
                    continue;
                }
                return (&l[..i], Some(*tok), after);
            }
        }
        let c = b[i];
        if matches!(c, b'.' | b',') && i + 1 < b.len() && matches!(b[i + 1], b'0' | b'9') {
            let d = b[i + 1];
            let n = rest[1..].bytes().take_while(|&x| x == d).count();
            // Only a fraction when it follows seconds-ish digits and is not followed by a digit.
            let after = rest.as_bytes().get(1 + n);
            if !after.is_some_and(u8::is_ascii_digit) {
                return (
                    &l[..i],
                    Some(Tok::Frac {
                        digits: n,
                        exact: d == b'0',
                    }),
                    &rest[1 + n..],
                );
            }
        }
        match c {
            b'1' => return (&l[..i], Some(Tok::Month1), &rest[1..]),
            b'2' => return (&l[..i], Some(Tok::Day1), &rest[1..]),
            b'3' => return (&l[..i], Some(Tok::Hour12), &rest[1..]),
            b'4' => return (&l[..i], Some(Tok::Minute1), &rest[1..]),
            b'5' => return (&l[..i], Some(Tok::Second1), &rest[1..]),
            _ => {}
        }
        i += rest.chars().next().map(char::len_utf8).unwrap_or(1);
    }
    (l, None, "")
}

/// Go's `skip`: match a literal; a run of spaces in the layout matches a run of spaces.
fn skip_literal<'v>(mut v: &'v str, mut lit: &str) -> Option<&'v str> {
    while !lit.is_empty() {
        if lit.starts_with(' ') {
            if !v.is_empty() && !v.starts_with(' ') {
                return None;
            }
            lit = lit.trim_start_matches(' ');
            v = v.trim_start_matches(' ');
            continue;
        }
        let c = lit.chars().next()?;
        if !v.starts_with(c) {
            return None;
        }
        lit = &lit[c.len_utf8()..];
        v = &v[c.len_utf8()..];
    }
    Some(v)
}

fn digits(v: &str, min: usize, max: usize) -> Option<(i32, &str)> {
    let n = v.bytes().take(max).take_while(u8::is_ascii_digit).count();
    if n < min {
        return None;
    }
    Some((v[..n].parse().ok()?, &v[n..]))
}

fn fraction(v: &str, min: usize, max: usize) -> Option<(i32, &str)> {
    let n = v.bytes().take_while(u8::is_ascii_digit).count();
    if n < min || (max > 0 && n > max && min == max) {
        return None;
    }
    let take = n.min(9);
    let mut ns: i32 = v[..take].parse().unwrap_or(0);
    for _ in take..9 {
        ns *= 10;
    }
    Some((ns, &v[n..]))
}

fn lookup<'v>(v: &'v str, names: &[&str]) -> Option<(usize, &'v str)> {
    for (i, n) in names.iter().enumerate() {
        if v.len() >= n.len() && v[..n.len()].eq_ignore_ascii_case(n) {
            return Some((i, &v[n.len()..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_parse_like_go() {
        let t = parse_layout(
            "02/Jan/2006:15:04:05 -0700",
            "04/Jan/2020:07:25:02 +0100",
            0,
        )
        .unwrap();
        assert_eq!(t.marshal(), "2020-01-04T07:25:02+01:00");
        let t = parse_layout("Jan  2 15:04:05", "Mar 14 10:00:01", 2026).unwrap();
        assert_eq!(t.marshal(), "2026-03-14T10:00:01Z");
        let t = parse_layout("2006-01-02T15:04:05Z07:00", "2021-05-06T07:08:09.120Z", 0).unwrap();
        assert_eq!(t.marshal(), "2021-05-06T07:08:09.12Z");
        // A fraction the layout does not mention is accepted after the seconds.
        let t = parse_layout("2006-01-02 15:04:05", "2021-05-06 07:08:09.5", 0).unwrap();
        assert_eq!(t.marshal(), "2021-05-06T07:08:09.5Z");
        assert!(parse_layout("2006-01-02", "2021-05-06 x", 0).is_none());
        let t = parse_layout("Mon Jan 2 15:04:05 2006", "Tue Jun 8 08:04:43 2021", 0).unwrap();
        assert_eq!(t.marshal(), "2021-06-08T08:04:43Z");
    }
}
