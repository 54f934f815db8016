//! The hot path allocates nothing per line once warm: a counting global
//! allocator (this test binary only) watches `Engine::feed`.
#![allow(unsafe_code)] // a GlobalAlloc impl is unsafe by definition; it only counts and forwards.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use shield_detect::{Engine, EngineOptions, NativeMatcher, default_scenarios, r#gen, pack_names};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: forwards every call unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if ON.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if ON.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The same log one day later (same lengths, so the same work per line).
fn next_day(l: &str) -> String {
    for d in 1..=8 {
        if let Some(rest) = l.strip_prefix(&format!("Mar  {d} ")) {
            return format!("Mar  {} {rest}", d + 1);
        }
        let stamp = format!("[0{d}/Mar/2026:");
        if l.contains(&stamp) {
            return l.replacen(&stamp, &format!("[0{}/Mar/2026:", d + 1), 1);
        }
    }
    l.to_string()
}

/// Feeds `lines` on days one and two to warm up (a key's first hit is kept
/// compact, its second gives it its buckets), then the same lines a day
/// later (all buckets have leaked empty) while counting allocations.
/// Returns (allocations, alerts, matched) of the counted day.
fn counted_second_day(lines: &[String]) -> (u64, u64, u64) {
    let mut e = Engine::new(
        Box::new(NativeMatcher::all()),
        &default_scenarios(pack_names()),
        EngineOptions::default(),
    )
    .unwrap();
    let now = |i: usize| r#gen::START + i as i64 / 20;
    for (i, l) in lines.iter().enumerate() {
        e.feed(l, now(i), &mut |_| ());
    }
    let day1: Vec<String> = lines.iter().map(|l| next_day(l)).collect();
    for (i, l) in day1.iter().enumerate() {
        e.feed(l, now(i) + 86_400, &mut |_| ());
    }
    let day2: Vec<String> = day1.iter().map(|l| next_day(l)).collect();
    let matched0 = e.stats().matched;
    let show = std::env::var_os("SHOW_ALLOCS").is_some();
    let mut alerts = 0u64;
    ALLOCS.store(0, Ordering::Relaxed);
    ON.with(|c| c.set(true));
    for (i, l) in day2.iter().enumerate() {
        let before = ALLOCS.load(Ordering::Relaxed);
        e.feed(l, now(i) + 2 * 86_400, &mut |_| alerts += 1);
        if show && ALLOCS.load(Ordering::Relaxed) != before {
            ON.with(|c| c.set(false));
            eprintln!("alloc at line {i}: {}", &l[..l.len().min(200)]);
            ON.with(|c| c.set(true));
        }
    }
    ON.with(|c| c.set(false));
    (
        ALLOCS.load(Ordering::Relaxed),
        alerts,
        e.stats().matched - matched0,
    )
}

#[test]
fn feed_does_not_allocate_per_line() {
    // Benign traffic only: typos, 404s, 401s and PAM lines match rules and
    // fill buckets, but never fire.
    let (mut lines, _) = r#gen::sshd(100_000, 0, 5);
    lines.push("x".repeat(65_536));
    lines.extend(r#gen::nginx(100_000, 0, 5).0);
    let (allocs, alerts, matched) = counted_second_day(&lines);
    assert!(
        matched > 1_000,
        "the benign logs must exercise the rules ({matched} matched)"
    );
    assert_eq!(alerts, 0);
    // Not one allocation. (`SHOW_ALLOCS=1` prints the lines that allocate.)
    assert_eq!(allocs, 0, "{allocs} allocations over {} lines", lines.len());

    // With attackers: only the alerts themselves allocate (name, evidence).
    let (mut lines, _) = r#gen::sshd(100_000, 6, 5);
    lines.extend(r#gen::nginx(100_000, 8, 5).0);
    let (allocs, alerts, _) = counted_second_day(&lines);
    assert!(alerts > 0);
    assert!(
        allocs <= alerts * 6,
        "{allocs} allocations for {alerts} alerts over {} lines",
        lines.len()
    );
}
