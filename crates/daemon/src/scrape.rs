//! `GET /metrics`: renders the [`Metrics`](crate::metrics::Metrics) the decision thread updates and
//! snapshots, at scrape time, the per-source status, the in-memory decision
//! table, the edge's counters and the union status, in the Prometheus text
//! format. It owns no state.

use std::sync::atomic::Ordering::Relaxed;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::metrics::Labels;
use crate::state::Shared;

/// Renders every metric in the Prometheus text format (OpenMetrics 1.0 text).
pub fn render(shared: &Shared) -> Result<String, std::fmt::Error> {
    let mut reg = Registry::with_prefix("shield");
    let m = &shared.counters.metrics;
    reg.register("alerts", "Alerts raised, by scenario", m.alerts.clone());
    reg.register(
        "decisions",
        "Decisions taken, by scenario, origin, type and outcome (new, extended)",
        m.decisions.clone(),
    );
    reg.register(
        "batch_commit_seconds",
        "Time to commit one reader batch to the store",
        m.batch_commit.clone(),
    );
    reg.register(
        "firewall_apply_seconds",
        "Time to apply one batch to the firewall layer",
        m.firewall_apply.clone(),
    );
    crate::notify::register_metrics(&shared.counters.notify, &mut reg);

    // Per-source snapshot.
    let lines = Family::<Labels, Counter>::default();
    let matched = Family::<Labels, Counter>::default();
    let src_alerts = Family::<Labels, Counter>::default();
    let bad = Family::<Labels, Counter>::default();
    let last = Family::<Labels, Gauge>::default();
    let rule_hits = Family::<Labels, Counter>::default();
    let evicted = Family::<Labels, Counter>::default();
    let lag = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    let lag_peak = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    let behind = Family::<Labels, Gauge>::default();
    {
        // Lock held only to copy a few integers per source.
        let sources = shared.sources.lock().unwrap_or_else(|p| p.into_inner());
        for s in sources.values() {
            let l = vec![
                ("source".to_string(), s.name.clone()),
                ("kind".to_string(), s.kind.clone()),
            ];
            lines.get_or_create(&l).inc_by(s.lines);
            matched.get_or_create(&l).inc_by(s.matched);
            src_alerts.get_or_create(&l).inc_by(s.alerts);
            bad.get_or_create(&l).inc_by(s.invalid_utf8);
            if let Some(t) = s.last_line_at {
                last.get_or_create(&l).set(t);
            }
            evicted.get_or_create(&l).inc_by(s.keys_evicted);
            lag.get_or_create(&l).set(s.lag_seconds);
            lag_peak.get_or_create(&l).set(s.lag_peak_seconds);
            behind
                .get_or_create(&l)
                .set(i64::try_from(s.bytes_behind).unwrap_or(i64::MAX));
            for (rule, n) in &s.rules {
                let rl = vec![
                    ("source".to_string(), s.name.clone()),
                    ("rule".to_string(), rule.clone()),
                ];
                rule_hits.get_or_create(&rl).inc_by(*n);
            }
        }
    }
    reg.register("source_lines", "Lines read, by source", lines);
    reg.register(
        "rule_hits",
        "Lines each rule matched, by source and rule",
        rule_hits,
    );
    reg.register(
        "keys_evicted",
        "Tracked keys evicted at the [engine] max_keys cap, by source",
        evicted,
    );
    reg.register(
        "source_lag_seconds",
        "Seconds between a line being written and being read, now, by source (0 when caught up)",
        lag,
    );
    reg.register(
        "source_lag_peak_seconds",
        "The highest source_lag_seconds since the source started",
        lag_peak,
    );
    reg.register(
        "source_bytes_behind",
        "Bytes written to a source's files and not read yet",
        behind,
    );
    reg.register("source_matched", "Lines a rule matched, by source", matched);
    reg.register("source_alerts", "Alerts raised, by source", src_alerts);
    reg.register(
        "source_invalid_utf8",
        "Lines that were not valid UTF-8, by source",
        bad,
    );
    reg.register(
        "source_last_line_timestamp_seconds",
        "Unix time of the last line read, by source",
        last,
    );

    // The TCP listener's connections (zero when [api] listen is off).
    let tcp = shared.counters.edge.tcp_stats();
    let conns = Family::<Labels, Counter>::default();
    for (outcome, n) in [
        ("accepted", tcp.accepted),
        ("refused_peer", tcp.refused_peer),
        ("refused_full", tcp.refused_full),
        ("evicted", tcp.evicted),
        ("timed_out", tcp.timed_out),
        ("error", tcp.conn_errors),
    ] {
        conns
            .get_or_create(&vec![("outcome".to_string(), outcome.to_string())])
            .inc_by(n);
    }
    reg.register(
        "api_connections",
        "Connections to [api] listen by outcome: accepted; refused at accept (per-address limit, full); closed to make room (evicted), for a late request head (timed_out) or on an HTTP error",
        conns,
    );
    let open = Gauge::<i64>::default();
    open.set(tcp.open as i64);
    reg.register(
        "api_connections_open",
        "Connections open on [api] listen",
        open,
    );

    // Active decisions per layer and type.
    let active = Family::<Labels, Gauge>::default();
    {
        let t = shared.clock.now();
        // Read lock: the decision thread writes only per batch.
        let table = shared.table.read().unwrap_or_else(|p| p.into_inner());
        for d in table.active(t) {
            active
                .get_or_create(&vec![
                    ("layer".into(), shared.firewall.clone()),
                    ("type".into(), d.kind.to_string()),
                ])
                .inc();
        }
    }
    reg.register(
        "active_decisions",
        "Decisions in effect, by layer and type",
        active,
    );

    // Daemon counters.
    let c = &shared.counters;
    let daemon = Family::<Labels, Counter>::default();
    for (k, v) in [
        ("decisions_new", c.decisions_new.load(Relaxed)),
        ("decisions_extended", c.decisions_extended.load(Relaxed)),
        ("allowlisted", c.allowlisted.load(Relaxed)),
        ("firewall_errors", c.firewall_errors.load(Relaxed)),
        ("store_errors", c.store_errors.load(Relaxed)),
    ] {
        daemon
            .get_or_create(&vec![("event".into(), k.into())])
            .inc_by(v);
    }
    reg.register(
        "daemon_events",
        "Daemon events: decisions_new, decisions_extended, allowlisted, firewall_errors, store_errors",
        daemon,
    );
    let up = Gauge::<i64>::default();
    up.set(shared.clock.now() - shared.started);
    reg.register("uptime_seconds", "Seconds since the daemon started", up);

    crate::lists::register_metrics(&mut reg, &shared.counters.lists);

    // Union: every numeric counter of the union status, and member health.
    if let Some(u) = shared.union.status() {
        let signals = Family::<Labels, Counter>::default();
        // Every numeric field, nested ones as `parent_field`, whatever the union adds.
        if let Ok(serde_json::Value::Object(obj)) = serde_json::to_value(&u.counters) {
            flatten_counters("", &obj, &mut |name, v| {
                signals
                    .get_or_create(&vec![("counter".into(), name)])
                    .inc_by(v);
            });
        }
        reg.register(
            "union_signals",
            "Union signal counters (sent, received, refused by reason), as the union reports them",
            signals,
        );
        let health = Family::<Labels, Gauge>::default();
        let age = Family::<Labels, Gauge>::default();
        for m in &u.members {
            let name = m.name.as_str();
            let h = match serde_json::to_value(&m.health) {
                Ok(serde_json::Value::String(s)) => s,
                Ok(other) => other.to_string(),
                Err(_) => String::new(),
            };
            health
                .get_or_create(&vec![
                    ("member".into(), name.into()),
                    ("health".into(), h.to_lowercase()),
                ])
                .set(1);
            if let Some(a) = m.last_signal_age_s {
                age.get_or_create(&vec![("member".into(), name.into())])
                    .set(a);
            }
        }
        reg.register(
            "union_member_health",
            "1 for each member's current health",
            health,
        );
        reg.register(
            "union_member_last_signal_age_seconds",
            "Age of the newest signal held from each member",
            age,
        );
    }

    let mut out = String::new();
    encode(&mut out, &reg)?;
    Ok(out)
}

