//! Issue 19, item 6: ~1,100 half-sent requests took the gate down (the
//! listener held every slot). Here 2,000 slowloris connections from 20
//! loopback addresses — each sends part of a request head (or, for a quarter
//! of the addresses, a whole head and a body that never ends), holds it, and
//! reconnects when closed — hammer the gate in the daemon's accept loop
//! (`serve_tcp`, default limits), while real clients keep asking: the proxy
//! (127.0.0.1, trusted) and an ordinary client (127.0.0.5). Every real request
//! must be answered, with the right answer; nothing here measures time.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{Gate, ban, now};
use shield_enforce::Change;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const ATTACKERS: u8 = 20;
const PER_ATTACKER: usize = 100;

async fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(from, 0))?;
    s.connect(to).await
}

/// One real request; its status code, or None if the connection was refused or cut.
async fn ask(from: IpAddr, to: SocketAddr, extra: &str) -> Option<u16> {
    let mut s = connect_from(from, to).await.ok()?;
    s.write_all(
        format!("GET /gate HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n").as_bytes(),
    )
    .await
    .ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    let head = String::from_utf8_lossy(&buf);
    head.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// A slowloris client: half a request head (or, with `body`, a whole head and
/// a body that never ends), held until the server closes it, again.
async fn slowloris(
    from: IpAddr,
    to: SocketAddr,
    body: bool,
    stop: Arc<AtomicBool>,
    held: Arc<AtomicU64>,
) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = connect_from(from, to).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let start: &[u8] = if body {
            b"POST /gate/challenge HTTP/1.1\r\nHost: x\r\nContent-Length: 4000\r\n\r\nc="
        } else {
            b"GET /gate HTTP/1.1\r\nHost: x\r\nX-a: "
        };
        if s.write_all(start).await.is_ok() {
            held.fetch_add(1, Ordering::Relaxed);
            // Trickle a byte now and then, as slowloris does, until closed.
            let mut b = [0u8; 256];
            loop {
                tokio::select! {
                    r = s.read(&mut b) => if matches!(r, Ok(0) | Err(_)) { break },
                    () = tokio::time::sleep(Duration::from_secs(1)) => {
                        if s.write_all(b"a").await.is_err() || stop.load(Ordering::Relaxed) { break }
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn slowloris_from_many_addresses_does_not_starve_real_clients() {
    let gate = Gate::serve();
    gate.table
        .write()
        .unwrap()
        .apply(&[Change::Add(ban(1, "192.0.2.66", now() + 600))]);
    let limiter = gate.limiter.clone();
    let (max, per_peer) = (
        limiter.limits().max_connections,
        limiter.limits().max_per_peer,
    );
    assert!(
        usize::from(ATTACKERS) * PER_ATTACKER > max && usize::from(ATTACKERS) * per_peer > max,
        "the attack must be able to fill the listener"
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], gate.port));

    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let held = Arc::new(AtomicU64::new(0));
    for a in 0..ATTACKERS {
        let from = IpAddr::from([127, 0, 0, 10 + a]);
        for _ in 0..PER_ATTACKER {
            // A quarter of the addresses send slow bodies instead of slow heads.
            client.spawn(slowloris(
                from,
                addr,
                a % 4 == 0,
                stop.clone(),
                held.clone(),
            ));
        }
    }
    // Wait until the attack has filled the listener (no timing asserted: just ready).
    client.block_on(async {
        while limiter.stats().open < max as u64 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });

    let proxy: IpAddr = "127.0.0.1".parse().unwrap();
    let user: IpAddr = "127.0.0.5".parse().unwrap();
    let mut answers = Vec::new();
    client.block_on(async {
        for _ in 0..40 {
            answers.push((
                "proxy, clean",
                ask(proxy, addr, "X-Real-IP: 198.51.100.7\r\n").await,
                200,
            ));
            answers.push((
                "proxy, banned",
                ask(proxy, addr, "X-Real-IP: 192.0.2.66\r\n").await,
                403,
            ));
            answers.push(("direct client", ask(user, addr, "").await, 200));
        }
    });
    let during = limiter.stats();
    stop.store(true, Ordering::Relaxed);
    drop(client);

    let wrong: Vec<_> = answers
        .iter()
        .filter(|(_, got, want)| *got != Some(*want))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} real requests not answered right during the attack: {:?}; {during:?}",
        wrong.len(),
        answers.len(),
        &wrong[..wrong.len().min(5)]
    );
    // The limits did the work: the attack reached the cap, the per-address
    // limit refused the excess, and half-sent requests were closed to make room.
    assert!(held.load(Ordering::Relaxed) >= max as u64, "{during:?}");
    assert!(during.refused_peer > 0, "{during:?}");
    assert!(during.evicted > 0, "{during:?}");
    assert!(during.open <= max as u64, "{during:?}");
}
