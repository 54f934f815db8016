//! systemd readiness and watchdog notifications (`Type=notify`), without libsystemd.

use std::os::unix::net::UnixDatagram;

fn send(msg: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    // Abstract sockets start with '@'; std handles only path sockets, which is what systemd uses by default.
    let _ = sock.send_to(msg.as_bytes(), path);
}

/// Tells systemd the daemon is up, and starts watchdog pings when asked for.
/// A ping is sent only while `alive()` says the daemon's work still moves (the
/// decision thread's heartbeat is recent), so a stuck daemon is restarted.
pub fn ready(alive: impl Fn() -> bool + Send + 'static) {
    send("READY=1\nSTATUS=guarding");
    if let Some(us) = std::env::var("WATCHDOG_USEC")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        let every = std::time::Duration::from_micros(us / 2);
        let _ = std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(every);
                    if alive() {
                        send("WATCHDOG=1");
                    } else {
                        tracing::error!("the decision thread has not run for 30 s: withholding the watchdog ping");
                    }
                }
            });
    }
}
