//! fail2ban's two `<tag>` stages: the recursive substitution of option tags
//! (`<mdre-<mode>>`, `<lt_<logtype>/__prefix_line>`, `<known/x>`; helpers.py's
//! `substituteRecursiveTags`) and the regex tags `<HOST>`, `<ADDR>`, `<IP4>`,
//! `<F-USER>…</F-USER>` and friends (failregex.py's `_resolveHostTag`).
//!
//! It produces Python-flavoured regex text; `shield_pyre` turns that into Rust.

use std::collections::HashMap;

/// How often one tag may be replaced inside one value (fail2ban's limit).
const MAX_TAG_REPLACE_COUNT: usize = 25;

fn find_tag(s: &str, from: usize) -> Option<(usize, usize, &str)> {
    // TAG_CRE = <([^ <>]+)>
    let b = s.as_bytes();
    let mut i = from;
    while i < b.len() {
        if b[i] == b'<' {
            let mut j = i + 1;
            while j < b.len() && !matches!(b[j], b' ' | b'<' | b'>') {
                j += 1;
            }
            if j < b.len() && b[j] == b'>' && j > i + 1 {
                return Some((i, j + 1, &s[i + 1..j]));
            }
            i = j.max(i + 1);
            continue;
        }
        i += 1;
    }
    None
}

/// Replaces `<name>` references between the options until nothing changes.
/// Unknown tags (like `<HOST>`) stay for the regex stage. `extra` resolves
/// names that are not options themselves (`lt_file/__prefix_line`, defaults).
pub(crate) fn substitute_recursive(
    tags: &mut [(String, String)],
    extra: &mut dyn FnMut(&str) -> Option<String>,
) -> Result<(), String> {
    let mut done: Vec<bool> = vec![false; tags.len()];
    let mut rep_counts: HashMap<String, HashMap<String, usize>> = HashMap::new();
    loop {
        let mut rep_flag = false;
        for idx in 0..tags.len() {
            if done[idx] {
                continue;
            }
            let tag = tags[idx].0.clone();
            let orig = tags[idx].1.clone();
            let mut value = orig.clone();
            let mut rplc = rep_counts.remove(&tag).unwrap_or_default();
            let mut pos = 0;
            while let Some((s, e, rtag)) = find_tag(&value, pos) {
                let rtag = rtag.to_string();
                if rtag == tag || rplc.get(&rtag).copied().unwrap_or(1) > MAX_TAG_REPLACE_COUNT {
                    return Err(format!(
                        "option `{tag}` refers to itself through `<{rtag}>`; break the cycle"
                    ));
                }
                let repl = tags
                    .iter()
                    .find(|(k, _)| *k == rtag)
                    .map(|(_, v)| v.clone())
                    .or_else(|| extra(&rtag));
                let Some(repl) = repl else {
                    pos = e;
                    continue;
                };
                value = value.replace(&format!("<{rtag}>"), &repl);
                *rplc.entry(rtag).or_insert(0) += 1;
                pos = s;
            }
            if value != orig {
                if find_tag(&value, 0).is_some() {
                    rep_flag = true;
                }
                tags[idx].1 = value.clone();
            }
            rep_counts.insert(tag, rplc);
            if !value.contains('<') {
                done[idx] = true;
            }
        }
        if !rep_flag {
            return Ok(());
        }
    }
}

const IP4: &str = r"(?:\d{1,3}\.){3}\d{1,3}";
// fail2ban ends this with `(?<=:):`; the repetition before it always ends in
// `:`, so a plain `:` is equivalent and keeps the pattern automaton-friendly.
const IP6: &str = r"(?:[0-9a-fA-F]{1,4}::?|::){1,7}(?:[0-9a-fA-F]{1,4}|:)";

fn r_ip4() -> String {
    format!(r"(?:::f{{4,6}}:)?(?P<ip4>{IP4})")
}
fn r_ip6() -> String {
    format!(r"(?P<ip6>{IP6})")
}
const R_DNS: &str = r"(?P<dns>[\w\-.^_]*\w)";
fn r_addr() -> String {
    format!(r"\[?(?:{}|{})\]?", r_ip4(), r_ip6())
}
fn r_host() -> String {
    format!(r"(?:{}|{})", r_addr(), R_DNS)
}

/// What `<HOST>` and `<ADDR>` become, the wider first.
pub(crate) fn host_patterns() -> [String; 2] {
    [r_host(), r_addr()]
}

