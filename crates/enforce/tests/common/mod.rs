//! Helpers of the enforce tests: the gate on its own runtime, the proxy
//! snippets of docs/gate.md, curl from a chosen address. Namespaces, tools,
//! ports, child processes and decision builders come from `shield-testkit`.
#![allow(dead_code)]

use std::process::Command;

// Each test binary uses some of these.
#[allow(unused_imports)]
pub use shield_testkit::{
    Netns, Reap, ban, decision, free_port, now, require, run, run_ok, wait_for,
};

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

/// The gate on a loopback port with its default config (trusted proxies =
/// loopback, client header = X-Real-IP), served by the limited listener on
/// its own runtime; dropping `rt` stops it.
pub struct Gate {
    pub rt: tokio::runtime::Runtime,
    pub table: std::sync::Arc<std::sync::RwLock<shield_enforce::DecisionTable>>,
    pub state: shield_enforce::ApiState,
    pub port: u16,
    /// The listener's limits and counters.
    pub limiter: std::sync::Arc<shield_enforce::Limiter>,
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
        let limiter = Limiter::new(ListenLimits::default());
        rt.spawn(serve_tcp(
            listener,
            gate_router(state.clone()),
            limiter.clone(),
        ));
        Gate {
            rt,
            table,
            state,
            port,
            limiter,
        }
    }
}
