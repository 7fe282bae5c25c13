//! The json-file log driver (and `local`, the same writer with Docker's local defaults): one JSON
//! object per line, as Docker writes `<id>-json.log`, rotated by size, rotated files gzipped with
//! `compress`, each entry with the `attrs` that `labels`/`env`/`tag` ask for.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;

pub struct JsonLog {
    file: Option<File>,
    path: std::path::PathBuf,
    written: u64,
    /// Rotate when the file reaches this size (0: never), keeping `max_files` files in all.
    max_size: u64,
    max_files: u32,
    /// Rotated files are gzipped (`<log>.1.gz`, ...), as Docker's `compress=true`.
    compress: bool,
    attrs: BTreeMap<String, String>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// A container's output is its own business: root only, as Docker's json-file logs.
const LOG_MODE: u32 = 0o600;

impl JsonLog {
    /// Opens (appends to) the log at `path`.
    pub fn open(
        path: &std::path::Path,
        max_size: u64,
        max_files: u32,
        compress: bool,
        attrs: BTreeMap<String, String>,
    ) -> JsonLog {
        let file =
            std::os::unix::fs::OpenOptionsExt::mode(std::fs::OpenOptions::new().create(true).append(true), LOG_MODE)
                .open(path)
                .ok();
        let written = file.as_ref().and_then(|f| f.metadata().ok()).map(|m| m.len()).unwrap_or(0);
        JsonLog { file, path: path.to_path_buf(), written, max_size, max_files: max_files.max(1), compress, attrs }
    }

    /// `x-json.log` → `x-json.log.1` → ... → `.N-1` (each `.gz` with `compress`), as Docker's
    /// json-file driver rotates.
    fn rotate(&mut self) {
        let ext = if self.compress { ".gz" } else { "" };
        let name = |i: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{i}{ext}"));
            std::path::PathBuf::from(p)
        };
        if self.max_files > 1 {
            for i in (1..self.max_files - 1).rev() {
                let _ = std::fs::rename(name(i), name(i + 1));
            }
            if self.compress {
                // Written beside, then renamed: a reader never sees half a file.
                let tmp = self.path.with_extension("log.gz.tmp");
                if gzip(&self.path, &tmp).is_ok() {
                    let _ = std::fs::rename(&tmp, name(1));
                }
            } else {
                let _ = std::fs::rename(&self.path, name(1));
            }
        }
        self.file = std::os::unix::fs::OpenOptionsExt::mode(
            std::fs::OpenOptions::new().create(true).write(true).truncate(true),
            LOG_MODE,
        )
        .open(&self.path)
        .ok();
        self.written = 0;
    }

    pub fn entry(&mut self, stream: usize, line: &[u8], _partial: bool) {
        let Some(f) = self.file.as_mut() else { return };
        let mut rec = serde_json::json!({
            "log": String::from_utf8_lossy(line),
            "stream": if stream == 0 { "stdout" } else { "stderr" },
            "time": now(),
        });
        if !self.attrs.is_empty() {
            rec["attrs"] = serde_json::json!(self.attrs);
        }
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

/// `src` gzipped into `dst` (level 6, as Go's default), owner-only like the log.
fn gzip(src: &std::path::Path, dst: &std::path::Path) -> std::io::Result<()> {
    let mut input = File::open(src)?;
    let out = std::os::unix::fs::OpenOptionsExt::mode(
        std::fs::OpenOptions::new().create(true).write(true).truncate(true),
        LOG_MODE,
    )
    .open(dst)?;
    let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::new(6));
    std::io::copy(&mut input, &mut gz)?;
    gz.finish()?.sync_all()
}