/// failregex.py's `_resolveHostTag`: `<HOST>` and friends, `<F-X>…</F-X>`
/// groups, `<SKIPLINES>`. `use_dns = false` makes `<HOST>` match addresses only.
pub(crate) fn resolve_regex_tags(regex: &str, use_dns: bool) -> String {
    let mut out = String::with_capacity(regex.len() * 2);
    let mut open: Vec<String> = Vec::new();
    let mut nl = 0;
    let b = regex.as_bytes();
    let mut i = 0;
    let mut last = 0;
    // FTAG_CRE = </?[\w\-]+/?>
    while i < b.len() {
        if b[i] != b'<' {
            i += 1;
            continue;
        }
        let mut j = i + 1;
        if j < b.len() && b[j] == b'/' {
            j += 1;
        }
        let name_start = j;
        while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] == b'-') {
            j += 1;
        }
        if j == name_start {
            i += 1;
            continue;
        }
        if j < b.len() && b[j] == b'/' {
            j += 1;
        }
        if j >= b.len() || b[j] != b'>' {
            i += 1;
            continue;
        }
        let tag = &regex[i..=j];
        let tn = &tag[1..tag.len() - 1];
        let repl: Option<String> = match tn {
            "HOST" => Some(if use_dns { r_host() } else { r_addr() }),
            "SKIPLINES" => {
                let r = format!(r"\n(?P<skiplines{nl}>(?:(?:.*\n)*?))");
                nl += 1;
                Some(r)
            }
            "IP4" | "F-IP4/" => Some(r_ip4()),
            "IP6" | "F-IP6/" => Some(r_ip6()),
            "ADDR" | "F-ADDR/" => Some(r_addr()),
            "CIDR" | "F-CIDR/" => Some(r"(?P<cidr>\d+)".into()),
            "SUBNET" | "F-SUBNET/" => Some(format!(
                r"\[?(?:{}|{})(?:/(?P<cidr>\d+))?\]?",
                r_ip4(),
                r_ip6()
            )),
            "DNS" | "F-DNS/" => Some(R_DNS.into()),
            "F-ID/" => Some(r"(?P<fid>\S+)".into()),
            "F-PORT/" => Some(r"(?P<fport>\w+)".into()),
            _ => {
                // ^(/?)F-([A-Z0-9_\-]+)$
                let (close, rest) = match tn.strip_prefix('/') {
                    Some(r) => (true, r),
                    None => (false, tn),
                };
                match rest.strip_prefix("F-") {
                    Some(n)
                        if !n.is_empty()
                            && n.bytes().all(|c| {
                                c.is_ascii_uppercase()
                                    || c.is_ascii_digit()
                                    || c == b'_'
                                    || c == b'-'
                            }) =>
                    {
                        if close {
                            if open.iter().any(|o| o == n) {
                                Some(")".into())
                            } else {
                                None
                            }
                        } else {
                            open.push(n.to_string());
                            Some(format!("(?P<{}>", map_tag_to_opt(n)))
                        }
                    }
                    _ => None,
                }
            }
        };
        if let Some(r) = repl {
            out.push_str(&regex[last..i]);
            out.push_str(&r);
            last = j + 1;
        }
        i = j + 1;
    }
    out.push_str(&regex[last..]);
    out
}

/// `F-ID` → `fid`, `F-PORT` → `fport`, others lower-cased.
pub(crate) fn map_tag_to_opt(n: &str) -> String {
    let l = n.to_lowercase();
    match l.as_str() {
        "id" => "fid".into(),
        "port" => "fport".into(),
        _ => l,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_tags_resolve() {
        let mut t = vec![
            ("mode".to_string(), "normal".to_string()),
            ("failregex".to_string(), "<mdre-<mode>> <HOST>".to_string()),
            ("mdre-normal".to_string(), "N".to_string()),
        ];
        substitute_recursive(&mut t, &mut |_| None).unwrap();
        assert_eq!(t[1].1, "N <HOST>");
    }

    #[test]
    fn self_reference_fails() {
        let mut t = vec![("a".to_string(), "x<a>".to_string())];
        assert!(substitute_recursive(&mut t, &mut |_| None).is_err());
    }

    #[test]
    fn regex_tags() {
        let r = resolve_regex_tags(
            "user <F-USER>\\S+</F-USER> from <HOST> <F-NOFAIL>x</F-NOFAIL> </F-X>",
            false,
        );
        assert!(r.starts_with("user (?P<user>\\S+) from \\[?(?:"), "{r}");
        assert!(r.contains("(?P<nofail>x)"));
        assert!(r.ends_with(" </F-X>"), "unopened closing tag stays: {r}");
    }
}
