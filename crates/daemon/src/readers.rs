//! The reader threads: one per pipeline, each reading its input (files and
//! stdin here; journald and syslog in their own modules, for what only they
//! need: a journalctl child, a listener) and feeding every line through one
//! [`Feed`] (`feed.rs`): the pipeline's engine, the source's counts and
//! status, and the batch that hands alerts with the position after them to
//! the decision thread. Also the reload's reader swap.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use shield_core::{Checkpoint, Clock};
use shield_sources::{FileSpec, Tailer};

use crate::error::RunError;
use crate::feed::{After, Feed};
use crate::plan::{Input, MatcherPlan, Pipeline, Plan};
use crate::state::{MAX_LINE, Msg, SourceStatus};
use crate::store::{FilePosition, Store};

/// A running reader thread.
pub struct Reader {
    pub stop: Arc<AtomicBool>,
    /// `None` for readers that block in a read nobody can interrupt (stdin):
    /// they are left to end with the process instead of being joined.
    pub handle: Option<JoinHandle<()>>,
    /// The pipeline's name.
    pub name: String,
}

impl Reader {
    /// A stdin reader cannot be stopped and started again (the stopped one
    /// would still hold stdin's lock until one more line came): reloads keep it.
    fn is_stdin(&self) -> bool {
        self.handle.is_none()
    }
}

