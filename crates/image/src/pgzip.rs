//! Parallel gzip for pushes: one gzip member, as pigz writes it, compressed in 1 MiB pieces on
//! several threads, each piece choosing the cheapest encoding that does not lose ratio.
//!
//! Why pieces: deflate is the push's whole cost (~110–250 MB/s per core here), and a layer is one
//! stream. Each piece is compressed on its own with the 32 KiB before it as the dictionary (so
//! matches across the seam survive) and ends on a sync flush, which leaves the stream
//! byte-aligned; the pieces are written in order, their CRCs combined. The result is a single
//! ordinary gzip member that any one-member reader (Rust's `GzDecoder`, Java, zlib) takes.
//!
//! Why per-piece choice: zlib-rs's level 1 (`deflate_quick`) writes static Huffman codes only, so
//! content that is already compressed (`.gz`, `.jpg`, jars) grows by ~5 % and costs full deflate
//! time. A piece whose byte entropy says it is random is stored as is; a piece where LZ matching
//! does worse than a byte-frequency code on a 32 KiB sample (base64, hex) is coded Huffman-only.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::{mpsc, Mutex};

use zlib_rs::{Deflate, DeflateConfig, DeflateFlush, Status, Strategy};

/// Bytes of input per piece: large enough that the seams cost nothing measurable, small enough
/// that two threads share a 10 MB layer.
const PIECE: usize = 1 << 20;
/// Deflate's window: the dictionary handed from one piece to the next.
const WINDOW: usize = 32 * 1024;
/// Above this byte entropy (bits per byte) a piece is stored: nothing short of luck compresses it.
const RANDOM_ENTROPY: f64 = 7.95;
/// The head of each piece both coders try, to pick one for the whole piece.
const SAMPLE: usize = 32 * 1024;

/// How a layer is compressed.
#[derive(Debug, Clone, Copy)]
pub struct GzipOptions {
    /// zlib level for pieces that are LZ-compressed (1 fastest … 9 smallest).
    pub level: i32,
    /// Compressing threads; 1 compresses on the caller's thread.
    pub threads: usize,
}

impl Default for GzipOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        GzipOptions { level: 1, threads: cores.min(8) }
    }
}

/// Compresses all of `src` into `out` as one gzip member; `progress` is told the input bytes
/// read so far. Returns the input's length. Blocking.
pub fn compress(
    mut src: impl Read,
    out: &mut impl Write,
    opts: GzipOptions,
    mut progress: impl FnMut(u64),
) -> io::Result<u64> {
    // mtime 0, no name, OS "unknown": the same bytes for the same layer on any host.
    out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff])?;
    let level = opts.level.clamp(1, 9);
    let mut tail = Tail { crc: 0, len: 0 };
    let first = read_piece(&mut src)?;
    if first.len() < PIECE || opts.threads <= 1 {
        // Small layers (most of them) and single-threaded callers: no threads at all.
        let mut cur = first;
        let mut dict = Vec::new();
        let mut worker = Worker::new(level);
        loop {
            let next = if cur.len() < PIECE { Vec::new() } else { read_piece(&mut src)? };
            let last = next.is_empty();
            let packed = worker.pack_guarded(Piece { seq: 0, data: cur, dict, last })?;
            tail.add(&packed);
            out.write_all(&packed.bytes)?;
            progress(tail.len);
            if last {
                break;
            }
            dict = window_of(&packed.data);
            cur = next;
        }
    } else {
        parallel(src, out, first, level, opts.threads, &mut tail, &mut progress)?;
    }
    out.write_all(&tail.crc.to_le_bytes())?;
    // ISIZE is the length modulo 2^32, as RFC 1952 says.
    out.write_all(&(tail.len as u32).to_le_bytes())?;
    Ok(tail.len)
}

