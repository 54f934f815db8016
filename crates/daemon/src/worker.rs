//! The decision thread: the store's one writer and the firewall's one driver.
//! It takes [`Msg`]s from the readers, the API and the union, decides through
//! the [`Decider`], commits alerts, decisions and checkpoints in one
//! transaction, applies the changes to the layer and the in-memory table, and
//! sweeps expired decisions and old rows.
//!
//! Durability: a reader never saves its own checkpoint. It hands its alerts
//! *and* the checkpoint after the lines that produced them to this thread,
//! which commits both in one SQLite transaction. A crash before the commit
//! re-reads those lines on restart and decides them then; a crash after it
//! resumes after them. No line is lost or decided twice.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use shield_core::{Alert, Checkpoint, Clock, Decision, UnixTime};
use shield_enforce::{Change, DecisionTable, Firewall};

use crate::config::Backend;
use crate::decide::{Decider, Outcome};
use crate::error::RunError;
use crate::plan::Plan;
use crate::state::{Counters, Msg, SourceStatus, Which};
use crate::store::{Store, StoreError};

/// Builds the firewall layer the plan chose.
pub fn build_firewall(plan: &Plan) -> Result<Box<dyn Firewall>, RunError> {
    let f = &plan.firewall;
    Ok(match f.backend {
        Backend::Nftables | Backend::Auto => shield_enforce::nftables(shield_enforce::NftOptions {
            table: f.table.clone(),
            forward: f.forward,
            priority: f.priority,
            netns: f.netns.clone(),
            netlink: f.netlink,
        })
        .map_err(|source| RunError::Layer {
            layer: "nftables",
            hint: " (is the `nftables` package installed and are we root?)",
            source,
        })?,
        Backend::Ipset => {
            shield_enforce::ipset(shield_enforce::IpsetOptions::default()).map_err(|source| {
                RunError::Layer {
                    layer: "ipset",
                    hint: "",
                    source,
                }
            })?
        }
        Backend::DryRun => shield_enforce::dry_run(),
        Backend::None => shield_enforce::dry_run(),
    })
}

/// Ends decisions at `t` in one transaction: the one `which` names, or every
/// one in force on its target. Returns those that were in force (the ones a
/// layer must drop). The one delete path: the decision thread runs it for
/// the API, `shield decisions delete` when no daemon runs.
pub fn end_decisions(
    store: &mut Store,
    which: &Which,
    t: UnixTime,
) -> Result<Vec<Decision>, StoreError> {
    store.atomically(|s| {
        let ids: Vec<i64> = match which {
            Which::Id(id) => vec![*id],
            Which::Target(net) => s.active_for(net, t)?.iter().map(|d| d.id).collect(),
        };
        let mut out = Vec::new();
        for id in ids {
            if let Some(d) = s.delete_decision(id, t)?
                && d.is_active(t)
            {
                out.push(d);
            }
        }
        Ok(out)
    })
}

/// The decision thread: sole writer of the store, sole driver of the firewall.
pub struct DecisionWorker {
    pub store: Store,
    pub decider: Decider,
    pub firewall: Box<dyn Firewall>,
    pub table: Arc<RwLock<DecisionTable>>,
    pub counters: Arc<Counters>,
    pub sources: Arc<Mutex<BTreeMap<String, SourceStatus>>>,
    /// Local decisions go here to be signed and shared with the union, and
    /// deleted ones to be pardoned there.
    pub publish: Option<tokio::sync::mpsc::UnboundedSender<crate::union::ToUnion>>,
    pub keep: Duration,
    pub forget: Duration,
    /// Time for decisions, expiry sweeps and the hourly prune.
    pub clock: Clock,
}

