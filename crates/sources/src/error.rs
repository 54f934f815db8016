//! The one error type of this crate. Each message says what failed and what
//! the user can do about it.

use std::path::PathBuf;

/// Errors a source can return. Per-file read errors while tailing are *not*
/// returned (they are logged, counted in [`crate::TailStats`] and retried);
/// only setup mistakes are.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A glob in the file source's configuration does not parse.
    #[error(
        "invalid file glob {glob:?}: {source}; fix the pattern in the sources section of the config"
    )]
    BadGlob {
        glob: String,
        #[source]
        source: glob::PatternError,
    },
    /// The file source was configured without any glob.
    #[error("file source has no globs: list at least one path or pattern to follow")]
    NoGlobs,
    /// `max_line` of 0 would skip every line.
    #[error("max_line must be at least 1 byte (the default is 65536)")]
    BadMaxLine,
    /// A file given for replay cannot be opened.
    #[error(
        "cannot open {path:?} for reading: {source}; check that the file exists and that Shield may read it"
    )]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The syslog listener cannot bind its address.
    #[error(
        "cannot listen for syslog on {addr}: {source}; is another syslog daemon using that port, or does Shield lack the right to bind it?"
    )]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// `journalctl` could not be started.
    #[error(
        "cannot run journalctl: {source}; install systemd's journalctl or use a file source instead"
    )]
    Journalctl {
        #[source]
        source: std::io::Error,
    },
    /// Any other I/O error, with what was being done.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}
