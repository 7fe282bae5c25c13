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
        let reg = &self.cfg.distribution.registry;
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
        SystemService { cfg, containers, images, id: id.trim().to_string() }
    }

    pub fn version(&self) -> Value {
        let (kernel, arch, _) = uname();
        let arch = match arch.as_str() {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            a => a,
        }
        .to_string();
        json!({
            "Platform": {"Name": "Berth Engine"},
            "Components": [{"Name": "Engine", "Version": berth_api::ENGINE_VERSION, "Details": {
                "ApiVersion": berth_api::API_VERSION, "MinAPIVersion": berth_api::MIN_API_VERSION,
                "GitCommit": env!("CARGO_PKG_VERSION"), "GoVersion": "n/a (rust)", "Os": "linux",
                "Arch": arch, "KernelVersion": kernel, "Experimental": "false", "BuildTime": ""
            }}],
            "Version": berth_api::ENGINE_VERSION,
            "ApiVersion": berth_api::API_VERSION,
            "MinAPIVersion": berth_api::MIN_API_VERSION,
            "GitCommit": env!("CARGO_PKG_VERSION"),
            "GoVersion": "n/a (rust)",
            "Os": "linux",
            "Arch": arch,
            "KernelVersion": kernel,
            "BuildTime": "",
        })
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
            "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"], ["Using metacopy", "false"], ["Native Overlay Diff", "true"], ["userxattr", "false"]],
            "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"], "Authorization": null, "Log": ["json-file"]},
            "MemoryLimit": true,
            "SwapLimit": true,
            "KernelMemory": false,
            "CpuCfsPeriod": true,
            "CpuCfsQuota": true,
            "CPUShares": true,
            "CPUSet": true,
            "PidsLimit": true,
            "IPv4Forwarding": std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").map(|s| s.trim() == "1").unwrap_or(false),
            "Debug": false,
            "NFd": std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0),
            "OomKillDisable": false,
            "NGoroutines": 0,
            "SystemTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            "LoggingDriver": "json-file",
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
            "Labels": [],
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
            "Warnings": [],
        })
    }
}
/// `/info` SecurityOptions, as dockerd lists them (`name=userns` with `userns-remap`).
fn security_options(remapped: bool) -> Vec<&'static str> {
    let mut out = vec!["name=seccomp,profile=builtin"];
    if remapped {
        out.push("name=userns");
    }
    out
}
