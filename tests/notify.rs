//! Notification channels and exec actions on the real binary, everything on
//! 127.0.0.1 with a CA made here (rcgen): every channel kind POSTs its own
//! message shape to a local HTTPS receiver, a channel without the CA fails
//! on the certificate, a failing endpoint shows in `/metrics` and `shield
//! status`; email reaches an SMTP sink only after STARTTLS; an exec action
//! gets every ban in a few batches while 10k failures a second flow, with the
//! decision rate measured with and without it (reported, never asserted).

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use common::*;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A CA and a server certificate for 127.0.0.1 it signed.
struct TestCa {
    ca_pem: String,
    server: Arc<rustls::ServerConfig>,
}

fn test_ca() -> TestCa {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "shield test CA");
    let ca =
        rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let chain: Vec<CertificateDer<'static>> = vec![leaf.der().clone(), ca.der().clone()];
    let pk = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let server = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, pk)
        .unwrap();
    TestCa {
        ca_pem: ca.pem(),
        server: Arc::new(server),
    }
}

/// One request the HTTPS receiver took.
#[derive(Debug, Clone)]
struct Request {
    path: String,
    /// Lower-cased names.
    headers: HashMap<String, String>,
    body: serde_json::Value,
}

/// An HTTPS receiver on 127.0.0.1: answers 503 under `/fail`, 200 elsewhere,
/// and passes every request on. Handshakes that fail are counted.
struct Receiver {
    port: u16,
    rx: mpsc::Receiver<Request>,
    tls_failures: Arc<Mutex<u32>>,
}

fn https_receiver(ca: &TestCa) -> Receiver {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    let tls_failures = Arc::new(Mutex::new(0));
    let (cfg, fails) = (ca.server.clone(), tls_failures.clone());
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { break };
            let (cfg, tx, fails) = (cfg.clone(), tx.clone(), fails.clone());
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let conn = rustls::ServerConnection::new(cfg).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, s);
                match read_request(&mut tls) {
                    Some(req) => {
                        let status = if req.path.starts_with("/fail") {
                            "503 Service Unavailable"
                        } else {
                            "200 OK"
                        };
                        let _ = write!(
                            tls,
                            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: 11\r\nConnection: close\r\n\r\n{{\"ok\":true}}"
                        );
                        let _ = tls.flush();
                        tls.conn.send_close_notify();
                        let _ = tls.flush();
                        let _ = tx.send(req);
                    }
                    None => *fails.lock().unwrap() += 1,
                }
            });
        }
    });
    Receiver {
        port,
        rx,
        tls_failures,
    }
}

fn read_request(s: &mut impl Read) -> Option<Request> {
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let path = line.split(' ').nth(1)?.to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let len: usize = headers.get("content-length")?.parse().ok()?;
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(Request {
        path,
        headers,
        body: serde_json::from_slice(&body).ok()?,
    })
}

/// A generated sshd log with `attackers` attackers; returns their addresses.
fn sshd_log(dir: &Path, lines: usize, attackers: usize) -> (String, Vec<String>) {
    let log = dir.join("auth.log");
    let truth = dir.join("attackers.txt");
    ok(&[
        "gen-log",
        "sshd",
        "--lines",
        &lines.to_string(),
        "--attackers",
        &attackers.to_string(),
        "--out",
        log.to_str().unwrap(),
        "--truth",
        truth.to_str().unwrap(),
    ]);
    let ips = std::fs::read_to_string(&truth)
        .unwrap()
        .split_whitespace()
        .filter(|w| w.parse::<std::net::IpAddr>().is_ok())
        .map(str::to_string)
        .collect();
    (log.display().to_string(), ips)
}

