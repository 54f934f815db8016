//! CrowdSec content in the real daemon: `[crowdsec]` in shield.toml and a source with a CrowdSec
//! `log_type`. Lines from CrowdSec's own hub test logs (../shared/data/crowdsec, read at run
//! time; skipped when absent) are tailed; the overflow becomes a decision through Shield's
//! decision stage, visible in `shield decisions list` with the CrowdSec scenario's name.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Daemon, config, shield, wait_for};

const DATA: &str = "/work/shared/data/crowdsec";

fn data_root() -> Option<&'static Path> {
    let p = Path::new(DATA);
    p.join("hub/.index.json").is_file().then_some(p)
}

/// The hub test log of `test`, its 127.0.0.1 client rewritten to `ip`.
fn hub_log(root: &Path, test: &str, ip: &str) -> String {
    std::fs::read_to_string(root.join(format!("hub/.tests/{test}/{test}.log")))
        .unwrap()
        .replace("127.0.0.1", ip)
}

fn crowdsec_table(root: &Path) -> String {
    format!(
        "[crowdsec]\nhub = \"{}\"\ncollections = [\"crowdsecurity/nginx\"]\nparsers = [\"crowdsecurity/syslog-logs\", \"crowdsecurity/dateparse-enrich\"]\n",
        root.join("hub").display()
    )
}

#[test]
fn daemon_bans_what_a_crowdsec_scenario_overflows_on() {
    let Some(root) = data_root() else {
        eprintln!("skipped: {DATA}/hub absent");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    // One client probing sensitive files (the hub's own test log), one ordinary client.
    let mut text = hub_log(root, "nginx-http-sensitive-files", "203.0.113.77");
    text += "198.51.100.3 - - [30/Sep/2021:09:58:05 +0200] \"GET /index.html HTTP/1.1\" 200 612 \"-\" \"Mozilla/5.0\"\n";
    std::fs::write(&log, &text).unwrap();
    let source = format!(
        "[[source]]\nname = \"web\"\npaths = [\"{}\"]\nfrom_start = true\nlog_type = \"nginx\"\n",
        log.display()
    );
    let d = Daemon::start(dir.path(), &config(&source, &crowdsec_table(root)));
    let found = wait_for(Duration::from_secs(20), || {
        d.active()
            .into_iter()
            .find(|x| x["target"] == "203.0.113.77/32")
    });
    let dec = found.unwrap_or_else(|| panic!("no decision on the prober:\n{}", d.log()));
    let scenario = dec["scenario"].as_str().unwrap();
    // The first scenario (in load order) this line overflowed: a 404 burst on sensitive paths
    // is both http-probing and http-sensitive-files.
    assert!(
        [
            "crowdsecurity/http-probing",
            "crowdsecurity/http-sensitive-files"
        ]
        .contains(&scenario),
        "{dec}"
    );
    assert_eq!(dec["origin"], "local", "{dec}");
    assert_eq!(dec["type"], "ban", "{dec}");
    // CrowdSec's default profile: 4 hours.
    let len = dec["expires"].as_i64().unwrap() - dec["created"].as_i64().unwrap();
    assert_eq!(len, 4 * 3600, "{dec}");
    assert!(
        d.active().iter().all(|x| x["target"] != "198.51.100.3/32"),
        "the ordinary client was banned"
    );
    // Every line was read and CrowdSec parsed them (counted as matched).
    let st = d.status();
    let web = st["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "web")
        .unwrap()
        .clone();
    assert_eq!(
        web["lines"].as_u64().unwrap(),
        text.lines().count() as u64,
        "{web}"
    );
    assert!(web["matched"].as_u64().unwrap() > 0, "{web}");
}

#[test]
fn check_names_a_broken_hub_item_and_still_loads_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let cs = dir.path().join("crowdsec");
    let p = cs.join("parsers/s01-parse");
    std::fs::create_dir_all(&p).unwrap();
    std::fs::create_dir_all(cs.join("patterns")).unwrap();
    std::fs::create_dir_all(cs.join("scenarios")).unwrap();
    std::fs::write(
        p.join("good.yaml"),
        "name: t/good\nfilter: \"1 == 1\"\ngrok:\n  pattern: 'fail from %{IP:source_ip}'\n  apply_on: Line.Raw\nstatics:\n  - meta: source_ip\n    expression: evt.Parsed.source_ip\n",
    )
    .unwrap();
    std::fs::write(
        p.join("typo.yaml"),
        "name: t/typo\nfilter: \"1 == 1\"\ngrok:\n  pattern: 'x %{IP:source_ip}'\n  aply_on: Line.Raw\n",
    )
    .unwrap();
    std::fs::write(
        p.join("badgrok.yaml"),
        "name: t/badgrok\nfilter: \"1 == 1\"\ngrok:\n  pattern: '%{NO_SUCH_PATTERN:x}'\n  apply_on: Line.Raw\n",
    )
    .unwrap();
    std::fs::write(
        cs.join("scenarios/badexpr.yaml"),
        "type: leaky\nname: t/badexpr\ndescription: d\nfilter: \"evt.Meta.source_ip in [\"\ncapacity: 1\nleakspeed: 10s\n",
    )
    .unwrap();
    std::fs::write(
        cs.join("scenarios/good.yaml"),
        "type: leaky\nname: t/ok\ndescription: d\nfilter: \"evt.Meta.source_ip != ''\"\ncapacity: 1\nleakspeed: 10s\nlabels:\n  remediation: true\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("in.log"), "").unwrap();
    let cfg = dir.path().join("shield.toml");
    std::fs::write(
        &cfg,
        config(
            &format!(
                "[[source]]\nname = \"app\"\npaths = [\"{}\"]\nlog_type = \"app\"\n",
                dir.path().join("in.log").display()
            ),
            &format!("[crowdsec]\nconfig_dir = \"{}\"\n", cs.display()),
        )
        .replace("@DIR@", dir.path().to_str().unwrap()),
    )
    .unwrap();
    let out = shield()
        .args(["--config", cfg.to_str().unwrap(), "check"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("typo.yaml:5:3: unknown field `aply_on`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("badexpr.yaml:4:") && stderr.contains("filter"),
        "{stderr}"
    );
    assert!(
        stderr.contains("badgrok.yaml:4:")
            && stderr.contains("'NO_SUCH_PATTERN' pattern doesn't exist"),
        "{stderr}"
    );
    // One pipeline with the scenario that loaded; three items skipped.
    assert!(stdout.contains("1 pipeline(s), 1 scenario(s)"), "{stdout}");
    assert!(stdout.contains("3 CrowdSec item(s) skipped"), "{stdout}");
}
