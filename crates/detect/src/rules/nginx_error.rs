//! The `nginx-error` pack: basic-auth failures (`user "x": password mismatch`,
//! `user "x" was not found in "..."`) and `limit_req` / `limit_conn` rejections,
//! from nginx's error log (`2024/03/01 00:00:00 [error] 1#1: *5 MESSAGE, client: ADDR, server: ...`).
//! Parsed by hand: no regex, a literal search for `, client: `.
//!
//! nginx escapes nothing in its error log, and writes client text both
//! inside other messages (the decoded path of `open() "..." failed`, where a
//! `%0a` even starts a new line) and after its own `client:` field (request,
//! host, referrer). So the host is read only where the client cannot reach:
//! - the whole MESSAGE must be one of the kinds below, exactly, from the
//!   `*CID` to the first `, client: `. The only client text in them is the
//!   basic-auth user, which cannot hold a `:` (it ends the user part of the
//!   credentials), so it cannot hold `, client: ` either;
//! - a line in which another `, client: ADDR, server: ` with a different
//!   address follows is refused: that is the shape of a line the client
//!   forged through a `%0a` in a path, which ends with nginx's real fields.
//!   (A client can make nginx skip its own lines this way, by sending such
//!   text in a header; it cannot make it blame anyone else.)
//! - two `%0a` put a whole forged line between nginx's first line and its
//!   fields, and the client writes the rest of that first line too (it can
//!   end it with a fake `, client: ...`), so no line tells on itself. But
//!   nginx writes a message, at most [`MAX_MESSAGE`] bytes, in one `write`,
//!   and it starts on a line of a connection (`*CID`) whose message is not
//!   one of the kinds and quotes a path before any `, client: `: the matcher
//!   refuses every nginx-error hit in the [`MAX_MESSAGE`] bytes after such a
//!   line ([`ErrorRules::may_continue`]).
//!   Lines of the kinds themselves never start one (their only client text,
//!   the user, has no `:`, so it cannot carry a stamp), so bursts of auth
//!   failures or rejections are all read; one within 2 KiB after another
//!   connection's `open() "..." failed` is not.

use memchr::memmem;

use super::{Found, Names};

pub(crate) const RULE_NAMES: &[&str] = &["nginx-auth-fail", "nginx-limit-req", "nginx-limit-conn"];

#[derive(Clone)]
pub(crate) struct ErrorRules {
    base: u32,
    client: memmem::Finder<'static>,
    user: u16,
    zone: u16,
    request: u16,
}

/// What [`classify`] read of a message: the rule and a field span.
struct Kind {
    rule: u32,
    field: (usize, usize),
    is_user: bool,
}

const CLIENT: &[u8] = b", client: ";

/// nginx's `NGX_MAX_ERROR_STR`: one message, stamp included, is at most
/// this long, and is written with one `write` (so its lines are adjacent).
pub(crate) const MAX_MESSAGE: u64 = 2048;

impl ErrorRules {
    pub(crate) fn new(base: u32, names: &mut Names) -> Self {
        ErrorRules {
            base,
            client: memmem::Finder::new(CLIENT),
            user: names.id("user"),
            zone: names.id("zone"),
            request: names.id("request"),
        }
    }

    /// `n`: where the stamp ends.
    pub(crate) fn find(&self, line: &str, n: usize) -> Option<Found> {
        let b = line.as_bytes();
        let ms = message_start(b, n)?;
        let c = self.client.find(&b[ms..])? + ms;
        let kind = classify(&line[ms..c])?;
        let hs = c + CLIENT.len();
        let he = memchr::memchr(b',', &b[hs..]).map_or(b.len(), |p| hs + p);
        let host = super::parse_ip(line[hs..he].trim())?;
        // A later `, client: ADDR, server: ` of another address: a forged line.
        let mut at = he;
        while let Some(p) = self.client.find(&b[at..]) {
            let s = at + p + CLIENT.len();
            let e = memchr::memchr(b',', &b[s..]).map_or(b.len(), |q| s + q);
            if b[e..].starts_with(b", server: ")
                && super::parse_ip(line[s..e].trim()).is_some_and(|x| x != host)
            {
                return None;
            }
            at = s;
        }
        let mut f = Found::new(self.base + kind.rule, host);
        let (s, e) = (ms + kind.field.0, ms + kind.field.1);
        f.push(if kind.is_user { self.user } else { self.zone }, s, e);
        if let Some(r) = memmem::find(&b[he..], b", request: \"") {
            let s = he + r + 12;
            if let Some(e) = memchr::memchr(b'"', &b[s..]) {
                f.push(self.request, s, s + e);
            }
        }
        Some(f)
    }
}

