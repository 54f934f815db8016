//! The `sshd` pack: every failure kind fail2ban's `sshd` filter knows in its
//! `normal` and `aggressive` modes (written from scratch, not copied), over the
//! message part of an `sshd`/`sshd-session` syslog line (after `error: `,
//! `fatal: ` and `PAM: ` are stripped).
//!
//! Usernames are attacker-controlled: a user field is greedy and the address
//! is anchored to the end of the message, so a username such as
//! `x from 192.0.2.1` cannot make a rule blame someone else.
//! Kinds that log no address (`kex_exchange_identification`, `account is
//! locked`, `Read from socket failed`) need multi-line state and are not rules.
//! Preauth kinds (the `aggressive`/`ddos` modes) are rules of their own, so a
//! scenario chooses whether to count them.

use super::{Caps, METHOD, Nofail, REASON, RegexDef, USER, WHAT};

macro_rules! addr {
    () => {
        "(?P<host>[0-9A-Fa-f:.]{2,45})"
    };
}
macro_rules! tail {
    () => {
        r"(?: port \d+)?(?: ssh\d?)?\s*(?:\[preauth\])?\s*$"
    };
}

pub(crate) const DEFS: &[RegexDef] = &[
    RegexDef {
        name: "sshd-failed-invalid-user",
        starts: &["Failed "],
        pattern: concat!(
            r"^Failed (?P<method>\S+) for invalid user (?P<user>.*) from ",
            addr!(),
            tail!()
        ),
        nofail: Nofail::Never,
        fast: Some(fast_failed_invalid),
        also: &[],
        unless: &[],
    },
    RegexDef {
        // `publickey` failures for real accounts are a client trying its keys
        // (fail2ban's `publickey = nofail`): matched, not counted.
        name: "sshd-failed-password",
        starts: &["Failed "],
        pattern: concat!(
            r"^Failed (?P<method>\S+) for (?P<user>.*) from ",
            addr!(),
            r" port \d+(?: ssh\d?)?(?:: [A-Z0-9-]+ \S+)?\s*$"
        ),
        nofail: Nofail::IfGroup("method", "publickey"),
        fast: Some(fast_failed),
        also: &[],
        unless: &[],
    },
    RegexDef {
        name: "sshd-auth-failure",
        starts: &["Authentication ", "authentication "],
        pattern: concat!(
            r"^[aA]uthentication (?:failure|error|failed) for (?P<user>.*) from ",
            addr!(),
            r"(?: via \S+)?",
            tail!()
        ),
        nofail: Nofail::Never,
        fast: None,
        also: &[],
        unless: &[],
    },
    RegexDef {
        name: "sshd-user-unknown",
        starts: &["User not known"],
        pattern: concat!(
            r"^User not known to the underlying authentication module for (?P<user>.*) from ",
            addr!(),
            tail!()
        ),
        nofail: Nofail::Never,
        fast: None,
        also: &[],
        unless: &[],
    },
    RegexDef {
        name: "sshd-root-login-refused",
        starts: &["ROOT LOGIN REFUSED"],
        pattern: concat!(r"^ROOT LOGIN REFUSED FROM ", addr!(), tail!()),
        nofail: Nofail::Never,
        fast: None,
        also: &[],
        unless: &[],
    },
    RegexDef {
        name: "sshd-invalid-user",
        starts: &[
            "Invalid user ",
            "invalid user ",
            "Illegal user ",
            "illegal user ",
        ],
        pattern: concat!(
            r"^[iI](?:nvalid|llegal) user (?P<user>.*) from ",
            addr!(),
            tail!()
        ),
        nofail: Nofail::Never,
        fast: Some(fast_invalid),
        also: &[],
        unless: &[],
    },
    RegexDef {
        name: "sshd-user-not-allowed",
        starts: &["User "],
        pattern: concat!(
            r"^User (?P<user>.*) from ",
            addr!(),
            r" not allowed because (?P<reason>not listed in AllowUsers|listed in DenyUsers|not in any group|a group is listed in DenyGroups|none of user's groups are listed in AllowGroups)\s*(?:\[preauth\])?\s*$"
        ),
        nofail: Nofail::Never,
        fast: None,
        also: &[],
        unless: &[],
    },
    RegexDef {
        name: "sshd-refused-connect",
        starts: &["refused connect from "],
        // tcp_wrappers: `refused connect from NAME (ADDR)`; NAME (a PTR
        // record, attacker-chosen) has no spaces, the address is last.
        pattern: concat!(r"^refused connect from \S+ \(", addr!(), r"\)\s*$"),
        nofail: Nofail::Never,
        fast: None,
        also: &[],
        unless: &[],
    },
    RegexDef {
        // Code 3 `Auth fail` (normal) and 14 `No supported authentication
        // methods available` (aggressive).
        name: "sshd-disconnect-auth-fail",
        starts: &["Received disconnect from "],
        pattern: concat!(
            r"^Received disconnect from ",
            addr!(),
            // The reason after the code is the client's own text: the host
            // is taken from before it, right after the fixed prefix.
            r"(?: port \d+)?:\s*(?P<code>3|14): (?:.*: Auth fail|No (?:supported )?authentication methods available)\s*(?:\[preauth\])?\s*$"
        ),
        nofail: Nofail::Never,
        fast: None,
        also: &[": Auth fail", "authentication methods available"],
        unless: &[],
    },
    RegexDef {
        name: "sshd-max-auth-attempts",
        starts: &["maximum authentication attempts exceeded for "],
        pattern: concat!(
            r"^maximum authentication attempts exceeded for (?:invalid user )?(?P<user>.*) from ",
            addr!(),
            tail!()
        ),
        nofail: Nofail::Never,
        fast: Some(fast_max_auth),
        also: &[],
        unless: &[],
    },
    RegexDef {
        // `Disconnecting invalid user USER HOST port N: REASON` (OpenSSH's
        // connection id with its log preamble; USER is the client's, raw).
        // `Too many authentication failures` ends the line, so the last
        // host followed by it is sshd's. `Change of username ...: (USER,SVC)
        // -> (USER2,SVC2)` has the client's text on both sides of the host,
        // which no regex can settle: the hand-written parser (always used;
        // this regex is the grammar, a superset) takes a line only when it
        // has exactly one reading, and for `Change ...` only when the
        // preamble's USER is repeated in the reason.
        name: "sshd-too-many-auth",
        starts: &["Disconnecting "],
        pattern: concat!(
            r"^Disconnecting (?:invalid|authenticating) user (?P<user>.*) ",
            addr!(),
            r" port \d+: (?P<reason>Too many authentication failures|Change of username or service not allowed)(?:\s*(?:\[preauth\])?\s*$|: \(.*)"
        ),
        nofail: Nofail::Never,
        fast: Some(fast_too_many_auth),
        also: &[],
        unless: &[],
    },
    RegexDef {
        // PAM's line duplicates sshd's own `Failed password`: matched, not counted.
        name: "sshd-pam-auth-failure",
        starts: &["pam_unix(sshd:auth): authentication failure;"],
        // pam_unix writes `logname= uid= euid= tty= ruser= rhost= user=` in
        // this order: `rhost` is taken at its place after the fixed fields
        // (the first `rhost=`), so a `user=` value cannot bring another.
        pattern: concat!(
            r"^pam_unix\(sshd:auth\): authentication failure;(?:\s+logname=\S*)?(?:\s+uid=\d*)?(?:\s+euid=\d*)?(?:\s+tty=\S*)?(?:\s+ruser=\S*)?\s+rhost=",
            addr!(),
            r"(?:\s+user=(?P<user>\S*))?\s*$"
        ),
        nofail: Nofail::Always,
        fast: Some(fast_pam),
        also: &[],
        unless: &[],
    },
    // Preauth kinds (fail2ban `aggressive`).
    RegexDef {
        name: "sshd-no-ident",
        starts: &["Did not receive identification string from "],
        pattern: concat!(
            r"^Did not receive identification string from ",
            addr!(),
            r"(?: port \d+)?\s*$"
        ),
        nofail: Nofail::Never,
        fast: Some(fast_no_ident),
        also: &[],
        unless: &[],
    },
    RegexDef {
        name: "sshd-bad-protocol",
        starts: &["Bad protocol version identification "],
        pattern: concat!(
            r"^Bad protocol version identification '.*' from ",
            addr!(),
            r"(?: port \d+)?\s*$"
        ),
        nofail: Nofail::Never,
        fast: None,
        also: &[],
        unless: &[],
    },
    RegexDef {
        name: "sshd-banner-invalid",
        starts: &["banner exchange: "],
        pattern: concat!(
            r"^banner exchange: Connection from ",
            addr!(),
            r" port \d+: invalid format\s*(?:\[preauth\])?\s*$"
        ),
        nofail: Nofail::Never,
        fast: Some(fast_banner_invalid),
        also: &[],
        unless: &[],
    },
    RegexDef {
        name: "sshd-negotiate",
        starts: &["Unable to negotiate with "],
        pattern: concat!(
            r"^Unable to negotiate with ",
            addr!(),
            // sshd names an algorithm kind here, in ASCII.
            r" port \d+: no matching (?P<what>[0-9A-Za-z_ ]+?) found(?:\. Their offer: .*)?$"
        ),
        nofail: Nofail::Never,
        fast: Some(fast_negotiate),
        also: &[],
        unless: &[],
    },
    RegexDef {
        // A client that reached authentication as USER and left without
        // logging in (`Disconnected from authenticating user root ADDR port
        // N [preauth]`): a failed login, unlike a bare close (below), which
        // a TCP health check leaves too. USER has no spaces here: the
        // address is the word after it, then port and `[preauth]` end the line.
        name: "sshd-preauth-user-close",
        starts: &[
            "Connection closed by ",
            "Connection reset by ",
            "Disconnected from ",
        ],
        pattern: concat!(
            r"^(?:Connection (?:closed|reset) by|Disconnected from) (?:invalid|authenticating) user (?P<user>\S+) ",
            addr!(),
            r"(?: port \d+)? \[preauth\]\s*$"
        ),
        nofail: Nofail::Never,
        fast: Some(fast_preauth_user_close),
        also: &[],
        unless: &[],
    },
    RegexDef {
        name: "sshd-preauth-close",
        starts: &[
            "Connection closed by ",
            "Connection reset by ",
            "Disconnected from ",
        ],
        pattern: concat!(
            r"^(?:Connection (?:closed|reset) by|Disconnected from) ",
            addr!(),
            r"(?: port \d+)? \[preauth\]\s*$"
        ),
        nofail: Nofail::Never,
        fast: Some(fast_preauth_close),
        also: &[],
        unless: &[],
    },
    RegexDef {
        // RedHat's old `sshd(pam_unix)[PID]: authentication failure; ...
        // rhost=ADDR user=USER` (no `Failed password` line beside it), and
        // its closing `N more authentication failures; ...` (N more attempts
        // of that connection, logged only as this count).
        name: "sshd-pam-old-failure",
        starts: &[
            "authentication failure;",
            "1",
            "2",
            "3",
            "4",
            "5",
            "6",
            "7",
            "8",
            "9",
        ],
        pattern: concat!(
            r"^(?:(?P<repeat>\d{1,3}) more )?authentication failures?;(?:\s+logname=\S*)?(?:\s+uid=\d*)?(?:\s+euid=\d*)?(?:\s+tty=\S*)?(?:\s+ruser=\S*)?\s+rhost=",
            addr!(),
            r"(?:\s+user=(?P<user>\S*))?\s*$"
        ),
        nofail: Nofail::Never,
        fast: None,
        also: &["authentication failure"],
        unless: &[],
    },
];