/// The pieces spread over `threads` workers, written back in order; at most two pieces per
/// worker are in flight, so memory stays ~4 MiB per thread whatever the layer's size.
fn parallel(
    mut src: impl Read,
    out: &mut impl Write,
    first: Vec<u8>,
    level: i32,
    threads: usize,
    tail: &mut Tail,
    progress: &mut impl FnMut(u64),
) -> io::Result<()> {
    let (job_tx, job_rx) = mpsc::sync_channel::<Piece>(threads);
    let job_rx = Mutex::new(job_rx);
    let (done_tx, done_rx) = mpsc::channel::<io::Result<Packed>>();
    std::thread::scope(|s| {
        for _ in 0..threads {
            let (job_rx, done_tx) = (&job_rx, done_tx.clone());
            s.spawn(move || {
                let mut worker = Worker::new(level);
                loop {
                    // The lock is held only to take one job; a closed channel ends the worker.
                    let job = job_rx.lock().map_err(|_| ()).and_then(|rx| rx.recv().map_err(|_| ()));
                    let Ok(job) = job else { return };
                    if done_tx.send(worker.pack_guarded(job)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        let result = (|| -> io::Result<()> {
            let mut waiting: BTreeMap<u64, Packed> = BTreeMap::new();
            let (mut sent, mut written) = (0u64, 0u64);
            let mut cur = first;
            let mut dict = Vec::new();
            let mut finished = false;
            while !finished || written < sent {
                if !finished && sent - written < 2 * threads as u64 {
                    let next = if cur.len() < PIECE { Vec::new() } else { read_piece(&mut src)? };
                    let last = next.is_empty();
                    let following = window_of(&cur);
                    let piece = Piece { seq: sent, data: std::mem::replace(&mut cur, next), dict, last };
                    job_tx.send(piece).map_err(|_| io::Error::other("a compressing thread stopped"))?;
                    dict = following;
                    sent += 1;
                    finished = last;
                    continue;
                }
                let packed = done_rx.recv().map_err(|_| io::Error::other("a compressing thread stopped"))??;
                waiting.insert(packed.seq, packed);
                while let Some(p) = waiting.remove(&written) {
                    tail.add(&p);
                    out.write_all(&p.bytes)?;
                    progress(tail.len);
                    written += 1;
                }
            }
            Ok(())
        })();
        // Closing the queue ends the workers whether or not the stream got to its end.
        drop(job_tx);
        result
    })
}

/// Reads up to one piece; shorter only at the end of the input.
fn read_piece(src: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(PIECE);
    src.take(PIECE as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

fn window_of(data: &[u8]) -> Vec<u8> {
    data[data.len().saturating_sub(WINDOW)..].to_vec()
}

struct Piece {
    seq: u64,
    data: Vec<u8>,
    /// The input just before this piece (empty for the first).
    dict: Vec<u8>,
    last: bool,
}

struct Packed {
    seq: u64,
    data: Vec<u8>,
    bytes: Vec<u8>,
    crc: u32,
}

/// The running CRC and length of everything written so far.
struct Tail {
    crc: u32,
    len: u64,
}

impl Tail {
    fn add(&mut self, p: &Packed) {
        self.crc = zlib_rs::crc32::crc32_combine(self.crc, p.crc, p.data.len() as u64);
        self.len += p.data.len() as u64;
    }
}

/// One thread's compressors, reset for every piece (their tables are allocated once).
struct Worker {
    lz: Deflate,
    huffman: Deflate,
    out: Vec<u8>,
}

impl Worker {
    fn new(level: i32) -> Self {
        let config = |level, strategy| DeflateConfig { level, window_bits: -15, strategy, ..DeflateConfig::default() };
        Worker {
            lz: Deflate::new_with_config(config(level, Strategy::Default)),
            huffman: Deflate::new_with_config(config(1, Strategy::HuffmanOnly)),
            out: Vec::new(),
        }
    }

    /// `pack`, with a panic in the compressor (a bug of the library) turned into an error: a
    /// worker that died silently would leave the writer waiting for its piece forever.
    fn pack_guarded(&mut self, piece: Piece) -> io::Result<Packed> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.pack(piece)))
            .map_err(|_| io::Error::other("the gzip compressor failed"))
    }

    /// The piece's own bytes decide its coding (never another piece's outcome), so the stream is
    /// the same bytes whatever the thread count and timing.
    fn pack(&mut self, piece: Piece) -> Packed {
        let data = &piece.data;
        let crc = zlib_rs::crc32::crc32(0, data);
        let stored_size = stored_len(data.len());
        let mut bytes = None;
        if !data.is_empty() && entropy(data) < RANDOM_ENTROPY {
            let huffman = self.huffman_wins(&data[..data.len().min(SAMPLE)], &piece.dict);
            let d = if huffman { &mut self.huffman } else { &mut self.lz };
            bytes =
                deflate(d, &mut self.out, data, &piece.dict, piece.last, stored_size).map(|n| self.out[..n].to_vec());
        }
        let bytes = bytes.unwrap_or_else(|| {
            let mut b = Vec::with_capacity(stored_size);
            stored(data, piece.last, &mut b);
            b
        });
        Packed { seq: piece.seq, data: piece.data, bytes, crc }
    }

    /// Whether a byte-frequency code beats LZ on a sample: true of text without repeats (base64,
    /// hex), where LZ finds nothing and level 1's static codes do worse than no compression.
    /// The sample is tried after the same dictionary as its piece, so repeats across the seam count.
    fn huffman_wins(&mut self, sample: &[u8], dict: &[u8]) -> bool {
        let limit = stored_len(sample.len());
        let lz = deflate(&mut self.lz, &mut self.out, sample, dict, true, limit).unwrap_or(limit);
        let huffman = deflate(&mut self.huffman, &mut self.out, sample, dict, true, limit).unwrap_or(limit);
        huffman < lz
    }
}

/// Deflates `data` (after `dict`, ending the stream when `last`) into `out`; its length, or `None` if that is more than `limit` bytes (then
/// storing it is smaller).
fn deflate(d: &mut Deflate, out: &mut Vec<u8>, data: &[u8], dict: &[u8], last: bool, limit: usize) -> Option<usize> {
    d.reset();
    if !dict.is_empty() {
        d.set_dictionary(dict).ok()?;
    }
    // Room for the worst case, not `limit`: zlib-rs's level 1 panics when its output runs short
    // mid-block. The margin is the sync flush's marker and block ends.
    out.resize(zlib_rs::compress_bound(data.len()) + 64, 0);
    let flush = if last { DeflateFlush::Finish } else { DeflateFlush::SyncFlush };
    let status = d.compress(data, out, flush).ok()?;
    let n = d.total_out() as usize;
    let complete =
        d.total_in() as usize == data.len() && if last { status == Status::StreamEnd } else { n < out.len() };
    (complete && n <= limit).then_some(n)
}

/// Stored deflate blocks: what incompressible data costs (5 bytes per 64 KiB).
fn stored_len(n: usize) -> usize {
    n + 5 * n.div_ceil(0xffff).max(1)
}

/// Writes `data` as stored blocks. The stream is byte-aligned here (the stream's start or a
/// previous piece's sync flush), so each block's 3 header bits are padded to one byte.
fn stored(data: &[u8], last: bool, out: &mut Vec<u8>) {
    let mut blocks = data.chunks(0xffff).peekable();
    if data.is_empty() {
        if last {
            out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
        }
        return;
    }
    while let Some(b) = blocks.next() {
        let final_block = last && blocks.peek().is_none();
        out.push(final_block as u8);
        let len = b.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(b);
    }
}

/// Shannon entropy of the bytes, in bits per byte (8 for random data).
fn entropy(data: &[u8]) -> f64 {
    if data.is_empty() {
        return 0.0;
    }
    // Four tables so consecutive bytes do not wait on the same counter.
    let mut counts = [[0u32; 256]; 4];
    let mut quads = data.chunks_exact(4);
    for q in &mut quads {
        counts[0][q[0] as usize] += 1;
        counts[1][q[1] as usize] += 1;
        counts[2][q[2] as usize] += 1;
        counts[3][q[3] as usize] += 1;
    }
    for &b in quads.remainder() {
        counts[0][b as usize] += 1;
    }
    let n = data.len() as f64;
    (0..256)
        .map(|i| counts.iter().map(|c| c[i]).sum::<u32>())
        .filter(|&k| k > 0)
        .map(|k| {
            let p = k as f64 / n;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::noise;
    use std::io::Read;

    fn gzip(data: &[u8], threads: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut seen = 0;
        let n = compress(data, &mut out, GzipOptions { level: 1, threads }, |p| seen = p).unwrap();
        assert_eq!((n, seen), (data.len() as u64, data.len() as u64));
        out
    }

    /// Reads exactly one gzip member (not `MultiGzDecoder`): the output must be a single member,
    /// CRC and length checked by the decoder.
    fn gunzip(gz: &[u8]) -> Vec<u8> {
        let mut d = flate2::read::GzDecoder::new(gz);
        let mut out = Vec::new();
        d.read_to_end(&mut out).unwrap();
        out
    }

    /// A mix that takes every path: text (LZ), random (stored), base64-like (Huffman-only),
    /// a repeat of earlier random bytes right across a piece seam (only the dictionary finds it).
    fn mixed() -> Vec<u8> {
        let mut v = Vec::new();
        for i in 0..40_000 {
            v.extend_from_slice(format!("line {i}: the quick brown fox jumps over the lazy dog\n").as_bytes());
        }
        v.extend(noise(PIECE + 12_345, 7));
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        v.extend(noise(3 * PIECE, 9).iter().map(|b| alphabet[(*b & 63) as usize]));
        let seam = 6 * PIECE - v.len() % PIECE;
        v.extend(noise(seam - 1000, 11));
        let repeat = v[v.len() - 20_000..].to_vec();
        v.extend(repeat);
        v.extend(b"end");
        v
    }

    #[test]
    fn round_trips_as_one_member_at_any_thread_count() {
        let data = mixed();
        let one = gzip(&data, 1);
        for threads in [1, 2, 3, 8] {
            let gz = gzip(&data, threads);
            assert_eq!(gz, one, "the bytes do not depend on the thread count ({threads})");
            assert!(gunzip(&gz) == data, "round trip at {threads} threads");
        }
    }

    /// Random lengths and random mixes of the three kinds of content, at random thread counts:
    /// every result is one member that reads back exactly.
    #[test]
    fn random_mixes_round_trip() {
        let mut rng = noise(4096, 99).into_iter().cycle();
        let mut next = move || rng.next().unwrap() as usize;
        for round in 0..24 {
            let mut data = Vec::new();
            for part in 0..next() % 6 {
                let len = (next() << 12 | next() << 4) % (3 * PIECE / 2);
                match next() % 3 {
                    0 => data.extend(noise(len, (round * 7 + part) as u64)),
                    1 => data.extend((0..len).map(|i| b"abcab\n"[i % 6])),
                    _ => data.extend(noise(len, round as u64).iter().map(|b| b'A' + (b & 15))),
                }
            }
            let threads = 1 + next() % 4;
            assert!(gunzip(&gzip(&data, threads)) == data, "round {round}: {} bytes, {threads} threads", data.len());
        }
    }

    #[test]
    fn edges_round_trip() {
        for n in [0, 1, WINDOW, PIECE - 1, PIECE, PIECE + 1, 2 * PIECE] {
            let data = noise(n, n as u64);
            assert!(gunzip(&gzip(&data, 2)) == data, "random, {n} bytes");
            let zeros = vec![0u8; n];
            assert!(gunzip(&gzip(&zeros, 2)) == zeros, "zeros, {n} bytes");
        }
    }

    #[test]
    fn random_is_stored_not_grown_and_text_is_compressed() {
        let random = noise(4 * PIECE, 3);
        let gz = gzip(&random, 2);
        assert!(gz.len() < random.len() + random.len() / 1000, "{} for {}", gz.len(), random.len());
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let b64: Vec<u8> = noise(4 * PIECE, 5).iter().map(|b| alphabet[(*b & 63) as usize]).collect();
        let gz = gzip(&b64, 2);
        assert!(gz.len() < b64.len() * 77 / 100, "6 bits a byte: {} for {}", gz.len(), b64.len());
        let text: Vec<u8> = (0..200_000).flat_map(|i| format!("record {i} ok\n").into_bytes()).collect();
        assert!(gzip(&text, 2).len() < text.len() / 3);
    }

    #[test]
    fn the_seam_keeps_matches_across_pieces() {
        // Piece 2 starts with 10 KB of piece 1's noise again (20 KB back, within zlib's reach of
        // 32 KiB less a match): only the dictionary finds it.
        let mut data = noise(PIECE, 21);
        data.extend_from_within(PIECE - 20_000..PIECE - 10_000);
        data.extend(std::iter::repeat_n(b'a', PIECE));
        let gz = gzip(&data, 2);
        // Piece 1 is stored (PIECE + 80); the run of `a` costs ~10 KB at level 1 (258-byte matches);
        // the repeat ~80 bytes when matched and 10.5 KB when not.
        assert!(gz.len() < PIECE + 15_000, "{} bytes: the repeat was not matched", gz.len());
        assert!(gunzip(&gz) == data);
    }

    #[test]
    fn stored_blocks_are_deflate() {
        let data = noise(200_000, 1);
        let mut raw = Vec::new();
        stored(&data, true, &mut raw);
        assert_eq!(raw.len(), stored_len(data.len()));
        let mut d = flate2::read::DeflateDecoder::new(&raw[..]);
        let mut out = Vec::new();
        d.read_to_end(&mut out).unwrap();
        assert!(out == data);
    }

    #[test]
    fn entropy_reads_as_bits_per_byte() {
        assert_eq!(entropy(&[7u8; 1000]), 0.0);
        assert!((entropy(&noise(1 << 20, 5)) - 8.0).abs() < 0.01);
        let two: Vec<u8> = (0..1000u32).map(|i| (i % 2) as u8).collect();
        assert!((entropy(&two) - 1.0).abs() < 1e-9);
    }
}
