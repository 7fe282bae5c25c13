//! `docker logs`: the json-file log read back, with tail, since/until, timestamps and follow.

use std::io::{BufRead, BufReader, Seek, SeekFrom};
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
    fn render(&self, raw: &str) -> Option<Chunk> {
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

impl ContainerService {
    /// Streams the log; with `follow`, until the container stops or the receiver is dropped.
    pub fn logs(&self, name: &str, opts: LogOptions) -> Result<(bool, mpsc::Receiver<Chunk>)> {
        let e = self.get(name)?;
        let rec = e.record();
        if rec.host_config.log_config.kind == "none" {
            return Err(Error::invalid("configured logging driver does not support reading"));
        }
        if !matches!(rec.host_config.log_config.kind.as_str(), "" | "json-file") {
            return Err(Error::not_implemented(format!(
                "configured logging driver does not support reading: {}",
                rec.host_config.log_config.kind
            )));
        }
        let path = self.log_path(&rec.id);
        let (tx, rx) = mpsc::channel(256);
        tokio::task::spawn_blocking(move || {
            let mut lines: Vec<String> = Vec::new();
            // Rotated files first, oldest (highest number) first.
            let mut rotated: Vec<std::path::PathBuf> = (1..100)
                .map(|i| std::path::PathBuf::from(format!("{}.{i}", path.display())))
                .take_while(|p| p.exists())
                .collect();
            rotated.reverse();
            for p in rotated {
                if let Ok(f) = std::fs::File::open(&p) {
                    lines.extend(BufReader::new(f).lines().map_while(|l| l.ok()).map(|l| l + "\n"));
                }
            }
            let Ok(file) = std::fs::File::open(&path) else {
                return;
            };
            let mut reader = BufReader::new(file);
            let mut buf = String::new();
            while reader.read_line(&mut buf).unwrap_or(0) > 0 {
                if buf.ends_with('\n') {
                    lines.push(std::mem::take(&mut buf));
                }
            }
            let skip = opts.tail.map(|n| lines.len().saturating_sub(n)).unwrap_or(0);
            for l in &lines[skip..] {
                if let Some(c) = opts.render(l) {
                    if tx.blocking_send(c).is_err() {
                        return;
                    }
                }
            }
            if !opts.follow {
                return;
            }
            // Follow: poll for growth until the container stops and the file is drained.
            let mut pos = reader.stream_position().unwrap_or(0) - buf.len() as u64;
            loop {
                let running = e.wait.borrow().running;
                let mut reader = match std::fs::File::open(&path) {
                    Ok(mut f) => {
                        // Rotated under us: the new file starts from its beginning.
                        if f.metadata().map(|m| m.len() < pos).unwrap_or(false) {
                            pos = 0;
                        }
                        let _ = f.seek(SeekFrom::Start(pos));
                        BufReader::new(f)
                    }
                    Err(_) => return,
                };
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 {
                    if !line.ends_with('\n') {
                        break;
                    }
                    pos += line.len() as u64;
                    if let Some(c) = opts.render(&line) {
                        if tx.blocking_send(c).is_err() {
                            return;
                        }
                    }
                    line.clear();
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
