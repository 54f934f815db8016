//! A deterministic generator of realistic logs with ground truth, for tests,
//! benchmarks and `shield replay` demos (standard library only).
//!
//! - [`sshd`]: a Debian `auth.log` (rsyslog's traditional format). Attackers
//!   are password guessers on real accounts (with `message repeated` lines and
//!   `maximum authentication attempts`), invalid-user dictionary runs, and
//!   preauth scanners (banner garbage, `Unable to negotiate`, ...). Benign
//!   noise: publickey and password logins with their sessions, a few admins
//!   who mistype their password once or twice (at most once per 20 minutes),
//!   CRON, sudo, systemd-logind and a TCP health check every 10 s (a bare
//!   preauth `Connection closed`).
//! - [`nginx`]: a combined access log. Attackers are path scanners, `.env`
//!   probers, login brute forcers (401) and attack tools with their own user
//!   agent. Benign noise: browsing with assets, occasional 404s, bots, logins
//!   with rare typos.
//!
//! Lines start at [`START`] and advance 50 ms per line (20 lines/s), so a
//! million lines span about 14 hours. Each attacker is active in its own
//! window of the log (about two at a time) and takes its share of the ~30 %
//! attack lines. Attackers use 198.18.0.0/15 and `2001:db8:a::/48`; benign
//! hosts use 10.0.0.0/16, 192.0.2.0/24, 198.51.100.0/24 and `2001:db8:b::/48`,
//! so the sets never overlap. Same arguments, same bytes.

use std::collections::{BTreeSet, VecDeque};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::UnixTime;
use crate::time::civil_from_days;

/// Time of the first line: 2026-03-01T00:00:00Z.
pub const START: UnixTime = 1_772_323_200;

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// SplitMix64: small, fast, good enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
    fn port(&mut self) -> u16 {
        32_768 + self.below(28_000) as u16
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    SshBrute,
    SshInvalid,
    SshScanner,
    WebScanner,
    WebEnv,
    WebLogin,
    WebTool,
}

struct Attacker {
    ip: IpAddr,
    kind: Kind,
    start: usize,
    end: usize,
    queue: VecDeque<String>,
}

fn attacker_ip(i: usize) -> IpAddr {
    if i % 7 == 6 {
        // Each IPv6 attacker in its own /64.
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xa, i as u16, 0, 0, 0, 0x10))
    } else {
        let n = 0xC612_0000u32 + 0x100 + (i as u32 * 37 % 0x1_FE00);
        IpAddr::V4(Ipv4Addr::from(n))
    }
}

fn benign_ip(i: usize) -> IpAddr {
    match i % 5 {
        0 => IpAddr::V4(Ipv4Addr::new(10, 0, (i / 250) as u8, (i % 250 + 1) as u8)),
        1 => IpAddr::V4(Ipv4Addr::new(192, 0, 2, (i % 250 + 1) as u8)),
        2 | 3 => IpAddr::V4(Ipv4Addr::new(198, 51, 100, (i % 250 + 1) as u8)),
        _ => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xb, i as u16, 0, 0, 0, 1)),
    }
}

fn attackers(lines: usize, n: usize, kinds: &[Kind]) -> Vec<Attacker> {
    let span = (2 * lines)
        .checked_div(n)
        .map_or(0, |s| s.clamp(lines.min(200), lines));
    (0..n)
        .map(|i| {
            let start = if n > 1 {
                i * (lines - span) / (n - 1)
            } else {
                0
            };
            Attacker {
                ip: attacker_ip(i),
                kind: kinds[i % kinds.len()],
                start,
                end: start + span,
                queue: VecDeque::new(),
            }
        })
        .collect()
}

