//! [`LineReader`]: the fast line splitter used for replay, stdin and any other
//! plain byte stream. It owns one reused buffer, reads 64 KiB at a time, finds
//! newlines with `memchr` and hands out borrowed lines: no allocation per line.
//!
//! A line longer than `max_line` is skipped (the bytes are discarded as they
//! arrive, so a 10 MB line costs no memory) and counted; the line after it is
//! delivered normally. A last line without a trailing `\n` is delivered at end
//! of input.

use std::io::{ErrorKind, Read};

/// How much is read from the underlying reader at a time.
pub(crate) const CHUNK: usize = 64 * 1024;

/// Splits any reader into lines (bytes, without `\n` and without a trailing `\r`).
pub struct LineReader<R: Read> {
    r: R,
    buf: Vec<u8>,
    /// First byte of `buf` not yet handed out.
    start: usize,
    /// End of valid data in `buf`.
    end: usize,
    max_line: usize,
    /// Inside a line that is too long: discard until the next `\n`.
    skipping: bool,
    eof: bool,
    skipped_long: u64,
    bytes_read: u64,
}

impl<R: Read> LineReader<R> {
    /// A reader delivering lines of at most `max_line` bytes (0 is taken as 1).
    pub fn new(r: R, max_line: usize) -> Self {
        let max_line = max_line.max(1);
        // Room for one whole maximal line plus a full chunk, so a read never
        // has to be shorter than CHUNK once the buffer is compacted.
        let cap = max_line.saturating_add(CHUNK);
        Self {
            r,
            buf: vec![0; cap],
            start: 0,
            end: 0,
            max_line,
            skipping: false,
            eof: false,
            skipped_long: 0,
            bytes_read: 0,
        }
    }

    /// The next line, `None` at end of input, or the reader's error (after an
    /// error, calling again retries the read).
    pub fn next_line(&mut self) -> Option<std::io::Result<&[u8]>> {
        let (s, e) = loop {
            let pending = &self.buf[self.start..self.end];
            if let Some(i) = memchr::memchr(b'\n', pending) {
                let s = self.start;
                self.start += i + 1;
                if self.skipping {
                    self.skipping = false;
                    continue;
                }
                let e = strip_cr(&self.buf[s..s + i]) + s;
                if e - s > self.max_line {
                    self.skipped_long += 1;
                    continue;
                }
                break (s, e);
            }
            // No newline in what is buffered.
            if self.skipping {
                self.start = 0;
                self.end = 0;
            } else if pending.len() > self.max_line + 1 {
                // (+1: the line may still end in a '\r' that does not count.)
                self.skipped_long += 1;
                self.skipping = true;
                self.start = 0;
                self.end = 0;
            }
            if self.eof {
                if self.start < self.end {
                    let s = self.start;
                    self.start = self.end;
                    let e = strip_cr(&self.buf[s..self.end]) + s;
                    if e - s > self.max_line {
                        self.skipped_long += 1;
                        return None;
                    }
                    break (s, e);
                }
                return None;
            }
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            match self.r.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    self.end += n;
                    self.bytes_read += n as u64;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Some(Err(e)),
            }
        };
        Some(Ok(&self.buf[s..e]))
    }

    /// How many lines longer than `max_line` were skipped so far.
    pub fn skipped_long(&self) -> u64 {
        self.skipped_long
    }

    /// How many bytes were read from the underlying reader so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }
}

/// The lines of `text`, each ending in `\n` (the `\n` not included; text
/// after the last `\n` is not a line): `str::split_terminator('\n')` with a
/// vectorised search, for blocks of whole lines handed between threads.
pub fn terminated_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let i = memchr::memchr(b'\n', &text.as_bytes()[at..])?;
        // `\n` is never inside a UTF-8 sequence, so both ends are boundaries.
        let line = &text[at..at + i];
        at += i + 1;
        Some(line)
    })
}

/// Length of `line` without one trailing `\r`.
pub(crate) fn strip_cr(line: &[u8]) -> usize {
    match line.last() {
        Some(b'\r') => line.len() - 1,
        _ => line.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(input: &[u8], max: usize) -> (Vec<Vec<u8>>, u64) {
        let mut r = LineReader::new(input, max);
        let mut out = Vec::new();
        while let Some(l) = r.next_line() {
            out.push(l.unwrap().to_vec());
        }
        (out, r.skipped_long())
    }

    #[test]
    fn splits_and_strips_cr_and_keeps_last_unterminated_line() {
        let (l, s) = collect(b"a\r\nbb\n\nccc", 10);
        assert_eq!(
            l,
            vec![b"a".to_vec(), b"bb".to_vec(), b"".to_vec(), b"ccc".to_vec()]
        );
        assert_eq!(s, 0);
    }

    #[test]
    fn long_lines_are_skipped_and_counted_across_chunks() {
        let mut input = b"short\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 3 * CHUNK + 17));
        input.extend(b"\nafter\n");
        input.extend(std::iter::repeat_n(b'y', 11));
        input.extend(b"\nend");
        let (l, s) = collect(&input, 10);
        assert_eq!(
            l,
            vec![b"short".to_vec(), b"after".to_vec(), b"end".to_vec()]
        );
        assert_eq!(s, 2);
    }

    #[test]
    fn terminated_lines_is_split_terminator() {
        for t in [
            "",
            "\n",
            "a\n",
            "a\n\nb\n",
            "a\nb",
            "é\n\u{1f600}x\n\n\n",
            "\r\n",
        ] {
            let want: Vec<&str> = t.split_terminator('\n').collect();
            let got: Vec<&str> = terminated_lines(t).collect();
            if t.ends_with('\n') || t.is_empty() {
                assert_eq!(got, want, "{t:?}");
            } else {
                assert_eq!(got, want[..want.len() - 1], "{t:?}");
            }
        }
    }

    #[test]
    fn line_of_exactly_max_is_kept() {
        let (l, s) = collect(b"0123456789\n01234567890\n", 10);
        assert_eq!(l, vec![b"0123456789".to_vec()]);
        assert_eq!(s, 1);
    }

    /// A reader returning one byte at a time exercises every buffer boundary.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() || buf.is_empty() {
                return Ok(0);
            }
            buf[0] = self.0[0];
            self.0 = &self.0[1..];
            Ok(1)
        }
    }

    #[test]
    fn byte_at_a_time_reader_gives_the_same_lines() {
        let input = b"one\ntwo\r\n\xff\xfe\x00bin\nlast";
        let mut r = LineReader::new(Trickle(input), 64);
        let mut out = Vec::new();
        while let Some(l) = r.next_line() {
            out.push(l.unwrap().to_vec());
        }
        assert_eq!(out, collect(input, 64).0);
        assert_eq!(r.bytes_read(), input.len() as u64);
    }
}
