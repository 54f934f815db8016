//! The running side of `[[list]]`: one task per list fetches it (file or
//! HTTPS, with `If-None-Match`/`If-Modified-Since`), parses it off the
//! runtime's threads and hands the whole list to the decision thread
//! ([`Msg::List`]), which diffs it ([`super::refresh`]). Apart from the
//! parent module so that the plan and the shared state can name list types
//! without a module cycle.

use std::sync::mpsc;
use std::time::Duration;

use shield_core::{AllowFeeds, Clock, Net};

use super::parse::{self, Caps, Parsed};
use super::{
    ListBoard, ListDiff, ListError, ListPlan, ListSource, ListStatus, ListUpdate, MAX_BODY,
    MAX_ENTRIES,
};
use crate::state::Msg;

enum Fetched {
    Body(Vec<u8>),
    NotModified,
}

/// The validators of the last body received, sent back on the next fetch.
#[derive(Default)]
struct Validators {
    etag: Option<String>,
    last_modified: Option<String>,
}

fn client(plan: &ListPlan) -> Result<reqwest::Client, reqwest::Error> {
    // One provider (ring) everywhere; a no-op if it is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(15))
        .timeout(Duration::from_secs(300))
        .user_agent(concat!("shield/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = &plan.ca_pem {
        b = b.tls_certs_only(reqwest::Certificate::from_pem_bundle(pem)?);
    }
    b.build()
}

async fn fetch(
    plan: &ListPlan,
    client: Option<&reqwest::Client>,
    v: &mut Validators,
) -> Result<Fetched, ListError> {
    match &plan.source {
        ListSource::File(p) => tokio::fs::read(p)
            .await
            .map(Fetched::Body)
            .map_err(|source| ListError::Read {
                path: p.clone(),
                source,
            }),
        ListSource::Url(url) => {
            let http = |source| ListError::Http {
                url: url.clone(),
                source,
            };
            let client = client.ok_or(ListError::Stopped)?;
            let mut req = client.get(url);
            if let Some(e) = &v.etag {
                req = req.header(reqwest::header::IF_NONE_MATCH, e);
            }
            if let Some(m) = &v.last_modified {
                req = req.header(reqwest::header::IF_MODIFIED_SINCE, m);
            }
            let mut resp = req.send().await.map_err(http)?;
            if resp.status() == reqwest::StatusCode::NOT_MODIFIED {
                return Ok(Fetched::NotModified);
            }
            if !resp.status().is_success() {
                return Err(ListError::Status {
                    url: url.clone(),
                    status: resp.status().as_u16(),
                });
            }
            let header = |h| {
                resp.headers()
                    .get(h)
                    .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                    .map(str::to_string)
            };
            let (etag, modified) = (
                header(reqwest::header::ETAG),
                header(reqwest::header::LAST_MODIFIED),
            );
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(http)? {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(ListError::TooLarge(url.clone()));
                }
                body.extend_from_slice(&chunk);
            }
            // Kept only once the body is in hand: a failed read is fetched whole next time.
            v.etag = etag;
            v.last_modified = modified;
            Ok(Fetched::Body(body))
        }
    }
}

/// Parses a fetched body, refusing what looks like the wrong thing.
fn read(plan: &ListPlan, body: &[u8]) -> Result<Parsed, ListError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ListError::Empty {
            what: plan.source.to_string(),
        });
    }
    let caps = if plan.allow {
        Caps {
            min_prefix_v4: 0,
            min_prefix_v6: 0,
        }
    } else {
        plan.caps
    };
    if body.len() > MAX_BODY {
        return Err(ListError::TooLarge(plan.source.to_string()));
    }
    let p = parse::parse(body, plan.format, caps)?;
    if p.entries.len() > MAX_ENTRIES {
        return Err(ListError::TooMany {
            what: plan.source.to_string(),
            n: p.entries.len(),
        });
    }
    if p.bad > p.entries.len() {
        return Err(ListError::Malformed {
            what: plan.source.to_string(),
            summary: p.summary().unwrap_or_default(),
        });
    }
    Ok(p)
}

/// The running list tasks; dropping it stops them.
#[derive(Default)]
pub struct ListsTask(Option<tokio::task::JoinHandle<()>>);

impl Drop for ListsTask {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            t.abort();
        }
    }
}

impl ListsTask {
    /// Stops the running lists and starts those of `plan` (a reload).
    pub fn restart(
        &mut self,
        plan: &crate::plan::Plan,
        tx: mpsc::Sender<Msg>,
        board: &ListBoard,
        clock: Clock,
    ) {
        *self = ListsTask::default();
        *self = start(plan, tx, board, clock);
    }
}

/// Starts one refresh task per list of `plan` (none without lists).
pub fn start(
    plan: &crate::plan::Plan,
    tx: mpsc::Sender<Msg>,
    board: &ListBoard,
    clock: Clock,
) -> ListsTask {
    {
        let mut b = board.lock().unwrap_or_else(|p| p.into_inner());
        b.retain(|name, _| plan.lists.iter().any(|l| &l.name == name));
    }
    if plan.lists.is_empty() {
        return ListsTask(None);
    }
    let feeds = plan.decider.allowlist.feeds().clone();
    let mut set = tokio::task::JoinSet::new();
    for l in plan.lists.clone() {
        set.spawn(run_list(
            l,
            tx.clone(),
            board.clone(),
            feeds.clone(),
            clock.clone(),
        ));
    }
    // Dropping the set (when this task is aborted) aborts every list task.
    ListsTask(Some(tokio::spawn(async move {
        while set.join_next().await.is_some() {}
    })))
}

