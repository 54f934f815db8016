//! The default scenarios flag exactly the generator's attackers, and no
//! benign address, on sshd and nginx logs (every built-in pack loaded).

use std::collections::BTreeSet;
use std::net::IpAddr;

use shield_core::Net;
use shield_detect::{Engine, EngineOptions, NativeMatcher, default_scenarios, r#gen, pack_names};

fn flagged(lines: &[String]) -> (BTreeSet<Net>, Vec<(String, u64)>) {
    let mut e = Engine::new(
        Box::new(NativeMatcher::all()),
        &default_scenarios(pack_names()),
        EngineOptions::default(),
    )
    .expect("defaults build");
    let mut out = BTreeSet::new();
    for (i, l) in lines.iter().enumerate() {
        let now = r#gen::START + i as i64 / 20;
        e.feed(l, now, &mut |a| {
            out.insert(a.target);
        });
    }
    let per = e
        .stats()
        .scenarios
        .iter()
        .map(|s| (s.name.clone(), s.alerts))
        .collect();
    (out, per)
}

fn check(kind: &str, lines: &[String], truth: &BTreeSet<IpAddr>) {
    let (nets, per) = flagged(lines);
    let missed: Vec<_> = truth
        .iter()
        .filter(|ip| !nets.iter().any(|n| n.contains(*ip)))
        .collect();
    let wrong: Vec<_> = nets
        .iter()
        .filter(|n| !truth.iter().any(|ip| n.contains(ip)))
        .collect();
    assert!(
        missed.is_empty(),
        "{kind}: attackers not flagged: {missed:?}\nper scenario: {per:?}"
    );
    assert!(
        wrong.is_empty(),
        "{kind}: benign addresses flagged: {wrong:?}\nper scenario: {per:?}"
    );
}

#[test]
fn sshd_defaults_flag_exactly_the_attackers() {
    let (lines, truth) = r#gen::sshd(200_000, 30, 7);
    assert_eq!(truth.len(), 30);
    check("sshd", &lines, &truth);
}

#[test]
fn nginx_defaults_flag_exactly_the_attackers() {
    let (lines, truth) = r#gen::nginx(200_000, 40, 11);
    assert_eq!(truth.len(), 40);
    check("nginx", &lines, &truth);
}

#[test]
fn a_log_without_attackers_raises_nothing() {
    let (lines, truth) = r#gen::sshd(100_000, 0, 3);
    assert!(truth.is_empty());
    assert!(flagged(&lines).0.is_empty());
    let (lines, _) = r#gen::nginx(100_000, 0, 3);
    assert!(flagged(&lines).0.is_empty());
}
