//! One module per subcommand.

use std::process::ExitCode;

use crate::{Cli, Cmd};

pub mod args;
pub mod crowdsec;
pub mod docs;
pub mod drill;
pub mod genlog;
pub mod hubtest;
pub mod import;
pub mod manage;
pub mod replay;
pub mod run;

pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = cli.config.clone();
    match cli.cmd {
        Cmd::Run => {
            run::run(config)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Reload => run::reload(config),
        Cmd::Check => {
            let loaded = shield_daemon::config::load(config.as_deref())?;
            let plan = shield_daemon::plan::plan(&loaded)?;
            // Broken CrowdSec items were named (file:line) on stderr as the plan loaded them.
            let skipped = plan
                .crowdsec()
                .map(|s| s.problems.len())
                .filter(|&n| n > 0)
                .map(|n| format!(", {n} CrowdSec item(s) skipped"))
                .unwrap_or_default();
            println!(
                "{}: ok ({} pipeline(s), {} scenario(s), firewall {:?}, store {}{skipped})",
                plan.config_file,
                plan.pipelines.len(),
                plan.pipelines
                    .iter()
                    .map(|p| p.scenarios.len())
                    .sum::<usize>(),
                plan.firewall.backend,
                plan.store_path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Replay(a) => replay::replay(config, a),
        Cmd::Explain(a) => replay::explain(config, a),
        Cmd::Decisions(c) => manage::decisions(config, c),
        Cmd::Alerts(c) => manage::alerts(config, c),
        Cmd::Status { format } => manage::status(config, format),
        Cmd::Bouncers(c) => manage::bouncers(config, c),
        Cmd::ImportFail2ban(a) => import::run(a),
        Cmd::ImportCrowdsec(a) => crowdsec::import(a),
        Cmd::Drill(a) => drill::run(a),
        Cmd::Union(c) => {
            shield_union::cli::run(c)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::GenLog(a) => genlog::run(a),
        Cmd::Hubtest(a) => hubtest::run(a),
        Cmd::Completions { shell } => docs::completions(shell),
        Cmd::Man => docs::man_page(),
    }
}