/// Runs the interleaving shared by both formats: line `i` goes to an active
/// attacker with probability 0.3, otherwise to benign traffic.
fn drive(
    lines: usize,
    mut atk: Vec<Attacker>,
    seed: u64,
    out: &mut dyn FnMut(&str) -> io::Result<()>,
    mut attack_script: impl FnMut(&mut Rng, &Attacker, UnixTime) -> Vec<String>,
    mut benign: impl FnMut(&mut Rng, usize, UnixTime) -> String,
    stamp: impl Fn(UnixTime) -> String,
    attack_line: impl Fn(&str, &Attacker, &str) -> String,
) -> io::Result<BTreeSet<IpAddr>> {
    let mut rng = Rng(seed ^ 0x5EED_0F5D_1E1D);
    let truth = atk.iter().map(|a| a.ip).collect();
    let mut active: Vec<usize> = Vec::new();
    let mut next_start = 0;
    let mut last_sec = i64::MIN;
    let mut ts = String::new();
    for i in 0..lines {
        let t = START + (i as i64 * 50) / 1000;
        if t != last_sec {
            last_sec = t;
            ts = stamp(t);
        }
        while next_start < atk.len() && atk[next_start].start <= i {
            active.push(next_start);
            next_start += 1;
        }
        active.retain(|&k| atk[k].end > i);
        if !active.is_empty() && rng.chance(0.3) {
            let k = active[rng.below(active.len())];
            if atk[k].queue.is_empty() {
                let s = attack_script(&mut rng, &atk[k], t);
                atk[k].queue.extend(s);
            }
            let msg = atk[k].queue.pop_front().unwrap_or_default();
            out(&attack_line(&ts, &atk[k], &msg))?;
        } else {
            out(&benign(&mut rng, i, t).replacen("{TS}", &ts, 1))?;
        }
    }
    Ok(truth)
}

