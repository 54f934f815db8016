//! Scenario and engine tests: every clock is the lines' own stamps.

use super::*;
use crate::rules::NativeMatcher;

const T0: UnixTime = 1_709_251_200; // 2024-03-01T00:00:00Z

fn fail(t: UnixTime, ip: &str, user: &str) -> String {
    format!(
        "{} web sshd[7]: Failed password for {user} from {ip} port 22 ssh2",
        to_rfc3339(t)
    )
}

fn scen(kind: BucketKind, capacity: u32, leak: u64) -> ScenarioSpec {
    ScenarioSpec {
        name: "t".into(),
        rules: vec!["sshd-failed-*".into()],
        kind,
        capacity,
        leak: Duration::from_secs(leak),
        distinct: None,
        quiet: Duration::ZERO,
        decision: DecisionType::Ban,
        scope: Scope::Ip,
        duration: Duration::from_secs(3600),
        v6_prefix: None,
        ignore: Vec::new(),
    }
}

fn engine(specs: &[ScenarioSpec], opts: EngineOptions) -> Engine {
    Engine::new(
        Box::new(NativeMatcher::new(&["sshd"], &[]).unwrap()),
        specs,
        opts,
    )
    .unwrap()
}

/// Feeds lines, returns the alerts.
fn run(e: &mut Engine, lines: &[String]) -> Vec<Alert> {
    let mut out = Vec::new();
    for l in lines {
        e.feed(l, T0, &mut |a| out.push(a));
    }
    out
}

#[test]
fn leaky_fires_on_the_event_past_capacity() {
    let mut e = engine(&[scen(BucketKind::Leaky, 3, 10)], EngineOptions::default());
    let lines: Vec<_> = (0..4)
        .map(|i| fail(T0 + i, "198.51.100.1", "root"))
        .collect();
    let a = run(&mut e, &lines[..3]);
    assert!(a.is_empty(), "capacity 3 holds 3 events");
    let a = run(&mut e, &lines[3..]);
    assert_eq!(a.len(), 1);
    let a = &a[0];
    assert_eq!(a.target.to_string(), "198.51.100.1/32");
    assert_eq!((a.time, a.first_seen, a.events), (T0 + 3, T0, 4));
    assert_eq!(a.duration_s, 3600);
    assert_eq!(e.stats().scenarios[0].alerts, 1);
}

#[test]
fn leaky_leaks_slow_events_away() {
    let mut e = engine(&[scen(BucketKind::Leaky, 3, 10)], EngineOptions::default());
    // One event every 10 s leaks as fast as it fills: never more than 1.
    let lines: Vec<_> = (0..100)
        .map(|i| fail(T0 + i * 10, "198.51.100.2", "root"))
        .collect();
    assert!(run(&mut e, &lines).is_empty());
    // Every 4 s: the level climbs by 0.6 per event and overflows eventually.
    let lines: Vec<_> = (0..100)
        .map(|i| fail(T0 + 2000 + i * 4, "198.51.100.2", "root"))
        .collect();
    assert!(!run(&mut e, &lines).is_empty());
}

#[test]
fn window_counts_events_within_findtime() {
    let mut e = engine(
        &[scen(BucketKind::Window, 5, 600)],
        EngineOptions::default(),
    );
    // 5 events 149 s apart: 596 s from first to fifth -> fires on the fifth.
    let lines: Vec<_> = (0..5)
        .map(|i| fail(T0 + i * 149, "198.51.100.3", "root"))
        .collect();
    let a = run(&mut e, &lines);
    assert_eq!(a.len(), 1);
    assert_eq!((a[0].first_seen, a[0].time, a[0].events), (T0, T0 + 596, 5));
    // 151 s apart: 604 s, never 5 in 600 s.
    let lines: Vec<_> = (0..50)
        .map(|i| fail(T0 + 10_000 + i * 151, "198.51.100.4", "root"))
        .collect();
    assert!(run(&mut e, &lines).is_empty());
}

