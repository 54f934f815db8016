//! `shield run`: plans the config, binds the listeners, turns signals into
//! [`Control`] messages and runs the daemon until SIGTERM/SIGINT. SIGHUP
//! re-plans the config; a config that does not plan is refused and the daemon
//! keeps the previous one. What a plan that does plan changes, section by
//! section, is `shield_daemon::reload`'s business.

use std::path::PathBuf;

use anyhow::Context;
use shield_core::Clock;
use shield_daemon::run::Control;
use tokio::signal::unix::{SignalKind, signal};

pub fn run(config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let loaded = shield_daemon::config::load(config_path.as_deref())?;
    let plan = shield_daemon::plan::plan(&loaded)?;
    if loaded.path.is_none() {
        tracing::info!("no config file: guarding sshd on built-in defaults");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("shield-io")
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        // Signal handlers before the sockets: once the control socket answers,
        // a SIGHUP reloads instead of killing the process (the default action).
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let listeners = shield_daemon::server::bind(&plan).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let signals = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = term.recv() => break,
                    _ = int.recv() => break,
                    _ = hup.recv() => match replan(config_path.as_deref()) {
                        Err(e) => tracing::error!("reload refused, still running the previous config:\n{e:#}"),
                        Ok(new) => {
                            if tx.send(Control::Reload(Box::new(new))).await.is_err() {
                                return;
                            }
                        }
                    },
                }
            }
            let _ = tx.send(Control::Stop).await;
        });
        let res = shield_daemon::run::run(plan, listeners, rx, Clock::system()).await;
        signals.abort();
        Ok(res?)
    })
}

fn replan(path: Option<&std::path::Path>) -> anyhow::Result<shield_daemon::plan::Plan> {
    let loaded = shield_daemon::config::load(path)?;
    Ok(shield_daemon::plan::plan(&loaded)?)
}
