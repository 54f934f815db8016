//! The control API's routes and handlers (status, decisions, alerts,
//! bouncers), its bearer-token check (wrong tokens share the bouncer keys'
//! budget of 10 per minute per address) and the TCP edge's request guard
//! (timeout, refusal counters). Which listener serves what is `server`.

use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use shield_core::{Decision, DecisionType, Origin, Scope};

use crate::decide::{Outcome, parse_duration, parse_target};
use crate::state::{Counters, Msg, Shared, SourceStatus, Which};

/// An API error: a status and a reason, sent as `{"message": "..."}`.
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "message": self.1 }))).into_response()
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

fn bad(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, e.to_string())
}

/// `shield status` as JSON.
#[derive(Serialize, Deserialize, Debug)]
pub struct Status {
    pub version: String,
    pub config: String,
    pub started: i64,
    pub uptime_s: i64,
    pub firewall: String,
    pub active_decisions: usize,
    pub sources: Vec<SourceStatus>,
    pub counters: serde_json::Value,
    /// Counters kept in the store with the checkpoints (lines and matches per source, across runs).
    #[serde(default)]
    pub store_counters: std::collections::BTreeMap<String, u64>,
    pub union: Option<serde_json::Value>,
    /// Notification channels and exec actions with their counters and last error.
    #[serde(default)]
    pub notify: Vec<crate::notify::SinkStatus>,
    /// Each `[[list]]`'s state.
    #[serde(default)]
    pub lists: Vec<crate::lists::ListStatus>,
}

/// The control routes, identical on the socket and (with a token) on TCP.
pub fn control_router(shared: Shared) -> Router {
    Router::new()
        .route("/api/status", get(status))
        .route(
            "/api/decisions",
            get(list_decisions)
                .post(add_decision)
                .delete(delete_decisions),
        )
        .route("/api/alerts", get(list_alerts))
        .route("/api/bouncers", get(list_bouncers).post(add_bouncer))
        .route("/api/bouncers/{name}", delete(delete_bouncer))
        .with_state(shared)
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
}

