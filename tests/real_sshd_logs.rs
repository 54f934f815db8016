//! `shield replay` with its built-in defaults on real sshd logs (loghub
//! OpenSSH and Linux, Elastic's Ubuntu auth.log, read from
//! /work/shared/data/real at run time) bans every address that made at least
//! 5 failed attempts within some 10 minutes (fail2ban's default jail) and no
//! address that made fewer than 3 attempts in all.
//!
//! The attempts are counted here by a parser of its own, not by Shield's
//! rules: a connection (one sshd process id) makes as many attempts as it has
//! `Failed <method>` lines (`message repeated N times: [ Failed ...]` = N;
//! `publickey` is a client trying its keys, not counted) and at least one when
//! it shows any failure (`Invalid user`, `maximum authentication attempts
//! exceeded`); RedHat's old `sshd(pam_unix)` `authentication failure` lines
//! are one attempt each (`N more authentication failures` = N). Addresses
//! only: a host name (`rhost=example.net`) is not an address to ban.
//! Skipped (with a message) when the data is absent.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::Path;

use common::ok;

const REAL: &str = "/work/shared/data/real";

/// Days from 1970-01-01 to the given civil date (Howard Hinnant's algorithm).
fn days(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `Mon DD HH:MM:SS host prog[pid]: msg` → (month, day, seconds of day, prog, pid, msg).
fn split(line: &str) -> Option<(i64, i64, i64, &str, &str, &str)> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| line.starts_with(m))? as i64 + 1;
    let mut words = line[3..].split_whitespace();
    let day: i64 = words.next()?.parse().ok()?;
    let hms: Vec<i64> = words
        .next()?
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, mi, s] = hms[..] else { return None };
    let _host = words.next()?;
    let tag = words.next()?.strip_suffix(':')?;
    let (prog, pid) = tag.strip_suffix(']')?.split_once('[')?;
    let at = line.find(&format!("{tag}: "))? + tag.len() + 2;
    Some((month, day, h * 3600 + mi * 60 + s, prog, pid, &line[at..]))
}

/// The address in the word after the last ` from ` of `msg`.
fn from_addr(msg: &str) -> Option<IpAddr> {
    let i = msg.rfind(" from ")?;
    msg[i + 6..].split_whitespace().next()?.parse().ok()
}

#[derive(Default)]
struct Conn {
    addr: Option<IpAddr>,
    failed: u64,
    /// Time of the first failure sign, while no `Failed` line counted.
    sign: Option<i64>,
}

/// Every failed attempt's time, per address.
fn attempts(text: &str) -> HashMap<IpAddr, Vec<i64>> {
    let mut out: HashMap<IpAddr, Vec<i64>> = HashMap::new();
    let mut conns: HashMap<(String, String), Conn> = HashMap::new();
    let (mut year, mut last) = (2000i64, i64::MIN / 2);
    for line in text.lines() {
        let Some((mo, d, sod, prog, pid, msg)) = split(line) else {
            continue;
        };
        if !matches!(
            prog,
            "sshd" | "sshd-session" | "sshd-auth" | "sshd(pam_unix)"
        ) {
            continue;
        }
        let mut t = days(year, mo, d) * 86_400 + sod;
        if t < last - 100 * 86_400 {
            year += 1;
            t = days(year, mo, d) * 86_400 + sod;
        }
        last = t;
        let (mut n, mut msg) = (1u64, msg);
        if let Some(r) = msg.strip_prefix("message repeated ") {
            let (count, rest) = r.split_once(" times: [").unwrap();
            n = count.parse().unwrap();
            msg = rest.trim_start().trim_end_matches(']');
        }
        let msg = msg.strip_prefix("error: ").unwrap_or(msg);
        let conn = conns
            .entry((prog.to_string(), pid.to_string()))
            .or_default();
        if prog == "sshd(pam_unix)" {
            let Some(i) = msg.find("authentication failure") else {
                continue;
            };
            let more = msg[..i].strip_suffix(" more ").map(|c| c.parse().unwrap());
            let rhost = msg
                .split_whitespace()
                .find_map(|w| w.strip_prefix("rhost="));
            if let Some(a) = rhost.and_then(|h| h.parse().ok()) {
                out.entry(a)
                    .or_default()
                    .extend(vec![t; more.unwrap_or(1) as usize]);
            }
            continue;
        }
        if let Some(r) = msg.strip_prefix("Failed ") {
            if r.starts_with("publickey ") {
                continue;
            }
            let Some(a) = from_addr(msg) else { continue };
            if conn.addr != Some(a) {
                *conn = Conn::default();
            }
            conn.addr = Some(a);
            conn.failed += n;
            conn.sign = None;
            out.entry(a).or_default().extend(vec![t; n as usize]);
        } else if msg.starts_with("Invalid user ")
            || msg.starts_with("maximum authentication attempts exceeded for ")
        {
            let Some(a) = from_addr(msg) else { continue };
            if conn.addr != Some(a) {
                *conn = Conn::default();
            }
            conn.addr = Some(a);
            if conn.failed == 0 && conn.sign.is_none() {
                conn.sign = Some(t);
            }
        }
    }
    for c in conns.values() {
        if let (Some(a), Some(t), 0) = (c.addr, c.sign, c.failed) {
            out.entry(a).or_default().push(t);
        }
    }
    out
}

