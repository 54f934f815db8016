//! Time with Go layouts (`2006-01-02T15:04:05Z07:00`): parsing and formatting for expr's
//! `date()`, `time.Time.Format`, and CrowdSec's time helpers `TimeNow`, `ParseUnix`,
//! `MedianInterval`, `AverageInterval`. Go layouts are translated to jiff's strftime.
//!
//! Owns: the layout translation and these helpers. Does not own: CrowdSec's date enricher
//! (the engine's), which tries its own list of layouts.

use jiff::fmt::strtime;
use jiff::tz::{Offset, TimeZone};

use crate::format::rfc3339_nano;
use crate::ops::list_of;
use crate::value::{Time, Value};
use crate::{Arity, Compiler, EvalError};

pub(super) fn register(c: &mut Compiler) {
    c.register_fn("TimeNow", Arity::exact(0), |_| {
        let now = Time::utc(
            jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).unwrap_or_default(),
        );
        Ok(Value::string(rfc3339_nano(&now)))
    });
    c.register_fn("ParseUnix", Arity::exact(1), |a| {
        let s = super::arg_str("ParseUnix", a, 0)?;
        // CrowdSec: the integer part before any '.', > 0, printed as RFC 3339; else "".
        let secs = s
            .split('.')
            .next()
            .and_then(|p| p.parse::<i64>().ok())
            .filter(|v| *v > 0);
        Ok(Value::string(
            secs.and_then(|v| jiff::Timestamp::from_second(v).ok())
                .map(|ts| rfc3339_nano(&Time::utc(ts)))
                .unwrap_or_default(),
        ))
    });
    c.register_fn("MedianInterval", Arity::exact(1), |a| {
        interval("MedianInterval", &a[0], true)
    });
    c.register_fn("AverageInterval", Arity::exact(1), |a| {
        interval("AverageInterval", &a[0], false)
    });
}

fn interval<'a>(name: &str, v: &Value<'_>, median: bool) -> Result<Value<'a>, EvalError> {
    let list = list_of(v).ok_or_else(|| EvalError::function(name, "expects a list of times"))?;
    let mut times = Vec::with_capacity(list.len());
    for (i, e) in list.iter().enumerate() {
        match e {
            Value::Time(t) => times.push(t.ts.as_nanosecond()),
            _ => {
                return Err(EvalError::function(
                    name,
                    format!("element at index {i} is not a time.Time"),
                ));
            }
        }
    }
    if times.len() < 2 {
        return Err(EvalError::function(name, "need at least two times"));
    }
    times.sort_unstable();
    let mut gaps: Vec<i128> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let d = if median {
        gaps.sort_unstable();
        let n = gaps.len();
        if n % 2 == 1 {
            gaps[n / 2]
        } else {
            (gaps[n / 2 - 1] + gaps[n / 2]) / 2
        }
    } else {
        gaps.iter().sum::<i128>() / gaps.len() as i128
    };
    Ok(Value::Duration(
        d.clamp(i64::MIN as i128, i64::MAX as i128) as i64
    ))
}

