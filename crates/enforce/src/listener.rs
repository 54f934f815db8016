//! Serving an axum app on a socket with resource limits, so that clients who
//! open connections and never finish a request (slowloris) cannot take the
//! listener from everyone else.
//!
//! It owns the accept loop and the connection bookkeeping of the daemon's
//! listeners (the TCP listener of the gate / bouncer API / dashboard and the
//! Unix control socket); it does not own routes, keys or the decision table.
//!
//! The limits, each counted in [`ListenStats`]:
//! - **per peer:** an address that is not a trusted proxy holds at most
//!   `max_per_peer` connections; more are closed at accept (`refused_peer`).
//!   Trusted proxies (nginx, which opens one connection per `auth_request`)
//!   are bounded by the total only.
//! - **header deadline:** a connection must deliver a complete request head
//!   within `header_timeout` of being accepted or of its last answer (an idle
//!   keep-alive connection too), else it is closed (`timed_out`).
//! - **total:** at most `max_connections` at once. When full, the oldest
//!   connection of an untrusted peer is closed to make room (`evicted`),
//!   preferring one still waiting for its request head over one sending a
//!   body; then the oldest idle connection of a trusted proxy. A half-sent
//!   request is the cheapest thing to drop, and a real client's request takes
//!   milliseconds, so it is never the oldest. Only when every connection is a
//!   trusted proxy's request in progress is the newcomer closed (`refused_full`).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use hashbrown::HashMap;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use shield_core::{Addr, Net};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tower::ServiceExt;

/// How much a listener lets its clients hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenLimits {
    /// Connections served at once, all peers together.
    pub max_connections: usize,
    /// Connections one address that is not a trusted proxy may hold.
    pub max_per_peer: usize,
    /// Time a connection has to send a complete request head (after accept,
    /// and after each answer on a keep-alive connection).
    pub header_timeout: Duration,
    /// Largest request head, in bytes.
    pub max_head: usize,
    /// Peers exempt from `max_per_peer` (the reverse proxies).
    pub trusted: Vec<Net>,
}

impl Default for ListenLimits {
    fn default() -> Self {
        ListenLimits {
            max_connections: 1024,
            max_per_peer: 64,
            header_timeout: Duration::from_secs(5),
            max_head: 64 * 1024,
            trusted: crate::api::loopback(),
        }
    }
}

/// What a listener has done with its connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ListenStats {
    pub accepted: u64,
    /// Closed at accept: the peer already held `max_per_peer`.
    pub refused_peer: u64,
    /// Closed at accept: `max_connections` open and every one busy.
    pub refused_full: u64,
    /// Closed to make room: the oldest connection waiting for a request head.
    pub evicted: u64,
    /// Closed for not sending a complete request head (or, over TLS, not
    /// finishing the handshake) in time.
    pub timed_out: u64,
    /// Closed with an HTTP error (malformed request, reset, head too large)
    /// or a failed TLS handshake.
    pub conn_errors: u64,
    /// Open now.
    pub open: u64,
}

#[derive(Default)]
struct ListenCounters {
    accepted: AtomicU64,
    refused_peer: AtomicU64,
    refused_full: AtomicU64,
    evicted: AtomicU64,
    timed_out: AtomicU64,
    conn_errors: AtomicU64,
}

/// One open connection, as the bookkeeping sees it.
struct Conn {
    peer: Option<IpAddr>,
    trusted: bool,
    /// A request is being answered.
    busy: AtomicBool,
    /// Milliseconds since the limiter's epoch at which the connection started
    /// waiting for a request head (accept, or the end of its last answer).
    waiting_since: AtomicU64,
    /// Told to close (evicted).
    kill: Notify,
}

#[derive(Default)]
struct Conns {
    next_id: u64,
    open: HashMap<u64, Arc<Conn>>,
    per_peer: HashMap<IpAddr, usize>,
}

