//! Webhook notifications on decisions: the decision thread hands each new
//! decision to [`Notifier::notify`] (a non-blocking `try_send`), and one tokio
//! task POSTs it as JSON to `[webhook] url`, rate-limited by a token bucket
//! (`burst` notifications at once, then one per `min_interval`). Beyond the
//! bucket, or when the queue is full, a notification is dropped and counted
//! (`shield_webhook_notifications_total{outcome="dropped"}`), so an attack
//! wave can neither block the decision thread nor flood the receiver.
//!
//! Plain `http://` only, HTTP/1.1 with `Connection: close`: point it at a
//! local relay (or a chat bridge) for TLS. It does not retry: a failed POST is
//! counted and logged (rate-limited by the bucket itself).

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::Serialize;
use shield_core::Decision;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::metrics::Metrics;

/// What can be wrong with `[webhook]`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    /// The URL is not `http://host:port/path`.
    #[error(
        "[webhook] url `{0}` is not a plain http://host[:port]/path URL; for https, run a local relay and point the webhook at it"
    )]
    BadUrl(String),
    /// The host did not resolve.
    #[error("[webhook] url host `{0}` does not resolve; use an IP address or fix DNS")]
    Resolve(String),
}

/// A validated webhook target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookPlan {
    /// `host:port` as written (sent as the `Host` header).
    pub authority: String,
    pub path: String,
    pub min_interval: Duration,
    pub burst: u32,
}

impl WebhookPlan {
    /// Parses `http://host[:port][/path]`.
    pub fn parse(url: &str, min_interval: Duration, burst: u32) -> Result<Self, WebhookError> {
        let bad = || WebhookError::BadUrl(url.to_string());
        let rest = url.strip_prefix("http://").ok_or_else(bad)?;
        let (auth, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if auth.is_empty()
            || auth.contains('@')
            || path.bytes().any(|b| b.is_ascii_control() || b == b' ')
        {
            return Err(bad());
        }
        let authority = if auth
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            && !auth.ends_with(']')
        {
            auth.to_string()
        } else {
            format!("{auth}:80")
        };
        Ok(WebhookPlan {
            authority,
            path: path.to_string(),
            min_interval,
            burst: burst.max(1),
        })
    }
}

/// A token bucket over a caller-supplied clock (tests pass their own instants).
#[derive(Debug)]
pub struct TokenBucket {
    capacity: f64,
    tokens: f64,
    per_token: Duration,
    last: Instant,
}

impl TokenBucket {
    pub fn new(capacity: u32, per_token: Duration, now: Instant) -> Self {
        TokenBucket {
            capacity: capacity as f64,
            tokens: capacity as f64,
            per_token,
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last);
        self.last = now;
        if self.per_token.is_zero() {
            self.tokens = self.capacity;
        } else {
            self.tokens =
                (self.tokens + dt.as_secs_f64() / self.per_token.as_secs_f64()).min(self.capacity);
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The decision thread's end of the webhook. Empty (a no-op) until
/// [`start`] installs the sender.
#[derive(Debug, Default)]
pub struct Notifier {
    tx: OnceLock<tokio::sync::mpsc::Sender<Decision>>,
}

/// Queue between the decision thread and the sender task.
const QUEUE: usize = 1024;

impl Notifier {
    /// Queues a notification; never blocks. Returns false (and counts a drop) when the queue is full.
    pub fn notify(&self, d: &Decision, metrics: &Metrics) -> bool {
        let Some(tx) = self.tx.get() else {
            return false;
        };
        if tx.try_send(d.clone()).is_err() {
            metrics.webhook("dropped");
            return false;
        }
        true
    }
}

/// The JSON body of one notification.
#[derive(Serialize, Debug)]
pub struct Body<'a> {
    pub event: &'static str,
    pub host: &'a str,
    pub decision: &'a Decision,
}

/// Starts the sender task and connects `notifier` to it. Call once. The
/// target is read from `plans` for each notification, so a reload that sends
/// a new `[webhook]` (or none: notifications are then dropped uncounted)
/// applies to the next one; the bucket starts full after a change.
pub fn start(
    mut plans: tokio::sync::watch::Receiver<Option<WebhookPlan>>,
    notifier: &Notifier,
    metrics: Metrics,
) -> Option<tokio::task::JoinHandle<()>> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Decision>(QUEUE);
    notifier.tx.set(tx).ok()?;
    let host = hostname();
    Some(tokio::spawn(async move {
        let mut plan = plans.borrow_and_update().clone();
        let bucket_of = |p: &Option<WebhookPlan>| {
            p.as_ref()
                .map(|p| TokenBucket::new(p.burst, p.min_interval, Instant::now()))
        };
        let mut bucket = bucket_of(&plan);
        while let Some(d) = rx.recv().await {
            if plans.has_changed().unwrap_or(false) {
                plan = plans.borrow_and_update().clone();
                bucket = bucket_of(&plan);
            }
            let (Some(plan), Some(bucket)) = (&plan, &mut bucket) else {
                continue;
            };
            if !bucket.take(Instant::now()) {
                metrics.webhook("dropped");
                continue;
            }
            let body = match serde_json::to_vec(&Body {
                event: "decision",
                host: &host,
                decision: &d,
            }) {
                Ok(b) => b,
                Err(_) => continue,
            };
            match tokio::time::timeout(Duration::from_secs(5), post(plan, &body)).await {
                Ok(Ok(status)) if (200..300).contains(&status) => metrics.webhook("sent"),
                Ok(Ok(status)) => {
                    metrics.webhook("failed");
                    tracing::warn!(status, "webhook receiver answered with an error status");
                }
                Ok(Err(e)) => {
                    metrics.webhook("failed");
                    tracing::warn!(error = %e, url = %plan.authority, "webhook POST failed; is the receiver up?");
                }
                Err(_) => {
                    metrics.webhook("failed");
                    tracing::warn!(url = %plan.authority, "webhook POST timed out after 5s");
                }
            }
        }
    }))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// One HTTP/1.1 POST; returns the status code.
async fn post(plan: &WebhookPlan, body: &[u8]) -> std::io::Result<u16> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&plan.authority).await?.collect();
    let addr = addrs.first().ok_or_else(|| {
        std::io::Error::other(WebhookError::Resolve(plan.authority.clone()).to_string())
    })?;
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: shield/{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        plan.path,
        plan.authority,
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    s.write_all(body).await?;
    let mut buf = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        let k = s.read(&mut buf[n..]).await?;
        if k == 0 {
            break;
        }
        n += k;
    }
    // "HTTP/1.1 204 ..."
    std::str::from_utf8(&buf[..n])
        .ok()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.get(..3))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("the receiver sent no HTTP status line"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let p =
            WebhookPlan::parse("http://127.0.0.1:9000/hook", Duration::from_secs(10), 3).unwrap();
        assert_eq!(p.authority, "127.0.0.1:9000");
        assert_eq!(p.path, "/hook");
        let p = WebhookPlan::parse("http://example.org", Duration::ZERO, 0).unwrap();
        assert_eq!(
            (p.authority.as_str(), p.path.as_str(), p.burst),
            ("example.org:80", "/", 1)
        );
        for bad in [
            "https://x/",
            "ftp://x",
            "http://",
            "http://u@x/",
            "http://x/a b",
        ] {
            assert!(WebhookPlan::parse(bad, Duration::ZERO, 1).is_err(), "{bad}");
        }
    }