fn syslog_stamp(t: UnixTime) -> String {
    let (_, m, d) = civil_from_days(t.div_euclid(86_400));
    let s = t.rem_euclid(86_400);
    format!(
        "{} {d:>2} {:02}:{:02}:{:02}",
        MONTHS[m as usize - 1],
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

fn clf_stamp(t: UnixTime) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(86_400));
    let s = t.rem_euclid(86_400);
    format!(
        "{d:02}/{}/{y}:{:02}:{:02}:{:02} +0000",
        MONTHS[m as usize - 1],
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

// ---------------------------------------------------------------- sshd

const REAL_USERS: &[&str] = &[
    "root", "admin", "ubuntu", "git", "postgres", "oracle", "deploy", "pi",
];
const DICT: &[&str] = &[
    "test",
    "guest",
    "user",
    "ftpuser",
    "support",
    "mysql",
    "hadoop",
    "jenkins",
    "tomcat",
    "nagios",
    "minecraft",
    "steam",
    "teamspeak",
    "ts3",
    "vagrant",
    "docker",
    "elastic",
    "kafka",
    "redis",
    "sammy",
    "server",
    "centos",
    "debian",
    "odoo",
    "wordpress",
    "web",
    "www",
    "backup",
    "student",
    "demo",
];
const STAFF: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
];

struct SshBenign {
    scripts: Vec<(u32, VecDeque<String>)>,
    last_typo: Vec<UnixTime>,
    session: u32,
    monitor: IpAddr,
    last_monitor: UnixTime,
}

impl SshBenign {
    fn line(&mut self, r: &mut Rng, t: UnixTime) -> String {
        let host = "{TS} web1 ";
        if t - self.last_monitor >= 10 {
            self.last_monitor = t;
            return format!(
                "{host}sshd[{}]: Connection closed by {} port {} [preauth]",
                20_000 + r.below(9000),
                self.monitor,
                r.port()
            );
        }
        if self.scripts.len() < 6 || (self.scripts.len() < 12 && r.chance(0.05)) {
            let s = self.script(r, t);
            self.scripts.push((1000 + r.below(60_000) as u32, s));
        }
        let k = r.below(self.scripts.len());
        let msg = self.scripts[k].1.pop_front().unwrap_or_default();
        if self.scripts[k].1.is_empty() {
            self.scripts.swap_remove(k);
        }
        format!("{host}{msg}")
    }

    fn script(&mut self, r: &mut Rng, t: UnixTime) -> VecDeque<String> {
        let pid = 1000 + r.below(60_000);
        let mut q = VecDeque::new();
        match r.below(10) {
            0..=3 => {
                q.push_back(format!("CRON[{pid}]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)"));
                q.push_back(format!(
                    "CRON[{pid}]: pam_unix(cron:session): session closed for user root"
                ));
            }
            4 | 5 => {
                let u = r.pick(STAFF);
                let uid = 1000 + STAFF.iter().position(|s| s == u).unwrap_or(0);
                q.push_back(format!("sudo: {u:>8} : TTY=pts/{} ; PWD=/home/{u} ; USER=root ; COMMAND=/usr/bin/systemctl status nginx", r.below(4)));
                q.push_back(format!("sudo: pam_unix(sudo:session): session opened for user root(uid=0) by {u}(uid={uid})"));
                q.push_back(
                    "sudo: pam_unix(sudo:session): session closed for user root".to_string(),
                );
            }
            _ => {
                let k = r.below(STAFF.len());
                let u = STAFF[k];
                let ip = benign_ip(k * 3 + 1);
                let port = r.port();
                // The first five are admins who mistype, at most once per 20 minutes.
                if k < 5 && t - self.last_typo[k] >= 1200 && r.chance(0.5) {
                    self.last_typo[k] = t;
                    for _ in 0..1 + r.below(2) {
                        q.push_back(format!("sshd[{pid}]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost={ip}  user={u}"));
                        q.push_back(format!(
                            "sshd[{pid}]: Failed password for {u} from {ip} port {port} ssh2"
                        ));
                    }
                    q.push_back(format!(
                        "sshd[{pid}]: Accepted password for {u} from {ip} port {port} ssh2"
                    ));
                } else {
                    q.push_back(format!("sshd[{pid}]: Accepted publickey for {u} from {ip} port {port} ssh2: ED25519 SHA256:{:016x}", r.next()));
                }
                self.session += 1;
                q.push_back(format!("sshd[{pid}]: pam_unix(sshd:session): session opened for user {u}(uid={}) by (uid=0)", 1000 + k));
                q.push_back(format!(
                    "systemd-logind[412]: New session {} of user {u}.",
                    self.session
                ));
                q.push_back(format!("sshd[{pid}]: Received disconnect from {ip} port {port}:11: disconnected by user"));
                q.push_back(format!(
                    "sshd[{pid}]: Disconnected from user {u} {ip} port {port}"
                ));
                q.push_back(format!(
                    "sshd[{pid}]: pam_unix(sshd:session): session closed for user {u}"
                ));
                q.push_back(format!(
                    "systemd-logind[412]: Session {} logged out. Waiting for processes to exit.",
                    self.session
                ));
            }
        }
        q
    }
}

fn ssh_attack(r: &mut Rng, a: &Attacker) -> Vec<String> {
    let ip = a.ip;
    let pid = 1000 + r.below(60_000);
    let port = r.port();
    let p = |m: String| format!("sshd[{pid}]: {m}");
    let mut v = Vec::new();
    match a.kind {
        Kind::SshBrute => {
            let u = r.pick(REAL_USERS);
            let tries = 3 + r.below(4);
            let mut k = 0;
            while k < tries {
                v.push(p(format!("pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost={ip}  user={u}")));
                let fail = format!("Failed password for {u} from {ip} port {port} ssh2");
                if k + 2 < tries && r.chance(0.25) {
                    v.push(p(fail.clone()));
                    v.push(p(format!("message repeated 2 times: [ {fail}]")));
                    k += 3;
                } else {
                    v.push(p(fail));
                    k += 1;
                }
            }
            if tries == 6 {
                v.push(p(format!("error: maximum authentication attempts exceeded for {u} from {ip} port {port} ssh2 [preauth]")));
                v.push(p(format!("Disconnecting authenticating user {u} {ip} port {port}: Too many authentication failures [preauth]")));
            } else {
                v.push(p(format!("Connection closed by authenticating user {u} {ip} port {port} [preauth]")));
            }
        }
        Kind::SshInvalid => {
            let u = r.pick(DICT);
            v.push(p(format!("Invalid user {u} from {ip} port {port}")));
            v.push(p("pam_unix(sshd:auth): check pass; user unknown".into()));
            v.push(p(format!("pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost={ip}")));
            v.push(p(format!("Failed password for invalid user {u} from {ip} port {port} ssh2")));
            v.push(p(format!("Connection closed by invalid user {u} {ip} port {port} [preauth]")));
        }
        _ => match r.below(4) {
            0 => {
                v.push(p("error: kex_exchange_identification: client sent invalid protocol identifier \"GET / HTTP/1.1\"".into()));
                v.push(p(format!("banner exchange: Connection from {ip} port {port}: invalid format")));
            }
            1 => v.push(p(format!("Unable to negotiate with {ip} port {port}: no matching host key type found. Their offer: ssh-rsa,ssh-dss [preauth]"))),
            2 => v.push(p(format!("Did not receive identification string from {ip} port {port}"))),
            _ => {
                v.push(p("error: kex_exchange_identification: Connection closed by remote host".into()));
                v.push(p(format!("Connection closed by {ip} port {port} [preauth]")));
            }
        },
    }
    v
}

/// Streams an sshd auth.log of `lines` lines with `attackers` attackers into `w`.
pub fn write_sshd<W: Write>(
    mut w: W,
    lines: usize,
    attackers: usize,
    seed: u64,
) -> io::Result<BTreeSet<IpAddr>> {
    let atk = self::attackers(
        lines,
        attackers,
        &[Kind::SshBrute, Kind::SshInvalid, Kind::SshScanner],
    );
    let mut b = SshBenign {
        scripts: Vec::new(),
        last_typo: vec![i64::MIN / 2; 5],
        session: 0,
        monitor: benign_ip(200),
        last_monitor: i64::MIN / 2,
    };
    let truth = drive(
        lines,
        atk,
        seed,
        &mut |l| {
            w.write_all(l.as_bytes())?;
            w.write_all(b"\n")
        },
        |r, a, _| ssh_attack(r, a),
        |r, _, t| b.line(r, t),
        syslog_stamp,
        |ts, _, msg| format!("{ts} web1 {msg}"),
    )?;
    w.flush()?;
    Ok(truth)
}

/// An sshd auth.log in memory, and the attackers' addresses.
pub fn sshd(lines: usize, attackers: usize, seed: u64) -> (Vec<String>, BTreeSet<IpAddr>) {
    collect(lines, |w| write_sshd(w, lines, attackers, seed))
}

fn collect(
    lines: usize,
    f: impl FnOnce(&mut Vec<u8>) -> io::Result<BTreeSet<IpAddr>>,
) -> (Vec<String>, BTreeSet<IpAddr>) {
    let mut buf = Vec::with_capacity(lines * 120);
    let truth = f(&mut buf).expect("writing to memory cannot fail");
    let text = String::from_utf8(buf).expect("the generator writes UTF-8");
    (text.lines().map(str::to_string).collect(), truth)
}

// ---------------------------------------------------------------- nginx

const BROWSERS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
];
const BOTS: &[&str] = &[
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
];
const PAGES: &[&str] = &[
    "/",
    "/about",
    "/pricing",
    "/blog/",
    "/blog/2025/12/release-notes",
    "/blog/2026/01/year-in-review",
    "/docs/getting-started",
    "/docs/configuration",
    "/docs/faq",
    "/contact",
    "/careers",
    "/products/widget",
    "/search?q=rust+logs",
    "/feed.xml",
];
const ASSETS: &[&str] = &[
    "/static/css/site.css",
    "/static/js/app.js",
    "/static/img/logo.svg",
    "/static/fonts/inter.woff2",
];
const MISSING: &[&str] = &[
    "/favicon.ico",
    "/apple-touch-icon.png",
    "/blog/2019/05/old-post",
    "/docs/v1/install",
];
const SCAN_PATHS: &[&str] = &[
    "/wp-login.php",
    "/wp-admin/setup-config.php",
    "/phpmyadmin/index.php",
    "/pma/",
    "/mysqladmin/",
    "/cgi-bin/test.cgi",
    "/.git/config",
    "/actuator/env",
    "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php",
    "/server-status",
    "/admin/config.php",
    "/backup.zip",
    "/db.sql",
    "/shell.php",
    "/boaform/admin/formLogin",
    "/.svn/entries",
    "/solr/admin/info/system",
    "/manager/html",
    "/index.php?s=/../../etc/passwd",
    "/HNAP1/",
];
const ENV_PATHS: &[&str] = &[
    "/.env",
    "/.env.local",
    "/.env.production",
    "/.env.bak",
    "/api/.env",
    "/app/.env",
    "/backend/.env",
    "/laravel/.env",
    "/.aws/credentials",
    "/config/.env",
    "/.env.example",
    "/docker/.env",
    "/.git/HEAD",
    "/wp-config.php.bak",
];
const TOOL_UAS: &[&str] = &[
    "sqlmap/1.8.2#stable (https://sqlmap.org)",
    "Mozilla/5.00 (Nikto/2.5.0) (Evasions:None) (Test:000123)",
    "gobuster/3.6",
    "Nuclei - Open-source project (github.com/projectdiscovery/nuclei)",
    "Mozilla/5.0 zgrab/0.x",
];

