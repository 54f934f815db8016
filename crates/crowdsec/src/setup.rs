//! The CrowdSec content a Shield daemon runs, loaded tolerantly: what a CrowdSec installation
//! runs (`/etc/crowdsec`: its installed parsers, scenarios, postoverflows, patterns and
//! `data_dir`) or a hub checkout's items chosen by collection. Unlike [`HubEngine::load`], a broken
//! item (unknown key, expression that does not compile, grok naming a missing pattern) does
//! not stop the load: it is reported as a [`Problem`] naming file and line, and skipped; the
//! rest runs. Owns collection expansion and locating a problem's line in its file.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::Error;
use crate::bucket::{Buckets, Scenario};
use crate::config::{self, NodeConfig, ScenarioConfig};
use crate::data::{DataStore, Exprs, Stash};
use crate::grok::Library;
use crate::hub::{Hub, HubEngine};
use crate::parser::{Compile, Node, Stages};

/// Where the content comes from.
#[derive(Debug, Clone)]
pub enum Content {
    /// A CrowdSec configuration directory (`/etc/crowdsec`); `data_dir` overrides its
    /// `config_paths.data_dir`.
    Installation {
        config_dir: PathBuf,
        data_dir: Option<PathBuf>,
    },
    /// A hub checkout: the items of `collections` (recursively) plus the items named directly.
    Hub {
        hub: PathBuf,
        patterns: PathBuf,
        data: PathBuf,
        collections: Vec<String>,
        parsers: Vec<String>,
        scenarios: Vec<String>,
        postoverflows: Vec<String>,
    },
}

/// A hub item that could not be loaded and was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: PathBuf,
    /// 1-based line of the problem in `path`, when it could be found.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.path.display().to_string();
        // One line: a YAML error's source snippet is left out, and its
        // "error: line L column C: " prefix becomes `file:L:C:`.
        let msg = self
            .message
            .strip_prefix(&format!("{p}: "))
            .unwrap_or(&self.message);
        let msg = msg.lines().next().unwrap_or("");
        let msg = msg.strip_prefix("error: ").unwrap_or(msg);
        if let Some(rest) = msg.strip_prefix("line ")
            && let Some((l, rest)) = rest.split_once(" column ")
            && let Some((c, rest)) = rest.split_once(": ")
        {
            return write!(f, "{p}:{l}:{c}: {rest} (item skipped)");
        }
        match self.line {
            Some(l) => write!(f, "{p}:{l}: {msg} (item skipped)"),
            None => write!(f, "{p}: {msg} (item skipped)"),
        }
    }
}

/// What a loaded scenario asks of the decision stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioInfo {
    pub name: String,
    /// `labels.remediation`: false means alert only (CrowdSec's default profile decides nothing).
    pub remediation: bool,
    /// `scope.type`: `Ip` (default) or `Range`.
    pub scope: String,
}

/// The engine, what its scenarios ask for, and what was skipped.
pub struct Loaded {
    pub engine: HubEngine,
    pub scenarios: Vec<ScenarioInfo>,
    pub problems: Vec<Problem>,
    /// Each loaded scenario's `filter`, compiled apart (`shield explain` shows what a line
    /// would be poured into without touching the buckets).
    pub filters: Vec<(String, shield_expr::Program)>,
}

/// One parser or postoverflow file: its stage and the nodes that parsed.
struct StageFile {
    key: String,
    stage: String,
    path: PathBuf,
    nodes: Vec<NodeConfig>,
}

