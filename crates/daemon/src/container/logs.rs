//! `docker logs`: the json-file log read back, with tail, since/until, timestamps and follow.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_types::{Error, Result};
use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::{Chunk, ContainerService};

#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub stdout: bool,
    pub stderr: bool,
    pub follow: bool,
    /// Last N lines; None for all.
    pub tail: Option<usize>,
    /// Unix seconds (fractional).
    pub since: Option<f64>,
    pub until: Option<f64>,
    pub timestamps: bool,
}

#[derive(Deserialize)]
struct Line {
    log: String,
    stream: String,
    time: String,
}

fn epoch(t: &str) -> Option<f64> {
    chrono::DateTime::parse_from_rfc3339(t).ok().map(|d| d.timestamp() as f64 + d.timestamp_subsec_nanos() as f64 / 1e9)
}

impl LogOptions {
    pub(super) fn render(&self, raw: &str) -> Option<Chunk> {
        let l: Line = serde_json::from_str(raw).ok()?;
        let stream = match l.stream.as_str() {
            "stdout" if self.stdout => 1,
            "stderr" if self.stderr => 2,
            _ => return None,
        };
        if self.since.is_some() || self.until.is_some() {
            let t = epoch(&l.time)?;
            if self.since.is_some_and(|s| t < s) || self.until.is_some_and(|u| t > u) {
                return None;
            }
        }
        let text = if self.timestamps { format!("{} {}", l.time, l.log) } else { l.log };
        Some((stream, Bytes::from(text)))
    }
}

/// Sends every complete line `r` holds (a last line still being written waits for its newline);
/// returns the bytes consumed, or None once the receiver is gone.
fn send_lines(mut r: impl BufRead, send: &impl Fn(&str) -> bool) -> Option<u64> {
    let (mut line, mut consumed) = (String::new(), 0);
    while r.read_line(&mut line).unwrap_or(0) > 0 {
        if !line.ends_with('\n') {
            break;
        }
        consumed += line.len() as u64;
        if !send(&line) {
            return None;
        }
        line.clear();
    }
    Some(consumed)
}

/// The log's files, oldest first: rotated ones (highest number first; `.N.gz` when compressed),
/// then the current one.
fn log_files(path: &Path) -> Vec<PathBuf> {
    let rotated = |i: u32| {
        let plain = PathBuf::from(format!("{}.{i}", path.display()));
        let gz = PathBuf::from(format!("{}.{i}.gz", path.display()));
        if plain.exists() {
            Some(plain)
        } else {
            gz.exists().then_some(gz)
        }
    };
    let mut files: Vec<PathBuf> = (1..100).map_while(rotated).collect();
    files.reverse();
    files.push(path.to_path_buf());
    files
}

fn gzipped(f: &Path) -> bool {
    f.extension().is_some_and(|e| e == "gz")
}

/// A rotated log file's lines, decompressed when it is gzipped.
fn open_log(f: &Path) -> Option<Box<dyn BufRead>> {
    let file = std::fs::File::open(f).ok()?;
    Some(if gzipped(f) {
        Box::new(BufReader::new(flate2::read::GzDecoder::new(file)))
    } else {
        Box::new(BufReader::new(file))
    })
}

/// The last `n` lines of a compressed rotated file (read through: it cannot be read backwards).
fn tail_of_gzip(f: &Path, n: usize) -> Vec<String> {
    let mut last = std::collections::VecDeque::with_capacity(n.min(4096));
    if let Some(r) = open_log(f) {
        for line in r.lines().map_while(Result::ok) {
            if last.len() == n {
                last.pop_front();
            }
            last.push_back(line + "\n");
        }
    }
    last.into()
}

/// The last `n` complete lines over `files` (oldest first), read backwards from the end in blocks,
/// and the offset just after the last complete line of the newest file (where following resumes).
fn tail_lines(files: &[PathBuf], n: usize) -> (Vec<String>, u64) {
    const BLOCK: u64 = 64 << 10;
    let mut out: Vec<String> = Vec::new();
    for f in files.iter().rev() {
        if gzipped(f) {
            let need = n - out.len();
            let lines = tail_of_gzip(f, need);
            out.extend(lines.into_iter().rev());
            if out.len() >= n {
                break;
            }
            continue;
        }
        let Ok(mut file) = std::fs::File::open(f) else { continue };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        // Bytes from `at` to the end of the complete lines not yet split off.
        let mut at = len;
        let mut pending: Vec<u8> = Vec::new();
        let mut end_of_complete = None;
        while at > 0 && out.len() < n {
            let start = at.saturating_sub(BLOCK);
            let mut block = vec![0u8; (at - start) as usize];
            if file.seek(SeekFrom::Start(start)).and_then(|_| file.read_exact(&mut block)).is_err() {
                break;
            }
            block.extend_from_slice(&pending);
            pending = block;
            at = start;
            if end_of_complete.is_none() {
                // A last line without its newline is still being written: not part of the tail.
                match pending.iter().rposition(|b| *b == b'\n') {
                    Some(p) => {
                        end_of_complete = Some(at + p as u64 + 1);
                        pending.truncate(p + 1);
                    }
                    None => continue,
                }
            }
            // Split off every complete line that starts inside what we hold (keep the first
            // fragment unless we reached the start of the file).
            while out.len() < n {
                let body = &pending[..pending.len() - 1];
                match body.iter().rposition(|b| *b == b'\n') {
                    Some(p) => {
                        out.push(String::from_utf8_lossy(&pending[p + 1..]).into_owned());
                        pending.truncate(p + 1);
                    }
                    None if at == 0 && !pending.is_empty() => {
                        out.push(String::from_utf8_lossy(&pending).into_owned());
                        pending.clear();
                        break;
                    }
                    None => break,
                }
            }
        }
        if out.len() >= n {
            break;
        }
    }
    out.reverse();
    (out, files.last().map(|f| complete_end(f)).unwrap_or(0))
}

