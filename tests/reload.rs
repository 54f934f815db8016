//! SIGHUP (and `shield reload`) reloads every section, on the real binary: `[api]` (a new listen
//! address and token, TLS certificates — also when only the files change),
//! `[firewall]` (a new table in the kernel with no ban missing at any
//! moment), `[webhook]` (a receiver added), and refusals that name the key
//! needing a restart (`[api] socket`, `[firewall] priority`, `[store] path`).

mod common;
mod tls_ca;

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{Config, Daemon, Netns, free_port, require, run_ok, wait_for};
use tls_ca::TestCa;

const TOKEN: &str = "9d2f6b1a7c3e5f8092b4d6e8a1c3f5b7d9e2a4c6f8b1d3e5a7c9f2b4d6e8a0c2";

fn source(dir: &Path) -> String {
    std::fs::write(dir.join("auth.log"), "").unwrap();
    format!(
        "[[source]]\nname = \"sshd\"\npaths = [\"{}/auth.log\"]\npacks = [\"sshd\"]\n",
        dir.display()
    )
}

/// Writes `cfg` (with `@DIR@`) as the daemon's config, sends SIGHUP and waits
/// for the `n`-th "config reloaded" line; returns the log.
fn reload(d: &Daemon, cfg: &str, n: usize) -> String {
    std::fs::write(&d.config, cfg.replace("@DIR@", d.dir.to_str().unwrap())).unwrap();
    let pid = d.child.as_ref().unwrap().id().to_string();
    run_ok(&["kill", "-HUP", &pid]);
    wait_reloaded(d, n)
}

/// [`reload`] through `shield reload` instead of a signal.
fn reload_by_cli(d: &Daemon, cfg: &str, n: usize) -> String {
    std::fs::write(&d.config, cfg.replace("@DIR@", d.dir.to_str().unwrap())).unwrap();
    let out = d.cli(&["reload"]);
    assert!(
        out.status.success(),
        "shield reload: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_reloaded(d, n)
}

fn wait_reloaded(d: &Daemon, n: usize) -> String {
    let done = wait_for(Duration::from_secs(30), || {
        let log = d.log();
        (log.matches("config reloaded").count() >= n).then_some(log)
    });
    done.unwrap_or_else(|| panic!("reload {n} did not finish:\n{}", d.log()))
}

/// The last "config reloaded" line and the errors logged since the one before.
fn last_reload(log: &str) -> &str {
    let end = log.rfind("config reloaded").unwrap();
    let start = log[..end].rfind("config reloaded").map_or(0, |i| i + 1);
    &log[start..]
}

fn http_status(addr: &str, path: &str, headers: &str) -> Option<u16> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\n{headers}Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split(' ').nth(1)?.parse().ok()
}

#[test]
fn api_reload_moves_the_listener_and_applies_the_token_or_names_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let base = |listen: &str| Config::new().listen(listen).source(&source(dir.path()));
    let d = Daemon::start(dir.path(), &base(&a).build());
    let bearer = format!("Authorization: Bearer {TOKEN}\r\n");
    assert_eq!(http_status(&a, "/health", ""), Some(200));
    assert_eq!(
        http_status(&a, "/api/decisions", &bearer),
        Some(404),
        "no token yet: no control API on TCP"
    );

    let log = reload(
        &d,
        &base(&b).api(&format!("token = \"{TOKEN}\"")).build(),
        1,
    );
    assert!(last_reload(&log).contains("[api]"), "{log}");
    assert_eq!(
        http_status(&b, "/api/decisions", &bearer),
        Some(200),
        "{log}"
    );
    assert_eq!(
        http_status(&a, "/health", ""),
        None,
        "the old address is closed"
    );

    // A new control socket needs a restart: refused, named, the old one serves.
    let moved = base(&b)
        .api(&format!("token = \"{TOKEN}\""))
        .build()
        .replace("@DIR@/shield.sock", "@DIR@/other.sock");
    let log = reload(&d, &moved, 2);
    assert!(
        last_reload(&log).contains("[api] socket changed: restart the daemon"),
        "{log}"
    );
    assert!(
        std::os::unix::net::UnixStream::connect(dir.path().join("shield.sock")).is_ok(),
        "the socket still answers"
    );
    assert_eq!(http_status(&b, "/api/decisions", &bearer), Some(200));

    // So does the store's path.
    let log = reload(
        &d,
        &moved
            .replace("other.sock", "shield.sock")
            .replace("shield.db", "other.db"),
        3,
    );
    assert!(
        last_reload(&log).contains("[store] path changed: restart"),
        "{log}"
    );
}

