//! The treaty's history: every version of the treaty, hash-linked to the one
//! before it and signed by the members that ratified it, so a member can check
//! from the union's genesis digest alone that the treaty it runs is the one the
//! members agreed on.
//!
//! Owns amendments (a proposed next version: the full treaty text, the digest
//! of the version it amends, and members' signatures), the ratification rule
//! (a strict majority of the amended version's members; see [`required`]),
//! the deterministic choice between conflicting amendments of one version, and
//! the history file (`<treaty>.history.json`). Version 1 is the treaty as
//! `union init`/`join` wrote it: an existing union upgrades in place, its
//! current digest becoming the genesis digest.
//!
//! It does not move amendments between members (the transports do: direct
//! `/union/v1/gov`, the NATS governance stream) and does not swap the running
//! treaty (the daemon restarts the union on a new version).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::identity::{Identity, public_to_string};
use crate::treaty::{Canonical, Member, Treaty, TreatyError, hex};

/// Why an amendment or a history is refused; each names what to do.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a treaty history or amendment: {msg}")]
    Format { path: PathBuf, msg: String },
    #[error(transparent)]
    Treaty(#[from] TreatyError),
    /// The amendment does not extend the current version (replayed, or made
    /// against another history).
    #[error(
        "amendment for version {got} does not follow the current version {current} (digest {digest}); it is old (replayed) or was made against another history"
    )]
    OutOfOrder {
        got: u64,
        current: u64,
        digest: String,
    },
    #[error(
        "signature of `{0}` on the amendment does not verify; it was forged or made for another text"
    )]
    BadSignature(String),
    #[error("`{0}` is not a member of the version being amended; only its members sign")]
    NotSigner(String),
    #[error(
        "amendment has {have} valid signature(s) of members of version {version}; ratification needs {need} (a strict majority): collect more with `shield union sign`"
    )]
    Minority {
        have: usize,
        need: usize,
        version: u64,
    },
    #[error("the amended treaty renames the union (`{0}` → `{1}`); a union keeps its name")]
    Renamed(String, String),
    #[error("history version {0} is broken: {1}")]
    Broken(u64, String),
    #[error(
        "history starts at digest {got}, the union's genesis digest is {want}: it is another union's history"
    )]
    WrongGenesis { got: String, want: String },
}

/// One member's signature over an amendment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub member: String,
    /// base64 ed25519 signature over [`Amendment::message`].
    pub sig: String,
}

/// A version of the treaty: version 1 has no `prev` and no approvals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amendment {
    pub union: String,
    pub version: u64,
    /// Hex digest of the version this one amends (empty for version 1).
    pub prev: String,
    /// The complete treaty of this version, as TOML.
    pub treaty: String,
    /// Hex digest of `treaty` (what signals carry while it is in force).
    pub digest: String,
    pub proposer: String,
    pub approvals: Vec<Approval>,
}

impl Amendment {
    /// Propose `next` as the version after `current`, signed by `proposer`.
    pub fn propose(
        current: &Amendment,
        next_text: &str,
        proposer: &str,
        id: &Identity,
    ) -> Result<Amendment, HistoryError> {
        let next = Treaty::parse(next_text, Path::new("(proposed treaty)"))?;
        let mut a = Amendment {
            union: next.name.clone(),
            version: current.version + 1,
            prev: current.digest.clone(),
            treaty: next_text.to_string(),
            digest: next.digest_hex(),
            proposer: proposer.to_string(),
            approvals: Vec::new(),
        };
        a.sign(proposer, id);
        Ok(a)
    }

    /// Version 1 of an existing treaty (upgrade in place).
    pub fn genesis(text: &str) -> Result<Amendment, HistoryError> {
        let t = Treaty::parse(text, Path::new("(treaty)"))?;
        Ok(Amendment {
            union: t.name.clone(),
            version: 1,
            prev: String::new(),
            treaty: text.to_string(),
            digest: t.digest_hex(),
            proposer: String::new(),
            approvals: Vec::new(),
        })
    }

    /// The bytes members sign: domain, union, version, previous and new digest.
    pub fn message(&self) -> Vec<u8> {
        let mut m = b"shield-union amendment v1\0".to_vec();
        m.extend(self.union.as_bytes());
        m.push(0);
        m.extend(self.version.to_be_bytes());
        m.extend(self.prev.as_bytes());
        m.push(0);
        m.extend(self.digest.as_bytes());
        m
    }

    /// The amendment's id: sha256 of what is signed (same on every member).
    pub fn id(&self) -> String {
        hex(&Sha256::digest(self.message()))
    }

    /// Add (or replace) `member`'s signature.
    pub fn sign(&mut self, member: &str, id: &Identity) {
        let sig = B64.encode(id.signing_key().sign(&self.message()).to_bytes());
        self.approvals.retain(|a| a.member != member);
        self.approvals.push(Approval {
            member: member.to_string(),
            sig,
        });
        self.approvals.sort_by(|a, b| a.member.cmp(&b.member));
    }

    /// The treaty this amendment installs, checked against its recorded digest.
    pub fn parsed(&self) -> Result<Treaty, HistoryError> {
        let t = Treaty::parse(&self.treaty, Path::new("(amended treaty)"))?;
        if t.digest_hex() != self.digest {
            return Err(HistoryError::Broken(
                self.version,
                "the treaty text does not have the recorded digest".into(),
            ));
        }
        Ok(t)
    }

