//! Docker's `container.HostConfig`, every field typed, serialized as Docker's Go structs are: plain
//! values always shown, nil slices as `null`, the `omitempty` members only when set. A key the
//! daemon does not know is kept in `unknown` and given back by inspect (clients rely on round trips).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::container::{LogConfig, RestartPolicy};
use crate::mount::Mount;
use crate::serde_helpers::nullable;

fn no_map(m: &Option<BTreeMap<String, String>>) -> bool {
    m.as_ref().is_none_or(|m| m.is_empty())
}

/// `--device`: a host device node and where it appears in the container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeviceMapping {
    #[serde(deserialize_with = "nullable")]
    pub path_on_host: String,
    #[serde(deserialize_with = "nullable")]
    pub path_in_container: String,
    #[serde(deserialize_with = "nullable")]
    pub cgroup_permissions: String,
}

/// `--gpus` / `--device vendor.com/class=name` (CDI): a request to a device driver.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeviceRequest {
    #[serde(deserialize_with = "nullable")]
    pub driver: String,
    #[serde(deserialize_with = "nullable")]
    pub count: i64,
    #[serde(rename = "DeviceIDs")]
    pub device_ids: Option<Vec<String>>,
    pub capabilities: Option<Vec<Vec<String>>>,
    pub options: Option<BTreeMap<String, String>>,
}

/// `--ulimit nofile=1024:2048`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Ulimit {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub hard: i64,
    #[serde(deserialize_with = "nullable")]
    pub soft: i64,
}

/// `--blkio-weight-device /dev/sda:200`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct WeightDevice {
    #[serde(deserialize_with = "nullable")]
    pub path: String,
    #[serde(deserialize_with = "nullable")]
    pub weight: u16,
}

/// `--device-read-bps /dev/sda:1mb` and the other throttles.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ThrottleDevice {
    #[serde(deserialize_with = "nullable")]
    pub path: String,
    #[serde(deserialize_with = "nullable")]
    pub rate: u64,
}

/// Docker's `container.Resources`: the cgroup settings, shared by create and `docker update`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Resources {
    #[serde(default, deserialize_with = "nullable")]
    pub cpu_shares: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub memory: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub nano_cpus: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub cgroup_parent: String,
    #[serde(default, deserialize_with = "nullable")]
    pub blkio_weight: u16,
    #[serde(default)]
    pub blkio_weight_device: Option<Vec<WeightDevice>>,
    #[serde(default)]
    pub blkio_device_read_bps: Option<Vec<ThrottleDevice>>,
    #[serde(default)]
    pub blkio_device_write_bps: Option<Vec<ThrottleDevice>>,
    #[serde(default, rename = "BlkioDeviceReadIOps")]
    pub blkio_device_read_iops: Option<Vec<ThrottleDevice>>,
    #[serde(default, rename = "BlkioDeviceWriteIOps")]
    pub blkio_device_write_iops: Option<Vec<ThrottleDevice>>,
    #[serde(default, deserialize_with = "nullable")]
    pub cpu_period: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub cpu_quota: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub cpu_realtime_period: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub cpu_realtime_runtime: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub cpuset_cpus: String,
    #[serde(default, deserialize_with = "nullable")]
    pub cpuset_mems: String,
    #[serde(default)]
    pub devices: Option<Vec<DeviceMapping>>,
    #[serde(default)]
    pub device_cgroup_rules: Option<Vec<String>>,
    #[serde(default)]
    pub device_requests: Option<Vec<DeviceRequest>>,
    #[serde(default, deserialize_with = "nullable")]
    pub memory_reservation: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub memory_swap: i64,
    #[serde(default)]
    pub memory_swappiness: Option<i64>,
    #[serde(default)]
    pub oom_kill_disable: Option<bool>,
    #[serde(default)]
    pub pids_limit: Option<i64>,
    #[serde(default)]
    pub ulimits: Option<Vec<Ulimit>>,
    #[serde(default, deserialize_with = "nullable")]
    pub cpu_count: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub cpu_percent: i64,
    #[serde(default, deserialize_with = "nullable", rename = "IOMaximumIOps")]
    pub io_maximum_iops: u64,
    #[serde(default, deserialize_with = "nullable", rename = "IOMaximumBandwidth")]
    pub io_maximum_bandwidth: u64,
}

