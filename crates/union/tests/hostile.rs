//! Issue #23, "what one hostile member can do": each test holds a member's own
//! key and drives a small client of the union crate (`PeerClient`) against
//! real in-process members on loopback, the way a compromised member would.

mod common;

use common::{SCEN, decision, now, recv_n, spec, start, treaty_text, until};
use shield_core::{Decision, DecisionType, Net, Origin, Scope};
use shield_union::direct::PeerClient;
use shield_union::{Envelope, Identity, SignalBody};
use std::time::Duration;
use tokio::sync::mpsc;

fn assert_nothing(rx: &mut mpsc::Receiver<Decision>) {
    if let Ok(d) = rx.try_recv() {
        panic!("no decision expected, got {d:?}");
    }
}

/// Signs what a hostile member chooses: any sequence, time, duration, evidence.
struct Forge {
    origin: &'static str,
    digest: [u8; 32],
}

impl Forge {
    fn body(&self, seq: u64, target: &str) -> SignalBody {
        let target: Net = target.parse().unwrap();
        SignalBody {
            origin: self.origin.into(),
            seq,
            time: now(),
            scope: Scope::of(&target),
            target,
            kind: DecisionType::Ban,
            duration_s: 4 * 3600,
            scenario: SCEN.into(),
            evidence: vec!["x".into()],
            treaty: self.digest,
        }
    }
}

fn client(from: &Identity, to: &common::Spec) -> PeerClient {
    PeerClient::new(
        from,
        to.name,
        &to.id.public(),
        &format!("127.0.0.1:{}", to.port),
    )
    .unwrap()
}

/// Item 1: a member asks the others to ban another member's endpoint, the
/// NATS server, the router's link-local address, multicast, unspecified.
/// Each is refused as `protected`; an ordinary target still passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_never_ban_member_endpoints_nats_hosts_or_special_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let (a, m) = (spec("a"), spec("m"));
    // `c` lives at 10.79.0.3 (not running here); the treaty names a NATS host
    // although it runs direct: both are hosts the union must keep reachable.
    let c_key = Identity::generate().unwrap();
    let extra = format!(
        "\n[[member]]\nname = \"c\"\nkey = \"{}\"\nendpoint = \"10.79.0.3:7946\"\n",
        c_key.public_string()
    );
    let t = treaty_text(&[&a, &m], "", "url = \"nats://10.79.0.9:4222\"", "") + &extra;
    let mut na = start(dir.path(), &a, &t).await;
    let f = Forge {
        origin: "m",
        digest: na.h().treaty().digest(),
    };
    let from_m = client(&m.id, &a);
    let hostile = [
        "10.79.0.3/32",
        "10.79.0.0/24",
        "10.79.0.9/32",
        "fe80::9/128",
        "169.254.10.1/32",
        "ff02::1/128",
        "224.0.0.251/32",
        "0.0.0.0/32",
        "::/128",
        "127.0.0.1/32",
    ];
    let envs: Vec<Envelope> = hostile
        .iter()
        .enumerate()
        .map(|(i, t)| f.body(i as u64 + 1, t).sign(&m.id))
        .collect();
    from_m.push(&envs).await.unwrap();
    until(3000, "protected counted", || {
        na.refused("protected") == hostile.len() as u64
    })
    .await;
    from_m
        .push(&[f.body(100, "203.0.113.9/32").sign(&m.id)])
        .await
        .unwrap();
    let d = recv_n(&mut na.rx, 1, 3000).await;
    assert_eq!(d[0].target.to_string(), "203.0.113.9/32");
    assert_nothing(&mut na.rx);
    // A member does not publish a protected target either.
    assert!(!na.h().publish(&decision("10.79.0.3/32"), &[]).unwrap());
    na.stop().await;
}

