//! Bouncer API keys: generation, hashing, and the [`BouncerAuth`] seam the
//! bouncer API asks "whose key is this?".
//!
//! Keys are 32 random bytes (hex), so a fast unsalted SHA-256 is enough to
//! store them: there is nothing to brute-force. Comparison of hashes is
//! constant-time. Where keys are stored (SQLite) is the daemon's business;
//! [`KeyRing`] is the in-memory implementation it can fill from there.
//! [`Guesses`] limits wrong keys and tokens per client address, so guessing
//! costs a minute per ten tries on top of the keys' 128+ bits.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use sha2::{Digest, Sha256};

/// Answers which bouncer an API key belongs to.
pub trait BouncerAuth: Send + Sync + 'static {
    /// Constant-time compare of hashes; returns the bouncer's name.
    fn authenticate(&self, api_key: &str) -> Option<String>;
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// SHA-256 of the key, lowercase hex: what is stored for a bouncer.
pub fn hash_api_key(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

/// A new API key: 32 random bytes from the OS, lowercase hex (64 characters).
///
/// # Panics
/// If the operating system has no random source (no `getrandom(2)`, no
/// `/dev/urandom`): nothing secure can be done then.
pub fn generate_api_key() -> String {
    hex(&random_bytes::<32>())
}

/// The least a shared secret (bearer token) must carry, in bits.
pub const MIN_SECRET_BITS: u32 = 128;

/// An upper estimate of a secret's entropy, in bits, from its length and the
/// character classes it uses, as if each character were drawn at random:
/// 32 hex digits = 128, 22 base64 characters = 132, 21 = 126. Text with under
/// eight distinct characters (`aaaa…`, `abab…`) counts as 0. It cannot see
/// that a long passphrase is a famous quote; it catches short and repetitive
/// tokens, which is what `shield check` refuses.
pub fn secret_bits(secret: &str) -> u32 {
    let b = secret.as_bytes();
    let mut seen = [false; 256];
    for &c in b {
        seen[c as usize] = true;
    }
    if seen.iter().filter(|s| **s).count() < 8 {
        return 0;
    }
    let all = |f: fn(&u8) -> bool| b.iter().all(f);
    let any = |f: fn(&u8) -> bool| b.iter().any(f);
    let alphabet: f64 = if all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
        || all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(c))
    {
        16.0
    } else {
        let mut n = 0.0;
        if any(u8::is_ascii_digit) {
            n += 10.0;
        }
        if any(u8::is_ascii_lowercase) {
            n += 26.0;
        }
        if any(u8::is_ascii_uppercase) {
            n += 26.0;
        }
        if any(|c| !c.is_ascii_alphanumeric()) {
            // base64's and base64url's extra characters count for little;
            // other punctuation or bytes for the printable rest.
            n += if all(|c| c.is_ascii_alphanumeric() || b"+/=-_".contains(c)) {
                2.0
            } else {
                32.0
            };
        }
        n
    };
    (b.len() as f64 * alphabet.log2()).floor() as u32
}

pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b)
        .expect("the OS random source is unavailable; shield cannot make keys without it");
    b
}

pub(crate) use shield_core::ct_eq;

/// In-memory bouncers: (name, SHA-256 hex of the key).
#[derive(Clone, Debug, Default)]
pub struct KeyRing {
    keys: Vec<(String, String)>,
}

impl KeyRing {
    pub fn new() -> Self {
        Self::default()
    }

    /// Register a bouncer by the hash of its key (as stored).
    pub fn insert_hash(&mut self, name: impl Into<String>, hash_hex: impl Into<String>) {
        self.keys
            .push((name.into(), hash_hex.into().to_ascii_lowercase()));
    }

    /// Register a bouncer by its clear key (tests, first start).
    pub fn insert_key(&mut self, name: impl Into<String>, key: &str) {
        self.insert_hash(name, hash_api_key(key));
    }
}

impl BouncerAuth for KeyRing {
    fn authenticate(&self, api_key: &str) -> Option<String> {
        let h = hash_api_key(api_key);
        // Compare against every entry (no early exit), so timing does not tell which matched.
        let mut found = None;
        for (name, stored) in &self.keys {
            if ct_eq(h.as_bytes(), stored.as_bytes()) && found.is_none() {
                found = Some(name.clone());
            }
        }
        found
    }
}

/// Wrong API keys and bearer tokens per client address: after `max_failures`
/// within `window`, the address is refused (429) without its key being looked
/// at until the window has passed. Bounded in memory: when `capacity`
/// addresses are tracked, the expired ones are dropped, then the oldest.
pub struct Guesses {
    max_failures: u32,
    window: Duration,
    capacity: usize,
    /// Address -> (failures, start of its window). Locked for one map
    /// operation, never across an `.await`.
    map: Mutex<HashMap<IpAddr, (u32, Instant), foldhash::fast::RandomState>>,
}

