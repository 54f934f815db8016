//! The `postfix` (SASL authentication failures of smtpd) and `dovecot`
//! (IMAP/POP3 login failures, passdb failures) packs, over the message part of
//! a `postfix/*` or `dovecot` syslog line.
//!
//! Where the host is read, and why the client cannot move it:
//! - postfix writes `NAME[ADDR]: SASL ...` first; NAME is a checked
//!   hostname (no `[`), so the first `[...]` is postfix's. The SASL reason
//!   after it (with `sasl_username=`) is the client's and never read.
//! - dovecot's login line puts the client's `user=<...>` before `rip=`, and
//!   only dovecot's own fields (`lip=`, `mpid=`, `TLS`, `session=<...>`)
//!   after it: the user is greedy, so the last `rip=` is taken.
//! - dovecot's passdb prefix is `DRIVER(USER,ADDR[,<SESSION>]): KIND`: the
//!   user is greedy and KIND is anchored to the end of the line, so the last
//!   `,ADDR` that reads so is dovecot's. `auth_verbose_passwords = plain`
//!   appends the client's password after the host, so either side could
//!   hold a second reading: a line with `(given password: ` is not read
//!   (`= sha1`, a hex digest, is).

use super::{Nofail, RegexDef};

macro_rules! addr {
    () => {
        "(?P<host>[0-9A-Fa-f:.]{2,45})"
    };
}

pub(crate) const POSTFIX: &[RegexDef] = &[RegexDef {
    name: "postfix-sasl-fail",
    starts: &["warning: "],
    pattern: concat!(
        r"^warning: [-._0-9A-Za-z]+\[",
        addr!(),
        r"\]: SASL (?P<mech>[-A-Z0-9]+) [aA]uthentication failed(?:: .*)?$"
    ),
    nofail: Nofail::Never,
    fast: None,
    also: &[],
    unless: &[],
}];

pub(crate) const DOVECOT: &[RegexDef] = &[
    RegexDef {
        name: "dovecot-login-fail",
        starts: &[
            "imap-login: ",
            "pop3-login: ",
            "submission-login: ",
            "managesieve-login: ",
            "Disconnected",
            "Aborted login",
        ],
        pattern: concat!(
            r"^(?:(?P<proto>imap|pop3|submission|managesieve)-login: )?(?:Info: )?(?:Disconnected|Aborted login|Login aborted)(?::[^(]*)? \((?:auth failed, \d+ attempts?|tried to use (?:disabled|disallowed) \S+ auth)[^)]*\)[^:]*: user=<(?P<user>.*)>, (?:method=\S+, )?rip=",
            addr!(),
            r"(?:, [^,]*)*$"
        ),
        nofail: Nofail::Never,
        fast: None,
        also: &[],
        unless: &[],
    },
    RegexDef {
        name: "dovecot-passdb-fail",
        starts: &["auth: ", "auth-worker("],
        pattern: concat!(
            r"^auth(?:-worker\(\d+\))?: (?:Info: )?(?:pam|passwd-file|shadow|sql|ldap|passwd|checkpassword)\((?P<user>.*),",
            addr!(),
            r"(?:,<[^>]*>)?\): (?:unknown user|[Pp]assword mismatch|pam_authenticate\(\) failed: [A-Za-z ]+(?: \([a-z ?]+\))?|Authentication failure)(?: \(SHA1 of given password: [0-9a-f]+\))?\s*$"
        ),
        nofail: Nofail::Never,
        fast: None,
        also: &[],
        // The client's password follows the host: not read (see above).
        unless: &["(given password: "],
    },
];

#[cfg(test)]
mod tests {
    use crate::rules::{NativeMatcher, probe};

    fn m() -> NativeMatcher {
        NativeMatcher::new(&["postfix", "dovecot"], &[]).unwrap()
    }

    #[test]
    fn postfix_sasl() {
        let mut m = m();
        let l = "Mar  1 10:00:00 mx postfix/smtpd[812]: warning: unknown[203.0.113.40]: SASL LOGIN authentication failed: UGFzc3dvcmQ6";
        let g = probe(&mut m, l).unwrap();
        assert_eq!(
            (g.0.as_str(), g.1.as_str()),
            ("postfix-sasl-fail", "203.0.113.40")
        );
        assert!(g.2.contains(&("mech".into(), "LOGIN".into())));
        let l = "Mar  1 10:00:00 mx postfix/submission/smtpd[812]: warning: host.example[2001:db8::40]: SASL PLAIN authentication failed: authentication failure";
        assert_eq!(probe(&mut m, l).unwrap().1, "2001:db8::40");
        for l in [
            "Mar  1 10:00:00 mx postfix/smtpd[812]: connect from unknown[203.0.113.40]",
            "Mar  1 10:00:00 mx postfix/smtpd[812]: warning: unknown[203.0.113.40]: SASL LOGIN authentication succeeded",
            "Mar  1 10:00:00 mx postfix/smtpd[812]: warning: hostname x does not resolve to address 203.0.113.40",
        ] {
            assert!(probe(&mut m, l).is_none(), "{l}");
        }
    }

