//! A host *name* in a line never bans anything unless the operator opted in
//! with `usedns = yes`: the name comes from DNS its owner (usually the
//! attacker) controls, so resolving it would let a line choose the address
//! banned. `warn`, fail2ban's default, only counts such matches here.

use std::path::PathBuf;

use shield_core::LineMatcher;
use shield_fail2ban::dns::{UseDns, names_skipped};
use shield_fail2ban::{Filter, FilterRef};

fn filter_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("shield-usedns-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("names.conf"),
        "[Definition]\nfailregex = ^\\s*\\S+ sshd\\[\\d+\\]: auth failure; rhost=<HOST>\\s*$\n",
    )
    .unwrap();
    d
}

fn load(usedns: Option<&str>) -> Filter {
    let mut r = FilterRef::named("names");
    if let Some(v) = usedns {
        r.args.push(("usedns".into(), v.into()));
    }
    Filter::load(&r, &filter_dir()).unwrap()
}

const NAME_LINE: &str = "Dec  7 10:00:00 vm sshd[42]: auth failure; rhost=mail.example.org";
const ADDR_LINE: &str = "Dec  7 10:00:00 vm sshd[42]: auth failure; rhost=203.0.113.7";

#[test]
fn a_host_name_bans_nothing_unless_usedns_is_yes() {
    let now = 1_765_101_600;
    let mut warn = load(None);
    assert_eq!(warn.usedns(), UseDns::Warn, "warn is the default");
    // the same line with an address is a failure: the filter works
    let hit = warn.match_line(ADDR_LINE, now).map(|h| h.host);
    assert_eq!(hit, Some("203.0.113.7".parse().unwrap()));
    // with a name it is matched, counted as skipped, and yields no hit, many
    // times over (no background answer could turn it into one)
    let before = names_skipped();
    for _ in 0..50 {
        assert!(warn.match_line(NAME_LINE, now).is_none());
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert!(names_skipped() >= before + 50, "every skipped name counted");

    let mut no = load(Some("no"));
    assert_eq!(no.usedns(), UseDns::No);
    assert!(no.match_line(NAME_LINE, now).is_none());

    // `yes` is the explicit opt-in: the name goes to the resolver (it does
    // not resolve without a network, so still no hit here)
    let mut yes = load(Some("yes"));
    assert_eq!(yes.usedns(), UseDns::Yes);
    assert!(yes.match_line(NAME_LINE, now).is_none());
}
