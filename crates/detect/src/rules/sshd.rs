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

use super::{Nofail, RegexDef};

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
        pattern: concat!(r"^Failed (?P<method>\S+) for invalid user (?P<user>.*) from ", addr!(), tail!()),
        nofail: Nofail::Never,
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
    },
    RegexDef {
        name: "sshd-root-login-refused",
        starts: &["ROOT LOGIN REFUSED"],
        pattern: concat!(r"^ROOT LOGIN REFUSED FROM ", addr!(), r"(?:\s|$)"),
        nofail: Nofail::Never,
    },
    RegexDef {
        name: "sshd-invalid-user",
        starts: &["Invalid user ", "invalid user ", "Illegal user ", "illegal user "],
        pattern: concat!(r"^[iI](?:nvalid|llegal) user (?P<user>.*) from ", addr!(), tail!()),
        nofail: Nofail::Never,
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
    },
    RegexDef {
        name: "sshd-refused-connect",
        starts: &["refused connect from "],
        pattern: concat!(r"^refused connect from \S+ \(", addr!(), r"\)"),
        nofail: Nofail::Never,
    },
    RegexDef {
        // Code 3 `Auth fail` (normal) and 14 `No supported authentication
        // methods available` (aggressive).
        name: "sshd-disconnect-auth-fail",
        starts: &["Received disconnect from "],
        pattern: concat!(
            r"^Received disconnect from ",
            addr!(),
            r"(?: port \d+)?:\s*(?P<code>3|14): (?:.*: Auth fail|No (?:supported )?authentication methods available)"
        ),
        nofail: Nofail::Never,
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
    },
    RegexDef {
        name: "sshd-too-many-auth",
        starts: &["Disconnecting "],
        pattern: concat!(
            r"^Disconnecting (?:invalid|authenticating) user (?P<user>\S+) ",
            addr!(),
            r" port \d+: (?P<reason>Too many authentication failures|Change of username or service not allowed)"
        ),
        nofail: Nofail::Never,
    },
    RegexDef {
        // PAM's line duplicates sshd's own `Failed password`: matched, not counted.
        name: "sshd-pam-auth-failure",
        starts: &["pam_unix(sshd:auth): authentication failure;"],
        pattern: concat!(
            r"^pam_unix\(sshd:auth\): authentication failure;(?:\s+\w+=\S*)*?\s+rhost=",
            addr!(),
            r"(?:\s+user=(?P<user>\S*))?\s*$"
        ),
        nofail: Nofail::Always,
    },
    // Preauth kinds (fail2ban `aggressive`).
    RegexDef {
        name: "sshd-no-ident",
        starts: &["Did not receive identification string from "],
        pattern: concat!(r"^Did not receive identification string from ", addr!()),
        nofail: Nofail::Never,
    },
    RegexDef {
        name: "sshd-bad-protocol",
        starts: &["Bad protocol version identification "],
        pattern: concat!(r"^Bad protocol version identification '.*' from ", addr!(), r"(?: port \d+)?\s*$"),
        nofail: Nofail::Never,
    },
    RegexDef {
        name: "sshd-banner-invalid",
        starts: &["banner exchange: "],
        pattern: concat!(r"^banner exchange: Connection from ", addr!(), r" port \d+: invalid format"),
        nofail: Nofail::Never,
    },
    RegexDef {
        name: "sshd-negotiate",
        starts: &["Unable to negotiate with "],
        pattern: concat!(r"^Unable to negotiate with ", addr!(), r" port \d+: no matching (?P<what>[\w ]+?) found"),
        nofail: Nofail::Never,
    },
    RegexDef {
        name: "sshd-preauth-close",
        starts: &["Connection closed by ", "Connection reset by ", "Disconnected from "],
        pattern: concat!(
            r"^(?:Connection (?:closed|reset) by|Disconnected from)(?: (?:invalid|authenticating) user (?P<user>\S+))? ",
            addr!(),
            r"(?: port \d+)? \[preauth\]\s*$"
        ),
        nofail: Nofail::Never,
    },
];

