//! Why the running daemon could not start or keep going: one typed error
//! for `run` and the parts it starts (store, listeners, layer, union,
//! readers), each naming what failed and what to do. A leaf: it names other
//! crates' errors and the store's, nothing that runs.

use std::path::PathBuf;

use crate::store::StoreError;

/// An error of the running daemon. Printed with `{:#}`, the cause follows.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The store could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The firewall layer could not start.
    #[error("starting the {layer} layer{hint}")]
    Layer {
        layer: &'static str,
        /// What to check, when there is a usual cause.
        hint: &'static str,
        #[source]
        source: shield_enforce::LayerError,
    },
    /// The layer would not take the store's decisions at start.
    #[error("reconciling the {layer} layer with the store")]
    Reconcile {
        layer: String,
        #[source]
        source: shield_enforce::LayerError,
    },
    /// The union member could not start (treaty, key, transport, store).
    #[error("starting the union member `{member}`")]
    Union {
        member: String,
        #[source]
        source: shield_union::UnionError,
    },
    /// A pipeline's rules or scenarios did not build (the plan checks them:
    /// this is a config that changed between the plan and the start).
    #[error("pipeline `{pipeline}`: {reason}")]
    Engine { pipeline: String, reason: String },
    /// A source could not be opened.
    #[error("source `{source_name}`")]
    Source {
        source_name: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A listener could not be put in place.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// A thread could not be spawned (out of memory or process limits).
    #[error("starting the `{0}` thread (check the process and memory limits)")]
    Thread(String, #[source] std::io::Error),
    /// The decision thread ended or stopped answering.
    #[error("the decision thread {0}; restart the daemon and check the log for its last error")]
    DecisionThread(&'static str),
    /// The control socket could not be removed at stop.
    #[error("removing the control socket {0}")]
    Socket(PathBuf, #[source] std::io::Error),
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
    /// The certificate, key or client CA of `[api]` did not load.
    #[error("[api] TLS")]
    Tls(#[source] shield_enforce::TlsError),
}