/// Rules of the sshd pack whose every line is one password attempt; every
/// other sshd rule sums up its connection (`Invalid user`, `maximum
/// authentication attempts exceeded`, `Disconnected from authenticating
/// user`), so a connection counts as many attempts as it has lines of these,
/// and at least one (see [`crate::scenario`]).
pub(crate) const PER_ATTEMPT: &[&str] = &[
    "sshd-failed-password",
    "sshd-failed-invalid-user",
    "sshd-pam-old-failure",
];

/// `pam_unix(SERVICE:auth): authentication failure; ... rhost=ADDR` from any
/// service but sshd (whose PAM line repeats its own `Failed password`):
/// fail2ban's `pam-generic`. Built with the sshd pack.
pub(crate) const PAM: &[RegexDef] = &[RegexDef {
    name: "pam-auth-failure",
    starts: &["pam_unix("],
    pattern: concat!(
        r"^pam_unix\((?P<service>[A-Za-z0-9_.-]{1,32}):auth\): authentication failure;(?:\s+logname=\S*)?(?:\s+uid=\d*)?(?:\s+euid=\d*)?(?:\s+tty=\S*)?(?:\s+ruser=\S*)?\s+rhost=",
        addr!(),
        r"(?:\s+user=(?P<user>\S*))?\s*$"
    ),
    nofail: Nofail::Never,
    fast: None,
    also: &[],
    unless: &[],
}];

