//! The control API's `POST /api/decisions` body (reachable over TCP with the
//! token): JSON into `AddRequest`, then into a decision. Errors, never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shield_daemon::api::{AddRequest, manual_decision, valid_bouncer_name};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = serde_json::from_slice::<AddRequest>(data) {
        if let Ok(d) = manual_decision(&req, 1_700_000_000) {
            assert!(d.expires > d.created, "a decision must end after it starts");
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = valid_bouncer_name(s);
        let _ = shield_daemon::decide::parse_target(s);
        let _ = shield_daemon::decide::parse_duration(s);
    }
});