/// The subject CN of the certificate `https://addr` serves (curl -v).
fn served_cn(addr: &str, ca: &Path) -> String {
    let o = std::process::Command::new("curl")
        .args(["-sv", "-o", "/dev/null", "--max-time", "5", "--cacert"])
        .arg(ca)
        .arg(format!("https://{addr}/health"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    err.lines()
        .find_map(|l| l.split("subject: ").nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| format!("(no certificate: {err})"))
}

#[test]
fn tls_certificates_reload_when_the_files_change_and_on_sighup() {
    require("curl", "curl");
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "reload");
    let first = ca.server("first", "first");
    let addr = format!("127.0.0.1:{}", free_port());
    let with = |p: &tls_ca::Pair| {
        Config::new()
            .listen(&addr)
            .api(&format!(
                "tls_cert = \"{}\"\ntls_key = \"{}\"",
                p.cert.display(),
                p.key.display()
            ))
            .source(&source(dir.path()))
            .build()
    };
    // Served from copies at fixed paths, as a renewal tool would write them.
    let (cert, key) = (dir.path().join("live.pem"), dir.path().join("live.key"));
    std::fs::copy(&first.cert, &cert).unwrap();
    std::fs::copy(&first.key, &key).unwrap();
    let live = tls_ca::Pair {
        cert: cert.clone(),
        key: key.clone(),
    };
    let d = Daemon::start(dir.path(), &with(&live));
    assert_eq!(served_cn(&addr, &ca.ca), "CN=first");

    // Renewed in place: picked up without a signal.
    let second = ca.server("second", "second");
    std::fs::copy(&second.key, &key).unwrap();
    std::fs::copy(&second.cert, &cert).unwrap();
    let renewed = wait_for(Duration::from_secs(20), || {
        (served_cn(&addr, &ca.ca) == "CN=second").then_some(())
    });
    assert!(
        renewed.is_some(),
        "{}\n{}",
        served_cn(&addr, &ca.ca),
        d.log()
    );

    // New paths: applied by SIGHUP.
    let third = ca.server("third", "third");
    let log = reload(&d, &with(&third), 1);
    assert!(last_reload(&log).contains("[api]"), "{log}");
    assert_eq!(served_cn(&addr, &ca.ca), "CN=third", "{log}");

    // A key that does not match: refused, named, the third keeps serving.
    let bad = tls_ca::Pair {
        cert: third.cert.clone(),
        key: second.key.clone(),
    };
    std::fs::write(
        &d.config,
        with(&bad).replace("@DIR@", d.dir.to_str().unwrap()),
    )
    .unwrap();
    let pid = d.child.as_ref().unwrap().id().to_string();
    run_ok(&["kill", "-HUP", &pid]);
    let refused = wait_for(Duration::from_secs(20), || {
        d.log().contains("reload refused").then_some(())
    });
    assert!(refused.is_some(), "{}", d.log());
    assert!(
        d.log().contains("second.key"),
        "the file is named:\n{}",
        d.log()
    );
    assert_eq!(served_cn(&addr, &ca.ca), "CN=third");
}

/// Polls `nft list ruleset` in `ns` until stopped; counts polls and those
/// missing `ip`.
struct Watch {
    stop: Arc<AtomicBool>,
    polls: Arc<AtomicU64>,
    missing: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watch {
    fn start(ns: &str, ip: &'static str) -> Watch {
        let (stop, polls, missing) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let (s, p, m, ns) = (stop.clone(), polls.clone(), missing.clone(), ns.to_string());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let o = std::process::Command::new("ip")
                    .args(["netns", "exec", &ns, "nft", "list", "ruleset"])
                    .output()
                    .unwrap();
                p.fetch_add(1, Ordering::Relaxed);
                if !String::from_utf8_lossy(&o.stdout).contains(ip) {
                    m.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Watch {
            stop,
            polls,
            missing,
            thread: Some(thread),
        }
    }

    /// (polls, polls that missed the ban).
    fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        (
            self.polls.load(Ordering::Relaxed),
            self.missing.load(Ordering::Relaxed),
        )
    }
}

#[test]
fn firewall_reload_moves_the_bans_to_a_new_table_without_a_gap() {
    require("nft", "nftables");
    let ns = Netns::new("rld");
    let dir = tempfile::tempdir().unwrap();
    let base = Config::new()
        .firewall("nftables")
        .source(&source(dir.path()))
        .build();
    let d = Daemon::start_in(Some(&ns.name), dir.path(), &base);
    let add = d.cli(&["decisions", "add", "192.0.2.50", "--duration", "1h"]);
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    let set = |table: &str| {
        String::from_utf8_lossy(
            &ns.exec(&["nft", "list", "set", "inet", table, "ban4"])
                .stdout,
        )
        .into_owned()
    };
    assert!(
        wait_for(Duration::from_secs(10), || set("shield")
            .contains("192.0.2.50")
            .then_some(()))
        .is_some(),
        "{}",
        d.log()
    );

    let watch = Watch::start(&ns.name, "192.0.2.50");
    let fw = "backend = \"nftables\"\n";
    // The forward hook added, then the `nft -f` wire instead of netlink (the
    // same table rebuilt in one transaction), then another table.
    let forward = base.replace(fw, &format!("{fw}forward = true\n"));
    let log = reload(&d, &forward, 1);
    assert!(last_reload(&log).contains("[firewall]"), "{log}");
    assert!(
        ns.ok(&["nft", "list", "table", "inet", "shield"])
            .contains("hook forward"),
        "{log}"
    );
    let cli = forward.replace(fw, &format!("{fw}netlink = false\n"));
    let log = reload(&d, &cli, 2);
    assert!(last_reload(&log).contains("[firewall]"), "{log}");
    let moved = base.replace(fw, &format!("{fw}table = \"shield2\"\n"));
    let log = reload(&d, &moved, 3);
    assert!(last_reload(&log).contains("[firewall]"), "{log}");
    let (polls, missing) = watch.finish();
    eprintln!("{polls} polls of the ruleset during the reloads, {missing} without the ban");
    assert!(set("shield2").contains("192.0.2.50"), "{log}");
    assert!(
        !ns.ok(&["nft", "list", "tables"]).contains("inet shield\n"),
        "the old table is removed once the new one holds the bans"
    );
    assert!(polls >= 2, "the watcher ran ({polls} polls)");
    assert_eq!(
        missing, 0,
        "the ban was missing from the kernel in {missing} of {polls} polls"
    );

    // A new ban after the move goes to the new table.
    let add = d.cli(&["decisions", "add", "192.0.2.51", "--duration", "1h"]);
    assert!(add.status.success());
    assert!(
        wait_for(Duration::from_secs(10), || set("shield2")
            .contains("192.0.2.51")
            .then_some(()))
        .is_some(),
        "{}",
        d.log()
    );

    // A new priority on the same table: refused, named.
    let log = reload(&d, &moved.replace(fw, &format!("{fw}priority = -50\n")), 4);
    assert!(
        last_reload(&log).contains("[firewall] priority changed: restart"),
        "{log}"
    );
    assert!(set("shield2").contains("192.0.2.50"));
}

#[test]
fn webhook_reload_adds_a_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let base = Config::new().source(&source(dir.path())).build();
    let d = Daemon::start(dir.path(), &base);
    let receiver = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", receiver.local_addr().unwrap());
    // `shield reload` checks the config first: a broken one is refused here.
    std::fs::write(&d.config, "[webhook\n").unwrap();
    let out = d.cli(&["reload"]);
    assert!(!out.status.success(), "a broken config is not sent");
    let log = reload_by_cli(&d, &format!("{base}\n[webhook]\nurl = \"{url}\"\n"), 1);
    assert!(last_reload(&log).contains("[webhook]"), "{log}");
    let add = d.cli(&["decisions", "add", "192.0.2.60", "--duration", "1h"]);
    assert!(add.status.success());
    receiver.set_nonblocking(false).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut s, _) = receiver.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = vec![0u8; 8192];
        let n = s.read(&mut buf).unwrap_or(0);
        let _ = s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n");
        let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
    });
    let got = rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("no POST reached the receiver:\n{}", d.log()));
    assert!(got.starts_with("POST /hook"), "{got}");
}

