//! CrowdSec's acquisition configuration (`acquis.yaml` and `acquis.d/*.yaml`, multi-document):
//! what each datasource reads and which log type (`labels.type`) it gives its lines. Owns
//! reading it; turning it into Shield sources is the CLI's business (`shield import-crowdsec`).

use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use crate::Error;

/// One datasource (one YAML document).
#[derive(Debug, Clone, PartialEq)]
pub struct Acquisition {
    /// The file it was read from.
    pub file: PathBuf,
    /// `source:`; `file` when absent (CrowdSec's default when `filename(s)` is set).
    pub source: String,
    /// `filenames:` plus `filename:`.
    pub filenames: Vec<String>,
    /// `journalctl_filter:` (journalctl arguments, usually `FIELD=value` matches).
    pub journalctl_filter: Vec<String>,
    /// `listen_addr:` / `listen_port:` of a syslog datasource.
    pub listen_addr: Option<String>,
    pub listen_port: Option<u16>,
    /// `labels.type`.
    pub log_type: Option<String>,
    /// Top-level keys not understood here (for notes), sorted.
    pub other_keys: Vec<String>,
}

/// Where an installation keeps its acquisition files: `crowdsec_service.acquisition_path` and
/// `acquisition_dir` of `CFG/config.yaml`, else `CFG/acquis.yaml` and `CFG/acquis.d`.
pub fn acquisition_files(cfg: &Path) -> Vec<PathBuf> {
    let conf: Option<Json> = std::fs::read_to_string(cfg.join("config.yaml"))
        .ok()
        .and_then(|t| serde_saphyr::from_str(&t).ok());
    let svc = conf.as_ref().and_then(|c| c.get("crowdsec_service"));
    let get = |k: &str| {
        svc.and_then(|s| s.get(k))
            .and_then(|v| v.as_str())
            .map(PathBuf::from)
    };
    let mut out = Vec::new();
    let main = get("acquisition_path").unwrap_or_else(|| cfg.join("acquis.yaml"));
    if main.is_file() {
        out.push(main);
    }
    let dir = get("acquisition_dir").unwrap_or_else(|| cfg.join("acquis.d"));
    let mut more: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect()
        })
        .unwrap_or_default();
    more.sort();
    out.extend(more);
    out
}

/// Every datasource of an installation's acquisition files, in file order.
pub fn read_installation(cfg: &Path) -> Result<Vec<Acquisition>, Error> {
    let mut out = Vec::new();
    for f in acquisition_files(cfg) {
        out.extend(read_file(&f)?);
    }
    Ok(out)
}

/// The datasources of one acquisition file.
pub fn read_file(path: &Path) -> Result<Vec<Acquisition>, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
        path: path.to_owned(),
        source: e,
    })?;
    parse(path, &text)
}

/// [`read_file`] on text already read.
pub fn parse(path: &Path, text: &str) -> Result<Vec<Acquisition>, Error> {
    let docs: Vec<Option<Json>> = serde_saphyr::from_multiple(text).map_err(|e| Error::Yaml {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let mut out = Vec::new();
    for d in docs.into_iter().flatten() {
        let Some(m) = d.as_object() else {
            return Err(Error::Invalid {
                path: path.to_owned(),
                message: "a datasource must be a mapping (filenames:, labels: ...)".into(),
            });
        };
        let strs = |k: &str| -> Vec<String> {
            match m.get(k) {
                Some(Json::Array(a)) => a.iter().filter_map(scalar).collect(),
                Some(v) => scalar(v).into_iter().collect(),
                None => Vec::new(),
            }
        };
        let mut filenames = strs("filenames");
        filenames.extend(strs("filename"));
        let known = [
            "source",
            "filenames",
            "filename",
            "journalctl_filter",
            "listen_addr",
            "listen_port",
            "labels",
            "mode",
            "poll_without_inotify",
            "force_inotify",
        ];
        let mut other_keys: Vec<String> = m
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .cloned()
            .collect();
        other_keys.sort();
        let source = m
            .get("source")
            .and_then(scalar)
            .unwrap_or_else(|| "file".to_owned());
        out.push(Acquisition {
            file: path.to_owned(),
            source,
            filenames,
            journalctl_filter: strs("journalctl_filter"),
            listen_addr: m.get("listen_addr").and_then(scalar),
            listen_port: m
                .get("listen_port")
                .and_then(scalar)
                .and_then(|p| p.parse().ok()),
            log_type: m.get("labels").and_then(|l| l.get("type")).and_then(scalar),
            other_keys,
        });
    }
    Ok(out)
}

fn scalar(v: &Json) -> Option<String> {
    match v {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        Json::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_with_every_shape() {
        let text = "filenames:\n  - /var/log/nginx/*.log\nlabels:\n  type: nginx\n---\nfilename: /var/log/a.log\nlabels:\n  type: apache2\n---\nsource: journalctl\njournalctl_filter:\n - \"_SYSTEMD_UNIT=ssh.service\"\nlabels:\n  type: syslog\n---\nsource: syslog\nlisten_addr: 127.0.0.1\nlisten_port: 4242\nlabels:\n  type: syslog\n---\nsource: docker\ncontainer_name:\n  - web\nlabels:\n  type: nginx\n---\n";
        let a = parse(Path::new("acquis.yaml"), text).unwrap();
        assert_eq!(a.len(), 5);
        assert_eq!(a[0].source, "file");
        assert_eq!(a[0].filenames, vec!["/var/log/nginx/*.log"]);
        assert_eq!(a[0].log_type.as_deref(), Some("nginx"));
        assert_eq!(a[1].filenames, vec!["/var/log/a.log"]);
        assert_eq!(a[2].journalctl_filter, vec!["_SYSTEMD_UNIT=ssh.service"]);
        assert_eq!(a[3].listen_port, Some(4242));
        assert_eq!(a[4].source, "docker");
        assert_eq!(a[4].other_keys, vec!["container_name"]);
    }
}
