//! CrowdSec content through the CLI: `shield explain --crowdsec CFG --log-type T` (per line,
//! each stage's parser results and the scenarios the line was poured into, like `cscli
//! explain`) and `shield replay --crowdsec` with a config's allowlist. Runs on a CrowdSec
//! configuration directory laid out from the hub snapshot in ../shared/data/crowdsec (skipped
//! when absent).

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use common::shield;

const DATA: &str = "/work/shared/data/crowdsec";

/// A configuration directory as cscli lays it out: symlinks into the hub.
fn crowdsec_config(root: &Path, dir: &Path) {
    use std::os::unix::fs::symlink;
    for p in [
        "s00-raw/crowdsecurity/syslog-logs",
        "s01-parse/crowdsecurity/nginx-logs",
        "s02-enrich/crowdsecurity/dateparse-enrich",
        "s02-enrich/crowdsecurity/http-logs",
    ] {
        let (stage, rest) = p.split_once('/').unwrap();
        let d = dir.join("parsers").join(stage);
        std::fs::create_dir_all(&d).unwrap();
        let name = rest.rsplit('/').next().unwrap();
        symlink(
            root.join("hub/parsers").join(format!("{p}.yaml")),
            d.join(format!("{name}.yaml")),
        )
        .unwrap();
    }
    std::fs::create_dir_all(dir.join("scenarios")).unwrap();
    for s in ["http-sensitive-files", "http-probing"] {
        symlink(
            root.join(format!("hub/scenarios/crowdsecurity/{s}.yaml")),
            dir.join(format!("scenarios/{s}.yaml")),
        )
        .unwrap();
    }
    symlink(root.join("patterns"), dir.join("patterns")).unwrap();
    std::fs::write(
        dir.join("config.yaml"),
        format!(
            "config_paths:\n  data_dir: {}\n",
            root.join("data").display()
        ),
    )
    .unwrap();
}

fn explain(cfg: &Path, format: &str, input: &str) -> String {
    let mut child = shield()
        .args([
            "explain",
            "--format",
            format,
            "--log-type",
            "nginx",
            "--crowdsec",
        ])
        .arg(cfg)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn explain_shows_each_stage_and_the_scenarios_of_two_hub_lines() {
    let root = Path::new(DATA);
    if !root.join("hub/parsers").is_dir() {
        eprintln!("skipped: {DATA}/hub absent");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("crowdsec");
    crowdsec_config(root, &cfg);
    // The first line of the hub's nginx-http-sensitive-files test (client made public so no
    // whitelist applies), and a line no nginx parser takes.
    let hub_line = std::fs::read_to_string(
        root.join("hub/.tests/nginx-http-sensitive-files/nginx-http-sensitive-files.log"),
    )
    .unwrap()
    .lines()
    .next()
    .unwrap()
    .replace("127.0.0.1", "203.0.113.9");
    let input = format!("{hub_line}\nthis is not an access log line\n");

    let json = explain(&cfg, "json", &input);
    let v: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(v.len(), 2, "{json}");
    let stage = |x: &serde_json::Value, s: &str| -> Vec<(String, bool)> {
        x["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|st| st["stage"] == s)
            .map(|st| {
                st["parsers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| {
                        (
                            p["name"].as_str().unwrap().to_owned(),
                            p["success"].as_bool().unwrap(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        stage(&v[0], "s01-parse"),
        vec![("crowdsecurity/nginx-logs".to_owned(), true)],
        "{json}"
    );
    assert!(
        stage(&v[0], "s02-enrich").contains(&("crowdsecurity/http-logs".to_owned(), true)),
        "{json}"
    );
    assert_eq!(v[0]["parsed"], true, "{json}");
    assert_eq!(
        v[0]["scenarios"],
        serde_json::json!([
            "crowdsecurity/http-probing",
            "crowdsecurity/http-sensitive-files"
        ]),
        "{json}"
    );
    // The nginx grok created the fields (cscli's "+N").
    let created = v[0]["stages"][1]["parsers"][0]["created"].as_u64().unwrap();
    assert!(created >= 10, "{json}");
    // The second line stops at s01-parse: nginx-logs fails, nothing is poured.
    assert_eq!(
        stage(&v[1], "s01-parse"),
        vec![("crowdsecurity/nginx-logs".to_owned(), false)],
        "{json}"
    );
    assert_eq!(v[1]["parsed"], false, "{json}");
    assert_eq!(v[1]["scenarios"], serde_json::json!([]), "{json}");

    let text = explain(&cfg, "text", &input);
    let first = text.split("\n\n").next().unwrap();
    assert!(first.starts_with(&format!("line: {hub_line}\n")), "{text}");
    assert!(
        first.contains("\t├ s01-parse\n\t|\t└ 🟢 crowdsecurity/nginx-logs (+"),
        "{text}"
    );
    assert!(first.contains("\t├-------- parser success 🟢\n\t├ Scenarios\n\t\t├ 🟢 crowdsecurity/http-probing\n\t\t└ 🟢 crowdsecurity/http-sensitive-files"), "{text}");
    assert!(
        text.contains("\t|\t└ 🔴 crowdsecurity/nginx-logs\n\t└-------- parser failure 🔴"),
        "{text}"
    );
}

/// `shield replay --crowdsec` with `--config`: the config's `[decisions] allowlist` protects
/// addresses from CrowdSec's decisions as it does from Shield's own.
#[test]
fn replay_crowdsec_applies_the_config_allowlist() {
    let root = Path::new(DATA);
    if !root.join("hub/parsers").is_dir() {
        eprintln!("skipped: {DATA}/hub absent");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("crowdsec");
    crowdsec_config(root, &cfg);
    let log = std::fs::read_to_string(
        root.join("hub/.tests/nginx-http-sensitive-files/nginx-http-sensitive-files.log"),
    )
    .unwrap();
    let text = log.replace("127.0.0.1", "203.0.113.9") + &log.replace("127.0.0.1", "198.51.100.4");
    let file = dir.path().join("access.log");
    std::fs::write(&file, text).unwrap();
    let shield_toml = dir.path().join("shield.toml");
    std::fs::write(
        &shield_toml,
        "[decisions]\nallowlist = [\"198.51.100.0/24\"]\nallow_own_addresses = false\nallow_ssh_sessions = false\n",
    )
    .unwrap();
    let run = |with_config: bool| -> serde_json::Value {
        let mut c = shield();
        if with_config {
            c.arg("--config").arg(&shield_toml);
        }
        let out = c
            .args([
                "replay",
                "--format",
                "json",
                "--log-type",
                "nginx",
                "--crowdsec",
            ])
            .arg(&cfg)
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let banned = |v: &serde_json::Value| -> Vec<String> {
        let mut b: Vec<String> = v["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["value"].as_str().unwrap().to_owned())
            .collect();
        b.sort();
        b
    };
    let plain = run(false);
    assert_eq!(
        banned(&plain),
        vec!["198.51.100.4", "203.0.113.9"],
        "{plain}"
    );
    let with = run(true);
    assert_eq!(banned(&with), vec!["203.0.113.9"], "{with}");
    assert!(with["allowlisted"].as_u64().unwrap() >= 1, "{with}");
}
