//! `shield drill`: a built-in exercise of the union. It starts N members, each
//! a real `shield run` in its own network namespace with its own nftables,
//! joined by a bridge, under one treaty; attacks the first member through its
//! log; and reports when each member enforced each ban in its kernel set, or
//! what failed. Everything it creates (namespaces, rules, files) is removed at
//! the end. Needs root, `ip` and `nft`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Members to start (2-20).
    #[arg(long, default_value_t = 3)]
    pub members: usize,
    /// Attacks raised at the first member, one address each.
    #[arg(long, default_value_t = 5)]
    pub attacks: usize,
    /// How long to wait for each ban at every member.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Governance exercises on a local union instead (no root, loopback):
    /// propose, sign and ratify an amendment, rotate a member's key, revoke a
    /// member; each timed from the last needed signature to every member
    /// enforcing the new version. Same as `shield union drill --governance`.
    #[arg(long)]
    pub governance: bool,
    /// With --governance: member identities in the treaty (default: --members).
    #[arg(long, requires = "governance")]
    pub identities: Option<usize>,
    /// With --governance: run on NATS JetStream at this URL.
    #[arg(long, requires = "governance")]
    pub nats: Option<String>,
}

/// Namespaces, daemons and files of one drill; removed on drop, also on error.
struct Lab {
    tag: String,
    dir: tempfile::TempDir,
    namespaces: Vec<String>,
    daemons: Vec<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for d in &mut self.daemons {
            let _ = d.kill();
            let _ = d.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn ok(cmd: &mut Command) -> anyhow::Result<String> {
    let o = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !o.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

fn in_ns(ns: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).args(args);
    c
}

fn in_set(ns: &str, ip: &str) -> bool {
    in_ns(ns, &["nft", "list", "set", "inet", "shield", "ban4"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(ip))
        .unwrap_or(false)
}

impl Lab {
    fn ns(&self, i: usize) -> String {
        format!("shdrill-{}-{i}", self.tag)
    }

    fn add_ns(&mut self, name: String) -> anyhow::Result<()> {
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ok(Command::new("ip").args(["netns", "add", &name]))?;
        self.namespaces.push(name.clone());
        ok(&mut in_ns(&name, &["ip", "link", "set", "lo", "up"]))?;
        Ok(())
    }
}

fn member_config(dir: &Path, name: &str, ip: &str, treaty: &Path) -> String {
    format!(
        r#"[store]
path = "{d}/shield.db"
[engine]
no_default_scenarios = true
[firewall]
backend = "nftables"
[api]
listen = ""
socket = "{d}/shield.sock"
[decisions.escalation]
enabled = false
[union]
member = "{name}"
key = "{d}/member.key"
treaty = "{t}"
listen = "{ip}:7443"
[[source]]
name = "sshd"
paths = ["{d}/auth.log"]
packs = ["sshd"]
[[scenario]]
name = "drill-bruteforce"
rules = ["sshd-failed-password"]
capacity = 2
leak = "1h"
duration = "10m"
"#,
        d = dir.display(),
        t = treaty.display()
    )
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    if a.governance {
        shield_union::cli::run(shield_union::cli::UnionCmd::Drill {
            members: a.members,
            attacks: a.attacks,
            json: a.json,
            governance: true,
            identities: a.identities,
            rounds: 5,
            nats: a.nats,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    if !(2..=20).contains(&a.members) {
        bail!("--members must be between 2 and 20");
    }
    if a.attacks == 0 || a.attacks > 250 {
        bail!("--attacks must be between 1 and 250");
    }
    for tool in ["ip", "nft"] {
        if Command::new(tool).arg("-V").output().is_err() {
            bail!(
                "`{tool}` is missing: install the Debian package {}",
                if tool == "ip" { "iproute2" } else { "nftables" }
            );
        }
    }
    let me = std::env::current_exe().context("finding the shield binary")?;
    let mut lab = Lab {
        tag: format!("{}", std::process::id()),
        dir: tempfile::tempdir()?,
        namespaces: Vec::new(),
        daemons: Vec::new(),
    };
    let hub = format!("shdrill-{}-hub", lab.tag);
    lab.add_ns(hub.clone())?;
    ok(&mut in_ns(
        &hub,
        &["ip", "link", "add", "br0", "type", "bridge"],
    ))?;
    ok(&mut in_ns(&hub, &["ip", "link", "set", "br0", "up"]))?;
    let treaty = lab.dir.path().join("treaty.toml");
    let mut dirs: Vec<PathBuf> = Vec::new();
    for i in 0..a.members {
        let ns = lab.ns(i);
        lab.add_ns(ns.clone())?;
        let hv = format!(
            "dr{}-{i}",
            lab.tag.chars().rev().take(5).collect::<String>()
        );
        ok(Command::new("ip").args([
            "link", "add", &hv, "netns", &hub, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ]))?;
        ok(&mut in_ns(
            &hub,
            &["ip", "link", "set", &hv, "master", "br0"],
        ))?;
        ok(&mut in_ns(&hub, &["ip", "link", "set", &hv, "up"]))?;
        ok(&mut in_ns(
            &ns,
            &[
                "ip",
                "addr",
                "add",
                &format!("10.78.0.{}/24", i + 1),
                "dev",
                "eth0",
            ],
        ))?;
        ok(&mut in_ns(&ns, &["ip", "link", "set", "eth0", "up"]))?;
        let d = lab.dir.path().join(format!("m{i}"));
        std::fs::create_dir_all(&d)?;
        std::fs::write(d.join("auth.log"), "")?;
        let key = d.join("member.key");
        ok(Command::new(&me)
            .args(["union", "keygen", "--out"])
            .arg(&key))?;
        let endpoint = format!("10.78.0.{}:7443", i + 1);
        if i == 0 {
            ok(Command::new(&me)
                .args([
                    "union", "init", "--union", "drill", "--member", "m0", "--key",
                ])
                .arg(&key)
                .args([
                    "--endpoint",
                    &endpoint,
                    "--bind",
                    "drill-bruteforce=ban:10m",
                    "--out",
                ])
                .arg(&treaty))?;
        } else {
            ok(Command::new(&me)
                .args(["union", "join", "--treaty"])
                .arg(&treaty)
                .args(["--member", &format!("m{i}"), "--key"])
                .arg(&key)
                .args(["--endpoint", &endpoint]))?;
        }
        dirs.push(d);
    }
    for (i, d) in dirs.iter().enumerate() {
        let cfg = d.join("shield.toml");
        std::fs::write(
            &cfg,
            member_config(d, &format!("m{i}"), &format!("10.78.0.{}", i + 1), &treaty),
        )?;
        let log = std::fs::File::create(d.join("daemon.log"))?;
        let child = in_ns(
            &lab.ns(i),
            &[
                me.to_str().unwrap_or("shield"),
                "--config",
                cfg.to_str().unwrap_or(""),
                "run",
            ],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
        lab.daemons.push(child);
    }
    for (i, d) in dirs.iter().enumerate() {
        let sock = d.join("shield.sock");
        let end = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(&sock).is_err() {
            if Instant::now() > end {
                let log = std::fs::read_to_string(d.join("daemon.log")).unwrap_or_default();
                bail!("member m{i} did not start:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // Let the members connect to each other before the first attack.
    std::thread::sleep(Duration::from_millis(500));

    let mut lat: Vec<Vec<Option<f64>>> = vec![Vec::new(); a.members];
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(dirs[0].join("auth.log"))?;
    for k in 0..a.attacks {
        let ip = format!("10.78.1.{}", k + 1);
        let t0 = Instant::now();
        for n in 0..3 {
            writeln!(
                log,
                "Mar  1 10:00:00 m0 sshd[{n}]: Failed password for root from {ip} port {} ssh2",
                40000 + n
            )?;
        }
        log.flush()?;
        let mut pending: Vec<usize> = (0..a.members).collect();
        let end = t0 + a.timeout;
        while !pending.is_empty() && Instant::now() < end {
            pending.retain(|&i| {
                if in_set(&lab.ns(i), &ip) {
                    lat[i].push(Some(t0.elapsed().as_secs_f64() * 1000.0));
                    false
                } else {
                    true
                }
            });
            std::thread::sleep(Duration::from_millis(5));
        }
        for i in pending {
            lat[i].push(None);
        }
    }

    let mut all = Vec::new();
    let mut rows = Vec::new();
    let mut missing = 0;
    for (i, v) in lat.iter().enumerate() {
        let mut got: Vec<f64> = v.iter().flatten().copied().collect();
        missing += v.len() - got.len();
        got.sort_by(f64::total_cmp);
        all.extend(got.iter().copied());
        let p = |q: f64| {
            got.get(((got.len().max(1) - 1) as f64 * q).round() as usize)
                .copied()
        };
        rows.push(serde_json::json!({
            "member": format!("m{i}"), "enforced": got.len(), "of": v.len(),
            "p50_ms": p(0.5), "p99_ms": p(0.99), "max_ms": got.last(),
        }));
    }
    all.sort_by(f64::total_cmp);
    let pq = |q: f64| {
        all.get(((all.len().max(1) - 1) as f64 * q).round() as usize)
            .copied()
    };
    let report = serde_json::json!({
        "members": a.members, "attacks": a.attacks, "ok": missing == 0,
        "p50_ms": pq(0.5), "p99_ms": pq(0.99), "per_member": rows,
    });
    if a.json {
        println!("{report}");
    } else {
        println!(
            "drill: {} members, {} attacks at m0 (line appended -> address in each member's kernel set)",
            a.members, a.attacks
        );
        for r in report["per_member"].as_array().into_iter().flatten() {
            println!(
                "  {:<4} enforced {}/{}  p50 {:>8.1} ms  p99 {:>8.1} ms",
                r["member"].as_str().unwrap_or(""),
                r["enforced"],
                r["of"],
                r["p50_ms"].as_f64().unwrap_or(f64::NAN),
                r["p99_ms"].as_f64().unwrap_or(f64::NAN)
            );
        }
        println!(
            "overall p50 {:.1} ms, p99 {:.1} ms",
            pq(0.5).unwrap_or(f64::NAN),
            pq(0.99).unwrap_or(f64::NAN)
        );
    }
    if missing > 0 {
        for (i, d) in dirs.iter().enumerate() {
            let log = std::fs::read_to_string(d.join("daemon.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            eprintln!(
                "m{i} log (last lines):\n  {}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n  ")
            );
        }
        eprintln!("{missing} ban(s) never reached a member's kernel set");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
