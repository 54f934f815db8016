//! The access-log packs (`nginx-access`, `apache-access`: both write the
//! combined format `ADDR ident user [stamp] "request" status bytes "referer" "agent"`).
//!
//! The line is parsed by hand (no regex), then classified, first kind wins:
//! 1. `http-bad-user-agent`: the agent names an attack tool (sqlmap, nikto, ...);
//! 2. `http-login-fail`: a 401 anywhere, a 403 on a login-like path, or a
//!    WordPress login/xmlrpc POST answered 200 (WordPress's way to say "wrong");
//! 3. `http-cve-probe`: a request for a path only an exploit of a known
//!    vulnerability asks for (`/_ignition/execute-solution`, PHPUnit's
//!    `eval-stdin.php`, ...), whatever the status: one is enough;
//! 4. `http-admin-probe`: an admin interface that is not there (`/phpmyadmin`,
//!    `/+CSCOE+/`, `/administrator/`, ... answered 4xx);
//! 5. `http-wordpress-scan`: WordPress plugin, theme or admin files that are
//!    not there (4xx): a scanner looking for vulnerable plugins;
//! 6. `http-sensitive-path`: a probe for secrets or admin tools (`/.env`,
//!    `/.git/`, `/wp-login.php`, `/cgi-bin/`, backups, `/actuator`, path
//!    traversal, ...), whatever the status, and any other dot-file (`/.cvs`,
//!    `/.bashrc`; not `/.well-known/`) answered 4xx;
//! 7. `http-4xx`: any other 4xx answer (for burst scenarios).
//!
//! Matching is ASCII case-insensitive (Aho-Corasick), on the path with its
//! `%XX` escapes decoded once (`/%2eenv` is `/.env`; `%252e` stays `%2e`).
//! Quoted fields honour Apache's `\"` escape (nginx writes `\x22`), so a
//! request or agent cannot end its field early and shift the others.
//!
//! The host is the first field, written before any client text, so no
//! client text can move it. What the client can try is to make its own line
//! unreadable: the Basic-auth user (`curl -u '[ x:y'`) may hold spaces,
//! `[` and `]`, so the stamp is found from the request's opening quote (the
//! first unescaped `"`: the server escapes a `"` in the user) backwards, not
//! from the first `[`.

use std::sync::{Arc, OnceLock};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};

use super::{Found, Names};
use crate::UnixTime;
use crate::time::StampCache;

pub(crate) const RULE_NAMES: &[&str] = &[
    "http-bad-user-agent",
    "http-login-fail",
    "http-sensitive-path",
    "http-4xx",
    "http-cve-probe",
    "http-admin-probe",
    "http-wordpress-scan",
];

/// Rule numbers (offsets from the pack's first rule), in `RULE_NAMES` order.
const BAD_AGENT: u32 = 0;
const LOGIN_FAIL: u32 = 1;
const SENSITIVE_PATH: u32 = 2;
const ANY_4XX: u32 = 3;
const CVE_PROBE: u32 = 4;
const ADMIN_PROBE: u32 = 5;
const WORDPRESS_SCAN: u32 = 6;

/// Paths only exploits of known vulnerabilities request (written for Shield
/// from the public advisories; matched case-insensitively, decoded).
const CVE_PATHS: &[&str] = &[
    "/_ignition/execute-solution",       // Laravel Ignition, CVE-2021-3129
    "/eval-stdin.php",                   // PHPUnit, CVE-2017-9841
    "/setup.cgi?next_file=",             // Netgear, CVE-2016-1555 family
    "/cgi/networkdiag.cgi",              // router diagnostics command injection
    "/cgi-bin/luci/;stok=",              // OpenWrt LuCI / TP-Link injection
    "/boaform/admin/formlogin",          // Boa-based routers (Mozi botnet)
    "/gponform/diag_form",               // GPON, CVE-2018-10561
    "/hnap1/",                           // D-Link HNAP, CVE-2015-2051
    "/shell?cd+/tmp",                    // Mirai-style shell probe
    "/wls-wsat/coordinatorporttype",     // WebLogic, CVE-2017-10271
    "/console/css/%2e%2e",               // WebLogic, CVE-2020-14882
    "/mgmt/tm/util/bash",                // F5 BIG-IP, CVE-2022-1388
    "/remote/fgt_lang?lang=",            // FortiOS, CVE-2018-13379
    "/dana-na/../dana/html5acc",         // Pulse Secure, CVE-2019-11510
    "/+cscot+/translation-table",        // Cisco ASA, CVE-2020-3452
    "/autodiscover/autodiscover.json?@", // Exchange ProxyShell, CVE-2021-34473
    "/actuator/gateway/routes",          // Spring Cloud Gateway, CVE-2022-22947
    "/index.php?s=/index/\\think",       // ThinkPHP, CVE-2018-20062
    "/invokefunction&function=call_user_func_array", // ThinkPHP
    "/wp-file-manager/lib/php/connector.minimal.php", // CVE-2020-25213
    "/cgi-bin/.%2e/",                    // Apache 2.4.49, CVE-2021-41773
    "/cgi-bin/../",                      // the same, decoded
    "/telerik.web.ui.webresource.axd?type=rau", // Telerik, CVE-2019-18935
    "/vpn/../vpns/",                     // Citrix ADC, CVE-2019-19781
    "/owa/auth/x.js",                    // Exchange ProxyLogon, CVE-2021-26855
    "/solr/admin/cores?action=",         // Solr / Log4Shell probes
    "/api/jsonws/invoke",                // Liferay, CVE-2020-7961
    "/struts2-showcase/",                // Struts 2 probes
];

