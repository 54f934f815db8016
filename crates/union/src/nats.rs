//! The NATS JetStream transport: the union's carrier for fleets too large for
//! direct connections (issue #6).
//!
//! Owns the connection to NATS, the union's stream (`SHIELD_<union>`, subjects
//! `shield.<union>.sig.<origin>`), this member's durable pull consumer
//! (`shield_<member>`), publishing with `Nats-Msg-Id = <origin>/<seq>/<sig>` so the
//! server de-duplicates within its `duplicate_window`, and the one-time
//! republication of every stored signal at start (which makes moving a union
//! from `direct` to `nats` lossless, and is idempotent).
//!
//! Governance travels on a second stream, `SHIELD_<union>_GOV` (subjects
//! `shield.<union>.gov.<kind>.<member>`, kinds `proposal`, `sig`, `treaty`),
//! read through a second durable consumer per member (`shield_gov_<member>`):
//! every sync interval a member publishes its own proposals, the amendments it
//! signed (with the signatures it holds) and the treaty versions it installed;
//! what it reads goes to [`Sink::gov_absorb`], verified exactly as an answer
//! from a direct peer. The stream keeps the last [`crate::history::MAX_GOV`]
//! messages per subject, so a member that was away catches up from its
//! consumer.
//!
//! It does not decide trust: NATS is a carrier, not a trusted party. Every
//! message, from whatever subject, goes to the [`Sink`] — signature, treaty
//! digest, membership, revocation and every limit are checked there, exactly
//! as for the direct transport. A payload that is not an envelope is handed on
//! as an empty envelope so it is refused and counted as `malformed`.
//!
//! A message is acked once the sink has judged and stored it; if the local
//! store failed to write it, it is nak'ed with a delay and NATS delivers it
//! again (the direct transport relies on anti-entropy instead). Republication covers all origins this member holds,
//! not only its own, so any single member that switches first brings the
//! whole history it knows into the stream.

use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures_util::{FutureExt as _, StreamExt as _};
use sha2::{Digest as _, Sha256};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

use crate::history::{Amendment, Gov, MAX_GOV};
use crate::signal::Envelope;
use crate::transport::{BoxFuture, Have, Health, PeerStatus, Sink, Transport};
use crate::treaty::Treaty;

/// Messages handed to the sink in one batch (one SQLite transaction).
const BATCH: usize = 256;
/// How long NATS waits before delivering again what the local store could not keep.
const NAK_DELAY: Duration = Duration::from_secs(5);
/// How long one pull request waits on the server before it is renewed.
const PULL_EXPIRES: Duration = Duration::from_secs(10);
/// Idle heartbeat of a pull request: two missed ones make the client pull
/// again, e.g. through another node after a cluster node died.
const PULL_HEARTBEAT: Duration = Duration::from_secs(1);
/// How long the server remembers a `Nats-Msg-Id` for de-duplication.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Why the NATS transport cannot be set up from the treaty.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// The treaty's `[transport]` has no `url`.
    #[error("transport `nats` needs `url` in the treaty's [transport] table")]
    NoUrl,
    /// `token_env` / `password_env` names a variable that is not set.
    #[error(
        "environment variable `{0}` (named by the treaty's [transport]) is not set; export it in the daemon's environment"
    )]
    MissingEnv(String),
    /// `ca_file` does not exist.
    #[error("NATS CA file {0} does not exist; fix `ca_file` in the treaty's [transport]")]
    MissingCa(PathBuf),
    /// Both token and user/password were given.
    #[error("give either `token` or `user`+`password` for NATS, not both")]
    TwoAuths,
    /// `password_file` cannot be read.
    #[error(
        "cannot read the NATS password file {path}: {source}; fix `password_file` in the treaty's [transport] or create the file"
    )]
    PasswordFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Connecting or setting up the stream/consumer failed (retried by `run`).
    #[error("NATS at {url}: {msg} (is nats-server running with JetStream, `-js`?)")]
    Server { url: String, msg: String },
}

