//! No crate of the workspace has a module cycle: for every crate (the root
//! binary and each of `crates/*`), the modules' `crate::` and `super::` paths
//! form a graph, and a cycle in it fails this test naming the modules in
//! order (`a -> b -> a`). A module is one source file (`foo.rs` or
//! `foo/mod.rs`); inline `#[cfg(test)]` modules and comments are not read, so
//! tests may `use super::*` and docs may link anywhere.
//!
//! Run by `cargo test` (so by scripts/test.sh and CI); it reads the sources,
//! it builds nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One crate's modules: module path (`""` for the root, `web`, `web::assets`)
/// to the modules it refers to.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// Reads the modules under `src` (the directory holding `lib.rs` or `main.rs`).
fn graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    collect(src, &mut files);
    let modules: BTreeMap<String, String> = files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            (module_path(src, f), strip(&text))
        })
        .collect();
    let known: BTreeSet<String> = modules.keys().cloned().collect();
    let mut g = Graph::new();
    for (m, text) in &modules {
        let edges = g.entry(m.clone()).or_default();
        for path in references(text, m) {
            // The longest prefix of the path that is a module file.
            let mut p: Vec<&str> = path.iter().map(String::as_str).collect();
            let target = loop {
                let cand = p.join("::");
                if known.contains(&cand) || p.is_empty() {
                    break cand;
                }
                p.pop();
            };
            // A module reaching into its own children or itself is not an edge
            // back up; the root (lib.rs/main.rs) only declares and re-exports.
            if target != *m && !target.is_empty() && !m.is_empty() {
                edges.insert(target);
            }
        }
    }
    g
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src/web/mod.rs` -> `web`, `src/a/b.rs` -> `a::b`, `src/lib.rs` -> ``.
fn module_path(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts.join("::")
}

/// The text without comments, string literals and `#[cfg(test)]` items.
fn strip(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if b[i] == b'"' && (i == 0 || b[i - 1] != b'\'') {
            // A string literal (raw strings `r"..."`/`r#"..."#` included).
            let hashes = b[..i].iter().rev().take_while(|&&c| c == b'#').count();
            let raw = i > hashes && b[i - hashes - 1] == b'r';
            i += 1;
            while i < b.len() {
                if !raw && b[i] == b'\\' {
                    i += 2;
                    continue;
                }
                if b[i] == b'"' && b[i + 1..].iter().take(hashes).all(|&c| c == b'#') {
                    i += 1 + if raw { hashes } else { 0 };
                    break;
                }
                i += 1;
            }
            out.push_str("\"\"");
        } else if b[i..].starts_with(b"#[cfg(test)]") {
            // Skip the attribute and the item it guards: up to the end of
            // its `{ ... }` body, or to `;` for a `mod x;` / `use ...;`.
            i += b"#[cfg(test)]".len();
            let mut depth = 0;
            while i < b.len() {
                match b[i] {
                    b'{' => depth += 1,
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            i += 1;
                            break;
                        }
                    }
                    b';' if depth == 0 => {
                        i += 1;
                        break;
                    }
                    _ => {}
                }
                i += 1;
            }
        } else {
            let ch = text[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Every module path this module's text names through `crate::` or `super::`
/// (expanded through `use` groups: `crate::{a, b::C}` names `a` and `b::C`).
fn references(text: &str, this: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let here: Vec<String> = if this.is_empty() {
        vec![]
    } else {
        this.split("::").map(String::from).collect()
    };
    for (i, _) in text.match_indices("::") {
        // The identifier before `::`, only when it starts a path.
        let before = &text[..i];
        let word_start = before
            .char_indices()
            .rev()
            .take_while(|&(_, c)| is_ident(c))
            .last()
            .map(|(j, _)| j)
            .unwrap_or(i);
        let word = &before[word_start..];
        let prev = before[..word_start].chars().next_back();
        if prev == Some(':') || prev == Some('$') {
            continue; // a later segment, or `$crate`
        }
        let mut base = match word {
            "crate" => Vec::new(),
            "super" => {
                let mut b = here.clone();
                b.pop();
                b
            }
            _ => continue,
        };
        let mut rest = &text[i + 2..];
        // `super::super::x`
        while word == "super" && rest.starts_with("super::") {
            base.pop();
            rest = &rest["super::".len()..];
        }
        for p in expand(rest) {
            let mut full = base.clone();
            full.extend(p);
            out.push(full);
        }
    }
    out
}

/// The paths at the start of `rest`: `a::b::C` or a `{...}` group of them.
fn expand(rest: &str) -> Vec<Vec<String>> {
    let rest = rest.trim_start();
    if let Some(inner) = rest.strip_prefix('{') {
        // Split the group at top-level commas.
        let (mut depth, mut start, mut out) = (0, 0, Vec::new());
        for (j, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    out.extend(expand(&inner[start..j]));
                    return out;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    out.extend(expand(&inner[start..j]));
                    start = j + 1;
                }
                _ => {}
            }
        }
        return out;
    }
    let mut segs = Vec::new();
    let mut r = rest;
    loop {
        let n = r.find(|c: char| !is_ident(c)).unwrap_or(r.len());
        if n == 0 {
            if r.starts_with('{') {
                return expand(r)
                    .into_iter()
                    .map(|tail| segs.iter().cloned().chain(tail).collect())
                    .collect();
            }
            break;
        }
        let seg = &r[..n];
        if seg == "self" {
            break;
        }
        segs.push(seg.to_string());
        r = &r[n..];
        match r.strip_prefix("::") {
            Some(t) => r = t,
            None => break,
        }
    }
    vec![segs]
}

