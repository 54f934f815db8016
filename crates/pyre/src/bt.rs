//! A bounded backtracker for anchored searches, with the same results as
//! regex-automata's `BoundedBacktracker` (same first path, same groups) and
//! a fraction of its cost on the short lines fail2ban patterns see.
//!
//! [`Prog::new`] compiles a one-pattern Thompson NFA into a compact program:
//! chains of single-successor byte states become one run (a literal compare,
//! or byte classes checked in a loop), a loop over one byte class (`C*`,
//! `C+`, `C{0,n}` chains, greedy or lazy) becomes one instruction that
//! counts how far the class reaches and then tries the exit at each
//! position in the NFA's order, as one stack frame; a class just before a
//! `C{0,n}` chain of its own class is that loop's first byte (`C{1,n+1}`).
//! Captures that follow one another with no other way in are one
//! instruction, and a `^` on the way from the start (which runs only at
//! position 0) is dropped. The search is the NFA's depth-first search in
//! leftmost-first priority order; visited marks (state, position) are kept
//! only where paths join, which keeps the search linear in (states ×
//! haystack) and does not change the first path that matches: whether a
//! state at a position leads to a match does not depend on how it was
//! reached, so a second visit can only fail again.
//!
//! It does not own the choice of engine (`pyre.rs` falls back to
//! regex-automata's backtracker when [`Prog::new`] or [`Prog::search`]
//! declines), and it runs only anchored searches on one pattern.

use regex_automata::nfa::thompson::{NFA, State};
use regex_automata::util::look::{Look, LookMatcher};
use regex_automata::util::primitives::StateID;

/// "No value": an unset slot, a node without visited marks.
const NONE: u32 = u32::MAX;

/// The most visited-mark bits a search may use (as regex-automata's default
/// visited capacity, 256 KiB): longer haystacks are declined.
const MAX_BITS: usize = 256 * 1024 * 8;

/// A set of bytes: one flag per byte, so that a test is one load.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Class([bool; 256]);

impl Default for Class {
    fn default() -> Class {
        Class([false; 256])
    }
}

impl std::fmt::Debug for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bytes: Vec<u8> = (0..=255u8).filter(|&b| self.has(b)).collect();
        write!(f, "Class({:?})", String::from_utf8_lossy(&bytes))
    }
}

impl Class {
    const ALL: Class = Class([true; 256]);

    fn union(&mut self, o: &Class) {
        for (a, b) in self.0.iter_mut().zip(o.0) {
            *a |= b;
        }
    }

    #[inline(always)]
    fn has(&self, b: u8) -> bool {
        self.0[usize::from(b)]
    }

    fn add(&mut self, lo: u8, hi: u8) {
        self.0[usize::from(lo)..=usize::from(hi)].fill(true);
    }

    /// The one byte in the set, if it holds exactly one.
    fn single(&self) -> Option<u8> {
        let mut it = (0..=255u8).filter(|&b| self.has(b));
        match (it.next(), it.next()) {
            (Some(b), None) => Some(b),
            _ => None,
        }
    }
}

/// Whether `a` and `b` (of the same length) hold the same bytes: eight at
/// a time (four for four to seven bytes), as the literals here are too
/// short to pay for a call to memcmp.
#[inline(always)]
fn same(a: &[u8], b: &[u8]) -> bool {
    match (a.last_chunk::<8>(), b.last_chunk::<8>()) {
        (Some(la), Some(lb)) => {
            // whole words from the front, then the last eight (which may
            // overlap them): chunks, so that no index is checked
            let word = |x: &[u8; 8]| u64::from_ne_bytes(*x);
            a.as_chunks::<8>()
                .0
                .iter()
                .zip(b.as_chunks::<8>().0)
                .all(|(x, y)| word(x) == word(y))
                && word(la) == word(lb)
        }
        // four to seven: the first four and the last four
        _ => match (
            a.first_chunk::<4>().zip(a.last_chunk::<4>()),
            b.first_chunk::<4>().zip(b.last_chunk::<4>()),
        ) {
            (Some((fa, la)), Some((fb, lb))) => fa == fb && la == lb,
            _ => a.iter().zip(b).all(|(x, y)| x == y),
        },
    }
}

#[derive(Clone, Copy, Debug)]
enum Inst {
    /// The bytes `lits[start..start + len]`, then `next`.
    Lit {
        start: u32,
        len: u32,
        next: u32,
    },
    /// One byte of each of `classes[start..start + len]`, then `next`.
    Run {
        start: u32,
        len: u32,
        next: u32,
    },
    /// One byte, going where its range in `ranges[start..start + len]` says.
    Switch {
        start: u32,
        len: u32,
    },
    /// Bytes of `classes[class]`, at most `max` of them (`NONE`: no limit),
    /// then `exit`; the most first when `greedy`, the fewest first if not.
    /// `plus`: one byte of the class first (entered at `C` of `C+`).
    /// `mark`: the visited row of the loop's union (unbounded loops only).
    /// `guard`: the bytes `exit` can start with (a class, or `NONE`).
    Loop {
        class: u32,
        max: u32,
        mark: u32,
        exit: u32,
        guard: u32,
        greedy: bool,
        plus: bool,
    },
    /// Try `a`, then `b`; `ga` and `gb` are the bytes each can start with
    /// (a class, or `NONE`): an alternative that cannot start at the next
    /// byte is not tried.
    Split2 {
        a: u32,
        b: u32,
        ga: u32,
        gb: u32,
    },
    /// Try `alts[start..start + len]` in order.
    Split {
        start: u32,
        len: u32,
    },
    /// Record the position in slot `slot` (restored on backtracking).
    Save {
        slot: u32,
        next: u32,
    },
    /// Record the position in each slot of `saves[start..start + len]`:
    /// captures that follow one another with no other way in.
    Saves {
        start: u32,
        len: u32,
        next: u32,
    },
    Look {
        look: Look,
        next: u32,
    },
    Match,
    Fail,
}

