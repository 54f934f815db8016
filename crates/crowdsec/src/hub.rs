//! A hub checkout (`parsers/`, `scenarios/`, `postoverflows/`, `.index.json`) plus a patterns
//! directory and a data directory, and the engine built from a chosen set of its items:
//! parser stages, scenarios and postoverflows, compiled once with their data files loaded.
//! Item order follows CrowdSec (stage files sorted by installed path, nodes in file order).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::Error;
use crate::bucket::{Buckets, Scenario};
use crate::config::{self, NodeConfig, ScenarioConfig, StaticConfig};
use crate::data::{DataStore, Exprs, Stash};
use crate::event::{Event, Kind};
use crate::grok::Library;
use crate::parser::{Compile, Dump, Node, Stages};

/// Where an item lives and what stage it belongs to.
#[derive(Debug, Clone)]
pub struct Item {
    pub path: PathBuf,
    pub stage: String,
    pub version: String,
}

/// A hub checkout with its index, and the patterns and data directories to use with it.
#[derive(Debug, Clone)]
pub struct Hub {
    pub dir: PathBuf,
    pub patterns: Library,
    pub data_dir: PathBuf,
    index: HashMap<(String, String), Item>,
}

impl Hub {
    /// Opens a hub directory; reads `.index.json` when present (else items are found by path).
    pub fn open(dir: &Path, patterns: &Path, data_dir: &Path) -> Result<Hub, Error> {
        let patterns = Library::load_dir(patterns)?;
        let mut index = HashMap::new();
        let ip = dir.join(".index.json");
        if let Ok(text) = std::fs::read_to_string(&ip) {
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Invalid {
                path: ip.clone(),
                message: format!("not JSON: {e}"),
            })?;
            for kind in ["parsers", "scenarios", "postoverflows"] {
                if let Some(items) = v.get(kind).and_then(|x| x.as_object()) {
                    for (name, it) in items {
                        let g =
                            |k: &str| it.get(k).and_then(|x| x.as_str()).unwrap_or("").to_owned();
                        index.insert(
                            (kind.to_owned(), name.clone()),
                            Item {
                                path: dir.join(g("path")),
                                stage: g("stage"),
                                version: g("version"),
                            },
                        );
                    }
                }
            }
        }
        Ok(Hub {
            dir: dir.to_owned(),
            patterns,
            data_dir: data_dir.to_owned(),
            index,
        })
    }

    /// Finds an item by name: the index first, then `name` as a path under the hub or any of
    /// `extra` directories (custom items of a hub test), its stage taken from the path.
    pub fn item(&self, kind: &str, name: &str, extra: &[&Path]) -> Result<Item, Error> {
        if let Some(it) = self.index.get(&(kind.to_owned(), name.to_owned())) {
            return Ok(it.clone());
        }
        let mut places: Vec<&Path> = vec![&self.dir];
        places.extend_from_slice(extra);
        // Go's filepath.Join: a leading '/' in the name does not make it absolute.
        let rel = name.trim_start_matches('/');
        for base in places {
            let p = base.join(rel);
            if p.is_file() {
                let comps: Vec<String> = p
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                let stage = if comps.len() >= 3 {
                    comps[comps.len() - 3].clone()
                } else {
                    String::new()
                };
                return Ok(Item {
                    path: p,
                    stage,
                    version: String::new(),
                });
            }
        }
        Err(Error::Invalid {
            path: self.dir.join(name),
            message: format!(
                "{kind} item '{name}' is neither in the hub index nor a file (check the name)"
            ),
        })
    }
}

/// What to load: item names as a hub test's config lists them.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub parsers: Vec<String>,
    pub scenarios: Vec<String>,
    pub postoverflows: Vec<String>,
    pub override_statics: Vec<StaticConfig>,
}

/// Parsers, scenarios and postoverflows compiled and ready to run.
pub struct HubEngine {
    pub parsers: Stages,
    pub postoverflows: Stages,
    pub buckets: Buckets,
    pub stash: Arc<Stash>,
    /// True when a loaded node calls a GeoIP enricher (which needs a MaxMind database).
    pub needs_geoip: bool,
    /// Data files that could not be read.
    pub missing_data: Vec<String>,
    /// Lines that made it through every parser stage (and were not whitelisted).
    pub parsed: u64,
}

