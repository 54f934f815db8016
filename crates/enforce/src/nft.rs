//! The nftables backend: Shield's own `inet` table, kept in step with the ban
//! decisions through one netlink transaction per batch.
//!
//! Layout (table name configurable, `shield` by default):
//! - `ban4` / `ban6`: `ipv4_addr` / `ipv6_addr` sets with `flags timeout`
//!   holding single addresses (hash sets: O(1) lookups, no overlap rules);
//! - `ban4net` / `ban6net`: the same with `flags interval, timeout`, holding
//!   ranges (CrowdSec's nftables mode cannot ban ranges; Shield can);
//! - chain `input` (and `forward` when asked) at the given priority dropping
//!   `ip saddr` / `ip6 saddr` members of the four sets.
//!
//! Every element carries a kernel timeout equal to the decision's remaining
//! time, so an unban is never needed for expiry.
//!
//! Transport: element changes go over a netlink socket kept open for the
//! daemon's life (`netlink.rs`: one `sendmsg` per batch, no process, no text);
//! the table, sets and chains are created by `nft -f -` once at start. With
//! `netlink: false` (or when the socket cannot be opened) every batch is one
//! `nft -f -` process instead. At start the sets' contents are replaced in one
//! transaction (flush + every active element), so no ban lapses meanwhile.
//!
//! Idempotence without `destroy` (nft 1.0.6 and kernels before 6.3 lack it): refreshing or removing an element is written
//! as `add {e timeout 1s}; delete {e}; [add {e timeout N}]` inside the same
//! transaction. The first add makes the delete safe whether or not the kernel
//! still holds `e` (it may have timed out a millisecond ago).
//!
//! Interval sets refuse overlapping elements, so ranges are kept in a small
//! model here: only ranges not covered by another active range are installed,
//! and when a covering range goes away the ones it shadowed are installed again.
//! If a batch still fails, each element is retried alone and failures counted,
//! so one bad element never blocks the others.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hashbrown::HashMap;
use ipnet::IpNet;
use shield_core::{Decision, UnixTime};

use crate::firewall::{Change, Firewall, LayerError, Runner, for_kernel};
use crate::netlink::{Batch, Elem, NfSock};

/// Options of the nftables backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NftOptions {
    /// Table name in family `inet`; `shield` by default.
    pub table: String,
    /// Also drop forwarded traffic (routers, container hosts).
    pub forward: bool,
    /// Base chain priority; -10 by default (before most filter rules).
    pub priority: i32,
    /// Only for tests: run every `nft` inside `ip netns exec NAME` (and open
    /// the netlink socket in that namespace).
    pub netns: Option<String>,
    /// Send element changes over netlink (one transaction per batch on a
    /// socket kept open); `false`: one `nft -f -` process per batch.
    pub netlink: bool,
}

impl Default for NftOptions {
    fn default() -> Self {
        NftOptions {
            table: "shield".into(),
            forward: false,
            priority: -10,
            netns: None,
            netlink: true,
        }
    }
}

/// The nftables backend, checked and ready (the table is created by `reconcile`).
pub fn nftables(opts: NftOptions) -> Result<Box<dyn Firewall>, LayerError> {
    Ok(Box::new(Nft::new(opts)?))
}

/// Elements per `add element` statement in a reconcile: keeps lines a sane size.
const CHUNK: usize = 20_000;

/// Kernel timeouts are capped so the arithmetic stays far from overflow (about 10 years).
const MAX_TIMEOUT_S: u64 = 315_360_000;

/// Which of the four sets an element belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum SetKind {
    Ban4,
    Ban6,
    Ban4Net,
    Ban6Net,
}

impl SetKind {
    fn name(self) -> &'static str {
        match self {
            SetKind::Ban4 => "ban4",
            SetKind::Ban6 => "ban6",
            SetKind::Ban4Net => "ban4net",
            SetKind::Ban6Net => "ban6net",
        }
    }

    fn of(net: &IpNet) -> SetKind {
        let host = net.prefix_len() == net.max_prefix_len();
        match (net, host) {
            (IpNet::V4(_), true) => SetKind::Ban4,
            (IpNet::V6(_), true) => SetKind::Ban6,
            (IpNet::V4(_), false) => SetKind::Ban4Net,
            (IpNet::V6(_), false) => SetKind::Ban6Net,
        }
    }
}

