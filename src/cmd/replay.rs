//! `shield replay` and `shield explain`: the engines on files or stdin, no daemon.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use shield_core::Allowlist;
use shield_daemon::config::Escalation;
use shield_daemon::decide::Decider;
use shield_detect::{Engine, EngineOptions, NativeMatcher};

use super::args::CrowdsecArgs;
use crate::Format;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Log files; `.gz` is read transparently; `-` is stdin.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    #[command(flatten)]
    pub f2b: F2bArgs,
    #[command(flatten)]
    pub crowdsec: CrowdsecArgs,
}

/// Use one fail2ban filter instead of the config or the built-in packs.
#[derive(clap::Args, Debug)]
pub struct F2bArgs {
    /// A fail2ban filter: a name under --filter-dir or a path, with optional [mode=...], e.g. "sshd[mode=aggressive]".
    #[arg(long)]
    pub fail2ban_filter: Option<String>,
    #[arg(long, default_value = "/etc/fail2ban/filter.d")]
    pub filter_dir: PathBuf,
    /// Jail settings applied to the filter's matches (fail2ban's defaults).
    #[arg(long, default_value_t = 5)]
    pub maxretry: u32,
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub findtime: std::time::Duration,
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub bantime: std::time::Duration,
}

#[derive(clap::Args, Debug)]
pub struct ExplainArgs {
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// List the rules and scenarios instead of reading lines.
    #[arg(long)]
    pub list: bool,
    #[command(flatten)]
    pub f2b: F2bArgs,
    /// With --crowdsec: show what a CrowdSec installation's parsers and scenarios make of each line.
    #[command(flatten)]
    pub cs: CrowdsecArgs,
    /// With --crowdsec: read lines from this file instead of stdin.
    #[arg(requires = "crowdsec")]
    pub file: Option<PathBuf>,
}

/// The engines and policy replay uses: the config's when `--config` is given,
/// otherwise every built-in pack with its default scenarios.
fn engines(config: Option<PathBuf>, f2b: &F2bArgs) -> anyhow::Result<(Vec<Engine>, Decider)> {
    if let Some(filter) = &f2b.fail2ban_filter {
        if config.is_some() {
            anyhow::bail!("give either --config or --fail2ban-filter, not both");
        }
        let pipe = shield_daemon::plan::fail2ban_pipeline(
            filter,
            &f2b.filter_dir,
            f2b.maxretry,
            f2b.findtime,
            f2b.bantime,
        );
        let settings = shield_daemon::plan::EngineSettings {
            max_keys: 100_000,
            evidence_lines: 3,
            v6_prefix: 64,
        };
        let e = pipe
            .engine(settings)
            .map_err(|e| anyhow::anyhow!("fail2ban filter `{filter}`: {e}"))?;
        return Ok((
            vec![e],
            Decider::new(Allowlist::default(), Escalation::default()),
        ));
    }
    match config {
        Some(p) => {
            let loaded = shield_daemon::config::load(Some(&p))?;
            let plan = shield_daemon::plan::plan(&loaded)?;
            let mut v = Vec::new();
            for pipe in &plan.pipelines {
                v.push(
                    pipe.engine(plan.engine)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", pipe.name))?,
                );
            }
            Ok((v, plan.decider))
        }
        None => {
            let packs = shield_detect::pack_names();
            let e = Engine::new(
                Box::new(NativeMatcher::all()),
                &shield_detect::default_scenarios(packs),
                EngineOptions {
                    max_keys: 100_000,
                    evidence_lines: 3,
                    default_v6_prefix: 64,
                },
            )?;
            Ok((
                vec![e],
                Decider::new(Allowlist::default(), Escalation::default()),
            ))
        }
    }
}

pub fn replay(config: Option<PathBuf>, a: Args) -> anyhow::Result<ExitCode> {
    if let Some(dir) = &a.crowdsec.crowdsec {
        if a.f2b.fail2ban_filter.is_some() {
            anyhow::bail!("give --crowdsec without --fail2ban-filter");
        }
        // With --config, its [decisions] allowlist applies to CrowdSec's decisions too.
        let allow = match &config {
            Some(p) => {
                let loaded = shield_daemon::config::load(Some(p))?;
                shield_daemon::plan::plan(&loaded)?.decider.allowlist
            }
            None => Allowlist::default(),
        };
        let rep = super::crowdsec::replay(dir, &a.crowdsec, &a.files, &allow)?;
        print_report(&rep, a.format)?;
        return Ok(ExitCode::SUCCESS);
    }
    let (mut engines, decider) = engines(config, &a.f2b)?;
    let total: u64 = a
        .files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let bar = if std::io::stderr().is_terminal() && total > 0 {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(b)
    } else {
        None
    };
    let rep = shield_daemon::replay::replay(&mut engines, &decider, &a.files, &mut |n| {
        if let Some(b) = &bar {
            b.set_position(n)
        }
    })?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    print_report(&rep, a.format)?;
    Ok(ExitCode::SUCCESS)
}

