//! `shield union ...`: keygen, init, join, status, members, pardon. The binary embeds
//! [`UnionCmd`] as a clap subcommand and calls [`run`]. This is the CLI edge,
//! so errors are `anyhow` with context that says what to do.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};

use crate::identity::{Identity, parse_public};
use crate::store::Store;
use crate::treaty::{MemberFile, PolicyFile, Treaty, TreatyFile};

#[derive(clap::Subcommand, Debug)]
pub enum UnionCmd {
    /// Create this member's key (ed25519; the file is created with mode 0600) and print its public key.
    Keygen {
        /// Where to write the private key.
        #[arg(long, default_value = "/etc/shield/union.key")]
        out: PathBuf,
        /// Replace an existing key (this changes the member's identity).
        #[arg(long)]
        force: bool,
    },
    /// Start a new treaty with this host as its first member.
    Init {
        /// The union's name.
        #[arg(long)]
        union: String,
        /// This member's name.
        #[arg(long)]
        member: String,
        /// This member's key file (from `keygen`).
        #[arg(long, default_value = "/etc/shield/union.key")]
        key: PathBuf,
        /// This member's union endpoint, `host:port`, as the others will dial it.
        #[arg(long)]
        endpoint: String,
        /// A binding scenario, `SCENARIO=TYPE:DURATION` (e.g. `sshd-bruteforce=ban:4h`); repeatable.
        #[arg(long = "bind")]
        binds: Vec<String>,
        /// Where to write the treaty.
        #[arg(long, default_value = "/etc/shield/treaty.toml")]
        out: PathBuf,
        #[arg(long)]
        force: bool,
    },
    /// Add a member to a treaty file. Every member must then install the same file.
    Join {
        #[arg(long, default_value = "/etc/shield/treaty.toml")]
        treaty: PathBuf,
        /// The new member's name.
        #[arg(long)]
        member: String,
        /// The new member's public key (`ed25519:...`, printed by `keygen`)...
        #[arg(long, conflicts_with = "key")]
        public_key: Option<String>,
        /// ...or its key file, when joining from the new host itself.
        #[arg(long)]
        key: Option<PathBuf>,
        /// The new member's endpoint `host:port`.
        #[arg(long)]
        endpoint: String,
    },
    /// What this member's store holds: signals per origin and verdict, newest signal age.
    Status {
        #[arg(long, default_value = "/etc/shield/treaty.toml")]
        treaty: PathBuf,
        #[arg(long, default_value = "/var/lib/shield/shield.db")]
        db: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Start N members in this process on loopback, raise attacks at the first,
    /// and report when each other member received each decision.
    Drill {
        #[arg(long, default_value_t = 3)]
        members: usize,
        #[arg(long, default_value_t = 50)]
        attacks: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Ignore union signals for an address or range on this member (the daemon
    /// does this by itself when `shield decisions delete` ends a decision). A
    /// running member applies it at its next signal.
    Pardon {
        /// Address or range, e.g. `203.0.113.7` or `203.0.113.0/24`.
        target: String,
        /// How long, e.g. `24h`; without it the pardon lasts until `--remove`.
        #[arg(long = "for")]
        for_: Option<String>,
        /// Remove the pardon instead.
        #[arg(long, conflicts_with = "for_")]
        remove: bool,
        #[arg(long, default_value = "/var/lib/shield/shield.db")]
        db: PathBuf,
    },
    /// The treaty's members, policy and digest.
    Members {
        #[arg(long, default_value = "/etc/shield/treaty.toml")]
        treaty: PathBuf,
    },
}

fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}

fn parse_bind(s: &str) -> anyhow::Result<PolicyFile> {
    let (scenario, rest) = s
        .split_once('=')
        .context("--bind wants SCENARIO=TYPE:DURATION, e.g. sshd-bruteforce=ban:4h")?;
    let (kind, duration) = rest
        .split_once(':')
        .context("--bind wants SCENARIO=TYPE:DURATION, e.g. sshd-bruteforce=ban:4h")?;
    Ok(PolicyFile {
        scenario: scenario.into(),
        kind: kind.into(),
        duration: duration.into(),
        max_duration: None,
        quorum: None,
    })
}

/// Run one `shield union` subcommand, printing to stdout.
pub fn run(cmd: UnionCmd) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    run_to(cmd, &mut out)
}

/// [`run`], writing to `w` (tests).
pub fn run_to(cmd: UnionCmd, w: &mut dyn std::io::Write) -> anyhow::Result<()> {
    match cmd {
        UnionCmd::Keygen { out, force } => {
            let id = Identity::generate()?;
            id.write(&out, force)?;
            writeln!(w, "{}", id.public_string())?;
        }
        UnionCmd::Init {
            union,
            member,
            key,
            endpoint,
            binds,
            out,
            force,
        } => {
            if out.exists() && !force {
                bail!(
                    "{} already exists; pass --force to replace it",
                    out.display()
                );
            }
            let id = Identity::load(&key)?;
            let file = TreatyFile {
                name: union,
                members: vec![MemberFile {
                    name: member,
                    key: id.public_string(),
                    endpoint,
                    max_signals_per_minute: None,
                }],
                policies: binds
                    .iter()
                    .map(|b| parse_bind(b))
                    .collect::<anyhow::Result<_>>()?,
                allowlist: vec![],
                revoked: vec![],
                limits: Default::default(),
                transport: Default::default(),
            };
            let t = Treaty::from_file(file.clone(), &out)?;
            write_atomic(&out, &toml::to_string_pretty(&file)?)?;
            writeln!(w, "wrote {} (digest {})", out.display(), t.digest_hex())?;
        }
        UnionCmd::Join {
            treaty,
            member,
            public_key,
            key,
            endpoint,
        } => {
            let text = std::fs::read_to_string(&treaty)
                .with_context(|| format!("reading {}", treaty.display()))?;
            let mut file: TreatyFile =
                toml::from_str(&text).with_context(|| format!("parsing {}", treaty.display()))?;
            let pk = match (public_key, key) {
                (Some(p), _) => {
                    parse_public(&p)?;
                    p
                }
                (None, Some(k)) => Identity::load(&k)?.public_string(),
                (None, None) => bail!("give the new member's --public-key or its --key file"),
            };
            file.members.push(MemberFile {
                name: member.clone(),
                key: pk,
                endpoint,
                max_signals_per_minute: None,
            });
            let t = Treaty::from_file(file.clone(), &treaty)?;
            write_atomic(&treaty, &toml::to_string_pretty(&file)?)?;
            writeln!(w, "added member `{member}`; new digest {}", t.digest_hex())?;
            writeln!(
                w,
                "install this same file on every member and restart them: members with another digest refuse each other"
            )?;
        }
        UnionCmd::Status { treaty, db, json } => {
            let t = Treaty::load(&treaty)?;
            let s = Store::open(&db)?;
            let rows = s.verdict_counts()?;
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(o, v, n, t)| serde_json::json!({"origin": o, "verdict": v, "count": n, "newest": t}))
                    .collect();
                let doc = serde_json::json!({"union": t.name, "digest": t.digest_hex(), "signals": v, "pardons": s.pardons(crate::wall_now())?.iter().map(|(p, until)| serde_json::json!({"target": p.to_string(), "until": until})).collect::<Vec<_>>()});
                writeln!(w, "{}", serde_json::to_string_pretty(&doc)?)?;
            } else {
                writeln!(w, "union {} digest {}", t.name, t.digest_hex())?;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
                for (o, v, n, newest) in rows {
                    writeln!(
                        w,
                        "  {o:<16} {v:<16} {n:>8}  newest {}s ago",
                        (now - newest).max(0)
                    )?;
                }
            }
        }
        UnionCmd::Pardon {
            target,
            for_,
            remove,
            db,
        } => {
            let net: shield_core::Net = target
                .parse()
                .map_err(|e| anyhow::anyhow!("`{target}` is not an address or range: {e}"))?;
            let s = Store::open(&db)?;
            if remove {
                if s.remove_pardon(&net)? {
                    writeln!(w, "pardon for {net} removed")?;
                } else {
                    bail!("no pardon for {net} in {}", db.display());
                }
            } else {
                let now = crate::wall_now();
                let until = match &for_ {
                    Some(d) => Some(
                        now + humantime::parse_duration(d)
                            .with_context(|| format!("--for `{d}`: write e.g. `24h`"))?
                            .as_secs() as i64,
                    ),
                    None => None,
                };
                s.add_pardon(&net, now, until)?;
                match until {
                    Some(u) => writeln!(
                        w,
                        "union signals for {net} ignored on this member for {} (until {u})",
                        for_.as_deref().unwrap_or("")
                    )?,
                    None => writeln!(
                        w,
                        "union signals for {net} ignored on this member until `shield union pardon {net} --remove`"
                    )?,
                }
            }
        }
        UnionCmd::Drill {
            members,
            attacks,
            json,
        } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let opts = crate::drill::DrillOptions {
                members,
                attacks,
                timeout: std::time::Duration::from_secs(30),
            };
            let r = rt.block_on(crate::drill::run_loopback(&opts))?;
            if json {
                writeln!(w, "{}", serde_json::to_string_pretty(&r)?)?;
            } else {
                writeln!(
                    w,
                    "drill: {members} members, {attacks} attacks at m0: p50 {:.2} ms, p99 {:.2} ms",
                    r.p50_ms, r.p99_ms
                )?;
                for m in &r.results {
                    writeln!(
                        w,
                        "  {:<6} received {:>5}/{attacks}  p50 {:.2} ms  max {:.2} ms",
                        m.name, m.received, m.p50_ms, m.max_ms
                    )?;
                }
                for x in r.missing.iter().take(20) {
                    writeln!(w, "  MISSING {x}")?;
                }
            }
            if !r.ok() {
                bail!(
                    "{} decision(s) never arrived; see the list above",
                    r.missing.len()
                );
            }
        }
        UnionCmd::Members { treaty } => {
            let t = Treaty::load(&treaty)?;
            writeln!(w, "union {} digest {}", t.name, t.digest_hex())?;
            for m in t.members() {
                let rev = if t.is_revoked(&m.key) { " REVOKED" } else { "" };
                writeln!(
                    w,
                    "  {:<16} {:<24} {}{rev}",
                    m.name,
                    m.endpoint,
                    crate::identity::public_to_string(&m.key)
                )?;
            }
            for (s, kind, d, _, q) in &t.canonical().policies {
                writeln!(
                    w,
                    "  binds {s}: {kind} {}{}",
                    humantime::format_duration(std::time::Duration::from_secs(*d)),
                    if *q > 1 {
                        format!(" (quorum {q})")
                    } else {
                        String::new()
                    }
                )?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn pardon_adds_lists_and_removes() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("shield.db");
        let pardon = |target: &str, for_: Option<&str>, remove: bool| {
            let mut out = Vec::new();
            run_to(
                UnionCmd::Pardon {
                    target: target.into(),
                    for_: for_.map(str::to_string),
                    remove,
                    db: db.clone(),
                },
                &mut out,
            )
            .map(|()| String::from_utf8(out).unwrap())
        };
        assert!(
            pardon("203.0.113.7", Some("2h"), false)
                .unwrap()
                .contains("for 2h")
        );
        let s = Store::open(&db).unwrap();
        let now = crate::wall_now();
        let p = s.pardons(now).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0.to_string(), "203.0.113.7/32");
        assert!(p[0].1.unwrap() >= now + 7199);
        assert!(
            s.pardons(now + 7300).unwrap().is_empty(),
            "a timed pardon ends"
        );
        assert!(
            pardon("203.0.113.7", None, true)
                .unwrap()
                .contains("removed")
        );
        assert!(pardon("203.0.113.7", None, true).is_err());
        assert!(pardon("not-an-ip", None, false).is_err());
    }

    #[test]
    fn keygen_init_join_members() {
        let dir = tempfile::tempdir().unwrap();
        let k1 = dir.path().join("a.key");
        let k2 = dir.path().join("b.key");
        let mut out = Vec::new();
        run_to(
            UnionCmd::Keygen {
                out: k1.clone(),
                force: false,
            },
            &mut out,
        )
        .unwrap();
        assert_eq!(
            std::fs::metadata(&k1).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let printed = String::from_utf8(out.clone()).unwrap();
        assert_eq!(printed.trim(), Identity::load(&k1).unwrap().public_string());
        assert!(
            run_to(
                UnionCmd::Keygen {
                    out: k1.clone(),
                    force: false
                },
                &mut out
            )
            .is_err()
        );
        run_to(
            UnionCmd::Keygen {
                out: k2.clone(),
                force: false,
            },
            &mut out,
        )
        .unwrap();
        let tp = dir.path().join("treaty.toml");
        run_to(
            UnionCmd::Init {
                union: "u".into(),
                member: "a".into(),
                key: k1,
                endpoint: "127.0.0.1:1".into(),
                binds: vec!["sshd-bruteforce=ban:4h".into()],
                out: tp.clone(),
                force: false,
            },
            &mut out,
        )
        .unwrap();
        run_to(
            UnionCmd::Join {
                treaty: tp.clone(),
                member: "b".into(),
                public_key: None,
                key: Some(k2),
                endpoint: "127.0.0.1:2".into(),
            },
            &mut out,
        )
        .unwrap();
        let t = Treaty::load(&tp).unwrap();
        assert_eq!(t.members().count(), 2);
        assert!(t.binds("sshd-bruteforce"));
        let mut m = Vec::new();
        run_to(UnionCmd::Members { treaty: tp.clone() }, &mut m).unwrap();
        let m = String::from_utf8(m).unwrap();
        assert!(m.contains("binds sshd-bruteforce: ban 4h"), "{m}");
        // Joining under an existing name is refused and leaves the file alone.
        let id = Identity::generate().unwrap();
        let e = run_to(
            UnionCmd::Join {
                treaty: tp.clone(),
                member: "b".into(),
                public_key: Some(id.public_string()),
                key: None,
                endpoint: "x:1".into(),
            },
            &mut Vec::new(),
        );
        assert!(e.unwrap_err().to_string().contains("listed twice"));
        assert_eq!(Treaty::load(&tp).unwrap().digest(), t.digest());
    }
}