impl Conns {
    fn forget(&mut self, id: u64) -> bool {
        let Some(c) = self.open.remove(&id) else {
            return false;
        };
        if let Some(p) = c.peer
            && let Some(n) = self.per_peer.get_mut(&p)
        {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(&p);
            }
        }
        true
    }
}

/// The limits and bookkeeping of one listener. Share it (`Arc`) between the
/// accept loop and whoever reads [`Limiter::stats`].
pub struct Limiter {
    limits: ListenLimits,
    epoch: Instant,
    /// Locked at accept and at close only (never per request, never across an
    /// `.await`); requests touch their connection's atomics.
    conns: Mutex<Conns>,
    counters: ListenCounters,
}

/// Why a connection was not admitted.
#[derive(Debug, PartialEq, Eq)]
enum Refused {
    Peer,
    Full,
}

/// An admitted connection; dropping it frees its place.
struct Slot {
    limiter: Arc<Limiter>,
    id: u64,
    conn: Arc<Conn>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.limiter.lock().forget(self.id);
    }
}

impl Limiter {
    pub fn new(limits: ListenLimits) -> Arc<Self> {
        Arc::new(Limiter {
            limits,
            epoch: Instant::now(),
            conns: Mutex::new(Conns::default()),
            counters: ListenCounters::default(),
        })
    }

    pub fn limits(&self) -> &ListenLimits {
        &self.limits
    }

    pub fn stats(&self) -> ListenStats {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ListenStats {
            accepted: l(&c.accepted),
            refused_peer: l(&c.refused_peer),
            refused_full: l(&c.refused_full),
            evicted: l(&c.evicted),
            timed_out: l(&c.timed_out),
            conn_errors: l(&c.conn_errors),
            open: self.lock().open.len() as u64,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Conns> {
        // Poisoned only if a panic hit mid-update of two maps; the counts stay usable.
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn admit(self: &Arc<Self>, peer: Option<IpAddr>) -> Result<Slot, Refused> {
        let peer = peer.map(|p| Addr::new(p).ip());
        let trusted = peer.is_none_or(|p| self.limits.trusted.iter().any(|n| n.has(Addr::new(p))));
        let mut conns = self.lock();
        if let Some(p) = peer
            && !trusted
            && conns.per_peer.get(&p).copied().unwrap_or(0) >= self.limits.max_per_peer
        {
            self.counters.refused_peer.fetch_add(1, Ordering::Relaxed);
            return Err(Refused::Peer);
        }
        if conns.open.len() >= self.limits.max_connections.max(1) {
            // Untrusted peers first; among them a connection waiting for a head
            // before one being answered (a slow body); the oldest first. A
            // trusted proxy's request in progress is never cut.
            let victim = conns
                .open
                .iter()
                .map(|(id, c)| (id, c, c.busy.load(Ordering::Relaxed)))
                .filter(|(_, c, busy)| !(c.trusted && *busy))
                .min_by_key(|(id, c, busy)| {
                    // Ties within a millisecond: the lower id was accepted first.
                    (
                        c.trusted,
                        *busy,
                        c.waiting_since.load(Ordering::Relaxed),
                        **id,
                    )
                })
                .map(|(id, c, _)| (*id, c.clone()));
            let Some((id, victim)) = victim else {
                self.counters.refused_full.fetch_add(1, Ordering::Relaxed);
                return Err(Refused::Full);
            };
            conns.forget(id);
            victim.kill.notify_one();
            self.counters.evicted.fetch_add(1, Ordering::Relaxed);
        }
        let id = conns.next_id;
        conns.next_id += 1;
        let conn = Arc::new(Conn {
            peer,
            trusted,
            busy: AtomicBool::new(false),
            waiting_since: AtomicU64::new(self.now_ms()),
            kill: Notify::new(),
        });
        conns.open.insert(id, conn.clone());
        if let Some(p) = peer {
            *conns.per_peer.entry(p).or_insert(0) += 1;
        }
        self.counters.accepted.fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            limiter: self.clone(),
            id,
            conn,
        })
    }

    /// Serves one admitted connection until it ends, is evicted or misses its deadline.
    async fn serve_conn<S>(
        self: Arc<Self>,
        slot: Slot,
        stream: S,
        app: Router,
        peer: Option<SocketAddr>,
        client: Option<crate::tls::ClientCert>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let conn = slot.conn.clone();
        let svc = {
            let (conn, limiter) = (conn.clone(), self.clone());
            hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                if let Some(p) = peer {
                    req.extensions_mut().insert(ConnectInfo(p));
                }
                if let Some(c) = &client {
                    req.extensions_mut().insert(c.clone());
                }
                conn.busy.store(true, Ordering::Relaxed);
                let answer = app.clone().oneshot(req.map(axum::body::Body::new));
                let (conn, limiter) = (conn.clone(), limiter.clone());
                async move {
                    let r = answer.await;
                    conn.waiting_since
                        .store(limiter.now_ms(), Ordering::Relaxed);
                    conn.busy.store(false, Ordering::Relaxed);
                    r
                }
            })
        };
        let mut b = hyper::server::conn::http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout)
            .max_buf_size(self.limits.max_head.max(8192));
        let served = b.serve_connection(TokioIo::new(stream), svc);
        tokio::pin!(served);
        let timeout = self.limits.header_timeout;
        let deadline = async {
            // Wake at the current wait's deadline; a busy or refreshed
            // connection sleeps again.
            loop {
                let since = conn.waiting_since.load(Ordering::Relaxed);
                let due = self.epoch + Duration::from_millis(since) + timeout;
                if !conn.busy.load(Ordering::Relaxed) && Instant::now() >= due {
                    return;
                }
                let next = if conn.busy.load(Ordering::Relaxed) {
                    Instant::now() + timeout
                } else {
                    due
                };
                tokio::time::sleep_until(next.into()).await;
            }
        };
        tokio::select! {
            r = served.as_mut() => {
                if let Err(e) = r {
                    if e.is_timeout() {
                        self.counters.timed_out.fetch_add(1, Ordering::Relaxed);
                    } else {
                        self.counters.conn_errors.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::debug!(?peer, error = %e, "connection closed with an error");
                }
            }
            () = conn.kill.notified() => {}
            () = deadline => {
                self.counters.timed_out.fetch_add(1, Ordering::Relaxed);
            }
        }
        drop(slot);
    }
}