#[derive(Clone, Copy, Debug)]
struct Node {
    inst: Inst,
    /// The visited row checked on entering the node, or `NONE` when no two
    /// paths lead to it.
    mark: u32,
}

/// An NFA compiled for [`Prog::search`].
#[derive(Clone, Debug)]
pub(crate) struct Prog {
    nodes: Vec<Node>,
    classes: Vec<Class>,
    lits: Vec<u8>,
    ranges: Vec<(u8, u8, u32)>,
    alts: Vec<u32>,
    saves: Vec<u32>,
    /// Visited rows, one bit per haystack position (and the end) each.
    marks: usize,
    slots: usize,
    start: u32,
    looks: LookMatcher,
}

/// What a search remembers while it backtracks.
#[derive(Clone, Copy, Debug)]
enum Frame {
    /// Run the node `pc` at `at`.
    Step { pc: u32, at: u32 },
    /// Put `old` back in slot `slot`.
    Restore { slot: u32, old: u32 },
    /// A greedy loop's exits still to try: at `at`, then down to `lo`.
    Greedy { pc: u32, lo: u32, at: u32 },
    /// A lazy loop's exit was tried at `at`; `left` more bytes may follow.
    Lazy { pc: u32, at: u32, left: u32 },
}

/// [`Prog::first`]'s progress on a node.
#[derive(Clone)]
enum Memo {
    Unknown,
    Busy,
    Done(Option<Box<Class>>),
}

/// Per-search memory, reused: one per thread (or engine copy).
#[derive(Clone, Debug, Default)]
pub(crate) struct Cache {
    stack: Vec<Frame>,
    visited: Vec<u64>,
    stride: usize,
    slots: Vec<u32>,
}

impl Cache {
    /// The groups of the last successful search: group 0 first, `None`
    /// for a group that did not take part.
    pub(crate) fn spans(&self) -> impl Iterator<Item = Option<(usize, usize)>> + '_ {
        self.slots
            .chunks_exact(2)
            .map(|p| (p[0] != NONE && p[1] != NONE).then(|| (p[0] as usize, p[1] as usize)))
    }

    /// The slots of the last successful search (`None`: unset).
    #[cfg(any(test, debug_assertions))]
    pub(crate) fn slots(&self) -> impl Iterator<Item = Option<usize>> + '_ {
        self.slots
            .iter()
            .map(|&s| (s != NONE).then_some(s as usize))
    }

    /// Marks `(row, p)` visited for `p` from `lo` up to `hi`, stopping at
    /// the first that already was: returns it (`hi + 1` if none was).
    fn claim(&mut self, row: u32, lo: usize, hi: usize) -> usize {
        let base = row as usize * self.stride;
        let (mut i, end) = (base + lo, base + hi + 1);
        while i < end {
            let (w, b) = (i / 64, i % 64);
            let n = (64 - b).min(end - i);
            let mask = (u64::MAX >> (64 - n)) << b;
            let old = self.visited[w];
            let seen = old & mask;
            if seen != 0 {
                let q = seen.trailing_zeros() as usize;
                // the bits from `b` below `q`
                self.visited[w] = old | (mask & ((1u64 << q) - 1));
                return w * 64 + q - base;
            }
            self.visited[w] = old | mask;
            i += n;
        }
        hi + 1
    }

    /// Marks `(row, at)` visited; false when it already was.
    #[inline(always)]
    fn visit(&mut self, row: u32, at: usize) -> bool {
        let i = row as usize * self.stride + at;
        let (w, b) = (i / 64, 1u64 << (i % 64));
        let old = self.visited[w];
        self.visited[w] = old | b;
        old & b == 0
    }
}

impl Prog {
    /// Compiles `nfa`; None when it has more than one pattern or a state
    /// kind this engine leaves to regex-automata.
    pub(crate) fn new(nfa: &NFA) -> Option<Prog> {
        if nfa.pattern_len() != 1 || nfa.states().len() >= NONE as usize {
            return None;
        }
        let slots = nfa.group_info().slot_len();
        if slots >= NONE as usize {
            return None;
        }
        let mut b = Builder {
            nfa,
            preds: preds(nfa)?,
            pcs: vec![NONE; nfa.states().len()],
            rows: vec![NONE; nfa.states().len()],
            work: Vec::new(),
            prog: Prog {
                nodes: Vec::new(),
                classes: Vec::new(),
                lits: Vec::new(),
                ranges: Vec::new(),
                alts: Vec::new(),
                saves: Vec::new(),
                marks: 0,
                slots,
                start: 0,
                looks: nfa.look_matcher().clone(),
            },
        };
        b.prog.start = b.pc(nfa.start_anchored());
        while let Some(sid) = b.work.pop() {
            let node = b.compile(sid)?;
            let pc = b.pcs[sid.as_usize()];
            b.prog.nodes[pc as usize] = node;
        }
        let mut prog = b.prog;
        prog.add_guards();
        Some(prog)
    }

