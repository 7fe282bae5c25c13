//! The network service: `berth_network::NetworkStore` on blocking threads, bridges, events.

use berth_api::network::{
    ConfigReference, EndpointResource, Ipam, IpamConfig, IpamStatus, NetworkResource, NetworkStatus, SubnetStatus,
};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use berth_api::filters::Filters;
use berth_network::firewall::{Firewall, NetRule};
use berth_network::store::CreateOptions;
use berth_network::{Network, NetworkStore};
use berth_types::{Error, Result};

use crate::events::EventBus;

/// (container id, container name, endpoint) of every running attachment, from the container service.
pub type AttachedFn = Arc<dyn Fn(&str) -> Vec<(String, String, berth_network::Endpoint)> + Send + Sync>;
/// Ids of containers (any state) configured on a network.
pub type ConfiguredFn = Arc<dyn Fn(&str) -> Vec<String> + Send + Sync>;

pub struct NetworkService {
    store: Arc<NetworkStore>,
    events: Arc<EventBus>,
    attached: OnceLock<(AttachedFn, ConfiguredFn)>,
    firewall: Arc<Firewall>,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::internal(format!("blocking task: {e}")))?
}

impl NetworkService {
    pub fn new(store: Arc<NetworkStore>, events: Arc<EventBus>, firewall: Arc<Firewall>) -> NetworkService {
        NetworkService { store, events, attached: OnceLock::new(), firewall }
    }

    /// Berth's nftables table (NAT, isolation, published ports).
    pub fn firewall(&self) -> Arc<Firewall> {
        self.firewall.clone()
    }

    /// Brings the firewall's network rules in line with the networks that exist.
    pub async fn sync_firewall(&self) -> Result<()> {
        let (s, fw) = (self.store.clone(), self.firewall.clone());
        blocking(move || {
            let nets = s
                .list()?
                .into_iter()
                .filter(|n| n.driver == "bridge")
                .filter_map(|n| {
                    let more_subnets = n.more_subnets.iter().map(|c| c.subnet).collect();
                    Some(NetRule {
                        subnet: n.subnet?,
                        bridge: n.bridge,
                        internal: n.internal,
                        subnet6: n.subnet6,
                        more_subnets,
                    })
                })
                .collect();
            fw.set_networks(nets)
        })
        .await
    }

    pub fn set_usage(&self, attached: AttachedFn, configured: ConfiguredFn) {
        let _ = self.attached.set((attached, configured));
    }

    fn attached(&self, id: &str) -> Vec<(String, String, berth_network::Endpoint)> {
        self.attached.get().map(|(a, _)| a(id)).unwrap_or_default()
    }

    pub fn publish(&self, action: &str, n: &Network, extra: &[(&str, String)]) {
        let mut a: BTreeMap<String, String> = extra.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        a.insert("name".into(), n.name.clone());
        a.insert("type".into(), n.driver.clone());
        self.events.publish("network", action, &n.id, a);
    }

    /// The blocking store, for the container start path (already on a blocking thread).
    pub fn store(&self) -> Arc<NetworkStore> {
        self.store.clone()
    }

    pub async fn get(&self, name: &str) -> Result<Network> {
        let (s, n) = (self.store.clone(), name.to_string());
        blocking(move || s.get(&n)).await
    }

    pub async fn create(&self, o: CreateOptions) -> Result<Network> {
        let _timer = crate::metrics::network_action("create");
        let s = self.store.clone();
        let n = blocking(move || s.create(o)).await?;
        if let Err(e) = self.sync_firewall().await {
            tracing::warn!("firewall: {e}");
        }
        self.publish("create", &n, &[]);
        Ok(n)
    }

    pub async fn remove(&self, name: &str) -> Result<()> {
        let _timer = crate::metrics::network_action("delete");
        let n = self.get(name).await?;
        if !n.builtin() {
            let active = self.attached(&n.id);
            if !active.is_empty() {
                return Err(Error::conflict(format!(
                    "error while removing network: network {} id {} has active endpoints",
                    n.name, n.id
                )));
            }
        }
        let (s, n2) = (self.store.clone(), n.clone());
        blocking(move || {
            s.remove(&n2)?;
            berth_network::link::delete_link(&n2.bridge)
        })
        .await?;
        if let Err(e) = self.sync_firewall().await {
            tracing::warn!("firewall: {e}");
        }
        self.publish("destroy", &n, &[]);
        Ok(())
    }

    pub async fn list(&self, f: &Filters) -> Result<Vec<Network>> {
        f.validate(&["name", "id", "driver", "label", "type", "scope", "dangling"]).map_err(Error::invalid)?;
        let s = self.store.clone();
        let all = blocking(move || s.list()).await?;
        let any = |key: &str, pred: &dyn Fn(&str) -> bool| {
            let v = f.get(key);
            v.is_empty() || v.iter().any(|x| pred(x))
        };
        let configured = |id: &str| self.attached.get().map(|(_, c)| c(id)).unwrap_or_default();
        Ok(all
            .into_iter()
            .filter(|n| any("name", &|x| n.name.contains(x)))
            .filter(|n| any("id", &|x| n.id.starts_with(x)))
            .filter(|n| any("driver", &|x| n.driver == x))
            .filter(|_| any("scope", &|x| x == "local"))
            .filter(|n| any("type", &|x| (x == "builtin") == n.builtin()))
            .filter(|n| {
                any("dangling", &|x| (x == "true" || x == "1") == (configured(&n.id).is_empty() && !n.builtin()))
            })
            .filter(|n| f.match_labels(&n.labels))
            .collect())
    }

