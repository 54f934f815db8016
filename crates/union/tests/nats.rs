//! The union on NATS JetStream, against a real `nats-server` (Debian package
//! `nats-server`) that each test starts on a free loopback port with its own
//! store dir and kills at the end. Members are in-process `UnionHandle`s.

mod common;

use common::{SCEN, decision, free_port, now, recv_n, spec, start, treaty_text, until};
use shield_core::Net;
use shield_core::{Decision, DecisionType, Origin, Scope};
use shield_union::{Identity, SignalBody, Treaty, history, nats};
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
        Server::start_with(|_| None)
    }

    /// A server from a config file `conf(port)` writes (`None`: flags only).
    fn start_with(conf: impl FnOnce(u16) -> Option<String>) -> Server {
        let bin = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .unwrap_or_else(|| {
                panic!("nats-server not found: install the Debian package `nats-server`")
            });
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut cmd = Command::new(bin);
        match conf(port) {
            Some(text) => {
                let f = dir.path().join("nats.conf");
                let text = text.replace("@STORE@", dir.path().join("js").to_str().unwrap());
                std::fs::write(&f, text).unwrap();
                cmd.arg("-c").arg(f);
            }
            None => {
                cmd.args(["-js", "-sd"]).arg(dir.path()).args([
                    "-a",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                ]);
            }
        }
        let child = cmd
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

/// Issue #23 item 3: someone holding shared NATS credentials deletes a
/// member's durable consumer and recreates it with another filter and
/// `deliver_policy new`. The member must notice on open (status `down`, the
/// error says what is wrong), not keep reading nothing while reporting `up`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_consumer_is_detected_not_trusted() {
    let srv = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (spec("a"), spec("b"));
    let t = treaty_text(&[&a, &b], "", &nats_transport(&srv.url), "");
    let mut na = start(dir.path(), &a, &t).await;
    let nb = start(dir.path(), &b, &t).await;
    assert!(nb.h().publish(&decision("203.0.113.21/32"), &[]).unwrap());
    recv_n(&mut na.rx, 1, 10_000).await;
    na.stop().await;

    let client = async_nats::connect(&srv.url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let st = js
        .get_stream(nats::stream_name("test-union"))
        .await
        .unwrap();
    st.delete_consumer(&nats::consumer_name("a")).await.unwrap();
    let mut hostile = nats::consumer_config("test-union", "a");
    hostile.filter_subject = "shield.test-union.sig.nobody".into();
    hostile.deliver_policy = async_nats::jetstream::consumer::DeliverPolicy::New;
    st.create_consumer(hostile).await.unwrap();

    na.restart().await;
    until(10_000, "a reports the replaced consumer", || {
        na.h().status().members.iter().any(|m| {
            m.name == "b"
                && m.health == shield_union::Health::Down
                && m.last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("filter_subject") && e.contains("deliver_policy"))
        })
    })
    .await;
    na.stop().await;
}

/// The NATS config docs/nats.md gives for per-member users: `m` holds its own
/// user; it cannot delete or replace `a`'s consumer, seal the stream, or
/// publish on `a`'s subject, and honest traffic flows meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_member_nats_users_confine_a_hostile_member() {
    let union = "test-union";
    let user = |m: &str| {
        format!(
            r#"    {{ user: {m}, password: "pw-{m}", permissions: {{
        publish: {{ allow: ["shield.{union}.sig.{m}", "$JS.API.STREAM.INFO.SHIELD_{union}",
                             "$JS.API.CONSUMER.INFO.SHIELD_{union}.shield_{m}",
                             "$JS.API.CONSUMER.MSG.NEXT.SHIELD_{union}.shield_{m}",
                             "$JS.ACK.SHIELD_{union}.shield_{m}.>",
                             "shield.{union}.gov.*.{m}", "$JS.API.STREAM.INFO.SHIELD_{union}_GOV",
                             "$JS.API.CONSUMER.INFO.SHIELD_{union}_GOV.shield_gov_{m}",
                             "$JS.API.CONSUMER.MSG.NEXT.SHIELD_{union}_GOV.shield_gov_{m}",
                             "$JS.ACK.SHIELD_{union}_GOV.shield_gov_{m}.>"] }}
        subscribe: {{ allow: ["_INBOX_{m}.>"] }} }} }}
