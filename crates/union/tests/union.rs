//! In-process unions on loopback: several `UnionHandle`s with their own temp
//! dirs, keys, databases and ports, talking real mTLS HTTP to each other.

mod common;

use common::{SCEN, decision, now, recv_n, spec, start, treaty_text, until};
use shield_core::Net;
use shield_core::{Decision, DecisionType, Origin, Scope};
use shield_union::direct::PeerClient;
use shield_union::{Envelope, Health, Identity, SignalBody, UnionConfig, UnionHandle};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

fn assert_nothing(rx: &mut mpsc::Receiver<Decision>) {
    if let Ok(d) = rx.try_recv() {
        panic!("no decision expected, got {d:?}");
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_publish_reaches_all_with_latency() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (spec("a"), spec("b"), spec("c"));
    let t = treaty_text(&[&a, &b, &c], "", "", "");
    let na = start(dir.path(), &a, &t).await;
    let mut nb = start(dir.path(), &b, &t).await;
    let mut nc = start(dir.path(), &c, &t).await;
    until(5000, "peers up", || {
        na.h()
            .status()
            .members
            .iter()
            .filter(|m| m.health == Health::Up)
            .count()
            == 2
    })
    .await;

    // A non-binding scenario and an allowlisted target are not published.
    let mut other = decision("203.0.113.250/32");
    other.scenario = "nginx-probe".into();
    assert!(!na.h().publish(&other, &[]).unwrap());
    assert!(!na.h().publish(&decision("192.0.2.1/32"), &[]).unwrap());

    let n = 200usize;
    let mut lat = Vec::with_capacity(2 * n);
    for i in 0..n {
        let target = format!("203.0.{}.{}/32", 113 + i / 250, 1 + i % 250);
        let t0 = Instant::now();
        assert!(
            na.h()
                .publish(
                    &decision(&target),
                    &[format!("Failed password for root from {target}")]
                )
                .unwrap()
        );
        for rx in [&mut nb.rx, &mut nc.rx] {
            let d = recv_n(rx, 1, 5000).await.remove(0);
            lat.push(t0.elapsed());
            assert_eq!(d.target.to_string(), target);
            assert_eq!(d.origin, Origin::Union("a".into()));
            assert_eq!(d.kind, DecisionType::Ban);
            assert_eq!(d.duration_s(), 4 * 3600);
        }
    }
    lat.sort();
    let (p50, p99) = (pct(&lat, 0.50), pct(&lat, 0.99));
    println!(
        "publish→arrival over {} deliveries (A→B, A→C): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        lat.len(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        lat[lat.len() - 1].as_secs_f64() * 1e3
    );
    // The goal (p99 ≤ 250 ms) is for optimized builds, where this measures ~0.4 ms.
    // Unoptimized builds spend milliseconds per signature in debug curve25519
    // and SQLite, and CI shares two cores with other builds, so they only get a
    // loose bound that still catches a stalled path (waiting for anti-entropy
    // instead of the push would show as seconds).
    let bound = if cfg!(debug_assertions) { 2000 } else { 250 };
    assert!(
        p99 < Duration::from_millis(bound),
        "p99 {p99:?} over {bound} ms"
    );
    let sa = na.h().status();
    assert_eq!(sa.counters.published, n as u64);
    until(3000, "A counted deliveries", || {
        na.h().status().counters.sent == 2 * n as u64
    })
    .await;
    let sb = nb.h().status();
    assert_eq!(sb.counters.received, n as u64);
    let ma = sb.members.iter().find(|m| m.name == "a").unwrap();
    assert_eq!(ma.signals, n as u64);
    assert!(ma.last_signal_age_s.unwrap() < 60);
    // Anti-entropy runs meanwhile: nothing arrives twice.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_nothing(&mut nb.rx);
    assert_nothing(&mut nc.rx);
    assert!(
        serde_json::to_string(&sb)
            .unwrap()
            .contains("\"received\":200")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_member_catches_up_from_relay_when_origin_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (spec("a"), spec("b"), spec("c"));
    let t = treaty_text(&[&a, &b, &c], "", "", "");
    let mut na = start(dir.path(), &a, &t).await;
    let mut nb = start(dir.path(), &b, &t).await;
    let mut nc = start(dir.path(), &c, &t).await;
    // One signal while everyone is up.
    assert!(na.h().publish(&decision("198.51.100.1/32"), &[]).unwrap());
    recv_n(&mut nc.rx, 1, 5000).await;
    recv_n(&mut nb.rx, 1, 5000).await;

    nc.stop().await;
    let targets: Vec<String> = (2..=6).map(|i| format!("198.51.100.{i}/32")).collect();
    for t in &targets {
        assert!(na.h().publish(&decision(t), &[]).unwrap());
    }
    recv_n(&mut nb.rx, targets.len(), 5000).await;
    na.stop().await;

    nc.restart().await;
    let got = recv_n(&mut nc.rx, targets.len(), 5000).await;
    let mut got: Vec<String> = got.iter().map(|d| d.target.to_string()).collect();
    got.sort();
    assert_eq!(got, targets);
    assert!(nb.h().status().counters.relayed >= targets.len() as u64);
    let sc = nc.h().status();
    assert_eq!(
        sc.members.iter().find(|m| m.name == "a").unwrap().signals,
        6
    );
    until(5000, "C sees A down", || {
        nc.h()
            .status()
            .members
            .iter()
            .any(|m| m.name == "a" && m.health == Health::Down)
    })
    .await;
    // The earlier signal, already held, is not delivered again after restart.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_nothing(&mut nc.rx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_with_different_treaty_is_refused_with_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (spec("a"), spec("b"));
    let t = treaty_text(&[&a, &b], "", "", "");
    let other = t.replace("duration = \"4h\"", "duration = \"1h\"");
    let mut na = start(dir.path(), &a, &t).await;
    let nb = start(dir.path(), &b, &other).await;
    until(5000, "A reports B's treaty mismatch", || {
        na.h()
            .status()
            .members
            .iter()
            .any(|m| m.name == "b" && m.health == Health::TreatyMismatch)
    })
    .await;
    let sa = na.h().status();
    let mb = sa.members.iter().find(|m| m.name == "b").unwrap();
    let msg = mb.last_error.clone().unwrap();
    assert!(
        msg.contains("policy for scenario `sshd-bruteforce` differs"),
        "{msg}"
    );
    assert!(msg.contains("4h") && msg.contains("1h"), "{msg}");
    until(5000, "B reports A's treaty mismatch", || {
        nb.h().status().members.iter().any(|m| {
            m.name == "a"
                && m.health == Health::TreatyMismatch
                && m.last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("differs"))
        })
    })
    .await;
    // B's signals carry B's digest and are refused and counted at A.
    let before = na.refused("treaty_mismatch");
    let env = SignalBody {
        origin: "b".into(),
        seq: 1,
        time: now(),
        scope: Scope::Ip,
        target: "203.0.113.9/32".parse().unwrap(),
        kind: DecisionType::Ban,
        duration_s: 3600,
        scenario: SCEN.into(),
        evidence: vec![],
        treaty: nb.h().treaty().digest(),
    }
    .sign(&b.id);
    let client =
        PeerClient::new(&b.id, "a", &a.id.public(), &format!("127.0.0.1:{}", a.port)).unwrap();
    client.push(&[env]).await.unwrap();
    until(2000, "A counts the refused signal", || {
        na.refused("treaty_mismatch") > before
    })
    .await;
    // B publishing through its own handle does not reach A either.
    assert!(nb.h().publish(&decision("203.0.113.10/32"), &[]).unwrap());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_nothing(&mut na.rx);
    // An extra member is named as such.
    let x = spec("x");
    let third = treaty_text(&[&a, &b, &x], "", "", "");
    let t3 = shield_union::Treaty::parse(&third, Path::new("x")).unwrap();
    let t1 = shield_union::Treaty::parse(&t, Path::new("x")).unwrap();
    let d = shield_union::treaty::Canonical::diff(t1.canonical(), t3.canonical());
    assert_eq!(
        d,
        vec!["your treaty has member `x` that mine does not".to_string()]
    );
}

struct Forge {
    origin: &'static str,
    seq: u64,
    digest: [u8; 32],
}

impl Forge {
    fn sign(&mut self, id: &Identity, target: &str) -> Envelope {
        self.seq += 1;
        let target: Net = target.parse().unwrap();
        SignalBody {
            origin: self.origin.into(),
            seq: self.seq,
            time: now(),
            scope: Scope::of(&target),
            target,
            kind: DecisionType::Ban,
            duration_s: 3600,
            scenario: SCEN.into(),
            evidence: vec!["x".into()],
            treaty: self.digest,
        }
        .sign(id)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_signals_are_refused_and_counted_while_honest_traffic_flows() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (spec("a"), spec("b"));
    let mut m = spec("m"); // a member that misbehaves; we hold its key
    m.cap = Some(20);
    let r = spec("r"); // a member whose key is revoked
    let top = format!("revoked = [\"{}\"]", r.id.public_string());
    let t = treaty_text(&[&a, &b, &m, &r], &top, "", "");
    let mut na = start(dir.path(), &a, &t).await;
    let nb = start(dir.path(), &b, &t).await;
    let digest = na.h().treaty().digest();
    let a_ep = format!("127.0.0.1:{}", a.port);
    let from_m = PeerClient::new(&m.id, "a", &a.id.public(), &a_ep).unwrap();
    let mut fm = Forge {
        origin: "m",
        seq: 0,
        digest,
    };

    // Forged: claims to come from b, signed with m's key.
    let mut fb = Forge {
        origin: "b",
        seq: 100,
        digest,
    };
    from_m
        .push(&[fb.sign(&m.id, "203.0.113.50/32")])
        .await
        .unwrap();
    until(2000, "bad_signature counted", || {
        na.refused("bad_signature") == 1
    })
    .await;

    // Honest signal from m, then the same bytes again (replay).
    let good = fm.sign(&m.id, "203.0.113.51/32");
    from_m.push(std::slice::from_ref(&good)).await.unwrap();
    let d = recv_n(&mut na.rx, 1, 2000).await;
    assert_eq!(d[0].origin, Origin::Union("m".into()));
    from_m.push(std::slice::from_ref(&good)).await.unwrap();
    until(2000, "replay counted", || na.refused("duplicate") >= 1).await;
    // Same sequence number, other content.
    fm.seq -= 1;
    from_m
        .push(&[fm.sign(&m.id, "203.0.113.52/32")])
        .await
        .unwrap();
    until(2000, "conflict counted", || na.refused("conflict") == 1).await;

    // Allowlisted target and a /8.
    from_m
        .push(&[fm.sign(&m.id, "192.0.2.7/32")])
        .await
        .unwrap();
    until(2000, "allowlisted counted", || {
        na.refused("allowlisted") == 1
    })
    .await;
    from_m.push(&[fm.sign(&m.id, "10.0.0.0/8")]).await.unwrap();
    until(2000, "too_wide counted", || na.refused("too_wide") == 1).await;

    // A flood: m's cap is 20/min and one was already accepted.
    let flood: Vec<Envelope> = (0..50)
        .map(|i| fm.sign(&m.id, &format!("198.51.100.{}/32", i + 1)))
        .collect();
    from_m.push(&flood).await.unwrap();
    until(2000, "rate_cap counted", || na.refused("rate_cap") == 31).await;
    let accepted = recv_n(&mut na.rx, 19, 2000).await;
    assert!(
        accepted
            .iter()
            .all(|d| d.origin == Origin::Union("m".into()))
    );

    // Revoked key: refused at the TLS handshake, and its signals refused when relayed.
    let from_r = PeerClient::new(&r.id, "a", &a.id.public(), &a_ep).unwrap();
    assert!(from_r.push(&[]).await.is_err());
    until(2000, "revoked handshake counted", || {
        na.refused("revoked") >= 1
    })
    .await;
    let before = na.refused("revoked");
    let mut fr = Forge {
        origin: "r",
        seq: 0,
        digest,
    };
    from_m
        .push(&[fr.sign(&r.id, "203.0.113.60/32")])
        .await
        .unwrap();
    until(2000, "revoked signal counted", || {
        na.refused("revoked") == before + 1
    })
    .await;

    // A non-member key cannot even connect.
    let stranger = Identity::generate().unwrap();
    let from_s = PeerClient::new(&stranger, "a", &a.id.public(), &a_ep).unwrap();
    assert!(from_s.push(&[]).await.is_err());

    // Honest traffic still flows.
    let t0 = Instant::now();
    assert!(nb.h().publish(&decision("203.0.113.70/32"), &[]).unwrap());
    let d = recv_n(&mut na.rx, 1, 2000).await;
    assert_eq!(d[0].origin, Origin::Union("b".into()));
    println!("honest b→a after the attack: {:?}", t0.elapsed());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_nothing(&mut na.rx);
    let s = na.h().status();
    println!("refusals at a: {:?}", s.counters.refused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_holds_until_enough_members_report() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (spec("a"), spec("b"), spec("c"));
    let policy = format!(
        "\n[[policy]]\nscenario = \"{SCEN}\"\ntype = \"ban\"\nduration = \"4h\"\nquorum = 2\n"
    );
    let t = treaty_text(&[&a, &b, &c], "", "", &policy);
    let na = start(dir.path(), &a, &t).await;
    let mut nb = start(dir.path(), &b, &t).await;
    let nc = start(dir.path(), &c, &t).await;
    assert!(na.h().publish(&decision("203.0.113.80/32"), &[]).unwrap());
    until(3000, "held at b", || {
        nb.h().status().counters.held_for_quorum == 1
    })
    .await;
    assert_nothing(&mut nb.rx);
    assert!(nc.h().publish(&decision("203.0.113.80/32"), &[]).unwrap());
    let d = recv_n(&mut nb.rx, 1, 3000).await;
    assert_eq!(d[0].target.to_string(), "203.0.113.80/32");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_nothing(&mut nb.rx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pardon_is_local_and_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (spec("a"), spec("b"));
    let t = treaty_text(&[&a, &b], "", "", "");
    let na = start(dir.path(), &a, &t).await;
    let mut nb = start(dir.path(), &b, &t).await;
    nb.h()
        .pardon("203.0.113.0/24".parse().unwrap(), None)
        .unwrap();
    assert!(na.h().publish(&decision("203.0.113.90/32"), &[]).unwrap());
    until(3000, "pardoned counted", || nb.refused("pardoned") == 1).await;
    nb.stop().await;
    nb.restart().await;
    assert!(na.h().publish(&decision("203.0.113.91/32"), &[]).unwrap());
    // The treaty decides type and duration: a local captcha for 60 s goes out as its ban for 4h.
    let mut local = decision("198.51.100.91/32");
    local.kind = DecisionType::Captcha;
    local.expires = local.created + 60;
    assert!(na.h().publish(&local, &[]).unwrap());
    let d = recv_n(&mut nb.rx, 1, 3000).await;
    assert_eq!(d[0].target.to_string(), "198.51.100.91/32");
    assert_eq!(
        (d[0].kind, d[0].duration_s()),
        (DecisionType::Ban, 4 * 3600)
    );
    assert_eq!(
        nb.refused("pardoned"),
        1,
        "after restart the pardon still holds"
    );
    assert_nothing(&mut nb.rx);
}

#[test]
fn start_refuses_wrong_key_and_unknown_member() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let a = spec("a");
    let t = treaty_text(&[&a], "", "", "");
    let tp = dir.path().join("t.toml");
    std::fs::write(&tp, &t).unwrap();
    let other = dir.path().join("other.key");
    Identity::generate().unwrap().write(&other, false).unwrap();
    let cfg = |name: &str, key: PathBuf| UnionConfig {
        name: name.into(),
        key_path: key,
        treaty_path: tp.clone(),
        listen: "127.0.0.1:0".parse().unwrap(),
        db_path: dir.path().join("db"),
    };
    let (tx, _rx) = mpsc::channel(1);
    let e = rt
        .block_on(UnionHandle::start(cfg("a", other.clone()), tx.clone()))
        .err()
        .unwrap();
    assert!(
        e.to_string()
            .contains("does not match the key the treaty lists"),
        "{e}"
    );
    let e = rt
        .block_on(UnionHandle::start(cfg("zz", other), tx))
        .err()
        .unwrap();
    assert!(
        e.to_string().contains("member `zz` is not in treaty"),
        "{e}"
    );
}

/// A signal body as a member could sign it with any `ipnet` value as target,
/// canonical or not: the same field order as [`SignalBody`].
#[derive(serde::Serialize)]
struct RawBody {
    origin: String,
    seq: u64,
    time: i64,
    scope: Scope,
    target: ipnet::IpNet,
    kind: DecisionType,
    duration_s: u64,
    scenario: String,
    evidence: Vec<String>,
    treaty: [u8; 32],
}

fn sign_raw(id: &Identity, body: &RawBody) -> Envelope {
    use base64::Engine as _;
    use ed25519_dalek::Signer as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut payload = vec![shield_union::signal::PAYLOAD_VERSION];
    payload.extend(postcard::to_stdvec(body).unwrap());
    let sig = id.signing_key().sign(&payload);
    Envelope {
        payload: b64.encode(&payload),
        sig: b64.encode(sig.to_bytes()),
    }
}

/// Issue 19: a member signed `::ffff:192.0.2.7` (inside the union allowlist
/// 192.0.2.0/24) or `::ffff:0.0.0.0/96` (0.0.0.0/0, past the IPv6 prefix cap
/// of /48) and the receiver took them, compared as IPv6, while the firewall
/// and bouncer API applied them as IPv4. Such a payload no longer decodes:
/// what is signed must be the canonical value that is checked and enforced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapped_or_compatible_signal_targets_are_refused_not_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let (a, m) = (spec("a"), spec("m"));
    let t = treaty_text(&[&a, &m], "", "", "");
    let mut na = start(dir.path(), &a, &t).await;
    let digest = na.h().treaty().digest();
    let from_m =
        PeerClient::new(&m.id, "a", &a.id.public(), &format!("127.0.0.1:{}", a.port)).unwrap();
    let mut seq = 0;
    let mut raw = |target: &str| {
        seq += 1;
        let target: ipnet::IpNet = target.parse().unwrap();
        let host = target.prefix_len() == target.max_prefix_len();
        sign_raw(
            &m.id,
            &RawBody {
                origin: "m".into(),
                seq,
                time: now(),
                scope: if host { Scope::Ip } else { Scope::Range },
                target,
                kind: DecisionType::Ban,
                duration_s: 3600,
                scenario: SCEN.into(),
                evidence: vec![],
                treaty: digest,
            },
        )
    };
    let hostile = [
        "::ffff:192.0.2.7/128",
        "::ffff:0.0.0.0/96",
        "::ffff:10.0.0.0/104",
        "::c000:207/128",
    ];
    for target in hostile {
        from_m.push(&[raw(target)]).await.unwrap();
    }
    until(2000, "malformed counted", || {
        na.refused("malformed") == hostile.len() as u64
    })
    .await;
    // The same raw path with a canonical target is accepted: the refusals
    // above are about the address form, not the forging helper.
    from_m.push(&[raw("203.0.113.95/32")]).await.unwrap();
    let d = recv_n(&mut na.rx, 1, 2000).await;
    assert_eq!(d[0].target.to_string(), "203.0.113.95/32");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_nothing(&mut na.rx);
    na.stop().await;
}

/// The member judges signals on the clock it is given (the daemon's), not the
/// wall: b, whose clock is a day behind, refuses a's fresh signal as one from
/// the future and hands nothing on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_judges_on_the_clock_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (spec("a"), spec("b"));
    let t = treaty_text(&[&a, &b], "", "", "");
    let na = start(dir.path(), &a, &t).await;
    let mut nb = start(dir.path(), &b, &t).await;
    nb.stop().await;
    let (tx, rx) = mpsc::channel(100);
    let clock = shield_core::Clock::manual(now() - 86_400);
    nb.handle = Some(
        UnionHandle::start_with_clock(nb.cfg.clone(), tx, clock)
            .await
            .unwrap(),
    );
    nb.rx = rx;
    assert!(na.h().publish(&decision("203.0.113.92/32"), &[]).unwrap());
    until(5000, "refused as from the future", || {
        nb.refused("future") >= 1
    })
    .await;
    assert_nothing(&mut nb.rx);
}

/// Key rotation with an overlap window: `b`'s treaty entry has a new key and
/// its old key as `previous_key` valid for 3 s. Inside the window `b` still
/// runs on the old key file and its signals are enforced by `a`; after it,
/// signals under the old key are refused (and `b` cannot start on it); once
/// the new key file is installed they flow again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_overlaps_its_old_key_until_the_window_ends() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (spec("a"), spec("b"));
    let new_key = Identity::generate().unwrap();
    let until = now() + 3;
    let old = b.id.public_string();
    let t = treaty_text(&[&a, &b], "", "", "").replace(
        &format!("key = \"{old}\""),
        &format!(
            "key = \"{}\"\nprevious_key = \"{old}\"\nprevious_key_until = {until}",
            new_key.public_string()
        ),
    );
    assert!(t.contains("previous_key_until"));
    let mut na = start(dir.path(), &a, &t).await;
    // b's key file still holds the old key (common::start writes b.id).
    let mut nb = start(dir.path(), &b, &t).await;
    assert!(nb.h().publish(&decision("203.0.113.41/32"), &[]).unwrap());
    let d = recv_n(&mut na.rx, 1, 5000).await;
    assert_eq!(d[0].origin, Origin::Union("b".into()));

    // The window ends: the old key's signals are refused as forgeries.
    while now() <= until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = na.refused("bad_signature");
    assert!(nb.h().publish(&decision("203.0.113.42/32"), &[]).unwrap());
    until_ms(&na, before).await;
    assert_nothing(&mut na.rx);
    nb.stop().await;
    let e = UnionHandle::start(nb.cfg.clone(), mpsc::channel(1).0).await;
    assert!(e.is_err(), "b started on its old key after the window");

    // The new key file installed: b's signals flow again.
    new_key.write(&nb.cfg.key_path, true).unwrap();
    nb.restart().await;
    assert!(nb.h().publish(&decision("203.0.113.43/32"), &[]).unwrap());
    let got = recv_n(&mut na.rx, 1, 10_000).await;
    assert_eq!(got[0].target.to_string(), "203.0.113.43/32");
    // 42, signed with the old key after the window, stays refused when b
    // serves it again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_nothing(&mut na.rx);
}

async fn until_ms(n: &common::Node, before: u64) {
    until(5000, "a refused b's old-key signal", || {
        n.refused("bad_signature") > before
    })
    .await;
}
