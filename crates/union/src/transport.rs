//! The transport seam: how signed signals move between members. Two
//! transports implement it: direct HTTPS between members (`direct`) and NATS
//! JetStream (`nats`); the treaty's `[transport] kind` chooses one.
//!
//! A transport never decides trust: everything it receives goes to the
//! [`Sink`], which verifies signatures and applies the treaty. It only
//! delivers, fetches what is missing, and reports peer health.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::watch;

use crate::history::Gov;
use crate::signal::Envelope;
use crate::treaty::Canonical;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Per-origin highest contiguous sequence number a member holds.
pub type Have = BTreeMap<String, u64>;

/// Per origin, the inclusive sequence ranges a member holds above its [`Have`]
/// mark (at most [`crate::store::MAX_HELD_RANGES`] each), so a peer serves what
/// is missing past a gap instead of the same rows again.
pub type Held = BTreeMap<String, Vec<(u64, u64)>>;

/// What the union engine offers a transport.
pub trait Sink: Send + Sync + 'static {
    /// Signals from `via` (a peer, or `nats`): verify, store, enforce. Refusals
    /// are counted and logged inside. Returns false when the local store could
    /// not keep a signal it should have: the carrier should deliver it again.
    fn receive(&self, envs: Vec<Envelope>, via: &str) -> BoxFuture<'_, bool>;
    /// What this member holds, to ask peers for the rest.
    fn have(&self) -> (Have, Held);
    /// Signals above `have` and outside `held` this member can serve to a peer
    /// (relay), at most `limit`, shared fairly between origins.
    fn serve(&self, have: &Have, held: &Held, limit: usize, to: &str) -> Vec<Envelope>;
    /// Compare a peer's treaty with ours; `Err` lists the differences.
    fn check_treaty(&self, peer: &str, theirs: &Canonical) -> Result<(), Vec<String>>;
    /// A delivery to a peer succeeded (for counters).
    fn delivered(&self, n: usize);
    /// This member's treaty version (its history's current one).
    fn gov_version(&self) -> u64 {
        1
    }
    /// Treaty versions after `since` and amendments pending here, for a peer.
    fn gov_answer(&self, _since: u64) -> Gov {
        Gov::default()
    }
    /// A peer's versions and pending amendments: verify, merge, ratify.
    fn gov_absorb(&self, _from: &str, _gov: Gov) {}
}

/// How a peer looks from here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// This member itself.
    Local,
    /// Not contacted yet.
    Unknown,
    /// Reachable and running the same treaty.
    Up,
    /// Not reachable; the last error says why. Anti-entropy retries.
    Down,
    /// Reachable but runs another treaty; nothing is exchanged until it changes.
    TreatyMismatch,
}

#[derive(Debug, Clone, Serialize)]
pub struct PeerStatus {
    pub name: String,
    pub endpoint: String,
    pub health: Health,
    pub last_error: Option<String>,
    /// Unix time of the last successful exchange.
    pub last_ok: Option<i64>,
}

/// A way to move signals between members.
pub trait Transport: Send + Sync + 'static {
    /// Run until `shutdown` turns true: receive from peers into `sink`, deliver
    /// what [`Transport::push`] is given, and repair losses (anti-entropy) at
    /// start, on reconnect and periodically.
    fn run(
        self: Arc<Self>,
        sink: Arc<dyn Sink>,
        shutdown: watch::Receiver<bool>,
    ) -> BoxFuture<'static, ()>;
    /// Queue a newly signed signal for every peer. Must not block.
    fn push(&self, env: Envelope);
    /// Peer health for `status`.
    fn peers(&self) -> Vec<PeerStatus>;
}
