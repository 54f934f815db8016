//! The seam between the daemon and kernel firewalls: [`Change`], the
//! [`Firewall`] trait, its error type, the dry-run backend, and the helper that
//! runs one firewall tool per batch (optionally inside a network namespace).
//!
//! The concrete kernel backends live in `nft.rs` and `ipset.rs`.

use std::io::Write;
use std::process::{Command, Stdio};

use shield_core::{Decision, DecisionType, UnixTime};

/// A change for the layers. `now` (passed to [`Firewall::apply`]) lets a layer
/// compute the remaining time (kernel timeout).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Add(Decision),
    Remove(Decision),
}

impl Change {
    pub fn decision(&self) -> &Decision {
        match self {
            Change::Add(d) | Change::Remove(d) => d,
        }
    }
}

/// What went wrong in a layer, and what the operator can do about it.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// A firewall tool is not installed.
    #[error(
        "`{tool}` was not found: install the Debian package `{package}` (or pick another firewall backend)"
    )]
    ToolMissing {
        tool: &'static str,
        package: &'static str,
    },
    /// A tool ran and refused the batch.
    #[error(
        "`{tool}` rejected the batch (exit {status}): {stderr}; check that the kernel has the netfilter modules and that shield runs as root or with CAP_NET_ADMIN"
    )]
    Rejected {
        tool: &'static str,
        status: i32,
        stderr: String,
    },
    /// The tool could not be started or fed.
    #[error("could not run `{tool}`: {source}; is it executable and is /proc mounted?")]
    Io {
        tool: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The kernel refused a netlink transaction (none of it was applied).
    #[error(
        "the kernel refused {what}: {source}; check that shield runs as root or with CAP_NET_ADMIN and that the nf_tables module is available"
    )]
    Kernel {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// Some changes of a batch could not be applied even one by one.
    #[error(
        "{failed} of {total} firewall changes failed (first: {first}); the decisions stay in the store and are retried at the next reconcile"
    )]
    Partial {
        failed: usize,
        total: usize,
        first: String,
    },
    /// The backend's options are unusable.
    #[error("invalid firewall option: {0}")]
    Config(String),
    /// Output of a tool could not be understood.
    #[error(
        "could not parse `{tool}` output: {reason}; please report this with your `{tool} --version`"
    )]
    Parse { tool: &'static str, reason: String },
}

/// A kernel/firewall backend. Sync API; the daemon calls it from one thread, in batches.
pub trait Firewall: Send {
    fn name(&self) -> &'static str;
    /// Apply one batch in one transaction (one `nft -f -` / `ipset restore` run), never one process per ban.
    fn apply(&mut self, batch: &[Change], now: UnixTime) -> Result<(), LayerError>;
    /// At start: make the kernel match `active` exactly (expired out, active in), in one batch.
    /// Creates the table/sets/chains if missing.
    fn reconcile(&mut self, active: &[Decision], now: UnixTime) -> Result<(), LayerError>;
    /// Remove everything this layer installed. Called on `shield run --cleanup`/uninstall, not on normal stop.
    fn teardown(&mut self) -> Result<(), LayerError>;
    /// How many single changes failed so far (after retries). Backends without failures return 0.
    fn failures(&self) -> u64 {
        0
    }
}

/// Only `ban` decisions reach the kernel; throttle and captcha are for the gate.
pub(crate) fn for_kernel(d: &Decision) -> bool {
    d.kind == DecisionType::Ban
}

/// Runs firewall tools, inside `ip netns exec NAME` when a namespace is set.
#[derive(Clone, Debug)]
pub(crate) struct Runner {
    pub(crate) netns: Option<String>,
}

