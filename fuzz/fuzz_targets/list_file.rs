//! A blocklist or allowlist as fetched (attacker-controlled when the feed or
//! its transport is compromised), in every format the loader reads. Errors
//! and counted bad lines, never panics; every entry taken is canonical and
//! passes the reserved-space and prefix-cap checks.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shield_daemon::lists::parse::{Caps, Format, check, parse};

fuzz_target!(|data: &[u8]| {
    let caps = Caps::default();
    for f in [Format::Auto, Format::Lines, Format::Csv, Format::Json] {
        if let Ok(p) = parse(data, f, caps) {
            for e in &p.entries {
                assert!(check(&e.target, caps).is_ok(), "{} passed the checks", e.target);
                let again: shield_core::Net = e.target.to_string().parse().unwrap();
                assert_eq!(again, e.target, "not canonical");
            }
            assert!(p.problems.len() <= p.bad + p.refused);
        }
    }
});
