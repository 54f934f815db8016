//! The union on NATS JetStream, against a real `nats-server` (Debian package
//! `nats-server`) that each test starts on a free loopback port with its own
//! store dir and kills at the end. Members are in-process `UnionHandle`s.

mod common;

use common::{SCEN, decision, free_port, now, recv_n, spec, start, treaty_text, until};
use shield_core::Net;
use shield_core::{Decision, DecisionType, Origin, Scope};
use shield_union::{Identity, SignalBody, Treaty, nats};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A nats-server with JetStream on loopback; killed on drop.
struct Server {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let bin = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .unwrap_or_else(|| {
                panic!("nats-server not found: install the Debian package `nats-server`")
            });
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new(bin)
            .args(["-js", "-sd"])
            .arg(dir.path())
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server (Debian package `nats-server`)");
        let end = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < end, "nats-server did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Server {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            _dir: dir,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nats_transport(url: &str) -> String {
    format!("kind = \"nats\"\nurl = \"{url}\"\n")
}

fn targets(ds: &[Decision]) -> Vec<String> {
    let mut v: Vec<String> = ds.iter().map(|d| d.target.to_string()).collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_ban_propagates_and_a_member_that_was_away_gets_every_signal() {
    let srv = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (spec("a"), spec("b"), spec("c"));
    let t = treaty_text(&[&a, &b, &c], "", &nats_transport(&srv.url), "");
    let mut na = start(dir.path(), &a, &t).await;
    let mut nb = start(dir.path(), &b, &t).await;
    let mut nc = start(dir.path(), &c, &t).await;

    let t0 = Instant::now();
    assert!(na.h().publish(&decision("203.0.113.7/32"), &[]).unwrap());
    let got_b = recv_n(&mut nb.rx, 1, 5000).await;
    let got_c = recv_n(&mut nc.rx, 1, 5000).await;
    eprintln!("propagation via NATS to 2 members: {:?}", t0.elapsed());
    for d in got_b.iter().chain(&got_c) {
        assert_eq!(d.target.to_string(), "203.0.113.7/32");
        assert_eq!(d.origin, Origin::Union("a".into()));
    }
    // The origin does not get its own signal back as a decision (b and c
    // already had theirs, so it was delivered through the server by now).
    let echoed = tokio::time::timeout(Duration::from_millis(500), na.rx.recv()).await;
    assert!(
        echoed.is_err(),
        "origin got its own signal back: {echoed:?}"
    );

    // c goes away; a and b keep publishing.
    nc.stop().await;
    for i in 1..=20 {
        assert!(
            na.h()
                .publish(&decision(&format!("198.51.100.{i}/32")), &[])
                .unwrap()
        );
    }
    for i in 1..=5 {
        assert!(
            nb.h()
                .publish(&decision(&format!("203.0.113.{}/32", 100 + i)), &[])
                .unwrap()
        );
    }
    let seen_by_b = recv_n(&mut nb.rx, 20, 5000).await;
    assert_eq!(seen_by_b.len(), 20);

    // c comes back: its durable consumer resumes where it stopped.
    nc.restart().await;
    let missed = recv_n(&mut nc.rx, 25, 10_000).await;
    let mut want: Vec<String> = (1..=20).map(|i| format!("198.51.100.{i}/32")).collect();
    want.extend((1..=5).map(|i| format!("203.0.113.{}/32", 100 + i)));
    want.sort();
    assert_eq!(targets(&missed), want);
    // Nothing twice: the first ban was acked before c stopped.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(nc.rx.try_recv().is_err(), "c received a signal twice");
    let st = nc.h().status();
    let a_row = st.members.iter().find(|m| m.name == "a").unwrap();
    assert_eq!(a_row.signals, 21, "c holds a's signals 1..=21");
    assert_eq!(a_row.health, shield_union::Health::Up);
}

/// A member whose database cannot take a signal (locked by someone else) does
/// not ack it: NATS delivers it again, and once the store writes it is kept
/// and enforced. Nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_redelivers_what_a_member_could_not_store() {
    let srv = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (spec("a"), spec("b"));
    let t = treaty_text(&[&a, &b], "", &nats_transport(&srv.url), "");
    let na = start(dir.path(), &a, &t).await;
    let mut nb = start(dir.path(), &b, &t).await;
    // Both consumers are up and flowing.
    assert!(na.h().publish(&decision("203.0.113.1/32"), &[]).unwrap());
    recv_n(&mut nb.rx, 1, 5000).await;

    // Someone holds b's database: its insert waits out the 5 s busy timeout and fails.
    let db = dir.path().join("b").join("shield.db");
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch("BEGIN EXCLUSIVE").unwrap();
        locked_tx.send(()).unwrap();
        std::thread::sleep(Duration::from_millis(6500));
        c.execute_batch("ROLLBACK").unwrap();
    });
    locked_rx.recv().unwrap();
    let t0 = Instant::now();
    assert!(na.h().publish(&decision("203.0.113.2/32"), &[]).unwrap());
    // Not stored, so not enforced while the lock is held.
    tokio::time::sleep(Duration::from_millis(5800)).await;
    assert!(
        nb.rx.try_recv().is_err(),
        "b enforced a signal it could not store"
    );
    holder.join().unwrap();
    // Redelivered after the nak delay, stored and enforced.
    let got = recv_n(&mut nb.rx, 1, 15_000).await;
    assert_eq!(targets(&got), ["203.0.113.2/32"]);
    eprintln!("redelivered and stored after {:?}", t0.elapsed());
    let a_row = nb
        .h()
        .status()
        .members
        .into_iter()
        .find(|m| m.name == "a")
        .unwrap();
    assert_eq!(a_row.signals, 2, "b holds both of a's signals");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_forged_signals_injected_into_the_stream_are_refused_and_counted() {
    let srv = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (spec("a"), spec("b"));
    let t = treaty_text(&[&a, &b], "", &nats_transport(&srv.url), "");
    let na = start(dir.path(), &a, &t).await;
    let mut nb = start(dir.path(), &b, &t).await;
    // The stream exists once a member is up; wait for b to be connected.
    until(5000, "b connected to NATS", || {
        nb.h()
            .status()
            .members
            .iter()
            .any(|m| m.name == "a" && m.health == shield_union::Health::Up)
    })
    .await;

    let treaty = Treaty::load(&nb.cfg.treaty_path).unwrap();
    let body = |origin: &str, seq: u64, target: &str, digest: [u8; 32]| {
        let target: Net = target.parse().unwrap();
        SignalBody {
            origin: origin.into(),
            seq,
            time: now(),
            scope: Scope::of(&target),
            target,
            kind: DecisionType::Ban,
            duration_s: 3600,
            scenario: SCEN.into(),
            evidence: vec![],
            treaty: digest,
        }
    };
    let mallory = Identity::generate().unwrap();
    let client = async_nats::connect(srv.url.as_str()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    // 1. Claims to be `a`, signed by another key.
    let forged = body("a", 1, "203.0.113.66/32", treaty.digest()).sign(&mallory);
    nats::publish_env(&js, "test-union", "a", 1, &forged)
        .await
        .unwrap();
    // 2. Not a member at all.
    let stranger = body("mallory", 1, "203.0.113.67/32", treaty.digest()).sign(&mallory);
    nats::publish_env(&js, "test-union", "mallory", 1, &stranger)
        .await
        .unwrap();
    // 3. Signed by `a`'s real key but under another treaty.
    let other = body("a", 2, "203.0.113.68/32", [7; 32]).sign(&a.id);
    nats::publish_env(&js, "test-union", "a", 2, &other)
        .await
        .unwrap();
    // 4. Bytes that are not an envelope.
    js.publish(nats::subject("test-union", "a"), "garbage".into())
        .await
        .unwrap()
        .await
        .unwrap();

    until(5000, "b counted every forgery", || {
        nb.refused("bad_signature") >= 1
            && nb.refused("not_member") >= 1
            && nb.refused("treaty_mismatch") >= 1
            && nb.refused("malformed") >= 1
    })
    .await;
    assert!(nb.rx.try_recv().is_err(), "a forged signal was enforced");

    // The genuine a#1 still arrives: the forged a#1 neither took its
    // de-duplication id in the stream nor marked a#1 as seen on b.
    assert!(na.h().publish(&decision("203.0.113.9/32"), &[]).unwrap());
    let got = recv_n(&mut nb.rx, 1, 5000).await;
    assert_eq!(got[0].target.to_string(), "203.0.113.9/32");
    assert_eq!(got[0].origin, Origin::Union("a".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_a_union_from_direct_to_nats_loses_no_signal() {
    let srv = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (spec("a"), spec("b"), spec("c"));
    let direct = treaty_text(&[&a, &b, &c], "", "", "");
    let on_nats = treaty_text(&[&a, &b, &c], "", &nats_transport(&srv.url), "");
    // The carrier is not policy: signals keep verifying across the switch.
    let d1 = Treaty::parse_str_for_test(&direct);
    let d2 = Treaty::parse_str_for_test(&on_nats);
    assert_eq!(d1, d2, "treaty digest must not depend on the transport");

    // On direct: c is down while a publishes 5 bans; b gets them.
    let mut na = start(dir.path(), &a, &direct).await;
    let mut nb = start(dir.path(), &b, &direct).await;
    for i in 1..=5 {
        assert!(
            na.h()
                .publish(&decision(&format!("198.51.100.{i}/32")), &[])
                .unwrap()
        );
    }
    recv_n(&mut nb.rx, 5, 10_000).await;
    na.stop().await;
    nb.stop().await;

    // Switch: only b and c come up on NATS (a, the origin, stays down).
    // b republishes what it stored, so c still gets all five.
    nb.cfg.treaty_path = rewrite(&nb.cfg.treaty_path, &on_nats);
    nb.restart().await;
    let mut nc = start(dir.path(), &c, &on_nats).await;
    let got = recv_n(&mut nc.rx, 5, 10_000).await;
    let want: Vec<String> = (1..=5).map(|i| format!("198.51.100.{i}/32")).collect();
    assert_eq!(targets(&got), want);
    for d in &got {
        assert_eq!(d.origin, Origin::Union("a".into()));
    }
    // a comes back on NATS too and continues its numbering; c gets #6.
    na.cfg.treaty_path = rewrite(&na.cfg.treaty_path, &on_nats);
    na.restart().await;
    assert!(na.h().publish(&decision("198.51.100.6/32"), &[]).unwrap());
    let got = recv_n(&mut nc.rx, 1, 10_000).await;
    assert_eq!(got[0].target.to_string(), "198.51.100.6/32");
    assert_eq!(nc.refused("treaty_mismatch"), 0);
}

fn rewrite(p: &Path, text: &str) -> PathBuf {
    std::fs::write(p, text).unwrap();
    p.to_owned()
}

trait ParseForTest {
    fn parse_str_for_test(text: &str) -> [u8; 32];
}

impl ParseForTest for Treaty {
    fn parse_str_for_test(text: &str) -> [u8; 32] {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.toml");
        std::fs::write(&p, text).unwrap();
        Treaty::load(&p).unwrap().digest()
    }
}
