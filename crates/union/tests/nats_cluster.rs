//! The union on a real 3-node nats-server cluster (issue #23): JetStream on
//! every node with its own store dir, the union's stream created with
//! replicas = 3, one member per node. The node of member `c` is killed during
//! a steady flow of signals and restarted later; nothing may be lost and
//! nothing applied twice, and `c` must reconnect through the other nodes.
//! Then the same node dies during an amendment (proposal in flight, node
//! back before the last signature): every member installs the same version.

mod common;

use common::{decision, free_port, spec, start, treaty_text, until};
use shield_union::{history, nats};
use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One cluster node; restartable on the same ports and store dir.
struct Node {
    name: String,
    port: u16,
    http: u16,
    conf: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let bin = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .unwrap_or_else(|| {
                panic!("nats-server not found: install the Debian package `nats-server`")
            });
        let child = Command::new(bin)
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server (Debian package `nats-server`)");
        self.child = Some(child);
        let end = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < end,
                "{} did not listen on {}",
                self.name,
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The client connection names this node serves (its `/connz` monitor).
    fn clients(&self) -> String {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.http)) else {
            return String::new();
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = s.write_all(b"GET /connz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three nodes routed to each other, JetStream on each; the store dirs live
/// in `dir` (removed when the test's tempdir drops).
fn cluster(dir: &std::path::Path) -> Vec<Node> {
    let ports: Vec<(u16, u16, u16)> = (0..3)
        .map(|_| (free_port(), free_port(), free_port()))
        .collect();
    let routes: Vec<String> = ports
        .iter()
        .map(|p| format!("\"nats-route://127.0.0.1:{}\"", p.2))
        .collect();
    let mut nodes = Vec::new();
    for (i, (port, http, route)) in ports.into_iter().enumerate() {
        let name = format!("n{}", i + 1);
        let store = dir.join(&name);
        let conf = dir.join(format!("{name}.conf"));
        std::fs::write(
            &conf,
            format!(
                "server_name: {name}\nlisten: 127.0.0.1:{port}\nhttp: 127.0.0.1:{http}\n\
                 jetstream {{ store_dir: \"{}\" }}\n\
                 cluster {{ name: shield, listen: 127.0.0.1:{route}, routes = [{}] }}\n",
                store.display(),
                routes.join(", ")
            ),
        )
        .unwrap();
        nodes.push(Node {
            name,
            port,
            http,
            conf,
            child: None,
        });
    }
    for n in &mut nodes {
        n.spawn();
    }
    nodes
}

fn transport(urls: &[String]) -> String {
    format!(
        "kind = \"nats\"\nurl = \"{}\"\nreplicas = 3\n",
        urls.join(",")
    )
}

/// Drain `rx` into per-target application counts.
fn drain(
    rx: &mut tokio::sync::mpsc::Receiver<shield_core::Decision>,
    n: &mut BTreeMap<String, u32>,
) {
    while let Ok(d) = rx.try_recv() {
        *n.entry(d.target.to_string()).or_default() += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_cluster_node_killed_and_restarted_during_traffic_loses_nothing_applies_nothing_twice()
{
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = cluster(dir.path());
    let urls: Vec<String> = nodes.iter().map(Node::url).collect();
    let (a, b, c) = (spec("a"), spec("b"), spec("c"));
    // Each member's own node first, the others as fallbacks (the transport
    // digest does not cover [transport], so the URL order may differ per member).
    let order = |first: usize| {
        let mut v = vec![urls[first].clone()];
        v.extend((0..3).filter(|&i| i != first).map(|i| urls[i].clone()));
        v
    };
    let ta = treaty_text(&[&a, &b, &c], "", &transport(&order(0)), "");
    let tb = treaty_text(&[&a, &b, &c], "", &transport(&order(1)), "");
    let tc = treaty_text(&[&a, &b, &c], "", &transport(&order(2)), "");
    let members = dir.path().join("members");
    let mut na = start(&members, &a, &ta).await;
    let mut nb = start(&members, &b, &tb).await;
    let mut nc = start(&members, &c, &tc).await;
    // Every member up (the JetStream meta leader is elected, the stream exists).
    until(30_000, "all three members connected to the cluster", || {
        [&na, &nb, &nc].iter().all(|n| {
            n.h()
                .status()
                .members
                .iter()
                .filter(|m| m.name != n.cfg.name)
                .all(|m| m.health == shield_union::Health::Up)
        })
    })
    .await;
    assert!(
        nodes[2].clients().contains("shield-c"),
        "c is not connected to n3"
    );
    let admin = async_nats::connect(urls[0].as_str()).await.unwrap();
    let js = async_nats::jetstream::new(admin);
    let mut st = js
        .get_stream(nats::stream_name("test-union"))
        .await
        .unwrap();
    assert_eq!(st.info().await.unwrap().config.num_replicas, 3);

    // 300 bans, 150 from a and 150 from b, interleaved; n3 (c's node) is
    // killed after 100 and restarted after 200.
    let (mut ca, mut cb, mut cc) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    let target = |from: usize, i: u32| format!("10.{}.{}.{}/32", 100 + from, i / 256, i % 256);
    let (mut killed, mut restarted) = (None, None);
    for i in 0..150u32 {
        assert!(na.h().publish(&decision(&target(0, i)), &[]).unwrap());
        assert!(nb.h().publish(&decision(&target(1, i)), &[]).unwrap());
        if i == 50 {
            tokio::task::block_in_place(|| nodes[2].kill());
            killed = Some(Instant::now());
            eprintln!("n3 killed after {} signals", 2 * (i + 1));
        }
        if i == 100 {
            // c reconnected through n1 or n2 while n3 is down.
            let t0 = Instant::now();
            until(15_000, "c reconnected to n1 or n2", || {
                nodes[..2].iter().any(|n| n.clients().contains("shield-c"))
            })
            .await;
            eprintln!(
                "c served by n1/n2 (waited {:?} more at signal {})",
                t0.elapsed(),
                2 * (i + 1)
            );
            tokio::task::block_in_place(|| nodes[2].spawn());
            restarted = Some(Instant::now());
            eprintln!("n3 restarted after {} signals", 2 * (i + 1));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (killed, restarted) = (killed.unwrap(), restarted.unwrap());
    let flow_end = Instant::now();
    let from_a: Vec<String> = (0..150).map(|i| target(0, i)).collect();
    let from_b: Vec<String> = (0..150).map(|i| target(1, i)).collect();
    let complete = |n: &BTreeMap<String, u32>, want: &[&Vec<String>]| {
        want.iter().all(|w| w.iter().all(|t| n.contains_key(t)))
    };
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        drain(&mut na.rx, &mut ca);
        drain(&mut nb.rx, &mut cb);
        drain(&mut nc.rx, &mut cc);
        if complete(&ca, &[&from_b])
            && complete(&cb, &[&from_a])
            && complete(&cc, &[&from_a, &from_b])
        {
            break;
        }
        assert!(
            Instant::now() < end,
            "not converged in 60 s: a {} of 150, b {} of 150, c {} of 300",
            ca.len(),
            cb.len(),
            cc.len()
        );
        if std::env::var("TRACE_PROGRESS").is_ok() && flow_end.elapsed().as_millis() % 1000 < 12 {
            eprintln!(
                "{:?}: a {} b {} c {} {:?}",
                flow_end.elapsed(),
                ca.len(),
                cb.len(),
                cc.len(),
                nc.h()
                    .status()
                    .members
                    .iter()
                    .find(|m| m.name == "a")
                    .map(|m| (m.health.clone(), m.last_error.clone()))
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "full convergence (300 signals at 3 members): {:?} after the restart of n3, {:?} after its kill, {:?} after the last publish",
        restarted.elapsed(),
        killed.elapsed(),
        flow_end.elapsed()
    );
    // c reconnected through another node while n3 was down (its status is up).
    assert_eq!(
        nc.h()
            .status()
            .members
            .iter()
            .find(|m| m.name == "a")
            .unwrap()
            .health,
        shield_union::Health::Up
    );
    // Nothing applied twice: wait for stragglers (redeliveries) and count.
    tokio::time::sleep(Duration::from_secs(2)).await;
    drain(&mut na.rx, &mut ca);
    drain(&mut nb.rx, &mut cb);
    drain(&mut nc.rx, &mut cc);
    let exactly = |who: &str, n: &BTreeMap<String, u32>, want: &[&Vec<String>]| {
        let mut w: Vec<&String> = want.iter().flat_map(|v| v.iter()).collect();
        w.sort();
        let got: Vec<&String> = n.keys().collect();
        assert_eq!(got, w, "{who} applied other targets than the union's");
        let twice: Vec<_> = n.iter().filter(|(_, k)| **k != 1).collect();
        assert!(twice.is_empty(), "{who} applied signals twice: {twice:?}");
    };
    exactly("a", &ca, &[&from_b]);
    exactly("b", &cb, &[&from_a]);
    exactly("c", &cc, &[&from_a, &from_b]);
    for n in [&na, &nb, &nc] {
        let st = n.h().status();
        for m in ["a", "b"] {
            let row = st.members.iter().find(|r| r.name == m).unwrap();
            assert_eq!(row.signals, 150, "{} holds {m}'s 150 signals", n.cfg.name);
        }
    }
    // The stream holds each signal once (Nats-Msg-Id de-duplication across the failover).
    assert_eq!(st.info().await.unwrap().state.messages, 300);
    // c is served by a live node: n3 again, or the one it failed over to.
    assert!(
        nodes.iter().any(|n| n.clients().contains("shield-c")),
        "c is connected to no node"
    );

    // An amendment during a node failure: c's node is killed with a's
    // proposal in flight and restarted before b's signature completes the
    // majority. Every member installs the same version 2 (c through
    // whichever node serves it), nothing else.
    tokio::task::block_in_place(|| nodes[2].kill());
    let version = |n: &common::Node| {
        let h = history::History::load_or_genesis(&n.cfg.treaty_path).unwrap();
        (h.current().version, h.current().digest.clone())
    };
    let g = history::History::load_or_genesis(&na.cfg.treaty_path)
        .unwrap()
        .current()
        .clone();
    let next = ta.replace(
        "max_signals_per_minute = 10000",
        "max_signals_per_minute = 600",
    );
    let p = history::Amendment::propose(&g, &next, "a", &a.id).unwrap();
    let id = p.id();
    let adir = history::amendments_dir(&na.cfg.treaty_path);
    std::fs::create_dir_all(&adir).unwrap();
    history::save_amendment(&adir.join(format!("{}.json", &id[..16])), &p).unwrap();
    let holds = |n: &common::Node| {
        history::pending_in(&history::amendments_dir(&n.cfg.treaty_path))
            .into_iter()
            .find(|(_, x)| x.id() == id)
    };
    until(30_000, "b and c hold a's proposal with n3 down", || {
        holds(&nb).is_some() && holds(&nc).is_some()
    })
    .await;
    tokio::task::block_in_place(|| nodes[2].spawn());
    let (path, mut mine) = holds(&nb).unwrap();
    mine.sign("b", &b.id);
    history::save_amendment(&path, &mine).unwrap();
    until(30_000, "every member installed version 2", || {
        [&na, &nb, &nc]
            .iter()
            .all(|n| version(n) == (2, p.digest.clone()))
    })
    .await;
    let gs = js
        .get_stream(nats::gov_stream_name("test-union"))
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(gs.config.num_replicas, 3);

    na.stop().await;
    nb.stop().await;
    nc.stop().await;
    for n in &mut nodes {
        n.kill();
    }
}
