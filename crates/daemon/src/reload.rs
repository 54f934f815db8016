//! A reload, section by section: what each section of a new plan changes in
//! the running daemon, or why it needs a restart. `run`'s reload loop calls
//! one function per section and hands the outcome to [`Report::section`]
//! (one line per section: a new section adds its line there); the report
//! logs what was applied and what was refused, naming the key. A refused
//! section keeps its running value, and the next reload compares against it.
//!
//! It owns the decisions "same / apply / refuse" for `[firewall]` and
//! `[union]`; `[api]` is `server::Servers::reload`, `[webhook]` a watch
//! channel the sender task reads, the readers and the decision policy
//! `readers::restart_readers` and `Msg::Policy`.

use std::sync::mpsc;
use std::time::Duration;

use crate::config::UnionConfig;
use crate::error::RunError;
use crate::plan::{FirewallPlan, Plan};
use crate::state::Msg;

/// What a section's reload did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The new value equals the running one.
    Same,
    /// The new value runs now.
    Applied,
}

/// What one reload did, section by section.
#[derive(Debug, Default)]
pub struct Report {
    pub applied: Vec<&'static str>,
    /// `section: why`, each naming the key and what to do.
    pub refused: Vec<String>,
}

impl Report {
    /// Records one section's outcome.
    pub fn section<E: std::fmt::Display>(&mut self, name: &'static str, r: Result<Outcome, E>) {
        match r {
            Ok(Outcome::Same) => {}
            Ok(Outcome::Applied) => self.applied.push(name),
            Err(e) => self.refused.push(format!("{e:#}")),
        }
    }

    /// Logs the report: info for what was applied, one error per refusal.
    pub fn log(&self, pipelines: usize) {
        for r in &self.refused {
            tracing::error!("reload: {r}");
        }
        tracing::info!(
            pipelines,
            applied = %self.applied.join(" "),
            refused = self.refused.len(),
            "config reloaded (sources, rules, scenarios, [engine] and [decisions] always)"
        );
    }
}

/// Why a section was not applied.
#[derive(Debug, thiserror::Error)]
pub enum SectionError {
    /// A key only a restart applies.
    #[error("[{section}] {key}: restart the daemon to apply it ({why}); the running value stays")]
    NeedsRestart {
        section: &'static str,
        key: &'static str,
        why: &'static str,
    },
    /// The new firewall layer could not be built or filled.
    #[error("[firewall]: the new layer did not start, the previous one keeps enforcing")]
    Firewall(#[source] RunError),
}

/// `[firewall]`: a new layer built from `new`, filled by the decision thread
/// with the decisions in force, then swapped in; the old layer is removed
/// after, when it lived elsewhere (another backend, table or namespace). A
/// new `priority` on the same table needs a restart: a hook's priority cannot
/// change in place, and recreating the table would drop every ban for a moment.
pub fn firewall(
    running: &FirewallPlan,
    new: &Plan,
    tx: &mpsc::Sender<Msg>,
) -> Result<Outcome, SectionError> {
    let f = &new.firewall;
    if f == running {
        return Ok(Outcome::Same);
    }
    let elsewhere =
        f.backend != running.backend || f.table != running.table || f.netns != running.netns;
    if !elsewhere && f.priority != running.priority {
        return Err(SectionError::NeedsRestart {
            section: "firewall",
            key: "priority changed",
            why: "a hook's priority cannot change in place without dropping the bans for a moment",
        });
    }
    let layer = crate::worker::build_firewall(new).map_err(SectionError::Firewall)?;
    let (rtx, rrx) = mpsc::channel();
    tx.send(Msg::Firewall {
        layer,
        teardown_old: elsewhere,
        reply: rtx,
    })
    .map_err(|_| SectionError::Firewall(RunError::DecisionThread("has stopped")))?;
    rrx.recv_timeout(Duration::from_secs(60))
        .map_err(|_| {
            SectionError::Firewall(RunError::DecisionThread("did not answer within 60 s"))
        })?
        .map_err(SectionError::Firewall)?;
    Ok(Outcome::Applied)
}

/// `[store] path`: the database is opened at start.
pub fn store(running: &std::path::Path, new: &std::path::Path) -> Result<Outcome, SectionError> {
    if running == new {
        return Ok(Outcome::Same);
    }
    Err(SectionError::NeedsRestart {
        section: "store",
        key: "path changed",
        why: "the database is opened at start",
    })
}

/// `[union]`: the member's transport, store and peers are set up at start,
/// so any change needs a restart; the first key that differs is named.
pub fn union(
    running: Option<&UnionConfig>,
    new: Option<&UnionConfig>,
) -> Result<Outcome, SectionError> {
    let key = match (running, new) {
        (None, None) => return Ok(Outcome::Same),
        (Some(a), Some(b)) if a == b => return Ok(Outcome::Same),
        (Some(a), Some(b)) => {
            if a.member != b.member {
                "member changed"
            } else if a.key != b.key {
                "key changed"
            } else if a.treaty != b.treaty {
                "treaty changed"
            } else {
                "listen changed"
            }
        }
        (None, Some(_)) => "added",
        (Some(_), None) => "removed",
    };
    Err(SectionError::NeedsRestart {
        section: "union",
        key,
        why: "the member's transport and peers are set up at start",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(member: &str, listen: &str) -> UnionConfig {
        UnionConfig {
            member: member.into(),
            key: "/k".into(),
            treaty: "/t".into(),
            listen: listen.parse().unwrap(),
        }
    }

    #[test]
    fn a_union_change_names_the_key_that_needs_a_restart() {
        let a = u("a", "127.0.0.1:1");
        assert_eq!(union(None, None).unwrap(), Outcome::Same);
        assert_eq!(union(Some(&a), Some(&a.clone())).unwrap(), Outcome::Same);
        let e = union(Some(&a), Some(&u("b", "127.0.0.1:1")))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("[union] member changed: restart"), "{e}");
        let e = union(Some(&a), Some(&u("a", "127.0.0.1:2")))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("[union] listen changed"), "{e}");
        let e = union(None, Some(&a)).unwrap_err().to_string();
        assert!(e.starts_with("[union] added: restart"), "{e}");
    }

    #[test]
    fn the_report_lists_applied_sections_and_refusals() {
        let mut r = Report::default();
        r.section::<SectionError>("[api]", Ok(Outcome::Applied));
        r.section::<SectionError>("[webhook]", Ok(Outcome::Same));
        r.section("[union]", union(None, Some(&u("a", "127.0.0.1:1"))));
        assert_eq!(r.applied, vec!["[api]"]);
        assert_eq!(r.refused.len(), 1);
        assert!(r.refused[0].contains("[union]"));
    }
}
