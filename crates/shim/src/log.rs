//! The json-file log driver: one JSON object per line, as Docker writes `<id>-json.log`.

use std::fs::File;
use std::io::Write;

/// Docker splits log entries longer than this; so do we.
const MAX_LINE: usize = 16 * 1024;

pub struct JsonLog {
    file: Option<File>,
    partial: [Vec<u8>; 2],
    path: std::path::PathBuf,
    written: u64,
    /// Rotate when the file reaches this size (0: never), keeping `max_files` files in all.
    max_size: u64,
    max_files: u32,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// A container's output is its own business: root only, as Docker's json-file logs.
const LOG_MODE: u32 = 0o600;

impl JsonLog {
    /// Opens the log; `None` for the `none` driver, which keeps nothing.
    pub fn open(path: Option<&std::path::Path>, max_size: u64, max_files: u32) -> JsonLog {
        let file = path.and_then(|p| {
            std::os::unix::fs::OpenOptionsExt::mode(std::fs::OpenOptions::new().create(true).append(true), LOG_MODE)
                .open(p)
                .ok()
        });
        let written = file.as_ref().and_then(|f| f.metadata().ok()).map(|m| m.len()).unwrap_or(0);
        let path = path.map(|p| p.to_path_buf()).unwrap_or_default();
        JsonLog { file, partial: [Vec::new(), Vec::new()], path, written, max_size, max_files: max_files.max(1) }
    }

    /// `x-json.log` → `x-json.log.1` → ... → `.N-1`, as Docker's json-file driver rotates.
    fn rotate(&mut self) {
        let name = |i: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{i}"));
            std::path::PathBuf::from(p)
        };
        if self.max_files > 1 {
            for i in (1..self.max_files - 1).rev() {
                let _ = std::fs::rename(name(i), name(i + 1));
            }
            let _ = std::fs::rename(&self.path, name(1));
        }
        self.file = std::os::unix::fs::OpenOptionsExt::mode(
            std::fs::OpenOptions::new().create(true).write(true).truncate(true),
            LOG_MODE,
        )
        .open(&self.path)
        .ok();
        self.written = 0;
    }

    /// Buffers `data` from stream 0 (stdout) or 1 (stderr) and writes every complete line.
    pub fn write(&mut self, stream: usize, data: &[u8]) {
        self.partial[stream].extend_from_slice(data);
        loop {
            let buf = &self.partial[stream];
            let cut = match buf.iter().position(|b| *b == b'\n') {
                Some(i) => i + 1,
                None if buf.len() >= MAX_LINE => MAX_LINE,
                None => return,
            };
            let line: Vec<u8> = self.partial[stream].drain(..cut).collect();
            self.entry(stream, &line);
        }
    }

    /// Writes what is left of a stream that ended without a newline.
    pub fn flush(&mut self, stream: usize) {
        if !self.partial[stream].is_empty() {
            let line = std::mem::take(&mut self.partial[stream]);
            self.entry(stream, &line);
        }
    }

    fn entry(&mut self, stream: usize, line: &[u8]) {
        let Some(f) = self.file.as_mut() else { return };
        let rec = serde_json::json!({
            "log": String::from_utf8_lossy(line),
            "stream": if stream == 0 { "stdout" } else { "stderr" },
            "time": now(),
        });
        let mut b = serde_json::to_vec(&rec).unwrap_or_default();
        b.push(b'\n');
        if f.write_all(&b).is_ok() {
            self.written += b.len() as u64;
        }
        if self.max_size > 0 && self.written >= self.max_size {
            self.rotate();
        }
    }
}
