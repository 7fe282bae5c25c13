//! The json-file log driver: one JSON object per line, as Docker writes `<id>-json.log`.

use std::fs::File;
use std::io::Write;

/// Docker splits log entries longer than this; so do we.
const MAX_LINE: usize = 16 * 1024;

pub struct JsonLog {
    file: Option<File>,
    partial: [Vec<u8>; 2],
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

impl JsonLog {
    pub fn open(path: &std::path::Path) -> JsonLog {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path).ok();
        JsonLog { file, partial: [Vec::new(), Vec::new()] }
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
        let _ = f.write_all(&b);
    }
}
