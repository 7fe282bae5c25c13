//! `GET /version` and the other system answers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `GET /version`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Version {
    pub platform: PlatformName,
    pub components: Vec<Component>,
    pub version: String,
    pub api_version: String,
    #[serde(rename = "MinAPIVersion")]
    pub min_api_version: String,
    pub git_commit: String,
    pub go_version: String,
    pub os: String,
    pub arch: String,
    pub kernel_version: String,
    pub build_time: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct PlatformName {
    pub name: String,
}

/// One component of the engine (`Engine` here), with its details as text.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Component {
    pub name: String,
    pub version: String,
    pub details: ComponentDetails,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ComponentDetails {
    pub api_version: String,
    #[serde(rename = "MinAPIVersion")]
    pub min_api_version: String,
    pub git_commit: String,
    pub go_version: String,
    pub os: String,
    pub arch: String,
    pub kernel_version: String,
    pub experimental: String,
    pub build_time: String,
}

/// `GET /info`, in the newest shape (the server's version views adapt it for older clients).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Info {
    #[serde(rename = "ID")]
    pub id: String,
    pub containers: usize,
    pub containers_running: usize,
    pub containers_paused: usize,
    pub containers_stopped: usize,
    pub images: usize,
    pub driver: String,
    /// `[name, value]` pairs.
    pub driver_status: Vec<[String; 2]>,
    pub plugins: Plugins,
    pub memory_limit: bool,
    pub swap_limit: bool,
    pub kernel_memory: bool,
    pub cpu_cfs_period: bool,
    pub cpu_cfs_quota: bool,
    #[serde(rename = "CPUShares")]
    pub cpu_shares: bool,
    #[serde(rename = "CPUSet")]
    pub cpu_set: bool,
    pub pids_limit: bool,
    #[serde(rename = "IPv4Forwarding")]
    pub ipv4_forwarding: bool,
    pub debug: bool,
    #[serde(rename = "NFd")]
    pub n_fd: usize,
    pub oom_kill_disable: bool,
    pub n_goroutines: usize,
    pub system_time: String,
    pub logging_driver: String,
    pub cgroup_driver: String,
    pub cgroup_version: String,
    pub n_events_listener: usize,
    pub kernel_version: String,
    pub operating_system: String,
    #[serde(rename = "OSVersion")]
    pub os_version: String,
    #[serde(rename = "OSType")]
    pub os_type: String,
    pub architecture: String,
    pub index_server_address: String,
    pub registry_config: RegistryConfig,
    #[serde(rename = "NCPU")]
    pub ncpu: usize,
    pub mem_total: u64,
    pub generic_resources: Option<Vec<serde_json::Value>>,
    pub docker_root_dir: String,
    pub http_proxy: String,
    pub https_proxy: String,
    pub no_proxy: String,
    pub name: String,
    pub labels: Vec<String>,
    pub experimental_build: bool,
    pub server_version: String,
    pub runtimes: BTreeMap<String, Runtime>,
    pub default_runtime: String,
    pub swarm: SwarmInfo,
    pub live_restore_enabled: bool,
    pub isolation: String,
    pub init_binary: String,
    #[serde(rename = "CDISpecDirs")]
    pub cdi_spec_dirs: Vec<String>,
    pub containerd_commit: Commit,
    pub runc_commit: Commit,
    pub init_commit: Commit,
    /// API 1.49+.
    pub firewall_backend: FirewallBackend,
    /// API 1.50+: CDI devices, as `--device vendor.com/class=name` takes them.
    pub discovered_devices: Vec<DeviceInfo>,
    pub security_options: Vec<String>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Plugins {
    pub volume: Vec<String>,
    pub network: Vec<String>,
    pub authorization: Option<Vec<String>>,
    pub log: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct RegistryConfig {
    #[serde(rename = "InsecureRegistryCIDRs")]
    pub insecure_registry_cidrs: Vec<String>,
    pub index_configs: BTreeMap<String, IndexInfo>,
    pub mirrors: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct IndexInfo {
    pub name: String,
    pub mirrors: Vec<String>,
    pub secure: bool,
    pub official: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Runtime {
    pub path: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct SwarmInfo {
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub node_addr: String,
    pub local_node_state: String,
    pub control_available: bool,
    pub error: String,
    pub remote_managers: Option<Vec<serde_json::Value>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Commit {
    #[serde(rename = "ID")]
    pub id: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct FirewallBackend {
    pub driver: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct DeviceInfo {
    pub source: String,
    #[serde(rename = "ID")]
    pub id: String,
}

/// `GET /system/df`: each kind asked for, with its items and their summary. The server's version
/// views write the legacy arrays (`Images`, …), the 1.52 summaries (`ImageUsage`, …), or both.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DiskUsage {
    /// The bytes of every image layer, shared layers once.
    pub layers_size: Option<i64>,
    pub images: Option<UsageOf<crate::image::ImageSummary>>,
    pub containers: Option<UsageOf<crate::container::Summary>>,
    pub volumes: Option<UsageOf<crate::volume::Volume>>,
    pub build_cache: Option<UsageOf<BuildCacheEntry>>,
}

/// One kind of object of `docker system df`: how many are in use, their bytes, what a prune
/// would free, and the items.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UsageOf<T> {
    pub active_count: usize,
    pub total_count: usize,
    pub total_size: i64,
    pub reclaimable: i64,
    pub items: Vec<T>,
}

/// A build cache record as `docker system df -v` and `docker buildx du` list it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BuildCacheEntry {
    #[serde(rename = "ID")]
    pub id: String,
    pub parents: Vec<String>,
    #[serde(rename = "Type")]
    pub kind: String,
    pub description: String,
    pub in_use: bool,
    pub shared: bool,
    pub size: u64,
    pub created_at: String,
    pub last_used_at: String,
    pub usage_count: u64,
}

/// `GET /system/df` as a client reads it: the legacy arrays, which every version sends unless
/// `verbose` is asked from 1.52 (nulls read as empty, as Go's nil slices).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DiskUsageView {
    pub layers_size: i64,
    #[serde(deserialize_with = "crate::serde_helpers::nullable")]
    pub images: Vec<crate::image::ImageSummary>,
    #[serde(deserialize_with = "crate::serde_helpers::nullable")]
    pub containers: Vec<crate::container::Summary>,
    #[serde(deserialize_with = "crate::serde_helpers::nullable")]
    pub volumes: Vec<crate::volume::Volume>,
    #[serde(deserialize_with = "crate::serde_helpers::nullable")]
    pub build_cache: Vec<BuildCacheEntry>,
}

/// `POST /build/prune`: `CachesDeleted` is null when none was (Go's nil slice).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct BuildCachePruneResponse {
    pub caches_deleted: Option<Vec<String>>,
    pub space_reclaimed: u64,
}

/// `POST /auth`: the registry accepted the credentials; a token to use instead, if it gave one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AuthResponse {
    pub status: String,
    pub identity_token: String,
}
