//! CrowdSec content in the real daemon: `[crowdsec]` in shield.toml and a source with a CrowdSec
//! `log_type`. Lines from CrowdSec's own hub test logs (../shared/data/crowdsec, read at run
//! time; skipped when absent) are tailed; the overflow becomes a decision through Shield's
//! decision stage, visible in `shield decisions list` with the CrowdSec scenario's name.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Daemon, WebLab, config, curl, shield, wait_for};

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

/// CrowdSec's `remediation: false`: the overflow is an alert (stored with its evidence, listed by
/// `shield alerts list`) and decides nothing; a line that overflows a scenario with remediation
/// is still banned. A small installation written here (no hub needed).
#[test]
fn a_scenario_without_remediation_raises_an_alert_and_decides_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cs = dir.path().join("crowdsec");
    let p = cs.join("parsers/s01-parse");
    std::fs::create_dir_all(&p).unwrap();
    std::fs::create_dir_all(cs.join("patterns")).unwrap();
    std::fs::create_dir_all(cs.join("scenarios")).unwrap();
    std::fs::write(
        p.join("app.yaml"),
        "name: t/app\nfilter: \"1 == 1\"\nonsuccess: next_stage\ngrok:\n  pattern: '%{WORD:what} from %{IP:source_ip}'\n  apply_on: Line.Raw\nstatics:\n  - meta: source_ip\n    expression: evt.Parsed.source_ip\n  - meta: log_type\n    expression: \"'t_' + evt.Parsed.what\"\n",
    )
    .unwrap();
    std::fs::write(
        cs.join("patterns/base"),
        "WORD \\b\\w+\\b\nIP (?:\\d{1,3}\\.){3}\\d{1,3}\n",
    )
    .unwrap();
    std::fs::write(
        cs.join("scenarios/watch.yaml"),
        "type: trigger\nname: t/watch\ndescription: d\nfilter: \"evt.Meta.log_type == 't_watch'\"\ngroupby: evt.Meta.source_ip\nlabels:\n  remediation: false\n",
    )
    .unwrap();
    std::fs::write(
        cs.join("scenarios/fail.yaml"),
        "type: leaky\nname: t/fail\ndescription: d\nfilter: \"evt.Meta.log_type == 't_fail'\"\ncapacity: 1\nleakspeed: 10s\ngroupby: evt.Meta.source_ip\nlabels:\n  remediation: true\n",
    )
    .unwrap();
    let log = dir.path().join("app.log");
    std::fs::write(
        &log,
        "watch from 203.0.113.8\nfail from 203.0.113.9\nfail from 203.0.113.9\nfail from 203.0.113.9\n",
    )
    .unwrap();
    let source = format!(
        "[[source]]\nname = \"app\"\npaths = [\"{}\"]\nfrom_start = true\nlog_type = \"app\"\n",
        log.display()
    );
    let table = format!("[crowdsec]\nconfig_dir = \"{}\"\n", cs.display());
    let d = Daemon::start(dir.path(), &config(&source, &table));
    let banned = wait_for(Duration::from_secs(20), || {
        d.active()
            .into_iter()
            .find(|x| x["target"] == "203.0.113.9/32")
    });
    let banned = banned.unwrap_or_else(|| panic!("no ban from t/fail:\n{}", d.log()));
    assert_eq!(banned["scenario"], "t/fail", "{banned}");
    let alerts = d.json(&["alerts", "list", "--format", "json"]);
    let alerts = alerts.as_array().unwrap();
    let watch: Vec<_> = alerts
        .iter()
        .filter(|a| a["scenario"] == "t/watch")
        .collect();
    assert_eq!(watch.len(), 1, "{alerts:#?}\n{}", d.log());
    assert_eq!(watch[0]["target"], "203.0.113.8/32", "{:#?}", watch[0]);
    assert!(
        d.active().iter().all(|x| x["target"] != "203.0.113.8/32"),
        "remediation: false banned its source"
    );
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

/// End to end with real components: nginx and the daemon (nftables layer) in a server
/// namespace; an attacker namespace probes for sensitive files; CrowdSec's
/// http-sensitive-files scenario (from the hub, run by Shield) overflows on nginx's access log
/// and the attacker lands in the kernel set, while another client is still served.
#[test]
fn crowdsec_scenario_drops_a_real_prober_in_the_kernel() {
    let Some(root) = data_root() else {
        eprintln!("skipped: {DATA}/hub absent");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let lab = WebLab::start(["css", "csa", "csc"], 232, dir.path());
    let (srv, atk, cli) = (&lab.srv, &lab.atk, &lab.cli);
    let access = dir.path().join("access.log");
    let config = format!(
        "[store]\npath = \"@DIR@/shield.db\"\n\n[firewall]\nbackend = \"nftables\"\n\n[api]\nlisten = \"\"\nsocket = \"@DIR@/shield.sock\"\n\n{}\n[[source]]\nname = \"web\"\npaths = [\"{}\"]\nlog_type = \"nginx\"\n",
        crowdsec_table(root),
        access.display()
    );
    let d = Daemon::start_in(Some(&srv.name), dir.path(), &config);
    for p in [
        "/.env",
        "/.git/config",
        "/.bash_history",
        "/.htpasswd",
        "/.ssh/id_rsa",
        "/.aws/credentials",
        "/backup.sql",
    ] {
        curl(atk, &format!("http://10.232.1.1{p}"));
    }
    let in_set = wait_for(Duration::from_secs(15), || {
        let s = srv.ok(&["nft", "list", "set", "inet", "shield", "ban4"]);
        s.contains("10.232.1.2").then_some(s)
    });
    assert!(
        in_set.is_some(),
        "prober not in the kernel set:\n{}\n{}",
        std::fs::read_to_string(&access).unwrap_or_default(),
        d.log()
    );
    let dec = d
        .active()
        .into_iter()
        .find(|x| x["target"] == "10.232.1.2/32")
        .unwrap();
    assert!(
        dec["scenario"]
            .as_str()
            .unwrap()
            .starts_with("crowdsecurity/http-"),
        "{dec}"
    );
    assert!(
        !curl(atk, "http://10.232.1.1/"),
        "the prober still gets pages"
    );
    assert!(
        curl(cli, "http://10.232.2.1/"),
        "the other client lost service"
    );
}
