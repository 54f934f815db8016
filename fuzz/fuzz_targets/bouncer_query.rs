//! Query strings and headers a bouncer (or anyone reaching the listener)
//! sends to the CrowdSec-compatible API and the gate, through the real
//! routers: every answer is a status, never a panic. The peer is loopback (a
//! trusted proxy by default), so the client-address headers are parsed, with
//! `client_header` = `X-Real-IP` (the default) or `X-Forwarded-For`.
#![no_main]
use std::sync::{Arc, OnceLock, RwLock};

use axum::body::Body;
use axum::http::Request;
use libfuzzer_sys::fuzz_target;
use shield_enforce::{
    ApiConfig, ApiState, ClientHeader, DecisionTable, KeyRing, bouncer_router, gate_router,
};
use tower::ServiceExt;

const KEY: &str = "fuzz-key";

fn state() -> &'static (tokio::runtime::Runtime, [axum::Router; 2]) {
    static S: OnceLock<(tokio::runtime::Runtime, [axum::Router; 2])> = OnceLock::new();
    S.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mut ring = KeyRing::new();
        ring.insert_key("fw", KEY);
        let table = Arc::new(RwLock::new(DecisionTable::default()));
        let ring = Arc::new(ring);
        let app = |client_header| {
            let cfg = ApiConfig { client_header, ..ApiConfig::default() };
            let st = ApiState::new(table.clone(), ring.clone(), cfg);
            gate_router(st.clone()).merge(bouncer_router(st)).layer(
                axum::extract::connect_info::MockConnectInfo(std::net::SocketAddr::from((
                    [127, 0, 0, 1],
                    4000,
                ))),
            )
        };
        (rt, [app(ClientHeader::default()), app(ClientHeader::ForwardedFor)])
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
    if sel & 8 != 0 {
        b = b.header("x-real-ip", q.as_ref());
    }
    if sel % 4 == 3 {
        b = b.method("POST");
    }
    let Ok(req) = b.body(Body::from(rest.to_vec())) else { return };
    let _ = rt.block_on(app[usize::from(sel & 16 != 0)].clone().oneshot(req));
});
