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

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use axum::Router;

use crate::plan::Plan;
use crate::state::Shared;

/// The sockets the daemon serves on, bound before it starts.
pub struct Listeners {
    /// The control socket.
    pub control: tokio::net::UnixListener,
    /// Its path, removed when the daemon stops.
    pub control_path: PathBuf,
    /// `[api] listen`, when set.
    pub api: Option<tokio::net::TcpListener>,
}

/// Why a listener could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The socket's directory could not be created.
    #[error("creating {0} for the control socket (set [api] socket to a writable place)")]
    Dir(PathBuf, #[source] std::io::Error),
    /// A daemon already answers on the socket.
    #[error("another shield daemon is answering on {0}; stop it first (or set [api] socket)")]
    InUse(PathBuf),
    /// A stale socket file could not be removed.
    #[error("removing the stale control socket {0}")]
    Stale(PathBuf, #[source] std::io::Error),
    /// The control socket could not be bound or restricted to root.
    #[error("binding the control socket {0} (mode 0600)")]
    Socket(PathBuf, #[source] std::io::Error),
    /// The TCP listener could not be bound.
    #[error("binding the API listener {0} ([api] listen): is another process on that port?")]
    Tcp(std::net::SocketAddr, #[source] std::io::Error),
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
    let control =
        tokio::net::UnixListener::bind(&sock).map_err(|e| BindError::Socket(sock.clone(), e))?;
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| BindError::Socket(sock.clone(), e))?;
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
        api,
    })
}

/// The control routes and the dashboard's data, identical on the socket and
/// (with a token) on TCP.
fn control(shared: &Shared) -> Router {
    crate::api::control_router(shared.clone()).merge(crate::web::api_router(shared.clone()))
}

/// Serves the control socket and, when bound, the TCP listener. Returns a
/// handle that stops them when aborted.
pub fn serve(
    control_socket: tokio::net::UnixListener,
    api: Option<tokio::net::TcpListener>,
    plan: &Plan,
    shared: Shared,
) -> tokio::task::JoinHandle<()> {
    let mut set = tokio::task::JoinSet::new();
    // Root only (0600), but still bounded: a stuck CLI or script must not pile up connections.
    let socket_limits = shield_enforce::Limiter::new(shield_enforce::ListenLimits {
        trusted: Vec::new(),
        ..plan.api.limits.clone()
    });
    set.spawn(shield_enforce::serve_unix(
        control_socket,
        control(&shared),
        socket_limits,
    ));

    if let Some(tl) = api {
        let cfg = shield_enforce::ApiConfig {
            trusted_proxies: plan.api.trusted_proxies.clone(),
            client_header: plan.api.client_header.clone(),
            clock: shared.clock.clone(),
            ..Default::default()
        };
        let state = shield_enforce::ApiState::new(shared.table.clone(), shared.auth.clone(), cfg);
        let guesses = state.guesses();
        let mut app = shield_enforce::gate_router(state.clone())
            .merge(shield_enforce::bouncer_router(state))
            .merge(crate::scrape::router(shared.clone()))
            .merge(crate::web::ui_router(plan.api.token.is_some()));
        if let Some(token) = plan.api.token.clone() {
            app = app.merge(crate::api::behind_token(control(&shared), token, guesses));
        }
        if let Ok(addr) = tl.local_addr() {
            tracing::info!(%addr, "gate and bouncer API listening");
        }
        let app = crate::api::guarded(app, shared.counters.clone());
        let limiter = shield_enforce::Limiter::new(plan.api.limits.clone());
        shared.counters.edge.set_tcp_limiter(limiter.clone());
        set.spawn(shield_enforce::serve_tcp(tl, app, limiter));
    }
    tokio::spawn(async move { while set.join_next().await.is_some() {} })
}
