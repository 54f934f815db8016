//! The allowlist: networks that are never banned, whatever the origin of the
//! decision. It is checked in one place (the decision stage) for every origin,
//! always on canonical values ([`Net`], [`Addr`]).
//!
//! Besides the networks fixed by the configuration it holds named *feeds*
//! ([`AllowFeeds`]): lists refreshed while the daemon runs (CDN or crawler
//! ranges), replaced whole by their owner and shared by every clone.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use crate::net::{Addr, Net};

/// Allowlist feeds by name, shared between the list tasks that refresh them
/// and every clone of the [`Allowlist`] that reads them.
#[derive(Clone, Debug, Default)]
pub struct AllowFeeds(Arc<RwLock<BTreeMap<String, Arc<Vec<Net>>>>>);

impl AllowFeeds {
    /// Replaces feed `name` with `nets`.
    pub fn set(&self, name: &str, mut nets: Vec<Net>) {
        nets.sort();
        nets.dedup();
        // RwLock: written once per feed refresh, read per decision.
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), Arc::new(nets));
    }

    /// The first network of any feed for which `f` holds.
    fn find(&self, f: impl Fn(&Net) -> bool) -> Option<Net> {
        let m = self.0.read().unwrap_or_else(|p| p.into_inner());
        m.values().find_map(|v| v.iter().find(|n| f(n)).copied())
    }

    /// How many networks each feed holds.
    pub fn sizes(&self) -> Vec<(String, usize)> {
        let m = self.0.read().unwrap_or_else(|p| p.into_inner());
        m.iter().map(|(k, v)| (k.clone(), v.len())).collect()
    }
}

/// A set of networks that must never be the target of a decision.
#[derive(Clone, Debug, Default)]
pub struct Allowlist {
    nets: Vec<Net>,
    feeds: AllowFeeds,
}

impl Allowlist {
    pub fn new(mut nets: Vec<Net>) -> Self {
        nets.sort();
        nets.dedup();
        Allowlist {
            nets,
            feeds: AllowFeeds::default(),
        }
    }

    /// The feeds this allowlist also reads (shared by its clones).
    pub fn feeds(&self) -> &AllowFeeds {
        &self.feeds
    }

    pub fn push(&mut self, net: Net) {
        self.nets.push(net);
    }

    pub fn nets(&self) -> &[Net] {
        &self.nets
    }

    /// True if `ip` lies inside an allowed network.
    pub fn contains_ip(&self, ip: Addr) -> bool {
        self.nets.iter().any(|n| n.has(ip)) || self.feeds.find(|n| n.has(ip)).is_some()
    }

    /// True if a decision on `target` would touch an allowed address: the
    /// target lies inside an allowed network, or an allowed network lies
    /// inside the target (banning 10.0.0.0/8 would ban an allowed 10.1.2.3).
    pub fn overlaps(&self, target: &Net) -> Option<Net> {
        self.nets
            .iter()
            .find(|n| n.overlaps(target))
            .copied()
            .or_else(|| self.feeds.find(|n| n.overlaps(target)))
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

    #[test]
    fn feeds_are_shared_by_clones_and_replaced_whole() {
        let a = Allowlist::new(vec![]);
        let b = a.clone();
        let t: Net = "198.51.100.7".parse().unwrap();
        assert!(b.overlaps(&t).is_none());
        a.feeds()
            .set("cdn", vec!["198.51.100.0/24".parse().unwrap()]);
        assert_eq!(b.overlaps(&t), Some("198.51.100.0/24".parse().unwrap()));
        assert!(b.contains_ip("198.51.100.9".parse().unwrap()));
        a.feeds()
            .set("cdn", vec!["203.0.113.0/24".parse().unwrap()]);
        assert!(b.overlaps(&t).is_none());
        assert_eq!(b.feeds().sizes(), [("cdn".to_string(), 1)]);
    }
}
