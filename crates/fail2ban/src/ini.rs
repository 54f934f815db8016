//! fail2ban's configuration dialect: Python `ConfigParser` INI files with
//! `[INCLUDES]` `before`/`after`, `.local` overlays, `[DEFAULT]` shared across
//! every file read, `%(var)s` / `%(section/var)s` / `%(known/var)s` /
//! `%(default/var)s` interpolation and indented continuation lines.
//!
//! It owns reading and interpolating values; it knows nothing about what a
//! filter or a jail means (see `filter.rs` and `jail.rs`).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::LoadError;

/// Options of one section, in file order (later files replace values in place).
#[derive(Clone, Debug, Default)]
pub(crate) struct Section {
    pub(crate) opts: Vec<(String, String)>,
}

impl Section {
    pub(crate) fn get(&self, k: &str) -> Option<&str> {
        self.opts
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
    fn set(&mut self, k: &str, v: String) {
        if let Some(slot) = self.opts.iter_mut().find(|(n, _)| n == k) {
            slot.1 = v;
        } else {
            self.opts.push((k.to_string(), v));
        }
    }
}

/// One parsed file: defaults plus sections, before merging.
#[derive(Debug, Default)]
pub(crate) struct RawFile {
    defaults: Section,
    sections: Vec<(String, Section)>,
}

/// The merged result of reading a file with its includes and overlays.
#[derive(Debug, Default)]
pub(crate) struct Config {
    pub(crate) defaults: Section,
    pub(crate) sections: Vec<(String, Section)>,
    /// `KNOWN/<section>`: the values a later file replaced, for `%(known/x)s`.
    known: HashMap<String, Section>,
    /// Files read, in order.
    pub(crate) files: Vec<PathBuf>,
}

const MAX_DEPTH: usize = 10;

fn parse_file(path: &Path) -> Result<RawFile, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|e| LoadError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    parse_text(path, &text)
}

/// Parses INI text the way Python's `ConfigParser` does with fail2ban's settings
/// (`inline_comment_prefixes=";"`, empty lines allowed inside values).
pub(crate) fn parse_text(path: &Path, text: &str) -> Result<RawFile, LoadError> {
    let mut out = RawFile::default();
    // (section index or None for DEFAULT, option, indent, lines)
    let mut cur_section: Option<Option<usize>> = None;
    let mut cur_opt: Option<(String, usize, Vec<String>)> = None;
    let flush = |out: &mut RawFile,
                 sec: Option<Option<usize>>,
                 opt: &mut Option<(String, usize, Vec<String>)>| {
        if let (Some(sec), Some((name, _, lines))) = (sec, opt.take()) {
            let v = lines.join("\n").trim_end().to_string();
            match sec {
                None => out.defaults.set(&name, v),
                Some(i) => out.sections[i].1.set(&name, v),
            }
        }
    };
    for (lineno, raw_line) in text.lines().enumerate() {
        let line = raw_line.trim_end_matches('\r');
        let stripped = line.trim();
        if stripped.starts_with('#') || stripped.starts_with(';') {
            continue;
        }
        // inline comment: `;` preceded by whitespace
        let line = strip_inline_comment(line);
        let stripped = line.trim();
        let indent = line.len() - line.trim_start().len();
        if stripped.is_empty() {
            if let Some((_, _, lines)) = cur_opt.as_mut() {
                lines.push(String::new());
            }
            continue;
        }
        if let Some((_, opt_indent, lines)) = cur_opt.as_mut()
            && indent > *opt_indent
        {
            lines.push(stripped.to_string());
            continue;
        }
        flush(&mut out, cur_section, &mut cur_opt);
        if stripped.starts_with('[') && stripped.ends_with(']') && indent == 0 {
            let name = &stripped[1..stripped.len() - 1];
            if name == "DEFAULT" {
                cur_section = Some(None);
            } else if let Some(i) = out.sections.iter().position(|(n, _)| n == name) {
                cur_section = Some(Some(i));
            } else {
                out.sections.push((name.to_string(), Section::default()));
                cur_section = Some(Some(out.sections.len() - 1));
            }
            continue;
        }
        let Some(pos) = stripped.find(['=', ':']) else {
            return Err(LoadError::Syntax {
                path: path.to_path_buf(),
                line: lineno + 1,
                reason: format!("expected `name = value` or `[section]`, found {stripped:?}"),
            });
        };
        if cur_section.is_none() {
            return Err(LoadError::Syntax {
                path: path.to_path_buf(),
                line: lineno + 1,
                reason: "an option appears before any [section] header".into(),
            });
        }
        let name = stripped[..pos].trim().to_lowercase();
        let value = stripped[pos + 1..].trim().to_string();
        cur_opt = Some((name, indent, vec![value]));
    }
    flush(&mut out, cur_section, &mut cur_opt);
    Ok(out)
}

