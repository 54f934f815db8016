//! The one list loader: bytes of a blocklist or allowlist in any format we
//! read — one address/CIDR per line with `#`/`;` comments (FireHOL
//! `.netset`/`.ipset`, Spamhaus DROP/EDROP `1.2.3.0/24 ; SBL123`, IPsum
//! `1.2.3.4\t5`) and CrowdSec's `cscli decisions import` CSV and JSON — into
//! canonical networks ([`shield_core::Net`]). Entries that are not addresses,
//! that touch loopback, link-local or unspecified space, or that are wider
//! than the prefix caps are counted and reported by line (or item) number.
//! It never panics and never allocates per line beyond the entry it keeps.
//!
//! It does not fetch, decide or store anything: `lists.rs` does that.

use std::str::FromStr;

use shield_core::{DecisionType, Net};

/// How many problems are kept with their line number (the rest are only counted).
pub const KEPT_PROBLEMS: usize = 20;

/// The formats a list may be written in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Decided from the content: `[` first is JSON, a first line naming a
    /// `value` column is CSV, anything else one entry per line.
    #[default]
    Auto,
    /// One address or CIDR per line; `#` and `;` start a comment; anything
    /// after the first blank on a line is ignored (IPsum's counts).
    Lines,
    /// `cscli decisions import` CSV: a header naming `value` and optionally
    /// `duration`, `reason`, `scope`, `type`.
    Csv,
    /// `cscli decisions import` JSON: an array of objects with `value` and
    /// optionally `duration`, `reason`, `scope`, `type`.
    Json,
}

impl FromStr for Format {
    type Err = shield_core::ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Format::Auto),
            "lines" | "netset" | "ipset" | "text" => Ok(Format::Lines),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            _ => Err(shield_core::ParseError {
                what: "list format",
                got: s.into(),
                expected: "`auto`, `lines`, `csv` or `json`",
            }),
        }
    }
}

/// One entry of a list. Line formats only give the target; CrowdSec's
/// formats may also give a duration, a reason and a type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub target: Net,
    pub kind: DecisionType,
    /// Seconds, when the entry says.
    pub duration_s: Option<u64>,
    pub reason: Option<String>,
}

/// A line (or JSON item, from 1) that was not taken, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    pub line: usize,
    pub reason: String,
}

/// What a list held.
#[derive(Clone, Debug, Default)]
pub struct Parsed {
    pub format: Option<Format>,
    pub entries: Vec<Entry>,
    /// Lines that are not an entry at all (count), the first few kept in `problems`.
    pub bad: usize,
    /// Entries refused by the checks (reserved space, prefix caps).
    pub refused: usize,
    pub problems: Vec<Problem>,
}

impl Parsed {
    fn problem(&mut self, line: usize, reason: impl Into<String>, refused: bool) {
        if refused {
            self.refused += 1;
        } else {
            self.bad += 1;
        }
        if self.problems.len() < KEPT_PROBLEMS {
            self.problems.push(Problem {
                line,
                reason: reason.into(),
            });
        }
    }

    /// A one-line summary of the problems, for logs and status.
    pub fn summary(&self) -> Option<String> {
        if self.bad + self.refused == 0 {
            return None;
        }
        let first = self
            .problems
            .first()
            .map(|p| format!("; first: line {}: {}", p.line, p.reason))
            .unwrap_or_default();
        Some(format!(
            "{} unreadable line(s), {} refused entr(ies){first}",
            self.bad, self.refused
        ))
    }
}

/// The widest networks a list may name, per family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    pub min_prefix_v4: u8,
    pub min_prefix_v6: u8,
}

impl Default for Caps {
    /// Spamhaus DROP lists /10s, so /8 for IPv4; /19 for IPv6 (a large RIR allocation).
    fn default() -> Self {
        Caps {
            min_prefix_v4: 8,
            min_prefix_v6: 19,
        }
    }
}

/// Why a whole list could not be read (as opposed to single bad lines).
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// JSON that is not an array of objects with a `value`.
    #[error(
        "not a CrowdSec decisions JSON array: {0}; expected [{{\"value\": \"203.0.113.7\", \"duration\": \"4h\"}}, …]"
    )]
    Json(String),
    /// A CSV whose header has no `value` column.
    #[error(
        "the CSV header `{0}` has no `value` column; write a header like `value,duration,reason,scope,type`"
    )]
    CsvHeader(String),
    /// Not text at all.
    #[error("the list is not UTF-8 text (line {0}); is it compressed or an HTML error page?")]
    NotText(usize),
}