/// Translate a Go layout into a jiff strftime format.
fn go_layout_to_strftime(layout: &str) -> String {
    // Longest tokens first.
    const TOKENS: &[(&str, &str)] = &[
        ("January", "%B"),
        ("Monday", "%A"),
        ("Z07:00", "%:z"),
        ("-07:00", "%:z"),
        ("Z0700", "%z"),
        ("-0700", "%z"),
        ("2006", "%Y"),
        (".000000000", "%.9f"),
        (".999999999", "%.f"),
        (".000000", "%.6f"),
        (".999999", "%.f"),
        (".000", "%.3f"),
        (".999", "%.f"),
        ("Jan", "%b"),
        ("Mon", "%a"),
        ("MST", "%Z"),
        ("002", "%j"),
        ("-07", "%z"),
        ("01", "%m"),
        ("02", "%d"),
        ("_2", "%e"),
        ("06", "%y"),
        ("15", "%H"),
        ("03", "%I"),
        ("04", "%M"),
        ("05", "%S"),
        ("PM", "%p"),
        ("pm", "%P"),
        ("1", "%-m"),
        ("2", "%-d"),
        ("3", "%-I"),
        ("4", "%-M"),
        ("5", "%-S"),
    ];
    let mut out = String::new();
    let mut rest = layout;
    'outer: while !rest.is_empty() {
        for (go, jf) in TOKENS {
            if rest.starts_with(go) {
                out.push_str(jf);
                rest = &rest[go.len()..];
                continue 'outer;
            }
        }
        let c = rest.chars().next().unwrap_or(' ');
        if c == '%' {
            out.push_str("%%");
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Parse `s` with a Go layout; a time without zone is UTC (as Go's `time.Parse`).
pub fn parse_go_layout(s: &str, layout: &str) -> Option<Time> {
    let fmt = go_layout_to_strftime(layout);
    // Go's Z07:00 accepts a literal Z for UTC.
    let input = if layout.contains("Z07") && s.ends_with('Z') {
        format!("{}+00:00", &s[..s.len() - 1])
    } else {
        s.to_string()
    };
    let input = if layout.contains("Z0700") && s.ends_with('Z') {
        format!("{}+0000", &s[..s.len() - 1])
    } else {
        input
    };
    let tm = strtime::parse(fmt.as_bytes(), input.as_bytes()).ok()?;
    match tm.offset() {
        Some(off) => Some(Time {
            ts: tm.to_timestamp().ok()?,
            offset: off,
        }),
        None => {
            let dt = tm.to_datetime().ok()?;
            Some(Time::utc(Offset::UTC.to_timestamp(dt).ok()?))
        }
    }
}

/// Parse `s` as expr's `date(s)` does without a layout: RFC 3339 (with or without
/// fraction), `2006-01-02 15:04:05`, `2006-01-02T15:04:05`, or `2006-01-02`.
pub fn parse_any(s: &str) -> Option<Time> {
    for layout in [
        "2006-01-02T15:04:05Z07:00",
        "2006-01-02T15:04:05.999999999Z07:00",
    ] {
        if let Some(t) = parse_go_layout(s, layout) {
            return Some(t);
        }
    }
    if let Ok(ts) = s.parse::<jiff::Timestamp>() {
        let offset = s
            .rfind(['+', '-'])
            .filter(|i| *i > 10)
            .and_then(|i| {
                parse_go_layout(
                    &format!("2000-01-01T00:00:00{}", &s[i..]),
                    "2006-01-02T15:04:05-07:00",
                )
            })
            .map(|t| t.offset)
            .unwrap_or(Offset::UTC);
        return Some(Time { ts, offset });
    }
    for layout in [
        "2006-01-02 15:04:05",
        "2006-01-02T15:04:05",
        "2006-01-02 15:04",
        "2006-01-02",
    ] {
        if let Some(t) = parse_go_layout(s, layout) {
            return Some(t);
        }
    }
    None
}

/// Format `t` with a Go layout.
pub fn format_go_layout(t: &Time, layout: &str) -> String {
    let fmt = go_layout_to_strftime(layout);
    let zoned = t.ts.to_zoned_datetime(TimeZone::fixed(t.offset));
    let out = zoned.strftime(&fmt).to_string();
    if layout.contains("Z07") && t.offset == Offset::UTC {
        // Go writes UTC as "Z" for Z07:00 / Z0700.
        return out.replace("+00:00", "Z").replace("+0000", "Z");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_layouts_parse_and_format() {
        let t = parse_go_layout("2020-01-04T08:41:43Z", "2006-01-02T15:04:05Z07:00").unwrap();
        assert_eq!(rfc3339_nano(&t), "2020-01-04T08:41:43Z");
        let t =
            parse_go_layout("04/Jan/2020:10:41:43 +0200", "02/Jan/2006:15:04:05 -0700").unwrap();
        assert_eq!(rfc3339_nano(&t), "2020-01-04T10:41:43+02:00");
        assert_eq!(t.civil().hour(), 10);
        assert_eq!(
            format_go_layout(&t, "2006-01-02 15:04:05 -0700"),
            "2020-01-04 10:41:43 +0200"
        );
        assert_eq!(
            format_go_layout(&Time::utc(t.ts), time_rfc3339()),
            "2020-01-04T08:41:43Z"
        );
        assert!(parse_any("2020-01-04").is_some());
        assert!(parse_any("2020-01-04T08:41:43.5+01:00").is_some());
        assert!(parse_any("yesterday").is_none());
    }

    fn time_rfc3339() -> &'static str {
        "2006-01-02T15:04:05Z07:00"
    }
}