/// The set and network of a target. Every network here comes from a
/// decision's canonical target ([`shield_core::Net`]), so an IPv4 address
/// written as IPv6 is already IPv4 and goes to the IPv4 sets.
fn element(net: &IpNet) -> (SetKind, IpNet) {
    (SetKind::of(net), *net)
}

fn timeout_s(expires: UnixTime, now: UnixTime) -> u64 {
    ((expires - now).max(1) as u64).min(MAX_TIMEOUT_S)
}

/// One element command of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Cmd {
    delete: bool,
    kind: SetKind,
    net: IpNet,
    timeout_s: Option<u64>,
}

impl Cmd {
    fn add(kind: SetKind, net: IpNet, timeout_s: u64) -> Cmd {
        Cmd {
            delete: false,
            kind,
            net,
            timeout_s: Some(timeout_s),
        }
    }

    fn delete(kind: SetKind, net: IpNet) -> Cmd {
        Cmd {
            delete: true,
            kind,
            net,
            timeout_s: None,
        }
    }

    /// The element as nft writes it: a bare address for hosts, CIDR for ranges.
    fn text(&self) -> String {
        match self.kind {
            SetKind::Ban4 | SetKind::Ban6 => self.net.addr().to_string(),
            _ => self.net.to_string(),
        }
    }
}

/// One element's worth of commands: retried alone if its batch fails.
#[derive(Debug)]
struct Op {
    cmds: Vec<Cmd>,
    /// For ranges: the model update to undo if this op fails on its own.
    range: Option<(IpNet, Option<UnixTime>)>,
}

/// How element changes reach the kernel.
enum Wire {
    /// One netlink transaction per batch on our own socket (the default).
    Netlink(NfSock),
    /// One `nft -f -` process per batch (fallback).
    Cli,
}

pub(crate) struct Nft {
    opts: NftOptions,
    runner: Runner,
    wire: Wire,
    /// Ranges wanted by active decisions: net → expiry (the latest one).
    wanted: BTreeMap<IpNet, UnixTime>,
    /// Ranges installed in the kernel: net → expiry (the kernel forgets them by itself).
    installed: HashMap<IpNet, UnixTime>,
    failures: u64,
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
}

/// Groups consecutive commands of the same kind (delete/add, set): one
/// statement or one run of netlink messages each.
fn runs(cmds: &[Cmd]) -> impl Iterator<Item = &[Cmd]> {
    cmds.chunk_by(|a, b| a.delete == b.delete && a.kind == b.kind)
}

impl Nft {
    pub(crate) fn new(opts: NftOptions) -> Result<Self, LayerError> {
        if !valid_name(&opts.table) {
            return Err(LayerError::Config(format!(
                "nftables table name `{}` must start with a letter and hold only letters, digits, `_` or `-` (64 at most)",
                opts.table
            )));
        }
        if let Some(ns) = &opts.netns
            && !valid_name(ns)
        {
            return Err(LayerError::Config(format!(
                "network namespace name `{ns}` is not a plain name"
            )));
        }
        let runner = Runner {
            netns: opts.netns.clone(),
        };
        // nft creates the table, sets and chains (once, at start).
        runner.run("nft", "nftables", &["--version"], None)?;
        let wire = if opts.netlink {
            match NfSock::open(opts.netns.as_deref()) {
                Ok(sock) => Wire::Netlink(sock),
                Err(e) => {
                    tracing::warn!(target: "shield::enforce", layer = "nftables", error = %e, "cannot open a netlink socket to nf_tables; falling back to one `nft -f -` per batch");
                    Wire::Cli
                }
            }
        } else {
            Wire::Cli
        };
        Ok(Nft {
            opts,
            runner,
            wire,
            wanted: BTreeMap::new(),
            installed: HashMap::new(),
            failures: 0,
        })
    }