#[test]
fn each_channel_kind_reaches_an_https_receiver_in_its_shape() {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();
    let recv = https_receiver(&ca);
    let (log, attackers) = sshd_log(dir.path(), 2000, 5);
    assert_eq!(attackers.len(), 5, "gen-log names its attackers");
    let base = format!("https://127.0.0.1:{}", recv.port);
    let ca_line = format!("ca_file = \"{}\"", ca_file.display());
    let common = format!("{ca_line}\nbatch = \"300ms\"\nbackoff = \"100ms\"");
    let channels = format!(
        r#"
[[notify]]
name = "slack"
kind = "slack"
url = "{base}/slack/T0/B0/xyz"
{common}

[[notify]]
name = "discord"
kind = "discord"
url = "{base}/discord/api/webhooks/1/abc"
{common}

[[notify]]
name = "telegram"
kind = "telegram"
url = "{base}/tg"
token = "123456:secret"
chat_id = "-1001"
{common}

[[notify]]
name = "ntfy"
kind = "ntfy"
url = "{base}/ntfy"
topic = "shield-alerts"
token = "tk_ntfy"
{common}

[[notify]]
name = "gotify"
kind = "gotify"
url = "{base}/gotify"
token = "gotify-app-token"
{common}

[[notify]]
name = "json"
kind = "json"
url = "{base}/json"
token = "json-bearer"
{common}

[[notify]]
name = "broken"
kind = "json"
url = "{base}/fail"
retries = 1
{common}

[[notify]]
name = "untrusted"
kind = "slack"
url = "{base}/untrusted"
retries = 0
batch = "300ms"
"#
    );
    let port = free_port();
    let cfg = Config::new()
        .listen(&format!("127.0.0.1:{port}"))
        .sshd_files(&log)
        .extra(&channels)
        .build();
    let d = Daemon::start(dir.path(), &cfg);

    // Gather requests until every channel's decisions have all arrived.
    let mut got: Vec<Request> = Vec::new();
    let carried = |got: &[Request], prefix: &str| -> usize {
        got.iter()
            .filter(|r| r.path.starts_with(prefix))
            .map(|r| match prefix {
                "/json" | "/fail" => r.body["count"].as_u64().unwrap() as usize,
                _ => 1,
            })
            .sum()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while carried(&got, "/json") < 5
        || ["/slack", "/discord", "/tg", "/ntfy", "/gotify", "/fail"]
            .iter()
            .any(|p| carried(&got, p) == 0)
    {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match recv.rx.recv_timeout(left) {
            Ok(r) => got.push(r),
            Err(_) => panic!(
                "not every channel posted: {:#?}\n{}",
                got.iter().map(|r| &r.path).collect::<Vec<_>>(),
                d.log()
            ),
        }
    }
    let first = |prefix: &str| got.iter().find(|r| r.path.starts_with(prefix)).unwrap();
    let any_attacker = |text: &str| attackers.iter().any(|a| text.contains(a.as_str()));

    // Slack: {"text"} to the webhook URL as given.
    let s = first("/slack");
    assert_eq!(s.path, "/slack/T0/B0/xyz");
    let text = s.body["text"].as_str().unwrap();
    assert!(text.contains("new decision"), "{text}");
    assert!(any_attacker(text), "{text}");
    assert!(text.contains("sshd"), "scenario named: {text}");
    // Discord: {"username", "content"}.
    let s = first("/discord");
    assert_eq!(s.body["username"], "Shield");
    assert!(
        any_attacker(s.body["content"].as_str().unwrap()),
        "{:?}",
        s.body
    );
    // Telegram: sendMessage under the bot token, to the chat.
    let s = first("/tg");
    assert_eq!(s.path, "/tg/bot123456:secret/sendMessage");
    assert_eq!(s.body["chat_id"], "-1001");
    assert!(
        any_attacker(s.body["text"].as_str().unwrap()),
        "{:?}",
        s.body
    );
    // ntfy: JSON publishing with the topic, a bearer token.
    let s = first("/ntfy");
    assert_eq!(s.body["topic"], "shield-alerts");
    assert!(s.body["title"].as_str().unwrap().starts_with("Shield on "));
    assert!(any_attacker(s.body["message"].as_str().unwrap()));
    assert_eq!(s.headers["authorization"], "Bearer tk_ntfy");
    // Gotify: POST /message with the application token in X-Gotify-Key.
    let s = first("/gotify");
    assert_eq!(s.path, "/gotify/message");
    assert_eq!(s.headers["x-gotify-key"], "gotify-app-token");
    assert_eq!(s.body["priority"], 5);
    assert!(any_attacker(s.body["message"].as_str().unwrap()));
    // Generic JSON: the batch, every decision with its fields.
    let s = first("/json");
    assert_eq!(s.headers["authorization"], "Bearer json-bearer");
    assert_eq!(s.body["event"], "decisions");
    assert!(!s.body["host"].as_str().unwrap().is_empty());
    let item = &s.body["decisions"][0];
    for k in ["address", "scenario", "origin", "duration_s", "type"] {
        assert!(!item[k].is_null(), "{k} missing in {item}");
    }
    assert_eq!(item["origin"], "local");
    let mut seen: Vec<String> = got
        .iter()
        .filter(|r| r.path == "/json")
        .flat_map(|r| r.body["decisions"].as_array().unwrap().clone())
        .map(|i| i["address"].as_str().unwrap().to_string())
        .collect();
    seen.sort();
    let mut want = attackers.clone();
    want.sort();
    assert_eq!(seen, want, "each attacker's ban in exactly one message");

    // Without the CA the receiver's certificate is refused: no request arrives.
    assert!(!got.iter().any(|r| r.path.starts_with("/untrusted")));
    // The broken and untrusted channels show as failing in /metrics ...
    let failed = |name: &str| {
        let (_, body) = scrape(port);
        metric_sum(
            &body,
            "shield_notify_messages_total",
            &[&format!("channel=\"{name}\""), "outcome=\"failed\""],
        )
    };
    wait_for(Duration::from_secs(30), || {
        (failed("broken") >= 1.0 && failed("untrusted") >= 1.0).then_some(())
    })
    .unwrap_or_else(|| panic!("failures not counted:\n{}", scrape(port).1));
    assert!(*recv.tls_failures.lock().unwrap() >= 1);
    let (_, body) = scrape(port);
    assert!(
        metric_sum(
            &body,
            "shield_notify_messages_total",
            &["channel=\"broken\"", "outcome=\"retried\""]
        ) >= 1.0,
        "{body}"
    );
    assert!(
        body.lines().any(
            |l| l.starts_with("shield_notify_last_error_timestamp_seconds{")
                && l.contains("channel=\"broken\"")
                && l.contains("HTTP 503")
        ),
        "{body}"
    );
    for ok_channel in ["slack", "discord", "telegram", "ntfy", "gotify", "json"] {
        assert!(
            metric_sum(
                &body,
                "shield_notify_messages_total",
                &[&format!("channel=\"{ok_channel}\""), "outcome=\"sent\""]
            ) >= 1.0,
            "{ok_channel}: {body}"
        );
        assert_eq!(failed(ok_channel), 0.0, "{ok_channel}");
    }
    // ... and in `shield status`, with the reason.
    let out = d.cli(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("notify {name} ")))
            .unwrap_or_else(|| panic!("no status line for {name}:\n{text}"))
            .to_string()
    };
    assert!(
        line("broken").contains("last error: the endpoint answered HTTP 503"),
        "{text}"
    );
    let untrusted = line("untrusted");
    assert!(untrusted.contains("certificate"), "{untrusted}");
    assert!(!line("telegram").contains("secret"), "no token in status");
    assert!(!d.log().contains("123456:secret"), "no token in the log");
}