#[test]
fn distinct_counts_only_new_values() {
    let mut s = scen(BucketKind::Leaky, 3, 60);
    s.distinct = Some("user".into());
    let mut e = engine(&[s], EngineOptions::default());
    let same: Vec<_> = (0..20)
        .map(|i| fail(T0 + i, "198.51.100.5", "root"))
        .collect();
    assert!(run(&mut e, &same).is_empty(), "one user is one value");
    let users: Vec<_> = (0..4)
        .map(|i| fail(T0 + 30 + i, "198.51.100.5", &format!("u{i}")))
        .collect();
    let a = run(&mut e, &users);
    assert_eq!(a.len(), 1, "root + u0..u2 fill, u3 overflows");
}

#[test]
fn quiet_period_ignores_the_key_after_firing() {
    let mut s = scen(BucketKind::Leaky, 1, 60);
    s.quiet = Duration::from_secs(100);
    let mut e = engine(&[s], EngineOptions::default());
    let burst = |t0: UnixTime| -> Vec<String> {
        (0..10)
            .map(|i| fail(t0 + i, "198.51.100.6", "root"))
            .collect()
    };
    assert_eq!(run(&mut e, &burst(T0)).len(), 1, "fires once, then quiet");
    assert_eq!(run(&mut e, &burst(T0 + 50)).len(), 0, "still quiet");
    assert_eq!(run(&mut e, &burst(T0 + 200)).len(), 1, "quiet is over");
}

#[test]
fn coldest_key_is_evicted_and_counted() {
    let opts = EngineOptions {
        max_keys: 2,
        ..EngineOptions::default()
    };
    let mut e = engine(&[scen(BucketKind::Leaky, 2, 1000)], opts);
    // a and b fill the table; a is touched again, so b is the coldest when c comes.
    run(
        &mut e,
        &[
            fail(T0, "192.0.2.1", "x"),
            fail(T0 + 1, "192.0.2.2", "x"),
            fail(T0 + 2, "192.0.2.1", "x"),
        ],
    );
    run(&mut e, &[fail(T0 + 3, "192.0.2.3", "x")]);
    assert_eq!((e.stats().keys_tracked, e.stats().keys_evicted), (2, 1));
    // a kept its two events: a third overflows it. b starts over.
    let a = run(&mut e, &[fail(T0 + 4, "192.0.2.1", "x")]);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].target.to_string(), "192.0.2.1/32");
    let a = run(
        &mut e,
        &[
            fail(T0 + 5, "192.0.2.2", "x"),
            fail(T0 + 6, "192.0.2.2", "x"),
        ],
    );
    assert!(a.is_empty(), "b was evicted and counts from zero");
    assert_eq!(e.stats().keys_evicted, 2, "b came back by evicting c");
}

#[test]
fn v6_grouped_by_prefix_and_range_scope_widens() {
    let mut s = scen(BucketKind::Leaky, 2, 1000);
    s.scope = Scope::Range;
    let mut e = engine(&[s.clone()], EngineOptions::default());
    let lines: Vec<_> = (0..3)
        .map(|i| fail(T0 + i, &format!("2001:db8:1:2::{i}"), "x"))
        .collect();
    let a = run(&mut e, &lines);
    assert_eq!(a.len(), 1, "one /64 is one key");
    assert_eq!(a[0].target.to_string(), "2001:db8:1:2::/64");
    let a = run(
        &mut e,
        &(0..3)
            .map(|i| fail(T0 + i, "203.0.113.77", "x"))
            .collect::<Vec<_>>(),
    );
    assert_eq!(a[0].target.to_string(), "203.0.113.0/24");
    // A /128 grouping keeps addresses apart.
    s.v6_prefix = Some(128);
    s.scope = Scope::Ip;
    let mut e = engine(&[s], EngineOptions::default());
    assert!(run(&mut e, &lines).is_empty());
}

