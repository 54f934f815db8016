//! The CrowdSec-compatible bouncer API (`/v1/decisions`, `/v1/decisions/stream`,
//! `/v1/usage-metrics`) and the state it shares with the gate ([`ApiState`]).
//!
//! The JSON shapes follow CrowdSec's `pkg/models/localapi_swagger.yaml` and
//! what the Debian LAPI (1.4.6) sends: a `Decision` is
//! `{"duration","id","origin","scenario","scope","type","value"}` with
//! `duration` the remaining time in Go's format rounded to seconds
//! (`3h59m58s`), `scope` `Ip`/`Range`; an empty `/v1/decisions` answer is the
//! literal body `null`; the stream answers `{"deleted":…,"new":…}` with `null`
//! for empty lists. Keys come in `X-Api-Key`; over TLS a client certificate
//! that names a bouncer ([`ClientCert`]) stands in for a key.
//!
//! It does not manage keys (the daemon does, through [`BouncerAuth`]) and does
//! not write decisions: it reads the shared [`DecisionTable`].

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hashbrown::HashMap;
use serde::Serialize;
use shield_core::{Addr, Decision, DecisionType, Net, Origin, Scope, UnixTime};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::auth::{BouncerAuth, Guesses, random_bytes};
use crate::client::{Buckets, ClientHeader, peer_of};
use crate::table::DecisionTable;
use crate::tls::ClientCert;

/// Settings of the HTTP layers (gate and bouncer API).
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Peers whose [`client_header`](Self::client_header) is believed (the reverse proxies).
    pub trusted_proxies: Vec<Net>,
    /// The one header naming the client when the peer is a trusted proxy.
    pub client_header: ClientHeader,
    /// Largest request body accepted, in bytes.
    pub max_body: usize,
    /// Longest time a request may take before a 408.
    pub request_timeout: Duration,
    /// Throttle: tokens added per second per address.
    pub throttle_rate: f64,
    /// Throttle: bucket size (requests allowed in a burst).
    pub throttle_burst: f64,
    /// Most addresses tracked by the throttle at once (memory bound).
    pub max_buckets: usize,
    /// Captcha proof of work: leading zero bits of SHA-256 required (16 ≈ 65k hashes).
    pub captcha_difficulty: u8,
    /// How long a solved challenge lets the client through, in seconds.
    pub captcha_pass_s: u64,
    /// Mark the pass cookie `Secure` (set when the site is served over HTTPS).
    pub cookie_secure: bool,
    /// The time decisions are checked against (the daemon's clock).
    pub clock: shield_core::Clock,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            trusted_proxies: loopback(),
            client_header: ClientHeader::default(),
            max_body: 64 * 1024,
            request_timeout: Duration::from_secs(10),
            throttle_rate: 1.0,
            throttle_burst: 5.0,
            max_buckets: 100_000,
            captcha_difficulty: 16,
            captcha_pass_s: 3600,
            cookie_secure: false,
            clock: shield_core::Clock::system(),
        }
    }
}

/// `127.0.0.1/32` and `::1/128`: the default trusted proxies (a proxy on the same host).
pub fn loopback() -> Vec<Net> {
    vec![
        Net::host(std::net::Ipv4Addr::LOCALHOST),
        Net::host(std::net::Ipv6Addr::LOCALHOST),
    ]
}

/// Counters of the HTTP layers (for metrics).
#[derive(Debug, Default)]
pub(crate) struct ApiCounters {
    pub(crate) gate_allow: AtomicU64,
    pub(crate) gate_ban: AtomicU64,
    pub(crate) gate_throttle: AtomicU64,
    pub(crate) gate_captcha: AtomicU64,
    pub(crate) api_ok: AtomicU64,
    pub(crate) api_denied: AtomicU64,
    pub(crate) api_bad_request: AtomicU64,
}

/// A snapshot of the HTTP layers' counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ApiStats {
    pub gate_allow: u64,
    pub gate_ban: u64,
    pub gate_throttle: u64,
    pub gate_captcha: u64,
    pub api_ok: u64,
    pub api_denied: u64,
    pub api_bad_request: u64,
}

