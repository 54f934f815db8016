//! A config file through `config::parse` and `plan::plan` (regexes compiled,
//! networks parsed, located errors rendered): errors, never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match shield_daemon::config::parse(text, None) {
        Ok(l) => {
            if let Err(e) = shield_daemon::plan::plan(&l) {
                let _ = e.to_string();
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
