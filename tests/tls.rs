//! HTTPS on the API listener: the real `crowdsec-firewall-bouncer` (Debian's
//! package) pulls Shield's bans over `https://`, once with an API key and once
//! with a client certificate instead, into its own nftables sets in a
//! network namespace; a certificate outside the OU policy and a plain-HTTP
//! client are refused; a certificate that does not load is named.

mod common;
mod tls_ca;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::{Config, Daemon, Netns, free_port, require, shield, wait_for};
use tls_ca::TestCa;

fn source(dir: &Path) -> String {
    std::fs::write(dir.join("auth.log"), "").unwrap();
    format!(
        "[[source]]\nname = \"sshd\"\npaths = [\"{}/auth.log\"]\npacks = [\"sshd\"]\n",
        dir.display()
    )
}

/// `crowdsec-firewall-bouncer` inside `ns`, its sets in table `table`
/// (`table`6 for IPv6), authenticating with `auth` (YAML lines).
fn bouncer(
    ns: &Netns,
    dir: &Path,
    table: &str,
    url: &str,
    auth: &str,
) -> (Child, std::path::PathBuf) {
    let run = dir.join(table);
    std::fs::create_dir_all(&run).unwrap();
    let d = run.display();
    let cfg = format!(
        "mode: nftables
pid_dir: {d}/
update_frequency: 1s
daemonize: false
log_mode: file
log_dir: {d}/
log_level: debug
api_url: {url}
{auth}
insecure_skip_verify: false
disable_ipv6: false
deny_action: DROP
deny_log: false
supported_decisions_types:
  - ban
blacklists_ipv4: {table}-v4
blacklists_ipv6: {table}-v6
nftables:
  ipv4:
    enabled: true
    set-only: false
    table: {table}
    chain: {table}-chain
  ipv6:
    enabled: true
    set-only: false
    table: {table}6
    chain: {table}6-chain
prometheus:
  enabled: false
  listen_addr: 127.0.0.1
  listen_port: 60601
"
    );
    let path = run.join("bouncer.yaml");
    std::fs::write(&path, cfg).unwrap();
    let child = ns
        .cmd("crowdsec-firewall-bouncer")
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start crowdsec-firewall-bouncer");
    (child, run.join("crowdsec-firewall-bouncer.log"))
}

