//! The embedded DNS of user-defined networks: which names a container sees (names, short ids and
//! aliases of running containers on the networks it shares, also as `name.network`), and the
//! resolv.conf that points it at 127.0.0.11. The default bridge has no name resolution, as in Docker.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Weak};

use berth_network::dns::{self, Names};
use berth_network::Endpoint;

use super::record::ContainerRecord;
use super::{blocking, ContainerService, Entry};

/// Networks with name resolution: every network but the default bridge, host and none.
pub(super) fn resolves(network_name: &str) -> bool {
    !matches!(network_name, "bridge" | "host" | "none")
}

/// Whether a container gets the embedded resolver: it has its own namespace on a user network.
pub(super) fn wants_dns(rec: &ContainerRecord) -> bool {
    let mode = rec.host_config.network_mode.as_str();
    !(mode == "host" || mode == "none" || mode.starts_with("container:"))
        && rec.endpoints.iter().any(|e| resolves(&e.network_name))
}

struct Resolver(Weak<ContainerService>);

impl Resolver {
    fn records(&self) -> Vec<ContainerRecord> {
        self.0.upgrade().map(|s| s.all().iter().map(|e| e.record()).collect()).unwrap_or_default()
    }
}

/// An endpoint's addresses: IPv4, and IPv6 on a dual-stack network.
fn addresses(ep: &Endpoint) -> Vec<IpAddr> {
    ep.ip.map(IpAddr::V4).into_iter().chain(ep.ip6.map(IpAddr::V6)).collect()
}

fn answers_to(rec: &ContainerRecord, ep: &Endpoint, name: &str) -> bool {
    rec.name.eq_ignore_ascii_case(name)
        || (name.len() >= 12 && rec.id.starts_with(name))
        || ep.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
}

impl Names for Resolver {
    fn lookup(&self, asker: &str, name: &str) -> Option<Vec<IpAddr>> {
        let all = self.records();
        let me = all.iter().find(|r| r.id == asker)?;
        let mine: Vec<&Endpoint> = me.endpoints.iter().filter(|e| resolves(&e.network_name)).collect();
        // `web` on any shared network, or `web.app` on network `app` only.
        let mut forms = vec![(name, None)];
        if let Some((n, net)) = name.rsplit_once('.') {
            if mine.iter().any(|e| e.network_name.eq_ignore_ascii_case(net)) {
                forms.push((n, Some(net)));
            }
        }
        let mut ips = Vec::new();
        // Links on user-defined networks: the alias resolves for the linking container only.
        for ep in &mine {
            for l in ep.links.iter().filter_map(|l| l.split_once(':')) {
                if !l.1.eq_ignore_ascii_case(name) {
                    continue;
                }
                let target = all.iter().find(|r| r.state.running() && r.name == l.0);
                let theirs = target.and_then(|t| t.endpoints.iter().find(|e| e.network_id == ep.network_id));
                for ip in theirs.into_iter().flat_map(addresses) {
                    if !ips.contains(&ip) {
                        ips.push(ip);
                    }
                }
            }
        }
        for r in all.iter().filter(|r| r.state.running()) {
            for ep in &r.endpoints {
                let shared = mine.iter().any(|m| m.network_id == ep.network_id);
                let hit = forms.iter().any(|(n, net)| {
                    net.is_none_or(|net| ep.network_name.eq_ignore_ascii_case(net)) && answers_to(r, ep, n)
                });
                if !(shared && hit) {
                    continue;
                }
                for ip in addresses(ep) {
                    if !ips.contains(&ip) {
                        ips.push(ip);
                    }
                }
            }
        }
        (!ips.is_empty()).then_some(ips)
    }

    fn reverse(&self, asker: &str, ip: Ipv4Addr) -> Option<String> {
        let all = self.records();
        let me = all.iter().find(|r| r.id == asker)?;
        all.iter().filter(|r| r.state.running()).find_map(|r| {
            let ep = r.endpoints.iter().find(|e| {
                e.ip == Some(ip)
                    && me.endpoints.iter().any(|m| m.network_id == e.network_id && resolves(&m.network_name))
            })?;
            Some(format!("{}.{}", r.name, ep.network_name))
        })
    }
}

/// The `--dns` servers of a container, else the host's: where unknown names are forwarded.
fn upstream(rec: &ContainerRecord) -> Vec<SocketAddr> {
    let given: Vec<SocketAddr> =
        rec.host_config.dns.iter().flatten().filter_map(|x| x.parse().ok()).map(|ip| SocketAddr::new(ip, 53)).collect();
    if !given.is_empty() {
        return given;
    }
    dns::upstream_from_resolv_conf(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default())
}

/// resolv.conf of a container on a user network, as Docker writes it: the embedded server, the
/// search and options lines (with `ndots:0` unless set), and where unknown names go.
pub(super) fn resolv_conf(rec: &ContainerRecord, base: &str) -> String {
    let mut out = vec![format!("nameserver {}", dns::ADDRESS)];
    let mut has_ndots = false;
    for l in base.lines() {
        let first = l.split_whitespace().next();
        if matches!(first, Some("search") | Some("domain")) {
            out.push(l.to_string());
        }
        if first == Some("options") {
            has_ndots |= l.contains("ndots:");
            out.push(l.to_string());
        }
    }
    if !has_ndots {
        out.push("options ndots:0".into());
    }
    let ext: Vec<String> = upstream(rec).iter().map(|s| format!("host({})", s.ip())).collect();
    out.push(String::new());
    out.push(format!("# ExtServers: [{}]", ext.join(" ")));
    out.join("\n") + "\n"
}

impl ContainerService {
    /// Opens 127.0.0.11:53 in the container's namespace and serves it; replaces a previous server.
    pub(super) async fn start_dns(self: &Arc<Self>, e: &Arc<Entry>) {
        let rec = e.record();
        if !wants_dns(&rec) {
            return;
        }
        let ns = self.netns_path(&rec.id);
        let bound = blocking(move || dns::bind_in(&ns)).await;
        let names: Arc<dyn Names> = Arc::new(Resolver(Arc::downgrade(self)));
        let served = bound.and_then(|(udp, tcp)| dns::serve(rec.id.clone(), udp, tcp, names, upstream(&rec)));
        match served {
            Ok(h) => *e.dns.lock().expect("dns lock") = Some(h),
            Err(err) => tracing::warn!(container = %rec.id, "embedded DNS: {err}"),
        }
    }

    pub(super) fn stop_dns(&self, e: &Entry) {
        e.dns.lock().expect("dns lock").take();
    }
}
