//! A treaty file (shared between members, so partly peer-controlled) through
//! the parser and its digest.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(e) = shield_union::Treaty::parse(text, std::path::Path::new("fuzz.toml")) {
        let _ = e.to_string();
    }
});
