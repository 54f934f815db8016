//! Data files hub items name under `data:` (`dest_file` in the data directory) and the
//! expression helpers that read them or other engine state: `File`, `RegexpInFile`,
//! `LookupFile`, `FileMap`, `GetFromStash`, plus the expression environment (`Exprs`) that
//! compiles hub expressions with every helper registered. Files are loaded before any
//! expression is compiled, so helpers can lend their contents to evaluations without copying.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use shield_expr::{Arity, CompileError, Compiler, EvalError, List, Program, Str, Value};

use crate::config::DataConfig;

/// One loaded data file.
#[derive(Debug, Default)]
struct DataFile {
    strings: Vec<String>,
    regexes: Vec<regex::Regex>,
    /// Every line of a `regex` file as one alternation (`RegexpInFile` asks whether any
    /// matches: one automaton instead of one search per line); None if it would not build.
    any_regex: Option<regex::Regex>,
    /// `type: map` rows: (pattern, tag, kind).
    map_rows: Vec<(String, String, String)>,
}

/// Every data file the loaded hub items need, by `dest_file` name.
#[derive(Debug, Default)]
pub struct DataStore {
    dir: PathBuf,
    files: HashMap<String, DataFile>,
    missing: Vec<String>,
}

impl DataStore {
    /// An empty store reading from `dir`.
    pub fn new(dir: &Path) -> DataStore {
        DataStore {
            dir: dir.to_owned(),
            ..DataStore::default()
        }
    }

    /// Files named in `data:` that could not be read (`dest_file: reason`).
    pub fn missing(&self) -> &[String] {
        &self.missing
    }

    /// Load one `data:` entry (`FileInit`): lines, skipping empty ones and `#` comments.
    pub fn load(&mut self, d: &DataConfig) {
        if d.dest_file.is_empty() || d.kind.is_empty() {
            return;
        }
        let entry = self.files.entry(d.dest_file.clone()).or_default();
        let loaded = match d.kind.as_str() {
            "regex" | "regexp" => !entry.regexes.is_empty(),
            "string" => !entry.strings.is_empty(),
            "map" => !entry.map_rows.is_empty(),
            _ => true,
        };
        if loaded {
            return;
        }
        let path = resolve(&self.dir, &d.dest_file, &d.source_url);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                self.missing.push(format!("{}: {e}", path.display()));
                return;
            }
        };
        for line in text.lines() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match d.kind.as_str() {
                "regex" | "regexp" => match regex::Regex::new(&crate::grok::translate(line)) {
                    Ok(r) => entry.regexes.push(r),
                    Err(e) => self
                        .missing
                        .push(format!("{}: {line:?}: {e}", path.display())),
                },
                "string" => entry.strings.push(line.to_owned()),
                "map" => {
                    if let Ok(serde_json::Value::Object(o)) = serde_json::from_str(line) {
                        let g =
                            |k: &str| o.get(k).and_then(|v| v.as_str()).unwrap_or("").to_owned();
                        entry.map_rows.push((g("pattern"), g("tag"), g("type")));
                    }
                }
                _ => {}
            }
        }
        if !entry.regexes.is_empty() {
            // Each line compiled on its own above; in a non-capturing group of its own its
            // flags (`(?i)`) stay inside it, so the alternation matches where any line does.
            let alt = entry
                .regexes
                .iter()
                .map(|r| format!("(?:{})", r.as_str()))
                .collect::<Vec<_>>()
                .join("|");
            entry.any_regex = regex::RegexBuilder::new(&alt)
                .size_limit(32 << 20)
                .build()
                .ok();
        }
    }

    fn strings(&self, name: &str) -> &[String] {
        self.files
            .get(name)
            .map(|f| f.strings.as_slice())
            .unwrap_or(&[])
    }

    fn regexp_in_file(&self, data: &str, name: &str) -> bool {
        self.files.get(name).is_some_and(|f| match &f.any_regex {
            Some(all) => all.is_match(data),
            None => f.regexes.iter().any(|r| r.is_match(data)),
        })
    }

    fn lookup(&self, haystack: &str, name: &str) -> &str {
        let Some(f) = self.files.get(name) else {
            return "";
        };
        if let Some(r) = f
            .map_rows
            .iter()
            .rev()
            .find(|r| r.2 == "equals" && r.0 == haystack)
        {
            return &r.1;
        }
        // Leftmost match first, then the earlier pattern (aho-corasick LeftMostFirst).
        let mut best: Option<(usize, &str)> = None;
        for r in f
            .map_rows
            .iter()
            .filter(|r| r.2 == "contains" && !r.0.is_empty())
        {
            if let Some(pos) = haystack.find(&r.0)
                && best.is_none_or(|(b, _)| pos < b)
            {
                best = Some((pos, &r.1));
            }
        }
        if let Some((_, tag)) = best {
            return tag;
        }
        for r in f.map_rows.iter().filter(|r| r.2 == "regex") {
            if regex::Regex::new(&crate::grok::translate(&r.0))
                .is_ok_and(|re| re.is_match(haystack))
            {
                return &r.1;
            }
        }
        ""
    }
}