/// Where one bouncer's stream stands: the table version and time of its last pull.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cursor {
    version: u64,
    last_pull: UnixTime,
}

pub(crate) struct Inner {
    /// Shared with the daemon, which takes the write lock once per batch.
    /// Safe as a blocking `std` lock: every holder here (gate, API) takes the
    /// read side for a synchronous lookup and never across an `.await`, and
    /// the writer holds it only for an in-memory batch, so waits are
    /// microseconds and no task can hold it while suspended.
    pub(crate) table: Arc<RwLock<DecisionTable>>,
    pub(crate) auth: Arc<dyn BouncerAuth>,
    pub(crate) cfg: ApiConfig,
    /// Per-bouncer stream cursors. Locked only inside a synchronous section
    /// (after the table read lock, never the other way round), never across `.await`.
    /// Shared with the state [`ApiState::reconfigured`] makes.
    streams: Arc<Mutex<HashMap<String, Cursor>>>,
    /// Wrong keys per address (bouncer keys here, bearer tokens in the daemon).
    pub(crate) guesses: Arc<Guesses>,
    /// Throttle token buckets; same locking rule as `streams`.
    pub(crate) buckets: Mutex<Buckets>,
    /// Key for the captcha challenge and pass cookie MACs, new at every start.
    pub(crate) cookie_key: [u8; 32],
    pub(crate) counters: ApiCounters,
}

/// State shared by the gate and the bouncer API. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    pub(crate) inner: Arc<Inner>,
}

impl ApiState {
    pub fn new(
        table: Arc<RwLock<DecisionTable>>,
        auth: Arc<dyn BouncerAuth>,
        cfg: ApiConfig,
    ) -> Self {
        let buckets = Buckets::new(cfg.max_buckets);
        ApiState {
            inner: Arc::new(Inner {
                table,
                auth,
                cfg,
                streams: Arc::new(Mutex::new(HashMap::new())),
                buckets: Mutex::new(buckets),
                guesses: Arc::new(Guesses::default()),
                cookie_key: random_bytes::<32>(),
                counters: ApiCounters::default(),
            }),
        }
    }

    /// A state with new settings that keeps what clients built up: each
    /// bouncer's stream cursor (so no unban is lost across a reload), the
    /// wrong-key limiter and the captcha key (passes stay valid). Throttle
    /// buckets and counters start afresh.
    pub fn reconfigured(&self, cfg: ApiConfig) -> ApiState {
        let old = &self.inner;
        ApiState {
            inner: Arc::new(Inner {
                table: old.table.clone(),
                auth: old.auth.clone(),
                streams: old.streams.clone(),
                buckets: Mutex::new(Buckets::new(cfg.max_buckets)),
                guesses: old.guesses.clone(),
                cookie_key: old.cookie_key,
                counters: ApiCounters::default(),
                cfg,
            }),
        }
    }

    /// The wrong-key limiter, to share with other endpoints that check secrets
    /// (the daemon's bearer token), so one budget of guesses covers them all.
    pub fn guesses(&self) -> Arc<Guesses> {
        self.inner.guesses.clone()
    }

    /// The counters so far.
    pub fn stats(&self) -> ApiStats {
        let c = &self.inner.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ApiStats {
            gate_allow: l(&c.gate_allow),
            gate_ban: l(&c.gate_ban),
            gate_throttle: l(&c.gate_throttle),
            gate_captcha: l(&c.gate_captcha),
            api_ok: l(&c.api_ok),
            api_denied: l(&c.api_denied),
            api_bad_request: l(&c.api_bad_request),
        }
    }

