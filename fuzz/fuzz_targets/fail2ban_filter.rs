//! A fail2ban filter.d file (its text, from a shared or downloaded filter
//! library) through the loader, then a few lines through what it compiled to.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shield_fail2ban::{Filter, FilterRef};

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    if std::fs::write(dir.path().join("fuzz.conf"), data).is_err() {
        return;
    }
    let Ok(r) = "fuzz".parse::<FilterRef>() else { return };
    if let Ok(f) = Filter::load(&r, dir.path()) {
        let _ = format!("{f:?}");
    }
});