/// The per-device block I/O rules of a [`Resources`], each with Docker's key and the OCI
/// `blockIO` member it becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlkioDeviceKey {
    Weight,
    ReadBps,
    WriteBps,
    ReadIops,
    WriteIops,
}

impl BlkioDeviceKey {
    pub const ALL: [BlkioDeviceKey; 5] = [Self::Weight, Self::ReadBps, Self::WriteBps, Self::ReadIops, Self::WriteIops];

    /// Docker's HostConfig key.
    pub fn docker(self) -> &'static str {
        match self {
            Self::Weight => "BlkioWeightDevice",
            Self::ReadBps => "BlkioDeviceReadBps",
            Self::WriteBps => "BlkioDeviceWriteBps",
            Self::ReadIops => "BlkioDeviceReadIOps",
            Self::WriteIops => "BlkioDeviceWriteIOps",
        }
    }
}

/// One device rule as (host path, value): a weight or a rate.
pub type DeviceRule = (String, u64);

impl Resources {
    /// The rules under `key`: `None` when the field is absent (an update leaves them as they are),
    /// `Some(&[])` clears them.
    pub fn blkio_device_rules(&self, key: BlkioDeviceKey) -> Option<Vec<DeviceRule>> {
        let throttle =
            |l: &Option<Vec<ThrottleDevice>>| l.as_ref().map(|l| l.iter().map(|d| (d.path.clone(), d.rate)).collect());
        match key {
            BlkioDeviceKey::Weight => self
                .blkio_weight_device
                .as_ref()
                .map(|l| l.iter().map(|d| (d.path.clone(), u64::from(d.weight))).collect()),
            BlkioDeviceKey::ReadBps => throttle(&self.blkio_device_read_bps),
            BlkioDeviceKey::WriteBps => throttle(&self.blkio_device_write_bps),
            BlkioDeviceKey::ReadIops => throttle(&self.blkio_device_read_iops),
            BlkioDeviceKey::WriteIops => throttle(&self.blkio_device_write_iops),
        }
    }

    /// Sets the rules under `key` from another Resources (an update's), when that one has them.
    pub fn take_blkio_device_rules(&mut self, from: &Resources, key: BlkioDeviceKey) {
        let set = |dst: &mut Option<Vec<ThrottleDevice>>, src: &Option<Vec<ThrottleDevice>>| {
            if let Some(s) = src {
                *dst = Some(s.clone());
            }
        };
        match key {
            BlkioDeviceKey::Weight => {
                if let Some(s) = &from.blkio_weight_device {
                    self.blkio_weight_device = Some(s.clone());
                }
            }
            BlkioDeviceKey::ReadBps => set(&mut self.blkio_device_read_bps, &from.blkio_device_read_bps),
            BlkioDeviceKey::WriteBps => set(&mut self.blkio_device_write_bps, &from.blkio_device_write_bps),
            BlkioDeviceKey::ReadIops => set(&mut self.blkio_device_read_iops, &from.blkio_device_read_iops),
            BlkioDeviceKey::WriteIops => set(&mut self.blkio_device_write_iops, &from.blkio_device_write_iops),
        }
    }
}

/// The body of `POST /containers/{id}/update`: resources and the restart policy; a zero or absent
/// field leaves the container's as it is.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateConfig {
    #[serde(flatten)]
    pub resources: Resources,
    #[serde(default)]
    pub restart_policy: Option<RestartPolicy>,
}