    /// Read access to the table. A poisoned lock (a writer panicked) still
    /// holds a consistent table: each batch mutates entry by entry.
    pub(crate) fn table(&self) -> RwLockReadGuard<'_, DecisionTable> {
        self.inner.table.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// A Go `time.Duration` string rounded to whole seconds, as CrowdSec prints
/// remaining time: `4h0m0s`, `59m58s`, `7s`, `0s`, `-3s`.
pub fn format_go_duration(secs: i64) -> String {
    let neg = secs < 0;
    let s = secs.unsigned_abs();
    let (h, m, sec) = (s / 3600, (s / 60) % 60, s % 60);
    let sign = if neg { "-" } else { "" };
    if h > 0 {
        format!("{sign}{h}h{m}m{sec}s")
    } else if m > 0 {
        format!("{sign}{m}m{sec}s")
    } else {
        format!("{sign}{sec}s")
    }
}

/// Shield's origins in CrowdSec's words (the firewall bouncer makes one set per origin,
/// so the name must be a plain word).
pub(crate) fn cs_origin(o: &Origin) -> Cow<'static, str> {
    match o {
        Origin::Local => "crowdsec".into(),
        Origin::Manual => "cscli".into(),
        Origin::List(_) => "lists".into(),
        Origin::Union(m) => {
            let clean: String = m
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            format!("union-{clean}").into()
        }
    }
}

fn cs_scope(s: Scope) -> &'static str {
    match s {
        Scope::Ip => "Ip",
        Scope::Range => "Range",
    }
}

/// A decision as CrowdSec's LAPI sends it to bouncers.
#[derive(Serialize)]
struct CsDecision<'a> {
    duration: String,
    id: i64,
    origin: Cow<'static, str>,
    scenario: &'a str,
    scope: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    value: String,
}

fn to_cs(d: &Decision, now: UnixTime) -> CsDecision<'_> {
    CsDecision {
        duration: format_go_duration(d.expires - now),
        id: d.id,
        origin: cs_origin(&d.origin),
        scenario: &d.scenario,
        scope: cs_scope(d.scope),
        kind: d.kind.as_str(),
        value: d.value(),
    }
}

/// A deleted decision: duration is never positive (CrowdSec sets `until` to the deletion time).
fn to_cs_deleted(d: &Decision, now: UnixTime) -> CsDecision<'_> {
    let mut c = to_cs(d, now);
    c.duration = format_go_duration((d.expires - now).min(0));
    c
}

pub(crate) fn json_message(status: StatusCode, msg: impl Into<String>) -> Response {
    #[derive(Serialize)]
    struct M {
        message: String,
    }
    (
        status,
        axum::Json(M {
            message: msg.into(),
        }),
    )
        .into_response()
}

fn json_body(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

/// Check `X-Api-Key`; returns the bouncer's name or the error response.
/// A refused key: status and message, turned into a response by [`Denied::into_response`].
enum Denied {
    Key(StatusCode, &'static str),
    TooManyGuesses(Duration),
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Denied::Key(status, msg) => json_message(status, msg),
            Denied::TooManyGuesses(window) => too_many_guesses(window),
        }
    }
}

/// The TCP peer of a request (see [`peer_of`]), canonical, and the bouncer
/// its verified client certificate names, if any.
pub(crate) struct Peer(Option<IpAddr>, Option<ClientCert>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            peer_of(&parts.extensions).map(|p| Addr::new(p).ip()),
            parts.extensions.get::<ClientCert>().cloned(),
        ))
    }
}

