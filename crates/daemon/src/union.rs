//! Glue between the daemon and the union: local decisions out (signed and
//! shared by `shield-union`), trusted peer decisions in (through the same
//! decision stage as every other origin, so the local allowlist still wins).

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use shield_core::Decision;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use crate::plan::Plan;
use crate::run::Msg;

/// What the decision thread asks of the union.
pub enum ToUnion {
    /// A local decision with its evidence: sign and share it if its scenario binds.
    Publish(Decision, Vec<String>),
    /// An operator deleted a decision for this target (it would have ended at the
    /// given time): ignore union signals for it until then, and at least for the
    /// treaty's longest decision, so the next signal does not ban it again.
    Pardon(shield_core::Net, shield_core::UnixTime),
}

type Publish = UnboundedSender<ToUnion>;

/// Starts the union when the config has a `[union]` table.
pub async fn start(
    plan: &Plan,
    tx: mpsc::Sender<Msg>,
    status: Arc<Mutex<Option<serde_json::Value>>>,
) -> anyhow::Result<(Option<Publish>, Option<JoinHandle<()>>)> {
    let Some(u) = &plan.union else {
        return Ok((None, None));
    };
    let (in_tx, mut in_rx) = tokio::sync::mpsc::channel::<Decision>(4096);
    let cfg = shield_union::UnionConfig {
        name: u.member.clone(),
        key_path: u.key.clone(),
        treaty_path: u.treaty.clone(),
        listen: u.listen,
        db_path: plan.store_path.clone(),
    };
    let handle = shield_union::UnionHandle::start(cfg, in_tx)
        .await
        .with_context(|| format!("starting the union member `{}`", u.member))?;
    let (pub_tx, mut pub_rx) = tokio::sync::mpsc::unbounded_channel::<ToUnion>();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                Some(d) = in_rx.recv() => {
                    if tx.send(Msg::Admit { decision: d, reply: None }).is_err() { break; }
                }
                Some(m) = pub_rx.recv() => match m {
                    ToUnion::Publish(d, ev) => {
                        if let Err(e) = handle.publish(&d, &ev) {
                            tracing::warn!(error = %e, target = %d.target, "could not share the decision with the union");
                        }
                    }
                    ToUnion::Pardon(net, expires) => {
                        let until = expires.max(shield_core::wall_now() + handle.pardon_span().as_secs() as i64);
                        match handle.pardon(net, Some(until)) {
                            Ok(()) => tracing::info!(target = %net, until, "deleted locally: union signals for it are ignored on this member until then"),
                            Err(e) => tracing::warn!(error = %e, target = %net, "could not pardon the deleted target in the union; its next signal bans it again"),
                        }
                    }
                },
                _ = tick.tick() => {
                    let s = serde_json::to_value(handle.status()).ok();
                    *status.lock().unwrap_or_else(|p| p.into_inner()) = s;
                }
            }
        }
        handle.shutdown().await;
    });
    Ok((Some(pub_tx), Some(task)))
}
