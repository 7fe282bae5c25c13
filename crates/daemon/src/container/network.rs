//! Containers on networks: endpoints chosen at create, plumbed between the shim's create and
//! START (the init waits in its namespaces), published ports proxied once it runs, and /etc/hosts
//! kept listing the peers on shared user-defined networks.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use std::sync::Arc;

use berth_api::hostconfig::{PortBinding, PortMap};
use berth_api::network::EndpointSettings;
use berth_network::firewall::PortRule;
use berth_network::link::{self, Attach};
use berth_network::store::mac_for;
use berth_network::{ipam, Endpoint};
use berth_types::{Error, Result};

use super::record::ContainerRecord;
use super::{blocking, ContainerService};

pub const DEFAULT_HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n";

/// The network a NetworkMode names, for modes that attach to one.
pub fn mode_network(mode: &str) -> Option<&str> {
    match mode {
        "" | "default" | "bridge" => Some("bridge"),
        "host" | "none" => None,
        m if m.starts_with("container:") => None,
        m => Some(m),
    }
}

/// An endpoint's `IPAMConfig` as asked (null when nothing was).
fn ipam_config(ep: &Endpoint) -> Option<berth_api::network::EndpointIpamConfig> {
    if ep.static_ip.is_none() && ep.static_ip6.is_none() && ep.link_local_ips.is_empty() {
        return None;
    }
    Some(berth_api::network::EndpointIpamConfig {
        ipv4_address: ep.static_ip.map(|ip| ip.to_string()).unwrap_or_default(),
        ipv6_address: ep.static_ip6.map(|ip| ip.to_string()).unwrap_or_default(),
        link_local_ips: (!ep.link_local_ips.is_empty())
            .then(|| ep.link_local_ips.iter().map(|i| i.to_string()).collect()),
    })
}

/// `DNSNames` as Docker builds them: the name, the aliases, the short id, the hostname, each once.
fn dns_names(r: &ContainerRecord, ep: &Endpoint) -> Vec<String> {
    let mut d = vec![r.name.clone()];
    d.extend(ep.aliases.iter().cloned());
    d.push(r.id[..12].to_string());
    d.push(r.config.hostname.clone());
    let mut seen = std::collections::HashSet::new();
    d.retain(|x| !x.is_empty() && seen.insert(x.clone()));
    d
}

impl ContainerService {
    /// At create: the endpoints of the container's NetworkMode and NetworkingConfig.
    pub(super) async fn resolve_endpoints(&self, rec: &ContainerRecord) -> Result<Vec<Endpoint>> {
        let mode = rec.host_config.network_mode.as_str();
        // `NetworkDisabled`: its own network namespace with loopback only, as Docker allocates no
        // network for it.
        if rec.config.network_disabled && mode != "host" && !mode.starts_with("container:") {
            return Ok(Vec::new());
        }
        if let Some(other) = mode.strip_prefix("container:") {
            self.get(other)?;
            return Ok(Vec::new());
        }
        let Some(primary) = mode_network(mode) else { return Ok(Vec::new()) };
        let configs: BTreeMap<String, EndpointSettings> = rec
            .networking_config
            .iter()
            .flat_map(|n| n.endpoints_config.iter())
            .map(|(k, v)| (k.clone(), v.clone().unwrap_or_default()))
            .collect();
        let mut names = vec![primary.to_string()];
        names.extend(
            configs
                .keys()
                .filter(|k| k.as_str() != primary && !(primary == "bridge" && k.as_str() == "default"))
                .cloned(),
        );
        let mut out = Vec::new();
        for name in names {
            // A 404 here would make the docker CLI try to pull the image: Docker answers 400.
            let n = self.networks.get(&name).await.map_err(|e| match e.kind {
                berth_types::ErrorKind::NotFound => Error::invalid(e.message),
                _ => e,
            })?;
            if n.driver != "bridge" {
                return Err(Error::invalid(format!("container cannot be connected to network {}", n.name)));
            }
            let mut cfg = configs
                .get(&name)
                .or_else(|| configs.get(&n.id))
                .or_else(|| if n.name == "bridge" { configs.get("default") } else { None })
                .cloned()
                .unwrap_or_default();
            // The deprecated top-level Config.MacAddress (API < 1.44) belongs to the primary network.
            if out.is_empty() && cfg.mac_address.is_empty() {
                cfg.mac_address = rec.config.mac_address.clone();
            }
            out.push(self.endpoint_for(&n, &cfg, rec)?);
        }
        Ok(out)
    }

