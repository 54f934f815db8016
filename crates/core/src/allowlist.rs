//! The allowlist: networks that are never banned, whatever the origin of the
//! decision. It is checked in one place (the decision stage) for every origin.

use ipnet::IpNet;
use std::net::IpAddr;

/// A set of networks that must never be the target of a decision.
#[derive(Clone, Debug, Default)]
pub struct Allowlist {
    nets: Vec<IpNet>,
}

impl Allowlist {
    pub fn new(mut nets: Vec<IpNet>) -> Self {
        nets.iter_mut().for_each(|n| *n = n.trunc());
        nets.sort();
        nets.dedup();
        Allowlist { nets }
    }

    pub fn push(&mut self, net: IpNet) {
        self.nets.push(net.trunc());
    }

    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }

    /// True if `ip` lies inside an allowed network.
    pub fn contains_ip(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// True if a decision on `target` would touch an allowed address: the
    /// target lies inside an allowed network, or an allowed network lies
    /// inside the target (banning 10.0.0.0/8 would ban an allowed 10.1.2.3).
    pub fn overlaps(&self, target: &IpNet) -> Option<IpNet> {
        self.nets
            .iter()
            .find(|n| n.contains(target) || target.contains(*n))
            .copied()
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
    }
}
