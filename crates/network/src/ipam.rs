//! Address management: IPv4 subnets from pools, IPv6 subnets (given, or a unique-local /64),
//! addresses within subnets.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use berth_types::{Error, Result};
use serde::{Deserialize, Serialize};

/// An IPv4 network in CIDR form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ipv4Net {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl Ipv4Net {
    pub fn new(addr: Ipv4Addr, len: u8) -> Ipv4Net {
        Ipv4Net { addr, len }
    }
    fn mask(&self) -> u32 {
        if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - self.len)
        }
    }
    /// The network address (host bits cleared).
    pub fn network(&self) -> Ipv4Net {
        Ipv4Net { addr: Ipv4Addr::from(u32::from(self.addr) & self.mask()), len: self.len }
    }
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr) & self.mask()
    }
    pub fn overlaps(&self, o: &Ipv4Net) -> bool {
        let len = self.len.min(o.len);
        let m = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        u32::from(self.addr) & m == u32::from(o.addr) & m
    }
    /// The n-th address of the network.
    pub fn nth(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from((u32::from(self.addr) & self.mask()).wrapping_add(n))
    }
    pub fn size(&self) -> u64 {
        1u64 << (32 - self.len as u32)
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Ipv4Net {
    type Err = Error;
    fn from_str(s: &str) -> Result<Ipv4Net> {
        let bad = || Error::invalid(format!("invalid CIDR address: {s}"));
        let (a, l) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let len: u8 = l.parse().map_err(|_| bad())?;
        if len > 32 {
            return Err(bad());
        }
        Ok(Ipv4Net { addr, len })
    }
}

impl TryFrom<String> for Ipv4Net {
    type Error = Error;
    fn try_from(s: String) -> Result<Ipv4Net> {
        s.parse()
    }
}

impl From<Ipv4Net> for String {
    fn from(n: Ipv4Net) -> String {
        n.to_string()
    }
}

/// Docker's `default-address-pools`: bases split into subnets of `size` bits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pools(pub Vec<(Ipv4Net, u8)>);

impl Default for Pools {
    fn default() -> Pools {
        // Docker's defaults: 172.17-31.0.0/16 then 192.168.0.0/20 slices.
        Pools(vec![
            (Ipv4Net::new(Ipv4Addr::new(172, 17, 0, 0), 12), 16),
            (Ipv4Net::new(Ipv4Addr::new(192, 168, 0, 0), 16), 20),
        ])
    }
}

impl Pools {
    /// The first subnet of the pools that overlaps nothing in `taken` (networks and host routes).
    pub fn allocate(&self, taken: &[Ipv4Net]) -> Result<Ipv4Net> {
        for (base, size) in &self.0 {
            let base = base.network();
            if *size < base.len || *size > 30 {
                continue;
            }
            let count = 1u64 << (*size - base.len);
            let step = 1u64 << (32 - *size as u32);
            for i in 0..count {
                let addr = Ipv4Addr::from((u32::from(base.addr) as u64 + i * step) as u32);
                let cand = Ipv4Net::new(addr, *size);
                if !taken.iter().any(|t| t.overlaps(&cand)) {
                    return Ok(cand);
                }
            }
        }
        Err(Error::unavailable("could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network"))
    }
}

/// The first free host address of `subnet` (skipping network, gateway and broadcast), within `range`.
pub fn next_address(subnet: &Ipv4Net, range: Option<&Ipv4Net>, used: &[Ipv4Addr]) -> Result<Ipv4Addr> {
    let n = subnet.size();
    for i in 1..n.saturating_sub(1) {
        let ip = subnet.nth(i as u32);
        if used.contains(&ip) || range.is_some_and(|r| !r.contains(ip)) {
            continue;
        }
        return Ok(ip);
    }
    Err(Error::unavailable(format!("no available IPv4 addresses on this network's address pools: {subnet}")))
}

/// An IPv6 network in CIDR form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ipv6Net {
    pub addr: Ipv6Addr,
    pub len: u8,
}

impl Ipv6Net {
    fn mask(&self) -> u128 {
        if self.len == 0 {
            0
        } else {
            u128::MAX << (128 - self.len as u32)
        }
    }
    pub fn network(&self) -> Ipv6Net {
        Ipv6Net { addr: Ipv6Addr::from(u128::from(self.addr) & self.mask()), len: self.len }
    }
    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        u128::from(ip) & self.mask() == u128::from(self.addr) & self.mask()
    }
    pub fn overlaps(&self, o: &Ipv6Net) -> bool {
        let len = self.len.min(o.len);
        let m = if len == 0 { 0 } else { u128::MAX << (128 - len as u32) };
        u128::from(self.addr) & m == u128::from(o.addr) & m
    }
    pub fn nth(&self, n: u128) -> Ipv6Addr {
        Ipv6Addr::from((u128::from(self.addr) & self.mask()).wrapping_add(n))
    }
    /// A unique-local /64 (fd00::/8, RFC 4193) from 56 bits of `seed`, as Docker picks one for a
    /// network that enables IPv6 without a subnet.
    pub fn unique_local(seed: &[u8]) -> Ipv6Net {
        let mut b = [0u8; 16];
        b[0] = 0xfd;
        for (i, x) in seed.iter().take(7).enumerate() {
            b[1 + i] = *x;
        }
        Ipv6Net { addr: Ipv6Addr::from(b), len: 64 }
    }
}

