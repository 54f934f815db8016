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

/// Options of the governance drill ([`run_governance`]).
#[derive(Debug, Clone)]
pub struct GovDrillOptions {
    /// Members running in this process (3..=16).
    pub members: usize,
    /// Member identities in the treaty (≥ members): the others have keys
    /// this drill holds and signs with, but no running member, so the
    /// ratification quorum is that of a union this large.
    pub identities: usize,
    /// Run on NATS JetStream at this URL instead of direct connections.
    pub nats: Option<String>,
    /// How many times to measure propose → sign → ratify.
    pub rounds: usize,
    /// How long to wait for each step.
    pub timeout: Duration,
}

/// One governance exercise and the time from the last needed signature to
/// every running member enforcing the new version.
#[derive(Debug, Clone, Serialize)]
pub struct Exercise {
    pub name: String,
    pub version: u64,
    pub ms: f64,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct GovDrillReport {
    pub members: usize,
    pub identities: usize,
    pub transport: String,
    pub exercises: Vec<Exercise>,
    /// Over the `amend` rounds.
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl GovDrillReport {
    pub fn ok(&self) -> bool {
        self.exercises.iter().all(|e| e.ok)
    }
}

/// A running member of the governance drill, restarted on every new treaty
/// version as the daemon does (`crates/daemon/src/union.rs`).
struct Live {
    name: String,
    cfg: UnionConfig,
    handle: Option<UnionHandle>,
    rx: mpsc::Receiver<Decision>,
}

impl Live {
    fn running(&self) -> Option<String> {
        self.handle.as_ref().map(|h| h.treaty().digest_hex())
    }

    /// Restart on the treaty file when its digest changed; a treaty that
    /// removes this member stops it.
    async fn follow(&mut self) {
        let Ok(t) = crate::Treaty::load(&self.cfg.treaty_path) else {
            return;
        };
        if self.running().as_deref() == Some(t.digest_hex().as_str()) {
            return;
        }
        self.restart().await;
    }

    async fn restart(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown().await;
        }
        let (tx, rx) = mpsc::channel(1024);
        self.handle = UnionHandle::start(self.cfg.clone(), tx).await.ok();
        self.rx = rx;
    }

    fn pending(&self) -> Vec<crate::history::Amendment> {
        crate::history::pending_in(&crate::history::amendments_dir(&self.cfg.treaty_path))
            .into_iter()
            .map(|(_, a)| a)
            .collect()
    }
}

/// Follow every member until all of `lives` (but `skip`) run `digest`.
async fn until_all(
    lives: &mut [Live],
    digest: &str,
    skip: Option<usize>,
    timeout: Duration,
) -> Option<Duration> {
    let t0 = Instant::now();
    loop {
        for l in lives.iter_mut() {
            l.follow().await;
        }
        if lives
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != skip)
            .all(|(_, l)| l.running().as_deref() == Some(digest))
        {
            return Some(t0.elapsed());
        }
        if t0.elapsed() > timeout {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Follow every member until all of `lives` hold amendment `id` pending.
async fn until_spread(lives: &mut [Live], id: &str, timeout: Duration) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        for l in lives.iter_mut() {
            l.follow().await;
        }
        if lives
            .iter()
            .all(|l| l.pending().iter().any(|a| a.id() == id))
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Run the governance drill on a local union: `amend` (propose a change,
/// collect a strict majority, the last signature given on a running member)
/// `rounds` times, `rotate` (a member rotates its own key under the treaty's
/// auto-approval, with an overlap window, then installs the new key), and
/// `revoke` (a running member is revoked; the others enforce the version
/// without it and it stops). Each reports the time from the last needed
/// signature to every running member enforcing the new version. Needs no
/// root; touches only 127.0.0.1 (and the NATS server when given).
pub async fn run_governance(opts: &GovDrillOptions) -> Result<GovDrillReport, UnionError> {
    if !(3..=16).contains(&opts.members)
        || opts.identities < opts.members
        || opts.identities > 5000
        || opts.rounds == 0
    {
        return Err(drill_err(
            "a governance drill needs 3..=16 running members, identities between members and 5000, and rounds ≥ 1",
        ));
    }
    let dir = tempfile::tempdir().map_err(drill_err)?;
    let mut specs = Vec::new();
    for i in 0..opts.identities {
        let id = Identity::generate()?;
        let port = if i < opts.members {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(drill_err)?
                .port()
        } else {
            1
        };
        specs.push((format!("m{i}"), id, port));
    }
    let transport = match &opts.nats {
        Some(url) => format!("kind = \"nats\"\nurl = \"{url}\"\nsync_interval = \"200ms\"\n"),
        None => "sync_interval = \"200ms\"\n".to_string(),
    };
    let union = format!("drill-{}", std::process::id());
    let mut treaty = format!(
        "name = \"{union}\"\n[limits]\nmax_signals_per_minute = 100000\n[transport]\n{transport}[governance]\nrotate_own_key = true\n"
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
    let mut lives = Vec::new();
    for (n, id, port) in specs.iter().take(opts.members) {
        let d = dir.path().join(n);
        std::fs::create_dir_all(&d).map_err(drill_err)?;
        let key = d.join("member.key");
        id.write(&key, false)?;
        let tp = d.join("treaty.toml");
        std::fs::write(&tp, &treaty).map_err(drill_err)?;
        let (tx, rx) = mpsc::channel(1024);
        let cfg = UnionConfig {
            name: n.clone(),
            key_path: key,
            treaty_path: tp,
            listen: format!("127.0.0.1:{port}").parse().map_err(drill_err)?,
            db_path: d.join("shield.db"),
        };
        let handle = Some(UnionHandle::start(cfg.clone(), tx).await?);
        lives.push(Live {
            name: n.clone(),
            cfg,
            handle,
            rx,
        });
    }
    let key_of = |name: &str| specs.iter().find(|s| s.0 == name).map(|s| &s.1);
    let mut exercises = Vec::new();
    let mut amend_ms = Vec::new();

    // Propose `text` as m0, have `need - 1` signatures put on it from the
    // keys this drill holds (never m1's), wait until every running member
    // holds it, then sign as m1 on m1: the last needed signature.
    async fn amend(
        lives: &mut [Live],
        text: &str,
        signers: &[(&str, &Identity)],
        last: (&str, &Identity),
        skip: Option<usize>,
        timeout: Duration,
    ) -> Result<(u64, Option<Duration>, String), UnionError> {
        let h = crate::history::History::load_or_genesis(&lives[0].cfg.treaty_path)
            .map_err(drill_err)?;
        let cur = h.current().clone();
        let mut a = crate::history::Amendment::propose(&cur, text, signers[0].0, signers[0].1)
            .map_err(drill_err)?;
        for (n, id) in &signers[1..] {
            a.sign(n, id);
        }
        let id = a.id();
        let d0 = crate::history::amendments_dir(&lives[0].cfg.treaty_path);
        std::fs::create_dir_all(&d0).map_err(drill_err)?;
        crate::history::save_amendment(&d0.join(format!("{}.json", &id[..16])), &a)
            .map_err(drill_err)?;
        if !until_spread(lives, &id, timeout).await {
            return Ok((
                a.version,
                None,
                "the amendment did not reach every member".into(),
            ));
        }
        let l1 = &lives[1];
        let d1 = crate::history::amendments_dir(&l1.cfg.treaty_path);
        let (path, mut mine) = crate::history::pending_in(&d1)
            .into_iter()
            .find(|(_, x)| x.id() == id)
            .ok_or_else(|| drill_err("m1 lost the amendment"))?;
        mine.sign(last.0, last.1);
        crate::history::save_amendment(&path, &mine).map_err(drill_err)?;
        let took = until_all(lives, &a.digest, skip, timeout).await;
        Ok((a.version, took, a.digest))
    }

    let majority_signers = |cur: &crate::Treaty, next: &crate::Treaty| -> Vec<(&str, &Identity)> {
        let r = crate::history::rule(cur, next);
        let mut v: Vec<(&str, &Identity)> = vec![("m0", key_of("m0").expect("m0"))];
        for s in &specs {
            if v.len() + 1 >= r.need {
                break;
            }
            if s.0 != "m0" && s.0 != "m1" && r.voters.contains(&s.0) {
                v.push((s.0.as_str(), &s.1));
            }
        }
        v
    };

    for round in 0..opts.rounds {
        let h = crate::history::History::load_or_genesis(&lives[0].cfg.treaty_path)
            .map_err(drill_err)?;
        let cur = h.current().parsed().map_err(drill_err)?;
        let mut file: crate::treaty::TreatyFile =
            toml::from_str(&h.current().treaty).map_err(drill_err)?;
        file.limits.max_signals_per_minute = 100_001 + round as u32;
        let text = toml::to_string_pretty(&file).map_err(drill_err)?;
        let next =
            crate::Treaty::parse(&text, std::path::Path::new("(drill)")).map_err(drill_err)?;
        let signers = majority_signers(&cur, &next);
        let (v, took, detail) = amend(
            &mut lives,
            &text,
            &signers,
            ("m1", key_of("m1").expect("m1")),
            None,
            opts.timeout,
        )
        .await?;
        if let Some(t) = took {
            amend_ms.push(t);
        }
        exercises.push(Exercise {
            name: "amend".into(),
            version: v,
            ms: ms(took.unwrap_or_default()),
            ok: took.is_some(),
            detail: if took.is_some() {
                format!(
                    "{} signatures of {} identities",
                    signers.len() + 1,
                    opts.identities
                )
            } else {
                detail
            },
        });
    }

    // m1 rotates its own key (auto-approved: its signature alone), with a
    // one-hour overlap; every member runs the new version while m1 still
    // holds its old key file, then m1 installs the new key.
    {
        let h = crate::history::History::load_or_genesis(&lives[1].cfg.treaty_path)
            .map_err(drill_err)?;
        let cur = h.current().clone();
        let mut file: crate::treaty::TreatyFile = toml::from_str(&cur.treaty).map_err(drill_err)?;
        let new_id = Identity::generate()?;
        let now = shield_core::wall_now();
        if let Some(m) = file.members.iter_mut().find(|m| m.name == "m1") {
            let old = std::mem::replace(&mut m.key, new_id.public_string());
            m.previous_key = Some(old);
            m.previous_key_until = Some(now + 3600);
        }
        let text = toml::to_string_pretty(&file).map_err(drill_err)?;
        let a = crate::history::Amendment::propose(&cur, &text, "m1", key_of("m1").expect("m1"))
            .map_err(drill_err)?;
        let d1 = crate::history::amendments_dir(&lives[1].cfg.treaty_path);
        std::fs::create_dir_all(&d1).map_err(drill_err)?;
        crate::history::save_amendment(&d1.join(format!("{}.json", &a.id()[..16])), &a)
            .map_err(drill_err)?;
        let took = until_all(&mut lives, &a.digest, None, opts.timeout).await;
        let mut ok = took.is_some();
        if ok {
            new_id.write(&lives[1].cfg.key_path, true)?;
            lives[1].restart().await;
            ok = lives[1].running().as_deref() == Some(a.digest.as_str());
        }
        exercises.push(Exercise {
            name: "rotate".into(),
            version: a.version,
            ms: ms(took.unwrap_or_default()),
            ok,
            detail: if ok {
                "m1's own signature (auto-approved), 1 h overlap; m1 restarted on its new key"
                    .into()
            } else {
                "the rotation was not enforced everywhere, or m1 did not start on its new key"
                    .into()
            },
        });
    }

    // Revoke the last running member.
    {
        let victim = lives.len() - 1;
        let vname = lives[victim].name.clone();
        let h = crate::history::History::load_or_genesis(&lives[0].cfg.treaty_path)
            .map_err(drill_err)?;
        let cur = h.current().parsed().map_err(drill_err)?;
        let mut file: crate::treaty::TreatyFile =
            toml::from_str(&h.current().treaty).map_err(drill_err)?;
        if let Some(i) = file.members.iter().position(|m| m.name == vname) {
            let m = file.members.remove(i);
            file.revoked.push(m.key);
        }
        let text = toml::to_string_pretty(&file).map_err(drill_err)?;
        let next =
            crate::Treaty::parse(&text, std::path::Path::new("(drill)")).map_err(drill_err)?;
        let signers = majority_signers(&cur, &next);
        // m1's key was rotated: its last signature is made with the new key file.
        let m1_key = Identity::load(&lives[1].cfg.key_path)?;
        let (v, took, detail) = amend(
            &mut lives,
            &text,
            &signers,
            ("m1", &m1_key),
            Some(victim),
            opts.timeout,
        )
        .await?;
        // The revoked member may still run its old version (the others no
        // longer talk to it): what it publishes now must reach nobody.
        let mut cut_off = true;
        if took.is_some()
            && let Some(h) = &lives[victim].handle
        {
            let t = shield_core::wall_now();
            let d = Decision {
                id: 0,
                scope: Scope::Ip,
                target: "198.18.255.1/32".parse().map_err(drill_err)?,
                kind: DecisionType::Ban,
                scenario: DRILL_SCENARIO.into(),
                origin: Origin::Local,
                created: t,
                expires: t + 600,
            };
            let _ = h.publish(&d, &[]);
            tokio::time::sleep(Duration::from_secs(1)).await;
            for (i, l) in lives.iter_mut().enumerate() {
                if i != victim && l.rx.try_recv().is_ok() {
                    cut_off = false;
                }
            }
        }
        exercises.push(Exercise {
            name: "revoke".into(),
            version: v,
            ms: ms(took.unwrap_or_default()),
            ok: took.is_some() && cut_off,
            detail: if took.is_none() {
                detail
            } else if cut_off {
                format!("{vname} revoked; its signals reach no member")
            } else {
                format!("{vname} revoked but a member still enforced its signal")
            },
        });
    }

    for l in lives {
        if let Some(h) = l.handle {
            h.shutdown().await;
        }
    }
    amend_ms.sort();
    Ok(GovDrillReport {
        members: opts.members,
        identities: opts.identities,
        transport: if opts.nats.is_some() {
            "nats"
        } else {
            "direct"
        }
        .into(),
        exercises,
        p50_ms: ms(pct(&amend_ms, 0.5)),
        p99_ms: ms(pct(&amend_ms, 0.99)),
    })
}

#[cfg(test)]
mod gov_tests {
    use super::*;

    /// The governance drill on 3 members: every exercise completes, every
    /// member ends on the same version each time (checked inside).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn governance_drill_amends_rotates_and_revokes() {
        let r = run_governance(&GovDrillOptions {
            members: 3,
            identities: 5,
            nats: None,
            rounds: 2,
            timeout: Duration::from_secs(20),
        })
        .await
        .unwrap();
        assert!(r.ok(), "{:#?}", r.exercises);
        let names: Vec<&str> = r.exercises.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["amend", "amend", "rotate", "revoke"]);
        let versions: Vec<u64> = r.exercises.iter().map(|e| e.version).collect();
        assert_eq!(versions, [2, 3, 4, 5]);
    }
}