    #[test]
    fn bucket_allows_burst_then_one_per_interval() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(2, Duration::from_secs(10), t0);
        assert!(b.take(t0));
        assert!(b.take(t0));
        assert!(!b.take(t0));
        assert!(!b.take(t0 + Duration::from_secs(9)));
        assert!(b.take(t0 + Duration::from_secs(10)));
        assert!(!b.take(t0 + Duration::from_secs(11)));
    }

    #[tokio::test]
    async fn posts_json_and_drops_beyond_the_bucket() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (got_tx, mut got_rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let n = s.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    req.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&req);
                    if let Some(i) = text.find("\r\n\r\n") {
                        let len: usize = text
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if req.len() >= i + 4 + len {
                            break;
                        }
                    }
                }
                s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                    .await
                    .unwrap();
                let _ = got_tx.send(String::from_utf8_lossy(&req).to_string());
            }
        });
        let plan = WebhookPlan::parse(&format!("http://{addr}/hook"), Duration::from_secs(3600), 2)
            .unwrap();
        let n = Notifier::default();
        let m = Metrics::default();
        let (_plans, rx) = tokio::sync::watch::channel(Some(plan));
        let task = start(rx, &n, m.clone()).unwrap();
        let d = Decision {
            id: 7,
            scope: shield_core::Scope::Ip,
            target: "192.0.2.7/32".parse().unwrap(),
            kind: shield_core::DecisionType::Ban,
            scenario: "ssh-bf".into(),
            origin: shield_core::Origin::Local,
            created: 1,
            expires: 2,
        };
        for _ in 0..5 {
            assert!(n.notify(&d, &m));
        }
        let first = got_rx.recv().await.unwrap();
        assert!(first.starts_with("POST /hook HTTP/1.1\r\n"), "{first}");
        assert!(first.contains("\"scenario\":\"ssh-bf\""), "{first}");
        assert!(first.contains("\"event\":\"decision\""), "{first}");
        let _second = got_rx.recv().await.unwrap();
        // Wait until the other three were dropped by the bucket.
        for _ in 0..100 {
            if m.webhook
                .get_or_create(&vec![("outcome".into(), "dropped".into())])
                .get()
                == 3
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            m.webhook
                .get_or_create(&vec![("outcome".into(), "dropped".into())])
                .get(),
            3
        );
        assert_eq!(
            m.webhook
                .get_or_create(&vec![("outcome".into(), "sent".into())])
                .get(),
            2
        );
        task.abort();
    }
}
