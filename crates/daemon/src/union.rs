//! Glue between the daemon and the union: local decisions out (signed and
//! shared by `shield-union`), trusted peer decisions in (through the same
//! decision stage as every other origin, so the local allowlist still wins).

use std::sync::mpsc;
use std::time::Duration;

use shield_core::{Clock, Decision};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use crate::error::RunError;
use crate::plan::Plan;
use crate::state::{Msg, UnionView};

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

/// A started union; empty without `[union]`.
#[derive(Default)]
pub struct Started {
    /// Where the decision thread sends local decisions to share and deleted
    /// ones to pardon.
    pub publish: Option<Publish>,
    /// The task moving decisions in and out; abort it to stop.
    pub task: Option<JoinHandle<()>>,
    /// The member, for status readers.
    pub view: UnionView,
}

/// Starts the union when the config has a `[union]` table, on `clock` (the
/// member judges signals, dates pardons and prunes at its time).
pub async fn start(plan: &Plan, tx: mpsc::Sender<Msg>, clock: Clock) -> Result<Started, RunError> {
    let Some(u) = &plan.union else {
        return Ok(Started::default());
    };
    // Trusted peer decisions go straight to the decision thread, through the
    // same `Msg::Admit` as an operator's: one channel, no relay task.
    let inbound = shield_union::Inbound::call(move |d: Decision| {
        tx.send(Msg::Admit {
            decision: d,
            reply: None,
        })
        .is_ok()
    });
    let cfg = shield_union::UnionConfig {
        name: u.member.clone(),
        key_path: u.key.clone(),
        treaty_path: u.treaty.clone(),
        listen: u.listen,
        db_path: plan.store_path.clone(),
    };
    let handle =
        shield_union::UnionHandle::start_with_clock(cfg.clone(), inbound.clone(), clock.clone())
            .await
            .map_err(|source| RunError::Union {
                member: u.member.clone(),
                source,
            })?;
    let view = UnionView::new(handle);
    let (pub_tx, mut pub_rx) = tokio::sync::mpsc::unbounded_channel::<ToUnion>();
    let task_view = view.clone();
    let task = tokio::spawn(async move {
        let view = task_view;
        // Only to notice a changed treaty or key file: the status is read
        // from the member when asked.
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut seen = stamp(&cfg);
        let mut retry = false;
        loop {
            tokio::select! {
                m = pub_rx.recv() => {
                    // The decision thread dropped its sender: it is gone.
                    let Some(m) = m else { break };
                    view.with(|h| match m {
                        ToUnion::Publish(d, ev) => {
                            if let Err(e) = h.publish(&d, &ev) {
                                tracing::warn!(error = %e, target = %d.target, "could not share the decision with the union");
                            }
                        }
                        ToUnion::Pardon(net, expires) => {
                            let until = expires.max(clock.now() + h.pardon_span().as_secs() as i64);
                            match h.pardon(net, Some(until)) {
                                Ok(()) => tracing::info!(target = %net, until, "deleted locally: union signals for it are ignored on this member until then"),
                                Err(e) => tracing::warn!(error = %e, target = %net, "could not pardon the deleted target in the union; its next signal bans it again"),
                            }
                        }
                    });
                }
                _ = tick.tick() => {
                    let now = stamp(&cfg);
                    if now != seen || retry {
                        seen = now;
                        // Out of the view while it restarts: status readers see no union meanwhile.
                        let mut handle = view.take();
                        retry = reload(&cfg, &inbound, &clock, &mut handle).await;
                        if let Some(h) = handle {
                            view.put(h);
                        }
                    }
                }
            }
        }
        if let Some(h) = view.take() {
            h.shutdown().await;
        }
    });
    Ok(Started {
        publish: Some(pub_tx),
        task: Some(task),
        view,
    })
}

type Stamp = Option<(std::time::SystemTime, u64)>;

/// When a file was last changed (and its size).
fn file_stamp(p: &std::path::Path) -> Stamp {
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// The treaty's and the key's stamps: a new treaty version, or the new key
/// file installed after a ratified key rotation, restarts the union.
fn stamp(cfg: &shield_union::UnionConfig) -> (Stamp, Stamp) {
    (file_stamp(&cfg.treaty_path), file_stamp(&cfg.key_path))
}

/// The treaty file changed (e.g. `shield union ratify` installed a new
/// version): if it is valid for this member and has another digest, restart
/// the union on it (same key, store and listener). A treaty that does not
/// check keeps the running union; a member without a running union retries.
/// Returns true when a restart failed and should be tried again.
async fn reload(
    cfg: &shield_union::UnionConfig,
    inbound: &shield_union::Inbound,
    clock: &Clock,
    handle: &mut Option<shield_union::UnionHandle>,
) -> bool {
    let digest = match shield_union::UnionHandle::check(cfg) {
        Ok((t, _)) => t.digest_hex(),
        Err(
            e @ (shield_union::UnionError::SelfRevoked(_)
            | shield_union::UnionError::NotMember { .. }),
        ) => {
            tracing::error!(error = %e, "the union's new treaty removes this member; the union stops here");
            if let Some(h) = handle.take() {
                h.shutdown().await;
            }
            return false;
        }
        Err(e) => {
            tracing::error!(error = %e, "the union's treaty changed but cannot be used; the union keeps its current treaty");
            return false;
        }
    };
    if handle
        .as_ref()
        .is_some_and(|h| h.treaty().digest_hex() == digest)
    {
        return false;
    }
    if let Some(h) = handle.take() {
        h.shutdown().await;
    }
    match shield_union::UnionHandle::start_with_clock(cfg.clone(), inbound.clone(), clock.clone())
        .await
    {
        Ok(h) => {
            tracing::info!(digest = %digest, "union restarted on the new treaty version");
            *handle = Some(h);
            false
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot restart the union on the new treaty (retrying every second)");
            true
        }
    }
}
