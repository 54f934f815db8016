//! Helpers for tests that run the real `shield` binary: the binary, a daemon
//! in a temp dir, its config, nginx. What every crate's tests share (waiting,
//! ports, tools, namespaces, nats-server, attack lines, decisions) is in
//! `shield-testkit`, re-exported here.
#![allow(dead_code)]

// Each test binary uses some of these.
#[allow(unused_imports)]
pub use shield_testkit::{
    NatsServer, Netns, Reap, ban, decision, free_port, now, require, run, run_ok, ssh_fail,
    wait_for,
};

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn shield() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_shield"));
    c.env("SHIELD_LOG", "info").env_remove("SHIELD_CONFIG");
    c
}

/// Runs shield with `args`, panicking with its output if it fails.
pub fn ok(args: &[&str]) -> Output {
    let out = shield().args(args).output().expect("run shield");
    assert!(
        out.status.success(),
        "shield {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A daemon running in a temp dir with its own store, socket and config.
pub struct Daemon {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub child: Option<Child>,
    /// Run the daemon inside this network namespace.
    pub netns: Option<String>,
}

impl Daemon {
    /// Writes `config` (with `@DIR@` replaced by the temp dir) and starts `shield run`.
    pub fn start(dir: &Path, config: &str) -> Daemon {
        Self::start_in(None, dir, config)
    }

    pub fn start_in(netns: Option<&str>, dir: &Path, config: &str) -> Daemon {
        let cfg = dir.join("shield.toml");
        std::fs::write(&cfg, config.replace("@DIR@", dir.to_str().unwrap())).unwrap();
        let mut d = Daemon {
            dir: dir.to_path_buf(),
            config: cfg,
            child: None,
            netns: netns.map(str::to_string),
        };
        d.restart();
        d
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("daemon.log"))
            .unwrap();
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_shield")])
                    .env("SHIELD_LOG", "info");
                c
            }
            None => shield(),
        };
        let child = cmd
            .args(["--config", self.config.to_str().unwrap(), "run"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let sock = self.dir.join("shield.sock");
        let up = wait_for(Duration::from_secs(20), || {
            std::os::unix::net::UnixStream::connect(&sock).ok()
        });
        assert!(up.is_some(), "daemon did not come up:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    /// `shield --config <cfg> args...`
    pub fn cli(&self, args: &[&str]) -> Output {
        shield()
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap()
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "shield {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// Graceful stop (SIGTERM), waiting for exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let end = Instant::now() + Duration::from_secs(15);
            while Instant::now() < end {
                if c.try_wait().unwrap().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
            panic!("daemon did not stop on SIGTERM:\n{}", self.log());
        }
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn active(&self) -> Vec<serde_json::Value> {
        self.json(&["decisions", "list", "--format", "json"])
            .as_array()
            .unwrap()
            .clone()
    }

    pub fn status(&self) -> serde_json::Value {
        self.json(&["status", "--format", "json"])
    }

    /// Lines the daemon read for `source`, from its status.
    pub fn lines(&self, source: &str) -> u64 {
        self.status()["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == source)
            .map(|s| s["lines"].as_u64().unwrap())
            .unwrap_or(0)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A daemon config on a dry-run firewall, state in the temp dir.
pub fn config(sources: &str, extra: &str) -> String {
    Config::new().decisions(extra).source(sources).build()
}

/// A daemon config, built: state and socket in the temp dir (`@DIR@`, see
/// [`Daemon::start`]), a dry-run firewall, no TCP listener, this host's own
/// addresses not protected (tests ban loopback-side addresses). Each method
/// changes one part; [`Config::build`] writes the TOML.
#[derive(Clone, Debug)]
pub struct Config {
    firewall: String,
    listen: String,
    api: String,
    decisions: String,
    allow_own_addresses: bool,
    escalation: bool,
    scenarios: Option<String>,
    sources: String,
    extra: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            firewall: "dry-run".into(),
            listen: String::new(),
            api: String::new(),
            decisions: String::new(),
            allow_own_addresses: false,
            escalation: true,
            scenarios: None,
            sources: String::new(),
            extra: String::new(),
        }
    }
}

impl Config {
    pub fn new() -> Config {
        Config::default()
    }

    /// `[firewall] backend` (e.g. "nftables" in a test's namespace).
    pub fn firewall(mut self, backend: &str) -> Config {
        self.firewall = backend.into();
        self
    }

    /// `[api] listen`, e.g. `127.0.0.1:<port>`.
    pub fn listen(mut self, addr: &str) -> Config {
        self.listen = addr.into();
        self
    }

    /// More `[api]` lines (token, limits).
    pub fn api(mut self, lines: &str) -> Config {
        self.api.push_str(lines);
        self.api.push('\n');
        self
    }

    /// More `[decisions]` lines (allowlist, allow_ssh_sessions), or tables
    /// that follow it.
    pub fn decisions(mut self, lines: &str) -> Config {
        self.decisions.push_str(lines);
        self.decisions.push('\n');
        self
    }

    /// `[decisions] allow_own_addresses` (off by default here).
    pub fn allow_own_addresses(mut self, on: bool) -> Config {
        self.allow_own_addresses = on;
        self
    }

    /// Repeat offenders get the base duration every time.
    pub fn no_escalation(mut self) -> Config {
        self.escalation = false;
        self
    }

    /// No default scenarios; one, `ssh-test`: 3 events of any `sshd*` rule
    /// within the hour ban for `duration` (e.g. "10m").
    pub fn ssh_test_scenario(mut self, duration: &str) -> Config {
        self.scenarios = Some(format!(
            "[[scenario]]\nname = \"ssh-test\"\nrules = [\"sshd*\"]\ncapacity = 3\nleak = \"1h\"\ndecision = \"ban\"\nduration = \"{duration}\"\n"
        ));
        self
    }

    /// A `[[source]]` table (or several), as TOML.
    pub fn source(mut self, toml: &str) -> Config {
        self.sources.push_str(toml);
        self.sources.push('\n');
        self
    }

    /// The sshd pack on the files `paths` (a glob allowed), read from their start.
    pub fn sshd_files(self, paths: &str) -> Config {
        self.source(&format!(
            "[[source]]\nname = \"sshd\"\npaths = [\"{paths}\"]\npacks = [\"sshd\"]\nfrom_start = true\n"
        ))
    }

    /// Tables of any other section, written last.
    pub fn extra(mut self, toml: &str) -> Config {
        self.extra.push_str(toml);
        self.extra.push('\n');
        self
    }

    pub fn build(&self) -> String {
        let mut s = format!(
            "\n[store]\npath = \"@DIR@/shield.db\"\n\n[firewall]\nbackend = \"{}\"\n\n\
             [api]\nlisten = \"{}\"\nsocket = \"@DIR@/shield.sock\"\n{}\n\
             [decisions]\nallow_own_addresses = {}\n{}\n",
            self.firewall, self.listen, self.api, self.allow_own_addresses, self.decisions
        );
        if !self.escalation {
            s.push_str("[decisions.escalation]\nenabled = false\n\n");
        }
        if let Some(sc) = &self.scenarios {
            s.push_str("[engine]\nno_default_scenarios = true\n\n");
            s.push_str(sc);
            s.push('\n');
        }
        s.push_str(&self.sources);
        s.push('\n');
        s.push_str(&self.extra);
        s
    }
}

/// Whether `curl` from `ns` gets a page from `url` within 2 s.
pub fn curl(ns: &Netns, url: &str) -> bool {
    ns.exec(&["curl", "-s", "-o", "/dev/null", "--max-time", "2", url])
        .status
        .success()
}

/// Real nginx in a server namespace, linked to an attacker namespace (`10.NET.1.0/24`) and a
/// client namespace (`10.NET.2.0/24`); the server is `.1` on both and logs to `dir`
/// (`access.log`). nginx serves the client once [`WebLab::start`] returns, and is stopped
/// when the lab is dropped (before its namespaces).
pub struct WebLab {
    nginx: Child,
    pub srv: Netns,
    pub atk: Netns,
    pub cli: Netns,
}

impl WebLab {
    /// `names`: the server, attacker and client namespaces' name prefixes.
    pub fn start(names: [&str; 3], net: u8, dir: &Path) -> WebLab {
        require("nginx", "nginx-light");
        require("nft", "nftables");
        require("curl", "curl");
        let srv = Netns::new(names[0]);
        let atk = Netns::new(names[1]);
        let cli = Netns::new(names[2]);
        let addr = |side: u8, host: u8| format!("10.{net}.{side}.{host}/24");
        srv.link(&atk, "s-atk", &addr(1, 1), "a-srv", &addr(1, 2));
        srv.link(&cli, "s-cli", &addr(2, 1), "c-srv", &addr(2, 2));
        let conf = nginx_conf(dir, "");
        let nginx = srv
            .cmd("nginx")
            .args(["-c", conf.to_str().unwrap()])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lab = WebLab {
            nginx,
            srv,
            atk,
            cli,
        };
        let up = wait_for(Duration::from_secs(10), || {
            curl(&lab.cli, &format!("http://10.{net}.2.1/")).then_some(())
        });
        assert!(up.is_some(), "nginx did not serve");
        lab
    }
}

impl Drop for WebLab {
    fn drop(&mut self) {
        let _ = self.nginx.kill();
        let _ = self.nginx.wait();
    }
}

/// A real nginx serving `root` on port 80 in the current namespace of the command, logging to `dir`.
pub fn nginx_conf(dir: &Path, extra_server: &str) -> PathBuf {
    let d = dir.display();
    std::fs::create_dir_all(dir.join("www")).unwrap();
    std::fs::write(dir.join("www/index.html"), "hello from shield test\n").unwrap();
    let conf = format!(
        r#"worker_processes 1;
daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log;
events {{ worker_connections 256; }}
http {{
    access_log {d}/access.log combined;
    client_body_temp_path {d}/tmp-body;
    proxy_temp_path {d}/tmp-proxy;
    fastcgi_temp_path {d}/tmp-fcgi;
    uwsgi_temp_path {d}/tmp-uwsgi;
    scgi_temp_path {d}/tmp-scgi;
    server {{
        listen 80;
        root {d}/www;
        {extra_server}
    }}
}}
"#
    );
    let p = dir.join("nginx.conf");
    std::fs::write(&p, conf).unwrap();
    p
}

/// `GET /metrics` on `[api] listen` at `port`: (head, body).
pub fn scrape(port: u16) -> (String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    (head.to_string(), body.to_string())
}

/// Sum of every sample of `name` whose labels contain all of `labels`.
pub fn metric_sum(body: &str, name: &str, labels: &[&str]) -> f64 {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, lab) = match series.split_once('{') {
                Some((n, rest)) => (n, rest),
                None => (series, ""),
            };
            (n == name && labels.iter().all(|x| lab.contains(x)))
                .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}
