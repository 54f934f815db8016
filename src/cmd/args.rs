//! Argument groups more than one subcommand module reads: `shield replay
//! --crowdsec` takes [`CrowdsecArgs`] and hands them to `cmd::crowdsec`, so
//! they live here, a leaf both import, not in either of them.

use std::path::PathBuf;

/// Run a CrowdSec installation's parsers, scenarios and postoverflows instead.
#[derive(clap::Args, Debug)]
pub struct CrowdsecArgs {
    /// A CrowdSec configuration directory (e.g. /etc/crowdsec): its installed parsers,
    /// scenarios, postoverflows and patterns.
    #[arg(long, value_name = "CFG_DIR")]
    pub crowdsec: Option<PathBuf>,
    /// The CrowdSec log type of the files (acquis.yaml's `labels.type`, e.g. nginx, syslog).
    #[arg(long, requires = "crowdsec")]
    pub log_type: Option<String>,
    /// Data files directory (default: config_paths.data_dir of CFG_DIR/config.yaml).
    #[arg(long, requires = "crowdsec")]
    pub crowdsec_data: Option<PathBuf>,
}
