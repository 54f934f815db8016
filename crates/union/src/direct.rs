//! The direct transport: HTTPS between members, mutually authenticated and
//! pinned by key. Each member presents a self-signed certificate made with its
//! own ed25519 member key; both sides accept only a certificate whose public
//! key is the treaty key of a (non-revoked) member — the client side pins the
//! exact member it dialled. rustls runs on the ring provider only.
//!
//! Protocol (JSON over HTTP/1.1, all POST):
//! - `/union/v1/hello` `{member, treaty}` → 200, or 409 `{differences}` naming what differs;
//! - `/union/v1/push`  `[Envelope]` → 204 (409 if the sender's treaty differs);
//! - `/union/v1/pull`  `{have, held}` → `[Envelope]` missing per origin, every origin (relay);
//! - `/union/v1/gov`   `{since}` → `{history, pending}`: treaty versions after `since` and the
//!   amendments pending on the current one (served even to a peer on another treaty version,
//!   so it can catch up).
//!
//! Owns sockets, TLS, the listener and per-peer workers (push queue and the
//! anti-entropy loop). Trust decisions belong to the [`Sink`].

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use ed25519_dalek::VerifyingKey;
use http_body_util::{BodyExt, Full};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use serde::{Deserialize, Serialize};
use shield_core::wall_now as now;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::identity::{Identity, spki_der};
use crate::signal::Envelope;
use crate::transport::{BoxFuture, Have, Health, Held, PeerStatus, Sink, Transport};
use crate::treaty::{Canonical, Treaty};

/// Most envelopes in one push or pull answer (200 × the 4 KiB payload cap in
/// base64 stays under axum's 2 MiB JSON body limit).
pub const BATCH: usize = 200;
/// Largest answer body read from a peer.
const MAX_ANSWER: usize = 4 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Most connections the union listener holds at once (each costs a file
/// descriptor; every member keeps one open to us). A direct union is meant for
/// up to a few hundred members; larger ones run on NATS.
pub const MAX_CONNS: usize = 512;
/// Most connections held at once from one source address: a member needs one
/// or two, so one host cannot take the listener's whole budget.
pub const MAX_CONNS_PER_IP: usize = 32;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const SERVER_NAME: &str = "shield-union";

/// Errors of the direct transport; they say whether retrying can help.
#[derive(Debug, thiserror::Error)]
pub enum DirectError {
    #[error(
        "cannot listen on {addr}: {source} (is another process using the port? change `listen`)"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "cannot build the TLS identity from the member key: {0} (regenerate the key with `shield union keygen`)"
    )]
    Tls(String),
    /// Network trouble; anti-entropy retries by itself.
    #[error("peer {peer} at {endpoint}: {what} (will retry)")]
    Peer {
        peer: String,
        endpoint: String,
        what: String,
    },
    /// The peer answered with an error status; retrying does not help until someone changes config.
    #[error("peer {peer} refused: HTTP {status}: {body}")]
    Refused {
        peer: String,
        status: u16,
        body: String,
    },
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn algs() -> WebPkiSupportedAlgorithms {
    rustls::crypto::ring::default_provider().signature_verification_algorithms
}

/// The ed25519 SPKI of a certificate, parsed properly (never by searching bytes).
fn cert_spki(cert: &CertificateDer<'_>) -> Option<Vec<u8>> {
    let (_, c) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    Some(c.public_key().raw.to_vec())
}

/// Self-signed certificate over the member key.
pub fn member_cert(
    id: &Identity,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), DirectError> {
    let der = id.pkcs8_der();
    let pk = PrivatePkcs8KeyDer::from(der.clone());
    let kp = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pk, &rcgen::PKCS_ED25519)
        .map_err(|e| DirectError::Tls(e.to_string()))?;
    let params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()])
        .map_err(|e| DirectError::Tls(e.to_string()))?;
    let cert = params
        .self_signed(&kp)
        .map_err(|e| DirectError::Tls(e.to_string()))?;
    Ok((
        cert.der().clone(),
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der)),
    ))
}

