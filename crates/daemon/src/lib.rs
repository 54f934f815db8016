//! shield-daemon: config → plan → running graph. Owns the store, the
//! decision stage, the reader threads, the control API, reload and shutdown.
//! The `shield` binary is a thin CLI over this crate.

pub mod api;
pub mod client;
pub mod config;
pub mod crowdsec;
pub mod decide;
pub mod error;
pub mod fail2ban;
pub mod feed;
pub mod journald;
pub mod lag;
pub mod lists;
pub mod metrics;
pub mod notify;
pub mod plan;
pub mod readers;
pub mod reload;
pub mod replay;
pub mod run;
pub mod scrape;
pub mod sd_notify;
pub mod server;
pub mod state;
pub mod store;
pub mod syslog;
pub mod union;
pub mod web;
pub mod worker;
