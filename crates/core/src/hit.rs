//! What a rule makes of one line: a [`Hit`] borrowed from the line and the
//! matcher, and the [`LineMatcher`] seam every rule engine implements (Shield's
//! own packs, fail2ban `filter.d` files). How replay spreads one matcher's
//! work over threads is a second, separate seam: [`SplitMatcher`].
//!
//! A `Hit` lives only until the next line: it never allocates.

use crate::UnixTime;
use crate::net::Addr;

/// Most named fields a hit carries besides the host (user, path, status...).
pub const MAX_FIELDS: usize = 8;

/// Static facts about one rule of a matcher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleInfo {
    /// Unique name, e.g. `sshd-failed-password`.
    pub name: String,
    /// Service it reads, e.g. `sshd`, `nginx-access`.
    pub service: String,
}

/// One line matched by one rule.
#[derive(Clone, Copy, Debug)]
pub struct Hit<'a> {
    /// Index of the rule in the matcher's [`LineMatcher::rules`].
    pub rule: u32,
    /// The source address the line blames, canonical.
    pub host: Addr,
    /// The log time of the line, when the line carries one.
    pub time: Option<UnixTime>,
    /// True when the line matched but is not a failure (fail2ban's `<F-NOFAIL>`):
    /// it is counted as matched and feeds no scenario.
    pub nofail: bool,
    /// The connection the line belongs to (sshd's process id), 0 when not
    /// known: scenarios count a connection's lines as its attempts.
    pub conn: u32,
    /// With `conn`: the line sums its connection up (`Invalid user ...`)
    /// rather than recording an attempt of its own (`Failed password ...`).
    pub once: bool,
    fields: [(&'a str, &'a str); MAX_FIELDS],
    n_fields: u8,
}

impl<'a> Hit<'a> {
    /// A hit on `host`, canonicalised (an IPv4-mapped address is the IPv4 one).
    pub fn new(rule: u32, host: impl Into<Addr>, time: Option<UnixTime>) -> Self {
        Hit {
            rule,
            host: host.into(),
            time,
            nofail: false,
            conn: 0,
            once: false,
            fields: [("", ""); MAX_FIELDS],
            n_fields: 0,
        }
    }

    /// Adds a named field; fields past [`MAX_FIELDS`] are dropped.
    pub fn push_field(&mut self, name: &'a str, value: &'a str) {
        if (self.n_fields as usize) < MAX_FIELDS {
            self.fields[self.n_fields as usize] = (name, value);
            self.n_fields += 1;
        }
    }

    pub fn field(&self, name: &str) -> Option<&'a str> {
        self.fields()
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    pub fn fields(&self) -> &[(&'a str, &'a str)] {
        &self.fields[..self.n_fields as usize]
    }
}

/// A rule engine: turns a line into at most one [`Hit`].
///
/// `match_line` takes `&mut self` so an engine can keep reusable capture
/// buffers and multi-line state without allocating per line.
///
pub trait LineMatcher: Send {
    /// The rules, indexed by [`Hit::rule`].
    fn rules(&self) -> &[RuleInfo];

    /// Match one line (without its newline). `now` is the reference time for
    /// timestamps that omit the year (syslog): the year is inferred from it.
    fn match_line<'a>(&'a mut self, line: &'a str, now: UnixTime) -> Option<Hit<'a>>;

    /// After [`LineMatcher::match_line`] returned `None`: the time of the
    /// stamp the matcher read at the start of that line, if it read one, so
    /// the caller need not read it again. `None` (the default) sends the
    /// caller to read the line's time itself.
    fn unmatched_stamp(&self) -> Option<UnixTime> {
        None
    }
}

/// How replay splits one matcher's work over threads: whole copies for
/// matchers whose lines are independent ([`SplitMatcher::fork`]), or a scan
/// on copies and a settle in order on the original for matchers that carry
/// state from line to line ([`SplitMatcher::scanner`]). Every method has a
/// default meaning "no split": such a matcher runs on one thread, in order.
pub trait SplitMatcher: LineMatcher {
    /// An independent copy for another thread, if what a line matches depends
    /// only on the line and `now` (no state carried from one line to the next,
    /// caches aside). Replay then matches blocks of a file on several threads.
    /// `None`, the default, for matchers with multi-line state.
    fn fork(&self) -> Option<Box<dyn SplitMatcher>> {
        None
    }

    /// For a matcher that carries state from line to line (fail2ban's
    /// multi-line failure ids), a copy for another thread that does the work
    /// a line decides on its own ([`SplitMatcher::scan`]), so that the
    /// original, seeing the lines in order, only finishes it
    /// ([`SplitMatcher::settle`]). `None`, the default: no such split.
    fn scanner(&self) -> Option<Box<dyn SplitMatcher>> {
        None
    }

    /// On a [`SplitMatcher::scanner`] copy: the part of matching `line` that
    /// depends on the line, `now` and [`Carry`] only. When some rule may take
    /// the line it appends a record to `rec` (words only this matcher reads)
    /// and returns the line's time; `None` when no rule can take the line.
    fn scan(&mut self, line: &str, now: UnixTime, rec: &mut Vec<u32>) -> Option<Option<UnixTime>> {
        let _ = (line, now, rec);
        None
    }

    /// On the original: the hit of a line its scanner wrote `rec` for, as
    /// [`LineMatcher::match_line`] would give it there. Lines must be settled
    /// in order.
    fn settle<'a>(&'a mut self, line: &'a str, rec: &[u32]) -> Option<Hit<'a>> {
        let _ = (line, rec);
        None
    }

    /// The state a scanner's results depend on besides the line, at this
    /// point; `None` when a line since the last [`SplitMatcher::set_carry`]
    /// needed state this copy did not have (its results are then not to be
    /// used).
    fn carry(&self) -> Option<Carry> {
        Some(Carry::default())
    }

    /// Takes on `carry` (a scanner before a block, or the original before
    /// it matches lines itself).
    fn set_carry(&mut self, carry: Carry) {
        let _ = carry;
    }
}

/// What a matcher carries from one line to the next that a scanner's
/// results depend on (see [`SplitMatcher::scanner`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Carry {
    /// Results depend on it: a copy that started a block with another key
    /// may have matched it differently.
    pub key: u64,
    /// The time of the last line that had one; a scanner starts each block
    /// without one and stays `None` if none of the block's lines had one.
    pub last_time: Option<UnixTime>,
}

impl Carry {
    /// The carry after a block a scanner matched from `self`, which
    /// ended with `out`.
    pub fn then(self, out: Carry) -> Carry {
        Carry {
            key: out.key,
            last_time: out.last_time.or(self.last_time),
        }
    }
}
