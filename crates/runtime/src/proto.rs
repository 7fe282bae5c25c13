//! The berthd ↔ berth-shim protocol over the shim's UNIX socket.
//!
//! Every message is a frame: `[kind u8][len u32 big-endian][payload]`. On connect the shim sends
//! `HELLO` with its state; then the daemon may send `START`, `STDIN`, `CLOSE_STDIN`, `SIGNAL`, and the
//! shim sends `STARTED`, `STDOUT`/`STDERR` (only what arrives after the connection), and `EXITED` last.

use serde::{Deserialize, Serialize};

pub const START: u8 = 1;
pub const STDIN: u8 = 2;
pub const CLOSE_STDIN: u8 = 3;
pub const SIGNAL: u8 = 4;
/// Start an exec: JSON [`ExecRequest`].
pub const EXEC: u8 = 5;
/// `[id_len u8][exec id][bytes]`
pub const EXEC_STDIN: u8 = 6;
/// `[id_len u8][exec id]`
pub const EXEC_CLOSE_STDIN: u8 = 7;
/// `[rows u16][cols u16]`, big-endian: the container's terminal size.
pub const RESIZE: u8 = 8;
/// `[id_len u8][exec id][rows u16][cols u16]`
pub const EXEC_RESIZE: u8 = 9;
/// Freeze / thaw the container's processes (freezer cgroup); answered by ACK or ERROR.
pub const PAUSE: u8 = 20;
pub const RESUME: u8 = 21;
pub const ACK: u8 = 22;

pub const HELLO: u8 = 10;
pub const STARTED: u8 = 11;
pub const STDOUT: u8 = 12;
pub const STDERR: u8 = 13;
pub const EXITED: u8 = 14;
pub const ERROR: u8 = 15;
/// JSON [`ExecStarted`].
pub const EXEC_STARTED: u8 = 16;
/// `[stream u8 (1 stdout, 2 stderr)][id_len u8][exec id][bytes]`
pub const EXEC_OUTPUT: u8 = 17;
/// JSON [`ExecExited`].
pub const EXEC_EXITED: u8 = 18;

/// Frames larger than this are a protocol violation.
/// The error a shim reports (an `ERROR` payload, an `ExecStarted.error`) for a request that failed
/// because the container's process is gone (a pause or exec racing the exit): the daemon answers
/// Docker's 409 "is not running" for it.
pub const ERR_NOT_RUNNING: &str = "container is not running";

pub const MAX_FRAME: usize = 16 << 20;

/// The shim's state, sent in `HELLO`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub pid: i32,
    pub started: bool,
    pub exit: Option<ExitStatus>,
}

/// How the container's init ended, as the shim records it in `exit.json` and sends in `EXITED`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// Docker's exit code: the process's own code, or 128 + signal.
    pub code: i32,
    pub signal: Option<i32>,
    pub finished_at: String,
    /// The kernel's OOM killer killed a process of the container during this run.
    #[serde(default)]
    pub oom_killed: bool,
}

/// Start a process in the running container, described by an OCI `process.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    pub exec_id: String,
    pub process_json: std::path::PathBuf,
    pub open_stdin: bool,
    #[serde(default)]
    pub tty: bool,
    #[serde(default)]
    pub console_size: Option<[u16; 2]>,
}

/// The answer to [`ExecRequest`]: a pid, or why it could not start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecStarted {
    pub exec_id: String,
    pub pid: i32,
    /// Why it did not start; `ERR_NOT_RUNNING` when the container's process was gone.
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecExited {
    pub exec_id: String,
    pub code: i32,
}

/// `[id_len][id][rest]` framing of exec payloads.
pub fn with_id(id: &str, rest: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(1 + id.len() + rest.len());
    b.push(id.len() as u8);
    b.extend_from_slice(id.as_bytes());
    b.extend_from_slice(rest);
    b
}

/// Splits `[id_len][id][rest]`.
pub fn split_id(p: &[u8]) -> Option<(String, &[u8])> {
    let n = *p.first()? as usize;
    let id = std::str::from_utf8(p.get(1..1 + n)?).ok()?.to_string();
    Some((id, &p[1 + n..]))
}

pub fn encode(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(5 + payload.len());
    b.push(kind);
    b.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    b.extend_from_slice(payload);
    b
}

/// Incremental decoder for a byte stream of frames.
#[derive(Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame, if any; an oversized frame is an error.
    pub fn next_frame(&mut self) -> Result<Option<(u8, Vec<u8>)>, String> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > MAX_FRAME {
            return Err(format!("shim frame of {len} bytes exceeds the limit"));
        }
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        let kind = self.buf[0];
        let payload = self.buf[5..5 + len].to_vec();
        self.buf.drain(..5 + len);
        Ok(Some((kind, payload)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_anywhere() {
        let mut all = encode(STDOUT, b"hello");
        all.extend(encode(EXITED, b"{}"));
        for cut in 0..all.len() {
            let mut d = Decoder::default();
            let mut got = Vec::new();
            d.push(&all[..cut]);
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
            d.push(&all[cut..]);
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
            assert_eq!(got, vec![(STDOUT, b"hello".to_vec()), (EXITED, b"{}".to_vec())]);
        }
        let mut d = Decoder::default();
        d.push(&[1, 0xff, 0xff, 0xff, 0xff]);
        assert!(d.next_frame().is_err());
    }
}