/// A mail an SMTP sink took.
#[derive(Debug, Clone)]
struct Mail {
    /// Whether the session had been upgraded with STARTTLS when MAIL FROM came.
    tls: bool,
    /// The decoded `AUTH PLAIN` credentials, if any.
    auth: Option<String>,
    from: String,
    to: Vec<String>,
    data: String,
}

/// Reads one CRLF-terminated line (byte by byte: nothing is buffered past
/// STARTTLS, where the stream changes hands).
fn smtp_line(s: &mut impl Read) -> Option<String> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        if s.read(&mut b).ok()? == 0 {
            return None;
        }
        line.push(b[0]);
    }
    Some(String::from_utf8_lossy(&line[..line.len() - 2]).into_owned())
}

/// One SMTP session until QUIT or STARTTLS; returns true when the client asked to upgrade.
fn smtp_session(
    s: &mut (impl Read + Write),
    tls: bool,
    offer_starttls: bool,
    tx: &mpsc::Sender<Mail>,
) -> Option<bool> {
    let mut mail = Mail {
        tls,
        auth: None,
        from: String::new(),
        to: Vec::new(),
        data: String::new(),
    };
    loop {
        let line = smtp_line(s)?;
        let verb = line
            .split(' ')
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let reply: &str = match verb.as_str() {
            "EHLO" if tls => "250-sink.test\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n",
            "EHLO" if offer_starttls => "250-sink.test\r\n250 STARTTLS\r\n",
            "EHLO" => "250-sink.test\r\n250 8BITMIME\r\n",
            "STARTTLS" if offer_starttls && !tls => {
                s.write_all(b"220 go ahead\r\n").ok()?;
                return Some(true);
            }
            "AUTH" => {
                let b64 = line.split(' ').nth(2).unwrap_or_default();
                mail.auth = Some(String::from_utf8_lossy(&base64_decode(b64)).into_owned());
                "235 ok\r\n"
            }
            "MAIL" => {
                mail.from = line.clone();
                "250 ok\r\n"
            }
            "RCPT" => {
                mail.to.push(line.clone());
                "250 ok\r\n"
            }
            "DATA" => {
                s.write_all(b"354 end with .\r\n").ok()?;
                loop {
                    let l = smtp_line(s)?;
                    if l == "." {
                        break;
                    }
                    mail.data.push_str(&l);
                    mail.data.push('\n');
                }
                let _ = tx.send(mail.clone());
                "250 queued\r\n"
            }
            "RSET" | "NOOP" => "250 ok\r\n",
            "QUIT" => {
                let _ = s.write_all(b"221 bye\r\n");
                return Some(false);
            }
            _ => "502 not here\r\n",
        };
        s.write_all(reply.as_bytes()).ok()?;
        s.flush().ok()?;
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// An SMTP sink on 127.0.0.1 that upgrades with STARTTLS (when it offers it)
/// on the test CA's certificate and passes every mail on.
fn smtp_sink(ca: &TestCa, offer_starttls: bool) -> (u16, mpsc::Receiver<Mail>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    let cfg = ca.server.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { break };
            let (cfg, tx) = (cfg.clone(), tx.clone());
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                if s.write_all(b"220 sink.test ESMTP\r\n").is_err() {
                    return;
                }
                if smtp_session(&mut s, false, offer_starttls, &tx) == Some(true) {
                    let conn = rustls::ServerConnection::new(cfg).unwrap();
                    let mut tls = rustls::StreamOwned::new(conn, s);
                    let _ = smtp_session(&mut tls, true, offer_starttls, &tx);
                }
            });
        }
    });
    (port, rx)
}