/// Admin interfaces scanners look for (answered 4xx: not there).
const ADMIN_PATHS: &[&str] = &[
    "/phpmyadmin",
    "/pma/",
    "/myadmin",
    "/mysqladmin",
    "/sqladmin",
    "/dbadmin",
    "/adminer",
    "/administrator/",
    "/+cscoe+/",
    "/manager/html",
    "/jmx-console",
    "/web-console",
    "/admin-console",
    "/webadmin",
    "/cpanel",
    "/whm-server-status",
    "/solr/admin",
    "/phppgadmin",
    "/pgadmin",
    "/webmin",
    "/admin/phpmyadmin",
];

/// WordPress files a plugin scanner asks a site for (answered 4xx).
const WORDPRESS_PATHS: &[&str] = &[
    "/wp-content/plugins/",
    "/wp-content/themes/",
    "/wp-admin/",
    "/wp-includes/",
];

const BAD_AGENTS: &[&str] = &[
    "sqlmap",
    "nikto",
    "gobuster",
    "dirbuster",
    "dirb/",
    "dirb ",
    "masscan",
    "zgrab",
    "nuclei",
    "wpscan",
    "feroxbuster",
    "ffuf",
    "nmap scripting",
    "nmap nse",
    "hydra",
    "acunetix",
    "netsparker",
    "openvas",
    "w3af",
    "jaeles",
    "zmeu",
    "morfeus",
    "fimap",
    "havij",
    "whatweb",
    "wfuzz",
    "commix",
    "xsstrike",
    "arachni",
    "skipfish",
    "l9explore",
    "l9tcpid",
    "interactsh",
    "fuzz faster u fool",
    "nessus",
    "qualys",
    "paros",
    "webshag",
    "grabber",
];

const SENSITIVE: &[&str] = &[
    // secrets and VCS
    "/.env",
    "/.git",
    "/.svn",
    "/.hg/",
    "/.bzr",
    "/.aws",
    "/.ssh",
    "/.htpasswd",
    "/.htaccess",
    "/.ds_store",
    "/.vscode",
    "/.idea/",
    "/.docker",
    "/.npmrc",
    "/.kube",
    "/.bash_history",
    "/id_rsa",
    "/credentials",
    "/secrets",
    "/.s3cfg",
    "/.pgpass",
    "/.my.cnf",
    // WordPress and PHP admin tools
    "/wp-login.php",
    "/xmlrpc.php",
    "/wp-config",
    "/wp-admin/install",
    "/wp-admin/setup-config",
    "/phpmyadmin",
    "/pma/",
    "/myadmin",
    "/mysqladmin",
    "/sqladmin",
    "/dbadmin",
    "/adminer",
    "/phpinfo",
    "/phpunit",
    "eval-stdin.php",
    "/config.php",
    "/configuration.php",
    "/setup.php",
    "/install.php",
    "/shell.php",
    "/cmd.php",
    "/c99.php",
    "/r57.php",
    // servers, frameworks, appliances
    "/cgi-bin/",
    "/actuator",
    "/server-status",
    "/server-info",
    "/web.config",
    "/jmx-console",
    "/manager/html",
    "/solr/admin",
    "/_profiler",
    "/telescope/",
    "/boaform",
    "/hnap1",
    "/owa/auth",
    "/autodiscover/",
    "/vendor/",
    "/console/login",
    "/.well-known/../",
    // backups and dumps
    "/backup",
    ".bak",
    ".sql",
    ".old",
    ".swp",
    ".save",
    ".tar.gz",
    ".tgz",
    "/dump",
    "/db.",
    // traversal and system files
    "../",
    "..%2f",
    "%2e%2e",
    "..\\",
    "..%5c",
    "/etc/passwd",
    "/etc/shadow",
    "win.ini",
    "/proc/self",
];

