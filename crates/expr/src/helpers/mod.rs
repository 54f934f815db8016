//! CrowdSec's pure expression helpers (`pkg/exprhelpers` in CrowdSec's source): string, JSON,
//! XML, IP, URL, key-value, time and number helpers that need no files and no engine state.
//!
//! Owns: their semantics and their registration ([`register`]). Does not own: helpers that
//! read data files or engine state (`File`, `RegexpInFile`, `GetFromStash`, `LookupFile`,
//! GeoIP, LAPI decisions): the CrowdSec engine registers those.

pub mod time;

use crate::Compiler;

/// Register every pure helper into `c` (what [`Compiler::new`] does).
pub fn register(c: &mut Compiler) {
    let _ = c;
}
