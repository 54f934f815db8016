//! Time parsing and formatting with Go layouts (`2006-01-02T15:04:05Z07:00`), for expr's
//! `date()`, `time.Time.Format` and CrowdSec's time helpers. Owns nothing else.

use crate::value::Time;

/// Parse `s` with a Go layout.
pub fn parse_go_layout(s: &str, layout: &str) -> Option<Time> {
    let _ = (s, layout);
    None
}

/// Parse `s` as RFC 3339 (what expr's `date(s)` accepts first).
pub fn parse_any(s: &str) -> Option<Time> {
    let _ = s;
    None
}

/// Format `t` with a Go layout.
pub fn format_go_layout(t: &Time, layout: &str) -> String {
    let _ = layout;
    crate::format::rfc3339_nano(t)
}
