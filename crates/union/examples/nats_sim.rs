//! Fleet simulation of the union on NATS JetStream: many member identities
//! through one nats-server, reporting propagation p50/p99 and signals/s.
//!
//! Faithful where it matters: one JetStream stream as the transport uses it
//! (`nats::ensure_stream`), signals published with `nats::publish_env`
//! (`Nats-Msg-Id` de-dup), one *durable pull consumer per member* with
//! explicit acks, and every receiving member decodes the envelope, checks the
//! origin is in the treaty, verifies the ed25519 signature with the origin's
//! key and checks the treaty digest before it counts the signal. Simplified:
//! members share `--conns` NATS connections (members are spread round-robin)
//! (origins publish on one more connection) and do not write SQLite (the per-batch store cost is measured by the union
//! crate's own tests/drill, not here).
//!
//! ```text
//! cargo run --release -p shield-union --example nats_sim -- --members 1000 --signals 200 --rate 20
//! ```
//! Options: `--members N` `--signals S` (total, from random origins) `--rate R`
//! (signals/s) `--conns C` `--url nats://...` (default: start a private
//! `nats-server -js` on a free loopback port).

use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt as _;
use shield_core::{DecisionType, Scope};
use shield_union::{Identity, SignalBody, Treaty, nats};
use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Args {
    members: usize,
    signals: usize,
    rate: f64,
    conns: usize,
    url: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        members: 1000,
        signals: 200,
        rate: 20.0,
        conns: 20,
        url: None,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        let val = v.get(i + 1).cloned().unwrap_or_default();
        match v[i].as_str() {
            "--members" => a.members = val.parse().expect("--members N"),
            "--signals" => a.signals = val.parse().expect("--signals N"),
            "--rate" => a.rate = val.parse().expect("--rate R"),
            "--conns" => a.conns = val.parse().expect("--conns N"),
            "--url" => a.url = Some(val),
            other => panic!("unknown option {other}; see the example's doc comment"),
        }
        i += 2;
    }
    a.conns = a.conns.clamp(1, a.members.max(1));
    a
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let a = args();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = None;
    let url = match &a.url {
        Some(u) => u.clone(),
        None => {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let child = Command::new("nats-server")
                .args(["-js", "-sd"])
                .arg(dir.path().join("js"))
                .args(["-a", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nats-server not found: install the Debian package `nats-server`");
            server = Some(child);
            let end = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < end, "nats-server did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
            format!("nats://127.0.0.1:{port}")
        }
    };

    // Identities and the treaty that lists them all.
    let t0 = Instant::now();
    let union = format!("sim-{}", std::process::id());
    let ids: Vec<Identity> = (0..a.members)
        .map(|_| Identity::generate().expect("key"))
        .collect();
    let mut text = format!(
        "name = \"{union}\"\n[limits]\nmax_signals_per_minute = 100000\n[transport]\nkind = \"nats\"\nurl = \"{url}\"\n"
    );
    for (i, id) in ids.iter().enumerate() {
        text.push_str(&format!(
            "[[member]]\nname = \"m{i}\"\nkey = \"{}\"\nendpoint = \"127.0.0.1:1\"\n",
            id.public_string()
        ));
    }
    text.push_str(
        "[[policy]]\nscenario = \"sshd-bruteforce\"\ntype = \"ban\"\nduration = \"4h\"\n",
    );
    let tp = dir.path().join("treaty.toml");
    std::fs::write(&tp, text).expect("write treaty");
    let treaty = Arc::new(Treaty::load(&tp).expect("treaty"));
    let digest = treaty.digest();
    eprintln!("{} identities + treaty in {:?}", a.members, t0.elapsed());

    // Connections, the stream, one durable consumer per member.
    let mut clients = Vec::new();
    for i in 0..a.conns {
        let c = async_nats::ConnectOptions::new()
            .name(format!("sim-{i}"))
            .connect(url.as_str())
            .await
            .expect("connect to nats");
        clients.push(jetstream::new(c));
    }
    // Origins publish on their own connection, as real members' daemons do
    // (their acks must not queue behind 1000 members' deliveries).
    let publisher = jetstream::new(
        async_nats::ConnectOptions::new()
            .name("sim-publisher")
            .connect(url.as_str())
            .await
            .expect("connect to nats"),
    );
    let js = &clients[0];
    let stream = nats::ensure_stream(js, &union, Duration::from_secs(3600), 1)
        .await
        .expect("stream");
    let t1 = Instant::now();
    let mut consumers = Vec::new();
    for i in 0..a.members {
        let st = clients[i % a.conns]
            .get_stream(nats::stream_name(&union))
            .await
            .unwrap_or_else(|_| stream.clone());
        let durable = format!("shield_m{i}");
        let c: consumer::PullConsumer = st
            .get_or_create_consumer(
                &durable,
                consumer::pull::Config {
                    durable_name: Some(durable.clone()),
                    filter_subject: format!("shield.{}.sig.>", nats::token(&union)),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ..Default::default()
                },
            )
            .await
            .expect("consumer");
        consumers.push(c);
    }
    eprintln!("{} durable consumers in {:?}", a.members, t1.elapsed());

    let sent: Arc<Mutex<HashMap<(String, u64), Instant>>> = Arc::default();
    let verified = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (i, c) in consumers.into_iter().enumerate() {
        let (sent, treaty, verified) = (sent.clone(), treaty.clone(), verified.clone());
        let want = a.signals;
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(want);
            let mut refused = 0u64;
            let mut msgs = c.messages().await.expect("pull");
            while lat.len() < want {
                let m = match tokio::time::timeout(Duration::from_secs(30), msgs.next()).await {
                    Ok(Some(Ok(m))) => m,
                    Ok(Some(Err(_))) => continue,
                    _ => break,
                };
                let env = nats::parse_envelope(&m.payload);
                // What Member::judge does before policy: decode, member, signature, digest.
                let ok = env.decode().ok().and_then(|d| {
                    let mem = treaty.member(&d.body.origin)?;
                    (d.verify(&mem.key) && d.body.treaty == digest)
                        .then(|| (d.body.origin.clone(), d.body.seq))
                });
                match ok {
                    Some(k) => {
                        let at = sent.lock().ok().and_then(|s| s.get(&k).copied());
                        if let Some(at) = at {
                            lat.push(at.elapsed());
                        }
                        verified.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    None => refused += 1,
                }
                let _ = m.ack().await;
            }
            let _ = i;
            (lat, refused)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Publish `signals` from random origins at `rate`.
    let start = Instant::now();
    let gap = Duration::from_secs_f64(1.0 / a.rate.max(0.001));
    let mut seqs = vec![0u64; a.members];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for k in 0..a.signals {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let o = (x % a.members as u64) as usize;
        seqs[o] += 1;
        let target: shield_core::Net = format!("198.51.{}.{}/32", (k / 250) % 250, k % 250 + 1)
            .parse()
            .expect("ip");
        let body = SignalBody {
            origin: format!("m{o}"),
            seq: seqs[o],
            time: now(),
            scope: Scope::of(&target),
            target,
            kind: DecisionType::Ban,
            duration_s: 4 * 3600,
            scenario: "sshd-bruteforce".into(),
            evidence: vec!["Failed password for root from 198.51.100.1".into()],
            treaty: digest,
        };
        let env = body.sign(&ids[o]);
        if let Ok(mut s) = sent.lock() {
            s.insert((body.origin.clone(), body.seq), Instant::now());
        }
        nats::publish_env(&publisher, &union, &body.origin, body.seq, &env)
            .await
            .expect("publish");
        let next = start + gap * (k as u32 + 1);
        tokio::time::sleep_until(next.into()).await;
    }
    let pub_s = start.elapsed().as_secs_f64();

    let mut all = Vec::new();
    let mut refused = 0;
    let mut short = 0;
    for t in tasks {
        let (l, r) = t.await.expect("member task");
        if l.len() < a.signals {
            short += 1;
        }
        refused += r;
        all.extend(l);
    }
    let total_s = start.elapsed().as_secs_f64();
    all.sort();
    let n = verified.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "members={} conns={} signals={} rate={}/s published_in={:.2}s",
        a.members, a.conns, a.signals, a.rate, pub_s
    );
    println!(
        "deliveries verified={} (expected {}) members_short={} refused={}",
        n,
        a.members * a.signals,
        short,
        refused
    );
    println!(
        "propagation p50={:?} p99={:?} max={:?}",
        pct(&all, 0.50),
        pct(&all, 0.99),
        all.last().copied().unwrap_or_default()
    );
    println!(
        "throughput: {:.0} verified deliveries/s over {:.2}s; {:.1} signals/s published",
        n as f64 / total_s,
        total_s,
        a.signals as f64 / pub_s
    );
    if let Some(mut c) = server {
        let _ = c.kill();
        let _ = c.wait();
    }
}