fn strip_inline_comment(line: &str) -> &str {
    let b = line.as_bytes();
    for i in 1..b.len() {
        if b[i] == b';' && (b[i - 1] == b' ' || b[i - 1] == b'\t') {
            return &line[..i];
        }
    }
    line
}

/// `X.conf` plus `X.local` if present (fail2ban's `_expandConfFilesWithLocal`).
fn with_local(p: &Path) -> Vec<PathBuf> {
    let mut v = vec![p.to_path_buf()];
    let local = p.with_extension("local");
    if local != p && local.is_file() {
        v.push(local);
    }
    v
}

/// Resolves the include tree of `path` (before, self, after), each with its `.local`.
fn includes(path: &Path, seen: &[PathBuf], out: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    for f in with_local(path) {
        if !f.is_file() {
            continue;
        }
        let raw = parse_file(&f)?;
        let dir = f.parent().unwrap_or(Path::new("."));
        let inc = raw
            .sections
            .iter()
            .find(|(n, _)| n == "INCLUDES")
            .map(|(_, s)| s);
        let mut before = Vec::new();
        let mut after = Vec::new();
        if let Some(inc) = inc {
            for (key, list) in [("before", &mut before), ("after", &mut after)] {
                if let Some(v) = inc.get(key) {
                    // %(...)s may appear in includes (rare); resolve against the file's own defaults.
                    for r in v.lines().map(str::trim).filter(|s| !s.is_empty()) {
                        let r = r.replace("%(__name__)s", "");
                        let rp = if Path::new(&r).is_absolute() {
                            PathBuf::from(&r)
                        } else {
                            dir.join(&r)
                        };
                        if seen.contains(&rp) {
                            continue;
                        }
                        let mut s = seen.to_vec();
                        s.push(f.clone());
                        includes(&rp, &s, list)?;
                    }
                }
            }
        }
        out.extend(before);
        out.push(f);
        out.extend(after);
    }
    Ok(())
}

impl Config {
    /// Reads `path` with its includes and `.local` overlays, then the
    /// `extra` files (e.g. `X.d/*.conf`) in order, later values winning.
    pub(crate) fn read(paths: &[PathBuf]) -> Result<Config, LoadError> {
        let mut files = Vec::new();
        for p in paths {
            includes(p, &[], &mut files)?;
        }
        let mut cfg = Config::default();
        for f in files {
            let raw = parse_file(&f)?;
            cfg.merge(raw);
            cfg.files.push(f);
        }
        Ok(cfg)
    }

    fn merge(&mut self, raw: RawFile) {
        for (k, v) in raw.defaults.opts {
            self.defaults.set(&k, v);
        }
        for (name, sec) in raw.sections {
            if let Some((_, old)) = self.sections.iter_mut().find(|(n, _)| *n == name) {
                let known = self.known.entry(name.clone()).or_default();
                for (k, v) in &sec.opts {
                    if let Some(prev) = old.get(k) {
                        known.set(k, prev.to_string());
                    }
                    old.set(k, v.clone());
                }
            } else {
                self.sections.push((name, sec));
            }
        }
    }