/// Loads `content`. Fails only when nothing can run (no patterns directory, no parser at all).
pub fn load(content: &Content) -> Result<Loaded, Error> {
    let mut problems = Vec::new();
    let (patterns, data_dir, parsers, povfws, scens) = match content {
        Content::Installation {
            config_dir,
            data_dir,
        } => {
            let patterns = Library::load_dir(&config_dir.join("patterns"))?;
            let data_dir = data_dir.clone().unwrap_or_else(|| {
                configured_data_dir(config_dir)
                    .unwrap_or_else(|| PathBuf::from("/var/lib/crowdsec/data"))
            });
            let staged = |kind: &str| {
                let mut out = Vec::new();
                for stage_dir in sorted_entries(&config_dir.join(kind))
                    .into_iter()
                    .filter(|p| p.is_dir())
                {
                    let stage = file_name(&stage_dir);
                    for f in sorted_entries(&stage_dir)
                        .into_iter()
                        .filter(|p| is_yaml(p) && p.is_file())
                    {
                        out.push((stage.clone(), f));
                    }
                }
                out
            };
            let parsers = staged("parsers");
            let povfws = staged("postoverflows");
            let scens: Vec<PathBuf> = sorted_entries(&config_dir.join("scenarios"))
                .into_iter()
                .filter(|p| is_yaml(p) && p.is_file())
                .collect();
            if parsers.is_empty() {
                return Err(Error::Invalid {
                    path: config_dir.join("parsers"),
                    message: "no parser installed (is this a CrowdSec configuration directory such as /etc/crowdsec?)".into(),
                });
            }
            (patterns, data_dir, parsers, povfws, scens)
        }
        Content::Hub {
            hub,
            patterns,
            data,
            collections,
            parsers,
            scenarios,
            postoverflows,
        } => {
            let h = Hub::open(hub, patterns, data)?;
            let mut sel = expand_collections(hub, collections)?;
            sel.parsers.extend(parsers.iter().cloned());
            sel.scenarios.extend(scenarios.iter().cloned());
            sel.postoverflows.extend(postoverflows.iter().cloned());
            let mut find = |kind: &str, names: &BTreeSet<String>| {
                let mut out = Vec::new();
                for n in names {
                    match h.item(kind, n, &[]) {
                        Ok(it) => out.push((it.stage, it.path)),
                        Err(e) => problems.push(problem_of(&e)),
                    }
                }
                out
            };
            let p = find("parsers", &sel.parsers);
            let o = find("postoverflows", &sel.postoverflows);
            let s: Vec<PathBuf> = find("scenarios", &sel.scenarios)
                .into_iter()
                .map(|(_, p)| p)
                .collect();
            if p.is_empty() {
                return Err(Error::Invalid {
                    path: hub.clone(),
                    message: "no parser selected: name collections (e.g. crowdsecurity/linux, crowdsecurity/nginx) or parsers".into(),
                });
            }
            (h.patterns.clone(), data.clone(), p, o, s)
        }
    };
    let parser_files = read_stage_files(parsers, &mut problems);
    let povfw_files = read_stage_files(povfws, &mut problems);
    let mut scen_files: Vec<(PathBuf, Vec<ScenarioConfig>)> = Vec::new();
    for f in scens {
        match config::load_documents::<ScenarioConfig>(&f) {
            Ok(docs) => scen_files.push((f, docs)),
            Err(e) => problems.push(problem_of(&e)),
        }
    }

    let mut data = DataStore::new(&data_dir);
    for f in parser_files.iter().chain(povfw_files.iter()) {
        for n in &f.nodes {
            load_node_data(n, &mut data);
        }
    }
    for (_, docs) in &scen_files {
        for d in docs.iter().flat_map(|s| s.data.iter()) {
            data.load(d);
        }
    }
    let missing_data = data.missing().to_vec();
    let stash = Arc::new(Stash::default());
    let exprs = Exprs::new(Arc::new(data), stash.clone());
    let needs_geoip = parser_files
        .iter()
        .chain(povfw_files.iter())
        .any(|f| f.nodes.iter().any(uses_geoip));
    let parsers = compile_stages(&parser_files, &exprs, &patterns, &mut problems);
    let postoverflows = compile_stages(&povfw_files, &exprs, &patterns, &mut problems);
    let mut scenarios = Vec::new();
    let mut infos = Vec::new();
    let mut filters = Vec::new();
    for (path, docs) in &scen_files {
        let hash = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(
                std::fs::read(path).unwrap_or_default(),
            ))
        };
        for s in docs {
            match Scenario::compile(s, &exprs, &hash, "") {
                Ok(sc) => {
                    scenarios.push(sc);
                    if let Ok(f) = exprs.compile(&s.filter) {
                        filters.push((s.name.clone(), f));
                    }
                    infos.push(ScenarioInfo {
                        name: s.name.clone(),
                        remediation: remediation(s),
                        scope: if s.scope.kind.is_empty() {
                            "Ip".into()
                        } else {
                            s.scope.kind.clone()
                        },
                    });
                }
                Err(e) => problems.push(locate(path, e.to_string())),
            }
        }
    }
    Ok(Loaded {
        engine: HubEngine {
            parsers,
            postoverflows,
            buckets: Buckets::new(scenarios),
            stash,
            needs_geoip,
            missing_data,
            parsed: 0,
        },
        scenarios: infos,
        problems,
        filters,
    })
}

/// Item names a hub selection runs, deduplicated.
#[derive(Debug, Default, Clone)]
pub struct Names {
    pub parsers: BTreeSet<String>,
    pub scenarios: BTreeSet<String>,
    pub postoverflows: BTreeSet<String>,
}

