//! `shield decisions|alerts|status|bouncers`: through the running daemon's
//! control socket when there is one, and on the store directly otherwise.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use serde_json::{Value, json};
use shield_core::Decision;
use shield_core::wall_now as now;
use shield_daemon::api::{AddRequest, manual_decision, valid_bouncer_name};
use shield_daemon::client::{ClientError, request};
use shield_daemon::decide::{Outcome, parse_target};
use shield_daemon::lists;
use shield_daemon::plan::Plan;
use shield_daemon::state::Which;
use shield_daemon::store::Store;

use crate::Format;

#[derive(Subcommand, Debug)]
pub enum DecisionsCmd {
    /// Decisions in force (or, with --all, the most recent ones).
    List {
        #[arg(long)]
        all: bool,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Add a manual decision on an address or a CIDR range.
    Add {
        target: String,
        #[arg(long = "type", default_value = "ban")]
        kind: String,
        #[arg(long, default_value = "4h")]
        duration: String,
        #[arg(long, default_value = "manual")]
        reason: String,
    },
    /// Add the decisions of a file in `cscli decisions import`'s CSV or JSON,
    /// or one address/CIDR per line (FireHOL, Spamhaus, IPsum), as manual decisions.
    Import {
        file: PathBuf,
        /// auto (default: from the content), csv, json or lines.
        #[arg(long, default_value = "auto")]
        format: String,
        /// For entries that give no duration.
        #[arg(long, default_value = "4h")]
        duration: String,
        /// For entries that give no reason.
        #[arg(long, default_value = "import")]
        reason: String,
        /// For entries that give no type.
        #[arg(long = "type", default_value = "ban")]
        kind: String,
    },
    /// Print the decisions in force in `cscli decisions import`'s CSV or JSON.
    Export {
        /// csv (default) or json.
        #[arg(long, default_value = "csv")]
        format: String,
    },
    /// End decisions now: every active one on TARGET, or the one with --id.
    Delete {
        target: Option<String>,
        #[arg(long)]
        id: Option<i64>,
    },
}

#[derive(Subcommand, Debug)]
pub enum AlertsCmd {
    List {
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Subcommand, Debug)]
pub enum BouncersCmd {
    /// Register a bouncer and print its API key (shown once; stored hashed).
    Add {
        name: String,
    },
    List,
    Delete {
        name: String,
    },
}

fn plan(config: Option<PathBuf>) -> anyhow::Result<Plan> {
    let loaded = shield_daemon::config::load(config.as_deref())?;
    Ok(shield_daemon::plan::plan(&loaded)?)
}

/// The daemon's answer, `Ok(None)` when no daemon runs.
fn daemon(
    p: &Plan,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<Option<Value>> {
    match request(&p.api.socket, method, path, body) {
        Ok(v) => Ok(Some(v)),
        Err(ClientError::NotRunning(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn print_decisions(v: &[Decision], format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string(v)?);
        return Ok(());
    }
    let t = now();
    println!(
        "{:>6}  {:<8} {:<40} {:>9}  {:<14} scenario",
        "id", "type", "target", "left", "origin"
    );
    for d in v {
        println!(
            "{:>6}  {:<8} {:<40} {:>9}  {:<14} {}",
            d.id,
            d.kind.as_str(),
            d.value(),
            humantime::format_duration(std::time::Duration::from_secs(d.remaining_s(t)))
                .to_string(),
            d.origin.to_string(),
            d.scenario
        );
    }
    Ok(())
}

pub fn decisions(config: Option<PathBuf>, c: DecisionsCmd) -> anyhow::Result<ExitCode> {
    let p = plan(config)?;
    match c {
        DecisionsCmd::List { all, format } => {
            let path = if all {
                "/api/decisions?all=true"
            } else {
                "/api/decisions"
            };
            let v: Vec<Decision> = match daemon(&p, "GET", path, None)? {
                Some(v) => serde_json::from_value(v)?,
                None => {
                    let s = Store::open(&p.store_path)?;
                    if all {
                        s.recent_decisions(1000)?
                    } else {
                        s.active_decisions(now())?
                    }
                }
            };
            print_decisions(&v, format)?;
        }
        DecisionsCmd::Add {
            target,
            kind,
            duration,
            reason,
        } => {
            let req = AddRequest {
                target,
                kind,
                duration,
                reason,
            };
            match daemon(
                &p,
                "POST",
                "/api/decisions",
                Some(&serde_json::to_value(&req)?),
            )? {
                Some(v) => println!("{v}"),
                None => {
                    let d = manual_decision(&req, now()).map_err(anyhow::Error::msg)?;
                    let mut s = Store::open(&p.store_path)?;
                    match s.atomically(|s| p.decider.admit(s, d, now()))? {
                        Outcome::New(d) | Outcome::Extended(d) => {
                            println!("{}", serde_json::to_string(&d)?);
                            eprintln!(
                                "note: no daemon is running; the decision is stored and takes effect when shield starts"
                            );
                        }
                        Outcome::Covered(id) => println!("already covered by decision {id}"),
                        Outcome::Allowlisted(n) => {
                            anyhow::bail!("{} is in the allowlist ({n})", req.target)
                        }
                        // Only alerts of a scenario that decides nothing get this.
                        Outcome::AlertOnly => anyhow::bail!("nothing decided"),
                    }
                }
            }
        }
        DecisionsCmd::Import {
            file,
            format,
            duration,
            reason,
            kind,
        } => import(&p, &file, &format, &duration, &reason, &kind)?,
        DecisionsCmd::Export { format } => {
            let v: Vec<Decision> = match daemon(&p, "GET", "/api/decisions", None)? {
                Some(v) => serde_json::from_value(v)?,
                None => Store::open(&p.store_path)?.active_decisions(now())?,
            };
            match format.as_str() {
                "csv" => print!("{}", lists::export_csv(&v, now())),
                "json" => println!("{}", lists::export_json(&v, now())),
                f => anyhow::bail!("--format {f}: give csv or json"),
            }
        }
        DecisionsCmd::Delete { target, id } => {
            let which = match (&target, id) {
                (_, Some(id)) => Which::Id(id),
                (Some(t), None) => Which::Target(parse_target(t).map_err(anyhow::Error::msg)?),
                (None, None) => anyhow::bail!("give a TARGET or --id N"),
            };
            let q = match &which {
                Which::Id(id) => format!("id={id}"),
                Which::Target(net) => format!("target={}", net.to_string().replace('/', "%2F")),
            };
            match daemon(&p, "DELETE", &format!("/api/decisions?{q}"), None)? {
                Some(v) => {
                    let v: Vec<Decision> = serde_json::from_value(v)?;
                    println!("deleted {} decision(s)", v.len());
                }
                None => {
                    let mut s = Store::open(&p.store_path)?;
                    let n = shield_daemon::worker::end_decisions(&mut s, &which, now())?.len();
                    if n == 0 {
                        anyhow::bail!("no active decision matches");
                    }
                    println!(
                        "deleted {n} decision(s) (no daemon running: the firewall is reconciled when shield starts)"
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `shield decisions import`: every entry through the same checks as a
/// manual decision (the API's when a daemon runs, the store's otherwise).
fn import(
    p: &Plan,
    file: &std::path::Path,
    format: &str,
    duration: &str,
    reason: &str,
    kind: &str,
) -> anyhow::Result<()> {
    let format: lists::parse::Format = format.parse()?;
    let body =
        std::fs::read(file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    let parsed = lists::parse::parse(&body, format, lists::parse::Caps::default())
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    for pr in &parsed.problems {
        eprintln!("{}:{}: skipped: {}", file.display(), pr.line, pr.reason);
    }
    let reqs: Vec<AddRequest> = parsed
        .entries
        .iter()
        .map(|e| AddRequest {
            target: e.target.to_string(),
            kind: if e.kind == shield_core::DecisionType::Ban {
                kind.to_string()
            } else {
                e.kind.to_string()
            },
            duration: e
                .duration_s
                .map(|s| format!("{s}s"))
                .unwrap_or_else(|| duration.to_string()),
            reason: e.reason.clone().unwrap_or_else(|| reason.to_string()),
        })
        .collect();
    let (mut added, mut skipped) = (0usize, parsed.bad + parsed.refused);
    let probe = daemon(p, "GET", "/api/status", None)?;
    if probe.is_some() {
        for r in &reqs {
            match request(
                &p.api.socket,
                "POST",
                "/api/decisions",
                Some(&serde_json::to_value(r)?),
            ) {
                Ok(_) => added += 1,
                Err(e) => {
                    skipped += 1;
                    eprintln!("{}: skipped: {e}", r.target);
                }
            }
        }
    } else {
        let t = now();
        let mut ds = Vec::with_capacity(reqs.len());
        for r in &reqs {
            match manual_decision(r, t) {
                Ok(d) => ds.push(d),
                Err(e) => {
                    skipped += 1;
                    eprintln!("{}: skipped: {e}", r.target);
                }
            }
        }
        let mut s = Store::open(&p.store_path)?;
        let outcomes = s.atomically(|s| {
            ds.into_iter()
                .map(|d| p.decider.admit(s, d, t))
                .collect::<Result<Vec<_>, _>>()
        })?;
        for o in outcomes {
            match o {
                Outcome::New(_) | Outcome::Extended(_) | Outcome::Covered(_) => added += 1,
                _ => skipped += 1,
            }
        }
        eprintln!(
            "note: no daemon is running; the decisions are stored and take effect when shield starts"
        );
    }
    println!("imported {added} decision(s), skipped {skipped}");
    Ok(())
}

pub fn alerts(config: Option<PathBuf>, c: AlertsCmd) -> anyhow::Result<ExitCode> {
    let p = plan(config)?;
    let AlertsCmd::List { limit, format } = c;
    let v: Vec<shield_daemon::store::StoredAlert> =
        match daemon(&p, "GET", &format!("/api/alerts?limit={limit}"), None)? {
            Some(v) => serde_json::from_value(v)?,
            None => Store::open(&p.store_path)?.recent_alerts(limit)?,
        };
    if format == Format::Json {
        println!("{}", serde_json::to_string(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    for a in &v {
        let when = jiff::Timestamp::from_second(a.time)
            .map(|t| t.to_string())
            .unwrap_or_default();
        println!(
            "#{} {} {} {} ({} events)",
            a.id, when, a.scenario, a.target, a.events
        );
        for e in &a.evidence {
            println!("    {e}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn status(config: Option<PathBuf>, format: Format) -> anyhow::Result<ExitCode> {
    let p = plan(config)?;
    match daemon(&p, "GET", "/api/status", None)? {
        Some(v) => {
            if format == Format::Json {
                println!("{v}");
            } else {
                let s: shield_daemon::api::Status = serde_json::from_value(v)?;
                println!(
                    "shield {} running for {}s, config {}",
                    s.version, s.uptime_s, s.config
                );
                println!(
                    "firewall: {}, active decisions: {}",
                    s.firewall, s.active_decisions
                );
                println!(
                    "{}",
                    shield_daemon::web::describe(p.api.listen, p.api.token.is_some())
                );
                for src in &s.sources {
                    println!(
                        "source {:<16} {:<8} lines {:>10} matched {:>8} alerts {:>6} lag {:>6.1}s (peak {:.1}s{}) {}",
                        src.name,
                        src.kind,
                        src.lines,
                        src.matched,
                        src.alerts,
                        src.lag_seconds,
                        src.lag_peak_seconds,
                        match src.bytes_behind {
                            0 => String::new(),
                            n => format!(", {n} bytes behind"),
                        },
                        src.error.as_deref().unwrap_or("")
                    );
                }
                for n in &s.notify {
                    println!("{}", shield_daemon::notify::describe(n));
                }
                for l in &s.lists {
                    println!(
                        "list   {:<16} {:<6} entries {:>8} +{} -{} ={} {}",
                        l.name,
                        l.role,
                        l.entries,
                        l.added,
                        l.removed,
                        l.unchanged,
                        l.error.as_deref().unwrap_or("")
                    );
                }
                println!("counters: {}", s.counters);
            }
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let s = Store::open(&p.store_path)?;
            let n = s.active_decisions(now())?.len();
            if format == Format::Json {
                println!(
                    "{}",
                    json!({"running": false, "active_decisions": n, "store": p.store_path})
                );
            } else {
                println!(
                    "shield is not running ({} not answering); store {} holds {n} active decision(s)",
                    p.api.socket.display(),
                    p.store_path.display()
                );
            }
            Ok(ExitCode::from(3))
        }
    }
}

pub fn bouncers(config: Option<PathBuf>, c: BouncersCmd) -> anyhow::Result<ExitCode> {
    let p = plan(config)?;
    match c {
        BouncersCmd::Add { name } => {
            valid_bouncer_name(&name).map_err(anyhow::Error::msg)?;
            let key = match daemon(&p, "POST", "/api/bouncers", Some(&json!({"name": name})))? {
                Some(v) => v["api_key"].as_str().unwrap_or_default().to_string(),
                None => {
                    let key = shield_enforce::generate_api_key();
                    let s = Store::open(&p.store_path)?;
                    if !s.add_bouncer(&name, &shield_enforce::hash_api_key(&key), now())? {
                        anyhow::bail!("bouncer `{name}` already exists");
                    }
                    key
                }
            };
            println!("{key}");
            eprintln!("API key for bouncer `{name}` (shown once; Shield keeps only its hash)");
        }
        BouncersCmd::List => {
            let s = Store::open(&p.store_path)?;
            for b in s.bouncers()? {
                println!(
                    "{:<24} created {} last pull {:?}",
                    b.name, b.created, b.last_pull
                );
            }
        }
        BouncersCmd::Delete { name } => {
            match daemon(&p, "DELETE", &format!("/api/bouncers/{name}"), None)? {
                Some(_) => println!("deleted"),
                None => {
                    if !Store::open(&p.store_path)?.delete_bouncer(&name)? {
                        anyhow::bail!("no bouncer named `{name}`");
                    }
                    println!("deleted");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
