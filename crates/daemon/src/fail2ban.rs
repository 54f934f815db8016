//! Adapter from jail config to the fail2ban filter loader.

use std::path::Path;

use shield_core::LineMatcher;

/// Loads a fail2ban filter (`name`, `name[mode=..]` or a path) as a line matcher.
pub fn load(filter: &str, dir: &Path) -> Result<Box<dyn LineMatcher>, String> {
    let _ = (filter, dir);
    Err("fail2ban filters are not supported in this build".into())
}