#[test]
fn evidence_is_the_last_lines_truncated() {
    let opts = EngineOptions {
        evidence_lines: 2,
        ..EngineOptions::default()
    };
    let mut e = engine(&[scen(BucketKind::Leaky, 3, 1000)], opts);
    let long_user = "é".repeat(300);
    let lines = vec![
        fail(T0, "198.51.100.8", "a"),
        fail(T0 + 1, "198.51.100.8", "b"),
        fail(T0 + 2, "198.51.100.8", "c"),
        fail(T0 + 3, "198.51.100.8", &long_user),
    ];
    let a = run(&mut e, &lines);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].evidence.len(), 2);
    assert_eq!(a[0].evidence[0], lines[2]);
    assert!(a[0].evidence[1].len() <= 256 && lines[3].starts_with(&a[0].evidence[1]));
}

#[test]
fn repeated_message_counts_its_events() {
    let mut e = engine(&[scen(BucketKind::Leaky, 5, 60)], EngineOptions::default());
    let l = format!(
        "{} h sshd[1]: message repeated 6 times: [ Failed password for root from 198.51.100.9 port 22 ssh2]",
        to_rfc3339(T0)
    );
    let a = run(&mut e, &[l]);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].events, 6);
}

#[test]
fn scenario_errors_name_the_scenario() {
    let mut s = scen(BucketKind::Leaky, 3, 10);
    s.rules = vec!["sshd-nope".into()];
    let m = || Box::new(NativeMatcher::new(&["sshd"], &[]).unwrap());
    let e = Engine::new(m(), &[s.clone()], EngineOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("scenario `t`") && e.contains("`sshd-nope`") && e.contains("sshd-invalid-user"),
        "{e}"
    );
    s.rules = vec!["sshd-*".into()];
    s.leak = Duration::ZERO;
    let e = Engine::new(m(), &[s.clone()], EngineOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("`leak`"), "{e}");
    s.leak = Duration::from_secs(1);
    s.kind = BucketKind::Window;
    s.capacity = 0;
    let e = Engine::new(m(), &[s.clone()], EngineOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("capacity"), "{e}");
    s.capacity = 2;
    let e = Engine::new(m(), &[s.clone(), s], EngineOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("twice"), "{e}");
}