fn web_line(
    ip: IpAddr,
    ts: &str,
    req: &str,
    status: u16,
    size: usize,
    refr: &str,
    ua: &str,
) -> String {
    format!("{ip} - - [{ts}] \"{req}\" {status} {size} \"{refr}\" \"{ua}\"")
}

struct WebBenign {
    last_typo: Vec<UnixTime>,
}

impl WebBenign {
    fn line(&mut self, r: &mut Rng, t: UnixTime) -> String {
        let k = r.below(200);
        let ip = benign_ip(k + 20);
        let ua = if k.is_multiple_of(17) {
            *r.pick(BOTS)
        } else {
            BROWSERS[k % BROWSERS.len()]
        };
        let x = r.below(100);
        let (req, status, size, refr): (String, u16, usize, &str) = match x {
            0..=39 => (
                format!("GET {} HTTP/2.0", r.pick(PAGES)),
                200,
                4000 + r.below(50_000),
                "-",
            ),
            40..=79 => (
                format!("GET {} HTTP/2.0", r.pick(ASSETS)),
                200,
                800 + r.below(90_000),
                "https://example.org/",
            ),
            80..=82 => (format!("GET {} HTTP/2.0", r.pick(MISSING)), 404, 153, "-"),
            83..=86 => (
                "GET /login HTTP/2.0".into(),
                200,
                5120,
                "https://example.org/",
            ),
            87..=89 => {
                // A login: rarely mistyped (at most once per 20 minutes per client).
                let typo = t - self.last_typo[k] >= 1200 && r.chance(0.2);
                if typo {
                    self.last_typo[k] = t;
                    (
                        "POST /login HTTP/2.0".into(),
                        401,
                        48,
                        "https://example.org/login",
                    )
                } else {
                    (
                        "POST /login HTTP/2.0".into(),
                        302,
                        0,
                        "https://example.org/login",
                    )
                }
            }
            90..=93 => (
                "GET /account HTTP/2.0".into(),
                200,
                9000 + r.below(9000),
                "https://example.org/login",
            ),
            94..=96 => ("GET /robots.txt HTTP/1.1".into(), 200, 120, "-"),
            _ => ("HEAD / HTTP/1.1".into(), 301, 0, "-"),
        };
        web_line(ip, "{TS}", &req, status, size, refr, ua)
    }
}

