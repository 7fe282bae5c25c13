//! Bridge-driver plumbing: bridges with iproute2 (once per network, replayable by an operator); veth
//! pairs and their configuration over netlink (`netlink.rs`).

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use berth_types::{Error, Result};

use crate::ipam::Ipv4Net;

/// Runs `ip -batch -` with `cmds`, one per line, in the host namespace.
fn ip_batch(cmds: &[String]) -> Result<()> {
    let mut child = Command::new("ip")
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::internal(format!("run ip: {e}")))?;
    child.stdin.take().expect("stdin").write_all(cmds.join("\n").as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(Error::internal(format!(
            "ip {}: {}",
            cmds.join("; "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn link_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

/// Bridges this process already set up (name, gateway); a start then spawns no `ip` for them.
static READY: std::sync::Mutex<Vec<(String, Ipv4Addr)>> = std::sync::Mutex::new(Vec::new());

/// Creates (or reuses) the bridge `name` with the gateway address, and brings it up.
/// A bridge name the kernel accepts and nothing else misreads (it reaches netlink, nft scripts and
/// /sys paths): 1 to 15 bytes, not `.` or `..`, none of `/`, `:`, quotes, backslash, whitespace or
/// control characters.
pub fn validate_bridge_name(name: &str) -> Result<()> {
    let bad_char =
        |c: char| c == '/' || c == ':' || c == '"' || c == '\'' || c == '\\' || c.is_whitespace() || c.is_control();
    if name.is_empty() || name.len() > 15 || name == "." || name == ".." || name.chars().any(bad_char) {
        return Err(berth_types::Error::invalid(format!(
            "invalid bridge name {name:?}: 1 to 15 characters, without '/', ':', quotes, backslashes or spaces"
        )));
    }
    // An existing interface that is not a bridge (eth0, say) must never be taken over: removing
    // the network would delete it.
    let sys = std::path::Path::new("/sys/class/net").join(name);
    if sys.exists() && !sys.join("bridge").exists() {
        return Err(berth_types::Error::conflict(format!(
            "{name} is an existing network interface that is not a bridge"
        )));
    }
    Ok(())
}

pub fn ensure_bridge(name: &str, gateway: Ipv4Addr, subnet: &Ipv4Net) -> Result<()> {
    let key = (name.to_string(), gateway);
    if link_exists(name) && READY.lock().expect("bridge cache lock").contains(&key) {
        return Ok(());
    }
    // Containers start concurrently (parallel build stages, compose): one check-and-create at a time,
    // or two of them both see no bridge and the second `link add` fails.
    let _setup = SETUP.lock().unwrap_or_else(|e| e.into_inner());
    setup_bridge(name, gateway, subnet)?;
    READY.lock().expect("bridge cache lock").push(key);
    Ok(())
}

static SETUP: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn setup_bridge(name: &str, gateway: Ipv4Addr, subnet: &Ipv4Net) -> Result<()> {
    let mut cmds = Vec::new();
    if !link_exists(name) {
        cmds.push(format!("link add name {name} type bridge"));
    }
    let addrs = std::process::Command::new("ip").args(["-4", "-o", "addr", "show", "dev", name]).output();
    let has = addrs.map(|o| String::from_utf8_lossy(&o.stdout).contains(&format!("{gateway}/"))).unwrap_or(false);
    if !has {
        cmds.push(format!("addr add {gateway}/{} dev {name}", subnet.len));
    }
    cmds.push(format!("link set {name} up"));
    ip_batch(&cmds)
}

pub fn delete_link(name: &str) -> Result<()> {
    let _setup = SETUP.lock().unwrap_or_else(|e| e.into_inner());
    READY.lock().expect("bridge cache lock").retain(|(n, _)| n != name);
    crate::netlink::delete(name)
}

/// What to configure for one endpoint.
pub struct Attach<'a> {
    pub bridge: &'a str,
    pub host_veth: &'a str,
    pub if_name: &'a str,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    pub mac: &'a str,
    pub default_route: bool,
    /// Extra link-local addresses (`IPAMConfig.LinkLocalIPs`).
    pub link_local: &'a [std::net::IpAddr],
    /// Sysctls of the interface, already named (`net.ipv4.conf.eth0.x`).
    pub sysctls: &'a [(String, String)],
    /// The IPv6 address and prefix on a dual-stack network, and its gateway.
    pub ip6: Option<(std::net::Ipv6Addr, u8)>,
    pub gateway6: Option<std::net::Ipv6Addr>,
}

/// Gives bridge `name` its IPv6 gateway address (without duplicate address detection, so it
/// answers at once), once. Blocking.
pub fn ensure_bridge6(name: &str, gateway: std::net::Ipv6Addr, subnet: &crate::ipam::Ipv6Net) -> Result<()> {
    let _setup = SETUP.lock().unwrap_or_else(|e| e.into_inner());
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "0");
    let addrs = std::process::Command::new("ip").args(["-6", "-o", "addr", "show", "dev", name]).output();
    let has = addrs.map(|o| String::from_utf8_lossy(&o.stdout).contains(&format!("{gateway}/"))).unwrap_or(false);
    if has {
        return Ok(());
    }
    ip_batch(&[format!("addr add {gateway}/{} dev {name} nodad", subnet.len)])
}

/// Makes `gw` (through `if_name`) the default route of the network namespace of `pid`, replacing
/// the one it had (a connected network with a higher `GwPriority`).
pub fn set_default_route(pid: i32, if_name: &str, gw: Ipv4Addr) -> Result<()> {
    crate::netlink::set_default_route(pid, if_name, gw)
}

/// Creates a veth pair, the host end on the bridge, the other end configured as `if_name` in the
/// network namespace of `pid`.
pub fn attach(pid: i32, a: &Attach) -> Result<()> {
    crate::netlink::attach(pid, a)
}

/// A fresh host-side veth name (15 characters at most).
pub fn veth_name() -> String {
    format!("veth{}", &berth_types::new_id()[..7])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_names_are_validated() {
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "x\"; drop", "sixteen-chars-xx", "lo"] {
            assert!(validate_bridge_name(bad).is_err(), "{bad:?}");
        }
        validate_bridge_name("br-test0").unwrap();
    }
}
