//! Flags, daemon.json and the data-root lock.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde::Deserialize;

#[derive(Parser, Debug, Clone)]
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
    /// Linux bridge of the default network
    #[arg(short = 'b', long)]
    pub bridge: Option<String>,
    /// Address and prefix of the default bridge, e.g. 172.17.0.1/16
    #[arg(long)]
    pub bip: Option<String>,
    /// Pool for user-defined network subnets: base=CIDR,size=N (repeatable)
    #[arg(long = "default-address-pool")]
    pub default_address_pool: Vec<String>,
    /// A registry (host[:port] or CIDR) reached over plain HTTP or unverified TLS (repeatable)
    #[arg(long = "insecure-registry")]
    pub insecure_registries: Vec<String>,
    /// A Docker Hub mirror URL, tried before Docker Hub (repeatable)
    #[arg(long = "registry-mirror")]
    pub registry_mirrors: Vec<String>,
    /// Layers downloaded at once across all pulls
    #[arg(long)]
    pub max_concurrent_downloads: Option<usize>,
    /// Layers uploaded at once per push
    #[arg(long)]
    pub max_concurrent_uploads: Option<usize>,
    /// How a push compresses layers: gzip (default), or zstd for registries and clients that take
    /// OCI's tar+zstd layers
    #[arg(long)]
    pub push_compression: Option<String>,
    /// Per-registry CA and client certificates: <dir>/<host[:port]>/{*.crt,*.cert,*.key}
    #[arg(long)]
    pub registry_certs_dir: Option<PathBuf>,
    /// The init binary `--init` runs as pid 1 (default: /usr/bin/tini-static)
    #[arg(long)]
    pub init_path: Option<PathBuf>,
    /// Dual-stack default bridge (IPv6 beside IPv4)
    #[arg(long)]
    pub ipv6: bool,
    /// The default bridge's IPv6 subnet, e.g. fd00:d0c::/64 (with --ipv6)
    #[arg(long)]
    pub fixed_cidr_v6: Option<String>,
    /// The address `host-gateway` stands for in --add-host (default: the default bridge's gateway)
    #[arg(long)]
    pub host_gateway_ip: Option<std::net::Ipv4Addr>,
    /// Debug mode: debug logging, and /info Debug (daemon.json `debug`)
    #[arg(short = 'D', long)]
    pub debug: bool,
    /// Runtime options: native.cgroupdriver=cgroupfs (repeatable; daemon.json exec-opts)
    #[arg(long = "exec-opt")]
    pub exec_opts: Vec<String>,
    /// A label of this engine, key=value (repeatable; /info Labels)
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// The log driver of containers that name none: json-file (default), local, journald, syslog or none
    #[arg(long)]
    pub log_driver: Option<String>,
    /// Serve Prometheus metrics on this address (HTTP, GET /metrics), e.g. 127.0.0.1:9323
    #[arg(long)]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// A directory of CDI device specs (repeatable; default /etc/cdi and /var/run/cdi)
    #[arg(long = "cdi-spec-dir")]
    pub cdi_spec_dirs: Vec<PathBuf>,
    /// Run containers in a user namespace: default, USER[:GROUP] or UID[:GID] (ids from /etc/subuid, /etc/subgid)
    #[arg(long)]
    pub userns_remap: Option<String>,
    /// Let cgroup migrations skip the kernel's RCU grace period (the favordynmods option, Linux
    /// 6.0+): faster container start and exec, a setting of the whole host
    #[arg(long)]
    pub cgroup_favordynmods: bool,
    /// Serve TCP hosts over TLS (implied by --tlsverify)
    #[arg(long)]
    pub tls: bool,
    /// Serve TCP hosts over TLS and require client certificates signed by --tlscacert
    #[arg(long)]
    pub tlsverify: bool,
    /// CA that signs the client certificates accepted with --tlsverify
    #[arg(long)]
    pub tlscacert: Option<PathBuf>,
    /// The daemon's TLS certificate
    #[arg(long)]
    pub tlscert: Option<PathBuf>,
    /// The daemon's TLS key
    #[arg(long)]
    pub tlskey: Option<PathBuf>,
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
    #[serde(rename = "cgroup-favordynmods")]
    cgroup_favordynmods: Option<bool>,
    #[serde(rename = "live-restore")]
    live_restore: Option<bool>,
    bridge: Option<String>,
    bip: Option<String>,
    #[serde(rename = "default-address-pools")]
    default_address_pools: Option<Vec<PoolConfig>>,
    debug: Option<bool>,
    labels: Option<Vec<String>>,
    #[serde(rename = "exec-opts")]
    exec_opts: Option<Vec<String>>,
    #[serde(rename = "insecure-registries")]
    insecure_registries: Option<Vec<String>>,
    #[serde(rename = "registry-mirrors")]
    registry_mirrors: Option<Vec<String>>,
    #[serde(rename = "max-concurrent-downloads")]
    max_concurrent_downloads: Option<usize>,
    #[serde(rename = "max-concurrent-uploads")]
    max_concurrent_uploads: Option<usize>,
    #[serde(rename = "push-compression")]
    push_compression: Option<String>,
    #[serde(rename = "registry-certs-dir")]
    registry_certs_dir: Option<PathBuf>,
    #[serde(rename = "init-path")]
    init_path: Option<PathBuf>,
    #[serde(rename = "userns-remap")]
    userns_remap: Option<String>,
    #[serde(rename = "cdi-spec-dirs")]
    cdi_spec_dirs: Option<Vec<PathBuf>>,
    #[serde(rename = "host-gateway-ip")]
    host_gateway_ip: Option<std::net::Ipv4Addr>,
    #[serde(rename = "metrics-addr")]
    metrics_addr: Option<std::net::SocketAddr>,
    ipv6: Option<bool>,
    #[serde(rename = "fixed-cidr-v6")]
    fixed_cidr_v6: Option<String>,
    tls: Option<bool>,
    tlsverify: Option<bool>,
    tlscacert: Option<PathBuf>,
    tlscert: Option<PathBuf>,
    tlskey: Option<PathBuf>,
    #[serde(rename = "log-opts")]
    log_opts: Option<std::collections::BTreeMap<String, String>>,
    #[serde(rename = "log-driver")]
    log_driver: Option<String>,
}