// ---- Hand-written equivalents of the hottest patterns (same grammar; the
// `fast_matches_regex` test checks they agree with the regexes).

fn is_host_byte(c: u8) -> bool {
    c.is_ascii_hexdigit() || c == b':' || c == b'.'
}

/// Length of the address-like run at the start of `s`, if 2..=45 bytes long.
fn host_len(s: &str) -> Option<usize> {
    let n = s.bytes().take_while(|&c| is_host_byte(c)).count();
    (2..=45).contains(&n).then_some(n)
}

fn digits(s: &str) -> usize {
    s.bytes().take_while(u8::is_ascii_digit).count()
}

/// `\s*$` (ASCII whitespace; the regexes' `\s` also takes Unicode spaces,
/// which sshd never writes).
fn blank(s: &str) -> bool {
    s.bytes().all(|c| c.is_ascii_whitespace())
}

fn skip_ws(s: &str) -> &str {
    s.trim_start_matches(|c: char| c.is_ascii_whitespace())
}

/// `(?: ssh\d?)?`
fn opt_ssh(s: &str) -> &str {
    match s.strip_prefix(" ssh") {
        Some(r) => r.strip_prefix(|c: char| c.is_ascii_digit()).unwrap_or(r),
        None => s,
    }
}

/// ` port \d+` at the start of `s`: the text after it.
fn port(s: &str) -> Option<&str> {
    let r = s.strip_prefix(" port ")?;
    let d = digits(r);
    (d > 0).then(|| &r[d..])
}

/// The `tail!()` grammar: `(?: port \d+)?(?: ssh\d?)?\s*(?:\[preauth\])?\s*$`.
fn tail(s: &str) -> bool {
    let s = port(s).unwrap_or(s);
    let s = skip_ws(opt_ssh(s));
    blank(s.strip_prefix("[preauth]").unwrap_or(s))
}

/// `failed-password`'s tail: ` port \d+(?: ssh\d?)?(?:: [A-Z0-9-]+ \S+)?\s*$`.
fn failed_tail(s: &str) -> bool {
    let Some(r) = port(s) else {
        return false;
    };
    let mut s = opt_ssh(r);
    if let Some(r) = s.strip_prefix(": ") {
        let k = r
            .bytes()
            .take_while(|&c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'-')
            .count();
        if k > 0 {
            if let Some(r2) = r[k..].strip_prefix(' ') {
                let n = r2.find(char::is_whitespace).unwrap_or(r2.len());
                if n > 0 {
                    s = &r2[n..];
                }
            }
        }
    }
    blank(s)
}

/// `USER from HOST<tail>` with a greedy user: the rightmost ` from ` whose
/// remainder parses wins, as with the regex. `base`: offset of `s` in the message.
fn user_from_host(
    s: &str,
    base: usize,
    tail_ok: fn(&str) -> bool,
) -> Option<((usize, usize), (usize, usize))> {
    let mut end = s.len();
    while let Some(i) = rfind_from(&s.as_bytes()[..end]) {
        let h = i + 6;
        if let Some(n) = host_len(&s[h..]) {
            if tail_ok(&s[h + n..]) {
                return Some(((base, base + i), (base + h, base + h + n)));
            }
        }
        // Candidates starting before `i` (they may overlap this one by a byte).
        end = i + 5;
    }
    None
}

/// The last ` from ` in `b`: `memmem::rfind`, without building a searcher
/// for each short message.
fn rfind_from(b: &[u8]) -> Option<usize> {
    // The `f` of a match is at most 5 bytes before the end.
    let mut e = b.len().checked_sub(4)?;
    while let Some(f) = memchr::memrchr(b'f', &b[..e]) {
        if f > 0 && b[f - 1] == b' ' && b[f + 1..].starts_with(b"rom ") {
            return Some(f - 1);
        }
        e = f;
    }
    None
}

