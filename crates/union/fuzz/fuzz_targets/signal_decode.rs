//! Bytes a peer controls: a push body (JSON array of envelopes) and each
//! envelope's payload. Decoding must return errors, never panic or allocate
//! without bound.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shield_union::Envelope;

fuzz_target!(|data: &[u8]| {
    if let Ok(envs) = serde_json::from_slice::<Vec<Envelope>>(data) {
        for e in envs {
            let _ = e.decode();
        }
    }
    // The raw payload path, as if it had been base64 already.
    let e = Envelope {
        payload: base64_encode(data),
        sig: "A".repeat(86) + "==",
    };
    let _ = e.decode();
});

fn base64_encode(b: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                s.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}
