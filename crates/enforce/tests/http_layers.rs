//! The gate and the bouncer API end to end over their routers (in-process,
//! no sockets): status codes, CrowdSec's exact bodies, auth, validation,
//! the throttle bucket and the whole captcha round trip with a cookie.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode, header};
use common::{ban, decision, now};
use sha2::{Digest, Sha256};
use shield_core::DecisionType;
use shield_enforce::{
    ApiConfig, ApiState, Change, DecisionTable, KeyRing, bouncer_router, gate_router,
};
use tower::ServiceExt;

const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn setup(cfg: ApiConfig) -> (Arc<RwLock<DecisionTable>>, ApiState) {
    let mut ring = KeyRing::new();
    ring.insert_key("nginx", KEY);
    let table = Arc::new(RwLock::new(DecisionTable::new()));
    let state = ApiState::new(table.clone(), Arc::new(ring), cfg);
    (table, state)
}

async fn call(
    app: &Router,
    peer: &str,
    req: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let peer: SocketAddr = format!("{peer}:40000").parse().unwrap();
    let app = app.clone().layer(MockConnectInfo(peer));
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri)
        .header("x-api-key", KEY)
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn bouncer_api_speaks_crowdsec() {
    let (table, state) = setup(ApiConfig::default());
    let app = bouncer_router(state.clone());
    let t = now();
    table.write().unwrap().apply(&[
        Change::Add(ban(1, "192.0.2.1", t + 3600)),
        Change::Add(ban(2, "198.51.100.0/24", t + 7200)),
        Change::Add(decision(3, "203.0.113.3", DecisionType::Captcha, t + 60)),
    ]);

    // Auth: no key → 401, wrong key → 403 with CrowdSec's message.
    let (s, _, b) = call(
        &app,
        "127.0.0.1",
        Request::get("/v1/decisions").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(serde_json::from_str::<serde_json::Value>(&b).unwrap()["message"].is_string());
    let req = Request::get("/v1/decisions?ip=192.0.2.1")
        .header("x-api-key", "wrong")
        .body(Body::empty())
        .unwrap();
    let (s, _, b) = call(&app, "127.0.0.1", req).await;
    assert_eq!(
        (s, b.as_str()),
        (StatusCode::FORBIDDEN, r#"{"message":"access forbidden"}"#)
    );

    // Exact hit, with CrowdSec's shape.
    let (s, h, b) = call(&app, "127.0.0.1", get("/v1/decisions?ip=192.0.2.1")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        h[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    let d = &v[0];
    assert_eq!(
        (d["id"].as_i64(), d["scope"].as_str(), d["type"].as_str()),
        (Some(1), Some("Ip"), Some("ban"))
    );
    assert_eq!(
        (d["value"].as_str(), d["origin"].as_str()),
        (Some("192.0.2.1"), Some("crowdsec"))
    );
    let dur = d["duration"].as_str().unwrap();
    assert!(dur == "1h0m0s" || dur.starts_with("59m"), "{dur}");
    assert_eq!(d["scenario"], "test/scenario");

    // A range containing the asked address matches; nothing → literal `null`.
    let (_, _, b) = call(&app, "127.0.0.1", get("/v1/decisions?ip=198.51.100.77")).await;
    assert!(
        b.contains(r#""value":"198.51.100.0/24""#) && b.contains(r#""scope":"Range""#),
        "{b}"
    );
    let (s, _, b) = call(&app, "127.0.0.1", get("/v1/decisions?ip=192.0.2.99")).await;
    assert_eq!((s, b.as_str()), (StatusCode::OK, "null"));
    let (_, _, b) = call(
        &app,
        "127.0.0.1",
        get("/v1/decisions?scope=ip&value=203.0.113.3&type=ban"),
    )
    .await;
    assert_eq!(b, "null", "type filter");
    let (_, _, b) = call(
        &app,
        "127.0.0.1",
        get("/v1/decisions?range=198.51.100.128/25"),
    )
    .await;
    assert!(b.contains("198.51.100.0/24"), "range contains range: {b}");
    let (_, _, b) = call(
        &app,
        "127.0.0.1",
        get("/v1/decisions?range=192.0.2.0/24&contains=false"),
    )
    .await;
    assert!(
        b.contains("192.0.2.1") && !b.contains("198.51"),
        "within: {b}"
    );
    let (_, _, b) = call(&app, "127.0.0.1", get("/v1/decisions")).await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&b)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // Bad queries → 400 with a reason.
    for q in [
        "ip=1.2.3",
        "range=10.0.0.0/40",
        "contains=perhaps",
        "ip=1.1.1.1&range=1.1.1.0/24",
    ] {
        let (s, _, b) = call(&app, "127.0.0.1", get(&format!("/v1/decisions?{q}"))).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{q}");
        assert!(
            serde_json::from_str::<serde_json::Value>(&b).unwrap()["message"]
                .as_str()
                .unwrap()
                .len()
                > 10,
            "{b}"
        );
    }

    // HEAD: 200, empty.
    let req = Request::head("/v1/decisions?ip=192.0.2.1")
        .header("x-api-key", KEY)
        .body(Body::empty())
        .unwrap();
    let (s, _, b) = call(&app, "127.0.0.1", req).await;
    assert_eq!((s, b.as_str()), (StatusCode::OK, ""));

    // Stream per bouncer: startup gets all, then deltas; HEAD does not move the cursor.
    let (_, _, b) = call(&app, "10.0.0.1", get("/v1/decisions/stream?startup=true")).await;
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["new"].as_array().unwrap().len(), 3);
    assert!(v["deleted"].is_null());
    let (_, _, b) = call(
        &app,
        "10.0.0.1",
        get("/v1/decisions/stream?startup=false&scopes=ip"),
    )
    .await;
    assert_eq!(b, r#"{"deleted":null,"new":null}"#);
    table.write().unwrap().apply(&[
        Change::Remove(ban(1, "192.0.2.1", 0)),
        Change::Add(ban(4, "192.0.2.4", t + 60)),
    ]);
    let req = Request::head("/v1/decisions/stream")
        .header("x-api-key", KEY)
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&app, "10.0.0.1", req).await.0, StatusCode::OK);
    let (_, _, b) = call(&app, "10.0.0.1", get("/v1/decisions/stream")).await;
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["new"][0]["value"], "192.0.2.4");
    assert_eq!(v["deleted"][0]["value"], "192.0.2.1");
    // Another host with the same key has its own cursor: a first delta pull is a full list.
    let (_, _, b) = call(&app, "10.0.0.2", get("/v1/decisions/stream")).await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&b).unwrap()["new"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let (s, _, _) = call(&app, "10.0.0.1", get("/v1/decisions/stream?startup=maybe")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Usage metrics are accepted.
    let req = Request::post("/v1/usage-metrics")
        .header("x-api-key", KEY)
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(call(&app, "127.0.0.1", req).await.0, StatusCode::CREATED);

    // Body limit.
    let small = setup(ApiConfig {
        max_body: 16,
        ..Default::default()
    })
    .1;
    let req = Request::post("/v1/usage-metrics")
        .header("x-api-key", KEY)
        .header(header::CONTENT_LENGTH, "1000")
        .body(Body::from(vec![b'x'; 1000]))
        .unwrap();
    let (s, _, _) = call(&bouncer_router(small), "127.0.0.1", req).await;
    assert_eq!(
        s,
        StatusCode::PAYLOAD_TOO_LARGE,
        "bodies over max_body are refused"
    );
    let s = state.stats();
    assert!(
        s.api_ok >= 10 && s.api_denied == 2 && s.api_bad_request >= 5,
        "{s:?}"
    );
}

#[tokio::test]
async fn gate_answers_ban_throttle_and_trusts_only_proxies() {
    let cfg = ApiConfig {
        trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
        ..Default::default()
    };
    let (table, state) = setup(cfg);
    let app = gate_router(state);
    let t = now();
    table.write().unwrap().apply(&[
        Change::Add(ban(1, "192.0.2.0/24", t + 60)),
        Change::Add(decision(2, "198.51.100.2", DecisionType::Throttle, t + 60)),
    ]);
    let plain = |uri: &str| Request::get(uri).body(Body::empty()).unwrap();
    assert_eq!(
        call(&app, "203.0.113.1", plain("/gate")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, "192.0.2.9", plain("/gate")).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(&app, "192.0.2.9", plain("/gate/any/path?x=1")).await.0,
        StatusCode::FORBIDDEN
    );
    // A banned peer cannot lie its way out with X-Forwarded-For...
    let lie = Request::get("/gate")
        .header("x-forwarded-for", "203.0.113.1")
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&app, "192.0.2.9", lie).await.0, StatusCode::FORBIDDEN);
    // ...but a trusted proxy's X-Real-IP names the client, and the client's own
    // X-Forwarded-For riding along (nginx auth_request forwards it) is ignored.
    let via = Request::get("/gate")
        .header("x-forwarded-for", "203.0.113.1")
        .header("x-real-ip", "192.0.2.9")
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&app, "127.0.0.1", via).await.0, StatusCode::FORBIDDEN);
    let only_xff = Request::get("/gate")
        .header("x-forwarded-for", "192.0.2.9")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        call(&app, "127.0.0.1", only_xff).await.0,
        StatusCode::OK,
        "X-Forwarded-For is not read unless configured"
    );
    let twice = Request::get("/gate")
        .header("x-real-ip", "192.0.2.9")
        .header("x-real-ip", "203.0.113.1")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        call(&app, "127.0.0.1", twice).await.0,
        StatusCode::FORBIDDEN,
        "a repeated client header is refused"
    );
    let via = Request::get("/gate")
        .header("x-real-ip", "203.0.113.1")
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&app, "127.0.0.1", via).await.0, StatusCode::OK);
    // Throttle: a burst of 5, then 429 with Retry-After.
    let mut codes = Vec::new();
    for _ in 0..7 {
        codes.push(call(&app, "198.51.100.2", plain("/gate")).await.0.as_u16());
    }
    assert_eq!(codes, [200, 200, 200, 200, 200, 429, 429]);
    let (_, h, _) = call(&app, "198.51.100.2", plain("/gate")).await;
    assert_eq!(h[header::RETRY_AFTER], "1");
}

