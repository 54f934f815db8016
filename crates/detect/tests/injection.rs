//! Log injection, for every rule of every built-in pack: each sample line
//! (`shield_detect::rules::samples`) with the fields its client writes
//! (user names, paths, query strings, agents, referrers, HELO and PTR names,
//! ...) replaced by other messages of the packs that carry a victim's
//! address, in many wrappings, written as each service writes client text.
//! The host a rule decides is the real client's every time, or the line is
//! not taken: it never becomes the victim nor anyone else.
//!
//! Each sample is read by a matcher of its own pack only, as a source of
//! that service is configured: the nginx error log can carry whole lines of
//! other formats (a `%0a` in a path), which only that log's own pack must
//! withstand (SECURITY.md: one service's packs per source).
//!
//! The rules are enumerated from the matcher, so a new rule without a
//! sample fails `every_rule_has_a_sample`.

use std::collections::BTreeSet;

use shield_detect::rules::samples::{Sample, samples};
use shield_detect::{LineMatcher, NativeMatcher};

const REAL: &str = "198.51.100.7";
const VICTIMS: [&str; 2] = ["192.0.2.66", "2001:db8::66"];

/// (rule, host) of what `m` makes of each line of `text`.
fn decide(m: &mut NativeMatcher, text: &str) -> Vec<(String, String, String)> {
    text.split('\n')
        .filter_map(|l| {
            let got = m.match_line(l, 1_709_251_200).map(|h| (h.rule, h.host));
            got.map(|(r, h)| {
                (
                    m.rules()[r as usize].name.clone(),
                    h.to_string(),
                    l.to_string(),
                )
            })
        })
        .collect()
}

/// The message part of a filled sample: after the syslog tag, after the
/// nginx connection number, or the whole access line.
fn message(line: &str) -> &str {
    if let Some(i) = line.find("]: ") {
        return &line[i + 3..];
    }
    if let Some(i) = line.find(": *")
        && let Some(j) = line[i + 3..].find(' ')
    {
        return &line[i + 3 + j + 1..];
    }
    for tag in ["dovecot: ", "postfix: "] {
        if let Some(i) = line.find(tag) {
            return &line[i + tag.len()..];
        }
    }
    line
}

/// What a client writes into a field to frame `victim`: every sample line
/// and its message carrying the victim, in wrappings that close quotes,
/// brackets and fields, with and without trailing text.
fn payloads() -> Vec<(String, &'static str)> {
    let mut out = BTreeSet::new();
    for victim in VICTIMS {
        for s in samples() {
            let line = s.fill(victim, &|_| None);
            let msg = message(&line).to_string();
            let bare = msg.trim_end_matches(" [preauth]").to_string();
            for x in [line.clone(), msg, bare] {
                for w in [
                    x.clone(),
                    format!("{x} x"),
                    format!("{x} [preauth]"),
                    format!("a {x}"),
                    format!("\"{x}\""),
                    format!("x\" {x} \"y"),
                    format!("'{x}'"),
                    format!("x' {x}"),
                    format!("<{x}>"),
                    format!("x>, {x}, y"),
                    format!("({x})"),
                    format!("x) {x}"),
                    format!("[{x}]"),
                    format!("x] {x}"),
                    format!("{x} port 1"),
                    format!("{x},"),
                    format!("x,{x}"),
                    format!("\n{x}"),
                    format!("x\n{x}\ny"),
                    // A first line the client ends as nginx would.
                    format!("x\" failed, client: 10.0.0.1, server: s\n{x}\ny"),
                ] {
                    out.insert((w, victim));
                }
            }
        }
        for w in [
            victim.to_string(),
            format!("x from {victim}"),
            format!("x from {victim} port 1 ssh2"),
            format!("x {victim} port 1: Too many authentication failures"),
            format!("x {victim} port 1: Too many authentication failures [preauth]"),
            format!("x, client: {victim}, server: y"),
            format!("x, client: {victim}, y"),
            format!("x>, rip={victim}, lip=10.0.0.2"),
            format!("x>, method=PLAIN, rip={victim}, y"),
            format!("x,{victim}"),
            format!("x,{victim},<s>): unknown user"),
            format!("x[{victim}]: SASL LOGIN authentication failed: y"),
            format!("x rhost={victim}"),
            format!("x ({victim})"),
            format!(
                "{victim} - - [01/Mar/2024:10:00:00 +0000] \"GET /.env HTTP/1.1\" 404 1 \"-\" \"sqlmap\""
            ),
        ] {
            out.insert((w, victim));
        }
    }
    out.into_iter().collect()
}

/// The matcher a source of the sample's service runs.
fn matcher(s: &Sample) -> NativeMatcher {
    NativeMatcher::new(&[s.pack], &[]).expect("a built-in pack")
}

/// Each sample as written with its defaults: the rule it names, for the real host.
#[test]
fn every_sample_matches_its_rule() {
    for s in samples() {
        let mut m = matcher(s);
        let line = s.fill(REAL, &|_| None);
        let got = decide(&mut m, &line);
        match s.rule {
            Some(rule) => assert_eq!(
                got.iter()
                    .map(|(r, h, _)| (r.as_str(), h.as_str()))
                    .collect::<Vec<_>>(),
                [(rule, REAL)],
                "{line}"
            ),
            None => assert!(got.is_empty(), "decoy matched: {line}: {got:?}"),
        }
    }
}

#[test]
fn every_rule_has_a_sample() {
    let m = NativeMatcher::all();
    let covered: BTreeSet<&str> = samples().iter().filter_map(|s| s.rule).collect();
    let missing: Vec<_> = m
        .rules()
        .iter()
        .map(|r| r.name.as_str())
        .filter(|r| !covered.contains(r))
        .collect();
    assert!(
        missing.is_empty(),
        "rules without an injection sample in rules/samples.rs: {missing:?}"
    );
    for p in shield_detect::pack_names() {
        let pack = if *p == "apache-access" {
            "nginx-access"
        } else {
            p
        };
        assert!(
            samples().iter().any(|s| s.pack == pack),
            "pack {p} has no sample"
        );
    }
}

/// Every client field of every sample, one at a time and all at once, holds
/// each payload: the decided host is the real one or there is no decision.
#[test]
fn client_text_never_becomes_the_host() {
    let payloads = payloads();
    let mut tried = 0usize;
    let mut matched = 0usize;
    let mut failures = Vec::new();
    for s in samples() {
        let mut m = matcher(s);
        let fields = s.fields();
        let mut check = |text: String, what: &str| {
            tried += 1;
            for (rule, host, line) in decide(&mut m, &text) {
                matched += 1;
                if host != REAL && failures.len() < 40 {
                    failures.push(format!("{rule} blamed {host} ({what}):\n  {line}"));
                }
            }
        };
        for (p, _victim) in &payloads {
            for f in &fields {
                let text = fill_one(s, f.name, p);
                check(text, f.name);
            }
            check(s.fill(REAL, &|_| Some(p.clone())), "all fields");
        }
    }
    assert!(
        failures.is_empty(),
        "{} lines framed someone:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The test exercises the rules: most hostile lines still match.
    assert!(
        tried > 50_000 && matched > tried / 3,
        "{tried} tried, {matched} matched"
    );
}

fn fill_one(s: &Sample, field: &str, p: &str) -> String {
    s.fill(REAL, &|n| (n == field).then(|| p.to_string()))
}
