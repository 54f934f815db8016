//! The daemon's listeners and what each serves: the control API on a Unix
//! socket (for the CLI; file mode 0600, so only root), and on the TCP
//! listener the gate, the CrowdSec-compatible bouncer API, `/metrics`, the
//! dashboard and — only when a token is configured — the same control API
//! behind `Authorization: Bearer <token>`. Both run in `shield_enforce`'s
//! accept loop with `[api]`'s connection limits (per peer, total, header
//! deadline).
//!
//! [`bind`] opens the listeners (the binary calls it; a test binds
//! `127.0.0.1:0` itself); [`serve`] takes them, so the servers never bind.
//!
//! With `[api] tls_cert`/`tls_key` the TCP listener speaks HTTPS only
//! (`shield_enforce::serve_tls`), and bouncers may present a client
//! certificate instead of a key when `client_ca` is set. The certificate
//! files are re-read when they change (checked every [`TLS_POLL`]) and at
//! each reload. [`Servers::reload`] applies a new `[api]` to the TCP listener
//! without dropping a connection: the accept loop hands its socket back, and
//! a new loop with the new routes, token, limits and TLS takes it (or a
//! socket on the new `listen`, bound before the old one closes). `[api]
//! socket` needs a restart.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;

pub use crate::error::BindError;
use crate::plan::{ApiPlan, Plan};
use crate::state::Shared;

/// The sockets the daemon serves on, bound before it starts.
pub struct Listeners {
    /// The control socket.
    pub control: tokio::net::UnixListener,
    /// Its path, removed when the daemon stops.
    pub control_path: PathBuf,
    /// Where `control` is bound until the daemon serves: [`bind`] binds it
    /// beside `control_path` and [`serve`] renames it into place, so the
    /// socket appears only once the store, the layer and the union are up
    /// (clients and tests take a connectable socket as "started").
    pub staged_at: Option<PathBuf>,
    /// `[api] listen`, when set.
    pub api: Option<tokio::net::TcpListener>,
}

/// Binds the control socket at `[api] socket` (0600; a stale file left by a
/// crash is removed, a live daemon's is refused) and `[api] listen`.
pub async fn bind(plan: &Plan) -> Result<Listeners, BindError> {
    let sock = plan.api.socket.clone();
    if let Some(dir) = sock.parent() {
        std::fs::create_dir_all(dir).map_err(|e| BindError::Dir(dir.to_path_buf(), e))?;
    }
    if sock.exists() {
        // A live daemon answers on it; a stale file is left by a crash.
        if std::os::unix::net::UnixStream::connect(&sock).is_ok() {
            return Err(BindError::InUse(sock));
        }
        std::fs::remove_file(&sock).map_err(|e| BindError::Stale(sock.clone(), e))?;
    }
    let mut staged = sock.clone().into_os_string();
    staged.push(".starting");
    let staged = PathBuf::from(staged);
    if staged.exists() {
        // Left by a start that failed before it served.
        std::fs::remove_file(&staged).map_err(|e| BindError::Stale(staged.clone(), e))?;
    }
    let control = tokio::net::UnixListener::bind(&staged)
        .map_err(|e| BindError::Socket(staged.clone(), e))?;
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| BindError::Socket(staged.clone(), e))?;
    let api = match plan.api.listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| BindError::Tcp(addr, e))?,
        ),
        None => None,
    };
    Ok(Listeners {
        control,
        control_path: sock,
        staged_at: Some(staged),
        api,
    })
}

/// How often the certificate files are checked for a change.
pub const TLS_POLL: Duration = Duration::from_secs(5);

/// The running servers: the control socket, and the TCP listener, which a
/// reload can rebuild.
pub struct Servers {
    control: tokio::task::JoinHandle<()>,
    tcp: Option<Tcp>,
    /// The TLS state, kept across reloads once TLS was on (its files may change).
    tls: Option<Arc<shield_enforce::Tls>>,
    tls_poll: Option<tokio::task::JoinHandle<()>>,
    /// The `[api]` the servers run now.
    api: ApiPlan,
    shared: Shared,
}

