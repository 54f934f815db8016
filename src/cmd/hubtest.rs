//! `shield hubtest`: run CrowdSec hub tests (`.tests/NAME/`) with the shield-crowdsec engine,
//! print one JSON line per test (`--format json`) or a summary.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::Format;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Hub checkout (holds parsers/, scenarios/, postoverflows/, .index.json and .tests/).
    #[arg(long, env = "SHIELD_CROWDSEC_HUB")]
    pub hub: PathBuf,
    /// Grok patterns directory (default: `patterns` beside the hub directory).
    #[arg(long)]
    pub patterns: Option<PathBuf>,
    /// Data files directory (default: `data` beside the hub directory).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Tests directory (default: HUB/.tests).
    #[arg(long)]
    pub tests: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Do not keep the parser dump (faster; parser.assert is then not evaluated).
    #[arg(long, hide = true)]
    pub no_dump: bool,
    /// Show the assertion lines that failed.
    #[arg(long, short)]
    pub verbose: bool,
    /// Tests to run (default: all).
    pub test: Vec<String>,
}

fn beside(hub: &std::path::Path, name: &str) -> PathBuf {
    let abs = std::fs::canonicalize(hub).unwrap_or_else(|_| hub.to_owned());
    abs.parent()
        .map(|p| p.join(name))
        .unwrap_or_else(|| PathBuf::from(name))
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let patterns = a
        .patterns
        .clone()
        .unwrap_or_else(|| beside(&a.hub, "patterns"));
    let data = a.data.clone().unwrap_or_else(|| beside(&a.hub, "data"));
    let tests = a.tests.clone().unwrap_or_else(|| a.hub.join(".tests"));
    let hub = shield_crowdsec::hub::Hub::open(&a.hub, &patterns, &data).with_context(|| {
        format!(
            "opening hub {} (patterns {})",
            a.hub.display(),
            patterns.display()
        )
    })?;
    let dirs = shield_crowdsec::hubtest::list_tests(&tests, &a.test);
    if dirs.is_empty() {
        anyhow::bail!(
            "no hub test found in {} (each test is a directory with a config.yaml)",
            tests.display()
        );
    }
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    let (mut passed, mut failed, mut skipped) = (0usize, 0usize, 0usize);
    let started = std::time::Instant::now();
    let mut lines = 0usize;
    for d in &dirs {
        let o = shield_crowdsec::hubtest::run_test_with(&hub, d, !a.no_dump);
        lines += o.lines;
        if o.skipped.is_some() {
            skipped += 1;
        } else if o.passed() {
            passed += 1;
        } else {
            failed += 1;
        }
        match a.format {
            Format::Json => writeln!(out, "{}", o.to_json())?,
            Format::Text => {
                let status = if let Some(s) = &o.skipped {
                    format!("skipped ({s})")
                } else if let Some(e) = &o.error {
                    format!("error: {e}")
                } else if o.passed() {
                    "ok".to_owned()
                } else {
                    let t = |t: Option<shield_crowdsec::hubtest::Tally>| {
                        t.map(|t| format!("{}/{}", t.passed, t.passed + t.failed))
                            .unwrap_or("-".into())
                    };
                    format!(
                        "FAILED (parser.assert {}, scenario.assert {})",
                        t(o.parser_assert),
                        t(o.scenario_assert)
                    )
                };
                writeln!(out, "{:<50} {status}", o.name)?;
                if a.verbose {
                    for f in &o.failures {
                        writeln!(out, "    {f}")?;
                    }
                }
            }
        }
    }
    if a.format == Format::Text {
        let secs = started.elapsed().as_secs_f64();
        writeln!(
            out,
            "{passed} passed, {failed} failed, {skipped} skipped ({} tests, {lines} log lines in {secs:.2}s)",
            dirs.len()
        )?;
    }
    out.flush()?;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