#[cfg(test)]
mod tests {
    use crate::rules::{NativeMatcher, probe};

    fn m() -> NativeMatcher {
        NativeMatcher::new(&["sshd"], &[]).unwrap()
    }

    fn check(msg: &str, rule: &str, host: &str, fields: &[(&str, &str)]) {
        let line = format!("Mar  1 10:00:00 web1 sshd[4242]: {msg}");
        let got = probe(&mut m(), &line).unwrap_or_else(|| panic!("no match: {line}"));
        assert_eq!((got.0.as_str(), got.1.as_str()), (rule, host), "{line}");
        for (k, v) in fields {
            assert!(got.2.iter().any(|(n, x)| n == k && x == v), "{line}: {k}={v} not in {:?}", got.2);
        }
    }

    fn no(msg: &str) {
        let line = format!("Mar  1 10:00:00 web1 sshd[4242]: {msg}");
        let got = probe(&mut m(), &line);
        assert!(got.is_none(), "{line} matched {got:?}");
    }

    #[test]
    fn failed_password_kinds() {
        check("Failed password for root from 198.51.100.7 port 51122 ssh2", "sshd-failed-password", "198.51.100.7", &[("user", "root"), ("method", "password")]);
        check("Failed password for invalid user oracle from 2001:db8::5 port 40022 ssh2", "sshd-failed-invalid-user", "2001:db8::5", &[("user", "oracle")]);
        check("Failed keyboard-interactive/pam for git from 198.51.100.7 port 1 ssh2", "sshd-failed-password", "198.51.100.7", &[("user", "git")]);
        check("Failed none for invalid user  from 198.51.100.8 port 22 ssh2", "sshd-failed-invalid-user", "198.51.100.8", &[("user", "")]);
        // A username that tries to blame someone else.
        check("Failed password for invalid user x from 192.0.2.1 port 22 ssh2 from 198.51.100.9 port 5 ssh2", "sshd-failed-invalid-user", "198.51.100.9", &[]);
        check("error: PAM: Authentication failure for root from 198.51.100.3", "sshd-auth-failure", "198.51.100.3", &[("user", "root")]);
        check("error: PAM: User not known to the underlying authentication module for bob from 198.51.100.3", "sshd-user-unknown", "198.51.100.3", &[("user", "bob")]);
        check("ROOT LOGIN REFUSED FROM 198.51.100.4", "sshd-root-login-refused", "198.51.100.4", &[]);
        check("error: maximum authentication attempts exceeded for root from 198.51.100.5 port 4 ssh2 [preauth]", "sshd-max-auth-attempts", "198.51.100.5", &[("user", "root")]);
        check("error: maximum authentication attempts exceeded for invalid user admin from 198.51.100.5 port 4 ssh2 [preauth]", "sshd-max-auth-attempts", "198.51.100.5", &[("user", "admin")]);
        check("Disconnecting authenticating user root 198.51.100.6 port 9: Too many authentication failures [preauth]", "sshd-too-many-auth", "198.51.100.6", &[]);
        check("Disconnecting invalid user ftp 198.51.100.6 port 9: Change of username or service not allowed: (ftp,ssh-connection) -> (x,ssh-connection) [preauth]", "sshd-too-many-auth", "198.51.100.6", &[]);
        check("Received disconnect from 198.51.100.2 port 7:3: com.jcraft.jsch.JSchException: Auth fail [preauth]", "sshd-disconnect-auth-fail", "198.51.100.2", &[("code", "3")]);
        check("Received disconnect from 198.51.100.2 port 7:14: No supported authentication methods available [preauth]", "sshd-disconnect-auth-fail", "198.51.100.2", &[("code", "14")]);
    }

