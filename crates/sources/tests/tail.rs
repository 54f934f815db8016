//! The tailer against real files in a temporary directory: rotation by rename
//! and copytruncate, restarts from checkpoints, start positions, partial
//! lines, over-long lines and binary bytes. No test sleeps: each drives
//! `read_available` directly.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use shield_core::Checkpoint;
use shield_sources::{FileSpec, Tailer};

fn spec(globs: &[&Path], from_start: bool) -> FileSpec {
    FileSpec {
        globs: globs
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect(),
        from_start,
        max_line: 64 * 1024,
    }
}

/// Every line delivered by one pass, as (file name, line).
fn read(t: &mut Tailer) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    t.read_available(&mut |p: &Path, l: &[u8]| {
        out.push((
            p.file_name().unwrap().to_string_lossy().into_owned(),
            l.to_vec(),
        ))
    })
    .unwrap();
    out
}

fn lines(t: &mut Tailer) -> Vec<String> {
    read(t)
        .into_iter()
        .map(|(_, l)| String::from_utf8(l).unwrap())
        .collect()
}

fn append(path: &Path, text: &str) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn numbered(range: std::ops::Range<u32>) -> String {
    range
        .map(|i| format!("line {i:06} some payload to make lines longer\n"))
        .collect()
}

fn expect_numbered(got: &[String], range: std::ops::Range<u32>) {
    let want: Vec<String> = range
        .map(|i| format!("line {i:06} some payload to make lines longer"))
        .collect();
    assert_eq!(got.len(), want.len(), "count differs");
    assert_eq!(got, want.as_slice());
}

#[test]
fn existing_file_is_read_from_its_end_unless_from_start() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("a.log");
    append(&p, "old 1\nold 2\n");
    let mut t = Tailer::new(spec(&[&p], false), vec![]).unwrap();
    assert!(lines(&mut t).is_empty(), "old lines must not be read");
    append(&p, "new 1\n");
    assert_eq!(lines(&mut t), vec!["new 1"]);

    let mut t = Tailer::new(spec(&[&p], true), vec![]).unwrap();
    assert_eq!(lines(&mut t), vec!["old 1", "old 2", "new 1"]);
}

#[test]
fn start_at_end_inside_a_line_drops_the_fragment() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("a.log");
    append(&p, "old 1\nhalf a li");
    let mut t = Tailer::new(spec(&[&p], false), vec![]).unwrap();
    append(&p, "ne\nnext\n");
    assert_eq!(lines(&mut t), vec!["next"]);
}

#[test]
fn partial_line_is_held_back_until_completed() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("a.log");
    File::create(&p).unwrap();
    let mut t = Tailer::new(spec(&[&p], false), vec![]).unwrap();
    append(&p, "complete\r\nincompl");
    assert_eq!(lines(&mut t), vec!["complete"]);
    // The checkpoint stays before the partial line.
    assert_eq!(t.checkpoints()[0].1.offset, 10);
    assert!(lines(&mut t).is_empty());
    append(&p, "ete\n");
    assert_eq!(lines(&mut t), vec!["incomplete"]);
    assert_eq!(t.checkpoints()[0].1.offset, 21);
}

#[test]
fn file_created_after_start_is_read_from_its_start() {
    let d = tempfile::tempdir().unwrap();
    let glob = d.path().join("*.log");
    let mut t = Tailer::new(spec(&[&glob], false), vec![]).unwrap();
    assert!(lines(&mut t).is_empty());
    append(&d.path().join("late.log"), "first\nsecond\n");
    // The CREATE event in the watched directory triggers the rescan.
    assert_eq!(lines(&mut t), vec!["first", "second"]);
    assert_eq!(t.stats().files.len(), 1);
}

