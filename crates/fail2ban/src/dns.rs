//! fail2ban's `usedns` for hosts a filter matched as a name
//! (`rhost=host.example.net`): `no` and `warn` (the default) do not count
//! such a match; only an explicit `yes` uses the name's address. That is
//! stricter than fail2ban, whose `warn` resolves too: the name in a log line
//! usually comes from the reverse DNS of the connecting address, which its
//! owner (the attacker) writes, so resolving it lets an attacker name the
//! host to be banned (a PTR record saying `mail.example.org` bans
//! example.org's mail server). `warn` counts the names it skipped
//! ([`names_skipped`]). Names are never resolved on
//! the matching path: a name not yet known is handed to one background
//! thread (the system resolver, `getaddrinfo`, each name once, a bounded
//! queue) and counted from the first match after its answer arrives; the
//! answers (found or not) are kept in a bounded process-wide cache. This
//! module owns the cache and the thread, not the matching.

use std::collections::HashMap;
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Mutex, OnceLock};

/// fail2ban's `usedns` values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UseDns {
    /// Host names are matched and ignored.
    No,
    /// Host names are matched, counted in [`names_skipped`] and ignored
    /// (fail2ban's `warn` resolves them; see the module comment for why
    /// Shield does not).
    #[default]
    Warn,
    /// Names resolve: the operator accepts that whoever controls a name's
    /// DNS chooses the address banned.
    Yes,
}

impl UseDns {
    /// From a filter or jail value; anything but `no`/`yes` is `warn`, as
    /// in fail2ban.
    pub fn parse(v: Option<&str>) -> UseDns {
        match v.map(str::trim) {
            Some("no") => UseDns::No,
            Some("yes") => UseDns::Yes,
            _ => UseDns::Warn,
        }
    }
}

static SKIPPED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Failures whose host was a name that `usedns = warn` did not resolve,
/// since the process started.
pub fn names_skipped() -> u64 {
    SKIPPED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Counts one failure skipped because its host is a name (`usedns = warn`).
pub(crate) fn skip_name() {
    SKIPPED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Most names kept; the cache starts over when full.
const CACHE_MAX: usize = 4096;
/// Names waiting for the resolver thread; more are dropped (and asked again
/// by a later match).
const QUEUE_MAX: usize = 256;

enum Answer {
    Pending,
    Found(IpAddr),
    None,
}

struct Resolver {
    cache: Mutex<HashMap<String, Answer>>,
    tx: SyncSender<String>,
}

fn resolver() -> &'static Resolver {
    static R: OnceLock<Resolver> = OnceLock::new();
    R.get_or_init(|| {
        let (tx, rx) = sync_channel::<String>(QUEUE_MAX);
        let spawned = std::thread::Builder::new()
            .name("f2b-usedns".into())
            .spawn(move || {
                for name in rx {
                    let found = (name.as_str(), 0)
                        .to_socket_addrs()
                        .ok()
                        .and_then(|mut a| a.next())
                        .map(|a| a.ip());
                    if let Ok(mut c) = resolver().cache.lock() {
                        c.insert(name, found.map_or(Answer::None, Answer::Found));
                    }
                }
            });
        // Without the thread (no resources left) names stay pending:
        // unresolved, as with `usedns = no`.
        drop(spawned);
        Resolver {
            cache: Mutex::new(HashMap::new()),
            tx,
        }
    })
}

/// The address of `name` if it is known; otherwise asks the resolver thread
/// (once) and returns `None` without waiting.
pub fn lookup(name: &str) -> Option<IpAddr> {
    let r = resolver();
    // A poisoned lock only means a panic elsewhere while holding it: the
    // map is still a valid cache.
    let mut c = r
        .cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match c.get(name) {
        Some(Answer::Found(a)) => return Some(*a),
        Some(Answer::Pending) | Some(Answer::None) => return None,
        None => {}
    }
    if c.len() >= CACHE_MAX {
        c.clear();
    }
    match r.tx.try_send(name.to_string()) {
        Ok(()) => {
            c.insert(name.to_string(), Answer::Pending);
        }
        Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {}
    }
    None
}

/// Resolves `name` now, waiting for the answer (for `shield explain`, never
/// for the matching path); caches it.
pub fn resolve_now(name: &str) -> Option<IpAddr> {
    let found = (name, 0)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .map(|a| a.ip());
    let r = resolver();
    let mut c = r
        .cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    c.insert(name.to_string(), found.map_or(Answer::None, Answer::Found));
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_resolves_in_the_background_then_is_served_from_the_cache() {
        assert_eq!(UseDns::parse(Some(" no ")), UseDns::No);
        assert_eq!(UseDns::parse(None), UseDns::Warn);
        // localhost resolves from /etc/hosts, without a network.
        assert_eq!(lookup("localhost"), None, "the first look-up never waits");
        let mut got = None;
        for _ in 0..200 {
            got = lookup("localhost");
            if got.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(got.is_some_and(|a| a.is_loopback()), "{got:?}");
        assert_eq!(lookup("no-such-host.invalid"), None);
    }
}
