//! Pieces of timestamp text that every log reader parses the same way.

/// Month number (1-12) of an English three-letter abbreviation, in any case.
#[inline]
pub fn month_abbr(b: &[u8]) -> Option<u32> {
    // a letter in lower case; nothing else becomes a letter
    let k = [b.first()? | 0x20, b.get(1)? | 0x20, b.get(2)? | 0x20];
    Some(match &k {
        b"jan" => 1,
        b"feb" => 2,
        b"mar" => 3,
        b"apr" => 4,
        b"may" => 5,
        b"jun" => 6,
        b"jul" => 7,
        b"aug" => 8,
        b"sep" => 9,
        b"oct" => 10,
        b"nov" => 11,
        b"dec" => 12,
        _ => return None,
    })
}
