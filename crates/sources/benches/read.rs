//! Throughput of the line splitters: `LineReader` over an in-memory log and
//! the `Tailer` reading a file from its start (page cache warm).
//! Run: `cargo bench -p shield-sources --bench read`.

use std::hint::black_box;
use std::io::Write;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shield_sources::{FileSpec, LineReader, Tailer};

const LINES: usize = 200_000;

fn log() -> Vec<u8> {
    let mut v = Vec::with_capacity(LINES * 110);
    for i in 0..LINES {
        writeln!(
            v,
            "Nov  3 14:02:{:02} web1 sshd[{}]: Failed password for invalid user u{} from 203.0.113.{} port {} ssh2",
            i % 60,
            1000 + i % 5000,
            i % 977,
            i % 250,
            40000 + i % 20000
        )
        .unwrap();
    }
    v
}

fn bench(c: &mut Criterion) {
    let data = log();
    let mut g = c.benchmark_group("lines");
    g.throughput(Throughput::Elements(LINES as u64));
    g.sample_size(20);
    g.bench_function("line_reader_200k", |b| {
        b.iter(|| {
            let mut r = LineReader::new(&data[..], 64 * 1024);
            let mut n = 0usize;
            while let Some(l) = r.next_line() {
                n += black_box(l.unwrap()).len();
            }
            n
        })
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.log");
    std::fs::write(&path, &data).unwrap();
    let spec = FileSpec {
        globs: vec![path.to_string_lossy().into_owned()],
        from_start: true,
        ..FileSpec::default()
    };
    g.bench_function("tailer_200k_from_start", |b| {
        b.iter(|| {
            let mut t = Tailer::new(spec.clone(), vec![]).unwrap();
            let mut n = 0usize;
            t.read_available(&mut |_: &Path, l: &[u8]| n += black_box(l).len())
                .unwrap();
            n
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