impl Default for Guesses {
    /// 10 wrong keys a minute per address, 100,000 addresses tracked.
    fn default() -> Self {
        Guesses::new(10, Duration::from_secs(60), 100_000)
    }
}

impl Guesses {
    pub fn new(max_failures: u32, window: Duration, capacity: usize) -> Self {
        Guesses {
            max_failures: max_failures.max(1),
            window,
            capacity: capacity.max(1),
            map: Mutex::new(HashMap::with_hasher(Default::default())),
        }
    }

    /// The window's length (for `Retry-After`).
    pub fn window(&self) -> Duration {
        self.window
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<IpAddr, (u32, Instant), foldhash::fast::RandomState>>
    {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Has `ip` used up its wrong guesses for now?
    pub fn blocked(&self, ip: IpAddr, now: Instant) -> bool {
        let ip = shield_core::Addr::new(ip).ip();
        self.lock().get(&ip).is_some_and(|(n, since)| {
            *n >= self.max_failures && now.duration_since(*since) < self.window
        })
    }

    /// Count one wrong key or token from `ip`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let ip = shield_core::Addr::new(ip).ip();
        let mut map = self.lock();
        if map.len() >= self.capacity && !map.contains_key(&ip) {
            map.retain(|_, (_, since)| now.duration_since(*since) < self.window);
            if map.len() >= self.capacity
                && let Some(oldest) = map.iter().min_by_key(|(_, (_, t))| *t).map(|(k, _)| *k)
            {
                map.remove(&oldest);
            }
        }
        let e = map.entry(ip).or_insert((0, now));
        if now.duration_since(e.1) >= self.window {
            *e = (0, now);
        }
        e.0 = e.0.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_strength_estimate() {
        // `openssl rand -hex 16`, `openssl rand -base64 16` (22 chars + `==`), our API keys.
        assert_eq!(secret_bits("3f9a0c41d27be8856e10a4c9b7d2f0e1"), 128);
        assert!(secret_bits("q9Zr0xYvL2kP8sWm4tBn1A==") >= MIN_SECRET_BITS);
        assert!(secret_bits(&generate_api_key()) >= 256);
        // One character short of each.
        assert!(secret_bits("3f9a0c41d27be8856e10a4c9b7d2f0e") < MIN_SECRET_BITS);
        assert!(secret_bits("q9Zr0xYvL2kP8sWm4tBn1") < MIN_SECRET_BITS);
        // Short, or long but repetitive.
        for weak in [
            "x",
            "secret",
            "changeme",
            "hunter2hunter2",
            &"ab".repeat(40),
            &"a".repeat(100),
        ] {
            assert!(secret_bits(weak) < MIN_SECRET_BITS, "{weak}");
        }
    }

    #[test]
    fn wrong_guesses_are_limited_per_address_and_window() {
        let g = Guesses::new(10, Duration::from_secs(60), 3);
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..9 {
            g.failed(a, t0);
        }
        assert!(!g.blocked(a, t0), "nine wrong keys are allowed");
        g.failed("::ffff:192.0.2.1".parse().unwrap(), t0);
        assert!(
            g.blocked(a, t0),
            "the tenth (in mapped form) blocks the address"
        );
        assert!(
            !g.blocked("192.0.2.2".parse().unwrap(), t0),
            "others are not blocked"
        );
        assert!(g.blocked(a, t0 + Duration::from_secs(59)));
        assert!(
            !g.blocked(a, t0 + Duration::from_secs(60)),
            "the window passes"
        );
        g.failed(a, t0 + Duration::from_secs(60));
        assert!(
            !g.blocked(a, t0 + Duration::from_secs(60)),
            "a new window starts at one"
        );
        // Bounded: many addresses never grow the map past its capacity.
        for i in 0..100u8 {
            g.failed(
                IpAddr::from([198, 51, 100, i]),
                t0 + Duration::from_secs(61),
            );
        }
        assert!(g.lock().len() <= 3);
    }

    #[test]
    fn keys_hash_and_authenticate() {
        let k = generate_api_key();
        assert_eq!(k.len(), 64);
        assert_ne!(k, generate_api_key());
        assert_eq!(
            hash_api_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut ring = KeyRing::new();
        ring.insert_key("fw", &k);
        assert_eq!(ring.authenticate(&k).as_deref(), Some("fw"));
        assert_eq!(ring.authenticate("nope"), None);
        assert_eq!(ring.authenticate(""), None);
        assert!(!ct_eq(b"ab", b"abc"));
    }
}
