//! Prometheus metrics: the event counters and latency histograms the decision
//! thread updates ([`Metrics`], held in `state::Counters`). A leaf: the text
//! exposition served at `GET /metrics` is `scrape`.
//!
//! It does not own any state a user relies on: everything here restarts from
//! zero with the daemon (the store keeps the durable counters).

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// Label pairs (a `Vec` keeps the label set open and allocation only happens
/// on the decision thread, once per alert or decision, never per line).
pub type Labels = Vec<(String, String)>;

/// Metrics updated as things happen. Cheap to clone: every metric is an `Arc`.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Alerts raised, by scenario.
    pub alerts: Family<Labels, Counter>,
    /// Decisions taken, by scenario, origin, type and outcome (`new`, `extended`).
    pub decisions: Family<Labels, Counter>,
    /// Time to commit one reader batch (alerts, decisions, checkpoint) to the store.
    pub batch_commit: Histogram,
    /// Time one firewall batch takes to apply.
    pub firewall_apply: Histogram,
}

fn latency_buckets() -> Histogram {
    // 50 µs … ~3.3 s in ×4 steps.
    Histogram::new(exponential_buckets(0.000_05, 4.0, 9))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            alerts: Family::default(),
            decisions: Family::default(),
            batch_commit: latency_buckets(),
            firewall_apply: latency_buckets(),
        }
    }
}

impl Metrics {
    /// Counts one alert.
    pub fn alert(&self, scenario: &str) {
        self.alerts
            .get_or_create(&vec![("scenario".into(), scenario.into())])
            .inc();
    }

    /// Counts one decision; `outcome` is `new` or `extended`.
    pub fn decision(&self, d: &shield_core::Decision, outcome: &'static str) {
        self.decisions
            .get_or_create(&vec![
                ("scenario".into(), d.scenario.clone()),
                ("origin".into(), origin_label(&d.origin)),
                ("type".into(), d.kind.to_string()),
                ("outcome".into(), outcome.into()),
            ])
            .inc();
    }
}

/// `union:<member>` keeps its member; `lists:<name>` keeps its list: both are
/// bounded by configuration, not by attackers.
fn origin_label(o: &shield_core::Origin) -> String {
    o.to_string()
}

/// Seconds as an `f64`, for histogram observations.
pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;
    use prometheus_client::registry::Registry;

    #[test]
    fn histogram_and_families_encode() {
        let m = Metrics::default();
        m.alert("ssh-bf");
        m.alert("ssh-bf");
        m.batch_commit.observe(0.001);
        let mut reg = Registry::with_prefix("shield");
        reg.register("alerts", "a", m.alerts.clone());
        reg.register("batch_commit_seconds", "b", m.batch_commit.clone());
        let mut out = String::new();
        encode(&mut out, &reg).unwrap();
        assert!(
            out.contains("shield_alerts_total{scenario=\"ssh-bf\"} 2"),
            "{out}"
        );
        assert!(out.contains("shield_batch_commit_seconds_count 1"), "{out}");
    }
}
