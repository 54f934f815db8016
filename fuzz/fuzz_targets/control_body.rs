//! The control API's `POST /api/decisions` body (reachable over TCP with the
//! token): JSON into `AddRequest`, then into a decision. Errors, never panics.
//! Any text read as an address is canonical: its own rendering reads back as
//! itself, and an IPv4 address is never left in an IPv6 spelling.
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
        if let Ok(n) = shield_daemon::decide::parse_target(s) {
            let again = shield_daemon::decide::parse_target(&n.to_string());
            assert_eq!(again, Ok(n), "{s:?} -> {n} does not read back as itself");
            if let ipnet::IpNet::V6(v6) = n.get() {
                assert!(
                    v6.prefix_len() < 96 || v6.network().to_ipv4_mapped().is_none(),
                    "{s:?} -> {n}: an IPv4 network left as IPv6"
                );
            }
        }
        let _ = shield_daemon::decide::parse_duration(s);
    }
});
