//! Blocklists, allowlist files and `shield decisions import/export`, on the
//! real binary. Lists are served over HTTPS on 127.0.0.1 inside a network
//! namespace the test creates (a self-signed CA made with rcgen, trusted
//! through `ca_file`); bans land in that namespace's nftables. No real
//! address is ever contacted: list entries come from 100.64.0.0/10,
//! 198.18.0.0/15 and the documentation ranges.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use common::{Config, Daemon, Netns, Reap, require, wait_for};

/// Every element of the `ban4` and `ban4net` sets, as `a.b.c.d/len`.
fn kernel_sets(ns: &Netns) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for set in ["ban4", "ban4net"] {
        let out = ns.ok(&["nft", "-j", "list", "set", "inet", "shield", set]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        for item in v["nftables"].as_array().unwrap() {
            let Some(elems) = item.get("set").and_then(|s| s.get("elem")) else {
                continue;
            };
            for e in elems.as_array().unwrap() {
                // {"elem": {"val": X, "timeout": ..}} or a bare X; X is
                // "a.b.c.d" or {"prefix": {"addr", "len"}} or {"range": [a, b]}.
                let val = e.get("elem").map(|x| &x["val"]).unwrap_or(e);
                let s = match val {
                    serde_json::Value::String(s) => format!("{s}/32"),
                    v if v.get("prefix").is_some() => format!(
                        "{}/{}",
                        v["prefix"]["addr"].as_str().unwrap(),
                        v["prefix"]["len"]
                    ),
                    v => v.to_string(),
                };
                found.insert(s);
            }
        }
    }
    found
}

/// How many elements the two IPv4 sets hold (without building strings).
fn kernel_count(ns: &Netns) -> usize {
    ["ban4", "ban4net"]
        .iter()
        .map(|set| {
            let out = ns.ok(&["nft", "-j", "list", "set", "inet", "shield", set]);
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            v["nftables"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|i| i.get("set").and_then(|s| s.get("elem")))
                .map(|e| e.as_array().unwrap().len())
                .sum::<usize>()
        })
        .sum()
}

/// A CA (PEM) and a server certificate for 127.0.0.1 signed by it (PEM cert, PEM key).
fn test_ca(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "shield test lists CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, leaf_cert.pem()).unwrap();
    std::fs::write(&paths.2, leaf_key.serialize_pem()).unwrap();
    paths
}

/// Python's static file server over TLS (it answers `If-Modified-Since`
/// with 304), serving `root` on 127.0.0.1:`port` inside `ns`.
fn https_server(ns: &Netns, root: &Path, port: u16, cert: &Path, key: &Path) -> Reap {
    const SERVER: &str = r#"
import http.server, ssl, sys, os
os.chdir(sys.argv[1])
class H(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[3], sys.argv[4])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
"#;
    let child = ns
        .cmd("python3")
        .args(["-c", SERVER])
        .arg(root)
        .arg(port.to_string())
        .arg(cert)
        .arg(key)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");
    let up = wait_for(Duration::from_secs(10), || {
        ns.exec(&["bash", "-c", &format!("exec 3<>/dev/tcp/127.0.0.1/{port}")])
            .status
            .success()
            .then_some(())
    });
    assert!(up.is_some(), "the test HTTPS server did not start");
    Reap(child)
}

/// Writes a list with an mtime `version` minutes past a fixed point, so
/// `If-Modified-Since` sees every version as newer than the last.
fn write_list(path: &Path, body: &str, version: u64) {
    std::fs::write(path, body).unwrap();
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + version * 60);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

fn list_status(d: &Daemon, name: &str) -> serde_json::Value {
    d.status()["lists"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == name)
        .cloned()
        .unwrap_or_default()
}

/// Waits until the list's status satisfies `f`, failing with the status and log.
fn wait_list(d: &Daemon, name: &str, what: &str, f: impl Fn(&serde_json::Value) -> bool) {
    let got = wait_for(Duration::from_secs(60), || {
        let s = list_status(d, name);
        f(&s).then_some(())
    });
    assert!(
        got.is_some(),
        "list {name}: {what}; status {}\n{}",
        list_status(d, name),
        d.log()
    );
}