/// Reserved space no list may ever touch: loopback, link-local, unspecified.
fn reserved(n: &Net) -> Option<&'static str> {
    const V4: [(&str, &str); 3] = [
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("0.0.0.0/32", "unspecified"),
    ];
    const V6: [(&str, &str); 3] = [
        ("::1/128", "loopback"),
        ("fe80::/10", "link-local"),
        ("::/128", "unspecified"),
    ];
    let table: &[(&str, &str)] = if n.get().addr().is_ipv4() { &V4 } else { &V6 };
    table.iter().find_map(|(r, what)| {
        let r: Net = r.parse().expect("constant network");
        r.overlaps(n).then_some(*what)
    })
}

/// Checks a network against the reserved space and the caps.
pub fn check(n: &Net, caps: Caps) -> Result<(), String> {
    if let Some(what) = reserved(n) {
        return Err(format!(
            "{n} touches {what} space, which is never decided on"
        ));
    }
    let (p, min) = match n.get() {
        ipnet::IpNet::V4(v) => (v.prefix_len(), caps.min_prefix_v4),
        ipnet::IpNet::V6(v) => (v.prefix_len(), caps.min_prefix_v6),
    };
    if p < min {
        return Err(format!(
            "{n} is wider than /{min}, the widest a list may name (raise min_prefix to allow it)"
        ));
    }
    Ok(())
}

/// Reads `bytes` in `format` with the caps; bad entries are counted, never fatal.
pub fn parse(bytes: &[u8], format: Format, caps: Caps) -> Result<Parsed, ParseError> {
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let line = bytes[..e.valid_up_to()]
                .iter()
                .filter(|b| **b == b'\n')
                .count();
            return Err(ParseError::NotText(line + 1));
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let format = match format {
        Format::Auto => detect(text),
        f => f,
    };
    let mut out = match format {
        Format::Json => json(text, caps)?,
        Format::Csv => csv(text, caps)?,
        Format::Lines | Format::Auto => lines(text, caps),
    };
    out.format = Some(format);
    Ok(out)
}

/// The format of `text` (see [`Format::Auto`]).
pub fn detect(text: &str) -> Format {
    let t = text.trim_start();
    if t.starts_with('[') {
        return Format::Json;
    }
    let first = t.lines().next().unwrap_or("");
    if first.contains(',')
        && first
            .split(',')
            .any(|c| c.trim().trim_matches('"').eq_ignore_ascii_case("value"))
    {
        return Format::Csv;
    }
    Format::Lines
}

fn lines(text: &str, caps: Caps) -> Parsed {
    let mut out = Parsed::default();
    for (i, line) in text.lines().enumerate() {
        let l = line.split(['#', ';']).next().unwrap_or("");
        let Some(word) = l.split_whitespace().next() else {
            continue;
        };
        out.take(i + 1, word, None, None, None, caps);
    }
    out
}

impl Parsed {
    fn take(
        &mut self,
        line: usize,
        value: &str,
        duration: Option<&str>,
        reason: Option<&str>,
        fields: Option<(Option<&str>, Option<&str>)>,
        caps: Caps,
    ) {
        let target = match Net::from_str(value.trim()) {
            Ok(n) => n,
            Err(e) => return self.problem(line, e.to_string(), false),
        };
        let (scope, kind) = fields.unwrap_or((None, None));
        if let Some(s) = scope.filter(|s| !s.is_empty()) {
            // Only address scopes reach a firewall; `country`, `as`... are not ours.
            if !s.eq_ignore_ascii_case("ip") && !s.eq_ignore_ascii_case("range") {
                return self.problem(
                    line,
                    format!("scope `{s}` is not supported (only ip and range)"),
                    false,
                );
            }
        }
        let kind = match kind.filter(|k| !k.is_empty()) {
            None => DecisionType::Ban,
            Some(k) => match k.parse() {
                Ok(k) => k,
                Err(e) => return self.problem(line, format!("{e}"), false),
            },
        };
        let duration_s = match duration.map(str::trim).filter(|d| !d.is_empty()) {
            None => None,
            Some(d) => match go_duration(d) {
                Some(s) if s > 0 => Some(s),
                _ => {
                    return self.problem(
                        line,
                        format!("duration `{d}` is not a positive duration like 4h or 3h59m5s"),
                        false,
                    );
                }
            },
        };
        if let Err(e) = check(&target, caps) {
            return self.problem(line, e, true);
        }
        self.entries.push(Entry {
            target,
            kind,
            duration_s,
            reason: reason
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(|r| r.chars().take(200).collect()),
        });
    }
}

