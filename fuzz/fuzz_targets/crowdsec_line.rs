//! A log line an attacker writes through CrowdSec content loaded the way the daemon loads it:
//! the hub's nginx and sshd collections with syslog-logs and dateparse-enrich (hub read at run
//! time from ../shared/data/crowdsec, or SHIELD_CROWDSEC_HUB), every parser stage, scenario and
//! postoverflow. Without a hub, a tiny built-in installation (one grok parser, one date
//! enricher, one leaky scenario) written to a temp dir. The first byte picks the log type
//! (nginx or syslog); the rest are lines. Never a panic, whatever the bytes.
#![no_main]
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use shield_crowdsec::event::Event;
use shield_crowdsec::hub::HubEngine;
use shield_crowdsec::setup::{Content, load};

fn builtin() -> Content {
    let dir = tempfile::tempdir().expect("temp dir").keep();
    let p = dir.join("parsers/s01-parse");
    let e = dir.join("parsers/s02-enrich");
    for d in [&p, &e, &dir.join("patterns"), &dir.join("scenarios")] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    std::fs::write(
        p.join("fail.yaml"),
        "name: fuzz/fail\nfilter: \"1 == 1\"\nonsuccess: next_stage\ngrok:\n  pattern: '^%{SYSLOGTIMESTAMP:timestamp} %{DATA:host} %{WORD:prog}(?:\\[%{POSINT:pid}\\])?: Failed password for %{USERNAME:user} from %{IP:source_ip}'\n  apply_on: Line.Raw\nstatics:\n  - meta: source_ip\n    expression: evt.Parsed.source_ip\n  - meta: log_type\n    value: fuzz_fail\n  - target: evt.StrTime\n    expression: evt.Parsed.timestamp\n",
    )
    .expect("write");
    std::fs::write(
        e.join("date.yaml"),
        "name: fuzz/date\nfilter: \"evt.StrTime != ''\"\nstatics:\n  - target: MarshaledTime\n    method: ParseDate\n    expression: evt.StrTime\n",
    )
    .expect("write");
    std::fs::write(
        dir.join("scenarios/bf.yaml"),
        "type: leaky\nname: fuzz/bf\ndescription: d\nfilter: \"evt.Meta.log_type == 'fuzz_fail'\"\ngroupby: evt.Meta.source_ip\ncapacity: 3\nleakspeed: 10s\nlabels:\n  remediation: true\n",
    )
    .expect("write");
    Content::Installation { config_dir: dir.clone(), data_dir: Some(dir) }
}

fn engine() -> &'static Mutex<HubEngine> {
    static E: OnceLock<Mutex<HubEngine>> = OnceLock::new();
    E.get_or_init(|| {
        let root = PathBuf::from(
            std::env::var("SHIELD_CROWDSEC_HUB")
                .unwrap_or_else(|_| "/work/shared/data/crowdsec/hub".into()),
        );
        let content = if root.join(".index.json").is_file() {
            let beside = root.parent().map(|p| p.to_owned()).unwrap_or_default();
            Content::Hub {
                hub: root.clone(),
                patterns: beside.join("patterns"),
                data: beside.join("data"),
                collections: vec!["crowdsecurity/nginx".into(), "crowdsecurity/sshd".into()],
                parsers: vec![
                    "crowdsecurity/syslog-logs".into(),
                    "crowdsecurity/dateparse-enrich".into(),
                ],
                scenarios: vec![],
                postoverflows: vec![],
            }
        } else {
            builtin()
        };
        Mutex::new(load(&content).expect("the fuzz content loads").engine)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else { return };
    let log_type = if kind & 1 == 0 { "nginx" } else { "syslog" };
    let labels = Arc::new(BTreeMap::from([("type".to_owned(), log_type.to_owned())]));
    let text = String::from_utf8_lossy(rest);
    let mut e = engine().lock().unwrap_or_else(|p| p.into_inner());
    for line in text.split('\n').filter(|l| !l.is_empty()) {
        let _ = e.process(Event::from_line(line, "fuzz", labels.clone()), None);
    }
});