/// `^Failed (?P<method>\S+) for invalid user (?P<user>.*) from HOST<tail>`
fn fast_failed_invalid(m: &str) -> Option<Caps> {
    let r = m.strip_prefix("Failed ")?;
    let me = r.find(char::is_whitespace).unwrap_or(r.len());
    if me == 0 {
        return None;
    }
    let after = r[me..].strip_prefix(" for invalid user ")?;
    let base = m.len() - after.len();
    let (user, host) = user_from_host(after, base, tail)?;
    Some(
        Caps::new(host)
            .field(METHOD, 7, 7 + me)
            .field(USER, user.0, user.1),
    )
}

/// `^Failed (?P<method>\S+) for (?P<user>.*) from HOST<failed_tail>`
fn fast_failed(m: &str) -> Option<Caps> {
    let r = m.strip_prefix("Failed ")?;
    let me = r.find(char::is_whitespace).unwrap_or(r.len());
    if me == 0 {
        return None;
    }
    let after = r[me..].strip_prefix(" for ")?;
    let base = m.len() - after.len();
    let (user, host) = user_from_host(after, base, failed_tail)?;
    Some(
        Caps::new(host)
            .field(METHOD, 7, 7 + me)
            .field(USER, user.0, user.1),
    )
}

/// `^[iI](?:nvalid|llegal) user (?P<user>.*) from HOST<tail>`
fn fast_invalid(m: &str) -> Option<Caps> {
    let b = m.as_bytes();
    if !matches!(b.first(), Some(b'i' | b'I')) {
        return None;
    }
    let after = m[1..]
        .strip_prefix("nvalid user ")
        .or_else(|| m[1..].strip_prefix("llegal user "))?;
    let base = m.len() - after.len();
    let (user, host) = user_from_host(after, base, tail)?;
    Some(Caps::new(host).field(USER, user.0, user.1))
}

/// `^Did not receive identification string from HOST(?: port \d+)?\s*$`
fn fast_no_ident(m: &str) -> Option<Caps> {
    let r = m.strip_prefix("Did not receive identification string from ")?;
    let n = host_len(r)?;
    let rest = &r[n..];
    if !blank(port(rest).unwrap_or(rest)) {
        return None;
    }
    let h = m.len() - r.len();
    Some(Caps::new((h, h + n)))
}

/// OpenSSH's `%.200s` of the log preamble.
const MAX_PREAMBLE: usize = 200;
const TOO_MANY: &str = "Too many authentication failures";
const CHANGE: &str = "Change of username or service not allowed";

/// `sshd-too-many-auth`: `^Disconnecting (?:invalid|authenticating) user
/// USER HOST port \d+: REASON` where REASON is `Too many authentication
/// failures` or `Change of username or service not allowed`, then either the
/// end (`\s*(?:\[preauth\])?\s*$`) or `: (USER,` (sshd repeats the
/// preamble's user there; its `%.100s` may cut the reason inside it). Every
/// split of the text into USER and HOST is tried: the line is taken only if
/// exactly one reads so, since the client writes both USER and, in
/// `Change ...`, the text after the host.
fn fast_too_many_auth(m: &str) -> Option<Caps> {
    let r = m.strip_prefix("Disconnecting ")?;
    let r = r
        .strip_prefix("invalid user ")
        .or_else(|| r.strip_prefix("authenticating user "))?;
    let base = m.len() - r.len();
    let mut found: Option<Caps> = None;
    // sshd cuts its log preamble (`invalid user USER`) at 200 bytes, so the
    // host starts within them: that bounds the work on a long line.
    for i in memchr::memchr_iter(b' ', &r.as_bytes()[..r.len().min(MAX_PREAMBLE)]) {
        let h = i + 1;
        let Some(n) = host_len(&r[h..]) else {
            continue;
        };
        let Some(rest) = port(&r[h + n..]).and_then(|x| x.strip_prefix(": ")) else {
            continue;
        };
        let reason_at = m.len() - rest.len();
        let (reason, after) = if let Some(a) = rest.strip_prefix(TOO_MANY) {
            (TOO_MANY.len(), a)
        } else if let Some(a) = rest.strip_prefix(CHANGE) {
            (CHANGE.len(), a)
        } else {
            continue;
        };
        let user = &r[..i];
        let ok = tail_preauth(after)
            || after.strip_prefix(": (").is_some_and(|x| {
                // `(USER,`, or USER cut short where the reason reaches 100 bytes.
                let cut = trim_preauth(x);
                x.strip_prefix(user).is_some_and(|y| y.starts_with(','))
                    || (rest.len() - (x.len() - cut.len()) == 100
                        && !cut.is_empty()
                        && user.starts_with(cut))
            });
        if !ok {
            continue;
        }
        if found.is_some() {
            // Two readings: the client wrote one of them.
            return None;
        }
        found = Some(
            Caps::new((base + h, base + h + n))
                .field(USER, base, base + i)
                .field(REASON, reason_at, reason_at + reason),
        );
    }
    found
}

/// `\s*(?:\[preauth\])?\s*$`
fn tail_preauth(s: &str) -> bool {
    let s = skip_ws(s);
    blank(s.strip_prefix("[preauth]").unwrap_or(s))
}

/// `s` without a trailing `\s*(?:\[preauth\])?\s*`.
fn trim_preauth(s: &str) -> &str {
    let t = s.trim_end_matches(|c: char| c.is_ascii_whitespace());
    t.strip_suffix("[preauth]")
        .unwrap_or(t)
        .trim_end_matches(|c: char| c.is_ascii_whitespace())
}

