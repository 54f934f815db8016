//! Go's `fmt.Sprintf` for CrowdSec's `Sprintf` helper: verbs `%v %+v %s %d %f %g %e %q %x %X
//! %t %T %%`, flags `-+# 0`, width and precision, and Go's `%!verb(type=value)` /
//! `%!verb(MISSING)` / `%!(EXTRA ...)` markers for mismatches. Owns nothing else.

use crate::format::go_float;
use crate::value::Value;

pub(crate) fn sprintf(format: &str, args: &[Value<'_>]) -> String {
    let mut out = String::with_capacity(format.len() + 16);
    let mut next = 0;
    let b = format.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            let start = i;
            while i < b.len() && b[i] != b'%' {
                i += 1;
            }
            out.push_str(&format[start..i]);
            continue;
        }
        i += 1;
        let mut spec = Spec::default();
        while i < b.len() {
            match b[i] {
                b'-' => spec.minus = true,
                b'+' => spec.plus = true,
                b'#' => spec.sharp = true,
                b' ' => spec.space = true,
                b'0' => spec.zero = true,
                _ => break,
            }
            i += 1;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i > start {
            spec.width = format[start..i].parse().ok();
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            spec.prec = Some(format[start..i].parse().unwrap_or(0));
        }
        let Some(verb) = format[i..].chars().next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        i += verb.len_utf8();
        if verb == '%' {
            out.push('%');
            continue;
        }
        match args.get(next) {
            None => {
                out.push_str("%!");
                out.push(verb);
                out.push_str("(MISSING)");
            }
            Some(arg) => {
                next += 1;
                let body = format_one(verb, &spec, arg);
                out.push_str(&pad(
                    &spec,
                    body,
                    matches!(arg, Value::Int(_) | Value::Float(_)),
                ));
            }
        }
    }
    if next < args.len() {
        out.push_str("%!(EXTRA ");
        for (k, a) in args[next..].iter().enumerate() {
            if k > 0 {
                out.push_str(", ");
            }
            out.push_str(&format!("{}={}", go_type(a), a));
        }
        out.push(')');
    }
    out
}

