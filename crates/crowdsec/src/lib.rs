//! `shield-crowdsec`: CrowdSec hub content run as CrowdSec runs it. Hub files (parsers,
//! scenarios, postoverflows) and grok patterns are read at run time, unchanged; this crate owns
//! loading them, the parser stages, enrichers, buckets and the hub test runner. The expression
//! language itself lives in `shield-expr`; the data-dependent helpers (`File`, `RegexpInFile`,
//! `LookupFile`, `GetFromStash` ...) are registered into it from `data`.

pub mod acquis;
mod assertview;
pub mod bucket;
pub mod config;
pub mod data;
pub mod event;
pub mod explain;
pub mod gotime;
pub mod grok;
mod grok_base;
pub mod host;
pub mod hub;
pub mod hubtest;
pub mod parser;
pub mod setup;

use std::path::PathBuf;

/// Everything that can go wrong loading CrowdSec content.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("{}: {source} (check the path and its permissions)", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A YAML file does not have the shape CrowdSec expects (unknown key, wrong type, bad syntax).
    #[error("{}: {message}", path.display())]
    Yaml { path: PathBuf, message: String },
    /// A grok pattern names a pattern that does not exist or does not compile.
    #[error("grok: {0}")]
    Grok(#[from] grok::GrokError),
    /// Anything else wrong in a hub item, with where it is.
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}