#[test]
fn email_arrives_only_after_starttls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();
    let (port_tls, mails) = smtp_sink(&ca, true);
    let (port_plain, plain_mails) = smtp_sink(&ca, false);
    let (log, attackers) = sshd_log(dir.path(), 2000, 5);
    let mail = |name: &str, port: u16| {
        format!(
            r#"
[[notify]]
name = "{name}"
kind = "email"
smtp = "127.0.0.1:{port}"
from = "Shield <shield@test.example>"
to = ["ops@test.example", "oncall@test.example"]
username = "shield"
password = "s3cret"
ca_file = "{}"
batch = "300ms"
retries = 0
"#,
            ca_file.display()
        )
    };
    let api = free_port();
    let cfg = Config::new()
        .listen(&format!("127.0.0.1:{api}"))
        .sshd_files(&log)
        .extra(&mail("mail", port_tls))
        .extra(&mail("plain", port_plain))
        .build();
    let d = Daemon::start(dir.path(), &cfg);

    let mut got = Vec::new();
    while got.len() < 5 {
        let m = mails
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no mail after STARTTLS:\n{}", d.log()));
        got.push(m);
        let listed: usize = got
            .iter()
            .map(|m| {
                attackers
                    .iter()
                    .filter(|a| m.data.contains(a.as_str()))
                    .count()
            })
            .sum();
        if listed == attackers.len() {
            break;
        }
    }
    let m = &got[0];
    assert!(m.tls, "MAIL FROM only after STARTTLS");
    assert_eq!(m.auth.as_deref(), Some("\0shield\0s3cret"));
    assert_eq!(m.from, "MAIL FROM:<shield@test.example>");
    assert_eq!(
        m.to,
        vec![
            "RCPT TO:<ops@test.example>",
            "RCPT TO:<oncall@test.example>"
        ]
    );
    assert!(m.data.contains("Subject: Shield on "), "{}", m.data);
    assert!(m.data.contains("new decision"), "{}", m.data);
    for a in &attackers {
        assert!(
            got.iter().any(|m| m.data.contains(a.as_str())),
            "{a} in no mail: {got:#?}"
        );
    }

    // A server that offers no STARTTLS gets nothing, and the channel says why.
    let count = |body: &str, channel: &str, outcome: &str| {
        metric_sum(
            body,
            "shield_notify_messages_total",
            &[
                &format!("channel=\"{channel}\""),
                &format!("outcome=\"{outcome}\""),
            ],
        )
    };
    wait_for(Duration::from_secs(30), || {
        let (_, body) = scrape(api);
        (count(&body, "plain", "failed") >= 1.0 && count(&body, "mail", "sent") >= 1.0)
            .then_some(())
    })
    .unwrap_or_else(|| panic!("counters:\n{}\n{}", scrape(api).1, d.log()));
    assert!(plain_mails.try_recv().is_err(), "no mail without TLS");
    let st = d.status();
    let plain = st["notify"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "plain")
        .unwrap();
    assert!(
        plain["last_error"].as_str().unwrap().contains("STARTTLS")
            || plain["last_error"].as_str().unwrap().contains("TLS"),
        "{plain}"
    );
    assert!(!d.log().contains("s3cret"), "no password in the log");
}

