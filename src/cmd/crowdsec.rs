//! `shield replay --crowdsec CFG_DIR --log-type T FILE...`: a CrowdSec installation's parsers,
//! scenarios and postoverflows over log files in time-machine mode, with CrowdSec's default
//! profiles turning overflows into decisions (ban 4h on Ip or Range scope when the scenario
//! has `remediation: true`; with `--config`, its `[decisions] allowlist` protects addresses).
//! Prints the same report as `shield replay`. Also `shield import-crowdsec` (acquisition →
//! sources) and `shield explain --crowdsec` (cscli explain's view of each line).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use shield_daemon::replay::{ReplayDecision, ReplayReport};

use super::args::CrowdsecArgs;

/// CrowdSec's default profiles: `ban` for 4 hours.
const BAN_SECONDS: u64 = 4 * 3600;

pub fn replay(
    dir: &std::path::Path,
    a: &CrowdsecArgs,
    files: &[PathBuf],
    allow: &shield_core::Allowlist,
) -> anyhow::Result<ReplayReport> {
    let log_type = a.log_type.clone().context(
        "--crowdsec needs --log-type (the acquis.yaml labels.type of these logs, e.g. nginx)",
    )?;
    let mut engine =
        shield_crowdsec::hub::HubEngine::load_installation(dir, a.crowdsec_data.as_deref())
            .with_context(|| format!("loading CrowdSec configuration {}", dir.display()))?;
    for m in &engine.missing_data {
        tracing::warn!("data file missing: {m}");
    }
    let labels = Arc::new(BTreeMap::from([("type".to_owned(), log_type)]));
    let started = std::time::Instant::now();
    let mut rep = ReplayReport::default();
    let mut seen: BTreeSet<(&'static str, String)> = BTreeSet::new();
    for f in files {
        // The same opening (plain, gzip by magic, `-` for stdin) and the same
        // line bound as `shield replay`: an over-long line is skipped and
        // counted, never held whole.
        let reader = shield_sources::open(f).with_context(|| format!("opening {}", f.display()))?;
        let mut lines = shield_sources::LineReader::new(reader, shield_daemon::state::MAX_LINE);
        let src = f.to_string_lossy().into_owned();
        while let Some(line) = lines.next_line() {
            let line = line.with_context(|| format!("reading {}", f.display()))?;
            let Ok(text) = std::str::from_utf8(line) else {
                rep.invalid_utf8 += 1;
                continue;
            };
            if text.is_empty() {
                continue;
            }
            rep.lines += 1;
            let evt = shield_crowdsec::event::Event::from_line(text, &src, labels.clone());
            for ov in engine.process(evt, None) {
                let Some(alert) = ov.overflow.alerts.first() else {
                    continue;
                };
                if ov.overflow.whitelisted {
                    rep.allowlisted += 1;
                    continue;
                }
                rep.alerts += 1;
                *rep.scenarios.entry(alert.scenario.clone()).or_default() += 1;
                if !alert.remediation {
                    continue;
                }
                for a in &ov.overflow.alerts {
                    // The value came out of a log line: only its canonical
                    // form (IPv4 written as IPv6 is IPv4) is decided on.
                    let v = a.source.value.as_str();
                    let (scope, value) = match a.source.scope.as_str() {
                        "Ip" => match v.parse::<shield_core::Addr>() {
                            Ok(addr) => ("ip", addr.to_string()),
                            Err(_) => continue,
                        },
                        "Range" => match v.parse::<shield_core::Net>() {
                            Ok(net) => ("range", net.to_string()),
                            Err(_) => continue,
                        },
                        _ => continue,
                    };
                    // Shield's [decisions] allowlist (with --config) protects these too.
                    if let Ok(net) = value.parse::<shield_core::Net>()
                        && allow.overlaps(&net).is_some()
                    {
                        rep.allowlisted += 1;
                        continue;
                    }
                    if seen.insert((scope, value.clone())) {
                        rep.decisions.push(ReplayDecision {
                            scope,
                            value,
                            kind: "ban",
                            scenario: a.scenario.clone(),
                            duration_s: BAN_SECONDS,
                        });
                    }
                }
            }
        }
        rep.skipped_long += lines.skipped_long();
    }
    rep.matched = engine.parsed;
    rep.elapsed_s = started.elapsed().as_secs_f64();
    rep.lines_per_s = if rep.elapsed_s > 0.0 {
        rep.lines as f64 / rep.elapsed_s
    } else {
        0.0
    };
    Ok(rep)
}

/// `shield import-crowdsec`: a CrowdSec installation's acquisition as Shield sources.
#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// CrowdSec's configuration directory (its config.yaml names acquis.yaml and acquis.d).
    #[arg(default_value = "/etc/crowdsec")]
    pub dir: PathBuf,
    /// Write the config here instead of stdout.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// True when a path (or a glob's directory) exists on this host.
fn present(p: &str) -> bool {
    match p.find(['*', '?', '[']) {
        Some(i) => {
            let dir = p[..i].rsplit_once('/').map(|x| x.0).unwrap_or("/");
            std::path::Path::new(if dir.is_empty() { "/" } else { dir }).is_dir()
        }
        None => std::path::Path::new(p).exists(),
    }
}

/// Renders the datasources as Shield config text with the notes on what was not carried over
/// (the notes are also written into the text as comments).
pub fn render_import(
    dir: &std::path::Path,
    acq: &[shield_crowdsec::acquis::Acquisition],
) -> (String, Vec<String>) {
    use std::fmt::Write as _;
    let mut notes = Vec::new();
    let mut body = String::new();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for a in acq {
        let at = a.file.display();
        let Some(log_type) = a.log_type.clone().filter(|t| !t.is_empty()) else {
            notes.push(format!(
                "{at}: a `{}` datasource without labels.type is left out (CrowdSec needs it too)",
                a.source
            ));
            continue;
        };
        if !matches!(a.source.as_str(), "file" | "journalctl" | "syslog") {
            notes.push(format!(
                "{at}: `{}` datasource (log type {log_type}) is not supported by Shield; left out{}",
                a.source,
                if a.other_keys.is_empty() {
                    String::new()
                } else {
                    format!(" (with {})", a.other_keys.join(", "))
                }
            ));
            continue;
        }
        let n = names.entry(log_type.clone()).or_default();
        *n += 1;
        let name = if *n == 1 {
            log_type.clone()
        } else {
            format!("{log_type}-{n}")
        };
        if !a.other_keys.is_empty() {
            notes.push(format!(
                "{at}: source `{name}`: keys not carried over: {}",
                a.other_keys.join(", ")
            ));
        }
        let mut src = String::new();
        let mut commented = false;
        match a.source.as_str() {
            "file" => {
                let mut paths = Vec::new();
                for f in &a.filenames {
                    if !f.starts_with('/') {
                        notes.push(format!(
                            "{at}: source `{name}`: relative path `{f}` left out (write it absolute)"
                        ));
                    } else {
                        paths.push(f.clone());
                    }
                }
                if paths.is_empty() {
                    notes.push(format!(
                        "{at}: source `{name}` has no absolute file; left out"
                    ));
                    continue;
                }
                if !paths.iter().any(|p| present(p)) {
                    commented = true;
                    notes.push(format!(
                        "{at}: source `{name}`: none of {paths:?} exists on this host; written commented out (uncomment once the service logs there)"
                    ));
                }
                let list: Vec<String> = paths.iter().map(|p| toml_str(p)).collect();
                let _ = writeln!(src, "paths = [{}]", list.join(", "));
            }
            "journalctl" => {
                let _ = writeln!(src, "type = \"journald\"");
                let mut matches = Vec::new();
                for f in &a.journalctl_filter {
                    let ok = f.split_once('=').is_some_and(|(k, _)| {
                        !k.is_empty()
                            && k.chars()
                                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                    });
                    if ok {
                        matches.push(toml_str(f));
                    } else {
                        notes.push(format!(
                            "{at}: source `{name}`: journalctl argument `{f}` is not a FIELD=value match; left out (e.g. `-u ssh` is _SYSTEMD_UNIT=ssh.service)"
                        ));
                    }
                }
                let _ = writeln!(src, "journal_match = [{}]", matches.join(", "));
            }
            "syslog" => {
                let addr = a.listen_addr.as_deref().unwrap_or("127.0.0.1");
                let port = a.listen_port.unwrap_or(514);
                let listen = if addr.contains(':') {
                    format!("[{addr}]:{port}")
                } else {
                    format!("{addr}:{port}")
                };
                let _ = writeln!(
                    src,
                    "type = \"syslog\"\nlisten = {}\nprotocols = [\"udp\"]",
                    toml_str(&listen)
                );
            }
            // Unsupported datasources were left out (with a note) above.
            _ => continue,
        }
        let _ = writeln!(src, "log_type = {}", toml_str(&log_type));
        let c = if commented { "# " } else { "" };
        let _ = writeln!(body, "{c}[[source]]\n{c}name = {}", toml_str(&name));
        for l in src.lines() {
            let _ = writeln!(body, "{c}{l}");
        }
        let _ = writeln!(body);
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Generated by `shield import-crowdsec {}`.\n# Check it with `shield check --config <this file>`.",
        dir.display()
    );
    for n in &notes {
        let _ = writeln!(out, "# not carried over: {n}");
    }
    let _ = writeln!(
        out,
        "\n[crowdsec]\nconfig_dir = {}\n",
        toml_str(&dir.display().to_string())
    );
    out.push_str(&body);
    (out, notes)
}

pub fn import(a: ImportArgs) -> anyhow::Result<std::process::ExitCode> {
    let acq = shield_crowdsec::acquis::read_installation(&a.dir)
        .with_context(|| format!("reading the acquisition of {}", a.dir.display()))?;
    if acq.is_empty() {
        anyhow::bail!(
            "{}: no acquis.yaml or acquis.d/*.yaml found (is this CrowdSec's configuration directory?)",
            a.dir.display()
        );
    }
    let (text, notes) = render_import(&a.dir, &acq);
    match &a.out {
        Some(p) => std::fs::write(p, &text).with_context(|| format!("writing {}", p.display()))?,
        None => print!("{text}"),
    }
    for n in &notes {
        eprintln!("not carried over: {n}");
    }
    eprintln!("{} datasource(s) read, {} note(s)", acq.len(), notes.len());
    Ok(std::process::ExitCode::SUCCESS)
}

/// `shield explain --crowdsec CFG_DIR --log-type T [FILE]`: `cscli explain`'s view of each line.
pub fn explain(
    dir: &std::path::Path,
    a: &CrowdsecArgs,
    file: Option<&std::path::Path>,
    format: crate::Format,
) -> anyhow::Result<std::process::ExitCode> {
    use std::io::Write as _;
    let log_type = a.log_type.clone().context(
        "--crowdsec needs --log-type (the acquis.yaml labels.type of these lines, e.g. nginx)",
    )?;
    let loaded = shield_crowdsec::setup::load(&shield_crowdsec::setup::Content::Installation {
        config_dir: dir.to_owned(),
        data_dir: a.crowdsec_data.clone(),
    })
    .with_context(|| format!("loading CrowdSec configuration {}", dir.display()))?;
    for p in &loaded.problems {
        eprintln!("warning: {p}");
    }
    let mut ex = shield_crowdsec::explain::Explainer::new(loaded, &log_type);
    let (reader, src): (Box<dyn std::io::Read>, String) = match file {
        Some(f) => (
            shield_sources::open(f).with_context(|| format!("opening {}", f.display()))?,
            f.to_string_lossy().into_owned(),
        ),
        None => (Box::new(std::io::stdin().lock()), "stdin".to_owned()),
    };
    let mut lines = shield_sources::LineReader::new(reader, shield_daemon::state::MAX_LINE);
    let mut out = std::io::stdout().lock();
    while let Some(line) = lines.next_line() {
        let line = String::from_utf8_lossy(line.context("reading lines")?).into_owned();
        if line.is_empty() {
            continue;
        }
        let x = ex.explain(&line, &src);
        match format {
            crate::Format::Json => writeln!(out, "{}", x.to_json())?,
            crate::Format::Text => writeln!(out, "{}", x.to_text())?,
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}
