//! A container's output to its log driver: lines cut as Docker cuts them (at a newline or 16 KiB,
//! the rest marked partial), each handed to the driver the container asked for.
//!
//! The shim owns the drivers (not berthd): logs keep flowing while berthd restarts. Drivers:
//! `json-file` and `local` (files under the container's folder), `journald` (the native
//! protocol, one datagram per entry), `syslog` (unix, udp, tcp, tcp+tls), `none`.

mod journald;
pub mod jsonfile;
mod syslog;

use berth_runtime::shim::ShimConfig;

/// Docker splits log entries longer than this; so do we.
const MAX_LINE: usize = 16 * 1024;

enum Sink {
    None,
    File(jsonfile::JsonLog),
    Journald(journald::Journald),
    Syslog(syslog::Syslog),
}

pub struct Log {
    sink: Sink,
    partial: [Vec<u8>; 2],
}

impl Log {
    /// The driver `cfg` names, ready to take lines. A driver that cannot start (no journal
    /// socket, say) is reported on stderr and keeps nothing, as the container must still run.
    pub fn open(cfg: &ShimConfig) -> Log {
        let opt = |k: &str| cfg.log_opts.get(k).map(String::as_str);
        let sink = match cfg.log_driver.as_str() {
            "none" => Sink::None,
            "journald" => Sink::Journald(journald::Journald::new(cfg)),
            "syslog" => match syslog::Syslog::new(cfg) {
                Ok(s) => Sink::Syslog(s),
                Err(e) => {
                    eprintln!("berth-shim {}: syslog: {e}", cfg.id);
                    Sink::None
                }
            },
            // json-file and local: the same writer, local with Docker's local defaults.
            driver => {
                let local = driver == "local";
                let max_size =
                    opt("max-size").and_then(parse_size).unwrap_or(if local { 20 << 20 } else { cfg.log_max_size });
                let max_files =
                    opt("max-file").and_then(|v| v.parse().ok()).unwrap_or(if local { 5 } else { cfg.log_max_files });
                let compress = opt("compress").map(|v| v == "true").unwrap_or(local);
                Sink::File(jsonfile::JsonLog::open(&cfg.log_path, max_size, max_files, compress, cfg.log_attrs.clone()))
            }
        };
        Log { sink, partial: [Vec::new(), Vec::new()] }
    }

    /// Buffers `data` from stream 0 (stdout) or 1 (stderr) and hands on every complete line.
    pub fn write(&mut self, stream: usize, data: &[u8]) {
        if matches!(self.sink, Sink::None) {
            return;
        }
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

    /// Hands on what is left of a stream that ended without a newline.
    pub fn flush(&mut self, stream: usize) {
        if !self.partial[stream].is_empty() {
            let line = std::mem::take(&mut self.partial[stream]);
            self.entry(stream, &line);
        }
    }

    fn entry(&mut self, stream: usize, line: &[u8]) {
        let partial = !line.ends_with(b"\n");
        match &mut self.sink {
            Sink::None => {}
            Sink::File(f) => f.entry(stream, line, partial),
            Sink::Journald(j) => j.entry(stream, line.strip_suffix(b"\n").unwrap_or(line), partial),
            Sink::Syslog(s) => s.entry(stream, line.strip_suffix(b"\n").unwrap_or(line)),
        }
    }
}

use berth_runtime::shim::parse_size;

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::parse_size("10m"), Some(10 << 20));
        assert_eq!(super::parse_size("1k"), Some(1024));
        assert_eq!(super::parse_size("2g"), Some(2u64 << 30));
        assert_eq!(super::parse_size("100"), Some(100));
        assert_eq!(super::parse_size("1.5m"), None);
        assert_eq!(super::parse_size("x"), None);
    }
}