    /// Members of `prev` whose valid signature the amendment carries.
    /// Refuses a forged signature or a signer who is not a member of `prev`.
    pub fn valid_signers(&self, prev: &Treaty) -> Result<BTreeSet<String>, HistoryError> {
        let msg = self.message();
        let mut out = BTreeSet::new();
        for a in &self.approvals {
            let Some(m) = prev.member(&a.member) else {
                return Err(HistoryError::NotSigner(a.member.clone()));
            };
            let ok = B64
                .decode(&a.sig)
                .ok()
                .and_then(|b| <[u8; 64]>::try_from(b).ok())
                .is_some_and(|b| {
                    m.key
                        .verify_strict(&msg, &Signature::from_bytes(&b))
                        .is_ok()
                });
            if !ok || prev.is_revoked(&m.key) {
                return Err(HistoryError::BadSignature(a.member.clone()));
            }
            out.insert(a.member.clone());
        }
        Ok(out)
    }
}

/// How an amendment is ratified: which class it falls in under the amended
/// version's `[governance]` policy, whose signatures count, and how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub class: Class,
    /// Members of the amended version whose valid signatures count.
    pub voters: BTreeSet<String>,
    pub need: usize,
}

/// The class of an amendment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    /// Anything else: a strict majority of the voting members.
    Vote,
    /// `rotate_own_key`: this member's key changes and nothing else; its own
    /// signature (with the old key) ratifies it.
    RotateOwnKey(String),
    /// `invite`: this member is added on probation and nothing else changes;
    /// `invite` full members' signatures ratify it.
    Invite(String),
}

/// The ratification rule for `prev` → `next`.
///
/// Voters are `prev`'s members except those on probation. A full vote needs
/// a strict majority of the voters; when the amendment removes (or revokes)
/// exactly one member, that member is not a voter (it cannot veto its own
/// revocation, and its own signature does not count); removing more than one
/// at once keeps them all as voters, so a proposal that drops every other
/// member still needs the majority it drops. The auto-approved classes
/// ([`Class`]) apply only when the amendment is exactly that change, under
/// `prev`'s policy.
pub fn rule(prev: &Treaty, next: &Treaty) -> Rule {
    let gov = &prev.governance;
    let mut voters: BTreeSet<String> = prev
        .members()
        .filter(|m| !gov.on_probation(&m.name))
        .map(|m| m.name.clone())
        .collect();
    if gov.rotate_own_key
        && let Some(who) = own_key_rotation(prev, next)
    {
        return Rule {
            class: Class::RotateOwnKey(who.clone()),
            voters: BTreeSet::from([who]),
            need: 1,
        };
    }
    let majority = voters.len() / 2 + 1;
    if gov.invite > 0
        && let Some(who) = invitation(prev, next)
    {
        return Rule {
            class: Class::Invite(who),
            voters,
            need: (gov.invite as usize).min(majority),
        };
    }
    let removed: Vec<String> = prev
        .members()
        .filter(|m| next.member(&m.name).is_none_or(|n| next.is_revoked(&n.key)))
        .map(|m| m.name.clone())
        .collect();
    if let [one] = removed.as_slice()
        && voters.remove(one)
    {
        return Rule {
            class: Class::Vote,
            need: voters.len() / 2 + 1,
            voters,
        };
    }
    Rule {
        class: Class::Vote,
        need: majority,
        voters,
    }
}

/// Signatures an amendment from `prev` to `next` needs, and the member whose
/// signature does not count for it when one is revoked (see [`rule`]).
pub fn required(prev: &Treaty, next: &Treaty) -> (usize, Option<String>) {
    let r = rule(prev, next);
    let left_out = prev
        .members()
        .find(|m| !r.voters.contains(&m.name) && !prev.governance.on_probation(&m.name))
        .filter(|_| r.class == Class::Vote)
        .map(|m| m.name.clone());
    (r.need, left_out)
}

/// Everything in a treaty that an auto-approved amendment must leave as it
/// is: the canonical form plus what it leaves out (endpoints, transport).
fn comparable(c: Canonical, t: &Treaty) -> (Canonical, Vec<(String, String)>, String) {
    let endpoints = t
        .members()
        .map(|m| (m.name.clone(), m.endpoint.clone()))
        .collect();
    let transport = serde_json::to_string(&t.transport_file).unwrap_or_default();
    (c, endpoints, transport)
}

