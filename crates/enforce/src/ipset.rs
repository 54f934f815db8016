//! The iptables + ipset backend, for hosts without nftables: two `hash:net`
//! sets with per-element timeouts (`shield4`, `shield6` by default) filled by
//! one `ipset restore -exist` per batch, and one `iptables`/`ip6tables` rule
//! each in INPUT (and FORWARD when asked) that drops their members.
//!
//! `hash:net` takes addresses and ranges side by side, and `-exist` makes a
//! re-add refresh the timeout and a delete of a missing element a no-op, so a
//! batch is idempotent. Reconcile fills fresh sets and `swap`s them in, so the
//! kernel never runs without the old or the new list.

use std::fmt::Write as _;

use ipnet::IpNet;
use shield_core::{Decision, Net, UnixTime};

use crate::firewall::{Change, Firewall, LayerError, Runner, for_kernel};

/// Options of the ipset backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpsetOptions {
    /// Set name prefix: sets are `<prefix>4` and `<prefix>6`. `shield` by default.
    pub prefix: String,
    /// Also drop forwarded traffic.
    pub forward: bool,
    /// Most elements per set (ipset's `maxelem`); 2 000 000 by default.
    pub max_elements: u32,
    /// Only for tests: run every tool inside `ip netns exec NAME`.
    pub netns: Option<String>,
}

impl Default for IpsetOptions {
    fn default() -> Self {
        IpsetOptions {
            prefix: "shield".into(),
            forward: false,
            max_elements: 2_000_000,
            netns: None,
        }
    }
}

/// ipset's largest timeout (seconds).
const MAX_TIMEOUT_S: u64 = 2_147_483;

/// The ipset backend, checked (tools present); sets and rules appear at `reconcile`.
pub fn ipset(opts: IpsetOptions) -> Result<Box<dyn Firewall>, LayerError> {
    let ok = !opts.prefix.is_empty()
        && opts.prefix.len() <= 20
        && opts
            .prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !ok {
        return Err(LayerError::Config(format!(
            "ipset prefix `{}` must be 1-20 letters, digits, `_` or `-`",
            opts.prefix
        )));
    }
    let runner = Runner {
        netns: opts.netns.clone(),
    };
    runner.run("ipset", "ipset", &["version"], None)?;
    runner.run("iptables", "iptables", &["--version"], None)?;
    Ok(Box::new(Ipset { opts, runner }))
}

struct Ipset {
    opts: IpsetOptions,
    runner: Runner,
}

/// The family and text of a target; targets are canonical ([`Net`]), so an
/// IPv4 address written as IPv6 is already IPv4.
fn family(net: &Net) -> (u8, String) {
    let net = net.get();
    let text = if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    };
    (if matches!(net, IpNet::V4(_)) { 4 } else { 6 }, text)
}

fn timeout_s(expires: UnixTime, now: UnixTime) -> u64 {
    ((expires - now).max(1) as u64).min(MAX_TIMEOUT_S)
}

impl Ipset {
    fn set(&self, fam: u8) -> String {
        format!("{}{fam}", self.opts.prefix)
    }

    fn create_lines(&self, s: &mut String, name: &str, fam: u8) {
        let f = if fam == 4 { "inet" } else { "inet6" };
        let _ = writeln!(
            s,
            "create {name} hash:net family {f} timeout 0 maxelem {} -exist",
            self.opts.max_elements
        );
    }

    fn chains(&self) -> Vec<&'static str> {
        if self.opts.forward {
            vec!["INPUT", "FORWARD"]
        } else {
            vec!["INPUT"]
        }
    }

    /// Insert the DROP rules unless they are there (`-C` first): idempotent.
    fn ensure_rules(&self) -> Result<(), LayerError> {
        for (tool, fam) in [("iptables", 4u8), ("ip6tables", 6)] {
            let set = self.set(fam);
            for chain in self.chains() {
                let rule = [
                    "-m",
                    "set",
                    "--match-set",
                    set.as_str(),
                    "src",
                    "-j",
                    "DROP",
                ];
                let mut check = vec!["-w", "-C", chain];
                check.extend(rule);
                if self.runner.run(tool, "iptables", &check, None).is_err() {
                    let mut ins = vec!["-w", "-I", chain, "1"];
                    ins.extend(rule);
                    self.runner.run(tool, "iptables", &ins, None)?;
                }
            }
        }
        Ok(())
    }

    fn restore(&self, script: &str) -> Result<(), LayerError> {
        self.runner
            .run(
                "ipset",
                "ipset",
                &["restore", "-exist"],
                Some(script.as_bytes()),
            )
            .map(|_| ())
    }
}

impl Firewall for Ipset {
    fn name(&self) -> &'static str {
        "ipset"
    }

    fn apply(&mut self, batch: &[Change], now: UnixTime) -> Result<(), LayerError> {
        let mut s = String::new();
        for c in batch.iter().filter(|c| for_kernel(c.decision())) {
            let d = c.decision();
            let (fam, text) = family(&d.target);
            let set = self.set(fam);
            match c {
                Change::Add(d) if d.is_active(now) => {
                    let _ = writeln!(s, "add {set} {text} timeout {}", timeout_s(d.expires, now));
                }
                _ => {
                    let _ = writeln!(s, "del {set} {text}");
                }
            }
        }
        if s.is_empty() {
            return Ok(());
        }
        self.restore(&s)
    }

    fn reconcile(&mut self, active: &[Decision], now: UnixTime) -> Result<(), LayerError> {
        let mut s = String::new();
        for fam in [4u8, 6] {
            let live = self.set(fam);
            let tmp = format!("{live}-new");
            self.create_lines(&mut s, &live, fam);
            self.create_lines(&mut s, &tmp, fam);
            let _ = writeln!(s, "flush {tmp}");
            for d in active.iter().filter(|d| for_kernel(d) && d.is_active(now)) {
                let (f, text) = family(&d.target);
                if f == fam {
                    let _ = writeln!(s, "add {tmp} {text} timeout {}", timeout_s(d.expires, now));
                }
            }
            let _ = writeln!(s, "swap {tmp} {live}");
            let _ = writeln!(s, "destroy {tmp}");
        }
        self.restore(&s)?;
        self.ensure_rules()
    }

    fn teardown(&mut self) -> Result<(), LayerError> {
        for (tool, fam) in [("iptables", 4u8), ("ip6tables", 6)] {
            let set = self.set(fam);
            for chain in self.chains() {
                let rule = [
                    "-m",
                    "set",
                    "--match-set",
                    set.as_str(),
                    "src",
                    "-j",
                    "DROP",
                ];
                let mut del = vec!["-w", "-D", chain];
                del.extend(rule);
                // Delete every copy; stops at the first "does not exist".
                while self.runner.run(tool, "iptables", &del, None).is_ok() {}
            }
        }
        let mut s = String::new();
        for fam in [4u8, 6] {
            let set = self.set(fam);
            self.create_lines(&mut s, &set, fam);
            let _ = writeln!(s, "destroy {set}");
        }
        self.restore(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_and_text() {
        assert_eq!(
            family(&"192.0.2.1/32".parse().unwrap()),
            (4, "192.0.2.1".into())
        );
        assert_eq!(
            family(&"192.0.2.1/24".parse().unwrap()),
            (4, "192.0.2.0/24".into())
        );
        assert_eq!(
            family(&"2001:db8::/32".parse().unwrap()),
            (6, "2001:db8::/32".into())
        );
        assert_eq!(timeout_s(10, 20), 1);
        assert_eq!(timeout_s(i64::MAX, 0), MAX_TIMEOUT_S);
    }
}