/// One cycle per strongly connected component of more than one module (or a
/// module naming itself), as `a -> b -> a`.
fn cycles(g: &Graph) -> Vec<String> {
    components(g).into_iter().map(|(_, path)| path).collect()
}

/// Every strongly connected component that holds a cycle: its modules
/// (sorted) and one cycle through them.
fn components(g: &Graph) -> Vec<(Vec<String>, String)> {
    // Tarjan's algorithm, recursive: module graphs are small.
    struct T<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        sccs: Vec<Vec<&'a str>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                scc.push(w);
                if w == v {
                    break;
                }
            }
            t.sccs.push(scc);
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        sccs: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    let mut out = Vec::new();
    for scc in t.sccs {
        let set: BTreeSet<&str> = scc.iter().copied().collect();
        let self_loop = scc.len() == 1 && g[scc[0]].contains(scc[0]);
        if scc.len() < 2 && !self_loop {
            continue;
        }
        // Walk one cycle inside the component, from its smallest module.
        let start = *set.iter().next().unwrap();
        let mut path = vec![start];
        let mut seen = BTreeSet::from([start]);
        let mut v = start;
        loop {
            let nexts: Vec<&str> = g[v]
                .iter()
                .map(String::as_str)
                .filter(|w| set.contains(w))
                .collect();
            if let Some(w) = nexts.iter().find(|w| **w == start) {
                path.push(w);
                break;
            }
            let w = nexts
                .iter()
                .find(|w| !seen.contains(*w))
                .copied()
                .or_else(|| nexts.first().copied())
                .unwrap();
            if seen.contains(w) {
                let k = path.iter().position(|p| *p == w).unwrap();
                path.drain(..k);
                path.push(w);
                break;
            }
            seen.insert(w);
            path.push(w);
            v = w;
        }
        out.push((
            set.iter().map(|m| m.to_string()).collect(),
            path.join(" -> "),
        ));
    }
    out
}

/// Every crate's `src/` in the workspace.
fn crate_sources() -> Vec<(String, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = vec![("shield".to_string(), root.join("src"))];
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("Cargo.toml").exists() && p.join("src").is_dir())
        .collect();
    dirs.sort();
    for d in dirs {
        let name = d.file_name().unwrap().to_string_lossy().to_string();
        out.push((name, d.join("src")));
    }
    out
}

#[test]
fn no_crate_has_a_module_cycle() {
    let mut found = Vec::new();
    let crates = crate_sources();
    assert!(crates.len() > 5, "the crates were not found: {crates:?}");
    for (name, src) in &crates {
        let g = graph(src);
        for (members, path) in components(&g) {
            found.push(format!(
                "crate {name}: {path}  (modules: {})",
                members.join(", ")
            ));
        }
    }
    // The graph is read from the real tree: the daemon's runner reaches the
    // leaf through a `use` group, so an unread tree cannot pass silently.
    let daemon = graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/daemon/src"));
    assert!(daemon["run"].contains("state"), "{daemon:?}");
    assert!(
        found.is_empty(),
        "module cycles (move the shared types into a leaf module both sides import):\n  {}",
        found.join("\n  ")
    );
}

/// The check finds a cycle made through a `use` group, a `super::` path and
/// a fully qualified path in code, and names it; comments, strings and test
/// modules do not count.
#[test]
fn a_cycle_in_a_crate_is_found_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("web")).unwrap();
    let w = |p: &str, t: &str| std::fs::write(src.join(p), t).unwrap();
    w(
        "lib.rs",
        "pub mod a;\npub mod b;\npub mod c;\npub mod web;\n",
    );
    w("a.rs", "use crate::{b::Thing, c};\npub struct A;\n");
    w("b.rs", "pub struct Thing(crate::web::view::View);\n");
    w("web/mod.rs", "pub mod view;\n");
    w("web/view.rs", "pub struct View(super::super::a::A);\n");
    // Not edges: a doc link, a string, a test module.
    w(
        "c.rs",
        "//! See [`crate::a`].\nconst S: &str = \"crate::b\";\n#[cfg(test)]\nmod tests { use crate::a::A; }\n",
    );
    let g = graph(&src);
    assert_eq!(g["c"], BTreeSet::new(), "comments, strings, tests: {g:?}");
    let found = cycles(&g);
    assert_eq!(found, vec!["a -> b -> web::view -> a"], "{g:?}");

    // Break it through a leaf module: no cycle left.
    w("web/view.rs", "pub struct View(pub u8);\n");
    assert_eq!(cycles(&graph(&src)), Vec::<String>::new());
}