/// The answer to an address that guessed too many wrong keys.
pub(crate) fn too_many_guesses(window: Duration) -> Response {
    let mut r = json_message(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "too many wrong keys from this address; wait {}s and check the key (`shield bouncers add NAME` makes a new one)",
            window.as_secs()
        ),
    );
    if let Ok(v) = HeaderValue::from_str(&window.as_secs().to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

fn authenticate(state: &ApiState, headers: &HeaderMap, peer: Peer) -> Result<String, Denied> {
    let guesses = &state.inner.guesses;
    let now = std::time::Instant::now();
    if let Some(p) = peer.0
        && guesses.blocked(p, now)
    {
        state
            .inner
            .counters
            .api_denied
            .fetch_add(1, Ordering::Relaxed);
        return Err(Denied::TooManyGuesses(guesses.window()));
    }
    let wrong = || {
        if let Some(p) = peer.0 {
            guesses.failed(p, now);
        }
    };
    let deny = |status, msg: &'static str| {
        state
            .inner
            .counters
            .api_denied
            .fetch_add(1, Ordering::Relaxed);
        Err(Denied::Key(status, msg))
    };
    let Some(key) = headers.get("x-api-key") else {
        // A client certificate stands in for a key (CrowdSec's TLS auth).
        if let Some(c) = peer.1 {
            return Ok(c.name);
        }
        return deny(
            StatusCode::UNAUTHORIZED,
            "missing X-Api-Key header: create a key with `shield bouncers add NAME`",
        );
    };
    let Ok(key) = key.to_str() else {
        wrong();
        return deny(StatusCode::FORBIDDEN, "access forbidden");
    };
    match state.inner.auth.authenticate(key.trim()) {
        Some(name) => Ok(name),
        // CrowdSec's exact answer to a wrong key.
        None => {
            wrong();
            deny(StatusCode::FORBIDDEN, "access forbidden")
        }
    }
}

/// A 400 with a reason.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BadQuery(pub(crate) String);

/// Filters shared by `/v1/decisions` and the stream.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Filters {
    kind: Option<Option<DecisionType>>,
    scopes: Option<Vec<Option<Scope>>>,
    origins: Option<Vec<String>>,
    scenarios_containing: Vec<String>,
    scenarios_not_containing: Vec<String>,
}

fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn parse_bool(name: &str, v: &str) -> Result<bool, BadQuery> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" | "" => Ok(false),
        _ => Err(BadQuery(format!(
            "`{name}` must be true or false, not `{v}`"
        ))),
    }
}

