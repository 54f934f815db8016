//! The evidence log: the lines scenarios counted, each stored once (however
//! many buckets count it) in a byte ring of bounded size, so a tracked key
//! holds 4-byte references to its last lines instead of copies. A reference
//! whose line has been overwritten reads as `None`: an alert then carries
//! fewer lines. Decisions never read this log.

use super::truncate;

/// Bytes of lines kept (the ring fills to this, then wraps).
pub(super) const LOG_BYTES: usize = 16 << 20;
/// Lines are cut to this many bytes (on a character boundary).
pub(super) const LINE_BYTES: usize = 256;
/// A record: its own position (u64, to tell a live reference from a stale
/// one that wrapped around), its length (u16), then the line.
const HDR: usize = 10;

#[derive(Default)]
pub(super) struct EvidenceLog {
    buf: Vec<u8>,
    /// Bytes ever written.
    head: u64,
}

impl EvidenceLog {
    /// Stores `line` (cut to [`LINE_BYTES`]); returns its reference.
    pub(super) fn push(&mut self, line: &str) -> u32 {
        let line = truncate(line, LINE_BYTES);
        let pos = self.head;
        let mut hdr = [0u8; HDR];
        hdr[..8].copy_from_slice(&pos.to_le_bytes());
        hdr[8..].copy_from_slice(&(line.len() as u16).to_le_bytes());
        self.write(&hdr);
        self.write(line.as_bytes());
        pos as u32
    }

    /// The line `r` refers to, if it is still in the ring.
    pub(super) fn get(&self, r: u32) -> Option<String> {
        let back = u64::from((self.head as u32).wrapping_sub(r));
        if back < HDR as u64 || back > self.head.min(LOG_BYTES as u64) {
            return None;
        }
        let pos = self.head - back;
        let mut hdr = [0u8; HDR];
        self.read(pos, &mut hdr);
        let len = u16::from_le_bytes([hdr[8], hdr[9]]) as u64;
        if u64::from_le_bytes(hdr[..8].try_into().expect("8 bytes")) != pos
            || len > back - HDR as u64
        {
            return None;
        }
        let mut out = vec![0u8; len as usize];
        self.read(pos + HDR as u64, &mut out);
        String::from_utf8(out).ok()
    }

    fn write(&mut self, mut b: &[u8]) {
        while !b.is_empty() {
            let at = (self.head % LOG_BYTES as u64) as usize;
            let n = b.len().min(LOG_BYTES - at);
            if self.buf.len() < LOG_BYTES {
                // Still filling: `at` is the end of `buf`. Reserved whole at
                // once so that it never moves (pages are only resident once
                // written).
                if self.buf.capacity() < LOG_BYTES {
                    self.buf.reserve_exact(LOG_BYTES);
                }
                self.buf.extend_from_slice(&b[..n]);
            } else {
                self.buf[at..at + n].copy_from_slice(&b[..n]);
            }
            self.head += n as u64;
            b = &b[n..];
        }
    }

    fn read(&self, mut pos: u64, out: &mut [u8]) {
        let mut done = 0;
        while done < out.len() {
            let at = (pos % LOG_BYTES as u64) as usize;
            let n = (out.len() - done).min(LOG_BYTES - at);
            out[done..done + n].copy_from_slice(&self.buf[at..at + n]);
            done += n;
            pos += n as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_back_until_overwritten() {
        let mut log = EvidenceLog::default();
        let first = log.push("first line");
        assert_eq!(log.get(first).as_deref(), Some("first line"));
        let long = "x".repeat(1000);
        let r = log.push(&long);
        assert_eq!(
            log.get(r).map(|s| s.len()),
            Some(LINE_BYTES),
            "cut to 256 bytes"
        );
        // Fill the ring past its size: the first line is gone, the last is intact
        // even where it wraps around the end of the buffer.
        let mut last = 0;
        let mut last_text = String::new();
        for i in 0..(LOG_BYTES / 100) {
            last_text = format!("line {i} {}", "y".repeat(150 + i % 40));
            last = log.push(&last_text);
        }
        assert_eq!(log.get(first), None, "overwritten");
        assert_eq!(log.get(last), Some(last_text));
        assert_eq!(log.get(last.wrapping_add(1)), None, "not a record start");
    }
}