const LOGIN_PATHS: &[&str] = &[
    "login", "signin", "sign-in", "sign_in", "logon", "auth", "session", "token", "password",
    "/admin", "/user", "/account",
];

/// Field offsets of one combined-format line.
struct Access {
    host: (usize, usize),
    user: (usize, usize),
    time: Option<UnixTime>,
    /// The stamp is the line's first `[` and within its first 128 bytes, so
    /// `time` is also what [`clf_time`] reads.
    first_stamp: bool,
    request: (usize, usize),
    status: u16,
    status_at: usize,
    agent: Option<(usize, usize)>,
}

#[derive(Clone)]
pub(crate) struct HttpRules {
    base: u32,
    agents: LazyAc,
    agent_cache: VerdictCache,
    /// `sensitive.is_match` of recent paths.
    path_cache: VerdictCache,
    stamps: StampCache,
    sensitive: LazyAc,
    login: LazyAc,
    cve: LazyAc,
    admin: LazyAc,
    wordpress: LazyAc,
    /// The path with `%XX` decoded (reused: no allocation per line).
    decoded: Vec<u8>,
    f_method: u16,
    f_path: u16,
    f_status: u16,
    f_user: u16,
    f_agent: u16,
}

/// A literal set built the first time a line needs it (a replay of an sshd
/// log never does); copies for other threads share it.
#[derive(Clone)]
struct LazyAc {
    needles: &'static [&'static str],
    ac: Arc<OnceLock<AhoCorasick>>,
}

impl LazyAc {
    fn new(needles: &'static [&'static str]) -> Self {
        LazyAc {
            needles,
            ac: Arc::default(),
        }
    }

    fn get(&self) -> &AhoCorasick {
        self.ac.get_or_init(|| ci(self.needles))
    }
}

fn ci(needles: &[&str]) -> AhoCorasick {
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostFirst)
        // A full DFA: these sets are small (a few KB) and every access line
        // runs the path set, so take the fastest search.
        .kind(Some(AhoCorasickKind::DFA))
        .build(needles)
        .expect("literal needles build")
}

impl HttpRules {
    pub(crate) fn new(base: u32, names: &mut Names) -> Self {
        HttpRules {
            base,
            agents: LazyAc::new(BAD_AGENTS),
            agent_cache: VerdictCache::new(64, 200),
            path_cache: VerdictCache::new(256, 128),
            stamps: StampCache::default(),
            sensitive: LazyAc::new(SENSITIVE),
            login: LazyAc::new(LOGIN_PATHS),
            cve: LazyAc::new(CVE_PATHS),
            admin: LazyAc::new(ADMIN_PATHS),
            wordpress: LazyAc::new(WORDPRESS_PATHS),
            decoded: Vec::new(),
            f_method: names.id("method"),
            f_path: names.id("path"),
            f_status: names.id("status"),
            f_user: names.id("user"),
            f_agent: names.id("agent"),
        }
    }