fn web_attack(r: &mut Rng, a: &Attacker) -> Vec<String> {
    // Placeholders: `{TS}` is filled when the line is written.
    let ip = a.ip;
    let ua_b = BROWSERS[(a.start / 7) % BROWSERS.len()];
    match a.kind {
        Kind::WebScanner => (0..4)
            .map(|_| {
                let p = r.pick(SCAN_PATHS);
                let st = *r.pick(&[404u16, 404, 404, 403, 301]);
                web_line(ip, "{TS}", &format!("GET {p} HTTP/1.1"), st, 162, "-", ua_b)
            })
            .collect(),
        Kind::WebEnv => (0..4)
            .map(|_| {
                web_line(
                    ip,
                    "{TS}",
                    &format!("GET {} HTTP/1.1", r.pick(ENV_PATHS)),
                    404,
                    162,
                    "-",
                    "Mozilla/5.0 (X11; Linux x86_64)",
                )
            })
            .collect(),
        Kind::WebLogin => (0..4)
            .map(|_| {
                let path = if r.chance(0.7) {
                    "/login"
                } else {
                    "/api/auth/login"
                };
                web_line(
                    ip,
                    "{TS}",
                    &format!("POST {path} HTTP/1.1"),
                    401,
                    48,
                    "https://example.org/login",
                    r.pick::<&str>(BROWSERS),
                )
            })
            .collect(),
        _ => {
            let ua = TOOL_UAS[(a.start / 3) % TOOL_UAS.len()];
            (0..4)
                .map(|_| {
                    let id = r.below(1000);
                    web_line(
                        ip,
                        "{TS}",
                        &format!("GET /products/widget?id={id}%27%20AND%201%3D1--%20 HTTP/1.1"),
                        *r.pick(&[200u16, 500]),
                        5120,
                        "-",
                        ua,
                    )
                })
                .collect()
        }
    }
}