    /// Fills in the guards of splits and loops: the bytes the alternative
    /// or exit can start with, where that is known and not every byte.
    fn add_guards(&mut self) {
        let mut memo = vec![Memo::Unknown; self.nodes.len()];
        let mut class_of = |p: &mut Prog, next: u32| match p.first(next, &mut memo, 0) {
            Some(c) if c != Class::ALL => {
                p.classes.push(c);
                (p.classes.len() - 1) as u32
            }
            _ => NONE,
        };
        for pc in 0..self.nodes.len() {
            match self.nodes[pc].inst {
                Inst::Split2 { a, b, .. } => {
                    let (ga, gb) = (class_of(self, a), class_of(self, b));
                    self.nodes[pc].inst = Inst::Split2 { a, b, ga, gb };
                }
                Inst::Loop { exit, .. } => {
                    let g = class_of(self, exit);
                    if let Inst::Loop { guard, .. } = &mut self.nodes[pc].inst {
                        *guard = g;
                    }
                }
                _ => {}
            }
        }
    }

    /// The bytes a path from `pc` can start with: None when it may match
    /// without taking a byte (or it is not known).
    fn first(&self, pc: u32, memo: &mut [Memo], depth: u32) -> Option<Class> {
        match memo[pc as usize] {
            Memo::Done(ref c) => return c.as_deref().copied(),
            // a cycle without bytes, or too deep to follow
            Memo::Busy => return None,
            Memo::Unknown if depth > 256 => return None,
            Memo::Unknown => {}
        }
        memo[pc as usize] = Memo::Busy;
        let union = |pcs: &[u32], memo: &mut [Memo]| {
            let mut c = Class::default();
            for &p in pcs {
                c.union(&self.first(p, memo, depth + 1)?);
            }
            Some(c)
        };
        let c = match self.nodes[pc as usize].inst {
            Inst::Lit { start, .. } => {
                let b = self.lits[start as usize];
                let mut c = Class::default();
                c.add(b, b);
                Some(c)
            }
            Inst::Run { start, .. } => Some(self.classes[start as usize]),
            Inst::Switch { start, len } => {
                let mut c = Class::default();
                for r in &self.ranges[start as usize..(start + len) as usize] {
                    c.add(r.0, r.1);
                }
                Some(c)
            }
            Inst::Loop {
                class, exit, plus, ..
            } => {
                let c = self.classes[class as usize];
                if plus {
                    Some(c)
                } else {
                    self.first(exit, memo, depth + 1).map(|mut e| {
                        e.union(&c);
                        e
                    })
                }
            }
            Inst::Split2 { a, b, .. } => union(&[a, b], memo),
            Inst::Split { start, len } => {
                union(&self.alts[start as usize..(start + len) as usize], memo)
            }
            Inst::Save { next, .. } | Inst::Saves { next, .. } => self.first(next, memo, depth + 1),
            Inst::Look { .. } | Inst::Match => None,
            Inst::Fail => Some(Class::default()),
        };
        memo[pc as usize] = Memo::Done(c.map(Box::new));
        c
    }

    /// Whether a path guarded by `g` can start at `at`.
    #[inline(always)]
    fn may(&self, g: u32, hay: &[u8], at: usize) -> bool {
        g == NONE
            || hay
                .get(at)
                .is_some_and(|&b| self.classes[g as usize].has(b))
    }

    /// A lazy loop's next exit after `at` (where it was tried or skipped),
    /// with a frame for the one after; None when the loop cannot go on.
    fn lazy_next(
        &self,
        c: &mut Cache,
        hay: &[u8],
        pc: u32,
        mut at: usize,
        mut left: u32,
    ) -> Option<usize> {
        let Inst::Loop {
            class, mark, guard, ..
        } = self.nodes[pc as usize].inst
        else {
            unreachable!("a lazy frame names a loop")
        };
        let cls = &self.classes[class as usize];
        loop {
            if left == 0
                || at >= hay.len()
                || !cls.has(hay[at])
                || (mark != NONE && !c.visit(mark, at + 1))
            {
                return None;
            }
            at += 1;
            if left != NONE {
                left -= 1;
            }
            if self.may(guard, hay, at) {
                c.stack.push(Frame::Lazy {
                    pc,
                    at: at as u32,
                    left,
                });
                return Some(at);
            }
        }
    }

    /// A greedy loop's next exit at `at` or below, down to `lo`, with a
    /// frame for the ones below it.
    #[inline(always)]
    fn greedy_next(
        &self,
        c: &mut Cache,
        hay: &[u8],
        pc: u32,
        guard: u32,
        lo: usize,
        at: usize,
    ) -> Option<usize> {
        let mut p = at;
        while !self.may(guard, hay, p) {
            if p == lo {
                return None;
            }
            p -= 1;
        }
        if p > lo {
            c.stack.push(Frame::Greedy {
                pc,
                lo: lo as u32,
                at: (p - 1) as u32,
            });
        }
        Some(p)
    }

    /// The slots a search fills (two per group).
    #[cfg(test)]
    fn slot_len(&self) -> usize {
        self.slots
    }

    /// The anchored search at the start of `hay`: whether it matches (its
    /// groups are then in [`Cache::spans`]), or None when `hay` is too long
    /// for the visited marks.
    pub(crate) fn search(&self, c: &mut Cache, hay: &[u8]) -> Option<bool> {
        let stride = hay.len() + 1;
        if hay.len() >= NONE as usize || self.marks.saturating_mul(stride) > MAX_BITS {
            return None;
        }
        c.stride = stride;
        let words = (self.marks * stride).div_ceil(64);
        if c.visited.len() < words {
            c.visited.resize(words, 0);
        }
        c.visited[..words].fill(0);
        c.slots.resize(self.slots, NONE);
        c.slots.fill(NONE);
        c.stack.clear();
        Some(self.run(c, hay))
    }