/// The member whose own key `next` rotates, when that is all it changes: a new
/// key (not revoked, not another member's), and the old one either revoked or
/// kept as its previous key for an overlap window.
fn own_key_rotation(prev: &Treaty, next: &Treaty) -> Option<String> {
    let changed: Vec<&Member> = prev
        .members()
        .filter(|m| next.member(&m.name).is_some_and(|n| n.key != m.key))
        .collect();
    let [m] = changed.as_slice() else {
        return None;
    };
    let new_key = next.member(&m.name)?.key;
    if prev.is_revoked(&new_key) || prev.member_by_key(&new_key).is_some() {
        return None;
    }
    let mut want = prev.canonical().clone();
    for e in &mut want.members {
        if e.0 == m.name {
            e.1 = public_to_string(&new_key);
        }
    }
    want.rotations.retain(|r| r.0 != m.name);
    match next.member(&m.name)?.previous {
        // With an overlap window: the old key stays valid until `until`.
        Some((k, until)) if k == m.key => {
            want.rotations
                .push((m.name.clone(), public_to_string(&k), until));
            want.rotations.sort();
        }
        Some(_) => return None,
        None => {
            want.revoked.push(public_to_string(&m.key));
            want.revoked.sort();
            want.revoked.dedup();
        }
    }
    let mut with_endpoints = comparable(want, prev);
    with_endpoints.2 = serde_json::to_string(&prev.transport_file).unwrap_or_default();
    (with_endpoints == comparable(next.canonical().clone(), next)).then(|| m.name.clone())
}

/// The member `next` adds by invitation, when that is all it changes: one new
/// member with a fresh key and no more than the smallest signal cap of the
/// others, listed in `governance.invited`, within `max_invited`.
fn invitation(prev: &Treaty, next: &Treaty) -> Option<String> {
    let added: Vec<&Member> = next
        .members()
        .filter(|m| prev.member(&m.name).is_none())
        .collect();
    let [m] = added.as_slice() else {
        return None;
    };
    if prev.is_revoked(&m.key) || prev.member_by_key(&m.key).is_some() {
        return None;
    }
    let cap = prev.members().map(|p| p.max_signals_per_minute).min()?;
    if m.max_signals_per_minute > cap {
        return None;
    }
    let g = &prev.governance;
    if g.invited.len() as u32 >= g.max_invited() {
        return None;
    }
    let mut want = prev.canonical().clone();
    want.members.push((
        m.name.clone(),
        public_to_string(&m.key),
        m.max_signals_per_minute,
    ));
    want.members.sort();
    if let Some(gc) = &mut want.governance {
        gc.3.push(m.name.clone());
        gc.3.sort();
    }
    let mut endpoints = comparable(want, prev);
    endpoints.1.push((m.name.clone(), m.endpoint.clone()));
    endpoints.1.sort();
    (endpoints == comparable(next.canonical().clone(), next)).then(|| m.name.clone())
}

/// Check that `a` may follow `current` (`current_treaty` parsed): the next
/// version number, linked to the current digest, same union, and signed by
/// enough of the current members.
pub fn check_next(
    current: &Amendment,
    current_treaty: &Treaty,
    a: &Amendment,
) -> Result<Treaty, HistoryError> {
    if a.version != current.version + 1 || a.prev != current.digest {
        return Err(HistoryError::OutOfOrder {
            got: a.version,
            current: current.version,
            digest: current.digest.clone(),
        });
    }
    let next = a.parsed()?;
    if next.name != current_treaty.name || a.union != current_treaty.name {
        return Err(HistoryError::Renamed(
            current_treaty.name.clone(),
            next.name.clone(),
        ));
    }
    let have = a.valid_signers(current_treaty)?;
    let r = rule(current_treaty, &next);
    let need = r.need;
    let counted = have.iter().filter(|n| r.voters.contains(*n)).count();
    if counted < need {
        return Err(HistoryError::Minority {
            have: counted,
            need,
            version: current.version,
        });
    }
    Ok(next)
}

/// Of several amendments for the same next version that are all ratified, the
/// one every member installs: the smallest id. Arrival order plays no part.
pub fn choose(candidates: &[Amendment]) -> Option<&Amendment> {
    candidates.iter().min_by_key(|a| a.id())
}

/// The chain of versions, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct History {
    pub versions: Vec<Amendment>,
}

/// Where the history of `treaty_path` is kept.
pub fn history_path(treaty_path: &Path) -> PathBuf {
    let mut p = treaty_path.as_os_str().to_owned();
    p.push(".history.json");
    PathBuf::from(p)
}

impl History {
    /// The history next to `treaty_path`, or version 1 made from the treaty
    /// file when there is none yet (upgrade in place).
    pub fn load_or_genesis(treaty_path: &Path) -> Result<History, HistoryError> {
        let hp = history_path(treaty_path);
        match std::fs::read_to_string(&hp) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| HistoryError::Format {
                path: hp,
                msg: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let text =
                    std::fs::read_to_string(treaty_path).map_err(|source| HistoryError::Io {
                        path: treaty_path.to_owned(),
                        source,
                    })?;
                Ok(History {
                    versions: vec![Amendment::genesis(&text)?],
                })
            }
            Err(source) => Err(HistoryError::Io { path: hp, source }),
        }
    }

    pub fn current(&self) -> &Amendment {
        // A history always holds version 1 (load_or_genesis, verify).
        &self.versions[self.versions.len() - 1]
    }

    /// Verify the whole chain from the union's genesis digest (the trust
    /// anchor an invitation carries). Returns the current treaty.
    pub fn verify(&self, genesis: &str) -> Result<Treaty, HistoryError> {
        let Some(first) = self.versions.first() else {
            return Err(HistoryError::Broken(0, "the history is empty".into()));
        };
        if first.version != 1 || !first.prev.is_empty() {
            return Err(HistoryError::Broken(
                1,
                "it does not start at version 1".into(),
            ));
        }
        if first.digest != genesis {
            return Err(HistoryError::WrongGenesis {
                got: first.digest.clone(),
                want: genesis.to_string(),
            });
        }
        let mut cur_treaty = first.parsed()?;
        let mut cur = first;
        for a in &self.versions[1..] {
            cur_treaty = check_next(cur, &cur_treaty, a)
                .map_err(|e| HistoryError::Broken(a.version, e.to_string()))?;
            cur = a;
        }
        Ok(cur_treaty)
    }

    /// Append a ratified amendment (checked against the current version).
    pub fn ratify(&mut self, a: Amendment) -> Result<Treaty, HistoryError> {
        let cur = self.current().clone();
        let t = check_next(&cur, &cur.parsed()?, &a)?;
        self.versions.push(a);
        Ok(t)
    }

    /// Write the history and the current treaty file (each atomically).
    pub fn save(&self, treaty_path: &Path) -> Result<(), HistoryError> {
        let hp = history_path(treaty_path);
        let json = serde_json::to_string_pretty(self).map_err(|e| HistoryError::Format {
            path: hp.clone(),
            msg: e.to_string(),
        })?;
        write_atomic(&hp, &json)?;
        write_atomic(treaty_path, &self.current().treaty)
    }
}