/// A subject token from a free-form name: NATS tokens may not hold `.`, `*`,
/// `>` or whitespace. Collisions only affect routing, never trust.
pub fn token(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The union's stream name.
pub fn stream_name(union: &str) -> String {
    format!("SHIELD_{}", token(union))
}

/// The subject an origin's signals are published on.
pub fn subject(union: &str, origin: &str) -> String {
    format!("shield.{}.sig.{}", token(union), token(origin))
}

/// The de-duplication id of a signal: origin, sequence and the start of the
/// signature. Ed25519 signatures are deterministic, so a republished signal
/// gets the same id; the signature part stops anyone who can publish to the
/// stream from taking a genuine signal's id first with a forgery.
pub fn msg_id(origin: &str, seq: u64, env: &Envelope) -> String {
    let sig: String = env.sig.chars().take(16).collect();
    format!("{origin}/{seq}/{sig}")
}

/// Parse a message payload; anything else becomes an envelope the sink refuses as malformed.
pub fn parse_envelope(payload: &[u8]) -> Envelope {
    serde_json::from_slice(payload).unwrap_or(Envelope {
        payload: String::new(),
        sig: String::new(),
    })
}

/// Connection settings resolved from the treaty (secrets read from the environment here).
#[derive(Clone)]
pub struct Settings {
    /// The server URL(s) as the treaty gives them, comma-separated.
    pub url: String,
    token: Option<String>,
    user_pass: Option<(String, String)>,
    ca_file: Option<PathBuf>,
    /// Replicas of the stream when this member creates it.
    pub replicas: usize,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("user", &self.user_pass.as_ref().map(|u| &u.0))
            .field("ca_file", &self.ca_file)
            .field("replicas", &self.replicas)
            .finish()
    }
}

impl Settings {
    /// Resolve the treaty's `[transport]` for `member` (`{member}` in `user`,
    /// `password_env` and `password_file` becomes its name).
    pub fn from_treaty(t: &Treaty, member: &str) -> Result<Settings, NatsError> {
        let f = &t.transport_file;
        let subst = |s: &str| s.replace("{member}", member);
        let url = f
            .url
            .clone()
            .filter(|u| !u.trim().is_empty())
            .ok_or(NatsError::NoUrl)?;
        let env =
            |name: &String| std::env::var(name).map_err(|_| NatsError::MissingEnv(name.clone()));
        let token = match (&f.token, &f.token_env) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(e)) => Some(env(e)?),
            _ => None,
        };
        let password = match (&f.password, &f.password_env, &f.password_file) {
            (Some(p), _, _) => Some(p.clone()),
            (None, Some(e), _) => Some(env(&subst(e))?),
            (None, None, Some(file)) => {
                let path = PathBuf::from(subst(&file.to_string_lossy()));
                let text = std::fs::read_to_string(&path)
                    .map_err(|source| NatsError::PasswordFile { path, source })?;
                Some(text.trim_end_matches(['\n', '\r']).to_string())
            }
            _ => None,
        };
        let user_pass = match (&f.user, password) {
            (Some(u), Some(p)) => Some((subst(u), p)),
            (Some(u), None) => Some((subst(u), String::new())),
            _ => None,
        };
        if token.is_some() && user_pass.is_some() {
            return Err(NatsError::TwoAuths);
        }
        if let Some(ca) = &f.ca_file
            && !ca.exists()
        {
            return Err(NatsError::MissingCa(ca.clone()));
        }
        Ok(Settings {
            url,
            token,
            user_pass,
            ca_file: f.ca_file.clone(),
            replicas: f.replicas.unwrap_or(1).max(1),
        })
    }

    /// The servers to try, in the treaty's order: the first is this member's
    /// own (nearest) node, the others are where it reconnects when that node dies.
    pub fn urls(&self) -> Vec<String> {
        self.url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Connect with these settings (token or user/password, TLS roots) to the
    /// first server of [`Settings::urls`] that answers, in order. Replies
    /// come to `inbox_prefix` (per member: `_INBOX_<member>`), so a NATS user
    /// may subscribe to its own replies only.
    pub async fn connect(
        &self,
        name: &str,
        inbox_prefix: &str,
    ) -> Result<async_nats::Client, NatsError> {
        let mut o = async_nats::ConnectOptions::new()
            .name(name)
            .custom_inbox_prefix(inbox_prefix)
            .connection_timeout(Duration::from_secs(5))
            .retain_servers_order();
        if let Some(t) = &self.token {
            o = o.token(t.clone());
        }
        if let Some((u, p)) = &self.user_pass {
            o = o.user_and_password(u.clone(), p.clone());
        }
        if let Some(ca) = &self.ca_file {
            o = o.add_root_certificates(ca.clone()).require_tls(true);
        }
        o.connect(self.urls().as_slice())
            .await
            .map_err(|e| self.err(format!("cannot connect: {e}")))
    }

    fn err(&self, msg: String) -> NatsError {
        NatsError::Server {
            url: self.url.clone(),
            msg,
        }
    }
}