/// A Go duration (`4h`, `3h59m59.03s`, `90m`, `500ms`), plus `d` for days,
/// in whole seconds (fractions dropped). `None` when it is not one.
pub fn go_duration(s: &str) -> Option<u64> {
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() || rest.len() > 64 {
        return None;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if n == 0 {
            return None;
        }
        let v: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return None,
        };
        rest = &rest[u..];
        total += v * mult;
    }
    (total.is_finite() && total < 1e11).then_some(total as u64)
}

/// One CSV record split into fields (RFC 4180 quotes; no fields across lines).
fn csv_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            ('"', true) => quoted = false,
            ('"', false) if cur.is_empty() => quoted = true,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn csv(text: &str, caps: Caps) -> Result<Parsed, ParseError> {
    let mut out = Parsed::default();
    let mut it = text.lines().enumerate();
    let header = loop {
        match it.next() {
            Some((_, l)) if l.trim().is_empty() => continue,
            Some((_, l)) => break l,
            None => return Ok(out),
        }
    };
    let cols: Vec<String> = csv_fields(header)
        .into_iter()
        .map(|c| c.trim().to_ascii_lowercase())
        .collect();
    let col = |name: &str| cols.iter().position(|c| c == name);
    let Some(value) = col("value") else {
        return Err(ParseError::CsvHeader(header.chars().take(200).collect()));
    };
    let (duration, reason, scope, kind) =
        (col("duration"), col("reason"), col("scope"), col("type"));
    for (i, line) in it {
        if line.trim().is_empty() {
            continue;
        }
        let f = csv_fields(line);
        let get = |c: Option<usize>| c.and_then(|c| f.get(c)).map(String::as_str);
        let Some(v) = get(Some(value)) else {
            out.problem(i + 1, "the record has no value column", false);
            continue;
        };
        out.take(
            i + 1,
            v,
            get(duration),
            get(reason),
            Some((get(scope), get(kind))),
            caps,
        );
    }
    Ok(out)
}