    /// What the access rules make of `line`, and its stamp's time; the
    /// `bool` says the time is also what [`clf_time`] reads. `None`: not a
    /// combined-format line; `Some((None, ..))`: a line no access rule takes.
    pub(crate) fn find(&mut self, line: &str) -> Option<(Option<Found>, Option<UnixTime>, bool)> {
        let a = parse(line, &mut self.stamps)?;
        let host = super::parse_ip(&line[a.host.0..a.host.1])?;
        let b = line.as_bytes();
        let req = &line[a.request.0..a.request.1];
        let (method, path) = split_request(a.request.0, req);
        let path_s = &line[path.0..path.1];
        let method_s = &line[method.0..method.1];
        let agent = a.agent.map(|(s, e)| &line[s..e]).unwrap_or("");
        let st = a.status;
        let bad_agent = !agent.is_empty() && {
            let agents = &self.agents;
            self.agent_cache
                .get_or(agent, || agents.get().is_match(agent))
        };
        let dec = percent_decode(path_s.as_bytes(), &mut self.decoded);
        let (sensitive, path_cache) = (&self.sensitive, &mut self.path_cache);
        // Keyed by the raw path: the verdict is the decoded path's.
        let mut sensitive_path = || path_cache.get_or(path_s, || sensitive.get().is_match(dec));
        let is_4xx = (400..500).contains(&st);
        // Checked only where the sensitive set (which contains the cheaper
        // common prefixes) or a 4xx says the path may be a probe.
        let kind = if bad_agent {
            BAD_AGENT
        } else if st == 401
            || (st == 403 && self.login.get().is_match(dec))
            || (st == 200 && method_s == "POST" && is_wp_login(dec))
        {
            LOGIN_FAIL
        } else if self.cve.get().is_match(dec) {
            CVE_PROBE
        } else if is_4xx && self.admin.get().is_match(dec) {
            ADMIN_PROBE
        } else if is_4xx && self.wordpress.get().is_match(dec) {
            WORDPRESS_SCAN
        } else if sensitive_path() || (is_4xx && dot_file(dec)) {
            SENSITIVE_PATH
        } else if is_4xx {
            ANY_4XX
        } else {
            return Some((None, a.time, a.first_stamp));
        };
        let mut f = Found::new(self.base + kind, host);
        f.push(self.f_path, path.0, path.1);
        f.push(self.f_status, a.status_at, a.status_at + 3);
        if method.1 > method.0 {
            f.push(self.f_method, method.0, method.1);
        }
        if a.user.1 > a.user.0 && &b[a.user.0..a.user.1] != b"-" {
            f.push(self.f_user, a.user.0, a.user.1);
        }
        if kind == BAD_AGENT {
            if let Some((s, e)) = a.agent {
                f.push(self.f_agent, s, e);
            }
        }
        Some((Some(f), a.time, a.first_stamp))
    }
}

/// Remembers the verdict of a literal set for recently seen strings (user
/// agents, paths: a log has few, and lines repeat them): a direct-mapped table
/// keyed by a cheap hash and checked by full comparison, so a collision only
/// costs a rescan. Strings of `width` bytes or more are always scanned.
#[derive(Clone)]
struct VerdictCache {
    /// `slots` keys of `width` bytes each.
    keys: Vec<u8>,
    /// Per slot: key length (0: empty) and verdict.
    meta: Vec<(u8, bool)>,
    width: usize,
}

impl VerdictCache {
    fn new(slots: usize, width: usize) -> Self {
        assert!(width <= 256, "key lengths are kept in a byte");
        assert!(slots.is_power_of_two(), "slots are picked by a mask");
        VerdictCache {
            keys: vec![0; slots * width],
            meta: vec![(0, false); slots],
            width,
        }
    }