impl fmt::Display for Ipv6Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Ipv6Net {
    type Err = Error;
    fn from_str(s: &str) -> Result<Ipv6Net> {
        let bad = || Error::invalid(format!("invalid CIDR address: {s}"));
        let (a, l) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv6Addr = a.parse().map_err(|_| bad())?;
        let len: u8 = l.parse().map_err(|_| bad())?;
        if len > 128 {
            return Err(bad());
        }
        Ok(Ipv6Net { addr, len })
    }
}

impl TryFrom<String> for Ipv6Net {
    type Error = Error;
    fn try_from(s: String) -> Result<Ipv6Net> {
        s.parse()
    }
}

impl From<Ipv6Net> for String {
    fn from(n: Ipv6Net) -> String {
        n.to_string()
    }
}

/// The first free address of `subnet` from `::2` on (`::1` is the gateway by default), within
/// `range`; a bounded search, as subnets are huge.
pub fn next_address6(subnet: &Ipv6Net, range: Option<&Ipv6Net>, used: &[Ipv6Addr]) -> Result<Ipv6Addr> {
    let size: u128 = if subnet.len == 0 { u128::MAX } else { 1u128 << (128 - subnet.len as u32) };
    let start = range.map(|r| u128::from(r.network().addr) - u128::from(subnet.network().addr)).unwrap_or(0);
    for i in (start.max(1)..size.saturating_sub(1)).take(1 << 20) {
        let ip = subnet.nth(i);
        if used.contains(&ip) || range.is_some_and(|r| !r.contains(ip)) || i == 1 && range.is_none() {
            continue;
        }
        return Ok(ip);
    }
    Err(Error::unavailable(format!("no available IPv6 addresses on this network's address pools: {subnet}")))
}

/// IPv4 routes of the host (from /proc/net/route), so new subnets avoid them.
pub fn host_routes() -> Vec<Ipv4Net> {
    let text = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let dest = u32::from_str_radix(f.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(f.get(7)?, 16).ok()?;
            if dest == 0 {
                return None; // the default route overlaps everything
            }
            let len = u32::from_be(mask).count_ones() as u8;
            Some(Ipv4Net::new(Ipv4Addr::from(u32::from_be(dest)), len))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_math() {
        let n: Ipv4Net = "10.1.2.3/24".parse().unwrap();
        assert_eq!(n.network().to_string(), "10.1.2.0/24");
        assert!(n.contains("10.1.2.200".parse().unwrap()));
        assert!(!n.contains("10.1.3.1".parse().unwrap()));
        assert!(n.overlaps(&"10.1.0.0/16".parse().unwrap()));
        assert!(!n.overlaps(&"10.1.3.0/24".parse().unwrap()));
        assert_eq!(n.nth(1).to_string(), "10.1.2.1");
        assert!("10.0.0.0/33".parse::<Ipv4Net>().is_err());
        assert!("nonsense".parse::<Ipv4Net>().is_err());
    }

    #[test]
    fn pools_skip_what_is_taken() {
        let p = Pools(vec![("10.9.0.0/16".parse().unwrap(), 24)]);
        let a = p.allocate(&[]).unwrap();
        assert_eq!(a.to_string(), "10.9.0.0/24");
        let b = p.allocate(&[a, "10.9.1.128/25".parse().unwrap()]).unwrap();
        assert_eq!(b.to_string(), "10.9.2.0/24");
        let full = Pools(vec![("10.9.0.0/24".parse().unwrap(), 24)]);
        assert!(full.allocate(&[a]).is_err());
    }

    #[test]
    fn ipv6_math() {
        let n: Ipv6Net = "fd00:1::5/64".parse().unwrap();
        assert_eq!(n.network().to_string(), "fd00:1::/64");
        assert!(n.contains("fd00:1::ffff".parse().unwrap()));
        assert!(!n.contains("fd00:2::1".parse().unwrap()));
        assert!(n.overlaps(&"fd00::/16".parse().unwrap()));
        assert_eq!(n.nth(1).to_string(), "fd00:1::1");
        let gw = n.nth(1);
        assert_eq!(next_address6(&n, None, &[gw]).unwrap().to_string(), "fd00:1::2");
        assert_eq!(next_address6(&n, None, &[gw, n.nth(2)]).unwrap().to_string(), "fd00:1::3");
        let u = Ipv6Net::unique_local(&[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(u.to_string(), "fd01:203:405:607::/64");
        assert!("fd00::/129".parse::<Ipv6Net>().is_err());
    }

    #[test]
    fn addresses() {
        let s: Ipv4Net = "10.0.0.0/29".parse().unwrap();
        let gw = s.nth(1);
        let a = next_address(&s, None, &[gw]).unwrap();
        assert_eq!(a.to_string(), "10.0.0.2");
        let used: Vec<Ipv4Addr> = (1..7).map(|i| s.nth(i)).collect();
        assert!(next_address(&s, None, &used).is_err());
        let r: Ipv4Net = "10.0.0.4/30".parse().unwrap();
        assert_eq!(next_address(&s, Some(&r), &[gw]).unwrap().to_string(), "10.0.0.4");
    }
}