impl Filters {
    fn take(&mut self, k: &str, v: &str) -> Result<bool, BadQuery> {
        match k {
            // Custom CrowdSec types/scopes exist; Shield has none, so they match nothing.
            "type" => self.kind = Some(v.parse().ok()),
            "scope" | "scopes" => {
                self.scopes = Some(list(v).iter().map(|s| s.parse().ok()).collect())
            }
            "origins" => self.origins = Some(list(v)),
            "scenarios_containing" => self.scenarios_containing = list(v),
            "scenarios_not_containing" => self.scenarios_not_containing = list(v),
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn keep(&self, d: &Decision) -> bool {
        if let Some(k) = self.kind
            && k != Some(d.kind)
        {
            return false;
        }
        if let Some(s) = &self.scopes
            && !s.contains(&Some(d.scope))
        {
            return false;
        }
        if let Some(o) = &self.origins
            && !o
                .iter()
                .any(|o| *o == cs_origin(&d.origin) || *o == d.origin.to_string())
        {
            return false;
        }
        if !self.scenarios_containing.is_empty()
            && !self
                .scenarios_containing
                .iter()
                .any(|s| d.scenario.contains(s))
        {
            return false;
        }
        !self
            .scenarios_not_containing
            .iter()
            .any(|s| d.scenario.contains(s))
    }
}

/// What `/v1/decisions` was asked to select.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Target {
    All,
    Ip(Addr),
    Net(Net, bool),
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct DecisionsQuery {
    pub(crate) target: Target,
    pub(crate) filters: Filters,
}

fn parse_net(name: &str, v: &str) -> Result<Net, BadQuery> {
    v.parse::<Net>().map_err(|e| {
        BadQuery(format!(
            "`{name}` must be an IP address or a CIDR range like 192.0.2.0/24: {e}"
        ))
    })
}

pub(crate) fn parse_decisions_query(
    pairs: &[(String, String)],
) -> Result<DecisionsQuery, BadQuery> {
    let mut filters = Filters::default();
    let (mut ip, mut range, mut value, mut contains, mut scope) = (None, None, None, true, None);
    for (k, v) in pairs {
        match k.as_str() {
            "ip" => {
                ip = Some(
                    v.parse::<Addr>()
                        .map_err(|e| BadQuery(format!("`ip` must be an IP address: {e}")))?,
                )
            }
            "range" => range = Some(parse_net("range", v)?),
            "value" => value = Some(v.clone()),
            "contains" => contains = parse_bool("contains", v)?,
            "scope" => {
                scope = Some(v.clone());
                filters.take(k, v)?;
            }
            _ => {
                filters.take(k, v)?;
            }
        }
    }
    let target = match (ip, range, value) {
        (Some(_), Some(_), _) => {
            return Err(BadQuery("give either `ip` or `range`, not both".into()));
        }
        (Some(ip), None, _) => Target::Ip(ip),
        (None, Some(net), _) => Target::Net(net, contains),
        (None, None, Some(v)) => {
            let is_ip_scope = scope
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("ip"));
            if is_ip_scope {
                Target::Ip(v.parse::<Addr>().map_err(|e| {
                    BadQuery(format!("`value` must be an IP address for scope ip: {e}"))
                })?)
            } else {
                let net = parse_net("value", &v)?;
                if net.is_host() {
                    Target::Ip(net.first())
                } else {
                    Target::Net(net, contains)
                }
            }
        }
        (None, None, None) => Target::All,
    };
    Ok(DecisionsQuery { target, filters })
}

fn bad_request(state: &ApiState, e: BadQuery) -> Response {
    state
        .inner
        .counters
        .api_bad_request
        .fetch_add(1, Ordering::Relaxed);
    json_message(StatusCode::BAD_REQUEST, e.0)
}

async fn decisions(
    State(state): State<ApiState>,
    peer: Peer,
    method: Method,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(r) = authenticate(&state, &headers, peer) {
        return r.into_response();
    }
    let Ok(Query(pairs)) = query else {
        return bad_request(
            &state,
            BadQuery("the query string is not valid URL encoding".into()),
        );
    };
    let q = match parse_decisions_query(&pairs) {
        Ok(q) => q,
        Err(e) => return bad_request(&state, e),
    };
    state.inner.counters.api_ok.fetch_add(1, Ordering::Relaxed);
    if method == Method::HEAD {
        let mut r = StatusCode::OK.into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        return r;
    }
    let now = state.inner.cfg.clock.now();
    let body = {
        let table = state.table();
        let found: Vec<&Decision> = match q.target {
            Target::All => table.active(now).collect(),
            Target::Ip(ip) => table.matching(ip, now),
            Target::Net(net, true) => table.containing(net, now),
            Target::Net(net, false) => table.within(net, now),
        };
        let out: Vec<CsDecision> = found
            .into_iter()
            .filter(|d| q.filters.keep(d))
            .map(|d| to_cs(d, now))
            .collect();
        if out.is_empty() {
            "null".to_string()
        } else {
            serde_json::to_string(&out).unwrap_or_else(|_| "null".into())
        }
    };
    json_body(StatusCode::OK, body)
}

#[derive(Serialize)]
struct StreamBody<'a> {
    deleted: Option<Vec<CsDecision<'a>>>,
    new: Option<Vec<CsDecision<'a>>>,
}

fn stream_key(name: &str, peer: Option<IpAddr>) -> String {
    // Per key and client address, as CrowdSec does since 1.6: two hosts sharing a key keep separate state.
    match peer {
        Some(p) => format!("{name}@{p}"),
        None => name.to_string(),
    }
}

