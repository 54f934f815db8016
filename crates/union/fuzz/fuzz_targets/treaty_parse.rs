//! A treaty file is operator input, but it is also exchanged (as a summary)
//! between members: parsing must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = shield_union::Treaty::parse(s, std::path::Path::new("fuzz.toml"));
    }
});