/// Create (or open) the union's stream with `replicas` copies (1 on a single
/// server, 3 on a 3-node cluster). An existing stream is used as it is, so
/// operators may pre-create it (see docs/nats.md).
pub async fn ensure_stream(
    js: &jetstream::Context,
    union: &str,
    max_age: Duration,
    replicas: usize,
) -> Result<stream::Stream, String> {
    js.get_or_create_stream(stream::Config {
        name: stream_name(union),
        subjects: vec![format!("shield.{}.sig.>", token(union))],
        duplicate_window: DUPLICATE_WINDOW,
        max_age,
        storage: stream::StorageType::File,
        num_replicas: replicas.max(1),
        ..Default::default()
    })
    .await
    .map_err(|e| format!("cannot create or open stream {}: {e}", stream_name(union)))
}

/// The union's governance stream: amendments, signatures, treaty versions.
pub fn gov_stream_name(union: &str) -> String {
    format!("SHIELD_{}_GOV", token(union))
}

/// Governance message kinds, one subject each.
pub const GOV_KINDS: [&str; 3] = ["proposal", "sig", "treaty"];

/// The subject `member` publishes governance messages of `kind` on.
pub fn gov_subject(union: &str, kind: &str, member: &str) -> String {
    format!("shield.{}.gov.{kind}.{}", token(union), token(member))
}

fn gov_filter(union: &str) -> String {
    format!("shield.{}.gov.>", token(union))
}

/// A member's durable consumer of the governance stream.
pub fn gov_consumer_name(member: &str) -> String {
    format!("shield_gov_{}", token(member))
}

/// Create (or open) the governance stream: no age limit (a treaty version
/// stays needed), at most [`MAX_GOV`] messages per subject (per member and
/// kind), so what one member can make the server store is bounded.
pub async fn ensure_gov_stream(
    js: &jetstream::Context,
    union: &str,
    replicas: usize,
) -> Result<stream::Stream, String> {
    js.get_or_create_stream(stream::Config {
        name: gov_stream_name(union),
        subjects: vec![gov_filter(union)],
        duplicate_window: DUPLICATE_WINDOW,
        max_messages_per_subject: MAX_GOV as i64,
        storage: stream::StorageType::File,
        num_replicas: replicas.max(1),
        ..Default::default()
    })
    .await
    .map_err(|e| {
        format!(
            "cannot create or open stream {}: {e}",
            gov_stream_name(union)
        )
    })
}

/// The pull consumer each member reads the governance stream through.
pub fn gov_consumer_config(union: &str, member: &str) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(gov_consumer_name(member)),
        filter_subject: gov_filter(union),
        ..consumer_config(union, member)
    }
}

/// What is wrong with the governance stream, if anything (as [`check_stream`]).
pub fn check_gov_stream(union: &str, c: &stream::Config) -> Result<(), String> {
    check_stream_as(&gov_stream_name(union), &gov_filter(union), c)
}

/// What is wrong with a member's governance consumer, if anything.
pub fn check_gov_consumer(union: &str, member: &str, c: &consumer::Config) -> Result<(), String> {
    check_consumer_as(&gov_consumer_name(member), &gov_filter(union), c)
}

/// The pull consumer each member reads the union's stream through.
pub fn consumer_config(union: &str, member: &str) -> consumer::pull::Config {
    let durable = consumer_name(member);
    consumer::pull::Config {
        durable_name: Some(durable),
        filter_subject: format!("shield.{}.sig.>", token(union)),
        deliver_policy: consumer::DeliverPolicy::All,
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_secs(30),
        max_ack_pending: 10_000,
        ..Default::default()
    }
}