/// Client side: accept exactly the dialled member's key(s) (two inside a
/// key rotation's overlap window).
#[derive(Debug)]
struct PinnedServer {
    spki: Vec<Vec<u8>>,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if cert_spki(end_entity).is_some_and(|s| self.spki.contains(&s)) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "peer's certificate key is not the treaty key of the member we dialled".into(),
            ))
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.algs)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.algs)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// Server side: accept any non-revoked member key; count the rest.
#[derive(Debug)]
struct MemberClients {
    /// (spki, revoked)
    keys: Vec<(Vec<u8>, bool)>,
    algs: WebPkiSupportedAlgorithms,
    refused_revoked: Arc<AtomicU64>,
    refused_unknown: Arc<AtomicU64>,
}

impl ClientCertVerifier for MemberClients {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let spki = cert_spki(end_entity);
        match self
            .keys
            .iter()
            .find(|(k, _)| Some(k.as_slice()) == spki.as_deref())
        {
            Some((_, false)) => Ok(ClientCertVerified::assertion()),
            Some((_, true)) => {
                self.refused_revoked.fetch_add(1, Ordering::Relaxed);
                Err(rustls::Error::General(
                    "client key is revoked by the treaty".into(),
                ))
            }
            None => {
                self.refused_unknown.fetch_add(1, Ordering::Relaxed);
                Err(rustls::Error::General(
                    "client key is not a member of the treaty".into(),
                ))
            }
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.algs)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.algs)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// A TLS connector that only accepts `peer_key`, presenting `id`'s certificate.
pub fn connector(id: &Identity, peer_key: &VerifyingKey) -> Result<TlsConnector, DirectError> {
    connector_any(id, std::slice::from_ref(peer_key))
}