#[test]
fn union_reload_is_refused_naming_the_table_and_the_daemon_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let base = Config::new().source(&source(dir.path())).build();
    let d = Daemon::start(dir.path(), &base);
    let (key, treaty) = (
        dir.path().join("member.key"),
        dir.path().join("treaty.toml"),
    );
    let union = |args: &[&str]| {
        let o = common::shield().arg("union").args(args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    union(&["keygen", "--out", key.to_str().unwrap()]);
    let endpoint = format!("127.0.0.1:{}", free_port());
    union(&[
        "init",
        "--union",
        "rld",
        "--member",
        "a",
        "--key",
        key.to_str().unwrap(),
        "--endpoint",
        &endpoint,
        "--bind",
        "ssh-test=ban:1h",
        "--out",
        treaty.to_str().unwrap(),
    ]);
    let with_union = format!(
        "{base}\n[union]\nmember = \"a\"\nkey = \"{}\"\ntreaty = \"{}\"\nlisten = \"{endpoint}\"\n",
        key.display(),
        treaty.display()
    );
    let log = reload(&d, &with_union, 1);
    assert!(
        last_reload(&log).contains("[union] added: restart the daemon to apply it"),
        "{log}"
    );
    assert!(
        std::net::TcpStream::connect(&endpoint).is_err(),
        "no union member was started by the refused reload"
    );
    assert!(
        d.cli(&["status"]).status.success(),
        "the daemon keeps running"
    );
}
