//! The YAML shapes of CrowdSec hub files: parser nodes (also used by postoverflows), scenarios
//! (bucket specs), data providers and hub test configs. Owns decoding only — strict like
//! CrowdSec's `SetStrict(true)` decoder, so an unknown key is an error naming file and line;
//! compiling expressions and groks is the business of `parser` and `bucket`.

use std::path::Path;

use serde::{Deserialize, Deserializer};

use crate::Error;

/// A scalar read as text, as Go's yaml.v2 does for a `string` field (`value: 80` is "80").
fn scalar<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = String;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a scalar")
        }
        fn visit_str<E>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_string<E>(self, v: String) -> Result<String, E> {
            Ok(v)
        }
        fn visit_i64<E>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_f64<E>(self, v: f64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_bool<E>(self, v: bool) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_unit<E>(self) -> Result<String, E> {
            Ok(String::new())
        }
        fn visit_none<E>(self) -> Result<String, E> {
            Ok(String::new())
        }
    }
    d.deserialize_any(V)
}

fn scalars<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    struct S(#[serde(deserialize_with = "scalar")] String);
    let v: Option<Vec<S>> = Option::deserialize(d)?;
    Ok(v.unwrap_or_default().into_iter().map(|s| s.0).collect())
}

/// `grok:` of a node.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrokConfig {
    #[serde(default, deserialize_with = "scalar")]
    pub apply_on: String,
    #[serde(default, deserialize_with = "scalar")]
    pub name: String,
    #[serde(default, deserialize_with = "scalar")]
    pub pattern: String,
    #[serde(default, deserialize_with = "scalar")]
    pub expression: String,
    #[serde(default)]
    pub statics: Vec<StaticConfig>,
}

/// One entry of `statics:` (also `override_statics:` in a hub test).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    #[serde(default, deserialize_with = "scalar")]
    pub target: String,
    #[serde(default, deserialize_with = "scalar")]
    pub parsed: String,
    #[serde(default, deserialize_with = "scalar")]
    pub meta: String,
    #[serde(default, deserialize_with = "scalar")]
    pub enriched: String,
    #[serde(default, deserialize_with = "scalar")]
    pub value: String,
    #[serde(default, deserialize_with = "scalar")]
    pub expression: String,
    #[serde(default, deserialize_with = "scalar")]
    pub method: String,
}

/// `stash:` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StashConfig {
    #[serde(default, deserialize_with = "scalar")]
    pub name: String,
    #[serde(default, deserialize_with = "scalar")]
    pub key: String,
    #[serde(default, deserialize_with = "scalar")]
    pub value: String,
    #[serde(default, deserialize_with = "scalar")]
    pub ttl: String,
    #[serde(default)]
    pub size: Option<i64>,
    #[serde(default, deserialize_with = "scalar")]
    pub strategy: String,
}

/// `whitelist:` of a node.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhitelistConfig {
    #[serde(default, deserialize_with = "scalar")]
    pub reason: String,
    #[serde(default, deserialize_with = "scalars")]
    pub ip: Vec<String>,
    #[serde(default, deserialize_with = "scalars")]
    pub cidr: Vec<String>,
    #[serde(default, deserialize_with = "scalars")]
    pub expression: Vec<String>,
}

/// `data:` entry of a parser or scenario: a file the expressions read with `File()` & co.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    #[serde(default, deserialize_with = "scalar")]
    pub source_url: String,
    #[serde(default, deserialize_with = "scalar")]
    pub dest_file: String,
    #[serde(default, rename = "type", deserialize_with = "scalar")]
    pub kind: String,
    #[serde(default)]
    pub cache: Option<bool>,
    #[serde(default, deserialize_with = "scalar")]
    pub strategy: String,
    #[serde(default)]
    pub size: Option<i64>,
    #[serde(default, deserialize_with = "scalar")]
    pub ttl: String,
}

/// A parser node (one YAML document of a parser or postoverflow file, or a `nodes:` child).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    #[serde(default, deserialize_with = "scalar")]
    pub format: String,
    #[serde(default)]
    pub debug: bool,
    #[serde(default)]
    pub profiling: bool,
    #[serde(default, deserialize_with = "scalar")]
    pub name: String,
    #[serde(default, deserialize_with = "scalar")]
    pub author: String,
    #[serde(default, deserialize_with = "scalar")]
    pub description: String,
    #[serde(default, deserialize_with = "scalars")]
    pub references: Vec<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub stage: String,
    #[serde(default, deserialize_with = "scalar")]
    pub onsuccess: String,
    #[serde(default, deserialize_with = "scalar")]
    pub filter: String,
    #[serde(default)]
    pub nodes: Vec<NodeConfig>,
    /// Kept in file order: later patterns may name earlier ones.
    #[serde(default)]
    pub pattern_syntax: Option<Ordered>,
    #[serde(default)]
    pub grok: GrokConfig,
    #[serde(default)]
    pub statics: Vec<StaticConfig>,
    #[serde(default)]
    pub stash: Vec<StashConfig>,
    #[serde(default)]
    pub whitelist: WhitelistConfig,
    #[serde(default)]
    pub data: Vec<DataConfig>,
}

