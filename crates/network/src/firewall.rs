//! Berth's nftables rules, all in one table of its own (`ip berth_<bridge>`): masquerading for
//! outbound traffic of non-internal networks, isolation between networks (and of `--internal` ones
//! from everything else), and DNAT of published ports for traffic arriving from outside (the
//! userland proxy still serves the host's own loopback, as docker-proxy does).
//!
//! The whole table is rendered from the current state and replaced in one `nft -f` transaction, so
//! the kernel never holds half an update and a restart starts from what berthd knows.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use berth_types::{Error, Result};

use crate::Ipv4Net;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetRule {
    pub bridge: String,
    pub subnet: Ipv4Net,
    pub internal: bool,
    /// A dual-stack network's IPv6 subnet: the same isolation, and masquerading, in the `ip6`
    /// table of the same name.
    pub subnet6: Option<crate::ipam::Ipv6Net>,
    /// The network's other IPv4 subnets, masqueraded as the first.
    pub more_subnets: Vec<Ipv4Net>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRule {
    /// `tcp` or `udp`.
    pub proto: String,
    /// `None`: every local address.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub addr: Ipv4Addr,
    pub port: u16,
}

#[derive(Default)]
struct State {
    nets: Vec<NetRule>,
    /// Published ports by container id.
    ports: BTreeMap<String, Vec<PortRule>>,
}

pub struct Firewall {
    table: String,
    state: Mutex<State>,
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', ""))
}

impl Firewall {
    /// `bridge` (the daemon's default bridge) names the table, so daemons on one host never share it.
    pub fn new(bridge: &str) -> Firewall {
        let suffix: String = bridge.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        Firewall { table: format!("berth_{suffix}"), state: Mutex::new(State::default()) }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Replaces the set of networks. Blocking (runs `nft`).
    pub fn set_networks(&self, nets: Vec<NetRule>) -> Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.nets = nets;
        if st.nets.iter().any(|n| !n.internal) {
            enable_forwarding()?;
        }
        apply(&(render(&self.table, &st) + &render6(&self.table, &st)))
    }

    /// Replaces one container's published ports (empty: it has none now). Blocking.
    pub fn set_ports(&self, owner: &str, ports: Vec<PortRule>) -> Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let changed = match ports.is_empty() {
            true => st.ports.remove(owner).is_some(),
            false => st.ports.insert(owner.to_string(), ports.clone()).as_ref() != Some(&ports),
        };
        if !changed {
            return Ok(());
        }
        apply(&render(&self.table, &st))
    }

    /// Deletes the tables. Blocking.
    pub fn remove(&self) -> Result<()> {
        apply(&format!("table ip {t}\ndelete table ip {t}\ntable ip6 {t}\ndelete table ip6 {t}\n", t = self.table))
    }
}

/// The table as an nft script that replaces any previous version atomically.
fn render(table: &str, st: &State) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "table ip {table}\ndelete table ip {table}\ntable ip {table} {{");
    let bridges: Vec<String> = st.nets.iter().map(|n| quote(&n.bridge)).collect();
    if bridges.is_empty() {
        s.push_str("  set bridges { type ifname; }\n");
    } else {
        let _ = writeln!(s, "  set bridges {{ type ifname; elements = {{ {} }} }}", bridges.join(", "));
    }
    s.push_str("  chain forward {\n    type filter hook forward priority filter; policy accept;\n");
    // Published ports stay reachable from every network.
    s.push_str("    ct status dnat accept\n");
    for n in &st.nets {
        let b = quote(&n.bridge);
        if n.internal {
            let _ = writeln!(s, "    iifname {b} oifname != {b} drop");
            let _ = writeln!(s, "    oifname {b} iifname != {b} drop");
        } else {
            let _ = writeln!(s, "    iifname {b} oifname @bridges oifname != {b} drop");
        }
    }
    s.push_str("  }\n");
    s.push_str("  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n");
    for n in st.nets.iter().filter(|n| !n.internal) {
        for sub in std::iter::once(&n.subnet).chain(&n.more_subnets) {
            let _ = writeln!(s, "    ip saddr {}/{} oifname != {} masquerade", sub.addr, sub.len, quote(&n.bridge));
        }
    }
    s.push_str("  }\n");
    s.push_str("  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n");
    for p in st.ports.values().flatten() {
        let dst = match p.host_ip {
            Some(ip) if !ip.is_unspecified() => format!("ip daddr {ip}"),
            _ => "fib daddr type local".to_string(),
        };
        let _ = writeln!(s, "    {dst} {} dport {} dnat to {}:{}", p.proto, p.host_port, p.addr, p.port);
    }
    s.push_str("  }\n");
    // A port published on a loopback address is for this host alone. DNAT happens before the
    // routing decision that would drop a packet to 127/8 from another interface as martian, so
    // without this a neighbour routing 127.0.0.1 to us reaches the container (as Docker 28 does,
    // drop such packets before NAT, in the raw hook).
    s.push_str("  chain raw_prerouting {\n    type filter hook prerouting priority raw; policy accept;\n");
    for p in st.ports.values().flatten() {
        if let Some(ip) = p.host_ip.filter(|ip| ip.is_loopback()) {
            let _ = writeln!(s, "    iifname != \"lo\" ip daddr {ip} {} dport {} drop", p.proto, p.host_port);
        }
    }
    s.push_str("  }\n}\n");
    s
}