#[derive(serde::Deserialize)]
struct JsonItem {
    value: Option<serde_json::Value>,
    #[serde(default)]
    duration: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

fn json(text: &str, caps: Caps) -> Result<Parsed, ParseError> {
    let items: Vec<serde_json::Value> =
        serde_json::from_str(text).map_err(|e| ParseError::Json(e.to_string()))?;
    let mut out = Parsed::default();
    for (i, item) in items.into_iter().enumerate() {
        let n = i + 1;
        let it: JsonItem = match serde_json::from_value(item) {
            Ok(it) => it,
            Err(e) => {
                out.problem(n, format!("item is not a decision object: {e}"), false);
                continue;
            }
        };
        let Some(serde_json::Value::String(v)) = &it.value else {
            out.problem(n, "item has no string `value`", false);
            continue;
        };
        out.take(
            n,
            v,
            it.duration.as_deref(),
            it.reason.as_deref(),
            Some((it.scope.as_deref(), it.kind.as_deref())),
            caps,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(p: &Parsed) -> Vec<String> {
        p.entries.iter().map(|e| e.target.to_string()).collect()
    }

    #[test]
    fn line_formats_firehol_spamhaus_ipsum() {
        let firehol = "#\n# firehol_level1\n#\n1.2.3.0/24\n5.6.7.8\n\n::ffff:9.9.9.9\n";
        let p = parse(firehol.as_bytes(), Format::Auto, Caps::default()).unwrap();
        assert_eq!(p.format, Some(Format::Lines));
        assert_eq!(targets(&p), ["1.2.3.0/24", "5.6.7.8/32", "9.9.9.9/32"]);
        let drop = "; Spamhaus DROP List 2026/12/07\n1.10.16.0/20 ; SBL256894\n2.56.192.0/22 ; SBL459831\n";
        let p = parse(drop.as_bytes(), Format::Auto, Caps::default()).unwrap();
        assert_eq!(targets(&p), ["1.10.16.0/20", "2.56.192.0/22"]);
        let ipsum = "# IPsum\n203.0.113.7\t5\r\n198.51.100.1\t3\n";
        let p = parse(ipsum.as_bytes(), Format::Auto, Caps::default()).unwrap();
        assert_eq!(targets(&p), ["203.0.113.7/32", "198.51.100.1/32"]);
        assert_eq!(p.bad + p.refused, 0);
    }

    #[test]
    fn bad_and_reserved_lines_are_counted_with_their_numbers() {
        let text = "203.0.113.7\nnot-an-ip\n127.0.0.1\n64.0.0.0/4\nfe80::1\n0.0.0.0\n::\n198.51.100.0/24\n";
        let p = parse(text.as_bytes(), Format::Lines, Caps::default()).unwrap();
        assert_eq!(targets(&p), ["203.0.113.7/32", "198.51.100.0/24"]);
        assert_eq!((p.bad, p.refused), (1, 5));
        let lines: Vec<usize> = p.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [2, 3, 4, 5, 6, 7]);
        assert!(
            p.problems[1].reason.contains("loopback"),
            "{:?}",
            p.problems
        );
        assert!(
            p.problems[2].reason.contains("wider than /8"),
            "{:?}",
            p.problems
        );
        assert!(p.summary().unwrap().contains("line 2"));
        // A mapped loopback is loopback.
        let p = parse(b"::ffff:127.0.0.1\n", Format::Lines, Caps::default()).unwrap();
        assert_eq!(p.refused, 1);
    }

    #[test]
    fn crowdsec_csv_and_json() {
        let csv = "value,duration,reason,scope,type\n203.0.113.7,4h,ssh-bf,ip,ban\n\"198.51.100.0/24\",3h59m59.5s,\"a, b\",range,captcha\n192.0.2.1,,,,\nbad,4h,x,ip,ban\n192.0.2.2,4h,x,country,ban\n";
        let p = parse(csv.as_bytes(), Format::Auto, Caps::default()).unwrap();
        assert_eq!(p.format, Some(Format::Csv));
        assert_eq!(
            targets(&p),
            ["203.0.113.7/32", "198.51.100.0/24", "192.0.2.1/32"]
        );
        assert_eq!(p.entries[0].duration_s, Some(14400));
        assert_eq!(p.entries[1].duration_s, Some(14399));
        assert_eq!(p.entries[1].kind, DecisionType::Captcha);
        assert_eq!(p.entries[1].reason.as_deref(), Some("a, b"));
        assert_eq!(p.entries[2].duration_s, None);
        assert_eq!(p.bad, 2);
        assert_eq!(p.problems[0].line, 5);
        let json = r#"[{"value":"203.0.113.7","duration":"24h","reason":"r","scope":"Ip","type":"ban"},
            {"value":"2001:db8::/48"}, {"duration":"4h"}, 7, {"value":"203.0.113.8","duration":"-4h"}]"#;
        let p = parse(json.as_bytes(), Format::Auto, Caps::default()).unwrap();
        assert_eq!(p.format, Some(Format::Json));
        assert_eq!(targets(&p), ["203.0.113.7/32", "2001:db8::/48"]);
        assert_eq!(p.entries[0].duration_s, Some(86400));
        assert_eq!(p.bad, 3);
        assert!(parse(b"{}", Format::Json, Caps::default()).is_err());
        assert!(parse(b"a,b\n1,2\n", Format::Csv, Caps::default()).is_err());
        assert!(matches!(
            parse(b"1.2.3.4\n\xff\n", Format::Auto, Caps::default()),
            Err(ParseError::NotText(2))
        ));
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration("4h"), Some(14400));
        assert_eq!(go_duration("1h30m"), Some(5400));
        assert_eq!(go_duration("3h59m59.033548809s"), Some(14399));
        assert_eq!(go_duration("7d"), Some(604800));
        assert_eq!(go_duration("500ms"), Some(0));
        for bad in ["", "h", "4", "4x", "-4h", "1e9h", "4h 2m"] {
            assert_eq!(go_duration(bad), None, "{bad}");
        }
    }
}