/// A member's durable consumer name.
pub fn consumer_name(member: &str) -> String {
    format!("shield_{}", token(member))
}

/// What is wrong with the union's stream, if anything: a stream that does not
/// take every member's subject, is sealed, or deletes messages once one
/// consumer acked them would silence members.
pub fn check_stream(union: &str, c: &stream::Config) -> Result<(), String> {
    check_stream_as(
        &stream_name(union),
        &format!("shield.{}.sig.>", token(union)),
        c,
    )
}

fn check_stream_as(name: &str, want: &str, c: &stream::Config) -> Result<(), String> {
    let want = want.to_string();
    let mut bad = Vec::new();
    if c.subjects != [want.clone()] {
        bad.push(format!("subjects are {:?}, not [{want:?}]", c.subjects));
    }
    if c.sealed {
        bad.push("it is sealed".to_string());
    }
    if c.retention != stream::RetentionPolicy::Limits {
        bad.push(format!("retention is {:?}, not limits", c.retention));
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "stream {name} is not configured for the union: {}; an admin must recreate it as docs/nats.md shows",
            bad.join(", ")
        ))
    }
}

/// What is wrong with a member's consumer, if anything: one that filters out
/// subjects, starts at new messages or does not need acks loses signals.
pub fn check_consumer(union: &str, member: &str, c: &consumer::Config) -> Result<(), String> {
    check_consumer_as(
        &consumer_name(member),
        &format!("shield.{}.sig.>", token(union)),
        c,
    )
}

fn check_consumer_as(name: &str, want: &str, c: &consumer::Config) -> Result<(), String> {
    let want = want.to_string();
    let mut bad = Vec::new();
    if c.filter_subject != want {
        bad.push(format!(
            "filter_subject is {:?}, not {want:?}",
            c.filter_subject
        ));
    }
    if c.deliver_policy != consumer::DeliverPolicy::All {
        bad.push(format!("deliver_policy is {:?}, not all", c.deliver_policy));
    }
    if c.ack_policy != consumer::AckPolicy::Explicit {
        bad.push(format!("ack_policy is {:?}, not explicit", c.ack_policy));
    }
    if c.deliver_subject.is_some() {
        bad.push("it is a push consumer".to_string());
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "consumer {name} is not configured for the union: {}; signals would be lost. An admin must delete it (the member recreates it, or see docs/nats.md)",
            bad.join(", ")
        ))
    }
}

/// The admin's setup for per-member NATS users: the union's stream and one
/// durable consumer per member, created (or checked) with an admin
/// connection. Members whose user may not create them then only open them.
pub async fn provision(
    js: &jetstream::Context,
    union: &str,
    max_age: Duration,
    members: &[&str],
) -> Result<(), String> {
    let st = ensure_stream(js, union, max_age, 1).await?;
    check_stream(union, &st.cached_info().config)?;
    for m in members {
        let c: consumer::PullConsumer = st
            .get_or_create_consumer(&consumer_name(m), consumer_config(union, m))
            .await
            .map_err(|e| format!("cannot create consumer {}: {e}", consumer_name(m)))?;
        check_consumer(union, m, &c.cached_info().config)?;
    }
    let gst = ensure_gov_stream(js, union, 1).await?;
    check_gov_stream(union, &gst.cached_info().config)?;
    for m in members {
        let c: consumer::PullConsumer = gst
            .get_or_create_consumer(&gov_consumer_name(m), gov_consumer_config(union, m))
            .await
            .map_err(|e| format!("cannot create consumer {}: {e}", gov_consumer_name(m)))?;
        check_gov_consumer(union, m, &c.cached_info().config)?;
    }
    Ok(())
}

