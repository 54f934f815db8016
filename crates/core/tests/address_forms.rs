//! Property test of the canonical address types: random addresses and
//! networks (IPv4 and IPv6, every prefix length), rendered in all their
//! textual forms, parse to one value, and the allowlist and prefix-cap
//! decisions are the same for every form. A small deterministic PRNG drives
//! it, so a failure names a seed that reproduces it.

use std::net::{Ipv4Addr, Ipv6Addr};

use shield_core::{Addr, Allowlist, Net};

/// splitmix64: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Every hex rendering of the eight groups: compressed (std), expanded,
/// zero-padded, upper case.
fn v6_hex_forms(a: Ipv6Addr) -> Vec<String> {
    let g = a.segments();
    let join = |f: &dyn Fn(u16) -> String| g.iter().map(|&x| f(x)).collect::<Vec<_>>().join(":");
    vec![
        a.to_string(),
        a.to_string().to_uppercase(),
        join(&|x| format!("{x:x}")),
        join(&|x| format!("{x:04x}")),
        join(&|x| format!("{x:04X}")),
    ]
}

/// IPv6 text with the last 32 bits as a dotted quad, under `head` (`::ffff:` or `::`).
fn dotted(head: &str, v4: Ipv4Addr) -> Vec<String> {
    let mut out = vec![
        format!("{head}{v4}"),
        format!("{}{v4}", head.to_uppercase()),
    ];
    if head == "::ffff:" {
        out.push(format!("0:0:0:0:0:ffff:{v4}"));
        out.push(format!("0000:0000:0000:0000:0000:FFFF:{v4}"));
    } else {
        out.push(format!("0:0:0:0:0:0:{v4}"));
    }
    out
}

/// All the texts that name the IPv4 network `a/p` (host bits of `a` may be set).
fn v4_forms(a: Ipv4Addr, p: u8) -> Vec<String> {
    let bits = u32::from(a);
    let net = if p == 0 {
        0
    } else {
        bits & (u32::MAX << (32 - p))
    };
    let mut addrs: Vec<(String, bool)> = vec![(a.to_string(), false)];
    for s in dotted("::ffff:", a) {
        addrs.push((s, true));
    }
    let mapped = Ipv6Addr::from(0xffff_0000_0000u128 | bits as u128);
    for s in v6_hex_forms(mapped) {
        addrs.push((s, true));
    }
    // IPv4-compatible forms name the IPv4 network only when it holds neither `::` nor `::1`.
    if net > 1 {
        for s in dotted("::", a) {
            addrs.push((s, true));
        }
        for s in v6_hex_forms(Ipv6Addr::from(bits as u128)) {
            addrs.push((s, true));
        }
    }
    let mut out = Vec::new();
    for (s, six) in addrs {
        let plen = if six { p as u16 + 96 } else { p as u16 };
        out.push(format!("{s}/{plen}"));
        if p == 32 {
            out.push(s);
        }
    }
    out
}

fn v6_forms(a: Ipv6Addr, p: u8) -> Vec<String> {
    let mut out = Vec::new();
    for s in v6_hex_forms(a) {
        out.push(format!("{s}/{p}"));
        if p == 128 {
            out.push(s);
        }
    }
    out
}

/// A random IPv6 address that is not IPv4-in-IPv6 (those are the IPv4 cases).
fn random_v6(r: &mut Rng) -> Ipv6Addr {
    let x = ((r.next() as u128) << 64) | r.next() as u128;
    let x = match r.below(5) {
        0 => (0x2001_0db8u128 << 96) | (x & ((1 << 96) - 1)),
        1 => (0xfe80u128 << 112) | (x & ((1 << 64) - 1)),
        // Sparse addresses, to exercise `::` compression.
        2 => (x & 0xffff) | ((x & 0xffff_0000) << 80),
        _ => x,
    };
    if x >> 32 == 0 || x >> 32 == 0xffff {
        Ipv6Addr::from(x | (1u128 << 127))
    } else {
        Ipv6Addr::from(x)
    }
}

