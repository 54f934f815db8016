//! Replays a log file through every built-in pack and the default scenarios
//! and prints lines, matches, alerted addresses and lines/s (a cross-check
//! against other generators' logs, e.g. `genlog.py`).
//!
//! `cargo run --release -p shield-detect --example replay_file -- FILE [NOW_UNIX]`
//! (`NOW_UNIX`: the clock for syslog years, default the system clock).

use std::collections::BTreeSet;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use shield_detect::{Engine, EngineOptions, NativeMatcher, default_scenarios, pack_names};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: replay_file FILE [NOW_UNIX]")?;
    let mut now: i64 = match args.next() {
        Some(n) => n.parse()?,
        None => SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64,
    };
    let data = std::fs::read(&path)?;
    let mut e = Engine::new(
        Box::new(NativeMatcher::all()),
        &default_scenarios(pack_names()),
        EngineOptions::default(),
    )?;
    let mut targets = BTreeSet::new();
    let mut alerts = 0u64;
    let mut skipped = 0u64;
    let t0 = Instant::now();
    let cpu0 = cpu_ns();
    let mut start = 0;
    let ends = memchr::memchr_iter(b'\n', &data).chain(std::iter::once(data.len()));
    for end in ends {
        let raw = &data[start..end];
        start = end + 1;
        let Ok(line) = std::str::from_utf8(raw) else {
            skipped += 1;
            continue;
        };
        if let Some(t) = e.feed(line, now, &mut |a| {
            alerts += 1;
            targets.insert(a.target);
        }) {
            now = now.max(t);
        }
    }
    let dt = t0.elapsed().as_secs_f64();
    let cpu = cpu_ns().zip(cpu0).map(|(b, a)| (b - a) as f64 / 1e9);
    let s = e.stats();
    println!(
        "lines {} matched {} nofail {} non-utf8 {skipped}",
        s.lines, s.matched, s.nofail
    );
    println!(
        "alerts {alerts} targets {} keys {} evicted {}",
        targets.len(),
        s.keys_tracked,
        s.keys_evicted
    );
    for sc in &s.scenarios {
        println!("  {:<28} {}", sc.name, sc.alerts);
    }
    println!(
        "elapsed {dt:.3} s, {:.0} lines/s (wall)",
        s.lines as f64 / dt
    );
    if let Some(c) = cpu {
        println!(
            "cpu {c:.3} s, {:.0} lines/s (cpu; includes UTF-8 checks and line splitting)",
            s.lines as f64 / c
        );
    }
    if let Ok(out) = std::env::var("TARGETS_OUT") {
        let text: String = targets.iter().map(|t| format!("{t}\n")).collect();
        std::fs::write(out, text)?;
    }
    Ok(())
}

/// Nanoseconds this thread spent on a CPU (Linux `schedstat`), so a busy
/// machine does not distort the figure.
fn cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}