/// A TLS connector that presents this member's key and accepts any of `peer_keys`.
pub fn connector_any(
    id: &Identity,
    peer_keys: &[VerifyingKey],
) -> Result<TlsConnector, DirectError> {
    let (cert, key) = member_cert(id)?;
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| DirectError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedServer {
            spki: peer_keys.iter().map(spki_der).collect(),
            algs: algs(),
        }))
        .with_client_auth_cert(vec![cert], key)
        .map_err(|e| DirectError::Tls(e.to_string()))?;
    Ok(TlsConnector::from(Arc::new(cfg)))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Hello {
    pub member: String,
    pub treaty: Canonical,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Mismatch {
    pub differences: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct GovAsk {
    pub since: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Pull {
    pub have: Have,
    /// Ranges held above `have` (absent from older members: they get rows past a gap again).
    #[serde(default)]
    pub held: Held,
}

/// One HTTP/1.1 connection to a peer, reopened on failure.
pub struct PeerClient {
    pub name: String,
    pub endpoint: String,
    tls: TlsConnector,
    conn: tokio::sync::Mutex<Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>>,
}

impl PeerClient {
    pub fn new(
        id: &Identity,
        name: &str,
        key: &VerifyingKey,
        endpoint: &str,
    ) -> Result<PeerClient, DirectError> {
        Self::new_any(id, name, std::slice::from_ref(key), endpoint)
    }

    /// A client to a member that may present any of `keys` (its current and
    /// previous key inside a rotation's overlap window).
    pub fn new_any(
        id: &Identity,
        name: &str,
        keys: &[VerifyingKey],
        endpoint: &str,
    ) -> Result<PeerClient, DirectError> {
        Ok(PeerClient {
            name: name.into(),
            endpoint: endpoint.into(),
            tls: connector_any(id, keys)?,
            conn: tokio::sync::Mutex::new(None),
        })
    }

    fn err(&self, what: impl std::fmt::Display) -> DirectError {
        DirectError::Peer {
            peer: self.name.clone(),
            endpoint: self.endpoint.clone(),
            what: what.to_string(),
        }
    }

    async fn connect(
        &self,
    ) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, DirectError> {
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.endpoint))
            .await
            .map_err(|_| self.err("connect timed out"))?
            .map_err(|e| self.err(format!("connect: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(SERVER_NAME).map_err(|e| self.err(e))?;
        let tls = tokio::time::timeout(CONNECT_TIMEOUT, self.tls.connect(name, tcp))
            .await
            .map_err(|_| self.err("TLS handshake timed out"))?
            .map_err(|e| self.err(format!("TLS: {e}")))?;
        let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| self.err(format!("HTTP: {e}")))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(send)
    }

    /// POST JSON, return (status, body). Reconnects once if a kept connection went stale.
    pub async fn post(&self, path: &str, body: Vec<u8>) -> Result<(u16, Bytes), DirectError> {
        let body = Bytes::from(body);
        let mut guard = self.conn.lock().await;
        for attempt in 0..2 {
            let mut send = match guard.take() {
                Some(s) if !s.is_closed() => s,
                _ => self.connect().await?,
            };
            let req = hyper::Request::post(path)
                .header("host", SERVER_NAME)
                .header("content-type", "application/json")
                .body(Full::new(body.clone()))
                .map_err(|e| self.err(e))?;
            let res = tokio::time::timeout(REQUEST_TIMEOUT, async {
                send.ready().await?;
                let r = send.send_request(req).await?;
                let status = r.status().as_u16();
                let b = http_body_util::Limited::new(r.into_body(), MAX_ANSWER)
                    .collect()
                    .await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, b.to_bytes()))
            })
            .await;
            match res {
                Ok(Ok(r)) => {
                    *guard = Some(send);
                    return Ok(r);
                }
                Ok(Err(e)) if attempt == 0 => {
                    tracing::debug!(peer = %self.name, "request failed on kept connection, reconnecting: {e}");
                }
                Ok(Err(e)) => return Err(self.err(format!("HTTP: {e}"))),
                Err(_) => return Err(self.err("request timed out")),
            }
        }
        Err(self.err("request failed twice"))
    }

    async fn post_json<T: Serialize>(&self, path: &str, v: &T) -> Result<Bytes, DirectError> {
        let body = serde_json::to_vec(v).map_err(|e| self.err(e))?;
        let (status, b) = self.post(path, body).await?;
        if (200..300).contains(&status) {
            Ok(b)
        } else {
            let text = match serde_json::from_slice::<Mismatch>(&b) {
                Ok(m) => m.differences.join("; "),
                Err(_) => String::from_utf8_lossy(&b[..b.len().min(500)]).into_owned(),
            };
            Err(DirectError::Refused {
                peer: self.name.clone(),
                status,
                body: text,
            })
        }
    }

    pub async fn hello(&self, me: &str, treaty: &Canonical) -> Result<(), DirectError> {
        self.post_json(
            "/union/v1/hello",
            &Hello {
                member: me.into(),
                treaty: treaty.clone(),
            },
        )
        .await
        .map(|_| ())
    }

    pub async fn push(&self, envs: &[Envelope]) -> Result<(), DirectError> {
        self.post_json("/union/v1/push", &envs).await.map(|_| ())
    }

    pub async fn gov(&self, since: u64) -> Result<crate::history::Gov, DirectError> {
        let b = self.post_json("/union/v1/gov", &GovAsk { since }).await?;
        serde_json::from_slice(&b).map_err(|e| self.err(format!("bad governance answer: {e}")))
    }

    pub async fn pull(&self, have: &Have, held: &Held) -> Result<Vec<Envelope>, DirectError> {
        let b = self
            .post_json(
                "/union/v1/pull",
                &Pull {
                    have: have.clone(),
                    held: held.clone(),
                },
            )
            .await?;
        serde_json::from_slice(&b).map_err(|e| self.err(format!("bad pull answer: {e}")))
    }
}

struct PeerLink {
    client: PeerClient,
    queue: mpsc::UnboundedSender<Envelope>,
    queue_rx: Mutex<Option<mpsc::UnboundedReceiver<Envelope>>>,
    // std Mutex: held only to copy or replace the small status value, never across an await.
    status: Mutex<PeerStatus>,
    wake: tokio::sync::Notify,
}

impl PeerLink {
    fn set(&self, health: Health, err: Option<String>) {
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let was = s.health.clone();
        if health == Health::Up {
            s.last_ok = Some(now());
        }
        s.health = health.clone();
        s.last_error = err.clone();
        drop(s);
        if was != health {
            match (&health, err) {
                (Health::TreatyMismatch, Some(e)) => {
                    tracing::error!(peer = %self.client.name, "peer runs a different treaty; nothing is exchanged with it: {e}")
                }
                (Health::Down, Some(e)) => {
                    tracing::warn!(peer = %self.client.name, "peer down: {e}")
                }
                (Health::Up, _) => tracing::info!(peer = %self.client.name, "peer up"),
                _ => {}
            }
        }
    }
    fn health(&self) -> Health {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .health
            .clone()
    }
}

/// The direct HTTPS transport.
pub struct Direct {
    me: String,
    canonical: Canonical,
    listener: Mutex<Option<TcpListener>>,
    acceptor: TlsAcceptor,
    peers: Vec<Arc<PeerLink>>,
    interval: Duration,
    /// Handshakes refused because the client key is revoked / not a member.
    pub refused_revoked: Arc<AtomicU64>,
    pub refused_unknown: Arc<AtomicU64>,
    /// Connections closed at once because the listener was at a connection cap.
    pub refused_conn_cap: Arc<AtomicU64>,
    /// Open connections per source address (std Mutex: a map update per accept and close).
    per_ip: Arc<Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
    /// Key → member name, to name the peer of an accepted connection.
    names: Vec<(Vec<u8>, String)>,
}

impl Direct {
    /// Bind the listener and prepare TLS for every peer in the treaty.
    pub async fn bind(
        me: &str,
        id: &Identity,
        treaty: &Treaty,
        listen: SocketAddr,
    ) -> Result<Direct, DirectError> {
        let (cert, key) = member_cert(id)?;
        let refused_revoked = Arc::new(AtomicU64::new(0));
        let refused_unknown = Arc::new(AtomicU64::new(0));
        // A previous key inside a rotation window is admitted until the union
        // restarts (signals are still judged by time of arrival).
        let now = shield_core::wall_now();
        let mut keys: Vec<(Vec<u8>, bool)> = treaty
            .members()
            .flat_map(|m| m.keys().filter(|k| m.has_key_at(k, now)))
            .map(|k| (spki_der(k), treaty.is_revoked(k)))
            .collect();
        // A revoked key that is no longer listed as a member is still counted as revoked.
        for m in treaty.canonical().revoked.iter() {
            if let Ok(k) = crate::identity::parse_public(m) {
                let s = spki_der(&k);
                if !keys.iter().any(|(x, _)| *x == s) {
                    keys.push((s, true));
                }
            }
        }
        let verifier = MemberClients {
            keys,
            algs: algs(),
            refused_revoked: refused_revoked.clone(),
            refused_unknown: refused_unknown.clone(),
        };
        let cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| DirectError::Tls(e.to_string()))?
            .with_client_cert_verifier(Arc::new(verifier))
            .with_single_cert(vec![cert], key)
            .map_err(|e| DirectError::Tls(e.to_string()))?;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| DirectError::Bind {
                addr: listen,
                source,
            })?;
        let mut peers = Vec::new();
        for m in treaty.members().filter(|m| m.name != me) {
            let (tx, rx) = mpsc::unbounded_channel();
            peers.push(Arc::new(PeerLink {
                client: PeerClient::new_any(
                    id,
                    &m.name,
                    &m.keys().copied().collect::<Vec<_>>(),
                    &m.endpoint,
                )?,
                queue: tx,
                queue_rx: Mutex::new(Some(rx)),
                status: Mutex::new(PeerStatus {
                    name: m.name.clone(),
                    endpoint: m.endpoint.clone(),
                    health: Health::Unknown,
                    last_error: None,
                    last_ok: None,
                }),
                wake: tokio::sync::Notify::new(),
            }));
        }
        Ok(Direct {
            me: me.into(),
            canonical: treaty.canonical().clone(),
            listener: Mutex::new(Some(listener)),
            acceptor: TlsAcceptor::from(Arc::new(cfg)),
            peers,
            interval: treaty.sync_interval,
            refused_revoked,
            refused_unknown,
            refused_conn_cap: Arc::new(AtomicU64::new(0)),
            per_ip: Arc::default(),
            names: treaty
                .members()
                .flat_map(|m| m.keys().map(|k| (spki_der(k), m.name.clone())))
                .collect(),
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.lock().ok()?.as_ref()?.local_addr().ok()
    }

    async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        sink: Arc<dyn Sink>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let app = Router::new()
            .route("/union/v1/hello", post(h_hello))
            .route("/union/v1/push", post(h_push))
            .route("/union/v1/pull", post(h_pull))
            .route("/union/v1/gov", post(h_gov))
            .with_state(sink);
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let (tcp, addr) = tokio::select! {
                _ = shutdown.changed() => break,
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!("union listener accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            while conns.try_join_next().is_some() {}
            let Some(slot) = ConnSlot::take(&self.per_ip, addr.ip(), conns.len()) else {
                // Closing at once costs the sender a reconnect, us nothing.
                self.refused_conn_cap.fetch_add(1, Ordering::Relaxed);
                drop(tcp);
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let this = self.clone();
            let app = app.clone();
            let mut sd = shutdown.clone();
            conns.spawn(async move {
                let _slot = slot;
                let tls =
                    match tokio::time::timeout(CONNECT_TIMEOUT, this.acceptor.accept(tcp)).await {
                        Ok(Ok(t)) => t,
                        Ok(Err(e)) => {
                            tracing::debug!(%addr, "union TLS handshake refused: {e}");
                            return;
                        }
                        Err(_) => return,
                    };
                let spki = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(cert_spki);
                let Some(peer) = spki.and_then(|s| {
                    this.names
                        .iter()
                        .find(|(k, _)| *k == s)
                        .map(|(_, n)| n.clone())
                }) else {
                    return;
                };
                let svc = hyper_util::service::TowerToHyperService::new(
                    app.layer(Extension(PeerName(peer))),
                );
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    _ = sd.changed() => {}
                }
            });
        }
        conns.shutdown().await;
    }

    async fn push_worker(
        self: Arc<Self>,
        link: Arc<PeerLink>,
        sink: Arc<dyn Sink>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let Some(mut rx) = link.queue_rx.lock().ok().and_then(|mut g| g.take()) else {
            return;
        };
        loop {
            let first = tokio::select! {
                _ = shutdown.changed() => return,
                m = rx.recv() => match m { Some(e) => e, None => return },
            };
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(_) => break,
                }
            }
            if link.health() == Health::TreatyMismatch {
                continue; // anti-entropy resumes once the treaties agree
            }
            match link.client.push(&batch).await {
                Ok(()) => {
                    sink.delivered(batch.len());
                    if link.health() != Health::Up {
                        link.wake.notify_one(); // reconnected: run anti-entropy now
                    }
                }
                Err(e) => {
                    // Lost pushes are repaired by the peer's pull.
                    link.set(Health::Down, Some(e.to_string()));
                }
            }
        }
    }

    async fn sync_loop(
        self: Arc<Self>,
        link: Arc<PeerLink>,
        sink: Arc<dyn Sink>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            self.sync_once(&link, &sink).await;
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(self.interval) => {}
                _ = link.wake.notified() => {}
            }
        }
    }

    /// Exchange treaty versions and amendments with a peer (whatever its
    /// treaty version: this is how a member behind catches up).
    async fn gov_once(&self, link: &PeerLink, sink: &Arc<dyn Sink>) {
        // One version back, so a conflicting last version is compared too.
        let since = sink.gov_version().saturating_sub(1);
        match link.client.gov(since).await {
            Ok(g) if !g.history.is_empty() || !g.pending.is_empty() => {
                sink.gov_absorb(&link.client.name, g)
            }
            Ok(_) => sink.gov_absorb(&link.client.name, Default::default()),
            Err(e) => tracing::debug!(peer = %link.client.name, "governance exchange: {e}"),
        }
    }

    async fn sync_once(&self, link: &PeerLink, sink: &Arc<dyn Sink>) {
        if link.health() != Health::Up {
            match link.client.hello(&self.me, &self.canonical).await {
                Ok(()) => link.set(Health::Up, None),
                Err(e @ DirectError::Refused { status: 409, .. }) => {
                    link.set(Health::TreatyMismatch, Some(e.to_string()));
                    self.gov_once(link, sink).await;
                    return;
                }
                Err(e) => {
                    link.set(Health::Down, Some(e.to_string()));
                    return;
                }
            }
        }
        self.gov_once(link, sink).await;
        // Pull until the peer has nothing more for us (bounded per round).
        for _ in 0..20 {
            let (have, held) = sink.have();
            match link.client.pull(&have, &held).await {
                Ok(envs) => {
                    link.set(Health::Up, None);
                    let n = envs.len();
                    if n > 0 {
                        sink.receive(envs, &link.client.name).await;
                    }
                    if n < BATCH {
                        return;
                    }
                }
                Err(e @ DirectError::Refused { status: 409, .. }) => {
                    link.set(Health::TreatyMismatch, Some(e.to_string()));
                    return;
                }
                Err(e) => {
                    link.set(Health::Down, Some(e.to_string()));
                    return;
                }
            }
        }
    }
}