    /// The depth-first search: follows one path until it matches or fails,
    /// then takes the next alternative from the stack. Not inlined: in a
    /// function of its own the loop keeps its state in registers.
    #[inline(never)]
    fn run(&self, c: &mut Cache, hay: &[u8]) -> bool {
        let (mut pc, mut at) = (self.start, 0usize);
        loop {
            if self.path(c, hay, &mut pc, &mut at) {
                return true;
            }
            // the next alternative
            loop {
                match c.stack.pop() {
                    None => return false,
                    Some(Frame::Step { pc: p, at: a }) => {
                        (pc, at) = (p, a as usize);
                        break;
                    }
                    Some(Frame::Restore { slot, old }) => c.slots[slot as usize] = old,
                    Some(Frame::Greedy { pc: p, lo, at: a }) => {
                        let Inst::Loop { guard, exit, .. } = self.nodes[p as usize].inst else {
                            unreachable!("a greedy frame names a loop")
                        };
                        if let Some(a) = self.greedy_next(c, hay, p, guard, lo as usize, a as usize)
                        {
                            (pc, at) = (exit, a);
                            break;
                        }
                    }
                    Some(Frame::Lazy { pc: p, at: a, left }) => {
                        if let Some(a) = self.lazy_next(c, hay, p, a as usize, left) {
                            (pc, at) = (self.exit(p), a);
                            break;
                        }
                    }
                }
            }
        }
    }

    fn exit(&self, pc: u32) -> u32 {
        match self.nodes[pc as usize].inst {
            Inst::Loop { exit, .. } => exit,
            _ => unreachable!("a loop frame names a loop"),
        }
    }

    /// Follows the path from `pc` at `at` until it matches (true) or fails,
    /// pushing the alternatives it passes.
    #[inline(always)]
    fn path(&self, c: &mut Cache, hay: &[u8], pc: &mut u32, at: &mut usize) -> bool {
        let (mut pc, mut at) = (*pc, *at);
        loop {
            let node = &self.nodes[pc as usize];
            if node.mark != NONE && !c.visit(node.mark, at) {
                return false;
            }
            match node.inst {
                Inst::Lit { start, len, next } => {
                    let lit = &self.lits[start as usize..(start + len) as usize];
                    let Some(bytes) = hay.get(at..at + lit.len()) else {
                        return false;
                    };
                    if !same(lit, bytes) {
                        return false;
                    }
                    at += lit.len();
                    pc = next;
                }
                Inst::Run { start, len, next } => {
                    let cls = &self.classes[start as usize..(start + len) as usize];
                    let Some(bytes) = hay.get(at..at + cls.len()) else {
                        return false;
                    };
                    if !cls.iter().zip(bytes).all(|(c, &b)| c.has(b)) {
                        return false;
                    }
                    at += cls.len();
                    pc = next;
                }
                Inst::Switch { start, len } => {
                    let Some(&b) = hay.get(at) else {
                        return false;
                    };
                    let ranges = &self.ranges[start as usize..(start + len) as usize];
                    match ranges.iter().find(|r| r.0 <= b && b <= r.1) {
                        Some(r) => pc = r.2,
                        None => return false,
                    }
                    at += 1;
                }
                Inst::Loop {
                    class,
                    max,
                    mark,
                    exit,
                    guard,
                    greedy,
                    plus,
                } => {
                    let cls = &self.classes[class as usize];
                    if plus {
                        match hay.get(at) {
                            Some(&b) if cls.has(b) => at += 1,
                            _ => return false,
                        }
                    }
                    if mark != NONE && !c.visit(mark, at) {
                        return false;
                    }
                    if greedy {
                        let mut e = at;
                        if mark == NONE {
                            let end = hay.len().min(at.saturating_add(max as usize));
                            while e < end && cls.has(hay[e]) {
                                e += 1;
                            }
                        } else {
                            while e < hay.len() && cls.has(hay[e]) {
                                e += 1;
                            }
                            // the loop's union at each position after the
                            // first, up to the first one already seen
                            if e > at {
                                e = c.claim(mark, at + 1, e) - 1;
                            }
                        }
                        match self.greedy_next(c, hay, pc, guard, at, e) {
                            Some(e) => at = e,
                            None => return false,
                        }
                    } else if self.may(guard, hay, at) {
                        c.stack.push(Frame::Lazy {
                            pc,
                            at: at as u32,
                            left: max,
                        });
                    } else {
                        match self.lazy_next(c, hay, pc, at, max) {
                            Some(e) => at = e,
                            None => return false,
                        }
                    }
                    pc = exit;
                }
                Inst::Split2 { a, b, ga, gb } => {
                    if !self.may(ga, hay, at) {
                        pc = b;
                        continue;
                    }
                    if self.may(gb, hay, at) {
                        c.stack.push(Frame::Step {
                            pc: b,
                            at: at as u32,
                        });
                    }
                    pc = a;
                }
                Inst::Split { start, len } => {
                    let alts = &self.alts[start as usize..(start + len) as usize];
                    let Some((&first, rest)) = alts.split_first() else {
                        return false;
                    };
                    c.stack.extend(
                        rest.iter()
                            .rev()
                            .map(|&pc| Frame::Step { pc, at: at as u32 }),
                    );
                    pc = first;
                }
                Inst::Save { slot, next } => {
                    let old = c.slots[slot as usize];
                    // with no alternative left, no path needs the old value
                    if !c.stack.is_empty() {
                        c.stack.push(Frame::Restore { slot, old });
                    }
                    c.slots[slot as usize] = at as u32;
                    pc = next;
                }
                Inst::Saves { start, len, next } => {
                    let keep = !c.stack.is_empty();
                    for &slot in &self.saves[start as usize..(start + len) as usize] {
                        if keep {
                            let old = c.slots[slot as usize];
                            c.stack.push(Frame::Restore { slot, old });
                        }
                        c.slots[slot as usize] = at as u32;
                    }
                    pc = next;
                }
                Inst::Look { look, next } => {
                    let ok = match look {
                        Look::Start => at == 0,
                        Look::End => at == hay.len(),
                        _ => self.looks.matches(look, hay, at),
                    };
                    if !ok {
                        return false;
                    }
                    pc = next;
                }
                Inst::Match => return true,
                Inst::Fail => return false,
            }
        }
    }
}

