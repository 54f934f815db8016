//! The governance latency goal of issue #23: time from the last needed
//! signature to every running member enforcing the new treaty version, with
//! many member identities in the treaty (the quorum of a union that large).
//! Runs [`shield_union::drill::run_governance`]: `--members` members run in
//! this process; the other identities' keys are held by the bench, which
//! signs with them. `--nats URL` runs on NATS JetStream.
//!
//! ```text
//! cargo run --release -p shield-union --example gov_bench -- --identities 1000 --rounds 20
//! cargo run --release -p shield-union --example gov_bench -- --identities 1000 --rounds 20 --nats nats://127.0.0.1:4222
//! ```

use shield_union::drill::{GovDrillOptions, run_governance};
use std::time::Duration;

fn main() {
    let mut opts = GovDrillOptions {
        members: 3,
        identities: 1000,
        nats: None,
        rounds: 20,
        timeout: Duration::from_secs(60),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i + 1 < args.len() {
        let v = &args[i + 1];
        match args[i].as_str() {
            "--members" => opts.members = v.parse().expect("--members N"),
            "--identities" => opts.identities = v.parse().expect("--identities N"),
            "--rounds" => opts.rounds = v.parse().expect("--rounds N"),
            "--nats" => opts.nats = Some(v.clone()),
            other => panic!("unknown option {other}"),
        }
        i += 2;
    }
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let r = rt
        .block_on(run_governance(&opts))
        .expect("governance drill");
    println!("{}", serde_json::to_string_pretty(&r).expect("json"));
    println!(
        "{} identities ({} running), {}: amend p50 {:.0} ms, p99 {:.0} ms over {} rounds; ok = {}",
        r.identities,
        r.members,
        r.transport,
        r.p50_ms,
        r.p99_ms,
        opts.rounds,
        r.ok()
    );
}
