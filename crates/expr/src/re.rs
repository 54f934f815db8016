//! Go's regexp (RE2) semantics on Rust's `regex`: Go's `\d \w \s \b` are ASCII-only where
//! Rust's are Unicode, so a pattern is rewritten to the ASCII classes before it is compiled.
//! Everything else in the syntax the hub uses (`(?i)`, `(?P<n>..)`, `[[:alpha:]]`, `\pL`,
//! anchors) means the same in both. Owns only this translation.

use regex::Regex;

/// Compile `pattern` with Go's meaning of the Perl classes (`\d` is `[0-9]`, not any
/// Unicode digit). Used for `matches`; the CrowdSec engine may use it for its own patterns.
pub fn go_regex(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(&go_to_rust(pattern))
}

/// The rewrite behind [`go_regex`].
pub fn go_to_rust(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut chars = pattern.chars().peekable();
    // Depth of `[...]` classes (nested `[[:alpha:]]` counts too).
    let mut in_class = 0usize;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(e) = chars.next() else {
                    out.push('\\');
                    break;
                };
                let inside = in_class > 0;
                let rep = match (e, inside) {
                    ('d', false) => Some("[0-9]"),
                    ('D', false) => Some("[^0-9]"),
                    ('w', false) => Some("[0-9A-Za-z_]"),
                    ('W', false) => Some("[^0-9A-Za-z_]"),
                    ('s', false) => Some("[\\t\\n\\f\\r ]"),
                    ('S', false) => Some("[^\\t\\n\\f\\r ]"),
                    ('b', false) => Some("(?-u:\\b)"),
                    ('B', false) => Some("(?-u:\\B)"),
                    ('d', true) => Some("0-9"),
                    ('w', true) => Some("0-9A-Za-z_"),
                    ('s', true) => Some("\\t\\n\\f\\r "),
                    _ => None,
                };
                match rep {
                    Some(r) => out.push_str(r),
                    None => {
                        out.push('\\');
                        out.push(e);
                    }
                }
            }
            '[' => {
                if in_class > 0 && chars.peek() == Some(&':') {
                    // `[:alpha:]` inside a class: copy through to its closing `:]`.
                    out.push('[');
                    for d in chars.by_ref() {
                        out.push(d);
                        if d == ']' {
                            break;
                        }
                    }
                    continue;
                }
                in_class += 1;
                out.push('[');
                if chars.peek() == Some(&'^') {
                    out.push('^');
                    chars.next();
                }
                // A `]` right after `[` or `[^` is a literal.
                if chars.peek() == Some(&']') {
                    out.push_str("\\]");
                    chars.next();
                }
                continue;
            }
            ']' if in_class > 0 => {
                in_class -= 1;
                out.push(']');
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perl_classes_are_ascii_like_go() {
        let re = go_regex(r"^\d+$").unwrap();
        assert!(re.is_match("123"));
        assert!(!re.is_match("١٢٣"), "Arabic-Indic digits are not \\d in Go");
        assert!(go_regex(r"^[\w.-]+$").unwrap().is_match("a.b-c_1"));
        assert!(!go_regex(r"^\w+$").unwrap().is_match("é"));
        assert!(go_regex(r"\bphp\b").unwrap().is_match("x php y"));
        assert!(go_regex(r"^[[:alpha:]\d]+$").unwrap().is_match("ab12"));
        assert!(go_regex(r"^[]a]+$").unwrap().is_match("]a"));
        assert!(go_regex(r"(?i)^SELECT\s").unwrap().is_match("select *"));
        assert_eq!(go_to_rust(r"\.\(\\d\)"), r"\.\(\\d\)");
    }
}
