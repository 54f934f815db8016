//! Every file of the CrowdSec hub snapshot in /work/shared/data/crowdsec loads (strict YAML)
//! and every grok pattern it uses compiles. Skipped when the snapshot is absent.

use std::path::{Path, PathBuf};

use shield_crowdsec::config::{self, NodeConfig, ScenarioConfig};
use shield_crowdsec::grok::Library;

const ROOT: &str = "/work/shared/data/crowdsec";

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p);
        }
    }
}

fn groks(n: &NodeConfig, lib: &mut Library, fails: &mut Vec<String>, file: &Path) {
    if let Some(ps) = &n.pattern_syntax {
        for (k, v) in &ps.0 {
            lib.add(k, v);
        }
    }
    let r = if !n.grok.name.is_empty() {
        Some(lib.get(&n.grok.name))
    } else if !n.grok.pattern.is_empty() {
        Some(lib.compile(&n.grok.pattern))
    } else {
        None
    };
    if let Some(Err(e)) = r {
        fails.push(format!("{}: {e}", file.display()));
    }
    for c in &n.nodes {
        groks(c, lib, fails, file);
    }
}

#[test]
fn every_hub_file_loads_and_every_grok_compiles() {
    let hub = Path::new(ROOT).join("hub");
    if !hub.is_dir() {
        eprintln!("skipped: {} absent", hub.display());
        return;
    }
    let base = Library::load_dir(&Path::new(ROOT).join("patterns")).unwrap();
    let mut fails = Vec::new();
    let (mut nodes, mut scenarios, mut patterns) = (0, 0, 0);
    for kind in ["parsers", "postoverflows"] {
        let mut files = Vec::new();
        yaml_files(&hub.join(kind), &mut files);
        for f in files {
            match config::load_documents::<NodeConfig>(&f) {
                Ok(docs) => {
                    let mut lib = base.clone();
                    for d in &docs {
                        nodes += 1;
                        groks(d, &mut lib, &mut fails, &f);
                    }
                }
                Err(e) => fails.push(e.to_string()),
            }
        }
    }
    let mut files = Vec::new();
    yaml_files(&hub.join("scenarios"), &mut files);
    for f in files {
        match config::load_documents::<ScenarioConfig>(&f) {
            Ok(d) => scenarios += d.len(),
            Err(e) => fails.push(e.to_string()),
        }
    }
    let mut lib = base.clone();
    let names: Vec<String> = lib.names().map(str::to_owned).collect();
    for n in names {
        patterns += 1;
        if let Err(e) = lib.get(&n) {
            fails.push(format!("pattern {n}: {e}"));
        }
    }
    eprintln!(
        "{nodes} parser nodes, {scenarios} scenarios, {patterns} named patterns; {} failures",
        fails.len()
    );
    for f in &fails {
        eprintln!("  {f}");
    }
    assert!(
        fails.is_empty(),
        "{} hub files or groks failed (listed above)",
        fails.len()
    );
}