#[test]
fn defaults_resolve_for_every_pack_alone_and_together() {
    for p in crate::pack_names() {
        let m = NativeMatcher::new(&[p], &[]).unwrap();
        Engine::new(
            Box::new(m),
            &default_scenarios(&[p]),
            EngineOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{p}: {e}"));
    }
    let all = default_scenarios(crate::pack_names());
    Engine::new(
        Box::new(NativeMatcher::all()),
        &all,
        EngineOptions::default(),
    )
    .unwrap();
}

#[test]
fn config_round_trip() {
    let toml_text = r#"
        name = "ssh-fast"
        rules = ["sshd-*"]
        kind = "window"
        capacity = 5
        leak = "10m"
        distinct = "user"
        quiet = "1m 30s"
        decision = "captcha"
        scope = "range"
        duration = "4h"
        v6_prefix = 56
    "#;
    let s: ScenarioSpec = toml::from_str(toml_text).unwrap();
    assert_eq!(s.kind, BucketKind::Window);
    assert_eq!(
        (s.leak.as_secs(), s.quiet.as_secs(), s.duration.as_secs()),
        (600, 90, 14_400)
    );
    assert_eq!(
        (s.decision, s.scope, s.v6_prefix),
        (DecisionType::Captcha, Scope::Range, Some(56))
    );
    let back: ScenarioSpec = toml::from_str(&toml::to_string(&s).unwrap()).unwrap();
    assert_eq!(back, s);
    let min: ScenarioSpec =
        toml::from_str("name='a'\nrules=['x']\ncapacity=1\nleak='1s'\nduration='1h'").unwrap();
    assert_eq!(
        (min.kind, min.decision, min.scope, min.quiet),
        (
            BucketKind::Leaky,
            DecisionType::Ban,
            Scope::Ip,
            Duration::ZERO
        )
    );
    let err = toml::from_str::<ScenarioSpec>(
        "name='a'\nrules=['x']\ncapacity=1\nleak='1s'\nduration='1h'\nfoo=1",
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("foo"), "{err}");
    let r: crate::RuleSpec = toml::from_str("name='a'\nservice='b'\nregex='(?P<host>x)'").unwrap();
    assert_eq!(r.service, "b");
    assert!(toml::from_str::<crate::RuleSpec>("name='a'\nservice='b'\nregex='x'\nbar=1").is_err());
}

#[test]
fn explain_and_stats() {
    let mut e = Engine::new(
        Box::new(NativeMatcher::all()),
        &default_scenarios(crate::pack_names()),
        EngineOptions::default(),
    )
    .unwrap();
    let x = e.explain(&fail(T0, "198.51.100.10", "root"), T0);
    assert!(x.matched);
    assert_eq!(x.rule.as_deref(), Some("sshd-failed-password"));
    assert_eq!(x.host.as_deref(), Some("198.51.100.10"));
    assert_eq!(x.time.as_deref(), Some("2024-03-01T00:00:00Z"));
    assert_eq!(x.fields.get("user").map(String::as_str), Some("root"));
    let j = serde_json::to_value(&x).unwrap();
    assert_eq!(j["rule"], "sshd-failed-password");
    let x = e.explain("Mar  1 00:00:09 h CRON[1]: hello", T0);
    assert!(!x.matched && x.rule.is_none() && x.host.is_none());
    assert_eq!(x.time.as_deref(), Some("2024-03-01T00:00:09Z"));
    assert_eq!(e.stats().lines, 0, "explain touches no counter");

    let mut alerts = 0;
    let t = e.feed("Mar  1 00:00:09 h CRON[1]: hello", T0, &mut |_| alerts += 1);
    assert_eq!(t, Some(T0 + 9), "an unmatched line still gives its time");
    assert_eq!(e.feed("no stamp here", T0, &mut |_| alerts += 1), None);
    e.feed(&fail(T0, "198.51.100.10", "root"), T0, &mut |_| alerts += 1);
    e.feed(
        "Mar  1 00:00:09 h sshd[1]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=198.51.100.10",
        T0,
        &mut |_| alerts += 1,
    );
    let s = e.stats();
    assert_eq!((s.lines, s.matched, s.nofail), (4, 2, 1));
    let hits = |n: &str| s.rules.iter().find(|r| r.name == n).unwrap().hits;
    assert_eq!(
        (hits("sshd-failed-password"), hits("sshd-pam-auth-failure")),
        (1, 1)
    );
    assert_eq!(
        s.keys_tracked, 1,
        "one first hit stands for the bruteforce and slow-bruteforce buckets"
    );
    assert!(
        serde_json::to_string(s)
            .unwrap()
            .contains("\"keys_evicted\":0")
    );
}

#[test]
fn engine_can_move_to_a_worker_thread() {
    fn send<T: Send>() {}
    send::<Engine>();
    send::<NativeMatcher>();
}

/// Default scenarios, one address's lines as (second, pid, message).
fn defaults_on(lines: &[(i64, u32, &str)]) -> Vec<Alert> {
    let mut e = Engine::new(
        Box::new(NativeMatcher::new(&["sshd"], &[]).unwrap()),
        &default_scenarios(&["sshd"]),
        EngineOptions::default(),
    )
    .unwrap();
    let lines: Vec<String> = lines
        .iter()
        .map(|(s, pid, m)| format!("{} web sshd[{pid}]: {m}", to_rfc3339(T0 + s)))
        .collect();
    run(&mut e, &lines)
}

#[test]
fn paced_guessing_is_banned_by_the_default_window() {
    // loghub OpenSSH_2k, 123.235.32.19: 2 quick passwords, a 90 s pause, 5 more.
    let f = "Failed password for root from 198.51.100.70 port 40652 ssh2";
    let at = [0, 3, 94, 98, 103, 109, 117];
    let lines: Vec<_> = at.iter().zip(1..).map(|(&t, pid)| (t, pid, f)).collect();
    let a = defaults_on(&lines);
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0].scenario, "sshd-bruteforce");
    assert_eq!(a[0].time, T0 + 103, "the 5th attempt within 10 minutes");
}

