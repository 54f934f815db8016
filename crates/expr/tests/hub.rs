//! Compiles every expression of CrowdSec's hub snapshot (parsers, scenarios, postoverflows,
//! and every line of the hub tests' `parser.assert` / `scenario.assert`) with the helper
//! names the CrowdSec engine registers, and fails listing each one that does not compile.
//! Skipped (with a message) when /work/shared/data/crowdsec is absent.

use std::path::{Path, PathBuf};

use shield_expr::{Arity, Compiler, Value};

const HUB: &str = "/work/shared/data/crowdsec/hub";

/// Names the engine (shield-crowdsec) registers on top of the pure helpers: data files,
/// stash, GeoIP, reverse DNS, bot lists, CTI, HTTP, AppSec.
const ENGINE_FUNCTIONS: &[(&str, Arity)] = &[
    ("File", Arity::exact(1)),
    ("FileMap", Arity::exact(1)),
    ("RegexpInFile", Arity::exact(2)),
    ("LookupFile", Arity::exact(2)),
    ("GetFromStash", Arity::exact(2)),
    ("SetInStash", Arity::range(3, 4)),
    ("MatchKnownBot", Arity::at_least(3)),
    ("GeoIPEnrich", Arity::exact(1)),
    ("GeoIPASNEnrich", Arity::exact(1)),
    ("GeoIPRangeEnrich", Arity::exact(1)),
    ("IPToCountry", Arity::exact(1)),
    ("LookupHost", Arity::exact(1)),
    ("CrowdsecCTI", Arity::exact(1)),
    ("LibInjectionIsSQLI", Arity::exact(1)),
    ("LibInjectionIsXSS", Arity::exact(1)),
    ("JA4H", Arity::exact(1)),
];

fn compiler() -> Compiler {
    let mut c = Compiler::new();
    for v in ["evt", "queue", "leaky", "results"] {
        c.var(v);
    }
    for (name, arity) in ENGINE_FUNCTIONS {
        c.register_fn(name, *arity, |_| Ok(Value::Nil));
    }
    c
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if matches!(p.extension().and_then(|x| x.to_str()), Some("yaml" | "yml")) {
            out.push(p);
        }
    }
}

/// Collect (where, expression) pairs from one YAML document of a hub item.
fn collect(v: &serde_json::Value, parent: &str, path: &str, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, child) in m {
                let here = format!("{path}.{k}");
                let is_expr_key = matches!(
                    k.as_str(),
                    "filter"
                        | "expression"
                        | "groupby"
                        | "distinct"
                        | "condition"
                        | "cancel_on"
                        | "overflow_filter"
                ) || (parent == "stash" && matches!(k.as_str(), "key" | "value"));
                if k == "labels" || k == "description" || k == "data" {
                    continue;
                }
                match child {
                    serde_json::Value::String(s) if is_expr_key => out.push((here, s.clone())),
                    // whitelist: expression: [list of expressions]
                    serde_json::Value::Array(items) if is_expr_key => {
                        for (i, it) in items.iter().enumerate() {
                            if let serde_json::Value::String(s) = it {
                                out.push((format!("{here}[{i}]"), s.clone()));
                            }
                        }
                    }
                    _ => collect(child, k, &here, out),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for (i, it) in items.iter().enumerate() {
                collect(it, parent, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_hub_expression_compiles() {
    let hub = Path::new(HUB);
    if !hub.exists() {
        eprintln!("skipped: {HUB} is absent");
        return;
    }
    let c = compiler();
    let mut files = Vec::new();
    for d in ["parsers", "scenarios", "postoverflows"] {
        yaml_files(&hub.join(d), &mut files);
    }
    files.sort();
    let mut total = 0;
    let mut failures = Vec::new();
    let mut yaml_errors = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let docs: Vec<serde_json::Value> = match serde_saphyr::from_multiple(&text) {
            Ok(d) => d,
            Err(_) => {
                yaml_errors += 1;
                continue;
            }
        };
        let mut exprs = Vec::new();
        for d in &docs {
            collect(d, "", "", &mut exprs);
        }
        for (at, src) in exprs {
            total += 1;
            if std::env::var_os("HUB_TRACE").is_some() {
                eprintln!("{}:{at}", f.display());
            }
            if let Err(e) = c.compile(&src) {
                failures.push(format!("{}:{at}: {e}\n    {}", f.display(), src.trim()));
            }
        }
    }
    // Hub tests' assertion files: one expression per non-empty line.
    let mut assert_files = Vec::new();
    if let Ok(rd) = std::fs::read_dir(hub.join(".tests")) {
        for e in rd.flatten() {
            for name in ["parser.assert", "scenario.assert"] {
                let p = e.path().join(name);
                if p.exists() {
                    assert_files.push(p);
                }
            }
        }
    }
    assert_files.sort();
    let mut assert_lines = 0;
    for f in &assert_files {
        let text = std::fs::read_to_string(f).unwrap();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            assert_lines += 1;
            if let Err(e) = c.compile(line) {
                failures.push(format!("{}:{}: {e}\n    {line}", f.display(), i + 1));
            }
        }
    }
    eprintln!(
        "hub expressions: {total} in {} files ({yaml_errors} unreadable YAML files), {assert_lines} assert lines in {} files; {} failed to compile",
        files.len(),
        assert_files.len(),
        failures.len()
    );
    assert!(
        total > 1000,
        "found only {total} expressions: is the collector broken?"
    );
    assert!(
        assert_lines > 50_000,
        "found only {assert_lines} assert lines"
    );
    assert!(
        failures.is_empty(),
        "{} expressions do not compile:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
