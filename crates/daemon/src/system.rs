//! `/info` and `/version`: real figures read from the host and the services.

use std::collections::BTreeMap;

use berth_api::system::{
    Commit, DeviceInfo, FirewallBackend, IndexInfo, Info, Plugins, RegistryConfig, Runtime, SwarmInfo,
};
use std::sync::Arc;

use crate::config::DaemonConfig;
use crate::container::ContainerService;
use crate::images::ImageService;

pub struct SystemService {
    cfg: Arc<DaemonConfig>,
    containers: Arc<ContainerService>,
    images: Arc<ImageService>,
    id: String,
    /// What a reload (SIGHUP) may change: the engine's labels and debug mode.
    labels: std::sync::RwLock<Vec<String>>,
    debug: std::sync::atomic::AtomicBool,
}

/// The daemon.json keys a reload applies (dockerd's reloadable ones Berth has).
#[derive(Debug, Clone, PartialEq)]
pub struct Reload {
    pub labels: Vec<String>,
    pub debug: bool,
    pub distribution: crate::images::DistributionConfig,
}

fn uname() -> (String, String, String) {
    let u = rustix::system::uname();
    (
        u.release().to_string_lossy().into_owned(),
        u.machine().to_string_lossy().into_owned(),
        u.nodename().to_string_lossy().into_owned(),
    )
}

fn os_release() -> (String, String) {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default()
    };
    (get("PRETTY_NAME"), get("VERSION_ID"))
}

fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// "2" when /sys/fs/cgroup is a pure cgroup2 mount, else "1" (v1 or hybrid).
pub fn cgroup_version() -> &'static str {
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "2"
    } else {
        "1"
    }
}

impl SystemService {
    /// `/info`'s RegistryConfig: CIDRs and names of insecure registries, Docker Hub's mirrors.
    fn registry_config(&self) -> RegistryConfig {
        let reg = self.images.registry_config();
        let mut cidrs = vec!["127.0.0.0/8".to_string(), "::1/128".to_string()];
        let mut index = BTreeMap::new();
        let mirrors: Vec<String> = reg.mirrors.iter().map(|m| format!("{}/", m.trim_end_matches('/'))).collect();
        let entry = |name: &str, mirrors: Vec<String>, official: bool| IndexInfo {
            name: name.to_string(),
            mirrors,
            secure: official,
            official,
        };
        index.insert("docker.io".to_string(), entry("docker.io", mirrors.clone(), true));
        for i in &reg.insecure {
            if i.contains('/') {
                cidrs.push(i.clone());
            } else {
                index.insert(i.clone(), entry(i, Vec::new(), false));
            }
        }
        RegistryConfig { insecure_registry_cidrs: cidrs, index_configs: index, mirrors }
    }

    pub fn new(cfg: Arc<DaemonConfig>, containers: Arc<ContainerService>, images: Arc<ImageService>) -> SystemService {
        let id_file = cfg.data_root.join("engine-id");
        let id = std::fs::read_to_string(&id_file).unwrap_or_else(|_| {
            let id = berth_types::new_id();
            // Root-only like everything under the data root (see perms.rs).
            let _ = std::os::unix::fs::OpenOptionsExt::mode(
                std::fs::OpenOptions::new().write(true).create_new(true),
                0o600,
            )
            .open(&id_file)
            .and_then(|mut f| std::io::Write::write_all(&mut f, id.as_bytes()));
            id
        });
        let (labels, debug) = (cfg.labels.clone(), cfg.debug);
        SystemService {
            cfg,
            containers,
            images,
            id: id.trim().to_string(),
            labels: std::sync::RwLock::new(labels),
            debug: std::sync::atomic::AtomicBool::new(debug),
        }
    }

    /// The engine's id (`/info` ID, the actor of daemon events).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Applies a reloaded configuration.
    pub fn reload(&self, r: &Reload) {
        *self.labels.write().unwrap_or_else(|e| e.into_inner()) = r.labels.clone();
        self.debug.store(r.debug, std::sync::atomic::Ordering::Relaxed);
        self.images.reconfigure(r.distribution.clone());
    }

