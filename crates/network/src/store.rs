//! Network records. `bridge`, `host` and `none` always exist; user networks are bridges of their own.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use berth_store::{Store, Table};
use berth_types::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::ipam::{host_routes, Ipv4Net, Ipv6Net, Pools};

const NETWORKS: Table = Table::new("networks");

/// The networks every daemon has, in Docker's order.
pub const BUILTIN: [&str; 3] = ["bridge", "host", "none"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Network {
    pub id: String,
    pub name: String,
    /// bridge | host | null
    pub driver: String,
    pub created: String,
    pub subnet: Option<Ipv4Net>,
    pub gateway: Option<Ipv4Addr>,
    pub ip_range: Option<Ipv4Net>,
    pub internal: bool,
    pub attachable: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    /// The Linux bridge of a bridge network.
    pub bridge: String,
    /// Whether the user gave the subnet (shown in IPAM config either way).
    pub user_subnet: bool,
    /// Dual stack: an IPv6 subnet beside the IPv4 one (`EnableIPv6`).
    #[serde(default)]
    pub enable_ipv6: bool,
    #[serde(default)]
    pub subnet6: Option<Ipv6Net>,
    #[serde(default)]
    pub gateway6: Option<std::net::Ipv6Addr>,
    #[serde(default)]
    pub ip_range6: Option<Ipv6Net>,
    #[serde(default)]
    pub user_subnet6: bool,
    /// More IPv4 subnets after the first (`--subnet a --subnet b`): used in order once the ones
    /// before are full, each with its gateway on the bridge.
    #[serde(default)]
    pub more_subnets: Vec<SubnetConfig>,
}

/// One more IPv4 subnet of a network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubnetConfig {
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub ip_range: Option<Ipv4Net>,
}

impl Network {
    /// Every IPv4 subnet with its gateway and range, the first one first.
    pub fn v4_subnets(&self) -> Vec<SubnetConfig> {
        let first = self.subnet.map(|s| SubnetConfig {
            subnet: s,
            gateway: self.gateway.unwrap_or_else(|| s.nth(1)),
            ip_range: self.ip_range,
        });
        first.into_iter().chain(self.more_subnets.iter().cloned()).collect()
    }

    pub fn builtin(&self) -> bool {
        BUILTIN.contains(&self.name.as_str())
    }
    /// Name resolution between containers is for user-defined networks only, as in Docker.
    pub fn user_defined(&self) -> bool {
        !self.builtin()
    }
}

/// A container's attachment to a network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    pub network_id: String,
    pub network_name: String,
    pub endpoint_id: String,
    pub aliases: Vec<String>,
    /// Requested with `--ip`; kept across restarts.
    pub static_ip: Option<Ipv4Addr>,
    /// Assigned while the container runs.
    pub ip: Option<Ipv4Addr>,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    pub mac: String,
    /// Requested with `--mac-address` (`EndpointsConfig[].MacAddress`); kept across restarts.
    #[serde(default)]
    pub static_mac: Option<String>,
    /// The host end of the veth pair while running.
    pub host_veth: String,
    /// Legacy links on a user-defined network (`target:alias`): the alias resolves, from this
    /// container only, to the target.
    #[serde(default)]
    pub links: Vec<String>,
    /// `DriverOpts` as given (each applied: the interface name, its sysctls).
    #[serde(default)]
    pub driver_opts: BTreeMap<String, String>,
    /// `GwPriority`: the endpoint with the highest gives the container its default route.
    #[serde(default)]
    pub gw_priority: i64,
    /// `IPAMConfig.LinkLocalIPs`: extra link-local addresses on the interface.
    #[serde(default)]
    pub link_local_ips: Vec<std::net::IpAddr>,
    /// The interface in the container while running (`eth<n>` or `DriverOpts`' name).
    #[serde(default)]
    pub if_name: String,
    /// Requested with `--ip6` (`IPAMConfig.IPv6Address`); kept across restarts.
    #[serde(default)]
    pub static_ip6: Option<std::net::Ipv6Addr>,
    /// The IPv6 address while running, on a dual-stack network.
    #[serde(default)]
    pub ip6: Option<std::net::Ipv6Addr>,
    #[serde(default)]
    pub prefix6: u8,
    #[serde(default)]
    pub gateway6: Option<std::net::Ipv6Addr>,
}