"#
        )
    };
    let srv = Server::start_with(|port| {
        Some(format!(
            "listen: 127.0.0.1:{port}\njetstream {{ store_dir: \"@STORE@\" }}\nauthorization {{ users = [\n    {{ user: admin, password: \"pw-admin\" }}\n{}{}{}] }}\n",
            user("a"),
            user("b"),
            user("m")
        ))
    });
    let admin =
        async_nats::ConnectOptions::with_user_and_password("admin".into(), "pw-admin".into())
            .connect(&srv.url)
            .await
            .unwrap();
    let js = async_nats::jetstream::new(admin);
    nats::provision(&js, union, Duration::from_secs(86_400), &["a", "b", "m"])
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let (a, b, m) = (spec("a"), spec("b"), spec("m"));
    for s in [&a, &b] {
        std::fs::create_dir_all(dir.path().join(s.name)).unwrap();
        std::fs::write(
            dir.path().join(s.name).join("nats.pass"),
            format!("pw-{}\n", s.name),
        )
        .unwrap();
    }
    let transport = format!(
        "kind = \"nats\"\nurl = \"{}\"\nuser = \"{{member}}\"\npassword_file = \"{}/{{member}}/nats.pass\"\n",
        srv.url,
        dir.path().display()
    );
    let t = treaty_text(&[&a, &b, &m], "", &transport, "");
    let na = start(dir.path(), &a, &t).await;
    let mut nb = start(dir.path(), &b, &t).await;
    assert!(na.h().publish(&decision("203.0.113.31/32"), &[]).unwrap());
    let d = recv_n(&mut nb.rx, 1, 10_000).await;
    assert_eq!(d[0].origin, Origin::Union("a".into()));

    // m, with its own user.
    let mc = async_nats::ConnectOptions::with_user_and_password("m".into(), "pw-m".into())
        .custom_inbox_prefix("_INBOX_m")
        .connect(&srv.url)
        .await
        .unwrap();
    let mjs = async_nats::jetstream::new(mc.clone());
    let st = tokio::time::timeout(
        Duration::from_secs(3),
        mjs.get_stream(nats::stream_name(union)),
    )
    .await
    .unwrap()
    .unwrap();
    let del = tokio::time::timeout(
        Duration::from_secs(3),
        st.delete_consumer(&nats::consumer_name("a")),
    )
    .await;
    assert!(!matches!(del, Ok(Ok(_))), "m deleted a's consumer");
    let mut sealed = st.cached_info().config.clone();
    sealed.sealed = true;
    let upd = tokio::time::timeout(Duration::from_secs(3), mjs.update_stream(sealed)).await;
    assert!(!matches!(upd, Ok(Ok(_))), "m sealed the stream");
    let digest = na.h().treaty().digest();
    let target: Net = "203.0.113.32/32".parse().unwrap();
    let body = |origin: &str, seq| SignalBody {
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
    };
    // On a's subject (whatever it signs) m is refused by the server.
    let env = body("m", 1).sign(&m.id);
    let spoof = tokio::time::timeout(
        Duration::from_secs(3),
        nats::publish_env(&mjs, union, "a", 99, &env),
    )
    .await;
    assert!(!matches!(spoof, Ok(Ok(_))), "m published on a's subject");
    // Nor on a's governance subjects.
    let g = shield_union::history::History::load_or_genesis(&na.cfg.treaty_path)
        .unwrap()
        .current()
        .clone();
    let gov_spoof = tokio::time::timeout(
        Duration::from_secs(3),
        nats::publish_gov(&mjs, union, "treaty", "a", &g),
    )
    .await;
    assert!(
        !matches!(gov_spoof, Ok(Ok(_))),
        "m published on a's governance subject"
    );
    // On its own subject m is heard like any member.
    let own = tokio::time::timeout(
        Duration::from_secs(3),
        nats::publish_env(&mjs, union, "m", 1, &env),
    )
    .await;
    assert!(matches!(own, Ok(Ok(true))), "{own:?}");
    let d = recv_n(&mut nb.rx, 1, 10_000).await;
    assert_eq!(d[0].origin, Origin::Union("m".into()));
    // a's consumer is intact and honest traffic still flows.
    assert!(na.h().publish(&decision("203.0.113.33/32"), &[]).unwrap());
    let d = recv_n(&mut nb.rx, 1, 10_000).await;
    assert_eq!(d[0].target.to_string(), "203.0.113.33/32");
    let ci = js
        .get_stream(nats::stream_name(union))
        .await
        .unwrap()
        .consumer_info(nats::consumer_name("a"))
        .await
        .unwrap()
        .config
        .clone();
    nats::check_consumer(union, "a", &ci).unwrap();
}

