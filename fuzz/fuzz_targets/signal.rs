//! What a union peer sends: a JSON array of signed envelopes. Each is decoded
//! and its signature checked against a fixed member key: errors or `false`,
//! never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shield_union::{Envelope, Identity};

fuzz_target!(|data: &[u8]| {
    let key = Identity::from_seed([7; 32]).public();
    if let Ok(envs) = serde_json::from_slice::<Vec<Envelope>>(data) {
        for e in envs {
            let _ = e.verify(&key);
            let _ = e.decode();
        }
    }
    if let Ok(e) = serde_json::from_slice::<Envelope>(data) {
        let _ = e.verify(&key);
        let _ = e.decode();
    }
});