/// Publish one governance message (an amendment as JSON) on `kind`'s subject
/// of `member`. The de-duplication id is the payload's hash: the same bytes
/// published twice (at every reconnect) are stored once, and nobody can
/// reserve an id for bytes it did not send.
pub async fn publish_gov(
    js: &jetstream::Context,
    union: &str,
    kind: &str,
    member: &str,
    a: &Amendment,
) -> Result<bool, String> {
    let body = serde_json::to_vec(a).map_err(|e| e.to_string())?;
    let id = crate::treaty::hex(&Sha256::digest(&body));
    let mut h = async_nats::HeaderMap::new();
    h.insert(
        async_nats::header::NATS_MESSAGE_ID,
        format!("gov/{id}").as_str(),
    );
    let ack = js
        .publish_with_headers(gov_subject(union, kind, member), h, Bytes::from(body))
        .await
        .map_err(|e| format!("publish: {e}"))?
        .await
        .map_err(|e| format!("publish ack: {e}"))?;
    Ok(!ack.duplicate)
}

/// What a governance message read from the stream asks of the sink: a treaty
/// version to verify and install, or an amendment (proposal or signed) to
/// verify and merge. `None`: a pending amendment of a version this member
/// already has (the stream keeps them; they are void, not hostile). Anything
/// unreadable becomes an amendment the sink refuses and counts.
pub fn gov_message(subject: &str, payload: &[u8], current_version: u64) -> Option<Gov> {
    let kind = subject.split('.').nth(3).unwrap_or("");
    let refusable = || Gov {
        history: Vec::new(),
        pending: vec![Amendment {
            union: String::new(),
            version: 0,
            prev: String::new(),
            treaty: String::new(),
            digest: String::new(),
            proposer: String::new(),
            approvals: Vec::new(),
        }],
    };
    let Ok(a) = serde_json::from_slice::<Amendment>(payload) else {
        return Some(refusable());
    };
    match kind {
        "treaty" => Some(Gov {
            history: vec![a],
            pending: Vec::new(),
        }),
        "proposal" | "sig" if a.version <= current_version => None,
        "proposal" | "sig" => Some(Gov {
            history: Vec::new(),
            pending: vec![a],
        }),
        _ => Some(refusable()),
    }
}

/// Publish one envelope with its de-duplication id; `Ok(true)` if the server
/// stored it, `Ok(false)` if it was a duplicate.
pub async fn publish_env(
    js: &jetstream::Context,
    union: &str,
    origin: &str,
    seq: u64,
    env: &Envelope,
) -> Result<bool, String> {
    let mut h = async_nats::HeaderMap::new();
    h.insert(
        async_nats::header::NATS_MESSAGE_ID,
        msg_id(origin, seq, env).as_str(),
    );
    let body = serde_json::to_vec(env).map_err(|e| e.to_string())?;
    let ack = js
        .publish_with_headers(subject(union, origin), h, Bytes::from(body))
        .await
        .map_err(|e| format!("publish: {e}"))?
        .await
        .map_err(|e| format!("publish ack: {e}"))?;
    Ok(!ack.duplicate)
}

struct Status {
    health: Health,
    last_error: Option<String>,
    last_ok: Option<i64>,
}

/// The NATS JetStream transport of one member.
pub struct Nats {
    me: String,
    union: String,
    max_age: Duration,
    retry: Duration,
    /// How often governance state is published.
    sync: Duration,
    settings: Settings,
    tx: mpsc::UnboundedSender<Envelope>,
    /// Taken by `run` (once). Behind a std Mutex: touched only at start.
    rx: Mutex<Option<mpsc::UnboundedReceiver<Envelope>>>,
    /// Short, never held across an await.
    status: Mutex<Status>,
    /// The governance session's last error (logged once per change).
    gov_error: Mutex<Option<String>>,
}

impl Nats {
    /// Resolve settings from the treaty; nothing connects until [`Transport::run`].
    pub fn new(me: &str, treaty: &Treaty) -> Result<Nats, NatsError> {
        let settings = Settings::from_treaty(treaty, me)?;
        let (tx, rx) = mpsc::unbounded_channel();
        Ok(Nats {
            me: me.to_string(),
            union: treaty.name.clone(),
            max_age: treaty.max_age,
            retry: treaty.sync_interval.max(Duration::from_millis(500)),
            sync: treaty.sync_interval,
            settings,
            tx,
            rx: Mutex::new(Some(rx)),
            status: Mutex::new(Status {
                health: Health::Unknown,
                last_error: None,
                last_ok: None,
            }),
            gov_error: Mutex::new(None),
        })
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, r: Result<(), String>) {
        let mut s = self.status();
        match r {
            Ok(()) => {
                s.health = Health::Up;
                s.last_ok = Some(shield_core::wall_now());
            }
            Err(e) => {
                if s.health != Health::Down || s.last_error.as_deref() != Some(e.as_str()) {
                    tracing::warn!(url = %self.settings.url, "union NATS transport: {e}");
                }
                s.health = Health::Down;
                s.last_error = Some(e);
            }
        }
    }

