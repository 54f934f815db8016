//! The `shield` binary on files: replay, explain, check, and bad input.

mod common;

use std::collections::BTreeSet;
use std::io::Write;

use common::{ok, shield};

fn replay_matches_truth(kind: &str, lines: &str, attackers: &str) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join(format!("{kind}.log"));
    let truth = dir.path().join("truth.txt");
    ok(&[
        "gen-log",
        kind,
        "--lines",
        lines,
        "--attackers",
        attackers,
        "--seed",
        "7",
        "--out",
        log.to_str().unwrap(),
        "--truth",
        truth.to_str().unwrap(),
    ]);
    let out = ok(&["replay", "--format", "json", log.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["lines"].as_u64().unwrap(), lines.parse::<u64>().unwrap());
    assert!(v["matched"].as_u64().unwrap() > 0);
    assert!(v["elapsed_s"].as_f64().is_some());
    let banned: BTreeSet<String> = v["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            for k in ["scope", "value", "type", "scenario", "duration_s"] {
                assert!(d.get(k).is_some(), "decision lacks `{k}`: {d}");
            }
            d["value"].as_str().unwrap().to_string()
        })
        .collect();
    // IPv6 attackers are counted and banned per /64 (a host usually holds a whole /64).
    let expected: BTreeSet<String> = std::fs::read_to_string(&truth)
        .unwrap()
        .lines()
        .map(|l| match l.parse::<std::net::IpAddr>().unwrap() {
            std::net::IpAddr::V4(_) => l.to_string(),
            std::net::IpAddr::V6(a) => {
                let seg = a.segments();
                let net = std::net::Ipv6Addr::new(seg[0], seg[1], seg[2], seg[3], 0, 0, 0, 0);
                format!("{net}/64")
            }
        })
        .collect();
    let missed: Vec<_> = expected.difference(&banned).collect();
    let innocent: Vec<_> = banned.difference(&expected).collect();
    assert!(
        missed.is_empty() && innocent.is_empty(),
        "missed {missed:?}, innocent banned {innocent:?}"
    );
}

#[test]
fn replay_flags_exactly_the_generated_sshd_attackers() {
    replay_matches_truth("sshd", "50000", "30");
}

#[test]
fn replay_flags_exactly_the_generated_nginx_attackers() {
    replay_matches_truth("nginx", "50000", "30");
}

#[test]
fn explain_reports_rule_host_time_and_fields() {
    let mut c = shield()
        .args(["explain", "--format", "json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(
        b"Mar  1 10:00:00 web1 sshd[42]: Failed password for invalid user admin from 203.0.113.7 port 5000 ssh2\nhello world\n",
    ).unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = out
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["matched"], true);
    assert_eq!(lines[0]["host"], "203.0.113.7");
    assert!(lines[0]["rule"].as_str().unwrap().starts_with("sshd"));
    assert!(
        lines[0]["time"]
            .as_str()
            .unwrap()
            .contains("-03-01T10:00:00")
    );
    assert_eq!(lines[0]["fields"]["user"], "admin");
    assert_eq!(lines[1]["matched"], false);
    assert!(lines[1]["rule"].is_null() && lines[1]["host"].is_null());
}

