//! The agreement test: every filter in Debian's `fail2ban` package against
//! fail2ban's own annotated sample logs (`# failJSON:` cases), read at test
//! time from the installed package (GPL files are never copied here).
//!
//! It follows fail2ban's `tests/samplestestcase.py`: `# filterOptions:` lines
//! select modes (one filter per option set, state kept across the file),
//! `# fileOptions:` merge into them, `# addFILE:` appends a log, journal
//! cases get their time from the journal (fail2ban's TEST_NOW), and times are
//! compared in fail2ban's test time zone. It prints per-filter agreement and
//! fails below the floor, when any filter of the package does not load, or
//! when a log an `# addFILE:` line names cannot be read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jiff::tz::TimeZone;
use serde_json::Value;
use shield_fail2ban::{Filter, FilterRef};

const FILTER_DIR: &str = "/etc/fail2ban/filter.d";
const LOG_DIR: &str = "/usr/lib/python3/dist-packages/fail2ban/tests/files/logs";
/// fail2ban's tests/utils.py TEST_NOW and TZ.
const TEST_NOW: i64 = 1_124_013_600;
const TEST_TZ: &str = "CET-01CEST-02,M3.5.0,M10.5.0";

/// The overall agreement (in %) below which this test fails. Raise it as
/// the loader improves; the goal is 100.
const FLOOR_PERCENT: f64 = 100.0;

#[derive(Default)]
struct Score {
    cases: usize,
    agreed: usize,
    load_error: Option<String>,
    first_miss: Vec<String>,
}

fn cond_true(expr: &str, name: &str, opts: &serde_json::Map<String, Value>) -> bool {
    // Only the forms fail2ban's sample logs use: `name == 'x'`, `opts.get('k') (==|!=) 'v'`.
    let (lhs, rhs, eq) = if let Some((l, r)) = expr.split_once("!=") {
        (l, r, false)
    } else if let Some((l, r)) = expr.split_once("==") {
        (l, r, true)
    } else {
        panic!("unsupported condition {expr:?}: extend cond_true");
    };
    let lhs = lhs.trim();
    let rhs = rhs.trim().trim_matches(|c| c == '\'' || c == '"');
    let val: Option<String> = if lhs == "name" {
        Some(name.to_string())
    } else if let Some(k) = lhs
        .strip_prefix("opts.get('")
        .and_then(|s| s.strip_suffix("')"))
    {
        opts.get(k).map(|v| {
            v.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string())
        })
    } else {
        panic!("unsupported condition {expr:?}: extend cond_true");
    };
    (val.as_deref() == Some(rhs)) == eq
}

fn json_time_to_unix(t: &str, tz: &TimeZone) -> i64 {
    // Python's strptime("%Y-%m-%dT%H:%M:%S") accepts one-digit fields.
    let base = t.split('.').next().unwrap_or(t);
    let n: Vec<i64> = base
        .split(|c: char| !c.is_ascii_digit())
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    assert!(n.len() == 6, "bad failJSON time {t:?}");
    let dt = jiff::civil::DateTime::new(
        n[0] as i16,
        n[1] as i8,
        n[2] as i8,
        n[3] as i8,
        n[4] as i8,
        n[5] as i8,
        0,
    )
    .unwrap_or_else(|e| panic!("bad failJSON time {t:?}: {e}"));
    tz.to_timestamp(dt).unwrap().as_second()
}

struct Variant {
    name: String,
    filter: Result<Filter, String>,
    opts: serde_json::Map<String, Value>,
}

fn load_variant(
    name: &str,
    opts: &serde_json::Map<String, Value>,
    tz: &TimeZone,
) -> Result<Filter, String> {
    let mut args = Vec::new();
    for (k, v) in opts {
        if k.starts_with("test.") {
            continue;
        }
        args.push((
            k.to_lowercase(),
            v.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string()),
        ));
    }
    let mode = args
        .iter()
        .find(|(k, _)| k == "mode")
        .map(|(_, v)| v.clone());
    let r = FilterRef {
        name_or_path: name.to_string(),
        mode,
        args,
    };
    let mut f = Filter::load(&r, Path::new(FILTER_DIR)).map_err(|e| format!("{e}"))?;
    f.set_timezone(tz.clone());
    Ok(f)
}