fn print_report(rep: &shield_daemon::replay::ReplayReport, format: Format) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            serde_json::to_writer(&mut out, rep)?;
            writeln!(out)?;
        }
        Format::Text => {
            writeln!(
                out,
                "{} lines, {} matched, {} alerts, {} decisions in {:.2}s ({:.0} lines/s)",
                rep.lines,
                rep.matched,
                rep.alerts,
                rep.decisions.len(),
                rep.elapsed_s,
                rep.lines_per_s
            )?;
            if rep.skipped_long + rep.invalid_utf8 + rep.keys_evicted > 0 {
                writeln!(
                    out,
                    "skipped {} over-long lines; {} lines were not UTF-8; {} tracked keys evicted",
                    rep.skipped_long, rep.invalid_utf8, rep.keys_evicted
                )?;
            }
            writeln!(out, "\nrules:")?;
            for (r, n) in &rep.rules {
                writeln!(out, "  {n:>10}  {r}")?;
            }
            writeln!(out, "scenarios:")?;
            for (s, n) in &rep.scenarios {
                writeln!(out, "  {n:>10}  {s}")?;
            }
            writeln!(out, "decisions:")?;
            for d in &rep.decisions {
                writeln!(
                    out,
                    "  {:<8} {:<40} {:>8}s  {}",
                    d.kind, d.value, d.duration_s, d.scenario
                )?;
            }
        }
    }
    Ok(())
}

/// A failure of `f` on `line` whose host is a name, explained with what the
/// filter's `usedns` makes of it (resolved here, waiting: explain is not the
/// daemon's matching path, which never waits).
fn host_name_match(
    f: &mut shield_fail2ban::Filter,
    line: &str,
    now: shield_detect::UnixTime,
) -> Option<shield_detect::Explain> {
    use shield_fail2ban::dns::{UseDns, resolve_now};
    let d = f.match_detail(line, now)?.clone();
    if d.nofail || d.host.parse::<std::net::IpAddr>().is_ok() || !d.host.contains('.') {
        return None;
    }
    let usedns = f.usedns();
    let note = match usedns {
        UseDns::No => "usedns = no: a host name is not counted".to_string(),
        UseDns::Warn => {
            "usedns = warn: a host name is not counted (its owner, often the attacker, \
                         chooses what it resolves to); set usedns = yes to count it for its address"
                .to_string()
        }
        UseDns::Yes => match resolve_now(&d.host) {
            Some(a) => format!(
                "usedns = yes: resolves to {a}; the daemon counts it for {a} once its background resolver has the answer"
            ),
            None => "usedns = yes: does not resolve here, so it is not counted".to_string(),
        },
    };
    let mut fields: std::collections::BTreeMap<String, String> = d.fields.into_iter().collect();
    fields.insert("dns".into(), note);
    Some(shield_detect::Explain {
        matched: true,
        rule: Some(format!("{}#{}", f.name(), d.rule)),
        host: Some(d.host),
        time: d.time.map(shield_detect::time::to_rfc3339),
        fields,
    })
}

pub fn explain(config: Option<PathBuf>, a: ExplainArgs) -> anyhow::Result<ExitCode> {
    if let Some(dir) = &a.cs.crowdsec {
        return super::crowdsec::explain(dir, &a.cs, a.file.as_deref(), a.format);
    }
    let (mut engines, _) = engines(config, &a.f2b)?;
    if a.list {
        for e in &engines {
            for r in e.rules() {
                println!("rule      {:<40} {}", r.name, r.service);
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let now = shield_core::wall_now();
    // A fail2ban filter's matches whose host is a name (`rhost=host.example`)
    // are explained from the filter itself, with what `usedns` makes of them.
    let mut names = match &a.f2b.fail2ban_filter {
        Some(f) => {
            let r: shield_fail2ban::FilterRef = f
                .parse()
                .map_err(|e| anyhow::anyhow!("fail2ban filter `{f}`: {e}"))?;
            Some(shield_fail2ban::Filter::load(&r, &a.f2b.filter_dir)?)
        }
        None => None,
    };
    // The same bound as the daemon's readers: a line longer than MAX_LINE is
    // skipped (and counted) instead of being held whole in memory.
    let mut lines =
        shield_sources::LineReader::new(std::io::stdin().lock(), shield_daemon::state::MAX_LINE);
    let mut out = std::io::stdout().lock();
    while let Some(line) = lines.next_line() {
        let line = line.context("reading stdin")?;
        let line = String::from_utf8_lossy(line).into_owned();
        let line = line.as_str();
        let mut best = None;
        for e in engines.iter_mut() {
            let x = e.explain(line, now);
            if x.matched {
                best = Some(x);
                break;
            }
            best.get_or_insert(x);
        }
        let Some(mut x) = best else { continue };
        if !x.matched
            && let Some(x2) = names.as_mut().and_then(|f| host_name_match(f, line, now))
        {
            x = x2;
        }
        match a.format {
            Format::Json => {
                serde_json::to_writer(&mut out, &x)?;
                writeln!(out)?;
            }
            Format::Text => {
                if x.matched {
                    let fields: Vec<String> =
                        x.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    writeln!(
                        out,
                        "MATCH {} host={} time={} {}",
                        x.rule.as_deref().unwrap_or("-"),
                        x.host.as_deref().unwrap_or("-"),
                        x.time.as_deref().unwrap_or("-"),
                        fields.join(" ")
                    )?;
                } else {
                    writeln!(out, "-")?;
                }
            }
        }
    }
    if lines.skipped_long() > 0 {
        eprintln!(
            "shield explain: skipped {} line(s) longer than {} bytes (the daemon skips them too)",
            lines.skipped_long(),
            shield_daemon::state::MAX_LINE
        );
    }
    Ok(ExitCode::SUCCESS)
}
