//! A small driver for measuring the engine alone (no daemon, no report): loads a CrowdSec
//! installation, pours every line of FILE through it and prints the lines/s, then every
//! overflow's scenario and source value (sorted), so two builds' decisions can be diffed.
//!
//! `cargo run --release -p shield-crowdsec --example replay -- CFG LOG_TYPE FILE`

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::sync::Arc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, cfg, log_type, file] = &args[..] else {
        eprintln!("usage: replay CFG LOG_TYPE FILE");
        std::process::exit(2);
    };
    let mut engine = shield_crowdsec::hub::HubEngine::load_installation(cfg.as_ref(), None)
        .unwrap_or_else(|e| panic!("loading {cfg}: {e}"));
    let labels = Arc::new(BTreeMap::from([("type".to_owned(), log_type.clone())]));
    let reader = std::io::BufReader::new(std::fs::File::open(file).expect("open FILE"));
    let started = std::time::Instant::now();
    let mut lines = 0u64;
    let mut overflows: BTreeSet<(String, String, bool)> = BTreeSet::new();
    for line in reader.lines() {
        let line = line.expect("read FILE");
        if line.is_empty() {
            continue;
        }
        lines += 1;
        let evt = shield_crowdsec::event::Event::from_line(&line, file, labels.clone());
        for ov in engine.process(evt, None) {
            for a in &ov.overflow.alerts {
                overflows.insert((
                    a.scenario.clone(),
                    a.source.value.clone(),
                    ov.overflow.whitelisted,
                ));
            }
        }
    }
    let s = started.elapsed().as_secs_f64();
    eprintln!(
        "{lines} lines in {s:.2} s: {:.0} lines/s, {} live buckets, {} parsed",
        lines as f64 / s,
        engine.buckets.live(),
        engine.parsed
    );
    for (sc, v, wl) in &overflows {
        println!("{sc} {v}{}", if *wl { " whitelisted" } else { "" });
    }
}
