//! Log injection, fuzzed: the client-written fields of a built-in rule's
//! sample line (`shield_detect::rules::samples`) filled with fuzzed text, as
//! the service writes it, then read by a matcher of that sample's pack. The
//! decided host is the real client's every time, or there is none: never an
//! address the client wrote.
//!
//! Input: the first byte picks the sample; the rest, split at `\x01`, gives
//! the values of its fields in order (a missing value keeps the default).
#![no_main]
use std::cell::RefCell;
use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use shield_detect::rules::samples::samples;
use shield_detect::{LineMatcher, NativeMatcher};

const REAL: &str = "198.51.100.7";

thread_local! {
    /// One matcher per pack, compiled once; each input reads with a clone
    /// (shared compiled rules, fresh line-to-line state).
    static MATCHERS: RefCell<HashMap<&'static str, NativeMatcher>> = RefCell::default();
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let all = samples();
    let s = &all[pick as usize % all.len()];
    let text = String::from_utf8_lossy(rest);
    let values: Vec<&str> = text.split('\u{1}').collect();
    let fields = s.fields();
    let written = s.fill(REAL, &|name| {
        let i = fields.iter().position(|f| f.name == name)?;
        values.get(i).map(|v| v.to_string())
    });
    let mut m = MATCHERS.with(|ms| {
        ms.borrow_mut()
            .entry(s.pack)
            .or_insert_with(|| NativeMatcher::new(&[s.pack], &[]).expect("a built-in pack"))
            .clone()
    });
    for line in written.split('\n') {
        if let Some(h) = m.match_line(line, 1_709_251_200) {
            let host = h.host.to_string();
            assert_eq!(host, REAL, "sample {:?} read {host} from {line:?}", s.template);
        }
    }
});
