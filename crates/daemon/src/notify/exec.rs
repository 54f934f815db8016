//! Exec actions (`[[action]]`): a program run once per batch, never per ban,
//! with the batch as JSON on its stdin. No shell: the argv list is run as
//! written. The program is killed when `timeout` passes; its stdout and
//! stderr (the first [`CAPTURE`] bytes of each) go to the daemon's log, and
//! every run is counted by exit status. How many run at once is the sink
//! task's `concurrency`, not this module's.

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::config::ActionConfig;

use super::{Batch, DeliverError, PlanError, SinkStats};

/// Bytes of stdout and of stderr kept for the log; the rest is read and discarded.
pub const CAPTURE: usize = 16 * 1024;

/// A validated action.
#[derive(Clone, Debug)]
pub struct ExecTarget {
    pub name: String,
    pub argv: Vec<String>,
    pub timeout: Duration,
}

impl ExecTarget {
    pub fn plan(c: &ActionConfig) -> Result<ExecTarget, PlanError> {
        let Some(prog) = c.command.first() else {
            return Err((
                "`command` is empty".into(),
                Some("give the program and its arguments, e.g. command = [\"/usr/local/bin/report\", \"--zone\", \"x\"]".into()),
            ));
        };
        let path = std::path::Path::new(prog);
        if !path.is_absolute() {
            return Err((
                format!("the program `{prog}` is not an absolute path"),
                Some("actions run without a shell or PATH lookup; write the full path".into()),
            ));
        }
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {}
            Ok(_) => {
                return Err((
                    format!("the program `{prog}` is not an executable file"),
                    Some(format!("chmod +x {prog}")),
                ));
            }
            Err(e) => return Err((format!("the program `{prog}`: {e}"), None)),
        }
        if c.concurrency == 0 {
            return Err(("`concurrency` must be at least 1".into(), None));
        }
        if c.timeout.is_zero() {
            return Err(("`timeout` must be longer than zero".into(), None));
        }
        Ok(ExecTarget {
            name: c.name.clone(),
            argv: c.command.clone(),
            timeout: c.timeout,
        })
    }

    /// Runs the program once with `batch` on stdin; counts its exit status in `stats`.
    pub async fn run(&self, batch: &Batch, stats: &SinkStats) -> Result<(), DeliverError> {
        let json = serde_json::to_vec(batch).unwrap_or_default();
        let mut child = match tokio::process::Command::new(&self.argv[0])
            .args(&self.argv[1..])
            .env("SHIELD_ACTION", &self.name)
            .env("SHIELD_DECISIONS", batch.count.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                stats.count_exit("spawn");
                return Err(DeliverError::Spawn(format!("{}: {e}", self.argv[0])));
            }
        };
        // Stdin is written and the outputs drained concurrently with the
        // wait: a program that reads late or writes a lot never deadlocks us.
        let stdin = child.stdin.take().map(|mut s| {
            tokio::spawn(async move {
                // A program that does not read its stdin closes the pipe: not an error.
                let _ = s.write_all(&json).await;
            })
        });
        let out = child.stdout.take().map(|s| tokio::spawn(read_capped(s)));
        let err = child.stderr.take().map(|s| tokio::spawn(read_capped(s)));
        let status = match tokio::time::timeout(self.timeout, child.wait()).await {
            Ok(Ok(s)) => Some(s),
            Ok(Err(e)) => {
                stats.count_exit("spawn");
                return Err(DeliverError::Spawn(format!("{}: {e}", self.argv[0])));
            }
            Err(_) => {
                let _ = child.kill().await;
                None
            }
        };
        if let Some(s) = stdin {
            s.abort();
        }
        // The outputs close with the program (a grandchild holding them gets a second).
        let collect = |h: Option<tokio::task::JoinHandle<Vec<u8>>>| async move {
            match h {
                Some(h) => tokio::time::timeout(Duration::from_secs(1), h)
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_default(),
                None => Vec::new(),
            }
        };
        let (stdout, stderr) = (collect(out).await, collect(err).await);
        let stdout = String::from_utf8_lossy(&stdout);
        let stderr = String::from_utf8_lossy(&stderr);
        let (stdout, stderr) = (stdout.trim_end(), stderr.trim_end());
        // One log event per run (runs are batched, so this is bounded by the window).
        if !stdout.is_empty() {
            tracing::info!(action = %self.name, stdout = %stdout, "action output");
        }
        if !stderr.is_empty() {
            tracing::warn!(action = %self.name, stderr = %stderr, "action error output");
        }
        let Some(status) = status else {
            stats.count_exit("timeout");
            return Err(DeliverError::Timeout(self.timeout));
        };
        match status.code() {
            Some(0) => {
                stats.count_exit("0");
                Ok(())
            }
            Some(c) => {
                stats.count_exit(&c.to_string());
                Err(DeliverError::Exit {
                    status: format!("exit status {c}"),
                    stderr: tail(stderr),
                })
            }
            None => {
                stats.count_exit("signal");
                Err(DeliverError::Exit {
                    status: "killed by a signal".into(),
                    stderr: tail(stderr),
                })
            }
        }
    }
}

/// The last line of `s`, at most 200 characters: enough to say why in `shield status`.
fn tail(s: &str) -> String {
    let last = s.lines().last().unwrap_or_default();
    last.chars().take(200).collect()
}

/// Reads `r` to its end, keeping the first [`CAPTURE`] bytes.
async fn read_capped(mut r: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = CAPTURE.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    kept
}
