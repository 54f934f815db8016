//! `shield`: the command line. Flags → logging → one subcommand → exit code.
//! All the work lives in the library crates; this file only dispatches.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod cmd;
mod logging;

#[derive(Parser, Debug)]
#[command(
    name = "shield",
    version,
    about = "Shield: a fast, collaborative intrusion-prevention system"
)]
pub struct Cli {
    /// Config file (default /etc/shield/shield.toml; without one, built-in defaults guard sshd).
    #[arg(long, short, global = true, env = "SHIELD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format for the daemon's own logs.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Run the daemon (SIGTERM stops it gracefully; SIGHUP reloads the config: every section, or the log names the key that needs a restart).
    Run,
    /// Validate the config (regexes, durations, paths, unknown keys) and exit.
    Check,
    /// Check the config, then have the running daemon reload it (SIGHUP to the process on the control socket).
    Reload,
    /// Backtest: run log files through the rules and report what would be decided.
    Replay(cmd::replay::Args),
    /// Show which rule matches each line on stdin and what it captured.
    Explain(cmd::replay::ExplainArgs),
    /// List, add or delete decisions.
    #[command(subcommand)]
    Decisions(cmd::manage::DecisionsCmd),
    /// List alerts with their evidence.
    #[command(subcommand)]
    Alerts(cmd::manage::AlertsCmd),
    /// Show what the daemon is doing.
    Status {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Manage API keys of CrowdSec-compatible bouncers.
    #[command(subcommand)]
    Bouncers(cmd::manage::BouncersCmd),
    /// Run CrowdSec hub tests (.tests/NAME) with Shield's CrowdSec engine.
    Hubtest(cmd::hubtest::Args),
    /// Turn an existing fail2ban configuration into a Shield config.
    ImportFail2ban(cmd::import::Args),
    /// Turn a CrowdSec installation's acquis.yaml (and acquis.d) into Shield sources running its content.
    ImportCrowdsec(cmd::crowdsec::ImportArgs),
    /// Exercise the union: N members in network namespaces, an attack on one, when each enforced it (root).
    Drill(cmd::drill::Args),
    /// Union membership: keys, treaty, status.
    #[command(subcommand)]
    Union(shield_union::cli::UnionCmd),
    /// Print shell completions (bash, zsh or fish), generated from this CLI.
    Completions {
        #[arg(value_enum)]
        shell: cmd::docs::Shell,
    },
    /// Print the man page (roff), generated from this CLI: `shield man | man -l -`.
    Man,
    /// Generate a synthetic log with known attackers (for tests and benchmarks).
    #[command(hide = true)]
    GenLog(cmd::genlog::Args),
}

fn main() -> ExitCode {
    // Everything Shield writes (store, WAL, checkpoints, keys, sockets) may
    // hold evidence copied from root-only logs or secrets: private by default.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = Cli::parse();
    logging::init(cli.log_format, matches!(cli.cmd, Cmd::Run));
    match cmd::dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