/// How many ways lead into each state at one position: one per union
/// alternative, one per distinct target of a byte state, one more for the
/// start. None for a state kind [`Prog`] does not run.
fn preds(nfa: &NFA) -> Option<Vec<u32>> {
    let mut n = vec![0u32; nfa.states().len()];
    let mut add = |s: StateID| n[s.as_usize()] += 1;
    for st in nfa.states() {
        match st {
            State::ByteRange { trans } => add(trans.next),
            State::Sparse(sp) => {
                let mut seen: Vec<StateID> = Vec::new();
                for t in sp.transitions.iter() {
                    if !seen.contains(&t.next) {
                        seen.push(t.next);
                        add(t.next);
                    }
                }
            }
            State::Dense(_) => return None,
            State::Look { next, .. } | State::Capture { next, .. } => add(*next),
            State::Union { alternates } => alternates.iter().for_each(|&a| add(a)),
            State::BinaryUnion { alt1, alt2 } => {
                add(*alt1);
                add(*alt2);
            }
            State::Fail | State::Match { .. } => {}
        }
    }
    add(nfa.start_anchored());
    Some(n)
}

struct Builder<'a> {
    nfa: &'a NFA,
    preds: Vec<u32>,
    /// Each state's node, once asked for.
    pcs: Vec<u32>,
    /// The visited row of each unbounded loop's union.
    rows: Vec<u32>,
    /// States with a node number and no node yet.
    work: Vec<StateID>,
    prog: Prog,
}

/// A byte state with one successor: its bytes and that successor.
fn one_way(st: &State) -> Option<(Class, StateID)> {
    let mut c = Class::default();
    match st {
        State::ByteRange { trans } => {
            c.add(trans.start, trans.end);
            Some((c, trans.next))
        }
        State::Sparse(sp) => {
            let next = sp.transitions.first()?.next;
            for t in sp.transitions.iter() {
                if t.next != next {
                    return None;
                }
                c.add(t.start, t.end);
            }
            Some((c, next))
        }
        _ => None,
    }
}

/// A union's alternatives, None for other states.
fn alternatives(st: &State) -> Option<Vec<StateID>> {
    match st {
        State::Union { alternates } => Some(alternates.to_vec()),
        State::BinaryUnion { alt1, alt2 } => Some(vec![*alt1, *alt2]),
        _ => None,
    }
}

