//! The allowlist: networks that are never banned, whatever the origin of the
//! decision. It is checked in one place (the decision stage) for every origin,
//! always on canonical values ([`Net`], [`Addr`]).

use crate::net::{Addr, Net};

/// A set of networks that must never be the target of a decision.
#[derive(Clone, Debug, Default)]
pub struct Allowlist {
    nets: Vec<Net>,
}

impl Allowlist {
    pub fn new(mut nets: Vec<Net>) -> Self {
        nets.sort();
        nets.dedup();
        Allowlist { nets }
    }

    pub fn push(&mut self, net: Net) {
        self.nets.push(net);
    }

    pub fn nets(&self) -> &[Net] {
        &self.nets
    }

    /// True if `ip` lies inside an allowed network.
    pub fn contains_ip(&self, ip: Addr) -> bool {
        self.nets.iter().any(|n| n.has(ip))
    }

    /// True if a decision on `target` would touch an allowed address: the
    /// target lies inside an allowed network, or an allowed network lies
    /// inside the target (banning 10.0.0.0/8 would ban an allowed 10.1.2.3).
    pub fn overlaps(&self, target: &Net) -> Option<Net> {
        self.nets.iter().find(|n| n.overlaps(target)).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_both_ways() {
        let a = Allowlist::new(vec![
            "10.1.2.3/32".parse().unwrap(),
            "192.168.0.0/16".parse().unwrap(),
        ]);
        assert!(a.overlaps(&"10.0.0.0/8".parse().unwrap()).is_some());
        assert!(a.overlaps(&"192.168.5.5/32".parse().unwrap()).is_some());
        assert!(a.overlaps(&"203.0.113.7/32".parse().unwrap()).is_none());
        assert!(a.contains_ip("192.168.1.1".parse().unwrap()));
        // Every written form of an allowed address is the allowed address.
        assert!(a.overlaps(&"::ffff:10.1.2.3".parse().unwrap()).is_some());
        assert!(a.overlaps(&"::ffff:0.0.0.0/96".parse().unwrap()).is_some());
        assert!(a.contains_ip("::ffff:192.168.1.1".parse().unwrap()));
    }
}