    pub async fn prune(&self, f: &Filters) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for n in self.list(&Filters::default()).await? {
            if n.builtin() || !f.match_labels(&n.labels) {
                continue;
            }
            let configured = self.attached.get().map(|(_, c)| c(&n.id)).unwrap_or_default();
            if configured.is_empty() && self.remove(&n.id).await.is_ok() {
                out.push(n.name);
            }
        }
        Ok(out)
    }

    /// `Status` of network inspect (API 1.52+): per subnet, the addresses in use or reserved
    /// (network, broadcast, gateway, endpoints) and those left for dynamic allocation in its
    /// range, both saturating at 2^64 - 1 as moby's.
    pub fn status(&self, n: &Network) -> NetworkStatus {
        let eps: Vec<_> = self.attached(&n.id).into_iter().map(|(_, _, ep)| ep).collect();
        let mut subnets = BTreeMap::new();
        let count = |bits: u32| if bits >= 64 { u64::MAX } else { 1u64 << bits };
        for c in n.v4_subnets() {
            let s = c.subnet;
            let mut taken: std::collections::BTreeSet<std::net::Ipv4Addr> = [s.nth(0), c.gateway].into();
            if s.len <= 30 {
                taken.insert(s.nth((1u64 << (32 - s.len as u32)) as u32 - 1));
            }
            taken.extend(eps.iter().filter_map(|e| e.ip).filter(|ip| s.contains(*ip)));
            let range = c.ip_range.unwrap_or(s);
            let in_range = taken.iter().filter(|ip| range.contains(**ip)).count() as u64;
            subnets.insert(
                s.to_string(),
                SubnetStatus {
                    ips_in_use: taken.len() as u64,
                    dynamic_ips_available: count(32 - range.len as u32).saturating_sub(in_range),
                },
            );
        }
        if let Some(s) = n.subnet6 {
            let mut taken: std::collections::BTreeSet<std::net::Ipv6Addr> = [s.nth(0)].into();
            taken.extend(n.gateway6);
            taken.extend(eps.iter().filter_map(|e| e.ip6).filter(|ip| s.contains(*ip)));
            let range = n.ip_range6.unwrap_or(s);
            let in_range = taken.iter().filter(|ip| range.contains(**ip)).count() as u64;
            subnets.insert(
                s.to_string(),
                SubnetStatus {
                    ips_in_use: taken.len() as u64,
                    dynamic_ips_available: count(128 - range.len as u32).saturating_sub(in_range),
                },
            );
        }
        NetworkStatus { ipam: IpamStatus { subnets } }
    }

    /// Docker's network JSON; `Containers` lists running attachments.
    pub fn resource(&self, n: &Network) -> NetworkResource {
        let containers = self
            .attached(&n.id)
            .into_iter()
            .map(|(id, name, ep)| {
                let ip = ep.ip.map(|ip| format!("{ip}/{}", ep.prefix_len)).unwrap_or_default();
                let ip6 = ep.ip6.map(|ip| format!("{ip}/{}", ep.prefix6)).unwrap_or_default();
                let r = EndpointResource {
                    name,
                    endpoint_id: ep.endpoint_id,
                    mac_address: ep.mac,
                    ipv4_address: ip,
                    ipv6_address: ip6,
                };
                (id, r)
            })
            .collect();
        let text = |v: Option<String>| v.unwrap_or_default();
        let mut config = vec![IpamConfig {
            subnet: text(n.subnet.map(|s| s.to_string())),
            gateway: text(n.gateway.map(|g| g.to_string())),
            ip_range: text(n.ip_range.map(|r| r.to_string())),
        }];
        for c in &n.more_subnets {
            config.push(IpamConfig {
                subnet: c.subnet.to_string(),
                gateway: c.gateway.to_string(),
                ip_range: text(c.ip_range.map(|r| r.to_string())),
            });
        }
        if let Some(s) = n.subnet6 {
            config.push(IpamConfig {
                subnet: s.to_string(),
                gateway: text(n.gateway6.map(|g| g.to_string())),
                ip_range: text(n.ip_range6.map(|r| r.to_string())),
            });
        }
        NetworkResource {
            name: n.name.clone(),
            id: n.id.clone(),
            created: n.created.clone(),
            scope: "local".into(),
            driver: n.driver.clone(),
            enable_ipv4: true,
            enable_ipv6: n.enable_ipv6,
            ipam: Ipam {
                driver: "default".into(),
                options: None,
                config: Some(if n.driver == "bridge" { config } else { Vec::new() }),
            },
            internal: n.internal,
            attachable: n.attachable,
            ingress: false,
            config_from: ConfigReference { network: String::new() },
            config_only: false,
            containers,
            options: n.options.clone(),
            labels: n.labels.clone(),
            status: None,
        }
    }
}