    pub(crate) fn section(&self, name: &str) -> Option<&Section> {
        self.sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s)
    }

    pub(crate) fn has_section(&self, name: &str) -> bool {
        self.section(name).is_some()
    }

    /// Raw (uninterpolated) lookup: `vars`, then the section, then `[DEFAULT]`.
    fn raw<'s>(
        &'s self,
        section: &str,
        opt: &str,
        vars: &'s [(String, String)],
    ) -> Option<&'s str> {
        if let Some((_, v)) = vars.iter().find(|(k, _)| k == opt) {
            return Some(v);
        }
        if let Some(v) = self.section(section).and_then(|s| s.get(opt)) {
            return Some(v);
        }
        self.defaults.get(opt)
    }

    /// fail2ban's `get_ex`: `sec/opt`, `known/opt`, `default/opt` or a plain option,
    /// interpolated. `None` if it does not exist.
    pub(crate) fn get_ex(
        &self,
        section: &str,
        opt: &str,
        vars: &[(String, String)],
    ) -> Result<Option<String>, LoadError> {
        if let Some((sec, o)) = opt.split_once('/') {
            let secl = sec.to_lowercase();
            let found = if secl == "known" {
                self.known
                    .get(section)
                    .and_then(|s| s.get(o))
                    .map(|v| (section.to_string(), v))
            } else if secl == "default" {
                self.defaults.get(o).map(|v| ("DEFAULT".to_string(), v))
            } else {
                self.section(sec)
                    .and_then(|s| s.get(o))
                    .map(|v| (sec.to_string(), v))
            };
            if let Some((s, v)) = found {
                return self.interpolate(&s, o, v, &[], 0).map(Some);
            }
        }
        self.get(section, opt, vars)
    }

    /// `ConfigParser.get(section, opt, vars=vars)` with interpolation.
    pub(crate) fn get(
        &self,
        section: &str,
        opt: &str,
        vars: &[(String, String)],
    ) -> Result<Option<String>, LoadError> {
        match self.raw(section, opt, vars) {
            None => Ok(None),
            Some(v) => self.interpolate(section, opt, v, vars, 0).map(Some),
        }
    }

    fn interpolate(
        &self,
        section: &str,
        opt: &str,
        value: &str,
        vars: &[(String, String)],
        depth: usize,
    ) -> Result<String, LoadError> {
        if depth > MAX_DEPTH {
            return Err(self.interp_err(
                section,
                opt,
                "interpolation is nested more than 10 levels (a self reference?)",
            ));
        }
        if !value.contains('%') {
            return Ok(value.to_string());
        }
        let mut out = String::with_capacity(value.len());
        let mut rest = value;
        while let Some(p) = rest.find('%') {
            out.push_str(&rest[..p]);
            let tail = &rest[p..];
            if let Some(t) = tail.strip_prefix("%%") {
                out.push('%');
                rest = t;
            } else if let Some(body) = tail.strip_prefix("%(") {
                let Some(end) = body.find(")s") else {
                    return Err(self.interp_err(
                        section,
                        opt,
                        "`%(` without a closing `)s` (write `%%` for a literal percent)",
                    ));
                };
                let name = body[..end].to_lowercase();
                rest = &body[end + 2..];
                // Python interpolates nested references in the map of the
                // section first asked for, whatever section a value came from.
                let (_, rval) = self.lookup_ref(section, &name, vars).ok_or_else(|| {
                    self.interp_err(
                        section,
                        opt,
                        &format!("`%({name})s` refers to an option that is not defined"),
                    )
                })?;
                out.push_str(&self.interpolate(section, opt, &rval, vars, depth + 1)?);
            } else {
                return Err(self.interp_err(
                    section,
                    opt,
                    "a lone `%` (write `%%` for a literal percent)",
                ));
            }
        }
        out.push_str(rest);
        Ok(out)
    }

    fn lookup_ref(
        &self,
        section: &str,
        name: &str,
        vars: &[(String, String)],
    ) -> Option<(String, String)> {
        if let Some((sec, o)) = name.split_once('/') {
            let secl = sec.to_lowercase();
            let v = if secl == "known" {
                self.known
                    .get(section)
                    .and_then(|s| s.get(o))
                    .map(|v| (section.to_string(), v.to_string()))
                    .or_else(|| {
                        self.defaults
                            .get(o)
                            .map(|v| ("DEFAULT".into(), v.to_string()))
                    })
            } else if secl == "default" {
                self.defaults
                    .get(o)
                    .map(|v| ("DEFAULT".into(), v.to_string()))
            } else {
                self.sections
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(sec))
                    .and_then(|(n, s)| s.get(o).map(|v| (n.clone(), v.to_string())))
                    .or_else(|| {
                        self.defaults
                            .get(o)
                            .map(|v| ("DEFAULT".into(), v.to_string()))
                    })
            };
            return v;
        }
        if name == "__name__" {
            return Some((section.to_string(), section.to_string()));
        }
        self.raw(section, name, vars)
            .map(|v| (section.to_string(), v.to_string()))
    }

    fn interp_err(&self, section: &str, opt: &str, why: &str) -> LoadError {
        LoadError::Interpolation {
            files: self.files.clone(),
            section: section.to_string(),
            option: opt.to_string(),
            reason: why.to_string(),
        }
    }

    /// Option names of a section (without `[DEFAULT]`), in order.
    pub(crate) fn options(&self, section: &str) -> Vec<String> {
        self.section(section)
            .map(|s| s.opts.iter().map(|(k, _)| k.clone()).collect())
            .unwrap_or_default()
    }
}

