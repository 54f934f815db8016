//! Replay throughput: every built-in pack + the default scenarios over 1M
//! generated sshd lines and 1M generated nginx lines, on one core.
//! Run: `cargo bench -p shield-detect --bench replay` (criterion prints
//! elements/s = lines/s).

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use shield_detect::{Engine, EngineOptions, NativeMatcher, default_scenarios, r#gen, pack_names};

const LINES: usize = 1_000_000;

fn engine() -> Engine {
    Engine::new(
        Box::new(NativeMatcher::all()),
        &default_scenarios(pack_names()),
        EngineOptions::default(),
    )
    .expect("defaults build")
}

/// The log as one buffer and line ranges, as a reader hands lines over.
struct Log {
    text: String,
    lines: Vec<(usize, usize)>,
}

fn log(lines: Vec<String>) -> Log {
    let mut text = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    let mut ranges = Vec::with_capacity(lines.len());
    for l in &lines {
        ranges.push((text.len(), text.len() + l.len()));
        text.push_str(l);
        text.push('\n');
    }
    Log {
        text,
        lines: ranges,
    }
}

fn replay(e: &mut Engine, log: &Log) -> u64 {
    let mut alerts = 0u64;
    for (i, &(s, end)) in log.lines.iter().enumerate() {
        let line = &log.text[s..end];
        black_box(e.feed(line, r#gen::START + (i / 20) as i64, &mut |_| alerts += 1));
    }
    alerts
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("replay");
    g.sample_size(10);
    g.throughput(Throughput::Elements(LINES as u64));
    for (name, lines) in [
        ("sshd_1M", r#gen::sshd(LINES, 200, 7).0),
        ("nginx_1M", r#gen::nginx(LINES, 200, 7).0),
    ] {
        let log = log(lines);
        g.bench_function(name, |b| {
            b.iter_batched(engine, |mut e| replay(&mut e, &log), BatchSize::LargeInput)
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
