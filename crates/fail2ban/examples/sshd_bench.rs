//! Stock `sshd` filter: Shield vs `fail2ban-regex` on the same generated log,
//! in the same run, as a ratio.
//!
//! ```text
//! cargo run --release -p shield-fail2ban --example sshd_bench -- [LINES] [--no-fail2ban]
//! ```
//!
//! The log is deterministic (a fixed LCG): about 50% `Failed password`, 10%
//! `Invalid user`, 15% `Accepted publickey`, the rest CRON, systemd and kernel
//! lines, random IPv4 sources, one date per second.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use shield_core::LineMatcher;
use shield_fail2ban::{Filter, FilterRef};

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const USERS: [&str; 8] = [
    "root", "admin", "oracle", "test", "ubuntu", "git", "postgres", "pi",
];

fn generate(path: &Path, n: usize) -> std::io::Result<()> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut r = Lcg(42);
    // start 2026-11-01 00:00:00, one second per line
    for i in 0..n {
        let secs = i as u64;
        let (d, h, m, s) = (
            1 + (secs / 86_400) % 28,
            (secs / 3600) % 24,
            (secs / 60) % 60,
            secs % 60,
        );
        let ip = format!(
            "{}.{}.{}.{}",
            1 + r.next() % 223,
            r.next() % 256,
            r.next() % 256,
            1 + r.next() % 254
        );
        let pid = 1000 + r.next() % 60_000;
        let port = 1024 + r.next() % 60_000;
        let user = USERS[(r.next() % 8) as usize];
        let k = r.next() % 100;
        write!(
            w,
            "{} {:>2} {:02}:{:02}:{:02} web1 ",
            MONTHS[10], d, h, m, s
        )?;
        match k {
            0..=49 => writeln!(
                w,
                "sshd[{pid}]: Failed password for {user} from {ip} port {port} ssh2"
            )?,
            50..=59 => writeln!(w, "sshd[{pid}]: Invalid user {user} from {ip} port {port}")?,
            60..=74 => writeln!(
                w,
                "sshd[{pid}]: Accepted publickey for {user} from {ip} port {port} ssh2: RSA SHA256:abcdef"
            )?,
            75..=84 => writeln!(
                w,
                "CRON[{pid}]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)"
            )?,
            85..=94 => writeln!(w, "systemd[1]: Started Session {pid} of user {user}.")?,
            _ => writeln!(
                w,
                "kernel: [{pid}.{port:06}] UFW BLOCK IN=eth0 OUT= SRC={ip} DST=10.0.0.1 PROTO=TCP DPT=23"
            )?,
        }
    }
    w.flush()
}

/// (own CPU seconds, reaped children's CPU seconds) from /proc/self/stat: on
/// a shared machine wall time measures the neighbours, CPU time the work.
fn cpu_times() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or("");
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    let tick = 100.0; // USER_HZ on Linux
    let g = |i: usize| f.get(i).copied().unwrap_or(0.0) / tick;
    (g(11) + g(12), g(13) + g(14))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args
        .iter()
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let run_f2b = !args.iter().any(|a| a == "--no-fail2ban");
    let path = std::env::temp_dir().join(format!("shield-sshd-bench-{n}.log"));
    generate(&path, n).expect("write the generated log");
    let text = std::fs::read_to_string(&path).expect("read the generated log");

    let mut f = Filter::load(
        &FilterRef::named("sshd"),
        Path::new("/etc/fail2ban/filter.d"),
    )
    .expect("load /etc/fail2ban/filter.d/sshd.conf (apt-get install fail2ban)");
    let now = 1_796_000_000; // 2026-11-30: the generated dates are in the past
    let t = Instant::now();
    let cpu0 = cpu_times().0;
    let (mut failures, mut nofail) = (0u64, 0u64);
    for line in text.lines() {
        if let Some(h) = f.match_line(line, now) {
            if h.nofail { nofail += 1 } else { failures += 1 }
        }
    }
    let shield_wall = t.elapsed().as_secs_f64();
    let shield_s = (cpu_times().0 - cpu0).max(0.01);
    println!(
        "shield : {n} lines in {shield_s:.2} s CPU ({shield_wall:.2} s wall) = {:.0} lines/s per core; {failures} failures, {nofail} nofail ({} of {} failregexes backtracking)",
        n as f64 / shield_s,
        f.backtracking_count(),
        f.rules().len()
    );
    if !run_f2b {
        return;
    }
    let t = Instant::now();
    let child0 = cpu_times().1;
    let out = Command::new("fail2ban-regex")
        .args(["--print-no-missed", "--print-no-ignored"])
        .arg(&path)
        .arg("/etc/fail2ban/filter.d/sshd.conf")
        .output()
        .expect("run fail2ban-regex (apt-get install fail2ban)");
    let f2b_wall = t.elapsed().as_secs_f64();
    let f2b_s = cpu_times().1 - child0;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("Lines:"))
        .unwrap_or("(no summary)");
    println!(
        "fail2ban-regex: {n} lines in {f2b_s:.2} s CPU ({f2b_wall:.2} s wall, incl. start-up) = {:.0} lines/s; {summary}",
        n as f64 / f2b_s
    );
    println!(
        "ratio (CPU time): shield is {:.1}x fail2ban-regex",
        f2b_s / shield_s
    );
}