/// The files fail2ban reads for `name` in `dir`: `name.conf`, `name.d/*.conf`,
/// `name.local`, `name.d/*.local` (includes are resolved by [`Config::read`]).
pub(crate) fn layered(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut v = vec![dir.join(format!("{name}.conf"))];
    let d = dir.join(format!("{name}.d"));
    let mut confs = Vec::new();
    let mut locals = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&d) {
        for e in rd.flatten() {
            let p = e.path();
            match p.extension().and_then(|x| x.to_str()) {
                Some("conf") => confs.push(p),
                Some("local") => locals.push(p),
                _ => {}
            }
        }
    }
    confs.sort();
    locals.sort();
    v.extend(confs);
    // name.local is picked up by `with_local` of name.conf; keep order conf, d/*.conf, local, d/*.local
    let mut seen = HashSet::new();
    let mut out: Vec<PathBuf> = Vec::new();
    for p in v {
        if seen.insert(p.clone()) {
            out.push(p);
        }
    }
    out.extend(locals);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        let raw = parse_text(Path::new("t.conf"), text).unwrap();
        let mut c = Config::default();
        c.merge(raw);
        c
    }

    #[test]
    fn continuation_and_comments() {
        let c =
            cfg("[Definition]\nfailregex = ^a$\n    # comment\n            ^b$ ; inline\n\nx: 1\n");
        assert_eq!(
            c.get("Definition", "failregex", &[]).unwrap().unwrap(),
            "^a$\n^b$"
        );
        assert_eq!(c.get("Definition", "x", &[]).unwrap().unwrap(), "1");
    }

    #[test]
    fn interpolation_forms() {
        let c = cfg(
            "[DEFAULT]\nd = D\n[lt]\np = P%(d)s\n[Definition]\na = %(d)s-%(lt/p)s-%%Y\nb = %(default/d)s\n",
        );
        assert_eq!(c.get("Definition", "a", &[]).unwrap().unwrap(), "D-PD-%Y");
        assert_eq!(c.get("Definition", "b", &[]).unwrap().unwrap(), "D");
        let vars = vec![("d".to_string(), "V".to_string())];
        assert_eq!(c.get("Definition", "a", &vars).unwrap().unwrap(), "V-PV-%Y");
    }

    #[test]
    fn known_keeps_previous_value() {
        let mut c = cfg("[Definition]\nf = one\n");
        c.merge(
            parse_text(
                Path::new("t.local"),
                "[Definition]\nf = %(known/f)s\n    two\n",
            )
            .unwrap(),
        );
        assert_eq!(c.get("Definition", "f", &[]).unwrap().unwrap(), "one\ntwo");
    }

    #[test]
    fn self_reference_is_an_error() {
        let c = cfg("[Definition]\na = %(a)s\n");
        assert!(c.get("Definition", "a", &[]).is_err());
    }
}
