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

pub use crate::error::BindError;
use crate::plan::Plan;
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

/// The control routes and the dashboard's data, identical on the socket and
/// (with a token) on TCP.
fn control(shared: &Shared) -> Router {
    crate::api::control_router(shared.clone()).merge(crate::web::api_router(shared.clone()))
}

/// Serves the control socket (moved to its configured path first, when it
/// was staged) and, when bound, the TCP listener. Returns a handle that stops
/// them when aborted.
pub fn serve(
    listeners: Listeners,
    plan: &Plan,
    shared: Shared,
) -> Result<tokio::task::JoinHandle<()>, BindError> {
    let Listeners {
        control: control_socket,
        control_path,
        staged_at,
        api,
    } = listeners;
    if let Some(staged) = staged_at {
        std::fs::rename(&staged, &control_path)
            .map_err(|e| BindError::Socket(control_path.clone(), e))?;
    }
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
    Ok(tokio::spawn(async move {
        while set.join_next().await.is_some() {}
    }))
}
