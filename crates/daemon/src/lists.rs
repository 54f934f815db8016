//! Blocklists and allowlist files: `[[list]]` entries read from a file or an
//! HTTPS URL, turned into decisions of origin `lists:NAME`.
//!
//! [`parse`] is the one loader for every list format (blocklists, allowlist
//! files, `shield decisions import`).

pub mod parse;
