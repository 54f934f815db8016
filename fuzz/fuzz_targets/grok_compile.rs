//! A grok pattern as a hub file writes it (`grok.pattern`, `pattern_syntax`) through Shield's
//! grok compiler, then, if it compiles, over a sample line and the input itself. The input is
//! `NAME definition` lines (added like `pattern_syntax`, so they may refer to each other or to
//! themselves), a `%%` line, then the pattern. Never a panic, never an unbounded expansion.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use shield_crowdsec::grok::Library;

/// The hub's patterns when ../shared/data/crowdsec is there, else grokky's base patterns.
fn library() -> &'static Library {
    static LIB: OnceLock<Library> = OnceLock::new();
    LIB.get_or_init(|| {
        let dir = std::env::var("SHIELD_CROWDSEC_PATTERNS")
            .unwrap_or_else(|_| "/work/shared/data/crowdsec/patterns".into());
        Library::load_dir(std::path::Path::new(&dir)).unwrap_or_else(|_| Library::base())
    })
}

fuzz_target!(|data: &[u8]| {
    if data.len() > 4096 {
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (defs, pattern) = text.split_once("\n%%\n").unwrap_or(("", text));
    let mut lib = library().clone();
    for line in defs.lines() {
        if let Some((name, def)) = line.split_once(' ') {
            lib.add(name, def);
        }
    }
    let Ok(g) = lib.compile(pattern) else { return };
    let sample = "Mar  1 10:00:00 web1 sshd[42]: Failed password for root from 192.0.2.9 port 4242 ssh2";
    let _ = g.parse_map(sample);
    let _ = g.parse_map(text);
});