async fn status(State(s): State<Shared>) -> Result<Json<Status>, ApiError> {
    let t = s.clock.now();
    let active = s.active_count(t);
    let sources = s.source_snapshot();
    let c = &s.counters;
    use std::sync::atomic::Ordering::Relaxed;
    let tcp = c.edge.tcp_stats();
    let counters = serde_json::json!({
        "decisions_new": c.decisions_new.load(Relaxed),
        "decisions_extended": c.decisions_extended.load(Relaxed),
        "allowlisted": c.allowlisted.load(Relaxed),
        "firewall_errors": c.firewall_errors.load(Relaxed),
        "store_errors": c.store_errors.load(Relaxed),
        "api_refused": c.edge.refused.load(Relaxed),
        "api_timeouts": c.edge.timeouts.load(Relaxed),
        "api_conn_errors": tcp.conn_errors + tcp.timed_out,
        "api_conn_rejected": tcp.refused_peer + tcp.refused_full,
        "api_conn_evicted": tcp.evicted,
        "api_conn_open": tcp.open,
    });
    let store_counters = s
        .reader
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .counters()
        .map_err(internal)?
        .into_iter()
        .collect();
    Ok(Json(Status {
        version: env!("CARGO_PKG_VERSION").into(),
        config: s.config_file.clone(),
        started: s.started,
        uptime_s: t - s.started,
        firewall: s.firewall.clone(),
        active_decisions: active,
        sources,
        counters,
        store_counters,
        union: s.union.status().and_then(|u| serde_json::to_value(u).ok()),
        notify: s.counters.notify.status(),
        lists: crate::lists::snapshot(&s.counters.lists),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    all: bool,
    /// Most rows; by default every active decision, or the 1000 most recent with `all`.
    #[serde(default)]
    limit: Option<usize>,
}

async fn list_decisions(
    State(s): State<Shared>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<Decision>>, ApiError> {
    let store = s.reader.lock().unwrap_or_else(|p| p.into_inner());
    let mut v = if q.all {
        store
            .recent_decisions(q.limit.unwrap_or(1000).min(100_000))
            .map_err(internal)?
    } else {
        store.active_decisions(s.clock.now()).map_err(internal)?
    };
    if let Some(l) = q.limit {
        v.truncate(l);
    }
    Ok(Json(v))
}

/// Body of `POST /api/decisions`.
#[derive(Deserialize, Serialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct AddRequest {
    pub target: String,
    #[serde(default = "default_type", rename = "type")]
    pub kind: String,
    #[serde(default = "default_duration")]
    pub duration: String,
    #[serde(default = "default_reason")]
    pub reason: String,
}

fn default_type() -> String {
    "ban".into()
}
fn default_duration() -> String {
    "4h".into()
}
fn default_reason() -> String {
    "manual".into()
}

/// The longest manual decision (10 years).
pub const MAX_MANUAL_DURATION_S: u64 = 10 * 365 * 86400;

/// Turns an add request into a manual decision (shared with the offline CLI path).
pub fn manual_decision(req: &AddRequest, t: i64) -> Result<Decision, String> {
    let target = parse_target(&req.target)?;
    // The target is canonical, so `::ffff:0.0.0.0/96` is refused here as the
    // `0.0.0.0/0` it is.
    if target.prefix_len() == 0 {
        return Err(format!(
            "`{}` is {target}, every address of its family: it would cut this host off; give a narrower range",
            req.target
        ));
    }
    let kind: DecisionType = req
        .kind
        .parse()
        .map_err(|e: shield_core::ParseError| e.to_string())?;
    let d = parse_duration(&req.duration)?;
    if d.as_secs() == 0 {
        return Err("duration must be at least 1s".into());
    }
    // Bounded so `created + duration` cannot overflow whatever the input.
    if d.as_secs() > MAX_MANUAL_DURATION_S {
        return Err("duration is longer than 10 years; give a shorter one".into());
    }
    if req.reason.len() > 256 {
        return Err("reason is longer than 256 bytes".into());
    }
    if req.reason.chars().any(char::is_control) {
        return Err("reason contains control characters; use printable text".into());
    }
    Ok(Decision {
        id: 0,
        scope: Scope::of(&target),
        target,
        kind,
        scenario: req.reason.clone(),
        origin: Origin::Manual,
        created: t,
        expires: t + d.as_secs() as i64,
    })
}

async fn add_decision(
    State(s): State<Shared>,
    Json(req): Json<AddRequest>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let d = manual_decision(&req, s.clock.now()).map_err(bad)?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    s.tx.send(Msg::Admit {
        decision: d,
        reply: Some(tx),
    })
    .map_err(internal)?;
    match rx.await.map_err(internal)?.map_err(internal)? {
        Outcome::New(d) | Outcome::Extended(d) => Ok((
            StatusCode::CREATED,
            Json(serde_json::to_value(d).map_err(internal)?),
        )),
        Outcome::Covered(id) => Ok((
            StatusCode::OK,
            Json(serde_json::json!({"message": "already covered by an active decision", "id": id})),
        )),
        // Only alerts of a scenario that decides nothing get this; an operator's
        // decision never does.
        Outcome::AlertOnly => Err(internal("nothing decided")),
        Outcome::Allowlisted(net) => Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "{} is in the allowlist ({net}); remove it from [decisions] allowlist first",
                req.target
            ),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteQuery {
    id: Option<i64>,
    target: Option<String>,
}

async fn delete_decisions(
    State(s): State<Shared>,
    Query(q): Query<DeleteQuery>,
) -> Result<Json<Vec<Decision>>, ApiError> {
    // An id wins over a target.
    let which = match (q.id, &q.target) {
        (Some(id), _) => Which::Id(id),
        (None, Some(t)) => Which::Target(parse_target(t).map_err(bad)?),
        (None, None) => return Err(bad("give ?id=N or ?target=ADDRESS")),
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    s.tx.send(Msg::Delete { which, reply: tx })
        .map_err(internal)?;
    let v = rx.await.map_err(internal)?.map_err(internal)?;
    if v.is_empty() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            "no active decision matches".into(),
        ));
    }
    Ok(Json(v))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitQuery {
    #[serde(default = "default_alert_limit")]
    limit: usize,
}

fn default_alert_limit() -> usize {
    100
}

async fn list_alerts(
    State(s): State<Shared>,
    Query(q): Query<LimitQuery>,
) -> Result<Json<Vec<crate::store::StoredAlert>>, ApiError> {
    let store = s.reader.lock().unwrap_or_else(|p| p.into_inner());
    Ok(Json(
        store.recent_alerts(q.limit.min(10_000)).map_err(internal)?,
    ))
}

async fn list_bouncers(State(s): State<Shared>) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    let store = s.reader.lock().unwrap_or_else(|p| p.into_inner());
    let v = store.bouncers().map_err(internal)?;
    Ok(Json(
        v.into_iter()
            .map(|b| serde_json::json!({"name": b.name, "created": b.created, "last_pull": b.last_pull}))
            .collect(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBouncer {
    name: String,
}

/// Checks a bouncer name: 1–64 of `[A-Za-z0-9._-]`.
pub fn valid_bouncer_name(n: &str) -> Result<(), String> {
    if n.is_empty()
        || n.len() > 64
        || !n
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(format!(
            "bouncer name `{n}` must be 1-64 characters of A-Z a-z 0-9 . _ -"
        ));
    }
    Ok(())
}

async fn add_bouncer(
    State(s): State<Shared>,
    Json(req): Json<AddBouncer>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    valid_bouncer_name(&req.name).map_err(bad)?;
    let key = shield_enforce::generate_api_key();
    let hash = shield_enforce::hash_api_key(&key);
    if !write_bouncer(&s, &req.name, Some(hash)).await? {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("bouncer `{}` already exists", req.name),
        ));
    }
    s.auth
        .load(&s.reader.lock().unwrap_or_else(|p| p.into_inner()));
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"name": req.name, "api_key": key})),
    ))
}