    pub fn version(&self) -> berth_api::system::Version {
        let (kernel, arch, _) = uname();
        let arch = match arch.as_str() {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            a => a,
        }
        .to_string();
        use berth_api::system::{Component, ComponentDetails, PlatformName, Version};
        let (git, go) = (env!("CARGO_PKG_VERSION").to_string(), "n/a (rust)".to_string());
        Version {
            platform: PlatformName { name: "Berth Engine".into() },
            components: vec![Component {
                name: "Engine".into(),
                version: berth_api::ENGINE_VERSION.into(),
                details: ComponentDetails {
                    api_version: berth_api::API_VERSION.into(),
                    min_api_version: berth_api::MIN_API_VERSION.into(),
                    git_commit: git.clone(),
                    go_version: go.clone(),
                    os: "linux".into(),
                    arch: arch.clone(),
                    kernel_version: kernel.clone(),
                    experimental: "false".into(),
                    build_time: String::new(),
                },
            }],
            version: berth_api::ENGINE_VERSION.into(),
            api_version: berth_api::API_VERSION.into(),
            min_api_version: berth_api::MIN_API_VERSION.into(),
            git_commit: git,
            go_version: go,
            os: "linux".into(),
            arch,
            kernel_version: kernel,
            build_time: String::new(),
        }
    }

    /// The metrics text (`--metrics-addr`), with the gauges of state read now.
    pub async fn metrics(&self) -> String {
        let m = crate::metrics::get();
        let (running, paused, stopped) = self.containers.counts();
        for (state, n) in [("running", running), ("paused", paused), ("stopped", stopped)] {
            m.container_states.get_or_create(&crate::metrics::State { state: state.into() }).set(n as i64);
        }
        let exec_root = self.cfg.exec_root.clone();
        let (shims, rss) =
            tokio::task::spawn_blocking(move || crate::metrics::shims_of(&exec_root)).await.unwrap_or((0, 0));
        m.shims.set(shims);
        m.shim_rss.set(rss);
        let (kernel, arch, _) = uname();
        let (os, _) = os_release();
        let info = crate::metrics::EngineInfo {
            architecture: arch,
            daemon_id: self.id.clone(),
            graphdriver: "overlay2".into(),
            kernel,
            os,
            os_type: "linux".into(),
            version: berth_api::ENGINE_VERSION.into(),
        };
        m.engine_info.get_or_create(&info).set(1);
        m.cpus.set(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as i64);
        m.memory.set(mem_total() as i64);
        m.encode()
    }