    fn endpoint_for(
        &self,
        n: &berth_network::Network,
        cfg: &EndpointSettings,
        rec: &ContainerRecord,
    ) -> Result<Endpoint> {
        let mut aliases: Vec<String> = cfg.aliases.clone().unwrap_or_default();
        let ipam = cfg.ipam_config.clone().unwrap_or_default();
        let static_ip = match Some(ipam.ipv4_address.as_str()).filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => {
                let ip: Ipv4Addr = s.parse().map_err(|_| Error::invalid(format!("invalid IPv4 address: {s}")))?;
                // Docker's two refusals, in its order: not on the built-in networks at all, then
                // only where the user chose the subnet.
                if !n.user_defined() {
                    return Err(Error::invalid("user specified IP address is supported on user defined networks only"));
                }
                if !n.user_subnet {
                    return Err(Error::invalid("user specified IP address is supported only when connecting to networks with user configured subnets"));
                }
                if !n.v4_subnets().iter().any(|c| c.subnet.contains(ip)) {
                    return Err(Error::invalid(format!("no configured subnet contains IP address {ip}")));
                }
                Some(ip)
            }
        };
        if n.user_defined() {
            // Docker adds the short id as an alias on user-defined networks.
            aliases.push(rec.id[..12].to_string());
        }
        let static_mac = match Some(cfg.mac_address.as_str()).filter(|s| !s.is_empty()) {
            None => None,
            Some(m) => Some(
                berth_network::store::parse_mac(m)
                    .ok_or_else(|| Error::invalid(format!("invalid MAC address: {m}")))?,
            ),
        };
        let mut links: Vec<String> = Vec::new();
        if n.user_defined() {
            let asked = cfg.links.iter().flatten();
            // HostConfig.Links on a user-defined network are links of its endpoint, as Docker has them.
            let legacy = super::links::of(&rec.host_config).into_iter().map(|l| format!("{}:{}", l.target, l.alias));
            for l in
                asked.map(|s| super::links::parse(s).map(|l| format!("{}:{}", l.target, l.alias))).chain(legacy.map(Ok))
            {
                let l = l?;
                if !links.contains(&l) {
                    links.push(l);
                }
            }
        }
        let driver_opts: BTreeMap<String, String> = cfg.driver_opts.clone().unwrap_or_default();
        berth_network::store::check_driver_opts(&driver_opts)?;
        let gw_priority = cfg.gw_priority;
        let mut link_local_ips = Vec::new();
        for s in ipam.link_local_ips.iter().flatten() {
            let ip: std::net::IpAddr =
                s.parse().map_err(|_| Error::invalid(format!("invalid link-local IP address: {s}")))?;
            let link_local = match ip {
                std::net::IpAddr::V4(a) => a.is_link_local(),
                std::net::IpAddr::V6(a) => (a.segments()[0] & 0xffc0) == 0xfe80,
            };
            if !link_local {
                return Err(Error::invalid(format!("invalid link-local IP address: {s}")));
            }
            link_local_ips.push(ip);
        }
        let static_ip6 = match Some(ipam.ipv6_address.as_str()).filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => {
                let ip: std::net::Ipv6Addr =
                    s.parse().map_err(|_| Error::invalid(format!("invalid IPv6 address: {s}")))?;
                let Some(sub) = n.subnet6 else {
                    return Err(Error::invalid(format!(
                        "network {} has no IPv6 subnet: an IPv6 address cannot be assigned on it",
                        n.name
                    )));
                };
                if !n.user_defined() {
                    return Err(Error::invalid("user specified IP address is supported on user defined networks only"));
                }
                if !n.user_subnet6 {
                    return Err(Error::invalid("user specified IP address is supported only when connecting to networks with user configured subnets"));
                }
                if !sub.contains(ip) {
                    return Err(Error::invalid(format!("no configured subnet contains IP address {ip}")));
                }
                Some(ip)
            }
        };
        Ok(Endpoint {
            static_ip6,
            ip6: None,
            prefix6: 0,
            gateway6: None,
            driver_opts,
            gw_priority,
            link_local_ips,
            links,
            if_name: String::new(),
            network_id: n.id.clone(),
            network_name: n.name.clone(),
            endpoint_id: String::new(),
            aliases,
            static_ip,
            ip: None,
            prefix_len: n.subnet.map(|s| s.len).unwrap_or(0),
            gateway: n.gateway,
            mac: String::new(),
            static_mac,
            host_veth: String::new(),
        })
    }

    /// Picks addresses for a starting (or connecting) container's endpoints. The picking is
    /// serialised and the addresses stay taken through the returned lease until it is dropped:
    /// the caller drops it once the endpoints are in the container's record (or the start failed),
    /// so two starts never share one.
    pub(super) fn assign_addresses(&self, id: &str, eps: &mut [Endpoint]) -> Result<AddressLease<'_>> {
        // The lease before the guard: on an early return (an address in use, a full subnet) locals
        // drop in reverse order, so the guard goes first and then the lease, whose drop takes the
        // same lock to forget what this call had picked. The other way round the lease's drop
        // waited for the guard it was dropped under: a worker thread stuck for good.
        let lease = AddressLease { pending: &self.ipam_lock, container: id.to_string() };
        let mut pending = self.ipam_lock.lock().unwrap_or_else(|e| e.into_inner());
        // A container's own earlier lease (a retried start) is no longer in flight.
        pending.retain(|p| p.container != id);
        for ep in eps.iter_mut() {
            let n = self.networks.store().get(&ep.network_id)?;
            let subnets = n.v4_subnets();
            if subnets.is_empty() {
                return Err(Error::internal(format!("network {} has no subnet", n.name)));
            }
            let mut used: Vec<Ipv4Addr> = subnets.iter().map(|c| c.gateway).collect();
            for e in self.all() {
                let r = e.record();
                if r.id == id {
                    continue;
                }
                used.extend(r.endpoints.iter().filter(|x| x.network_id == n.id).filter_map(|x| x.ip.or(x.static_ip)));
            }
            used.extend(pending.iter().filter(|p| p.network == n.id).filter_map(|p| p.ip));
            let ip = match ep.static_ip {
                Some(ip) if used.contains(&ip) => {
                    return Err(Error::conflict(format!("Address already in use: {ip} on network {}", n.name)))
                }
                Some(ip) => ip,
                // The subnets in order: a later one once the ones before are full.
                None => subnets
                    .iter()
                    .find_map(|c| ipam::next_address(&c.subnet, c.ip_range.as_ref(), &used).ok())
                    .ok_or_else(|| Error::unavailable(format!("no available IPv4 addresses on network {}", n.name)))?,
            };
            let home = subnets.iter().find(|c| c.subnet.contains(ip)).unwrap_or(&subnets[0]);
            ep.ip = Some(ip);
            ep.prefix_len = home.subnet.len;
            ep.gateway = Some(home.gateway);
            if let Some(sub6) = n.subnet6 {
                let mut used6: Vec<std::net::Ipv6Addr> = n.gateway6.into_iter().collect();
                for e in self.all() {
                    let r = e.record();
                    if r.id != id {
                        used6.extend(
                            r.endpoints.iter().filter(|x| x.network_id == n.id).filter_map(|x| x.ip6.or(x.static_ip6)),
                        );
                    }
                }
                used6.extend(pending.iter().filter(|p| p.network == n.id).filter_map(|p| p.ip6));
                let ip6 = match ep.static_ip6 {
                    Some(ip) if used6.contains(&ip) => {
                        return Err(Error::conflict(format!("Address already in use: {ip} on network {}", n.name)))
                    }
                    Some(ip) => ip,
                    None => ipam::next_address6(&sub6, n.ip_range6.as_ref(), &used6)?,
                };
                ep.ip6 = Some(ip6);
                ep.prefix6 = sub6.len;
                ep.gateway6 = n.gateway6;
            }
            ep.mac = ep.static_mac.clone().unwrap_or_else(|| mac_for(ip));
            ep.endpoint_id = berth_types::new_id();
            ep.host_veth = link::veth_name();
            pending.push(PendingAddress { container: id.to_string(), network: n.id.clone(), ip: ep.ip, ip6: ep.ip6 });
        }
        Ok(lease)
    }

    /// Creates the veths of `eps` into the namespace of `pid` (blocking).
    /// The endpoint that gives a container its default route: the highest `GwPriority` among those
    /// with an address on a network with a way out (not internal); the first one on a tie.
    pub(super) fn gateway_endpoint(networks: &berth_network::NetworkStore, eps: &[Endpoint]) -> Option<usize> {
        let mut best: Option<(usize, i64)> = None;
        for (i, ep) in eps.iter().enumerate() {
            let Ok(n) = networks.get(&ep.network_id) else { continue };
            if n.internal || ep.ip.is_none() || ep.gateway.is_none() {
                continue;
            }
            if best.is_none_or(|(_, p)| ep.gw_priority > p) {
                best = Some((i, ep.gw_priority));
            }
        }
        best.map(|b| b.0)
    }

    /// `gateway`: which of `eps` gives the default route (see [`gateway_endpoint`]).
    pub(super) fn plumb(
        networks: &berth_network::NetworkStore,
        pid: i32,
        eps: &[Endpoint],
        first_index: usize,
        gateway: Option<usize>,
    ) -> Result<()> {
        for (i, ep) in eps.iter().enumerate() {
            let n = networks.get(&ep.network_id)?;
            let Some(ip) = ep.ip else { continue };
            for c in n.v4_subnets() {
                link::ensure_bridge(&n.bridge, c.gateway, &c.subnet)?;
            }
            if let (Some(s6), Some(g6)) = (n.subnet6, n.gateway6) {
                link::ensure_bridge6(&n.bridge, g6, &s6)?;
            }
            let if_name = if ep.if_name.is_empty() { ep.wanted_if_name(first_index + i) } else { ep.if_name.clone() };
            let sysctls = ep.sysctls(&if_name);
            link::attach(
                pid,
                &Attach {
                    bridge: &n.bridge,
                    host_veth: &ep.host_veth,
                    if_name: &if_name,
                    ip,
                    prefix_len: ep.prefix_len,
                    gateway: ep.gateway,
                    mac: &ep.mac,
                    default_route: gateway == Some(i) && !n.internal,
                    link_local: &ep.link_local_ips,
                    sysctls: &sysctls,
                    ip6: ep.ip6.map(|ip| (ip, ep.prefix6)),
                    gateway6: ep.gateway6,
                },
            )?;
        }
        Ok(())
    }

    /// /etc/hosts of a container: its own address and `--add-host` entries. Peers are found through
    /// the embedded DNS, as with Docker, never written here.
    fn hosts_content(&self, rec: &ContainerRecord, gateway: Option<std::net::Ipv4Addr>) -> String {
        let mut s = if rec.host_config.network_mode == "host" {
            std::fs::read_to_string("/etc/hosts").unwrap_or_else(|_| DEFAULT_HOSTS.to_string())
        } else {
            DEFAULT_HOSTS.to_string()
        };
        if let Some(ip) = rec.endpoints.iter().find_map(|e| e.ip) {
            s.push_str(&format!("{ip}\t{}\n", rec.config.hostname));
        }
        if let Some(ip) = rec.endpoints.iter().find_map(|e| e.ip6) {
            s.push_str(&format!("{ip}\t{}\n", rec.config.hostname));
        }
        s.push_str(&self.link_hosts(rec));
        for h in rec.host_config.extra_hosts.iter().flatten() {
            if let Some((name, ip)) = h.split_once(':') {
                // Docker's `host-gateway` (`host.docker.internal:host-gateway`): the default
                // bridge's gateway, the host's address as containers reach it.
                match (ip, gateway) {
                    ("host-gateway", Some(gw)) => s.push_str(&format!("{gw}\t{name}\n")),
                    ("host-gateway", None) => {}
                    _ => s.push_str(&format!("{ip}\t{name}\n")),
                }
            }
        }
        s
    }

    /// Rewrites /etc/hosts in place (its inode is bind-mounted) for `rec` and for the running
    /// containers that link to it (a restarted link target has a new address). Peers on the same
    /// network are not in anyone's hosts file (the embedded DNS answers for them, as Docker's), so
    /// a start writes one file, not one per container on its network: rewriting them all made
    /// starting N containers on the default bridge cost N² file writes (180,000 at 600).
    pub(super) async fn refresh_hosts(&self, rec: &ContainerRecord) {
        // Read in place: cloning every record per start would be O(N) copies for the few linkers.
        let linkers: Vec<ContainerRecord> = self
            .all()
            .iter()
            .filter_map(|e| {
                let r = e.record.lock().expect("record lock");
                (r.id != rec.id && r.state.running() && Self::links_to(&r, rec)).then(|| r.clone())
            })
            .collect();
        // `host-gateway` is daemon.json's `host-gateway-ip`, else the default bridge's gateway.
        let gateway = match self.cfg.host_gateway_ip {
            Some(ip) => Some(ip),
            None => self.networks.get("bridge").await.ok().and_then(|n| n.gateway),
        };
        let writes: Vec<_> = std::iter::once(rec)
            .chain(linkers.iter())
            .map(|r| (self.container_dir(&r.id).join("hosts"), self.hosts_content(r, gateway)))
            .collect();
        let _ = blocking(move || {
            for (p, content) in writes {
                if let Ok(mut f) = std::fs::OpenOptions::new().write(true).truncate(true).open(&p) {
                    use std::io::Write;
                    let _ = f.write_all(content.as_bytes());
                }
            }
            Ok(())
        })
        .await;
    }

    /// Starts the userland proxies of a running container's published ports; returns the
    /// `NetworkSettings.Ports` it now has.
    pub(super) async fn publish_ports(&self, rec: &ContainerRecord) -> Result<PortMap> {
        let mut ports = PortMap::new();
        let Some(ip) = rec.endpoints.iter().find_map(|e| e.ip) else { return Ok(ports) };
        let mut bindings: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for (k, v) in &rec.host_config.port_bindings {
            let b = bindings.entry(k.clone()).or_default();
            b.extend(v.iter().flatten().map(|item| (item.host_ip.clone(), item.host_port.clone())));
        }
        let publish_all = rec.host_config.publish_all_ports;
        for k in rec.config.exposed_ports.iter().flat_map(|m| m.keys()) {
            let e = bindings.entry(k.clone()).or_default();
            if publish_all && e.is_empty() {
                e.push((String::new(), String::new()));
            }
        }
        let mut proxies = Vec::new();
        let mut rules = Vec::new();
        for (spec, list) in &bindings {
            let (port, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
            let cport: u16 = port.parse().map_err(|_| Error::invalid(format!("invalid container port {spec}")))?;
            let mut shown = Vec::new();
            let before: Vec<String> =
                rec.ports.get(spec).into_iter().flatten().flatten().map(|x| x.host_port.clone()).collect();
            for (idx, (hip, hport)) in list.iter().enumerate() {
                // After a berthd restart, keep the ports the container already had.
                let hport = if hport.is_empty() { before.get(idx).cloned().unwrap_or_default() } else { hport.clone() };
                let host_ip: IpAddr = if hip.is_empty() {
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                } else {
                    hip.parse().map_err(|_| Error::invalid(format!("invalid host IP {hip}")))?
                };
                let hp: u16 = if hport.is_empty() {
                    0
                } else {
                    hport
                        .split('-')
                        .next()
                        .unwrap_or("0")
                        .parse()
                        .map_err(|_| Error::invalid(format!("invalid host port {hport}")))?
                };
                let p = berth_network::proxy::publish(
                    proto,
                    SocketAddr::new(host_ip, hp),
                    SocketAddr::new(IpAddr::V4(ip), cport),
                )
                .await?;
                shown.push(PortBinding { host_ip: host_ip.to_string(), host_port: p.host.port().to_string() });
                if let IpAddr::V4(hip4) = host_ip {
                    rules.push(PortRule {
                        proto: proto.to_string(),
                        host_ip: Some(hip4),
                        host_port: p.host.port(),
                        addr: ip,
                        port: cport,
                    });
                }
                proxies.push(p);
            }
            ports.insert(spec.clone(), Some(shown).filter(|s| !s.is_empty()));
        }
        self.proxies.lock().expect("proxies lock").insert(rec.id.clone(), proxies);
        // Traffic from outside is DNATed in the kernel; the proxies serve the host's own loopback.
        let (fw, id) = (self.networks.firewall(), rec.id.clone());
        blocking(move || fw.set_ports(&id, rules)).await?;
        Ok(ports)
    }

    /// Stops a container's proxies and forgets its running addresses.
    pub(super) async fn release_network(&self, e: &super::Entry) {
        self.proxies.lock().expect("proxies lock").remove(&e.id());
        self.stop_dns(e);
        let (fw, id) = (self.networks.firewall(), e.id());
        if let Err(err) = blocking(move || fw.set_ports(&id, Vec::new())).await {
            tracing::warn!(container = %e.id(), "firewall: {err}");
        }
        let rec = e.update(|r| {
            for ep in r.endpoints.iter_mut() {
                ep.ip = None;
                ep.ip6 = None;
                ep.host_veth.clear();
                ep.endpoint_id.clear();
            }
            r.ports = PortMap::new();
        });
        for ep in &rec.endpoints {
            if let Ok(n) = self.networks.get(&ep.network_id).await {
                self.networks.publish("disconnect", &n, &[("container", rec.id.clone())]);
            }
        }
        self.refresh_hosts(&rec).await;
    }

    /// Running attachments of a network, for network inspect and remove.
    pub fn attached_to(&self, network_id: &str) -> Vec<(String, String, Endpoint)> {
        self.all()
            .iter()
            .map(|e| e.record())
            .filter(|r| r.state.running())
            .flat_map(|r| {
                r.endpoints
                    .iter()
                    .filter(|x| x.network_id == network_id && x.ip.is_some())
                    .map(|x| (r.id.clone(), r.name.clone(), x.clone()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Containers (any state) configured on a network.
    pub fn configured_on(&self, network_id: &str) -> Vec<String> {
        self.all()
            .iter()
            .map(|e| e.record())
            .filter(|r| r.endpoints.iter().any(|x| x.network_id == network_id))
            .map(|r| r.id)
            .collect()
    }

    /// `POST /networks/{id}/connect`.
    pub async fn connect(self: &Arc<Self>, network: &str, container: &str, cfg: EndpointSettings) -> Result<()> {
        let _timer = crate::metrics::network_action("connect");
        let n = self.networks.get(network).await?;
        let e = self.get(container)?;
        let _op = e.op.lock().await;
        let rec = e.record();
        if matches!(rec.host_config.network_mode.as_str(), "host" | "none")
            || rec.host_config.network_mode.starts_with("container:")
        {
            return Err(Error::invalid(format!("container sharing network namespace with another container or host cannot be connected to any other network ({})", rec.host_config.network_mode)));
        }
        if rec.endpoints.iter().any(|x| x.network_id == n.id) {
            return Err(Error::conflict(format!(
                "endpoint with name {} already exists in network {}",
                rec.name, n.name
            )));
        }
        let mut ep = self.endpoint_for(&n, &cfg, &rec)?;
        if rec.state.running() {
            // As configured, before any address: what a stopped container records.
            let unplumbed = ep.clone();
            let mut eps = vec![ep];
            let lease = self.assign_addresses(&rec.id, &mut eps)?;
            let index = rec.endpoints.len();
            eps[0].if_name = eps[0].wanted_if_name(index);
            let (store, pid, eps2, existing) =
                (self.networks.store(), rec.state.pid, eps.clone(), rec.endpoints.clone());
            let plumbed = blocking(move || {
                // The new network takes the default route when its GwPriority is the highest.
                let before = Self::gateway_endpoint(&store, &existing);
                let mut all = existing.clone();
                all.push(eps2[0].clone());
                let after = Self::gateway_endpoint(&store, &all);
                let takes_over = after == Some(existing.len());
                Self::plumb(&store, pid, &eps2, index, (takes_over && before.is_none()).then_some(0))?;
                if let (true, Some(_), Some(gw)) = (takes_over, before, eps2[0].gateway) {
                    link::set_default_route(pid, &eps2[0].if_name, gw)?;
                }
                Ok(())
            })
            .await;
            ep = eps.remove(0);
            match plumbed {
                Ok(()) => {
                    let rec = e.update(|r| r.endpoints.push(ep));
                    // Recorded: the address is taken by the record now.
                    drop(lease);
                    return self.connected(&e, &n, rec).await;
                }
                // It exited while being connected (its network namespace went with its process):
                // connected as a stopped container is, plumbed at its next start — not a raw
                // netlink error for a race the client cannot see.
                Err(_) if !std::path::Path::new(&format!("/proc/{pid}/ns/net")).exists() => {
                    drop(lease);
                    ep = unplumbed;
                }
                Err(err) => return Err(err),
            }
        }
        let rec = e.update(|r| r.endpoints.push(ep));
        self.connected(&e, &n, rec).await
    }

    /// What follows a connect once the endpoint is recorded: persisted, announced, and for a
    /// running container its hosts and DNS.
    async fn connected(
        self: &Arc<Self>,
        e: &Arc<super::Entry>,
        n: &berth_network::Network,
        rec: ContainerRecord,
    ) -> Result<()> {
        self.persist(&rec).await?;
        self.networks.publish("connect", n, &[("container", rec.id.clone())]);
        if rec.state.running() {
            self.refresh_hosts(&rec).await;
            // First user network of a running container: it gets the embedded DNS now, as with Docker.
            if super::dns::wants_dns(&rec) && e.dns.lock().expect("dns lock").is_none() {
                let path = self.container_dir(&rec.id).join("resolv.conf");
                let base = std::fs::read_to_string(&path).unwrap_or_default();
                let content = super::dns::resolv_conf(&rec, &base);
                let _ = blocking(move || {
                    // In place: the file is bind-mounted into the container.
                    let mut f = std::fs::OpenOptions::new().write(true).truncate(true).open(&path)?;
                    std::io::Write::write_all(&mut f, content.as_bytes())?;
                    Ok(())
                })
                .await;
                self.start_dns(e).await;
            }
        }
        Ok(())
    }

    /// `POST /networks/{id}/disconnect`.
    pub async fn disconnect(&self, network: &str, container: &str) -> Result<()> {
        let _timer = crate::metrics::network_action("disconnect");
        let n = self.networks.get(network).await?;
        let e = self.get(container)?;
        let _op = e.op.lock().await;
        let rec = e.record();
        let Some(ep) = rec.endpoints.iter().find(|x| x.network_id == n.id).cloned() else {
            return Err(Error::conflict(format!("container {} is not connected to network {}", rec.id, n.name)));
        };
        if rec.state.running() && !ep.host_veth.is_empty() {
            let veth = ep.host_veth.clone();
            let (store, pid, all, net) = (self.networks.store(), rec.state.pid, rec.endpoints.clone(), n.id.clone());
            blocking(move || {
                link::delete_link(&veth)?;
                // The default route went with it: the next network in line gives one.
                let was = Self::gateway_endpoint(&store, &all).map(|i| all[i].network_id.clone());
                let rest: Vec<Endpoint> = all.into_iter().filter(|x| x.network_id != net).collect();
                if was.as_deref() == Some(net.as_str()) {
                    if let Some(next) = Self::gateway_endpoint(&store, &rest).map(|i| &rest[i]) {
                        if let (Some(gw), false) = (next.gateway, next.if_name.is_empty()) {
                            link::set_default_route(pid, &next.if_name, gw)?;
                        }
                    }
                }
                Ok(())
            })
            .await?;
        }
        let rec = e.update(|r| r.endpoints.retain(|x| x.network_id != n.id));
        self.persist(&rec).await?;
        self.networks.publish("disconnect", &n, &[("container", rec.id.clone())]);
        self.refresh_hosts(&rec).await;
        Ok(())
    }

    /// Inspect's `NetworkSettings.Networks`, as API 1.45+ has it: `Aliases` exactly as asked (the
    /// short id berthd adds for DNS is in `DNSNames`; the server's version views add it back for
    /// older clients).
    pub(super) fn networks(&self, r: &ContainerRecord) -> BTreeMap<String, EndpointSettings> {
        let mut m = BTreeMap::new();
        for ep in &r.endpoints {
            let view = EndpointSettings {
                ipam_config: ipam_config(ep),
                links: (!ep.links.is_empty()).then(|| ep.links.clone()),
                aliases: user_aliases(r, ep),
                driver_opts: (!ep.driver_opts.is_empty()).then(|| ep.driver_opts.clone()),
                gw_priority: ep.gw_priority,
                mac_address: ep.mac.clone(),
                network_id: ep.network_id.clone(),
                endpoint_id: ep.endpoint_id.clone(),
                gateway: ep.ip.and(ep.gateway).map(|g| g.to_string()).unwrap_or_default(),
                ip_address: ep.ip.map(|i| i.to_string()).unwrap_or_default(),
                ip_prefix_len: if ep.ip.is_some() { i64::from(ep.prefix_len) } else { 0 },
                ipv6_gateway: ep.ip6.and(ep.gateway6).map(|g| g.to_string()).unwrap_or_default(),
                global_ipv6_address: ep.ip6.map(|i| i.to_string()).unwrap_or_default(),
                global_ipv6_prefix_len: if ep.ip6.is_some() { i64::from(ep.prefix6) } else { 0 },
                dns_names: (ep.network_name != "bridge").then(|| dns_names(r, ep)),
                unknown: Default::default(),
            };
            m.insert(ep.network_name.clone(), view);
        }
        let mode = r.host_config.network_mode.as_str();
        if m.is_empty() && matches!(mode, "host" | "none") {
            m.insert(mode.to_string(), EndpointSettings::default());
        }
        m
    }
}

/// The aliases a client asked for on `ep`: what berthd keeps for DNS, less the short id it adds.
fn user_aliases(r: &ContainerRecord, ep: &Endpoint) -> Option<Vec<String>> {
    let short = &r.id[..12.min(r.id.len())];
    let asked: Vec<String> = ep.aliases.iter().filter(|a| a.as_str() != short).cloned().collect();
    (!asked.is_empty()).then_some(asked)
}

/// An address picked for a container whose record does not show it yet.
pub(super) struct PendingAddress {
    container: String,
    network: String,
    ip: Option<Ipv4Addr>,
    ip6: Option<std::net::Ipv6Addr>,
}

/// Keeps a container's picked addresses taken until dropped (see `assign_addresses`).
pub(super) struct AddressLease<'a> {
    pending: &'a std::sync::Mutex<Vec<PendingAddress>>,
    container: String,
}

impl Drop for AddressLease<'_> {
    fn drop(&mut self) {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).retain(|p| p.container != self.container);
    }
}