fn set_of(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// A FireHOL-style list served over HTTPS is refreshed every second: the
/// kernel set follows each version (added, removed, unchanged), an
/// allowlisted entry never reaches it, an unchanged file is answered 304,
/// and a malformed or unreachable list keeps the previous contents and says why.
#[test]
fn https_list_refresh_diffs_the_kernel_set_and_failures_keep_it() {
    require("nft", "nftables");
    require("python3", "python3");
    let ns = Netns::new("lists");
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    let list = www.join("level1.netset");
    let (ca, cert, key) = test_ca(dir.path());
    write_list(
        &list,
        "#\n# firehol_level1 (test)\n#\n203.0.113.1\n203.0.113.2\n198.18.0.0/24\n192.0.2.7\n",
        1,
    );
    let mut server = Some(https_server(&ns, &www, 8443, &cert, &key));
    // An allowlist feed, refreshed like a blocklist.
    let cdn = dir.path().join("cdn.txt");
    std::fs::write(&cdn, "# CDN ranges\n198.51.100.0/24\n").unwrap();
    let cfg = Config::new()
        .firewall("nftables")
        .decisions("allowlist = [\"192.0.2.0/24\"]\nallowlist_lists = [\"cdn\"]")
        .extra(&format!(
            "[[list]]\nname = \"level1\"\nurl = \"https://127.0.0.1:8443/level1.netset\"\nca_file = \"{}\"\nrefresh = \"1s\"\nduration = \"1h\"\n\n\
             [[list]]\nname = \"cdn\"\nfile = \"{}\"\nrefresh = \"1s\"\nduration = \"1h\"\n",
            ca.display(),
            cdn.display()
        ))
        .build();
    let d = Daemon::start_in(Some(&ns.name), dir.path(), &cfg);

    wait_list(&d, "level1", "first version loaded", |s| {
        s["refreshes"] == 1 && s["added"] == 3
    });
    let s = list_status(&d, "level1");
    assert_eq!(s["allowlisted"], 1, "{s}");
    assert_eq!(
        kernel_sets(&ns),
        set_of(&["203.0.113.1/32", "203.0.113.2/32", "198.18.0.0/24"])
    );
    let origins: BTreeSet<String> = d
        .active()
        .iter()
        .map(|x| x["origin"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(origins, set_of(&["lists:level1"]));
    // The feed protects its range from any origin; outside it, bans go on.
    wait_list(&d, "cdn", "allowlist feed loaded", |s| {
        s["refreshes"].as_u64() >= Some(1) && s["role"] == "allow"
    });
    let refused = d.cli(&["decisions", "add", "198.51.100.5"]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && err.contains("allowlist (198.51.100.0/24)"),
        "{err}"
    );
    // Unchanged file: 304, nothing touched.
    wait_list(&d, "level1", "answered 304", |s| {
        s["not_modified"].as_u64() >= Some(2) && s["refreshes"] == 1
    });

    // Second version: one removed, one added, two unchanged.
    write_list(
        &list,
        "203.0.113.2\n198.18.0.0/24\n203.0.113.3 # new\n192.0.2.7\n",
        2,
    );
    wait_list(&d, "level1", "second version diffed", |s| {
        s["refreshes"] == 2
    });
    let s = list_status(&d, "level1");
    assert_eq!(
        (&s["added"], &s["removed"], &s["unchanged"]),
        (&1.into(), &1.into(), &2.into()),
        "{s}"
    );
    let v2 = set_of(&["203.0.113.2/32", "203.0.113.3/32", "198.18.0.0/24"]);
    assert_eq!(kernel_sets(&ns), v2);

    // Malformed: an HTML error page served as the list.
    write_list(
        &list,
        "<html>\n<head><title>502 Bad Gateway</title></head>\n<body>bad gateway</body>\n</html>\n",
        3,
    );
    wait_list(&d, "level1", "malformed list refused", |s| {
        s["failures"].as_u64() >= Some(1)
            && s["error"]
                .as_str()
                .is_some_and(|e| e.contains("unreadable"))
    });
    assert_eq!(
        kernel_sets(&ns),
        v2,
        "a malformed list changed the kernel set"
    );
    assert_eq!(list_status(&d, "level1")["refreshes"], 2);

    // Unreachable: the server is gone.
    drop(server.take());
    let failures = list_status(&d, "level1")["failures"].as_u64().unwrap();
    wait_list(&d, "level1", "unreachable list reported", |s| {
        s["failures"].as_u64() > Some(failures)
            && s["error"].as_str().is_some_and(|e| e.contains("fetching"))
    });
    assert_eq!(
        kernel_sets(&ns),
        v2,
        "an unreachable list changed the kernel set"
    );
    let human = d.cli(&["status"]);
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(
        human.contains("list   level1") && human.contains("fetching"),
        "{human}"
    );
    let active: BTreeSet<String> = d
        .active()
        .iter()
        .map(|x| x["target"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(active, v2, "the store keeps the previous contents too");
}

/// The number of entries of the large-list test (600k by default, like
/// FireHOL levels 1–3 together); `SHIELD_LIST_N` changes it.
fn big_n() -> usize {
    std::env::var("SHIELD_LIST_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600_000)
}

/// A FireHOL-format list of 600k entries (single addresses in 100.64.0.0/10
/// and /24 ranges in 198.18.0.0/15) from a file goes to the kernel in one
/// firewall batch, every entry present; the time is printed for BENCHMARKS.md.
#[test]
fn firehol_list_of_600k_entries_loads_into_nftables_in_one_batch() {
    require("nft", "nftables");
    let n = big_n();
    let ranges = 512.min(n / 10);
    let ns = Netns::new("biglist");
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("level123.netset");
    let mut body = String::with_capacity(n * 16);
    body.push_str("#\n# firehol_level1+2+3 (test data: CGNAT and benchmark space)\n#\n");
    for i in 0..ranges {
        body.push_str(&format!("198.{}.{}.0/24\n", 18 + i / 256, i % 256));
    }
    for i in 0..(n - ranges) {
        let a = (100u32 << 24) | (64 << 16) | (i as u32 + 1);
        body.push_str(&format!("{}\n", std::net::Ipv4Addr::from(a)));
    }
    std::fs::write(&list, &body).unwrap();
    let port = 9000;
    let cfg = Config::new()
        .firewall("nftables")
        .listen(&format!("127.0.0.1:{port}"))
        .extra(&format!(
            "[[list]]\nname = \"big\"\nfile = \"{}\"\nrefresh = \"1h\"\nduration = \"1d\"\n",
            list.display()
        ))
        .build();
    let d = Daemon::start_in(Some(&ns.name), dir.path(), &cfg);
    let got = wait_for(Duration::from_secs(600), || {
        let s = list_status(&d, "big");
        (s["refreshes"] == 1).then_some(s)
    });
    let s = got.unwrap_or_else(|| panic!("the list never loaded:\n{}", d.log()));
    assert_eq!(s["added"].as_u64(), Some(n as u64), "{s}");
    assert_eq!(s["error"], serde_json::Value::Null, "{s}");
    assert_eq!(kernel_count(&ns), n, "every entry is in the kernel sets");
    let metrics = ns.ok(&[
        "curl",
        "-s",
        "--max-time",
        "10",
        &format!("http://127.0.0.1:{port}/metrics"),
    ]);
    let batches = metrics
        .lines()
        .find(|l| l.starts_with("shield_firewall_apply_seconds_count"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?")
        .to_string();
    assert_eq!(
        batches, "1",
        "the list went to the firewall in one batch:\n{metrics}"
    );
    assert!(
        metrics.contains(&format!("shield_list_entries{{list=\"big\"}} {n}")),
        "{metrics}"
    );
    eprintln!(
        "list of {n} entries ({ranges} ranges): store {} ms, nftables batch {} ms",
        s["store_ms"], s["apply_ms"]
    );
}

/// `shield decisions export` writes what `cscli decisions import` reads, and
/// `shield decisions import` reads it back: CSV and JSON round trips keep
/// every target, type, reason and (to the second) duration.
#[test]
fn import_export_round_trip_csv_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("in.csv");
    std::fs::write(
        &csv,
        "value,duration,reason,scope,type\n203.0.113.7,4h,crowdsecurity/ssh-bf,Ip,ban\n198.51.100.0/24,24h,\"manual, by ops\",Range,ban\n2001:db8::1,90m,http-probing,Ip,captcha\n127.0.0.1,4h,loopback,Ip,ban\nnot-an-ip,4h,x,Ip,ban\n",
    )
    .unwrap();
    let cfg = Config::new()
        .build()
        .replace("@DIR@", dir.path().to_str().unwrap());
    let cfg_path = dir.path().join("shield.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let shield = |args: &[&str]| {
        let out = common::shield()
            .arg("--config")
            .arg(&cfg_path)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (out, err) = shield(&["decisions", "import", csv.to_str().unwrap()]);
    assert!(
        out.contains("imported 3 decision(s), skipped 2"),
        "{out}{err}"
    );
    assert!(
        err.contains(":5: skipped") && err.contains("loopback"),
        "{err}"
    );
    assert!(err.contains(":6: skipped"), "{err}");

    // What is in force, as (value, type, reason, duration rounded to minutes).
    let norm = |v: &serde_json::Value| -> BTreeSet<(String, String, String, u64)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|d| {
                let secs = shield_go_secs(d["duration"].as_str().unwrap());
                (
                    d["value"].as_str().unwrap().to_string(),
                    d["type"].as_str().unwrap().to_string(),
                    d["reason"].as_str().unwrap().to_string(),
                    (secs + 30) / 60,
                )
            })
            .collect()
    };
    let (json1, _) = shield(&["decisions", "export", "--format", "json"]);
    let first = norm(&serde_json::from_str(&json1).unwrap());
    let want: BTreeSet<(String, String, String, u64)> = [
        ("203.0.113.7", "ban", "crowdsecurity/ssh-bf", 240),
        ("198.51.100.0/24", "ban", "manual, by ops", 1440),
        ("2001:db8::1", "captcha", "http-probing", 90),
    ]
    .iter()
    .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), *d))
    .collect();
    assert_eq!(first, want);

    // CSV out, into a fresh store, JSON out again: the same decisions.
    let (csv_out, _) = shield(&["decisions", "export"]);
    assert!(
        csv_out.starts_with("value,duration,reason,scope,type\n"),
        "{csv_out}"
    );
    assert!(
        csv_out.contains("\"manual, by ops\",Range,ban"),
        "{csv_out}"
    );
    for (name, text) in [("out.csv", csv_out), ("out.json", json1)] {
        let f = dir.path().join(name);
        std::fs::write(&f, text).unwrap();
        std::fs::remove_file(dir.path().join("shield.db")).unwrap();
        let (out, _) = shield(&["decisions", "import", f.to_str().unwrap()]);
        assert!(
            out.contains("imported 3 decision(s), skipped 0"),
            "{name}: {out}"
        );
        let (again, _) = shield(&["decisions", "export", "--format", "json"]);
        assert_eq!(norm(&serde_json::from_str(&again).unwrap()), want, "{name}");
    }
}

/// Seconds of a Go duration such as `3h59m58s` (what export writes).
fn shield_go_secs(s: &str) -> u64 {
    let (mut total, mut n) = (0u64, 0u64);
    for c in s.chars() {
        match c {
            '0'..='9' => n = n * 10 + c.to_digit(10).unwrap() as u64,
            'h' => (total, n) = (total + n * 3600, 0),
            'm' => (total, n) = (total + n * 60, 0),
            's' => (total, n) = (total + n, 0),
            _ => panic!("unexpected {s}"),
        }
    }
    total
}

/// `allowlist_files` reads CrowdSec's crawler ranges with the list loader:
/// a decision on an address inside them is refused, one outside is taken.
#[test]
fn allowlist_files_protect_crowdsec_whitelist_ranges() {
    let file = Path::new(
        "/work/shared/data/crowdsec/data/whitelists/benign_bots/search_engine_crawlers/google_special_crawlers_ipv4.txt",
    );
    let Ok(text) = std::fs::read_to_string(file) else {
        eprintln!("skipped: {} is absent", file.display());
        return;
    };
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .unwrap()
        .trim()
        .to_string();
    let inside = first.split('/').next().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::new()
        .decisions(&format!("allowlist_files = [\"{}\"]", file.display()))
        .build()
        .replace("@DIR@", dir.path().to_str().unwrap());
    let cfg_path = dir.path().join("shield.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let add = |target: &str| {
        common::shield()
            .arg("--config")
            .arg(&cfg_path)
            .args(["decisions", "add", target])
            .output()
            .unwrap()
    };
    let refused = add(&inside);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("allowlist"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(add("203.0.113.9").status.success());
    // A bad line in an allowlist file stops the plan, naming the line.
    let bad = dir.path().join("allow.txt");
    std::fs::write(&bad, "198.51.100.0/24\nnot-a-network\n").unwrap();
    let cfg = Config::new()
        .decisions(&format!("allowlist_files = [\"{}\"]", bad.display()))
        .build()
        .replace("@DIR@", dir.path().to_str().unwrap());
    std::fs::write(&cfg_path, cfg).unwrap();
    let out = common::shield()
        .arg("--config")
        .arg(&cfg_path)
        .arg("check")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2"), "{err}");
}