/// Starts the reader thread of one pipeline.
pub fn start_reader(
    pipe: Pipeline,
    plan: &Plan,
    saved: &[FilePosition],
    tx: mpsc::Sender<Msg>,
    sources: Arc<Mutex<BTreeMap<String, SourceStatus>>>,
    clock: &Clock,
) -> Result<Reader, RunError> {
    let clock = clock.clone();
    // Built by the plan; built again only when this plan already started it.
    let engine = match plan.built.take(&pipe.name) {
        Some(e) => e,
        None => pipe
            .engine(plan.engine)
            .map_err(|reason| RunError::Engine {
                pipeline: pipe.name.clone(),
                reason,
            })?,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let name = pipe.name.clone();
    let mine: Vec<(String, Checkpoint)> = saved
        .iter()
        .filter(|p| p.pipeline == name)
        .map(|p| (p.path.clone(), p.checkpoint.clone()))
        .collect();
    {
        let mut s = sources.lock().unwrap_or_else(|p| p.into_inner());
        s.insert(
            name.clone(),
            SourceStatus {
                name: name.clone(),
                kind: kind_name(&pipe.input).into(),
                ..Default::default()
            },
        );
    }
    let thread_err = |e| RunError::Thread(format!("src-{}", pipe.name), e);
    let handle = match pipe.input.clone() {
        Input::File { globs, from_start } => {
            let mut tailer = Tailer::new(
                FileSpec {
                    globs,
                    from_start,
                    max_line: MAX_LINE,
                },
                mine,
            )
            .map_err(|e| RunError::Source {
                source_name: name.clone(),
                source: e.into(),
            })?;
            // Record where every followed file starts right away: a file rotated
            // before its first line, followed by a crash, is then still known.
            let first = tailer.checkpoints();
            if !first.is_empty() {
                let _ = tx.send(Msg::Batch {
                    pipeline: name.clone(),
                    alerts: Vec::new(),
                    checkpoints: first,
                    lines: 0,
                    matched: 0,
                    cursor: None,
                });
            }
            let mut feed = Feed::new(name, engine, tx, sources);
            std::thread::Builder::new()
                .name(format!("src-{}", feed.name))
                .spawn(move || {
                    let (mut lag, mut warn) = (crate::lag::FileLag::default(), crate::lag::LagWarn::default());
                    while !stop2.load(Ordering::Relaxed) {
                        let behind = lag.observe(&tailer.checkpoints(), std::time::SystemTime::now());
                        feed.lag(behind);
                        warn.update(&feed.name, behind);
                        let t = clock.now();
                        let res = tailer.read_available(&mut |_path, bytes| feed.line(bytes, t));
                        if let Err(e) = &res {
                            tracing::warn!(source = %feed.name, error = %e, "reading failed; retrying");
                        }
                        if feed.pending() > 0 {
                            let cps = tailer.checkpoints();
                            let files = cps.iter().map(|(k, _)| k.clone()).collect();
                            let after = After {
                                checkpoints: cps,
                                files: Some(files),
                                ..After::default()
                            };
                            if !feed.flush(t, after) {
                                break;
                            }
                        }
                        // A backlog larger than one pass is read on at once.
                        if !res.as_ref().is_ok_and(|r| r.more) {
                            tailer.wait(Duration::from_millis(250));
                        }
                    }
                })
                .map_err(thread_err)?
        }
        Input::Stdin => {
            let mut feed = Feed::new(name, engine, tx, sources);
            std::thread::Builder::new()
                .name(format!("src-{}", feed.name))
                .spawn(move || {
                    let mut r = shield_sources::LineReader::new(std::io::stdin().lock(), MAX_LINE);
                    while let Some(Ok(bytes)) = r.next_line() {
                        if stop2.load(Ordering::Relaxed) {
                            break;
                        }
                        let t = clock.now();
                        feed.line(bytes, t);
                        // Report every line like the file reader does: at once
                        // when an alert fired, else when the next read would block
                        // (or after a long run), so the counts are never left behind.
                        if !feed.has_alerts() && r.has_buffered_line() && feed.pending() < 4096 {
                            continue;
                        }
                        if !feed.flush(t, After::default()) {
                            break;
                        }
                    }
                })
                .map_err(thread_err)?
        }
        Input::Journald { matches, directory } => {
            let key = format!("{name}\tjournald");
            let cursor = Store::open(&plan.store_path)
                .ok()
                .and_then(|s| s.meta(&key).ok().flatten());
            let spec = shield_sources::journald::JournalSpec {
                matches,
                extra_args: directory
                    .map(|d| vec![format!("--directory={d}")])
                    .unwrap_or_default(),
                ..Default::default()
            };
            let feed = Feed::new(name, engine, tx, sources);
            crate::journald::spawn(feed, spec, stop2, key, cursor, clock).map_err(thread_err)?
        }
        Input::Syslog { udp, tcp } => crate::syslog::spawn(
            Feed::new(name, engine, tx, sources),
            udp,
            tcp,
            matches!(pipe.matcher, MatcherPlan::Native { .. }),
            stop2,
            clock,
        )
        .map_err(|e| RunError::Source {
            source_name: pipe.name.clone(),
            source: e.into(),
        })?,
    };
    let handle = (!matches!(pipe.input, Input::Stdin)).then_some(handle);
    Ok(Reader {
        stop,
        handle,
        name: pipe.name,
    })
}

fn kind_name(i: &Input) -> &'static str {
    match i {
        Input::File { .. } => "file",
        Input::Journald { .. } => "journald",
        Input::Stdin => "stdin",
        Input::Syslog { .. } => "syslog",
    }
}

/// A reload's reader swap: stops the running readers (a stdin reader is
/// kept: it cannot be restarted), reads the checkpoints they left with `load`
/// and starts `new`'s pipelines from them. When the checkpoints cannot be
/// read, the error is logged and the readers start from `saved`, the last
/// ones read (lines since then may be decided twice, none is skipped): a
/// failed reload never leaves the daemon without readers. `saved` is
/// updated on success.
pub fn restart_readers(
    readers: &mut Vec<Reader>,
    new: &Plan,
    load: impl FnOnce() -> Result<Vec<FilePosition>, RunError>,
    saved: &mut Vec<FilePosition>,
    tx: &mpsc::Sender<Msg>,
    sources: &Arc<Mutex<BTreeMap<String, SourceStatus>>>,
    clock: &Clock,
) {
    let (kept, stopping): (Vec<Reader>, Vec<Reader>) =
        readers.drain(..).partition(Reader::is_stdin);
    let mut stopping = stopping;
    stop_readers(&mut stopping);
    *readers = kept;
    match load() {
        Ok(cps) => *saved = cps,
        Err(e) => tracing::error!(
            "reload: reading the checkpoints failed, restarting the readers from the last ones read (some lines may be read twice); check the store:\n{e:#}"
        ),
    }
    {
        let mut s = sources.lock().unwrap_or_else(|p| p.into_inner());
        s.retain(|name, _| readers.iter().any(|r| &r.name == name));
    }
    for p in new.pipelines.iter().cloned() {
        if matches!(p.input, Input::Stdin) && readers.iter().any(Reader::is_stdin) {
            tracing::warn!(source = %p.name, "the stdin source keeps its running reader; its changes apply at the next start");
            continue;
        }
        match start_reader(p, new, saved, tx.clone(), sources.clone(), clock) {
            Ok(r) => readers.push(r),
            Err(e) => tracing::error!("{e:#}"),
        }
    }
}