#[test]
fn rename_rotation_repeated_delivers_each_line_once_in_order() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("app.log");
    File::create(&p).unwrap();
    let mut t = Tailer::new(spec(&[&p], false), vec![]).unwrap();
    let mut got = Vec::new();
    let mut n = 0;
    for round in 0..6u32 {
        // The writer holds its descriptor across the rename, as a daemon does
        // until logrotate's postrotate tells it to reopen.
        let mut w = OpenOptions::new().append(true).open(&p).unwrap();
        w.write_all(numbered(n..n + 300).as_bytes()).unwrap();
        n += 300;
        got.extend(lines(&mut t));
        w.write_all(numbered(n..n + 200).as_bytes()).unwrap();
        n += 200;
        // Rotate: shift the old generations, rename, create a new file.
        for g in (1..=round).rev() {
            let from = d.path().join(format!("app.log.{g}"));
            if from.exists() {
                fs::rename(&from, d.path().join(format!("app.log.{}", g + 1))).unwrap();
            }
        }
        fs::rename(&p, d.path().join("app.log.1")).unwrap();
        File::create(&p).unwrap();
        // Late writes to the old descriptor, seen before the new file has data.
        w.write_all(numbered(n..n + 50).as_bytes()).unwrap();
        n += 50;
        if round % 2 == 0 {
            got.extend(lines(&mut t));
        }
        drop(w);
        // The writer reopens and goes on in the new file.
        append(&p, &numbered(n..n + 100));
        n += 100;
        got.extend(lines(&mut t));
    }
    got.extend(lines(&mut t));
    expect_numbered(&got, 0..n);
    assert_eq!(t.stats().rotations, 6);
    assert_eq!(t.stats().files[0].lines, u64::from(n));
}

#[test]
fn glob_matching_rotated_names_reads_nothing_twice() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("app.log");
    File::create(&p).unwrap();
    let glob = d.path().join("app.log*");
    let mut t = Tailer::new(spec(&[&glob], false), vec![]).unwrap();
    let mut got = Vec::new();
    let mut n = 0;
    for _ in 0..4 {
        append(&p, &numbered(n..n + 100));
        n += 100;
        got.extend(lines(&mut t));
        append(&p, &numbered(n..n + 100));
        n += 100;
        for g in (1..=4).rev() {
            let from = d.path().join(format!("app.log.{g}"));
            if from.exists() {
                fs::rename(&from, d.path().join(format!("app.log.{}", g + 1))).unwrap();
            }
        }
        fs::rename(&p, d.path().join("app.log.1")).unwrap();
        append(&p, &numbered(n..n + 100));
        n += 100;
        got.extend(lines(&mut t));
        got.extend(lines(&mut t));
    }
    got.extend(lines(&mut t));
    got.sort();
    expect_numbered(&got, 0..n);
}

#[test]
fn copytruncate_delivers_every_line_outside_the_copy_window() {
    // Guaranteed: every line Shield read before the truncation and every line
    // written after it, exactly once. Not guaranteed (by any tailer): lines
    // written after Shield's last read and before the truncation, which live
    // only in the copy. The test therefore reads before each rotation.
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("app.log");
    File::create(&p).unwrap();
    let mut t = Tailer::new(spec(&[&p], false), vec![]).unwrap();
    let mut got = Vec::new();
    let mut n = 0;
    for round in 0..5u32 {
        // An O_APPEND writer that keeps its descriptor, as copytruncate expects.
        let mut w = OpenOptions::new().append(true).open(&p).unwrap();
        w.write_all(numbered(n..n + 400).as_bytes()).unwrap();
        n += 400;
        got.extend(lines(&mut t));
        fs::copy(&p, d.path().join(format!("app.log.{round}"))).unwrap();
        OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(0)
            .unwrap();
        if round % 2 == 0 {
            // Fewer bytes than before: seen as size < offset.
            w.write_all(numbered(n..n + 10).as_bytes()).unwrap();
            n += 10;
        } else {
            // More bytes than before the truncation: the size check alone
            // cannot see it; the fingerprint of the first bytes does.
            w.write_all(numbered(n..n + 900).as_bytes()).unwrap();
            n += 900;
        }
        got.extend(lines(&mut t));
    }
    expect_numbered(&got, 0..n);
    assert_eq!(t.stats().truncations, 5);
}

fn restart(t: Tailer, s: FileSpec) -> Tailer {
    let cps: Vec<(String, Checkpoint)> = t.checkpoints();
    drop(t);
    Tailer::new(s, cps).unwrap()
}

#[test]
fn restart_after_appends_resumes_at_the_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("app.log");
    append(&p, &numbered(0..10));
    let mut t = Tailer::new(spec(&[&p], true), vec![]).unwrap();
    let mut got = lines(&mut t);
    append(&p, &numbered(10..20));
    append(&p, "partial li");
    let mut t = restart(t, spec(&[&p], true));
    append(&p, "ne\n");
    got.extend(lines(&mut t));
    assert_eq!(got.len(), 21);
    expect_numbered(&got[..20], 0..20);
    assert_eq!(got[20], "partial line");
    // A checkpoint-less restart of from_start=false would read from the end.
    let mut t = restart(t, spec(&[&p], false));
    assert!(lines(&mut t).is_empty());
}