    /// Connect, open (or create, when this user may) the stream and this
    /// member's consumer, and check both are configured as the union needs:
    /// someone holding other NATS credentials may have replaced them.
    async fn open(&self) -> Result<(jetstream::Context, consumer::PullConsumer), String> {
        let client = self
            .settings
            .connect(
                &format!("shield-{}", self.me),
                &format!("_INBOX_{}", token(&self.me)),
            )
            .await
            .map_err(|e| e.to_string())?;
        let js = jetstream::new(client);
        let st = ensure_stream(&js, &self.union, self.max_age, self.settings.replicas).await?;
        check_stream(&self.union, &st.cached_info().config)?;
        let durable = consumer_name(&self.me);
        let c: consumer::PullConsumer = st
            .get_or_create_consumer(&durable, consumer_config(&self.union, &self.me))
            .await
            .map_err(|e| format!("cannot create or open consumer {durable}: {e} (with per-member NATS users an admin creates it: docs/nats.md)"))?;
        check_consumer(&self.union, &self.me, &c.cached_info().config)?;
        Ok((js, c))
    }

    /// Publish every signal the store holds, page by page: this member's own,
    /// and the other origins' as long as the server lets this user publish on
    /// their subjects (with per-member NATS users it does not: the first
    /// refusal stops republishing others', each origin republishes its own).
    async fn republish(&self, js: &jetstream::Context, sink: &dyn Sink) -> Result<u64, String> {
        let mut have = Have::new();
        let mut new = 0;
        let mut others = true;
        loop {
            let page = sink.serve(&have, &Default::default(), 512, "nats");
            if page.is_empty() {
                return Ok(new);
            }
            for env in page {
                let Ok(d) = env.decode() else { continue };
                let (o, s) = (d.body.origin, d.body.seq);
                let h = have.entry(o.clone()).or_default();
                *h = (*h).max(s);
                if o == self.me {
                    if publish_env(js, &self.union, &o, s, &env).await? {
                        new += 1;
                    }
                } else if others {
                    let r = tokio::time::timeout(
                        Duration::from_secs(2),
                        publish_env(js, &self.union, &o, s, &env),
                    )
                    .await;
                    match r {
                        Ok(Ok(true)) => new += 1,
                        Ok(Ok(false)) => {}
                        _ => {
                            tracing::info!(
                                "union NATS: this member may not publish other members' signals (per-member users); each origin republishes its own"
                            );
                            others = false;
                        }
                    }
                }
            }
        }
    }

    async fn publish_loop(
        &self,
        js: &jetstream::Context,
        rx: &mut mpsc::UnboundedReceiver<Envelope>,
        pending: &mut Option<Envelope>,
    ) -> Result<(), String> {
        loop {
            let env = match pending.take() {
                Some(e) => e,
                None => match rx.recv().await {
                    Some(e) => e,
                    None => return std::future::pending().await,
                },
            };
            let Ok(d) = env.decode() else { continue };
            if let Err(e) = publish_env(js, &self.union, &d.body.origin, d.body.seq, &env).await {
                // Keep it: it is sent again after the reconnect.
                *pending = Some(env);
                return Err(e);
            }
        }
    }

