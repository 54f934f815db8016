//! shield-enforce: the layers where a decision takes effect.
//!
//! It owns three things and nothing else:
//! - **firewall backends** ([`Firewall`]): nftables (netlink transactions into
//!   the `inet shield` table, `nft -f -` as fallback), iptables + ipset, and a
//!   dry-run backend;
//! - the **in-memory decision table** ([`DecisionTable`]) that the HTTP layers
//!   read, never the database;
//! - the **HTTP layers**: the forward-auth gate ([`gate_router`]) for nginx
//!   `auth_request`, Traefik ForwardAuth and Caddy `forward_auth`, and the
//!   CrowdSec-compatible bouncer API ([`bouncer_router`]), and the accept loop
//!   that serves them within per-peer, total and header-time limits
//!   ([`serve_tcp`], [`Limiter`]), over TLS with optional client
//!   certificates when configured ([`serve_tls`], [`Tls`]).
//!
//! It does not own configuration files, the store, or the run loop: the daemon
//! adds a decision to the store, then hands the same batch of [`Change`]s to
//! the [`DecisionTable`] and to the [`Firewall`].

mod api;
mod auth;
mod client;
mod firewall;
mod gate;
mod ipset;
mod listener;
mod netlink;
mod nft;
mod table;
mod tls;

pub use api::{ApiConfig, ApiState, ApiStats, bouncer_router, format_go_duration, loopback};
pub use auth::{
    BouncerAuth, Guesses, KeyRing, MIN_SECRET_BITS, generate_api_key, hash_api_key, secret_bits,
};
pub use client::ClientHeader;
pub use firewall::{Change, DryRun, Firewall, LayerError, dry_run};
pub use gate::gate_router;
pub use ipset::{IpsetOptions, ipset};
pub use listener::{Limiter, ListenLimits, ListenStats, serve_tcp, serve_tls, serve_unix};
pub use nft::{NftOptions, nftables};
pub use table::DecisionTable;
pub use tls::{ClientCert, DEFAULT_CLIENT_OU, Tls, TlsError, TlsFiles, server_config};

pub use shield_core::UnixTime;