fn run_filter(name: &str, tz: &TimeZone) -> Score {
    let mut score = Score::default();
    // load the plain filter first so a broken one gets its reason even without cases
    if let Err(e) = load_variant(name, &serde_json::Map::new(), tz) {
        score.load_error = Some(e);
    }
    let mut files: Vec<PathBuf> = vec![Path::new(LOG_DIR).join(name)];
    let mut variants: Vec<Variant> = Vec::new();
    let mut common: serde_json::Map<String, Value> = serde_json::Map::new();
    let mut ignore_block = false;
    let mut i = 0;
    while i < files.len() {
        // A log named by `# addFILE:` that is not there is a broken sample
        // set, not an empty log: its cases would silently not be run.
        let text = std::fs::read(&files[i])
            .unwrap_or_else(|e| panic!("{name}: cannot read {}: {e}", files[i].display()));
        let text = String::from_utf8_lossy(&text).into_owned();
        i += 1;
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        let mut ln = 0;
        while ln < lines.len() {
            let line = lines[ln].trim_end_matches(['\r', '\n']);
            ln += 1;
            let mut faildata = serde_json::Map::new();
            let trimmed = line.trim_start_matches('#');
            let directive = if line.starts_with('#') {
                let t = trimmed.strip_prefix(' ').unwrap_or(trimmed);
                ["failJSON:", "fileOptions:", "filterOptions:", "addFILE:"]
                    .iter()
                    .find(|d| t.starts_with(*d))
                    .map(|d| (d.trim_end_matches(':'), &t[d.len()..]))
            } else {
                None
            };
            let test_line = if let Some((kind, body)) = directive {
                let v: Value = serde_json::from_str(body.trim())
                    .unwrap_or_else(|e| panic!("{name}: bad JSON {body:?}: {e}"));
                match kind {
                    "fileOptions" => {
                        common = v.as_object().cloned().unwrap_or_default();
                        continue;
                    }
                    "filterOptions" => {
                        variants.clear();
                        ignore_block = false;
                        let list = match v {
                            Value::Array(a) => a,
                            other => vec![other],
                        };
                        for o in list {
                            let mut opts = common.clone();
                            for (k, v) in o.as_object().cloned().unwrap_or_default() {
                                opts.insert(k, v);
                            }
                            if let Some(c) = opts.get("test.condition").and_then(Value::as_str) {
                                ignore_block = !cond_true(c, name, &opts);
                            }
                            if !ignore_block {
                                let vname = format!("{name}{:?}", opts);
                                let filter = load_variant(name, &opts, tz);
                                variants.push(Variant {
                                    name: vname,
                                    filter,
                                    opts,
                                });
                            }
                        }
                        continue;
                    }
                    "addFILE" => {
                        if let Some(f) = v.as_str() {
                            files.push(Path::new(LOG_DIR).join(f));
                        }
                        continue;
                    }
                    _ => {
                        faildata = v.as_object().cloned().unwrap_or_default();
                        if ln >= lines.len() {
                            break;
                        }
                        let l = lines[ln].trim_end_matches(['\r', '\n']);
                        ln += 1;
                        l
                    }
                }
            } else if ignore_block || line.starts_with('#') || line.trim().is_empty() {
                continue;
            } else {
                line
            };
            if ignore_block {
                continue;
            }
            if variants.is_empty() {
                let filter = load_variant(name, &serde_json::Map::new(), tz);
                variants.push(Variant {
                    name: name.to_string(),
                    filter,
                    opts: serde_json::Map::new(),
                });
            }
            for v in variants.iter_mut() {
                if let Some(c) = faildata.get("constraint").and_then(Value::as_str)
                    && !cond_true(c, name, &v.opts)
                {
                    continue;
                }
                score.cases += 1;
                let Ok(f) = v.filter.as_mut() else { continue };
                let journal = v.opts.get("logtype").and_then(Value::as_str) == Some("journal");
                let got = if journal {
                    let prefix = v
                        .opts
                        .get("test.prefix-line")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    let l = format!("{prefix}{test_line}");
                    f.match_detail_at(&l, Some(TEST_NOW)).cloned()
                } else {
                    f.match_detail(test_line, TEST_NOW).cloned()
                };
                let got = got.filter(|d| !d.nofail);
                let want_match = faildata
                    .get("match")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let mut ok = got.is_some() == want_match;
                let mut why = String::new();
                if ok {
                    if let Some(d) = &got {
                        if let Some(h) = faildata.get("host").and_then(Value::as_str)
                            && d.host != h
                        {
                            ok = false;
                            why = format!("host {:?} != {h:?}", d.host);
                        }
                        if let Some(t) = faildata.get("time").and_then(Value::as_str) {
                            let want = json_time_to_unix(t, tz);
                            if d.time != Some(want) {
                                ok = false;
                                why = format!("time {:?} != {want} ({t})", d.time);
                            }
                        }
                    }
                } else {
                    why = format!("match {} != {want_match}", got.is_some());
                }
                if ok {
                    score.agreed += 1;
                } else if score.first_miss.len() < 3
                    || std::env::var_os("SHIELD_F2B_VERBOSE").is_some()
                {
                    score
                        .first_miss
                        .push(format!("{}: {why}: {test_line}", v.name));
                }
            }
        }
    }
    score
}