#[test]
fn restart_after_rename_rotation_while_stopped() {
    for (rotated_name, new_file_has_data) in [
        ("app.log.1", true),
        ("app.log-20261129", true),
        ("app.log.1", false),
    ] {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("app.log");
        append(&p, &numbered(0..100));
        let mut t = Tailer::new(spec(&[&p], true), vec![]).unwrap();
        let mut got = lines(&mut t);
        let cps = t.checkpoints();
        drop(t);
        // While stopped: more lines, rotation, lines in the new file.
        append(&p, &numbered(100..150));
        fs::rename(&p, d.path().join(rotated_name)).unwrap();
        File::create(&p).unwrap();
        let mut end = 150;
        if new_file_has_data {
            append(&p, &numbered(150..170));
            end = 170;
        }
        let mut t = Tailer::new(spec(&[&p], false), cps).unwrap();
        got.extend(lines(&mut t));
        got.extend(lines(&mut t));
        if !new_file_has_data {
            append(&p, &numbered(150..170));
            end = 170;
            got.extend(lines(&mut t));
        }
        expect_numbered(&got, 0..end);
        assert_eq!(t.stats().rotations, 1, "{rotated_name}");
    }
}

#[test]
fn restart_after_rotation_while_stopped_and_crash_while_draining() {
    // Stop again while the rotated file is still being finished: the
    // checkpoint then points into the rotated file and the next start
    // finds it again.
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("app.log");
    append(&p, &numbered(0..10));
    let mut t = Tailer::new(spec(&[&p], true), vec![]).unwrap();
    let mut got = lines(&mut t);
    let mut w = OpenOptions::new().append(true).open(&p).unwrap();
    fs::rename(&p, d.path().join("app.log.1")).unwrap();
    File::create(&p).unwrap();
    w.write_all(numbered(10..20).as_bytes()).unwrap();
    got.extend(lines(&mut t));
    let mut t = restart(t, spec(&[&p], true));
    w.write_all(numbered(20..30).as_bytes()).unwrap();
    got.extend(lines(&mut t));
    append(&p, &numbered(30..40));
    got.extend(lines(&mut t));
    expect_numbered(&got, 0..40);
}

#[test]
fn restart_after_truncate_while_stopped() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("app.log");
    append(&p, &numbered(0..100));
    let mut t = Tailer::new(spec(&[&p], true), vec![]).unwrap();
    let mut got = lines(&mut t);
    let cps = t.checkpoints();
    drop(t);
    OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&p, &numbered(100..110));
    let mut t = Tailer::new(spec(&[&p], false), cps).unwrap();
    got.extend(lines(&mut t));
    expect_numbered(&got, 0..110);
    assert_eq!(t.stats().truncations, 1);
}

#[test]
fn restart_on_a_rewritten_file_with_the_same_inode_reads_it_from_its_start() {
    // The inode matches and the file is longer than the checkpoint, but its
    // first bytes differ: the fingerprint says it is another file.
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("app.log");
    append(&p, "aaaa\nbbbb\n");
    let mut t = Tailer::new(spec(&[&p], true), vec![]).unwrap();
    assert_eq!(lines(&mut t), vec!["aaaa", "bbbb"]);
    let cps = t.checkpoints();
    drop(t);
    let mut f = OpenOptions::new().write(true).open(&p).unwrap();
    f.write_all(b"cccc\ndddd\neeee\n").unwrap();
    drop(f);
    let mut t = Tailer::new(spec(&[&p], false), cps).unwrap();
    assert_eq!(lines(&mut t), vec!["cccc", "dddd", "eeee"]);
}

#[test]
fn short_file_fingerprint_grows_with_the_file() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("app.log");
    append(&p, "a\n");
    let mut t = Tailer::new(spec(&[&p], true), vec![]).unwrap();
    lines(&mut t);
    let fp1 = t.checkpoints()[0].1.fingerprint;
    append(&p, &"x".repeat(400));
    append(&p, "\n");
    lines(&mut t);
    let cp = t.checkpoints()[0].1.clone();
    assert_ne!(fp1, cp.fingerprint);
    let head = &fs::read(&p).unwrap()[..256];
    assert_eq!(cp.fingerprint, shield_sources::fingerprint_of(head));
    append(&p, "more\n");
    lines(&mut t);
    assert_eq!(
        t.checkpoints()[0].1.fingerprint,
        cp.fingerprint,
        "fixed after 256 bytes"
    );
}

