//! Log lines an attacker writes (user names, paths, user agents) through every
//! built-in rule and the default scenarios: never a panic, whatever the bytes.
#![no_main]
use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use shield_detect::{Engine, EngineOptions, NativeMatcher, default_scenarios, pack_names};

thread_local! {
    static ENGINE: RefCell<Engine> = RefCell::new(
        Engine::new(
            Box::new(NativeMatcher::all()),
            &default_scenarios(&pack_names()),
            EngineOptions { max_keys: 64, ..EngineOptions::default() },
        )
        .expect("the built-in packs and default scenarios build"),
    );
}

fuzz_target!(|data: &[u8]| {
    // The first 4 bytes move the clock (forwards and backwards), the rest are lines.
    let (t, rest) = data.split_at(data.len().min(4));
    let mut now = 1_700_000_000i64;
    for b in t {
        now = now.wrapping_add(*b as i64 * 3600 - 128 * 3600);
    }
    let text = String::from_utf8_lossy(rest);
    ENGINE.with(|e| {
        let mut e = e.borrow_mut();
        for line in text.split('\n') {
            e.feed(line, now, &mut |_| {});
        }
    });
});
