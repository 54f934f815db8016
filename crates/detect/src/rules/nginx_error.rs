//! The `nginx-error` pack: basic-auth failures (`user "x": password mismatch`,
//! `user "x" was not found in "..."`) and `limit_req` / `limit_conn` rejections,
//! from nginx's error log (`2024/03/01 00:00:00 [error] 1#1: *5 ..., client: ADDR, ...`).
//! Parsed by hand: a literal search for `, client: ` and one Aho-Corasick pass.
//!
//! The first `, client: ` is nginx's own: the only attacker text before it is
//! a basic-auth user name, which cannot hold a `:` (it ends the user part of
//! the credentials); the request line, which can, comes after it.

use aho_corasick::AhoCorasick;
use memchr::memmem;

use super::{Found, Names};

pub(crate) const RULE_NAMES: &[&str] = &["nginx-auth-fail", "nginx-limit-req", "nginx-limit-conn"];

const NEEDLES: &[&str] = &[
    "password mismatch",
    "was not found in \"",
    "limiting requests",
    "limiting connections",
];

#[derive(Clone)]
pub(crate) struct ErrorRules {
    base: u32,
    kinds: AhoCorasick,
    client: memmem::Finder<'static>,
    user: u16,
    zone: u16,
    request: u16,
}

impl ErrorRules {
    pub(crate) fn new(base: u32, names: &mut Names) -> Self {
        ErrorRules {
            base,
            kinds: AhoCorasick::new(NEEDLES).expect("literal needles build"),
            client: memmem::Finder::new(b", client: "),
            user: names.id("user"),
            zone: names.id("zone"),
            request: names.id("request"),
        }
    }

    /// `n`: where the stamp ends.
    pub(crate) fn find(&self, line: &str, n: usize) -> Option<Found> {
        let b = line.as_bytes();
        let c = self.client.find(&b[n..])? + n;
        let msg = &line[n..c];
        let m = self.kinds.find(msg)?;
        let hs = c + ", client: ".len();
        let he = b[hs..]
            .iter()
            .position(|&x| x == b',')
            .map_or(b.len(), |p| hs + p);
        let host = line[hs..he].trim().parse().ok()?;
        let kind = match m.pattern().as_usize() {
            0 | 1 => 0,
            2 => 1,
            _ => 2,
        };
        let mut f = Found::new(self.base + kind, host);
        if kind == 0 {
            // `user "NAME": password mismatch` / `user "NAME" was not found in`.
            if let Some(u) = memmem::find(msg.as_bytes(), b"user \"") {
                let s = n + u + 6;
                let end = memmem::rfind(&b[s..n + m.start()], b"\"").map(|e| s + e);
                if let Some(e) = end {
                    f.push(self.user, s, e);
                }
            }
        } else if let Some(z) = memmem::find(msg.as_bytes(), b"zone \"") {
            let s = n + z + 6;
            if let Some(e) = memchr::memchr(b'"', &b[s..c]) {
                f.push(self.zone, s, s + e);
            }
        }
        if let Some(r) = memmem::find(&b[he..], b"request: \"") {
            let s = he + r + 10;
            if let Some(e) = memchr::memchr(b'"', &b[s..]) {
                f.push(self.request, s, s + e);
            }
        }
        Some(f)
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::{NativeMatcher, probe};

    #[test]
    fn auth_and_limits() {
        let mut m = NativeMatcher::new(&["nginx-error"], &[]).unwrap();
        let l = r#"2024/03/01 10:00:00 [error] 812#812: *1043 user "admin": password mismatch, client: 203.0.113.60, server: example.org, request: "GET /admin/ HTTP/1.1", host: "example.org""#;
        let g = probe(&mut m, l).unwrap();
        assert_eq!(
            (g.0.as_str(), g.1.as_str()),
            ("nginx-auth-fail", "203.0.113.60")
        );
        assert!(g.2.contains(&("user".into(), "admin".into())), "{:?}", g.2);
        assert!(g.2.contains(&("request".into(), "GET /admin/ HTTP/1.1".into())));
        let l = r#"2024/03/01 10:00:00 [error] 812#812: *1044 user "root" was not found in "/etc/nginx/.htpasswd", client: 2001:db8::61, server: example.org, request: "GET /admin/ HTTP/1.1""#;
        let g = probe(&mut m, l).unwrap();
        assert_eq!(
            (g.0.as_str(), g.1.as_str()),
            ("nginx-auth-fail", "2001:db8::61")
        );
        assert!(g.2.contains(&("user".into(), "root".into())), "{:?}", g.2);
        let l = r#"2024/03/01 10:00:00 [error] 812#812: *9 limiting requests, excess: 5.480 by zone "one", client: 203.0.113.62, server: example.org, request: "GET / HTTP/1.1""#;
        let g = probe(&mut m, l).unwrap();
        assert_eq!(
            (g.0.as_str(), g.1.as_str()),
            ("nginx-limit-req", "203.0.113.62")
        );
        assert!(g.2.contains(&("zone".into(), "one".into())));
        let l = r#"2024/03/01 10:00:00 [error] 812#812: *9 limiting connections by zone "addr", client: 203.0.113.63, server: x"#;
        assert_eq!(probe(&mut m, l).unwrap().0, "nginx-limit-conn");
        for l in [
            r#"2024/03/01 10:00:00 [error] 812#812: *1 open() "/var/www/favicon.ico" failed (2: No such file or directory), client: 203.0.113.64, server: x"#,
            r#"2024/03/01 10:00:00 [error] 812#812: *1 no user/password was provided for basic authentication, client: 203.0.113.64"#,
            r#"2024/03/01 10:00:00 [error] 812#812: *1 user "a": password mismatch, client: not-an-ip, server: x"#,
            r#"2024/03/01 10:00:00 [notice] 1#1: signal process started"#,
        ] {
            assert!(probe(&mut m, l).is_none(), "{l}");
        }
        // A request line cannot fake the client address: it comes after it.
        let l = r#"2024/03/01 10:00:00 [error] 1#1: *1 user "x": password mismatch, client: 203.0.113.65, server: x, request: "GET /, client: 192.0.2.1, HTTP/1.1""#;
        assert_eq!(probe(&mut m, l).unwrap().1, "203.0.113.65");
    }
}