/// One source address's share of the listener, released when the connection ends.
struct ConnSlot {
    map: Arc<Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
    ip: std::net::IpAddr,
}

impl ConnSlot {
    /// A slot for `ip` if neither cap is reached (`open` = connections held now).
    fn take(
        map: &Arc<Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
        ip: std::net::IpAddr,
        open: usize,
    ) -> Option<ConnSlot> {
        if open >= MAX_CONNS {
            return None;
        }
        let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(ip).or_default();
        if *n >= MAX_CONNS_PER_IP {
            return None;
        }
        *n += 1;
        Some(ConnSlot {
            map: map.clone(),
            ip,
        })
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

#[derive(Clone)]
struct PeerName(String);

async fn h_hello(
    State(sink): State<Arc<dyn Sink>>,
    Extension(PeerName(peer)): Extension<PeerName>,
    Json(h): Json<Hello>,
) -> Response {
    if h.member != peer {
        return (
            StatusCode::FORBIDDEN,
            format!(
                "you present the key of `{peer}` but call yourself `{}`",
                h.member
            ),
        )
            .into_response();
    }
    match sink.check_treaty(&peer, &h.treaty) {
        Ok(()) => StatusCode::OK.into_response(),
        Err(differences) => (StatusCode::CONFLICT, Json(Mismatch { differences })).into_response(),
    }
}

async fn h_push(
    State(sink): State<Arc<dyn Sink>>,
    Extension(PeerName(peer)): Extension<PeerName>,
    Json(envs): Json<Vec<Envelope>>,
) -> Response {
    if envs.len() > BATCH {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("at most {BATCH} signals per push"),
        )
            .into_response();
    }
    if sink.receive(envs, &peer).await {
        StatusCode::NO_CONTENT.into_response()
    } else {
        // The sender keeps nothing queued for us; our anti-entropy pull fetches the
        // signals again once the store writes. Say so rather than pretend success.
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the receiving member could not store the signals; it will fetch them again",
        )
            .into_response()
    }
}