/// One accept loop on the TCP listener; told to stop, it returns the socket.
struct Tcp {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<tokio::net::TcpListener>,
    /// The gate's and bouncer API's state (stream cursors), carried over by a reload.
    state: shield_enforce::ApiState,
}

/// Why a new `[api]` was not applied; the old one keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum ApiReloadError {
    /// A key that only a restart applies.
    #[error("[api] {0} changed: restart the daemon to apply it (the running value stays)")]
    NeedsRestart(&'static str),
    /// The new listener could not be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The new certificate files did not load.
    #[error("[api] TLS: {0}; the previous certificate keeps serving")]
    Tls(#[from] shield_enforce::TlsError),
}

/// The control routes and the dashboard's data, identical on the socket and
/// (with a token) on TCP.
fn control(shared: &Shared) -> Router {
    crate::api::control_router(shared.clone()).merge(crate::web::api_router(shared.clone()))
}

/// The TCP listener's routes for `api`: gate, bouncer API, metrics,
/// dashboard, and the control API behind the token when one is set.
fn tcp_app(
    api: &ApiPlan,
    shared: &Shared,
    prev: Option<&shield_enforce::ApiState>,
) -> (Router, shield_enforce::ApiState) {
    let cfg = shield_enforce::ApiConfig {
        trusted_proxies: api.trusted_proxies.clone(),
        client_header: api.client_header.clone(),
        clock: shared.clock.clone(),
        // The pass cookie never leaves HTTPS when the listener is HTTPS.
        cookie_secure: api.tls.is_some(),
        ..Default::default()
    };
    // A reload keeps the bouncers' stream cursors: a bouncer pulling across it
    // still gets the unbans since its last pull.
    let state = match prev {
        Some(p) => p.reconfigured(cfg),
        None => shield_enforce::ApiState::new(shared.table.clone(), shared.auth.clone(), cfg),
    };
    let guesses = state.guesses();
    let mut app = shield_enforce::gate_router(state.clone())
        .merge(shield_enforce::bouncer_router(state.clone()))
        .merge(crate::scrape::router(shared.clone()))
        .merge(crate::web::ui_router(api.token.is_some()));
    if let Some(token) = api.token.clone() {
        app = app.merge(crate::api::behind_token(control(shared), token, guesses));
    }
    (crate::api::guarded(app, shared.counters.clone()), state)
}

/// Starts the accept loop for `api` on `listener`.
fn start_tcp(
    listener: tokio::net::TcpListener,
    api: &ApiPlan,
    shared: &Shared,
    tls: Option<Arc<shield_enforce::Tls>>,
    prev: Option<&shield_enforce::ApiState>,
) -> Tcp {
    let addr = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, scheme, "gate and bouncer API listening");
    let (app, state) = tcp_app(api, shared, prev);
    let limiter = shield_enforce::Limiter::new(api.limits.clone());
    shared.counters.edge.set_tcp_limiter(limiter.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        // The accept loop never ends by itself; `select!` drops it (and
        // with it only its borrow of the socket) when told to stop.
        let serve = async {
            match tls {
                Some(tls) => shield_enforce::serve_tls(&listener, app, limiter, tls).await,
                None => shield_enforce::serve_tcp(&listener, app, limiter).await,
            }
        };
        tokio::select! {
            () = serve => {}
            _ = stopped => {}
        }
        listener
    });
    Tcp {
        addr,
        stop,
        task,
        state,
    }
}

/// Re-reads the certificate files when one changes.
fn poll_tls(tls: Arc<shield_enforce::Tls>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TLS_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match tls.reload_if_changed() {
                Ok(true) => {
                    tracing::info!(cert = %tls.files().cert.display(), "TLS certificate reloaded")
                }
                Ok(false) => {}
                Err(e) => tracing::error!(
                    "TLS certificate not reloaded, the previous one keeps serving: {e:#}"
                ),
            }
        }
    })
}