/// Answer one stream pull and move the bouncer's cursor. Pure over the table, for tests.
pub(crate) fn stream_answer(
    table: &DecisionTable,
    streams: &Mutex<HashMap<String, Cursor>>,
    key: &str,
    startup: bool,
    filters: &Filters,
    now: UnixTime,
) -> String {
    let mut streams = streams.lock().unwrap_or_else(|e| e.into_inner());
    let cursor = if startup {
        None
    } else {
        streams.get(key).copied()
    };
    let (new, deleted): (Vec<CsDecision>, Vec<CsDecision>) = match cursor {
        None => (
            table
                .active(now)
                .filter(|d| filters.keep(d))
                .map(|d| to_cs(d, now))
                .collect(),
            Vec::new(),
        ),
        Some(c) => {
            let new = table
                .entries()
                .filter(|e| e.version > c.version && e.decision.is_active(now))
                .map(|e| &e.decision)
                .filter(|d| filters.keep(d))
                .map(|d| to_cs(d, now))
                .collect();
            let (removed, lost) = table.removed_since(c.version);
            if lost {
                tracing::warn!(target: "shield::enforce", bouncer = key, "bouncer was away too long: some deletions are no longer remembered (kernel timeouts still expire them)");
            }
            let expired = table
                .entries()
                .map(|e| &e.decision)
                .filter(|d| d.expires > c.last_pull && d.expires <= now);
            let deleted = removed
                .chain(expired)
                .filter(|d| filters.keep(d))
                .map(|d| to_cs_deleted(d, now))
                .collect();
            (new, deleted)
        }
    };
    streams.insert(
        key.to_string(),
        Cursor {
            version: table.version(),
            last_pull: now,
        },
    );
    drop(streams);
    let body = StreamBody {
        deleted: (!deleted.is_empty()).then_some(deleted),
        new: (!new.is_empty()).then_some(new),
    };
    serde_json::to_string(&body).unwrap_or_else(|_| r#"{"deleted":null,"new":null}"#.into())
}

pub(crate) fn parse_stream_query(pairs: &[(String, String)]) -> Result<(bool, Filters), BadQuery> {
    let mut filters = Filters::default();
    let mut startup = false;
    for (k, v) in pairs {
        match k.as_str() {
            "startup" => startup = parse_bool("startup", v)?,
            "dedup" | "community_pull" | "additional_pull" => {}
            "type" | "scope" => {
                return Err(BadQuery(format!(
                    "`{k}` is not a stream filter; use `scopes`"
                )));
            }
            _ => {
                filters.take(k, v)?;
            }
        }
    }
    if filters.scopes.is_none() {
        filters.scopes = Some(vec![Some(Scope::Ip), Some(Scope::Range)]);
    }
    Ok((startup, filters))
}

async fn stream(State(state): State<ApiState>, req: axum::extract::Request) -> Response {
    let (method, headers) = (req.method(), req.headers());
    let query = Query::<Vec<(String, String)>>::try_from_uri(req.uri());
    let peer = peer_of(req.extensions()).map(|p| Addr::new(p).ip());
    let cert = req.extensions().get::<ClientCert>().cloned();
    let name = match authenticate(&state, headers, Peer(peer, cert)) {
        Ok(n) => n,
        Err(r) => return r.into_response(),
    };
    let Ok(Query(pairs)) = query else {
        return bad_request(
            &state,
            BadQuery("the query string is not valid URL encoding".into()),
        );
    };
    let (startup, filters) = match parse_stream_query(&pairs) {
        Ok(x) => x,
        Err(e) => return bad_request(&state, e),
    };
    state.inner.counters.api_ok.fetch_add(1, Ordering::Relaxed);
    if method == Method::HEAD {
        // HEAD checks the key and never moves the cursor.
        return StatusCode::OK.into_response();
    }
    let key = stream_key(&name, peer);
    let now = state.inner.cfg.clock.now();
    let body = {
        let table = state.table();
        stream_answer(&table, &state.inner.streams, &key, startup, &filters, now)
    };
    json_body(StatusCode::OK, body)
}

async fn usage_metrics(
    State(state): State<ApiState>,
    peer: Peer,
    headers: HeaderMap,
    _body: axum::body::Bytes,
) -> Response {
    if let Err(r) = authenticate(&state, &headers, peer) {
        return r.into_response();
    }
    // Accepted and dropped: newer bouncers send these every 15 minutes and log errors on a 404.
    (StatusCode::CREATED, Body::empty()).into_response()
}

async fn health() -> &'static str {
    "ok"
}