/// Walks a JSON object of counters (possibly nested one level, e.g.
/// `refused: {rate: 1, digest: 2}`) and yields `name` / `parent_name` with
/// each non-negative integer.
fn flatten_counters(
    prefix: &str,
    obj: &serde_json::Map<String, serde_json::Value>,
    f: &mut dyn FnMut(String, u64),
) {
    for (k, v) in obj {
        let name = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}_{k}")
        };
        match v {
            serde_json::Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    f(name, u)
                }
            }
            serde_json::Value::Object(o) if prefix.is_empty() => flatten_counters(&name, o, f),
            _ => {}
        }
    }
}

/// The `/metrics` route (no token: bind `[api] listen` to loopback or a
/// scrape network; the exposition carries counts, never addresses).
pub fn router(shared: Shared) -> axum::Router {
    use axum::extract::State;
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    async fn metrics(State(s): State<Shared>) -> axum::response::Response {
        match render(&s) {
            Ok(body) => (
                [(
                    header::CONTENT_TYPE,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )],
                body,
            )
                .into_response(),
            Err(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "encoding metrics failed").into_response()
            }
        }
    }
    axum::Router::new()
        .route("/metrics", axum::routing::get(metrics))
        .with_state(shared)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattens_nested_union_counters() {
        let v = serde_json::json!({"sent": 3, "refused": {"rate": 2, "digest": 1}, "name": "x"});
        let mut got = Vec::new();
        flatten_counters("", v.as_object().unwrap(), &mut |n, c| got.push((n, c)));
        got.sort();
        assert_eq!(
            got,
            vec![
                ("refused_digest".to_string(), 1),
                ("refused_rate".to_string(), 2),
                ("sent".to_string(), 3)
            ]
        );
    }
}
