//! `/info` and `/version`: real figures read from the host and the services.

use std::sync::Arc;

use serde_json::{json, Value};

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
    fn registry_config(&self) -> serde_json::Value {
        let reg = self.images.registry_config();
        let mut cidrs = vec!["127.0.0.0/8".to_string(), "::1/128".to_string()];
        let mut index = serde_json::Map::new();
        let mirrors: Vec<String> = reg.mirrors.iter().map(|m| format!("{}/", m.trim_end_matches('/'))).collect();
        index.insert(
            "docker.io".into(),
            serde_json::json!({"Name": "docker.io", "Mirrors": mirrors, "Secure": true, "Official": true}),
        );
        for i in &reg.insecure {
            if i.contains('/') {
                cidrs.push(i.clone());
            } else {
                index.insert(
                    i.clone(),
                    serde_json::json!({"Name": i, "Mirrors": [], "Secure": false, "Official": false}),
                );
            }
        }
        serde_json::json!({
            "InsecureRegistryCIDRs": cidrs,
            "IndexConfigs": index,
            "Mirrors": mirrors,
        })
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

    pub async fn info(&self) -> Value {
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
        json!({
            "ID": self.id,
            "Containers": running + paused + stopped,
            "ContainersRunning": running,
            "ContainersPaused": paused,
            "ContainersStopped": stopped,
            "Images": images,
            "Driver": "overlay2",
            "DriverStatus": driver_status(&self.cfg.data_root),
            "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"], "Authorization": null, "Log": ["journald", "json-file", "local", "none", "syslog"]},
            "MemoryLimit": true,
            "SwapLimit": swap_limit,
            "KernelMemory": false,
            "CpuCfsPeriod": true,
            "CpuCfsQuota": true,
            "CPUShares": true,
            "CPUSet": true,
            "PidsLimit": true,
            "IPv4Forwarding": std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").map(|s| s.trim() == "1").unwrap_or(false),
            "Debug": self.debug.load(std::sync::atomic::Ordering::Relaxed),
            "NFd": std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0),
            "OomKillDisable": false,
            "NGoroutines": 0,
            "SystemTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            "LoggingDriver": self.cfg.log_driver,
            "CgroupDriver": "cgroupfs",
            "CgroupVersion": cg,
            "NEventsListener": 0,
            "KernelVersion": kernel,
            "OperatingSystem": os,
            "OSVersion": os_version,
            "OSType": "linux",
            "Architecture": arch,
            "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": self.registry_config(),
            "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "MemTotal": mem_total(),
            "GenericResources": null,
            "DockerRootDir": self.cfg.data_root,
            "HttpProxy": "",
            "HttpsProxy": "",
            "NoProxy": "",
            "Name": hostname,
            "Labels": *self.labels.read().unwrap_or_else(|e| e.into_inner()),
            "ExperimentalBuild": false,
            "ServerVersion": berth_api::ENGINE_VERSION,
            // `runc` is the name containers ask for (HostConfig.Runtime); berth-shim runs them all.
            "Runtimes": {"runc": {"path": self.cfg.shim_path}, "io.containerd.runc.v2": {"path": self.cfg.shim_path}},
            "DefaultRuntime": "berth",
            "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": false, "Error": "", "RemoteManagers": null},
            "LiveRestoreEnabled": true,
            "Isolation": "",
            "InitBinary": "",
            "CDISpecDirs": self.cfg.cdi_spec_dirs,
            "ContainerdCommit": {"ID": ""},
            "RuncCommit": {"ID": ""},
            "InitCommit": {"ID": ""},
            // Berth's own packet filter: nftables tables per daemon (API 1.49+).
            "FirewallBackend": {"Driver": "nftables"},
            // Devices the CDI specs define (API 1.50+), as `--device vendor.com/class=name` takes them.
            "DiscoveredDevices": devices.iter().map(|id| serde_json::json!({"Source": "cdi", "ID": id})).collect::<Vec<_>>(),
            "SecurityOptions": security_options(self.cfg.userns_remap.is_some()),
            "Warnings": warnings,
        })
    }
}
/// `/info` SecurityOptions, as dockerd lists them (`name=userns` with `userns-remap`).
/// The overlay driver's status as `docker info` shows it, read from the host: the data root's
/// filesystem, and overlayfs's metacopy setting (which also rules out the native diff).
fn driver_status(data_root: &std::path::Path) -> Value {
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
    json!([
        ["Backing Filesystem", fs],
        ["Supports d_type", "true"],
        ["Using metacopy", metacopy.to_string()],
        ["Native Overlay Diff", (!metacopy).to_string()],
        ["userxattr", "false"]
    ])
}

/// Whether memory+swap can be limited: cgroup v1's `memory.memsw.*` (swap accounting on), or
/// v2's `memory.swap.max`.
fn swap_limit_support() -> bool {
    std::path::Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()
        || std::fs::read_to_string("/sys/fs/cgroup/cgroup.subtree_control").is_ok_and(|c| c.contains("memory"))
}

fn security_options(remapped: bool) -> Vec<&'static str> {
    let mut out = vec!["name=seccomp,profile=builtin"];
    if remapped {
        out.push("name=userns");
    }
    out
}
