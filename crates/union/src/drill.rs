//! The union part of `shield drill`: start N members in this process on
//! loopback (own keys, treaty, databases and ports in a temp dir), raise
//! attacks at the first member, and report when each other member had each
//! trusted decision in hand, or what never arrived (`shield union drill`).
//! It needs no root and measures the union alone: no log, no firewall.
//!
//! The drill with real daemons is `shield drill` in the binary
//! (`src/cmd/drill.rs`): each member a `shield run` in its own network
//! namespace with its own nftables, an attack written to the first member's
//! log, and the time each member's kernel set holds the ban. That
//! composition lives in the binary because no stage crate depends on another.

use serde::Serialize;
use shield_core::{Decision, DecisionType, Origin, Scope};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

use crate::{Identity, UnionConfig, UnionError, UnionHandle};

/// Scenario the drill's treaty binds.
pub const DRILL_SCENARIO: &str = "drill-bruteforce";

#[derive(Debug, Clone)]
pub struct DrillOptions {
    /// Members, at least 2.
    pub members: usize,
    /// Decisions raised at the first member (distinct documentation addresses).
    pub attacks: usize,
    /// How long to wait for every arrival.
    pub timeout: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemberResult {
    pub name: String,
    pub received: usize,
    pub p50_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    pub members: usize,
    pub attacks: usize,
    pub results: Vec<MemberResult>,
    /// Over every (member, attack) arrival.
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// `member: target` pairs that never arrived.
    pub missing: Vec<String>,
}

impl DrillReport {
    pub fn ok(&self) -> bool {
        self.missing.is_empty()
    }
}

fn drill_err(e: impl std::fmt::Display) -> UnionError {
    UnionError::Drill(e.to_string())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Run the loopback drill. Needs no root and touches only 127.0.0.1.
pub async fn run_loopback(opts: &DrillOptions) -> Result<DrillReport, UnionError> {
    if opts.members < 2 || opts.members > 32 || opts.attacks == 0 || opts.attacks > 1000 {
        return Err(drill_err(
            "a drill needs 2..=32 members and 1..=1000 attacks",
        ));
    }
    let dir = tempfile::tempdir().map_err(drill_err)?;
    let mut specs = Vec::new();
    for i in 0..opts.members {
        let id = Identity::generate()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(drill_err)?
            .port();
        specs.push((format!("m{i}"), id, port));
    }
    let mut treaty = String::from(
        "name = \"drill\"\n[limits]\nmax_signals_per_minute = 100000\n[transport]\nsync_interval = \"500ms\"\n",
    );
    for (n, id, port) in &specs {
        treaty.push_str(&format!(
            "[[member]]\nname = \"{n}\"\nkey = \"{}\"\nendpoint = \"127.0.0.1:{port}\"\n",
            id.public_string()
        ));
    }
    treaty.push_str(&format!(
        "[[policy]]\nscenario = \"{DRILL_SCENARIO}\"\ntype = \"ban\"\nduration = \"10m\"\n"
    ));
    let tp = dir.path().join("treaty.toml");
    std::fs::write(&tp, &treaty).map_err(drill_err)?;
    let mut handles = Vec::new();
    let mut rxs = Vec::new();
    for (n, id, port) in &specs {
        let key = dir.path().join(format!("{n}.key"));
        id.write(&key, false)?;
        let (tx, rx) = mpsc::channel(opts.attacks + 16);
        let cfg = UnionConfig {
            name: n.clone(),
            key_path: key,
            treaty_path: tp.clone(),
            listen: format!("127.0.0.1:{port}").parse().map_err(drill_err)?,
            db_path: dir.path().join(format!("{n}.db")),
        };
        handles.push(UnionHandle::start(cfg, tx).await?);
        rxs.push(rx);
    }
    // Let the members greet each other before timing.
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end
        && !handles[0]
            .status()
            .members
            .iter()
            .all(|m| matches!(m.health, crate::Health::Up | crate::Health::Local))
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut sent = std::collections::HashMap::new();
    for i in 0..opts.attacks {
        let target: shield_core::Net = format!("198.18.{}.{}/32", i / 250, 1 + i % 250)
            .parse()
            .map_err(drill_err)?;
        let d = Decision {
            id: 0,
            scope: Scope::Ip,
            target,
            kind: DecisionType::Ban,
            scenario: DRILL_SCENARIO.into(),
            origin: Origin::Local,
            created: now,
            expires: now + 600,
        };
        sent.insert(target, Instant::now());
        handles[0].publish(&d, &["drill".to_string()])?;
    }
    let deadline = tokio::time::Instant::now() + opts.timeout;
    let mut all = Vec::new();
    let mut results = Vec::new();
    let mut missing = Vec::new();
    for (i, rx) in rxs.iter_mut().enumerate().skip(1) {
        let mut got = std::collections::HashSet::new();
        let mut lat = Vec::new();
        while got.len() < opts.attacks {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(d)) => {
                    if let Some(t0) = sent.get(&d.target)
                        && got.insert(d.target)
                    {
                        lat.push(t0.elapsed());
                    }
                }
                _ => break,
            }
        }
        for t in sent.keys().filter(|t| !got.contains(*t)) {
            missing.push(format!("{}: {t}", specs[i].0));
        }
        lat.sort();
        results.push(MemberResult {
            name: specs[i].0.clone(),
            received: got.len(),
            p50_ms: ms(pct(&lat, 0.5)),
            max_ms: ms(lat.last().copied().unwrap_or_default()),
        });
        all.extend(lat);
    }
    all.sort();
    for h in handles {
        h.shutdown().await;
    }
    Ok(DrillReport {
        members: opts.members,
        attacks: opts.attacks,
        results,
        p50_ms: ms(pct(&all, 0.5)),
        p99_ms: ms(pct(&all, 0.99)),
        missing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn loopback_drill_reaches_every_member() {
        let r = run_loopback(&DrillOptions {
            members: 3,
            attacks: 10,
            timeout: Duration::from_secs(20),
        })
        .await
        .unwrap();
        assert!(r.ok(), "{:?}", r.missing);
        assert_eq!(r.results.len(), 2);
        assert!(r.results.iter().all(|m| m.received == 10));
        assert!(
            run_loopback(&DrillOptions {
                members: 1,
                attacks: 1,
                timeout: Duration::ZERO
            })
            .await
            .is_err()
        );
    }
}