/// `^Unable to negotiate with HOST port \d+: no matching (?P<what>[0-9A-Za-z_ ]+?) found(?:\. Their offer: .*)?$`
fn fast_negotiate(m: &str) -> Option<Caps> {
    let r = m.strip_prefix("Unable to negotiate with ")?;
    let n = host_len(r)?;
    let q = port(&r[n..])?.strip_prefix(": no matching ")?;
    let w = m.len() - q.len();
    let h = m.len() - r.len();
    // The lazy group: the first length at which ` found` follows.
    for (i, c) in q.bytes().enumerate() {
        if !(c.is_ascii_alphanumeric() || c == b'_' || c == b' ') {
            return None;
        }
        let end = q[i + 1..].strip_prefix(" found");
        if end.is_some_and(|e| e.is_empty() || e.starts_with(". Their offer: ")) {
            return Some(Caps::new((h, h + n)).field(WHAT, w, w + i + 1));
        }
    }
    None
}

/// `^maximum authentication attempts exceeded for (?:invalid user )?(?P<user>.*) from HOST<tail>`
fn fast_max_auth(m: &str) -> Option<Caps> {
    let r = m.strip_prefix("maximum authentication attempts exceeded for ")?;
    // The optional prefix is tried first, then the user takes it.
    let (user, host) = r
        .strip_prefix("invalid user ")
        .and_then(|a| user_from_host(a, m.len() - a.len(), tail))
        .or_else(|| user_from_host(r, m.len() - r.len(), tail))?;
    Some(Caps::new(host).field(USER, user.0, user.1))
}

/// `^banner exchange: Connection from HOST port \d+: invalid format\s*(?:\[preauth\])?\s*$`
fn fast_banner_invalid(m: &str) -> Option<Caps> {
    let r = m.strip_prefix("banner exchange: Connection from ")?;
    let n = host_len(r)?;
    if !port(&r[n..])?
        .strip_prefix(": invalid format")
        .is_some_and(tail_preauth)
    {
        return None;
    }
    let h = m.len() - r.len();
    Some(Caps::new((h, h + n)))
}

/// `^(?:Connection (?:closed|reset) by|Disconnected from)(?: (?:invalid|authenticating) user (?P<user>\S+))? HOST(?: port \d+)? \[preauth\]\s*$`
/// `(?:Connection (?:closed|reset) by|Disconnected from)`: what follows.
fn preauth_close_head(m: &str) -> Option<&str> {
    m.strip_prefix("Connection closed by")
        .or_else(|| m.strip_prefix("Connection reset by"))
        .or_else(|| m.strip_prefix("Disconnected from"))
}

/// `(?: port \d+)? \[preauth\]\s*$`
fn preauth_rest(s: &str) -> bool {
    let s = port(s).unwrap_or(s);
    s.strip_prefix(" [preauth]").is_some_and(blank)
}

/// `^(?:Connection (?:closed|reset) by|Disconnected from) (?:invalid|authenticating) user (?P<user>\S+) HOST(?: port \d+)? \[preauth\]\s*$`
fn fast_preauth_user_close(m: &str) -> Option<Caps> {
    let r = preauth_close_head(m)?;
    let at = |s: &str| m.len() - s.len();
    let u = r
        .strip_prefix(" invalid user ")
        .or_else(|| r.strip_prefix(" authenticating user "))?;
    let ue = u.find(char::is_whitespace).unwrap_or(u.len());
    if ue == 0 {
        return None;
    }
    let h = u[ue..].strip_prefix(' ')?;
    let n = host_len(h)?;
    if !preauth_rest(&h[n..]) {
        return None;
    }
    let (us, hs) = (at(u), at(h));
    Some(Caps::new((hs, hs + n)).field(USER, us, us + ue))
}

/// `^(?:Connection (?:closed|reset) by|Disconnected from) HOST(?: port \d+)? \[preauth\]\s*$`
fn fast_preauth_close(m: &str) -> Option<Caps> {
    let r = preauth_close_head(m)?;
    let h = r.strip_prefix(' ')?;
    let n = host_len(h)?;
    if !preauth_rest(&h[n..]) {
        return None;
    }
    let hs = m.len() - h.len();
    Some(Caps::new((hs, hs + n)))
}

/// `^pam_unix\(sshd:auth\): authentication failure;(?:\s+logname=\S*)?(?:\s+uid=\d*)?(?:\s+euid=\d*)?(?:\s+tty=\S*)?(?:\s+ruser=\S*)?\s+rhost=HOST(?:\s+user=(?P<user>\S*))?\s*$`
fn fast_pam(m: &str) -> Option<Caps> {
    let mut s = m.strip_prefix("pam_unix(sshd:auth): authentication failure;")?;
    // Each optional field in pam_unix's order: `\s+KEY=VALUE`.
    for (key, digits_only) in [
        ("logname=", false),
        ("uid=", true),
        ("euid=", true),
        ("tty=", false),
        ("ruser=", false),
    ] {
        let w = s.bytes().take_while(u8::is_ascii_whitespace).count();
        if let Some(v) = s[w..].strip_prefix(key).filter(|_| w > 0) {
            let n = if digits_only {
                digits(v)
            } else {
                v.find(char::is_whitespace).unwrap_or(v.len())
            };
            s = &v[n..];
        }
    }
    let w = s.bytes().take_while(u8::is_ascii_whitespace).count();
    let h = s[w..].strip_prefix("rhost=").filter(|_| w > 0)?;
    let n = host_len(h)?;
    let rest = &h[n..];
    let hs = m.len() - h.len();
    if blank(rest) {
        return Some(Caps::new((hs, hs + n)));
    }
    let w2 = rest.bytes().take_while(u8::is_ascii_whitespace).count();
    let u = rest[w2..].strip_prefix("user=").filter(|_| w2 > 0)?;
    let ue = u.find(char::is_whitespace).unwrap_or(u.len());
    if !blank(&u[ue..]) {
        return None;
    }
    let us = m.len() - u.len();
    Some(Caps::new((hs, hs + n)).field(USER, us, us + ue))
}