/// The IPv6 side: isolation and masquerading of dual-stack networks, in table `ip6 <name>`; with
/// no such network the table is removed.
fn render6(table: &str, st: &State) -> String {
    let mut s = format!("table ip6 {table}\ndelete table ip6 {table}\n");
    let nets: Vec<&NetRule> = st.nets.iter().filter(|n| n.subnet6.is_some()).collect();
    if nets.is_empty() {
        return s;
    }
    let _ = writeln!(s, "table ip6 {table} {{");
    let bridges: Vec<String> = st.nets.iter().map(|n| quote(&n.bridge)).collect();
    let _ = writeln!(s, "  set bridges {{ type ifname; elements = {{ {} }} }}", bridges.join(", "));
    s.push_str("  chain forward {\n    type filter hook forward priority filter; policy accept;\n");
    for n in &nets {
        let b = quote(&n.bridge);
        if n.internal {
            let _ = writeln!(s, "    iifname {b} oifname != {b} drop");
            let _ = writeln!(s, "    oifname {b} iifname != {b} drop");
        } else {
            let _ = writeln!(s, "    iifname {b} oifname @bridges oifname != {b} drop");
        }
    }
    s.push_str("  }\n  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n");
    for n in nets.iter().filter(|n| !n.internal) {
        let sub = n.subnet6.expect("filtered");
        let _ = writeln!(s, "    ip6 saddr {}/{} oifname != {} masquerade", sub.addr, sub.len, quote(&n.bridge));
    }
    s.push_str("  }\n}\n");
    s
}

fn apply(script: &str) -> Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::internal(format!("nft: {e} (is the nftables package installed?)")))?;
    child.stdin.take().expect("stdin").write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(Error::internal(format!("nft: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(())
}

/// Routing between container networks and the outside needs IPv4 forwarding, as Docker enables it.
fn enable_forwarding() -> Result<()> {
    let p = "/proc/sys/net/ipv4/ip_forward";
    if std::fs::read_to_string(p).map(|v| v.trim() == "1").unwrap_or(false) {
        return Ok(());
    }
    std::fs::write(p, "1").map_err(|e| Error::internal(format!("enable ip_forward: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_isolation_nat_and_dnat() {
        let mut st = State::default();
        st.nets.push(NetRule {
            bridge: "bt0".into(),
            subnet: "10.1.0.0/24".parse().unwrap(),
            internal: false,
            subnet6: Some("fd00:1::/64".parse().unwrap()),
            more_subnets: vec!["10.3.0.0/24".parse().unwrap()],
        });
        st.nets.push(NetRule {
            bridge: "br-in".into(),
            subnet: "10.2.0.0/24".parse().unwrap(),
            internal: true,
            subnet6: None,
            more_subnets: vec![],
        });
        st.ports.insert(
            "c1".into(),
            vec![
                PortRule {
                    proto: "tcp".into(),
                    host_ip: None,
                    host_port: 8080,
                    addr: "10.1.0.2".parse().unwrap(),
                    port: 80,
                },
                PortRule {
                    proto: "udp".into(),
                    host_ip: Some("127.0.0.1".parse().unwrap()),
                    host_port: 53,
                    addr: "10.1.0.2".parse().unwrap(),
                    port: 5353,
                },
            ],
        );
        let s = render("berth_bt0", &st);
        assert!(s.starts_with("table ip berth_bt0\ndelete table ip berth_bt0\n"), "{s}");
        assert!(s.contains("elements = { \"bt0\", \"br-in\" }"), "{s}");
        assert!(s.contains("iifname \"bt0\" oifname @bridges oifname != \"bt0\" drop"), "{s}");
        assert!(s.contains("iifname \"br-in\" oifname != \"br-in\" drop"), "{s}");
        assert!(s.contains("ip saddr 10.1.0.0/24 oifname != \"bt0\" masquerade"), "{s}");
        assert!(s.contains("ip saddr 10.3.0.0/24 oifname != \"bt0\" masquerade"), "{s}");
        assert!(!s.contains("10.2.0.0/24"), "internal networks are not masqueraded: {s}");
        assert!(s.contains("fib daddr type local tcp dport 8080 dnat to 10.1.0.2:80"), "{s}");
        assert!(s.contains("ip daddr 127.0.0.1 udp dport 53 dnat to 10.1.0.2:5353"), "{s}");
        assert!(s.contains("iifname != \"lo\" ip daddr 127.0.0.1 udp dport 53 drop"), "{s}");
        assert!(!s.contains("tcp dport 8080 drop"), "{s}");
        assert_eq!(Firewall::new("bt-1\"x").table(), "berth_bt1x");
        let s6 = render6("berth_bt0", &st);
        assert!(s6.contains("ip6 saddr fd00:1::/64 oifname != \"bt0\" masquerade"), "{s6}");
        assert!(s6.contains("iifname \"bt0\" oifname @bridges oifname != \"bt0\" drop"), "{s6}");
        st.nets.retain(|n| n.subnet6.is_none());
        assert_eq!(render6("berth_bt0", &st), "table ip6 berth_bt0\ndelete table ip6 berth_bt0\n");
    }
}