fn version_of(n: &common::Node) -> (u64, String) {
    let h = history::History::load_or_genesis(&n.cfg.treaty_path).unwrap();
    (h.current().version, h.current().digest.clone())
}

fn pending_ids(n: &common::Node) -> Vec<String> {
    history::pending_in(&history::amendments_dir(&n.cfg.treaty_path))
        .into_iter()
        .map(|(_, a)| a.id())
        .collect()
}

/// Amendments over NATS as over direct: `a`'s proposal reaches `b` and `c`
/// through the governance stream, `b`'s signature completes the majority,
/// every member installs the same version 2; `c`, stopped before the
/// signature, catches up from its durable consumer. A forged co-signature
/// injected into the stream does not count (it is dropped), garbage is
/// refused and counted, and a proposal signed by a minority stays pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amendments_travel_over_nats_and_every_member_installs_the_same_version() {
    let srv = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (spec("a"), spec("b"), spec("c"));
    let t = treaty_text(&[&a, &b, &c], "", &nats_transport(&srv.url), "");
    let na = start(dir.path(), &a, &t).await;
    let nb = start(dir.path(), &b, &t).await;
    let mut nc = start(dir.path(), &c, &t).await;
    let g = history::History::load_or_genesis(&na.cfg.treaty_path)
        .unwrap()
        .current()
        .clone();
    let next = t.replace(
        "max_signals_per_minute = 10000",
        "max_signals_per_minute = 600",
    );
    let p = history::Amendment::propose(&g, &next, "a", &a.id).unwrap();
    let id = p.id();
    let adir = history::amendments_dir(&na.cfg.treaty_path);
    std::fs::create_dir_all(&adir).unwrap();
    history::save_amendment(&adir.join(format!("{}.json", &id[..16])), &p).unwrap();
    until(10_000, "b and c hold a's proposal", || {
        pending_ids(&nb).contains(&id) && pending_ids(&nc).contains(&id)
    })
    .await;
    // One signature of three is a minority: nothing installed anywhere.
    tokio::time::sleep(Duration::from_millis(600)).await;
    for n in [&na, &nb, &nc] {
        assert_eq!(version_of(n).0, 1, "a minority ratified on {}", n.cfg.name);
    }

    // Hostile bytes in the governance stream: a co-signature of b made with
    // another key (dropped), and garbage (refused and counted).
    let client = async_nats::connect(srv.url.as_str()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut forged = p.clone();
    forged.sign("b", &Identity::generate().unwrap());
    nats::publish_gov(&js, "test-union", "sig", "b", &forged)
        .await
        .unwrap();
    js.publish(
        nats::gov_subject("test-union", "treaty", "b"),
        "garbage".into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    until(5000, "b counted the garbage", || {
        nb.h().status().counters.amendments_refused >= 1
    })
    .await;
    assert_eq!(version_of(&nb).0, 1, "a forged signature ratified");

    // c goes away; b signs its copy (what `shield union sign` does).
    nc.stop().await;
    let bdir = history::amendments_dir(&nb.cfg.treaty_path);
    let (path, mut mine) = history::pending_in(&bdir)
        .into_iter()
        .find(|(_, x)| x.id() == id)
        .unwrap();
    mine.sign("b", &b.id);
    history::save_amendment(&path, &mine).unwrap();
    until(10_000, "a and b installed version 2", || {
        version_of(&na).0 == 2 && version_of(&nb).0 == 2
    })
    .await;
    assert_eq!(version_of(&na), version_of(&nb));
    assert_eq!(version_of(&na).1, p.digest);
    assert_eq!(
        Treaty::load(&na.cfg.treaty_path).unwrap().digest_hex(),
        p.digest,
        "the treaty file is the new version"
    );

    // c returns and catches up from its consumer.
    nc.restart().await;
    until(10_000, "c caught up to version 2", || {
        version_of(&nc).0 == 2
    })
    .await;
    assert_eq!(version_of(&nc), version_of(&na));
    let h = history::History::load_or_genesis(&nc.cfg.treaty_path).unwrap();
    h.verify(&g.digest).unwrap();
}
