//! Crash safety of the line-reading half (issue #9): a writer appends numbered
//! lines and rotates by rename, sometimes writing to the old file after the
//! rename (a daemon that has not reopened yet); the reader delivers batches
//! and "commits" each batch together with its checkpoints (as the daemon does
//! in one SQLite transaction), and at random points crashes (drops the tailer
//! without committing its last batch) and restarts from the last commit.
//! Every line must be committed exactly once, in order.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use shield_core::Checkpoint;
use shield_sources::{FileSpec, Tailer};

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

fn spec(p: &Path) -> FileSpec {
    FileSpec {
        globs: vec![p.to_string_lossy().into_owned()],
        from_start: true,
        max_line: 1024,
    }
}

fn run(seed: u64) {
    let mut rng = Rng(seed);
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("app.log");
    File::create(&p).unwrap();
    let mut committed: Vec<u32> = Vec::new();
    let mut saved: Vec<(String, Checkpoint)> = Vec::new();
    let mut t = Tailer::new(spec(&p), saved.clone()).unwrap();
    // The daemon stores the first checkpoints at start-up, before any line:
    // without them a file rotated before the first commit is unknown.
    saved = t.checkpoints();
    let mut w = OpenOptions::new().append(true).open(&p).unwrap();
    let mut next = 0u32;
    let mut generations = 0;
    for _step in 0..300 {
        match rng.below(10) {
            0..=3 => {
                for _ in 0..=rng.below(20) {
                    writeln!(w, "n={next:07}").unwrap();
                    next += 1;
                }
            }
            4 => {
                // Rename rotation, keeping every generation.
                for g in (1..=generations).rev() {
                    fs::rename(
                        d.path().join(format!("app.log.{g}")),
                        d.path().join(format!("app.log.{}", g + 1)),
                    )
                    .unwrap();
                }
                fs::rename(&p, d.path().join("app.log.1")).unwrap();
                File::create(&p).unwrap();
                generations += 1;
                // Half the time the writer goes on in the old file for a while.
                if rng.below(2) == 0 {
                    w = OpenOptions::new().append(true).open(&p).unwrap();
                }
            }
            5 => {
                // The writer reopens (postrotate).
                w = OpenOptions::new().append(true).open(&p).unwrap();
            }
            6 => {
                // Crash: the batch just read is lost with its checkpoints.
                let mut lost = 0;
                t.read_available(&mut |_: &Path, _: &[u8]| lost += 1)
                    .unwrap();
                drop(t);
                t = Tailer::new(spec(&p), saved.clone()).unwrap();
            }
            _ => {
                let mut batch = Vec::new();
                t.read_available(&mut |_: &Path, l: &[u8]| {
                    let s = std::str::from_utf8(l).unwrap();
                    batch.push(s.strip_prefix("n=").unwrap().parse::<u32>().unwrap());
                })
                .unwrap();
                committed.extend(batch);
                saved = t.checkpoints();
            }
        }
    }
    // Finish: the writer reopens, then read until nothing is left.
    w = OpenOptions::new().append(true).open(&p).unwrap();
    writeln!(w, "n={next:07}").unwrap();
    next += 1;
    for _ in 0..3 {
        t.read_available(&mut |_: &Path, l: &[u8]| {
            let s = std::str::from_utf8(l).unwrap();
            committed.push(s.strip_prefix("n=").unwrap().parse::<u32>().unwrap());
        })
        .unwrap();
    }
    let want: Vec<u32> = (0..next).collect();
    if committed != want {
        let dup = committed.windows(2).position(|w| w[1] <= w[0]);
        let gap = committed.windows(2).position(|w| w[1] > w[0] + 1);
        for e in fs::read_dir(d.path()).unwrap().flatten() {
            use std::os::unix::fs::MetadataExt;
            let m = e.metadata().unwrap();
            let c = fs::read_to_string(e.path()).unwrap();
            eprintln!(
                "{:?} ino {} first {:?} last {:?}",
                e.file_name(),
                m.ino(),
                c.lines().next(),
                c.lines().last()
            );
        }
        eprintln!(
            "{:?}\n{:?}\nlast committed {:?}",
            t.checkpoints(),
            t.stats(),
            committed.last()
        );
        panic!(
            "seed {seed}: {} committed of {next}; first repeat at {:?}, first gap at {:?}",
            committed.len(),
            dup.map(|i| &committed[i..i + 2]),
            gap.map(|i| &committed[i..i + 2])
        );
    }
}

#[test]
fn random_crashes_across_rotations_lose_and_repeat_nothing() {
    for seed in 1..=30 {
        run(seed * 7919);
    }
}
