//! Batch replay: `open` + `LineReader` over plain and gzip files.

use std::io::Write;

use shield_sources::{LineReader, SourceError, open};

fn all_lines(path: &std::path::Path, max: usize) -> (Vec<Vec<u8>>, u64) {
    let mut r = LineReader::new(open(path).unwrap(), max);
    let mut out = Vec::new();
    while let Some(l) = r.next_line() {
        out.push(l.unwrap().to_vec());
    }
    (out, r.skipped_long())
}

#[test]
fn gz_replay_reads_every_member() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("auth.log.2.gz");
    let mut bytes = Vec::new();
    // Two gzip members back to back, as `cat a.gz b.gz` makes.
    for part in ["one\ntwo\n", "three\nfour"] {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(part.as_bytes()).unwrap();
        bytes.extend(enc.finish().unwrap());
    }
    std::fs::write(&p, &bytes).unwrap();
    let (lines, _) = all_lines(&p, 1024);
    assert_eq!(
        lines,
        vec![
            b"one".to_vec(),
            b"two".to_vec(),
            b"three".to_vec(),
            b"four".to_vec()
        ]
    );
}

#[test]
fn gzip_is_recognised_by_its_magic_not_only_its_name() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("auth.log.1");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(b"zipped\n").unwrap();
    std::fs::write(&p, enc.finish().unwrap()).unwrap();
    assert_eq!(all_lines(&p, 1024).0, vec![b"zipped".to_vec()]);
    // A .gz name on plain text is read as plain text.
    let q = d.path().join("plain.gz");
    std::fs::write(&q, "plain\n").unwrap();
    assert_eq!(all_lines(&q, 1024).0, vec![b"plain".to_vec()]);
}

#[test]
fn ten_megabyte_line_in_replay_is_skipped_and_counted() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("big.log");
    let mut data = b"first\n".to_vec();
    data.extend(std::iter::repeat_n(b'q', 10 * 1024 * 1024));
    data.extend(b"\nnext\n");
    std::fs::write(&p, &data).unwrap();
    let (lines, skipped) = all_lines(&p, 64 * 1024);
    assert_eq!(lines, vec![b"first".to_vec(), b"next".to_vec()]);
    assert_eq!(skipped, 1);
}

#[test]
fn missing_file_error_says_what_to_check() {
    let Err(e) = open(std::path::Path::new("/nonexistent/shield/x.log")) else {
        panic!("opening a missing file must fail")
    };
    assert!(matches!(e, SourceError::Open { .. }));
    assert!(e.to_string().contains("check that the file exists"), "{e}");
}