/// The endpoint driver options the bridge driver applies, as Docker names them.
pub const OPT_IFNAME: &str = "com.docker.network.endpoint.ifname";
pub const OPT_SYSCTLS: &str = "com.docker.network.endpoint.sysctls";

impl Endpoint {
    /// The interface name in the container: `DriverOpts`' or `eth<index>`.
    pub fn wanted_if_name(&self, index: usize) -> String {
        self.driver_opts.get(OPT_IFNAME).cloned().unwrap_or_else(|| format!("eth{index}"))
    }

    /// The per-interface sysctls of `DriverOpts` (`net.ipv4.conf.IFNAME.x=v,...`), `IFNAME` replaced.
    pub fn sysctls(&self, if_name: &str) -> Vec<(String, String)> {
        self.driver_opts
            .get(OPT_SYSCTLS)
            .into_iter()
            .flat_map(|s| s.split(','))
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (placeholder(k.trim(), if_name), v.trim().to_string()))
            .collect()
    }
}

/// A sysctl key with its interface segment (`IFNAME`, as Docker writes it, in any case) named.
fn placeholder(key: &str, if_name: &str) -> String {
    let parts: Vec<&str> = key.split('.').collect();
    match parts.as_slice() {
        ["net", fam, "conf", p, rest @ ..] if p.eq_ignore_ascii_case("IFNAME") => {
            format!("net.{fam}.conf.{if_name}.{}", rest.join("."))
        }
        _ => key.to_string(),
    }
}

/// Checks endpoint `DriverOpts`: the options the bridge driver applies, with valid values; any
/// other is refused (never stored as if applied).
pub fn check_driver_opts(opts: &BTreeMap<String, String>) -> Result<()> {
    for (k, v) in opts {
        match k.as_str() {
            OPT_IFNAME => {
                let ok = !v.is_empty()
                    && v.len() <= 15
                    && v != "."
                    && v != ".."
                    && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
                if !ok {
                    return Err(Error::invalid(format!("invalid interface name {v:?} in {OPT_IFNAME}")));
                }
            }
            OPT_SYSCTLS => {
                for kv in v.split(',') {
                    // (the docker CLI lower-cases driver options: `ifname` is the placeholder too)
                    let kv = &placeholder(kv, "IFNAME");
                    let (key, val) = kv.split_once('=').ok_or_else(|| {
                        Error::invalid(format!("invalid sysctl {kv:?} in {OPT_SYSCTLS}: use KEY=VALUE"))
                    })?;
                    let key = key.trim();
                    let per_if = ["net.ipv4.conf.IFNAME.", "net.ipv6.conf.IFNAME."].iter().any(|p| key.starts_with(p));
                    let tail = key.rsplit('.').next().unwrap_or("");
                    if !per_if || tail.is_empty() || !tail.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                        return Err(Error::invalid(format!(
                            "unable to configure sysctl {key:?}: only net.ipv4.conf.IFNAME.* and net.ipv6.conf.IFNAME.* may be set for an endpoint"
                        )));
                    }
                    if val.trim().is_empty() || val.contains('\n') {
                        return Err(Error::invalid(format!("invalid value for sysctl {key}")));
                    }
                }
            }
            other => {
                return Err(Error::invalid(format!(
                    "endpoint driver option {other:?} is not supported by the bridge driver (supported: {OPT_IFNAME}, {OPT_SYSCTLS})"
                )))
            }
        }
    }
    Ok(())
}

/// A MAC address a client may ask for: six hex octets, unicast. Normalised to lower case.
pub fn parse_mac(s: &str) -> Option<String> {
    let octets: Vec<u8> =
        s.split(':').map(|o| u8::from_str_radix(o, 16).ok().filter(|_| o.len() == 2)).collect::<Option<_>>()?;
    (octets.len() == 6 && octets[0] & 1 == 0).then(|| s.to_ascii_lowercase())
}

/// Options for a new network, from the API.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub name: String,
    pub driver: String,
    pub internal: bool,
    pub attachable: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    pub subnet: Option<Ipv4Net>,
    pub gateway: Option<Ipv4Addr>,
    pub ip_range: Option<Ipv4Net>,
    pub enable_ipv6: bool,
    pub subnet6: Option<Ipv6Net>,
    pub gateway6: Option<std::net::Ipv6Addr>,
    pub ip_range6: Option<Ipv6Net>,
    /// IPv4 subnets after the first: (subnet, gateway, range).
    pub more_subnets: Vec<(Ipv4Net, Option<Ipv4Addr>, Option<Ipv4Net>)>,
}

