//! The web dashboard: static assets embedded in the binary (`/ui/`, no build
//! step, no external resources) and the read-only JSON it needs beyond the
//! control API (`/api/timeline`, `/api/overview`). The page signs in with the
//! `[api] token`, keeps it in `sessionStorage` and sends it as a bearer
//! token; the data routes sit behind the same token check as the control API
//! (see `server::serve`). Without a token the page says how to enable it.
//!
//! It owns no state: every panel is computed from the store's reader
//! connection, the in-memory decision table, the per-source status and the
//! union status, each read under its lock for one short query.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use crate::api::ApiError;
use crate::state::Shared;

const INDEX: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const STYLE: &str = include_str!("style.css");
const DISABLED: &str = include_str!("disabled.html");

fn asset(ctype: &'static str, body: &'static str) -> Response {
    let mut r = (
        [
            (header::CONTENT_TYPE, ctype),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        body,
    )
        .into_response();
    // Everything is same-origin; evidence lines are attacker-written, so no inline script may run.
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    r
}

/// The dashboard's static routes. `enabled` is false when no `[api] token`
/// is set: the page then only explains how to turn it on.
pub fn ui_router(enabled: bool) -> Router {
    let r = Router::new().route("/ui", get(|| async { Redirect::permanent("/ui/") }));
    if enabled {
        r.route(
            "/ui/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/ui/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/ui/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
    } else {
        r.route(
            "/ui/",
            get(|| async {
                let mut resp = asset("text/html; charset=utf-8", DISABLED);
                *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                resp
            }),
        )
    }
}

/// One line for `shield status`: where the dashboard is, or why it is off.
pub fn describe(listen: Option<std::net::SocketAddr>, token: bool) -> String {
    match (listen, token) {
        (None, _) => "dashboard: disabled ([api] listen is empty; set it, e.g. \"127.0.0.1:8081\", and an [api] token)".into(),
        (Some(_), false) => "dashboard: disabled (no [api] token; set one to enable the dashboard at /ui/)".into(),
        (Some(a), true) => format!("dashboard: http://{a}/ui/ (sign in with the [api] token)"),
    }
}

/// The dashboard's data routes (put behind the token by the caller).
pub fn api_router(shared: Shared) -> Router {
    Router::new()
        .route("/api/timeline", get(timeline))
        .route("/api/overview", get(overview))
        .with_state(shared)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TimelineQuery {
    #[serde(default = "default_hours")]
    hours: u32,
}

fn default_hours() -> u32 {
    1
}

/// `GET /api/timeline?hours=N`: alerts and decisions per bucket.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
pub struct Timeline {
    /// Start of the first bucket (Unix seconds).
    pub from: i64,
    /// Bucket width: 60 s up to 6 hours, 3600 s beyond.
    pub bucket_s: i64,
    pub alerts: Vec<u64>,
    pub decisions: Vec<u64>,
}

/// The timeline window ending at `now`: (from, bucket width, bucket count).
pub fn window(hours: u32, now: i64) -> (i64, i64, usize) {
    let hours = hours.clamp(1, 24 * 30) as i64;
    let width = if hours <= 6 { 60 } else { 3600 };
    let n = (hours * 3600 / width) as usize;
    let end = (now / width + 1) * width;
    (end - n as i64 * width, width, n)
}

async fn timeline(
    State(s): State<Shared>,
    Query(q): Query<TimelineQuery>,
) -> Result<Json<Timeline>, ApiError> {
    let (from, width, n) = window(q.hours, s.clock.now());
    // Reader connection: one short query each, never blocks the writer (WAL).
    let store = s.reader.lock().unwrap_or_else(|p| p.into_inner());
    let (alerts, decisions) = store.timeline(from, width, n).map_err(internal)?;
    drop(store);
    Ok(Json(Timeline {
        from,
        bucket_s: width,
        alerts,
        decisions,
    }))
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// One row of a top list.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
pub struct Top {
    pub key: String,
    pub count: u64,
}

/// `GET /api/overview`: the top lists and the union and source panels.
#[derive(Serialize, Deserialize, Debug)]
pub struct Overview {
    pub now: i64,
    pub firewall: String,
    pub active_decisions: usize,
    pub top_addresses: Vec<Top>,
    pub top_ranges: Vec<Top>,
    pub top_scenarios: Vec<Top>,
    pub sources: Vec<crate::state::SourceStatus>,
    pub union: Option<serde_json::Value>,
}

/// The range an address is counted in: its /24 (IPv4) or /64 (IPv6).
pub fn range_of(target: &str) -> Option<String> {
    let net = target.parse::<shield_core::Net>().ok()?;
    let p = match net.get() {
        ipnet::IpNet::V4(_) => 24,
        ipnet::IpNet::V6(_) => 64,
    };
    let r = ipnet::IpNet::new(net.addr(), net.prefix_len().min(p)).ok()?;
    Some(r.trunc().to_string())
}

/// The `n` largest counts, ties broken by key.
pub fn top(counts: HashMap<String, u64>, n: usize) -> Vec<Top> {
    let mut v: Vec<Top> = counts
        .into_iter()
        .map(|(key, count)| Top { key, count })
        .collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    v.truncate(n);
    v
}

async fn overview(State(s): State<Shared>) -> Result<Json<Overview>, ApiError> {
    let t = s.clock.now();
    // Counted in SQL over every alert the store keeps (one row per distinct
    // target / scenario comes back), ranges folded from the per-target counts.
    let (targets, scenarios) = {
        let store = s.reader.lock().unwrap_or_else(|p| p.into_inner());
        store.alert_counts().map_err(internal)?
    };
    let mut range = HashMap::new();
    for (t, c) in &targets {
        if let Some(r) = range_of(t) {
            *range.entry(r).or_insert(0u64) += c;
        }
    }
    let addr: HashMap<String, u64> = targets.into_iter().collect();
    let scen: HashMap<String, u64> = scenarios.into_iter().collect();
    let active = s.active_count(t);
    let sources = s.source_snapshot();
    Ok(Json(Overview {
        now: t,
        firewall: s.firewall.clone(),
        active_decisions: active,
        top_addresses: top(addr, 10),
        top_ranges: top(range, 10),
        top_scenarios: top(scen, 10),
        sources,
        union: s.union.status().and_then(|u| serde_json::to_value(u).ok()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_window() {
        let (from, w, n) = window(1, 7_200 + 30);
        assert_eq!((w, n), (60, 60));
        assert_eq!(from, 7_260 - 3_600);
        let (_, w, n) = window(24, 0);
        assert_eq!((w, n), (3600, 24));
        assert_eq!(window(0, 0).2, 60, "hours is clamped to at least 1");
    }

    #[test]
    fn ranges_and_tops() {
        assert_eq!(
            range_of("203.0.113.9/32").as_deref(),
            Some("203.0.113.0/24")
        );
        assert_eq!(range_of("203.0.113.9").as_deref(), Some("203.0.113.0/24"));
        assert_eq!(range_of("10.0.0.0/8").as_deref(), Some("10.0.0.0/8"));
        assert_eq!(
            range_of("2001:db8::1/128").as_deref(),
            Some("2001:db8::/64")
        );
        assert_eq!(range_of("not an address"), None);
        let m = HashMap::from([
            ("b".to_string(), 2),
            ("a".to_string(), 2),
            ("c".to_string(), 5),
        ]);
        let t = top(m, 2);
        assert_eq!(
            t.iter().map(|t| t.key.as_str()).collect::<Vec<_>>(),
            ["c", "a"]
        );
    }
}
