//! Adapter from a jail's `filter` setting to the fail2ban filter loader.

use std::path::Path;

use shield_detect::Rules;
use shield_fail2ban::{Filter, FilterRef};

/// The `journalmatch` of a fail2ban filter, if it sets one.
pub fn journalmatch(filter: &str, dir: &Path) -> Result<Option<String>, String> {
    let r: FilterRef = filter
        .parse()
        .map_err(|e| format!("filter `{filter}`: {e}"))?;
    Filter::load(&r, dir)
        .map(|f| f.journalmatch().map(str::to_string))
        .map_err(|e| e.to_string())
}

/// Loads a fail2ban filter (`name`, `name[mode=..]` or a path) as a line matcher.
pub fn load(filter: &str, dir: &Path) -> Result<Rules, String> {
    let r: FilterRef = filter
        .parse()
        .map_err(|e| format!("filter `{filter}`: {e}"))?;
    Filter::load(&r, dir)
        .map(|f| Rules::Other(Box::new(f)))
        .map_err(|e| e.to_string())
}
