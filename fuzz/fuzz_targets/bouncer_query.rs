//! Query strings and headers a bouncer (or anyone reaching the listener)
//! sends to the CrowdSec-compatible API and the gate, through the real
//! routers: every answer is a status, never a panic.
#![no_main]
use std::sync::{Arc, OnceLock, RwLock};

use axum::body::Body;
use axum::http::Request;
use libfuzzer_sys::fuzz_target;
use shield_enforce::{ApiConfig, ApiState, DecisionTable, KeyRing, bouncer_router, gate_router};
use tower::ServiceExt;

const KEY: &str = "fuzz-key";

fn state() -> &'static (tokio::runtime::Runtime, axum::Router) {
    static S: OnceLock<(tokio::runtime::Runtime, axum::Router)> = OnceLock::new();
    S.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mut ring = KeyRing::new();
        ring.insert_key("fw", KEY);
        let table = Arc::new(RwLock::new(DecisionTable::default()));
        let st = ApiState::new(table, Arc::new(ring), ApiConfig::default());
        let app = gate_router(st.clone()).merge(bouncer_router(st)).layer(
            axum::extract::connect_info::MockConnectInfo(std::net::SocketAddr::from((
                [192, 0, 2, 1],
                4000,
            ))),
        );
        (rt, app)
    })
}

fuzz_target!(|data: &[u8]| {
    let (rt, app) = state();
    // First byte picks the endpoint; the rest is the query string (raw bytes,
    // as far as a URI allows) or a header value.
    let Some((&sel, rest)) = data.split_first() else { return };
    let q = String::from_utf8_lossy(rest);
    let path = match sel % 4 {
        0 => "/v1/decisions",
        1 => "/v1/decisions/stream",
        2 => "/gate",
        _ => "/v1/usage-metrics",
    };
    let mut b = Request::builder().uri(format!("{path}?{q}")).header("x-api-key", KEY);
    if sel & 4 != 0 {
        b = b.header("x-forwarded-for", q.as_ref());
    }
    if sel % 4 == 3 {
        b = b.method("POST");
    }
    let Ok(req) = b.body(Body::from(rest.to_vec())) else { return };
    let _ = rt.block_on(app.clone().oneshot(req));
});
