//! The sink task against a real HTTP server on 127.0.0.1: batching, retries
//! with backoff, the failure counters and the bounded queue.

use std::sync::atomic::{AtomicU16, Ordering};

use super::*;

fn decision(i: u32) -> Decision {
    Decision {
        id: i as i64,
        scope: shield_core::Scope::Ip,
        target: format!("192.0.2.{}/32", i % 250).parse().unwrap(),
        kind: shield_core::DecisionType::Ban,
        scenario: "ssh-bf".into(),
        origin: shield_core::Origin::Local,
        created: 100,
        expires: 160,
    }
}

/// A receiver answering `status` (changeable) and passing each body on.
async fn receiver(
    status: Arc<AtomicU16>,
) -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
) {
    use axum::extract::State;
    type St = (
        Arc<AtomicU16>,
        tokio::sync::mpsc::UnboundedSender<serde_json::Value>,
    );
    async fn hook(
        State((status, tx)): State<St>,
        axum::Json(v): axum::Json<serde_json::Value>,
    ) -> axum::http::StatusCode {
        let _ = tx.send(v);
        axum::http::StatusCode::from_u16(status.load(Ordering::Relaxed)).unwrap()
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state((status, tx));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    (url, rx)
}

fn json_sink(url: &str, batch: Duration, queue: usize, retries: u32) -> SinkPlan {
    let c: NotifyConfig = toml::from_str(&format!(
        "name = \"hook\"\nkind = \"json\"\nurl = \"{url}\"\nbackoff = \"20ms\"\nretries = {retries}\nbatch = \"{}ms\"\nqueue = {queue}",
        batch.as_millis()
    ))
    .unwrap();
    plan_channel(&c).unwrap()
}

async fn until(f: impl Fn() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached in 5 s");
}

#[tokio::test]
async fn one_message_per_window_carries_every_decision_of_it() {
    let (url, mut rx) = receiver(Arc::new(AtomicU16::new(200))).await;
    let n = Notifier::default();
    apply(
        &[json_sink(&url, Duration::from_millis(300), 100, 0)],
        &n,
        &Clock::system(),
    );
    for i in 1..=7 {
        n.send(&decision(i));
    }
    let body = rx.recv().await.unwrap();
    assert_eq!(body["count"], 7, "{body}");
    assert_eq!(body["decisions"][6]["address"], "192.0.2.7");
    let s = n.stats()[0].clone();
    until(|| s.sent.load(Relaxed) == 1).await;
    assert_eq!(s.delivered.load(Relaxed), 7);
    assert!(rx.try_recv().is_err(), "one message, not one per decision");
}

#[tokio::test]
async fn a_failing_endpoint_is_retried_then_counted_with_its_error() {
    let status = Arc::new(AtomicU16::new(503));
    let (url, mut rx) = receiver(status.clone()).await;
    let n = Notifier::default();
    apply(
        &[json_sink(&url, Duration::from_millis(10), 100, 2)],
        &n,
        &Clock::system(),
    );
    n.send(&decision(1));
    for _ in 0..3 {
        rx.recv().await.unwrap();
    }
    let s = n.stats()[0].clone();
    until(|| s.failed.load(Relaxed) == 1).await;
    let st = s.snapshot();
    assert_eq!((st.sent, st.retried), (0, 2));
    assert!(
        st.last_error.as_deref().unwrap().contains("HTTP 503"),
        "{st:?}"
    );
    // The endpoint recovers: the next batch goes through.
    status.store(200, Relaxed);
    n.send(&decision(2));
    let body = rx.recv().await.unwrap();
    assert_eq!(body["decisions"][0]["address"], "192.0.2.2");
    until(|| s.sent.load(Relaxed) == 1).await;
}

#[tokio::test]
async fn a_4xx_is_not_retried() {
    let (url, mut rx) = receiver(Arc::new(AtomicU16::new(404))).await;
    let n = Notifier::default();
    apply(
        &[json_sink(&url, Duration::from_millis(10), 100, 3)],
        &n,
        &Clock::system(),
    );
    n.send(&decision(1));
    rx.recv().await.unwrap();
    let s = n.stats()[0].clone();
    until(|| s.failed.load(Relaxed) == 1).await;
    assert_eq!(s.retried.load(Relaxed), 0);
}

#[tokio::test]
async fn beyond_the_queue_decisions_are_dropped_and_counted() {
    let (url, mut rx) = receiver(Arc::new(AtomicU16::new(200))).await;
    let n = Notifier::default();
    // A long window: everything sent below lands in the queue or the pending batch.
    apply(
        &[json_sink(&url, Duration::from_millis(500), 10, 0)],
        &n,
        &Clock::system(),
    );
    for i in 0..100 {
        n.send(&decision(i));
    }
    let body = rx.recv().await.unwrap();
    let s = n.stats()[0].clone();
    until(|| s.sent.load(Relaxed) >= 1).await;
    let carried = body["count"].as_u64().unwrap();
    assert!(carried <= 10, "{body}");
    // Every decision is either carried by a message or counted as dropped.
    until(|| s.delivered.load(Relaxed) + s.dropped.load(Relaxed) == 100).await;
    assert!(s.dropped.load(Relaxed) >= 80);
}

#[tokio::test]
async fn reload_keeps_a_channels_counters_and_flushes_the_old_task() {
    let (url, mut rx) = receiver(Arc::new(AtomicU16::new(200))).await;
    let n = Notifier::default();
    let p = json_sink(&url, Duration::from_secs(3600), 100, 0);
    apply(std::slice::from_ref(&p), &n, &Clock::system());
    n.send(&decision(1));
    // Replacing the sinks makes the old task send what it holds at once.
    tokio::time::sleep(Duration::from_millis(50)).await;
    apply(std::slice::from_ref(&p), &n, &Clock::system());
    let body = rx.recv().await.unwrap();
    assert_eq!(body["count"], 1);
    let s = n.stats()[0].clone();
    until(|| s.sent.load(Relaxed) == 1).await;
    apply(&[], &n, &Clock::system());
    assert!(n.stats().is_empty());
}

#[test]
fn plan_refuses_missing_and_misplaced_keys() {
    let bad = |t: &str| {
        let c: NotifyConfig = toml::from_str(t).unwrap();
        plan_channel(&c).unwrap_err().0
    };
    assert!(bad("name='t'\nkind='telegram'\ntoken='1:a'").contains("chat_id"));
    assert!(bad("name='n'\nkind='ntfy'").contains("topic"));
    assert!(bad("name='g'\nkind='gotify'\nurl='https://g'").contains("token"));
    assert!(bad("name='s'\nkind='slack'").contains("url"));
    assert!(bad("name='s'\nkind='slack'\nurl='ftp://x'").contains("http"));
    assert!(bad("name='s'\nkind='slack'\nurl='https://x'\ntopic='a'").contains("topic"));
    assert!(
        bad("name='s'\nkind='json'\nurl='https://x'\nca_file='/nonexistent'").contains("ca_file")
    );
    assert!(bad("name='m'\nkind='email'\nfrom='a@b'\nto=['c@d']").contains("smtp"));
    assert!(bad("name='m'\nkind='email'\nsmtp='h'\nto=['c@d']").contains("from"));
    assert!(bad("name='m'\nkind='email'\nsmtp='h'\nfrom='a@b'").contains("to"));
    assert!(bad("name='m'\nkind='email'\nsmtp='h'\nfrom='nope'\nto=['c@d']").contains("from"));
    assert!(bad("name='m'\nkind='email'\nsmtp='h:x'\nfrom='a@b'\nto=['c@d']").contains("port"));
    assert!(
        bad("name='m'\nkind='email'\nsmtp='h'\nfrom='a@b'\nto=['c@d']\nusername='u'")
            .contains("password")
    );
    assert!(
        bad("name='m'\nkind='email'\nsmtp='h'\nfrom='a@b'\nto=['c@d']\nurl='https://x'")
            .contains("url")
    );
    let c: NotifyConfig =
        toml::from_str("name='t'\nkind='telegram'\ntoken='123:abc'\nchat_id='-1'").unwrap();
    let Target::Http(t) = plan_channel(&c).unwrap().target else {
        panic!("telegram is an HTTP channel")
    };
    assert_eq!(
        t.url.as_str(),
        "https://api.telegram.org/bot123:abc/sendMessage"
    );
}

fn action(dir: &std::path::Path, name: &str, script: &str, timeout_ms: u64) -> SinkPlan {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(format!("{name}.sh"));
    std::fs::write(&p, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    let c: ActionConfig = toml::from_str(&format!(
        "name = \"{name}\"\ncommand = [\"{}\", \"{}\"]\nbatch = \"50ms\"\ntimeout = \"{timeout_ms}ms\"",
        p.display(),
        dir.display()
    ))
    .unwrap();
    plan_action(&c).unwrap()
}

#[tokio::test]
async fn an_action_gets_the_batch_on_stdin_and_its_exits_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let n = Notifier::default();
    apply(
        &[
            action(
                dir.path(),
                "store",
                "cat > \"$1/got.json\"; echo \"$SHIELD_ACTION $SHIELD_DECISIONS\"",
                5000,
            ),
            action(
                dir.path(),
                "fails",
                "cat >/dev/null; echo nope >&2; exit 3",
                5000,
            ),
            action(dir.path(), "hangs", "exec sleep 30", 200),
        ],
        &n,
        &Clock::system(),
    );
    for i in 1..=3 {
        n.send(&decision(i));
    }
    let stats = n.stats();
    let exits = |i: usize| stats[i].snapshot().exits;
    until(|| {
        exits(0).get("0") == Some(&1)
            && exits(1).get("3") == Some(&1)
            && exits(2).get("timeout") == Some(&1)
    })
    .await;
    let got: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("got.json")).unwrap()).unwrap();
    assert_eq!(got["count"], 3);
    assert_eq!(got["decisions"][2]["address"], "192.0.2.3");
    let fails = stats[1].snapshot();
    assert_eq!(
        (fails.failed, fails.retried),
        (1, 0),
        "a failed action is not run again"
    );
    assert!(
        fails
            .last_error
            .as_deref()
            .unwrap()
            .contains("exit status 3: nope"),
        "{fails:?}"
    );
    assert!(
        stats[2]
            .snapshot()
            .last_error
            .unwrap()
            .contains("no answer within")
    );
}

