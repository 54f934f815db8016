//! Printing values the way Go does: `%v` (fmt's default format, what `Sprintf("%v")` and
//! `string(x)` show) and JSON (`toJSON`, `ToJsonString`). Owns nothing else.

use std::fmt;

use crate::value::{Map, Value};

/// Go's `%v` for a value.
pub(crate) fn go_v(v: &Value<'_>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match v {
        Value::Nil => f.write_str("<nil>"),
        Value::Bool(b) => write!(f, "{b}"),
        Value::Int(i) => write!(f, "{i}"),
        Value::Float(x) => f.write_str(&go_float(*x)),
        Value::Str(s) => f.write_str(s),
        Value::List(l) => {
            f.write_str("[")?;
            for (i, e) in l.iter().enumerate() {
                if i > 0 {
                    f.write_str(" ")?;
                }
                go_v(&e, f)?;
            }
            f.write_str("]")
        }
        Value::Map(m) => go_map(m, f),
        Value::Time(t) => {
            // Go: 2006-01-02 15:04:05.999999999 -0700 MST; we have no zone name, so the
            // offset stands in for it (UTC prints as "+0000 UTC").
            let dt = t.civil();
            let secs = t.offset.seconds();
            let sign = if secs < 0 { '-' } else { '+' };
            let (h, m) = (secs.abs() / 3600, secs.abs() % 3600 / 60);
            write!(f, "{} {}", dt.date(), dt.time().strftime("%H:%M:%S"))?;
            if dt.subsec_nanosecond() != 0 {
                let frac = format!("{:09}", dt.subsec_nanosecond());
                write!(f, ".{}", frac.trim_end_matches('0'))?;
            }
            if secs == 0 {
                write!(f, " +0000 UTC")
            } else {
                write!(f, " {sign}{h:02}{m:02} {sign}{h:02}{m:02}")
            }
        }
        Value::Duration(d) => f.write_str(&go_duration(*d)),
        Value::Object(o) => match o.to_value() {
            Some(v) => go_v(&v, f),
            None => write!(f, "<{}>", o.type_name()),
        },
        Value::Shared(o) => match o.to_value() {
            Some(v) => go_v(&v, f),
            None => write!(f, "<{}>", o.type_name()),
        },
    }
}

fn go_map(m: &Map<'_>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    // Go prints maps with sorted keys.
    let mut entries = m.entries();
    entries.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    f.write_str("map[")?;
    for (i, (k, v)) in entries.iter().enumerate() {
        if i > 0 {
            f.write_str(" ")?;
        }
        write!(f, "{}:", k.as_str())?;
        go_v(v, f)?;
    }
    f.write_str("]")
}

/// Go's `%v` for a float64 (`strconv.FormatFloat(x, 'g', -1, 64)`): the shortest digits that
/// round-trip, in exponent form when the exponent is < -4 or >= 6 (`1e+06`, `1.5e-05`).
pub(crate) fn go_float(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if x == 0.0 {
        return if x.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    // Rust's `{:e}` is the shortest round-trip mantissa with its exponent: "1.5e21".
    let sci = format!("{x:e}");
    let Some((mant, exp)) = sci.split_once('e') else {
        return sci;
    };
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..6).contains(&exp) {
        format!("{x}")
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mant}e{sign}{:02}", exp.abs())
    }
}

/// Go's `time.Duration.String()`: `1h2m3s`, `1.5s`, `300ms`, `0s`.
pub fn go_duration(d: i64) -> String {
    if d == 0 {
        return "0s".into();
    }
    let neg = d < 0;
    let u = d.unsigned_abs();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if u < 1_000_000_000 {
        // Sub-second: ns, µs, ms with a fraction.
        let (unit, div) = if u < 1_000 {
            ("ns", 1)
        } else if u < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        out.push_str(&frac(u, div));
        out.push_str(unit);
        return out;
    }
    let h = u / 3_600_000_000_000;
    let rem = u % 3_600_000_000_000;
    let m = rem / 60_000_000_000;
    let s_ns = rem % 60_000_000_000;
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&frac(s_ns, 1_000_000_000));
    out.push('s');
    out
}

fn frac(v: u64, div: u64) -> String {
    let whole = v / div;
    let rest = v % div;
    if rest == 0 {
        return whole.to_string();
    }
    let width = div.ilog10() as usize;
    let digits = format!("{rest:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Go's `time.RFC3339Nano` layout, what `encoding/json` writes for a `time.Time`:
/// `2020-01-04T08:41:43Z`, `2020-01-04T08:41:43.5+02:00`.
pub(crate) fn rfc3339_nano(t: &crate::value::Time) -> String {
    let dt = t.civil();
    let mut out = format!("{}T{}", dt.date(), dt.time().strftime("%H:%M:%S"));
    if dt.subsec_nanosecond() != 0 {
        let frac = format!("{:09}", dt.subsec_nanosecond());
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    let secs = t.offset.seconds();
    if secs == 0 {
        out.push('Z');
    } else {
        let sign = if secs < 0 { '-' } else { '+' };
        out.push_str(&format!(
            "{sign}{:02}:{:02}",
            secs.abs() / 3600,
            secs.abs() % 3600 / 60
        ));
    }
    out
}

/// A value as JSON, as Go's `encoding/json` would marshal it.
pub(crate) fn to_json(v: &Value<'_>) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Nil => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) => J::from(*i),
        Value::Float(x) => serde_json::Number::from_f64(*x)
            .map(J::Number)
            .unwrap_or(J::Null),
        Value::Str(s) => J::String(s.to_string()),
        Value::List(l) => J::Array(l.iter().map(|e| to_json(&e)).collect()),
        Value::Map(m) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m.entries() {
                out.insert(k.to_string(), to_json(&v));
            }
            J::Object(out)
        }
        Value::Time(t) => J::String(rfc3339_nano(t)),
        Value::Duration(d) => J::from(*d),
        Value::Object(o) => o.to_value().map(|v| to_json(&v)).unwrap_or(J::Null),
        Value::Shared(o) => o.to_value().map(|v| to_json(&v)).unwrap_or(J::Null),
    }
}

impl Value<'_> {
    /// This value as JSON (what `toJSON` and `ToJsonString` print; objects through
    /// [`Object::to_value`], else `null`).
    pub fn to_json(&self) -> serde_json::Value {
        to_json(self)
    }
}

/// Go's `%v` formatting (what `Sprintf("%v", x)` and `string(x)` print).
impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        go_v(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_float_matches_strconv_g() {
        assert_eq!(go_float(1.5), "1.5");
        assert_eq!(go_float(3.0), "3");
        assert_eq!(go_float(1e21), "1e+21");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(go_float(123456789.0), "1.23456789e+08");
        assert_eq!(go_float(123456.0), "123456");
        assert_eq!(go_float(-0.5), "-0.5");
    }

    #[test]
    fn go_duration_matches_time_duration_string() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(3_723_000_000_000), "1h2m3s");
        assert_eq!(go_duration(20 * 60 * 1_000_000_000), "20m0s");
        assert_eq!(go_duration(300_000_000), "300ms");
        assert_eq!(go_duration(-2_000_000_000), "-2s");
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(go_duration(10_000_000_000), "10s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(500_000_000), "500ms");
    }
}
