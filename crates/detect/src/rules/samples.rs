//! Sample lines of every built-in rule, with the fields the client writes
//! marked, and how each service writes client text into its log: what the
//! log-injection test (`tests/injection.rs`) and the `rule_injection` fuzz
//! target fill with hostile text. It owns no matching.
//!
//! A template holds `{host}` where the service writes the client's address
//! and `{NAME:default}` for each field the client chooses (user names, paths,
//! agents, HELO and PTR names...). A field named twice takes one value.

/// How a service writes a client-chosen field into its log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Esc {
    /// sshd (`strnvis`), dovecot and postfix: control characters escaped,
    /// so the client cannot end the line.
    Syslog,
    /// nginx and Apache access logs: `"`, `\` and control bytes as `\xHH`.
    Access,
    /// nginx's error log: written as it is (a `%0a` decoded in a path ends
    /// the line there). Only the decoded path and the Basic-auth user reach
    /// it this way; the user stops at its first `:`.
    Raw,
}

/// One sample line of a pack.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// The pack (see [`super::pack_names`]).
    pub pack: &'static str,
    /// The rule the line matches with the defaults; `None`: a line no rule
    /// takes, kept because it carries client text (a decoy).
    pub rule: Option<&'static str>,
    /// The line (see the module comment).
    pub template: &'static str,
    /// How this service writes the fields (the nginx error log's request,
    /// host and referrer cannot hold a raw newline: HTTP ends them there).
    pub esc: Esc,
}

/// A field of a template: its name and default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub default: &'static str,
}

impl Sample {
    /// The client-chosen fields, each once, in order.
    pub fn fields(&self) -> Vec<Field> {
        let mut out: Vec<Field> = Vec::new();
        let mut rest = self.template;
        while let Some(i) = rest.find('{') {
            let Some(j) = rest[i..].find('}') else { break };
            let inner = &rest[i + 1..i + j];
            if let Some((name, default)) = inner.split_once(':') {
                if !out.iter().any(|f| f.name == name) {
                    out.push(Field { name, default });
                }
            }
            rest = &rest[i + j + 1..];
        }
        out
    }

    /// The text the service writes for `host`, with `value(name)` (or the
    /// default, for `None`) in each field, escaped as the service escapes it.
    /// It may hold newlines ([`Esc::Raw`]): a reader sees several lines.
    pub fn fill(&self, host: &str, value: &dyn Fn(&str) -> Option<String>) -> String {
        let mut out = String::with_capacity(self.template.len() + 64);
        let mut rest = self.template;
        while let Some(i) = rest.find('{') {
            out.push_str(&rest[..i]);
            let Some(j) = rest[i..].find('}') else {
                out.push_str(&rest[i..]);
                return out;
            };
            let inner = &rest[i + 1..i + j];
            match inner.split_once(':') {
                Some((name, default)) => match value(name) {
                    Some(v) => out.push_str(&escape(self.esc, name, &v)),
                    None => out.push_str(default),
                },
                None if inner == "host" => out.push_str(host),
                None => out.push_str(&rest[i..=i + j]),
            }
            rest = &rest[i + j + 1..];
        }
        out.push_str(rest);
        out
    }
}

/// `v` as the service writes it into field `name`.
fn escape(esc: Esc, name: &str, v: &str) -> String {
    // Names the resolver and postfix check: anything else is `unknown`.
    if name == "ptr" {
        let ok = !v.is_empty()
            && v.bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"-._".contains(&c));
        return if ok { v.to_string() } else { "unknown".into() };
    }
    match esc {
        Esc::Syslog => v
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect(),
        Esc::Access => {
            let mut o = String::with_capacity(v.len());
            for c in v.chars() {
                if c == '"' || c == '\\' || c.is_ascii_control() {
                    o.push_str(&format!("\\x{:02X}", c as u32));
                } else {
                    o.push(c);
                }
            }
            o
        }
        Esc::Raw => match name {
            "dpath" => v.to_string(),
            "authuser" => v.split(':').next().unwrap_or("").to_string(),
            // The request line and headers end at a newline.
            _ => v
                .chars()
                .map(|c| if c.is_control() { '?' } else { c })
                .collect(),
        },
    }
}

const SSHD: &str = "sshd";

macro_rules! sshd {
    ($rule:expr, $msg:expr) => {
        Sample {
            pack: SSHD,
            rule: $rule,
            template: concat!("Mar  1 10:00:00 web1 sshd[4242]: ", $msg),
            esc: Esc::Syslog,
        }
    };
}

macro_rules! access {
    ($rule:expr, $req:expr, $status:expr, $agent:expr) => {
        Sample {
            pack: "nginx-access",
            rule: $rule,
            template: concat!(
                "{host} - {user:-} [01/Mar/2024:10:00:00 +0000] \"",
                $req,
                "\" ",
                $status,
                " 153 \"{referer:-}\" \"",
                $agent,
                "\""
            ),
            esc: Esc::Access,
        }
    };
}