#[test]
fn broken_config_names_file_line_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[store]\npath = \"/tmp/x.db\"\n\n[[source]]\nname = \"s\"\ntype = \"stdin\"\npacks = [\"sshd\"]\nfrom_begining = true\n").unwrap();
    let out = shield()
        .args(["--config", cfg.to_str().unwrap(), "check"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:8:1: unknown field `from_begining`",
            cfg.display()
        )),
        "{err}"
    );
    assert!(err.contains("hint:"), "{err}");

    std::fs::write(&cfg, "[[source]]\nname = \"s\"\ntype = \"stdin\"\npacks = [\"sshd\"]\n\n[[scenario]]\nname = \"x\"\nrules = [\"sshd-*\"]\ncapacity = 3\nleak = \"ten seconds\"\nduration = \"1h\"\n").unwrap();
    let out = shield()
        .args(["--config", cfg.to_str().unwrap(), "check"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:10:8"), "{err}");

    let out = shield()
        .args(["--config", "/nonexistent/shield.toml", "check"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the config"));
}

/// Issue 19, item 8: `shield check` accepted a one-character `[api] token`.
#[test]
fn check_refuses_a_guessable_api_token() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("shield.toml");
    let base = "[[source]]\nname = \"s\"\ntype = \"stdin\"\npacks = [\"sshd\"]\n\n[api]\n";
    for weak in [
        "x",
        "changeme",
        "3f9a0c41d27be8856e10a4c9b7d2f0e",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ] {
        std::fs::write(&cfg, format!("{base}token = \"{weak}\"\n")).unwrap();
        let out = shield()
            .args(["--config", cfg.to_str().unwrap(), "check"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{weak} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("shield.toml:7:9: [api] token is too easy to guess")
                && err.contains("openssl rand -hex 32"),
            "{weak}: {err}"
        );
    }
    // 32 hex digits (128 bits) pass.
    std::fs::write(
        &cfg,
        format!("{base}token = \"3f9a0c41d27be8856e10a4c9b7d2f0e1\"\n"),
    )
    .unwrap();
    ok(&["--config", cfg.to_str().unwrap(), "check"]);
    // So does a bad client_header not: it is named.
    std::fs::write(&cfg, format!("{base}client_header = \"Forwarded\"\n")).unwrap();
    let out = shield()
        .args(["--config", cfg.to_str().unwrap(), "check"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("[api] client_header"));
}

#[test]
fn example_config_is_valid_apart_from_paths() {
    let dir = tempfile::tempdir().unwrap();
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/shield.toml"))
            .unwrap()
            .replace(
                "/var/log/auth.log",
                dir.path().join("auth.log").to_str().unwrap(),
            )
            .replace("/var/log/nginx/", &format!("{}/", dir.path().display()));
    std::fs::write(dir.path().join("auth.log"), "").unwrap();
    let cfg = dir.path().join("shield.toml");
    std::fs::write(&cfg, text).unwrap();
    let out = ok(&["--config", cfg.to_str().unwrap(), "check"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(": ok ("));
}

#[test]
fn garbage_long_lines_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("junk.log");
    let mut f = std::fs::File::create(&log).unwrap();
    f.write_all(&[0xff, 0xfe, 0x00, 0x01, b'\n']).unwrap();
    f.write_all(&vec![b'A'; 10 * 1024 * 1024]).unwrap();
    f.write_all(b"\n").unwrap();
    for i in 0..10 {
        writeln!(f, "Mar  1 10:00:0{i} web1 sshd[42]: Failed password for root from 198.51.100.9 port 5000 ssh2").unwrap();
    }
    drop(f);
    let out = ok(&["replay", "--format", "json", log.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["skipped_long"], 1, "{v}");
    assert_eq!(v["invalid_utf8"], 1, "{v}");
    assert_eq!(v["matched"], 10, "{v}");
    assert!(
        v["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["value"] == "198.51.100.9"),
        "{v}"
    );

    let out = shield()
        .args(["replay", "/nonexistent/auth.log"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/auth.log"));
}

#[test]
fn gz_replay_equals_plain() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("a.log");
    ok(&[
        "gen-log",
        "sshd",
        "--lines",
        "5000",
        "--attackers",
        "5",
        "--out",
        log.to_str().unwrap(),
    ]);
    let status = std::process::Command::new("gzip")
        .args(["-k", log.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    let a: serde_json::Value =
        serde_json::from_slice(&ok(&["replay", "--format", "json", log.to_str().unwrap()]).stdout)
            .unwrap();
    let gz = dir.path().join("a.log.gz");
    let b: serde_json::Value =
        serde_json::from_slice(&ok(&["replay", "--format", "json", gz.to_str().unwrap()]).stdout)
            .unwrap();
    assert_eq!(a["lines"], b["lines"]);
    assert_eq!(a["decisions"], b["decisions"]);
}

/// Issue 19 item 2, through the real binary: OpenSSH writes the client's
/// user name raw into `Disconnecting invalid user USER HOST port N: Too many
/// authentication failures`, and seven lines whose user name carries
/// `VICTIM port 1: Too many authentication failures` banned VICTIM. The
/// sender is banned instead, and the victim is not.
#[test]
fn replay_sshd_user_name_cannot_ban_a_victim() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("auth.log");
    let mut f = std::fs::File::create(&log).unwrap();
    let (victim, sender) = ("192.0.2.66", "203.0.113.77");
    for i in 0..7 {
        writeln!(
            f,
            "Mar  1 10:00:0{i} web1 sshd[42]: Disconnecting invalid user x {victim} port 1: Too many authentication failures {sender} port 5{i}022: Too many authentication failures [preauth]"
        )
        .unwrap();
    }
    drop(f);
    let out = ok(&["replay", "--format", "json", log.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let banned: Vec<&str> = v["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["value"].as_str().unwrap())
        .collect();
    assert!(!banned.contains(&victim), "the victim was banned: {v}");
    assert_eq!(v["matched"], 7, "{v}");
    assert_eq!(banned, [sender], "{v}");
}

/// Issue 22: `shield check` only tested that the treaty file existed; a bad
/// treaty or a key that is not the member's now fails check, naming the file.
#[test]
fn check_loads_the_union_treaty_and_member_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (key, other, treaty) = (d.join("m0.key"), d.join("other.key"), d.join("treaty.toml"));
    for k in [&key, &other] {
        ok(&["union", "keygen", "--out", k.to_str().unwrap()]);
    }
    ok(&[
        "union",
        "init",
        "--union",
        "t",
        "--member",
        "m0",
        "--key",
        key.to_str().unwrap(),
        "--endpoint",
        "127.0.0.1:7443",
        "--out",
        treaty.to_str().unwrap(),
    ]);
    std::fs::write(d.join("auth.log"), "").unwrap();
    let cfg = d.join("shield.toml");
    let check = |key: &std::path::Path| {
        std::fs::write(
            &cfg,
            format!(
                "[store]\npath = \"{d}/shield.db\"\n[union]\nmember = \"m0\"\nkey = \"{k}\"\n\
                 treaty = \"{t}\"\nlisten = \"127.0.0.1:7443\"\n[[source]]\nname = \"s\"\n\
                 paths = [\"{d}/auth.log\"]\npacks = [\"sshd\"]\n",
                d = d.display(),
                k = key.display(),
                t = treaty.display()
            ),
        )
        .unwrap();
        shield()
            .args(["--config", cfg.to_str().unwrap(), "check"])
            .output()
            .unwrap()
    };
    let out = check(&key);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Another member's key.
    let out = check(&other);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("other.key"), "{err}");

    // A treaty that does not parse.
    std::fs::write(&treaty, "union = [not toml").unwrap();
    let out = check(&key);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("treaty.toml"), "{err}");
}

/// Issue 21 item 9: the README's two commands run as written on a fresh
/// Debian as root, where minimal and container images have no `sudo`: each
/// is a script of this repository, run directly, that asks for sudo itself
/// only when not root.
#[test]
fn readme_install_and_test_commands_need_no_sudo() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    for heading in ["## Install and run", "## Run the tests"] {
        let at = readme
            .find(heading)
            .unwrap_or_else(|| panic!("no `{heading}`"));
        let block = readme[at..].split("```sh\n").nth(1).unwrap();
        let cmd = block.lines().next().unwrap().trim();
        assert!(!cmd.starts_with("sudo "), "{heading}: `{cmd}` needs sudo");
        let script = std::path::Path::new(root).join(cmd);
        let text = std::fs::read_to_string(&script)
            .unwrap_or_else(|e| panic!("{heading}: `{cmd}` is not a script here: {e}"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&script).unwrap().permissions().mode();
        assert!(mode & 0o111 != 0, "{cmd} is not executable");
        assert!(
            text.contains(r#"command -v sudo >/dev/null && exec sudo"#),
            "{cmd}: a user without root is not sent through sudo"
        );
    }
}