/// What one flow of bans measured.
#[derive(Debug)]
struct Flow {
    bans: u64,
    /// Bans decided per second, from the first line written to the last ban.
    rate: f64,
    /// From the last line written to the last ban.
    lag: Duration,
    /// Mean time to commit one reader batch (the decision path), from /metrics.
    commit_ms: f64,
}

/// The i-th flow address (10.0.0.0/8, distinct for i < 2^24).
fn flow_ip(i: u64) -> String {
    let b = (0x0A00_0000u32 + i as u32).to_be_bytes();
    format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3])
}

/// Starts a daemon whose every sshd failure bans, appends `n` failures from
/// distinct addresses at `per_s` lines a second, and measures the decisions.
/// With `action`, a `[[action]]` writes each batch it gets to `dir/out`.
fn ban_flow(n: u64, per_s: u64, action: bool) -> (Flow, Option<Vec<serde_json::Value>>) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("auth.log");
    std::fs::write(&log, "").unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let script = dir.path().join("store-batch.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nf=$(mktemp \"$1/batch.XXXXXX\")\ncat > \"$f\"\necho \"stored $SHIELD_DECISIONS decisions\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let api = free_port();
    let mut cfg = Config::new()
        .listen(&format!("127.0.0.1:{api}"))
        .no_escalation()
        .ssh_test_scenario("1h")
        .sshd_files(log.to_str().unwrap())
        .extra(
            "[[scenario]]\nname = \"ssh-one\"\nrules = [\"sshd*\"]\nkind = \"window\"\ncapacity = 1\nleak = \"1h\"\nduration = \"1h\"\n",
        );
    if action {
        cfg = cfg.extra(&format!(
            "[[action]]\nname = \"store\"\ncommand = [\"{}\", \"{}\"]\nbatch = \"200ms\"\nconcurrency = 2\nqueue = 200000\n",
            script.display(),
            out.display()
        ));
    }
    let d = Daemon::start(dir.path(), &cfg.build());
    let decided = || {
        d.status()["counters"]["decisions_new"]
            .as_u64()
            .unwrap_or(0)
    };
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    let chunk = per_s / 10;
    let t0 = std::time::Instant::now();
    let mut i = 0;
    while i < n {
        let mut buf = String::new();
        for _ in 0..chunk.min(n - i) {
            buf.push_str(&ssh_fail(&flow_ip(i), i as usize));
            buf.push('\n');
            i += 1;
        }
        f.write_all(buf.as_bytes()).unwrap();
        // Paced: chunk k leaves at k × 100 ms.
        let next = t0 + Duration::from_millis(100 * i / chunk);
        std::thread::sleep(next.saturating_duration_since(std::time::Instant::now()));
    }
    let written = std::time::Instant::now();
    wait_for(Duration::from_secs(300), || {
        std::thread::sleep(Duration::from_millis(20));
        (decided() >= n).then_some(())
    })
    .unwrap_or_else(|| panic!("{} of {n} bans:\n{}", decided(), d.log()));
    let done = std::time::Instant::now();
    let (_, body) = scrape(api);
    let commit_ms = 1000.0 * metric_sum(&body, "shield_batch_commit_seconds_sum", &[])
        / metric_sum(&body, "shield_batch_commit_seconds_count", &[]).max(1.0);
    let flow = Flow {
        bans: decided(),
        rate: n as f64 / (done - t0).as_secs_f64(),
        lag: done - written,
        commit_ms,
    };
    if !action {
        return (flow, None);
    }
    // Every ban reaches the action, in batches.
    let delivered = |st: &serde_json::Value| {
        st["notify"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "store")
            .cloned()
            .unwrap()
    };
    let st = wait_for(Duration::from_secs(60), || {
        let c = delivered(&d.status());
        (c["delivered"].as_u64().unwrap() + c["dropped"].as_u64().unwrap() >= n).then_some(c)
    })
    .unwrap_or_else(|| {
        panic!(
            "the action did not get every ban: {}",
            delivered(&d.status())
        )
    });
    assert_eq!(st["dropped"], 0, "{st}");
    let batches: Vec<serde_json::Value> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap())
        .collect();
    assert_eq!(
        st["exits"]["0"].as_u64().unwrap(),
        batches.len() as u64,
        "{st}"
    );
    assert!(
        d.log().contains("stored "),
        "the action's stdout is in the log"
    );
    (flow, Some(batches))
}