/// Item 2: `m` pushes seqs 1000..1299 to `a` only. `b`, started later, must
/// still get them and, above all, `z`'s signal (an origin sorted after `m`),
/// without pulling the same rows again and again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequence_gap_does_not_stall_anti_entropy_or_starve_other_origins() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, m, z) = (spec("a"), spec("b"), spec("m"), spec("z"));
    let t = treaty_text(&[&a, &b, &m, &z], "", "", "");
    let mut na = start(dir.path(), &a, &t).await;
    let f = Forge {
        origin: "m",
        digest: na.h().treaty().digest(),
    };
    let from_m = client(&m.id, &a);
    for chunk in (1000u64..1300).collect::<Vec<_>>().chunks(150) {
        let envs: Vec<Envelope> = chunk
            .iter()
            .map(|&s| {
                let ip = format!(
                    "198.51.{}.{}/32",
                    100 + (s - 1000) / 200,
                    1 + (s - 1000) % 200
                );
                f.body(s, &ip).sign(&m.id)
            })
            .collect();
        from_m.push(&envs).await.unwrap();
    }
    recv_n(&mut na.rx, 300, 10_000).await;
    let mut nz = start(dir.path(), &z, &t).await;
    assert!(nz.h().publish(&decision("203.0.113.77/32"), &[]).unwrap());
    recv_n(&mut na.rx, 1, 5000).await;
    nz.stop().await;

    let mut nb = start(dir.path(), &b, &t).await;
    let got = recv_n(&mut nb.rx, 301, 15_000).await;
    assert!(
        got.iter()
            .any(|d| d.target.to_string() == "203.0.113.77/32"
                && d.origin == Origin::Union("z".into())),
        "z's ban never reached b"
    );
    // Several anti-entropy rounds (200 ms) later: nothing pulled twice.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let dups = nb.refused("duplicate");
    println!("b: duplicates after catching up past m's gap: {dups}");
    assert!(
        dups < 50,
        "b keeps pulling rows it holds: {dups} duplicates"
    );
    assert_nothing(&mut nb.rx);
    na.stop().await;
    nb.stop().await;
}

fn db_bytes(dir: &std::path::Path) -> u64 {
    ["shield.db", "shield.db-wal"]
        .iter()
        .map(|f| std::fs::metadata(dir.join(f)).map(|m| m.len()).unwrap_or(0))
        .sum()
}

/// Item 4: authentic but refused signals (stale, with the evidence cap
/// exceeded) must not grow a member's database; what is kept of them is
/// pruned, past sequence gaps, and restart does not bring them back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_signals_do_not_fill_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let (a, m) = (spec("a"), spec("m"));
    let t = treaty_text(&[&a, &m], "", "", "");
    let mut na = start(dir.path(), &a, &t).await;
    let f = Forge {
        origin: "m",
        digest: na.h().treaty().digest(),
    };
    let from_m = client(&m.id, &a);
    let before = db_bytes(&dir.path().join("a"));
    // 2,000 stale signals above a gap (seq 10,000..), each with the most evidence
    // an honest member signs, and 200 with 3.9 KB of evidence (more than that).
    let n = 2000u64;
    for start_seq in (0..n).step_by(200) {
        let envs: Vec<Envelope> = (start_seq..start_seq + 200)
            .map(|i| {
                let mut b = f.body(10_000 + i, &format!("198.51.100.{}/32", 1 + i % 250));
                b.time = now() - 2 * 86_400;
                b.evidence = vec!["e".repeat(200); 5];
                b.sign(&m.id)
            })
            .collect();
        from_m.push(&envs).await.unwrap();
    }
    let big: Vec<Envelope> = (0..200)
        .map(|i| {
            let mut b = f.body(20_000 + i, "203.0.113.5/32");
            b.evidence = vec!["e".repeat(780); 5];
            b.sign(&m.id)
        })
        .collect();
    from_m.push(&big).await.unwrap();
    until(10_000, "all counted", || {
        na.refused("stale") == n && na.refused("evidence_too_long") == 200
    })
    .await;
    let db = dir.path().join("a").join("shield.db");
    let q = |sql: &str| -> i64 {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.query_row(sql, [], |r| r.get(0)).unwrap()
    };
    let payload =
        q("SELECT COALESCE(SUM(length(payload)), 0) FROM union_signals WHERE origin = 'm'");
    let grown = db_bytes(&dir.path().join("a")).saturating_sub(before);
    println!(
        "a's database grew by {grown} bytes for {} refused signals; payload bytes kept: {payload}",
        n + 200
    );
    assert_eq!(payload, 0, "refused signals' payloads are stored");
    // Restart: pruning at start forgets the stale rows although they sit above a gap.
    na.stop().await;
    na.restart().await;
    until(5000, "stale rows pruned", || {
        q("SELECT COUNT(*) FROM union_signals WHERE origin = 'm' AND seq < 20000") == 0
    })
    .await;
    // And m's next honest signal still passes.
    from_m
        .push(&[f.body(30_000, "203.0.113.6/32").sign(&m.id)])
        .await
        .unwrap();
    recv_n(&mut na.rx, 1, 3000).await;
    na.stop().await;
}

