//! The daemon's settings, as `berthd` flags and daemon.json give them.

use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    /// cgroup parent of every container, like Docker's `cgroup-parent` (default `/berth`).
    pub cgroup_parent: String,
    /// The `berth-shim` binary.
    pub shim_path: PathBuf,
    /// What is executed for a shim: a sealed in-memory copy of `shim_path` (see
    /// `berth_sys::process::sealed_copy`), `/proc/self/fd/N` of berthd.
    pub shim_exec: PathBuf,
    /// The Linux bridge of the default `bridge` network (Docker's `bridge`, default `berth0`).
    pub bridge: String,
    /// Gateway address and subnet of the default bridge (Docker's `bip`); None picks a free one.
    pub bip: Option<berth_network::Ipv4Net>,
    /// Where user-defined networks get their subnets (Docker's `default-address-pools`).
    pub pools: berth_network::Pools,
    /// Registries, mirrors and transfer concurrency for pull and push.
    pub distribution: crate::images::DistributionConfig,
    /// The init `--init` runs (Docker's `init-path`); tini-static when unset.
    pub init_path: Option<PathBuf>,
    /// What `docker info` warns about from the daemon's own setup (an API without encryption...).
    pub warnings: Vec<String>,
    /// The engine's labels (`--label`, daemon.json `labels`) and debug mode, as `/info` shows them.
    pub labels: Vec<String>,
    pub debug: bool,
    /// daemon.json `log-driver` (default json-file) and `log-opts`: what a container that names no
    /// driver gets; the options also fill a container's own when it names the same driver.
    pub log_driver: String,
    pub log_opts: std::collections::BTreeMap<String, String>,
    /// The journal's socket for the journald driver (default /run/systemd/journal/socket).
    pub journal_socket: Option<PathBuf>,
    /// `userns-remap`: the ids containers run as on the host, unless they ask for `--userns=host`.
    pub userns_remap: Option<berth_sys::idmap::Remap>,
    /// Where CDI device specs are read from (daemon.json `cdi-spec-dirs`), last wins.
    pub cdi_spec_dirs: Vec<PathBuf>,
    /// What `host-gateway` in `--add-host` stands for (daemon.json `host-gateway-ip`); the default
    /// bridge's gateway when unset.
    pub host_gateway_ip: Option<std::net::Ipv4Addr>,
    /// daemon.json `ipv6` / `fixed-cidr-v6`: the default bridge is dual-stack (`Some`), with this
    /// subnet (`Some(None)`: a unique-local /64 of its own).
    pub default_bridge_ipv6: Option<Option<berth_network::Ipv6Net>>,
}
