//! `shield import-crowdsec`: a CrowdSec installation's acquisition (acquis.yaml, acquis.d,
//! multi-document) becomes Shield sources with `log_type` and a `[crowdsec] config_dir`; what
//! cannot be carried over is listed, never dropped silently; the result passes `shield check`.

mod common;

use std::path::Path;

use common::shield;

fn import(dir: &Path) -> (String, String) {
    let out = shield().arg("import-crowdsec").arg(dir).output().unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{o}\n{e}");
    (o, e)
}

fn check(text: &str, dir: &Path) -> String {
    let cfg = dir.join("imported.toml");
    // Keep the daemon's state out of /var/lib and /run: only the imported part is under test.
    let text = format!(
        "[store]\npath = \"{0}/s.db\"\n[firewall]\nbackend = \"dry-run\"\n[api]\nlisten = \"\"\nsocket = \"{0}/s.sock\"\n\n{text}",
        dir.display()
    );
    std::fs::write(&cfg, text).unwrap();
    let out = shield()
        .args(["--config", cfg.to_str().unwrap(), "check"])
        .output()
        .unwrap();
    let o = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{o}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    o
}

#[test]
fn debian_crowdsec_acquisition_imports_and_checks() {
    let etc = Path::new("/etc/crowdsec");
    if !etc.join("acquis.yaml").is_file() {
        eprintln!("skipped: /etc/crowdsec/acquis.yaml absent (run .ci/install-deps)");
        return;
    }
    let (out, err) = import(etc);
    assert!(
        out.contains("[crowdsec]\nconfig_dir = \"/etc/crowdsec\""),
        "{out}"
    );
    assert!(
        out.contains("paths = [\"/var/log/nginx/*.log\"]\nlog_type = \"nginx\""),
        "{out}"
    );
    assert!(
        out.contains(
            "type = \"journald\"\njournal_match = [\"_SYSTEMD_UNIT=ssh.service\"]\nlog_type = \"syslog\""
        ),
        "{out}"
    );
    // Debian's acquis.yaml names a relative test file: said, not dropped silently.
    assert!(err.contains("./tests/nginx/nginx.log"), "{err}");
    assert!(out.contains("# not carried over: "), "{out}");
    let dir = tempfile::tempdir().unwrap();
    let o = check(&out, dir.path());
    assert!(o.contains(": ok ("), "{o}");
}

#[test]
fn handwritten_acquisition_with_acquis_d_and_unsupported_sources() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cs = d.join("crowdsec");
    std::fs::create_dir_all(cs.join("acquis.d")).unwrap();
    std::fs::create_dir_all(cs.join("parsers/s01-parse")).unwrap();
    std::fs::create_dir_all(cs.join("patterns")).unwrap();
    std::fs::write(
        cs.join("parsers/s01-parse/p.yaml"),
        "name: t/p\nfilter: \"1 == 1\"\n",
    )
    .unwrap();
    let logs = d.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(logs.join("app.log"), "").unwrap();
    std::fs::write(
        cs.join("acquis.yaml"),
        format!(
            "filenames:\n  - {0}/*.log\n  - relative/x.log\nlabels:\n  type: nginx\n---\nfilename: {0}/app.log\nlabels:\n  type: myapp\n---\nsource: docker\ncontainer_name:\n  - web\nlabels:\n  type: nginx\n",
            logs.display()
        ),
    )
    .unwrap();
    std::fs::write(
        cs.join("acquis.d/more.yaml"),
        "source: syslog\nlisten_addr: 127.0.0.1\nlisten_port: 5514\nlabels:\n  type: syslog\n---\nsource: journalctl\njournalctl_filter:\n  - \"-u\"\n  - \"_COMM=sshd\"\nlabels:\n  type: syslog\n---\nfilenames:\n  - /nonexistent-dir/x.log\nlabels:\n  type: nginx\n---\nfilename: /var/log/x.log\n",
    )
    .unwrap();
    let (out, err) = import(&cs);
    assert!(
        out.contains(&format!(
            "name = \"nginx\"\npaths = [\"{}/*.log\"]\nlog_type = \"nginx\"",
            logs.display()
        )),
        "{out}"
    );
    assert!(out.contains("name = \"myapp\""), "{out}");
    assert!(
        out.contains("type = \"syslog\"\nlisten = \"127.0.0.1:5514\"\nprotocols = [\"udp\"]\nlog_type = \"syslog\""),
        "{out}"
    );
    assert!(out.contains("journal_match = [\"_COMM=sshd\"]"), "{out}");
    assert!(out.contains("# [[source]]\n# name = \"nginx-2\""), "{out}");
    for said in [
        "relative/x.log",
        "`docker` datasource",
        "container_name",
        "`-u`",
        "/nonexistent-dir/x.log",
        "without labels.type",
    ] {
        assert!(err.contains(said), "{said} not in {err}");
        assert!(out.contains(said), "{said} not in the file's notes: {out}");
    }
    let o = check(&out, d);
    assert!(o.contains("ok (4 pipeline(s)"), "{o}");
}