/// Streams an nginx combined access log into `w`; returns the attackers.
pub fn write_nginx<W: Write>(
    mut w: W,
    lines: usize,
    attackers: usize,
    seed: u64,
) -> io::Result<BTreeSet<IpAddr>> {
    let atk = self::attackers(
        lines,
        attackers,
        &[
            Kind::WebScanner,
            Kind::WebEnv,
            Kind::WebLogin,
            Kind::WebTool,
        ],
    );
    let mut b = WebBenign {
        last_typo: vec![i64::MIN / 2; 200],
    };
    let truth = drive(
        lines,
        atk,
        seed,
        &mut |l| {
            w.write_all(l.as_bytes())?;
            w.write_all(b"\n")
        },
        |r, a, _| web_attack(r, a),
        |r, _, t| b.line(r, t),
        clf_stamp,
        |ts, _, msg| msg.replacen("{TS}", ts, 1),
    )?;
    w.flush()?;
    Ok(truth)
}

/// An nginx access log in memory, and the attackers' addresses.
pub fn nginx(lines: usize, attackers: usize, seed: u64) -> (Vec<String>, BTreeSet<IpAddr>) {
    collect(lines, |w| write_nginx(w, lines, attackers, seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_sized() {
        let (a, ta) = sshd(5000, 6, 1);
        let (b, tb) = sshd(5000, 6, 1);
        assert_eq!((a.len(), &a), (5000, &b));
        assert_eq!((ta.len(), &ta), (6, &tb));
        let (c, _) = sshd(5000, 6, 2);
        assert_ne!(a, c);
        let (n, tn) = nginx(3000, 4, 1);
        assert_eq!((n.len(), tn.len()), (3000, 4));
        assert!(n[0].contains("[01/Mar/2026:00:00:00 +0000]"), "{}", n[0]);
        assert!(a[0].starts_with("Mar  1 00:00:00 web1 "), "{}", a[0]);
        // Every attacker appears in the log.
        for ip in &ta {
            assert!(a.iter().any(|l| l.contains(&format!(" {ip} "))), "{ip}");
        }
        assert!(!a.iter().any(|l| l.contains("{TS}")) && !n.iter().any(|l| l.contains("{TS}")));
    }
}
