//! Shield's reader for fail2ban: loads `filter.d` files as they are (INI
//! includes, `.local` overlays, interpolation, `<tags>`, modes, Python regexes,
//! date patterns) into a [`Filter`] that implements
//! [`shield_core::LineMatcher`] and matches lines the way fail2ban does, and
//! turns an `/etc/fail2ban` jail configuration into [`JailSpec`]s
//! ([`import_jails`]).
//!
//! fail2ban's own files are GPL: this crate reads them at run time from the
//! system's `fail2ban` package and carries no copy of them.

mod date;
pub mod dns;
mod filter;
mod ini;
mod jail;
mod tags;

use std::path::PathBuf;

pub use filter::{Detail, Filter, FilterRef};
pub use jail::{Increment, JailSpec, import_jails, parse_duration};

/// Why a filter or jail configuration could not be loaded. Every variant
/// names the file and the construct, and says what to change.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file could not be read.
    #[error("cannot read {path}: {source} (check the path and its permissions)")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The filter name does not exist in the filter directory.
    #[error(
        "no fail2ban filter `{name}` in {dir} (expected {dir}/{name}.conf; install the fail2ban package or give a path)"
    )]
    NotFound { name: String, dir: PathBuf },
    /// An INI line is not `name = value`, `[section]`, a comment or a continuation.
    #[error("{path}:{line}: {reason}")]
    Syntax {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    /// `%(name)s` interpolation failed.
    #[error("in {files:?}, [{section}] {option}: {reason}")]
    Interpolation {
        files: Vec<PathBuf>,
        section: String,
        option: String,
        reason: String,
    },
    /// `<tag>` substitution failed (a cycle).
    #[error("in {files:?}: {reason}")]
    Tags { files: Vec<PathBuf>, reason: String },
    /// A regex does not compile after translation.
    #[error(
        "in {files:?}, {option} #{index}: the regex does not compile: {reason}\n  regex: {regex}"
    )]
    Regex {
        files: Vec<PathBuf>,
        option: String,
        index: usize,
        regex: String,
        reason: String,
    },
    /// A failregex has no group that names the offender.
    #[error(
        "in {files:?}, failregex #{index} has no <HOST>, <ADDR>, <IP4>, <IP6>, <F-ID> or <F-MLFID> (add one so Shield knows whom to blame)"
    )]
    NoFailureId { files: Vec<PathBuf>, index: usize },
    /// A `datepattern` is invalid.
    #[error("in {files:?}, datepattern: {reason}")]
    DatePattern { files: Vec<PathBuf>, reason: String },
    /// A value has the wrong form (`maxlines = x`, a filter reference...).
    #[error("{what}: {reason}")]
    Value { what: String, reason: String },
}