#[test]
fn an_action_gets_batches_while_10k_bans_a_second_flow() {
    let n: u64 = std::env::var("SHIELD_NOTIFY_BANS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30_000);
    let (without, _) = ban_flow(n, 10_000, false);
    let (with, batches) = ban_flow(n, 10_000, true);
    let batches = batches.unwrap();
    // Each ban in exactly one batch, and batches, not one run per ban.
    let mut seen = std::collections::HashSet::new();
    for b in &batches {
        assert_eq!(b["event"], "decisions");
        for d in b["decisions"].as_array().unwrap() {
            assert!(
                seen.insert(d["address"].as_str().unwrap().to_string()),
                "{d}"
            );
        }
    }
    assert_eq!(seen.len() as u64, n);
    assert_eq!((without.bans, with.bans), (n, n));
    assert!(
        (batches.len() as u64) < n / 100,
        "{} runs for {n} bans",
        batches.len()
    );
    // Figures for BENCHMARKS.md (`notifications`); timing is reported, never asserted.
    eprintln!(
        "bans {n} at 10k lines/s: without action {:.0} bans/s, lag {:?}, batch commit {:.2} ms; \
         with action {:.0} bans/s, lag {:?}, batch commit {:.2} ms; action runs {}",
        without.rate,
        without.lag,
        without.commit_ms,
        with.rate,
        with.lag,
        with.commit_ms,
        batches.len()
    );
}
