//! Batch replay inputs: a plain file, a gzip file (by its `.gz` name or its
//! magic bytes), or `-` for stdin. Pair with [`crate::LineReader`].

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use crate::SourceError;

/// Opens `path` for replay: `-` is stdin; a gzip file (multi-member, as
/// logrotate's `compress` and `cat a.gz b.gz` produce) is decompressed.
pub fn open(path: &Path) -> Result<Box<dyn Read + Send>, SourceError> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(std::io::stdin()));
    }
    let open_err = |source| SourceError::Open {
        path: path.to_path_buf(),
        source,
    };
    let mut f = File::open(path).map_err(open_err)?;
    let mut magic = [0u8; 2];
    let gz = match read_full(&mut f, &mut magic) {
        Ok(2) => magic == [0x1f, 0x8b],
        Ok(_) => false,
        Err(e) => return Err(open_err(e)),
    };
    f.seek(SeekFrom::Start(0)).map_err(open_err)?;
    let is_gz_name = path.extension().is_some_and(|e| e == "gz");
    if gz {
        return Ok(Box::new(flate2::read::MultiGzDecoder::new(
            BufReader::with_capacity(64 * 1024, f),
        )));
    }
    if is_gz_name {
        // Named .gz but not gzip: read it as it is rather than fail; the line
        // reader does not care.
        tracing::warn!(path = %path.display(), "file is named .gz but is not gzip; reading it as plain text");
    }
    Ok(Box::new(f))
}

fn read_full(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}