    fn get_or(&mut self, key: &str, scan: impl FnOnce() -> bool) -> bool {
        let b = key.as_bytes();
        if b.is_empty() || b.len() >= self.width {
            return scan();
        }
        // First and last 8 bytes and the length, mixed by one multiplication
        // (a byte-at-a-time hash was a chain of 16 dependent ones).
        let first = super::head(b);
        let last = b.last_chunk::<8>().map_or(0, |l| u64::from_le_bytes(*l));
        let h = (first ^ last.rotate_left(29) ^ b.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let i = (h >> 40) as usize & (self.meta.len() - 1);
        let slot = &mut self.keys[i * self.width..][..b.len()];
        if self.meta[i].0 as usize == b.len() && slot == b {
            return self.meta[i].1;
        }
        let v = scan();
        slot.copy_from_slice(b);
        self.meta[i] = (b.len() as u8, v);
        v
    }
}

/// A path segment naming a dot-file or dot-directory (`/.cvs`, `/a/.bashrc`)
/// other than `/.well-known/` (ACME and other standard files) and `.`/`..`.
fn dot_file(path: &[u8]) -> bool {
    let p = match memchr::memchr(b'?', path) {
        Some(i) => &path[..i],
        None => path,
    };
    memchr::memmem::find_iter(p, b"/.").any(|i| {
        let rest = &p[i + 2..];
        match rest.first() {
            None | Some(b'/') | Some(b'.') => false,
            _ => !rest
                .get(..10)
                .is_some_and(|w| w.eq_ignore_ascii_case(b"well-known")),
        }
    })
}

fn is_wp_login(path: &[u8]) -> bool {
    let p = match memchr::memchr(b'?', path) {
        Some(i) => &path[..i],
        None => path,
    };
    p.ends_with(b"/wp-login.php") || p.ends_with(b"/xmlrpc.php")
}

/// `p` with every `%XX` (two hex digits) decoded, once; any other `%` is
/// kept. `p` itself when it has no `%`, else the decoded bytes in `buf`.
fn percent_decode<'a>(p: &'a [u8], buf: &'a mut Vec<u8>) -> &'a [u8] {
    if memchr::memchr(b'%', p).is_none() {
        return p;
    }
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    buf.clear();
    let mut i = 0;
    while i < p.len() {
        if p[i] == b'%' {
            if let (Some(h), Some(l)) = (
                p.get(i + 1).copied().and_then(hex),
                p.get(i + 2).copied().and_then(hex),
            ) {
                buf.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        buf.push(p[i]);
        i += 1;
    }
    buf
}

/// The request's opening quote: the first `"` after `from` that no
/// backslash escapes (an odd run of `\` before it).
fn request_quote(b: &[u8], from: usize) -> Option<usize> {
    let mut s = from;
    loop {
        let q = memchr::memchr(b'"', b.get(s..)?)? + s;
        let slashes = b[from..q].iter().rev().take_while(|&&c| c == b'\\').count();
        if slashes % 2 == 0 {
            return Some(q);
        }
        s = q + 1;
    }
}

/// `METHOD TARGET PROTO` → offsets of method and target; a request that is not
/// three words (garbage, TLS bytes) is all target.
fn split_request(base: usize, req: &str) -> ((usize, usize), (usize, usize)) {
    match super::find_byte(b' ', req.as_bytes()) {
        Some(i) => {
            let rest = &req[i + 1..];
            let end = super::find_byte(b' ', rest.as_bytes()).unwrap_or(rest.len());
            ((base, base + i), (base + i + 1, base + i + 1 + end))
        }
        None => ((base, base), (base, base + req.len())),
    }
}

/// The end (index of the closing quote) of a quoted field whose content starts at `s`.
fn quoted_end(b: &[u8], mut s: usize) -> Option<usize> {
    loop {
        let i = memchr::memchr2(b'"', b'\\', b.get(s..)?)? + s;
        if b[i] == b'"' {
            return Some(i);
        }
        s = i + 2;
    }
}

/// The quote that opens the referer when ` digits "` follows `s` (the
/// bytes field, as nginx writes it): the first `"` from `s`, as a search
/// would find it.
#[inline]
fn digits_then_quote(b: &[u8], s: usize) -> Option<usize> {
    if b.get(s) != Some(&b' ') {
        return None;
    }
    let mut p = s + 1;
    while b.get(p).is_some_and(u8::is_ascii_digit) {
        p += 1;
    }
    (b.get(p) == Some(&b' ') && b.get(p + 1) == Some(&b'"')).then_some(p + 1)
}

fn parse(line: &str, stamps: &mut StampCache) -> Option<Access> {
    let b = line.as_bytes();
    let he = super::find_byte(b' ', &b[..b.len().min(64)])?;
    // ident, then the user (which may hold spaces and brackets), then
    // `[stamp] "request"`; most lines have neither (`- - [` and a stamp of
    // 26 bytes), which the search from the quote would find too.
    let (lb, ident_end) = if b.get(he + 1..he + 6) == Some(b"- - [")
        && b.get(he + 32..he + 35) == Some(b"] \"")
        && !b[he + 6..he + 32].contains(&b'"')
    {
        (he + 5, he + 2)
    } else {
        let q = request_quote(b, he)?;
        if q < he + 3 || b[q - 1] != b' ' || b[q - 2] != b']' {
            return None;
        }
        let lb = memchr::memrchr(b'[', &b[he..q - 2])? + he;
        (lb, memchr::memchr(b' ', &b[he + 1..lb])? + he + 1)
    };
    // `ident user [`: the byte before `[` must be the separating space.
    if lb < ident_end + 2 || b[lb - 1] != b' ' {
        return None;
    }
    let user = (ident_end + 1, lb - 1);
    // A stamp of 26 bytes then `]`, usually: the stamp parser checks every
    // byte it takes, so none is a `]` and this is the first one.
    let fixed = match b.get(lb + 27) {
        Some(b']') => match stamps.parse_clf(&line[lb + 1..lb + 27]) {
            Some((t, 26)) => Some((lb + 27, Some(t))),
            _ => None,
        },
        _ => None,
    };
    let (rb, time) = match fixed {
        Some(f) => f,
        None => {
            let rb = request_quote(b, lb)?.checked_sub(2)?;
            (rb, stamps.parse_clf(line.get(lb + 1..rb)?).map(|x| x.0))
        }
    };
    if b.get(rb + 1) != Some(&b' ') || b.get(rb + 2) != Some(&b'"') {
        return None;
    }
    let rs = rb + 3;
    let re = quoted_end(b, rs)?;
    let ss = re + 2;
    let sd = b.get(ss..ss + 3)?;
    if b.get(re + 1) != Some(&b' ') || !sd.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let status = sd.iter().fold(0u16, |a, &d| a * 10 + (d - b'0') as u16);
    // bytes, then optional "referer" "agent".
    let mut agent = None;
    let q1 = digits_then_quote(b, ss + 3)
        .or_else(|| memchr::memchr(b'"', &b[ss + 3..]).map(|q| q + ss + 3));
    debug_assert_eq!(q1, memchr::memchr(b'"', &b[ss + 3..]).map(|q| q + ss + 3));
    if let Some(q1) = q1 {
        // The referer is mostly `"-"`.
        let r_end = if b.get(q1 + 1..q1 + 3) == Some(b"-\"") {
            Some(q1 + 2)
        } else {
            quoted_end(b, q1 + 1)
        };
        debug_assert_eq!(r_end, quoted_end(b, q1 + 1));
        if let Some(r_end) = r_end {
            if b.get(r_end + 1) == Some(&b' ') && b.get(r_end + 2) == Some(&b'"') {
                let us = r_end + 3;
                if let Some(ue) = quoted_end(b, us) {
                    agent = Some((us, ue));
                }
            }
        }
    }
    Some(Access {
        host: (0, he),
        user,
        time,
        first_stamp: lb < 128 && super::find_byte(b'[', &b[..lb]).is_none(),
        request: (rs, re),
        status,
        status_at: ss,
        agent,
    })
}

/// The common-log-format stamp of an access line, if it has one.
pub(crate) fn clf_time(line: &str, stamps: &mut StampCache) -> Option<UnixTime> {
    let b = line.as_bytes();
    let lb = memchr::memchr(b'[', &b[..b.len().min(128)])?;
    stamps.parse_clf(&line[lb + 1..]).map(|x| x.0)
}

#[cfg(test)]
mod tests {
    use crate::rules::{NativeMatcher, probe};

    /// The cache gives what the scan gives, through collisions, evictions,
    /// keys that differ in one middle byte, empty and over-long keys.
    #[test]
    fn verdict_cache_gives_the_scan_verdict() {
        let mut c = super::VerdictCache::new(4, 16);
        // Many keys of one length (they share slots), a few of others.
        let keys: Vec<String> = (0..200)
            .map(|i| format!("/p{i:03}x"))
            .chain((0..9).map(|i| format!("/{}", "ab".repeat(i))))
            .chain(["".into(), "a".repeat(16), "a".repeat(15)])
            .collect();
        let verdict = |k: &str| k.bytes().map(|c| c as usize).sum::<usize>() % 3 == 0;
        for _ in 0..3 {
            for k in &keys {
                assert_eq!(c.get_or(k, || verdict(k)), verdict(k), "{k}");
            }
        }
    }

    fn line(ip: &str, req: &str, status: u16, ua: &str) -> String {
        format!(r#"{ip} - - [01/Mar/2024:10:00:00 +0000] "{req}" {status} 153 "-" "{ua}""#)
    }

    const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:124.0) Gecko/20100101 Firefox/124.0";

    fn check(l: &str, rule: Option<&str>) {
        for pack in ["nginx-access", "apache-access"] {
            let mut m = NativeMatcher::new(&[pack], &[]).unwrap();
            let got = probe(&mut m, l);
            assert_eq!(got.as_ref().map(|g| g.0.as_str()), rule, "{pack}: {l}");
        }
    }

    #[test]
    fn probes_for_sensitive_paths() {
        for p in [
            "/.env",
            "/app/.env.production",
            "/.git/config",
            "/wp-login.php",
            "/cgi-bin/luci",
            "/backup.sql",
            "/site.tar.gz",
            "/actuator/health",
            "/../../etc/passwd",
            "/static/..%2f..%2fetc/passwd",
            "/.aws/credentials",
            "/wp-config.php.bak",
            "/index.php.old",
        ] {
            check(
                &line("198.51.100.20", &format!("GET {p} HTTP/1.1"), 404, BROWSER),
                Some("http-sensitive-path"),
            );
        }
        // Known exploits, admin interfaces and WordPress scans have rules
        // of their own (CrowdSec hub tests http-cve-probing,
        // http-admin-interface-probing, http-wordpress-scan).
        for (p, st, rule) in [
            ("/_ignition/execute-solution", 404, "http-cve-probe"),
            (
                "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php",
                200,
                "http-cve-probe",
            ),
            ("/%5Fignition/execute-solution", 404, "http-cve-probe"),
            ("/PhpMyAdmin/index.php", 404, "http-admin-probe"),
            ("/+CSCOE+/logon.html", 404, "http-admin-probe"),
            (
                "/wp-content/plugins/x/readme.txt",
                404,
                "http-wordpress-scan",
            ),
            ("/.bashrc", 404, "http-sensitive-path"),
            ("/%2ecvs", 404, "http-sensitive-path"),
            ("/a/.config?x=1", 403, "http-sensitive-path"),
        ] {
            check(
                &line("198.51.100.20", &format!("GET {p} HTTP/1.1"), st, BROWSER),
                Some(rule),
            );
        }
        // A site that has them is not scanned; standard dot paths are not probes.
        for (p, st, rule) in [
            ("/PhpMyAdmin/index.php", 200, Some("http-sensitive-path")),
            ("/wp-content/plugins/x/readme.txt", 200, None),
            ("/.well-known/acme-challenge/abc", 404, Some("http-4xx")),
            ("/a/../b", 404, Some("http-sensitive-path")),
        ] {
            check(
                &line("198.51.100.20", &format!("GET {p} HTTP/1.1"), st, BROWSER),
                rule,
            );
        }
        // Answered 200 is still a probe.
        check(
            &line("198.51.100.20", "GET /.env HTTP/1.1", 200, BROWSER),
            Some("http-sensitive-path"),
        );
    }

    #[test]
    fn login_failures_and_4xx() {
        check(
            &line("198.51.100.21", "POST /login HTTP/1.1", 401, BROWSER),
            Some("http-login-fail"),
        );
        check(
            &line(
                "198.51.100.21",
                "POST /api/auth/login HTTP/2.0",
                403,
                BROWSER,
            ),
            Some("http-login-fail"),
        );
        check(
            &line("198.51.100.21", "GET /admin/ HTTP/1.1", 401, BROWSER),
            Some("http-login-fail"),
        );
        check(
            &line("198.51.100.21", "POST /wp-login.php HTTP/1.1", 200, BROWSER),
            Some("http-login-fail"),
        );
        check(
            &line("198.51.100.21", "POST /xmlrpc.php HTTP/1.1", 200, BROWSER),
            Some("http-login-fail"),
        );
        check(
            &line(
                "198.51.100.21",
                "GET /images/nope.png HTTP/1.1",
                404,
                BROWSER,
            ),
            Some("http-4xx"),
        );
        check(
            &line("198.51.100.21", "GET /static/app.js HTTP/1.1", 403, BROWSER),
            Some("http-4xx"),
        );
        check(
            &line("198.51.100.21", "\\x16\\x03\\x01\\x00", 400, "-"),
            Some("http-4xx"),
        );
    }

    #[test]
    fn bad_agents() {
        for ua in [
            "sqlmap/1.7.2#stable (https://sqlmap.org)",
            "Mozilla/5.00 (Nikto/2.1.6)",
            "gobuster/3.6",
            "Mozilla/5.0 zgrab/0.x",
            "Nuclei - Open-source project (github.com/projectdiscovery/nuclei)",
            "masscan/1.3 (https://github.com/robertdavidgraham/masscan)",
            "WPScan v3.8.22",
            "DirBuster-1.0-RC1",
            "Fuzz Faster U Fool v2.1.0",
        ] {
            check(
                &line("198.51.100.22", "GET /?id=1 HTTP/1.1", 200, ua),
                Some("http-bad-user-agent"),
            );
        }
    }

    #[test]
    fn benign_and_malformed_lines() {
        for l in [
            line("198.51.100.23", "GET / HTTP/1.1", 200, BROWSER),
            line(
                "198.51.100.23",
                "GET /blog/2024/03/hello-world HTTP/2.0",
                200,
                BROWSER,
            ),
            line("198.51.100.23", "POST /login HTTP/1.1", 302, BROWSER),
            line("198.51.100.23", "GET /login HTTP/1.1", 200, BROWSER),
            line("198.51.100.23", "GET /admin/ HTTP/1.1", 200, BROWSER),
            line(
                "198.51.100.23",
                "GET /wp-content/uploads/a.png HTTP/1.1",
                301,
                BROWSER,
            ),
        ] {
            check(&l, None);
        }
        for l in [
            "198.51.100.23 - - [01/Mar/2024:10:00:00 +0000] \"GET / HTTP/1.1\" abc 1",
            "not-an-ip - - [01/Mar/2024:10:00:00 +0000] \"GET /.env HTTP/1.1\" 404 1 \"-\" \"-\"",
            "198.51.100.23 - - [01/Mar/2024:10:00:00 +0000] \"GET /.env HTTP/1.1",
            "198.51.100.23",
            "198.51.100.23 - - [",
        ] {
            check(l, None);
        }
    }

    #[test]
    fn fields_time_and_escaped_quotes() {
        let mut m = NativeMatcher::new(&["nginx-access"], &[]).unwrap();
        let l = r#"2001:db8::24 - alice [10/Oct/2000:13:55:36 -0700] "GET /.git/HEAD HTTP/1.1" 404 0 "-" "curl/8.5""#;
        let (rule, host, fields, _) = probe(&mut m, l).unwrap();
        assert_eq!(
            (rule.as_str(), host.as_str()),
            ("http-sensitive-path", "2001:db8::24")
        );
        for kv in [
            ("path", "/.git/HEAD"),
            ("status", "404"),
            ("method", "GET"),
            ("user", "alice"),
        ] {
            assert!(
                fields.contains(&(kv.0.into(), kv.1.into())),
                "{kv:?} not in {fields:?}"
            );
        }
        let h = shield_core::LineMatcher::match_line(&mut m, l, 0).unwrap();
        assert_eq!(h.time, Some(971_211_336));
        // An escaped quote in the request does not end the field (Apache).
        let l = r#"198.51.100.25 - - [01/Mar/2024:10:00:00 +0000] "GET /x\" 200 1 \"-\" \"sqlmap HTTP/1.1" 404 9 "-" "Mozilla/5.0""#;
        assert_eq!(probe(&mut m, l).unwrap().0, "http-4xx");
    }

    /// Issue 19 item 5: a `[` (or spaces and `]`) in the Basic-auth user
    /// nginx logs must not make a probe line unreadable.
    #[test]
    fn bracket_in_basic_auth_user_does_not_hide_the_line() {
        for user in [
            "[",
            "a b",
            "] [",
            "[01/Mar/2024:10:00:00 +0000]",
            r"x\x22 [",
            "-",
        ] {
            let l = format!(
                r#"198.51.100.30 - {user} [01/Mar/2024:10:00:00 +0000] "GET /.env HTTP/1.1" 404 153 "-" "sqlmap/1.7.2#stable (https://sqlmap.org)""#
            );
            let mut m = NativeMatcher::new(&["nginx-access"], &[]).unwrap();
            let g = probe(&mut m, &l).unwrap_or_else(|| panic!("no match: {l}"));
            assert_eq!(
                (g.0.as_str(), g.1.as_str()),
                ("http-bad-user-agent", "198.51.100.30"),
                "{l}"
            );
            if user != "-" {
                assert!(
                    g.2.contains(&("user".into(), user.into())),
                    "{l}: {:?}",
                    g.2
                );
            }
            let h = shield_core::LineMatcher::match_line(&mut m, &l, 0).unwrap();
            assert_eq!(h.time, Some(1_709_287_200), "{l}");
        }
        // Apache escapes a quote in the user as `\"`.
        check(
            r#"198.51.100.30 - a\" [ [01/Mar/2024:10:00:00 +0000] "GET /.git/config HTTP/1.1" 404 1 "-" "curl/8""#,
            Some("http-sensitive-path"),
        );
    }

    /// Issue 19 item 5: `/%2eenv`, `/wp-login%2ephp` are the probes they
    /// decode to, not plain 4xx.
    #[test]
    fn percent_encoded_sensitive_paths_are_probes() {
        for p in [
            "/%2eenv",
            "/%2Egit/config",
            "/wp-login%2ephp",
            "/%70hpmyadmin/",
            "/a/..%2f..%2fetc/passwd",
            "/%2e%2e/x",
        ] {
            check(
                &line("198.51.100.31", &format!("GET {p} HTTP/1.1"), 200, BROWSER),
                Some("http-sensitive-path"),
            );
        }
        check(
            &line(
                "198.51.100.31",
                "POST /wp-login%2ephp HTTP/1.1",
                200,
                BROWSER,
            ),
            Some("http-login-fail"),
        );
        // Decoded once: `%252e` is `%2e`, not `.`; a bad escape stays as it is.
        check(
            &line("198.51.100.31", "GET /%252eenvx HTTP/1.1", 200, BROWSER),
            None,
        );
        check(
            &line("198.51.100.31", "GET /100%zz HTTP/1.1", 200, BROWSER),
            None,
        );
    }
}
