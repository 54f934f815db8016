//! A typical hub filter (field reads, `in` a constant list, `matches` a constant regex, a
//! method call) allocates nothing per evaluation: a counting global allocator (this test
//! binary only) watches `Program::run`.
#![allow(unsafe_code)] // a GlobalAlloc impl is unsafe by definition; it only counts and forwards.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::event::{HTTP_FILTER, nginx_event};
use shield_expr::{Compiler, Value};

struct Counting;

thread_local! {
    // Per thread: the test harness runs tests in parallel threads.
    static ON: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    if ON.with(Cell::get) {
        ALLOCS.with(|a| a.set(a.get() + 1));
    }
}

// SAFETY: forwards every call unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations(src: &str, path: &str) -> (u64, bool) {
    let mut c = Compiler::new();
    c.var("evt");
    let p = c.compile(src).unwrap();
    let evt = nginx_event(path);
    let vars = [Value::Object(&evt)];
    // Warm up (the regex engine's per-thread cache).
    let first = p.run_bool(&vars).unwrap();
    ALLOCS.with(|a| a.set(0));
    ON.with(|on| on.set(true));
    for _ in 0..1000 {
        assert_eq!(p.run_bool(&vars).unwrap(), first);
    }
    ON.with(|on| on.set(false));
    (ALLOCS.with(Cell::get), first)
}

#[test]
fn typical_filters_allocate_nothing_per_evaluation() {
    assert_eq!(allocations(HTTP_FILTER, "/wp-login.php"), (0, true));
    assert_eq!(allocations(HTTP_FILTER, "/index.html"), (0, false));
    let src = "evt.Meta.service == 'http' && evt.GetMeta('http_status') in ['404', '403'] && \
               any(['/.env', '/.git'], {evt.Meta.http_path startsWith #}) && \
               TrimSpace(evt.Parsed.request) contains '.git' && evt.Line.Raw startsWith '192.0.2.'";
    assert_eq!(allocations(src, "/.git/config"), (0, true));
}

#[test]
fn the_counter_sees_allocations() {
    // A filter that builds a string must be counted, or the test above proves nothing.
    let (n, _) = allocations("Lower(evt.Meta.http_path) endsWith '.php'", "/X.PHP");
    assert!(n >= 1000, "{n}");
}