#[derive(Deserialize, Debug, Clone)]
struct PoolConfig {
    base: String,
    size: u8,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    pub hosts: Vec<String>,
    pub log_level: String,
    pub pidfile: Option<PathBuf>,
    pub cgroup_parent: String,
    pub cgroup_favordynmods: bool,
    pub shim_path: PathBuf,
    pub bridge: String,
    pub bip: Option<berth_network::Ipv4Net>,
    pub pools: berth_network::Pools,
    pub distribution: berth_daemon::images::DistributionConfig,
    pub init_path: Option<PathBuf>,
    pub userns_remap: Option<String>,
    pub cdi_spec_dirs: Vec<PathBuf>,
    pub host_gateway_ip: Option<std::net::Ipv4Addr>,
    pub metrics_addr: Option<std::net::SocketAddr>,
    pub default_bridge_ipv6: Option<Option<berth_network::Ipv6Net>>,
    pub tls: Option<crate::listen::TlsSettings>,
    pub log_opts: std::collections::BTreeMap<String, String>,
    pub log_driver: String,
    pub labels: Vec<String>,
    pub debug: bool,
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
        let debug = a.debug || file.debug == Some(true);
        let log_level =
            a.log_level.or(file.log_level).unwrap_or_else(|| if debug { "debug".into() } else { "info".into() });
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
        let bridge = a.bridge.or(file.bridge).unwrap_or_else(|| "berth0".into());
        berth_network::link::validate_bridge_name(&bridge).map_err(|e| anyhow::anyhow!("{}", e.message))?;
        let bip = a
            .bip
            .or(file.bip)
            .map(|b| b.parse::<berth_network::Ipv4Net>())
            .transpose()
            .map_err(|e| anyhow::anyhow!("--bip: {e}"))?;
        let mut pools: Vec<(berth_network::Ipv4Net, u8)> = Vec::new();
        for p in &a.default_address_pool {
            let mut base = None;
            let mut size = None;
            for kv in p.split(',') {
                match kv.split_once('=') {
                    Some(("base", v)) => {
                        base = Some(v.parse::<berth_network::Ipv4Net>().map_err(|e| anyhow::anyhow!("{e}"))?)
                    }
                    Some(("size", v)) => size = Some(v.parse::<u8>()?),
                    _ => bail!("invalid --default-address-pool {p:?}: use base=CIDR,size=N"),
                }
            }
            match (base, size) {
                (Some(b), Some(s)) => pools.push((b, s)),
                _ => bail!("invalid --default-address-pool {p:?}: use base=CIDR,size=N"),
            }
        }
        if pools.is_empty() {
            for p in file.default_address_pools.unwrap_or_default() {
                pools.push((p.base.parse().map_err(|e| anyhow::anyhow!("default-address-pools: {e}"))?, p.size));
            }
        }
        let pools = if pools.is_empty() { berth_network::Pools::default() } else { berth_network::Pools(pools) };
        let mut insecure = a.insecure_registries;
        insecure.extend(file.insecure_registries.unwrap_or_default());
        let mut mirrors = a.registry_mirrors;
        mirrors.extend(file.registry_mirrors.unwrap_or_default());
        for m in &mirrors {
            if !(m.starts_with("http://") || m.starts_with("https://")) {
                bail!("invalid mirror {m:?}: it must be an http:// or https:// URL");
            }
        }
        let downloads = a.max_concurrent_downloads.or(file.max_concurrent_downloads).unwrap_or(3);
        let uploads = a.max_concurrent_uploads.or(file.max_concurrent_uploads).unwrap_or(5);
        if downloads == 0 || uploads == 0 {
            bail!("max-concurrent-downloads and max-concurrent-uploads must be at least 1");
        }
        let distribution = berth_daemon::images::DistributionConfig {
            registry: berth_distribution::RegistryConfig {
                insecure,
                mirrors,
                certs_dir: Some(
                    a.registry_certs_dir.or(file.registry_certs_dir).unwrap_or_else(|| "/etc/berth/certs.d".into()),
                ),
            },
            max_concurrent_downloads: downloads,
            max_concurrent_uploads: uploads,
            push_compression: match a.push_compression.or(file.push_compression) {
                Some(c) => {
                    berth_daemon::images::LayerCompression::parse(&c).map_err(|e| anyhow::anyhow!("{}", e.message))?
                }
                None => Default::default(),
            },
        };
        let verify = a.tlsverify || file.tlsverify.unwrap_or(false);
        let tls = if a.tls || verify || file.tls.unwrap_or(false) {
            let cert = a.tlscert.or(file.tlscert).context("--tls needs --tlscert and --tlskey")?;
            let key = a.tlskey.or(file.tlskey).context("--tls needs --tlscert and --tlskey")?;
            let ca = a.tlscacert.or(file.tlscacert);
            if verify && ca.is_none() {
                bail!("--tlsverify needs --tlscacert (the CA that signs client certificates)");
            }
            if !verify && ca.is_some() {
                // A CA alone suggests client certificates are checked; without --tlsverify they
                // would not be.
                bail!("--tlscacert is given without --tlsverify: client certificates would not be checked; add --tlsverify");
            }
            Some(crate::listen::TlsSettings { cert, key, client_ca: if verify { ca } else { None } })
        } else {
            None
        };
        let log_driver =
            a.log_driver.or(file.log_driver).filter(|d| !d.is_empty()).unwrap_or_else(|| "json-file".into());
        // json-file logs rotate by default (Docker's never do): a container that writes without end
        // must not fill the disk. daemon.json `log-opts` replaces the defaults.
        let log_opts = file.log_opts.unwrap_or_else(|| match log_driver.as_str() {
            "json-file" => [("max-size", "100m"), ("max-file", "3")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            _ => Default::default(),
        });
        let exec_opts =
            if a.exec_opts.is_empty() { file.exec_opts.clone().unwrap_or_default() } else { a.exec_opts.clone() };
        check_exec_opts(&exec_opts)?;
        let labels = if a.labels.is_empty() { file.labels.unwrap_or_default() } else { a.labels };
        if let Some(l) = labels.iter().find(|l| !l.contains('=') || l.starts_with('=')) {
            bail!("bad label {l:?}: labels are key=value");
        }
        Ok(Settings {
            labels,
            debug,
            log_opts,
            log_driver,
            tls,
            init_path: a.init_path.or(file.init_path),
            userns_remap: a.userns_remap.or(file.userns_remap).filter(|s| !s.is_empty()),
            host_gateway_ip: a.host_gateway_ip.or(file.host_gateway_ip),
            metrics_addr: a.metrics_addr.or(file.metrics_addr),
            default_bridge_ipv6: {
                let on = a.ipv6 || file.ipv6 == Some(true);
                let cidr = a.fixed_cidr_v6.or(file.fixed_cidr_v6).filter(|s| !s.is_empty());
                match (on, cidr) {
                    (false, Some(_)) => bail!("fixed-cidr-v6 needs ipv6 enabled (--ipv6 / \"ipv6\": true)"),
                    (false, None) => None,
                    (true, None) => Some(None),
                    (true, Some(c)) => Some(Some(
                        c.parse::<berth_network::Ipv6Net>()
                            .map_err(|e| anyhow::anyhow!("fixed-cidr-v6: {}", e.message))?,
                    )),
                }
            },
            cdi_spec_dirs: match (a.cdi_spec_dirs, file.cdi_spec_dirs) {
                (flags, _) if !flags.is_empty() => flags,
                (_, Some(dirs)) => dirs,
                _ => berth_runtime::cdi::DEFAULT_SPEC_DIRS.iter().map(PathBuf::from).collect(),
            },
            distribution,
            bridge,
            bip,
            pools,
            data_root: a.data_root.or(file.data_root).unwrap_or_else(|| "/var/lib/berth".into()),
            exec_root,
            hosts,
            log_level,
            pidfile: a.pidfile.or(file.pidfile),
            cgroup_parent,
            cgroup_favordynmods: a.cgroup_favordynmods || file.cgroup_favordynmods == Some(true),
            shim_path,
        })
    }
}

/// `exec-opts`: the cgroup driver. Containers' cgroups are made by berthd itself (cgroupfs);
/// handing them to systemd as transient scopes over D-Bus is not built in, so asking for the
/// systemd driver is refused rather than ignored.
fn check_exec_opts(opts: &[String]) -> Result<()> {
    for o in opts {
        let (k, v) = o.split_once('=').map(|(k, v)| (k.trim(), v.trim())).unwrap_or((o.as_str(), ""));
        match (k, v) {
            ("native.cgroupdriver", "cgroupfs") => {}
            ("native.cgroupdriver", "systemd") => bail!(
                "exec-opt native.cgroupdriver=systemd: berthd manages container cgroups itself (cgroupfs); the systemd driver is not supported"
            ),
            ("native.cgroupdriver", other) => bail!("native.cgroupdriver option {other} not supported"),
            _ => bail!("unknown exec-opt {o:?}: berthd knows native.cgroupdriver=cgroupfs"),
        }
    }
    Ok(())
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