impl ErrorRules {
    /// Whether the client may have continued `line` (its stamp ends at `n`;
    /// [`ErrorRules::find`] took nothing from it) onto the next lines, up to
    /// [`MAX_MESSAGE`] bytes: a message of a connection (`*CID`), not one of
    /// the kinds, with a quoted string before its first `, client: `. nginx
    /// quotes every decoded path it writes (`open() "%s" failed`, `"%s" is
    /// not found`, `directory index of "%s"`, `... while processing "%V"`),
    /// and writes that quote before any client text, so a client cannot
    /// write a first line without one; messages that quote nothing of the
    /// client's (`SSL_do_handshake() failed ...`, `connect() failed ...`)
    /// open no window.
    pub(crate) fn may_continue(&self, line: &str, n: usize) -> bool {
        let b = line.as_bytes();
        let Some(ms) = message_start(b, n) else {
            return false;
        };
        let end = self.client.find(&b[ms..]).map_or(b.len(), |c| ms + c);
        b[..ms].contains(&b'*') && b[ms..end].contains(&b'"')
    }
}

/// Where the message starts after the stamp (`n`): ` [level] PID#TID: `
/// and an optional `*CID `.
fn message_start(b: &[u8], n: usize) -> Option<usize> {
    let mut i = n;
    let expect = |i: &mut usize, c: u8| (b.get(*i) == Some(&c)).then(|| *i += 1);
    let run = |i: &mut usize, f: fn(&u8) -> bool| {
        let k = b
            .get(*i..)
            .map_or(0, |r| r.iter().take_while(|c| f(c)).count());
        *i += k;
        (k > 0).then_some(())
    };
    expect(&mut i, b' ')?;
    expect(&mut i, b'[')?;
    run(&mut i, u8::is_ascii_lowercase)?;
    expect(&mut i, b']')?;
    expect(&mut i, b' ')?;
    run(&mut i, u8::is_ascii_digit)?;
    expect(&mut i, b'#')?;
    run(&mut i, u8::is_ascii_digit)?;
    expect(&mut i, b':')?;
    expect(&mut i, b' ')?;
    if b.get(i) == Some(&b'*') {
        let mut j = i + 1;
        if run(&mut j, u8::is_ascii_digit).is_some() && b.get(j) == Some(&b' ') {
            i = j + 1;
        }
    }
    Some(i)
}