/// Serves the control socket (moved to its configured path first, when it
/// was staged) and, when bound, the TCP listener.
pub fn serve(listeners: Listeners, plan: &Plan, shared: Shared) -> Result<Servers, BindError> {
    let Listeners {
        control: control_socket,
        control_path,
        staged_at,
        api,
    } = listeners;
    let tls = match &plan.api.tls {
        Some(files) => Some(shield_enforce::Tls::load(files.clone()).map_err(BindError::Tls)?),
        None => None,
    };
    if let Some(staged) = staged_at {
        std::fs::rename(&staged, &control_path)
            .map_err(|e| BindError::Socket(control_path.clone(), e))?;
    }
    // Root only (0600), but still bounded: a stuck CLI or script must not pile up connections.
    let socket_limits = shield_enforce::Limiter::new(shield_enforce::ListenLimits {
        trusted: Vec::new(),
        ..plan.api.limits.clone()
    });
    let control = tokio::spawn(shield_enforce::serve_unix(
        control_socket,
        control(&shared),
        socket_limits,
    ));
    let tcp = api.map(|tl| start_tcp(tl, &plan.api, &shared, tls.clone(), None));
    Ok(Servers {
        control,
        tcp,
        tls_poll: tls.clone().map(poll_tls),
        tls,
        api: plan.api.clone(),
        shared,
    })
}

impl Servers {
    /// The TCP listener's address, when there is one.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().map(|t| t.addr)
    }

    /// Applies `api`: the TCP listener's routes, token, proxies, limits and
    /// TLS (files re-read even when their paths did not change), and a new
    /// `listen` (bound before the old socket closes). Open connections finish
    /// on the settings they started with. On error nothing changed.
    pub async fn reload(
        &mut self,
        api: &ApiPlan,
    ) -> Result<crate::reload::Outcome, ApiReloadError> {
        if api.socket != self.api.socket {
            return Err(ApiReloadError::NeedsRestart("socket"));
        }
        if *api == self.api {
            // Same settings: the certificate files are read again all the same
            // (a renewed certificate at the same path).
            if let (Some(files), Some(tls)) = (&api.tls, &self.tls) {
                tls.reload(files.clone())?;
            }
            return Ok(crate::reload::Outcome::Same);
        }
        // Everything that can fail, first; the certificates last, as loading
        // them swaps them in.
        let moved = api.listen != self.api.listen;
        let mut fresh = None;
        if moved && let Some(addr) = api.listen {
            fresh = Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| BindError::Tcp(addr, e))?,
            );
        }
        let tls = match (&api.tls, &self.tls) {
            (None, _) => None,
            (Some(files), Some(tls)) => {
                tls.reload(files.clone())?;
                Some(tls.clone())
            }
            (Some(files), None) => Some(shield_enforce::Tls::load(files.clone())?),
        };
        // Then the swap: the old loop hands its socket back.
        let (old, prev) = match self.tcp.take() {
            Some(t) => {
                let _ = t.stop.send(());
                (t.task.await.ok(), Some(t.state))
            }
            None => (None, None),
        };
        let listener = if moved { fresh } else { old };
        self.tcp = listener.map(|l| start_tcp(l, api, &self.shared, tls.clone(), prev.as_ref()));
        if let Some(p) = self.tls_poll.take() {
            p.abort();
        }
        self.tls_poll = tls.clone().map(poll_tls);
        self.tls = tls.or(self.tls.take());
        self.api = api.clone();
        Ok(crate::reload::Outcome::Applied)
    }

    /// Stops every server (open connections end with the runtime).
    pub fn abort(self) {
        self.control.abort();
        if let Some(t) = self.tcp {
            t.task.abort();
        }
        if let Some(p) = self.tls_poll {
            p.abort();
        }
    }
}