impl Runner {
    fn command(&self, tool: &str) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, tool]);
                c
            }
            None => Command::new(tool),
        }
    }

    /// Run `tool args…` with `stdin` fed in; returns stdout. One process per call.
    pub(crate) fn run(
        &self,
        tool: &'static str,
        package: &'static str,
        args: &[&str],
        stdin: Option<&[u8]>,
    ) -> Result<String, LayerError> {
        let mut cmd = self.command(tool);
        cmd.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                LayerError::ToolMissing { tool, package }
            } else {
                LayerError::Io { tool, source: e }
            }
        })?;
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().ok_or_else(|| LayerError::Io {
                tool,
                source: std::io::Error::other("stdin pipe missing"),
            })?;
            // A writer thread, so a tool that fills its stdout/stderr pipes
            // before reading all of stdin cannot deadlock us.
            let input = input.to_vec();
            let writer = std::thread::spawn(move || pipe.write_all(&input));
            let out = child
                .wait_with_output()
                .map_err(|e| LayerError::Io { tool, source: e })?;
            let _ = writer.join();
            return check(tool, package, out, self.netns.is_some());
        }
        let out = child
            .wait_with_output()
            .map_err(|e| LayerError::Io { tool, source: e })?;
        check(tool, package, out, self.netns.is_some())
    }
}

fn check(
    tool: &'static str,
    package: &'static str,
    out: std::process::Output,
    via_netns: bool,
) -> Result<String, LayerError> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        // `ip netns exec` reports a missing program as exit 255 + "No such file".
        if via_netns && stderr.contains("No such file or directory") && stderr.contains(tool) {
            return Err(LayerError::ToolMissing { tool, package });
        }
        let mut msg: String = stderr.trim().chars().take(2000).collect();
        if msg.is_empty() {
            msg = "(no message)".into();
        }
        return Err(LayerError::Rejected {
            tool,
            status: out.status.code().unwrap_or(-1),
            stderr: msg,
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A backend that only logs what it would do and counts it.
#[derive(Debug, Default)]
pub struct DryRun {
    /// Ban elements the kernel would have received.
    pub added: u64,
    /// Ban elements the kernel would have lost.
    pub removed: u64,
    /// Reconciles run.
    pub reconciles: u64,
}

/// A backend that logs what it would do (tracing) and keeps a count.
pub fn dry_run() -> Box<dyn Firewall> {
    Box::new(DryRun::default())
}

impl Firewall for DryRun {
    fn name(&self) -> &'static str {
        "dry-run"
    }

    fn apply(&mut self, batch: &[Change], now: UnixTime) -> Result<(), LayerError> {
        for c in batch.iter().filter(|c| for_kernel(c.decision())) {
            match c {
                Change::Add(d) => {
                    self.added += 1;
                    tracing::info!(target: "shield::enforce", layer = "dry-run", action = "add", value = %d.value(), timeout_s = d.remaining_s(now), "would ban");
                }
                Change::Remove(d) => {
                    self.removed += 1;
                    tracing::info!(target: "shield::enforce", layer = "dry-run", action = "remove", value = %d.value(), "would unban");
                }
            }
        }
        Ok(())
    }

    fn reconcile(&mut self, active: &[Decision], now: UnixTime) -> Result<(), LayerError> {
        self.reconciles += 1;
        let n = active
            .iter()
            .filter(|d| for_kernel(d) && d.is_active(now))
            .count();
        tracing::info!(target: "shield::enforce", layer = "dry-run", bans = n, "would reconcile the kernel sets");
        Ok(())
    }

    fn teardown(&mut self) -> Result<(), LayerError> {
        tracing::info!(target: "shield::enforce", layer = "dry-run", "would remove the firewall table");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shield_core::{Origin, Scope};

    #[test]
    fn dry_run_counts_only_bans() {
        let mk = |kind| Decision {
            id: 1,
            scope: Scope::Ip,
            target: "192.0.2.1/32".parse().unwrap(),
            kind,
            scenario: "t".into(),
            origin: Origin::Manual,
            created: 0,
            expires: 100,
        };
        let mut fw = DryRun::default();
        fw.apply(
            &[
                Change::Add(mk(DecisionType::Ban)),
                Change::Add(mk(DecisionType::Captcha)),
                Change::Remove(mk(DecisionType::Ban)),
            ],
            0,
        )
        .unwrap();
        assert_eq!((fw.added, fw.removed), (1, 1));
    }

    #[test]
    fn missing_tool_names_the_package() {
        let r = Runner { netns: None };
        let e = r
            .run("shield-no-such-tool", "shield-pkg", &[], None)
            .unwrap_err();
        assert!(matches!(e, LayerError::ToolMissing { .. }));
        assert!(e.to_string().contains("shield-pkg"));
    }
}