fn is_yaml(p: &Path) -> bool {
    p.extension().is_some_and(|x| x == "yaml" || x == "yml")
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// `config_paths.data_dir` of a CrowdSec `config.yaml`.
fn configured_data_dir(cfg: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(cfg.join("config.yaml")).ok()?;
    let v: serde_json::Value = serde_saphyr::from_str(&text).ok()?;
    v.get("config_paths")?
        .get("data_dir")?
        .as_str()
        .map(PathBuf::from)
}

struct StageFile {
    key: String,
    stage: String,
    path: PathBuf,
    nodes: Vec<NodeConfig>,
}

fn uses_geoip(n: &NodeConfig) -> bool {
    n.statics
        .iter()
        .chain(n.grok.statics.iter())
        .any(|s| matches!(s.method.as_str(), "GeoIpCity" | "GeoIpASN" | "IpToRange"))
        || n.nodes.iter().any(uses_geoip)
}

fn stage_files(
    hub: &Hub,
    kind: &str,
    names: &[String],
    extra: &[&Path],
) -> Result<Vec<StageFile>, Error> {
    let mut files: BTreeMap<String, StageFile> = BTreeMap::new();
    for name in names.iter().filter(|n| !n.is_empty()) {
        let it = hub.item(kind, name, extra)?;
        let base = it
            .path
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !(base.ends_with(".yaml") || base.ends_with(".yml")) {
            continue;
        }
        let key = format!("{}/{}", it.stage, base);
        if files.contains_key(&key) {
            continue;
        }
        let nodes: Vec<NodeConfig> = config::load_documents(&it.path)?
            .into_iter()
            .filter(|n: &NodeConfig| {
                !(n.name.is_empty() && n.description.is_empty() && n.author.is_empty())
            })
            .collect();
        files.insert(
            key.clone(),
            StageFile {
                key,
                stage: it.stage,
                path: it.path,
                nodes,
            },
        );
    }
    Ok(files.into_values().collect())
}

fn compile_stages(files: &[StageFile], exprs: &Exprs, groks: &Library) -> Result<Stages, Error> {
    let mut lib = groks.clone();
    let mut nodes: Vec<Node> = Vec::new();
    for f in files {
        for n in &f.nodes {
            let mut cx = Compile {
                exprs,
                groks: &mut lib,
            };
            let node = Node::compile(n, &f.stage, &mut cx).map_err(|e| Error::Invalid {
                path: f.path.clone(),
                message: e.to_string(),
            })?;
            nodes.push(node);
        }
    }
    Ok(Stages::new(nodes))
}

impl HubEngine {
    /// Loads and compiles the selected items. `extra` are directories where custom items
    /// (named by path) may also be found.
    pub fn load(hub: &Hub, sel: &Selection, extra: &[&Path]) -> Result<HubEngine, Error> {
        let mut parser_files = stage_files(hub, "parsers", &sel.parsers, extra)?;
        if !sel.override_statics.is_empty() {
            parser_files.push(StageFile {
                key: "s00-raw/00_overrides.yaml".into(),
                stage: "s00-raw".into(),
                path: PathBuf::from("override_statics"),
                nodes: vec![NodeConfig {
                    name: "overrides".into(),
                    filter: "1==1".into(),
                    statics: sel.override_statics.clone(),
                    ..NodeConfig::default()
                }],
            });
            parser_files.sort_by(|a, b| a.key.cmp(&b.key));
        }
        let povfw_files = stage_files(hub, "postoverflows", &sel.postoverflows, extra)?;
        let mut scen_files: BTreeMap<String, (Item, Vec<ScenarioConfig>)> = BTreeMap::new();
        for name in sel.scenarios.iter().filter(|n| !n.is_empty()) {
            let it = hub.item("scenarios", name, extra)?;
            let docs: Vec<ScenarioConfig> = config::load_documents(&it.path)?;
            scen_files.insert(it.path.to_string_lossy().into_owned(), (it, docs));
        }
        HubEngine::build(
            parser_files,
            povfw_files,
            scen_files.into_values().collect(),
            &hub.patterns,
            &hub.data_dir,
        )
    }

    /// Loads what a CrowdSec installation runs: `CFG/parsers/STAGE/*.yaml`,
    /// `CFG/scenarios/*.yaml`, `CFG/postoverflows/STAGE/*.yaml` (symlinks followed), the
    /// patterns in `CFG/patterns` and data files from `data_dir` (default: `config_paths.data_dir`
    /// of `CFG/config.yaml`, else /var/lib/crowdsec/data).
    pub fn load_installation(cfg: &Path, data_dir: Option<&Path>) -> Result<HubEngine, Error> {
        let patterns = Library::load_dir(&cfg.join("patterns"))?;
        let data_dir = match data_dir {
            Some(d) => d.to_owned(),
            None => {
                configured_data_dir(cfg).unwrap_or_else(|| PathBuf::from("/var/lib/crowdsec/data"))
            }
        };
        let staged = |kind: &str| -> Result<Vec<StageFile>, Error> {
            let mut out = Vec::new();
            for stage_dir in sorted_entries(&cfg.join(kind))
                .into_iter()
                .filter(|p| p.is_dir())
            {
                let stage = stage_dir
                    .file_name()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                for f in sorted_entries(&stage_dir)
                    .into_iter()
                    .filter(|p| is_yaml(p) && p.is_file())
                {
                    let nodes: Vec<NodeConfig> = config::load_documents(&f)?
                        .into_iter()
                        .filter(|n: &NodeConfig| {
                            !(n.name.is_empty() && n.description.is_empty() && n.author.is_empty())
                        })
                        .collect();
                    let base = f
                        .file_name()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    out.push(StageFile {
                        key: format!("{stage}/{base}"),
                        stage: stage.clone(),
                        path: f,
                        nodes,
                    });
                }
            }
            Ok(out)
        };
        let parser_files = staged("parsers")?;
        let povfw_files = staged("postoverflows")?;
        let mut scen_files = Vec::new();
        for f in sorted_entries(&cfg.join("scenarios"))
            .into_iter()
            .filter(|p| is_yaml(p) && p.is_file())
        {
            let docs: Vec<ScenarioConfig> = config::load_documents(&f)?;
            scen_files.push((
                Item {
                    path: f,
                    stage: String::new(),
                    version: String::new(),
                },
                docs,
            ));
        }
        if parser_files.is_empty() {
            return Err(Error::Invalid {
                path: cfg.join("parsers"),
                message: "no parser installed (is this a CrowdSec configuration directory such as /etc/crowdsec?)".into(),
            });
        }
        HubEngine::build(parser_files, povfw_files, scen_files, &patterns, &data_dir)
    }

    fn build(
        parser_files: Vec<StageFile>,
        povfw_files: Vec<StageFile>,
        scen_files: Vec<(Item, Vec<ScenarioConfig>)>,
        patterns: &Library,
        data_dir: &Path,
    ) -> Result<HubEngine, Error> {
        let mut data = DataStore::new(data_dir);
        for f in parser_files.iter().chain(povfw_files.iter()) {
            for n in &f.nodes {
                for d in &n.data {
                    data.load(d);
                }
            }
        }
        for (_, docs) in &scen_files {
            for s in docs {
                for d in &s.data {
                    data.load(d);
                }
            }
        }
        let missing_data = data.missing().to_vec();
        let stash = Arc::new(Stash::default());
        let exprs = Exprs::new(Arc::new(data), stash.clone());
        let needs_geoip = parser_files
            .iter()
            .chain(povfw_files.iter())
            .any(|f| f.nodes.iter().any(uses_geoip));
        let parsers = compile_stages(&parser_files, &exprs, patterns)?;
        let postoverflows = compile_stages(&povfw_files, &exprs, patterns)?;
        let mut scenarios = Vec::new();
        for (it, docs) in &scen_files {
            let hash = {
                use sha2::Digest;
                let bytes = std::fs::read(&it.path).unwrap_or_default();
                hex::encode(sha2::Sha256::digest(&bytes))
            };
            for s in docs {
                scenarios.push(
                    Scenario::compile(s, &exprs, &hash, &it.version).map_err(|e| {
                        Error::Invalid {
                            path: it.path.clone(),
                            message: e.to_string(),
                        }
                    })?,
                );
            }
        }
        Ok(HubEngine {
            parsers,
            postoverflows,
            buckets: Buckets::new(scenarios),
            stash,
            needs_geoip,
            missing_data,
            parsed: 0,
        })
    }

    /// One line through parsers, buckets and postoverflows. Returns the overflows it caused
    /// (after postoverflows; whitelisted ones included, as CrowdSec's dump has them).
    pub fn process(&mut self, mut evt: Event, mut dump: Option<&mut Dump>) -> Vec<Event> {
        if self
            .parsers
            .parse(&mut evt, &self.stash, false, dump.as_deref_mut())
            .is_err()
        {
            return Vec::new();
        }
        if !evt.process || evt.whitelisted {
            return Vec::new();
        }
        self.parsed += 1;
        let mut out = Vec::new();
        let mut queue = self.buckets.pour(&mut evt);
        let mut guard = 0;
        while let Some(mut ov) = (!queue.is_empty()).then(|| queue.remove(0)) {
            if self
                .postoverflows
                .parse(&mut ov, &self.stash, false, dump.as_deref_mut())
                .is_err()
            {
                continue;
            }
            out.push(ov.clone());
            if ov.overflow.whitelisted {
                continue;
            }
            if ov.overflow.reprocess && guard < 100 {
                guard += 1;
                let mut re = ov;
                re.kind = Kind::Overflow;
                re.time_machine = true;
                queue.extend(self.buckets.pour(&mut re));
            }
        }
        out
    }
}
