//! The daemon's own logs, written for where they go: colour only when stderr
//! is a terminal; plain lines with a syslog priority prefix (`<3>` error …
//! `<7>` debug, which journald reads as the entry's priority) when stderr is
//! the journal (systemd sets `JOURNAL_STREAM=DEV:INODE` to the stream it gave
//! the service, and a match with stderr's own device and inode says that
//! stream is still ours); JSON when asked for. It owns the subscriber set-up
//! only; what is logged is every other module's business.

use std::fmt;
use std::io::IsTerminal;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::LogFormat;

/// Where stderr goes, as far as the log format cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink {
    Terminal,
    Journal,
    /// A file, a pipe, /dev/null: plain text, no escapes.
    Plain,
}

/// What stderr is now, given the value of `JOURNAL_STREAM`.
pub fn sink(journal_stream: Option<&str>) -> Sink {
    if std::io::stderr().is_terminal() {
        return Sink::Terminal;
    }
    let ours = rustix::fs::fstat(std::io::stderr())
        .ok()
        .map(|st| (st.st_dev, st.st_ino));
    match (journal_stream.and_then(parse_journal_stream), ours) {
        (Some(j), Some(o)) if j == o => Sink::Journal,
        _ => Sink::Plain,
    }
}

/// `DEV:INODE` (decimal, as systemd writes it).
fn parse_journal_stream(v: &str) -> Option<(u64, u64)> {
    let (dev, ino) = v.trim().split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

/// Installs the global subscriber: `SHIELD_LOG` (an `EnvFilter`) or `info`
/// for the daemon and `warn` for other commands.
pub fn init(format: LogFormat, daemon: bool) {
    let default = if daemon { "info" } else { "warn" };
    let filter = EnvFilter::try_from_env("SHIELD_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let sink = sink(std::env::var("JOURNAL_STREAM").ok().as_deref());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(sink == Sink::Terminal);
    match (format, sink) {
        (LogFormat::Json, _) => b.json().init(),
        (LogFormat::Text, Sink::Journal) => b.event_format(Journal).init(),
        (LogFormat::Text, _) => b.init(),
    }
}

/// `<PRIORITY>target: message field=value`, one journal entry per line: the
/// journal stamps time, host and unit itself. A message of several lines
/// repeats the prefix on each, so every line keeps its priority.
struct Journal;

fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

impl<S, N> FormatEvent<S, N> for Journal
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut text = String::new();
        ctx.format_fields(Writer::new(&mut text), event)?;
        let p = priority(*meta.level());
        for (i, line) in text.lines().enumerate() {
            if i == 0 {
                writeln!(writer, "<{p}>{}: {line}", meta.target())?;
            } else {
                writeln!(writer, "<{p}>  {line}")?;
            }
        }
        if text.is_empty() {
            writeln!(writer, "<{p}>{}:", meta.target())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_is_device_and_inode() {
        assert_eq!(parse_journal_stream("8:12345"), Some((8, 12345)));
        assert_eq!(parse_journal_stream("8:12345\n"), Some((8, 12345)));
        assert_eq!(parse_journal_stream("8"), None);
        assert_eq!(parse_journal_stream("a:1"), None);
    }

    #[test]
    fn levels_map_to_syslog_priorities() {
        assert_eq!(priority(Level::ERROR), 3);
        assert_eq!(priority(Level::WARN), 4);
        assert_eq!(priority(Level::INFO), 6);
        assert_eq!(priority(Level::DEBUG), 7);
        assert_eq!(priority(Level::TRACE), 7);
    }
}