fn allowlist(r: &mut Rng) -> Allowlist {
    let mut nets: Vec<Net> = vec![
        "10.0.0.0/8".parse().unwrap(),
        "127.0.0.0/8".parse().unwrap(),
        "::1".parse().unwrap(),
        "2001:db8::/48".parse().unwrap(),
        // Written as mapped: must protect the IPv4 network.
        "::ffff:192.168.0.0/112".parse().unwrap(),
    ];
    for _ in 0..6 {
        let v4 = Ipv4Addr::from(r.next() as u32);
        nets.push(format!("{v4}/{}", 8 + r.below(25)).parse().unwrap());
        let v6 = random_v6(r);
        nets.push(format!("{v6}/{}", 16 + r.below(113)).parse().unwrap());
    }
    Allowlist::new(nets)
}

/// The checks a decision target meets: allowlist overlap, and a union-style
/// prefix cap (IPv4 /24, IPv6 /48).
fn verdict(allow: &Allowlist, n: &Net) -> (Option<Net>, bool) {
    let cap = if n.get().addr().is_ipv4() { 24 } else { 48 };
    (allow.overlaps(n), n.prefix_len() < cap)
}

#[test]
fn every_textual_form_is_one_canonical_value() {
    let mut r = Rng(0x5eed_0019);
    let allow = allowlist(&mut r);
    let mut checked = 0usize;
    for round in 0..4000 {
        let v4 = round % 2 == 0;
        let (forms, want) = if v4 {
            let mut bits = r.next() as u32;
            if r.below(8) == 0 {
                // Inside an allowlisted or special network now and then.
                bits = (bits & 0x00ff_ffff) | [10u32, 127, 0, 192][r.below(4) as usize] << 24;
            }
            let a = Ipv4Addr::from(bits);
            let p = r.below(33) as u8;
            let want: Net = ipnet::IpNet::new(a.into(), p).unwrap().into();
            (v4_forms(a, p), want)
        } else {
            let a = random_v6(&mut r);
            let p = r.below(129) as u8;
            let want: Net = ipnet::IpNet::new(a.into(), p).unwrap().into();
            (v6_forms(a, p), want)
        };
        assert_eq!(
            matches!(want.get(), ipnet::IpNet::V4(_)),
            v4,
            "round {round}: {want}"
        );
        let v = verdict(&allow, &want);
        for f in &forms {
            let got: Net = f
                .parse()
                .unwrap_or_else(|e| panic!("round {round}: `{f}` refused: {e}"));
            assert_eq!(got, want, "round {round}: `{f}`");
            assert_eq!(verdict(&allow, &got), v, "round {round}: `{f}`");
            // Its own text reads back as itself.
            assert_eq!(got.to_string().parse::<Net>().unwrap(), got);
            if got.is_host() && !f.contains('/') {
                let a: Addr = f.parse().unwrap();
                assert_eq!(Net::host(a), want, "round {round}: `{f}`");
                assert_eq!(allow.contains_ip(a), v.0.is_some(), "round {round}: `{f}`");
            }
            checked += 1;
        }
    }
    assert!(checked > 40_000, "only {checked} forms checked");
}

#[test]
fn ambiguous_forms_are_refused() {
    let mut r = Rng(0x5eed_0020);
    for round in 0..2000 {
        let a = Ipv4Addr::from(r.next() as u32);
        let p = r.below(33);
        let o = a.octets();
        let zeroed = format!("{}.{}.{}.0{}", o[0], o[1], o[2], o[3]);
        let six = random_v6(&mut r);
        for bad in [
            format!("{zeroed}/{p}"),
            format!("::ffff:{zeroed}"),
            format!("[{six}]"),
            format!("{six}%eth0"),
            format!("{a}/0{p}"),
            format!("{a}/{}", 33 + p),
            format!(" {a}"),
            format!("{a}\n"),
            // A mapped IPv4 address with an IPv4-sized prefix.
            format!("::ffff:{a}/{p}"),
        ] {
            assert!(
                bad.parse::<Net>().is_err(),
                "round {round}: `{bad:?}` accepted"
            );
        }
    }
}