#[test]
fn a_connection_counts_its_attempts_not_its_lines() {
    // Two connections, each `Invalid user` + one password + a disconnect
    // summary: 2 attempts, not 6 events.
    let conn = |pid| {
        [
            (0, pid, "Invalid user support from 198.51.100.71"),
            (
                1,
                pid,
                "Failed password for invalid user support from 198.51.100.71 port 5 ssh2",
            ),
            (
                2,
                pid,
                "error: Received disconnect from 198.51.100.71: 3: com.jcraft.jsch.JSchException: Auth fail [preauth]",
            ),
            (
                2,
                pid,
                "Disconnected from invalid user support 198.51.100.71 port 5 [preauth]",
            ),
        ]
    };
    let two: Vec<_> = conn(1).into_iter().chain(conn(2)).collect();
    assert!(defaults_on(&two).is_empty());
    // Five such connections are five attempts.
    let five: Vec<_> = (1..=5).flat_map(conn).collect();
    assert_eq!(defaults_on(&five).len(), 1);
    // One connection with 5 passwords (a `message repeated 4 times`) is 5.
    let one = [
        (
            0,
            9,
            "Failed password for root from 198.51.100.72 port 5 ssh2",
        ),
        (
            30,
            9,
            "message repeated 4 times: [ Failed password for root from 198.51.100.72 port 5 ssh2]",
        ),
    ];
    assert_eq!(defaults_on(&one).len(), 1);
}

#[test]
fn authenticating_user_disconnects_are_failures_bare_closes_are_not() {
    // CrowdSec hub `sshd-invalid-bf`: one per connection.
    let d = "Disconnected from authenticating user root 198.51.100.73 port 59402 [preauth]";
    let lines: Vec<_> = (0..5).map(|i| (i, 100 + i as u32, d)).collect();
    assert_eq!(defaults_on(&lines).len(), 1);
    let c = "Connection closed by 198.51.100.74 port 59402 [preauth]";
    let lines: Vec<_> = (0..10).map(|i| (i * 10, 200 + i as u32, c)).collect();
    assert!(defaults_on(&lines).is_empty(), "a health check every 10 s");
}

#[test]
fn single_hits_are_evicted_oldest_first_before_any_bucket() {
    let opts = EngineOptions {
        max_keys: 3,
        ..EngineOptions::default()
    };
    let mut e = engine(&[scen(BucketKind::Leaky, 2, 1000)], opts);
    // a has two hits (a bucket) and is the least recently used key;
    // b and c have one hit each.
    run(
        &mut e,
        &[
            fail(T0, "192.0.2.1", "x"),
            fail(T0 + 1, "192.0.2.1", "x"),
            fail(T0 + 2, "192.0.2.2", "x"),
            fail(T0 + 3, "192.0.2.3", "x"),
        ],
    );
    assert_eq!((e.stats().keys_tracked, e.stats().keys_evicted), (3, 0));
    // d evicts b, the oldest single hit, not a.
    run(&mut e, &[fail(T0 + 4, "192.0.2.4", "x")]);
    assert_eq!((e.stats().keys_tracked, e.stats().keys_evicted), (3, 1));
    let a = run(&mut e, &[fail(T0 + 5, "192.0.2.1", "x")]);
    assert_eq!(a.len(), 1, "a kept its two hits: the third overflows");
    // c kept its hit (two more overflow it); b starts over (two more do not).
    let a = run(
        &mut e,
        &[
            fail(T0 + 6, "192.0.2.3", "x"),
            fail(T0 + 7, "192.0.2.3", "x"),
        ],
    );
    assert_eq!(a.len(), 1, "c kept its first hit");
    let a = run(
        &mut e,
        &[
            fail(T0 + 8, "192.0.2.2", "x"),
            fail(T0 + 9, "192.0.2.2", "x"),
        ],
    );
    assert!(a.is_empty(), "b was evicted and counts from zero");
}