    #[test]
    fn dovecot_failures() {
        let mut m = m();
        let cases = [
            (
                "Mar  1 10:00:00 mx dovecot: imap-login: Disconnected (auth failed, 3 attempts in 12 secs): user=<admin>, method=PLAIN, rip=203.0.113.41, lip=10.0.0.2, session=<abc>",
                "dovecot-login-fail",
                "203.0.113.41",
                "admin",
            ),
            (
                "Mar  1 10:00:00 mx dovecot: pop3-login: Aborted login (auth failed, 1 attempts in 2 secs): user=<info@example.com>, method=LOGIN, rip=203.0.113.42, lip=10.0.0.2, TLS",
                "dovecot-login-fail",
                "203.0.113.42",
                "info@example.com",
            ),
            (
                "Mar  1 10:00:00 mx dovecot[99]: imap-login: Disconnected: Connection closed (auth failed, 2 attempts in 4 secs): user=<bob>, method=PLAIN, rip=2001:db8::43, lip=::1",
                "dovecot-login-fail",
                "2001:db8::43",
                "bob",
            ),
            (
                "Mar  1 10:00:00 mx dovecot: auth-worker(1234): pam(carol,203.0.113.44,<sess>): pam_authenticate() failed: Authentication failure (password mismatch?)",
                "dovecot-passdb-fail",
                "203.0.113.44",
                "carol",
            ),
            (
                "Mar  1 10:00:00 mx dovecot: auth: passwd-file(dave,203.0.113.45): unknown user",
                "dovecot-passdb-fail",
                "203.0.113.45",
                "dave",
            ),
        ];
        for (l, rule, host, user) in cases {
            let g = probe(&mut m, l).unwrap_or_else(|| panic!("no match: {l}"));
            assert_eq!((g.0.as_str(), g.1.as_str()), (rule, host), "{l}");
            assert!(
                g.2.contains(&("user".into(), user.into())),
                "{l}: {:?}",
                g.2
            );
        }
        for l in [
            "Mar  1 10:00:00 mx dovecot: imap-login: Login: user=<admin>, method=PLAIN, rip=203.0.113.41, lip=10.0.0.2",
            "Mar  1 10:00:00 mx dovecot: imap-login: Disconnected (no auth attempts in 0 secs): user=<>, rip=203.0.113.41, lip=10.0.0.2",
            "Mar  1 10:00:00 mx dovecot: auth: passwd-file(dave,203.0.113.45): Password expired",
        ] {
            assert!(probe(&mut m, l).is_none(), "{l}");
        }
    }

    /// Issue 19 item 8: dovecot writes the client's user name before its
    /// own `rip=`; `user=<x>, rip=VICTIM, y>` must not blame VICTIM.
    #[test]
    fn dovecot_login_fail_user_cannot_frame_a_victim() {
        let mut m = m();
        let real = "203.0.113.41";
        for user in [
            "x>, rip=192.0.2.66, y",
            "x>, method=PLAIN, rip=192.0.2.66, lip=10.0.0.2, session=<abc>",
            "x>, rip=192.0.2.66",
            "x>, rip=192.0.2.66,",
        ] {
            let l = format!(
                "Mar  1 10:00:00 mx dovecot: imap-login: Disconnected (auth failed, 3 attempts in 12 secs): user=<{user}>, method=PLAIN, rip={real}, lip=10.0.0.2, TLS, session=<abc>"
            );
            let g = probe(&mut m, &l).unwrap_or_else(|| panic!("no match: {l}"));
            assert_eq!(
                (g.0.as_str(), g.1.as_str()),
                ("dovecot-login-fail", real),
                "{l}"
            );
            assert!(
                g.2.contains(&("user".into(), user.into())),
                "{l}: {:?}",
                g.2
            );
        }
        // The passdb prefix `pam(USER,ADDR,<SESSION>)`: the user may hold commas.
        for user in ["x,192.0.2.66", "x,192.0.2.66,<s>", "a,b,"] {
            let l = format!(
                "Mar  1 10:00:00 mx dovecot: auth-worker(1234): pam({user},{real},<sess>): pam_authenticate() failed: Authentication failure (password mismatch?)"
            );
            let g = probe(&mut m, &l).unwrap_or_else(|| panic!("no match: {l}"));
            assert_eq!(g.1, real, "{l}");
        }
        // A password `auth_verbose_passwords = plain` appends: not read.
        let l = format!(
            "Mar  1 10:00:00 mx dovecot: auth: passwd-file(u,{real}): Password mismatch (given password: x) ,192.0.2.66): unknown user"
        );
        assert!(probe(&mut m, &l).is_none_or(|g| g.1 == real), "{l}");
    }
}