impl UpdateConfig {
    /// Forgets the per-device rules (a client older than 1.55 sent fields the daemon ignored).
    pub fn without_blkio_devices(mut self) -> Self {
        let r = &mut self.resources;
        r.blkio_weight_device = None;
        r.blkio_device_read_bps = None;
        r.blkio_device_write_bps = None;
        r.blkio_device_read_iops = None;
        r.blkio_device_write_iops = None;
        self
    }
}

/// Docker's `container.HostConfig`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostConfig {
    #[serde(default, deserialize_with = "nullable")]
    pub binds: Vec<String>,
    #[serde(default, deserialize_with = "nullable", rename = "ContainerIDFile")]
    pub container_id_file: String,
    #[serde(default, deserialize_with = "nullable")]
    pub log_config: LogConfig,
    #[serde(default, deserialize_with = "nullable")]
    pub network_mode: String,
    #[serde(default, deserialize_with = "nullable")]
    pub port_bindings: PortMap,
    #[serde(default, deserialize_with = "nullable")]
    pub restart_policy: RestartPolicy,
    #[serde(default, deserialize_with = "nullable")]
    pub auto_remove: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub volume_driver: String,
    #[serde(default)]
    pub volumes_from: Option<Vec<String>>,
    /// (height, width) of the TTY at start.
    #[serde(default, deserialize_with = "nullable")]
    pub console_size: [u64; 2],
    #[serde(default, skip_serializing_if = "no_map")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub cap_add: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub cap_drop: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub cgroupns_mode: String,
    #[serde(default)]
    pub dns: Option<Vec<String>>,
    #[serde(default)]
    pub dns_options: Option<Vec<String>>,
    #[serde(default)]
    pub dns_search: Option<Vec<String>>,
    #[serde(default)]
    pub extra_hosts: Option<Vec<String>>,
    #[serde(default)]
    pub group_add: Option<Vec<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub ipc_mode: String,
    #[serde(default, deserialize_with = "nullable")]
    pub cgroup: String,
    #[serde(default)]
    pub links: Option<Vec<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub oom_score_adj: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub pid_mode: String,
    #[serde(default, deserialize_with = "nullable")]
    pub privileged: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub publish_all_ports: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub readonly_rootfs: bool,
    #[serde(default)]
    pub security_opt: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "no_map")]
    pub storage_opt: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "no_map")]
    pub tmpfs: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "nullable", rename = "UTSMode")]
    pub uts_mode: String,
    #[serde(default, deserialize_with = "nullable")]
    pub userns_mode: String,
    #[serde(default, deserialize_with = "nullable")]
    pub shm_size: i64,
    #[serde(default, skip_serializing_if = "no_map")]
    pub sysctls: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub runtime: String,
    #[serde(default, deserialize_with = "nullable")]
    pub isolation: String,
    #[serde(flatten)]
    pub resources: Resources,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    pub mounts: Vec<Mount>,
    #[serde(default)]
    pub masked_paths: Option<Vec<String>>,
    #[serde(default)]
    pub readonly_paths: Option<Vec<String>>,
    #[serde(default)]
    pub init: Option<bool>,
    /// Keys this daemon does not know, given back as they came (never read by the daemon). Declared last: serde hands a
    /// flattened map what the fields above did not take.
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}

impl HostConfig {
    /// `SecurityOpt` (empty when absent).
    pub fn security_opts(&self) -> &[String] {
        self.security_opt.as_deref().unwrap_or_default()
    }