#[test]
fn first_hit_replayed_into_buckets_counts_as_before() {
    // Two scenarios on one rule, one with a distinct field: the first hit is
    // kept compact, then replayed; the counts are those of buckets that
    // existed all along (window fires at the 3rd, distinct users at the 3rd).
    let mut w = scen(BucketKind::Window, 3, 600);
    w.name = "w".into();
    let mut d = scen(BucketKind::Leaky, 2, 1000);
    d.name = "d".into();
    d.distinct = Some("user".into());
    let mut e = engine(&[w, d], EngineOptions::default());
    let a = run(&mut e, &[fail(T0, "198.51.100.20", "u1")]);
    assert!(a.is_empty());
    assert_eq!(
        e.stats().keys_tracked,
        1,
        "one first hit for both scenarios"
    );
    let a = run(
        &mut e,
        &[
            fail(T0 + 1, "198.51.100.20", "u1"),
            fail(T0 + 2, "198.51.100.20", "u2"),
        ],
    );
    assert_eq!(e.stats().keys_tracked, 2, "now one bucket per scenario");
    let names: Vec<&str> = a.iter().map(|a| a.scenario.as_str()).collect();
    assert_eq!(
        names,
        ["w"],
        "window: 3 hits; distinct: only 2 users so far"
    );
    assert_eq!(
        a[0].first_seen, T0,
        "the replayed first hit opened the window"
    );
    assert_eq!(a[0].evidence.len(), 3, "its line is evidence too");
    assert!(a[0].evidence[0].contains("for u1 from"));
    let a = run(&mut e, &[fail(T0 + 3, "198.51.100.20", "u3")]);
    let names: Vec<&str> = a.iter().map(|a| a.scenario.as_str()).collect();
    assert_eq!(names, ["d"], "the third distinct user overflows capacity 2");
}

/// One slow attacker (sshd-slow-bruteforce: 15 failures within an hour, one
/// every 4 minutes) among 20,000 addresses that fail once each, with room for
/// 2,000 keys: the flood's single hits are evicted first, so the attacker's
/// buckets survive. (Evicting the least recently used bucket, as before,
/// loses them: some 1,300 flood addresses, 2 buckets each, come between two
/// of its attempts.)
#[test]
fn slow_attacker_survives_a_flood_of_single_hits() {
    let mut e = Engine::new(
        Box::new(NativeMatcher::new(&["sshd"], &[]).unwrap()),
        &default_scenarios(&["sshd"]),
        EngineOptions {
            max_keys: 2_000,
            ..EngineOptions::default()
        },
    )
    .unwrap();
    let n = 20_000u32;
    let mut alerts = Vec::new();
    let mut next_attack = 0u32;
    for i in 0..n {
        let t = T0 + i64::from(i) * 3600 / i64::from(n);
        if next_attack < 15 && t >= T0 + i64::from(next_attack) * 240 {
            let l = format!(
                "{} web sshd[{}]: Failed password for root from 203.0.113.9 port 22 ssh2",
                to_rfc3339(t),
                50_000 + next_attack
            );
            e.feed(&l, t, &mut |a| alerts.push(a));
            next_attack += 1;
        }
        let b = (0x0B00_0000 + i).to_be_bytes();
        let l = format!(
            "{} web sshd[{}]: Failed password for root from {}.{}.{}.{} port 22 ssh2",
            to_rfc3339(t),
            100_000 + i,
            b[0],
            b[1],
            b[2],
            b[3]
        );
        e.feed(&l, t, &mut |a| alerts.push(a));
    }
    assert_eq!(next_attack, 15);
    let got: Vec<(&str, String)> = alerts
        .iter()
        .map(|a| (a.scenario.as_str(), a.target.to_string()))
        .collect();
    assert_eq!(
        got,
        [("sshd-slow-bruteforce", "203.0.113.9/32".to_string())]
    );
    assert!(
        e.stats().keys_evicted >= u64::from(n) - 2_000,
        "the flood filled the table: {} evicted",
        e.stats().keys_evicted
    );
}