    fn set_ref(&self, kind: SetKind) -> String {
        format!("inet {} {}", self.opts.table, kind.name())
    }

    fn run_script(&self, script: &str) -> Result<(), LayerError> {
        self.runner
            .run("nft", "nftables", &["-f", "-"], Some(script.as_bytes()))
            .map(|_| ())
    }

    /// The commands as nft statements, appended to `out`.
    fn render_text(&self, cmds: &[Cmd], out: &mut String) {
        for run in runs(cmds) {
            let verb = if run[0].delete { "delete" } else { "add" };
            let _ = write!(out, "{verb} element {} {{ ", self.set_ref(run[0].kind));
            for (i, c) in run.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&c.text());
                if let Some(t) = c.timeout_s {
                    let _ = write!(out, " timeout {t}s");
                }
            }
            out.push_str(" }\n");
        }
    }

    /// The commands as netlink messages, appended to `batch`.
    fn render_netlink(&self, cmds: &[Cmd], batch: &mut Batch) {
        let mut elems = Vec::new();
        for run in runs(cmds) {
            let interval = matches!(run[0].kind, SetKind::Ban4Net | SetKind::Ban6Net);
            elems.clear();
            for c in run {
                let ms = c.timeout_s.map(|s| s * 1000);
                elems.extend(Elem::for_net(&c.net, interval, ms).into_iter().flatten());
            }
            batch.elements(run[0].delete, &self.opts.table, run[0].kind.name(), &elems);
        }
    }

    /// Apply `cmds` in one transaction (after `flush` of the named sets, if any).
    fn send(&mut self, flush: &[SetKind], cmds: &[Cmd]) -> Result<(), LayerError> {
        if matches!(self.wire, Wire::Netlink(_)) {
            let mut batch = Batch::new();
            for kind in flush {
                batch.flush_set(&self.opts.table, kind.name());
            }
            self.render_netlink(cmds, &mut batch);
            if let Wire::Netlink(sock) = &mut self.wire {
                return sock.commit(batch).map_err(|r| LayerError::Kernel {
                    what: r.what,
                    source: r.error,
                });
            }
        }
        let mut script = String::new();
        for kind in flush {
            let _ = writeln!(script, "flush set {}", self.set_ref(*kind));
        }
        self.render_text(cmds, &mut script);
        if script.is_empty() {
            return Ok(());
        }
        self.run_script(&script)
    }

    /// `add {e 1s}; delete {e}`: removes `e` whether or not the kernel still has it.
    fn remove_cmds(kind: SetKind, net: IpNet, out: &mut Vec<Cmd>) {
        out.push(Cmd::add(kind, net, 1));
        out.push(Cmd::delete(kind, net));
    }

    /// Ranges to install: wanted, active, and not inside another wanted active range.
    fn desired_ranges(&self, now: UnixTime) -> HashMap<IpNet, UnixTime> {
        let mut out = HashMap::new();
        // BTreeMap order puts a covering network before the ones it contains
        // (same family, lower or equal address, shorter prefix first at equal address).
        let mut last: Option<IpNet> = None;
        for (net, &exp) in self.wanted.iter().filter(|(_, e)| **e > now) {
            if let Some(l) = last
                && l.contains(net)
            {
                continue;
            }
            last = Some(*net);
            out.insert(*net, exp);
        }
        out
    }

    /// Commands that bring the installed ranges to the desired ones.
    fn range_ops(&mut self, now: UnixTime) -> Vec<Op> {
        // What the kernel timed out by itself needs no op.
        self.installed.retain(|_, exp| *exp > now);
        self.wanted.retain(|_, exp| *exp > now);
        let desired = self.desired_ranges(now);
        let mut ops = Vec::new();
        // Removals first, so a newly covering range never overlaps what it replaces.
        let mut gone: Vec<IpNet> = self
            .installed
            .keys()
            .filter(|n| !desired.contains_key(*n))
            .copied()
            .collect();
        gone.sort();
        for net in gone {
            let (kind, net) = element(&net);
            let mut cmds = Vec::new();
            Self::remove_cmds(kind, net, &mut cmds);
            let prev = self.installed.remove(&net);
            ops.push(Op {
                cmds,
                range: Some((net, prev)),
            });
        }
        let mut changed: Vec<(IpNet, UnixTime)> = desired
            .iter()
            .filter(|(n, e)| self.installed.get(*n) != Some(*e))
            .map(|(n, e)| (*n, *e))
            .collect();
        changed.sort();
        for (net, exp) in changed {
            let (kind, net) = element(&net);
            let mut cmds = Vec::new();
            if self.installed.contains_key(&net) {
                Self::remove_cmds(kind, net, &mut cmds);
            }
            cmds.push(Cmd::add(kind, net, timeout_s(exp, now)));
            let prev = self.installed.insert(net, exp);
            ops.push(Op {
                cmds,
                range: Some((net, prev)),
            });
        }
        ops
    }

    /// Sets, chain and rules. `fresh`: delete and recreate the whole table
    /// (elements too); otherwise create what is missing and rewrite only the
    /// rules, leaving the sets' elements in place.
    fn table_script(&self, fresh: bool) -> String {
        let t = &self.opts.table;
        let p = self.opts.priority;
        let mut s = String::new();
        let _ = writeln!(s, "add table inet {t}");
        if fresh {
            let _ = writeln!(s, "delete table inet {t}");
            let _ = writeln!(s, "add table inet {t}");
        }
        let _ = writeln!(
            s,
            "add set inet {t} ban4 {{ type ipv4_addr; flags timeout; }}"
        );
        let _ = writeln!(
            s,
            "add set inet {t} ban6 {{ type ipv6_addr; flags timeout; }}"
        );
        let _ = writeln!(
            s,
            "add set inet {t} ban4net {{ type ipv4_addr; flags interval, timeout; }}"
        );
        let _ = writeln!(
            s,
            "add set inet {t} ban6net {{ type ipv6_addr; flags interval, timeout; }}"
        );
        for h in ["input", "forward"] {
            let _ = writeln!(
                s,
                "add chain inet {t} {h} {{ type filter hook {h} priority {p}; policy accept; }}"
            );
            if h == "forward" && !self.opts.forward {
                let _ = writeln!(s, "delete chain inet {t} {h}");
                continue;
            }
            if !fresh {
                let _ = writeln!(s, "flush chain inet {t} {h}");
            }
            for (fam, set) in [
                ("ip", "ban4"),
                ("ip", "ban4net"),
                ("ip6", "ban6"),
                ("ip6", "ban6net"),
            ] {
                let _ = writeln!(s, "add rule inet {t} {h} {fam} saddr @{set} counter drop");
            }
        }
        s
    }

    /// Run `fast` (the whole batch as one transaction); if the kernel refuses
    /// it, run each op alone so one bad element cannot block the rest.
    fn run_ops(&mut self, ops: Vec<Op>, fast: &[Cmd]) -> Result<(), LayerError> {
        if ops.is_empty() {
            return Ok(());
        }
        let Err(batch_err) = self.send(&[], fast) else {
            return Ok(());
        };
        if matches!(
            batch_err,
            LayerError::ToolMissing { .. } | LayerError::Io { .. }
        ) {
            return Err(batch_err);
        }
        tracing::warn!(target: "shield::enforce", layer = "nftables", error = %batch_err, ops = ops.len(), "batch refused; retrying element by element");
        let total = ops.len();
        let mut failed = 0;
        let mut first = None;
        for op in ops {
            if let Err(e) = self.send(&[], &op.cmds) {
                failed += 1;
                if let Some((net, prev)) = op.range {
                    // Undo the model update: the kernel did not take it.
                    match prev {
                        Some(exp) => self.installed.insert(net, exp),
                        None => self.installed.remove(&net),
                    };
                }
                first.get_or_insert_with(|| e.to_string());
            }
        }
        self.failures += failed as u64;
        match first {
            None => Ok(()),
            Some(first) => Err(LayerError::Partial {
                failed,
                total,
                first,
            }),
        }
    }
}

