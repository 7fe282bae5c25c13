//! The daemon's side of a shim: spawn it, read its readiness, talk to its socket.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use berth_types::{Error, Result};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

use crate::proto::{self, Decoder, ExitStatus};

pub const CONFIG_FILE: &str = "shim.json";

/// Everything a shim needs, written to `<bundle>/shim.json` before it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimConfig {
    pub id: String,
    /// Holds the OCI `config.json`.
    pub bundle: PathBuf,
    /// libcontainer's state root.
    pub state_root: PathBuf,
    /// json-file log the shim appends to.
    pub log_path: PathBuf,
    pub socket: PathBuf,
    /// Where the shim records the exit status, for a daemon that was down when it happened.
    pub exit_file: PathBuf,
    pub open_stdin: bool,
    /// Give the container a pseudo-terminal (its master comes back over a console socket).
    #[serde(default)]
    pub tty: bool,
    /// Initial terminal size `[rows, cols]` (HostConfig.ConsoleSize), set before the process runs.
    #[serde(default)]
    pub console_size: Option<[u16; 2]>,
    /// json-file rotation: size in bytes (0: none) and files kept; `log_none` keeps no log.
    #[serde(default)]
    pub log_max_size: u64,
    #[serde(default)]
    pub log_max_files: u32,
    #[serde(default)]
    pub log_none: bool,
    /// The log driver (`json-file`, `local`, `journald`, `syslog`, `none`; empty is json-file) and
    /// its options as the container has them (the daemon's defaults merged in).
    #[serde(default)]
    pub log_driver: String,
    #[serde(default)]
    pub log_opts: std::collections::BTreeMap<String, String>,
    /// Extra attributes every entry carries (`labels`, `env`, `tag` options), and the tag.
    #[serde(default)]
    pub log_attrs: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub log_tag: String,
    /// The container's name and image, for journald's fields.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub image: String,
    /// The journal's socket (default /run/systemd/journal/socket).
    #[serde(default)]
    pub journal_socket: Option<PathBuf>,
    /// The container's cgroup (`/parent/id`), read for OOM kills before it is removed.
    #[serde(default)]
    pub cgroups_path: String,
    /// Folders berthd keeps every container's mounts under (each a mount point of its own): the
    /// shim detaches them in a mount namespace of its own, but for `keep_mounts` (this container's
    /// root, image mounts and namespace files), so its container never copies the others' mounts.
    #[serde(default)]
    pub detach_mounts: Vec<PathBuf>,
    #[serde(default)]
    pub keep_mounts: Vec<PathBuf>,
}

/// Docker's log sizes: `10m`, `1g`, `512k`, plain bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let (n, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1u64 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s.as_str(), 1),
    };
    n.parse::<u64>().ok().map(|n| n * mult)
}

/// Starts a shim and waits until it has created the container (not started it). Returns the init pid.
/// Blocking: the shim forks itself away and answers on its stdout with `ok <pid>` or `err <message>`.
pub fn spawn(shim_bin: &Path, cfg: &ShimConfig) -> Result<i32> {
    let json = serde_json::to_vec_pretty(cfg).map_err(|e| Error::internal(e.to_string()))?;
    std::fs::write(cfg.bundle.join(CONFIG_FILE), json)?;
    let mut child = Command::new(shim_bin)
        // Run from a memfd it would show as its fd number: keep the name tools look for.
        .arg0("berth-shim")
        .arg(&cfg.bundle)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Error::internal(format!("start shim {}: {e}", shim_bin.display())))?;
    let mut answer = String::new();
    let read = child.stdout.take().expect("piped").read_to_string(&mut answer);
    let _ = child.wait();
    read.map_err(|e| Error::internal(format!("read shim readiness: {e}")))?;
    let answer = answer.trim_end();
    if let Some(pid) = answer.strip_prefix("ok ") {
        return pid.parse().map_err(|_| Error::internal(format!("shim said {answer:?}")));
    }
    match answer.strip_prefix("err ") {
        Some(msg) => Err(Error::internal(msg.to_string())),
        None => Err(Error::internal(format!("shim for {} died before it was ready", cfg.id))),
    }
}

/// The exit recorded by a shim, if the container has exited.
pub fn read_exit(exit_file: &Path) -> Option<ExitStatus> {
    serde_json::from_slice(&std::fs::read(exit_file).ok()?).ok()
}

/// A connection to a shim's socket.
pub struct ShimConn {
    pub reader: ShimReader,
    pub writer: ShimWriter,
}

pub struct ShimReader {
    rd: OwnedReadHalf,
    dec: Decoder,
}

pub struct ShimWriter {
    wr: OwnedWriteHalf,
}

impl ShimConn {
    pub async fn connect(socket: &Path) -> Result<ShimConn> {
        let s = UnixStream::connect(socket)
            .await
            .map_err(|e| Error::internal(format!("connect to shim {}: {e}", socket.display())))?;
        let (rd, wr) = s.into_split();
        Ok(ShimConn { reader: ShimReader { rd, dec: Decoder::default() }, writer: ShimWriter { wr } })
    }
}

impl ShimReader {
    /// The next frame, or None when the shim closed the connection.
    pub async fn recv(&mut self) -> Result<Option<(u8, Vec<u8>)>> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some(f) = self.dec.next_frame().map_err(Error::internal)? {
                return Ok(Some(f));
            }
            let n = self.rd.read(&mut buf).await?;
            if n == 0 {
                return Ok(None);
            }
            self.dec.push(&buf[..n]);
        }
    }
}

impl ShimWriter {
    pub async fn send(&mut self, kind: u8, payload: &[u8]) -> Result<()> {
        self.wr.write_all(&proto::encode(kind, payload)).await?;
        Ok(())
    }
}
