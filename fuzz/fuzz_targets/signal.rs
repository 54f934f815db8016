//! What a union peer sends: a JSON array of signed envelopes. Each is decoded
//! and its signature checked against a fixed member key: errors or `false`,
//! never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shield_union::{Envelope, Identity};

fuzz_target!(|data: &[u8]| {
    let key = Identity::from_seed([7; 32]).public();
    let check = |e: &Envelope| {
        if let Ok(d) = e.decode() {
            let _ = d.verify(&key);
        }
    };
    if let Ok(envs) = serde_json::from_slice::<Vec<Envelope>>(data) {
        envs.iter().for_each(check);
    }
    if let Ok(e) = serde_json::from_slice::<Envelope>(data) {
        check(&e);
    }
});