/// The parsers, scenarios and postoverflows of `collections` and the collections they include,
/// read from the hub's `.index.json`.
pub fn expand_collections(hub: &Path, collections: &[String]) -> Result<Names, Error> {
    let mut out = Names::default();
    if collections.is_empty() {
        return Ok(out);
    }
    let ip = hub.join(".index.json");
    let text = std::fs::read_to_string(&ip).map_err(|e| Error::Io {
        path: ip.clone(),
        source: e,
    })?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Invalid {
        path: ip.clone(),
        message: format!("not JSON: {e}"),
    })?;
    let mut todo: Vec<String> = collections.to_vec();
    let mut seen = BTreeSet::new();
    while let Some(c) = todo.pop() {
        if !seen.insert(c.clone()) {
            continue;
        }
        let Some(item) = v.get("collections").and_then(|x| x.get(&c)) else {
            return Err(Error::Invalid {
                path: ip.clone(),
                message: format!(
                    "collection '{c}' is not in the hub index (check the name, e.g. crowdsecurity/nginx)"
                ),
            });
        };
        let names = |k: &str| -> Vec<String> {
            item.get(k)
                .and_then(|x| x.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        out.parsers.extend(names("parsers"));
        out.scenarios.extend(names("scenarios"));
        out.postoverflows.extend(names("postoverflows"));
        todo.extend(names("collections"));
    }
    Ok(out)
}

fn read_stage_files(files: Vec<(String, PathBuf)>, problems: &mut Vec<Problem>) -> Vec<StageFile> {
    // Sorted by stage then file name, as CrowdSec loads them; one file per key.
    let mut out: BTreeMap<String, StageFile> = BTreeMap::new();
    for (stage, path) in files {
        let key = format!("{stage}/{}", file_name(&path));
        if out.contains_key(&key) {
            continue;
        }
        match config::load_documents::<NodeConfig>(&path) {
            Ok(nodes) => {
                let nodes = nodes
                    .into_iter()
                    .filter(|n| {
                        !(n.name.is_empty() && n.description.is_empty() && n.author.is_empty())
                    })
                    .collect();
                out.insert(
                    key.clone(),
                    StageFile {
                        key,
                        stage,
                        path,
                        nodes,
                    },
                );
            }
            Err(e) => problems.push(problem_of(&e)),
        }
    }
    out.into_values().collect()
}

fn compile_stages(
    files: &[StageFile],
    exprs: &Exprs,
    groks: &Library,
    problems: &mut Vec<Problem>,
) -> Stages {
    let mut lib = groks.clone();
    let mut nodes: Vec<Node> = Vec::new();
    for f in files {
        let _ = &f.key;
        for n in &f.nodes {
            let mut cx = Compile {
                exprs,
                groks: &mut lib,
            };
            match Node::compile(n, &f.stage, &mut cx) {
                Ok(node) => nodes.push(node),
                Err(e) => problems.push(locate(&f.path, e.to_string())),
            }
        }
    }
    Stages::new(nodes)
}

fn load_node_data(n: &NodeConfig, data: &mut DataStore) {
    for d in &n.data {
        data.load(d);
    }
    for c in &n.nodes {
        load_node_data(c, data);
    }
}

fn uses_geoip(n: &NodeConfig) -> bool {
    n.statics
        .iter()
        .chain(n.grok.statics.iter())
        .any(|s| matches!(s.method.as_str(), "GeoIpCity" | "GeoIpASN" | "IpToRange"))
        || n.nodes.iter().any(uses_geoip)
}

fn remediation(s: &ScenarioConfig) -> bool {
    match s.labels.as_ref().and_then(|l| l.get("remediation")) {
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::String(v)) => v.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// A load error as a problem; YAML errors carry their line in the message.
fn problem_of(e: &Error) -> Problem {
    match e {
        Error::Yaml { path, message } => Problem {
            path: path.clone(),
            line: yaml_line(message),
            message: message.clone(),
        },
        Error::Io { path, .. } | Error::Invalid { path, .. } => Problem {
            path: path.clone(),
            line: None,
            message: e.to_string(),
        },
        Error::Grok(g) => Problem {
            path: PathBuf::new(),
            line: None,
            message: g.to_string(),
        },
    }
}

/// The line a YAML error message names (`... at line 6 column 1` or `line 6`).
fn yaml_line(msg: &str) -> Option<usize> {
    let i = msg.find("line ")?;
    msg[i + 5..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// A compile error located in `path`: the line holding the text the message quotes (an
/// expression, a grok pattern's name).
pub fn locate(path: &Path, message: String) -> Problem {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let needle = quoted(&message);
    let line = needle.and_then(|n| {
        let first = n.lines().find(|l| !l.trim().is_empty())?.trim().to_owned();
        text.lines().position(|l| l.contains(&first)).map(|i| i + 1)
    });
    Problem {
        path: path.to_owned(),
        line,
        message,
    }
}

/// What a compile message quotes: `the 'NAME' pattern` → `%{NAME`, else the first `"..."`
/// (Rust's Debug quoting, unescaped).
fn quoted(msg: &str) -> Option<String> {
    if let Some(i) = msg.find("the '") {
        let rest = &msg[i + 5..];
        if let Some(j) = rest.find("' pattern") {
            return Some(format!("%{{{}", &rest[..j]));
        }
    }
    let i = msg.find('"')?;
    let mut out = String::new();
    let mut chars = msg[i + 1..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                o => out.push(o),
            },
            c => out.push(c),
        }
    }
    None
}

fn configured_data_dir(cfg: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(cfg.join("config.yaml")).ok()?;
    let v: serde_json::Value = serde_saphyr::from_str(&text).ok()?;
    v.get("config_paths")?
        .get("data_dir")?
        .as_str()
        .map(PathBuf::from)
}

fn is_yaml(p: &Path) -> bool {
    p.extension().is_some_and(|x| x == "yaml" || x == "yml")
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny installation: one good parser, one parser with a bad key, one with a grok naming
    /// a missing pattern, one scenario with an expression that does not compile, one good.
    fn broken_installation(dir: &Path) {
        let p = dir.join("parsers/s01-parse");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::create_dir_all(dir.join("patterns")).unwrap();
        std::fs::create_dir_all(dir.join("scenarios")).unwrap();
        std::fs::write(dir.join("patterns/base"), "WORDX \\w+\n").unwrap();
        std::fs::write(
            p.join("good.yaml"),
            "name: t/good\nfilter: \"1 == 1\"\nonsuccess: next_stage\ngrok:\n  pattern: 'login from %{IP:source_ip}'\n  apply_on: Line.Raw\nstatics:\n  - meta: source_ip\n    expression: evt.Parsed.source_ip\n  - meta: log_type\n    value: t_fail\n  - target: MarshaledTime\n    value: 2026-01-01T10:00:00Z\n",
        )
        .unwrap();
        std::fs::write(
            p.join("badkey.yaml"),
            "name: t/badkey\nfilter: \"1 == 1\"\nbogus_key: 1\n",
        )
        .unwrap();
        std::fs::write(
            p.join("badgrok.yaml"),
            "name: t/badgrok\nfilter: \"1 == 1\"\ngrok:\n  pattern: '%{NO_SUCH_PATTERN:x}'\n  apply_on: Line.Raw\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("scenarios/bad.yaml"),
            "type: leaky\nname: t/bad\ndescription: d\nfilter: \"evt.Meta.log_type ==\"\ncapacity: 1\nleakspeed: 10s\ngroupby: evt.Meta.source_ip\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("scenarios/good.yaml"),
            "type: leaky\nname: t/good\ndescription: d\nfilter: \"evt.Meta.log_type == 't_fail'\"\ncapacity: 1\nleakspeed: 10s\ngroupby: evt.Meta.source_ip\nlabels:\n  remediation: true\n",
        )
        .unwrap();
    }

    #[test]
    fn broken_items_are_reported_with_file_and_line_and_the_rest_runs() {
        let dir = tempfile::tempdir().unwrap();
        broken_installation(dir.path());
        let l = load(&Content::Installation {
            config_dir: dir.path().to_owned(),
            data_dir: Some(dir.path().to_owned()),
        })
        .unwrap();
        let msgs: Vec<String> = l.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(msgs.len(), 3, "{msgs:#?}");
        let has = |file: &str, line: usize, what: &str| {
            msgs.iter().any(|m| {
                m.contains(&format!("{file}:{line}:")) && m.contains(what) && m.contains("skipped")
            })
        };
        assert!(has("badkey.yaml", 3, "bogus_key"), "{msgs:#?}");
        assert!(has("badgrok.yaml", 4, "NO_SUCH_PATTERN"), "{msgs:#?}");
        assert!(has("bad.yaml", 4, "filter"), "{msgs:#?}");
        // The good parser and scenario still run: two lines overflow capacity 1.
        assert_eq!(l.scenarios.len(), 1);
        assert!(l.scenarios[0].remediation);
        let mut e = l.engine;
        let labels = Arc::new(BTreeMap::from([("type".to_owned(), "t".to_owned())]));
        let mut overflows = 0;
        for _ in 0..3 {
            let ev = crate::event::Event::from_line("login from 203.0.113.5", "f", labels.clone());
            overflows += e.process(ev, None).len();
        }
        assert_eq!(overflows, 1);
    }

    #[test]
    fn unknown_collection_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".index.json"), "{\"collections\": {}}").unwrap();
        let e = expand_collections(dir.path(), &["x/nope".into()])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("x/nope"), "{e}");
    }
}