impl Firewall for Nft {
    fn name(&self) -> &'static str {
        "nftables"
    }

    fn apply(&mut self, batch: &[Change], now: UnixTime) -> Result<(), LayerError> {
        // Last change per host element wins within a batch: Some(expiry) = add, None = remove.
        let mut hosts: HashMap<(SetKind, IpNet), Option<UnixTime>> = HashMap::new();
        let mut order: Vec<(SetKind, IpNet)> = Vec::new();
        let mut ranges_touched = false;
        for c in batch.iter().filter(|c| for_kernel(c.decision())) {
            let d = c.decision();
            let (kind, net) = element(&d.target);
            let add = matches!(c, Change::Add(_)) && d.is_active(now);
            match kind {
                SetKind::Ban4 | SetKind::Ban6 => {
                    let key = (kind, net);
                    if !hosts.contains_key(&key) {
                        order.push(key);
                    }
                    hosts.insert(key, add.then_some(d.expires));
                }
                _ => {
                    ranges_touched = true;
                    if add {
                        self.wanted.insert(net, d.expires);
                    } else {
                        self.wanted.remove(&net);
                    }
                }
            }
        }
        let mut ops = Vec::new();
        if ranges_touched || self.installed.values().any(|e| *e <= now) {
            ops.extend(self.range_ops(now));
        }
        // The fast path: range ops as they are, then host elements grouped per
        // set into three runs (add 1s / delete / add), not three per element.
        let mut fast: Vec<Cmd> = ops.iter().flat_map(|o| o.cmds.iter().cloned()).collect();
        for kind in [SetKind::Ban4, SetKind::Ban6] {
            let keys: Vec<&(SetKind, IpNet)> = order.iter().filter(|k| k.0 == kind).collect();
            if keys.is_empty() {
                continue;
            }
            fast.extend(keys.iter().map(|k| Cmd::add(kind, k.1, 1)));
            fast.extend(keys.iter().map(|k| Cmd::delete(kind, k.1)));
            fast.extend(keys.iter().filter_map(|k| {
                hosts
                    .get(*k)
                    .copied()
                    .flatten()
                    .map(|e| Cmd::add(kind, k.1, timeout_s(e, now)))
            }));
        }
        for key in order {
            let mut cmds = Vec::new();
            Self::remove_cmds(key.0, key.1, &mut cmds);
            if let Some(Some(exp)) = hosts.get(&key) {
                cmds.push(Cmd::add(key.0, key.1, timeout_s(*exp, now)));
            }
            ops.push(Op { cmds, range: None });
        }
        self.run_ops(ops, &fast)
    }

    fn reconcile(&mut self, active: &[Decision], now: UnixTime) -> Result<(), LayerError> {
        self.wanted.clear();
        self.installed.clear();
        let mut hosts: BTreeMap<SetKind, HashMap<IpNet, UnixTime>> = BTreeMap::new();
        for d in active.iter().filter(|d| for_kernel(d) && d.is_active(now)) {
            let (kind, net) = element(&d.target);
            match kind {
                SetKind::Ban4 | SetKind::Ban6 => {
                    let e = hosts
                        .entry(kind)
                        .or_default()
                        .entry(net)
                        .or_insert(d.expires);
                    *e = (*e).max(d.expires);
                }
                _ => {
                    let e = self.wanted.entry(net).or_insert(d.expires);
                    *e = (*e).max(d.expires);
                }
            }
        }
        let ranges = self.desired_ranges(now);
        let mut cmds = Vec::new();
        for (kind, m) in hosts {
            cmds.extend(
                m.into_iter()
                    .map(|(n, e)| Cmd::add(kind, n, timeout_s(e, now))),
            );
        }
        let mut sorted: Vec<(&IpNet, &UnixTime)> = ranges.iter().collect();
        sorted.sort();
        for (net, exp) in sorted {
            let (kind, net) = element(net);
            cmds.push(Cmd::add(kind, net, timeout_s(*exp, now)));
        }
        // Keep runs per set together (one statement / message run each).
        cmds.sort_by_key(|c| c.kind);
        match self.wire {
            Wire::Netlink(_) => {
                // Table, sets and rules by nft without touching elements (or fresh
                // if their shape changed), then every set's content replaced in one
                // netlink transaction: flush + all active elements.
                if let Err(e) = self.run_script(&self.table_script(false)) {
                    if matches!(e, LayerError::ToolMissing { .. } | LayerError::Io { .. }) {
                        return Err(e);
                    }
                    tracing::info!(target: "shield::enforce", layer = "nftables", error = %e, "recreating the table");
                    self.run_script(&self.table_script(true))?;
                }
                let all = [
                    SetKind::Ban4,
                    SetKind::Ban6,
                    SetKind::Ban4Net,
                    SetKind::Ban6Net,
                ];
                self.send(&all, &cmds)?;
            }
            Wire::Cli => {
                let mut script = self.table_script(true);
                for chunk in cmds.chunks(CHUNK) {
                    self.render_text(chunk, &mut script);
                }
                self.run_script(&script)?;
            }
        }
        self.installed = ranges;
        Ok(())
    }

    fn teardown(&mut self) -> Result<(), LayerError> {
        let t = &self.opts.table;
        self.run_script(&format!("add table inet {t}\ndelete table inet {t}\n"))?;
        self.wanted.clear();
        self.installed.clear();
        Ok(())
    }

    fn failures(&self) -> u64 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_by_family_and_scope() {
        let e = |s: &str| {
            let (k, net) = element(&s.parse::<shield_core::Net>().unwrap());
            (k, Cmd::add(k, net, 1).text())
        };
        assert_eq!(e("192.0.2.1/32"), (SetKind::Ban4, "192.0.2.1".into()));
        assert_eq!(e("192.0.2.9/24"), (SetKind::Ban4Net, "192.0.2.0/24".into()));
        assert_eq!(e("2001:db8::1/128"), (SetKind::Ban6, "2001:db8::1".into()));
        assert_eq!(
            e("2001:db8::/48"),
            (SetKind::Ban6Net, "2001:db8::/48".into())
        );
        assert_eq!(
            e("::ffff:192.0.2.1/128"),
            (SetKind::Ban4, "192.0.2.1".into())
        );
    }

    #[test]
    fn nested_ranges_install_only_the_widest_active() {
        let mut n = Nft {
            opts: NftOptions::default(),
            runner: Runner { netns: None },
            wire: Wire::Cli,
            wanted: BTreeMap::new(),
            installed: HashMap::new(),
            failures: 0,
        };
        n.wanted.insert("10.0.0.0/8".parse().unwrap(), 100);
        n.wanted.insert("10.1.0.0/16".parse().unwrap(), 500);
        n.wanted.insert("192.168.0.0/16".parse().unwrap(), 100);
        let d = n.desired_ranges(0);
        assert_eq!(d.len(), 2);
        assert!(d.contains_key(&"10.0.0.0/8".parse::<IpNet>().unwrap()));
        // Once the /8 has expired, the /16 it shadowed comes back.
        let d = n.desired_ranges(100);
        assert_eq!(
            d.keys().copied().collect::<Vec<_>>(),
            vec!["10.1.0.0/16".parse::<IpNet>().unwrap()]
        );
        // And the ops: the first run installs two ranges, a later one re-adds the /16.
        let ops = n.range_ops(0);
        assert_eq!(ops.len(), 2);
        let ops = n.range_ops(150);
        assert_eq!(ops.len(), 1);
        assert_eq!(
            ops[0].cmds.last(),
            Some(&Cmd::add(
                SetKind::Ban4Net,
                "10.1.0.0/16".parse().unwrap(),
                350
            )),
            "{ops:?}"
        );
    }

    #[test]
    fn bad_table_name_is_refused() {
        let e = Nft::new(NftOptions {
            table: "x; flush ruleset".into(),
            ..Default::default()
        })
        .err()
        .unwrap();
        assert!(e.to_string().contains("table name"));
    }
}
