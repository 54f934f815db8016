//! Hostile input never panics: every prefix of real lines, lines with bytes
//! swapped for multi-byte characters, binary-looking text and a 10 MB line.

use shield_detect::{Engine, EngineOptions, NativeMatcher, default_scenarios, r#gen, pack_names};

fn engine() -> Engine {
    Engine::new(
        Box::new(NativeMatcher::all()),
        &default_scenarios(pack_names()),
        EngineOptions::default(),
    )
    .unwrap()
}

#[test]
fn truncated_and_mangled_lines_do_not_panic() {
    let mut e = engine();
    let mut lines = r#gen::sshd(3_000, 3, 9).0;
    lines.extend(r#gen::nginx(3_000, 4, 9).0);
    lines.extend(
        [
            "2024/03/01 10:00:00 [error] 1#1: *1 user \"é\": password mismatch, client: 203.0.113.1, server: x",
            "<38>1 2024-03-01T00:00:00Z h sshd 1 - [a=\"\\]\"] Invalid user x from 198.51.100.4 port 22",
            "Mar  1 00:00:00 mx postfix/smtpd[1]: warning: unknown[203.0.113.40]: SASL LOGIN authentication failed: x",
            "Mar  1 00:00:00 mx dovecot: imap-login: Disconnected (auth failed, 3 attempts in 12 secs): user=<a>, method=PLAIN, rip=203.0.113.41, lip=10.0.0.2",
        ]
        .map(String::from),
    );
    let mut seed = 0x1234_5678_u64;
    let mut rnd = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut fed = 0u64;
    for (k, l) in lines.iter().enumerate() {
        // Every prefix (on char boundaries) of a sample of lines.
        if k % 50 == 0 {
            for (i, _) in l.char_indices() {
                e.feed(&l[..i], r#gen::START, &mut |_| ());
                fed += 1;
            }
        }
        // Characters swapped for odd ones at random places (three variants).
        for _ in 0..3 {
            let mut chars: Vec<char> = l.chars().collect();
            for _ in 0..3 {
                if chars.is_empty() {
                    break;
                }
                let at = (rnd() as usize) % chars.len();
                chars[at] = ['é', '\u{0}', '"', '[', ']', ':', ' ', '\\', '\u{fffd}', '𝄞']
                    [(rnd() % 10) as usize];
            }
            let s: String = chars.into_iter().collect();
            e.feed(&s, r#gen::START, &mut |_| ());
            let _ = e.explain(&s, r#gen::START);
            fed += 1;
        }
    }
    let junk: String = (0..100_000)
        .map(|i| char::from_u32((i * 7919) % 0xD7FF).unwrap_or('x'))
        .collect();
    e.feed(&junk, r#gen::START, &mut |_| ());
    let huge = format!(
        "Mar  1 00:00:00 h sshd[1]: Failed password for {} from 198.51.100.1 port 1 ssh2",
        "a".repeat(10 << 20)
    );
    let t = std::time::Instant::now();
    e.feed(&huge, r#gen::START, &mut |_| ());
    assert!(
        t.elapsed().as_secs() < 20,
        "a 10 MB line took {:?}",
        t.elapsed()
    );
    assert_eq!(e.stats().lines, fed + 2);
}