fn write_atomic(path: &Path, text: &str) -> Result<(), HistoryError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let io = |source| HistoryError::Io {
        path: path.to_owned(),
        source,
    };
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Read an amendment file.
pub fn load_amendment(path: &Path) -> Result<Amendment, HistoryError> {
    let text = std::fs::read_to_string(path).map_err(|source| HistoryError::Io {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| HistoryError::Format {
        path: path.to_owned(),
        msg: e.to_string(),
    })
}

/// Write an amendment file.
pub fn save_amendment(path: &Path, a: &Amendment) -> Result<(), HistoryError> {
    let json = serde_json::to_string_pretty(a).map_err(|e| HistoryError::Format {
        path: path.to_owned(),
        msg: e.to_string(),
    })?;
    write_atomic(path, &json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::treaty::tests::sample;

    fn ids(n: u8) -> Vec<(String, Identity)> {
        (0..n)
            .map(|i| (format!("m{i}"), Identity::from_seed([i + 1; 32])))
            .collect()
    }

    fn text(members: &[&(String, Identity)], extra: &str) -> String {
        let v: Vec<(&str, &Identity, u16)> = members
            .iter()
            .enumerate()
            .map(|(i, (n, id))| (n.as_str(), id, 7000 + i as u16))
            .collect();
        sample(&v, extra)
    }

    #[test]
    fn strict_majority_ratifies_a_minority_cannot() {
        let m = ids(5);
        let all: Vec<_> = m.iter().collect();
        let g = Amendment::genesis(&text(&all, "")).unwrap();
        let mut h = History {
            versions: vec![g.clone()],
        };
        let next = text(
            &all,
            "revoked = []\n[limits]\nmax_signals_per_minute = 60\n",
        );
        let mut a = Amendment::propose(&g, &next, "m0", &m[0].1).unwrap();
        a.sign("m1", &m[1].1);
        // 2 of 5: refused, nothing changes.
        let e = h.ratify(a.clone()).unwrap_err();
        assert!(
            matches!(
                e,
                HistoryError::Minority {
                    have: 2,
                    need: 3,
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(h.versions.len(), 1);
        a.sign("m2", &m[2].1);
        let t = h.ratify(a.clone()).unwrap();
        assert_eq!(t.digest_hex(), a.digest);
        assert_eq!(h.verify(&g.digest).unwrap().digest_hex(), a.digest);
        // The same amendment again is a replay: version 2 already exists.
        assert!(matches!(
            h.ratify(a).unwrap_err(),
            HistoryError::OutOfOrder {
                got: 2,
                current: 2,
                ..
            }
        ));
    }

    #[test]
    fn forged_signatures_and_strangers_are_refused() {
        let m = ids(3);
        let all: Vec<_> = m.iter().collect();
        let g = Amendment::genesis(&text(&all, "")).unwrap();
        let mut h = History {
            versions: vec![g.clone()],
        };
        let next = text(&all, "[limits]\nmax_signals_per_minute = 60\n");
        let mut a = Amendment::propose(&g, &next, "m0", &m[0].1).unwrap();
        // m1's name, m0's key.
        a.sign("m1", &m[0].1);
        assert!(
            matches!(h.ratify(a.clone()).unwrap_err(), HistoryError::BadSignature(n) if n == "m1")
        );
        a.sign("m1", &m[1].1);
        a.sign("x", &Identity::from_seed([99; 32]));
        assert!(matches!(h.ratify(a.clone()).unwrap_err(), HistoryError::NotSigner(n) if n == "x"));
        a.approvals.retain(|p| p.member != "x");
        // The text changed after signing: signatures no longer cover it.
        let mut t = a.clone();
        t.treaty = text(&all, "[limits]\nmax_signals_per_minute = 6000\n");
        t.digest = Treaty::parse(&t.treaty, Path::new("t"))
            .unwrap()
            .digest_hex();
        assert!(matches!(
            h.ratify(t).unwrap_err(),
            HistoryError::BadSignature(_)
        ));
        h.ratify(a).unwrap();
    }

    #[test]
    fn revocation_needs_no_vote_of_the_revoked_but_a_purge_needs_the_majority() {
        let m = ids(5);
        let all: Vec<_> = m.iter().collect();
        let g = Amendment::genesis(&text(&all, "")).unwrap();
        // Revoke m4: 3 of the other 4 are a strict majority of 4.
        let rest: Vec<_> = m.iter().take(4).collect();
        let rev = text(
            &rest,
            &format!("revoked = [\"{}\"]\n", m[4].1.public_string()),
        );
        let mut a = Amendment::propose(&g, &rev, "m0", &m[0].1).unwrap();
        a.sign("m1", &m[1].1);
        a.sign("m4", &m[4].1); // the revoked member's own vote does not count
        let mut h = History {
            versions: vec![g.clone()],
        };
        assert!(matches!(
            h.ratify(a.clone()).unwrap_err(),
            HistoryError::Minority {
                have: 2,
                need: 3,
                ..
            }
        ));
        a.sign("m2", &m[2].1);
        h.ratify(a).unwrap();
        // m0 proposes to drop every other member: needs 3 of 4, it has 1.
        let cur = h.current().clone();
        let solo = text(&[&m[0]], "");
        let p = Amendment::propose(&cur, &solo, "m0", &m[0].1).unwrap();
        assert!(matches!(
            h.ratify(p).unwrap_err(),
            HistoryError::Minority {
                have: 1,
                need: 3,
                ..
            }
        ));
    }

    #[test]
    fn absorb_merges_signatures_caps_proposals_and_ratifies() {
        let m = ids(3);
        let all: Vec<_> = m.iter().collect();
        let dir = tempfile::tempdir().unwrap();
        let tp = dir.path().join("treaty.toml");
        std::fs::write(&tp, text(&all, "")).unwrap();
        let g = History::load_or_genesis(&tp).unwrap().current().clone();
        // m2 floods proposals: 4 are kept, the rest refused.
        let flood: Vec<Amendment> = (0..6)
            .map(|i| {
                let t = text(
                    &all,
                    &format!("[limits]\nmax_signals_per_minute = {}\n", 100 + i),
                );
                Amendment::propose(&g, &t, "m2", &m[2].1).unwrap()
            })
            .collect();
        let r = absorb(
            &tp,
            &Gov {
                history: vec![],
                pending: flood,
            },
        )
        .unwrap();
        assert_eq!((r.merged, r.refused, r.installed), (4, 2, None));
        // A forged co-signature is dropped; m1's real one completes the majority.
        let t = text(&all, "[limits]\nquorum = 2\n");
        let mut a = Amendment::propose(&g, &t, "m0", &m[0].1).unwrap();
        a.approvals.push(Approval {
            member: "m1".into(),
            sig: a.approvals[0].sig.clone(),
        });
        let r = absorb(
            &tp,
            &Gov {
                history: vec![],
                pending: vec![a.clone()],
            },
        )
        .unwrap();
        assert_eq!((r.merged, r.installed), (1, None));
        let mut b = a.clone();
        b.approvals.clear();
        b.sign("m1", &m[1].1);
        b.sign("m0", &m[0].1);
        let r = absorb(
            &tp,
            &Gov {
                history: vec![],
                pending: vec![b],
            },
        )
        .unwrap();
        assert_eq!(r.installed, Some(2));
        assert_eq!(Treaty::load(&tp).unwrap().digest_hex(), a.digest);
        // Every pending amendment of version 2 is void now and removed.
        assert!(pending_in(&amendments_dir(&tp)).is_empty());
    }

    /// A treaty over `m` with `[governance]` `gov` (and `extra` before it).
    fn gov_text(members: &[&(String, Identity)], extra: &str, gov: &str) -> String {
        text(members, &format!("{extra}[governance]\n{gov}\n"))
    }

    fn rotated(
        members: &[&(String, Identity)],
        who: usize,
        new: &Identity,
        extra: &str,
        gov: &str,
    ) -> String {
        let old = members[who].1.public_string();
        let mut t = gov_text(members, &format!("revoked = [\"{old}\"]\n{extra}"), gov);
        t = t.replace(&old, &new.public_string());
        // The revoked list names the old key again.
        t.replacen(
            &format!("revoked = [\"{}\"]", new.public_string()),
            &format!("revoked = [\"{old}\"]"),
            1,
        )
    }

    #[test]
    fn own_key_rotation_needs_only_its_owner_and_nothing_else_may_ride_along() {
        let m = ids(5);
        let all: Vec<_> = m.iter().collect();
        let gov = "rotate_own_key = true";
        let g = Amendment::genesis(&gov_text(&all, "", gov)).unwrap();
        let h = History {
            versions: vec![g.clone()],
        };
        let k = Identity::from_seed([77; 32]);
        // m2 rotates its own key, signed by its old key alone: ratified.
        let a = Amendment::propose(&g, &rotated(&all, 2, &k, "", gov), "m2", &m[2].1).unwrap();
        let t = h.clone().ratify(a.clone()).unwrap();
        assert_eq!(t.member("m2").unwrap().key, k.public());
        assert!(t.is_revoked(&m[2].1.public()));
        assert_eq!(
            rule(&g.parsed().unwrap(), &t).class,
            Class::RotateOwnKey("m2".into())
        );
        // The same rotation proposed by m0 for m2: m0's signature does not count.
        let b = Amendment::propose(&g, &rotated(&all, 2, &k, "", gov), "m0", &m[0].1).unwrap();
        assert!(matches!(
            h.clone().ratify(b).unwrap_err(),
            HistoryError::Minority {
                have: 0,
                need: 1,
                ..
            }
        ));
        // m2 rotates and raises the union's rate cap in the same amendment:
        // an escalation, judged as a full vote (1 of 3).
        let esc = rotated(
            &all,
            2,
            &k,
            "[limits]\nmax_signals_per_minute = 100000\n",
            gov,
        );
        let c = Amendment::propose(&g, &esc, "m2", &m[2].1).unwrap();
        assert!(matches!(
            h.clone().ratify(c).unwrap_err(),
            HistoryError::Minority {
                have: 1,
                need: 3,
                ..
            }
        ));
        // ... or moves another member's endpoint (addressing it could hijack).
        let moved = rotated(&all, 2, &k, "", gov).replace("127.0.0.1:7000", "10.9.9.9:7000");
        let d = Amendment::propose(&g, &moved, "m2", &m[2].1).unwrap();
        assert!(matches!(
            h.clone().ratify(d).unwrap_err(),
            HistoryError::Minority { .. }
        ));
        // ... or takes a revoked or another member's key.
        let stolen = rotated(&all, 2, &m[3].1, "", gov);
        assert!(
            Treaty::parse(&stolen, Path::new("t")).is_err() || {
                let e = Amendment::propose(&g, &stolen, "m2", &m[2].1).unwrap();
                h.clone().ratify(e).is_err()
            }
        );
        // With an overlap window instead of revoking the old key: also the owner's alone.
        let old = m[2].1.public_string();
        let overlap = gov_text(&all, "", gov).replace(
            &format!("key = \"{old}\""),
            &format!(
                "key = \"{}\"\nprevious_key = \"{old}\"\nprevious_key_until = 2000000000",
                k.public_string()
            ),
        );
        let o = Amendment::propose(&g, &overlap, "m2", &m[2].1).unwrap();
        let t = h.clone().ratify(o).unwrap();
        assert!(
            t.member("m2")
                .unwrap()
                .has_key_at(&m[2].1.public(), 1_999_999_999)
        );
        assert!(
            !t.member("m2")
                .unwrap()
                .has_key_at(&m[2].1.public(), 2_000_000_000)
        );
        // Keeping another member's key as "previous" is not a rotation of one's own.
        let grab = overlap.replace(
            &format!("previous_key = \"{old}\""),
            &format!("previous_key = \"{}\"", m[4].1.public_string()),
        );
        assert!(Treaty::parse(&grab, Path::new("t")).is_err());
        // Without the policy the owner's signature alone is a minority.
        let g2 = Amendment::genesis(&text(&all, "")).unwrap();
        let plain = text(
            &all,
            &format!("revoked = [\"{}\"]\n", m[2].1.public_string()),
        )
        .replacen(&m[2].1.public_string(), &k.public_string(), 1);
        let e = Amendment::propose(&g2, &plain, "m2", &m[2].1).unwrap();
        let mut h2 = History { versions: vec![g2] };
        assert!(matches!(
            h2.ratify(e).unwrap_err(),
            HistoryError::Minority {
                have: 1,
                need: 3,
                ..
            }
        ));
    }

    #[test]
    fn an_invitation_needs_its_signatures_and_probation_cannot_escalate() {
        let m = ids(5);
        let all: Vec<_> = m.iter().collect();
        let gov = "invite = 2\nmax_invited = 2";
        let g = Amendment::genesis(&gov_text(&all, "", gov)).unwrap();
        let mut h = History {
            versions: vec![g.clone()],
        };
        let x = ("x".to_string(), Identity::from_seed([90; 32]));
        let y = ("y".to_string(), Identity::from_seed([91; 32]));
        let z = ("z".to_string(), Identity::from_seed([92; 32]));
        let with = |more: &[&(String, Identity)], invited: &str, extra: &str| {
            let mut v = all.clone();
            v.extend_from_slice(more);
            gov_text(&v, extra, &format!("{gov}\ninvited = [{invited}]"))
        };
        // m0 alone invites x: 1 of the 2 signatures.
        let mut a = Amendment::propose(&g, &with(&[&x], "\"x\"", ""), "m0", &m[0].1).unwrap();
        assert!(matches!(
            h.clone().ratify(a.clone()).unwrap_err(),
            HistoryError::Minority {
                have: 1,
                need: 2,
                ..
            }
        ));
        // With m1: ratified, x on probation.
        a.sign("m1", &m[1].1);
        let t = h.ratify(a).unwrap();
        assert!(t.governance.on_probation("x"));
        // An invitation that does not put the new member on probation, or
        // raises its rate cap, is a full vote.
        let cur = h.current().clone();
        let mut b = Amendment::propose(&cur, &with(&[&x, &y], "\"x\"", ""), "m0", &m[0].1).unwrap();
        b.sign("m1", &m[1].1);
        assert!(matches!(
            h.clone().ratify(b).unwrap_err(),
            HistoryError::Minority {
                have: 2,
                need: 3,
                ..
            }
        ));
        // x (on probation) and m0 invite y: x's signature does not count.
        let mut c =
            Amendment::propose(&cur, &with(&[&x, &y], "\"x\", \"y\"", ""), "m0", &m[0].1).unwrap();
        c.sign("x", &x.1);
        assert!(matches!(
            h.clone().ratify(c.clone()).unwrap_err(),
            HistoryError::Minority {
                have: 1,
                need: 2,
                ..
            }
        ));
        // x votes on a full-vote amendment: not counted either.
        let mut d = Amendment::propose(
            &cur,
            &with(
                &[&x],
                "\"x\"",
                "[limits]\nquorum = 1\nmax_signals_per_minute = 9\n",
            ),
            "m0",
            &m[0].1,
        )
        .unwrap();
        d.sign("m1", &m[1].1);
        d.sign("x", &x.1);
        assert!(matches!(
            h.clone().ratify(d).unwrap_err(),
            HistoryError::Minority {
                have: 2,
                need: 3,
                ..
            }
        ));
        // Two colluders reach max_invited (2), then need a full vote.
        c.sign("m1", &m[1].1);
        h.ratify(c).unwrap();
        let cur = h.current().clone();
        let mut e = Amendment::propose(
            &cur,
            &with(&[&x, &y, &z], "\"x\", \"y\", \"z\"", ""),
            "m0",
            &m[0].1,
        )
        .unwrap();
        e.sign("m1", &m[1].1);
        assert!(matches!(
            h.clone().ratify(e).unwrap_err(),
            HistoryError::Minority {
                have: 2,
                need: 3,
                ..
            }
        ));
        // The invitation policy itself changes only by a full vote.
        let loosen =
            with(&[&x, &y], "\"x\", \"y\"", "").replace("max_invited = 2", "max_invited = 100");
        let mut f = Amendment::propose(&cur, &loosen, "m0", &m[0].1).unwrap();
        f.sign("m1", &m[1].1);
        assert!(matches!(
            h.clone().ratify(f).unwrap_err(),
            HistoryError::Minority {
                have: 2,
                need: 3,
                ..
            }
        ));
        // A one-member invitation policy is refused outright.
        assert!(Treaty::parse(&gov_text(&all, "", "invite = 1"), Path::new("t")).is_err());
    }

    #[test]
    fn conflicting_amendments_resolve_by_smallest_id_and_chain_verifies() {
        let m = ids(3);
        let all: Vec<_> = m.iter().collect();
        let g = Amendment::genesis(&text(&all, "")).unwrap();
        let mut x =
            Amendment::propose(&g, &text(&all, "[limits]\nquorum = 2\n"), "m0", &m[0].1).unwrap();
        x.sign("m1", &m[1].1);
        let mut y = Amendment::propose(
            &g,
            &text(&all, "[limits]\nquorum = 1\nmax_age = \"12h\"\n"),
            "m2",
            &m[2].1,
        )
        .unwrap();
        y.sign("m1", &m[1].1);
        let pick1 = choose(&[x.clone(), y.clone()]).unwrap().id();
        let pick2 = choose(&[y.clone(), x.clone()]).unwrap().id();
        assert_eq!(pick1, pick2);
        let mut h = History {
            versions: vec![g.clone()],
        };
        let win = if pick1 == x.id() {
            x.clone()
        } else {
            y.clone()
        };
        let lose = if pick1 == x.id() { y } else { x };
        h.ratify(win).unwrap();
        assert!(matches!(
            h.ratify(lose).unwrap_err(),
            HistoryError::OutOfOrder { .. }
        ));
        // Another union's genesis is refused as a trust anchor; a tampered link too.
        assert!(matches!(
            h.verify("00").unwrap_err(),
            HistoryError::WrongGenesis { .. }
        ));
        let mut bad = h.clone();
        bad.versions[1].prev = "ff".into();
        assert!(matches!(
            bad.verify(&g.digest).unwrap_err(),
            HistoryError::Broken(2, _)
        ));
    }
}

/// What one member offers another over the transport: the versions after the
/// asker's, and the amendments pending on its own current version.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Gov {
    pub history: Vec<Amendment>,
    pub pending: Vec<Amendment>,
}

/// Most amendments in one answer (a union that amends more often catches up
/// over several rounds).
pub const MAX_GOV: usize = 16;
/// Pending amendments kept per proposer: a member cannot fill the others'
/// disks with proposals. More are refused (counted) until some are ratified
/// or voided.
pub const MAX_PENDING_PER_PROPOSER: usize = 4;
/// Largest treaty text an amendment may carry.
pub const MAX_TREATY_BYTES: usize = 1 << 20;

/// Delete pending amendments that can no longer be ratified (their version is
/// installed or passed). Returns how many were removed.
pub fn drop_void(dir: &Path, current_version: u64) -> usize {
    pending_in(dir)
        .into_iter()
        .filter(|(_, a)| a.version <= current_version)
        .filter(|(p, _)| std::fs::remove_file(p).is_ok())
        .count()
}

/// Where the amendments of `treaty_path` wait for signatures.
pub fn amendments_dir(treaty_path: &Path) -> PathBuf {
    let mut p = treaty_path.as_os_str().to_owned();
    p.push(".amendments");
    PathBuf::from(p)
}

/// Amendments in `dir` (unreadable files are skipped: they are not ours to fix).
pub fn pending_in(dir: &Path) -> Vec<(PathBuf, Amendment)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, Amendment)> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| load_amendment(&p).ok().map(|a| (p, a)))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The answer to a peer at `since`.
pub fn gov_answer(treaty_path: &Path, since: u64) -> Gov {
    let Ok(h) = History::load_or_genesis(treaty_path) else {
        return Gov::default();
    };
    let cur = h.current().version;
    Gov {
        history: h
            .versions
            .iter()
            .filter(|a| a.version > since)
            .take(MAX_GOV)
            .cloned()
            .collect(),
        pending: pending_in(&amendments_dir(treaty_path))
            .into_iter()
            .map(|(_, a)| a)
            .filter(|a| a.version == cur + 1)
            .take(MAX_GOV)
            .collect(),
    }
}

/// What taking a peer's [`Gov`] changed here.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Absorbed {
    /// The new current version, when the treaty file was rewritten.
    pub installed: Option<u64>,
    /// Amendments stored or given new signatures.
    pub merged: usize,
    /// Amendments refused (forged, stale, replayed, from a stranger).
    pub refused: usize,
}

/// Take a peer's history and pending amendments: extend our history with
/// versions that verify against it (replacing our last versions when a peer's
/// conflicting one for the same version has the smaller id — every member
/// ends on the same chain), merge valid signatures into our pending
/// amendments, and ratify the next version as soon as one has a strict
/// majority. Writes the treaty file when the current version changes.
pub fn absorb(treaty_path: &Path, gov: &Gov) -> Result<Absorbed, HistoryError> {
    let mut h = History::load_or_genesis(treaty_path)?;
    let mut out = Absorbed::default();
    let before = h.current().digest.clone();
    for a in &gov.history {
        if a.version <= 1 {
            continue;
        }
        let i = (a.version - 1) as usize; // index of version a.version
        if i > h.versions.len() {
            continue; // a gap: the missing versions come in this or a later answer
        }
        if i < h.versions.len() {
            let ours = &h.versions[i];
            if ours.digest == a.digest || ours.id() <= a.id() {
                continue;
            }
            // Same version, other content, smaller id: check it, then adopt it.
            let prev = h.versions[i - 1].clone();
            match check_next(&prev, &prev.parsed()?, a) {
                Ok(_) => h.versions.truncate(i),
                Err(_) => {
                    out.refused += 1;
                    continue;
                }
            }
        }
        match h.ratify(a.clone()) {
            Ok(_) => {}
            Err(_) => out.refused += 1,
        }
    }
    let dir = amendments_dir(treaty_path);
    let cur = h.current().clone();
    let cur_t = cur.parsed()?;
    drop_void(&dir, cur.version);
    let mut mine = pending_in(&dir);
    for a in &gov.pending {
        if a.treaty.len() > MAX_TREATY_BYTES
            || a.version != cur.version + 1
            || a.prev != cur.digest
            || a.parsed().is_err()
        {
            out.refused += 1;
            continue;
        }
        // Keep only signatures that verify, one by one.
        let valid: Vec<Approval> = a
            .approvals
            .iter()
            .filter(|p| {
                let mut one = a.clone();
                one.approvals = vec![(*p).clone()];
                one.valid_signers(&cur_t).is_ok()
            })
            .cloned()
            .collect();
        if !valid.iter().any(|p| p.member == a.proposer) {
            out.refused += 1;
            continue;
        }
        let id = a.id();
        let (path, mut local) = match mine.iter().find(|(_, m)| m.id() == id) {
            Some((p, m)) => (p.clone(), m.clone()),
            None => {
                let from_proposer = mine
                    .iter()
                    .filter(|(_, m)| m.proposer == a.proposer)
                    .count();
                if from_proposer >= MAX_PENDING_PER_PROPOSER {
                    out.refused += 1;
                    continue;
                }
                let mut m = a.clone();
                m.approvals.clear();
                (dir.join(format!("{}.json", &id[..16])), m)
            }
        };
        let n = local.approvals.len();
        for p in valid {
            if !local.approvals.iter().any(|x| x.member == p.member) {
                local.approvals.push(p);
            }
        }
        local.approvals.sort_by(|a, b| a.member.cmp(&b.member));
        if local.approvals.len() > n {
            std::fs::create_dir_all(&dir).map_err(|source| HistoryError::Io {
                path: dir.clone(),
                source,
            })?;
            save_amendment(&path, &local)?;
            out.merged += 1;
            match mine.iter_mut().find(|(p, _)| *p == path) {
                Some(slot) => slot.1 = local,
                None => mine.push((path, local)),
            }
        }
    }
    // Ratify the next version when one has its majority.
    let ratifiable: Vec<Amendment> = pending_in(&dir)
        .into_iter()
        .map(|(_, a)| a)
        .filter(|a| check_next(&cur, &cur_t, a).is_ok())
        .collect();
    if let Some(win) = choose(&ratifiable) {
        h.ratify(win.clone())?;
    }
    if h.current().digest != before {
        h.save(treaty_path)?;
        out.installed = Some(h.current().version);
        drop_void(&dir, h.current().version);
    }
    Ok(out)
}