#[derive(Default)]
struct Spec {
    minus: bool,
    plus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

fn go_type(v: &Value<'_>) -> String {
    match v {
        Value::List(_) => "[]interface {}".into(),
        Value::Map(_) => "map[string]interface {}".into(),
        other => other.type_name().to_string(),
    }
}

fn bad(verb: char, v: &Value<'_>) -> String {
    match v {
        Value::Nil => format!("%!{verb}(<nil>)"),
        _ => format!("%!{verb}({}={})", go_type(v), v),
    }
}

fn format_one(verb: char, spec: &Spec, v: &Value<'_>) -> String {
    match verb {
        'v' => match (v, spec.prec) {
            (Value::Float(f), Some(p)) => format!("{:.*}", p, f),
            (Value::Int(i), _) if spec.plus => format!("{i:+}"),
            _ => v.to_string(),
        },
        'T' => go_type(v),
        's' => match v {
            Value::Str(s) => truncate(s, spec.prec),
            Value::List(l) => {
                let parts: Vec<String> = l.iter().map(|e| format_one('s', spec, &e)).collect();
                format!("[{}]", parts.join(" "))
            }
            Value::Time(_) | Value::Duration(_) | Value::Object(_) | Value::Shared(_) => {
                v.to_string()
            }
            _ => bad('s', v),
        },
        'q' => match v {
            Value::Str(s) => go_quote(s),
            _ => bad('q', v),
        },
        'd' => match v {
            Value::Int(i) => {
                if spec.plus && *i >= 0 {
                    format!("+{i}")
                } else if spec.space && *i >= 0 {
                    format!(" {i}")
                } else {
                    i.to_string()
                }
            }
            Value::Duration(d) => d.to_string(),
            Value::List(l) => {
                let parts: Vec<String> = l.iter().map(|e| format_one('d', spec, &e)).collect();
                format!("[{}]", parts.join(" "))
            }
            _ => bad('d', v),
        },
        'f' | 'F' | 'e' | 'E' | 'g' | 'G' => {
            let f = match v {
                Value::Float(f) => *f,
                _ => return bad(verb, v),
            };
            let s = match verb {
                'f' | 'F' => format!("{:.*}", spec.prec.unwrap_or(6), f),
                'e' | 'E' => {
                    let s = go_exp(f, spec.prec.unwrap_or(6));
                    if verb == 'E' { s.to_uppercase() } else { s }
                }
                _ => match spec.prec {
                    None => go_float(f),
                    Some(p) => format!(
                        "{}",
                        format!("{:.*e}", p.saturating_sub(1), f)
                            .parse::<f64>()
                            .unwrap_or(f)
                    ),
                },
            };
            if spec.plus && f >= 0.0 {
                format!("+{s}")
            } else {
                s
            }
        }
        'x' | 'X' => {
            let s = match v {
                Value::Int(i) => {
                    if *i < 0 {
                        format!("-{:x}", i.unsigned_abs())
                    } else {
                        format!("{i:x}")
                    }
                }
                Value::Str(s) => s.bytes().map(|b| format!("{b:02x}")).collect(),
                _ => return bad(verb, v),
            };
            let s = if spec.sharp { format!("0x{s}") } else { s };
            if verb == 'X' { s.to_uppercase() } else { s }
        }
        'o' => match v {
            Value::Int(i) => format!("{i:o}"),
            _ => bad('o', v),
        },
        'b' => match v {
            Value::Int(i) => format!("{i:b}"),
            _ => bad('b', v),
        },
        't' => match v {
            Value::Bool(b) => b.to_string(),
            _ => bad('t', v),
        },
        'c' => match v {
            Value::Int(i) => char::from_u32(*i as u32)
                .map(String::from)
                .unwrap_or_else(|| "\u{fffd}".into()),
            _ => bad('c', v),
        },
        other => bad(other, v),
    }
}

fn truncate(s: &str, prec: Option<usize>) -> String {
    match prec {
        Some(p) => s.chars().take(p).collect(),
        None => s.to_string(),
    }
}

fn pad(spec: &Spec, body: String, numeric: bool) -> String {
    let Some(w) = spec.width else { return body };
    let n = body.chars().count();
    if n >= w {
        return body;
    }
    let fill = w - n;
    if spec.minus {
        format!("{body}{}", " ".repeat(fill))
    } else if spec.zero && numeric {
        let (sign, digits) = match body.strip_prefix('-') {
            Some(d) => ("-", d),
            None => ("", body.as_str()),
        };
        format!("{sign}{}{digits}", "0".repeat(fill))
    } else {
        format!("{}{body}", " ".repeat(fill))
    }
}

/// Go's `%e`: mantissa with `prec` decimals, exponent with a sign and at least two digits.
fn go_exp(f: f64, prec: usize) -> String {
    let s = format!("{:.*e}", prec, f);
    match s.split_once('e') {
        Some((m, e)) => {
            let (sign, d) = match e.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', e),
            };
            format!("{m}e{sign}{d:0>2}")
        }
        None => s,
    }
}

/// Go's `strconv.Quote`.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_follow_go_fmt() {
        assert_eq!(sprintf("%s-%d", &[Value::str("a"), Value::Int(5)]), "a-5");
        assert_eq!(
            sprintf("%v", &[Value::Float(1756494783.0)]),
            "1.756494783e+09"
        );
        assert_eq!(sprintf("%v", &[Value::Float(200.0)]), "200");
        assert_eq!(
            sprintf("%v %v", &[Value::Nil, Value::Bool(true)]),
            "<nil> true"
        );
        assert_eq!(
            sprintf("%+v", &[Value::list(vec![Value::Int(1), Value::Int(2)])]),
            "[1 2]"
        );
        assert_eq!(sprintf("%.2f", &[Value::Float(1.23456)]), "1.23");
        assert_eq!(
            sprintf(
                "%05d|%-4s|%4s",
                &[Value::Int(42), Value::str("ab"), Value::str("cd")]
            ),
            "00042|ab  |  cd"
        );
        assert_eq!(sprintf("%q", &[Value::str("a\"b")]), "\"a\\\"b\"");
        assert_eq!(sprintf("%x", &[Value::Int(255)]), "ff");
        assert_eq!(sprintf("100%%", &[]), "100%");
        assert_eq!(sprintf("%d", &[Value::str("x")]), "%!d(string=x)");
        assert_eq!(sprintf("%s %s", &[Value::str("x")]), "x %!s(MISSING)");
        assert_eq!(
            sprintf("%s", &[Value::str("x"), Value::Int(1)]),
            "x%!(EXTRA int=1)"
        );
        assert_eq!(sprintf("%e", &[Value::Float(1234.5)]), "1.234500e+03");
    }
}
