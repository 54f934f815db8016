//! `shield gen-log` (hidden): deterministic logs with known attackers, for tests and benchmarks.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// sshd or nginx
    pub kind: String,
    #[arg(long, default_value_t = 100_000)]
    pub lines: usize,
    #[arg(long, default_value_t = 50)]
    pub attackers: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Write the attacker addresses here, one per line.
    #[arg(long)]
    pub truth: Option<PathBuf>,
    /// Output file (default stdout).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let mut w: Box<dyn Write> = match &a.out {
        Some(p) => Box::new(std::io::BufWriter::new(std::fs::File::create(p)?)),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let attackers = match a.kind.as_str() {
        "sshd" => shield_detect::r#gen::write_sshd(&mut w, a.lines, a.attackers, a.seed)?,
        "nginx" => shield_detect::r#gen::write_nginx(&mut w, a.lines, a.attackers, a.seed)?,
        k => anyhow::bail!("unknown log kind `{k}`: use sshd or nginx"),
    };
    w.flush()?;
    if let Some(t) = a.truth {
        let mut f = std::fs::File::create(t)?;
        for ip in attackers {
            writeln!(f, "{ip}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