#[tokio::test]
async fn captcha_round_trip_sets_a_cookie_bound_to_the_address() {
    let cfg = ApiConfig {
        captcha_difficulty: 10,
        ..Default::default()
    };
    let (table, state) = setup(cfg);
    let app = gate_router(state);
    let t = now();
    table.write().unwrap().apply(&[Change::Add(decision(
        1,
        "192.0.2.5",
        DecisionType::Captcha,
        t + 600,
    ))]);
    let (s, h, page) = call(
        &app,
        "192.0.2.5",
        Request::get("/gate").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        h[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let c = page
        .split("const c = \"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    // Solve it the way the page's script does.
    let n = (0u64..)
        .find(|n| {
            let h = Sha256::digest(format!("{c}:{n}").as_bytes());
            h[0] == 0 && h[1] >> 6 == 0
        })
        .unwrap();
    let post = |body: String| {
        Request::post("/gate/challenge")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap()
    };
    // Someone else's solution does not work.
    assert_eq!(
        call(&app, "192.0.2.6", post(format!("c={c}&n={n}")))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(&app, "192.0.2.5", post(format!("c={c}&n=x"))).await.0,
        StatusCode::FORBIDDEN
    );
    let (s, h, _) = call(&app, "192.0.2.5", post(format!("c={c}&n={n}"))).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let cookie = h[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert!(cookie.starts_with("shield_pass="));
    let with = |peer: &'static str| {
        let req = Request::get("/gate")
            .header(header::COOKIE, format!("a=b; {cookie}"))
            .body(Body::empty())
            .unwrap();
        (peer, req)
    };
    let (p, r) = with("192.0.2.5");
    assert_eq!(
        call(&app, p, r).await.0,
        StatusCode::OK,
        "the pass cookie lets the client through"
    );
    // The cookie is bound to the address.
    table.write().unwrap().apply(&[Change::Add(decision(
        2,
        "192.0.2.7",
        DecisionType::Captcha,
        t + 600,
    ))]);
    let (p, r) = with("192.0.2.7");
    assert_eq!(call(&app, p, r).await.0, StatusCode::UNAUTHORIZED);
    // Ban wins over captcha even with a cookie.
    table
        .write()
        .unwrap()
        .apply(&[Change::Add(ban(3, "192.0.2.5", t + 600))]);
    let (p, r) = with("192.0.2.5");
    assert_eq!(call(&app, p, r).await.0, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn wrong_keys_are_rate_limited_per_address() {
    let (_table, state) = setup(ApiConfig::default());
    let app = bouncer_router(state);
    let wrong = |k: &str| {
        Request::get("/v1/decisions")
            .header("x-api-key", k)
            .body(Body::empty())
            .unwrap()
    };
    for i in 0..10 {
        let (s, _, _) = call(&app, "192.0.2.1", wrong(&format!("guess-{i}"))).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "guess {i}");
    }
    // The eleventh try is refused before the key is looked at, even the right key.
    let (s, h, body) = call(&app, "192.0.2.1", get("/v1/decisions")).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(h[header::RETRY_AFTER], "60");
    let (s, _, _) = call(&app, "[::ffff:192.0.2.1]", wrong("guess-x")).await;
    assert_eq!(
        s,
        StatusCode::TOO_MANY_REQUESTS,
        "mapped form is the same address"
    );
    // The stream endpoint shares the budget; other addresses are not affected.
    let (s, _, _) = call(&app, "192.0.2.1", get("/v1/decisions/stream")).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    let (s, _, _) = call(&app, "192.0.2.2", get("/v1/decisions")).await;
    assert_eq!(s, StatusCode::OK);
}
