//! Layer benchmarks (run as root; the kernel part uses a throwaway network namespace):
//!
//! ```sh
//! cargo run --release -p shield-enforce --example bench -- [N_KERNEL=1000000] [N_TABLE=1000000]
//! ```
//!
//! 1. time to load N ban elements into the kernel set with one `reconcile`;
//! 2. time for an `apply` batch of 1000 and of 1 on top of that;
//! 3. gate lookups per second on one core against a table of N_TABLE bans + 10k ranges.
//!
//! `bench serve PORT N_TABLE` serves the gate on 127.0.0.1:PORT over such a
//! table (2 worker threads) for `wrk -t2 -c64 -d10s --latency http://127.0.0.1:PORT/gate`.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::Instant;

use shield_core::{Decision, DecisionType, Origin, Scope};
use shield_enforce::{Change, DecisionTable, NftOptions, nftables};

fn ban(i: u32, now: i64) -> Decision {
    let ip = Ipv4Addr::from(0x0b00_0000u32 + i);
    Decision {
        id: i as i64 + 1,
        scope: Scope::Ip,
        target: shield_core::host_net(IpAddr::V4(ip)),
        kind: DecisionType::Ban,
        scenario: "bench".into(),
        origin: Origin::Local,
        created: now,
        expires: now + 3600 + (i % 1000) as i64,
    }
}

fn serve(port: u16, n_table: u32, now: i64) {
    let mut table = DecisionTable::new();
    let batch: Vec<Change> = (0..n_table).map(|i| Change::Add(ban(i, now))).collect();
    table.apply(&batch);
    let table = std::sync::Arc::new(std::sync::RwLock::new(table));
    let auth = std::sync::Arc::new(shield_enforce::KeyRing::new());
    let state = shield_enforce::ApiState::new(table, auth, shield_enforce::ApiConfig::default());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        println!("gate on http://127.0.0.1:{port}/gate over {n_table} bans");
        let app = shield_enforce::gate_router(state);
        axum::serve(
            l,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap();
    });
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("serve") {
        let port = std::env::args()
            .nth(2)
            .and_then(|a| a.parse().ok())
            .unwrap_or(18080);
        let n = std::env::args()
            .nth(3)
            .and_then(|a| a.parse().ok())
            .unwrap_or(1_000_000);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        return serve(port, n, now);
    }
    let mut args = std::env::args().skip(1);
    let n_kernel: u32 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let n_table: u32 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;

    if n_kernel > 0 {
        let ns = format!("shield-bench-{}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &ns])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok,
            "could not create network namespace {ns}: run as root with iproute2"
        );
        let result = std::panic::catch_unwind(|| {
            let mut fw = nftables(NftOptions {
                netns: Some(ns.clone()),
                ..Default::default()
            })
            .unwrap();
            let decisions: Vec<Decision> = (0..n_kernel).map(|i| ban(i, now)).collect();
            let t = Instant::now();
            fw.reconcile(&decisions, now).unwrap();
            let took = t.elapsed();
            println!(
                "reconcile {n_kernel} bans into the kernel: {:.2} s ({:.0} elements/s)",
                took.as_secs_f64(),
                n_kernel as f64 / took.as_secs_f64()
            );
            let out = Command::new("ip")
                .args([
                    "netns", "exec", &ns, "nft", "list", "set", "inet", "shield", "ban4",
                ])
                .output()
                .unwrap();
            let count = String::from_utf8_lossy(&out.stdout)
                .matches("timeout")
                .count();
            println!("  elements listed back: {count}");
            for size in [1u32, 1000] {
                let batch: Vec<Change> = (0..size)
                    .map(|i| Change::Add(ban(n_kernel + 10 + i, now)))
                    .collect();
                let t = Instant::now();
                fw.apply(&batch, now).unwrap();
                println!(
                    "apply batch of {size} on a {n_kernel}-element set: {:.1} ms",
                    t.elapsed().as_secs_f64() * 1e3
                );
            }
        });
        let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        if let Err(e) = result {
            std::panic::resume_unwind(e);
        }
    }

    let mut table = DecisionTable::new();
    let mut batch: Vec<Change> = (0..n_table).map(|i| Change::Add(ban(i, now))).collect();
    for i in 0..10_000u32 {
        let net = ipnet::Ipv4Net::new(Ipv4Addr::from(0x2000_0000u32 + (i << 8)), 24).unwrap();
        let mut d = ban(i, now);
        d.id = 10_000_000 + i as i64;
        d.scope = Scope::Range;
        d.target = ipnet::IpNet::V4(net).into();
        batch.push(Change::Add(d));
    }
    let t = Instant::now();
    table.apply(&batch);
    println!(
        "table: applied {} decisions in {:.2} s",
        batch.len(),
        t.elapsed().as_secs_f64()
    );
    let lookups = 5_000_000u32;
    let t = Instant::now();
    let mut hits = 0u32;
    let mut x = 0x9e37_79b9u32;
    for _ in 0..lookups {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        // Half the probes land on banned space, half miss.
        let ip = if x & 1 == 0 {
            0x0b00_0000 + (x >> 1) % n_table.max(1)
        } else {
            x
        };
        if table.lookup(Ipv4Addr::from(ip).into(), now).is_some() {
            hits += 1;
        }
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "gate lookups: {:.2} M/s on one core ({hits} hits of {lookups})",
        lookups as f64 / s / 1e6
    );
}
