//! The syslog source as a pipeline input (`[[source]] type = "syslog"`,
//! `listen = "127.0.0.1:5514"`, UDP and TCP on the same address by default).
//! It owns the glue only: `shield_sources::syslog` listens, frames and splits
//! RFC 3164 / RFC 5424 headers; here each message is rebuilt as the classic
//! `Mmm dd hh:mm:ss host tag[pid]: msg` line (what the rule packs expect),
//! queued to the pipeline's reader thread and fed to its engine.
//!
//! The queue between the listener threads and the reader is bounded: when an
//! attacker floods the port faster than the engine reads, messages are dropped
//! and counted (`SourceStatus::error` shows the count), never buffered without
//! limit. There is no checkpoint: syslog cannot be re-read after a restart.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shield_detect::Engine;
use shield_sources::syslog::{SyslogListener, SyslogSpec};

use crate::state::{MAX_LINE, Msg, SourceStatus};
use shield_core::Clock;

/// Messages waiting for the engine, at most.
const QUEUE: usize = 65_536;

/// Why a syslog source did not start.
#[derive(Debug, thiserror::Error)]
pub enum SyslogError {
    /// The address is taken or not ours.
    #[error("{0} (pick another `listen` port, or stop what holds this one)")]
    Listen(shield_sources::SourceError),
    /// The reader thread could not be started.
    #[error("starting the reader thread (check the process and memory limits)")]
    Thread(#[source] std::io::Error),
}

/// Starts the listener and the reader thread of one syslog pipeline; `clock`
/// stamps the messages (the engine's time and the status's last line).
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    name: String,
    udp: Option<SocketAddr>,
    tcp: Option<SocketAddr>,
    mut engine: Engine,
    tx: mpsc::Sender<Msg>,
    stop: Arc<AtomicBool>,
    sources: Arc<Mutex<BTreeMap<String, SourceStatus>>>,
    clock: Clock,
) -> Result<JoinHandle<()>, SyslogError> {
    let (qtx, qrx) = mpsc::sync_channel::<(Instant, Vec<u8>)>(QUEUE);
    let dropped = Arc::new(AtomicU64::new(0));
    let on_message: shield_sources::syslog::OnMessage = {
        let dropped = dropped.clone();
        Arc::new(move |_peer, msg: &[u8]| {
            let mut line = Vec::with_capacity(msg.len() + 32);
            shield_sources::syslog::parse(msg).to_line(&mut line);
            if qtx.try_send((Instant::now(), line)).is_err() {
                dropped.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let spec = SyslogSpec {
        udp,
        tcp,
        max_message: MAX_LINE,
        ..SyslogSpec::default()
    };
    let listener = SyslogListener::start(&spec, on_message).map_err(SyslogError::Listen)?;
    {
        let mut s = sources.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(st) = s.get_mut(&name) {
            st.files = [
                listener.udp_addr().map(|a| format!("udp://{a}")),
                listener.tcp_addr().map(|a| format!("tcp://{a}")),
            ]
            .into_iter()
            .flatten()
            .collect();
        }
    }
    tracing::info!(source = %name, udp = ?listener.udp_addr(), tcp = ?listener.tcp_addr(), "syslog listener started");
    let h = std::thread::Builder::new()
        .name(format!("src-{name}"))
        .spawn(move || {
            let mut alerts = Vec::new();
            let (mut lines, mut matched, mut bad) = (0u64, 0u64, 0u64);
            let mut last_send = Instant::now();
            let mut reported_drops = 0;
            // Lag: how long the last message waited in the queue (0 once it is empty).
            let (mut waited, mut warn) = (0.0, crate::lag::LagWarn::default());
            while !stop.load(Ordering::Relaxed) {
                let got = qrx.recv_timeout(Duration::from_millis(200));
                let t = clock.now();
                if got.is_err() && waited > 0.0 {
                    waited = 0.0;
                    crate::lag::publish(&sources, &name, crate::lag::Behind::default());
                    warn.update(&name, crate::lag::Behind::default());
                }
                if let Ok((queued, bytes)) = got {
                    waited = queued.elapsed().as_secs_f64();
                    lines += 1;
                    let before = engine.stats().matched;
                    match std::str::from_utf8(&bytes) {
                        Ok(l) => {
                            engine.feed(l, t, &mut |a| alerts.push(a));
                        }
                        Err(_) => {
                            bad += 1;
                            let l = String::from_utf8_lossy(&bytes);
                            engine.feed(&l, t, &mut |a| alerts.push(a));
                        }
                    }
                    matched += engine.stats().matched - before;
                }
                let d = dropped.load(Ordering::Relaxed);
                if (lines > 0
                    && (!alerts.is_empty() || last_send.elapsed() > Duration::from_millis(250)))
                    || d != reported_drops
                {
                    if let Ok(mut s) = sources.lock()
                        && let Some(st) = s.get_mut(&name)
                    {
                        st.lines += lines;
                        st.matched += matched;
                        st.invalid_utf8 += bad;
                        if lines > 0 {
                            st.last_line_at = Some(t);
                        }
                        if d > 0 {
                            st.error = Some(format!(
                                "{d} messages dropped: the engine fell behind the sender"
                            ));
                        }
                    }
                    reported_drops = d;
                    let behind = crate::lag::Behind {
                        seconds: waited,
                        bytes: 0,
                    };
                    crate::lag::publish(&sources, &name, behind);
                    warn.update(&name, behind);
                    if lines > 0 {
                        let sent = tx.send(Msg::Batch {
                            pipeline: name.clone(),
                            alerts: std::mem::take(&mut alerts),
                            checkpoints: Vec::new(),
                            lines,
                            matched,
                            cursor: None,
                        });
                        if sent.is_err() {
                            break;
                        }
                    }
                    (lines, matched, bad) = (0, 0, 0);
                    last_send = Instant::now();
                }
            }
            listener.stop();
        })
        .map_err(SyslogError::Thread)?;
    Ok(h)
}