    pub async fn info(&self) -> Info {
        let (running, paused, stopped) = self.containers.counts();
        let images = {
            let svc = self.images.clone();
            tokio::task::spawn_blocking(move || svc.count()).await.unwrap_or(0)
        };
        let (kernel, arch, hostname) = uname();
        let (os, os_version) = os_release();
        let cg = cgroup_version();
        let swap_limit = swap_limit_support();
        let mut warnings = self.cfg.warnings.clone();
        if !swap_limit {
            warnings.push("WARNING: No swap limit support".to_string());
        }
        let devices = {
            let dirs = self.cfg.cdi_spec_dirs.clone();
            tokio::task::spawn_blocking(move || berth_runtime::cdi::devices(&dirs)).await.unwrap_or_default()
        };
        let strings = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let shim = Runtime { path: self.cfg.shim_path.display().to_string() };
        let no_commit = || Commit { id: String::new() };
        Info {
            id: self.id.clone(),
            containers: running + paused + stopped,
            containers_running: running,
            containers_paused: paused,
            containers_stopped: stopped,
            images,
            driver: "overlay2".into(),
            driver_status: driver_status(&self.cfg.data_root),
            plugins: Plugins {
                volume: strings(&["local"]),
                network: strings(&["bridge", "host", "null"]),
                authorization: None,
                log: strings(&["journald", "json-file", "local", "none", "syslog"]),
            },
            memory_limit: true,
            swap_limit,
            kernel_memory: false,
            cpu_cfs_period: true,
            cpu_cfs_quota: true,
            cpu_shares: true,
            cpu_set: true,
            pids_limit: true,
            ipv4_forwarding: std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").is_ok_and(|s| s.trim() == "1"),
            debug: self.debug.load(std::sync::atomic::Ordering::Relaxed),
            n_fd: std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0),
            oom_kill_disable: false,
            n_goroutines: 0,
            system_time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            logging_driver: self.cfg.log_driver.clone(),
            cgroup_driver: "cgroupfs".into(),
            cgroup_version: cg.into(),
            n_events_listener: 0,
            kernel_version: kernel,
            operating_system: os,
            os_version,
            os_type: "linux".into(),
            architecture: arch,
            index_server_address: "https://index.docker.io/v1/".into(),
            registry_config: self.registry_config(),
            ncpu: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            mem_total: mem_total(),
            generic_resources: None,
            docker_root_dir: self.cfg.data_root.display().to_string(),
            http_proxy: String::new(),
            https_proxy: String::new(),
            no_proxy: String::new(),
            name: hostname,
            labels: self.labels.read().unwrap_or_else(|e| e.into_inner()).clone(),
            experimental_build: false,
            server_version: berth_api::ENGINE_VERSION.into(),
            // `runc` is the name containers ask for (HostConfig.Runtime); berth-shim runs them all.
            runtimes: BTreeMap::from([("runc".to_string(), shim.clone()), ("io.containerd.runc.v2".to_string(), shim)]),
            default_runtime: "berth".into(),
            swarm: SwarmInfo {
                node_id: String::new(),
                node_addr: String::new(),
                local_node_state: "inactive".into(),
                control_available: false,
                error: String::new(),
                remote_managers: None,
            },
            live_restore_enabled: true,
            isolation: String::new(),
            init_binary: String::new(),
            cdi_spec_dirs: self.cfg.cdi_spec_dirs.iter().map(|d| d.display().to_string()).collect(),
            containerd_commit: no_commit(),
            runc_commit: no_commit(),
            init_commit: no_commit(),
            // Berth's own packet filter: nftables tables per daemon (API 1.49+).
            firewall_backend: FirewallBackend { driver: "nftables".into() },
            discovered_devices: devices.into_iter().map(|id| DeviceInfo { source: "cdi".into(), id }).collect(),
            security_options: security_options(self.cfg.userns_remap.is_some()),
            warnings,
        }
    }
}
/// `/info` SecurityOptions, as dockerd lists them (`name=userns` with `userns-remap`).
/// The overlay driver's status as `docker info` shows it, read from the host: the data root's
/// filesystem, and overlayfs's metacopy setting (which also rules out the native diff).
fn driver_status(data_root: &std::path::Path) -> Vec<[String; 2]> {
    let fs = match rustix::fs::statfs(data_root).map(|s| s.f_type as u64) {
        Ok(0xEF53) => "extfs",
        Ok(0x5846_5342) => "xfs",
        Ok(0x9123_683E) => "btrfs",
        Ok(0x0102_1994) => "tmpfs",
        Ok(0x2FC1_2FC1) => "zfs",
        Ok(0x794C_7630) => "overlayfs",
        Ok(0x6969) => "nfs",
        _ => "<unknown>",
    };
    let metacopy = std::fs::read_to_string("/sys/module/overlay/parameters/metacopy").is_ok_and(|v| v.trim() == "Y");
    [
        ["Backing Filesystem", fs],
        ["Supports d_type", "true"],
        ["Using metacopy", if metacopy { "true" } else { "false" }],
        ["Native Overlay Diff", if metacopy { "false" } else { "true" }],
        ["userxattr", "false"],
    ]
    .map(|[k, v]| [k.to_string(), v.to_string()])
    .to_vec()
}

/// Whether memory+swap can be limited: cgroup v1's `memory.memsw.*` (swap accounting on), or
/// v2's `memory.swap.max`.
fn swap_limit_support() -> bool {
    std::path::Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()
        || std::fs::read_to_string("/sys/fs/cgroup/cgroup.subtree_control").is_ok_and(|c| c.contains("memory"))
}

fn security_options(remapped: bool) -> Vec<String> {
    let mut out = vec!["name=seccomp,profile=builtin".to_string()];
    if remapped {
        out.push("name=userns".into());
    }
    out
}