    /// The `Links` list (empty when absent).
    pub fn link_list(&self) -> &[String] {
        self.links.as_deref().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_cli_body_round_trips() {
        let body = r#"{
            "Binds": ["/a:/b"], "ContainerIDFile": "", "LogConfig": {"Type": "", "Config": {}},
            "NetworkMode": "default", "PortBindings": {}, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
            "AutoRemove": false, "VolumeDriver": "", "ConsoleSize": [24, 80], "CapAdd": ["NET_ADMIN"],
            "CgroupnsMode": "", "Dns": [], "DnsOptions": [], "DnsSearch": [], "ExtraHosts": ["h:1.2.3.4"],
            "IpcMode": "", "OomScoreAdj": 5, "PidMode": "", "Privileged": false, "PublishAllPorts": true,
            "ReadonlyRootfs": false, "SecurityOpt": ["no-new-privileges"], "UTSMode": "", "UsernsMode": "",
            "ShmSize": 0, "Isolation": "", "CpuShares": 0, "Memory": 0, "NanoCpus": 0, "CgroupParent": "",
            "BlkioWeight": 0, "BlkioDeviceReadBps": [{"Path": "/dev/sda", "Rate": 1024}],
            "BlkioDeviceReadIOps": [], "CpuPeriod": 0, "CpusetCpus": "0", "Devices": [],
            "DeviceRequests": [{"Driver": "cdi", "Count": 0, "DeviceIDs": ["a.com/b=c"], "Capabilities": null, "Options": null}],
            "MemorySwappiness": null, "OomKillDisable": null, "PidsLimit": null,
            "Ulimits": [{"Name": "nofile", "Hard": 2, "Soft": 1}], "IOMaximumIOps": 0, "MaskedPaths": null,
            "Mounts": [{"Type": "volume", "Target": "/v", "VolumeOptions": {"Subpath": "x"}}],
            "Tmpfs": {"/t": "size=1m"}, "Init": true, "SomethingNew": {"a": 1}
        }"#;
        let hc: HostConfig = serde_json::from_str(body).unwrap();
        assert_eq!(hc.console_size, [24, 80]);
        assert_eq!(hc.oom_score_adj, 5);
        assert!(hc.publish_all_ports);
        assert_eq!(hc.resources.cpuset_cpus, "0");
        assert_eq!(hc.resources.ulimits.as_ref().unwrap()[0].soft, 1);
        assert_eq!(hc.resources.blkio_device_rules(BlkioDeviceKey::ReadBps), Some(vec![("/dev/sda".into(), 1024)]));
        assert_eq!(hc.resources.blkio_device_rules(BlkioDeviceKey::ReadIops), Some(vec![]));
        assert_eq!(hc.resources.blkio_device_rules(BlkioDeviceKey::WriteBps), None);
        assert_eq!(hc.mounts[0].volume_options.as_ref().unwrap().subpath, "x");
        // Unknown keys are kept, known ones never.
        assert_eq!(hc.unknown.keys().collect::<Vec<_>>(), ["SomethingNew"]);
        let back = serde_json::to_value(&hc).unwrap();
        assert_eq!(back["SomethingNew"]["a"], 1);
        assert_eq!(back["Tmpfs"]["/t"], "size=1m");
        assert_eq!(back["MemorySwappiness"], Value::Null);
        assert_eq!(
            back["Mounts"],
            serde_json::json!([{"Type": "volume", "Target": "/v", "VolumeOptions": {"Subpath": "x"}}])
        );
        assert!(back.get("Annotations").is_none() && back.get("Runtime").is_none());
        let again: HostConfig = serde_json::from_value(back).unwrap();
        assert_eq!(again, hc);
    }

    #[test]
    fn a_mistyped_field_is_refused() {
        assert!(serde_json::from_str::<HostConfig>(r#"{"ShmSize": "big"}"#).is_err());
        assert!(serde_json::from_str::<HostConfig>(r#"{"Dns": "1.1.1.1"}"#).is_err());
    }
}

/// A host address a container port is published on (`HostConfig.PortBindings`,
/// `NetworkSettings.Ports`); empty members ask for any address or an ephemeral port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortBinding {
    #[serde(default, rename = "HostIp", deserialize_with = "nullable")]
    pub host_ip: String,
    #[serde(default, rename = "HostPort", deserialize_with = "nullable")]
    pub host_port: String,
}

/// Container port (`80/tcp`) → its bindings; `null` for a port exposed but not published.
pub type PortMap = BTreeMap<String, Option<Vec<PortBinding>>>;