/// The rule a whole message is, exactly (nginx's own format strings):
/// - `user "USER": password mismatch`, `user "USER" was not found in "FILE"`
///   (USER without `:`);
/// - `limiting requests[, dry run], excess: N.NNN by zone "ZONE"`;
/// - `limiting connections[, dry run] by zone "ZONE"`.
fn classify(msg: &str) -> Option<Kind> {
    if let Some(u) = msg.strip_prefix("user \"") {
        let end = if let Some(x) = u.strip_suffix("\": password mismatch") {
            x.len()
        } else {
            const NOT_FOUND: &[u8] = b"\" was not found in \"";
            let i = memmem::rfind(u.as_bytes(), NOT_FOUND)?;
            let file = &u[i + NOT_FOUND.len()..];
            if !file.ends_with('"') || file.len() < 2 || file[..file.len() - 1].contains('"') {
                return None;
            }
            i
        };
        if u[..end].contains(':') {
            return None;
        }
        return Some(Kind {
            rule: 0,
            field: (6, 6 + end),
            is_user: true,
        });
    }
    let (rule, zone) = if let Some(r) = msg.strip_prefix("limiting requests") {
        let r = r.strip_prefix(", dry run").unwrap_or(r);
        let r = r.strip_prefix(", excess: ")?;
        let d = r
            .bytes()
            .take_while(|c| c.is_ascii_digit() || *c == b'.')
            .count();
        if d == 0 {
            return None;
        }
        (1, r[d..].strip_prefix(" by zone \"")?)
    } else if let Some(r) = msg.strip_prefix("limiting connections") {
        let r = r.strip_prefix(", dry run").unwrap_or(r);
        (2, r.strip_prefix(" by zone \"")?)
    } else {
        return None;
    };
    let z = zone.strip_suffix('"')?;
    if z.contains('"') {
        return None;
    }
    let s = msg.len() - zone.len();
    Some(Kind {
        rule,
        field: (s, s + z.len()),
        is_user: false,
    })
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
        // (A fresh matcher: the `open()` line above refuses the next 2 KiB.)
        let mut m = NativeMatcher::new(&["nginx-error"], &[]).unwrap();
        let l = r#"2024/03/01 10:00:00 [error] 1#1: *1 user "x": password mismatch, client: 203.0.113.65, server: x, request: "GET /, client: 192.0.2.1, HTTP/1.1""#;
        assert_eq!(probe(&mut m, l).unwrap().1, "203.0.113.65");
    }

    /// Issue 19 item 3: nginx writes the decoded path before its own
    /// `client:` field, so `GET /password%20mismatch,%20client:%20VICTIM,%20x`
    /// (or `limiting requests` in a path) must not blame VICTIM; nor may a
    /// whole line forged through `%0a` in a path (nginx 1.22 writes it raw,
    /// checked with the real server).
    #[test]
    fn nginx_error_path_cannot_frame_a_victim() {
        let mut m = NativeMatcher::new(&["nginx-error"], &[]).unwrap();
        let real = "203.0.113.60";
        for path in [
            "password mismatch, client: 192.0.2.66, x",
            "limiting requests, excess: 1.000 by zone \"one\", client: 192.0.2.66, x",
            "limiting connections by zone \"addr\", client: 192.0.2.66, x",
            "user \"a\": password mismatch, client: 192.0.2.66, x",
        ] {
            let l = format!(
                r#"2024/03/01 10:00:00 [error] 812#812: *7 open() "/var/www/html/{path}" failed (2: No such file or directory), client: {real}, server: _, request: "GET /x HTTP/1.1", host: "h""#
            );
            let got = probe(&mut m, &l);
            assert!(got.is_none(), "{l}: {got:?}");
        }
        // `%0a` in the path: nginx ends the line inside its message.
        let text = format!(
            "2024/03/01 10:00:00 [error] 812#812: *7 open() \"/var/www/html/x\n2024/03/01 10:00:00 [error] 1#1: *1 limiting requests, excess: 1.000 by zone \"one\", client: 192.0.2.66, server: _, referrer: \"\" failed (2: No such file or directory), client: {real}, server: _, request: \"GET /x%0a HTTP/1.1\", host: \"h\""
        );
        for l in text.lines() {
            let got = probe(&mut m, l);
            assert!(got.as_ref().is_none_or(|g| g.1 == real), "{l}: {got:?}");
        }
        // The first line ended as nginx would, then a whole forged line (what
        // the `rule_injection` fuzz target found against a guard that looked
        // for a missing `client:` field).
        let mut m = NativeMatcher::new(&["nginx-error"], &[]).unwrap();
        let text = format!(
            "2024/03/01 10:00:00 [error] 812#812: *7 open() \"/var/www/html/x\" failed, client: 10.0.0.1, server: s\n2024/03/01 10:00:00 [error] 812#812: *1043 user \"root\" was not found in \"/etc/nginx/.htpasswd\", client: 192.0.2.66, server: s\ny\" failed (2: No such file or directory), client: {real}, server: _, request: \"GET /x%0a HTTP/1.1\""
        );
        for l in text.lines() {
            let got = probe(&mut m, l);
            assert!(got.as_ref().is_none_or(|g| g.1 == real), "{l}: {got:?}");
        }
        // A burst of auth failures is read whole: those lines start no guard.
        let mut m = NativeMatcher::new(&["nginx-error"], &[]).unwrap();
        for i in 0..20 {
            let l = format!(
                r#"2024/03/01 10:00:00 [error] 812#812: *{i} user "admin": password mismatch, client: {real}, server: example.org, request: "GET /admin/ HTTP/1.1", host: "example.org""#
            );
            assert_eq!(probe(&mut m, &l).unwrap().1, real, "{l}");
        }
        // Genuine lines with client text after the client field still count
        // (a fresh matcher: the cut line above guards the next 2 KiB).
        let mut m = NativeMatcher::new(&["nginx-error"], &[]).unwrap();
        let l = format!(
            r#"2024/03/01 10:00:00 [error] 812#812: *9 limiting requests, excess: 5.480 by zone "one", client: {real}, server: example.org, request: "GET /, client: 192.0.2.66 HTTP/1.1", host: "example.org", referrer: "http://x/, client: 192.0.2.66""#
        );
        assert_eq!(probe(&mut m, &l).unwrap().1, real);
    }

    /// The guard counts bytes between lines, and a caller may match one line
    /// twice (the engine checks its fast path against the general one in
    /// debug builds): both answers agree, at every distance from a window's
    /// end (found by the `log_lines` fuzz target).
    #[test]
    fn matching_a_line_again_gives_the_same_answer() {
        let open = r#"2024/03/01 10:00:00 [error] 812#812: *7 open() "/var/www/html/x" failed (2: No such file or directory), client: 203.0.113.60, server: _"#;
        let limit = r#"2024/03/01 10:00:00 [error] 812#812: *9 limiting requests, excess: 5.480 by zone "one", client: 203.0.113.61, server: _"#;
        let mut answers = Vec::new();
        for pad in 0..200 {
            let mut m = NativeMatcher::new(&["nginx-error"], &[]).unwrap();
            let mut lines = vec![open.to_string()];
            lines.extend((0..12).map(|_| "x".repeat(150)));
            lines.push("y".repeat(pad));
            lines.push(limit.to_string());
            let mut last = None;
            for l in &lines {
                let a = m.find(l, 0).0.map(|f| f.host());
                let b = m.find(l, 0).0.map(|f| f.host());
                assert_eq!(a, b, "pad {pad}: {l}");
                last = a;
            }
            answers.push(last.is_some());
        }
        // The window closes somewhere in the padding: both sides are seen.
        assert!(
            answers.contains(&true) && answers.contains(&false),
            "{answers:?}"
        );
    }
}