#[test]
fn ten_megabyte_line_is_skipped_and_counted_and_the_next_line_delivered() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("app.log");
    File::create(&p).unwrap();
    let mut t = Tailer::new(spec(&[&p], false), vec![]).unwrap();
    append(&p, "before\n");
    let mut big = "z".repeat(10 * 1024 * 1024);
    // Deliver the giant line in two writes with a pass between them.
    let second = big.split_off(5 * 1024 * 1024);
    append(&p, &big);
    assert_eq!(lines(&mut t), vec!["before"]);
    append(&p, &second);
    append(&p, "\nafter\n");
    assert_eq!(lines(&mut t), vec!["after"]);
    assert_eq!(t.stats().files[0].skipped_long, 1);
}

#[test]
fn binary_garbage_passes_through_unchanged() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("app.log");
    File::create(&p).unwrap();
    let mut t = Tailer::new(spec(&[&p], false), vec![]).unwrap();
    let garbage: Vec<u8> = (0u8..=255).filter(|&b| b != b'\n').collect();
    let mut data = garbage.clone();
    data.push(b'\n');
    data.extend_from_slice(b"\xff\xfeok\n");
    OpenOptions::new()
        .append(true)
        .open(&p)
        .unwrap()
        .write_all(&data)
        .unwrap();
    let got: Vec<Vec<u8>> = read(&mut t).into_iter().map(|(_, l)| l).collect();
    // The trailing '\r' (0x0d) is inside the line, not at its end: kept.
    assert_eq!(got, vec![garbage, b"\xff\xfeok".to_vec()]);
}

#[test]
fn missing_file_does_not_stop_the_others_and_is_picked_up_later() {
    let d = tempfile::tempdir().unwrap();
    let a = d.path().join("a.log");
    let b = d.path().join("b.log");
    File::create(&a).unwrap();
    let mut t = Tailer::new(spec(&[&a, &b], false), vec![]).unwrap();
    append(&a, "from a\n");
    assert_eq!(lines(&mut t), vec!["from a"]);
    append(&b, "from b\n");
    let got = read(&mut t);
    assert_eq!(got, vec![("b.log".to_string(), b"from b".to_vec())]);
}

#[test]
fn deleted_file_is_drained_and_a_recreated_one_read_from_its_start() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("app.log");
    File::create(&p).unwrap();
    let mut t = Tailer::new(spec(&[&p], false), vec![]).unwrap();
    let mut w = OpenOptions::new().append(true).open(&p).unwrap();
    w.write_all(b"one\n").unwrap();
    fs::remove_file(&p).unwrap();
    w.write_all(b"two\n").unwrap();
    drop(w);
    assert_eq!(lines(&mut t), vec!["one", "two"]);
    append(&p, "three\n");
    assert_eq!(lines(&mut t), vec!["three"]);
}

#[test]
fn wait_returns_on_a_write_and_by_its_timeout() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("app.log");
    File::create(&p).unwrap();
    let mut t = Tailer::new(spec(&[&p], false), vec![]).unwrap();
    let started = Instant::now();
    t.wait(Duration::from_millis(50));
    assert!(started.elapsed() >= Duration::from_millis(40));
    let path: PathBuf = p.clone();
    let h = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        append(&path, "wake\n");
    });
    let started = Instant::now();
    t.wait(Duration::from_secs(10));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "inotify should wake wait()"
    );
    h.join().unwrap();
    assert_eq!(lines(&mut t), vec!["wake"]);
}

