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

fn replay(e: &mut Engine, lines: &[String]) -> u64 {
    let mut alerts = 0u64;
    for (i, l) in lines.iter().enumerate() {
        black_box(e.feed(l, r#gen::START + (i / 20) as i64, &mut |_| alerts += 1));
    }
    alerts
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("replay");
    g.sample_size(10);
    g.throughput(Throughput::Elements(LINES as u64));
    for (name, (lines, _truth)) in [
        ("sshd_1M", r#gen::sshd(LINES, 200, 7)),
        ("nginx_1M", r#gen::nginx(LINES, 200, 7)),
    ] {
        g.bench_function(name, |b| {
            b.iter_batched(
                engine,
                |mut e| replay(&mut e, &lines),
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