/// Serves `app` on a TCP listener within `limiter`'s limits, with the peer
/// address in each request (`ConnectInfo<SocketAddr>`). Runs until the task is
/// dropped or aborted.
/// `listener` by value or borrowed: a caller that stops the loop (drops the
/// future) keeps its socket and can serve it again, so no connection is
/// refused in between.
pub async fn serve_tcp(
    listener: impl std::borrow::Borrow<tokio::net::TcpListener>,
    app: Router,
    limiter: Arc<Limiter>,
) {
    let listener = listener.borrow();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors, for example: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = limiter.admit(Some(peer.ip())) else {
            // Closed at once: a refused client costs one accept.
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(
            limiter
                .clone()
                .serve_conn(slot, stream, app.clone(), Some(peer), None),
        );
    }
}

/// [`serve_tcp`] over TLS: each admitted connection has `header_timeout` to
/// finish its handshake (a failed one counts in `conn_errors`, a slow one in
/// `timed_out`, and an eviction ends it like any connection). The
/// configuration is taken from `tls` at each handshake, so a reload applies to
/// the next connection; a verified client certificate with an allowed OU
/// rides along in each request as a [`crate::ClientCert`].
pub async fn serve_tls(
    listener: impl std::borrow::Borrow<tokio::net::TcpListener>,
    app: Router,
    limiter: Arc<Limiter>,
    tls: Arc<crate::tls::Tls>,
) {
    let listener = listener.borrow();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = limiter.admit(Some(peer.ip())) else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (limiter, app, tls) = (limiter.clone(), app.clone(), tls.clone());
        tokio::spawn(async move {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
            let handshake =
                tokio::time::timeout(limiter.limits.header_timeout, acceptor.accept(stream));
            let stream = tokio::select! {
                r = handshake => match r {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        limiter.counters.conn_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        limiter.counters.timed_out.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                },
                () = slot.conn.kill.notified() => return,
            };
            let client = tls.identify(stream.get_ref().1.peer_certificates());
            limiter
                .clone()
                .serve_conn(slot, stream, app, Some(peer), client)
                .await;
        });
    }
}

