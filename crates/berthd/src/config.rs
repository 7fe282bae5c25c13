//! Flags, daemon.json and the data-root lock.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde::Deserialize;

#[derive(Parser, Debug)]
#[command(name = "berthd", version, about = "Berth: a container engine that speaks the Docker Engine API")]
pub struct Args {
    /// Root of persistent state (images, containers, metadata)
    #[arg(long)]
    pub data_root: Option<PathBuf>,
    /// Root of runtime state (shim sockets, bundles, network namespaces)
    #[arg(long)]
    pub exec_root: Option<PathBuf>,
    /// Daemon socket(s) to listen on: unix:///path or tcp://127.0.0.1:port
    #[arg(short = 'H', long = "host")]
    pub hosts: Vec<String>,
    /// debug, info, warn, error or fatal
    #[arg(short = 'l', long)]
    pub log_level: Option<String>,
    /// Path of the pid file
    #[arg(short = 'p', long)]
    pub pidfile: Option<PathBuf>,
    /// Daemon configuration file (Docker's daemon.json keys)
    #[arg(long, default_value = "/etc/berth/daemon.json")]
    pub config_file: PathBuf,
    /// Parent cgroup of all containers
    #[arg(long)]
    pub cgroup_parent: Option<String>,
    /// The berth-shim binary (default: next to berthd, then $PATH)
    #[arg(long)]
    pub shim_path: Option<PathBuf>,
}

/// daemon.json, with Docker's key names.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(rename = "data-root")]
    data_root: Option<PathBuf>,
    #[serde(rename = "exec-root")]
    exec_root: Option<PathBuf>,
    hosts: Option<Vec<String>>,
    #[serde(rename = "log-level")]
    log_level: Option<String>,
    pidfile: Option<PathBuf>,
    #[serde(rename = "cgroup-parent")]
    cgroup_parent: Option<String>,
    #[serde(rename = "live-restore")]
    live_restore: Option<bool>,
    debug: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    pub hosts: Vec<String>,
    pub log_level: String,
    pub pidfile: Option<PathBuf>,
    pub cgroup_parent: String,
    pub shim_path: PathBuf,
}

impl Settings {
    /// Flags win over the file; the file wins over defaults. A missing file is fine, a bad one is not.
    pub fn load(a: Args) -> Result<Settings> {
        let file: FileConfig = match std::fs::read(&a.config_file) {
            Ok(b) => serde_json::from_slice(&b)
                .with_context(|| format!("invalid config file {}", a.config_file.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileConfig::default(),
            Err(e) => return Err(e).with_context(|| format!("read {}", a.config_file.display())),
        };
        let _ = file.live_restore;
        let exec_root = a.exec_root.or(file.exec_root).unwrap_or_else(|| "/run/berth".into());
        let mut hosts = if !a.hosts.is_empty() { a.hosts } else { file.hosts.unwrap_or_default() };
        if hosts.is_empty() {
            hosts.push("unix:///run/berth/berth.sock".into());
        }
        let log_level = a.log_level.or(file.log_level).unwrap_or_else(|| {
            if file.debug == Some(true) {
                "debug".into()
            } else {
                "info".into()
            }
        });
        let log_level = match log_level.as_str() {
            "debug" | "info" | "warn" | "error" => log_level,
            "fatal" => "error".into(),
            other => bail!("unknown log level {other:?}: use debug, info, warn, error or fatal"),
        };
        let cgroup_parent = a.cgroup_parent.or(file.cgroup_parent).unwrap_or_else(|| "/berth".into());
        let cgroup_parent = format!("/{}", cgroup_parent.trim_matches('/'));
        if cgroup_parent == "/" || cgroup_parent.contains("..") {
            bail!("invalid cgroup parent {cgroup_parent:?}");
        }
        let shim_path = match a.shim_path {
            Some(p) => p,
            None => find_shim()?,
        };
        Ok(Settings {
            data_root: a.data_root.or(file.data_root).unwrap_or_else(|| "/var/lib/berth".into()),
            exec_root,
            hosts,
            log_level,
            pidfile: a.pidfile.or(file.pidfile),
            cgroup_parent,
            shim_path,
        })
    }
}

fn find_shim() -> Result<PathBuf> {
    if let Some(dir) = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf)) {
        let p = dir.join("berth-shim");
        if p.exists() {
            return Ok(p);
        }
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join("berth-shim");
        if p.exists() {
            return Ok(p);
        }
    }
    bail!("berth-shim not found next to berthd or in $PATH (use --shim-path)")
}

/// Holds `<data-root>/berthd.lock` for the daemon's lifetime; a second daemon gets a clear error.
pub fn lock_data_root(root: &Path) -> Result<std::fs::File> {
    let path = root.join("berthd.lock");
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("open {}", path.display()))?;
    if rustix::fs::flock(f.as_fd(), rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        let pid = std::fs::read_to_string(&path).unwrap_or_default();
        bail!("another berthd (pid {}) is already using data root {}", pid.trim(), root.display());
    }
    use std::io::Write;
    f.set_len(0)?;
    write!(f, "{}", std::process::id())?;
    Ok(f)
}
