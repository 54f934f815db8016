//! The running daemon, wired: [`run`] takes a plan, the listeners the caller
//! bound and a channel of [`Control`] messages, and starts the decision
//! thread (`worker`), one reader thread per pipeline (`readers`), the servers
//! (`server`), the union and the notification sinks; it stops them in order when told
//! to or when the channel closes. It handles no signal and binds no socket:
//! the binary turns SIGTERM/SIGINT into [`Control::Stop`] and SIGHUP into a
//! re-planned [`Control::Reload`], and a test starts the whole daemon
//! in-process on `127.0.0.1:0` with a manual clock.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use shield_core::Clock;
use shield_enforce::DecisionTable;

use crate::error::RunError;
use crate::plan::Plan;
use crate::readers::{restart_readers, start_reader, stop_readers};
use crate::server::Listeners;
use crate::state::{Counters, KeyAuth, Msg, Shared};
use crate::store::Store;
use crate::worker::{DecisionWorker, build_firewall};

/// What the caller tells a running daemon.
pub enum Control {
    /// Apply a new plan: the readers and the decision policy restart on it,
    /// and `[api]`, `[firewall]`, `[webhook]` and `[[notify]]`/`[[action]]` are applied in place (see
    /// `reload`); `[store]`, `[api] socket`, `[firewall] priority` and
    /// `[union]` need a restart, which the log says, naming the key.
    Reload(Box<Plan>),
    /// Stop the readers, commit what they read, and return.
    Stop,
}

/// Runs the daemon on `plan` until [`Control::Stop`] arrives or `control`
/// closes. Decisions, expiry and timestamps follow `clock`.
pub async fn run(
    plan: Plan,
    listeners: Listeners,
    mut control: tokio::sync::mpsc::Receiver<Control>,
    clock: Clock,
) -> Result<(), RunError> {
    let store = Store::open(&plan.store_path)?;
    let reader_store = Store::open(&plan.store_path)?;
    let mut saved = store.load_checkpoints()?;
    let auth = Arc::new(KeyAuth::new(clock.clone()));
    auth.load(&store);
    let table = Arc::new(RwLock::new(DecisionTable::new()));
    let counters = Arc::new(Counters::default());
    counters.heartbeat.store(clock.now(), Ordering::Relaxed);
    let sources = Arc::new(Mutex::new(BTreeMap::new()));
    let firewall = build_firewall(&plan)?;
    let fw_name = firewall.name().to_string();
    let (tx, rx) = mpsc::channel::<Msg>();

    // The union, when configured.
    let union = crate::union::start(&plan, tx.clone(), clock.clone()).await?;

    let mut worker = DecisionWorker {
        store,
        decider: plan.decider.clone(),
        firewall,
        table: table.clone(),
        counters: counters.clone(),
        sources: sources.clone(),
        publish: union.publish,
        keep: plan.keep,
        forget: plan.decider.escalation.forget,
        clock: clock.clone(),
    };
    let n = worker.reconcile(clock.now())?;
    tracing::info!(active = n, layer = %fw_name, "layers reconciled with the store");
    let decision_thread = std::thread::Builder::new()
        .name("decide".into())
        .spawn(move || worker.run(rx))
        .map_err(|e| RunError::Thread("decide".into(), e))?;

    let shared = Shared {
        tx: tx.clone(),
        table: table.clone(),
        reader: Arc::new(Mutex::new(reader_store)),
        sources: sources.clone(),
        counters,
        auth,
        started: clock.now(),
        config_file: plan.config_file.clone(),
        firewall: fw_name,
        union: union.view,
        clock: clock.clone(),
    };
    let control_path = listeners.control_path.clone();
    let mut servers = match crate::server::serve(listeners, &plan, shared.clone()) {
        Ok(s) => s,
        Err(e) => {
            let _ = tx.send(Msg::Stop);
            return Err(e.into());
        }
    };
    // Bouncers' last pulls reach the store once a minute, not once per poll.
    let pulls_task = {
        let (auth, tx) = (shared.auth.clone(), tx.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                let p = auth.take_pulls();
                if !p.is_empty() && tx.send(Msg::LastPull(p)).is_err() {
                    break;
                }
            }
        })
    };
    crate::notify::apply(&plan.notify, &shared.counters.notify, &clock);

    let mut lists =
        crate::lists::task::start(&plan, tx.clone(), &shared.counters.lists, clock.clone());
    let mut readers = Vec::new();
    for p in plan.pipelines.clone() {
        readers.push(start_reader(
            p,
            &plan,
            &saved,
            tx.clone(),
            sources.clone(),
            &clock,
        )?);
    }
    tracing::info!(pipelines = readers.len(), config = %plan.config_file, "shield is running");
    let (beat, beat_clock) = (shared.counters.clone(), clock.clone());
    crate::sd_notify::ready(move || beat_clock.now() - beat.heartbeat.load(Ordering::Relaxed) < 30);

    // What runs now, section by section, for the next reload to compare with.
    let mut running = plan.clone();
    while let Some(Control::Reload(new)) = control.recv().await {
        let load = || {
            let (rtx, rrx) = mpsc::channel();
            tx.send(Msg::Checkpoints(rtx))
                .map_err(|_| RunError::DecisionThread("has stopped"))?;
            Ok(rrx
                .recv_timeout(Duration::from_secs(30))
                .map_err(|_| RunError::DecisionThread("did not answer within 30 s"))??)
        };
        restart_readers(&mut readers, &new, load, &mut saved, &tx, &sources, &clock);
        let _ = tx.send(Msg::Policy(new.decider.clone()));
        lists.restart(&new, tx.clone(), &shared.counters.lists, clock.clone());
        // One line per section (see `reload`); a refused one keeps running as it was.
        let mut report = crate::reload::Report::default();
        report.section("[api]", servers.reload(&new.api).await);
        let fw = {
            // The decision thread answers a blocking channel: off the runtime's threads.
            let (now, new, tx) = (running.firewall.clone(), new.clone(), tx.clone());
            tokio::task::spawn_blocking(move || crate::reload::firewall(&now, &new, &tx))
                .await
                .unwrap_or_else(|_| {
                    Err(crate::reload::SectionError::Firewall(
                        RunError::DecisionThread("reload task failed"),
                    ))
                })
        };
        if fw.is_ok() {
            running.firewall = new.firewall.clone();
        }
        report.section("[firewall]", fw);
        report.section(
            "[store]",
            crate::reload::store(&running.store_path, &new.store_path),
        );
        report.section(
            "[union]",
            crate::reload::union(running.union.as_ref(), new.union.as_ref()),
        );
        // Notification sinks always restart on the new plan (each sends what
        // it holds first, and keeps its counters when its name and kind stay).
        crate::notify::apply(&new.notify, &shared.counters.notify, &clock);
        report.section::<std::convert::Infallible>(
            "[webhook]/[[notify]]/[[action]]",
            Ok(if running.notify.is_empty() && new.notify.is_empty() {
                crate::reload::Outcome::Same
            } else {
                crate::reload::Outcome::Applied
            }),
        );
        running.notify = new.notify.clone();
        report.log(readers.len());
    }
    tracing::info!("stopping");
    stop_readers(&mut readers);
    pulls_task.abort();
    let _ = tx.send(Msg::LastPull(shared.auth.take_pulls()));
    let _ = tx.send(Msg::Stop);
    let _ = tokio::task::spawn_blocking(move || decision_thread.join()).await;
    servers.abort();
    if let Some(t) = union.task {
        t.abort();
    }
    // The socket bound at start (`[api] socket` is not reloaded).
    let _ = std::fs::remove_file(&control_path);
    Ok(())
}