    #[test]
    fn publickey_for_real_user_is_nofail() {
        let line = "Mar  1 10:00:00 h sshd[1]: Failed publickey for alice from 198.51.100.7 port 5 ssh2: ED25519 SHA256:abc";
        let got = probe(&mut m(), line).unwrap();
        assert_eq!(got.0, "sshd-failed-password");
        assert!(got.3, "publickey must be nofail");
        let got = probe(&mut m(), "Mar  1 10:00:00 h sshd[1]: Failed password for alice from 198.51.100.7 port 5 ssh2").unwrap();
        assert!(!got.3);
    }

    #[test]
    fn user_kinds() {
        check("Invalid user admin from 203.0.113.9 port 40000", "sshd-invalid-user", "203.0.113.9", &[("user", "admin")]);
        check("Invalid user  from 203.0.113.9", "sshd-invalid-user", "203.0.113.9", &[]);
        check("Illegal user test from 203.0.113.9", "sshd-invalid-user", "203.0.113.9", &[("user", "test")]);
        check("User bob from 203.0.113.10 not allowed because not listed in AllowUsers", "sshd-user-not-allowed", "203.0.113.10", &[("user", "bob")]);
        check("User bob from 203.0.113.10 not allowed because listed in DenyUsers", "sshd-user-not-allowed", "203.0.113.10", &[]);
        check("User bob from 203.0.113.10 not allowed because not in any group", "sshd-user-not-allowed", "203.0.113.10", &[]);
        check("User bob from 203.0.113.10 not allowed because a group is listed in DenyGroups", "sshd-user-not-allowed", "203.0.113.10", &[]);
        check("User bob from 203.0.113.10 not allowed because none of user's groups are listed in AllowGroups", "sshd-user-not-allowed", "203.0.113.10", &[]);
        check("refused connect from evil.example (203.0.113.11)", "sshd-refused-connect", "203.0.113.11", &[]);
        check("pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=203.0.113.12  user=root", "sshd-pam-auth-failure", "203.0.113.12", &[("user", "root")]);
    }

    #[test]
    fn preauth_kinds() {
        check("Did not receive identification string from 192.0.2.50 port 3333", "sshd-no-ident", "192.0.2.50", &[]);
        check("Bad protocol version identification 'GET / HTTP/1.1' from 192.0.2.51 port 1", "sshd-bad-protocol", "192.0.2.51", &[]);
        check("banner exchange: Connection from 192.0.2.52 port 2: invalid format", "sshd-banner-invalid", "192.0.2.52", &[]);
        check("Unable to negotiate with 192.0.2.53 port 3: no matching host key type found. Their offer: ssh-rsa,ssh-dss [preauth]", "sshd-negotiate", "192.0.2.53", &[("what", "host key type")]);
        check("Connection closed by 192.0.2.54 port 4 [preauth]", "sshd-preauth-close", "192.0.2.54", &[]);
        check("Connection reset by authenticating user root 192.0.2.55 port 5 [preauth]", "sshd-preauth-close", "192.0.2.55", &[("user", "root")]);
        check("Disconnected from invalid user x 192.0.2.56 port 6 [preauth]", "sshd-preauth-close", "192.0.2.56", &[("user", "x")]);
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
        no("error: kex_exchange_identification: client sent invalid protocol identifier \"GET / HTTP/1.1\"");
        no("Failed password for root from not-an-ip port 22 ssh2");
        no("Invalid user admin from 203.0.113.9 port 40000 extra words");
        no("User bob from 203.0.113.10 not allowed because the moon is full");
        // Not sshd at all.
        let got = probe(&mut m(), "Mar  1 10:00:00 h CRON[5]: Invalid user admin from 203.0.113.9");
        assert!(got.is_none());
    }

    #[test]
    fn sshd_session_and_iso_prefix() {
        let got = probe(&mut m(), "2024-03-01T10:00:00.123456+00:00 web1 sshd-session[77]: Invalid user a from 203.0.113.1 port 3").unwrap();
        assert_eq!(got.0, "sshd-invalid-user");
    }
}
