//! Helpers shared by the integration tests: network namespaces that clean up
//! after themselves, tool checks that fail loudly, and decision builders.
#![allow(dead_code)]

use std::process::{Command, Output};

use shield_core::{Decision, DecisionType, Net, Origin, Scope, UnixTime};

pub fn now() -> UnixTime {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
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
        "`{tool}` is missing: install the Debian package `{package}` (these tests run as root with it)"
    );
}

pub fn run(cmd: &[&str]) -> Output {
    Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"))
}

pub fn run_ok(cmd: &[&str]) -> String {
    let o = run(cmd);
    assert!(
        o.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A network namespace made for one test and deleted when dropped (also on panic).
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// `shield-<tag>-<pid>`, with loopback up.
    pub fn new(tag: &str) -> Netns {
        require("ip", "iproute2");
        let name = format!("shield-{tag}-{}", std::process::id());
        let _ = run(&["ip", "netns", "del", &name]);
        run_ok(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    pub fn exec(&self, cmd: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(cmd);
        run(&full)
    }

    pub fn exec_ok(&self, cmd: &[&str]) -> String {
        let o = self.exec(cmd);
        assert!(
            o.status.success(),
            "{cmd:?} in {} failed: {}",
            self.name,
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.name]);
    }
}

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

pub fn ban(id: i64, target: &str, expires: UnixTime) -> Decision {
    decision(id, target, DecisionType::Ban, expires)
}

/// The first fenced block of `lang` in `docs/gate.md`: the snippets the
/// proxy tests run are the ones users copy.
pub fn gate_doc_block(lang: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/gate.md");
    let doc = std::fs::read_to_string(path).expect("read docs/gate.md");
    let start = doc
        .find(&format!("```{lang}\n"))
        .unwrap_or_else(|| panic!("no ```{lang} block in docs/gate.md"));
    let body = &doc[start + lang.len() + 4..];
    body[..body.find("```").expect("unterminated block")].to_string()
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `curl` from source address `from` with extra request headers: (status, body).
pub fn curl_from(from: &str, url: &str, headers: &[&str]) -> (String, String) {
    let mut c = Command::new("curl");
    c.args([
        "-s",
        "--interface",
        from,
        "--max-time",
        "5",
        "-w",
        "\n%{http_code}",
    ]);
    for h in headers {
        c.args(["-H", h]);
    }
    let o = c.arg(url).output().expect("run curl");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", &out));
    (code.to_string(), body.to_string())
}

/// Stops and reaps a child process when dropped: SIGTERM first, so that an
/// nginx master stops its workers (after SIGKILL they would live on, orphaned),
/// then SIGKILL if it is still there after 5 s.
pub struct Reap(pub std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The gate on a loopback port with its default config (trusted proxies =
/// loopback, client header = X-Real-IP), served by the limited listener on
/// its own runtime; dropping `rt` stops it.
pub struct Gate {
    pub rt: tokio::runtime::Runtime,
    pub table: std::sync::Arc<std::sync::RwLock<shield_enforce::DecisionTable>>,
    pub state: shield_enforce::ApiState,
    pub port: u16,
}

impl Gate {
    pub fn serve() -> Gate {
        use shield_enforce::{
            ApiConfig, ApiState, DecisionTable, KeyRing, Limiter, ListenLimits, gate_router,
            serve_tcp,
        };
        use std::sync::{Arc, RwLock};
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let table = Arc::new(RwLock::new(DecisionTable::new()));
        let state = ApiState::new(
            table.clone(),
            Arc::new(KeyRing::new()),
            ApiConfig::default(),
        );
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        rt.spawn(serve_tcp(
            listener,
            gate_router(state.clone()),
            Limiter::new(ListenLimits::default()),
        ));
        Gate {
            rt,
            table,
            state,
            port,
        }
    }
}