impl DecisionWorker {
    fn apply(&mut self, changes: &[Change], now: UnixTime) {
        if changes.is_empty() {
            return;
        }
        self.table
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .apply(changes);
        let started = Instant::now();
        let res = self.firewall.apply(changes, now);
        self.counters
            .metrics
            .firewall_apply
            .observe(crate::metrics::secs(started.elapsed()));
        if let Err(e) = res {
            self.counters
                .firewall_errors
                .fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, layer = self.firewall.name(), "firewall batch failed; the store keeps the decisions and the next start reconciles");
        }
    }

    /// Fills `new` with the decisions in force (one transaction), then makes
    /// it the layer; the old one is torn down only after, and only when
    /// `teardown_old` (another table, backend or namespace). Bans stay in the
    /// kernel throughout: the old layer's elements until the new one holds them.
    fn swap_firewall(
        &mut self,
        mut new: Box<dyn Firewall>,
        teardown_old: bool,
        now: UnixTime,
    ) -> Result<(), RunError> {
        let active = self.store.active_decisions(now)?;
        new.reconcile(&active, now)
            .map_err(|source| RunError::Reconcile {
                layer: new.name().to_string(),
                source,
            })?;
        let mut old = std::mem::replace(&mut self.firewall, new);
        if teardown_old && let Err(e) = old.teardown() {
            tracing::warn!(error = %e, layer = old.name(), "the previous firewall layer was not removed; remove it by hand");
        }
        Ok(())
    }

    /// Reconciles the layers with the store (at start).
    pub fn reconcile(&mut self, now: UnixTime) -> Result<usize, RunError> {
        let active = self.store.active_decisions(now)?;
        let adds: Vec<Change> = active.iter().cloned().map(Change::Add).collect();
        self.table
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .apply(&adds);
        self.firewall
            .reconcile(&active, now)
            .map_err(|source| RunError::Reconcile {
                layer: self.firewall.name().to_string(),
                source,
            })?;
        Ok(active.len())
    }

    fn on_batch(
        &mut self,
        pipeline: &str,
        alerts: Vec<Alert>,
        cps: Vec<(String, Checkpoint)>,
        cursor: Option<(String, String)>,
        lines: u64,
        matched: u64,
        now: UnixTime,
    ) {
        let decider = &self.decider;
        // Each decision made or lengthened, and whether it is new: the
        // decider knows, so nothing downstream recomputes it.
        let mut decided: Vec<(Decision, bool)> = Vec::new();
        let mut to_publish = Vec::new();
        let mut allowlisted = 0u64;
        let started = Instant::now();
        let res = self.store.atomically(|s| {
            for a in &alerts {
                let out = decider.on_alert(s, a, now)?;
                let id = match out {
                    Outcome::New(d) => {
                        to_publish.push((d.clone(), a.evidence.clone()));
                        let id = d.id;
                        decided.push((d, true));
                        Some(id)
                    }
                    Outcome::Extended(d) => {
                        let id = d.id;
                        decided.push((d, false));
                        Some(id)
                    }
                    Outcome::Covered(id) => Some(id),
                    Outcome::AlertOnly => None,
                    Outcome::Allowlisted(net) => {
                        allowlisted += 1;
                        tracing::info!(target = %a.target, allowlisted_by = %net, scenario = %a.scenario, "alert on an allowlisted address: no decision");
                        None
                    }
                };
                s.insert_alert(a, id)?;
            }
            s.save_checkpoints(pipeline, &cps, now)?;
            if let Some((k, c)) = &cursor {
                s.set_meta(k, c)?;
            }
            s.add_counter(&format!("lines:{pipeline}"), lines)?;
            s.add_counter(&format!("matched:{pipeline}"), matched)?;
            Ok(())
        });
        if let Err(e) = res {
            // Nothing was committed: neither the decisions nor the checkpoint,
            // so the lines are read again after a restart.
            self.counters.store_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "store commit failed; these lines will be decided again after restart");
            return;
        }
        let m = &self.counters.metrics;
        m.batch_commit
            .observe(crate::metrics::secs(started.elapsed()));
        for a in &alerts {
            m.alert(&a.scenario);
        }
        self.counters
            .allowlisted
            .fetch_add(allowlisted, Ordering::Relaxed);
        for (d, new) in &decided {
            self.count_decision(d, *new);
        }
        let changes: Vec<Change> = decided.into_iter().map(|(d, _)| Change::Add(d)).collect();
        self.apply(&changes, now);
        if let Some(p) = &self.publish {
            for (d, evidence) in to_publish {
                let _ = p.send(crate::union::ToUnion::Publish(d, evidence));
            }
        }
        if let Ok(mut s) = self.sources.lock()
            && let Some(st) = s.get_mut(pipeline)
        {
            st.alerts += alerts.len() as u64;
        }
    }

    /// Counts a decision made (`new`) or lengthened, in the counters and the
    /// metrics, logs it, and hands a new one to the notification sinks. The one place
    /// both the alert path and the operator/union path count through.
    fn count_decision(&self, d: &Decision, new: bool) {
        let m = &self.counters.metrics;
        if new {
            m.decision(d, "new");
            self.counters.decisions_new.fetch_add(1, Ordering::Relaxed);
            self.counters.notify.send(d);
        } else {
            m.decision(d, "extended");
            self.counters
                .decisions_extended
                .fetch_add(1, Ordering::Relaxed);
        }
        tracing::info!(target = %d.target, r#type = %d.kind, scenario = %d.scenario, duration_s = d.duration_s(), new, "decision");
    }

    /// Takes a reloaded `[decisions]` policy, with its offence horizon.
    fn set_policy(&mut self, d: Decider) {
        self.forget = d.escalation.forget;
        self.decider = d;
    }

    /// Runs until `Msg::Stop` or every sender is gone.
    pub fn run(mut self, rx: mpsc::Receiver<Msg>) {
        let mut swept = self.clock.now();
        let mut pruned = self.clock.instant();
        loop {
            let msg = rx.recv_timeout(Duration::from_millis(500));
            let t = self.clock.now();
            self.counters.heartbeat.store(t, Ordering::Relaxed);
            match msg {
                Ok(Msg::Batch {
                    pipeline,
                    alerts,
                    checkpoints,
                    lines,
                    matched,
                    cursor,
                }) => self.on_batch(&pipeline, alerts, checkpoints, cursor, lines, matched, t),
                Ok(Msg::Admit { decision, reply }) => {
                    let res = self
                        .store
                        .atomically(|s| self.decider.admit(s, decision, t));
                    match &res {
                        Ok(Outcome::New(d)) | Ok(Outcome::Extended(d)) => {
                            self.count_decision(d, matches!(res, Ok(Outcome::New(_))));
                            let c = [Change::Add(d.clone())];
                            self.apply(&c, t);
                        }
                        Ok(Outcome::Allowlisted(_)) => {
                            self.counters.allowlisted.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                    if let Some(r) = reply {
                        let _ = r.send(res);
                    }
                }
                Ok(Msg::Delete { which, reply }) => {
                    let res = end_decisions(&mut self.store, &which, t);
                    if let Ok(ds) = &res {
                        let c: Vec<Change> = ds.iter().cloned().map(Change::Remove).collect();
                        self.apply(&c, t);
                        // An operator's delete sticks: the union ignores the target for a while.
                        if let Some(p) = &self.publish {
                            for d in ds {
                                let _ = p.send(crate::union::ToUnion::Pardon(d.target, d.expires));
                            }
                        }
                    }
                    let _ = reply.send(res);
                }
                Ok(Msg::Policy(d)) => self.set_policy(d),
                Ok(Msg::Firewall {
                    layer,
                    teardown_old,
                    reply,
                }) => {
                    let _ = reply.send(self.swap_firewall(layer, teardown_old, t));
                }
                Ok(Msg::List { update, reply }) => {
                    let started = Instant::now();
                    let res = crate::lists::refresh(&mut self.store, &self.decider, &update, t);
                    let res = res.map(|(mut diff, changes)| {
                        diff.store_ms = started.elapsed().as_millis() as u64;
                        // One batch for the layers, however long the list.
                        let started = Instant::now();
                        self.apply(&changes, t);
                        diff.apply_ms = started.elapsed().as_millis() as u64;
                        diff
                    });
                    if let Err(e) = &res {
                        self.counters.store_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(list = %update.name, error = %e, "store commit of a list failed; its previous contents stay");
                    }
                    let _ = reply.send(res);
                }
                Ok(Msg::Bouncer {
                    name,
                    key_hash,
                    reply,
                }) => {
                    let res = match &key_hash {
                        Some(h) => self.store.add_bouncer(&name, h, t),
                        None => self.store.delete_bouncer(&name),
                    };
                    let _ = reply.send(res);
                }
                Ok(Msg::LastPull(pulls)) => {
                    let res = self.store.atomically(|s| {
                        pulls
                            .iter()
                            .try_for_each(|(name, at)| s.set_last_pull(name, *at))
                    });
                    if let Err(e) = res {
                        tracing::warn!(error = %e, "recording the bouncers' last pulls failed");
                    }
                }
                Ok(Msg::Checkpoints(reply)) => {
                    let _ = reply.send(self.store.load_checkpoints());
                }
                Ok(Msg::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            // Sweep decisions that ended out of the in-memory table (the
            // kernel expires its own elements by their timeouts).
            if t > swept {
                if let Ok(ended) = self.store.ended_between(swept, t) {
                    let c: Vec<Change> = ended.into_iter().map(Change::Remove).collect();
                    let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
                    if !c.is_empty() {
                        table.apply(&c);
                    }
                    table.purge_expired(t);
                }
                swept = t;
            }
            if self.clock.elapsed(pruned) > Duration::from_secs(3600) {
                pruned = self.clock.instant();
                match self
                    .store
                    .prune(t, self.keep.as_secs(), self.forget.as_secs())
                {
                    Ok(n) if n > 0 => tracing::info!(rows = n, "pruned old rows from the store"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "pruning the store failed"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The offence horizon used to prune the store follows a reloaded
    /// `[decisions]` policy (it was fixed at start).
    #[test]
    fn reloaded_policy_moves_the_offence_horizon() {
        let dir = tempfile::tempdir().unwrap();
        let old = crate::readers::tests::plan_for(dir.path(), "");
        let new = crate::readers::tests::plan_for(
            dir.path(),
            "[decisions.escalation]\nforget = \"3d\"\n",
        );
        assert_ne!(old.decider.escalation.forget, new.decider.escalation.forget);
        let mut w = DecisionWorker {
            store: Store::open(&old.store_path).unwrap(),
            decider: old.decider.clone(),
            firewall: shield_enforce::dry_run(),
            table: Default::default(),
            counters: Default::default(),
            sources: Default::default(),
            publish: None,
            keep: old.keep,
            forget: old.decider.escalation.forget,
            clock: Clock::system(),
        };
        w.set_policy(new.decider.clone());
        assert_eq!(w.forget, new.decider.escalation.forget);
    }

    /// The one delete path ends a decision by target or by id, returns only
    /// decisions that were in force, and ends each once.
    #[test]
    fn end_decisions_by_target_and_by_id() {
        let dir = tempfile::tempdir().unwrap();
        let plan = crate::readers::tests::plan_for(dir.path(), "");
        let mut store = Store::open(&plan.store_path).unwrap();
        let t = 1_000_000;
        let mut admit = |target: &str| {
            let req: crate::api::AddRequest =
                serde_json::from_value(serde_json::json!({ "target": target })).unwrap();
            let d = crate::api::manual_decision(&req, t).unwrap();
            match store.atomically(|s| plan.decider.admit(s, d, t)).unwrap() {
                Outcome::New(d) => d,
                o => panic!("{o:?}"),
            }
        };
        let a = admit("203.0.113.9");
        let b = admit("198.51.100.1");
        let by_target = Which::Target(a.target);
        let ended = end_decisions(&mut store, &by_target, t + 1).unwrap();
        assert_eq!(ended.iter().map(|d| d.id).collect::<Vec<_>>(), [a.id]);
        assert!(
            end_decisions(&mut store, &by_target, t + 2)
                .unwrap()
                .is_empty()
        );
        let ended = end_decisions(&mut store, &Which::Id(b.id), t + 3).unwrap();
        assert_eq!(ended.iter().map(|d| d.id).collect::<Vec<_>>(), [b.id]);
        assert!(
            end_decisions(&mut store, &Which::Id(b.id), t + 4)
                .unwrap()
                .is_empty()
        );
        assert!(store.active_decisions(t + 5).unwrap().is_empty());
    }
}