pub fn stop_readers(readers: &mut Vec<Reader>) {
    for r in readers.iter() {
        r.stop.store(true, Ordering::Relaxed);
    }
    for r in readers.drain(..) {
        if let Some(h) = r.handle {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config;

    pub(crate) fn plan_for(dir: &std::path::Path, extra: &str) -> Plan {
        std::fs::write(dir.join("auth.log"), "").unwrap();
        let text = format!(
            "[store]\npath = \"{d}/shield.db\"\n[firewall]\nbackend = \"dry-run\"\n{extra}\n\
             [[source]]\nname = \"auth\"\npaths = [\"{d}/auth.log\"]\npacks = [\"sshd\"]\n",
            d = dir.display()
        );
        let loaded = config::parse(&text, None).expect("config parses");
        crate::plan::plan(&loaded).expect("config plans")
    }

    /// A reload whose checkpoints cannot be read logs it and restarts the
    /// readers from the last checkpoints instead of leaving none running
    /// (issue 22: a `?` there ended the daemon after its readers were stopped).
    #[test]
    fn reload_with_unreadable_checkpoints_still_restarts_the_readers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("auth.log"), "").unwrap();
        let plan = plan_for(dir.path(), "");
        let (tx, rx) = mpsc::channel();
        let sources = Arc::new(Mutex::new(BTreeMap::new()));
        let mut saved = Vec::new();
        let mut readers = vec![
            start_reader(
                plan.pipelines[0].clone(),
                &plan,
                &saved,
                tx.clone(),
                sources.clone(),
                &Clock::system(),
            )
            .unwrap(),
        ];
        restart_readers(
            &mut readers,
            &plan,
            || Err(RunError::DecisionThread("did not answer")),
            &mut saved,
            &tx,
            &sources,
            &Clock::system(),
        );
        assert_eq!(
            readers.len(),
            1,
            "the pipeline runs again after a failed reload"
        );
        assert!(readers[0].handle.as_ref().is_some_and(|h| !h.is_finished()));
        assert!(sources.lock().unwrap().contains_key("auth"));
        stop_readers(&mut readers);
        drop(rx);
    }

    /// The reader runs the engine the plan built while validating the config
    /// (the rules are not compiled again at start); a second start of the
    /// same plan builds its own.
    #[test]
    fn a_reader_takes_the_engine_the_plan_built() {
        let dir = tempfile::tempdir().unwrap();
        let plan = plan_for(dir.path(), "");
        assert!(format!("{:?}", plan.built).contains("auth"));
        let (tx, _rx) = mpsc::channel();
        let sources = Arc::new(Mutex::new(BTreeMap::new()));
        let clock = Clock::system();
        let pipe = plan.pipelines[0].clone();
        let mut readers = vec![
            start_reader(
                pipe.clone(),
                &plan,
                &[],
                tx.clone(),
                sources.clone(),
                &clock,
            )
            .unwrap(),
        ];
        assert!(
            plan.built.take("auth").is_none(),
            "the reader took the plan's engine"
        );
        readers.push(start_reader(pipe, &plan, &[], tx, sources, &clock).unwrap());
        stop_readers(&mut readers);
    }
}
