//! shield-detect: Shield's hot path. Rules turn a log line into a hit
//! ([`rules`]: built-in packs for sshd, nginx/apache access, nginx error,
//! postfix, dovecot, plus user regex rules), scenarios count hits per source
//! address and raise [`shield_core::Alert`]s ([`scenario`]: leaky buckets and
//! fail2ban-style windows, bounded state), and [`time`] reads log stamps.
//!
//! Everything here is synchronous, allocation-free per line once warm, and
//! takes its clock as a parameter: replay and live tailing run the same code,
//! and tests never sleep. No I/O: sources feed lines in, the daemon takes
//! alerts out.

// Hand-written parsers read best as one nested `if` per grammar step; folding
// them into let-chains hides where each step can fail.
#![allow(clippy::collapsible_if)]

pub mod rules;
pub mod scenario;
pub mod time;

#[doc(hidden)]
pub mod r#gen;

pub use rules::{CustomRule, NativeMatcher, RuleError, RuleSpec, pack_names};
pub use scenario::{
    BucketKind, Engine, EngineOptions, Event, Explain, Matched, Matcher, Rules, ScenarioError,
    ScenarioSpec, Scenarios, Stats, default_scenarios, rule_matches,
};
pub use shield_core::{LineMatcher, RuleInfo, SplitMatcher, UnixTime};