#[test]
fn agreement_with_fail2ban_sample_logs() {
    assert!(
        Path::new(FILTER_DIR).join("sshd.conf").is_file()
            && Path::new(LOG_DIR).join("sshd").is_file(),
        "fail2ban's filters or sample logs are missing: apt-get install fail2ban"
    );
    let tz = TimeZone::posix(TEST_TZ).expect("POSIX TZ");
    let mut names: Vec<String> = std::fs::read_dir(FILTER_DIR)
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n.ends_with(".conf") && !n.ends_with("common.conf"))
        .map(|n| n.trim_end_matches(".conf").to_string())
        .collect();
    names.sort();
    let verbose = std::env::var_os("SHIELD_F2B_VERBOSE").is_some();
    let mut results: BTreeMap<String, Score> = BTreeMap::new();
    for n in &names {
        if !Path::new(LOG_DIR).join(n).is_file() {
            let mut s = Score::default();
            if let Err(e) = load_variant(n, &serde_json::Map::new(), &tz) {
                s.load_error = Some(e);
            }
            results.insert(n.clone(), s);
            continue;
        }
        results.insert(n.clone(), run_filter(n, &tz));
    }
    let (mut cases, mut agreed, mut load_fail) = (0, 0, 0);
    println!("{:<28} {:>6} {:>6} {:>7}", "filter", "cases", "agreed", "%");
    for (n, s) in &results {
        cases += s.cases;
        agreed += s.agreed;
        let pct = if s.cases == 0 {
            100.0
        } else {
            100.0 * s.agreed as f64 / s.cases as f64
        };
        println!("{n:<28} {:>6} {:>6} {pct:>6.1}%", s.cases, s.agreed);
        if let Some(e) = &s.load_error {
            load_fail += 1;
            println!("    cannot load: {e}");
        }
        if verbose || pct < 100.0 {
            for m in &s.first_miss {
                println!("    miss: {m}");
            }
        }
    }
    let overall = 100.0 * agreed as f64 / cases.max(1) as f64;
    println!(
        "overall: {agreed}/{cases} cases agree ({overall:.2}%), {} filters, {load_fail} fail to load",
        results.len()
    );
    assert!(
        cases > 500,
        "too few cases found ({cases}): is the fail2ban package complete?"
    );
    let cannot_load: Vec<String> = results
        .iter()
        .filter_map(|(n, s)| Some(format!("{n}: {}", s.load_error.as_ref()?)))
        .collect();
    assert!(
        cannot_load.is_empty(),
        "{load_fail} of Debian's filters do not load:\n{}",
        cannot_load.join("\n")
    );
    assert!(
        overall >= FLOOR_PERCENT,
        "agreement {overall:.2}% is below the floor {FLOOR_PERCENT}%"
    );
}