/// Adds (`key_hash` given) or deletes a bouncer through the decision thread,
/// the store's one writer; whether a row changed.
async fn write_bouncer(s: &Shared, name: &str, key_hash: Option<String>) -> Result<bool, ApiError> {
    let (reply, rx) = tokio::sync::oneshot::channel();
    let msg = Msg::Bouncer {
        name: name.to_string(),
        key_hash,
        reply,
    };
    let stopped = || {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the daemon is stopping".into(),
        )
    };
    s.tx.send(msg).map_err(|_| stopped())?;
    rx.await.map_err(|_| stopped())?.map_err(internal)
}

async fn delete_bouncer(
    State(s): State<Shared>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !write_bouncer(&s, &name, None).await? {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no bouncer named `{name}`"),
        ));
    }
    s.auth
        .load(&s.reader.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(StatusCode::NO_CONTENT)
}

/// The bearer token and the wrong-guess budget it shares with the bouncer keys.
#[derive(Clone)]
struct TokenCheck {
    token: String,
    guesses: std::sync::Arc<shield_enforce::Guesses>,
}

async fn require_token(State(check): State<TokenCheck>, req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_canonical());
    let now = std::time::Instant::now();
    if let Some(p) = peer
        && check.guesses.blocked(p, now)
    {
        let mut r = ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many wrong tokens from this address; wait {}s and check [api] token",
                check.guesses.window().as_secs()
            ),
        )
        .into_response();
        r.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(check.guesses.window().as_secs()),
        );
        return r;
    }
    let given = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .map(|v| v.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")));
    match given {
        Some(Some(t)) if shield_core::ct_eq(t.as_bytes(), check.token.as_bytes()) => {
            next.run(req).await
        }
        given => {
            // A token was offered and was wrong: that is a guess. No header at all is not.
            if given.is_some()
                && let Some(p) = peer
            {
                check.guesses.failed(p, now);
            }
            ApiError(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token".into(),
            )
            .into_response()
        }
    }
}

/// A whole request (body included) must be answered within this time.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// Bounds every TCP request in time and counts what is refused.
async fn edge_guard(
    State(c): State<std::sync::Arc<Counters>>,
    req: Request,
    next: Next,
) -> Response {
    use std::sync::atomic::Ordering::Relaxed;
    let edge = &c.edge;
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => {
            if r.status().is_client_error() {
                edge.refused.fetch_add(1, Relaxed);
            }
            r
        }
        Err(_) => {
            edge.timeouts.fetch_add(1, Relaxed);
            edge.refused.fetch_add(1, Relaxed);
            ApiError(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request was not complete within {}s",
                    REQUEST_TIMEOUT.as_secs()
                ),
            )
            .into_response()
        }
    }
}

/// `router` behind the request guard: answered within [`REQUEST_TIMEOUT`],
/// refusals counted in `counters.edge`.
pub(crate) fn guarded(router: Router, counters: std::sync::Arc<Counters>) -> Router {
    router.layer(middleware::from_fn_with_state(counters, edge_guard))
}

/// `router` behind the `[api] token` check, sharing `guesses` with the bouncer keys.
pub(crate) fn behind_token(
    router: Router,
    token: String,
    guesses: std::sync::Arc<shield_enforce::Guesses>,
) -> Router {
    router.layer(middleware::from_fn_with_state(
        TokenCheck { token, guesses },
        require_token,
    ))
}