/// Item 5: the rate cap counts signals by arrival, not by the times the sender
/// writes in them: 300 signals back-dated 10 s apart over 50 minutes, pushed
/// at once, are 300 arrivals in a minute against a cap of 20.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_cap_counts_by_arrival_not_by_claimed_time() {
    let dir = tempfile::tempdir().unwrap();
    let a = spec("a");
    let mut m = spec("m");
    m.cap = Some(20);
    let t = treaty_text(&[&a, &m], "", "", "");
    let mut na = start(dir.path(), &a, &t).await;
    let f = Forge {
        origin: "m",
        digest: na.h().treaty().digest(),
    };
    let from_m = client(&m.id, &a);
    let base = now();
    let envs: Vec<Envelope> = (0..300u64)
        .map(|i| {
            let mut b = f.body(
                i + 1,
                &format!("198.51.{}.{}/32", 100 + i / 250, 1 + i % 250),
            );
            b.time = base - 3000 + 10 * i as i64;
            b.sign(&m.id)
        })
        .collect();
    for c in envs.chunks(150) {
        from_m.push(c).await.unwrap();
    }
    until(5000, "rate cap counted", || na.refused("rate_cap") == 280).await;
    recv_n(&mut na.rx, 20, 3000).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_nothing(&mut na.rx);
    // Refused for rate, they are neither stored nor marked seen: the origin's
    // history is fetched again once the window has room.
    let db = dir.path().join("a").join("shield.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    let rows: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM union_signals WHERE origin = 'm'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rows, 20);
    na.stop().await;
}

/// Item 6: an honest report is held for quorum (2); a hostile member sends the
/// same target with `duration_s = 1`. The decision that reaches quorum lasts
/// the policy's duration, not one second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_member_cannot_shorten_a_quorum_decision() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, m) = (spec("a"), spec("b"), spec("m"));
    let policy = format!(
        "\n[[policy]]\nscenario = \"{SCEN}\"\ntype = \"ban\"\nduration = \"4h\"\nquorum = 2\n"
    );
    let t = treaty_text(&[&a, &b, &m], "", "", &policy);
    let mut na = start(dir.path(), &a, &t).await;
    let nb = start(dir.path(), &b, &t).await;
    let f = Forge {
        origin: "m",
        digest: na.h().treaty().digest(),
    };
    assert!(nb.h().publish(&decision("203.0.113.44/32"), &[]).unwrap());
    until(3000, "held at a", || {
        na.h().status().counters.held_for_quorum == 1
    })
    .await;
    let mut short = f.body(1, "203.0.113.44/32");
    short.duration_s = 1;
    client(&m.id, &a).push(&[short.sign(&m.id)]).await.unwrap();
    let d = recv_n(&mut na.rx, 1, 3000).await;
    assert_eq!(d[0].target.to_string(), "203.0.113.44/32");
    assert_eq!(
        d[0].duration_s(),
        4 * 3600,
        "the hostile member's duration was enforced"
    );
    na.stop().await;
}

/// Item 8: one host opens 400 connections to a member's union listener and
/// holds them (no TLS handshake). The listener keeps at most its per-address
/// share and closes the rest at once; honest members (another address) still
/// get through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn union_listener_caps_connections_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (spec("a"), spec("b"));
    let t = treaty_text(&[&a, &b], "", "", "");
    let mut na = start(dir.path(), &a, &t).await;
    let nb = start(dir.path(), &b, &t).await;
    let target: std::net::SocketAddr = format!("127.0.0.1:{}", a.port).parse().unwrap();
    let mut held = Vec::new();
    for _ in 0..400 {
        // From 127.0.0.2: all of 127/8 is loopback, and the members use 127.0.0.1.
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        if let Ok(c) = s.connect(target).await {
            held.push(c);
        }
    }
    let capped = 400 - shield_union::direct::MAX_CONNS_PER_IP as u64;
    until(5000, "connections over the cap closed", || {
        na.refused("connection_cap") >= capped
    })
    .await;
    assert!(nb.h().publish(&decision("203.0.113.88/32"), &[]).unwrap());
    let d = recv_n(&mut na.rx, 1, 5000).await;
    assert_eq!(d[0].origin, Origin::Union("b".into()));
    drop(held);
    na.stop().await;
}