/// A YAML mapping of string to string, in file order.
#[derive(Debug, Clone, Default)]
pub struct Ordered(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a mapping of pattern names to patterns")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Ordered, A::Error> {
                #[derive(Deserialize)]
                struct S(#[serde(deserialize_with = "scalar")] String);
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<S, S>()? {
                    out.push((k.0, v.0));
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// `scope:` of a scenario.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeConfig {
    #[serde(default, rename = "type", deserialize_with = "scalar")]
    pub kind: String,
    #[serde(default, deserialize_with = "scalar")]
    pub expression: String,
}

/// One `bayesian_conditions:` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BayesianConditionConfig {
    #[serde(default, deserialize_with = "scalar")]
    pub condition: String,
    #[serde(default)]
    pub prob_given_evil: f32,
    #[serde(default)]
    pub prob_given_benign: f32,
    #[serde(default)]
    pub guillotine: bool,
}

/// A scenario (one YAML document of a scenario file): CrowdSec's `BucketSpec`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioConfig {
    #[serde(default, deserialize_with = "scalar")]
    pub format: String,
    #[serde(default, deserialize_with = "scalar")]
    pub description: String,
    #[serde(default, deserialize_with = "scalars")]
    pub references: Vec<String>,
    #[serde(default, rename = "type", deserialize_with = "scalar")]
    pub kind: String,
    #[serde(default, deserialize_with = "scalar")]
    pub name: String,
    #[serde(default)]
    pub capacity: i64,
    #[serde(default, deserialize_with = "scalar")]
    pub leakspeed: String,
    #[serde(default, deserialize_with = "scalar")]
    pub filter: String,
    #[serde(default, deserialize_with = "scalar")]
    pub groupby: String,
    #[serde(default, deserialize_with = "scalar")]
    pub distinct: String,
    #[serde(default)]
    pub debug: bool,
    #[serde(default)]
    pub labels: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default, deserialize_with = "scalar")]
    pub blackhole: String,
    #[serde(default)]
    pub scope: ScopeConfig,
    #[serde(default)]
    pub reprocess: bool,
    #[serde(default)]
    pub data: Vec<DataConfig>,
    #[serde(default, deserialize_with = "scalar")]
    pub condition: String,
    #[serde(default)]
    pub cache_size: i64,
    #[serde(default, deserialize_with = "scalar")]
    pub cancel_on: String,
    #[serde(default)]
    pub bayesian_prior: f32,
    #[serde(default)]
    pub bayesian_threshold: f32,
    #[serde(default)]
    pub bayesian_conditions: Vec<BayesianConditionConfig>,
    #[serde(default, deserialize_with = "scalar")]
    pub overflow_filter: String,
    #[serde(default, deserialize_with = "scalar")]
    pub duration: String,
    #[serde(default, deserialize_with = "scalar")]
    pub version: String,
}

/// A hub test's `config.yaml`. Not strict: `cscli hubtest` ignores keys it does not know
/// (several tests carry `collections:`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TestConfig {
    #[serde(default, deserialize_with = "scalars")]
    pub parsers: Vec<String>,
    #[serde(default, deserialize_with = "scalars")]
    pub scenarios: Vec<String>,
    #[serde(default, deserialize_with = "scalars")]
    pub postoverflows: Vec<String>,
    #[serde(default, rename = "appsec-rules", deserialize_with = "scalars")]
    pub appsec_rules: Vec<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub nuclei_template: String,
    #[serde(default, deserialize_with = "scalar")]
    pub log_file: String,
    #[serde(default, deserialize_with = "scalar")]
    pub log_type: String,
    #[serde(default)]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default)]
    pub ignore_parsers: bool,
    #[serde(default)]
    pub override_statics: Vec<StaticConfig>,
}

/// Reads every YAML document of `path` as a `T`. An empty document (`---` at the end) is skipped.
pub fn load_documents<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
        path: path.to_owned(),
        source: e,
    })?;
    parse_documents(path, &text)
}

/// [`load_documents`] on text already read.
pub fn parse_documents<T: for<'de> Deserialize<'de>>(
    path: &Path,
    text: &str,
) -> Result<Vec<T>, Error> {
    // serde-saphyr reads a multi-document stream into a Vec; documents that are only comments
    // or empty come back as null, which `Option` absorbs.
    let docs: Vec<Option<T>> = serde_saphyr::from_multiple(text).map_err(|e| Error::Yaml {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    Ok(docs.into_iter().flatten().collect())
}

/// Reads a hub test's `config.yaml`.
pub fn load_test_config(path: &Path) -> Result<TestConfig, Error> {
    let mut docs: Vec<TestConfig> = load_documents(path)?;
    Ok(if docs.is_empty() {
        TestConfig::default()
    } else {
        docs.swap_remove(0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_names_file_and_line() {
        let text = "name: a/b\nfilter: \"1 == 1\"\n---\nname: c/d\nfilter: x\nbogus: 1\n";
        let e = parse_documents::<NodeConfig>(Path::new("p.yaml"), text).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("p.yaml") && msg.contains("bogus"), "{msg}");
        assert!(msg.contains("6"), "line missing: {msg}");
    }

    #[test]
    fn scalars_read_as_text_and_order_kept() {
        let text = "name: x\nstatics:\n  - meta: port\n    value: 80\npattern_syntax:\n  B: '%{A}'\n  A: 'a'\n";
        let n = &parse_documents::<NodeConfig>(Path::new("p.yaml"), text).unwrap()[0];
        assert_eq!(n.statics[0].value, "80");
        let ps = n.pattern_syntax.as_ref().unwrap();
        assert_eq!(ps.0[0].0, "B");
        assert_eq!(ps.0[1].0, "A");
    }
}
