//! Detects and undoes layer compression by magic number, and compresses layers for a push.

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

/// How a push compresses layers (daemon.json's `push-compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LayerCompression {
    /// What every registry and client takes: one gzip member, made on every core (`pgzip`).
    #[default]
    Gzip,
    /// zstd (level 3, on every core): smaller and far cheaper to make and to read, for registries
    /// and clients that accept OCI's `tar+zstd` layers (containerd ≥ 1.5, Docker ≥ 23, Podman).
    Zstd,
}

impl LayerCompression {
    pub fn parse(s: &str) -> Result<LayerCompression> {
        match s {
            "gzip" => Ok(LayerCompression::Gzip),
            "zstd" => Ok(LayerCompression::Zstd),
            _ => Err(Error::invalid(format!("unknown push compression {s:?}: gzip or zstd"))),
        }
    }

    /// The layer media type a manifest names it by; zstd only exists in OCI's media types.
    pub fn media_type(self) -> &'static str {
        match self {
            LayerCompression::Gzip => "application/vnd.docker.image.rootfs.diff.tar.gzip",
            LayerCompression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }

    /// The suffix of the file a push keeps the result in.
    pub fn file_ext(self) -> &'static str {
        match self {
            LayerCompression::Gzip => "gz",
            LayerCompression::Zstd => "zst",
        }
    }

    /// Compresses all of `src` into `out`; `progress` is told the input bytes read so far.
    /// Blocking; uses every core.
    pub fn compress(self, src: impl Read, out: &mut impl std::io::Write, progress: impl FnMut(u64)) -> Result<u64> {
        match self {
            LayerCompression::Gzip => {
                Ok(crate::pgzip::compress(src, out, crate::pgzip::GzipOptions::default(), progress)?)
            }
            LayerCompression::Zstd => {
                let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(8);
                let mut enc = zstd::stream::write::Encoder::new(out, 3)?;
                if threads > 1 {
                    enc.multithread(threads as u32)?;
                }
                // The frame says how long the content is not known up front: it is streamed.
                let mut src = Counting::new(src, progress);
                std::io::copy(&mut src, &mut enc)?;
                enc.finish()?;
                Ok(src.read)
            }
        }
    }
}

/// Counts what is read through it and tells `progress` the running total (a push's progress bar).
pub struct Counting<R, F> {
    inner: R,
    read: u64,
    progress: F,
}

impl<R: Read, F: FnMut(u64)> Counting<R, F> {
    pub fn new(inner: R, progress: F) -> Self {
        Counting { inner, read: 0, progress }
    }
}

impl<R: Read, F: FnMut(u64)> Read for Counting<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        (self.progress)(self.read);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_push_compressions_read_back() {
        let data: Vec<u8> = (0..3_000_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        for c in [LayerCompression::Gzip, LayerCompression::Zstd] {
            let mut out = Vec::new();
            let mut seen = 0;
            assert_eq!(c.compress(&data[..], &mut out, |n| seen = n).unwrap(), data.len() as u64);
            assert_eq!(seen, data.len() as u64);
            assert!(out.len() < data.len() / 4, "{c:?}: {}", out.len());
            let mut back = Vec::new();
            decompress(&out[..]).unwrap().read_to_end(&mut back).unwrap();
            assert!(back == data, "{c:?}");
        }
        assert_eq!(LayerCompression::parse("zstd").unwrap(), LayerCompression::Zstd);
        assert!(LayerCompression::parse("lz4").is_err());
    }
}
