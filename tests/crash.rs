//! Crash safety: the real daemon, in a network namespace with the nftables
//! backend, is killed with SIGKILL again and again while a writer appends to
//! its log, rotates it, and attackers in the log cause decisions. After the
//! last restart: the store counted every line exactly once (lines are
//! committed with their checkpoints in one transaction), every attacker
//! written has a decision, and the kernel set equals the store's decisions.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{Config, Daemon, Netns, require, ssh_fail, wait_for};

const CYCLES: usize = 25;

fn cfg(dir: &Path) -> String {
    Config::new()
        .firewall("nftables")
        .allow_own_addresses(true)
        .no_escalation()
        .ssh_test_scenario("2h")
        .sshd_files(&format!("{}/auth.log*", dir.display()))
        .build()
}

/// What the writer has written so far.
struct Written {
    lines: AtomicU64,
    attackers: std::sync::Mutex<Vec<String>>,
}

/// Appends batches of noise and attacks to `dir/auth.log` until `stop`,
/// renaming it to `auth.log.<n>` every `rotate_every` lines.
fn writer(dir: PathBuf, w: Arc<Written>, stop: Arc<AtomicBool>) {
    let log = dir.join("auth.log");
    let mut since_rotate = 0u64;
    let mut generation = 0u32;
    let mut attacker = 0u32;
    let mut seq = 0usize;
    let mut batches = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let mut batch = String::new();
        let mut n = 0u64;
        for _ in 0..40 {
            seq += 1;
            batch.push_str(&format!(
                "Mar  1 10:00:00 myhost CRON[{seq}]: (root) CMD (noise {seq})\n"
            ));
            n += 1;
        }
        // A new attacker every third batch: 4 failures (capacity 3 overflows on
        // the 4th). Fewer than 1,000 in all: `decisions list` shows at most 1,000.
        batches += 1;
        let ip = batches.is_multiple_of(3).then(|| {
            attacker += 1;
            format!("100.64.{}.{}", attacker / 250, attacker % 250 + 1)
        });
        if let Some(ip) = &ip {
            for i in 0..4 {
                seq += 1;
                batch.push_str(&ssh_fail(ip, seq + i));
                batch.push('\n');
                n += 1;
            }
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        // One write per batch: a reader never sees half a batch as lost.
        f.write_all(batch.as_bytes()).unwrap();
        drop(f);
        if let Some(ip) = ip {
            w.attackers.lock().unwrap().push(format!("{ip}/32"));
        }
        w.lines.fetch_add(n, Ordering::SeqCst);
        since_rotate += n;
        if since_rotate >= 700 {
            generation += 1;
            std::fs::rename(&log, dir.join(format!("auth.log.{generation}"))).unwrap();
            since_rotate = 0;
        }
        std::thread::sleep(Duration::from_millis(15));
    }
}

/// Addresses in `nft -j list set inet shield ban4`.
fn kernel_set(ns: &Netns) -> BTreeSet<String> {
    let out = ns.ok(&["nft", "-j", "list", "set", "inet", "shield", "ban4"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut found = BTreeSet::new();
    fn walk(v: &serde_json::Value, found: &mut BTreeSet<String>) {
        match v {
            serde_json::Value::String(s) if s.parse::<std::net::IpAddr>().is_ok() => {
                found.insert(format!("{s}/32"));
            }
            serde_json::Value::Object(m) => {
                if let (Some(a), Some(l)) = (m.get("addr"), m.get("len")) {
                    found.insert(format!("{}/{}", a.as_str().unwrap_or(""), l));
                    return;
                }
                for x in m.values() {
                    walk(x, found);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, found)),
            _ => {}
        }
    }
    for item in v["nftables"].as_array().unwrap() {
        if let Some(e) = item.get("set").and_then(|s| s.get("elem")) {
            walk(e, &mut found);
        }
    }
    found
}

fn store_lines(d: &Daemon) -> u64 {
    d.status()["store_counters"]["lines:sshd"]
        .as_u64()
        .unwrap_or(0)
}

fn decided(d: &Daemon) -> BTreeSet<String> {
    d.active()
        .iter()
        .map(|x| x["target"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn sigkill_again_and_again_loses_nothing_and_counts_nothing_twice() {
    require("nft", "nftables");
    let ns = Netns::new("crash");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("auth.log"), "").unwrap();
    let mut d = Daemon::start_in(Some(&ns.name), dir.path(), &cfg(dir.path()));

    let w = Arc::new(Written {
        lines: AtomicU64::new(0),
        attackers: Default::default(),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let wt = {
        let (dir, w, stop) = (dir.path().to_path_buf(), w.clone(), stop.clone());
        std::thread::spawn(move || writer(dir, w, stop))
    };
    // A simple deterministic spread of run times: 150..=850 ms.
    for cycle in 0..CYCLES {
        std::thread::sleep(Duration::from_millis(150 + (cycle as u64 * 137) % 700));
        d.kill();
        // Lines (and rotations) keep coming while it is dead.
        std::thread::sleep(Duration::from_millis(50 + (cycle as u64 * 61) % 200));
        d.restart();
    }
    stop.store(true, Ordering::SeqCst);
    wt.join().unwrap();
    let total = w.lines.load(Ordering::SeqCst);
    let attackers: BTreeSet<String> = w.attackers.lock().unwrap().iter().cloned().collect();
    assert!(
        attackers.len() < 1000,
        "too many attackers for `decisions list`"
    );

    // Every line counted once: reach the total, then stay there.
    let reached = wait_for(Duration::from_secs(60), || {
        (store_lines(&d) >= total).then_some(())
    });
    assert!(
        reached.is_some(),
        "store counted {} of {total} lines after {CYCLES} kills",
        store_lines(&d)
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        store_lines(&d),
        total,
        "lines were counted twice after {CYCLES} kills"
    );

    // No decision lost.
    let all = wait_for(Duration::from_secs(30), || {
        let got = decided(&d);
        attackers.is_subset(&got).then_some(got)
    });
    let got = all.unwrap_or_else(|| {
        let got = decided(&d);
        let missing: Vec<_> = attackers.difference(&got).collect();
        panic!(
            "{} of {} attackers have no decision, e.g. {:?}\n{}",
            missing.len(),
            attackers.len(),
            &missing[..missing.len().min(5)],
            d.log()
        )
    });
    assert_eq!(got, attackers, "decisions for addresses never written");

    // One more kill; the restarted daemon's firewall equals the store.
    d.kill();
    d.restart();
    let same = wait_for(Duration::from_secs(20), || {
        (kernel_set(&ns) == decided(&d)).then_some(())
    });
    let kernel = kernel_set(&ns);
    assert!(
        same.is_some(),
        "kernel set ({} elements) differs from the store ({}): only in kernel {:?}, only in store {:?}",
        kernel.len(),
        got.len(),
        kernel.difference(&got).take(5).collect::<Vec<_>>(),
        got.difference(&kernel).take(5).collect::<Vec<_>>()
    );
    eprintln!(
        "crash: {CYCLES} SIGKILL cycles, {total} lines counted exactly once, {} decisions, kernel set equal",
        got.len()
    );
}