/// The data directory of a hub checkout keeps files by their `dest_file` name; the shared
/// sec-lists snapshot keeps them by the path of their `source_url`. Try both.
fn resolve(dir: &Path, dest: &str, source_url: &str) -> PathBuf {
    let direct = dir.join(dest);
    if direct.exists() {
        return direct;
    }
    if let Some(rest) = source_url.split("://").nth(1)
        && let Some((_, path)) = rest.split_once('/')
    {
        // github raw URLs: owner/repo/branch/path
        let parts: Vec<&str> = path.split('/').collect();
        for skip in 0..parts.len() {
            let p = dir.join(parts[skip..].join("/"));
            if p.is_file() {
                return p;
            }
        }
    }
    direct
}

/// The stash (`stash:` of parser nodes, read with `GetFromStash`).
#[derive(Debug, Default)]
pub struct Stash {
    caches: Mutex<HashMap<String, HashMap<String, String>>>,
}

impl Stash {
    /// Store `value` under `key` in cache `name`.
    pub fn set(&self, name: &str, key: &str, value: &str) {
        let mut c = self.caches.lock().unwrap_or_else(|e| e.into_inner());
        c.entry(name.to_owned())
            .or_default()
            .insert(key.to_owned(), value.to_owned());
    }

    /// The value under `key` in cache `name`.
    pub fn get(&self, name: &str, key: &str) -> Option<String> {
        let c = self.caches.lock().unwrap_or_else(|e| e.into_inner());
        c.get(name).and_then(|m| m.get(key)).cloned()
    }
}

fn arg_str<'a>(args: &'a [Value<'_>], i: usize) -> &'a str {
    args.get(i).and_then(Value::as_str).unwrap_or("")
}

/// The expression environment of one loaded hub: a compiler with every helper registered.
#[derive(Clone)]
pub struct Exprs {
    evt: Compiler,
    cond: Compiler,
    ovflw: Compiler,
    pub stash: Arc<Stash>,
}

impl Exprs {
    /// Register the data helpers over `data` (already loaded) and `stash`.
    pub fn new(data: Arc<DataStore>, stash: Arc<Stash>) -> Exprs {
        let mut c = Compiler::new();
        let d = data.clone();
        c.register("File", Arity::exact(1), FileFn(d));
        // Files are loaded before anything is compiled: `File('x')` is a constant list.
        c.pure("File");
        let d = data.clone();
        c.register_fn("RegexpInFile", Arity::exact(2), move |args| {
            Ok(Value::Bool(
                d.regexp_in_file(arg_str(args, 0), arg_str(args, 1)),
            ))
        });
        let d = data.clone();
        c.register_fn("LookupFile", Arity::exact(2), move |args| {
            Ok(Value::string(d.lookup(arg_str(args, 0), arg_str(args, 1))))
        });
        let s = stash.clone();
        c.register_fn("GetFromStash", Arity::exact(2), move |args| {
            Ok(match s.get(arg_str(args, 0), arg_str(args, 1)) {
                Some(v) => Value::string(v),
                None => Value::Nil,
            })
        });
        let s = stash.clone();
        c.register_fn("SetInStash", Arity::range(3, 4), move |args| {
            s.set(arg_str(args, 0), arg_str(args, 1), arg_str(args, 2));
            Ok(Value::Nil)
        });
        for (name, arity) in [
            ("GetDecisionsCount", Arity::exact(1)),
            ("GetDecisionsSinceCount", Arity::exact(2)),
            ("GetActiveDecisionsCount", Arity::exact(1)),
        ] {
            c.register_fn(name, arity, |_| Ok(Value::Int(0)));
        }
        c.register_fn("GetActiveDecisionsTimeLeft", Arity::exact(1), |_| {
            Ok(Value::Duration(0))
        });
        let mut evt = c.clone();
        evt.var("evt");
        let mut cond = c.clone();
        cond.var("evt");
        cond.var("queue");
        cond.var("leaky");
        let mut ovflw = c;
        ovflw.var("queue");
        ovflw.var("signal");
        ovflw.var("leaky");
        Exprs {
            evt,
            cond,
            ovflw,
            stash,
        }
    }

    /// Compile an expression over `evt`.
    pub fn compile(&self, src: &str) -> Result<Program, CompileError> {
        self.evt.compile(src)
    }

    /// Compile a scenario `condition` / bayesian condition (over `evt`, `queue`, `leaky`).
    pub fn compile_condition(&self, src: &str) -> Result<Program, CompileError> {
        self.cond.compile(src)
    }

    /// Compile an `overflow_filter` (over `queue`, `signal`, `leaky`).
    pub fn compile_overflow_filter(&self, src: &str) -> Result<Program, CompileError> {
        self.ovflw.compile(src)
    }
}

/// `File(name)`: the lines of a `type: string` data file, lent without copying.
struct FileFn(Arc<DataStore>);

impl shield_expr::Function for FileFn {
    fn call<'a>(&'a self, args: &[Value<'a>]) -> Result<Value<'a>, EvalError> {
        let name = match args.first() {
            Some(Value::Str(Str::Ref(s))) => *s,
            Some(Value::Str(s)) => {
                return Ok(Value::List(List::Strings(self.0.strings(s.as_str()))));
            }
            _ => "",
        };
        Ok(Value::List(List::Strings(self.0.strings(name))))
    }
}