/// Waits until `ip` is in nftables table `table` of `ns`; fails with the bouncer's log.
fn wait_in_set(ns: &Netns, table: &str, ip: &str, log: &Path, d: &Daemon) {
    let found = wait_for(Duration::from_secs(30), || {
        let o = ns.exec(&["nft", "list", "table", "ip", table]);
        let rs = String::from_utf8_lossy(&o.stdout);
        (rs.contains(ip) && rs.contains(&format!("{table}-v4"))).then_some(())
    });
    if found.is_none() {
        let rs = ns.ok(&["nft", "list", "ruleset"]);
        let log = std::fs::read_to_string(log).unwrap_or_default();
        panic!(
            "{ip} did not reach table {table}\n--- ruleset\n{rs}\n--- bouncer log\n{log}\n--- daemon log\n{}",
            d.log()
        );
    }
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `curl` in `ns`: the HTTP status, or 0 when no HTTP answer came (TLS refused).
fn status(ns: &Netns, args: &[&str]) -> u16 {
    let mut a = vec![
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "5",
    ];
    a.extend_from_slice(args);
    let o = ns.exec(&a);
    String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

const TOKEN: &str = "4f1c9a7e2b8d6035e1a4c7f9b2d8e6a13c5f7b9d1e3a5c7f9b2d4e6a8c0e2f4a";

#[test]
fn crowdsec_firewall_bouncer_over_https_with_a_key_and_with_a_client_certificate() {
    require("crowdsec-firewall-bouncer", "crowdsec-firewall-bouncer");
    require("nft", "nftables");
    require("curl", "curl");
    let ns = Netns::new("tls");
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "shield-test");
    let server = ca.server("server", "shield");
    let good = ca.client("fw-cert", "bouncer-ou", "fw-cert");
    let agent = ca.client("agent", "agent-ou", "some-agent");
    let stranger = TestCa::new(dir.path(), "stranger").client("stranger", "bouncer-ou", "fw-cert");

    let port = free_port();
    let cfg = Config::new()
        .listen(&format!("127.0.0.1:{port}"))
        .api(&format!(
            "token = \"{TOKEN}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\nclient_ca = \"{}\"",
            server.cert.display(),
            server.key.display(),
            ca.ca.display()
        ))
        .source(&source(dir.path()))
        .build();
    let d = Daemon::start_in(Some(&ns.name), dir.path(), &cfg);
    let url = format!("https://127.0.0.1:{port}/");
    assert!(
        d.log().contains("scheme=\"https\"") || d.log().contains("scheme=https"),
        "{}",
        d.log()
    );

    let out = d.cli(&["bouncers", "add", "fw-key"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let add = d.cli(&["decisions", "add", "192.0.2.77", "--duration", "1h"]);
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );

    // 1. An API key over HTTPS, the server checked against the CA.
    let ca_line = format!("ca_cert_path: {}", ca.ca.display());
    let (c, log) = bouncer(
        &ns,
        dir.path(),
        "cskey",
        &url,
        &format!("api_key: {key}\n{ca_line}"),
    );
    let keyed = Kill(c);
    wait_in_set(&ns, "cskey", "192.0.2.77", &log, &d);
    drop(keyed);

    // 2. A client certificate instead of a key.
    let (c, log) = bouncer(
        &ns,
        dir.path(),
        "cscert",
        &url,
        &format!(
            "cert_path: {}\nkey_path: {}\n{ca_line}",
            good.cert.display(),
            good.key.display()
        ),
    );
    let _certified = Kill(c);
    wait_in_set(&ns, "cscert", "192.0.2.77", &log, &d);
    // A ban made while it runs reaches it too.
    let add = d.cli(&["decisions", "add", "192.0.2.78", "--duration", "1h"]);
    assert!(add.status.success());
    wait_in_set(&ns, "cscert", "192.0.2.78", &log, &d);

    // The OU policy and the CA are enforced; without TLS nothing is served.
    let cacert = ca.ca.to_str().unwrap();
    let v1 = format!("{url}v1/decisions");
    let with = |p: &tls_ca::Pair| {
        status(
            &ns,
            &[
                "--cacert",
                cacert,
                "--cert",
                p.cert.to_str().unwrap(),
                "--key",
                p.key.to_str().unwrap(),
                &v1,
            ],
        )
    };
    assert_eq!(
        with(&good),
        200,
        "a bouncer-ou certificate replaces the key"
    );
    assert_eq!(
        with(&agent),
        401,
        "another OU identifies nobody: a key is needed"
    );
    assert_eq!(
        with(&stranger),
        0,
        "a certificate from another CA fails the handshake"
    );
    assert_eq!(
        status(&ns, &["--cacert", cacert, &v1]),
        401,
        "no key, no certificate"
    );
    assert_eq!(
        status(
            &ns,
            &["--cacert", cacert, "-H", &format!("X-Api-Key: {key}"), &v1]
        ),
        200
    );
    assert_eq!(
        status(&ns, &["--cacert", cacert, &format!("{url}ui/")]),
        200,
        "the dashboard is served over HTTPS"
    );
    let auth = format!("Authorization: Bearer {TOKEN}");
    assert_eq!(
        status(
            &ns,
            &[
                "--cacert",
                cacert,
                "-H",
                &auth,
                &format!("{url}api/decisions")
            ]
        ),
        200,
        "and its data behind the token"
    );
    let gate = format!("{url}gate");
    assert_eq!(
        status(
            &ns,
            &["--cacert", cacert, "-H", "X-Real-IP: 192.0.2.77", &gate]
        ),
        403,
        "the gate answers over HTTPS: a banned client"
    );
    assert_eq!(
        status(
            &ns,
            &["--cacert", cacert, "-H", "X-Real-IP: 192.0.2.9", &gate]
        ),
        200,
        "the gate: a client in good standing"
    );
    assert_eq!(
        status(&ns, &[&format!("http://127.0.0.1:{port}/v1/decisions")]),
        0,
        "plain HTTP gets no answer on an HTTPS listener"
    );
}

#[test]
fn a_certificate_that_does_not_load_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "t");
    let server = ca.server("server", "shield");
    let other = ca.server("other", "shield");
    let check = |api: &str| {
        let cfg = Config::new()
            .listen("127.0.0.1:1")
            .api(api)
            .source(&source(dir.path()))
            .build()
            .replace("@DIR@", dir.path().to_str().unwrap());
        let path = dir.path().join("shield.toml");
        std::fs::write(&path, cfg).unwrap();
        let o = shield()
            .args(["--config", path.to_str().unwrap(), "check"])
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let missing = dir.path().join("missing.pem");
    let (ok, err) = check(&format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"",
        missing.display(),
        server.key.display()
    ));
    assert!(!ok && err.contains("missing.pem"), "{err}");
    let (ok, err) = check(&format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"",
        server.cert.display(),
        other.key.display()
    ));
    assert!(
        !ok && err.contains("other.key"),
        "a key of another certificate: {err}"
    );
    let (ok, err) = check(&format!("tls_cert = \"{}\"", server.cert.display()));
    assert!(!ok && err.contains("tls_key"), "{err}");
    let (ok, err) = check(&format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"",
        server.cert.display(),
        server.key.display()
    ));
    assert!(ok, "{err}");
}
