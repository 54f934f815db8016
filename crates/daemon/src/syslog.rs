//! The syslog source as a pipeline input (`[[source]] type = "syslog"`,
//! `listen = "127.0.0.1:5514"`, UDP and TCP on the same address by default).
//! It owns the glue only: `shield_sources::syslog` listens, frames and splits
//! RFC 3164 / RFC 5424 headers; each message is queued to the pipeline's
//! reader thread, split there and fed through the pipeline's
//! [`Feed`](crate::readers::Feed). Shield's own rules get `tag[pid]: msg` at
//! the daemon clock's time (no stamp rendered and parsed back; the sender's
//! stamp, which it controls, is not trusted as the time); fail2ban and
//! CrowdSec get the classic `Mmm dd hh:mm:ss host tag[pid]: msg` line their
//! filters and parsers are written for.
//!
//! The queue between the listener threads and the reader is bounded: when an
//! attacker floods the port faster than the engine reads, messages are dropped
//! and counted (`SourceStatus::error` shows the count), never buffered without
//! limit. There is no checkpoint: syslog cannot be re-read after a restart.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shield_sources::syslog::{SyslogListener, SyslogSpec};

use crate::feed::{After, Feed};
use crate::state::MAX_LINE;
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

/// Starts the listener and the reader thread of one syslog pipeline, whose
/// lines go through `feed`. `native`: the pipeline runs Shield's own rules,
/// which get `tag[pid]: msg` at the clock's time; other rule families
/// (fail2ban, CrowdSec) get the classic file line they are written for.
/// `clock` stamps the messages (the engine's time and the status's last line).
pub(crate) fn spawn(
    mut feed: Feed,
    udp: Option<SocketAddr>,
    tcp: Option<SocketAddr>,
    native: bool,
    stop: Arc<AtomicBool>,
    clock: Clock,
) -> Result<JoinHandle<()>, SyslogError> {
    let (qtx, qrx) = mpsc::sync_channel::<(Instant, Vec<u8>)>(QUEUE);
    let dropped = Arc::new(AtomicU64::new(0));
    let on_message: shield_sources::syslog::OnMessage = {
        let dropped = dropped.clone();
        Arc::new(move |_peer, msg: &[u8]| {
            if qtx.try_send((Instant::now(), msg.to_vec())).is_err() {
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
    feed.status(|st| {
        st.files = [
            listener.udp_addr().map(|a| format!("udp://{a}")),
            listener.tcp_addr().map(|a| format!("tcp://{a}")),
        ]
        .into_iter()
        .flatten()
        .collect();
    });
    tracing::info!(source = %feed.name, udp = ?listener.udp_addr(), tcp = ?listener.tcp_addr(), "syslog listener started");
    let h = std::thread::Builder::new()
        .name(format!("src-{}", feed.name))
        .spawn(move || {
            let mut line = Vec::with_capacity(1024);
            let mut last_send = Instant::now();
            let mut reported_drops = 0;
            // Lag: how long the last message waited in the queue (0 once it is empty).
            let (mut waited, mut warn) = (0.0, crate::lag::LagWarn::default());
            while !stop.load(Ordering::Relaxed) {
                let got = qrx.recv_timeout(Duration::from_millis(200));
                let t = clock.now();
                if got.is_err() && waited > 0.0 {
                    waited = 0.0;
                    feed.lag(crate::lag::Behind::default());
                    warn.update(&feed.name, crate::lag::Behind::default());
                }
                if let Ok((queued, msg)) = got {
                    waited = queued.elapsed().as_secs_f64();
                    let parts = shield_sources::syslog::parse(&msg);
                    if native {
                        parts.to_program_line(&mut line);
                    } else {
                        parts.to_line(&mut line);
                    }
                    feed.line(&line, t);
                }
                let d = dropped.load(Ordering::Relaxed);
                if d != reported_drops {
                    feed.set_error(Some(format!(
                        "{d} messages dropped: the engine fell behind the sender"
                    )));
                    reported_drops = d;
                }
                let due = feed.has_alerts() || last_send.elapsed() > Duration::from_millis(250);
                if feed.pending() > 0 && due {
                    let behind = crate::lag::Behind {
                        seconds: waited,
                        bytes: 0,
                    };
                    feed.lag(behind);
                    warn.update(&feed.name, behind);
                    if !feed.flush(t, After::default()) {
                        break;
                    }
                    last_send = Instant::now();
                }
            }
            listener.stop();
        })
        .map_err(SyslogError::Thread)?;
    Ok(h)
}
