//! Memory per tracked key: a counting global allocator reads the engine's
//! live heap after N distinct source addresses each fail once (the flood's
//! shape), and after N addresses each fail four times (a distributed brute
//! force), with the default sshd scenarios. The per-address figure is what
//! BENCHMARKS.md `flood-memory` reports (the fixed 16 MiB evidence log is
//! filled before measuring, so it is not counted per address).

#![allow(unsafe_code)] // a GlobalAlloc impl is unsafe by definition; it only counts and forwards.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use shield_detect::{Engine, EngineOptions, NativeMatcher, default_scenarios};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout as given.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: `p` came from `alloc` with this layout.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        // SAFETY: as for `dealloc`, and `new` is non-zero.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

const T0: i64 = 1_709_251_200; // 2024-03-01T00:00:00Z

fn ip(i: u32) -> String {
    let b = (0x0B00_0000 + i).to_be_bytes();
    format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3])
}

fn line(t: i64, i: u32, pid: u32) -> String {
    format!(
        "2024-03-01T00:00:{:02}Z web sshd[{pid}]: Failed password for root from {} port 22 ssh2",
        t % 60,
        ip(i)
    )
}

/// Live heap bytes per address after `n` addresses each fail `hits` times
/// (the engine is built first; the line buffer is reused).
fn bytes_per_address(n: u32, hits: u32) -> (f64, usize, u64) {
    let mut e = Engine::new(
        Box::new(NativeMatcher::new(&["sshd"], &[]).unwrap()),
        &default_scenarios(&["sshd"]),
        EngineOptions {
            max_keys: 10 * n as usize,
            ..EngineOptions::default()
        },
    )
    .unwrap();
    let mut buf = String::with_capacity(256);
    let mut alerts = 0u64;
    // Warm up on another address: the matcher's caches, and the evidence
    // log filled to its fixed size (16 MiB, whatever the number of keys).
    for pid in 0..200_000 {
        buf.clear();
        buf.push_str(&line(T0, 0xFF_FFFF, pid));
        e.feed(&buf, T0, &mut |_| ());
    }
    let before = LIVE.load(Ordering::Relaxed);
    for h in 0..hits {
        for i in 0..n {
            buf.clear();
            buf.push_str(&line(T0 + h as i64, i, 1000 + h * n + i));
            e.feed(&buf, T0 + h as i64, &mut |_| alerts += 1);
        }
    }
    let after = LIVE.load(Ordering::Relaxed);
    let tracked = e.stats().keys_tracked;
    ((after - before) as f64 / n as f64, tracked, alerts)
}

#[test]
fn bytes_per_tracked_address() {
    let n = 100_000;
    let (single, tracked, alerts) = bytes_per_address(n, 1);
    eprintln!(
        "{n} addresses x 1 failure: {single:.0} B per address ({tracked} keys tracked, {alerts} alerts)"
    );
    assert_eq!(alerts, 0);
    assert!(
        single <= 128.0,
        "{single:.0} B per address with one failure each; the goal is 128"
    );
    let (five, tracked, alerts) = bytes_per_address(n, 4);
    eprintln!(
        "{n} addresses x 4 failures: {five:.0} B per address ({tracked} keys tracked, {alerts} alerts)"
    );
    assert_eq!(alerts, 0, "4 failures decide nothing under the defaults");
}
