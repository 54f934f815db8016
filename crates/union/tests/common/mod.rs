//! Helpers shared by the union's in-process tests: member specs, treaties,
//! running nodes, and waiting for decisions.
#![allow(dead_code)]

use shield_core::Net;
use shield_core::{Decision, DecisionType, Origin, Scope};
use shield_union::{Identity, UnionConfig, UnionHandle};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub const SCEN: &str = "sshd-bruteforce";

// Each test binary uses some of these.
#[allow(unused_imports)]
pub use shield_testkit::{free_port, now};

pub struct Spec {
    pub name: &'static str,
    pub id: Identity,
    pub port: u16,
    /// `max_signals_per_minute` override.
    pub cap: Option<u32>,
}

pub fn spec(name: &'static str) -> Spec {
    Spec {
        name,
        id: Identity::generate().unwrap(),
        port: free_port(),
        cap: None,
    }
}

/// A treaty over `members`; `top` goes before the tables, `transport` into
/// the `[transport]` table, `policy` replaces the default policy.
pub fn treaty_text(members: &[&Spec], top: &str, transport: &str, policy: &str) -> String {
    let mut s = format!(
        "name = \"test-union\"\nallowlist = [\"192.0.2.0/24\"]\n{top}\n[limits]\nmax_signals_per_minute = 10000\n\n[transport]\nsync_interval = \"200ms\"\n{transport}\n"
    );
    for m in members {
        s.push_str(&format!(
            "\n[[member]]\nname = \"{}\"\nkey = \"{}\"\nendpoint = \"127.0.0.1:{}\"\n",
            m.name,
            m.id.public_string(),
            m.port
        ));
        if let Some(c) = m.cap {
            s.push_str(&format!("max_signals_per_minute = {c}\n"));
        }
    }
    if policy.is_empty() {
        s.push_str(&format!(
            "\n[[policy]]\nscenario = \"{SCEN}\"\ntype = \"ban\"\nduration = \"4h\"\n"
        ));
    } else {
        s.push_str(policy);
    }
    s
}

pub struct Node {
    pub cfg: UnionConfig,
    pub handle: Option<UnionHandle>,
    pub rx: mpsc::Receiver<Decision>,
}

impl Node {
    pub fn h(&self) -> &UnionHandle {
        self.handle.as_ref().expect("node is running")
    }
    pub async fn stop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown().await;
        }
    }
    pub async fn restart(&mut self) {
        let (tx, rx) = mpsc::channel(10_000);
        self.handle = Some(UnionHandle::start(self.cfg.clone(), tx).await.unwrap());
        self.rx = rx;
    }
    pub fn refused(&self, reason: &str) -> u64 {
        self.h()
            .status()
            .counters
            .refused
            .get(reason)
            .copied()
            .unwrap_or(0)
    }
}

/// Write key + treaty for `s` in `dir` and start it.
pub async fn start(dir: &Path, s: &Spec, treaty: &str) -> Node {
    let d = dir.join(s.name);
    std::fs::create_dir_all(&d).unwrap();
    let key = d.join("union.key");
    if !key.exists() {
        s.id.write(&key, false).unwrap();
    }
    let tp = d.join("treaty.toml");
    std::fs::write(&tp, treaty).unwrap();
    let cfg = UnionConfig {
        name: s.name.into(),
        key_path: key,
        treaty_path: tp,
        listen: format!("127.0.0.1:{}", s.port).parse().unwrap(),
        db_path: d.join("shield.db"),
    };
    let (tx, rx) = mpsc::channel(10_000);
    let handle = UnionHandle::start(cfg.clone(), tx).await.unwrap();
    Node {
        cfg,
        handle: Some(handle),
        rx,
    }
}

pub fn decision(target: &str) -> Decision {
    let target: Net = target.parse().unwrap();
    let t = now();
    Decision {
        id: 0,
        scope: Scope::of(&target),
        target,
        kind: DecisionType::Ban,
        scenario: SCEN.into(),
        origin: Origin::Local,
        created: t,
        expires: t + 4 * 3600,
    }
}

/// Poll `f` every 5 ms until it holds or `ms` pass.
pub async fn until(ms: u64, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_millis(ms);
    while !f() {
        assert!(
            Instant::now() < end,
            "timed out after {ms} ms waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Receive exactly `n` decisions within `ms`.
pub async fn recv_n(rx: &mut mpsc::Receiver<Decision>, n: usize, ms: u64) -> Vec<Decision> {
    let end = tokio::time::Instant::now() + Duration::from_millis(ms);
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout_at(end, rx.recv()).await {
            Ok(Some(d)) => out.push(d),
            _ => panic!("got {} of {n} decisions within {ms} ms: {out:?}", out.len()),
        }
    }
    out
}
