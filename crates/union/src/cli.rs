//! `shield union ...`: keygen, init, join, status, members, pardon, and the
//! amendments of the treaty's history: propose, sign, pending, ratify, history. The binary embeds
//! [`UnionCmd`] as a clap subcommand and calls [`run`]. This is the CLI edge,
//! so errors are `anyhow` with context that says what to do.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};

use crate::history::{Amendment, History};
use crate::identity::{Identity, parse_public};
use crate::store::SignalStore;
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
    /// Add a member to a treaty file (every member must then install the same
    /// file), or, with `--via TOKEN` on the new host once the union ratified
    /// its admission, fetch the treaty and its history from a member, verify
    /// the chain from the union's genesis digest, and write them.
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
        #[arg(long, required_unless_present = "via")]
        endpoint: Option<String>,
        /// An invitation from `shield union invite` (with `--key`).
        #[arg(long, requires = "key", conflicts_with_all = ["endpoint", "public_key"])]
        via: Option<String>,
    },
    /// Print an invitation for a new host: this member's endpoint and key and
    /// the union's genesis digest (the trust anchor `join --via` verifies the
    /// history from). It carries no secret; admission is the ratified amendment.
    Invite {
        #[arg(long, default_value = "/etc/shield/treaty.toml")]
        treaty: PathBuf,
        /// This member's name (the new host connects to it).
        #[arg(long)]
        member: String,
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
        /// Governance exercises instead (amend, rotate a key, revoke), each
        /// timed from the last needed signature to every member enforcing
        /// the new version.
        #[arg(long)]
        governance: bool,
        /// With --governance: member identities in the treaty (the drill
        /// holds their keys and signs with them; `--members` of them run).
        #[arg(long, requires = "governance")]
        identities: Option<usize>,
        /// With --governance: amendment rounds to time.
        #[arg(long, default_value_t = 5, requires = "governance")]
        rounds: usize,
        /// With --governance: run on NATS JetStream at this URL.
        #[arg(long, requires = "governance")]
        nats: Option<String>,
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
    /// Propose the next version of the treaty, signed by this member: a whole
    /// new treaty file (`--new`), or one change (`--add` / `--revoke`). Writes
    /// the amendment into the amendments directory for members to sign.
    Propose {
        #[arg(long, default_value = "/etc/shield/treaty.toml")]
        treaty: PathBuf,
        /// This member's name and key (the proposer signs first).
        #[arg(long)]
        member: String,
        #[arg(long, default_value = "/etc/shield/union.key")]
        key: PathBuf,
        /// The complete proposed treaty (bindings, caps, quorum, transport, members).
        #[arg(long, conflicts_with_all = ["add", "revoke"])]
        new: Option<PathBuf>,
        /// Add a member: its name (with --public-key and --endpoint).
        #[arg(long, requires_all = ["public_key", "endpoint"], conflicts_with = "revoke")]
        add: Option<String>,
        #[arg(long)]
        public_key: Option<String>,
        #[arg(long)]
        endpoint: Option<String>,
        /// With --add: add it on probation under the treaty's `[governance]
        /// invite` policy (ratified by `invite` members' signatures; it does not
        /// vote until a full vote removes it from `governance.invited`).
        #[arg(long, requires = "add")]
        invited: bool,
        /// Revoke a member: it leaves the treaty and its key is refused from this version on.
        #[arg(long)]
        revoke: Option<String>,
        /// Rotate this member's own key to --public-key (the old key is revoked
        /// from the new version on; install the new key file once ratified).
        #[arg(long, requires = "public_key", conflicts_with_all = ["add", "revoke", "new"])]
        rotate_key: bool,
        /// With --rotate-key: keep the old key valid this long after the
        /// proposal (e.g. `1h`) instead of revoking it at once, so signals
        /// keep flowing until the new key file is installed.
        #[arg(long, requires = "rotate_key")]
        overlap: Option<String>,
        /// Where amendments are kept (default: `<treaty>.amendments/`).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Sign an amendment as this member (a member of the version it amends).
    Sign {
        /// The amendment's id (or a unique prefix), or its file.
        amendment: String,
        #[arg(long, default_value = "/etc/shield/treaty.toml")]
        treaty: PathBuf,
        #[arg(long)]
        member: String,
        #[arg(long, default_value = "/etc/shield/union.key")]
        key: PathBuf,
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Amendments waiting for signatures: what each changes and how many it has.
    Pending {
        #[arg(long, default_value = "/etc/shield/treaty.toml")]
        treaty: PathBuf,
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Install the next version: of the pending amendments for it that a strict
    /// majority signed, the one with the smallest id (the same on every member).
    /// Writes the treaty file and its history; restart the member to apply it.
    Ratify {
        #[arg(long, default_value = "/etc/shield/treaty.toml")]
        treaty: PathBuf,
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// The treaty's versions, each verified from the genesis digest.
    History {
        #[arg(long, default_value = "/etc/shield/treaty.toml")]
        treaty: PathBuf,
        /// The union's genesis digest to verify against (default: version 1's own).
        #[arg(long)]
        genesis: Option<String>,
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

/// What `shield union invite` prints (base64url JSON).
#[derive(serde::Serialize, serde::Deserialize)]
struct Invitation {
    union: String,
    genesis: String,
    member: String,
    key: String,
    endpoint: String,
}

fn amend_dir(treaty: &Path, dir: Option<PathBuf>) -> PathBuf {
    dir.unwrap_or_else(|| {
        let mut p = treaty.as_os_str().to_owned();
        p.push(".amendments");
        PathBuf::from(p)
    })
}

fn list_amendments(dir: &Path) -> anyhow::Result<Vec<(PathBuf, Amendment)>> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    for e in rd {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "json") {
            out.push((p.clone(), crate::history::load_amendment(&p)?));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn find_amendment(dir: &Path, what: &str) -> anyhow::Result<PathBuf> {
    let p = Path::new(what);
    if p.is_file() {
        return Ok(p.to_owned());
    }
    let hits: Vec<PathBuf> = list_amendments(dir)?
        .into_iter()
        .filter(|(_, a)| a.id().starts_with(what))
        .map(|(p, _)| p)
        .collect();
    match hits.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no amendment `{what}` in {}", dir.display()),
        _ => bail!("`{what}` names several amendments; give more of the id"),
    }
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
                    previous_key: None,
                    previous_key_until: None,
                }],
                policies: binds
                    .iter()
                    .map(|b| parse_bind(b))
                    .collect::<anyhow::Result<_>>()?,
                allowlist: vec![],
                revoked: vec![],
                limits: Default::default(),
                transport: Default::default(),
                governance: Default::default(),
            };
            let t = Treaty::from_file(file.clone(), &out)?;
            write_atomic(&out, &toml::to_string_pretty(&file)?)?;
            writeln!(w, "wrote {} (digest {})", out.display(), t.digest_hex())?;
        }
        UnionCmd::Invite { treaty, member } => {
            let h = History::load_or_genesis(&treaty)?;
            let t = h.current().parsed()?;
            let Some(m) = t.member(&member) else {
                bail!("`{member}` is not a member of the current treaty");
            };
            let inv = Invitation {
                union: t.name.clone(),
                genesis: h.versions[0].digest.clone(),
                member: m.name.clone(),
                key: crate::identity::public_to_string(&m.key),
                endpoint: m.endpoint.clone(),
            };
            use base64::Engine as _;
            let tok =
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&inv)?);
            writeln!(w, "{tok}")?;
        }
        UnionCmd::Join {
            treaty,
            member,
            key: Some(key),
            via: Some(tok),
            ..
        } => {
            use base64::Engine as _;
            let inv: Invitation = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(tok.trim())
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .context(
                    "the invitation is not one `shield union invite` printed; ask for it again",
                )?;
            let id = Identity::load(&key)?;
            let via_key = parse_public(&inv.key)?;
            let client = crate::direct::PeerClient::new(&id, &inv.member, &via_key, &inv.endpoint)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let gov = rt.block_on(client.gov(0)).with_context(|| format!(
                "fetching the treaty from `{}` at {}: until the union ratified an amendment adding `{member}` with this key, members refuse this host",
                inv.member, inv.endpoint
            ))?;
            let h = History {
                versions: gov.history,
            };
            let t = h.verify(&inv.genesis).context(
                "the history the member sent does not verify from the invitation's genesis digest",
            )?;
            if h.versions.len() >= crate::history::MAX_GOV {
                bail!(
                    "the union's history is longer than one answer ({} versions); join from a member's copy of the files",
                    crate::history::MAX_GOV
                );
            }
            match t.member(&member) {
                Some(m) if m.key == id.public() && !t.is_revoked(&m.key) => {}
                _ => bail!(
                    "the union's current treaty (version {}) does not list `{member}` with this key; have a member propose it (`shield union propose --add`) and the union ratify it",
                    h.current().version
                ),
            }
            h.save(&treaty)?;
            writeln!(
                w,
                "joined union {} as `{member}` at version {} (digest {}); the chain verifies from genesis {}",
                t.name,
                h.current().version,
                t.digest_hex(),
                inv.genesis
            )?;
            writeln!(
                w,
                "add [union] to shield.toml (member = \"{member}\", key, treaty = \"{}\") and start shield",
                treaty.display()
            )?;
        }
        UnionCmd::Join {
            treaty,
            member,
            public_key,
            key,
            endpoint,
            ..
        } => {
            let Some(endpoint) = endpoint else {
                bail!(
                    "give the new member's --endpoint (or --via TOKEN with --key on the new host)"
                );
            };
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
                previous_key: None,
                previous_key_until: None,
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
            let s = SignalStore::open(&db)?;
            let rows = s.verdict_counts()?;
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(o, v, n, t)| serde_json::json!({"origin": o, "verdict": v, "count": n, "newest": t}))
                    .collect();
                let doc = serde_json::json!({"union": t.name, "digest": t.digest_hex(), "signals": v, "pardons": s.pardons(shield_core::wall_now())?.iter().map(|(p, until)| serde_json::json!({"target": p.to_string(), "until": until})).collect::<Vec<_>>()});
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
            let s = SignalStore::open(&db)?;
            if remove {
                if s.remove_pardon(&net)? {
                    writeln!(w, "pardon for {net} removed")?;
                } else {
                    bail!("no pardon for {net} in {}", db.display());
                }
            } else {
                let now = shield_core::wall_now();
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
            json,
            governance: true,
            identities,
            rounds,
            nats,
            ..
        } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let opts = crate::drill::GovDrillOptions {
                members,
                identities: identities.unwrap_or(members),
                nats,
                rounds,
                timeout: std::time::Duration::from_secs(60),
            };
            let r = rt.block_on(crate::drill::run_governance(&opts))?;
            if json {
                writeln!(w, "{}", serde_json::to_string_pretty(&r)?)?;
            } else {
                writeln!(
                    w,
                    "governance drill: {} running members, {} identities, {}: amend p50 {:.0} ms, p99 {:.0} ms (last signature → every member enforcing)",
                    r.members, r.identities, r.transport, r.p50_ms, r.p99_ms
                )?;
                for e in &r.exercises {
                    writeln!(
                        w,
                        "  {:<7} v{:<3} {:>8.0} ms  {}  {}",
                        e.name,
                        e.version,
                        e.ms,
                        if e.ok { "ok" } else { "FAILED" },
                        e.detail
                    )?;
                }
            }
            if !r.ok() {
                bail!("governance drill failed");
            }
        }
        UnionCmd::Drill {
            members,
            attacks,
            json,
            ..
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
        UnionCmd::Propose {
            treaty,
            member,
            key,
            new,
            add,
            public_key,
            endpoint,
            invited,
            revoke,
            rotate_key,
            overlap,
            dir,
        } => {
            let h = History::load_or_genesis(&treaty)?;
            let cur = h.current().clone();
            let id = Identity::load(&key)?;
            let cur_t = cur.parsed()?;
            match cur_t.member(&member) {
                Some(m) if m.key == id.public() => {}
                Some(_) => bail!(
                    "key {} is not `{member}`'s key in the current treaty",
                    key.display()
                ),
                None => {
                    bail!("`{member}` is not a member of the current treaty; only members propose")
                }
            }
            let next = if let Some(p) = new {
                std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?
            } else {
                let mut file: TreatyFile =
                    toml::from_str(&cur.treaty).context("parsing the current treaty")?;
                if let Some(name) = add {
                    let pk = public_key.unwrap_or_default();
                    parse_public(&pk)?;
                    if file.members.iter().any(|m| m.name == name) {
                        bail!("`{name}` is already a member");
                    }
                    if invited {
                        if file.governance.invite == 0 {
                            bail!(
                                "the treaty has no `[governance] invite` policy; add `{name}` without --invited (a full vote)"
                            );
                        }
                        file.governance.invited.push(name.clone());
                    }
                    file.members.push(MemberFile {
                        name,
                        key: pk,
                        endpoint: endpoint.unwrap_or_default(),
                        max_signals_per_minute: None,
                        previous_key: None,
                        previous_key_until: None,
                    });
                } else if rotate_key {
                    let pk = public_key.unwrap_or_default();
                    parse_public(&pk)?;
                    let Some(m) = file.members.iter_mut().find(|m| m.name == member) else {
                        bail!("`{member}` is not in the treaty file");
                    };
                    let old = std::mem::replace(&mut m.key, pk);
                    match overlap {
                        Some(o) => {
                            let d = humantime::parse_duration(&o).with_context(|| {
                                format!("--overlap `{o}` is not a duration; write e.g. `1h`")
                            })?;
                            m.previous_key = Some(old);
                            m.previous_key_until =
                                Some(shield_core::wall_now() + d.as_secs() as i64);
                        }
                        None => file.revoked.push(old),
                    }
                } else if let Some(name) = revoke {
                    let Some(i) = file.members.iter().position(|m| m.name == name) else {
                        bail!("`{name}` is not a member");
                    };
                    let m = file.members.remove(i);
                    file.revoked.push(m.key);
                } else {
                    bail!(
                        "say what changes: --new FILE, --add NAME, --revoke NAME or --rotate-key"
                    );
                }
                toml::to_string_pretty(&file)?
            };
            let a = Amendment::propose(&cur, &next, &member, &id)?;
            let next_t = a.parsed()?;
            let (need, _) = crate::history::required(&cur_t, &next_t);
            let d = amend_dir(&treaty, dir);
            std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
            let path = d.join(format!("{}.json", &a.id()[..16]));
            crate::history::save_amendment(&path, &a)?;
            writeln!(
                w,
                "proposed version {} as amendment {} ({})",
                a.version,
                &a.id()[..16],
                path.display()
            )?;
            for line in crate::treaty::Canonical::diff(cur_t.canonical(), next_t.canonical()) {
                writeln!(w, "  {line}")?;
            }
            writeln!(
                w,
                "signatures: 1 of the {need} needed; members sign with `shield union sign {}`",
                &a.id()[..16]
            )?;
        }
        UnionCmd::Sign {
            amendment,
            treaty,
            member,
            key,
            dir,
        } => {
            let path = find_amendment(&amend_dir(&treaty, dir), &amendment)?;
            let mut a = crate::history::load_amendment(&path)?;
            let h = History::load_or_genesis(&treaty)?;
            let cur = h.current();
            if a.version != cur.version + 1 || a.prev != cur.digest {
                bail!(
                    "amendment {} is for version {} after digest {}, the current version is {} ({}); it is stale or replayed: not signed",
                    &a.id()[..16],
                    a.version,
                    a.prev,
                    cur.version,
                    cur.digest
                );
            }
            let cur_t = cur.parsed()?;
            let id = Identity::load(&key)?;
            match cur_t.member(&member) {
                Some(m) if m.key == id.public() => {}
                _ => bail!(
                    "`{member}` with key {} is not a member of the current treaty",
                    key.display()
                ),
            }
            a.parsed()?;
            a.sign(&member, &id);
            let have = a.valid_signers(&cur_t)?.len();
            let (need, _) = crate::history::required(&cur_t, &a.parsed()?);
            crate::history::save_amendment(&path, &a)?;
            writeln!(
                w,
                "signed amendment {} as `{member}`: {have} of {need} signatures",
                &a.id()[..16]
            )?;
        }
        UnionCmd::Pending { treaty, dir } => {
            let h = History::load_or_genesis(&treaty)?;
            let cur = h.current();
            let cur_t = cur.parsed()?;
            for (path, a) in list_amendments(&amend_dir(&treaty, dir))? {
                let state = match crate::history::check_next(cur, &cur_t, &a) {
                    Ok(_) => "ratifiable".to_string(),
                    Err(e) => e.to_string(),
                };
                writeln!(
                    w,
                    "{} version {} by {} ({}): {state}",
                    &a.id()[..16],
                    a.version,
                    a.proposer,
                    path.display()
                )?;
                if let Ok(next) = a.parsed() {
                    for line in crate::treaty::Canonical::diff(cur_t.canonical(), next.canonical())
                    {
                        writeln!(w, "  {line}")?;
                    }
                }
            }
        }
        UnionCmd::Ratify { treaty, dir } => {
            let mut h = History::load_or_genesis(&treaty)?;
            let cur = h.current().clone();
            let cur_t = cur.parsed()?;
            let dir = amend_dir(&treaty, dir);
            let ok: Vec<Amendment> = list_amendments(&dir)?
                .into_iter()
                .map(|(_, a)| a)
                .filter(|a| crate::history::check_next(&cur, &cur_t, a).is_ok())
                .collect();
            let Some(win) = crate::history::choose(&ok).cloned() else {
                bail!(
                    "no pending amendment for version {} has a strict majority of signatures yet (see `shield union pending`)",
                    cur.version + 1
                );
            };
            let t = h.ratify(win.clone())?;
            h.save(&treaty)?;
            crate::history::drop_void(&dir, win.version);
            writeln!(
                w,
                "ratified version {} (amendment {}); treaty digest {}",
                win.version,
                &win.id()[..16],
                t.digest_hex()
            )?;
            if ok.len() > 1 {
                writeln!(
                    w,
                    "{} other amendment(s) for this version lost to the smallest id and are void",
                    ok.len() - 1
                )?;
            }
            writeln!(w, "restart this member to apply it")?;
        }
        UnionCmd::History { treaty, genesis } => {
            let h = History::load_or_genesis(&treaty)?;
            let anchor = genesis.unwrap_or_else(|| h.versions[0].digest.clone());
            let verdict = match h.verify(&anchor) {
                Ok(_) => "verified".to_string(),
                Err(e) => format!("NOT VERIFIED: {e}"),
            };
            writeln!(w, "union {} genesis {anchor}: {verdict}", h.current().union)?;
            for a in &h.versions {
                let signers: Vec<&str> = a.approvals.iter().map(|x| x.member.as_str()).collect();
                writeln!(
                    w,
                    "  v{} {} {}",
                    a.version,
                    &a.digest[..16],
                    if a.version == 1 {
                        "genesis".to_string()
                    } else {
                        format!("by {} signed by {}", a.proposer, signers.join(", "))
                    }
                )?;
            }
            let file = Treaty::load(&treaty)?;
            if file.digest_hex() != h.current().digest {
                writeln!(
                    w,
                    "WARNING: {} (digest {}) is not the history's current version",
                    treaty.display(),
                    file.digest_hex()
                )?;
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
    fn amendments_propose_sign_ratify_history() {
        let dir = tempfile::tempdir().unwrap();
        let tp = dir.path().join("treaty.toml");
        let ids: Vec<(String, Identity, PathBuf)> = (0..5)
            .map(|i| {
                let id = Identity::from_seed([i + 1; 32]);
                let k = dir.path().join(format!("m{i}.key"));
                id.write(&k, false).unwrap();
                (format!("m{i}"), id, k)
            })
            .collect();
        let v: Vec<(&str, &Identity, u16)> = ids
            .iter()
            .enumerate()
            .map(|(i, (n, id, _))| (n.as_str(), id, 7000 + i as u16))
            .collect();
        std::fs::write(&tp, crate::treaty::tests::sample(&v, "")).unwrap();
        let genesis = Treaty::load(&tp).unwrap().digest_hex();
        let run = |c: UnionCmd| {
            let mut out = Vec::new();
            run_to(c, &mut out).map(|()| String::from_utf8(out).unwrap())
        };
        let out = run(UnionCmd::Propose {
            treaty: tp.clone(),
            member: "m0".into(),
            key: ids[0].2.clone(),
            new: None,
            add: None,
            public_key: None,
            endpoint: None,
            revoke: Some("m4".into()),
            rotate_key: false,
            overlap: None,
            invited: false,
            dir: None,
        })
        .unwrap();
        assert!(
            out.contains("my treaty has member `m4` that yours does not"),
            "{out}"
        );
        assert!(out.contains("1 of the 3 needed"), "{out}");
        let amend_id = out.split_whitespace().nth(5).unwrap().to_string();
        let sign = |i: usize| {
            run(UnionCmd::Sign {
                amendment: amend_id.clone(),
                treaty: tp.clone(),
                member: ids[i].0.clone(),
                key: ids[i].2.clone(),
                dir: None,
            })
        };
        sign(1).unwrap();
        // 2 of the 4 voters: a minority cannot ratify; the treaty is unchanged.
        let e = run(UnionCmd::Ratify {
            treaty: tp.clone(),
            dir: None,
        })
        .unwrap_err();
        assert!(e.to_string().contains("strict majority"), "{e}");
        assert_eq!(Treaty::load(&tp).unwrap().digest_hex(), genesis);
        let pending = run(UnionCmd::Pending {
            treaty: tp.clone(),
            dir: None,
        })
        .unwrap();
        assert!(pending.contains("2 valid signature(s)"), "{pending}");
        // A signer with the wrong key is refused.
        let e = run(UnionCmd::Sign {
            amendment: amend_id.clone(),
            treaty: tp.clone(),
            member: "m2".into(),
            key: ids[3].2.clone(),
            dir: None,
        })
        .unwrap_err();
        assert!(e.to_string().contains("is not a member"), "{e}");
        assert!(sign(2).unwrap().contains("3 of 3"));
        let replay = dir.path().join("replay.json");
        std::fs::copy(
            find_amendment(&amend_dir(&tp, None), &amend_id).unwrap(),
            &replay,
        )
        .unwrap();
        let out = run(UnionCmd::Ratify {
            treaty: tp.clone(),
            dir: None,
        })
        .unwrap();
        assert!(out.contains("ratified version 2"), "{out}");
        let t = Treaty::load(&tp).unwrap();
        assert!(t.member("m4").is_none() && t.is_revoked(&ids[4].1.public()));
        let h = run(UnionCmd::History {
            treaty: tp.clone(),
            genesis: Some(genesis.clone()),
        })
        .unwrap();
        assert!(h.contains("verified") && h.contains("v2"), "{h}");
        // Ratified amendments leave the pending directory; the old one again
        // (a replayed copy) is stale: neither signed nor ratified.
        assert!(sign(3).unwrap_err().to_string().contains("no amendment"));
        let e = run(UnionCmd::Sign {
            amendment: replay.to_str().unwrap().into(),
            treaty: tp.clone(),
            member: ids[3].0.clone(),
            key: ids[3].2.clone(),
            dir: None,
        })
        .unwrap_err();
        assert!(e.to_string().contains("stale or replayed"), "{e}");
        assert!(
            run(UnionCmd::Ratify {
                treaty: tp.clone(),
                dir: None
            })
            .is_err()
        );
        // The revoked member can no longer propose.
        let e = run(UnionCmd::Propose {
            treaty: tp.clone(),
            member: "m4".into(),
            key: ids[4].2.clone(),
            new: None,
            add: Some("x".into()),
            public_key: Some(Identity::from_seed([77; 32]).public_string()),
            endpoint: Some("127.0.0.1:1".into()),
            revoke: None,
            rotate_key: false,
            overlap: None,
            invited: false,
            dir: None,
        })
        .unwrap_err();
        assert!(e.to_string().contains("not a member"), "{e}");
    }

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
        let s = SignalStore::open(&db).unwrap();
        let now = shield_core::wall_now();
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
                endpoint: Some("127.0.0.1:2".into()),
                via: None,
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
                endpoint: Some("x:1".into()),
                via: None,
            },
            &mut Vec::new(),
        );
        assert!(e.unwrap_err().to_string().contains("listed twice"));
        assert_eq!(Treaty::load(&tp).unwrap().digest(), t.digest());
    }
}