/// Serves `app` on a Unix socket within `limiter`'s total and header limits
/// (a Unix peer has no address, so no per-peer limit).
pub async fn serve_unix(listener: tokio::net::UnixListener, app: Router, limiter: Arc<Limiter>) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed on the control socket");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = limiter.admit(None) else {
            drop(stream);
            continue;
        };
        tokio::spawn(
            limiter
                .clone()
                .serve_conn(slot, stream, app.clone(), None, None),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn limiter(max: usize, per_peer: usize) -> Arc<Limiter> {
        Limiter::new(ListenLimits {
            max_connections: max,
            max_per_peer: per_peer,
            trusted: vec!["127.0.0.1/32".parse().unwrap()],
            ..Default::default()
        })
    }

    #[test]
    fn per_peer_cap_spares_trusted_proxies_and_frees_on_close() {
        let l = limiter(100, 2);
        let a = l.admit(ip("192.0.2.1")).unwrap();
        let _b = l.admit(ip("::ffff:192.0.2.1")).unwrap();
        assert_eq!(
            l.admit(ip("192.0.2.1")).err(),
            Some(Refused::Peer),
            "mapped form counts as the same peer"
        );
        let _other = l.admit(ip("192.0.2.2")).unwrap();
        let proxy: Vec<Slot> = (0..10).map(|_| l.admit(ip("127.0.0.1")).unwrap()).collect();
        assert_eq!(proxy.len(), 10);
        drop(a);
        assert!(
            l.admit(ip("192.0.2.1")).is_ok(),
            "a closed connection frees its place"
        );
        let s = l.stats();
        assert_eq!((s.refused_peer, s.refused_full, s.evicted), (1, 0, 0));
    }

    #[test]
    fn when_full_the_oldest_waiting_untrusted_connection_makes_room() {
        let l = limiter(3, 10);
        let proxy = l.admit(ip("127.0.0.1")).unwrap();
        let old = l.admit(ip("192.0.2.1")).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let newer = l.admit(ip("192.0.2.2")).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        // Full: the older untrusted waiter goes, though the proxy's connection is older still.
        let _n = l.admit(ip("192.0.2.3")).unwrap();
        assert!(!l.lock().open.contains_key(&old.id), "evicted");
        assert!(l.lock().open.contains_key(&proxy.id) && l.lock().open.contains_key(&newer.id));
        // Busy untrusted connections (a slow body) go next, the oldest first;
        // a trusted proxy's request in progress is never cut: all such, the
        // newcomer is refused.
        for c in l.lock().open.values() {
            c.busy.store(true, Ordering::Relaxed);
        }
        let _m = l.admit(ip("192.0.2.5")).unwrap();
        assert!(
            !l.lock().open.contains_key(&newer.id),
            "oldest busy untrusted evicted"
        );
        let l2 = limiter(2, 10);
        let _p1 = l2.admit(ip("127.0.0.1")).unwrap();
        let _p2 = l2.admit(ip("127.0.0.1")).unwrap();
        for c in l2.lock().open.values() {
            c.busy.store(true, Ordering::Relaxed);
        }
        assert_eq!(l2.admit(ip("192.0.2.4")).err(), Some(Refused::Full));
        let s = l.stats();
        assert_eq!((s.evicted, s.refused_full, s.open), (2, 0, 3));
        // The evicted slot's drop does not free someone else's place.
        drop(old);
        assert_eq!(l.stats().open, 3);
    }
}