async fn run_list(
    plan: ListPlan,
    tx: mpsc::Sender<Msg>,
    board: ListBoard,
    feeds: AllowFeeds,
    clock: Clock,
) {
    let update = |f: &dyn Fn(&mut ListStatus)| {
        let mut b = board.lock().unwrap_or_else(|p| p.into_inner());
        let s = b.entry(plan.name.clone()).or_insert_with(|| ListStatus {
            name: plan.name.clone(),
            source: plan.source.to_string(),
            role: if plan.allow { "allow" } else { "block" }.into(),
            ..Default::default()
        });
        f(s);
    };
    update(&|_| {});
    let client = match &plan.source {
        ListSource::Url(_) => match client(&plan) {
            Ok(c) => Some(c),
            Err(e) => {
                let msg = format!("cannot build an HTTPS client: {e}");
                tracing::error!(list = %plan.name, error = %msg, "list disabled");
                update(&|s| s.error = Some(msg.clone()));
                return;
            }
        },
        ListSource::File(_) => None,
    };
    let mut validators = Validators::default();
    loop {
        let now = clock.now();
        let res = refresh_once(&plan, client.as_ref(), &mut validators, &tx, &feeds).await;
        match res {
            Ok(None) => update(&|s| {
                s.last_attempt = Some(now);
                s.last_success = Some(now);
                s.not_modified += 1;
                s.error = None;
            }),
            Ok(Some((p, diff))) => {
                let problems = p.problems;
                if let Some(w) = &problems {
                    tracing::warn!(list = %plan.name, problems = %w, "list read with problems");
                }
                tracing::info!(list = %plan.name, entries = p.entries, added = diff.added, removed = diff.removed, unchanged = diff.unchanged, allowlisted = diff.allowlisted, store_ms = diff.store_ms, firewall_ms = diff.apply_ms, "list refreshed");
                update(&|s| {
                    s.last_attempt = Some(now);
                    s.last_success = Some(now);
                    s.refreshes += 1;
                    s.entries = p.entries as u64;
                    s.bad_lines = p.bad as u64;
                    s.refused = p.refused as u64;
                    s.added = diff.added;
                    s.removed = diff.removed;
                    s.unchanged = diff.unchanged;
                    s.allowlisted = diff.allowlisted;
                    s.covered = diff.covered;
                    s.store_ms = diff.store_ms;
                    s.apply_ms = diff.apply_ms;
                    s.error = problems.clone();
                });
            }
            Err(ListError::Stopped) => return,
            Err(e) => {
                let msg = e.to_string();
                tracing::warn!(list = %plan.name, error = %msg, "list not refreshed; its previous contents stay in force");
                update(&|s| {
                    s.last_attempt = Some(now);
                    s.failures += 1;
                    s.error = Some(msg.clone());
                });
            }
        }
        tokio::time::sleep(plan.refresh).await;
    }
}

/// One refresh: `None` when the server said nothing changed.
async fn refresh_once(
    plan: &ListPlan,
    client: Option<&reqwest::Client>,
    validators: &mut Validators,
    tx: &mpsc::Sender<Msg>,
    feeds: &AllowFeeds,
) -> Result<Option<(Summary, ListDiff)>, ListError> {
    let body = match fetch(plan, client, validators).await? {
        Fetched::NotModified => return Ok(None),
        Fetched::Body(b) => b,
    };
    let p2 = plan.clone();
    let mut parsed = tokio::task::spawn_blocking(move || read(&p2, &body))
        .await
        .map_err(|_| ListError::Stopped)??;
    if plan.allow {
        let nets: Vec<Net> = parsed.entries.iter().map(|e| e.target).collect();
        let diff = ListDiff {
            added: nets.len() as u64,
            ..Default::default()
        };
        let summary = Summary::of(&parsed, nets.len());
        feeds.set(&plan.name, nets);
        return Ok(Some((summary, diff)));
    }
    let entries = std::mem::take(&mut parsed.entries);
    let summary = Summary::of(&parsed, entries.len());
    let (rtx, rrx) = tokio::sync::oneshot::channel();
    tx.send(Msg::List {
        update: ListUpdate {
            name: plan.name.clone(),
            entries,
            kind: plan.kind,
            duration_s: plan.duration.as_secs(),
        },
        reply: rtx,
    })
    .map_err(|_| ListError::Stopped)?;
    let diff = rrx.await.map_err(|_| ListError::Stopped)??;
    Ok(Some((summary, diff)))
}

/// What a list read held, kept for the status once its entries are handed over.
struct Summary {
    entries: usize,
    bad: usize,
    refused: usize,
    problems: Option<String>,
}

impl Summary {
    fn of(p: &Parsed, entries: usize) -> Summary {
        Summary {
            entries,
            bad: p.bad,
            refused: p.refused,
            problems: p.summary(),
        }
    }
}