#[test]
fn concurrent_writer_across_rename_rotations_loses_and_repeats_nothing() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    // A writer thread appends numbered lines and reopens the path when told
    // (logrotate's postrotate HUP), while this thread rotates and reads.
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("app.log");
    File::create(&p).unwrap();
    let mut t = Tailer::new(spec(&[&p], false), vec![]).unwrap();
    let generation = Arc::new(AtomicU32::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    const N: u32 = 20_000;
    let writer = {
        let (p, generation, stop) = (p.clone(), generation.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut seen = 0;
            let mut w = OpenOptions::new().append(true).open(&p).unwrap();
            for i in 0..N {
                let g = generation.load(Ordering::Acquire);
                if g != seen {
                    seen = g;
                    w = OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&p)
                        .unwrap();
                }
                w.write_all(numbered(i..i + 1).as_bytes()).unwrap();
                if i % 200 == 0 {
                    // Pace the writer so rotations land while it writes.
                    std::thread::sleep(Duration::from_millis(1));
                }
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
        })
    };
    let mut got = Vec::new();
    let mut rotations = 0;
    while !writer.is_finished() {
        got.extend(lines(&mut t));
        if rotations < 8 && got.len() as u32 > (rotations + 1) * N / 10 {
            rotations += 1;
            // Keep every generation: deleting a rotated file before anyone
            // read it loses lines for any tailer (logrotate only deletes the
            // oldest of `rotate N`).
            for g in (1..rotations).rev() {
                fs::rename(
                    d.path().join(format!("app.log.{g}")),
                    d.path().join(format!("app.log.{}", g + 1)),
                )
                .unwrap();
            }
            fs::rename(&p, d.path().join("app.log.1")).unwrap();
            File::create(&p).unwrap();
            generation.fetch_add(1, Ordering::Release);
        }
        t.wait(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    got.extend(lines(&mut t));
    expect_numbered(&got, 0..N);
    assert!(
        rotations >= 2,
        "the writer was too fast for the test to rotate"
    );
}

/// x rotated twice: the checkpointed file is now x.2, a whole generation
/// sits in x.1, and x is new.
fn rotate_twice(d: &Path, p: &Path) {
    append(p, &numbered(10..20));
    fs::rename(p, d.join("app.log.1")).unwrap();
    append(p, &numbered(20..30));
    fs::rename(d.join("app.log.1"), d.join("app.log.2")).unwrap();
    fs::rename(p, d.join("app.log.1")).unwrap();
    append(p, &numbered(30..40));
}

#[test]
fn two_rotations_between_passes_read_the_middle_generation() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("app.log");
    append(
        &d.path().join("app.log.3"),
        "an old generation, read before Shield started\n",
    );
    append(&p, &numbered(0..10));
    let mut t = Tailer::new(spec(&[&p], true), vec![]).unwrap();
    let mut got = lines(&mut t);
    rotate_twice(d.path(), &p);
    got.extend(lines(&mut t));
    expect_numbered(&got, 0..40);
    assert_eq!(t.stats().rotations, 2);
}

#[test]
fn two_rotations_while_stopped_read_the_middle_generation() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("app.log");
    append(&p, &numbered(0..10));
    let mut t = Tailer::new(spec(&[&p], true), vec![]).unwrap();
    let mut got = lines(&mut t);
    let cps = t.checkpoints();
    drop(t);
    rotate_twice(d.path(), &p);
    let mut t = Tailer::new(spec(&[&p], false), cps).unwrap();
    got.extend(lines(&mut t));
    expect_numbered(&got, 0..40);
}

#[test]
fn unreadable_path_is_counted_and_retried_without_stopping_the_others() {
    // Running as root, permissions cannot make a file unreadable; a path
    // through a regular file fails stat with ENOTDIR instead, every pass.
    let d = tempfile::tempdir().unwrap();
    let good = d.path().join("good.log");
    let blocker = d.path().join("notadir");
    File::create(&good).unwrap();
    File::create(&blocker).unwrap();
    let bad = blocker.join("x.log");
    let mut t = Tailer::new(spec(&[&bad, &good], false), vec![]).unwrap();
    append(&good, "still read\n");
    assert_eq!(lines(&mut t), vec!["still read"]);
    lines(&mut t);
    let s = t.stats();
    assert_eq!(s.files.iter().find(|f| f.path == good).unwrap().errors, 0);
    let bad_errors = s.files.iter().find(|f| f.path == bad).unwrap().errors;
    assert!(
        bad_errors >= 2,
        "each pass retries and counts: {bad_errors}"
    );
    assert_eq!(s.errors, bad_errors);
    // Once the obstacle is gone the file is picked up from its start.
    fs::remove_file(&blocker).unwrap();
    fs::create_dir(&blocker).unwrap();
    append(&bad, "now readable\n");
    assert_eq!(lines(&mut t), vec!["now readable"]);
}
