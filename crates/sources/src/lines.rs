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
    /// [`LineReader::next_block`] may read straight into the caller's
    /// buffer; cleared for good the first time a block needs the line-by-line
    /// path (CR, invalid UTF-8, an over-long line).
    direct: bool,
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
            direct: true,
            skipped_long: 0,
            bytes_read: 0,
        }
    }

    /// Whether the next [`next_line`](Self::next_line) returns a whole line
    /// already read, without reading (and so without blocking) again.
    pub fn has_buffered_line(&self) -> bool {
        memchr::memchr(b'\n', &self.buf[self.start..self.end]).is_some()
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

    /// Appends whole lines to `out`, each ending in `\n`, until `out` holds at
    /// least `want` bytes or the input ends: the lines [`next_line`] gives, as
    /// text (a line that is not UTF-8 is replaced lossily and counted). Returns
    /// (lines replaced, whether the input ended).
    ///
    /// Text without `\r`, invalid UTF-8 or over-long lines (the usual case) is
    /// read straight into `out`'s buffer and checked in one piece, with no
    /// copy; after the first text that is not, the rest goes through the
    /// reader's own buffer, line by line where it has to.
    ///
    /// [`next_line`]: LineReader::next_line
    pub fn next_block(&mut self, out: &mut String, want: usize) -> std::io::Result<(u64, bool)> {
        if self.direct
            && want > 0
            && out.is_empty()
            && !self.skipping
            && !self.eof
            && let Some(end) = self.direct_block(out, want)?
        {
            return Ok((0, end));
        }
        let mut invalid = 0;
        // Set once a piece fails the check: the rest of the call goes line by
        // line, so a CRLF file costs one failed check per call, not per line.
        let mut slow = false;
        while out.len() < want {
            if !slow && !self.skipping {
                let pending = &self.buf[self.start..self.end];
                if let Some(last) = memchr::memrchr(b'\n', pending) {
                    match plain_lines(&pending[..=last], self.max_line) {
                        Some(s) => {
                            out.push_str(s);
                            self.start += last + 1;
                            continue;
                        }
                        None => slow = true,
                    }
                }
            }
            match self.next_line() {
                Some(Ok(bytes)) => {
                    match std::str::from_utf8(bytes) {
                        Ok(s) => out.push_str(s),
                        Err(_) => {
                            invalid += 1;
                            out.push_str(&String::from_utf8_lossy(bytes));
                        }
                    }
                    out.push('\n');
                }
                Some(Err(e)) => return Err(e),
                None => return Ok((invalid, true)),
            }
        }
        Ok((invalid, false))
    }

    /// [`LineReader::next_block`] without a copy: reads into `out`'s own
    /// buffer (empty on entry), hands it back as the block if its lines are
    /// plain (see [`plain_lines`]) and keeps the partial last line. `None`:
    /// the text is not plain; it is back in `self.buf`, `direct` is off and
    /// `out` is a fresh empty buffer.
    fn direct_block(&mut self, out: &mut String, want: usize) -> std::io::Result<Option<bool>> {
        let mut v = std::mem::take(out).into_bytes();
        v.extend_from_slice(&self.buf[self.start..self.end]);
        (self.start, self.end) = (0, 0);
        // `cut`: the end of the last whole line; `seen`: bytes searched for it.
        let (mut cut, mut seen) = (0, 0);
        loop {
            // A little past `want`, so that the last whole line usually
            // still reaches it.
            let ask = (want + 4096).saturating_sub(v.len()).max(CHUNK);
            let before = v.len();
            let r = (&mut self.r).take(ask as u64).read_to_end(&mut v);
            let got = v.len() - before;
            self.bytes_read += got as u64;
            if let Err(e) = r {
                self.undo_direct(v, out, want);
                return Err(e);
            }
            self.eof = got < ask;
            if let Some(i) = memchr::memrchr(b'\n', &v[seen..]) {
                cut = seen + i + 1;
            }
            seen = v.len();
            // (+1: a line may end in a `\r` that does not count.)
            if v.len() - cut > self.max_line + 1 {
                self.undo_direct(v, out, want);
                return Ok(None);
            }
            if self.eof || cut >= want {
                break;
            }
        }
        if self.eof && cut < v.len() {
            // The last line has no `\n`: it ends the block all the same.
            v.push(b'\n');
            cut = v.len();
        }
        if !plain_shape(&v[..cut], self.max_line) {
            self.undo_direct(v, out, want);
            return Ok(None);
        }
        // The partial last line waits for the next block.
        let tail = v.len() - cut;
        self.buf[..tail].copy_from_slice(&v[cut..]);
        v.truncate(cut);
        match String::from_utf8(v) {
            Ok(s) => {
                self.end = tail;
                *out = s;
                Ok(Some(self.eof))
            }
            Err(e) => {
                let mut v = e.into_bytes();
                v.extend_from_slice(&self.buf[..tail]);
                self.undo_direct(v, out, want);
                Ok(None)
            }
        }
    }

    /// Puts the text `direct_block` read (`v`; nothing else is pending) in
    /// front of the line-by-line path, for good. A `\n` it added after the
    /// last line at the end of input makes no difference there.
    fn undo_direct(&mut self, mut v: Vec<u8>, out: &mut String, want: usize) {
        let len = v.len();
        v.resize(len + self.max_line.saturating_add(CHUNK), 0);
        self.buf = v;
        (self.start, self.end) = (0, len);
        self.direct = false;
        *out = String::with_capacity(want);
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

/// `text` (whole lines, ending in `\n`) as it is, if [`LineReader::next_line`]
/// would give its lines unchanged: UTF-8 and [`plain_shape`].
fn plain_lines(text: &[u8], max_line: usize) -> Option<&str> {
    if !plain_shape(text, max_line) {
        return None;
    }
    std::str::from_utf8(text).ok()
}

/// No `\r` in `text` (whole lines, ending in `\n`) and no line over `max_line`.
fn plain_shape(text: &[u8], max_line: usize) -> bool {
    if memchr::memchr(b'\r', text).is_some() {
        return false;
    }
    // Every line's `\n` must be within `max_line` bytes of its start: jump
    // from the last `\n` within reach to the next.
    let mut p = 0;
    while text.len() - p > max_line + 1 {
        match memchr::memrchr(b'\n', &text[p..p + max_line + 1]) {
            Some(i) => p += i + 1,
            None => return false,
        }
    }
    true
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

    /// `next_block` gives the lines `next_line` gives, on every mix of plain
    /// lines, CRLF, invalid UTF-8, over-long lines and a last line without
    /// `\n`, whatever the block size.
    #[test]
    fn blocks_hold_the_same_lines() {
        let pieces: [&[u8]; 8] = [
            b"plain line\n",
            b"crlf\r\n",
            b"\xff\xfebad\n",
            b"0123456789abcdef\n",
            b"\n",
            b"\xc3\xa9t\xc3\xa9\n",
            b"0123456789abcdefghijklmnopqrstuvwxyz\n",
            b"tail",
        ];
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for case in 0..400 {
            let mut input = Vec::new();
            let n = case % 60;
            for k in 0..n {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Mostly plain lines, as in real logs; in every other case
                // only plain lines in the first half, so that blocks are
                // read directly before the line-by-line path takes over.
                let i = if x.is_multiple_of(3) && (case % 2 == 1 || k >= n / 2) {
                    (x >> 8) as usize % 8
                } else {
                    0
                };
                input.extend_from_slice(pieces[i]);
            }
            let max = 16 + case % 8;
            let want_n = 1 + (x >> 20) as usize % 90;
            let mut want = String::new();
            let mut want_invalid = 0;
            let mut r = LineReader::new(&input[..], max);
            while let Some(l) = r.next_line() {
                let l = l.unwrap();
                want_invalid += std::str::from_utf8(l).is_err() as u64;
                want.push_str(&String::from_utf8_lossy(l));
                want.push('\n');
            }
            let (got, invalid, skipped) = blocks(LineReader::new(&input[..], max), want_n);
            assert_eq!(got, want, "case {case}");
            assert_eq!((invalid, skipped), (want_invalid, r.skipped_long()));
            let (got, invalid, _) = blocks(LineReader::new(Trickle(&input), max), want_n);
            assert_eq!(
                (got, invalid),
                (want, want_invalid),
                "case {case}, byte at a time"
            );
        }
    }

    /// Inputs many times larger than a read: blocks read directly end
    /// mid-line and carry the rest to the next block, then a late CRLF line,
    /// invalid UTF-8 or over-long line moves the reader to the line-by-line
    /// path for the rest.
    #[test]
    fn large_inputs_in_blocks_hold_the_same_lines() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for late in [&b""[..], b"crlf\r\n", b"\xff\n", &[b'z'; 300][..]] {
            let mut input = Vec::new();
            while input.len() < 5 * CHUNK {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let len = (x % 200) as usize;
                input.extend((0..len).map(|i| b'a' + (i % 26) as u8));
                input.push(b'\n');
                if input.len() > 4 * CHUNK && !late.is_empty() {
                    input.extend_from_slice(late);
                    input.push(b'\n');
                    break;
                }
            }
            input.extend_from_slice(b"last line");
            let mut want = String::new();
            let mut r = LineReader::new(&input[..], 256);
            while let Some(l) = r.next_line() {
                want.push_str(&String::from_utf8_lossy(l.unwrap()));
                want.push('\n');
            }
            for block in [1, 1000, CHUNK - 7, 3 * CHUNK] {
                let (got, _, skipped) = blocks(LineReader::new(&input[..], 256), block);
                assert_eq!(got, want, "block {block}, late {late:?}");
                assert_eq!(skipped, r.skipped_long());
            }
        }
    }

    /// All of `r` through `next_block`: (text, lines replaced, lines skipped).
    fn blocks<R: Read>(mut r: LineReader<R>, want: usize) -> (String, u64, u64) {
        let (mut got, mut invalid) = (String::new(), 0);
        loop {
            let mut b = String::new();
            let (n, end) = r.next_block(&mut b, want).unwrap();
            assert!(end || b.len() >= want);
            assert!(b.is_empty() || b.ends_with('\n'));
            got.push_str(&b);
            invalid += n;
            if end {
                return (got, invalid, r.skipped_long());
            }
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
