//! Docker's `network.NetworkingConfig` and `EndpointSettings`, as `POST /containers/create` and
//! `POST /networks/{id}/connect` take them. Addresses stay text here: the daemon parses them and
//! answers Docker's messages for a bad one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::serde_helpers::nullable;

/// `NetworkingConfig` of a create: the endpoint settings by network name (or id).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkingConfig {
    /// `null` for a network means "this network, default settings".
    #[serde(default, deserialize_with = "nullable")]
    pub endpoints_config: BTreeMap<String, Option<EndpointSettings>>,
}

impl NetworkingConfig {
    /// The settings asked for network `key` (name or id), if it is listed.
    pub fn endpoint(&self, key: &str) -> Option<EndpointSettings> {
        self.endpoints_config.get(key).map(|e| e.clone().unwrap_or_default())
    }
}

/// What a client may ask of one endpoint; the operational members (`NetworkID`, `IPAddress`, …)
/// are read back from inspect by some clients and sent again: accepted and ignored, as moby does.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointSettings {
    #[serde(default, rename = "IPAMConfig")]
    pub ipam_config: Option<EndpointIpamConfig>,
    #[serde(default)]
    pub links: Option<Vec<String>>,
    #[serde(default)]
    pub aliases: Option<Vec<String>>,
    #[serde(default)]
    pub driver_opts: Option<BTreeMap<String, String>>,
    /// API 1.48: the endpoint with the highest priority gives the default route.
    #[serde(default, deserialize_with = "nullable")]
    pub gw_priority: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub mac_address: String,
    // Operational members: shown by inspect, accepted and ignored in a request (as moby).
    #[serde(default, rename = "NetworkID", deserialize_with = "nullable")]
    pub network_id: String,
    #[serde(default, rename = "EndpointID", deserialize_with = "nullable")]
    pub endpoint_id: String,
    #[serde(default, deserialize_with = "nullable")]
    pub gateway: String,
    #[serde(default, rename = "IPAddress", deserialize_with = "nullable")]
    pub ip_address: String,
    #[serde(default, rename = "IPPrefixLen", deserialize_with = "nullable")]
    pub ip_prefix_len: i64,
    #[serde(default, rename = "IPv6Gateway", deserialize_with = "nullable")]
    pub ipv6_gateway: String,
    #[serde(default, rename = "GlobalIPv6Address", deserialize_with = "nullable")]
    pub global_ipv6_address: String,
    #[serde(default, rename = "GlobalIPv6PrefixLen", deserialize_with = "nullable")]
    pub global_ipv6_prefix_len: i64,
    #[serde(default, rename = "DNSNames")]
    pub dns_names: Option<Vec<String>>,
    /// Keys this daemon does not know.
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointIpamConfig {
    #[serde(rename = "IPv4Address", default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub ipv4_address: String,
    #[serde(rename = "IPv6Address", default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub ipv6_address: String,
    #[serde(rename = "LinkLocalIPs", default, skip_serializing_if = "Option::is_none")]
    pub link_local_ips: Option<Vec<String>>,
}

/// The body of `POST /networks/{id}/connect`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConnectRequest {
    #[serde(default, deserialize_with = "nullable")]
    pub container: String,
    #[serde(default)]
    pub endpoint_config: Option<EndpointSettings>,
    /// Disconnect only.
    #[serde(default, deserialize_with = "nullable")]
    pub force: bool,
}

/// One IPAM pool of a network, as inspect shows it and create takes it (empty members are
/// left out when shown).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct IpamConfig {
    #[serde(skip_serializing_if = "String::is_empty", deserialize_with = "nullable")]
    pub subnet: String,
    #[serde(skip_serializing_if = "String::is_empty", deserialize_with = "nullable")]
    pub gateway: String,
    #[serde(rename = "IPRange", skip_serializing_if = "String::is_empty", deserialize_with = "nullable")]
    pub ip_range: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Ipam {
    #[serde(deserialize_with = "nullable")]
    pub driver: String,
    pub options: Option<BTreeMap<String, String>>,
    pub config: Option<Vec<IpamConfig>>,
}

/// The body of `POST /networks/create`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateRequest {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub driver: String,
    #[serde(deserialize_with = "nullable")]
    pub internal: bool,
    #[serde(deserialize_with = "nullable")]
    pub attachable: bool,
    #[serde(rename = "EnableIPv4")]
    pub enable_ipv4: Option<bool>,
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: Option<bool>,
    #[serde(rename = "IPAM")]
    pub ipam: Option<Ipam>,
    pub options: Option<BTreeMap<String, String>>,
    pub labels: Option<BTreeMap<String, String>>,
}

/// A container attached to a network, in the network's inspect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointResource {
    pub name: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    pub mac_address: String,
    #[serde(rename = "IPv4Address")]
    pub ipv4_address: String,
    #[serde(rename = "IPv6Address")]
    pub ipv6_address: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConfigReference {
    pub network: String,
}

/// `GET /networks/{id}` and an entry of `GET /networks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkResource {
    pub name: String,
    pub id: String,
    pub created: String,
    pub scope: String,
    pub driver: String,
    #[serde(rename = "EnableIPv4")]
    pub enable_ipv4: bool,
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: bool,
    #[serde(rename = "IPAM")]
    pub ipam: Ipam,
    pub internal: bool,
    pub attachable: bool,
    pub ingress: bool,
    pub config_from: ConfigReference,
    pub config_only: bool,
    pub containers: BTreeMap<String, EndpointResource>,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// IPAM statistics (API 1.52), inspect only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<NetworkStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkStatus {
    #[serde(rename = "IPAM")]
    pub ipam: IpamStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamStatus {
    pub subnets: BTreeMap<String, SubnetStatus>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SubnetStatus {
    #[serde(rename = "IPsInUse")]
    pub ips_in_use: u64,
    #[serde(rename = "DynamicIPsAvailable")]
    pub dynamic_ips_available: u64,
}

/// The answer to `POST /networks/create`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateResponse {
    pub id: String,
    pub warning: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_as_clients_send_them() {
        let n: NetworkingConfig = serde_json::from_str(
            r#"{"EndpointsConfig": {"net": {"IPAMConfig": {"IPv4Address": "10.0.0.5", "LinkLocalIPs": ["169.254.1.1"]},
                "Aliases": ["a"], "DriverOpts": {"k": "v"}, "GwPriority": 3, "MacAddress": "02:42:ac:11:00:02",
                "NetworkID": "abc", "DNSNames": null}, "other": null}}"#,
        )
        .unwrap();
        let e = n.endpoint("net").unwrap();
        assert_eq!(e.ipam_config.as_ref().unwrap().ipv4_address, "10.0.0.5");
        assert_eq!(e.gw_priority, 3);
        assert_eq!(e.aliases.as_deref(), Some(&["a".to_string()][..]));
        assert_eq!(n.endpoint("other"), Some(EndpointSettings::default()));
        assert_eq!(n.endpoint("none"), None);
        assert!(serde_json::from_str::<EndpointSettings>(r#"{"GwPriority": "high"}"#).is_err());
        assert!(serde_json::from_str::<EndpointSettings>(r#"{"DriverOpts": {"k": 1}}"#).is_err());
    }
}

/// `POST /networks/prune`: `NetworksDeleted` is null when none was (Go's nil slice).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PruneResponse {
    pub networks_deleted: Option<Vec<String>>,
}