    async fn consume(&self, c: &consumer::PullConsumer, sink: &dyn Sink) -> Result<(), String> {
        // A pull request lives on the node the client was connected to; when
        // that node dies and the client reconnects elsewhere, only a missed
        // idle heartbeat makes the stream pull again. A short heartbeat keeps
        // that failover to seconds (the default, 15 s, stalls delivery longer).
        let mut msgs = c
            .stream()
            .expires(PULL_EXPIRES)
            .heartbeat(PULL_HEARTBEAT)
            .messages()
            .await
            .map_err(|e| format!("cannot pull from consumer: {e}"))?;
        let mut errors = 0u32;
        loop {
            let Some(first) = msgs.next().await else {
                return Err("consumer stream ended".into());
            };
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match msgs.next().now_or_never() {
                    Some(Some(m)) => batch.push(m),
                    _ => break,
                }
            }
            let mut envs = Vec::with_capacity(batch.len());
            let mut acks = Vec::with_capacity(batch.len());
            for m in batch {
                match m {
                    Ok(m) => {
                        envs.push(parse_envelope(&m.payload));
                        acks.push(m);
                    }
                    Err(e) => {
                        errors += 1;
                        if errors > 10 {
                            return Err(format!("pulling messages: {e}"));
                        }
                        tracing::debug!("union NATS pull: {e}");
                    }
                }
            }
            if acks.is_empty() {
                continue;
            }
            errors = 0;
            let stored = sink.receive(envs, "nats").await;
            for m in acks {
                // Not stored (disk full, database locked…): ask NATS to deliver the
                // batch again later rather than lose it; what was stored comes back
                // as a duplicate and is refused as such.
                let r = if stored {
                    m.ack().await
                } else {
                    m.ack_with(jetstream::AckKind::Nak(Some(NAK_DELAY))).await
                };
                if let Err(e) = r {
                    // Redelivered later and refused as a duplicate: no harm.
                    tracing::debug!("union NATS ack: {e}");
                }
            }
            self.set(Ok(()));
        }
    }

    /// Publish what this member has to say about governance and has not said
    /// on this connection: treaty versions it installed (the last
    /// [`MAX_GOV`]), its own proposals, and amendments it signed.
    async fn gov_publish(
        &self,
        js: &jetstream::Context,
        sink: &dyn Sink,
        sent: &mut HashSet<String>,
    ) -> Result<(), String> {
        let cur = sink.gov_version();
        let g = sink.gov_answer(cur.saturating_sub(MAX_GOV as u64));
        let mine = g
            .history
            .into_iter()
            .filter(|a| a.version > 1)
            .map(|a| ("treaty", a));
        let pending = g.pending.into_iter().filter_map(|a| {
            if a.proposer == self.me {
                Some(("proposal", a))
            } else if a.approvals.iter().any(|p| p.member == self.me) {
                Some(("sig", a))
            } else {
                None
            }
        });
        for (kind, a) in mine.chain(pending) {
            let signers: Vec<&str> = a.approvals.iter().map(|p| p.member.as_str()).collect();
            let key = format!("{kind}/{}/{}", a.id(), signers.join(","));
            if sent.contains(&key) {
                continue;
            }
            publish_gov(js, &self.union, kind, &self.me, &a).await?;
            sent.insert(key);
        }
        Ok(())
    }

    /// One governance connection: open the stream and this member's consumer,
    /// then publish every sync interval and hand what arrives to the sink.
    async fn gov_session(&self, sink: &dyn Sink) -> Result<(), String> {
        let client = self
            .settings
            .connect(
                &format!("shield-{}-gov", self.me),
                &format!("_INBOX_{}", token(&self.me)),
            )
            .await
            .map_err(|e| e.to_string())?;
        let js = jetstream::new(client);
        let st = ensure_gov_stream(&js, &self.union, self.settings.replicas).await?;
        check_gov_stream(&self.union, &st.cached_info().config)?;
        let durable = gov_consumer_name(&self.me);
        let c: consumer::PullConsumer = st
            .get_or_create_consumer(&durable, gov_consumer_config(&self.union, &self.me))
            .await
            .map_err(|e| format!("cannot create or open consumer {durable}: {e} (with per-member NATS users an admin creates it: docs/nats.md)"))?;
        check_gov_consumer(&self.union, &self.me, &c.cached_info().config)?;
        let mut msgs = c
            .stream()
            .expires(PULL_EXPIRES)
            .heartbeat(PULL_HEARTBEAT)
            .messages()
            .await
            .map_err(|e| format!("cannot pull from consumer {durable}: {e}"))?;
        self.gov_set(None);
        let mut sent = HashSet::new();
        let mut tick = tokio::time::interval(self.sync);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut errors = 0u32;
        loop {
            tokio::select! {
                _ = tick.tick() => self.gov_publish(&js, sink, &mut sent).await?,
                m = msgs.next() => {
                    let m = match m {
                        Some(Ok(m)) => m,
                        Some(Err(e)) => {
                            errors += 1;
                            if errors > 10 {
                                return Err(format!("pulling governance messages: {e}"));
                            }
                            continue;
                        }
                        None => return Err("governance consumer stream ended".into()),
                    };
                    errors = 0;
                    if let Some(g) = gov_message(&m.subject, &m.payload, sink.gov_version()) {
                        sink.gov_absorb("nats", g);
                    }
                    if let Err(e) = m.ack().await {
                        tracing::debug!("union NATS governance ack: {e}");
                    }
                    // A merged signature or an installed version goes out now.
                    self.gov_publish(&js, sink, &mut sent).await?;
                }
            }
        }
    }

    fn gov_set(&self, e: Option<String>) {
        let mut g = self.gov_error.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = &e
            && g.as_ref() != Some(e)
        {
            tracing::warn!(url = %self.settings.url, "union NATS governance: {e}; amendments do not travel until it is fixed");
        }
        *g = e;
    }

    async fn gov_run(self: Arc<Self>, sink: Arc<dyn Sink>, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            tokio::select! {
                r = self.gov_session(sink.as_ref()) => if let Err(e) = r { self.gov_set(Some(e)) },
                _ = shutdown.changed() => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(self.retry) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    async fn run_inner(self: Arc<Self>, sink: Arc<dyn Sink>, shutdown: watch::Receiver<bool>) {
        tokio::join!(
            self.clone().signals_run(sink.clone(), shutdown.clone()),
            self.gov_run(sink, shutdown),
        );
    }

    async fn signals_run(
        self: Arc<Self>,
        sink: Arc<dyn Sink>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let rx = self.rx.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(mut rx) = rx else {
            tracing::error!("union NATS transport started twice; the second run does nothing");
            return;
        };
        let mut pending = None;
        let mut republished = false;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let r = async {
                let (js, c) = self.open().await?;
                self.set(Ok(()));
                if !republished {
                    let n = self.republish(&js, sink.as_ref()).await?;
                    republished = true;
                    tracing::info!(new = n, "union: stored signals published to NATS");
                }
                tokio::select! {
                    r = self.consume(&c, sink.as_ref()) => r,
                    r = self.publish_loop(&js, &mut rx, &mut pending) => r,
                }
            };
            tokio::select! {
                r = r => if let Err(e) = r { self.set(Err(e)) },
                _ = shutdown.changed() => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(self.retry) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

impl Transport for Nats {
    fn run(
        self: Arc<Self>,
        sink: Arc<dyn Sink>,
        shutdown: watch::Receiver<bool>,
    ) -> BoxFuture<'static, ()> {
        Box::pin(self.run_inner(sink, shutdown))
    }

    fn push(&self, env: Envelope) {
        // Unbounded: the union's own rate cap bounds what is published.
        let _ = self.tx.send(env);
    }

    fn peers(&self) -> Vec<PeerStatus> {
        let s = self.status();
        vec![PeerStatus {
            name: "nats".into(),
            endpoint: self.settings.url.clone(),
            health: s.health.clone(),
            last_error: s.last_error.clone(),
            last_ok: s.last_ok,
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_subject_tokens() {
        assert_eq!(subject("my union", "web.1"), "shield.my_union.sig.web_1");
        assert_eq!(stream_name("a.b*>"), "SHIELD_a_b__");
        let env = Envelope {
            payload: String::new(),
            sig: "ABCDEFGHIJKLMNOPQRSTUVWXYZ".into(),
        };
        assert_eq!(msg_id("web-1", 7, &env), "web-1/7/ABCDEFGHIJKLMNOP");
    }

    #[test]
    fn garbage_payload_becomes_a_refusable_envelope() {
        let e = parse_envelope(b"\xff not json");
        assert!(e.decode().is_err());
    }
}
