//! Test support shared by the integration tests of every crate and of the
//! `shield` binary: waiting, free ports, required tools, commands, network
//! namespaces that clean up after themselves, child processes reaped on drop,
//! a real `nats-server`, attack lines and decision builders.
//!
//! It owns nothing a test asserts: helpers here fail loudly (a missing tool
//! is a failure naming its Debian package, never a skip) and leave the checks
//! to the tests. Helpers that need one crate's API (the daemon's config, the
//! gate on a runtime, union members) stay in that crate's `tests/common`.
//! A dev-dependency only; nothing here ships.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use shield_core::{Decision, DecisionType, Net, Origin, Scope, UnixTime};

/// The wall clock, as the daemon reads it.
pub fn now() -> UnixTime {
    shield_core::wall_now()
}

/// Polls `f` every 50 ms until it returns `Some` or `timeout` passes.
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

/// A loopback TCP port nobody listens on right now (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Fails (never skips) when a tool is missing, naming the Debian package.
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

/// Runs `cmd` (program and arguments) and returns its output.
pub fn run(cmd: &[&str]) -> Output {
    Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"))
}

/// Runs `cmd`, fails the test with its stderr unless it succeeds, and
/// returns its stdout.
pub fn run_ok(cmd: &[&str]) -> String {
    let o = run(cmd);
    assert!(
        o.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A network namespace made for one test and deleted when dropped (also on
/// panic), with whatever still runs inside it killed first.
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

    /// `prog` to run inside the namespace.
    pub fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, prog]);
        c
    }

    pub fn exec(&self, cmd: &[&str]) -> Output {
        self.cmd(cmd[0])
            .args(&cmd[1..])
            .output()
            .unwrap_or_else(|e| panic!("could not run {cmd:?} in {}: {e}", self.name))
    }

    /// [`Netns::exec`], failing the test with stderr unless it succeeds; returns stdout.
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

/// Stops and reaps a child process when dropped: SIGTERM first, so that an
/// nginx master stops its workers (after SIGKILL they would live on, orphaned),
/// then SIGKILL if it is still there after 5 s.
pub struct Reap(pub Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real `nats-server` with JetStream on a free loopback port, its store in
/// a temp dir; stopped when dropped.
pub struct NatsServer {
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
    _child: Reap,
    _dir: tempfile::TempDir,
}

impl NatsServer {
    /// Starts it and waits until it listens (fails the test after 10 s).
    pub fn start() -> NatsServer {
        let bin = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .unwrap_or_else(|| {
                panic!("nats-server not found: install the Debian package `nats-server`")
            });
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new(bin)
            .args(["-js", "-sd"])
            .arg(dir.path())
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server (Debian package `nats-server`)");
        let child = Reap(child);
        let up = wait_for(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        assert!(up.is_some(), "nats-server did not listen on {port}");
        NatsServer {
            url: format!("nats://127.0.0.1:{port}"),
            _child: child,
            _dir: dir,
        }
    }
}

/// An sshd failure line in syslog format at the current time: the attack
/// line the built-in `sshd` pack takes (`sshd-failed-password`). `n` makes
/// the pid and port of each line distinct.
pub fn ssh_fail(ip: &str, n: usize) -> String {
    let t = jiff::Timestamp::now();
    format!(
        "{} myhost sshd[{}]: Failed password for root from {ip} port {} ssh2",
        t.strftime("%b %e %H:%M:%S"),
        1000 + n,
        40000 + n
    )
}

/// A local decision of `kind` on `target` (an address or CIDR), created now.
pub fn decision(id: i64, target: &str, kind: DecisionType, expires: UnixTime) -> Decision {
    let target: Net = target.parse().unwrap();
    Decision {
        id,
        scope: Scope::of(&target),
        target,
        kind,
        scenario: "test/scenario".into(),
        origin: Origin::Local,
        created: now(),
        expires,
    }
}

/// A local ban on `target` until `expires`.
pub fn ban(id: i64, target: &str, expires: UnixTime) -> Decision {
    decision(id, target, DecisionType::Ban, expires)
}