impl Builder<'_> {
    /// The node of `sid`, numbered now and compiled later if new.
    fn pc(&mut self, sid: StateID) -> u32 {
        let pc = self.pcs[sid.as_usize()];
        if pc != NONE {
            return pc;
        }
        let pc = self.prog.nodes.len() as u32;
        self.prog.nodes.push(Node {
            inst: Inst::Fail,
            mark: NONE,
        });
        self.pcs[sid.as_usize()] = pc;
        self.work.push(sid);
        pc
    }

    fn new_row(&mut self) -> u32 {
        self.prog.marks += 1;
        (self.prog.marks - 1) as u32
    }

    /// The loop over a chain of one class ([`Builder::class_chain`],
    /// [`Builder::plus_chain`]: class, most bytes, exit, greedy); `plus`:
    /// it takes one byte first.
    fn chain_loop(
        &mut self,
        (c, n, exit, greedy): (Class, u32, StateID, bool),
        plus: bool,
    ) -> Inst {
        Inst::Loop {
            class: self.class(c),
            max: n,
            mark: NONE,
            exit: self.pc(exit),
            guard: NONE,
            greedy,
            plus,
        }
    }

    fn class(&mut self, c: Class) -> u32 {
        self.prog.classes.push(c);
        (self.prog.classes.len() - 1) as u32
    }

    /// When `u` is the union of a loop over one byte class (`u` → `C` →
    /// `u`, or `u` → exit): the class's state, the exit, and whether the
    /// class comes first (greedy).
    fn class_loop(&self, u: StateID) -> Option<(StateID, StateID, bool)> {
        let alts = alternatives(self.nfa.state(u))?;
        let &[a1, a2] = alts.as_slice() else {
            return None;
        };
        for (body, exit, greedy) in [(a1, a2, true), (a2, a1, false)] {
            if let Some((_, next)) = one_way(self.nfa.state(body))
                && next == u
                && exit != u
                && exit != body
            {
                return Some((body, exit, greedy));
            }
        }
        None
    }

    /// When `u1` starts a chain `C{0,n}` (each union `u` → `C` → next
    /// union, or `u` → exit; the last `C` → exit): the class, `n`, the
    /// exit and whether the class comes first.
    fn class_chain(&self, u1: StateID) -> Option<(Class, u32, StateID, bool)> {
        let alts = alternatives(self.nfa.state(u1))?;
        let &[a1, a2] = alts.as_slice() else {
            return None;
        };
        for (body, exit, greedy) in [(a1, a2, true), (a2, a1, false)] {
            let Some((class, mut next)) = one_way(self.nfa.state(body)) else {
                continue;
            };
            if self.preds[body.as_usize()] != 1 || exit == u1 || exit == body {
                continue;
            }
            let mut n = 1u32;
            let ok = loop {
                if next == exit {
                    break true;
                }
                // the next union: one way in, the same class, the same exit
                if self.preds[next.as_usize()] != 1 || next == u1 {
                    break false;
                }
                let Some(alts) = alternatives(self.nfa.state(next)) else {
                    break false;
                };
                let (b, e) = match (greedy, alts.as_slice()) {
                    (true, &[b, e]) | (false, &[e, b]) => (b, e),
                    _ => break false,
                };
                if e != exit || self.preds[b.as_usize()] != 1 {
                    break false;
                }
                match one_way(self.nfa.state(b)) {
                    Some((c, nx)) if c == class && b != next => {
                        n += 1;
                        next = nx;
                    }
                    _ => break false,
                }
                if n > 1 << 16 {
                    break false;
                }
            };
            if ok {
                return Some((class, n, exit, greedy));
            }
        }
        None
    }

    fn compile(&mut self, sid: StateID) -> Option<Node> {
        let nfa = self.nfa;
        let join = self.preds[sid.as_usize()] > 1;
        let st = nfa.state(sid);
        // unbounded class loops: entered at the union (`C*`) or at the
        // class (`C+`), both checking the union's row
        let lp = match st {
            State::Union { .. } | State::BinaryUnion { .. } => self
                .class_loop(sid)
                .map(|(body, exit, greedy)| (sid, body, exit, greedy, false)),
            _ => one_way(st).and_then(|(_, next)| {
                self.class_loop(next)
                    .filter(|&(body, _, _)| body == sid)
                    .map(|(body, exit, greedy)| (next, body, exit, greedy, true))
            }),
        };
        if let Some((u, body, exit, greedy, plus)) = lp {
            let (c, _) = one_way(nfa.state(body))?;
            let mut mark = self.rows[u.as_usize()];
            if mark == NONE {
                mark = self.new_row();
                self.rows[u.as_usize()] = mark;
            }
            let inst = Inst::Loop {
                class: self.class(c),
                max: NONE,
                mark,
                exit: self.pc(exit),
                guard: NONE,
                greedy,
                plus,
            };
            return Some(Node { inst, mark: NONE });
        }
        let mark = if join { self.new_row() } else { NONE };
        let inst = match st {
            State::ByteRange { .. } | State::Sparse(_) => match one_way(st) {
                Some(_) => match self.plus_chain(sid) {
                    Some(chain) => self.chain_loop(chain, true),
                    None => self.run(sid),
                },
                None => {
                    let State::Sparse(sp) = st else {
                        unreachable!("a byte range has one way")
                    };
                    let start = self.prog.ranges.len() as u32;
                    for t in sp.transitions.iter() {
                        let pc = self.pc(t.next);
                        self.prog.ranges.push((t.start, t.end, pc));
                    }
                    Inst::Switch {
                        start,
                        len: sp.transitions.len() as u32,
                    }
                }
            },
            State::Dense(_) => return None,
            State::Union { .. } | State::BinaryUnion { .. } => {
                if let Some(chain) = self.class_chain(sid) {
                    self.chain_loop(chain, false)
                } else {
                    let alts = alternatives(st)?;
                    if let &[a, b] = alts.as_slice() {
                        Inst::Split2 {
                            a: self.pc(a),
                            b: self.pc(b),
                            ga: NONE,
                            gb: NONE,
                        }
                    } else {
                        let pcs: Vec<u32> = alts.iter().map(|&a| self.pc(a)).collect();
                        let start = self.prog.alts.len() as u32;
                        self.prog.alts.extend(pcs);
                        Inst::Split {
                            start,
                            len: alts.len() as u32,
                        }
                    }
                }
            }
            State::Capture { .. } => self.saves(sid),
            State::Look { look, next } => Inst::Look {
                look: *look,
                next: self.pc(*next),
            },
            State::Match { .. } => Inst::Match,
            State::Fail => Inst::Fail,
        };
        Some(Node { inst, mark })
    }

    /// When the byte state `sid` leads, by the only way in, to a chain
    /// `C{0,n}` of its own class (`C{1,n+1}`): the chain as
    /// [`Builder::class_chain`] gives it, to run as one loop that takes a
    /// byte of `C` first.
    fn plus_chain(&self, sid: StateID) -> Option<(Class, u32, StateID, bool)> {
        let (c, u) = one_way(self.nfa.state(sid))?;
        if self.preds[u.as_usize()] != 1 || u == sid {
            return None;
        }
        self.class_chain(u).filter(|ch| ch.0 == c)
    }

    /// The saves from the capture state `sid`: it and the captures after
    /// it that nothing else leads to. On the way from the start, which
    /// runs only at position 0, a `Look::Start` holds and is passed over.
    fn saves(&mut self, sid: StateID) -> Inst {
        let nfa = self.nfa;
        let from_start = sid == nfa.start_anchored() && self.preds[sid.as_usize()] == 1;
        let mut slots = Vec::new();
        let mut cur = sid;
        let next = loop {
            match nfa.state(cur) {
                State::Capture { next, slot, .. }
                    if slots.is_empty() || (self.preds[cur.as_usize()] == 1 && cur != sid) =>
                {
                    slots.push(slot.as_usize() as u32);
                    cur = *next;
                }
                State::Look {
                    look: Look::Start,
                    next,
                } if from_start && self.preds[cur.as_usize()] == 1 => cur = *next,
                _ => break cur,
            }
        };
        let next = self.pc(next);
        if let &[slot] = slots.as_slice() {
            return Inst::Save { slot, next };
        }
        let start = self.prog.saves.len() as u32;
        self.prog.saves.extend(&slots);
        Inst::Saves {
            start,
            len: slots.len() as u32,
            next,
        }
    }

    /// The run from the byte state `sid`: it and the single-successor byte
    /// states after it that nothing else leads to and that start no loop.
    fn run(&mut self, sid: StateID) -> Inst {
        let mut cls = Vec::new();
        let mut cur = sid;
        let next = loop {
            let (c, next) = one_way(self.nfa.state(cur)).expect("a run's states have one way");
            cls.push(c);
            // a loop's class state has its union leading to it as well,
            // so one way in means it starts no loop
            if self.preds[next.as_usize()] != 1
                || one_way(self.nfa.state(next)).is_none()
                || self.plus_chain(next).is_some()
            {
                break next;
            }
            cur = next;
        };
        let next = self.pc(next);
        let len = cls.len() as u32;
        if let Some(bytes) = cls.iter().map(Class::single).collect::<Option<Vec<u8>>>() {
            let start = self.prog.lits.len() as u32;
            self.prog.lits.extend(bytes);
            Inst::Lit { start, len, next }
        } else {
            let start = self.prog.classes.len() as u32;
            self.prog.classes.extend(cls);
            Inst::Run { start, len, next }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex_automata::nfa::thompson::{self, backtrack::BoundedBacktracker};
    use regex_automata::util::syntax;
    use regex_automata::{Anchored, Input};

    fn nfa(p: &str) -> NFA {
        thompson::Compiler::new()
            .syntax(syntax::Config::new().unicode(false).utf8(false))
            .configure(thompson::Config::new().utf8(false))
            .build(p)
            .unwrap()
    }

    /// Our slots on `hay`, and regex-automata's.
    type Slots = Option<Vec<Option<usize>>>;

    fn both(prog: &Prog, bt: &BoundedBacktracker, c: &mut Cache, hay: &[u8]) -> (Slots, Slots) {
        let ours = prog
            .search(c, hay)
            .expect("short haystack")
            .then(|| c.slots().collect());
        let mut bc = bt.create_cache();
        let mut slots = vec![None; prog.slot_len()];
        let input = Input::new(hay).anchored(Anchored::Yes);
        let theirs = bt
            .try_search_slots(&mut bc, &input, &mut slots)
            .unwrap()
            .map(|_| slots.iter().map(|s| s.map(|s| s.get())).collect());
        (ours, theirs)
    }

    /// Checks `p` on every haystack; returns how many matched.
    fn check(p: &str, hays: &[&[u8]]) -> usize {
        let nfa = nfa(p);
        let prog = Prog::new(&nfa).unwrap_or_else(|| panic!("{p:?} does not compile"));
        let bt = BoundedBacktracker::builder()
            .configure(BoundedBacktracker::config().visited_capacity(64 << 20))
            .build_from_nfa(nfa)
            .unwrap();
        let mut c = Cache::default();
        let mut hits = 0;
        for hay in hays {
            let (ours, theirs) = both(&prog, &bt, &mut c, hay);
            assert_eq!(ours, theirs, "{p:?} on {:?}", String::from_utf8_lossy(hay));
            hits += usize::from(ours.is_some());
        }
        hits
    }

    const SSHD: &str = r"^(?P<nofail>Received (?P<mlfforget>disconnect)) from (?:\[?(?:(?:::f{4,6}:)?(?P<ip4>(?:\d{1,3}\.){3}\d{1,3})|(?P<ip6>(?:[0-9a-fA-F]{1,4}::?|::){1,7}(?:[0-9a-fA-F]{1,4}|:)))\]?|(?P<dns>[\w\-.^_]*\w))(?: (?:port \d+|on \S+)){0,2}:\s*11:";

    #[test]
    fn sshd_hosts() {
        let hays: &[&[u8]] = &[
            b"Received disconnect from 203.0.113.77 port 52144:11: disconnected by user\n",
            b"Received disconnect from 2001:db8::1 port 52144:11: bye\n",
            b"Received disconnect from [::ffff:10.0.0.1] port 22:11: x",
            b"Received disconnect from ::ffff:10.0.0.1 on eth0 port 22:11: x",
            b"Received disconnect from host-1.example.com port 52144:11:",
            b"Received disconnect from 1.2.3.4.example.com:11: x",
            b"Received disconnect from 1.2.3.4 port 5 port 6 port 7:11: x",
            b"Received disconnect from 1.2.3.4 port 5:12: x",
            b"Received disconnect from fe80::1%eth0 port 5:11: x",
            b"Received disconnect from : port 5:11: x",
            b"Received disconnects from 1.2.3.4 port 5:11: x",
        ];
        assert_eq!(check(SSHD, hays), 6);
    }

    #[test]
    fn loops_runs_and_groups() {
        let hays: &[&[u8]] = &[
            b"",
            b"a",
            b"user root from 1.2.3.4 from 5.6.7.8",
            b"x from y from z",
            b" from ",
            b"aaaa",
            b"ab\n",
            b"ab",
            b"a b\nc",
            b"xxxxxxxx",
            b"foo bar baz",
            b"12345 678",
            b"aaab",
        ];
        let pats = [
            r"\S+ from",
            r"(.*?) from (\S+)",
            r"(.*) from (\S+)",
            r".*?x",
            r"(.*?)x(x*)",
            r"(\d{1,3})(\d*) (\d{1,3}?)",
            r"(a|ab)(c|bcd|)(d*)",
            r"((a)|b)+",
            r"(a*)+b",
            r"(a*)*b",
            r"(a|)*b",
            r"(?:a*?)*?b",
            r"(x?)*y",
            r"(?:(a)|(b)|(c))*",
            r"a?b?$",
            r"(\w+)\s*(?:\n?\z)",
            r"ab\z",
            r"\w+\b(.*)",
            r"(\w*)\B(\w)",
            r"(?m)^(a)$",
            r"foo(?: (bar))? (baz)?",
            r"(?:a|a)*b",
            r"(?i)AB?",
            r"[a-c]{2,}?(b*)",
            r"(?:ab|a)(?:bc|b|)(c?)",
            r"(?:foo|fob|bar)",
            r"^((a)(b))?(c)?",
            r"^^(a)|()b",
            r"(^a|b)*",
            r"((^))a?(?:(^)|a)+",
            r"\A(?:(\A)|a)*$",
            r"((a)*)(b)?((\s))",
            r"\d\d?\d?(\d)",
            r"(\d{1,3}?)(\d)",
            r"x[ab]{1,3}[ab]?(b*)",
            r"(?:(\w)\w{0,2}\s)+?(\w+)",
        ];
        for p in pats {
            check(p, hays);
        }
    }

    #[test]
    fn literals_compare_every_byte() {
        let text = b"abcdefghijklmnopqrstu";
        for n in 1..=text.len() {
            let lit = &text[..n];
            let mut hays = vec![lit.to_vec(), lit[..n - 1].to_vec(), [lit, b"z"].concat()];
            for i in 0..n {
                let mut h = lit.to_vec();
                h[i] = b'X';
                hays.push(h);
            }
            let hays: Vec<&[u8]> = hays.iter().map(|h| h.as_slice()).collect();
            let p = std::str::from_utf8(lit).unwrap();
            assert_eq!(check(&format!("(?:x|){p}"), &hays), 2, "{p}");
        }
    }

    #[test]
    fn joins_keep_the_search_bounded() {
        let mut hay = vec![b'a'; 2000];
        assert_eq!(check(r"(a|a)*b", &[&hay]), 0);
        assert_eq!(check(r"(?:a*)*b", &[&hay]), 0);
        hay.push(b'b');
        assert_eq!(check(r"(a|a)*b", &[&hay]), 1);
    }

    #[test]
    fn claim_stops_at_the_first_seen_position() {
        let mut c = Cache {
            stride: 200,
            visited: vec![0; 2 * 200 / 64 + 1],
            ..Cache::default()
        };
        assert_eq!(c.claim(1, 60, 70), 71);
        assert_eq!(c.claim(1, 3, 150), 60);
        assert!(!c.visit(1, 3) && !c.visit(1, 59) && !c.visit(1, 70));
        assert!(c.visit(1, 71));
        assert_eq!(c.claim(1, 72, 199), 200);
        assert_eq!(c.claim(1, 150, 199), 150);
        // row 0 is untouched
        assert_eq!(c.claim(0, 0, 199), 200);
    }

    /// A small deterministic generator (xorshift).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
            xs[self.below(xs.len())]
        }
    }

    /// A random pattern over `ab` plus some classes and assertions.
    fn pattern(r: &mut Rng, depth: u32) -> String {
        let atoms = [
            "a", "b", "ab", "ba", ".", r"\w", r"\s", "[ab]", "[^a]", r"\b", "$", r"\z", r"\n",
            r"\n?\z", "", r"\d", "1",
        ];
        let n = 1 + r.below(4);
        let mut out = String::new();
        for _ in 0..n {
            let atom = if depth < 3 && r.below(3) == 0 {
                let mut alts = vec![pattern(r, depth + 1)];
                while r.below(3) == 0 {
                    alts.push(pattern(r, depth + 1));
                }
                let open = r.pick(&["(", "(?:"]);
                format!("{open}{})", alts.join("|"))
            } else {
                r.pick(&atoms).to_string()
            };
            let rep = r.pick(&[
                "", "", "", "*", "+", "?", "*?", "+?", "??", "{1,3}", "{0,2}", "{2}", "{1,3}?",
                "{2,}",
            ]);
            if ["", "$", r"\b", r"\z", r"\n?\z"].contains(&atom.as_str()) {
                // no repetition of an empty atom or of an assertion
                out.push_str(&atom);
            } else if atom.len() > 1 && !atom.starts_with(['(', '[', '\\']) {
                out.push_str(&format!("(?:{atom}){rep}"));
            } else {
                out.push_str(&format!("{atom}{rep}"));
            }
        }
        out
    }

    #[test]
    fn random_patterns_agree_with_regex_automata() {
        let mut r = Rng(0x2545_f491_4f6c_dd1d);
        let mut hits = 0;
        let mut cases = 0;
        for _ in 0..1500 {
            let p = pattern(&mut r, 0);
            let hays: Vec<Vec<u8>> = (0..12)
                .map(|_| {
                    let n = r.below(12);
                    (0..n).map(|_| b"aab b\n1"[r.below(7)]).collect()
                })
                .collect();
            let hays: Vec<&[u8]> = hays.iter().map(|h| h.as_slice()).collect();
            hits += check(&p, &hays);
            cases += hays.len();
        }
        // the generator must produce both outcomes often
        assert!(
            hits > cases / 5 && hits < cases * 4 / 5,
            "{hits} of {cases}"
        );
    }
}
