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

/// `shield reload`: plan, then SIGHUP the daemon behind the control socket.
pub fn reload(config_path: Option<PathBuf>) -> anyhow::Result<std::process::ExitCode> {
    let plan = replan(config_path.as_deref())
        .context("the config does not plan; the daemon keeps the one it runs")?;
    let sock = &plan.api.socket;
    let stream = std::os::unix::net::UnixStream::connect(sock).with_context(|| {
        format!(
            "no daemon answers on {} ([api] socket); start it with `shield run` or `systemctl start shield`",
            sock.display()
        )
    })?;
    let cred = rustix::net::sockopt::socket_peercred(&stream)
        .context("reading the daemon's process id from the control socket")?;
    rustix::process::kill_process(cred.pid, rustix::process::Signal::HUP).with_context(|| {
        format!(
            "sending SIGHUP to the daemon (pid {})",
            cred.pid.as_raw_nonzero()
        )
    })?;
    eprintln!(
        "reload sent to pid {}; its log says what was applied and names any key that needs a restart",
        cred.pid.as_raw_nonzero()
    );
    Ok(std::process::ExitCode::SUCCESS)
}