macro_rules! nginx_error {
    ($rule:expr, $msg:expr) => {
        Sample {
            pack: "nginx-error",
            rule: $rule,
            template: concat!(
                "2024/03/01 10:00:00 [error] 812#812: *1043 ",
                $msg,
                ", client: {host}, server: example.org, request: \"GET {path:/admin/} HTTP/1.1\", host: \"{hosthdr:example.org}\", referrer: \"{referer:https://example.org/}\""
            ),
            esc: Esc::Raw,
        }
    };
}

/// Every sample of every built-in pack.
pub fn samples() -> &'static [Sample] {
    SAMPLES
}

const SAMPLES: &[Sample] = &[
    sshd!(
        Some("sshd-failed-invalid-user"),
        "Failed password for invalid user {user:oracle} from {host} port 40022 ssh2"
    ),
    sshd!(
        Some("sshd-failed-password"),
        "Failed password for {user:root} from {host} port 51122 ssh2"
    ),
    sshd!(
        Some("sshd-failed-password"),
        "Failed publickey for {user:git} from {host} port 5 ssh2: ED25519 SHA256:abc"
    ),
    sshd!(
        Some("sshd-auth-failure"),
        "error: PAM: Authentication failure for {user:root} from {host}"
    ),
    sshd!(
        Some("sshd-auth-failure"),
        "error: PAM: authentication failure for {user:james} from {host} via 192.168.1.201"
    ),
    sshd!(
        Some("sshd-user-unknown"),
        "error: PAM: User not known to the underlying authentication module for {user:bob} from {host}"
    ),
    sshd!(
        Some("sshd-root-login-refused"),
        "ROOT LOGIN REFUSED FROM {host} port 12345 [preauth]"
    ),
    sshd!(
        Some("sshd-invalid-user"),
        "Invalid user {user:admin} from {host} port 40000"
    ),
    sshd!(
        Some("sshd-user-not-allowed"),
        "User {user:bob} from {host} not allowed because not listed in AllowUsers"
    ),
    sshd!(
        Some("sshd-refused-connect"),
        "refused connect from {ptr:evil.example} ({host})"
    ),
    sshd!(
        Some("sshd-disconnect-auth-fail"),
        "error: Received disconnect from {host} port 7736:3: {reason:com.jcraft.jsch.JSchException}: Auth fail [preauth]"
    ),
    sshd!(
        Some("sshd-max-auth-attempts"),
        "error: maximum authentication attempts exceeded for invalid user {user:admin} from {host} port 4 ssh2 [preauth]"
    ),
    sshd!(
        Some("sshd-too-many-auth"),
        "Disconnecting invalid user {user:ftp} {host} port 9: Too many authentication failures [preauth]"
    ),
    sshd!(
        Some("sshd-too-many-auth"),
        "Disconnecting authenticating user {user:root} {host} port 9: Change of username or service not allowed: ({user:root},{service:ssh-connection}) -> ({user2:x},{service2:ssh-connection}) [preauth]"
    ),
    sshd!(
        Some("sshd-pam-auth-failure"),
        "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost={host}  user={user:root}"
    ),
    Sample {
        pack: SSHD,
        rule: Some("sshd-pam-old-failure"),
        template: "Jun 11 09:45:45 combo sshd(pam_unix)[6472]: authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost={host}  user={user:root}",
        esc: Esc::Syslog,
    },
    Sample {
        pack: SSHD,
        rule: Some("sshd-pam-old-failure"),
        template: "Jun 11 09:46:45 combo sshd(pam_unix)[6472]: 7 more authentication failures; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost={host}  user={user:root}",
        esc: Esc::Syslog,
    },
    Sample {
        pack: SSHD,
        rule: Some("pam-auth-failure"),
        template: "Mar  1 10:00:00 web1 vsftpd[77]: pam_unix(vsftpd:auth): authentication failure; logname= uid=0 euid=0 tty=ftp ruser={user:bob} rhost={host}  user={user:bob}",
        esc: Esc::Syslog,
    },
    sshd!(
        Some("sshd-no-ident"),
        "Did not receive identification string from {host} port 3333"
    ),
    sshd!(
        Some("sshd-bad-protocol"),
        "Bad protocol version identification '{banner:GET / HTTP/1.1}' from {host} port 1"
    ),
    sshd!(
        Some("sshd-banner-invalid"),
        "banner exchange: Connection from {host} port 2: invalid format"
    ),
    sshd!(
        Some("sshd-negotiate"),
        "Unable to negotiate with {host} port 3: no matching host key type found. Their offer: {offer:ssh-rsa,ssh-dss} [preauth]"
    ),
    sshd!(
        Some("sshd-preauth-user-close"),
        "Connection closed by authenticating user {user:root} {host} port 5 [preauth]"
    ),
    sshd!(
        Some("sshd-preauth-close"),
        "Connection closed by {host} port 5 [preauth]"
    ),
    sshd!(
        None,
        "Accepted password for {user:alice} from {host} port 5 ssh2"
    ),
    sshd!(
        None,
        "Connection closed by invalid user {user:x} {host} port 6"
    ),
    access!(
        Some("http-bad-user-agent"),
        "GET {path:/}{query:?id=1} HTTP/1.1",
        "200",
        "sqlmap/1.7.2#stable {agent:(https://sqlmap.org)}"
    ),
    access!(
        Some("http-login-fail"),
        "POST {path:/login}{query:} HTTP/1.1",
        "401",
        "{agent:Mozilla/5.0}"
    ),
    access!(
        Some("http-sensitive-path"),
        "GET /.env{path:}{query:} HTTP/1.1",
        "404",
        "{agent:Mozilla/5.0}"
    ),
    access!(
        Some("http-cve-probe"),
        "GET /_ignition/execute-solution{path:}{query:} HTTP/1.1",
        "404",
        "{agent:Mozilla/5.0}"
    ),
    access!(
        Some("http-admin-probe"),
        "GET /phpmyadmin{path:/index.php}{query:} HTTP/1.1",
        "404",
        "{agent:Mozilla/5.0}"
    ),
    access!(
        Some("http-wordpress-scan"),
        "GET /wp-content/plugins/{path:x/readme.txt}{query:} HTTP/1.1",
        "404",
        "{agent:Mozilla/5.0}"
    ),
    access!(
        Some("http-4xx"),
        "GET {path:/images/nope.png}{query:} HTTP/1.1",
        "404",
        "{agent:Mozilla/5.0}"
    ),
    nginx_error!(
        Some("nginx-auth-fail"),
        "user \"{authuser:admin}\": password mismatch"
    ),
    nginx_error!(
        Some("nginx-auth-fail"),
        "user \"{authuser:root}\" was not found in \"/etc/nginx/.htpasswd\""
    ),
    nginx_error!(
        Some("nginx-limit-req"),
        "limiting requests, excess: 5.480 by zone \"one\""
    ),
    nginx_error!(
        Some("nginx-limit-conn"),
        "limiting connections by zone \"addr\""
    ),
    nginx_error!(
        None,
        "open() \"/var/www/html{dpath:/favicon.ico}\" failed (2: No such file or directory)"
    ),
    nginx_error!(
        None,
        "\"/var/www/html{dpath:/x}/index.html\" is not found (2: No such file or directory)"
    ),
    Sample {
        pack: "postfix",
        rule: Some("postfix-sasl-fail"),
        template: "Mar  1 10:00:00 mx postfix/smtpd[812]: warning: {ptr:unknown}[{host}]: SASL LOGIN authentication failed: UGFzc3dvcmQ6, sasl_username={user:info@example.com}",
        esc: Esc::Syslog,
    },
    Sample {
        pack: "postfix",
        rule: None,
        template: "Mar  1 10:00:00 mx postfix/smtpd[812]: connect from {ptr:unknown}[{host}] helo={helo:mail.example}",
        esc: Esc::Syslog,
    },
    Sample {
        pack: "dovecot",
        rule: Some("dovecot-login-fail"),
        template: "Mar  1 10:00:00 mx dovecot: imap-login: Disconnected (auth failed, 3 attempts in 12 secs): user=<{user:admin}>, method=PLAIN, rip={host}, lip=10.0.0.2, TLS, session=<abc>",
        esc: Esc::Syslog,
    },
    Sample {
        pack: "dovecot",
        rule: Some("dovecot-passdb-fail"),
        template: "Mar  1 10:00:00 mx dovecot: auth-worker(1234): pam({user:carol},{host},<sess>): pam_authenticate() failed: Authentication failure (password mismatch?)",
        esc: Esc::Syslog,
    },
    Sample {
        pack: "dovecot",
        rule: Some("dovecot-passdb-fail"),
        template: "Mar  1 10:00:00 mx dovecot: auth: passwd-file({user:dave},{host},<Zx8a>): Password mismatch (SHA1 of given password: 7c4a8d09)",
        esc: Esc::Syslog,
    },
    Sample {
        pack: "dovecot",
        rule: None,
        template: "Mar  1 10:00:00 mx dovecot: auth: passwd-file({user:dave},{host}): Password mismatch (given password: {password:x})",
        esc: Esc::Syslog,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_fill() {
        let s = samples()
            .iter()
            .find(|s| s.template.contains("Change of username"))
            .unwrap();
        let names: Vec<_> = s.fields().iter().map(|f| f.name).collect();
        assert_eq!(names, ["user", "service", "user2", "service2"]);
        let l = s.fill("192.0.2.1", &|n| (n == "user").then(|| "a\nb".to_string()));
        assert!(
            l.contains("user a?b 192.0.2.1 port 9") && l.contains("(a?b,ssh-connection)"),
            "{l}"
        );
        let s = samples().iter().find(|s| s.esc == Esc::Access).unwrap();
        let l = s.fill("192.0.2.1", &|n| (n == "agent").then(|| "x\"y".to_string()));
        assert!(l.contains(r#""sqlmap/1.7.2#stable x\x22y""#), "{l}");
    }
}