/// The bouncer API: `GET`/`HEAD /v1/decisions`, `GET`/`HEAD /v1/decisions/stream`,
/// `POST /v1/usage-metrics` (accepted, 201) and `GET /health`.
/// Serve it with `into_make_service_with_connect_info::<SocketAddr>()` so stream
/// state is kept per bouncer and address.
pub fn bouncer_router(state: ApiState) -> Router {
    let cfg = &state.inner.cfg;
    let (limit, timeout) = (cfg.max_body, cfg.request_timeout);
    Router::new()
        .route("/v1/decisions", get(decisions).head(decisions))
        .route("/v1/decisions/stream", get(stream).head(stream))
        .route("/v1/usage-metrics", post(usage_metrics))
        .route("/health", get(health))
        .fallback(|| async {
            json_message(StatusCode::NOT_FOUND, "no such endpoint in the bouncer API")
        })
        .layer(RequestBodyLimitLayer::new(limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Change;

    fn dec(id: i64, target: &str, kind: DecisionType, expires: UnixTime) -> Decision {
        let target: Net = target.parse().unwrap();
        Decision {
            id,
            scope: Scope::of(&target),
            target,
            kind,
            scenario: "crowdsecurity/ssh-bf".into(),
            origin: Origin::Local,
            created: 0,
            expires,
        }
    }

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn go_durations() {
        assert_eq!(format_go_duration(14398), "3h59m58s");
        assert_eq!(format_go_duration(14400), "4h0m0s");
        assert_eq!(format_go_duration(3598), "59m58s");
        assert_eq!(format_go_duration(60), "1m0s");
        assert_eq!(format_go_duration(7), "7s");
        assert_eq!(format_go_duration(0), "0s");
        assert_eq!(format_go_duration(-3), "-3s");
        assert_eq!(format_go_duration(-3661), "-1h1m1s");
    }

    #[test]
    fn decisions_query_validation() {
        let q = parse_decisions_query(&pairs(&[("ip", "192.0.2.1")])).unwrap();
        assert_eq!(q.target, Target::Ip("192.0.2.1".parse().unwrap()));
        let q = parse_decisions_query(&pairs(&[("range", "192.0.2.9/24"), ("contains", "false")]))
            .unwrap();
        assert_eq!(
            q.target,
            Target::Net("192.0.2.0/24".parse().unwrap(), false)
        );
        let q = parse_decisions_query(&pairs(&[("scope", "Ip"), ("value", "::ffff:192.0.2.1")]))
            .unwrap();
        assert_eq!(q.target, Target::Ip("192.0.2.1".parse().unwrap()));
        assert_eq!(parse_decisions_query(&[]).unwrap().target, Target::All);
        // Every spelling of an IPv4 address or network is the canonical one
        // (issue 19: `::ffff:0.0.0.0/96` is 0.0.0.0/0, not an IPv6 /96).
        for (k, v, want) in [
            ("ip", "::192.0.2.1", "192.0.2.1/32"),
            ("ip", "::FFFF:C000:201", "192.0.2.1/32"),
            ("range", "::ffff:0.0.0.0/96", "0.0.0.0/0"),
            ("range", "::ffff:192.0.2.0/120", "192.0.2.0/24"),
            ("value", "::ffff:192.0.2.1/128", "192.0.2.1/32"),
        ] {
            let got = match parse_decisions_query(&pairs(&[(k, v)])).unwrap().target {
                Target::Ip(a) => Net::host(a),
                Target::Net(n, _) => n,
                Target::All => panic!("{v}: all"),
            };
            assert_eq!(got.to_string(), want, "{k}={v}");
        }
        for bad in [
            &[("ip", "300.1.1.1")][..],
            &[("ip", "fe80::1%eth0")],
            &[("ip", "[2001:db8::1]")],
            &[("ip", "010.0.0.1")],
            &[("range", "::ffff:10.0.0.0/8")],
            &[("range", "10.0.0.0/33")],
            &[("contains", "maybe")],
            &[("ip", "1.1.1.1"), ("range", "1.1.1.0/24")],
            &[("scope", "ip"), ("value", "10.0.0.0/8")],
        ] {
            let e = parse_decisions_query(&pairs(bad)).unwrap_err();
            assert!(!e.0.is_empty(), "{bad:?}");
        }
        let (startup, f) =
            parse_stream_query(&pairs(&[("startup", "true"), ("scopes", "ip")])).unwrap();
        assert!(startup);
        assert_eq!(f.scopes, Some(vec![Some(Scope::Ip)]));
        assert!(parse_stream_query(&pairs(&[("startup", "yes")])).is_err());
    }

    #[test]
    fn filters_select() {
        let mut f = Filters::default();
        f.take("type", "ban").unwrap();
        f.take("origins", "crowdsec").unwrap();
        f.take("scenarios_not_containing", "http").unwrap();
        assert!(f.keep(&dec(1, "192.0.2.1/32", DecisionType::Ban, 10)));
        assert!(!f.keep(&dec(1, "192.0.2.1/32", DecisionType::Captcha, 10)));
        let mut d = dec(1, "192.0.2.1/32", DecisionType::Ban, 10);
        d.origin = Origin::Manual;
        assert!(!f.keep(&d));
        let mut f = Filters::default();
        f.take("type", "custom-thing").unwrap();
        assert!(!f.keep(&dec(1, "192.0.2.1/32", DecisionType::Ban, 10)));
        assert_eq!(cs_origin(&Origin::Union("ber lin".into())), "union-ber_lin");
    }

    #[test]
    fn stream_new_and_deleted_per_bouncer() {
        let mut t = DecisionTable::new();
        let streams = Mutex::new(HashMap::new());
        let f = parse_stream_query(&[]).unwrap().1;
        let v = |s: &str| -> serde_json::Value { serde_json::from_str(s).unwrap() };

        // Empty table at startup: both null, as CrowdSec sends.
        assert_eq!(
            stream_answer(&t, &streams, "a", true, &f, 100),
            r#"{"deleted":null,"new":null}"#
        );

        t.apply(&[Change::Add(dec(
            1,
            "192.0.2.1/32",
            DecisionType::Ban,
            100 + 14398,
        ))]);
        t.apply(&[Change::Add(dec(
            2,
            "198.51.100.0/24",
            DecisionType::Ban,
            130,
        ))]);
        let a = v(&stream_answer(&t, &streams, "a", false, &f, 100));
        assert_eq!(a["new"].as_array().unwrap().len(), 2);
        assert_eq!(a["new"][0]["duration"], "3h59m58s");
        assert_eq!(a["new"][0]["scope"], "Ip");
        assert_eq!(a["new"][1]["scope"], "Range");
        assert_eq!(a["new"][1]["value"], "198.51.100.0/24");
        assert_eq!(a["new"][0]["origin"], "crowdsec");
        assert!(a["deleted"].is_null());

        // Bouncer b starts later and gets the full list; a gets nothing new.
        assert_eq!(
            v(&stream_answer(&t, &streams, "b", true, &f, 101))["new"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            stream_answer(&t, &streams, "a", false, &f, 102),
            r#"{"deleted":null,"new":null}"#
        );

        // A removal, an expiry and an addition between pulls.
        t.apply(&[Change::Remove(dec(1, "192.0.2.1/32", DecisionType::Ban, 0))]);
        t.apply(&[Change::Add(dec(
            3,
            "2001:db8::1/128",
            DecisionType::Captcha,
            1000,
        ))]);
        let a = v(&stream_answer(&t, &streams, "a", false, &f, 200));
        let ids = |x: &serde_json::Value| {
            x.as_array()
                .unwrap()
                .iter()
                .map(|d| d["id"].as_i64().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&a["new"]), vec![3]);
        let mut del = ids(&a["deleted"]);
        del.sort();
        assert_eq!(del, vec![1, 2]);
        assert!(
            a["deleted"][0]["duration"]
                .as_str()
                .unwrap()
                .starts_with('-')
                || a["deleted"][0]["duration"] == "0s"
        );
        // b's cursor is its own: it sees the same delta on its next pull.
        let b = v(&stream_answer(&t, &streams, "b", false, &f, 200));
        assert_eq!(ids(&b["new"]), vec![3]);
        // And nothing twice.
        assert_eq!(
            stream_answer(&t, &streams, "a", false, &f, 201),
            r#"{"deleted":null,"new":null}"#
        );
    }
}
