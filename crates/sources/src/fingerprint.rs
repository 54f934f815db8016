//! File fingerprints: a stable 64-bit hash of a file's first bytes, so a
//! checkpoint taken on one file is never applied to another file that later got
//! the same inode.
//!
//! The fingerprint of a checkpoint at `offset` covers the first
//! `min(offset, FINGERPRINT_MAX)` bytes of the file: exactly bytes that were
//! already read, so it is always computable, needs no extra stored length, and
//! grows with the file until it covers [`FINGERPRINT_MAX`] bytes, after which
//! it never changes. A checkpoint at offset 0 has the fingerprint of the empty
//! prefix and matches any file: that is right, since nothing was read yet.
//! The hash is FNV-1a 64, chosen because it is stable across versions and
//! machines (it is persisted), not for collision resistance against an
//! attacker: someone who can replace a log file can already feed any lines.

use std::fs::File;
use std::os::unix::fs::FileExt;

/// How many leading bytes a fingerprint covers at most.
pub const FINGERPRINT_MAX: u64 = 256;

/// FNV-1a 64 of `bytes`.
pub fn fingerprint_of(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The fingerprint of `file` for a checkpoint at `offset`, or `None` if the
/// file is shorter than the prefix the fingerprint must cover (so it cannot be
/// the file the checkpoint was taken on, or was truncated since).
pub(crate) fn fingerprint_file(file: &File, offset: u64) -> std::io::Result<Option<u64>> {
    let want = offset.min(FINGERPRINT_MAX) as usize;
    let mut buf = [0u8; FINGERPRINT_MAX as usize];
    let mut got = 0;
    while got < want {
        match file.read_at(&mut buf[got..want], got as u64) {
            Ok(0) => return Ok(None),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Some(fingerprint_of(&buf[..want])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_prefix_is_the_fnv_offset_basis() {
        assert_eq!(fingerprint_of(b""), 0xcbf2_9ce4_8422_2325);
        assert_ne!(fingerprint_of(b"a"), fingerprint_of(b"b"));
        // Known FNV-1a 64 test vector.
        assert_eq!(fingerprint_of(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn file_fingerprint_covers_min_offset_256() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let data: Vec<u8> = (0..600u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let f = File::open(&p).unwrap();
        assert_eq!(
            fingerprint_file(&f, 10).unwrap(),
            Some(fingerprint_of(&data[..10]))
        );
        assert_eq!(
            fingerprint_file(&f, 500).unwrap(),
            Some(fingerprint_of(&data[..256]))
        );
        std::fs::write(&p, &data[..5]).unwrap();
        assert_eq!(fingerprint_file(&f, 10).unwrap(), None);
    }
}
