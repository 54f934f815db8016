//! The differential test against the real CrowdSec (issue 20): the same CrowdSec configuration
//! directory (Debian's `crowdsec` package, copied to a temp dir with its paths rewritten) and
//! the same logs → the same banned addresses from `crowdsec -dsn file://LOG -type T -no-capi`
//! (read from its SQLite database) and from `shield replay --crowdsec`.
//!
//! Logs: genlog.py sshd and nginx logs with a few seeds, and the real logs in
//! /work/shared/data/real that are sshd (syslog) or nginx/combined access logs. Skipped (with a
//! message) when /work/shared is absent; fails when the `crowdsec` binary is missing.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::shield;

const SHARED: &str = "/work/shared";
const GENLOG: &str = "/work/shared/tools/genlog.py";
const REAL: &str = "/work/shared/data/real";
/// What Debian's package installs; the test copies it and never writes there.
const ETC: &str = "/etc/crowdsec";
const DATA: &str = "/var/lib/crowdsec/data";

/// A private copy of Debian's CrowdSec installation: config dir, data dir, SQLite db with
/// one registered machine (`base.db`, copied fresh for each run).
struct Cs {
    cfg: PathBuf,
    db: PathBuf,
    base_db: PathBuf,
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let ft = e.file_type().unwrap();
        if ft.is_symlink() {
            // cscli installs hub items as absolute symlinks into /var/lib/crowdsec/hub: keep them.
            std::os::unix::fs::symlink(std::fs::read_link(&src).unwrap(), &dst).unwrap();
        } else if ft.is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

fn run_ok(c: &mut Command) -> std::process::Output {
    let out = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Cs {
    fn setup(dir: &Path) -> Cs {
        let cfg_dir = dir.join("cfg");
        copy_tree(Path::new(ETC), &cfg_dir);
        // The host's machine credentials and its WAL override stay out of the copy.
        for f in ["config.yaml.local", "local_api_credentials.yaml"] {
            let _ = std::fs::remove_file(cfg_dir.join(f));
        }
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        for e in std::fs::read_dir(DATA).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if e.file_type().unwrap().is_file() && !name.starts_with("crowdsec.db") {
                std::fs::copy(e.path(), data.join(&name)).unwrap();
            }
        }
        // Debian 1.4.6 bug: http-path-traversal-probing names http_path_traversal.txt but the
        // package ships path_traversal.txt (every HTTP event then logs an error). Give both
        // sides the file the scenario names.
        if !data.join("http_path_traversal.txt").exists()
            && data.join("path_traversal.txt").exists()
        {
            std::fs::copy(
                data.join("path_traversal.txt"),
                data.join("http_path_traversal.txt"),
            )
            .unwrap();
        }
        let db = dir.join("cs.db");
        let port = common::free_port();
        let d = |p: &Path| p.to_str().unwrap().to_owned();
        let config = format!(
            "common:
  daemonize: false
  log_media: stdout
  log_level: warning
  working_dir: .
config_paths:
  config_dir: {cfg}/
  data_dir: {data}/
  simulation_path: {cfg}/simulation.yaml
  hub_dir: /var/lib/crowdsec/hub/
  index_path: /var/lib/crowdsec/hub/.index.json
  notification_dir: {cfg}/notifications/
  plugin_dir: /usr/lib/crowdsec/plugins/
crowdsec_service:
  acquisition_path: {cfg}/acquis.yaml
  parser_routines: 1
db_config:
  type: sqlite
  use_wal: false
  db_path: {db}
api:
  client:
    credentials_path: {cfg}/local_api_credentials.yaml
  server:
    listen_uri: 127.0.0.1:{port}
    profiles_path: {cfg}/profiles.yaml
prometheus:
  enabled: false
",
            cfg = d(&cfg_dir),
            data = d(&data),
            db = d(&db),
        );
        let cfg = cfg_dir.join("config.yaml");
        std::fs::write(&cfg, config).unwrap();
        let creds = cfg_dir.join("local_api_credentials.yaml");
        std::fs::write(&creds, "").unwrap();
        run_ok(
            Command::new("cscli")
                .arg("-c")
                .arg(&cfg)
                .args(["machines", "add", "--auto", "--force", "-f"])
                .arg(&creds),
        );
        let base_db = dir.join("base.db");
        std::fs::rename(&db, &base_db).unwrap();
        Cs { cfg, db, base_db }
    }

    /// Runs the real CrowdSec over `log` in time-machine mode and returns the Ip-scope values
    /// of its decisions and the processing time.
    ///
    /// CrowdSec 1.4.6 does not exit when the file is done: it waits for every live bucket to
    /// expire on the wall clock (`(capacity+1)*leakspeed`, 11 min for ssh-slow-bf). After it
    /// logs "Acquisition is finished", the test waits until the process is idle (no CPU used,
    /// no thread runnable) and its alert count is unchanged for 3 s, then stops it: in
    /// time-machine mode a leaky bucket only overflows when an event is poured, so nothing
    /// more can come.
    fn run(&self, log_type: &str, log: &Path) -> (BTreeSet<String>, Duration) {
        for ext in ["", "-wal", "-shm", "-journal"] {
            let _ = std::fs::remove_file(format!("{}{ext}", self.db.display()));
        }
        std::fs::copy(&self.base_db, &self.db).unwrap();
        let started = Instant::now();
        let mut child = Command::new("crowdsec")
            .arg("-c")
            .arg(&self.cfg)
            .arg("-dsn")
            .arg(format!("file://{}", log.display()))
            .args(["-type", log_type, "-no-capi"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run crowdsec");
        let pid = child.id();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let tx2 = tx.clone();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx2.send(l);
            }
        });
        let mut output = Vec::new();
        let mut finished = false;
        let deadline = Instant::now() + Duration::from_secs(600);
        // (cpu ticks, alerts) at the last change.
        let mut last: Option<(u64, usize, Instant)> = None;
        let elapsed = loop {
            while let Ok(l) = rx.try_recv() {
                finished |= l.contains("Acquisition is finished");
                output.push(l);
            }
            if let Some(st) = child.try_wait().unwrap() {
                assert!(
                    st.success() || finished,
                    "crowdsec failed ({st}):\n{}",
                    output.join("\n")
                );
                break started.elapsed();
            }
            assert!(
                Instant::now() < deadline,
                "crowdsec still busy after 10 min:\n{}",
                output.join("\n")
            );
            if finished {
                let now = (cpu_ticks(pid), self.alert_count());
                match last {
                    Some((t, a, since))
                        if now.0.saturating_sub(t) <= 2 && now.1 == a && !runnable(pid) =>
                    {
                        if since.elapsed() >= Duration::from_secs(3) {
                            let e = since.duration_since(started);
                            child.kill().unwrap();
                            child.wait().unwrap();
                            break e;
                        }
                        last = Some((now.0, a, since));
                    }
                    _ => last = Some((now.0, now.1, Instant::now())),
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        (
            self.query("select distinct value from decisions where scope = 'Ip'"),
            elapsed,
        )
    }

    fn alert_count(&self) -> usize {
        self.query("select count(*) from alerts")
            .into_iter()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// One-column SQLite query through python3's sqlite3 module (python3 is already needed for
    /// genlog.py; the sqlite3 CLI is not installed everywhere).
    fn query(&self, sql: &str) -> BTreeSet<String> {
        let out = run_ok(Command::new("python3").args([
            "-c",
            "import sqlite3,sys\nc=sqlite3.connect('file:'+sys.argv[1]+'?mode=ro',uri=True,timeout=10)\nfor (v,) in c.execute(sys.argv[2]): print(v)",
            self.db.to_str().unwrap(),
            sql,
        ]));
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// Whether any thread of the process is running or waiting for a CPU (state R): a process
/// starved by other jobs is not idle.
fn runnable(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.filter_map(Result::ok).any(|t| {
        std::fs::read_to_string(t.path().join("stat")).is_ok_and(|s| {
            s.rfind(')')
                .is_some_and(|i| s[i + 1..].trim_start().starts_with('R'))
        })
    })
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let rest = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
    let f: Vec<&str> = rest.split(' ').collect();
    // Fields after the command: state is 3rd overall → index 0 here; utime/stime are 14/15.
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

/// Shield's Ip-scope bans for the same directory and log, and its processing time.
fn shield_bans(cs: &Cs, log_type: &str, log: &Path) -> (BTreeSet<String>, Duration) {
    let started = Instant::now();
    let out = run_ok(
        shield()
            .args(["replay", "--format", "json", "--crowdsec"])
            .arg(cs.cfg.parent().unwrap())
            .args(["--log-type", log_type])
            .arg(log),
    );
    let elapsed = started.elapsed();
    let rep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let bans = rep["decisions"]
        .as_array()
        .expect("decisions in the replay report")
        .iter()
        .filter(|d| d["scope"] == "ip")
        .map(|d| d["value"].as_str().unwrap().to_owned())
        .collect();
    (bans, elapsed)
}

fn genlog(dir: &Path, format: &str, lines: u32, seed: u32) -> PathBuf {
    let out = dir.join(format!("{format}-{seed}.log"));
    run_ok(
        Command::new("python3")
            .arg(GENLOG)
            .args(["--format", format, "--lines", &lines.to_string()])
            .args(["--seed", &seed.to_string()])
            .arg("-o")
            .arg(&out),
    );
    out
}

#[test]
fn crowdsec_and_shield_ban_the_same_addresses() {
    if !Path::new(SHARED).is_dir() {
        eprintln!("skipped: {SHARED} absent");
        return;
    }
    let found = Command::new("crowdsec").arg("-version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()) && Path::new(ETC).join("config.yaml").is_file(),
        "the real CrowdSec is needed: install Debian's `crowdsec` package without starting it \
         (.ci/install-deps does)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let cs = Cs::setup(tmp.path());
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();

    let mut cases: Vec<(String, &str, PathBuf)> = Vec::new();
    for seed in [1, 2, 3] {
        cases.push((
            format!("genlog sshd seed {seed}"),
            "syslog",
            genlog(&logs, "sshd", 3000, seed),
        ));
    }
    for seed in [1, 2] {
        cases.push((
            format!("genlog nginx seed {seed}"),
            "nginx",
            genlog(&logs, "nginx", 1500, seed),
        ));
    }
    let real = Path::new(REAL);
    for (name, t, rel) in [
        (
            "loghub OpenSSH_2k",
            "syslog",
            "loghub-openssh/OpenSSH_2k.log",
        ),
        ("elastic auth.log", "syslog", "elastic-examples/auth.log"),
    ] {
        cases.push((name.into(), t, real.join(rel)));
    }
    // CrowdSec's own hub test logs for sshd and nginx (their log_type from config.yaml).
    let hub_tests = real.join("crowdsec-hub-tests");
    let mut names: Vec<_> = std::fs::read_dir(&hub_tests)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    names.sort();
    for d in names {
        let Ok(cfg) = std::fs::read_to_string(d.join("config.yaml")) else {
            continue;
        };
        let t = if cfg.contains("log_type: syslog") {
            "syslog"
        } else if cfg.contains("log_type: nginx") {
            "nginx"
        } else {
            continue;
        };
        let name = d.file_name().unwrap().to_string_lossy().into_owned();
        let log = d.join(format!("{name}.log"));
        let log = if log.is_file() {
            log
        } else {
            match std::fs::read_dir(&d)
                .unwrap()
                .filter_map(Result::ok)
                .find(|e| e.path().extension().is_some_and(|x| x == "log"))
            {
                Some(e) => e.path(),
                None => continue,
            }
        };
        cases.push((format!("hub test {name}"), t, log));
    }
    // The Honeynet 2004 Apache combined log: its first 2000 lines (CrowdSec parses nginx at
    // ~200 lines/s here; the whole 38k-line file would take minutes).
    // (The file is Latin-1 in places: split bytes, not UTF-8 lines.)
    if let Ok(all) = std::fs::read(real.join("honeynet-chuvakin-2004/access_log.all")) {
        let end = all
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(1999)
            .map_or(all.len(), |(i, _)| i + 1);
        let p = logs.join("honeynet-2000.log");
        std::fs::write(&p, &all[..end]).unwrap();
        cases.push(("honeynet access_log (2000 lines)".into(), "nginx", p));
    }

    let mut failures = Vec::new();
    let mut total = 0;
    for (name, t, log) in &cases {
        let lines = std::fs::read(log).map_or(0, |b| b.iter().filter(|c| **c == b'\n').count());
        let (ours, sh_time) = shield_bans(&cs, t, log);
        // CrowdSec itself is not deterministic on a loaded machine: runs of the same log have
        // banned fewer addresses now and then (seen with 2 cores shared by several builds).
        // Shield's answer is fixed, so CrowdSec gets up to three runs to give it; every run
        // that disagrees is printed, and three disagreeing runs fail the test.
        let (mut theirs, mut cs_time) = cs.run(t, log);
        for attempt in 2..=3 {
            if theirs == ours {
                break;
            }
            eprintln!(
                "{name}: crowdsec run {} disagreed (only crowdsec {:?}, only shield {:?}); running it again",
                attempt - 1,
                theirs.difference(&ours).collect::<Vec<_>>(),
                ours.difference(&theirs).collect::<Vec<_>>()
            );
            (theirs, cs_time) = cs.run(t, log);
        }
        total += theirs.len();
        eprintln!(
            "{name}: {lines} lines, type {t}: crowdsec {} bans in {:.1}s, shield {} bans in {:.2}s",
            theirs.len(),
            cs_time.as_secs_f64(),
            ours.len(),
            sh_time.as_secs_f64()
        );
        if theirs != ours {
            failures.push(format!(
                "{name} ({}): only crowdsec {:?}, only shield {:?}",
                log.display(),
                theirs.difference(&ours).collect::<Vec<_>>(),
                ours.difference(&theirs).collect::<Vec<_>>()
            ));
        }
    }
    assert!(
        total > 0,
        "CrowdSec banned nothing at all: the setup is broken"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