pub struct NetworkStore {
    store: Arc<Store>,
    pools: Pools,
}

fn hex_bytes(id: &str) -> Vec<u8> {
    (0..id.len() / 2).filter_map(|i| u8::from_str_radix(&id[2 * i..2 * i + 2], 16).ok()).collect()
}

/// Docker's MAC for an IPv4 address: 02:42 then the address bytes.
pub fn mac_for(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

impl NetworkStore {
    /// Opens the store and makes sure `bridge` (on `bridge_name`, subnet `bip` or a free one),
    /// `host` and `none` exist.
    pub fn open(store: Arc<Store>, pools: Pools, bridge_name: &str, bip: Option<Ipv4Net>) -> Result<NetworkStore> {
        let s = NetworkStore { store, pools };
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let mk = |name: &str, driver: &str| Network {
            id: berth_types::new_id(),
            name: name.into(),
            driver: driver.into(),
            created: now.clone(),
            subnet: None,
            gateway: None,
            ip_range: None,
            internal: false,
            attachable: false,
            labels: BTreeMap::new(),
            options: BTreeMap::new(),
            bridge: String::new(),
            user_subnet: false,
            enable_ipv6: false,
            subnet6: None,
            gateway6: None,
            ip_range6: None,
            user_subnet6: false,
            more_subnets: Vec::new(),
        };
        let existing = s.get_by_name("bridge")?;
        let mut bridge = existing.unwrap_or_else(|| mk("bridge", "bridge"));
        bridge.bridge = bridge_name.to_string();
        match bip {
            Some(b) => {
                bridge.subnet = Some(b.network());
                bridge.gateway = Some(b.addr);
            }
            None if bridge.subnet.is_none() => {
                let mut taken = host_routes();
                taken.extend(s.list()?.iter().flat_map(|n| n.v4_subnets()).map(|c| c.subnet));
                let sub = s.pools.allocate(&taken)?;
                bridge.subnet = Some(sub);
                bridge.gateway = Some(sub.nth(1));
            }
            None => {}
        }
        bridge.options.insert("com.docker.network.bridge.name".into(), bridge_name.into());
        bridge.options.insert("com.docker.network.bridge.default_bridge".into(), "true".into());
        s.store.put(NETWORKS, &bridge.id, &bridge)?;
        for (name, driver) in [("host", "host"), ("none", "null")] {
            if s.get_by_name(name)?.is_none() {
                let n = mk(name, driver);
                s.store.put(NETWORKS, &n.id, &n)?;
            }
        }
        Ok(s)
    }

    pub fn list(&self) -> Result<Vec<Network>> {
        let mut v: Vec<Network> = self.store.list::<Network>(NETWORKS)?.into_iter().map(|(_, n)| n).collect();
        v.sort_by(|a, b| a.created.cmp(&b.created).then(a.name.cmp(&b.name)));
        Ok(v)
    }

    fn get_by_name(&self, name: &str) -> Result<Option<Network>> {
        Ok(self.list()?.into_iter().find(|n| n.name == name))
    }

    /// By full id, name, or unique id prefix, as Docker resolves networks.
    pub fn get(&self, name: &str) -> Result<Network> {
        let all = self.list()?;
        if let Some(n) = all.iter().find(|n| n.id == name || n.name == name) {
            return Ok(n.clone());
        }
        let hits: Vec<&Network> = all.iter().filter(|n| n.id.starts_with(name)).collect();
        match hits.len() {
            1 => Ok(hits[0].clone()),
            0 => Err(Error::not_found(format!("network {name} not found"))),
            _ => Err(Error::invalid(format!("network {name} is ambiguous ({} matches found on name)", hits.len()))),
        }
    }

    pub fn create(&self, o: CreateOptions) -> Result<Network> {
        if o.name.is_empty() {
            return Err(Error::invalid("network name must not be empty"));
        }
        if self.get_by_name(&o.name)?.is_some() {
            return Err(Error::conflict(format!("network with name {} already exists", o.name)));
        }
        let driver = if o.driver.is_empty() { "bridge".to_string() } else { o.driver.clone() };
        if driver != "bridge" {
            return Err(Error::not_found(format!("plugin \"{driver}\" not found")));
        }
        let mut taken = host_routes();
        taken.extend(self.list()?.iter().flat_map(|n| n.v4_subnets()).map(|c| c.subnet));
        let more_subnets = Self::more_subnets(&o, &taken)?;
        let (subnet, user_subnet) = match o.subnet {
            Some(s) => {
                let s = s.network();
                if let Some(t) = taken.iter().find(|t| t.overlaps(&s)) {
                    return Err(Error::conflict(format!(
                        "invalid pool request: Pool overlaps with other one on this address space ({t})"
                    )));
                }
                (s, true)
            }
            None => (self.pools.allocate(&taken)?, false),
        };
        if let Some(g) = o.gateway {
            if !subnet.contains(g) {
                return Err(Error::invalid(format!("invalid gateway {g}: not in subnet {subnet}")));
            }
        }
        if let Some(r) = o.ip_range {
            if !subnet.contains(r.addr) || r.len < subnet.len {
                return Err(Error::invalid(format!("invalid ip-range {r}: not within subnet {subnet}")));
            }
        }
        let id = berth_types::new_id();
        let (subnet6, gateway6, user_subnet6) = self.ipv6_for(&o, &id)?;
        let bridge =
            o.options.get("com.docker.network.bridge.name").cloned().unwrap_or_else(|| format!("br-{}", &id[..12]));
        crate::link::validate_bridge_name(&bridge)?;
        let n = Network {
            id: id.clone(),
            name: o.name,
            driver,
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            subnet: Some(subnet),
            gateway: Some(o.gateway.unwrap_or_else(|| subnet.nth(1))),
            ip_range: o.ip_range,
            internal: o.internal,
            attachable: o.attachable,
            labels: o.labels,
            options: o.options,
            bridge,
            user_subnet,
            enable_ipv6: o.enable_ipv6,
            subnet6,
            gateway6,
            ip_range6: o.ip_range6,
            user_subnet6,
            more_subnets,
        };
        self.store.put(NETWORKS, &id, &n)?;
        Ok(n)
    }

    /// The IPv4 subnets after the first, checked as the first is: no overlap with other networks
    /// (or each other), gateway and range inside.
    fn more_subnets(o: &CreateOptions, taken: &[Ipv4Net]) -> Result<Vec<SubnetConfig>> {
        let mut out: Vec<SubnetConfig> = Vec::new();
        let first = o.subnet.map(|s| s.network());
        for (s, gw, range) in &o.more_subnets {
            let s = s.network();
            let clash = taken.iter().chain(first.iter()).chain(out.iter().map(|c| &c.subnet)).find(|t| t.overlaps(&s));
            if let Some(t) = clash {
                return Err(Error::conflict(format!(
                    "invalid pool request: Pool overlaps with other one on this address space ({t})"
                )));
            }
            let gateway = gw.unwrap_or_else(|| s.nth(1));
            if !s.contains(gateway) {
                return Err(Error::invalid(format!("invalid gateway {gateway}: not in subnet {s}")));
            }
            if let Some(r) = range {
                if !s.contains(r.addr) || r.len < s.len {
                    return Err(Error::invalid(format!("invalid ip-range {r}: not within subnet {s}")));
                }
            }
            out.push(SubnetConfig { subnet: s, gateway, ip_range: *range });
        }
        if !out.is_empty() && first.is_none() {
            return Err(Error::invalid("more subnets need a first one"));
        }
        Ok(out)
    }

    /// A new network's IPv6 side: the given subnet (it must not overlap another network's) or a
    /// unique-local /64, and its gateway (`::1` by default). Nothing without `EnableIPv6`; an IPv6
    /// subnet without it is refused, never ignored.
    fn ipv6_for(&self, o: &CreateOptions, id: &str) -> Result<(Option<Ipv6Net>, Option<std::net::Ipv6Addr>, bool)> {
        if !o.enable_ipv6 {
            if o.subnet6.is_some() || o.gateway6.is_some() || o.ip_range6.is_some() {
                return Err(Error::invalid(
                    "an IPv6 subnet, gateway or range needs IPv6 enabled on the network (--ipv6 / EnableIPv6)",
                ));
            }
            return Ok((None, None, false));
        }
        let taken: Vec<Ipv6Net> = self.list()?.iter().filter_map(|n| n.subnet6).collect();
        let (subnet, user) = match o.subnet6 {
            Some(s) => {
                let s = s.network();
                if let Some(t) = taken.iter().find(|t| t.overlaps(&s)) {
                    return Err(Error::conflict(format!(
                        "invalid pool request: Pool overlaps with other one on this address space ({t})"
                    )));
                }
                (s, true)
            }
            None => {
                let mut seed = hex_bytes(id);
                let mut s = Ipv6Net::unique_local(&seed);
                while taken.iter().any(|t| t.overlaps(&s)) {
                    seed.rotate_left(1);
                    s = Ipv6Net::unique_local(&seed);
                }
                (s, false)
            }
        };
        let gw = o.gateway6.unwrap_or_else(|| subnet.nth(1));
        if !subnet.contains(gw) {
            return Err(Error::invalid(format!("invalid gateway {gw}: not in subnet {subnet}")));
        }
        if let Some(r) = o.ip_range6 {
            if !subnet.contains(r.addr) || r.len < subnet.len {
                return Err(Error::invalid(format!("invalid ip-range {r}: not within subnet {subnet}")));
            }
        }
        Ok((Some(subnet), Some(gw), user))
    }

    /// The default bridge's IPv6 side (daemon.json `ipv6` and `fixed-cidr-v6`): `None` IPv4 only,
    /// `Some(None)` a unique-local /64 of its own.
    pub fn set_default_bridge_ipv6(&self, v6: Option<Option<Ipv6Net>>) -> Result<()> {
        let Some(mut b) = self.get_by_name("bridge")? else { return Ok(()) };
        b.enable_ipv6 = v6.is_some();
        b.user_subnet6 = matches!(v6, Some(Some(_)));
        b.subnet6 = match v6 {
            None => None,
            Some(Some(s)) => Some(s.network()),
            Some(None) => Some(b.subnet6.unwrap_or_else(|| Ipv6Net::unique_local(&hex_bytes(&b.id)))),
        };
        b.gateway6 = b.subnet6.map(|s| s.nth(1));
        self.store.put(NETWORKS, &b.id, &b)
    }

    pub fn remove(&self, n: &Network) -> Result<()> {
        if n.builtin() {
            return Err(Error::new(
                berth_types::ErrorKind::Forbidden,
                format!("{} is a pre-defined network and cannot be removed", n.name),
            ));
        }
        self.store.delete(NETWORKS, &n.id)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn macs_parse_unicast_only() {
        assert_eq!(super::parse_mac("02:42:AC:11:00:02").as_deref(), Some("02:42:ac:11:00:02"));
        assert_eq!(super::parse_mac("03:00:00:00:00:01"), None, "multicast");
        assert_eq!(super::parse_mac("02:42:ac:11:00"), None);
        assert_eq!(super::parse_mac("2:42:ac:11:00:02"), None);
        assert_eq!(super::parse_mac("zz:42:ac:11:00:02"), None);
    }

    use super::*;

    fn open() -> (tempfile::TempDir, NetworkStore) {
        let d = tempfile::tempdir().unwrap();
        let st = Arc::new(Store::open(&d.path().join("db")).unwrap());
        let pools = Pools(vec![("10.250.0.0/16".parse().unwrap(), 24)]);
        let s = NetworkStore::open(st, pools, "btest0", Some("10.249.0.1/24".parse().unwrap())).unwrap();
        (d, s)
    }

    #[test]
    fn builtins_and_user_networks() {
        let (_d, s) = open();
        let names: Vec<String> = s.list().unwrap().into_iter().map(|n| n.name).collect();
        for b in BUILTIN {
            assert!(names.contains(&b.to_string()));
        }
        let br = s.get("bridge").unwrap();
        assert_eq!(br.subnet.unwrap().to_string(), "10.249.0.0/24");
        assert_eq!(br.gateway.unwrap().to_string(), "10.249.0.1");
        let n = s.create(CreateOptions { name: "app".into(), ..Default::default() }).unwrap();
        assert!(n.subnet.unwrap().to_string().starts_with("10.250."));
        assert_eq!(s.get(&n.id[..6]).unwrap().name, "app");
        assert_eq!(
            s.create(CreateOptions { name: "app".into(), ..Default::default() }).unwrap_err().kind,
            berth_types::ErrorKind::Conflict
        );
        let clash = CreateOptions { name: "x".into(), subnet: n.subnet, ..Default::default() };
        assert!(s.create(clash).is_err());
        assert!(s.remove(&s.get("host").unwrap()).is_err());
        s.remove(&n).unwrap();
        assert!(s.get("app").is_err());
        assert_eq!(mac_for("172.18.0.2".parse().unwrap()), "02:42:ac:12:00:02");
    }
}