/// The offset just after the last newline of `path` (0 for none), read from the end.
fn complete_end(path: &Path) -> u64 {
    let Ok(mut file) = std::fs::File::open(path) else { return 0 };
    let mut at = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut block = vec![0u8; 4096];
    while at > 0 {
        let start = at.saturating_sub(block.len() as u64);
        let chunk = &mut block[..(at - start) as usize];
        if file.seek(SeekFrom::Start(start)).and_then(|_| file.read_exact(chunk)).is_err() {
            return 0;
        }
        if let Some(p) = chunk.iter().rposition(|b| *b == b'\n') {
            return start + p as u64 + 1;
        }
        at = start;
    }
    0
}

impl ContainerService {
    /// Streams the log; with `follow`, until the container stops or the receiver is dropped.
    pub fn logs(&self, name: &str, opts: LogOptions) -> Result<(bool, mpsc::Receiver<Chunk>)> {
        let e = self.get(name)?;
        let rec = e.record();
        match rec.host_config.log_config.kind.as_str() {
            "" | "json-file" | "local" => {}
            "journald" => {
                let e2 = e.clone();
                return super::journal::read(rec, opts, move || e2.wait.borrow().running);
            }
            // As dockerd: syslog and none keep nothing berthd could give back.
            _ => return Err(Error::invalid("configured logging driver does not support reading")),
        }
        let path = self.log_path(&rec.id);
        let (tx, rx) = mpsc::channel(256);
        tokio::task::spawn_blocking(move || {
            // Never the whole log in memory: all of it is streamed line by line, and a tail is read
            // from the end of the newest files backwards.
            let send = |l: &str| opts.render(l).is_none_or(|c| tx.blocking_send(c).is_ok());
            let current = std::fs::File::open(&path).ok();
            let files = log_files(&path);
            let mut pos: u64 = match opts.tail {
                Some(n) => {
                    let (lines, end) = tail_lines(&files, n);
                    for l in &lines {
                        if !send(l) {
                            return;
                        }
                    }
                    end
                }
                None => {
                    // Rotated files by name; the current one through the handle kept for following,
                    // so the offset below is an offset in that very file.
                    for f in &files[..files.len() - 1] {
                        let Some(r) = open_log(f) else { continue };
                        if send_lines(r, &send).is_none() {
                            return;
                        }
                    }
                    match current.as_ref() {
                        Some(file) => match send_lines(BufReader::new(file), &send) {
                            Some(n) => n,
                            None => return,
                        },
                        None => 0,
                    }
                }
            };
            if !opts.follow {
                return;
            }
            // Follow: poll for growth until the container stops and the file is drained. The file
            // stays open (opened before the first read), so output written before an exit is read
            // even when a client removes the container at once (docker-py's `run` does).
            let mut current = current;
            loop {
                let running = e.wait.borrow().running;
                // Not created yet (a container that has not started): wait for it while it may come.
                let Some(file) = current.as_mut() else {
                    current = std::fs::File::open(&path).ok();
                    if current.is_none() && (!running || tx.is_closed()) {
                        return;
                    }
                    if current.is_none() {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    continue;
                };
                let _ = file.seek(SeekFrom::Start(pos));
                match send_lines(BufReader::new(&*file), &send) {
                    Some(n) => pos += n,
                    None => return,
                }
                // Rotated under us (another inode at the path): go on with the new file from its
                // start. Removed (no file at the path): what was written has been read.
                use std::os::unix::fs::MetadataExt;
                match (std::fs::metadata(&path), file.metadata()) {
                    (Ok(now), Ok(ours)) if now.ino() != ours.ino() => match std::fs::File::open(&path) {
                        Ok(f) => {
                            current = Some(f);
                            pos = 0;
                            continue;
                        }
                        Err(_) => return,
                    },
                    (Err(_), _) => return,
                    _ => {}
                }
                if !running || tx.is_closed() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Ok((rec.config.tty, rx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_read_backwards_across_rotated_files() {
        let t = tempfile::tempdir().unwrap();
        let cur = t.path().join("c-json.log");
        std::fs::write(t.path().join("c-json.log.1"), "a\nb\n").unwrap();
        // Lines longer than a block, and a last line still being written.
        let long = "x".repeat(100_000);
        std::fs::write(&cur, format!("c\n{long}\nd\npartial")).unwrap();
        let files = log_files(&cur);
        let (l, end) = tail_lines(&files, 2);
        assert_eq!(l, vec![format!("{long}\n"), "d\n".into()]);
        assert_eq!(end, (2 + long.len() + 1 + 2) as u64);
        assert_eq!(tail_lines(&files, 0), (vec![], end));
        let (l, _) = tail_lines(&files, 4);
        assert_eq!(l, vec!["b\n".to_string(), "c\n".into(), format!("{long}\n"), "d\n".into()]);
        let (l, _) = tail_lines(&files, 100);
        assert_eq!(l.len(), 5);
        assert_eq!(l[0], "a\n");
    }
}
