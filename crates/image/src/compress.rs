//! Detects and undoes layer compression by magic number.

use std::io::{BufRead, BufReader, Read};

use berth_types::{Error, Result};

/// Wraps `r` in the right decompressor: plain tar, gzip or zstd.
pub fn decompress<'a, R: Read + 'a>(r: R) -> Result<Box<dyn Read + 'a>> {
    let mut br = BufReader::with_capacity(256 * 1024, r);
    let head = br.fill_buf()?.to_vec();
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(br))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(br)?)
    } else if head.starts_with(b"BZh") || head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        return Err(Error::invalid("unsupported compression: only plain, gzip and zstd tars are accepted"));
    } else {
        Box::new(br)
    })
}
