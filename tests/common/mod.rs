//! Helpers for tests that run the real `shield` binary.
#![allow(dead_code)]

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

/// Polls `f` until it returns Some or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A free TCP port on loopback (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
    format!(
        r#"
[store]
path = "@DIR@/shield.db"

[firewall]
backend = "dry-run"

[api]
listen = ""
socket = "@DIR@/shield.sock"

[decisions]
allow_own_addresses = false
{extra}

{sources}
"#
    )
}

/// An sshd failure line in syslog format at the current time.
pub fn ssh_fail(ip: &str, n: usize) -> String {
    let t = jiff::Timestamp::now();
    format!(
        "{} myhost sshd[{}]: Failed password for root from {ip} port {} ssh2",
        t.strftime("%b %e %H:%M:%S"),
        1000 + n,
        40000 + n
    )
}

/// Fail (never skip) when a tool is missing, naming the Debian package.
pub fn require(tool: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "`{tool}` is missing: install the Debian package `{package}` (run .ci/install-deps as root)"
    );
}

pub fn run(cmd: &[&str]) -> Output {
    Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"))
}

/// A network namespace made for one test and deleted when dropped (also on panic).
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// `sh-<tag>-<pid>` (short: interface names derive from it), loopback up.
    pub fn new(tag: &str) -> Netns {
        require("ip", "iproute2");
        let name = format!("sh-{tag}-{}", std::process::id());
        let _ = run(&["ip", "netns", "del", &name]);
        let o = run(&["ip", "netns", "add", &name]);
        assert!(
            o.status.success(),
            "ip netns add {name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let ns = Netns { name };
        ns.ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    pub fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, prog]);
        c
    }

    pub fn exec(&self, cmd: &[&str]) -> Output {
        self.cmd(cmd[0]).args(&cmd[1..]).output().unwrap()
    }

    pub fn ok(&self, cmd: &[&str]) -> String {
        let o = self.exec(cmd);
        assert!(
            o.status.success(),
            "{cmd:?} in {}: {}",
            self.name,
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Links `self` (address `a`) and `other` (address `b`) with a veth pair; `a`/`b` in CIDR form.
    pub fn link(&self, other: &Netns, ifa: &str, a: &str, ifb: &str, b: &str) {
        let o = run(&[
            "ip",
            "link",
            "add",
            ifa,
            "netns",
            &self.name,
            "type",
            "veth",
            "peer",
            "name",
            ifb,
            "netns",
            &other.name,
        ]);
        assert!(
            o.status.success(),
            "veth: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        self.ok(&["ip", "addr", "add", a, "dev", ifa]);
        self.ok(&["ip", "link", "set", ifa, "up"]);
        other.ok(&["ip", "addr", "add", b, "dev", ifb]);
        other.ok(&["ip", "link", "set", ifb, "up"]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Kill whatever still runs inside, then remove the namespace.
        if let Ok(o) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = run(&["ip", "netns", "del", &self.name]);
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