/// (at least 5 attempts within 10 minutes, fewer than 3 in all).
fn expected(text: &str) -> (BTreeSet<IpAddr>, BTreeSet<IpAddr>) {
    let (mut must, mut low) = (BTreeSet::new(), BTreeSet::new());
    for (a, mut ts) in attempts(text) {
        ts.sort_unstable();
        if ts.len() < 3 {
            low.insert(a);
        }
        if ts.windows(5).any(|w| w[4] - w[0] <= 600) {
            must.insert(a);
        }
    }
    (must, low)
}

fn banned(path: &Path) -> BTreeMap<IpAddr, String> {
    let out = ok(&["replay", "--format", "json", path.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["value"].as_str().unwrap().parse().unwrap(),
                d["scenario"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Checks one log; `known`: addresses the independent count must find.
fn check(rel: &str, known: &[&str]) {
    let path = Path::new(REAL).join(rel);
    if !path.exists() {
        eprintln!("skipped: {} is absent", path.display());
        return;
    }
    let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
    let (must, low) = expected(&text);
    for k in known {
        assert!(
            must.contains(&k.parse().unwrap()),
            "{rel}: the independent count misses {k}"
        );
    }
    let got = banned(&path);
    let missed: Vec<_> = must.iter().filter(|a| !got.contains_key(a)).collect();
    let wrong: Vec<_> = got.iter().filter(|(a, _)| low.contains(a)).collect();
    eprintln!(
        "{rel}: {} addresses with >= 5 attempts in 10 min, {} banned, {} with < 3 attempts",
        must.len(),
        got.len(),
        low.len()
    );
    assert!(missed.is_empty(), "{rel}: not banned: {missed:?}");
    assert!(
        wrong.is_empty(),
        "{rel}: banned with < 3 attempts: {wrong:?}"
    );
}

#[test]
fn paced_brute_force_in_loghub_openssh_is_banned() {
    // 123.235.32.19: 7 root passwords in 2 minutes with a 90-second pause.
    check(
        "loghub-openssh/OpenSSH_2k.log",
        &["123.235.32.19", "60.2.12.12", "183.62.140.253"],
    );
}

#[test]
fn ubuntu_auth_log_attackers_are_banned() {
    // 190.178.62.6: five connections that each exceeded MaxAuthTries.
    check(
        "elastic-examples/auth.log",
        &["190.178.62.6", "218.60.136.106"],
    );
}

#[test]
fn old_redhat_pam_failures_are_banned() {
    check(
        "loghub-linux/Linux.log",
        &["211.214.161.141", "220.117.241.87"],
    );
}

#[test]
fn the_independent_count_reads_connections() {
    let log = "\
Mar  1 10:00:00 h sshd[1]: Invalid user a from 192.0.2.1 port 1
Mar  1 10:00:01 h sshd[1]: Failed password for invalid user a from 192.0.2.1 port 1 ssh2
Mar  1 10:00:02 h sshd[1]: message repeated 2 times: [ Failed password for invalid user a from 192.0.2.1 port 1 ssh2]
Mar  1 10:00:03 h sshd[2]: Invalid user b from 192.0.2.1 port 2
Mar  1 10:00:04 h sshd[3]: Failed publickey for c from 192.0.2.2 port 3 ssh2
Jun 11 09:45:45 combo sshd(pam_unix)[4]: 7 more authentication failures; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=192.0.2.3  user=root
";
    let a = attempts(log);
    assert_eq!(a[&"192.0.2.1".parse().unwrap()].len(), 4);
    assert!(!a.contains_key(&"192.0.2.2".parse().unwrap()));
    assert_eq!(a[&"192.0.2.3".parse().unwrap()].len(), 7);
}