#[tokio::test]
async fn a_sink_takes_only_its_origins() {
    let (url, mut rx) = receiver(Arc::new(AtomicU16::new(200))).await;
    let n = Notifier::default();
    apply(
        &[json_sink(&url, Duration::from_millis(50), 100, 0)],
        &n,
        &Clock::system(),
    );
    let mut listed = decision(1);
    listed.origin = shield_core::Origin::List("firehol".into());
    n.send(&listed);
    let mut manual = decision(2);
    manual.origin = shield_core::Origin::Manual;
    n.send(&manual);
    let body = rx.recv().await.unwrap();
    assert_eq!(
        body["count"], 1,
        "a list's decisions are left out by default: {body}"
    );
    assert_eq!(body["decisions"][0]["origin"], "manual");
    assert_eq!(n.stats()[0].dropped.load(Relaxed), 0);
    let bad: NotifyConfig =
        toml::from_str("name='x'\nkind='json'\nurl='https://x'\norigins=['lists']").unwrap();
    assert!(plan_channel(&bad).unwrap_err().0.contains("lists"));
}

#[test]
fn plan_refuses_a_relative_or_missing_program() {
    let bad = |cmd: &str| {
        let c: ActionConfig = toml::from_str(&format!("name='a'\ncommand={cmd}")).unwrap();
        plan_action(&c).unwrap_err().0
    };
    assert!(bad("[]").contains("empty"));
    assert!(bad("['sh', '-c', 'x']").contains("absolute"));
    assert!(bad("['/nonexistent/prog']").contains("/nonexistent/prog"));
    let f = tempfile::NamedTempFile::new().unwrap();
    assert!(bad(&format!("['{}']", f.path().display())).contains("executable"));
}