#[cfg(test)]
mod tests {
    /// `rfind_from` is `memmem::rfind` for ` from `, on strings made of
    /// its letters and near misses.
    #[test]
    fn rfind_from_is_memmem_rfind() {
        let parts = [" from ", "from ", " from", "f", " ", "rom ", "x", " ffrom "];
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let s: String = (0..(x % 7))
                .map(|i| parts[(x >> (3 * i + 8)) as usize % 8])
                .collect();
            assert_eq!(
                super::rfind_from(s.as_bytes()),
                memchr::memmem::rfind(s.as_bytes(), b" from "),
                "{s:?}"
            );
        }
    }

    use crate::rules::{NativeMatcher, probe};

    fn m() -> NativeMatcher {
        NativeMatcher::new(&["sshd"], &[]).unwrap()
    }

    fn check(msg: &str, rule: &str, host: &str, fields: &[(&str, &str)]) {
        let line = format!("Mar  1 10:00:00 web1 sshd[4242]: {msg}");
        let got = probe(&mut m(), &line).unwrap_or_else(|| panic!("no match: {line}"));
        assert_eq!((got.0.as_str(), got.1.as_str()), (rule, host), "{line}");
        for (k, v) in fields {
            assert!(
                got.2.iter().any(|(n, x)| n == k && x == v),
                "{line}: {k}={v} not in {:?}",
                got.2
            );
        }
    }

    fn no(msg: &str) {
        let line = format!("Mar  1 10:00:00 web1 sshd[4242]: {msg}");
        let got = probe(&mut m(), &line);
        assert!(got.is_none(), "{line} matched {got:?}");
    }

    #[test]
    fn failed_password_kinds() {
        check(
            "Failed password for root from 198.51.100.7 port 51122 ssh2",
            "sshd-failed-password",
            "198.51.100.7",
            &[("user", "root"), ("method", "password")],
        );
        check(
            "Failed password for invalid user oracle from 2001:db8::5 port 40022 ssh2",
            "sshd-failed-invalid-user",
            "2001:db8::5",
            &[("user", "oracle")],
        );
        check(
            "Failed keyboard-interactive/pam for git from 198.51.100.7 port 1 ssh2",
            "sshd-failed-password",
            "198.51.100.7",
            &[("user", "git")],
        );
        check(
            "Failed none for invalid user  from 198.51.100.8 port 22 ssh2",
            "sshd-failed-invalid-user",
            "198.51.100.8",
            &[("user", "")],
        );
        // A username that tries to blame someone else.
        check(
            "Failed password for invalid user x from 192.0.2.1 port 22 ssh2 from 198.51.100.9 port 5 ssh2",
            "sshd-failed-invalid-user",
            "198.51.100.9",
            &[],
        );
        check(
            "error: PAM: Authentication failure for root from 198.51.100.3",
            "sshd-auth-failure",
            "198.51.100.3",
            &[("user", "root")],
        );
        check(
            "error: PAM: User not known to the underlying authentication module for bob from 198.51.100.3",
            "sshd-user-unknown",
            "198.51.100.3",
            &[("user", "bob")],
        );
        check(
            "ROOT LOGIN REFUSED FROM 198.51.100.4",
            "sshd-root-login-refused",
            "198.51.100.4",
            &[],
        );
        check(
            "error: maximum authentication attempts exceeded for root from 198.51.100.5 port 4 ssh2 [preauth]",
            "sshd-max-auth-attempts",
            "198.51.100.5",
            &[("user", "root")],
        );
        check(
            "error: maximum authentication attempts exceeded for invalid user admin from 198.51.100.5 port 4 ssh2 [preauth]",
            "sshd-max-auth-attempts",
            "198.51.100.5",
            &[("user", "admin")],
        );
        check(
            "Disconnecting authenticating user root 198.51.100.6 port 9: Too many authentication failures [preauth]",
            "sshd-too-many-auth",
            "198.51.100.6",
            &[],
        );
        check(
            "Disconnecting invalid user ftp 198.51.100.6 port 9: Change of username or service not allowed: (ftp,ssh-connection) -> (x,ssh-connection) [preauth]",
            "sshd-too-many-auth",
            "198.51.100.6",
            &[],
        );
        check(
            "Received disconnect from 198.51.100.2 port 7:3: com.jcraft.jsch.JSchException: Auth fail [preauth]",
            "sshd-disconnect-auth-fail",
            "198.51.100.2",
            &[("code", "3")],
        );
        check(
            "Received disconnect from 198.51.100.2 port 7:14: No supported authentication methods available [preauth]",
            "sshd-disconnect-auth-fail",
            "198.51.100.2",
            &[("code", "14")],
        );
    }

    #[test]
    fn publickey_for_real_user_is_nofail() {
        let line = "Mar  1 10:00:00 h sshd[1]: Failed publickey for alice from 198.51.100.7 port 5 ssh2: ED25519 SHA256:abc";
        let got = probe(&mut m(), line).unwrap();
        assert_eq!(got.0, "sshd-failed-password");
        assert!(got.3, "publickey must be nofail");
        let got = probe(
            &mut m(),
            "Mar  1 10:00:00 h sshd[1]: Failed password for alice from 198.51.100.7 port 5 ssh2",
        )
        .unwrap();
        assert!(!got.3);
    }

    #[test]
    fn user_kinds() {
        check(
            "Invalid user admin from 203.0.113.9 port 40000",
            "sshd-invalid-user",
            "203.0.113.9",
            &[("user", "admin")],
        );
        check(
            "Invalid user  from 203.0.113.9",
            "sshd-invalid-user",
            "203.0.113.9",
            &[],
        );
        check(
            "Illegal user test from 203.0.113.9",
            "sshd-invalid-user",
            "203.0.113.9",
            &[("user", "test")],
        );
        check(
            "User bob from 203.0.113.10 not allowed because not listed in AllowUsers",
            "sshd-user-not-allowed",
            "203.0.113.10",
            &[("user", "bob")],
        );
        check(
            "User bob from 203.0.113.10 not allowed because listed in DenyUsers",
            "sshd-user-not-allowed",
            "203.0.113.10",
            &[],
        );
        check(
            "User bob from 203.0.113.10 not allowed because not in any group",
            "sshd-user-not-allowed",
            "203.0.113.10",
            &[],
        );
        check(
            "User bob from 203.0.113.10 not allowed because a group is listed in DenyGroups",
            "sshd-user-not-allowed",
            "203.0.113.10",
            &[],
        );
        check(
            "User bob from 203.0.113.10 not allowed because none of user's groups are listed in AllowGroups",
            "sshd-user-not-allowed",
            "203.0.113.10",
            &[],
        );
        check(
            "refused connect from evil.example (203.0.113.11)",
            "sshd-refused-connect",
            "203.0.113.11",
            &[],
        );
        check(
            "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=203.0.113.12  user=root",
            "sshd-pam-auth-failure",
            "203.0.113.12",
            &[("user", "root")],
        );
    }

    #[test]
    fn preauth_kinds() {
        check(
            "Did not receive identification string from 192.0.2.50 port 3333",
            "sshd-no-ident",
            "192.0.2.50",
            &[],
        );
        check(
            "Bad protocol version identification 'GET / HTTP/1.1' from 192.0.2.51 port 1",
            "sshd-bad-protocol",
            "192.0.2.51",
            &[],
        );
        check(
            "banner exchange: Connection from 192.0.2.52 port 2: invalid format",
            "sshd-banner-invalid",
            "192.0.2.52",
            &[],
        );
        check(
            "Unable to negotiate with 192.0.2.53 port 3: no matching host key type found. Their offer: ssh-rsa,ssh-dss [preauth]",
            "sshd-negotiate",
            "192.0.2.53",
            &[("what", "host key type")],
        );
        check(
            "Connection closed by 192.0.2.54 port 4 [preauth]",
            "sshd-preauth-close",
            "192.0.2.54",
            &[],
        );
        check(
            "Connection reset by authenticating user root 192.0.2.55 port 5 [preauth]",
            "sshd-preauth-user-close",
            "192.0.2.55",
            &[("user", "root")],
        );
        check(
            "Disconnected from invalid user x 192.0.2.56 port 6 [preauth]",
            "sshd-preauth-user-close",
            "192.0.2.56",
            &[("user", "x")],
        );
    }

    #[test]
    fn benign_and_near_misses_do_not_match() {
        no("Accepted publickey for alice from 10.0.0.5 port 5 ssh2: ED25519 SHA256:abc");
        no("Accepted password for alice from 10.0.0.5 port 5 ssh2");
        no("pam_unix(sshd:session): session opened for user alice(uid=1000) by (uid=0)");
        no("Received disconnect from 10.0.0.5 port 5:11: disconnected by user");
        no("Disconnected from user alice 10.0.0.5 port 5");
        no("Connection closed by 10.0.0.5 port 5");
        no("Server listening on 0.0.0.0 port 22.");
        no(
            "error: kex_exchange_identification: client sent invalid protocol identifier \"GET / HTTP/1.1\"",
        );
        no("Failed password for root from not-an-ip port 22 ssh2");
        no("Invalid user admin from 203.0.113.9 port 40000 extra words");
        no("User bob from 203.0.113.10 not allowed because the moon is full");
        // Not sshd at all.
        let got = probe(
            &mut m(),
            "Mar  1 10:00:00 h CRON[5]: Invalid user admin from 203.0.113.9",
        );
        assert!(got.is_none());
    }

    #[test]
    fn fast_matches_regex() {
        let mut fast = m();
        let mut slow = m().regex_only();
        let (mut lines, _) = crate::r#gen::sshd(40_000, 30, 3);
        for msg in [
            "Failed password for invalid user x from 192.0.2.1 port 22 ssh2 from 198.51.100.9 port 5 ssh2",
            "Failed password for x from 192.0.2.1 port 22 ssh2 from 198.51.100.9 port 5 ssh2",
            "Failed password for a from from 192.0.2.1 port 22 ssh2",
            "Failed password for  from 192.0.2.1 port 22",
            "Failed password for root from 192.0.2.1 port 22 ssh2: RSA SHA256:xyz",
            "Failed password for root from 192.0.2.1 port 22 ssh2: RSA SHA256:xyz trailing",
            "Failed password for root from 192.0.2.1 port x ssh2",
            "Failed publickey for invalid user git from 192.0.2.1 port 22 ssh2 [preauth]",
            "Failed password for invalid user from 192.0.2.1 port 22 ssh22",
            "Invalid user from from 192.0.2.1 from 192.0.2.2 port 9",
            "Invalid user a b c from 192.0.2.1 [preauth]",
            "Invalid user a from 192.0.2.1 port",
            "invalid user a from 1234567890123456789012345678901234567890123456 port 2",
            "Illegal user x from ::1",
            "Connection closed by invalid user  192.0.2.1 port 1 [preauth]",
            "Connection closed by authenticating user root 192.0.2.1 [preauth]  ",
            "Connection closed by 192.0.2.1 port 1 [preauth] x",
            "Connection reset by abc port 1 [preauth]",
            "Disconnected from authenticating user root 192.0.2.1 port 1 [preauth]",
            "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=192.0.2.1",
            "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=192.0.2.1 user=root extra",
            "pam_unix(sshd:auth): authentication failure; ruser=rhost=192.0.2.9 rhost=192.0.2.1  user=a",
            "pam_unix(sshd:auth): authentication failure; rhost=host.example user=a",
            "Did not receive identification string from 192.0.2.1 port 22",
            "Did not receive identification string from 2001:db8::1",
            "Did not receive identification string from 1",
            "Did not receive identification string from ",
            "Did not receive identification string from ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.2551",
            "Did not receive identification string from ::ffff:1.2.3.4x",
            "banner exchange: Connection from 192.0.2.1 port 22: invalid format",
            "banner exchange: Connection from 192.0.2.1 port 22: invalid format and more",
            "banner exchange: Connection from 192.0.2.1 port : invalid format",
            "banner exchange: Connection from 192.0.2.1port 22: invalid format",
            "banner exchange: Connection from 192.0.2.1x port 22: invalid format",
            "banner exchange: Connection from ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.2551 port 2: invalid format",
            "banner exchange: Connection from ::1 port 22: invalid form",
            "Unable to negotiate with 192.0.2.1 port 22: no matching host key type found. Their offer: x",
            "Unable to negotiate with 192.0.2.1 port 22: no matching  found found",
            "Unable to negotiate with 192.0.2.1 port 22: no matching x found",
            "Unable to negotiate with 192.0.2.1 port 22: no matching found",
            "Unable to negotiate with 192.0.2.1 port 22: no matching cipher-x found",
            "Unable to negotiate with 192.0.2.1 port 22: no matching ciphér found",
            "Unable to negotiate with 192.0.2.1 port 22: no matching MAC foun",
            "Unable to negotiate with 192.0.2.1 port : no matching MAC found",
            "maximum authentication attempts exceeded for root from 192.0.2.1 port 22 ssh2 [preauth]",
            "maximum authentication attempts exceeded for invalid user bob from 192.0.2.1 port 22 ssh2 [preauth]",
            "maximum authentication attempts exceeded for invalid user from 192.0.2.1 port 22 ssh2",
            "maximum authentication attempts exceeded for invalid user a from b from 192.0.2.1",
            "maximum authentication attempts exceeded for  from 192.0.2.1 x",
        ] {
            lines.push(format!("Mar  1 00:00:00 h sshd[1]: {msg}"));
        }
        let norm = |g: Option<crate::rules::Probed>| {
            g.map(|(r, h, mut f, n)| {
                f.sort();
                (r, h, f, n)
            })
        };
        for l in &lines {
            assert_eq!(norm(probe(&mut fast, l)), norm(probe(&mut slow, l)), "{l}");
        }
    }

    #[test]
    fn sshd_session_and_iso_prefix() {
        let got = probe(&mut m(), "2024-03-01T10:00:00.123456+00:00 web1 sshd-session[77]: Invalid user a from 203.0.113.1 port 3").unwrap();
        assert_eq!(got.0, "sshd-invalid-user");
    }

    /// Issue 19 item 2: OpenSSH writes the client's user name raw into
    /// `Disconnecting invalid user USER HOST port N: ...`; a user name that
    /// carries a whole `VICTIM port 1: Too many authentication failures`
    /// must not make the rule blame VICTIM.
    #[test]
    fn sshd_too_many_auth_user_name_cannot_frame_a_victim() {
        let real = "198.51.100.6";
        for user in [
            "x 192.0.2.66 port 1: Too many authentication failures",
            "x 192.0.2.66 port 1: Too many authentication failures [preauth]",
            "x 192.0.2.66 port 1: Change of username or service not allowed: (x,ssh-connection) -> (y,ssh-connection)",
            "x 192.0.2.66 port 1: Change of username or service not allowed: (x,y",
        ] {
            for reason in [
                "Too many authentication failures [preauth]".to_string(),
                format!(
                    "Change of username or service not allowed: ({user},ssh-connection) -> (root,ssh-connection) [preauth]"
                ),
            ] {
                let line = format!(
                    "Mar  1 10:00:00 web1 sshd[4242]: Disconnecting invalid user {user} {real} port 22: {reason}"
                );
                let got = probe(&mut m(), &line);
                assert!(got.as_ref().is_none_or(|g| g.1 == real), "{line}: {got:?}");
            }
        }
        // The client also writes the text after the host in `Change ...`:
        // a new user name that ends where sshd's `%.100s` cuts the reason.
        let reason = "Change of username or service not allowed: (a,ssh-connection) -> (b 192.0.2.66 port 1: Too many authentication failures";
        let line = format!(
            "Mar  1 10:00:00 web1 sshd[4242]: Disconnecting invalid user a {real} port 22: {reason} [preauth]"
        );
        let got = probe(&mut m(), &line);
        assert!(got.as_ref().is_none_or(|g| g.1 == real), "{line}: {got:?}");
        // Genuine lines still count, with long and spaced user names.
        check(
            &format!(
                "Disconnecting invalid user a b c {real} port 9: Too many authentication failures [preauth]"
            ),
            "sshd-too-many-auth",
            real,
            &[
                ("user", "a b c"),
                ("reason", "Too many authentication failures"),
            ],
        );
        let long = "u".repeat(60);
        let cut =
            &format!("Change of username or service not allowed: ({long},ssh-connection) -> (x,y)")
                [..100];
        check(
            &format!("Disconnecting invalid user {long} {real} port 9: {cut} [preauth]"),
            "sshd-too-many-auth",
            real,
            &[("user", &long)],
        );
    }

    /// A `user=` value with its own `rhost=` cannot move pam_unix's host.
    #[test]
    fn pam_user_field_cannot_frame_a_victim() {
        for tail in [" user=x rhost=192.0.2.66", " user=root", ""] {
            let line = format!(
                "Mar  1 10:00:00 h sshd[1]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=198.51.100.6 {tail}"
            );
            let got = probe(&mut m(), &line);
            assert!(
                got.as_ref().is_none_or(|g| g.1 == "198.51.100.6"),
                "{line}: {got:?}"
            );
        }
    }
}