async fn h_gov(State(sink): State<Arc<dyn Sink>>, Json(a): Json<GovAsk>) -> Response {
    Json(sink.gov_answer(a.since)).into_response()
}

async fn h_pull(
    State(sink): State<Arc<dyn Sink>>,
    Extension(PeerName(peer)): Extension<PeerName>,
    Json(p): Json<Pull>,
) -> Response {
    if p.have.len() > 10_000 || p.held.len() > 10_000 {
        return (StatusCode::PAYLOAD_TOO_LARGE, "too many origins in `have`").into_response();
    }
    Json(sink.serve(&p.have, &p.held, BATCH, &peer)).into_response()
}

impl Transport for Direct {
    fn run(
        self: Arc<Self>,
        sink: Arc<dyn Sink>,
        shutdown: watch::Receiver<bool>,
    ) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let listener = self.listener.lock().ok().and_then(|mut g| g.take());
            let mut tasks = tokio::task::JoinSet::new();
            if let Some(l) = listener {
                tasks.spawn(self.clone().serve(l, sink.clone(), shutdown.clone()));
            }
            for p in &self.peers {
                tasks.spawn(
                    self.clone()
                        .push_worker(p.clone(), sink.clone(), shutdown.clone()),
                );
                tasks.spawn(
                    self.clone()
                        .sync_loop(p.clone(), sink.clone(), shutdown.clone()),
                );
            }
            while tasks.join_next().await.is_some() {}
        })
    }

    fn push(&self, env: Envelope) {
        for p in &self.peers {
            let _ = p.queue.send(env.clone());
        }
    }

    fn peers(&self) -> Vec<PeerStatus> {
        self.peers
            .iter()
            .map(|p| p.status.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect()
    }
}
